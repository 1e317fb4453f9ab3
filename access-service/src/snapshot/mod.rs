//! The in-memory view of each tenant that decisions read: doors, users, memberships,
//! per-door rule indexes and per-door active access codes. A tenant is loaded on first
//! use. Triggers on every table the snapshot reads notify `latchkey_access_parts` with
//! the tenant and the part that changed, so every replica sees a change as soon as it
//! commits: that part is read again, in one transaction, and the rest shared with the
//! snapshot before (a lock's status report rereads the doors, a rule's edit that rule,
//! patched into its door's index, never a large tenant whole). Decisions keep the snapshot before while the read
//! runs, for at most the stale limit. While the notification connection is down nothing
//! is cached: each decision reads fresh data.

mod change;
mod load;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use latchkey::db::DbPool;
use latchkey::error::ApiError;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tracing::Instrument;
use uuid::Uuid;

use crate::decision::{DoorCodes, DoorRules, DoorView, MembershipView, UserView};

pub use change::Change;
use change::Stale;
pub use load::door_kind;

/// The channel the change triggers notify with the part changed. (They also notify
/// `latchkey_access_changes` with the bare tenant id, which earlier releases follow.)
pub const CHANNEL: &str = "latchkey_access_parts";

#[derive(Debug, Clone)]
pub struct DoorEntry {
    pub view: DoorView,
    pub property_id: Uuid,
    pub name: String,
    pub door_type: String,
    pub location: String,
    /// The zone the door's rules are judged in.
    pub time_zone: String,
    pub lock: Option<(Uuid, i64)>,
    pub status: String,
    pub status_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct UserEntry {
    pub view: UserView,
    pub external_id: Option<String>,
    pub name: String,
    pub email: String,
}

/// One tenant's access data at one moment. Each part is shared, so a snapshot rebuilt
/// after a change to one part copies pointers to the others, not their contents.
#[derive(Debug)]
pub struct TenantSnapshot {
    pub tenant_enabled: bool,
    pub doors: Arc<HashMap<Uuid, DoorEntry>>,
    /// Door ids in ascending order, for stable pages.
    pub door_order: Arc<Vec<Uuid>>,
    pub users: Arc<HashMap<Uuid, UserEntry>>,
    pub users_by_external_id: Arc<HashMap<String, Uuid>>,
    pub memberships: Arc<HashMap<Uuid, Vec<MembershipView>>>,
    pub rules: Arc<HashMap<Uuid, Arc<DoorRules>>>,
    /// Each door's ACTIVE access codes (keyed hashes only).
    pub codes: Arc<HashMap<Uuid, DoorCodes>>,
    no_rules: Arc<DoorRules>,
    no_codes: Arc<DoorCodes>,
}

impl Default for TenantSnapshot {
    fn default() -> Self {
        Self {
            tenant_enabled: true,
            doors: Arc::default(),
            door_order: Arc::default(),
            users: Arc::default(),
            users_by_external_id: Arc::default(),
            memberships: Arc::default(),
            rules: Arc::default(),
            codes: Arc::default(),
            no_rules: Arc::new(DoorRules::build(Vec::new())),
            no_codes: Arc::default(),
        }
    }
}

impl TenantSnapshot {
    /// A snapshot sharing every part with this one.
    fn share(&self) -> Self {
        Self {
            tenant_enabled: self.tenant_enabled,
            doors: Arc::clone(&self.doors),
            door_order: Arc::clone(&self.door_order),
            users: Arc::clone(&self.users),
            users_by_external_id: Arc::clone(&self.users_by_external_id),
            memberships: Arc::clone(&self.memberships),
            rules: Arc::clone(&self.rules),
            codes: Arc::clone(&self.codes),
            no_rules: Arc::clone(&self.no_rules),
            no_codes: Arc::clone(&self.no_codes),
        }
    }

    /// The rule index of `door`, shared with later snapshots until its rules change.
    pub fn door_rules(&self, door: &Uuid) -> &Arc<DoorRules> {
        self.rules.get(door).unwrap_or(&self.no_rules)
    }

    pub fn codes_of(&self, door: &Uuid) -> &DoorCodes {
        self.codes.get(door).unwrap_or(&self.no_codes)
    }

