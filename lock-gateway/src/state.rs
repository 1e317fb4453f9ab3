//! What every handler shares.

use latchkey::db::DbPool;

#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub accounts: crate::accounts::Accounts,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}
