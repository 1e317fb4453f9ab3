//! lock-gateway as deployed: several replicas on one database and one TTLock account,
//! against the simulator with gateway latency and its busy check. Relayed commands on
//! one gateway never overlap at TTLock whatever replica they arrive on, the account's
//! rate is kept by the sum of the replicas, a dead replica's turn lapses, and replicas
//! renewing one token at once leave it working.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{FRONT_DOOR, LOBBY_GATEWAY, ROOM_101};
use futures_util::future::join_all;
use latchkey::pb::gateway::v1 as pb;
use latchkey::pb::gateway::v1::lock_gateway_client::LockGatewayClient;
use latchkey::testkit::{RunningServer, TEST_JWT_SECRET, TestDb, authorized, token};
use lock_gateway::sim::{InjectedFailure, SimConfig, SimHandle, Simulator};
use lock_gateway::{Config, RunError};
use tonic::transport::Channel;

const UNLOCK: &str = "/v3/lock/unlock";

struct Cluster {
    sim: SimHandle,
    db: TestDb,
    replicas: Vec<(RunningServer<RunError>, LockGatewayClient<Channel>)>,
    account: String,
    service: String,
}

fn config(db: &TestDb, change: impl Fn(&mut Config)) -> Config {
    let mut config = Config::new(db.url(), TEST_JWT_SECRET);
    change(&mut config);
    config
}

impl Cluster {
    /// `n` replicas with `change` applied to their configuration; the account is
    /// registered through the first.
    async fn start(n: usize, sim: SimConfig, change: impl Fn(&mut Config)) -> Self {
        let sim = Simulator::start(sim).await.unwrap();
        let db = TestDb::migrated(vec![(
            lock_gateway::db::SCHEMA,
            lock_gateway::db::MIGRATIONS,
            lock_gateway::db::MIGRATIONS_DIR,
        )])
        .await;
        let mut replicas = Vec::new();
        for _ in 0..n {
            let config = config(&db, &change);
            let server = RunningServer::spawn(|listener, shutdown| {
                lock_gateway::run(listener, config, shutdown)
            })
            .await;
            let client = LockGatewayClient::new(server.channel().await);
            replicas.push((server, client));
        }
        let service = token("acme", "access-service", &["SERVICE"]);
        let account = replicas[0]
            .1
            .clone()
            .register_account(authorized(sim.register_request(), &service))
            .await
            .unwrap()
            .into_inner()
            .id;
        Self {
            sim,
            db,
            replicas,
            account,
            service,
        }
    }

    fn client(&self, replica: usize) -> LockGatewayClient<Channel> {
        self.replicas[replica % self.replicas.len()].1.clone()
    }

    /// A remote unlock through `replica`, answered within `deadline`.
    async fn unlock(
        &self,
        replica: usize,
        lock_id: i64,
        request_id: &str,
        deadline: Duration,
    ) -> pb::RemoteOperationResponse {
        let mut request = authorized(
            pb::RemoteOperationRequest {
                account_id: self.account.clone(),
                lock_id,
                request_id: request_id.into(),
            },
            &self.service,
        );
        request.set_timeout(deadline);
        self.client(replica)
            .remote_unlock(request)
            .await
            .unwrap()
            .into_inner()
    }

    async fn create_passcode(
        &self,
        replica: usize,
        lock_id: i64,
        code: &str,
        request_id: &str,
    ) -> pb::PasscodeResult {
        let mut request = authorized(
            pb::CreatePasscodeRequest {
                account_id: self.account.clone(),
                lock_id,
                code: code.into(),
                name: "Guest".into(),
                start_time: None,
                end_time: None,
                request_id: request_id.into(),
            },
            &self.service,
        );
        request.set_timeout(Duration::from_secs(45));
        self.client(replica)
            .create_passcode(request)
            .await
            .unwrap()
            .into_inner()
    }

    /// Rows left in the gateway's lines.
    async fn turn_rows(&self) -> i64 {
        self.db
            .client()
            .await
            .query_one("SELECT count(*) FROM gateway.gateway_turns", &[])
            .await
            .unwrap()
            .get(0)
    }
}

