//! A request id names one request. The same request again replays its first answer;
//! another request under the same id (another operation, account, lock, passcode, code,
//! name or window) is refused as REQUEST_ID_REUSED and nothing reaches TTLock. This
//! holds for every lock-gateway call that takes a request id.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Duration;
use latchkey::pb::gateway::v1 as pb;
use latchkey::testkit::{authorized, token};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use common::*;

const UNLOCK: &str = "/v3/lock/unlock";
const LOCK: &str = "/v3/lock/lock";

impl Harness {
    async fn remote(
        &self,
        operation: &str,
        lock_id: i64,
        request_id: &str,
    ) -> Result<pb::RemoteOperationResponse, Status> {
        let request = self.req(pb::RemoteOperationRequest {
            account_id: self.account.clone(),
            lock_id,
            request_id: request_id.into(),
        });
        let mut client = self.client.clone();
        let answer = match operation {
            UNLOCK => client.remote_unlock(request).await,
            _ => client.remote_lock(request).await,
        };
        answer.map(tonic::Response::into_inner)
    }

    fn change_request(
        &self,
        passcode_id: i64,
        new_code: &str,
        name: &str,
        request_id: &str,
    ) -> pb::ChangePasscodeRequest {
        pb::ChangePasscodeRequest {
            account_id: self.account.clone(),
            lock_id: FRONT_DOOR,
            passcode_id,
            new_code: new_code.into(),
            name: name.into(),
            start_time: None,
            end_time: None,
            request_id: request_id.into(),
        }
    }

    /// Stores a claim as releases before request fingerprints did.
    async fn legacy_claim(&self, table: &str, operation: &str, request_id: &str) {
        let outcome = if table == "remote_operations" {
            "CONFIRMED"
        } else {
            "DONE"
        };
        self.db
            .client()
            .await
            .execute(
                &format!(
                    "INSERT INTO gateway.{table} \
                     (tenant_id, request_id, operation, account_id, lock_id, outcome) \
                     VALUES ('acme', $1, $2, $3::text::uuid, $4, $5)"
                ),
                &[
                    &request_id,
                    &operation,
                    &self.account,
                    &FRONT_DOOR,
                    &outcome,
                ],
            )
            .await
            .unwrap();
    }
}

fn assert_reused(result: &pb::PasscodeResult) {
    assert_eq!(
        (outcome(result), result.reason.as_str(), result.passcode_id),
        (pb::PasscodeOutcome::Failed, "REQUEST_ID_REUSED", 0),
        "{result:?}"
    );
    assert!(!result.replayed, "nothing earlier is repeated: {result:?}");
}

fn assert_refused_reused(answer: Result<impl std::fmt::Debug, Status>) {
    let status = answer.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "REQUEST_ID_REUSED"
    );
}

fn assert_replayed(first: &pb::PasscodeResult, again: &pb::PasscodeResult) {
    assert_eq!(outcome(again), outcome(first), "{again:?}");
    assert_eq!(again.passcode_id, first.passcode_id);
    assert!(again.replayed);
}

#[tokio::test]
async fn a_create_reused_for_another_code_name_window_or_lock_is_refused() {
    let h = Harness::start().await;
    let first = h.create(FRONT_DOOR, "58317", None, "pc-1").await;
    assert_eq!(outcome(&first), pb::PasscodeOutcome::Done, "{first:?}");
    assert_replayed(&first, &h.create(FRONT_DOOR, "58317", None, "pc-1").await);

    assert_reused(&h.create(FRONT_DOOR, "58391", None, "pc-1").await);
    let mut renamed = h.new_passcode(FRONT_DOOR, "58317", None, "pc-1");
    renamed.name = "Cleaner".into();
    assert_reused(
        &h.client
            .clone()
            .create_passcode(h.req(renamed))
            .await
            .unwrap()
            .into_inner(),
    );
    let window = Some((now(), now() + Duration::days(2)));
    assert_reused(&h.create(FRONT_DOOR, "58317", window, "pc-1").await);
    assert_reused(&h.create(ROOM_101, "58317", None, "pc-1").await);

    assert_eq!(h.sent(ADD), 1, "only the first request was sent");
    let codes: Vec<String> = h
        .sim
        .passcodes(FRONT_DOOR)
        .into_iter()
        .map(|p| p.code)
        .collect();
    assert_eq!(codes, ["58317"]);
    assert!(h.sim.passcodes(ROOM_101).is_empty());
    h.assert_not_stored(&["58317", "58391"]).await;

    // A claim stored before fingerprints is compared by what its row names, as then.
    h.legacy_claim("passcode_operations", "CREATE", "pc-legacy")
        .await;
    let legacy = h.create(FRONT_DOOR, "58391", None, "pc-legacy").await;
    assert!(legacy.replayed, "{legacy:?}");
    assert_reused(&h.create(ROOM_101, "58391", None, "pc-legacy").await);
    assert_eq!(h.sent(ADD), 1);
}

