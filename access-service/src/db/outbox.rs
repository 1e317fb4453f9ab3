//! The provisioning outbox and the per-door sync state of each code.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{access_code_doors, provisioning_outbox};

/// Where a code stands on one door.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = access_code_doors)]
pub struct CodeDoor {
    pub tenant_id: String,
    pub code_id: Uuid,
    pub door_id: Uuid,
    pub sync_state: String,
    pub failure_reason: String,
    pub detail: String,
    pub account_id: Option<Uuid>,
    pub lock_id: Option<i64>,
    pub lock_passcode_id: Option<i64>,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = provisioning_outbox)]
pub struct Intent {
    pub id: Uuid,
    pub tenant_id: String,
    pub code_id: Uuid,
    pub door_id: Uuid,
    /// SET, CHANGE or REMOVE.
    pub intent: String,
    pub code_sealed: Option<Vec<u8>>,
    pub due_time: DateTime<Utc>,
    pub attempts: i32,
    pub generation: i32,
    pub lease_until: Option<DateTime<Utc>>,
    pub done_time: Option<DateTime<Utc>>,
    pub last_error: String,
    pub create_time: DateTime<Utc>,
}

impl Intent {
    pub fn new(
        tenant_id: &str,
        code_id: Uuid,
        door_id: Uuid,
        intent: &str,
        due_time: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            tenant_id: tenant_id.to_owned(),
            code_id,
            door_id,
            intent: intent.to_owned(),
            code_sealed: None,
            due_time,
            attempts: 0,
            generation: 0,
            lease_until: None,
            done_time: None,
            last_error: String::new(),
            create_time: Utc::now(),
        }
    }
}

/// The associated data a sealed code is bound to: its outbox row.
pub fn seal_context(intent: Uuid) -> String {
    format!("provisioning_outbox/{intent}")
}

pub async fn insert_door(conn: &mut AsyncPgConnection, row: &CodeDoor) -> QueryResult<()> {
    diesel::insert_into(access_code_doors::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn insert_intent(conn: &mut AsyncPgConnection, intent: &Intent) -> QueryResult<()> {
    diesel::insert_into(provisioning_outbox::table)
        .values(intent)
        .execute(conn)
        .await?;
    Ok(())
}

/// The code's door rows, locked.
pub async fn doors_of_code_for_update(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    code_id: Uuid,
) -> QueryResult<Vec<CodeDoor>> {
    access_code_doors::table
        .filter(access_code_doors::tenant_id.eq(tenant_id))
        .filter(access_code_doors::code_id.eq(code_id))
        .order(access_code_doors::door_id.asc())
        .for_update()
        .select(CodeDoor::as_select())
        .load(conn)
        .await
}

pub async fn doors_of_codes(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    codes: &[Uuid],
) -> QueryResult<Vec<CodeDoor>> {
    access_code_doors::table
        .filter(access_code_doors::tenant_id.eq(tenant_id))
        .filter(access_code_doors::code_id.eq_any(codes))
        .order((
            access_code_doors::code_id.asc(),
            access_code_doors::door_id.asc(),
        ))
        .select(CodeDoor::as_select())
        .load(conn)
        .await
}

pub async fn set_door_state(
    conn: &mut AsyncPgConnection,
    code_id: Uuid,
    door_id: Uuid,
    state: &str,
    failure_reason: &str,
    detail: &str,
    lock_passcode_id: Option<i64>,
) -> QueryResult<()> {
    diesel::update(access_code_doors::table.find((code_id, door_id)))
        .set((
            access_code_doors::sync_state.eq(state),
            access_code_doors::failure_reason.eq(failure_reason),
            access_code_doors::detail.eq(detail),
            access_code_doors::lock_passcode_id.eq(lock_passcode_id),
            access_code_doors::update_time.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Closes the open intents of a code's door (all kinds, or one), so a newer one
/// supersedes them; the sealed code they carried is erased.
pub async fn close_open(
    conn: &mut AsyncPgConnection,
    code_id: Uuid,
    door_id: Uuid,
    intent: Option<&str>,
    why: &str,
) -> QueryResult<usize> {
    let mut query = diesel::update(provisioning_outbox::table)
        .filter(provisioning_outbox::code_id.eq(code_id))
        .filter(provisioning_outbox::door_id.eq(door_id))
        .filter(provisioning_outbox::done_time.is_null())
        .into_boxed();
    if let Some(intent) = intent {
        query = query.filter(provisioning_outbox::intent.eq(intent));
    }
    query
        .set((
            provisioning_outbox::done_time.eq(Some(Utc::now())),
            provisioning_outbox::code_sealed.eq(None::<Vec<u8>>),
            provisioning_outbox::last_error.eq(why),
        ))
        .execute(conn)
        .await
}

/// Moves the due time of a door's open SET intent (the window moved before the code was
/// written); `false` when there is none.
pub async fn reschedule_set(
    conn: &mut AsyncPgConnection,
    code_id: Uuid,
    door_id: Uuid,
    due_time: DateTime<Utc>,
) -> QueryResult<bool> {
    let moved = diesel::update(provisioning_outbox::table)
        .filter(provisioning_outbox::code_id.eq(code_id))
        .filter(provisioning_outbox::door_id.eq(door_id))
        .filter(provisioning_outbox::intent.eq("SET"))
        .filter(provisioning_outbox::done_time.is_null())
        .set(provisioning_outbox::due_time.eq(due_time))
        .execute(conn)
        .await?;
    Ok(moved > 0)
}
