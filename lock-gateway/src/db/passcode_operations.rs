//! The claim of each passcode write request id and the outcome it ended with. No column
//! holds the code; the request's fingerprint is a keyed digest (`crate::fingerprint`).

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::passcode_operations;

/// What a request claims its id for.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = passcode_operations)]
pub struct NewClaim<'a> {
    pub tenant_id: &'a str,
    pub request_id: &'a str,
    pub operation: &'a str,
    pub account_id: Uuid,
    pub lock_id: i64,
    pub passcode_id: Option<i64>,
    pub request_fingerprint: &'a [u8],
}

/// A claim as an earlier call left it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = passcode_operations)]
pub struct Claim {
    pub operation: String,
    pub account_id: Uuid,
    pub lock_id: i64,
    pub passcode_id: Option<i64>,
    /// `None` while that call is in flight or if it ended without recording an answer.
    pub outcome: Option<String>,
    pub errcode: i32,
    pub reason: String,
    pub retryable: bool,
    pub detail: String,
    pub latency_ms: i64,
    pub create_time: chrono::DateTime<chrono::Utc>,
    /// `None` on claims made before fingerprints were kept.
    pub request_fingerprint: Option<Vec<u8>>,
}

impl Claim {
    /// Whether this claim was made by the very request `new` is: by fingerprint, or, for
    /// a claim made before fingerprints were kept, by what its row names.
    pub fn made_by(&self, new: &NewClaim<'_>) -> bool {
        match &self.request_fingerprint {
            Some(fingerprint) => fingerprint.as_slice() == new.request_fingerprint,
            None => {
                self.operation == new.operation
                    && self.account_id == new.account_id
                    && self.lock_id == new.lock_id
                    && (new.passcode_id.is_none() || self.passcode_id == new.passcode_id)
            }
        }
    }
}

/// How a claimed call ended.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = passcode_operations)]
pub struct Finish<'a> {
    pub passcode_id: Option<i64>,
    pub outcome: &'a str,
    pub errcode: i32,
    pub reason: &'a str,
    pub retryable: bool,
    pub detail: &'a str,
    pub latency_ms: i64,
}

/// Claims the request id for this call; `Err` with the earlier claim when another call
/// already holds it.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    new: &NewClaim<'_>,
) -> QueryResult<Result<(), Claim>> {
    let claimed = diesel::insert_into(passcode_operations::table)
        .values(new)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if claimed == 1 {
        return Ok(Ok(()));
    }
    let earlier = passcode_operations::table
        .find((new.tenant_id, new.request_id))
        .select(Claim::as_select())
        .first(conn)
        .await?;
    Ok(Err(earlier))
}

/// Records the outcome of a claimed call. A change or delete keeps the passcode id it
/// was claimed with.
pub async fn finish(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    request_id: &str,
    finish: &Finish<'_>,
) -> QueryResult<()> {
    diesel::update(passcode_operations::table.find((tenant_id, request_id)))
        .set((finish, passcode_operations::finish_time.eq(Utc::now())))
        .execute(conn)
        .await?;
    Ok(())
}
