//! What every handler shares.

use std::sync::Arc;

use latchkey::db::DbPool;
use tokio::sync::{Notify, watch};

#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub accounts: crate::accounts::Accounts,
    /// The longest a gateway-relayed TTLock call may take.
    pub remote_timeout: chrono::Duration,
    /// Battery percentage at or below which a lock is LOW_BATTERY.
    pub low_battery_percent: i32,
    /// Wakes the callback publisher.
    pub inbox_wake: Arc<Notify>,
    /// Database announcements: new device events, freed gateway turns.
    pub announcements: latchkey::announcements::Hub,
    /// Turns true when the server begins to shut down: long-lived streams end.
    pub shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("low_battery_percent", &self.low_battery_percent)
            .finish_non_exhaustive()
    }
}
