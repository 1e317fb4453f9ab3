//! A TTLock cloud simulator: a real HTTP server speaking the v3 API as the reference
//! (§12.2) describes, with a stateful model of accounts, gateways, locks, passcodes and
//! records, callbacks, an injectable clock, and faults switchable at run time.
//!
//! Tests start it with [`Simulator::start`]; developers run the `ttlock-sim` binary.

mod callback;
pub mod faults;
pub mod fixture;
mod http;
pub mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use callback::callback_form;
pub use faults::{Faults, InjectedFailure};
pub use fixture::{Fixture, FixtureAccount, FixtureGateway, FixtureLock};
pub use state::{SimPasscode, SimRecord, SimStats};

use crate::ttlock::clock::{self, SharedClock};

/// Default listen address of the binary.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8089";

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub fixture: Fixture,
    /// The simulated cloud's clock: token expiry, `date` checks, record times.
    pub clock: SharedClock,
    /// `expires_in` of issued tokens (TTLock: 90 days).
    pub token_lifetime: Duration,
    /// Where callbacks go; none when absent.
    pub callback_url: Option<String>,
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            fixture: Fixture::default_fixture(),
            clock: clock::system(),
            token_lifetime: Duration::from_secs(7_776_000),
            callback_url: None,
            faults: Faults::default(),
        }
    }
}

pub(crate) struct Shared {
    state: Mutex<state::State>,
    clock: SharedClock,
    http: reqwest::Client,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, state::State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Starts on `127.0.0.1:0`.
    pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::start_on(listener, config)
    }

    /// Starts on a bound listener.
    pub fn start_on(listener: TcpListener, config: SimConfig) -> std::io::Result<SimHandle> {
        let addr = listener.local_addr()?;
        let token_lifetime = i64::try_from(config.token_lifetime.as_secs()).unwrap_or(i64::MAX);
        let mut state = state::State::new(config.fixture, token_lifetime, config.faults);
        state.callback_url = config.callback_url;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            clock: config.clock,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(std::io::Error::other)?,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let router = http::router(shared.clone());
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "ttlock simulator stopped");
            }
        });
        Ok(SimHandle {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A running simulator: its address, its state, its fault switches.
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, the client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn accounts(&self) -> Vec<FixtureAccount> {
        self.shared.lock().accounts().to_vec()
    }

    /// The `RegisterAccount` request for the first seeded account, as an operator would
    /// send it to lock-gateway to connect this simulated cloud.
    pub fn register_request(&self) -> latchkey::pb::gateway::v1::RegisterAccountRequest {
        let account = self.accounts().into_iter().next().unwrap_or_default();
        latchkey::pb::gateway::v1::RegisterAccountRequest {
            name: "Front desk".into(),
            base_url: self.base_url(),
            client_id: account.client_id,
            client_secret: account.client_secret,
            username: account.username,
            password: account.password,
            request_id: String::new(),
        }
    }

    pub fn faults(&self) -> Faults {
        self.shared.lock().faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// Changes some fault switches in place.
    pub fn update_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.shared.lock().faults);
    }

    /// Every issued access token now answers 10004.
    pub fn revoke_access_tokens(&self) {
        self.shared.lock().revoke_access_tokens();
    }

    /// Every refresh token now answers 10011.
    pub fn revoke_refresh_tokens(&self) {
        self.shared.lock().revoke_refresh_tokens();
    }

    pub fn set_callback_url(&self, url: Option<String>) {
        self.shared.lock().callback_url = url;
    }

    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats.clone()
    }

    pub fn passcodes(&self, lock_id: i64) -> Vec<SimPasscode> {
        self.shared.lock().passcodes(lock_id)
    }

    /// Records of a lock, oldest first.
    pub fn records(&self, lock_id: i64) -> Vec<SimRecord> {
        self.shared.lock().records(lock_id)
    }

    /// Unlocks that reached the lock.
    pub fn unlock_count(&self, lock_id: i64) -> u64 {
        self.shared
            .lock()
            .stats
            .unlocks
            .get(&lock_id)
            .copied()
            .unwrap_or(0)
    }

    pub fn is_locked(&self, lock_id: i64) -> Option<bool> {
        self.shared.lock().is_locked(lock_id)
    }

    /// Sets a lock's battery level; `false` for an unknown lock.
    pub fn set_battery(&self, lock_id: i64, percent: i32) -> bool {
        self.shared.lock().set_battery(lock_id, percent)
    }

    /// Deletes a passcode as the TTLock app would, behind latchkey's back.
    pub fn remove_passcode(&self, passcode_id: i64) -> bool {
        self.shared.lock().remove_passcode(passcode_id)
    }

    /// Deletes a lock from its account; `false` for an unknown lock.
    pub fn remove_lock(&self, lock_id: i64) -> bool {
        self.shared.lock().remove_lock(lock_id)
    }

    /// Someone types `code` on the lock; `Some(true)` if it opened.
    pub fn keypad(&self, lock_id: i64, code: &str) -> Option<bool> {
        let now = self.shared.clock.now_ms();
        let (opened, pending) = {
            let mut state = self.shared.lock();
            let opened = state.keypad(lock_id, code, now);
            (opened, state.take_pending())
        };
        callback::deliver(&self.shared, pending);
        opened
    }

    /// Stops serving and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
