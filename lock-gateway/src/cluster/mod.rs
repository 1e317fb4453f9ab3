//! What lock-gateway replicas share through PostgreSQL, so that however many run, TTLock
//! sees one well-behaved client per account:
//!
//! - [`turns`]: at most one relayed command per gateway (or gateway-less lock) in flight
//!   across all replicas, in arrival order, held under a lease a dead replica lets lapse;
//! - [`pace`]: one request schedule per TTLock account, so the replicas' sum stays
//!   within `TTLOCK_REQUESTS_PER_SECOND`;
//! - [`tokens`]: one token per account, renewed by one replica at a time.

pub mod pace;
pub mod tokens;
pub mod turns;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use latchkey::db::DbPool;
use sha2::{Digest as _, Sha256};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::ttlock::AccountConfig;
use crate::ttlock::discipline::{Coordinator, SerialKey, Turn};
use crate::ttlock::error::Result;
use latchkey::announcements::Hub;

/// The replicas' shared discipline, as seen from this replica.
#[derive(Clone)]
pub struct Cluster {
    pool: DbPool,
    turns: Arc<turns::Turns>,
}

impl Cluster {
    /// `lease`: how long a turn outlives the last sign of life of its replica.
    pub fn new(pool: DbPool, hub: Hub, lease: Duration) -> Self {
        Self {
            turns: Arc::new(turns::Turns::new(pool.clone(), hub, lease)),
            pool,
        }
    }

    /// Where the client of `account` takes its pace and turns.
    pub fn coordinator(
        &self,
        account: &AccountConfig,
        requests_per_second: f64,
        burst: u32,
    ) -> Arc<dyn Coordinator> {
        Arc::new(AccountCoordinator {
            host: account.base_url.trim_end_matches('/').to_owned(),
            pace: pace::Pace::new(
                self.pool.clone(),
                account_key(account),
                requests_per_second,
                burst,
            ),
            turns: Arc::clone(&self.turns),
        })
    }

    /// Renews this replica's leases until aborted.
    pub fn spawn_heartbeat(&self) -> JoinHandle<()> {
        tokio::spawn(Arc::clone(&self.turns).heartbeat())
    }
}

/// One key per TTLock account (host, application and login), not per latchkey
/// account: two tenants registering the same TTLock login share its limit. Hashed, so
/// the login is not copied into another table.
fn account_key(account: &AccountConfig) -> String {
    let mut digest = Sha256::new();
    for part in [
        account.base_url.trim_end_matches('/'),
        &account.client_id,
        &account.username,
    ] {
        digest.update(part.len().to_be_bytes());
        digest.update(part.as_bytes());
    }
    hex::encode(digest.finalize())
}

#[derive(Debug)]
struct AccountCoordinator {
    /// Gateway and lock ids are unique per TTLock host.
    host: String,
    pace: pace::Pace,
    turns: Arc<turns::Turns>,
}

impl Coordinator for AccountCoordinator {
    fn pace(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.pace.wait())
    }

    fn enter(&self, key: SerialKey, deadline: Instant) -> BoxFuture<'_, Result<Turn>> {
        let key = match key {
            SerialKey::Gateway(id) => format!("{}/gateway/{id}", self.host),
            SerialKey::Lock(id) => format!("{}/lock/{id}", self.host),
        };
        Box::pin(async move { Arc::clone(&self.turns).enter(key, deadline).await })
    }
}

impl From<diesel::result::Error> for crate::ttlock::Error {
    fn from(error: diesel::result::Error) -> Self {
        Self::Coordination(error.to_string())
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("turns", &self.turns)
            .finish_non_exhaustive()
    }
}
