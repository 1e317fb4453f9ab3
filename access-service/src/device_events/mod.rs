//! Follows lock-gateway's device events into the audit log, door status and code usage.
//!
//! Every few seconds each replica lists the tenants with a door on a lock and tries to
//! lease each one it does not follow yet (`device_event_cursors`, by the database's
//! clock), so one replica at a time follows a tenant. The holder opens
//! `WatchDeviceEvents` after the stored cursor and applies each event in a transaction
//! of its own that also moves the cursor ([`apply`]); an event at or before the stored
//! cursor is skipped, so a replayed stream or an overlapping replica never applies one
//! twice. A stream that ends (lock-gateway restarting) or fails is reopened from the
//! stored cursor after a jittered backoff; the lease is renewed meanwhile and given up
//! at shutdown so another replica takes over at once.

pub mod apply;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::AsyncConnection;
use latchkey::clock::SharedClock;
use latchkey::db::DbPool;
use latchkey::pb::gateway::v1::{DeviceEvent, DeviceEventKind};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::Instrument;

use crate::audit::store::BurstRule;
use crate::db::device_events as db;
use crate::error::Error;
use crate::gateway::GatewayClient;

/// How long a lease holds without renewal; renewed every third of it.
pub const LEASE: Duration = Duration::from_secs(30);
/// Default interval between looks for tenants to follow.
pub const DEFAULT_SCAN_INTERVAL: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long shutdown waits for followers to finish the event in hand and release.
const STOP_WITHIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How often tenants to follow are looked for (new doors on locks, released leases).
    pub scan_interval: Duration,
    pub lease: Duration,
    /// Failure bursts among the rows appended (wrong codes count).
    pub burst: BurstRule,
}

impl Settings {
    /// The follower as the service's settings ask for it.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            scan_interval: Duration::from_millis(config.device_events_scan_ms.max(10)),
            lease: LEASE,
            burst: BurstRule::from_config(config),
        }
    }
}

#[derive(Clone)]
struct Context {
    pool: DbPool,
    gateway: GatewayClient,
    clock: SharedClock,
    settings: Settings,
    /// This process's lease owner name.
    instance: Arc<str>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("instance", &self.instance)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The running follower of every tenant this replica holds.
#[derive(Debug)]
pub struct Follower {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Follower {
    pub fn spawn(
        pool: DbPool,
        gateway: GatewayClient,
        clock: SharedClock,
        settings: Settings,
    ) -> Self {
        let instance: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        let span = tracing::info_span!("device_events", instance = %instance);
        let context = Context {
            pool,
            gateway,
            clock,
            settings,
            instance,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(supervise(context, stopped).instrument(span));
        Self { stop, task }
    }

    /// Lets each follower finish the event in hand and release its lease.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_WITHIN, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!("device event followers did not stop in time; abandoned");
            self.task.abort();
        }
    }
}

async fn supervise(context: Context, mut stop: watch::Receiver<bool>) {
    let mut followed: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        followed.retain(|_, task| !task.is_finished());
        match claim_new(&context, &followed).await {
            Ok(claimed) => {
                for tenant in claimed {
                    let task = latchkey::telemetry::spawn_in_span(follow(
                        context.clone(),
                        tenant.clone(),
                        stop.clone(),
                    ));
                    followed.insert(tenant, task);
                }
            }
            Err(error) => tracing::warn!(%error, "looking for tenants to follow failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(context.settings.scan_interval) => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
    }
    for task in followed.into_values() {
        let _ = task.await;
    }
}

/// Leases the tenants with a door on a lock that this replica does not follow yet.
async fn claim_new(
    context: &Context,
    followed: &HashMap<String, JoinHandle<()>>,
) -> Result<Vec<String>, Error> {
    let mut conn = context.pool.get().await?;
    let mut claimed = Vec::new();
    for tenant in db::followed_tenants(&mut conn).await? {
        if !followed.contains_key(&tenant)
            && db::claim(
                &mut conn,
                &tenant,
                &context.instance,
                context.settings.lease,
            )
            .await?
        {
            claimed.push(tenant);
        }
    }
    Ok(claimed)
}

/// Why following a tenant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Stopped,
    /// Another replica holds the lease now.
    Lost,
}

async fn follow(context: Context, tenant: String, stop: watch::Receiver<bool>) {
    let span = tracing::info_span!("device_events.follow", tenant_id = %tenant);
    async move {
        tracing::info!("following device events");
        let mut follower = TenantFollower::new(context, tenant, stop);
        let end = follower.run().await;
        if end == End::Stopped {
            follower.release().await;
        }
        tracing::info!(?end, "stopped following device events");
    }
    .instrument(span)
    .await;
}

struct TenantFollower {
    context: Context,
    tenant: String,
    stop: watch::Receiver<bool>,
    renew: Interval,
    backoff: Backoff,
}

impl TenantFollower {
    fn new(context: Context, tenant: String, stop: watch::Receiver<bool>) -> Self {
        let period = context.settings.lease / 3;
        let mut renew = tokio::time::interval_at(Instant::now() + period, period);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            context,
            tenant,
            stop,
            renew,
            backoff: Backoff::default(),
        }
    }

