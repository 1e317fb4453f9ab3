//! The TTLock client against the simulator, over real HTTP on 127.0.0.1. Time is
//! controlled through the shared manual clock, never by sleeping.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lock_gateway::sim::{
    Faults, Fixture, FixtureAccount, FixtureGateway, FixtureLock, InjectedFailure, SimConfig,
    SimHandle, Simulator,
};
use lock_gateway::ttlock::discipline::within_deadline;
use lock_gateway::ttlock::types::BoltState;
use lock_gateway::ttlock::{
    AccountConfig, ClientConfig, Error, ErrorClass, ErrorCode, ManualClock, PasscodeChange,
    PasscodeText, Password, RetryPolicy, TtlockClient, Validity, md5_hex,
};
use secrecy::{ExposeSecret as _, SecretString};

const GATEWAY: i64 = 34_144;
const SECOND_GATEWAY: i64 = 34_145;
const FIRST_LOCK: i64 = 1_000;
const WIFI_LOCK: i64 = 9_001;
const BLUETOOTH_LOCK: i64 = 9_002;
const NO_REMOTE_LOCK: i64 = 9_003;
const PASSWORD: &str = "correct horse battery";
const CLIENT_SECRET: &str = "sim-secret-5f0c2a";

/// One account: `gateway_locks` locks behind one gateway, one behind a second
/// gateway, a WiFi lock, a Bluetooth-only lock and one with remote unlock switched off.
fn fixture(gateway_locks: i64) -> Fixture {
    let mut locks: Vec<FixtureLock> = (0..gateway_locks)
        .map(|i| FixtureLock::new(FIRST_LOCK + i, vec![GATEWAY]))
        .collect();
    locks.push(FixtureLock::new(2_000, vec![SECOND_GATEWAY]));
    locks.push(FixtureLock {
        wifi: true,
        ..FixtureLock::new(WIFI_LOCK, Vec::new())
    });
    locks.push(FixtureLock::new(BLUETOOTH_LOCK, Vec::new()));
    locks.push(FixtureLock {
        remote_unlock: false,
        ..FixtureLock::new(NO_REMOTE_LOCK, vec![GATEWAY])
    });
    Fixture {
        accounts: vec![FixtureAccount {
            client_id: "sim-client-7d1e".to_owned(),
            client_secret: CLIENT_SECRET.to_owned(),
            username: "sim_hotel".to_owned(),
            password: PASSWORD.to_owned(),
            uid: 4_242,
            admin: Some("admin@example.test".to_owned()),
            gateways: vec![
                FixtureGateway::new(GATEWAY),
                FixtureGateway::new(SECOND_GATEWAY),
            ],
            locks,
        }],
    }
}

/// Fast retries, no rate limit, small pages: what most tests want.
fn client_config() -> ClientConfig {
    ClientConfig {
        requests_per_second: 0.0,
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
        },
        page_size: 10,
        remote_timeout: Duration::from_secs(30),
        ..ClientConfig::default()
    }
}

struct Env {
    sim: SimHandle,
    clock: ManualClock,
    client: TtlockClient,
}

fn account(sim: &SimHandle, password: Password) -> AccountConfig {
    let fixture = &sim.accounts()[0];
    AccountConfig::new(
        fixture.client_id.clone(),
        SecretString::from(fixture.client_secret.clone()),
        fixture.username.clone(),
        password,
    )
    .with_base_url(sim.base_url())
}

async fn env_with(fixture: Fixture, sim_config: SimConfig, config: ClientConfig) -> Env {
    let clock = ManualClock::starting_now();
    let sim = Simulator::start(SimConfig {
        fixture,
        clock: Arc::new(clock.clone()),
        ..sim_config
    })
    .await
    .expect("simulator starts");
    let client = TtlockClient::new(
        account(
            &sim,
            Password::Plain(SecretString::from(PASSWORD.to_owned())),
        ),
        config,
        Arc::new(clock.clone()),
    )
    .expect("client builds");
    Env { sim, clock, client }
}

async fn env(gateway_locks: i64) -> Env {
    env_with(
        fixture(gateway_locks),
        SimConfig::default(),
        client_config(),
    )
    .await
}