fn confirmed(response: &pb::RemoteOperationResponse) -> bool {
    response.outcome == pb::RemoteOutcome::Confirmed as i32
}

/// Six remote operations and two passcode writes on the two locks of one gateway, spread
/// over `replicas` replicas and sent at once, at 1 s per relayed command.
async fn one_gateway_through_every_replica(replicas: usize) {
    let sim = SimConfig::default();
    let cluster = Cluster::start(replicas, sim, |_| {}).await;
    cluster.sim.update_faults(|f| f.remote_latency_ms = 1000);
    let started = Instant::now();
    let unlocks = join_all((0..6).map(|i| {
        let lock = if i % 2 == 0 { FRONT_DOOR } else { ROOM_101 };
        let cluster = &cluster;
        async move {
            cluster
                .unlock(i, lock, &format!("unlock-{i}"), Duration::from_secs(45))
                .await
        }
    }));
    let writes = join_all((0..2).map(|i| {
        let cluster = &cluster;
        async move {
            cluster
                .create_passcode(
                    i + 1,
                    FRONT_DOOR,
                    &format!("73519{i}"),
                    &format!("code-{i}"),
                )
                .await
        }
    }));
    let (unlocks, writes) = tokio::join!(unlocks, writes);
    let elapsed = started.elapsed();
    for (i, unlock) in unlocks.iter().enumerate() {
        assert!(confirmed(unlock), "unlock {i}: {unlock:?}");
    }
    for (i, write) in writes.iter().enumerate() {
        assert_eq!(
            write.outcome,
            pb::PasscodeOutcome::Done as i32,
            "write {i}: {write:?}"
        );
    }
    let stats = cluster.sim.stats();
    assert_eq!(
        stats.overlaps, 0,
        "commands overlapped at TTLock: {stats:?}"
    );
    assert_eq!(stats.errcodes.get(&-3003), None, "{stats:?}");
    assert_eq!(stats.remote_commands, 8, "each command was sent once");
    assert_eq!(cluster.sim.unlock_count(FRONT_DOOR), 3);
    assert_eq!(cluster.sim.unlock_count(ROOM_101), 3);
    // Eight commands of 1 s one after another.
    assert!(elapsed >= Duration::from_secs(8), "{elapsed:?}");
    eprintln!(
        "{replicas} replicas: 8 commands on gateway {LOBBY_GATEWAY} in {:.2} s",
        elapsed.as_secs_f64()
    );
    // Every turn was given back.
    assert_eq!(cluster.turn_rows().await, 0);
}

#[tokio::test]
async fn commands_on_one_gateway_through_two_replicas_never_overlap() {
    one_gateway_through_every_replica(2).await;
}

#[tokio::test]
async fn commands_on_one_gateway_through_three_replicas_never_overlap() {
    one_gateway_through_every_replica(3).await;
}

/// TTLock's own app can keep a gateway busy: -3003 proves the command was not relayed,
/// so it is sent again until it goes through, within the caller's deadline.
#[tokio::test]
async fn a_busy_gateway_is_retried_within_the_deadline() {
    let cluster = Cluster::start(1, SimConfig::default(), |_| {}).await;
    cluster.sim.update_faults(|f| {
        f.inject = vec![InjectedFailure::errcode(-3003).on(UNLOCK).times(3)];
    });
    let answer = cluster
        .unlock(0, FRONT_DOOR, "busy-then-free", Duration::from_secs(30))
        .await;
    assert!(confirmed(&answer), "{answer:?}");
    assert_eq!(cluster.sim.stats().requests_by_path[UNLOCK], 4);
    assert_eq!(cluster.sim.unlock_count(FRONT_DOOR), 1);

    // Busy for longer than the caller waits: refused in time, and never sent after.
    cluster.sim.update_faults(|f| {
        f.inject = vec![InjectedFailure::errcode(-3003).on(UNLOCK).times(1000)];
    });
    let before = cluster.sim.stats().requests_by_path[UNLOCK];
    let started = Instant::now();
    let answer = cluster
        .unlock(0, FRONT_DOOR, "busy-throughout", Duration::from_secs(3))
        .await;
    let waited = started.elapsed();
    assert_eq!(
        answer.outcome,
        pb::RemoteOutcome::Failed as i32,
        "{answer:?}"
    );
    assert_eq!(answer.errcode, -3003);
    assert!(
        waited < Duration::from_secs(3),
        "answered after the deadline: {waited:?}"
    );
    let sent = cluster.sim.stats().requests_by_path[UNLOCK] - before;
    assert!(sent >= 3, "retried while time allowed: {sent} sent");
    assert_eq!(cluster.sim.unlock_count(FRONT_DOOR), 1);
}

