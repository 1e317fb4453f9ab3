//! Turns on gateways across replicas. A command takes the next position in its
//! gateway's queue (a row), waits until its position is the lowest live one, sends,
//! then deletes its row and announces the gateway on [`CHANNEL`], waking the next in
//! line on whatever replica it waits. No connection is held while waiting or sending.
//! Every row carries a lease its replica renews; a replica that dies (or loses the
//! database) stops renewing, and its rows lapse after the lease, freeing the gateway.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::sql_types::{Array, BigInt, Bool, Double, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use latchkey::db::DbPool;
use tokio::time::Instant;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::ttlock::discipline::Turn;
use crate::ttlock::error::{Error, Result};
use latchkey::announcements::{Hub, wait_for};

/// Where freed turns are announced; the payload is the gateway's key.
pub const CHANNEL: &str = "latchkey_gateway_turns";

/// The longest a waiter goes without looking, should an announcement be lost.
const POLL: Duration = Duration::from_secs(1);

pub struct Turns {
    pool: DbPool,
    hub: Hub,
    /// This process, as the owner of its rows.
    replica: Uuid,
    lease: Duration,
    /// The positions this replica holds or waits at: the heartbeat renews these alone, so
    /// a row whose release failed lapses instead of being kept alive.
    owned: Mutex<HashSet<(String, i64)>>,
}

#[derive(diesel::QueryableByName)]
struct Position {
    #[diesel(sql_type = BigInt)]
    position: i64,
}

#[derive(diesel::QueryableByName)]
struct Front {
    #[diesel(sql_type = Nullable<BigInt>)]
    front: Option<i64>,
    #[diesel(sql_type = Bool)]
    present: bool,
    #[diesel(sql_type = BigInt)]
    lapsed: i64,
}

fn coordination(what: &str, error: impl std::fmt::Display) -> Error {
    Error::Coordination(format!("gateway turn, {what}: {error}"))
}

impl Turns {
    pub fn new(pool: DbPool, hub: Hub, lease: Duration) -> Self {
        Self {
            pool,
            hub,
            replica: Uuid::now_v7(),
            lease: lease.max(Duration::from_secs(1)),
            owned: Mutex::new(HashSet::new()),
        }
    }

