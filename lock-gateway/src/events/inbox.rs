//! Publishes stored callbacks as device events. Rows are claimed with `SKIP LOCKED`, and
//! each is turned into events and marked done in one transaction, so every callback is
//! published once by one replica, and one interrupted midway is published again whole.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use latchkey::db::DbPool;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::callback::Arrival;
use super::effects::{apply_online, apply_record};
use super::{Event, Kind, Source};
use crate::crypto::Sealer;
use crate::db::{events, inbox, locks};
use crate::error::Result;

/// How many callbacks one transaction publishes.
const BATCH: i64 = 64;
/// A backstop for callbacks stored by another replica or before a crash.
const IDLE_POLL: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Publisher {
    pub pool: DbPool,
    pub sealer: Sealer,
    pub low_battery_percent: i32,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// Publishes every pending callback; returns how many were handled.
    pub async fn drain(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let mut conn = self.pool.get().await?;
            let handled = conn
                .transaction(async |conn| {
                    let pending = inbox::claim_pending(conn, BATCH).await?;
                    for row in &pending {
                        let outcome = match serde_json::from_value::<Arrival>(row.payload.clone()) {
                            Ok(arrival) => self.publish(conn, &arrival).await?,
                            // Stored by a later version, or damaged: keep it, route nothing.
                            Err(_) => "UNROUTED",
                        };
                        inbox::mark(conn, row.id, outcome).await?;
                    }
                    Ok::<_, diesel::result::Error>(pending.len())
                })
                .await?;
            total += handled;
            if handled < BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// Turns one callback into events for every tenant account that holds its lock.
    async fn publish(
        &self,
        conn: &mut AsyncPgConnection,
        arrival: &Arrival,
    ) -> diesel::QueryResult<&'static str> {
        let now = Utc::now();
        let lock_id = arrival
            .lock_id
            .or(arrival.records.first().map(|r| r.lock_id));
        let mut targets = match (arrival.notify_type, lock_id, arrival.gateway_id) {
            (Some(2), _, Some(gateway)) => locks::by_gateway_for_update(conn, gateway).await?,
            (_, Some(lock_id), _) => locks::by_lock_id_for_update(conn, lock_id).await?,
            _ => Vec::new(),
        };
        if targets.is_empty() {
            return Ok("UNROUTED");
        }
        for row in &mut targets {
            let mut out: Vec<Event> = Vec::new();
            match arrival.notify_type {
                Some(2) => {
                    let gateway = arrival.gateway_id.unwrap_or(0);
                    let online = arrival.is_online.unwrap_or(false);
                    let kind = if online {
                        Kind::GatewayOnline
                    } else {
                        Kind::GatewayOffline
                    };
                    let mut event = Event::new(row.account_id, row.lock_id, kind, Source::Callback);
                    event.gateway_id = gateway;
                    event.occur_time = now;
                    out.push(event);
                    // Offline takes the lock with it only when no other gateway reaches it.
                    if online || row.gateway_ids == [gateway] {
                        out.extend(apply_online(row, online, Source::Callback, gateway, now));
                    }
                }
                Some(3) => {
                    if let Some(online) = arrival.is_online {
                        out.extend(apply_online(row, online, Source::Callback, 0, now));
                    }
                }
                Some(4) => out.push(async_failure(row.account_id, row.lock_id, arrival, now)),
                _ => {
                    for record in &arrival.records {
                        // The console's test payload names another lock inside its record:
                        // the top-level lock id is the one the callback is about.
                        let mut record = record.clone();
                        record.lock_id = row.lock_id;
                        out.push(record.event(row.account_id, Source::Callback));
                        out.extend(apply_record(
                            row,
                            &record,
                            Source::Callback,
                            self.low_battery_percent,
                            &self.sealer,
                        ));
                    }
                }
            }
            locks::upsert(conn, row).await?;
            let rows = out.into_iter().map(Event::row).collect();
            events::append(conn, &row.tenant_id, rows).await?;
        }
        Ok("PUBLISHED")
    }

    /// Publishes whenever woken, and now and then regardless, until shutdown.
    pub fn spawn(self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(
            async move {
                loop {
                    if let Err(error) = self.drain().await {
                        tracing::warn!(%error, "publishing callbacks failed; will retry");
                    }
                    tokio::select! {
                        () = wake.notified() => {}
                        () = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
            .instrument(tracing::info_span!("callback.publisher")),
        )
    }
}

fn async_failure(account: uuid::Uuid, lock_id: i64, arrival: &Arrival, at: DateTime<Utc>) -> Event {
    let passcode = arrival.object_type == Some(2);
    let kind = if passcode {
        Kind::PasscodeFailed
    } else {
        Kind::AsyncFailure
    };
    let mut event = Event::new(account, lock_id, kind, Source::Callback);
    event.success = false;
    event.occur_time = at;
    if passcode {
        event.passcode_id = arrival.object_id.unwrap_or(0);
    }
    event.detail = format!(
        "asynchronous request for object type {} id {} failed with errcode {}",
        arrival.object_type.unwrap_or(0),
        arrival.object_id.unwrap_or(0),
        arrival.errcode.unwrap_or(0)
    );
    event
}
