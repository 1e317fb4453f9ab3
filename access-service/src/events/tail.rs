//! One reader of the log per tenant per replica, shared by every stream of the tenant on
//! that replica: it reads each new run of rows once, when PostgreSQL announces it (or
//! at the latest a second later), projects it, and publishes it to the streams. A
//! thousand streams of one tenant cost one query per commit, not a thousand.
//!
//! It reads only the rows some stream may receive: the doors streams are filtered to
//! (unless one follows every door), decisions only while a stream wants them. Runs with
//! nothing in them are published at most once a second, to move the streams' heartbeat
//! cursors on; each published run continues from the one before it, whatever was read
//! between.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use latchkey::announcements::{Hub, wait_for};
use latchkey::db::DbPool;
use latchkey::pb::access::v1 as pb;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::{CHANNEL, project};
use crate::code_keys::CodeKeys;
use crate::db::events as db;
use crate::device_events::apply::ACTOR as DEVICE;

/// Rows read per query.
pub const BATCH: i64 = 512;
/// Runs a stream may be behind the tail before it reads from the log instead.
const PUBLISHED_KEPT: usize = 256;
/// The longest the tail goes without looking, should an announcement be lost; and the
/// longest between two published runs.
const POLL: Duration = Duration::from_secs(1);

/// The shortest time between two reads: under load every commit is announced, and a
/// read per commit would cost the database more than the decisions themselves do; this
/// gathers a few milliseconds of commits into one read.
const GATHER: Duration = Duration::from_millis(10);

/// What the streams of a tail may receive, by how many streams want each part.
#[derive(Debug, Default)]
struct Interest {
    doors: HashMap<String, usize>,
    /// Streams that follow every door.
    everywhere: usize,
    decisions: usize,
}

/// A stream's part of its tail's interest, given back when dropped.
#[derive(Debug)]
pub struct Registration {
    interest: Arc<Mutex<Interest>>,
    doors: Option<Vec<String>>,
    decisions: bool,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut interest = lock(&self.interest);
        match &self.doors {
            Some(doors) => {
                for door in doors {
                    if let Some(count) = interest.doors.get_mut(door) {
                        *count -= 1;
                        if *count == 0 {
                            interest.doors.remove(door);
                        }
                    }
                }
            }
            None => interest.everywhere -= 1,
        }
        if self.decisions {
            interest.decisions -= 1;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counts only: a panic elsewhere cannot leave them half-changed.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A run of consecutive rows, as events.
#[derive(Debug)]
pub struct Batch {
    /// The row before the first of the run.
    pub after: i64,
    /// The last row of the run.
    pub last: i64,
    pub events: Vec<pb::Event>,
}

/// The tails of this replica, by tenant.
pub struct Tails {
    pool: DbPool,
    keys: CodeKeys,
    hub: Hub,
    tails: Mutex<HashMap<String, Weak<Tail>>>,
}

impl std::fmt::Debug for Tails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tails").finish_non_exhaustive()
    }
}

