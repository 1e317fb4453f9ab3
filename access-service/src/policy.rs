//! Who may call what: the role each RPC needs, and who may name a user other than
//! themselves. One table, read by the auth layer, by the decisions, and by the test that
//! keeps README's role table in step with it.
//!
//! The rule behind it: ADMIN does everything in its tenant; MANAGER manages rules,
//! issues codes and reads (the directory, logs, statistics, and what any user may
//! open); SERVICE is the internal caller that issues codes and decides for any user;
//! every other role is a member, who asks about themselves. Reading about another user
//! (ExplainAccess, ListAccessibleDoors) is open to MANAGER; acting as another user (a
//! recorded CheckAccess, an UnlockDoor) is for SERVICE and ADMIN only.

use latchkey::auth::{Access, Caller, roles};

const READERS: &[&str] = &[roles::ADMIN, roles::MANAGER];
const ADMINS: &[&str] = &[roles::ADMIN];
/// Codes are issued by managers and by the services that take bookings.
const CODE_ISSUERS: &[&str] = &[roles::ADMIN, roles::MANAGER, roles::SERVICE];
const CODE_RECONCILERS: &[&str] = &[roles::ADMIN, roles::SERVICE];
/// May read what another user may do.
const OBSERVERS: &[&str] = &[roles::SERVICE, roles::ADMIN, roles::MANAGER];
/// May act as another user: a recorded attempt, an actuation.
const ACTORS: &[&str] = &[roles::SERVICE, roles::ADMIN];

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
        // Members ask about themselves; `others_allowed` says who may name others.
        "latchkey.access.v1.AccessService" => Access::Authenticated,
        // Members follow events about themselves; the filter narrows what they see.
        "latchkey.access.v1.EventService" => Access::Authenticated,
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

/// The roles that may name a user other than themselves in an AccessService method.
pub fn others_allowed(method: &str) -> &'static [&'static str] {
    match method {
        "ExplainAccess" | "ListAccessibleDoors" => OBSERVERS,
        "CheckAccess" | "UnlockDoor" => ACTORS,
        _ => &[],
    }
}

/// Whether `caller` follows every event of their tenant; anyone else follows only the
/// events naming themselves.
pub fn sees_all_events(caller: &Caller) -> bool {
    caller.has_any_role(OBSERVERS)
}

/// Whether `caller` may name another user in `method`.
pub fn may_name_others(caller: &Caller, method: &str) -> bool {
    caller.has_any_role(others_allowed(method))
}

/// The roles of the table's columns; "member" stands for any other role.
const COLUMNS: [&str; 4] = [roles::ADMIN, roles::MANAGER, roles::SERVICE, "member"];

/// README's role × RPC table, generated from [`policy`] and [`others_allowed`] over
/// every method of access-service's services in the descriptor set.
pub fn markdown_table() -> String {
    let mut methods: Vec<String> = latchkey::request_check::checked_methods()
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| path.starts_with("/latchkey.access.v1."))
        .collect();
    methods.sort();
    let mut table =
        String::from("| RPC | ADMIN | MANAGER | SERVICE | member |\n|---|:-:|:-:|:-:|:-:|\n");
    for path in methods {
        let (service, method) = path
            .trim_start_matches("/latchkey.access.v1.")
            .split_once('/')
            .unwrap_or_default();
        let cells: Vec<&str> = COLUMNS
            .iter()
            .map(|role| {
                let allowed = match policy(&path) {
                    Access::Public | Access::Authenticated => true,
                    Access::Roles(allowed) => allowed.contains(role),
                };
                let others = if service == "EventService" {
                    OBSERVERS
                } else {
                    others_allowed(method)
                };
                match (allowed, others.contains(role)) {
                    (false, _) => "",
                    (true, true) => "any user",
                    (true, false) if !others.is_empty() => "self",
                    (true, false) => "yes",
                }
            })
            .collect();
        table.push_str(&format!(
            "| `{service}.{method}` | {} |\n",
            cells.join(" | ")
        ));
    }
    table
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

    #[test]
    fn readme_role_table_is_the_policy() {
        let readme = include_str!("../../README.md");
        let begin = "<!-- roles:begin -->\n";
        let end = "<!-- roles:end -->";
        let start = readme
            .find(begin)
            .expect("README has the role table's markers")
            + begin.len();
        let stop = readme[start..].find(end).expect("the table's end marker") + start;
        let table = markdown_table();
        assert_eq!(
            &readme[start..stop],
            table,
            "README's role table differs from the policy; replace it with:\n{table}"
        );
    }

    #[test]
    fn managers_read_about_others_and_only_services_and_admins_act_for_them() {
        let manager = Caller {
            user_id: "m".into(),
            tenant_id: "t".into(),
            roles: vec![roles::MANAGER.into()],
        };
        assert!(may_name_others(&manager, "ExplainAccess"));
        assert!(may_name_others(&manager, "ListAccessibleDoors"));
        assert!(!may_name_others(&manager, "CheckAccess"));
        assert!(!may_name_others(&manager, "UnlockDoor"));
        let service = Caller {
            roles: vec![roles::SERVICE.into()],
            ..manager
        };
        assert!(may_name_others(&service, "CheckAccess"));
    }
}
