//! How latchkey names its passcodes on a lock: `lk-<code id>`. The name is all a lock
//! record of a passcode unlock carries besides the masked digits, so it is how an
//! unlock names its code, and how provisioning and reconciliation tell latchkey's
//! passcodes from others on the lock.

use uuid::Uuid;

/// The name a latchkey code's passcode carries on the lock: this prefix and the code id.
pub const PASSCODE_NAME_PREFIX: &str = "lk-";

/// The code id a passcode name on the lock stands for.
pub fn code_id_of(passcode_name: &str) -> Option<Uuid> {
    passcode_name
        .strip_prefix(PASSCODE_NAME_PREFIX)
        .and_then(|id| Uuid::parse_str(id).ok())
}

/// The passcode name a code's passcode is written with.
pub fn passcode_name(code_id: Uuid) -> String {
    format!("{PASSCODE_NAME_PREFIX}{code_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_name_no_code() {
        let id = Uuid::now_v7();
        assert_eq!(code_id_of(&passcode_name(id)), Some(id));
        assert_eq!(code_id_of("Guest Ana"), None);
        assert_eq!(code_id_of("lk-not-a-uuid"), None);
        assert_eq!(code_id_of(&id.to_string()), None);
    }
}