/// One tenant's tail; it stops when its last stream lets go of it.
#[derive(Debug)]
pub struct Tail {
    sender: broadcast::Sender<Arc<Batch>>,
    task: JoinHandle<()>,
    /// The last row published (-1 until the first read).
    published: Arc<AtomicI64>,
    interest: Arc<Mutex<Interest>>,
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tail {
    /// Counts a stream's `doors` (all when `None`) and whether it wants decisions, so the
    /// tail reads their rows. A stream registers before it subscribes and reads the log
    /// itself: rows the tail skipped before then are in that read.
    pub fn register(&self, doors: Option<Vec<String>>, decisions: bool) -> Registration {
        let mut interest = lock(&self.interest);
        match &doors {
            Some(doors) => {
                for door in doors {
                    *interest.doors.entry(door.clone()).or_default() += 1;
                }
            }
            None => interest.everywhere += 1,
        }
        if decisions {
            interest.decisions += 1;
        }
        Registration {
            interest: Arc::clone(&self.interest),
            doors,
            decisions,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.sender.subscribe()
    }

    pub fn published(&self) -> i64 {
        self.published.load(Ordering::Acquire)
    }
}

impl Tails {
    pub fn new(pool: DbPool, keys: CodeKeys, hub: Hub) -> Self {
        Self {
            pool,
            keys,
            hub,
            tails: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's tail, started if no stream of this replica follows the tenant yet.
    pub fn tail(&self, tenant_id: &str) -> Arc<Tail> {
        let mut tails = self
            .tails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tail) = tails.get(tenant_id).and_then(Weak::upgrade) {
            return tail;
        }
        tails.retain(|_, tail| tail.strong_count() > 0);
        let (sender, _) = broadcast::channel(PUBLISHED_KEPT);
        let published = Arc::new(AtomicI64::new(-1));
        let interest = Arc::new(Mutex::new(Interest::default()));
        let task = tokio::spawn(follow(
            Reader {
                pool: self.pool.clone(),
                keys: self.keys.clone(),
                tenant: tenant_id.to_owned(),
                sender: sender.clone(),
                interest: Arc::clone(&interest),
            },
            self.hub.clone(),
            Arc::clone(&published),
        ));
        let tail = Arc::new(Tail {
            sender,
            task,
            published,
            interest,
        });
        tails.insert(tenant_id.to_owned(), Arc::downgrade(&tail));
        tail
    }
}

/// What the tail's task reads with.
struct Reader {
    pool: DbPool,
    keys: CodeKeys,
    tenant: String,
    sender: broadcast::Sender<Arc<Batch>>,
    interest: Arc<Mutex<Interest>>,
}

/// Where the tail stands.
struct Progress {
    /// Read up to here.
    read: i64,
    /// The last run published ended here: the next continues from it.
    published: i64,
    published_at: tokio::time::Instant,
}

/// Reads and publishes the tenant's new rows until aborted.
async fn follow(reader: Reader, hub: Hub, published: Arc<AtomicI64>) {
    let mut news = hub.subscribe();
    let mut progress = None;
    loop {
        let started = tokio::time::Instant::now();
        match reader.read(progress.take()).await {
            Ok(now) => {
                published.store(now.published, Ordering::Release);
                progress = Some(now);
            }
            Err((kept, error)) => {
                progress = kept;
                tracing::warn!(%error, tenant = %reader.tenant, "reading new events failed; trying again");
            }
        }
        let wake = tokio::time::Instant::now() + POLL;
        wait_for(&mut news, CHANNEL, &reader.tenant, wake).await;
        tokio::time::sleep_until(started + GATHER).await;
    }
}

impl Reader {
    /// Reads the rows after `progress` up to the head, within the streams' interest, and
    /// publishes them; starts at the head the first time.
    async fn read(
        &self,
        progress: Option<Progress>,
    ) -> Result<Progress, (Option<Progress>, crate::error::Error)> {
        let mut conn = match self.pool.get().await {
            Ok(conn) => conn,
            Err(error) => return Err((progress, error.into())),
        };
        let head = match db::head(&mut conn, &self.tenant).await {
            Ok(head) => head,
            Err(error) => return Err((progress, error.into())),
        };
        let Some(mut progress) = progress else {
            return Ok(Progress {
                read: head,
                published: head,
                published_at: tokio::time::Instant::now(),
            });
        };
        while progress.read < head {
            let (doors, decisions) = {
                let interest = lock(&self.interest);
                let doors = (interest.everywhere == 0)
                    .then(|| interest.doors.keys().cloned().collect::<Vec<_>>());
                (doors, interest.decisions > 0)
            };
            let scope = db::Scope {
                upto: Some(head),
                doors: doors.as_deref(),
                decisions,
            };
            let rows = match doors.as_ref().is_some_and(Vec::is_empty) {
                // No stream follows any door: nothing to read.
                true => Vec::new(),
                false => {
                    match db::after(&mut conn, &self.tenant, progress.read, BATCH, DEVICE, scope)
                        .await
                    {
                        Ok(rows) => rows,
                        Err(error) => return Err((Some(progress), error.into())),
                    }
                }
            };
            let end = match rows.last() {
                Some(row) if rows.len() as i64 == BATCH => row.sequence,
                _ => head,
            };
            let events: Vec<pb::Event> = rows
                .iter()
                .flat_map(|row| project::project(row, &self.tenant, &self.keys))
                .collect();
            progress.read = end;
            if !events.is_empty() {
                self.publish(&mut progress, events);
            }
        }
        // What was read without events moves the streams' cursors on once a second.
        if progress.published < progress.read && progress.published_at.elapsed() >= POLL {
            self.publish(&mut progress, Vec::new());
        }
        Ok(progress)
    }

    /// Publishes the run from the last published one to what was read.
    fn publish(&self, progress: &mut Progress, events: Vec<pb::Event>) {
        // No stream listening is fine: the next one starts from the log.
        let _ = self.sender.send(Arc::new(Batch {
            after: progress.published,
            last: progress.read,
            events,
        }));
        progress.published = progress.read;
        progress.published_at = tokio::time::Instant::now();
    }
}
