//! The intents a change to a code makes, written inside the caller's transaction so the
//! code and what must happen at its locks commit together. Workers read the code's
//! current window when they act, so an intent names only what to do where.

use chrono::{DateTime, Duration, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::code_keys::CodeKeys;
use crate::db::outbox::{self, CodeDoor, Intent};

/// A door a new code is for, and the lock it is bound to, if any.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub door_id: Uuid,
    /// (lock-gateway account, TTLock lock id).
    pub lock: Option<(Uuid, i64)>,
}

/// When a code whose window opens at `start` is due on its lock.
pub fn due_for(start: Option<DateTime<Utc>>, now: DateTime<Utc>, lead_hours: u32) -> DateTime<Utc> {
    start.map_or(now, |start| {
        (start - Duration::hours(i64::from(lead_hours))).max(now)
    })
}

/// A new code: a sync row per door, and for each door with a lock a SET intent carrying
/// the code sealed to that intent.
#[allow(clippy::too_many_arguments)]
pub async fn on_issue(
    conn: &mut AsyncPgConnection,
    keys: &CodeKeys,
    tenant_id: &str,
    code_id: Uuid,
    code: &str,
    targets: &[Target],
    start: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    lead_hours: u32,
) -> QueryResult<()> {
    for target in targets {
        let (state, account, lock) = match target.lock {
            Some((account, lock)) => ("PENDING", Some(account), Some(lock)),
            None => ("NOT_APPLICABLE", None, None),
        };
        outbox::insert_door(
            conn,
            &CodeDoor {
                tenant_id: tenant_id.to_owned(),
                code_id,
                door_id: target.door_id,
                sync_state: state.to_owned(),
                failure_reason: String::new(),
                detail: String::new(),
                account_id: account,
                lock_id: lock,
                lock_passcode_id: None,
                update_time: now,
            },
        )
        .await?;
        if target.lock.is_some() {
            let mut intent = Intent::new(
                tenant_id,
                code_id,
                target.door_id,
                "SET",
                due_for(start, now, lead_hours),
            );
            intent.code_sealed = Some(keys.seal(code, &outbox::seal_context(intent.id)));
            outbox::insert_intent(conn, &intent).await?;
        }
    }
    Ok(())
}

/// A revoked, expired or exhausted code leaves every lock it may be on. Rows never
/// written (or refused for good) are simply removed; pending writes are cancelled.
pub async fn on_revoke(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    code_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    for door in outbox::doors_of_code_for_update(conn, tenant_id, code_id).await? {
        match door.sync_state.as_str() {
            "REMOVED" | "NOT_APPLICABLE" | "REMOVING" => {}
            "PENDING" | "FAILED" => {
                outbox::close_open(
                    conn,
                    code_id,
                    door.door_id,
                    None,
                    "revoked before it was written",
                )
                .await?;
                // A write that ended without an answer may still have reached the lock:
                // only a definite refusal or an untried intent is known to be absent.
                let maybe_on_lock = door.failure_reason == "AMBIGUOUS";
                if maybe_on_lock {
                    outbox::set_door_state(
                        conn,
                        code_id,
                        door.door_id,
                        "REMOVING",
                        "",
                        "",
                        door.lock_passcode_id,
                    )
                    .await?;
                    outbox::insert_intent(
                        conn,
                        &Intent::new(tenant_id, code_id, door.door_id, "REMOVE", now),
                    )
                    .await?;
                } else {
                    outbox::set_door_state(
                        conn,
                        code_id,
                        door.door_id,
                        "REMOVED",
                        "",
                        "never written to the lock",
                        None,
                    )
                    .await?;
                }
            }
            // SET or SETTING: it is, or may be, on the lock.
            _ => {
                outbox::close_open(conn, code_id, door.door_id, None, "superseded by removal")
                    .await?;
                outbox::set_door_state(
                    conn,
                    code_id,
                    door.door_id,
                    "REMOVING",
                    "",
                    "",
                    door.lock_passcode_id,
                )
                .await?;
                outbox::insert_intent(
                    conn,
                    &Intent::new(tenant_id, code_id, door.door_id, "REMOVE", now),
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// The code's window moved: a code not yet written is rescheduled to the new lead time,
/// one on the lock (or being written) gets a CHANGE.
pub async fn on_window_change(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    code_id: Uuid,
    new_start: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    lead_hours: u32,
) -> QueryResult<()> {
    for door in outbox::doors_of_code_for_update(conn, tenant_id, code_id).await? {
        match door.sync_state.as_str() {
            "PENDING" => {
                outbox::reschedule_set(
                    conn,
                    code_id,
                    door.door_id,
                    due_for(new_start, now, lead_hours),
                )
                .await?;
            }
            "SET" | "SETTING" => {
                outbox::close_open(
                    conn,
                    code_id,
                    door.door_id,
                    Some("CHANGE"),
                    "superseded by a later change",
                )
                .await?;
                outbox::insert_intent(
                    conn,
                    &Intent::new(tenant_id, code_id, door.door_id, "CHANGE", now),
                )
                .await?;
            }
            _ => {}
        }
    }
    Ok(())
}
