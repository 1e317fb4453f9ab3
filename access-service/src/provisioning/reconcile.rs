//! Reconciliation: what is on a lock against what should be. Missing codes are queued to
//! be set again, latchkey's codes that no longer stand are queued for removal, and
//! passcodes latchkey did not create are reported (and deleted only when asked).

use std::collections::HashMap;
use std::time::Duration;

use diesel_async::AsyncConnection;
use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pb::access::v1 as pb;
use latchkey::pb::gateway::v1::{Passcode, PasscodeOutcome};
use tracing::Instrument;
use uuid::Uuid;

use crate::db::outbox::{self, Intent};
use crate::error::Result;
use crate::gateway::PasscodeAnswer;
use crate::passcode_names::code_id_of;
use crate::state::AppState;

fn lock_passcode(p: &Passcode) -> pb::LockPasscode {
    pb::LockPasscode {
        lock_passcode_id: p.passcode_id,
        name: p.name.clone(),
        masked_code: p.masked_code.clone(),
    }
}

/// `ReconcileLock`.
pub async fn reconcile_lock(
    state: &AppState,
    caller: &Caller,
    request: pb::ReconcileLockRequest,
) -> Result<pb::ReconcileLockResponse> {
    let mut violations = FieldViolations::default();
    let door = crate::directory::parse_id("door_id", &request.door_id, &mut violations);
    violations.check()?;
    reconcile_door(state, &caller.tenant_id, door, request.remove_unmanaged).await
}

