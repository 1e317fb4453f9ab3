//! What sharing gateway turns and the account's pace through PostgreSQL costs a relayed
//! command, against the alternative of session advisory locks, on a real database:
//!
//! - `turns`: the queue rows lock-gateway uses (no connection held while waiting or
//!   sending; one `LISTEN` connection per replica, shared with device events);
//! - `advisory`: `pg_advisory_lock` held by a dedicated connection for the command
//!   (one connection per command in flight and per command waiting; a pooled connection
//!   cannot be used, as a cancelled command would hand its lock back to the pool).
//!
//! Prints percentiles; run with `cargo bench -p lock-gateway --bench coordination`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey::announcements::Hub;
use latchkey::db::DbConfig;
use latchkey::testkit::TestDb;
use lock_gateway::cluster::pace::Pace;
use lock_gateway::cluster::turns::{CHANNEL, Turns};
use secrecy::SecretString;

const ROUNDS: usize = 300;
const HANDOFFS: usize = 100;

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    println!(
        "{what:<58} p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  (n={})",
        at(0.5),
        at(0.9),
        at(0.99),
        samples.len()
    );
}

async fn turns(db: &TestDb) {
    let pool = latchkey::db::build_pool(
        &DbConfig::for_url(db.url()),
        lock_gateway::db::SCHEMA,
        "bench",
        None,
    )
    .unwrap();
    let hub = Hub::new(&[CHANNEL]);
    let listener = tokio::spawn(hub.clone().listen(SecretString::from(db.url().to_owned())));
    let turns = Arc::new(Turns::new(pool.clone(), hub, Duration::from_secs(4)));
    let far = || tokio::time::Instant::now() + Duration::from_secs(30);

    // The listener must be up before handoffs are timed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut entering = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let key = format!("bench/gateway/{i}");
        let started = Instant::now();
        let turn = Arc::clone(&turns).enter(key, far()).await.unwrap();
        entering.push(started.elapsed());
        drop(turn);
    }
    report("turns: enter a free gateway (2 statements)", entering);

    let mut handoffs = Vec::with_capacity(HANDOFFS);
    for i in 0..HANDOFFS {
        let key = format!("bench/busy/{i}");
        let held = Arc::clone(&turns).enter(key.clone(), far()).await.unwrap();
        let waiter = {
            let turns = Arc::clone(&turns);
            let key = key.clone();
            tokio::spawn(async move {
                let turn = turns.enter(key, far()).await.unwrap();
                (Instant::now(), turn)
            })
        };
        // Let the waiter queue and look once before the gateway frees.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let released = Instant::now();
        drop(held);
        let (entered, _turn) = waiter.await.unwrap();
        handoffs.push(entered - released);
    }
    report(
        "turns: handoff to a waiter (release, NOTIFY, look)",
        handoffs,
    );

    let pace = Pace::new(pool.clone(), "bench-account".into(), 1.0e6, 1000);
    let mut reserving = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        pace.wait().await.unwrap();
        reserving.push(started.elapsed());
    }
    report(
        "pace: reserve the account's next slot (1 statement)",
        reserving,
    );
    listener.abort();
}

async fn advisory(db: &TestDb) {
    let connect = || async {
        let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    };
    let mut connecting = Vec::with_capacity(50);
    for _ in 0..50 {
        let started = Instant::now();
        let client = connect().await;
        connecting.push(started.elapsed());
        drop(client);
    }
    report("advisory: open the command's own connection", connecting);

    let holder = connect().await;
    let mut locking = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let key = i as i64;
        let started = Instant::now();
        holder
            .execute("SELECT pg_advisory_lock($1)", &[&key])
            .await
            .unwrap();
        locking.push(started.elapsed());
        holder
            .execute("SELECT pg_advisory_unlock($1)", &[&key])
            .await
            .unwrap();
    }
    report("advisory: lock a free gateway (1 statement)", locking);

    let waiter = Arc::new(connect().await);
    let mut handoffs = Vec::with_capacity(HANDOFFS);
    for i in 0..HANDOFFS {
        let key = 1_000_000 + i as i64;
        holder
            .execute("SELECT pg_advisory_lock($1)", &[&key])
            .await
            .unwrap();
        let waiting = {
            let waiter = Arc::clone(&waiter);
            tokio::spawn(async move {
                waiter
                    .execute("SELECT pg_advisory_lock($1)", &[&key])
                    .await
                    .unwrap();
                let entered = Instant::now();
                waiter
                    .execute("SELECT pg_advisory_unlock($1)", &[&key])
                    .await
                    .unwrap();
                entered
            })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        let released = Instant::now();
        holder
            .execute("SELECT pg_advisory_unlock($1)", &[&key])
            .await
            .unwrap();
        let entered = waiting.await.unwrap();
        handoffs.push(entered.saturating_duration_since(released));
    }
    report(
        "advisory: handoff to a waiter (blocked in the lock)",
        handoffs,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = TestDb::migrated(vec![(
            lock_gateway::db::SCHEMA,
            lock_gateway::db::MIGRATIONS,
            lock_gateway::db::MIGRATIONS_DIR,
        )])
        .await;
        turns(&db).await;
        advisory(&db).await;
        println!(
            "connections: turns hold none per command (each statement borrows a pooled one \
             for its round trip) plus the replica's one LISTEN connection; advisory locks \
             hold one per command in flight and one per command waiting"
        );
    });
}
