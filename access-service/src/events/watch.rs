//! One stream: events after its start read from the log, then from the tenant's tail,
//! never a row twice or a row skipped: each event is sent only past the stream's own
//! position, and a run that does not continue from that position (the stream fell
//! behind the tail, or the tail restarted) sends it back to the log.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use latchkey::db::DbPool;
use latchkey::error::ApiError;
use latchkey::pb::access::v1 as pb;
use pb::watch_events_response::Item;
use tokio::sync::{broadcast::error::RecvError, mpsc, watch};
use tokio::time::Instant;
use tonic::Status;
use tracing::Instrument as _;

use super::cursor::{self, Position};
use super::filter::Filter;
use super::project;
use super::tail::{BATCH, Tails};
use crate::code_keys::CodeKeys;
use crate::db::events as db;
use crate::device_events::apply::ACTOR as DEVICE;
use crate::error::{DOMAIN, Error};

/// Messages a stream holds for a slow consumer before it waits.
const BUFFER: usize = 64;

/// What streams share.
#[derive(Clone)]
pub struct Streams {
    pub pool: DbPool,
    pub keys: CodeKeys,
    pub tails: Arc<Tails>,
    /// A heartbeat goes out when nothing else did for this long.
    pub heartbeat: Duration,
    /// A consumer that takes nothing for this long while events wait is cut off with
    /// RESOURCE_EXHAUSTED.
    pub stall_limit: Duration,
    /// Turns true at shutdown: streams end so the drain can finish.
    pub shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("heartbeat", &self.heartbeat)
            .field("stall_limit", &self.stall_limit)
            .finish_non_exhaustive()
    }
}

/// The messages of one stream, then the status it ended with, if it ended in error.
#[derive(Debug)]
pub struct EventStream {
    receiver: mpsc::Receiver<pb::WatchEventsResponse>,
    ending: Arc<Mutex<Option<Status>>>,
}

impl tokio_stream::Stream for EventStream {
    type Item = Result<pb::WatchEventsResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(message)) => Poll::Ready(Some(Ok(message))),
            Poll::Ready(None) => Poll::Ready(
                self.ending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take()
                    .map(Err),
            ),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Why a stream's task stopped.
enum Stop {
    /// The consumer went away or the server is stopping: nothing more to say.
    Gone,
    Failed(Status),
}

struct Sender {
    sender: mpsc::Sender<pb::WatchEventsResponse>,
    stall_limit: Duration,
    last_sent: Instant,
}

impl Sender {
    async fn send(&mut self, item: Item) -> Result<(), Stop> {
        let message = pb::WatchEventsResponse { item: Some(item) };
        match self.sender.send_timeout(message, self.stall_limit).await {
            Ok(()) => {
                self.last_sent = Instant::now();
                Ok(())
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(Stop::Gone),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(Stop::Failed(
                ApiError::ResourceExhausted {
                    reason: "CONSUMER_TOO_SLOW",
                    message: format!(
                        "the stream took nothing for {} s while events waited; resume from \
                         the last cursor received",
                        self.stall_limit.as_secs()
                    ),
                }
                .into_status(DOMAIN),
            )),
        }
    }
}

/// Streams `tenant_id`'s events after position `after` that pass `filter`.
pub fn stream(
    streams: &Streams,
    tenant_id: String,
    filter: Filter,
    after: Position,
) -> EventStream {
    let (sender, receiver) = mpsc::channel(BUFFER);
    let ending = Arc::new(Mutex::new(None));
    let span = tracing::info_span!("events.watch", tenant_id = %tenant_id, after = after.sequence);
    let streams = streams.clone();
    let end = Arc::clone(&ending);
    tokio::spawn(
        async move {
            let mut sender = Sender {
                sender,
                stall_limit: streams.stall_limit,
                last_sent: Instant::now(),
            };
            let mut shutdown = streams.shutdown.clone();
            let stop = tokio::select! {
                stop = follow(&streams, &tenant_id, &filter, after, &mut sender) => stop,
                _ = shutdown.wait_for(|stopping| *stopping) => Stop::Gone,
            };
            if let Stop::Failed(status) = stop {
                tracing::info!(code = ?status.code(), "event stream ended");
                *end.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
            }
        }
        .instrument(span),
    );
    EventStream { receiver, ending }
}

fn failed(error: impl Into<Error>) -> Stop {
    Stop::Failed(Status::from(error.into()))
}

async fn follow(
    streams: &Streams,
    tenant: &str,
    filter: &Filter,
    after: Position,
    sender: &mut Sender,
) -> Stop {
    let heartbeat = |rows_done: i64| {
        Item::Heartbeat(pb::Heartbeat {
            cursor: cursor::encode(&streams.keys, tenant, Position::after_row(rows_done)),
            time: Some(latchkey::pb::timestamp(chrono::Utc::now())),
        })
    };
    // Rows wholly sent; the start may be inside the row after them.
    let mut position = after.rows_done();
    let tail = streams.tails.tail(tenant);
    // Registered and subscribed before the log is read: a run published meanwhile is
    // received, and holds what this stream may need.
    let _registration = tail.register(filter.doors(), filter.wants_decisions());
    let mut live = tail.subscribe();
    loop {
        // From the log until a read comes back short: caught up as of that read.
        loop {
            let rows = match streams.pool.get().await {
                Ok(mut conn) => {
                    db::after(&mut conn, tenant, position, BATCH, DEVICE, db::Scope::ALL).await
                }
                Err(error) => return failed(error),
            };
            let rows = match rows {
                Ok(rows) => rows,
                Err(error) => return failed(error),
            };
            for row in &rows {
                let events = project::project(row, tenant, &streams.keys);
                for (index, event) in events.into_iter().enumerate() {
                    if after.precedes(row.sequence, index)
                        && filter.matches(&event)
                        && let Err(stop) = sender.send(Item::Event(event)).await
                    {
                        return stop;
                    }
                }
                position = row.sequence;
            }
            if sender.last_sent.elapsed() >= streams.heartbeat
                && let Err(stop) = sender.send(heartbeat(position)).await
            {
                return stop;
            }
            if (rows.len() as i64) < BATCH {
                break;
            }
        }
        // Live, from the tail.
        loop {
            let due = sender.last_sent + streams.heartbeat;
            tokio::select! {
                published = live.recv() => match published {
                    Ok(batch) => {
                        if batch.last <= position {
                            continue;
                        }
                        if batch.after > position {
                            // Rows between were never seen here: read them from the log.
                            break;
                        }
                        for event in &batch.events {
                            if event.sequence > position
                                && filter.matches(event)
                                && let Err(stop) = sender.send(Item::Event(event.clone())).await
                            {
                                return stop;
                            }
                        }
                        position = batch.last;
                    }
                    // Behind the tail by more than it keeps: back to the log.
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return failed(ApiError::unavailable(
                        "EVENTS_UNAVAILABLE",
                        "the event reader stopped; resume from the last cursor",
                    )),
                },
                () = tokio::time::sleep_until(due) => {
                    if let Err(stop) = sender.send(heartbeat(position)).await {
                        return stop;
                    }
                }
                () = sender.sender.closed() => return Stop::Gone,
            }
        }
    }
}