fn path_count(sim: &SimHandle, path: &str) -> u64 {
    sim.stats().requests_by_path.get(path).copied().unwrap_or(0)
}

fn errcode_count(sim: &SimHandle, code: i32) -> u64 {
    sim.stats().errcodes.get(&code).copied().unwrap_or(0)
}

#[tokio::test]
async fn login_hashes_the_password_and_lists_every_page_of_locks() {
    let env = env(25).await;
    let locks = env.client.locks().await.expect("locks");
    // 25 behind the gateway + 4 others, in pages of 10.
    assert_eq!(locks.len(), 29);
    assert_eq!(path_count(&env.sim, "/v3/lock/list"), 3);
    assert_eq!(env.sim.stats().logins, 1);
    let token = env.client.token().await.expect("token kept");
    assert_eq!(token.uid, Some(4_242));
    assert!(
        locks
            .iter()
            .any(|l| l.lock_id == FIRST_LOCK && l.has_gateway == Some(true))
    );

    // A pre-hashed password logs in the same way; a wrong one is refused for good.
    let hashed = TtlockClient::new(
        account(
            &env.sim,
            Password::Md5(SecretString::from(md5_hex(PASSWORD))),
        ),
        client_config(),
        Arc::new(env.clock.clone()),
    )
    .expect("client");
    hashed.authenticate().await.expect("md5 login");
    let wrong = TtlockClient::new(
        account(
            &env.sim,
            Password::Plain(SecretString::from("nope".to_owned())),
        ),
        client_config(),
        Arc::new(env.clock.clone()),
    )
    .expect("client");
    let error = wrong.authenticate().await.expect_err("bad password");
    assert_eq!(error.code(), Some(ErrorCode::InvalidAccount));
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(env.sim.stats().logins, 2);
}

#[tokio::test]
async fn token_is_refreshed_ahead_of_expiry() {
    let sim_config = SimConfig {
        token_lifetime: Duration::from_secs(3_600),
        ..SimConfig::default()
    };
    let config = ClientConfig {
        refresh_margin: Duration::from_secs(600),
        ..client_config()
    };
    let env = env_with(fixture(1), sim_config, config).await;
    env.client.lock_detail(FIRST_LOCK).await.expect("detail");
    let first = env.client.token().await.expect("token");
    assert_eq!(first.expires_at_ms, env.clock_now() + 3_600_000);

    // Inside the margin: renewed before the call, so TTLock never sees an expired token.
    env.clock.advance(Duration::from_secs(3_100));
    env.client.lock_detail(FIRST_LOCK).await.expect("detail");
    let second = env.client.token().await.expect("token");
    assert_eq!(env.sim.stats().refreshes, 1);
    assert_eq!(env.sim.stats().logins, 1);
    assert_ne!(
        first.access_token.expose_secret(),
        second.access_token.expose_secret()
    );
    assert_eq!(
        second.uid,
        Some(4_242),
        "refresh answers carry no uid; kept"
    );
    assert_eq!(second.expires_at_ms, env.clock_now() + 3_600_000);

    // Outside the margin: the token is used as it is.
    env.clock.advance(Duration::from_secs(60));
    env.client.lock_detail(FIRST_LOCK).await.expect("detail");
    assert_eq!(env.sim.stats().refreshes, 1);
    assert_eq!(errcode_count(&env.sim, 10004), 0);
}

impl Env {
    fn clock_now(&self) -> i64 {
        use lock_gateway::ttlock::Clock as _;
        self.clock.now_ms()
    }
}

#[tokio::test]
async fn refused_token_is_refreshed_once_and_a_refused_refresh_logs_in_again() {
    let env = env(1).await;
    env.client.lock_detail(FIRST_LOCK).await.expect("detail");

    env.sim.revoke_access_tokens();
    env.client
        .lock_detail(FIRST_LOCK)
        .await
        .expect("renewed after 10004");
    assert_eq!(errcode_count(&env.sim, 10004), 1);
    assert_eq!(env.sim.stats().refreshes, 1);
    assert_eq!(env.sim.stats().logins, 1);

    env.sim.revoke_access_tokens();
    env.sim.revoke_refresh_tokens();
    env.client
        .lock_detail(FIRST_LOCK)
        .await
        .expect("login after 10011");
    assert_eq!(errcode_count(&env.sim, 10011), 1);
    assert_eq!(env.sim.stats().logins, 2);

    // Long after expiry the token is renewed before the call, not after a refusal.
    let ten_years = Duration::from_secs(10 * 365 * 24 * 3_600);
    env.clock.advance(ten_years);
    env.client
        .lock_detail(FIRST_LOCK)
        .await
        .expect("expired token renewed ahead of the call");
}