/// Reconciles one door's lock.
pub async fn reconcile_door(
    state: &AppState,
    tenant: &str,
    door: Uuid,
    remove_unmanaged: bool,
) -> Result<pb::ReconcileLockResponse> {
    let binding = {
        let mut conn = state.pool.get().await?;
        crate::db::doors::get(&mut conn, tenant, door)
            .await?
            .map(|view| view.door.lock_account_id.zip(view.door.lock_id))
    };
    let (account, lock) = match binding {
        None => return Err(ApiError::not_found("door", door.to_string()).into()),
        Some(None) => {
            return Err(ApiError::failed_precondition(
                "NO_LOCK",
                "the door is not bound to a lock",
            )
            .into());
        }
        Some(Some(binding)) => binding,
    };
    let on_lock = state.gateway.list_passcodes(tenant, account, lock).await?;
    let now = state.clock.now();
    let mut response = pb::ReconcileLockResponse::default();
    let mut unmanaged = Vec::new();
    let mut conn = state.pool.get().await?;
    let woke = conn
        .transaction(async |conn| {
            let rows = outbox::rows_of_door(conn, tenant, door).await?;
            let ids: Vec<Uuid> = rows.iter().map(|r| r.code_id).collect();
            let codes: HashMap<Uuid, outbox::CodeWindow> = outbox::code_windows(conn, tenant, &ids)
                .await?
                .into_iter()
                .map(|c| (c.id, c))
                .collect();
            let mut present: HashMap<Uuid, &Passcode> = HashMap::new();
            for passcode in &on_lock {
                match code_id_of(&passcode.name).filter(|id| codes.contains_key(id)) {
                    Some(id) => {
                        present.insert(id, passcode);
                    }
                    None => unmanaged.push(passcode.clone()),
                }
            }
            let mut woke = false;
            for row in &rows {
                let Some(code) = codes.get(&row.code_id) else {
                    continue;
                };
                let found = present.get(&row.code_id);
                let active = code.status == "ACTIVE" && code.end_time.is_none_or(|end| end > now);
                match (active, found, row.sync_state.as_str()) {
                    // Should be there and is.
                    (true, Some(p), "SET" | "PENDING" | "SETTING") => {
                        if row.sync_state != "SET"
                            && !outbox::has_open(conn, row.code_id, door, "SET").await?
                        {
                            outbox::set_door_state(
                                conn,
                                row.code_id,
                                door,
                                "SET",
                                "",
                                "found on the lock",
                                Some(p.passcode_id),
                            )
                            .await?;
                        }
                        response.in_sync += 1;
                    }
                    // Should be there, is not, and nothing is under way: write it again.
                    (true, None, "SET") => {
                        let Some((sealed_for, sealed)) =
                            outbox::latest_sealed(conn, row.code_id, door).await?
                        else {
                            outbox::set_door_state(
                                conn,
                                row.code_id,
                                door,
                                "FAILED",
                                "CODE_UNAVAILABLE",
                                "missing from the lock and no sealed copy is kept",
                                None,
                            )
                            .await?;
                            continue;
                        };
                        let Ok(plain) = state
                            .code_keys
                            .open(&sealed, &outbox::seal_context(sealed_for))
                        else {
                            continue;
                        };
                        let mut intent = Intent::new(tenant, row.code_id, door, "SET", now);
                        intent.code_sealed = Some(state.code_keys.seal(
                            secrecy::ExposeSecret::expose_secret(&plain),
                            &outbox::seal_context(intent.id),
                        ));
                        outbox::set_door_state(
                            conn,
                            row.code_id,
                            door,
                            "PENDING",
                            "",
                            "missing from the lock; set again",
                            None,
                        )
                        .await?;
                        outbox::insert_intent(conn, &intent).await?;
                        response.queued_set.push(row.code_id.to_string());
                        woke = true;
                    }
                    // On the lock but should not be, and no removal is under way.
                    (false, Some(p), state) if state != "REMOVING" => {
                        outbox::close_open(
                            conn,
                            row.code_id,
                            door,
                            None,
                            "superseded by reconciliation",
                        )
                        .await?;
                        outbox::set_door_state(
                            conn,
                            row.code_id,
                            door,
                            "REMOVING",
                            "",
                            "found on the lock after it ended",
                            Some(p.passcode_id),
                        )
                        .await?;
                        outbox::insert_intent(
                            conn,
                            &Intent::new(tenant, row.code_id, door, "REMOVE", now),
                        )
                        .await?;
                        response.queued_removal.push(lock_passcode(p));
                        woke = true;
                    }
                    _ => {}
                }
            }
            Ok::<_, diesel::result::Error>(woke)
        })
        .await?;
    drop(conn);
    if woke {
        state.provisioning_wake.notify_one();
    }
    for passcode in unmanaged {
        let item = lock_passcode(&passcode);
        if remove_unmanaged {
            let request_id = format!("reconcile-{door}-{}", passcode.passcode_id);
            match state
                .gateway
                .delete_passcode(tenant, account, lock, passcode.passcode_id, &request_id)
                .await
            {
                PasscodeAnswer::Answered(result) if result.outcome() == PasscodeOutcome::Done => {
                    response.removed_unmanaged.push(item);
                    continue;
                }
                other => tracing::warn!(?other, "an unmanaged passcode could not be removed"),
            }
        }
        response.unmanaged.push(item);
    }
    tracing::info!(
        %door,
        in_sync = response.in_sync,
        queued_set = response.queued_set.len(),
        queued_removal = response.queued_removal.len(),
        unmanaged = response.unmanaged.len(),
        "lock reconciled"
    );
    Ok(response)
}

/// Reconciles every door with a lock now and then, on one replica at a time (a session
/// advisory lock held for the pass).
pub fn spawn_periodic(
    state: AppState,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    _ = shutdown.changed() => return,
                }
                if let Err(error) = pass(&state).await {
                    tracing::warn!(?error, "periodic reconciliation failed");
                }
            }
        }
        .instrument(tracing::info_span!("reconcile.periodic")),
    )
}

async fn pass(state: &AppState) -> Result<()> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    // Held on this connection for the pass, released before it returns to the pool.
    let mut guard = state.pool.get().await?;
    let Locked { locked } =
        diesel::sql_query("SELECT pg_try_advisory_lock(hashtext('latchkey_reconcile')) AS locked")
            .get_result(&mut guard)
            .await?;
    if !locked {
        return Ok(());
    }
    let doors = {
        let mut conn = state.pool.get().await?;
        outbox::doors_with_locks(&mut conn).await
    };
    let result = match doors {
        Ok(doors) => {
            for (tenant, door) in doors {
                if let Err(error) = reconcile_door(state, &tenant, door, false).await {
                    tracing::warn!(%door, ?error, "door not reconciled");
                }
            }
            Ok(())
        }
        Err(error) => Err(error.into()),
    };
    diesel::sql_query("SELECT pg_advisory_unlock(hashtext('latchkey_reconcile'))")
        .execute(&mut guard)
        .await?;
    result
}
