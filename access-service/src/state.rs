//! What every handler shares.

use latchkey::db::DbPool;

use crate::audit::writer::AuditWriter;
use crate::gateway::GatewayClient;
use crate::snapshot::SnapshotCache;

#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub gateway: GatewayClient,
    pub audit: AuditWriter,
    pub snapshots: std::sync::Arc<SnapshotCache>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}