#[tokio::test]
async fn stale_date_is_refused_with_80000() {
    let sim_clock = ManualClock::starting_now();
    let sim = Simulator::start(SimConfig {
        fixture: fixture(1),
        clock: Arc::new(sim_clock.clone()),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let client_clock = ManualClock::starting_now();
    use lock_gateway::ttlock::Clock as _;
    client_clock.set(sim_clock.now_ms() - 6 * 60 * 1_000);
    let client = TtlockClient::new(
        account(
            &sim,
            Password::Plain(SecretString::from(PASSWORD.to_owned())),
        ),
        client_config(),
        Arc::new(client_clock.clone()),
    )
    .expect("client");
    let error = client.lock_detail(FIRST_LOCK).await.expect_err("skewed");
    assert_eq!(error.code(), Some(ErrorCode::DateSkew));
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(path_count(&sim, "/v3/lock/detail"), 1, "not retried");

    // Four minutes off is within TTLock's five.
    client_clock.set(sim_clock.now_ms() - 4 * 60 * 1_000);
    client
        .lock_detail(FIRST_LOCK)
        .await
        .expect("within tolerance");
}

#[tokio::test]
async fn busy_gateway_is_retried_with_backoff_then_succeeds() {
    let env = env(1).await;
    env.sim.set_faults(Faults {
        inject: vec![
            InjectedFailure::errcode(-3003)
                .on("/v3/lock/unlock")
                .times(2),
        ],
        ..Faults::default()
    });
    env.client
        .unlock(FIRST_LOCK)
        .await
        .expect("third attempt succeeds");
    assert_eq!(path_count(&env.sim, "/v3/lock/unlock"), 3);
    assert_eq!(errcode_count(&env.sim, -3003), 2);
    assert_eq!(env.sim.unlock_count(FIRST_LOCK), 1);
    assert_eq!(env.sim.is_locked(FIRST_LOCK), Some(false));

    // Reads retry 90000 and HTTP 5xx too, up to the attempt bound.
    env.sim.set_faults(Faults {
        inject: vec![
            InjectedFailure::errcode(90000).on("/v3/lock/detail"),
            InjectedFailure::http(503).on("/v3/lock/detail"),
        ],
        ..Faults::default()
    });
    env.client
        .lock_detail(FIRST_LOCK)
        .await
        .expect("third attempt");
    assert_eq!(path_count(&env.sim, "/v3/lock/detail"), 3);

    // A busy refusal proves the command was not relayed: it is sent again as long as
    // the deadline allows, not a fixed number of times.
    env.sim.set_faults(Faults {
        inject: vec![
            InjectedFailure::errcode(-3003)
                .on("/v3/lock/unlock")
                .times(10),
        ],
        ..Faults::default()
    });
    env.client
        .unlock(FIRST_LOCK)
        .await
        .expect("sent until the gateway is free");
    assert_eq!(path_count(&env.sim, "/v3/lock/unlock"), 3 + 11);
    assert_eq!(env.sim.unlock_count(FIRST_LOCK), 2);

    // Busy past the caller's deadline: given up before it, the bolt never moved.
    env.sim.set_faults(Faults {
        inject: vec![
            InjectedFailure::errcode(-3003)
                .on("/v3/lock/unlock")
                .times(100_000),
        ],
        ..Faults::default()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    let error = within_deadline(deadline, env.client.unlock(FIRST_LOCK))
        .await
        .expect_err("gives up");
    assert!(tokio::time::Instant::now() <= deadline, "answered in time");
    assert_eq!(error.code(), Some(ErrorCode::GatewayBusy));
    assert!(
        path_count(&env.sim, "/v3/lock/unlock") > 3 + 11 + 3,
        "retried until the deadline"
    );
    assert_eq!(env.sim.unlock_count(FIRST_LOCK), 2);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let env = env(1).await;
    let add = |code: &'static str| {
        let client = env.client.clone();
        async move {
            client
                .add_passcode(
                    FIRST_LOCK,
                    &PasscodeText::from(code),
                    None,
                    Validity::Permanent,
                )
                .await
        }
    };
    let too_simple = add("123456").await.expect_err("too simple");
    assert_eq!(too_simple.code(), Some(ErrorCode::PasscodeTooSimple));
    assert_eq!(too_simple.class(), ErrorClass::Permanent);
    let too_short = add("123").await.expect_err("too short");
    assert_eq!(too_short.code(), Some(ErrorCode::PasscodeInvalid));
    add("0506").await.expect("leading zero kept");
    let duplicate = add("0506").await.expect_err("duplicate");
    assert_eq!(duplicate.code(), Some(ErrorCode::PasscodeExists));
    assert_eq!(path_count(&env.sim, "/v3/keyboardPwd/add"), 4);
    assert_eq!(env.sim.passcodes(FIRST_LOCK)[0].code, "0506");

    env.sim.set_faults(Faults {
        offline_gateways: vec![GATEWAY],
        ..Faults::default()
    });
    let offline = env.client.unlock(FIRST_LOCK).await.expect_err("offline");
    assert_eq!(offline.code(), Some(ErrorCode::GatewayOffline));
    let no_gateway = env
        .client
        .unlock(BLUETOOTH_LOCK)
        .await
        .expect_err("no gateway");
    assert_eq!(no_gateway.code(), Some(ErrorCode::NoGateway));
    env.sim.set_faults(Faults::default());
    let disabled = env
        .client
        .unlock(NO_REMOTE_LOCK)
        .await
        .expect_err("switched off");
    assert_eq!(disabled.code(), Some(ErrorCode::Unsupported));
    assert_eq!(path_count(&env.sim, "/v3/lock/unlock"), 3, "each sent once");
    assert_eq!(env.sim.stats().unlocks.values().sum::<u64>(), 0);
}

#[tokio::test]
async fn errcode_1_on_unlock_is_unconfirmed_and_never_retried() {
    let env = env(1).await;
    // The lock opened, but the cloud says "failed".
    env.sim.set_faults(Faults {
        inject: vec![InjectedFailure::errcode(1).on("/v3/lock/unlock").executed()],
        ..Faults::default()
    });
    let error = env
        .client
        .unlock(FIRST_LOCK)
        .await
        .expect_err("unconfirmed");
    assert!(matches!(error, Error::Unconfirmed { .. }), "{error:?}");
    assert_eq!(error.class(), ErrorClass::UnsafeToRetry);
    assert_eq!(error.code(), Some(ErrorCode::Failed));
    assert_eq!(path_count(&env.sim, "/v3/lock/unlock"), 1);
    assert_eq!(env.sim.unlock_count(FIRST_LOCK), 1, "opened exactly once");

    // The lock did not open: still unconfirmed from the client's side.
    env.sim.set_faults(Faults {
        inject: vec![InjectedFailure::errcode(1).on("/v3/lock/unlock")],
        ..Faults::default()
    });
    let error = env
        .client
        .unlock(FIRST_LOCK)
        .await
        .expect_err("unconfirmed");
    assert_eq!(error.class(), ErrorClass::UnsafeToRetry);
    assert_eq!(path_count(&env.sim, "/v3/lock/unlock"), 2);
    assert_eq!(env.sim.unlock_count(FIRST_LOCK), 1);

    // Same for a passcode write that may have reached the lock.
    env.sim.set_faults(Faults {
        inject: vec![
            InjectedFailure::errcode(1)
                .on("/v3/keyboardPwd/add")
                .executed(),
        ],
        ..Faults::default()
    });
    let error = env
        .client
        .add_passcode(
            FIRST_LOCK,
            &PasscodeText::from("482913"),
            None,
            Validity::Permanent,
        )
        .await
        .expect_err("unconfirmed");
    assert_eq!(error.class(), ErrorClass::UnsafeToRetry);
    assert_eq!(path_count(&env.sim, "/v3/keyboardPwd/add"), 1);
    assert_eq!(env.sim.passcodes(FIRST_LOCK).len(), 1);

    // errcode 1 on a read is merely retried.
    env.sim.set_faults(Faults {
        inject: vec![InjectedFailure::errcode(1).on("/v3/lock/queryOpenState")],
        ..Faults::default()
    });
    let state = env
        .client
        .query_open_state(FIRST_LOCK)
        .await
        .expect("retried");
    assert_eq!(state.bolt(), BoltState::Unlocked);
    assert_eq!(path_count(&env.sim, "/v3/lock/queryOpenState"), 2);
}

#[tokio::test]
async fn timeout_on_unlock_is_unconfirmed_and_not_retried() {
    let config = ClientConfig {
        remote_timeout: Duration::from_millis(100),
        ..client_config()
    };
    let env = env_with(fixture(1), SimConfig::default(), config).await;
    env.client.authenticate().await.expect("login");
    env.sim.update_faults(|f| f.remote_latency_ms = 2_000);
    let error = env.client.unlock(FIRST_LOCK).await.expect_err("times out");
    assert!(
        matches!(&error, Error::Unconfirmed { cause } if matches!(**cause, Error::Timeout)),
        "{error:?}"
    );
    assert_eq!(path_count(&env.sim, "/v3/lock/unlock"), 1);
}

fn code_for(i: usize) -> String {
    // Distinct codes that are neither runs nor repeats.
    format!("58{:02}3{}", i, i % 7)
}

#[tokio::test]
async fn passcodes_and_records_are_listed_across_pages() {
    let env = env(1).await;
    // Records are filtered by the lock's clock, which counts whole seconds.
    let since = env.clock_now() / 1_000 * 1_000;
    let mut ids = Vec::new();
    for i in 0..23 {
        let validity = if i % 2 == 0 {
            Validity::Permanent
        } else {
            Validity::Period {
                start_ms: since,
                end_ms: since + 86_400_000,
            }
        };
        let id = env
            .client
            .add_passcode(
                FIRST_LOCK,
                &PasscodeText::new(code_for(i)),
                Some("guest"),
                validity,
            )
            .await
            .expect("added");
        ids.push(id);
    }
    let listed = env.client.passcodes(FIRST_LOCK).await.expect("listed");
    assert_eq!(listed.len(), 23);
    assert_eq!(path_count(&env.sim, "/v3/lock/listKeyboardPwd"), 3);
    let permanent = listed
        .iter()
        .find(|p| p.keyboard_pwd_id == ids[0])
        .expect("first");
    assert_eq!(permanent.keyboard_pwd_type, Some(2));
    assert_eq!(permanent.end_date, Some(0));
    assert_eq!(
        permanent.keyboard_pwd.as_ref().map(PasscodeText::expose),
        Some(code_for(0).as_str())
    );

    env.client
        .change_passcode(
            FIRST_LOCK,
            ids[1],
            PasscodeChange {
                new_code: Some(PasscodeText::from("7305911")),
                ..PasscodeChange::default()
            },
        )
        .await
        .expect("changed");
    env.client
        .delete_passcode(FIRST_LOCK, ids[2])
        .await
        .expect("deleted");
    // TTLock answers success for an id it does not know.
    env.client
        .delete_passcode(FIRST_LOCK, 1)
        .await
        .expect("unknown id");
    let on_lock = env.sim.passcodes(FIRST_LOCK);
    assert_eq!(on_lock.len(), 22);
    assert!(
        on_lock
            .iter()
            .any(|p| p.id == ids[1] && p.code == "7305911")
    );

    env.client.unlock(FIRST_LOCK).await.expect("unlock");
    env.client.lock(FIRST_LOCK).await.expect("lock");
    let records = env
        .client
        .records_since(FIRST_LOCK, since)
        .await
        .expect("records");
    // 23 added, 1 changed, 1 deleted, 1 unlock, 1 lock.
    assert_eq!(records.len(), 27);
    assert_eq!(path_count(&env.sim, "/v3/lockRecord/list"), 3);
    let count = |cloud: i32, lock: i32| {
        records
            .iter()
            .filter(|r| r.record_type == Some(cloud) && r.record_type_from_lock == Some(lock))
            .count()
    };
    assert_eq!(count(93, 93), 23);
    assert_eq!(count(5, 5), 1);
    assert_eq!(count(6, 6), 1);
    assert_eq!(count(12, 28), 1, "unlock by gateway");
    assert_eq!(count(11, 26), 1, "lock by app");
    assert!(records.iter().all(|r| r.success == Some(true)));

    // Records before `since` are not returned.
    let later = env
        .client
        .records_since(FIRST_LOCK, since + 60_000)
        .await
        .expect("none");
    assert!(later.is_empty());
}

#[tokio::test]
async fn gateways_and_remote_queries() {
    let env = env(12).await;
    let gateways = env.client.gateways().await.expect("gateways");
    assert_eq!(gateways.len(), 2);
    let main = gateways
        .iter()
        .find(|g| g.gateway_id == GATEWAY)
        .expect("gateway");
    assert_eq!(main.lock_num, Some(13));
    assert_eq!(main.is_online, Some(true));
    let behind = env
        .client
        .gateway_locks(GATEWAY)
        .await
        .expect("locks behind");
    assert_eq!(behind.len(), 13);
    let reach = env.client.lock_gateways(FIRST_LOCK).await.expect("reach");
    assert_eq!(reach[0].gateway_id, GATEWAY);

    assert_eq!(
        env.client
            .query_open_state(FIRST_LOCK)
            .await
            .expect("state")
            .bolt(),
        BoltState::Locked
    );
    env.client.unlock(FIRST_LOCK).await.expect("unlock");
    assert_eq!(
        env.client
            .query_open_state(FIRST_LOCK)
            .await
            .expect("state")
            .bolt(),
        BoltState::Unlocked
    );
    assert_eq!(
        env.client.query_battery(FIRST_LOCK).await.expect("battery"),
        90
    );
    // A WiFi lock takes commands without a gateway.
    env.client.unlock(WIFI_LOCK).await.expect("wifi unlock");
    assert_eq!(env.sim.unlock_count(WIFI_LOCK), 1);
    let detail = env.client.lock_detail(FIRST_LOCK).await.expect("detail");
    assert_eq!(detail.auto_lock_time, Some(30));
    assert_eq!(detail.has_gateway, Some(true));
}

#[tokio::test]
async fn concurrent_unlocks_behind_one_gateway_never_overlap() {
    let env = env(20).await;
    env.client.authenticate().await.expect("login");
    env.sim.update_faults(|f| f.remote_latency_ms = 25);
    let unlocks: Vec<_> = (0..20)
        .map(|i| {
            let client = env.client.clone();
            tokio::spawn(async move { client.unlock(FIRST_LOCK + i).await })
        })
        .collect();
    for unlock in unlocks {
        unlock.await.expect("task").expect("unlock succeeds");
    }
    let stats = env.sim.stats();
    assert_eq!(stats.overlaps, 0);
    assert_eq!(errcode_count(&env.sim, -3003), 0);
    assert_eq!(path_count(&env.sim, "/v3/lock/unlock"), 20, "none retried");
    for i in 0..20 {
        assert_eq!(env.sim.unlock_count(FIRST_LOCK + i), 1);
    }
}

#[tokio::test]
async fn simulator_detects_overlapping_commands() {
    // Two independent clients do not share serialisation: their commands collide on
    // the gateway, which proves the overlap counter the previous test relies on.
    // Backoff long enough to outlast the other command.
    let patient = ClientConfig {
        retry: RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
        },
        ..client_config()
    };
    let env = env_with(fixture(2), SimConfig::default(), patient.clone()).await;
    let other = TtlockClient::new(
        account(
            &env.sim,
            Password::Plain(SecretString::from(PASSWORD.to_owned())),
        ),
        patient,
        Arc::new(env.clock.clone()),
    )
    .expect("client");
    env.client.authenticate().await.expect("login");
    other.authenticate().await.expect("login");
    // Resolve gateways first so both commands leave at once.
    env.client.lock_gateways(FIRST_LOCK).await.expect("reach");
    env.sim.update_faults(|f| f.remote_latency_ms = 500);
    let (a, b) = tokio::join!(env.client.unlock(FIRST_LOCK), other.unlock(FIRST_LOCK + 1));
    a.expect("first unlock");
    b.expect("second unlock, after retrying -3003");
    assert!(env.sim.stats().overlaps >= 1);
    assert!(errcode_count(&env.sim, -3003) >= 1);
}

#[tokio::test]
async fn request_rate_stays_within_the_limit() {
    let rate = 10.0;
    let burst = 2;
    let config = ClientConfig {
        requests_per_second: rate,
        burst,
        ..client_config()
    };
    let env = env_with(fixture(1), SimConfig::default(), config).await;
    // The simulator enforces the same budget: any excess would come back as 30006.
    env.sim
        .update_faults(|f| f.rate_limit_per_second = Some(12));
    let started = Instant::now();
    let calls: Vec<_> = (0..30)
        .map(|_| {
            let client = env.client.clone();
            tokio::spawn(async move { client.lock_detail(FIRST_LOCK).await })
        })
        .collect();
    for call in calls {
        call.await.expect("task").expect("detail");
    }
    let stats = env.sim.stats();
    let max = stats
        .max_rate_per_second
        .get("sim_hotel")
        .copied()
        .expect("measured");
    assert!(max <= 10 + burst, "max {max} requests in one second");
    assert_eq!(stats.rate_limited, 0);
    // 31 requests (login included) at 10/s after a burst of 2 take about 2.9 s; reported
    // for information, the assertion above is the contract.
    eprintln!("31 requests took {:?}, max {max}/s", started.elapsed());
}

#[tokio::test]
async fn rate_limited_answers_are_retried() {
    let env = env(1).await;
    env.client.authenticate().await.expect("login");
    env.sim.set_faults(Faults {
        inject: vec![InjectedFailure::errcode(30006).on("/v3/lock/detail")],
        ..Faults::default()
    });
    env.client.lock_detail(FIRST_LOCK).await.expect("retried");
    assert_eq!(path_count(&env.sim, "/v3/lock/detail"), 2);
}

#[tokio::test]
async fn callbacks_are_posted_in_ttlock_encoding() {
    use axum::body::Bytes;
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel::<String>();
    let receiver = axum::Router::new().route(
        "/callback",
        axum::routing::post(move |body: Bytes| {
            let sender = sender.clone();
            async move {
                let _ = sender.send(String::from_utf8_lossy(&body).into_owned());
                "success"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/callback", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let env = env(1).await;
    env.sim.set_callback_url(Some(url));
    env.client.unlock(FIRST_LOCK).await.expect("unlock");
    let body = received.recv().await.expect("callback");
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(&body).expect("form");
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["lockId", "notifyType", "records", "admin", "lockMac"]
    );
    let records = &fields[2].1;
    assert!(
        records.starts_with(r#"[{"lockId":1000,"electricQuantity":90,"serverDate":"#),
        "{records}"
    );
    let callback = lock_gateway::ttlock::types::Callback::from_form(
        fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .expect("decodes");
    assert_eq!(callback.notify_type, Some(1));
    assert_eq!(callback.admin.as_deref(), Some("admin@example.test"));
    let record = &callback.records[0];
    assert_eq!(
        (record.record_type, record.record_type_from_lock),
        (Some(12), Some(28))
    );
    assert_eq!(record.username.as_deref(), Some("sim_hotel"));

    // A code typed on the keypad reports as a passcode unlock.
    env.client
        .add_passcode(
            FIRST_LOCK,
            &PasscodeText::from("0506"),
            Some("guest"),
            Validity::Permanent,
        )
        .await
        .expect("added");
    let added = received.recv().await.expect("callback for the add");
    assert!(added.contains("%22recordType%22%3A93"));
    assert_eq!(env.sim.keypad(FIRST_LOCK, "0506"), Some(true));
    let typed = received.recv().await.expect("callback for the keypad");
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(&typed).expect("form");
    let callback = lock_gateway::ttlock::types::Callback::from_form(
        fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .expect("decodes");
    let record = &callback.records[0];
    assert_eq!(
        (record.record_type, record.record_type_from_lock),
        (Some(4), Some(4))
    );
    assert_eq!(record.username.as_deref(), Some("guest"));
}
