//! Streams a tenant's device events after a cursor: first what is stored, then each new
//! event as PostgreSQL announces it on `LISTEN`, so an event appended by any replica
//! reaches every watcher. Cursors are committed in order, so reading `cursor > last`
//! again after each announcement sends every event once.

use std::time::Duration;

use futures_util::StreamExt;
use latchkey::db::DbPool;
use latchkey::pb::gateway::v1 as pb;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_postgres::AsyncMessage;
use tonic::Status;
use tracing::Instrument;

use crate::db::events::{self, CHANNEL};
use crate::error::Error;

/// Events sent per database read.
const BATCH: i64 = 256;
/// A backstop read while no announcement arrives (a lost listener connection).
const IDLE_POLL: Duration = Duration::from_secs(2);

/// Fans PostgreSQL's announcements out to the watchers of this process.
#[derive(Debug, Clone)]
pub struct Hub {
    sender: broadcast::Sender<String>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
        }
    }

    /// Follows the channel until aborted, reconnecting when the connection drops.
    pub async fn listen(self, database_url: SecretString) {
        loop {
            if let Err(error) = self.listen_once(&database_url).await {
                tracing::warn!(%error, "device event announcements lost; watchers poll until they return");
            }
            // Whatever was announced meanwhile is picked up by the watchers' polls.
            let _ = self.sender.send(String::new());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn listen_once(&self, database_url: &SecretString) -> Result<(), tokio_postgres::Error> {
        let (client, mut connection) =
            tokio_postgres::connect(database_url.expose_secret(), tokio_postgres::NoTls).await?;
        let (forward, mut announced) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(note)) => {
                        if forward.send(note.payload().to_owned()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        while let Some(tenant) = announced.recv().await {
            // No receivers is fine: nobody watches.
            let _ = self.sender.send(tenant);
        }
        drop(client);
        match driver.await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.sender.subscribe()
    }
}

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
                            Ok(tenant) if tenant == tenant_id || tenant.is_empty() => break,
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