/// A command waiting for a gateway held by another replica's long command gives up at
/// its caller's deadline without sending anything.
#[tokio::test]
async fn a_command_waits_for_its_gateway_no_longer_than_its_deadline() {
    let cluster = Cluster::start(2, SimConfig::default(), |_| {}).await;
    cluster.sim.update_faults(|f| f.remote_latency_ms = 6000);
    let long = cluster.unlock(0, FRONT_DOOR, "long", Duration::from_secs(45));
    let short = async {
        // Queued once the long one is at TTLock.
        wait_until(|| cluster.sim.stats().remote_commands == 1).await;
        let started = Instant::now();
        let answer = cluster
            .unlock(1, ROOM_101, "short", Duration::from_secs(2))
            .await;
        (answer, started.elapsed())
    };
    let (long, (short, waited)) = tokio::join!(long, short);
    assert!(confirmed(&long), "{long:?}");
    assert_eq!(short.outcome, pb::RemoteOutcome::Failed as i32, "{short:?}");
    assert!(short.detail.contains("busy"), "{short:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    let stats = cluster.sim.stats();
    assert_eq!(stats.remote_commands, 1, "the short one was never sent");
    assert_eq!(cluster.sim.unlock_count(ROOM_101), 0);
    assert_eq!(stats.overlaps, 0);
}

/// Polls `done` until it holds (the state a test waits for is outside its reach).
async fn wait_until(done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never happened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A replica dies (its runtime stopped, nothing released) while its command holds the
/// gateway; another replica's command on that gateway goes through once the dead one's
/// lease lapses, within seconds, and never overlaps the command still at TTLock.
#[tokio::test]
async fn a_replica_dying_with_a_gateway_frees_it_within_its_lease() {
    let cluster = Cluster::start(1, SimConfig::default(), |_| {}).await;
    let lease = Config::new("postgres://unused", "unused").gateway_turn_lease();
    cluster.sim.update_faults(|f| f.remote_latency_ms = 2000);
    let replica = config(&cluster.db, |_| {});
    let (doomed, addr) = latchkey::testkit::doomed_server(|listener| {
        lock_gateway::run(listener, replica, std::future::pending())
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut doomed_client = LockGatewayClient::new(channel);
    let request = authorized(
        pb::RemoteOperationRequest {
            account_id: cluster.account.clone(),
            lock_id: FRONT_DOOR,
            request_id: "dies-holding".into(),
        },
        &cluster.service,
    );
    let held = tokio::spawn(async move { doomed_client.remote_unlock(request).await });
    wait_until(|| cluster.sim.stats().remote_commands == 1).await;
    assert_eq!(
        cluster.turn_rows().await,
        1,
        "the dying replica holds the gateway"
    );
    doomed.shutdown_background();
    let stopped = Instant::now();
    assert!(
        held.await.unwrap().is_err(),
        "the dead replica never answered"
    );

    let answer = cluster
        .unlock(0, ROOM_101, "after-the-death", Duration::from_secs(20))
        .await;
    let freed_after = stopped.elapsed();
    assert!(confirmed(&answer), "{answer:?}");
    let stats = cluster.sim.stats();
    assert_eq!(stats.overlaps, 0, "{stats:?}");
    assert_eq!(stats.remote_commands, 2);
    // The lease, a poll, the command itself, and slack for a loaded machine.
    let bound = lease + Duration::from_secs(1) + Duration::from_secs(2) + Duration::from_secs(3);
    assert!(
        freed_after < bound,
        "freed after {freed_after:?}, bound {bound:?}"
    );
    // Less the 2 s the command itself took at TTLock.
    eprintln!(
        "gateway of a dead replica usable again after {:.2} s (lease {} s)",
        freed_after.as_secs_f64() - 2.0,
        lease.as_secs()
    );
    assert_eq!(
        cluster.turn_rows().await,
        0,
        "the dead replica's row lapsed and went"
    );
}

/// Three replicas under load keep the account within the setting together: 5 per
/// second after a burst of 2, counted by the simulator over any one second.
#[tokio::test]
async fn the_account_rate_is_kept_by_the_sum_of_the_replicas() {
    let rate = 5.0;
    let burst = 2;
    let cluster = Cluster::start(3, SimConfig::default(), |config| {
        config.ttlock_requests_per_second = rate;
        config.ttlock_burst = burst;
    })
    .await;
    // Each replica must read TTLock: lock details are not cached.
    let started = Instant::now();
    let reads = join_all((0..30).map(|i| {
        let mut client = cluster.client(i);
        let request = authorized(
            pb::ListPasscodesRequest {
                account_id: cluster.account.clone(),
                lock_id: if i % 2 == 0 { FRONT_DOOR } else { ROOM_101 },
            },
            &cluster.service,
        );
        async move { client.list_passcodes(request).await }
    }))
    .await;
    let elapsed = started.elapsed();
    for read in reads {
        read.unwrap();
    }
    let stats = cluster.sim.stats();
    let max = stats.max_rate_per_second.values().copied().max().unwrap();
    let sent = stats.requests;
    eprintln!(
        "3 replicas: {sent} TTLock requests in {:.2} s, at most {max} in one second",
        elapsed.as_secs_f64()
    );
    assert_eq!(stats.rate_limited, 0);
    assert!(sent >= 31, "every read reached TTLock: {sent}");
    assert!(
        f64::from(max) <= rate + f64::from(burst),
        "{max} requests in one second"
    );
    // And no faster than the rate after the burst, over the whole run.
    let floor = (sent as f64 - f64::from(burst) - 1.0) / rate;
    assert!(
        elapsed.as_secs_f64() >= floor,
        "{sent} requests in {elapsed:?}, faster than {rate}/s"
    );
}

/// Two replicas find the account's token refused at once and renew it together: one
/// refresh serves both, nobody logs in again, and both go on working.
#[tokio::test]
async fn replicas_renewing_one_token_at_once_leave_it_working() {
    let cluster = Cluster::start(2, SimConfig::default(), |_| {}).await;
    let read = |replica: usize, lock_id: i64| {
        let mut client = cluster.client(replica);
        let request = authorized(
            pb::ListPasscodesRequest {
                account_id: cluster.account.clone(),
                lock_id,
            },
            &cluster.service,
        );
        async move { client.list_passcodes(request).await }
    };
    // Both replicas work with the token the registration logged in with.
    read(0, FRONT_DOOR).await.unwrap();
    read(1, FRONT_DOOR).await.unwrap();
    assert_eq!(cluster.sim.stats().logins, 1, "one login, at registration");

    cluster.sim.revoke_access_tokens();
    let reads =
        join_all((0..8).map(|i| read(i, if i % 2 == 0 { FRONT_DOOR } else { ROOM_101 }))).await;
    for (i, read) in reads.into_iter().enumerate() {
        read.unwrap_or_else(|status| panic!("read {i}: {status:?}"));
    }
    let stats = cluster.sim.stats();
    assert_eq!(
        stats.refreshes, 1,
        "one renewal for both replicas: {stats:?}"
    );
    assert_eq!(stats.logins, 1, "{stats:?}");
    // And again later, from either replica.
    read(1, ROOM_101).await.unwrap();
    read(0, ROOM_101).await.unwrap();
    assert_eq!(cluster.sim.stats().refreshes, 1);
}
