//! The gRPC surface: thin methods that unpack requests, call domain code and convert.

pub mod access;
pub mod audit;
pub mod codes;
pub mod convert;
pub mod directory;
pub mod rules;

use latchkey::auth::{Access, roles};

const READERS: &[&str] = &[roles::ADMIN, roles::MANAGER];
const ADMINS: &[&str] = &[roles::ADMIN];
/// Codes are issued by managers and by the services that take bookings.
const CODE_ISSUERS: &[&str] = &[roles::ADMIN, roles::MANAGER, roles::SERVICE];
const CODE_RECONCILERS: &[&str] = &[roles::ADMIN, roles::SERVICE];

/// Who may call each method. Unknown methods need ADMIN (deny by default).
pub fn policy(path: &str) -> Access {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Access::Roles(ADMINS);
    };
    match service {
        "latchkey.access.v1.DirectoryService"
            if method.starts_with("Get") || method.starts_with("List") =>
        {
            Access::Roles(READERS)
        }
        // Managers run the rules of the doors that admins set up.
        "latchkey.access.v1.RuleService" => Access::Roles(READERS),
        "latchkey.access.v1.AccessCodeService" if method == "ReconcileLock" => {
            Access::Roles(CODE_RECONCILERS)
        }
        "latchkey.access.v1.AccessCodeService" => Access::Roles(CODE_ISSUERS),
        // Opening a door outside the rules is for administrators only.
        "latchkey.access.v1.AccessService" if method == "EmergencyUnlock" => Access::Roles(ADMINS),
        // Members ask about themselves; the handlers narrow who may name others.
        "latchkey.access.v1.AccessService" => Access::Authenticated,
        "latchkey.access.v1.AuditService"
            if matches!(
                method,
                "QueryAccessLogs" | "GetAccessLog" | "GetAccessStats" | "GetDoorStats"
            ) =>
        {
            Access::Roles(READERS)
        }
        _ => Access::Roles(ADMINS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_reads_are_open_to_managers_and_writes_to_admins_only() {
        let read = policy("/latchkey.access.v1.DirectoryService/ListProperties");
        assert_eq!(read, Access::Roles(READERS));
        let write = policy("/latchkey.access.v1.DirectoryService/CreateProperty");
        assert_eq!(write, Access::Roles(ADMINS));
        let door_write = policy("/latchkey.access.v1.DirectoryService/UpdateDoor");
        assert_eq!(door_write, Access::Roles(ADMINS));
        let door_read = policy("/latchkey.access.v1.DirectoryService/GetUser");
        assert_eq!(door_read, Access::Roles(READERS));
        assert_eq!(policy("/unknown.Service/Get"), Access::Roles(ADMINS));
        assert_eq!(policy("garbage"), Access::Roles(ADMINS));
    }

    #[test]
    fn rules_are_managed_by_admins_and_managers() {
        for method in [
            "CreateRule",
            "UpdateRule",
            "DeleteRule",
            "ToggleRule",
            "ListRules",
        ] {
            let path = format!("/latchkey.access.v1.RuleService/{method}");
            assert_eq!(policy(&path), Access::Roles(READERS), "{method}");
        }
    }

    #[test]
    fn codes_are_issued_by_admins_managers_and_services_and_reconciled_without_managers() {
        for method in [
            "IssueAccessCode",
            "IssueStayCodes",
            "RevokeAccessCode",
            "GetAccessCode",
            "ListAccessCodes",
        ] {
            let path = format!("/latchkey.access.v1.AccessCodeService/{method}");
            assert_eq!(policy(&path), Access::Roles(CODE_ISSUERS), "{method}");
        }
        assert_eq!(
            policy("/latchkey.access.v1.AccessCodeService/ReconcileLock"),
            Access::Roles(CODE_RECONCILERS)
        );
        assert_eq!(
            policy("/latchkey.access.v1.AccessService/EmergencyUnlock"),
            Access::Roles(ADMINS)
        );
        assert_eq!(
            policy("/latchkey.access.v1.AccessService/CheckAccess"),
            Access::Authenticated
        );
    }
}
