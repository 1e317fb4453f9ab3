//! The audit log: every decision, unlock and administrative change, appended to a
//! per-tenant SHA-256 hash chain and committed before the call that caused it is
//! answered.
//!
//! - [`chain`]: the canonical encoding, the hash, and verification.
//! - [`store`]: appending under the chain head's row lock, inside any transaction.
//! - [`writer`]: group commit of concurrent decisions' rows.

pub mod chain;
pub mod read;
pub mod store;
pub mod writer;

use chrono::{DateTime, Utc};
use latchkey::auth::Caller;

/// What a row records. Stored as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    AccessGranted,
    AccessDenied,
    Unlock,
    Lock,
    UnlockFailed,
    AdminCreate,
    AdminUpdate,
    AdminDelete,
    LogsPurged,
    EmergencyUnlock,
    DeviceEvent,
}

impl AuditAction {
    pub const ALL: [Self; 11] = [
        Self::AccessGranted,
        Self::AccessDenied,
        Self::Unlock,
        Self::Lock,
        Self::UnlockFailed,
        Self::AdminCreate,
        Self::AdminUpdate,
        Self::AdminDelete,
        Self::LogsPurged,
        Self::EmergencyUnlock,
        Self::DeviceEvent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessGranted => "ACCESS_GRANTED",
            Self::AccessDenied => "ACCESS_DENIED",
            Self::Unlock => "UNLOCK",
            Self::Lock => "LOCK",
            Self::UnlockFailed => "UNLOCK_FAILED",
            Self::AdminCreate => "ADMIN_CREATE",
            Self::AdminUpdate => "ADMIN_UPDATE",
            Self::AdminDelete => "ADMIN_DELETE",
            Self::LogsPurged => "LOGS_PURGED",
            Self::EmergencyUnlock => "EMERGENCY_UNLOCK",
            Self::DeviceEvent => "DEVICE_EVENT",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == name)
    }
}

/// A row before it is placed in the chain. Empty strings mean "not applicable".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub tenant_id: String,
    pub time: DateTime<Utc>,
    pub actor: String,
    pub action: AuditAction,
    pub door_id: String,
    pub door_name: String,
    pub door_type: String,
    pub door_location: String,
    pub user_id: String,
    pub user_name: String,
    pub user_email: String,
    pub user_role: String,
    pub method: String,
    pub success: bool,
    pub reason_code: String,
    pub reason: String,
    pub rule_id: String,
    pub rule_version: i64,
    pub client_ip: String,
    pub request_id: String,
    pub target_type: String,
    pub target_id: String,
    /// JSON text; the hash covers these exact bytes.
    pub metadata: String,
}

impl AuditEntry {
    /// An entry with only the tenant, time, actor and action set.
    pub fn new(tenant_id: &str, actor: &str, action: AuditAction, success: bool) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            time: chain::truncate_to_micros(Utc::now()),
            actor: actor.to_owned(),
            action,
            door_id: String::new(),
            door_name: String::new(),
            door_type: String::new(),
            door_location: String::new(),
            user_id: String::new(),
            user_name: String::new(),
            user_email: String::new(),
            user_role: String::new(),
            method: String::new(),
            success,
            reason_code: String::new(),
            reason: String::new(),
            rule_id: String::new(),
            rule_version: 0,
            client_ip: String::new(),
            request_id: String::new(),
            target_type: String::new(),
            target_id: String::new(),
            metadata: "{}".to_owned(),
        }
    }

    /// An administrative change by `caller` to `target_type` `target_id`; `fields`
    /// describes the change (never secrets or codes).
    pub fn admin_change(
        caller: &Caller,
        action: AuditAction,
        target_type: &str,
        target_id: &str,
        fields: serde_json::Value,
        request_id: Option<&str>,
    ) -> Self {
        let mut entry = Self::new(&caller.tenant_id, &caller.user_id, action, true);
        entry.target_type = target_type.to_owned();
        entry.target_id = target_id.to_owned();
        entry.metadata = fields.to_string();
        entry.request_id = request_id.unwrap_or_default().to_owned();
        entry
    }
}

/// A row as stored: the entry, its place in the chain, and whether it completed a
/// burst of failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub entry: AuditEntry,
    pub sequence: i64,
    pub flagged: bool,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}
