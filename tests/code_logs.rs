//! No access code reaches the logs or spans of either service, from issue through
//! provisioning, checks and the keypad's records. Its own test binary: the subscriber
//! is process-wide. The codes have nine digits, so none turns up by chance among the
//! timestamps and ids of megabytes of TRACE output.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::world::*;
use latchkey::clock::Clock;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_service_client::AccessServiceClient;
use latchkey::testkit::authorized;
use tracing_subscriber::fmt::format::FmtSpan;

const FRONT_DOOR: i64 = 7_252_408;

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
async fn no_code_reaches_the_logs_or_spans() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let w = World::with_follower(1, settings(), true).await;
    let front = w.door("Front door", Some(FRONT_DOOR)).await;
    w.sync_locks().await;
    let now = w.clock.now();
    let window = Some((
        now - chrono::Duration::hours(1),
        now + chrono::Duration::days(1),
    ));
    let chosen = w.issue(0, &[&front], "915372846", window, "logs-1").await;
    let generated = w.issue_with_length(0, &[&front], 9, window, "logs-2").await;
    let generated_code = generated.code.clone();
    assert_eq!(generated_code.len(), 9);
    for id in [
        &chosen.access_code.as_ref().unwrap().id,
        &generated.access_code.as_ref().unwrap().id,
    ] {
        eventually("the code set", || async {
            w.door_state(id).await == pb::SyncState::Set
        })
        .await;
    }

    let mut access = AccessServiceClient::new(w.channel(0).await);
    for (code, granted) in [("915372846", true), ("604817293", false)] {
        let answer = access
            .check_access(authorized(
                pb::CheckAccessRequest {
                    door_id: front.clone(),
                    method: pb::AccessMethod::Pin as i32,
                    code: code.into(),
                    request_id: format!("check-{code}"),
                    ..Default::default()
                },
                &w.admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.decision.unwrap().granted, granted);
    }
    assert_eq!(w.sim.keypad(FRONT_DOOR, &generated_code), Some(true));
    w.clock.advance(Duration::from_secs(5));
    assert_eq!(w.sim.keypad(FRONT_DOOR, "604817293"), Some(false));
    w.sync_locks().await;
    eventually("the keypad entries audited", || async {
        w.logs(pb::LogFilter {
            door_id: front.clone(),
            method: pb::AccessMethod::Passcode as i32,
            ..Default::default()
        })
        .await
        .len()
            == 2
    })
    .await;

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    for traced in ["provisioning.intent", "CreatePasscode", "CheckAccess"] {
        assert!(logs.contains(traced), "{traced} was not traced");
    }
    for code in ["915372846", "604817293", generated_code.as_str()] {
        assert!(!logs.contains(code), "{code} in the logs");
    }
}
