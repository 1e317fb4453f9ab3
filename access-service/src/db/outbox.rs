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

/// Claims up to `limit` intents due at `now` (by the service's clock) that no worker
/// holds, for `lease_secs` of host time (a lease guards against crashed workers, so it
/// runs on real time even when tests move the service's clock); other replicas skip
/// rows being claimed.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
    lease_secs: i64,
) -> QueryResult<Vec<Intent>> {
    use diesel_async::AsyncConnection;
    conn.transaction(async |conn| {
        let ids: Vec<Uuid> = provisioning_outbox::table
            .filter(provisioning_outbox::done_time.is_null())
            .filter(provisioning_outbox::due_time.le(now))
            .filter(
                provisioning_outbox::lease_until
                    .is_null()
                    .or(provisioning_outbox::lease_until.lt(Utc::now())),
            )
            .order((
                provisioning_outbox::due_time.asc(),
                provisioning_outbox::id.asc(),
            ))
            .limit(limit)
            .for_update()
            .skip_locked()
            .select(provisioning_outbox::id)
            .load(conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        diesel::update(provisioning_outbox::table.filter(provisioning_outbox::id.eq_any(&ids)))
            .set((
                provisioning_outbox::attempts.eq(provisioning_outbox::attempts + 1),
                provisioning_outbox::lease_until
                    .eq(Some(Utc::now() + chrono::Duration::seconds(lease_secs))),
            ))
            .returning(Intent::as_returning())
            .get_results(conn)
            .await
    })
    .await
}

/// Extends the claims a living worker still holds (a settled intent has none), for
/// `lease_secs` of host time from now.
pub async fn renew_leases(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    lease_secs: i64,
) -> QueryResult<usize> {
    diesel::update(
        provisioning_outbox::table
            .filter(provisioning_outbox::id.eq_any(ids))
            .filter(provisioning_outbox::lease_until.is_not_null()),
    )
    .set(
        provisioning_outbox::lease_until
            .eq(Some(Utc::now() + chrono::Duration::seconds(lease_secs))),
    )
    .execute(conn)
    .await
}

/// Marks an intent done. A finished SET keeps its sealed code while the code is active,
/// so reconciliation can write it again; everything else drops it.
pub async fn finish(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    keep_sealed: bool,
    note: &str,
) -> QueryResult<()> {
    let update = diesel::update(provisioning_outbox::table.find(id));
    if keep_sealed {
        update
            .set((
                provisioning_outbox::done_time.eq(Some(Utc::now())),
                provisioning_outbox::lease_until.eq(None::<DateTime<Utc>>),
                provisioning_outbox::last_error.eq(note),
            ))
            .execute(conn)
            .await?;
    } else {
        update
            .set((
                provisioning_outbox::done_time.eq(Some(Utc::now())),
                provisioning_outbox::lease_until.eq(None::<DateTime<Utc>>),
                provisioning_outbox::code_sealed.eq(None::<Vec<u8>>),
                provisioning_outbox::last_error.eq(note),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Puts an intent back for a later attempt; `next_generation` after a definite failure,
/// so the retry is a new request to lock-gateway rather than a replay of the refusal.
pub async fn retry(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    due_time: DateTime<Utc>,
    next_generation: bool,
    error: &str,
) -> QueryResult<()> {
    diesel::update(provisioning_outbox::table.find(id))
        .set((
            provisioning_outbox::due_time.eq(due_time),
            provisioning_outbox::lease_until.eq(None::<DateTime<Utc>>),
            provisioning_outbox::generation
                .eq(provisioning_outbox::generation + i32::from(next_generation)),
            provisioning_outbox::last_error.eq(error),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn door_row(
    conn: &mut AsyncPgConnection,
    code_id: Uuid,
    door_id: Uuid,
) -> QueryResult<Option<CodeDoor>> {
    access_code_doors::table
        .find((code_id, door_id))
        .select(CodeDoor::as_select())
        .first(conn)
        .await
        .optional()
}

/// A code's door row, locked: settling an intent holds it, as revocation does, so the
/// two never interleave.
pub async fn door_row_for_update(
    conn: &mut AsyncPgConnection,
    code_id: Uuid,
    door_id: Uuid,
) -> QueryResult<Option<CodeDoor>> {
    access_code_doors::table
        .find((code_id, door_id))
        .for_update()
        .select(CodeDoor::as_select())
        .first(conn)
        .await
        .optional()
}

/// Whether an intent is still open (not finished, nor closed by a newer intent), with
/// its row locked until the transaction ends.
pub async fn is_open_for_update(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    let done: Option<Option<DateTime<Utc>>> = provisioning_outbox::table
        .find(id)
        .for_update()
        .select(provisioning_outbox::done_time)
        .first(conn)
        .await
        .optional()?;
    Ok(matches!(done, Some(None)))
}

/// Lets go of a closed intent whose worker came back late, noting what it found; the
/// intent stays closed.
pub async fn release_closed(conn: &mut AsyncPgConnection, id: Uuid, note: &str) -> QueryResult<()> {
    diesel::update(provisioning_outbox::table.find(id))
        .set((
            provisioning_outbox::lease_until.eq(None::<DateTime<Utc>>),
            provisioning_outbox::last_error.eq(note),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Every code row of a door.
pub async fn rows_of_door(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    door_id: Uuid,
) -> QueryResult<Vec<CodeDoor>> {
    access_code_doors::table
        .filter(access_code_doors::tenant_id.eq(tenant_id))
        .filter(access_code_doors::door_id.eq(door_id))
        .order(access_code_doors::code_id.asc())
        .select(CodeDoor::as_select())
        .load(conn)
        .await
}

/// Whether a code's door has an open intent of this kind.
pub async fn has_open(
    conn: &mut AsyncPgConnection,
    code_id: Uuid,
    door_id: Uuid,
    intent: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        provisioning_outbox::table
            .filter(provisioning_outbox::code_id.eq(code_id))
            .filter(provisioning_outbox::door_id.eq(door_id))
            .filter(provisioning_outbox::intent.eq(intent))
            .filter(provisioning_outbox::done_time.is_null()),
    ))
    .get_result(conn)
    .await
}

/// Whether a write of the code to this door may be under way: an open SET, or a closed
/// one (revoked while it ran) whose worker still holds its lease and has not yet said
/// how it ended.
pub async fn set_may_be_running(
    conn: &mut AsyncPgConnection,
    code_id: Uuid,
    door_id: Uuid,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        provisioning_outbox::table
            .filter(provisioning_outbox::code_id.eq(code_id))
            .filter(provisioning_outbox::door_id.eq(door_id))
            .filter(provisioning_outbox::intent.eq("SET"))
            .filter(
                provisioning_outbox::done_time
                    .is_null()
                    .or(provisioning_outbox::lease_until.gt(Utc::now())),
            ),
    ))
    .get_result(conn)
    .await
}

/// SET intents of a code's door that a revocation closed while a worker held them and
/// whose worker never reported (its replica stopped): their write may still be
/// carried out by lock-gateway.
pub async fn orphaned_sets(
    conn: &mut AsyncPgConnection,
    code_id: Uuid,
    door_id: Uuid,
) -> QueryResult<Vec<Uuid>> {
    provisioning_outbox::table
        .filter(provisioning_outbox::code_id.eq(code_id))
        .filter(provisioning_outbox::door_id.eq(door_id))
        .filter(provisioning_outbox::intent.eq("SET"))
        .filter(provisioning_outbox::done_time.is_not_null())
        .filter(provisioning_outbox::lease_until.is_not_null())
        .select(provisioning_outbox::id)
        .load(conn)
        .await
}

/// The newest sealed copy of a code for a door, with the intent it is bound to.
pub async fn latest_sealed(
    conn: &mut AsyncPgConnection,
    code_id: Uuid,
    door_id: Uuid,
) -> QueryResult<Option<(Uuid, Vec<u8>)>> {
    let found: Option<(Uuid, Option<Vec<u8>>)> = provisioning_outbox::table
        .filter(provisioning_outbox::code_id.eq(code_id))
        .filter(provisioning_outbox::door_id.eq(door_id))
        .filter(provisioning_outbox::code_sealed.is_not_null())
        .order(provisioning_outbox::create_time.desc())
        .select((provisioning_outbox::id, provisioning_outbox::code_sealed))
        .first(conn)
        .await
        .optional()?;
    Ok(found.and_then(|(id, sealed)| sealed.map(|s| (id, s))))
}

/// Erases the sealed copies of codes that are no longer active.
pub async fn erase_inactive_sealed(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    use super::schema::access_codes;
    diesel::update(
        provisioning_outbox::table
            .filter(provisioning_outbox::code_sealed.is_not_null())
            .filter(provisioning_outbox::done_time.is_not_null())
            .filter(
                provisioning_outbox::code_id.eq_any(
                    access_codes::table
                        .filter(access_codes::status.ne("ACTIVE"))
                        .select(access_codes::id),
                ),
            ),
    )
    .set(provisioning_outbox::code_sealed.eq(None::<Vec<u8>>))
    .execute(conn)
    .await
}

/// What provisioning needs of a code: whether it still stands, and its window.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = super::schema::access_codes)]
pub struct CodeWindow {
    pub id: Uuid,
    pub tenant_id: String,
    pub status: String,
    pub code_type: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

pub async fn code_window(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    code_id: Uuid,
) -> QueryResult<Option<CodeWindow>> {
    use super::schema::access_codes;
    access_codes::table
        .filter(access_codes::tenant_id.eq(tenant_id))
        .filter(access_codes::id.eq(code_id))
        .select(CodeWindow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Active codes whose end has passed by `now`, locked for expiry.
pub async fn expired_for_update(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<CodeWindow>> {
    use super::schema::access_codes;
    access_codes::table
        .filter(access_codes::status.eq("ACTIVE"))
        .filter(access_codes::end_time.le(now))
        .order(access_codes::end_time.asc())
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(CodeWindow::as_select())
        .load(conn)
        .await
}

pub async fn mark_expired(
    conn: &mut AsyncPgConnection,
    code_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    use super::schema::access_codes;
    diesel::update(access_codes::table.find(code_id))
        .set((
            access_codes::status.eq("EXPIRED"),
            access_codes::version.eq(access_codes::version + 1),
            access_codes::update_time.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn code_windows(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    ids: &[Uuid],
) -> QueryResult<Vec<CodeWindow>> {
    use super::schema::access_codes;
    access_codes::table
        .filter(access_codes::tenant_id.eq(tenant_id))
        .filter(access_codes::id.eq_any(ids))
        .select(CodeWindow::as_select())
        .load(conn)
        .await
}

/// Every door bound to a lock, across tenants, for periodic reconciliation.
pub async fn doors_with_locks(conn: &mut AsyncPgConnection) -> QueryResult<Vec<(String, Uuid)>> {
    use super::schema::doors;
    doors::table
        .filter(doors::lock_account_id.is_not_null())
        .filter(doors::lock_id.is_not_null())
        .order((doors::tenant_id.asc(), doors::id.asc()))
        .select((doors::tenant_id, doors::id))
        .load(conn)
        .await
}
