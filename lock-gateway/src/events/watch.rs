//! Streams a tenant's device events after a cursor: first what is stored, then each new
//! event as PostgreSQL announces it on `LISTEN`, so an event appended by any replica
//! reaches every watcher. Cursors are committed in order, so reading `cursor > last`
//! again after each announcement sends every event once.

use std::time::Duration;

use latchkey::db::DbPool;
use latchkey::pb::gateway::v1 as pb;
use tokio::sync::{broadcast, mpsc, watch};
use tonic::Status;
use tracing::Instrument;

use crate::db::events::{self, CHANNEL};
use crate::error::Error;
use latchkey::announcements::Hub;

/// Events sent per database read.
const BATCH: i64 = 256;
/// A backstop read while no announcement arrives (a lost listener connection).
const IDLE_POLL: Duration = Duration::from_secs(2);

/// The stream of the tenant's events after `after`; it ends when the server shuts down
/// or the client goes away.
pub fn stream(
    pool: DbPool,
    hub: &Hub,
    tenant_id: String,
    after: i64,
    mut shutdown: watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<Result<pb::DeviceEvent, Status>> {
    let (sender, receiver) = mpsc::channel(BATCH as usize);
    // Subscribed before the first read: an event appended in between is announced here.
    let mut announcements = hub.subscribe();
    let span = tracing::info_span!("device_events.watch", tenant_id = %tenant_id, after);
    tokio::spawn(
        async move {
            let mut cursor = after;
            loop {
                let batch = match pool.get().await {
                    Ok(mut conn) => events::after(&mut conn, &tenant_id, cursor, BATCH)
                        .await
                        .map_err(Error::from),
                    Err(error) => Err(Error::from(error)),
                };
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(error) => {
                        let _ = sender.send(Err(Status::from(error))).await;
                        return;
                    }
                };
                let full = batch.len() as i64 == BATCH;
                for row in batch {
                    cursor = row.cursor;
                    if sender.send(Ok(super::message(row))).await.is_err() {
                        return;
                    }
                }
                if full {
                    continue;
                }
                // Caught up: wait for this tenant's next announcement.
                loop {
                    tokio::select! {
                        announced = announcements.recv() => match announced {
                            Ok(news) if news.concerns(CHANNEL, &tenant_id) => break,
                            Ok(_) => {}
                            Err(broadcast::error::RecvError::Lagged(_)) => break,
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                        () = tokio::time::sleep(IDLE_POLL) => break,
                        () = sender.closed() => return,
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
        .instrument(span),
    );
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}