    async fn run(&mut self) -> End {
        loop {
            if let Some(end) = self.follow_stream().await {
                return end;
            }
            let pause = self.backoff.next_delay();
            if let Some(end) = self.pause(pause).await {
                return end;
            }
        }
    }

    /// One stream from the stored cursor; `None` when it ended or failed and is to be
    /// reopened.
    async fn follow_stream(&mut self) -> Option<End> {
        let after = match self.stored_cursor().await {
            Ok(after) => after,
            Err(error) => {
                tracing::warn!(%error, "reading the device event cursor failed");
                return None;
            }
        };
        let gateway = self.context.gateway.clone();
        let tenant = self.tenant.clone();
        let opened = match self
            .meanwhile(gateway.watch_device_events(&tenant, after))
            .await
        {
            Ok(opened) => opened,
            Err(end) => return Some(end),
        };
        // The client logged a failure with its code.
        let mut stream = opened.ok()?;
        self.backoff.reset();
        tracing::debug!(after, "device event stream open");
        loop {
            match self.meanwhile(stream.message()).await {
                Err(end) => return Some(end),
                Ok(Ok(Some(event))) => {
                    if !self.apply(event).await {
                        return None;
                    }
                }
                Ok(Ok(None)) => {
                    tracing::info!("lock-gateway ended the device event stream");
                    return None;
                }
                Ok(Err(status)) => {
                    tracing::warn!(code = ?status.code(), "the device event stream failed");
                    return None;
                }
            }
        }
    }

    /// Waits `delay` while keeping the lease; `Some` if following must end.
    async fn pause(&mut self, delay: Duration) -> Option<End> {
        self.meanwhile(tokio::time::sleep(delay)).await.err()
    }

    /// Awaits `work` while renewing the lease; ends early at shutdown or when the lease
    /// is lost. `work` must not hold on to the follower.
    async fn meanwhile<T>(&mut self, work: impl Future<Output = T>) -> Result<T, End> {
        tokio::pin!(work);
        loop {
            let done = tokio::select! {
                biased;
                _ = self.stop.wait_for(|stopped| *stopped) => return Err(End::Stopped),
                _ = self.renew.tick() => None,
                value = &mut work => Some(value),
            };
            match done {
                Some(value) => return Ok(value),
                None if !self.renew_lease().await => return Err(End::Lost),
                None => {}
            }
        }
    }

    async fn stored_cursor(&self) -> Result<i64, Error> {
        let mut conn = self.context.pool.get().await?;
        Ok(db::cursor(&mut conn, &self.tenant).await?)
    }

    /// `false` only when another replica holds the lease; a database failure keeps
    /// following (the cursor check keeps an overlap harmless).
    async fn renew_lease(&self) -> bool {
        let renewed = async {
            let mut conn = self.context.pool.get().await?;
            Ok::<_, Error>(
                db::claim(
                    &mut conn,
                    &self.tenant,
                    &self.context.instance,
                    self.context.settings.lease,
                )
                .await?,
            )
        }
        .await;
        match renewed {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(%error, "renewing the device event lease failed");
                true
            }
        }
    }

    async fn release(&self) {
        let released = async {
            let mut conn = self.context.pool.get().await?;
            db::release(&mut conn, &self.tenant, &self.context.instance).await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(error) = released {
            tracing::warn!(%error, "releasing the device event lease failed; it expires on its own");
        }
    }

    /// Applies one event; `false` if it could not be, so the stream is reopened from the
    /// stored cursor.
    async fn apply(&self, event: DeviceEvent) -> bool {
        let kind = DeviceEventKind::try_from(event.kind).unwrap_or(DeviceEventKind::Other);
        let span = tracing::info_span!(
            "device_events.apply",
            tenant_id = %self.tenant,
            cursor = event.cursor,
            kind = apply::kind_name(kind),
            lock_id = event.lock_id,
        );
        let context = &self.context;
        let tenant = self.tenant.as_str();
        let applied = async {
            let now = context.clock.now();
            let burst = context.settings.burst;
            let mut conn = context.pool.get().await?;
            let applied = conn
                .transaction(async |conn| apply::apply(conn, tenant, &event, burst, now).await)
                .await?;
            Ok::<_, Error>(applied)
        }
        .instrument(span.clone())
        .await;
        let _entered = span.enter();
        match applied {
            Ok(applied) => {
                tracing::debug!(?applied, "device event applied");
                true
            }
            Err(error) => {
                tracing::warn!(%error, "applying a device event failed; reopening from the stored cursor");
                false
            }
        }
    }
}

/// Jittered exponential backoff between reconnections.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// A delay between half and all of the current step; the step doubles up to the cap.
    fn next_delay(&mut self) -> Duration {
        let step = u64::try_from(self.next.as_millis()).unwrap_or(u64::MAX);
        self.next = (self.next * 2).min(BACKOFF_MAX);
        Duration::from_millis(rand::rng().random_range(step / 2..=step))
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_to_its_cap_and_resets() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN);
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(delay <= BACKOFF_MAX);
        }
        let capped = backoff.next_delay();
        assert!(capped >= BACKOFF_MAX / 2);
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_MIN);
    }
}
