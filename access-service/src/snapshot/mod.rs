//! The in-memory view of each tenant that decisions read: doors, users, memberships,
//! per-door rule indexes and per-door active access codes. A tenant is loaded on first use and dropped whenever
//! PostgreSQL notifies `latchkey_access_changes` with its id (triggers on every table
//! the snapshot reads), so every replica sees a change as soon as it commits. While the
//! notification connection is down nothing is cached: each decision reads fresh data.

mod load;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use latchkey::db::DbPool;
use latchkey::error::ApiError;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use uuid::Uuid;

use crate::decision::{DoorCodes, DoorRules, DoorView, MembershipView, UserView};

pub use load::door_kind;

/// The channel the change triggers notify.
pub const CHANNEL: &str = "latchkey_access_changes";

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

/// One tenant's access data at one moment.
#[derive(Debug)]
pub struct TenantSnapshot {
    pub tenant_enabled: bool,
    pub doors: HashMap<Uuid, DoorEntry>,
    /// Door ids in ascending order, for stable pages.
    pub door_order: Vec<Uuid>,
    pub users: HashMap<Uuid, UserEntry>,
    pub users_by_external_id: HashMap<String, Uuid>,
    pub memberships: HashMap<Uuid, Vec<MembershipView>>,
    pub rules: HashMap<Uuid, DoorRules>,
    /// Each door's ACTIVE access codes (keyed hashes only).
    pub codes: HashMap<Uuid, DoorCodes>,
    no_rules: DoorRules,
    no_codes: DoorCodes,
}

impl Default for TenantSnapshot {
    fn default() -> Self {
        Self {
            tenant_enabled: true,
            doors: HashMap::new(),
            door_order: Vec::new(),
            users: HashMap::new(),
            users_by_external_id: HashMap::new(),
            memberships: HashMap::new(),
            rules: HashMap::new(),
            codes: HashMap::new(),
            no_rules: DoorRules::build(Vec::new()),
            no_codes: DoorCodes::default(),
        }
    }
}

impl TenantSnapshot {
    pub fn rules_of(&self, door: &Uuid) -> &DoorRules {
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

#[derive(Debug, Default)]
struct Entries {
    snapshots: HashMap<String, Arc<TenantSnapshot>>,
    /// Bumped on every invalidation, so a load that raced a change is not kept.
    generations: HashMap<String, u64>,
    epoch: u64,
}

/// Every tenant's snapshot, shared by all requests of a process.
pub struct SnapshotCache {
    pool: DbPool,
    entries: RwLock<Entries>,
    listening: AtomicBool,
    loads: Mutex<u64>,
    /// One load at a time per tenant: requests that miss together wait for the one
    /// load instead of each reading a large tenant (and exhausting the pool).
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
        Arc::new(Self {
            pool,
            entries: RwLock::new(Entries::default()),
            listening: AtomicBool::new(false),
            loads: Mutex::new(0),
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

    fn generation(&self, tenant: &str) -> (u64, u64) {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        (
            entries.epoch,
            entries.generations.get(tenant).copied().unwrap_or(0),
        )
    }

    fn cached(&self, tenant: &str) -> Option<Arc<TenantSnapshot>> {
        if !self.listening.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.snapshots.get(tenant).map(Arc::clone)
    }

    /// The tenant's snapshot, loading it when it is not cached.
    pub async fn get(&self, tenant: &str) -> Result<Arc<TenantSnapshot>, ApiError> {
        if let Some(snapshot) = self.cached(tenant) {
            return Ok(snapshot);
        }
        let gate = {
            let mut loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(loading.entry(tenant.to_owned()).or_default())
        };
        let _turn = gate.lock().await;
        // The load this request waited for may have filled the cache.
        if let Some(snapshot) = self.cached(tenant) {
            return Ok(snapshot);
        }
        let before = self.generation(tenant);
        let snapshot = {
            let mut conn = self.pool.get().await?;
            Arc::new(load::tenant(&mut conn, tenant).await?)
        };
        if let Ok(mut loads) = self.loads.lock() {
            *loads += 1;
        }
        if self.listening.load(Ordering::Acquire) {
            let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
            let now = (
                entries.epoch,
                entries.generations.get(tenant).copied().unwrap_or(0),
            );
            if now == before {
                entries
                    .snapshots
                    .insert(tenant.to_owned(), Arc::clone(&snapshot));
            }
        }
        Ok(snapshot)
    }

    pub fn invalidate(&self, tenant: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.snapshots.remove(tenant);
        *entries.generations.entry(tenant.to_owned()).or_default() += 1;
    }

    pub fn invalidate_all(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.snapshots.clear();
        entries.epoch += 1;
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
        let (sender, mut notifications) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(note)) => {
                        if sender.send(note.payload().to_owned()).is_err() {
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
        // Changes made while nobody listened are unknown: start from nothing.
        self.invalidate_all();
        self.listening.store(true, Ordering::Release);
        tracing::debug!("listening for access data changes");
        while let Some(tenant) = notifications.recv().await {
            self.invalidate(&tenant);
        }
        drop(client);
        match driver.await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }
}
