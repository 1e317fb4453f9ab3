//! Cursors: a position in one tenant's log, tagged with a keyed MAC of the tenant and
//! the position, so a cursor forged, altered or taken from another tenant is refused
//! instead of silently reading elsewhere.
//!
//! A row may be several events (a failure and the suspicious activity it completes), so
//! a position is a row and the index of an event within it: every event has a cursor of
//! its own, and resuming after one sends the rest of its row.

use crate::code_keys::CodeKeys;

const PREFIX: &str = "e2.";

/// After event `index` of row `sequence`; [`Position::WHOLE_ROW`] is after all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub sequence: i64,
    pub index: u8,
}

impl Position {
    pub const WHOLE_ROW: u8 = u8::MAX;

    /// After the whole row `sequence`.
    pub fn after_row(sequence: i64) -> Self {
        Self {
            sequence,
            index: Self::WHOLE_ROW,
        }
    }

    /// Whether event `index` of row `sequence` comes after this position.
    pub fn precedes(&self, sequence: i64, index: usize) -> bool {
        sequence > self.sequence
            || (sequence == self.sequence
                && self.index != Self::WHOLE_ROW
                && index > usize::from(self.index))
    }

    /// The last row wholly behind this position.
    pub fn rows_done(&self) -> i64 {
        if self.index == Self::WHOLE_ROW {
            self.sequence
        } else {
            self.sequence - 1
        }
    }
}

/// The cursor of `position` in `tenant_id`'s log.
pub fn encode(keys: &CodeKeys, tenant_id: &str, position: Position) -> String {
    format!(
        "{PREFIX}{}.{}.{}",
        position.sequence,
        position.index,
        hex::encode(keys.cursor_tag(tenant_id, position.sequence, position.index))
    )
}

/// The position `text` names for `tenant_id`, if it is a cursor issued for it.
pub fn decode(keys: &CodeKeys, tenant_id: &str, text: &str) -> Option<Position> {
    let mut parts = text.strip_prefix(PREFIX)?.splitn(3, '.');
    let (sequence, index, tag) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |part: &str, most: usize| {
        !part.is_empty() && part.len() <= most && part.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(sequence, 18) || !digits(index, 3) {
        return None;
    }
    let sequence: i64 = sequence.parse().ok()?;
    let index: u8 = index.parse().ok()?;
    let tag = hex::decode(tag).ok()?;
    // Constant time: the tag must not be guessable byte by byte.
    let expected = keys.cursor_tag(tenant_id, sequence, index);
    let same = tag.len() == expected.len()
        && tag
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    same.then_some(Position { sequence, index })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn keys(byte: &str) -> CodeKeys {
        CodeKeys::new(&SecretString::from(byte.repeat(64))).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn a_cursor_opens_only_for_its_tenant_and_key() {
        let keys = keys("a");
        let at = Position {
            sequence: 42,
            index: 1,
        };
        let cursor = encode(&keys, "t1", at);
        assert_eq!(decode(&keys, "t1", &cursor), Some(at));
        assert_eq!(decode(&keys, "t2", &cursor), None, "another tenant");
        assert_eq!(decode(&self::keys("b"), "t1", &cursor), None, "another key");
        let moved = cursor.replacen("42", "43", 1);
        assert_eq!(decode(&keys, "t1", &moved), None, "an altered row");
        let moved = cursor.replacen(".1.", ".0.", 1);
        assert_eq!(decode(&keys, "t1", &moved), None, "an altered event");
        for junk in [
            "",
            "e2.",
            "e2.42",
            "e2.42.1",
            "e2.42.1.zz",
            "e2.-1.0.00",
            "e1.42.00",
            "e2.42.256.00",
            "e2.9999999999999999999.0.00",
        ] {
            assert_eq!(decode(&keys, "t1", junk), None, "{junk:?}");
        }
        let start = Position::after_row(0);
        assert_eq!(
            decode(&keys, "t1", &encode(&keys, "t1", start)),
            Some(start)
        );
    }

    #[test]
    fn a_position_inside_a_row_lets_the_rest_of_the_row_through() {
        let at = Position {
            sequence: 42,
            index: 1,
        };
        assert!(at.precedes(42, 2) && at.precedes(43, 0));
        assert!(!at.precedes(42, 1) && !at.precedes(41, 5));
        assert!(!Position::after_row(42).precedes(42, 7));
        assert_eq!(
            (at.rows_done(), Position::after_row(0).rows_done()),
            (41, 0)
        );
    }
}
