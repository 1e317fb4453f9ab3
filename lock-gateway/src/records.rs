//! What a TTLock lock record means: its typed event kind, from the cloud record type
//! (reference §6.1) refined by the lock's own type (§6.2), and the masking of the
//! credential it carries before it leaves the gateway.

use latchkey::pb::gateway::v1::DeviceEventKind as Kind;

/// Lock-side types of a passcode typed on the keypad and refused (unknown, expired or
/// not yet valid, storage full, blacklisted; double-locked).
const LOCK_SIDE_WRONG_PASSCODE: [i32; 5] = [7, 11, 12, 13, 38];

/// The kind of a record. `success` false turns an unlock by passcode into a wrong-passcode
/// attempt; other failed unlocks keep their kind and carry `success = false`.
pub fn kind(record_type: Option<i32>, record_type_from_lock: Option<i32>, success: bool) -> Kind {
    if record_type_from_lock.is_some_and(|t| LOCK_SIDE_WRONG_PASSCODE.contains(&t)) {
        return Kind::WrongPasscode;
    }
    let Some(record_type) = record_type else {
        return from_lock_side(record_type_from_lock);
    };
    match record_type {
        4 | 92 if success => Kind::UnlockPasscode,
        4 | 92 => Kind::WrongPasscode,
        1 | 75 => Kind::UnlockApp,
        7 | 49 | 51 | 91 => Kind::UnlockCard,
        8 => Kind::UnlockFingerprint,
        3 | 12 | 76 => Kind::UnlockRemote,
        10 => Kind::UnlockKey,
        9 | 32 | 46 | 50 | 55 | 57 | 58 | 63 | 65 | 67 | 68 | 71 | 84 | 85 | 88 => {
            Kind::UnlockOther
        }
        11 | 33 | 34 | 35 | 36 | 45 | 47 | 52 | 53 | 59 | 61 | 66 | 69 | 86 => Kind::Lock,
        29 | 44 | 48 => Kind::Tamper,
        30 => Kind::DoorClosed,
        31 => Kind::DoorOpened,
        _ => Kind::Other,
    }
}

/// Records uploaded without a cloud type carry only the lock's own (§6.2).
fn from_lock_side(record_type_from_lock: Option<i32>) -> Kind {
    match record_type_from_lock {
        Some(4) => Kind::UnlockPasscode,
        Some(1 | 75) => Kind::UnlockApp,
        Some(17 | 49) => Kind::UnlockCard,
        Some(20) => Kind::UnlockFingerprint,
        Some(28 | 76) => Kind::UnlockRemote,
        Some(27) => Kind::UnlockKey,
        Some(26 | 33 | 34 | 35 | 36 | 45 | 47 | 52 | 53) => Kind::Lock,
        Some(29 | 44 | 48) => Kind::Tamper,
        Some(30) => Kind::DoorClosed,
        Some(31) => Kind::DoorOpened,
        _ => Kind::Other,
    }
}

/// Whether a kind is an unlock of any credential.
pub fn is_unlock(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::UnlockPasscode
            | Kind::UnlockApp
            | Kind::UnlockCard
            | Kind::UnlockFingerprint
            | Kind::UnlockRemote
            | Kind::UnlockKey
            | Kind::UnlockOther
    )
}

/// A passcode, card or fingerprint number shown only by its last two digits, behind a
/// fixed-width mask that does not reveal its length. Empty stays empty.
pub fn mask(credential: &str) -> String {
    let chars: Vec<char> = credential.trim().chars().collect();
    match chars.len() {
        0 => String::new(),
        1..=3 => "****".to_owned(),
        n => format!("****{}{}", chars[n - 2], chars[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passcode_records_are_unlocks_or_wrong_codes() {
        assert_eq!(kind(Some(4), Some(4), true), Kind::UnlockPasscode);
        assert_eq!(kind(Some(4), Some(4), false), Kind::WrongPasscode);
        assert_eq!(kind(Some(4), Some(7), false), Kind::WrongPasscode);
        assert_eq!(kind(None, Some(11), false), Kind::WrongPasscode);
    }

    #[test]
    fn observed_pairs_map_to_their_kinds() {
        // Card 7/17 and passcode 4/4 are observed; the rest follow the two type lists.
        assert_eq!(kind(Some(7), Some(17), true), Kind::UnlockCard);
        assert_eq!(kind(Some(12), Some(28), true), Kind::UnlockRemote);
        assert_eq!(kind(Some(1), None, true), Kind::UnlockApp);
        assert_eq!(kind(Some(45), Some(45), true), Kind::Lock);
        assert_eq!(kind(Some(47), None, true), Kind::Lock);
        assert_eq!(kind(Some(30), Some(30), true), Kind::DoorClosed);
        assert_eq!(kind(Some(31), Some(31), true), Kind::DoorOpened);
        assert_eq!(kind(Some(44), None, true), Kind::Tamper);
        assert_eq!(kind(Some(8), None, true), Kind::UnlockFingerprint);
        assert_eq!(kind(Some(10), None, true), Kind::UnlockKey);
        assert_eq!(kind(Some(123), None, true), Kind::Other);
        assert_eq!(kind(None, Some(17), true), Kind::UnlockCard);
        assert_eq!(kind(None, None, true), Kind::Other);
        assert!(is_unlock(Kind::UnlockRemote));
        assert!(!is_unlock(Kind::WrongPasscode));
    }

    #[test]
    fn masks_keep_only_the_last_two_digits_and_hide_the_length() {
        assert_eq!(mask("0506"), "****06");
        assert_eq!(mask("1292195345"), "****45");
        assert_eq!(mask("123"), "****");
        assert_eq!(mask(""), "");
        assert_eq!(mask("  "), "");
    }
}