#[tokio::test]
async fn a_change_reused_for_another_code_name_window_or_passcode_is_refused() {
    let h = Harness::start().await;
    let created = h.create(FRONT_DOOR, "58317", None, "pc-create").await;
    let other = h.create(FRONT_DOOR, "40712", None, "pc-create-2").await;
    let id = created.passcode_id;

    let first = h
        .change(h.change_request(id, "58391", "", "pc-change"))
        .await;
    assert_eq!(outcome(&first), pb::PasscodeOutcome::Done, "{first:?}");
    assert_replayed(
        &first,
        &h.change(h.change_request(id, "58391", "", "pc-change"))
            .await,
    );

    assert_reused(
        &h.change(h.change_request(id, "58392", "", "pc-change"))
            .await,
    );
    assert_reused(
        &h.change(h.change_request(id, "58391", "Cleaner", "pc-change"))
            .await,
    );
    let mut windowed = h.change_request(id, "58391", "", "pc-change");
    windowed.start_time = Some(latchkey::pb::timestamp(now()));
    windowed.end_time = Some(latchkey::pb::timestamp(now() + Duration::days(1)));
    assert_reused(&h.change(windowed).await);
    assert_reused(
        &h.change(h.change_request(other.passcode_id, "58391", "", "pc-change"))
            .await,
    );

    assert_eq!(h.sent(CHANGE), 1, "only the first change was sent");
    let mut codes: Vec<String> = h
        .sim
        .passcodes(FRONT_DOOR)
        .into_iter()
        .map(|p| p.code)
        .collect();
    codes.sort();
    assert_eq!(codes, ["40712", "58391"]);
    h.assert_not_stored(&["58317", "58391", "58392", "40712"])
        .await;
}

#[tokio::test]
async fn a_delete_reused_for_another_passcode_or_operation_is_refused() {
    let h = Harness::start().await;
    let first = h.create(FRONT_DOOR, "58317", None, "pc-create-1").await;
    let second = h.create(FRONT_DOOR, "40712", None, "pc-create-2").await;

    let deleted = h.delete(FRONT_DOOR, first.passcode_id, "pc-delete").await;
    assert_eq!(outcome(&deleted), pb::PasscodeOutcome::Done, "{deleted:?}");
    assert_replayed(
        &deleted,
        &h.delete(FRONT_DOOR, first.passcode_id, "pc-delete").await,
    );
    assert_reused(&h.delete(FRONT_DOOR, second.passcode_id, "pc-delete").await);
    assert_reused(&h.create(FRONT_DOOR, "58317", None, "pc-delete").await);
    // The delete's own id, used by a create, stays the create's.
    assert_reused(&h.delete(FRONT_DOOR, first.passcode_id, "pc-create-1").await);

    assert_eq!((h.sent(DELETE), h.sent(ADD)), (1, 2));
    assert_eq!(h.sim.passcodes(FRONT_DOOR).len(), 1);
}

#[tokio::test]
async fn a_remote_operation_reused_for_another_lock_or_operation_is_refused() {
    let h = Harness::start().await;
    let opened = h.remote(UNLOCK, FRONT_DOOR, "door-1").await.unwrap();
    assert_eq!(opened.outcome(), pb::RemoteOutcome::Confirmed, "{opened:?}");
    assert!(!opened.replayed);
    let again = h.remote(UNLOCK, FRONT_DOOR, "door-1").await.unwrap();
    assert_eq!(
        (again.outcome(), again.replayed),
        (pb::RemoteOutcome::Confirmed, true)
    );
    assert_refused_reused(h.remote(UNLOCK, ROOM_101, "door-1").await);
    assert_refused_reused(h.remote(LOCK, FRONT_DOOR, "door-1").await);

    let locked = h.remote(LOCK, ROOM_101, "door-2").await.unwrap();
    assert_eq!(locked.outcome(), pb::RemoteOutcome::Confirmed, "{locked:?}");
    assert!(h.remote(LOCK, ROOM_101, "door-2").await.unwrap().replayed);
    assert_refused_reused(h.remote(LOCK, FRONT_DOOR, "door-2").await);
    assert_refused_reused(h.remote(UNLOCK, ROOM_101, "door-2").await);

    assert_eq!(
        (h.sim.unlock_count(FRONT_DOOR), h.sim.unlock_count(ROOM_101)),
        (1, 0),
        "each door moved once, for its own request"
    );
    assert_eq!((h.sent(UNLOCK), h.sent(LOCK)), (1, 1));

    // A claim stored before fingerprints is compared by what its row names, as then.
    h.legacy_claim("remote_operations", "UNLOCK", "door-legacy")
        .await;
    assert!(
        h.remote(UNLOCK, FRONT_DOOR, "door-legacy")
            .await
            .unwrap()
            .replayed
    );
    assert_refused_reused(h.remote(LOCK, FRONT_DOOR, "door-legacy").await);
    assert_eq!((h.sent(UNLOCK), h.sent(LOCK)), (1, 1));
}

#[tokio::test]
async fn an_account_registration_reused_for_another_account_is_refused() {
    let h = Harness::start().await;
    let other = token("globex", "access-service", &["SERVICE"]);
    let register = |request: pb::RegisterAccountRequest| {
        let mut client = h.client.clone();
        let request = authorized(request, &other);
        async move {
            client
                .register_account(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let mut request = h.sim.register_request();
    request.request_id = "acct-1".into();
    let first = register(request.clone()).await.unwrap();
    let logins = h.sim.stats().logins;
    assert_eq!(register(request.clone()).await.unwrap(), first);

    let mut renamed = request.clone();
    renamed.name = "Annex desk".into();
    assert_refused_reused(register(renamed.clone()).await);
    let mut repassworded = request.clone();
    repassworded.password = "another-password".into();
    assert_refused_reused(register(repassworded).await);
    assert_eq!(
        h.sim.stats().logins,
        logins,
        "a replay or a reuse asks TTLock nothing"
    );
    let listed = h
        .client
        .clone()
        .list_accounts(authorized(pb::ListAccountsRequest {}, &other))
        .await
        .unwrap()
        .into_inner()
        .accounts;
    assert_eq!(listed, std::slice::from_ref(&first));
    let stored = h.stored().await;
    assert!(!stored.contains(&request.password) && !stored.contains(&request.client_secret));

    // An account registered before fingerprints replays whatever comes under its id.
    h.db.client()
        .await
        .execute(
            "UPDATE gateway.ttlock_accounts SET request_fingerprint = NULL \
             WHERE request_id = 'acct-1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(register(renamed).await.unwrap(), first);
}
