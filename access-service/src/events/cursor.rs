//! Cursors: a position in one tenant's log, tagged with a keyed MAC of the tenant and
//! the position, so a cursor forged, altered or taken from another tenant is refused
//! instead of silently reading elsewhere.

use crate::code_keys::CodeKeys;

const PREFIX: &str = "e1.";

/// The cursor after the row at `sequence` of `tenant_id`.
pub fn encode(keys: &CodeKeys, tenant_id: &str, sequence: i64) -> String {
    format!(
        "{PREFIX}{sequence}.{}",
        hex::encode(keys.cursor_tag(tenant_id, sequence))
    )
}

/// The position `text` names for `tenant_id`, if it is a cursor issued for it.
pub fn decode(keys: &CodeKeys, tenant_id: &str, text: &str) -> Option<i64> {
    let (sequence, tag) = text.strip_prefix(PREFIX)?.split_once('.')?;
    if sequence.is_empty() || sequence.len() > 19 || !sequence.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sequence: i64 = sequence.parse().ok()?;
    let tag = hex::decode(tag).ok()?;
    // Constant time: the tag must not be guessable byte by byte.
    let expected = keys.cursor_tag(tenant_id, sequence);
    let same = tag.len() == expected.len()
        && tag
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    same.then_some(sequence)
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
        let cursor = encode(&keys, "t1", 42);
        assert_eq!(decode(&keys, "t1", &cursor), Some(42));
        assert_eq!(decode(&keys, "t2", &cursor), None, "another tenant");
        assert_eq!(decode(&self::keys("b"), "t1", &cursor), None, "another key");
        let moved = cursor.replacen("42", "43", 1);
        assert_eq!(decode(&keys, "t1", &moved), None, "an altered position");
        for junk in [
            "",
            "e1.",
            "e1.42",
            "e1.42.zz",
            "e1.-1.00",
            "x1.42.00",
            "e1.99999999999999999999.00",
        ] {
            assert_eq!(decode(&keys, "t1", junk), None, "{junk:?}");
        }
        assert_eq!(decode(&keys, "t1", &encode(&keys, "t1", 0)), Some(0));
    }
}
