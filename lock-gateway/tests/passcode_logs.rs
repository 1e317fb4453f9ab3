//! No passcode reaches the logs or spans on its way through lock-gateway's gRPC surface,
//! whatever the outcome, nor on its way back in callbacks and records; nor does the
//! callback URL's secret. Its own test binary: the subscriber is process-wide, so no
//! other test shares it.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use latchkey::pb::gateway::v1 as pb;
use latchkey::pb::gateway::v1::lock_gateway_client::LockGatewayClient;
use latchkey::testkit::{RunningServer, TEST_JWT_SECRET, TestDb, authorized, token};
use lock_gateway::Config;
use lock_gateway::sim::{InjectedFailure, SimConfig, Simulator};
use tokio_stream::StreamExt;
use tracing_subscriber::fmt::format::FmtSpan;

const ROOM_101: i64 = 6_901_284;

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_passcode_reaches_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let db = TestDb::migrated(vec![(
        lock_gateway::db::SCHEMA,
        lock_gateway::db::MIGRATIONS,
        lock_gateway::db::MIGRATIONS_DIR,
    )])
    .await;
    let secret = "cb-log-hygiene-3f9a1c5d2b8e4f6a";
    let mut config = Config::new(db.url(), TEST_JWT_SECRET);
    config.callback_secret = Some(secrecy::SecretString::from(secret.to_owned()));
    let callbacks = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    sim.set_callback_url(Some(format!(
        "http://{}/ttlock/callback/{secret}",
        callbacks.local_addr().unwrap()
    )));
    let server = RunningServer::spawn(|listener, shutdown| {
        lock_gateway::run_with_callbacks(listener, Some(callbacks), config, shutdown)
    })
    .await;
    let mut client = LockGatewayClient::new(server.channel().await);
    let service = token("acme", "access-service", &["SERVICE"]);
    let account = client
        .register_account(authorized(sim.register_request(), &service))
        .await
        .unwrap()
        .into_inner()
        .id;

    // Nine digits, so none turns up by chance among the timestamps and ids of the logs.
    let (code, changed, ambiguous, invalid) = ("482913657", "509317764", "730591628", "12a45b7c9");
    let create = |code: &str, request_id: &str| pb::CreatePasscodeRequest {
        account_id: account.clone(),
        lock_id: ROOM_101,
        code: code.into(),
        name: "Guest".into(),
        start_time: None,
        end_time: None,
        request_id: request_id.into(),
    };
    let done = client
        .create_passcode(authorized(create(code, "c1"), &service))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.outcome, pb::PasscodeOutcome::Done as i32);
    // Refused, replayed, invalid and ambiguous writes too.
    for request_id in ["c2", "c2"] {
        let duplicate = client
            .create_passcode(authorized(create(code, request_id), &service))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(duplicate.reason, "DUPLICATE");
    }
    let refused = client
        .create_passcode(authorized(create(invalid, "c3"), &service))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    sim.update_faults(|f| {
        f.inject.push(
            InjectedFailure::errcode(1)
                .on("/v3/keyboardPwd/add")
                .executed(),
        )
    });
    let unconfirmed = client
        .create_passcode(authorized(create(ambiguous, "c4"), &service))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unconfirmed.reason, "AMBIGUOUS");
    let change = client
        .change_passcode(authorized(
            pb::ChangePasscodeRequest {
                account_id: account.clone(),
                lock_id: ROOM_101,
                passcode_id: done.passcode_id,
                new_code: changed.into(),
                request_id: "c5".into(),
                ..Default::default()
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(change.outcome, pb::PasscodeOutcome::Done as i32);
    // The lock is synced, so the keypad entry's callback is published as an event, and
    // the records read back carry the code too.
    client
        .sync_locks(authorized(
            pb::SyncLocksRequest {
                account_id: account.clone(),
            },
            &service,
        ))
        .await
        .unwrap();
    let mut events = client
        .watch_device_events(authorized(
            pb::WatchDeviceEventsRequest { after_cursor: 0 },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sim.keypad(ROOM_101, changed), Some(true));
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(20), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if event.kind() == pb::DeviceEventKind::UnlockPasscode {
            break;
        }
    }
    client
        .sync_locks(authorized(
            pb::SyncLocksRequest {
                account_id: account.clone(),
            },
            &service,
        ))
        .await
        .unwrap();
    client
        .list_passcodes(authorized(
            pb::ListPasscodesRequest {
                account_id: account.clone(),
                lock_id: ROOM_101,
            },
            &service,
        ))
        .await
        .unwrap();
    client
        .list_lock_records(authorized(
            pb::ListLockRecordsRequest {
                account_id: account.clone(),
                lock_id: ROOM_101,
                since: None,
            },
            &service,
        ))
        .await
        .unwrap();

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(logs.contains("passcode write"), "the writes were logged");
    assert!(
        logs.contains("ttlock.request"),
        "the TTLock calls were traced"
    );
    assert!(logs.contains("ttlock.callback"), "the callback was traced");
    for secret in [code, changed, ambiguous, invalid, secret] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}