    pub fn memberships_of(&self, user: &Uuid) -> &[MembershipView] {
        self.memberships
            .get(user)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// A user named by external id, else by id.
    pub fn resolve_user(&self, name: &str) -> Option<Uuid> {
        self.users_by_external_id.get(name).copied().or_else(|| {
            Uuid::try_parse(name)
                .ok()
                .filter(|id| self.users.contains_key(id))
        })
    }
}

/// How long decisions may go on deciding with a snapshot some of whose parts have
/// changed, while those parts are read again behind them. Past it they wait for the
/// read, so no replica decides on data older than this behind the changes it has been
/// told of.
pub const STALE_LIMIT: Duration = Duration::from_millis(500);

/// The parts changed since a snapshot was read, and when the oldest change arrived.
#[derive(Debug, Default)]
struct Unread {
    stale: Stale,
    since: Option<Instant>,
}

impl Unread {
    /// Adds a change to parts (not [`Change::Everything`]) that arrived at `now`.
    fn mark(&mut self, change: Change, now: Instant) {
        self.stale.mark(change);
        self.since.get_or_insert(now);
    }
}

/// A cached snapshot and what has changed since it was read.
#[derive(Debug)]
struct Cached {
    snapshot: Arc<TenantSnapshot>,
    unread: Unread,
    /// Rereading failed: decisions wait for a read rather than use this one.
    strict: bool,
}

/// The changes seen while a tenant is read: they may have committed after the read
/// began, so the snapshot read is cached with them marked stale.
#[derive(Debug, Default)]
struct Seen {
    unread: Unread,
    /// A change not confined to parts: what was read is not kept.
    everything: bool,
}

#[derive(Debug, Default)]
struct Entries {
    snapshots: HashMap<String, Cached>,
    /// Tenants being read, and what changed since each read began.
    reading: HashMap<String, Seen>,
}

/// What the cache holds for a decision.
enum Lookup {
    Fresh(Arc<TenantSnapshot>),
    /// Changed, but recently: usable while the changes are read again.
    Usable(Arc<TenantSnapshot>),
    /// Nothing a decision may use: it waits for a read.
    Wait,
}

/// Every tenant's snapshot, shared by all requests of a process.
pub struct SnapshotCache {
    pool: DbPool,
    entries: RwLock<Entries>,
    listening: AtomicBool,
    loads: Mutex<u64>,
    notifications: AtomicU64,
    stale_limit: Duration,
    /// One read at a time per tenant: requests that miss together wait for the one
    /// read instead of each reading a large tenant (and exhausting the pool).
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for SnapshotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotCache")
            .field("listening", &self.listening.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SnapshotCache {
    pub fn new(pool: DbPool) -> Arc<Self> {
        Self::with_stale_limit(pool, STALE_LIMIT)
    }

    /// A cache whose decisions use a changed snapshot for at most `stale_limit` while
    /// it is read again.
    pub fn with_stale_limit(pool: DbPool, stale_limit: Duration) -> Arc<Self> {
        Arc::new(Self {
            pool,
            entries: RwLock::new(Entries::default()),
            listening: AtomicBool::new(false),
            loads: Mutex::new(0),
            notifications: AtomicU64::new(0),
            stale_limit,
            loading: Mutex::new(HashMap::new()),
        })
    }

    /// Whether change notifications are followed (and so snapshots are cached).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// How many times a tenant was read from the database (for tests and metrics).
    pub fn loads(&self) -> u64 {
        self.loads.lock().map(|n| *n).unwrap_or(0)
    }

    /// How many change notifications have been applied (for tests and metrics).
    pub fn notifications(&self) -> u64 {
        self.notifications.load(Ordering::Acquire)
    }

    fn lookup(&self, tenant: &str) -> Lookup {
        if !self.listening.load(Ordering::Acquire) {
            return Lookup::Wait;
        }
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let Some(cached) = entries.snapshots.get(tenant) else {
            return Lookup::Wait;
        };
        if cached.unread.stale.is_fresh() {
            return Lookup::Fresh(Arc::clone(&cached.snapshot));
        }
        match cached.unread.since {
            Some(since) if !cached.strict && since.elapsed() < self.stale_limit => {
                Lookup::Usable(Arc::clone(&cached.snapshot))
            }
            _ => Lookup::Wait,
        }
    }

    /// The tenant's read gate.
    fn gate(&self, tenant: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        // Asked on every decision while a change is read: the tenant's key is copied
        // only the first time.
        if let Some(gate) = loading.get(tenant) {
            return Arc::clone(gate);
        }
        Arc::clone(loading.entry(tenant.to_owned()).or_default())
    }

    /// The tenant's snapshot. A fresh one is used as it is; one whose changes arrived
    /// within [`STALE_LIMIT`] is used while they are read again behind it; otherwise
    /// the decision waits for its stale parts, or the whole tenant, to be read.
    pub async fn get(self: &Arc<Self>, tenant: &str) -> Result<Arc<TenantSnapshot>, ApiError> {
        match self.lookup(tenant) {
            Lookup::Fresh(snapshot) => return Ok(snapshot),
            Lookup::Usable(snapshot) => {
                self.reread_behind(tenant);
                return Ok(snapshot);
            }
            Lookup::Wait => {}
        }
        let gate = self.gate(tenant);
        let turn = gate.lock().await;
        // The read this request waited for may have filled the cache.
        match self.lookup(tenant) {
            Lookup::Fresh(snapshot) => Ok(snapshot),
            Lookup::Usable(snapshot) => {
                drop(turn);
                self.reread_behind(tenant);
                Ok(snapshot)
            }
            Lookup::Wait => self.read(tenant).await,
        }
    }

    /// Rereads the tenant's stale parts on a task of their own, unless a read of the
    /// tenant is already under way.
    fn reread_behind(self: &Arc<Self>, tenant: &str) {
        let Ok(turn) = self.gate(tenant).try_lock_owned() else {
            return;
        };
        let cache = Arc::clone(self);
        let tenant = tenant.to_owned();
        let span = tracing::debug_span!("snapshot reread", tenant = %tenant);
        tokio::spawn(
            async move {
                let _turn = turn;
                if !matches!(cache.lookup(&tenant), Lookup::Fresh(_)) {
                    cache.reread_or_wait(&tenant).await;
                }
            }
            .instrument(span),
        );
    }

    /// Reads the tenant under its gate; if that fails, decisions wait for a read that
    /// does not.
    async fn reread_or_wait(&self, tenant: &str) {
        if let Err(error) = self.read(tenant).await {
            tracing::warn!(%error, "rereading changed access data failed; decisions wait for it");
            let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
            if let Some(cached) = entries.snapshots.get_mut(tenant) {
                cached.strict = true;
            }
        }
    }

    /// After a change through this replica commits: marks what it touched and returns
    /// once this replica decides with it, so the caller reads its own write.
    pub async fn changed(&self, tenant: &str, changes: impl IntoIterator<Item = Change>) {
        self.invalidate(tenant, changes);
        // Any read under way began before the change and keeps it marked.
        let gate = self.gate(tenant);
        let _turn = gate.lock().await;
        let stale = {
            let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
            entries
                .snapshots
                .get(tenant)
                .is_some_and(|cached| !cached.unread.stale.is_fresh())
        };
        if stale && self.listening.load(Ordering::Acquire) {
            self.reread_or_wait(tenant).await;
        }
    }

    /// Reads the tenant's stale parts, or the whole tenant when nothing of it is
    /// cached, and caches the result. Call holding the tenant's gate.
    async fn read(&self, tenant: &str) -> Result<Arc<TenantSnapshot>, ApiError> {
        let base = self.begin_read(tenant);
        let span = tracing::debug_span!(
            "snapshot read",
            tenant = %tenant,
            whole = base.is_none(),
            stale = ?base.as_ref().map(|(_, stale)| stale),
        );
        let read = async {
            let mut conn = self.pool.get().await?;
            Ok::<_, ApiError>(match &base {
                Some((old, stale)) => load::refresh(&mut conn, tenant, old, stale).await?,
                None => load::tenant(&mut conn, tenant).await?,
            })
        }
        .instrument(span)
        .await;
        let seen = {
            let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
            entries.reading.remove(tenant).unwrap_or_default()
        };
        let snapshot = Arc::new(read?);
        if let Ok(mut loads) = self.loads.lock() {
            *loads += 1;
        }
        // Changes keep arriving while a large tenant is read; what was read is kept with
        // them marked, so the next decision rereads those parts, not the tenant.
        if self.listening.load(Ordering::Acquire) && !seen.everything {
            let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
            entries.snapshots.insert(
                tenant.to_owned(),
                Cached {
                    snapshot: Arc::clone(&snapshot),
                    unread: seen.unread,
                    strict: false,
                },
            );
        }
        Ok(snapshot)
    }

    /// Starts watching `tenant` for changes while it is read; returns its cached
    /// snapshot and the parts of it that are stale, if there is one.
    fn begin_read(&self, tenant: &str) -> Option<(Arc<TenantSnapshot>, Stale)> {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.reading.insert(tenant.to_owned(), Seen::default());
        if !self.listening.load(Ordering::Acquire) {
            return None;
        }
        entries
            .snapshots
            .get(tenant)
            .map(|cached| (Arc::clone(&cached.snapshot), cached.unread.stale.clone()))
    }

    /// Marks what `changes` touched in the tenant's snapshot as stale, all at once, or
    /// drops the snapshot for [`Change::Everything`].
    pub fn invalidate(&self, tenant: &str, changes: impl IntoIterator<Item = Change>) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        for change in changes {
            Self::mark(&mut entries, tenant, change);
        }
    }

    fn mark(entries: &mut Entries, tenant: &str, change: Change) {
        let now = Instant::now();
        let seen = entries.reading.get_mut(tenant);
        if change == Change::Everything {
            if let Some(seen) = seen {
                seen.everything = true;
            }
            entries.snapshots.remove(tenant);
            return;
        }
        if let Some(seen) = seen {
            seen.unread.mark(change, now);
        }
        if let Some(cached) = entries.snapshots.get_mut(tenant) {
            cached.unread.mark(change, now);
        }
    }

    pub fn invalidate_all(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.snapshots.clear();
        for seen in entries.reading.values_mut() {
            seen.everything = true;
        }
    }

    /// Follows change notifications until aborted, reconnecting when the connection is
    /// lost. Caching is on only while the listener is connected.
    pub async fn listen(self: Arc<Self>, database_url: SecretString) {
        loop {
            if let Err(error) = self.listen_once(&database_url).await {
                tracing::warn!(%error, "change notifications lost; decisions read fresh data until they return");
            }
            self.listening.store(false, Ordering::Release);
            self.invalidate_all();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn listen_once(&self, database_url: &SecretString) -> Result<(), tokio_postgres::Error> {
        let (client, mut connection) =
            tokio_postgres::connect(database_url.expose_secret(), tokio_postgres::NoTls).await?;
        let (sender, mut notifications) = mpsc::unbounded_channel::<Vec<String>>();
        // PostgreSQL sends a transaction's notifications together; the driver hands on
        // everything that has arrived as one batch, and a batch is applied under one
        // lock, so no decision sees one part of such a transaction without the others.
        let driver = tokio::spawn(async move {
            loop {
                let mut batch = Vec::new();
                let open = std::future::poll_fn(|cx| {
                    loop {
                        match connection.poll_message(cx) {
                            Poll::Ready(Some(Ok(AsyncMessage::Notification(note)))) => {
                                batch.push(note.payload().to_owned());
                            }
                            Poll::Ready(Some(Ok(_))) => {}
                            Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                            Poll::Ready(None) => return Poll::Ready(Ok(false)),
                            Poll::Pending if batch.is_empty() => return Poll::Pending,
                            Poll::Pending => return Poll::Ready(Ok(true)),
                        }
                    }
                })
                .await?;
                if (!batch.is_empty() && sender.send(batch).is_err()) || !open {
                    return Ok(());
                }
            }
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        // Changes made while nobody listened are unknown: start from nothing.
        self.invalidate_all();
        self.listening.store(true, Ordering::Release);
        tracing::debug!("listening for access data changes");
        while let Some(batch) = notifications.recv().await {
            let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
            for payload in &batch {
                let (tenant, change) = Change::parse(payload);
                Self::mark(&mut entries, tenant, change);
            }
            self.notifications
                .fetch_add(batch.len() as u64, Ordering::Release);
        }
        drop(client);
        match driver.await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }
}
