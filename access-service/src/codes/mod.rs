//! Access codes: issued for doors to users, tenants, guests and providers, stored only as
//! a keyed hash (HMAC-SHA256 under the server's code key) and their last two digits, and
//! carried to the doors' locks by provisioning intents written in the same transaction
//! as the code. The plaintext exists in the request that chose it or the generator that
//! drew it, in the sealed outbox row, and in the one response that issues it; it travels
//! as a [`SecretString`] and is never logged.
//!
//! - [`generate`]: code shapes the locks take, and the CSPRNG generator.
//! - [`issue`]: `IssueAccessCode` and the issuance every code goes through (property
//!   limits, uniqueness on the doors, the intents and the audit row).
//! - [`stay`]: `IssueStayCodes`: a booking's guest and cleaning codes in the property's
//!   time zone, idempotent per booking, windows moved when the dates change.
//! - [`revoke`]: revoking a code (`RevokeAccessCode`).
//! - [`query`]: reading codes (`GetAccessCode`, `ListAccessCodes`).

pub mod generate;
pub mod issue;
pub mod query;
pub mod revoke;
pub mod stay;

use diesel_async::AsyncPgConnection;
use latchkey::auth::Caller;
use latchkey::pb::access::v1 as pb;
use uuid::Uuid;

pub use issue::{Issued, issue_access_code};
pub use query::{get_access_code, list_access_codes};
pub use revoke::revoke_access_code;
pub use secrecy::SecretString;
pub use stay::{StayCodes, issue_stay_codes};

use crate::audit::store::BurstRule;
use crate::audit::{AuditAction, AuditEntry};
use crate::db::codes::AccessCode;
use crate::db::outbox::{self, CodeDoor};

/// A code as stored, with where it stands on each of its doors.
#[derive(Debug, Clone)]
pub struct StoredCode {
    pub code: AccessCode,
    pub doors: Vec<CodeDoor>,
}

impl StoredCode {
    /// "****42": the only form a stored code is ever shown in.
    pub fn masked(&self) -> String {
        format!("****{}", self.code.code_last_digits)
    }
}

/// Attaches each code's door rows.
pub(crate) async fn with_doors(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    codes: Vec<AccessCode>,
) -> diesel::QueryResult<Vec<StoredCode>> {
    let ids: Vec<Uuid> = codes.iter().map(|c| c.id).collect();
    let mut by_code: std::collections::HashMap<Uuid, Vec<CodeDoor>> =
        std::collections::HashMap::new();
    for door in outbox::doors_of_codes(conn, tenant_id, &ids).await? {
        by_code.entry(door.code_id).or_default().push(door);
    }
    Ok(codes
        .into_iter()
        .map(|code| StoredCode {
            doors: by_code.remove(&code.id).unwrap_or_default(),
            code,
        })
        .collect())
}

/// Appends the audit row of a change to a code inside the change's transaction.
pub(crate) async fn record(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    action: AuditAction,
    code_id: Uuid,
    fields: serde_json::Value,
    request_id: Option<&str>,
) -> diesel::QueryResult<()> {
    let entry = AuditEntry::admin_change(
        caller,
        action,
        "access_code",
        &code_id.to_string(),
        fields,
        request_id,
    );
    crate::audit::store::append(conn, vec![entry], BurstRule::default()).await?;
    Ok(())
}

/// After a change to the tenant's codes commits: this replica decides with it at once
/// ([`AppState::changed`](crate::state::AppState::changed)), and provisioning looks at
/// the new intents.
pub(crate) async fn committed(state: &crate::state::AppState, tenant_id: &str) {
    state
        .changed(tenant_id, [crate::snapshot::Change::Codes])
        .await;
    state.provisioning_wake.notify_one();
}

fn stripped(name: &'static str, prefix: &str) -> &'static str {
    name.strip_prefix(prefix).unwrap_or(name)
}

/// Stored names of the API's enums (`GUEST`, `STAY`, ...); `None` for unspecified or
/// unknown values.
pub fn grantee_type_name(value: i32) -> Option<&'static str> {
    match pb::GranteeType::try_from(value) {
        Ok(pb::GranteeType::Unspecified) | Err(_) => None,
        Ok(v) => Some(stripped(v.as_str_name(), "GRANTEE_TYPE_")),
    }
}

pub fn purpose_name(value: i32) -> Option<&'static str> {
    match pb::CodePurpose::try_from(value) {
        Ok(pb::CodePurpose::Unspecified) | Err(_) => None,
        Ok(v) => Some(stripped(v.as_str_name(), "CODE_PURPOSE_")),
    }
}

pub fn code_type_name(value: i32) -> Option<&'static str> {
    match pb::CodeType::try_from(value) {
        Ok(pb::CodeType::Unspecified) | Err(_) => None,
        Ok(v) => Some(stripped(v.as_str_name(), "CODE_TYPE_")),
    }
}

pub fn status_name(value: i32) -> Option<&'static str> {
    match pb::CodeStatus::try_from(value) {
        Ok(pb::CodeStatus::Unspecified) | Err(_) => None,
        Ok(v) => Some(stripped(v.as_str_name(), "CODE_STATUS_")),
    }
}

pub fn sync_state_name(value: i32) -> Option<&'static str> {
    match pb::SyncState::try_from(value) {
        Ok(pb::SyncState::Unspecified) | Err(_) => None,
        Ok(v) => Some(stripped(v.as_str_name(), "SYNC_STATE_")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_are_the_stored_ones() {
        assert_eq!(
            grantee_type_name(pb::GranteeType::Guest as i32),
            Some("GUEST")
        );
        assert_eq!(
            purpose_name(pb::CodePurpose::Cleaning as i32),
            Some("CLEANING")
        );
        assert_eq!(
            code_type_name(pb::CodeType::Recurring as i32),
            Some("RECURRING")
        );
        assert_eq!(status_name(pb::CodeStatus::Revoked as i32), Some("REVOKED"));
        assert_eq!(
            sync_state_name(pb::SyncState::NotApplicable as i32),
            Some("NOT_APPLICABLE")
        );
        assert_eq!(purpose_name(0), None);
        assert_eq!(code_type_name(99), None);
    }
}