    /// Waits for the turn on `key` until `deadline`.
    pub async fn enter(self: Arc<Self>, key: String, deadline: Instant) -> Result<Turn> {
        let span = tracing::info_span!(
            "gateway.turn",
            serial_key = %key,
            position = tracing::field::Empty,
            waited_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        async move {
            // Subscribed before the position is taken: a release from then on wakes us.
            let mut news = self.hub.subscribe();
            let mut place = self.take(&key).await?;
            tracing::Span::current().record("position", place.position);
            loop {
                let front = self.front(&key, place.position).await?;
                if front.lapsed > 0 {
                    tracing::warn!(
                        lapsed = front.lapsed,
                        "a replica's turn lapsed unrenewed; the gateway moves on"
                    );
                }
                if !front.present {
                    // Our own lease lapsed (the database was out of reach): queue again.
                    tracing::warn!("this replica's place in line lapsed; queuing again");
                    place.forget();
                    place = self.take(&key).await?;
                    continue;
                }
                if front.front == Some(place.position) {
                    tracing::Span::current().record(
                        "waited_ms",
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    );
                    return Ok(Turn::new(place));
                }
                let wake = (Instant::now() + POLL).min(deadline);
                wait_for(&mut news, CHANNEL, &key, wake).await;
                if Instant::now() >= deadline {
                    // The place is given up as it drops.
                    return Err(Error::NoTurn);
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Takes the next position in `key`'s line.
    async fn take(self: &Arc<Self>, key: &str) -> Result<Place> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| coordination("queuing", e))?;
        // The counter's row lock makes positions of one key commit in order, so no
        // lower position can appear after a higher one was seen at the front.
        let taken: Position = diesel::sql_query(
            "WITH counter AS ( \
                 INSERT INTO gateway_turn_counters AS c (serial_key, last) VALUES ($1, 1) \
                 ON CONFLICT (serial_key) DO UPDATE SET last = c.last + 1 \
                 RETURNING last) \
             INSERT INTO gateway_turns (serial_key, position, replica, lease_until) \
             SELECT $1, last, $2, now() + make_interval(secs => $3) FROM counter \
             RETURNING position",
        )
        .bind::<Text, _>(key)
        .bind::<SqlUuid, _>(self.replica)
        .bind::<Double, _>(self.lease.as_secs_f64())
        .get_result(&mut conn)
        .await
        .map_err(|e| coordination("queuing", e))?;
        self.owned().insert((key.to_owned(), taken.position));
        Ok(Place {
            turns: Arc::clone(self),
            key: key.to_owned(),
            position: taken.position,
            owned: true,
        })
    }

    /// The lowest live position of `key`, after removing lapsed ones.
    async fn front(&self, key: &str, position: i64) -> Result<Front> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| coordination("waiting", e))?;
        diesel::sql_query(
            "WITH lapsed AS ( \
                 DELETE FROM gateway_turns WHERE serial_key = $1 AND lease_until < now() \
                 RETURNING position) \
             SELECT min(position) AS front, \
                    coalesce(bool_or(position = $2), false) AS present, \
                    (SELECT count(*) FROM lapsed) AS lapsed \
             FROM gateway_turns WHERE serial_key = $1 AND lease_until >= now()",
        )
        .bind::<Text, _>(key)
        .bind::<BigInt, _>(position)
        .get_result(&mut conn)
        .await
        .map_err(|e| coordination("waiting", e))
    }

    /// Gives up a position and wakes the line.
    async fn release(&self, key: &str, position: i64) -> diesel::QueryResult<()> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| diesel::result::Error::QueryBuilderError(e.to_string().into()))?;
        diesel::sql_query(
            "WITH gone AS ( \
                 DELETE FROM gateway_turns WHERE serial_key = $1 AND position = $2 \
                 RETURNING serial_key) \
             SELECT pg_notify($3, serial_key) FROM gone",
        )
        .bind::<Text, _>(key)
        .bind::<BigInt, _>(position)
        .bind::<Text, _>(CHANNEL)
        .execute(&mut conn)
        .await
        .map(|_| ())
    }

    fn owned(&self) -> std::sync::MutexGuard<'_, HashSet<(String, i64)>> {
        // A set of plain values: a panic elsewhere cannot leave it inconsistent.
        self.owned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Renews the leases of this replica's positions, a few times per lease, until
    /// aborted.
    pub async fn heartbeat(self: Arc<Self>) {
        let every = self.lease / 4;
        loop {
            tokio::time::sleep(every).await;
            let (keys, positions): (Vec<String>, Vec<i64>) = self.owned().iter().cloned().unzip();
            if keys.is_empty() {
                continue;
            }
            let renewed = async {
                let mut conn =
                    self.pool.get().await.map_err(|e| {
                        diesel::result::Error::QueryBuilderError(e.to_string().into())
                    })?;
                // Only live rows: a lapsed one may already be behind another's turn.
                diesel::sql_query(
                    "UPDATE gateway_turns t SET lease_until = now() + make_interval(secs => $2) \
                     FROM unnest($3::text[], $4::bigint[]) AS o(serial_key, position) \
                     WHERE t.replica = $1 AND t.serial_key = o.serial_key \
                       AND t.position = o.position AND t.lease_until >= now()",
                )
                .bind::<SqlUuid, _>(self.replica)
                .bind::<Double, _>(self.lease.as_secs_f64())
                .bind::<Array<Text>, _>(keys)
                .bind::<Array<BigInt>, _>(positions)
                .execute(&mut conn)
                .await
            }
            .await;
            if let Err(error) = renewed {
                tracing::warn!(%error, "renewing gateway turns failed; they lapse unless renewed in time");
            }
        }
    }
}

/// A position in a gateway's line; dropping it gives the position up.
struct Place {
    turns: Arc<Turns>,
    key: String,
    position: i64,
    owned: bool,
}

impl Place {
    /// Stops owning a position that lapsed.
    fn forget(&mut self) {
        if std::mem::replace(&mut self.owned, false) {
            self.turns
                .owned()
                .remove(&(self.key.clone(), self.position));
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let turns = Arc::clone(&self.turns);
        let key = std::mem::take(&mut self.key);
        let position = self.position;
        turns.owned().remove(&(key.clone(), position));
        // Released in the background so a cancelled caller frees it too; where no
        // runtime is left (the process stopping), the lease lapses instead.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = turns.release(&key, position).await {
                    tracing::warn!(%error, "releasing a gateway turn failed; it lapses with its lease");
                }
            });
        }
    }
}

impl std::fmt::Debug for Turns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turns")
            .field("replica", &self.replica)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}
