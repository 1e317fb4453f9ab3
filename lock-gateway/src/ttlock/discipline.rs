//! Traffic discipline towards TTLock: a per-account pace, one command at a time per
//! gateway, command deadlines, and jittered exponential backoff.
//!
//! [`Coordinator`] is where a client takes its pace and its turns: [`Local`] keeps them
//! in this process; `crate::cluster` shares them with every replica through PostgreSQL.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rand::Rng as _;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::time::Instant;

use super::error::{Error, Result};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `work` with `deadline` as the deadline of the TTLock commands it sends: waits
/// for a gateway and retries of a busy one end there.
pub async fn within_deadline<F: Future>(deadline: Instant, work: F) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// The deadline [`within_deadline`] set for this task, if any.
pub fn current_deadline() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// A command's turn on its gateway; dropping it lets the next command go.
pub struct Turn {
    _held: Box<dyn Send + Sync>,
}

impl Turn {
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

impl fmt::Debug for Turn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Turn")
    }
}

/// Where one account's client takes its pace and its turns on gateways.
pub trait Coordinator: Send + Sync + fmt::Debug {
    /// Waits until the account may send one more request.
    fn pace(&self) -> BoxFuture<'_, Result<()>>;
    /// Waits, in arrival order, until no other command is relayed through `key`;
    /// [`Error::NoTurn`] once `deadline` passes first.
    fn enter(&self, key: SerialKey, deadline: Instant) -> BoxFuture<'_, Result<Turn>>;
}

/// Pace and turns kept in this process: right for one replica only.
#[derive(Debug)]
pub struct Local {
    limiter: RateLimiter,
    gate: SerialGate,
}

impl Local {
    pub fn new(requests_per_second: f64, burst: u32) -> Self {
        Self {
            limiter: RateLimiter::new(requests_per_second, burst),
            gate: SerialGate::default(),
        }
    }
}

impl Coordinator for Local {
    fn pace(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async {
            self.limiter.acquire().await;
            Ok(())
        })
    }

    fn enter(&self, key: SerialKey, deadline: Instant) -> BoxFuture<'_, Result<Turn>> {
        Box::pin(async move {
            tokio::time::timeout_at(deadline, self.gate.enter(key))
                .await
                .map(Turn::new)
                .map_err(|_| Error::NoTurn)
        })
    }
}

/// A token bucket: `rate` requests per second on average, up to `burst` at once.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A non-positive `rate` disables limiting.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                updated: Instant::now(),
            }),
        }
    }

    /// Waits for a token. Callers queue on the bucket's lock, so they are served in order.
    pub async fn acquire(&self) {
        if self.rate <= 0.0 {
            return;
        }
        let mut bucket = self.state.lock().await;
        loop {
            let now = Instant::now();
            let elapsed = now.duration_since(bucket.updated).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
            bucket.updated = now;
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                return;
            }
            let wait = (1.0 - bucket.tokens) / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

/// What a gateway-relayed command is serialised on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SerialKey {
    /// The gateway TTLock relays the command through.
    Gateway(i64),
    /// A lock reached without a gateway (WiFi).
    Lock(i64),
}

/// One async mutex per key, created on first use.
#[derive(Debug, Default)]
pub struct SerialGate {
    locks: StdMutex<HashMap<SerialKey, Arc<Mutex<()>>>>,
}

impl SerialGate {
    /// Waits until no other command holds `key`; the guard releases it when dropped.
    pub async fn enter(&self, key: SerialKey) -> OwnedMutexGuard<()> {
        let mutex = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(key).or_default().clone()
        };
        mutex.lock_owned().await
    }
}

/// Bounded retries with full-jitter exponential backoff.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `attempt + 1` (attempts count from 1): uniformly random
    /// up to `base * 2^(attempt-1)`, capped, so parallel callers do not retry in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        // Half fixed, half random: keeps a floor so a retry never fires at once.
        let half = millis / 2;
        Duration::from_millis(half + rand::rng().random_range(0..=half))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let d1 = policy.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = policy.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d9 = policy.delay(9);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_a_burst_then_the_rate() {
        let limiter = RateLimiter::new(10.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(1));
        for _ in 0..10 {
            limiter.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(990) && elapsed <= Duration::from_millis(1100),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn gate_serialises_one_key_only() {
        let gate = SerialGate::default();
        let held = gate.enter(SerialKey::Gateway(1)).await;
        // Another key is free while the first is held.
        let _other = gate.enter(SerialKey::Gateway(2)).await;
        let gate = Arc::new(gate);
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _guard = gate.enter(SerialKey::Gateway(1)).await;
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        waiter
            .await
            .expect("waiter completes once the key is released");
    }
}
