//! One request schedule per TTLock account across replicas: a generic cell rate
//! algorithm (GCRA) whose state is one timestamp row. Each request reserves the next
//! slot in a single statement and waits until it; there are no shares to hand out, so
//! a replica that dies holds no part of the rate, and whatever its replicas, the
//! account sends at most `burst` at once and `rate` per second after.

use std::time::Duration;

use diesel::sql_types::{Double, Text};
use diesel_async::RunQueryDsl;
use latchkey::db::DbPool;

use crate::ttlock::error::{Error, Result};

pub struct Pace {
    pool: DbPool,
    key: String,
    /// Seconds between requests; 0 when unlimited.
    interval: f64,
    burst: f64,
}

#[derive(diesel::QueryableByName)]
struct Reserved {
    #[diesel(sql_type = Double)]
    wait: f64,
}

impl Pace {
    pub fn new(pool: DbPool, key: String, requests_per_second: f64, burst: u32) -> Self {
        let interval = if requests_per_second > 0.0 {
            1.0 / requests_per_second
        } else {
            0.0
        };
        Self {
            pool,
            key,
            interval,
            burst: f64::from(burst.max(1)),
        }
    }

    /// Reserves the account's next slot and waits for it.
    pub async fn wait(&self) -> Result<()> {
        if self.interval <= 0.0 {
            return Ok(());
        }
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| Error::Coordination(format!("pace: {e}")))?;
        // `tat` is when the bucket would be full again; a request may go `burst`
        // intervals before it.
        let reserved: Reserved = diesel::sql_query(
            "INSERT INTO ttlock_pace AS p (account_key, tat) \
             VALUES ($1, now() + make_interval(secs => $2)) \
             ON CONFLICT (account_key) DO UPDATE \
             SET tat = greatest(p.tat, now()) + make_interval(secs => $2) \
             RETURNING greatest(0, extract(epoch FROM p.tat - now())::float8 - $3) AS wait",
        )
        .bind::<Text, _>(&self.key)
        .bind::<Double, _>(self.interval)
        .bind::<Double, _>(self.interval * self.burst)
        .get_result(&mut conn)
        .await
        .map_err(|e| Error::Coordination(format!("pace: {e}")))?;
        drop(conn);
        if reserved.wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(reserved.wait)).await;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pace")
            .field("interval", &self.interval)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}
