//! No TTLock secret, token or passcode reaches the logs, whatever the outcome. Its own
//! test binary: the subscriber is process-wide, so no other test shares it.

use std::sync::{Arc, Mutex};

use lock_gateway::sim::{Faults, Fixture, InjectedFailure, SimConfig, Simulator};
use lock_gateway::ttlock::{
    AccountConfig, ClientConfig, ManualClock, PasscodeChange, PasscodeText, Password, TtlockClient,
    Validity, md5_hex,
};
use secrecy::{ExposeSecret as _, SecretString};
use tracing::Instrument as _;
use tracing_subscriber::fmt::format::FmtSpan;

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("buffer")).into_owned()
    }
}

#[tokio::test]
async fn no_secret_token_or_passcode_reaches_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let fixture = Fixture::default_fixture();
    let seeded = fixture.accounts[0].clone();
    let lock_id = seeded.locks[0].lock_id;
    let clock = ManualClock::starting_now();
    let sim = Simulator::start(SimConfig {
        fixture,
        clock: Arc::new(clock.clone()),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let client = TtlockClient::new(
        AccountConfig::new(
            seeded.client_id.clone(),
            SecretString::from(seeded.client_secret.clone()),
            seeded.username.clone(),
            Password::Plain(SecretString::from(seeded.password.clone())),
        )
        .with_base_url(sim.base_url()),
        ClientConfig {
            requests_per_second: 0.0,
            ..ClientConfig::default()
        },
        Arc::new(clock.clone()),
    )
    .expect("client");

    let passcode = "482913";
    let changed = "5093177";
    let caller = tracing::info_span!("caller", request_id = "req-77");
    let mut seen_tokens = Vec::new();
    async {
        client.unlock(lock_id).await.expect("unlock");
        seen_tokens.push(client.token().await.expect("token"));
        let id = client
            .add_passcode(
                lock_id,
                &PasscodeText::from(passcode),
                Some("guest"),
                Validity::Permanent,
            )
            .await
            .expect("added");
        let listed = client.passcodes(lock_id).await.expect("listed");
        tracing::info!(?listed, "passcodes listed");
        let records = client.records_since(lock_id, 0).await.expect("records");
        tracing::info!(?records, "records listed");
        sim.revoke_access_tokens();
        client.lock_detail(lock_id).await.expect("renewed");
        seen_tokens.push(client.token().await.expect("token"));
        sim.set_faults(Faults {
            inject: vec![InjectedFailure::errcode(-3007).on("/v3/keyboardPwd/change")],
            ..Faults::default()
        });
        let error = client
            .change_passcode(
                lock_id,
                id,
                PasscodeChange {
                    new_code: Some(PasscodeText::from(changed)),
                    ..PasscodeChange::default()
                },
            )
            .await
            .expect_err("refused");
        tracing::warn!(%error, ?error, "change failed");
        let token = client.token().await.expect("token");
        tracing::info!(?token, ?client, "client state");
    }
    .instrument(caller)
    .await;

    let logs = capture.text();
    assert!(logs.contains("ttlock.request"), "spans were captured");
    assert!(
        logs.contains("caller{request_id=\"req-77\"}"),
        "caller context carried"
    );
    assert!(logs.contains("ttlock.errcode=10004"), "errcodes recorded");
    let md5 = md5_hex(&seeded.password);
    let mut secrets = vec![
        seeded.client_secret.as_str(),
        seeded.password.as_str(),
        md5.as_str(),
        passcode,
        changed,
    ];
    for token in &seen_tokens {
        secrets.push(token.access_token.expose_secret());
        secrets.push(token.refresh_token.expose_secret());
    }
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
}
