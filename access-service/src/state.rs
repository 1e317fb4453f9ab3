//! What every handler shares.

use std::sync::Arc;

use latchkey::clock::SharedClock;
use latchkey::db::DbPool;
use tokio::sync::Notify;

use crate::audit::writer::AuditWriter;
use crate::code_keys::CodeKeys;
use crate::gateway::GatewayClient;
use crate::snapshot::{Change, SnapshotCache};

#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub gateway: GatewayClient,
    pub audit: AuditWriter,
    pub snapshots: std::sync::Arc<SnapshotCache>,
    /// What code windows, lead times and expiry are judged by.
    pub clock: SharedClock,
    pub code_keys: CodeKeys,
    /// Wakes provisioning when an intent is written.
    pub provisioning_wake: Arc<Notify>,
    /// Hours before a window opens that its code is written to the lock.
    pub lead_hours: u32,
    /// Unlocks waiting for lock-gateway, recorded as unconfirmed if shutdown abandons them.
    pub actuations: crate::actuations::Actuations,
}

impl AppState {
    /// After an administrative change to `tenant_id` commits: this replica decides with
    /// it at once, so a caller reads its own write; the others follow the change
    /// notification.
    pub async fn changed(&self, tenant_id: &str, changes: impl IntoIterator<Item = Change>) {
        self.snapshots.changed(tenant_id, changes).await;
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}
