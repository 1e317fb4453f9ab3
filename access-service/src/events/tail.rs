//! One reader of the log per tenant per replica, shared by every stream of the tenant on
//! that replica: it reads each new run of rows once, when PostgreSQL announces it (or
//! at the latest a second later), projects it, and publishes it to the streams. A
//! thousand streams of one tenant cost one query per commit, not a thousand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use latchkey::announcements::{Hub, wait_for};
use latchkey::db::DbPool;
use latchkey::pb::access::v1 as pb;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::{CHANNEL, cursor, project};
use crate::code_keys::CodeKeys;
use crate::db::events as db;
use crate::device_events::apply::ACTOR as DEVICE;

/// Rows read per query.
pub const BATCH: i64 = 512;
/// Runs a stream may be behind the tail before it reads from the log instead.
const PUBLISHED_KEPT: usize = 256;
/// The longest the tail goes without looking, should an announcement be lost.
const POLL: Duration = Duration::from_secs(1);

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
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tail {
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
        let task = tokio::spawn(follow(
            self.pool.clone(),
            self.keys.clone(),
            self.hub.clone(),
            tenant_id.to_owned(),
            sender.clone(),
            Arc::clone(&published),
        ));
        let tail = Arc::new(Tail {
            sender,
            task,
            published,
        });
        tails.insert(tenant_id.to_owned(), Arc::downgrade(&tail));
        tail
    }
}

/// Reads and publishes the tenant's new rows until aborted.
async fn follow(
    pool: DbPool,
    keys: CodeKeys,
    hub: Hub,
    tenant: String,
    sender: broadcast::Sender<Arc<Batch>>,
    published: Arc<AtomicI64>,
) {
    let mut news = hub.subscribe();
    let mut last = None;
    loop {
        match read(&pool, &keys, &tenant, &sender, last).await {
            Ok(read_to) => {
                last = Some(read_to);
                published.store(read_to, Ordering::Release);
            }
            Err(error) => {
                tracing::warn!(%error, tenant = %tenant, "reading new events failed; trying again")
            }
        }
        let wake = tokio::time::Instant::now() + POLL;
        wait_for(&mut news, CHANNEL, &tenant, wake).await;
    }
}

/// Publishes every row after `last` (the head, the first time); returns the last read.
async fn read(
    pool: &DbPool,
    keys: &CodeKeys,
    tenant: &str,
    sender: &broadcast::Sender<Arc<Batch>>,
    last: Option<i64>,
) -> Result<i64, crate::error::Error> {
    let mut conn = pool.get().await?;
    let mut last = match last {
        Some(last) => last,
        None => db::bounds(&mut conn, tenant).await?.head,
    };
    loop {
        let rows = db::after(&mut conn, tenant, last, BATCH, DEVICE).await?;
        let Some(end) = rows.last().map(|row| row.sequence) else {
            return Ok(last);
        };
        let events = rows
            .iter()
            .flat_map(|row| {
                project::project(row, tenant, &cursor::encode(keys, tenant, row.sequence))
            })
            .collect();
        // No stream listening is fine: the next one starts from the log.
        let _ = sender.send(Arc::new(Batch {
            after: last,
            last: end,
            events,
        }));
        last = end;
        if (rows.len() as i64) < BATCH {
            return Ok(last);
        }
    }
}
