//! The hash chain. Each row's hash is SHA-256 over a domain tag and a canonical,
//! length-prefixed encoding of every field in a fixed order, ending with the previous
//! row's hash. Any edited, deleted, inserted or reordered row breaks a link.

use chrono::{DateTime, SubsecRound, Utc};
use sha2::{Digest, Sha256};

use super::{AuditEntry, AuditRow};

/// The previous hash of a chain's first row.
pub const GENESIS: [u8; 32] = [0; 32];
const DOMAIN: &[u8] = b"latchkey.audit.v1";

/// PostgreSQL keeps microseconds; hashing a finer instant would never verify.
pub fn truncate_to_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

struct Encoder(Sha256);

impl Encoder {
    fn bytes(&mut self, value: &[u8]) {
        let len = u64::try_from(value.len()).unwrap_or(u64::MAX);
        self.0.update(len.to_be_bytes());
        self.0.update(value);
    }

    fn text(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    fn int(&mut self, value: i64) {
        self.0.update(value.to_be_bytes());
    }

    fn flag(&mut self, value: bool) {
        self.0.update([u8::from(value)]);
    }
}

/// The hash of a row with these contents.
pub fn hash_row(entry: &AuditEntry, sequence: i64, flagged: bool, prev_hash: &[u8]) -> Vec<u8> {
    let mut e = Encoder(Sha256::new());
    e.bytes(DOMAIN);
    e.text(&entry.tenant_id);
    e.int(sequence);
    e.int(entry.time.timestamp_micros());
    e.text(&entry.actor);
    e.text(entry.action.as_str());
    e.text(&entry.door_id);
    e.text(&entry.door_name);
    e.text(&entry.door_type);
    e.text(&entry.door_location);
    e.text(&entry.user_id);
    e.text(&entry.user_name);
    e.text(&entry.user_email);
    e.text(&entry.user_role);
    e.text(&entry.method);
    e.flag(entry.success);
    e.text(&entry.reason_code);
    e.text(&entry.reason);
    e.text(&entry.rule_id);
    e.int(entry.rule_version);
    e.text(&entry.client_ip);
    e.text(&entry.request_id);
    e.text(&entry.target_type);
    e.text(&entry.target_id);
    e.text(&entry.metadata);
    e.flag(flagged);
    e.bytes(prev_hash);
    e.0.finalize().to_vec()
}

/// Where verification stands after some rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    expected_sequence: i64,
    expected_prev: Vec<u8>,
    pub rows_checked: i64,
    pub broken: Option<(i64, String)>,
}

impl Verifier {
    /// Starts from the row after `sequence` whose hash is `hash` (0 and [`GENESIS`] for
    /// a chain's start, or a purge checkpoint).
    pub fn starting_after(sequence: i64, hash: Vec<u8>) -> Self {
        Self {
            expected_sequence: sequence + 1,
            expected_prev: hash,
            rows_checked: 0,
            broken: None,
        }
    }

    /// Checks the next row; after the first break, later rows are not judged.
    pub fn check(&mut self, row: &AuditRow) {
        if self.broken.is_some() {
            return;
        }
        self.rows_checked += 1;
        let problem = if row.sequence != self.expected_sequence {
            Some(format!(
                "expected sequence {} but found {}: a row is missing or out of place",
                self.expected_sequence, row.sequence
            ))
        } else if row.prev_hash != self.expected_prev {
            Some("the link to the previous row does not match".to_owned())
        } else if hash_row(&row.entry, row.sequence, row.flagged, &row.prev_hash) != row.hash {
            Some("the row's contents do not match its hash".to_owned())
        } else {
            None
        };
        match problem {
            Some(detail) => self.broken = Some((self.expected_sequence.min(row.sequence), detail)),
            None => {
                self.expected_sequence = row.sequence + 1;
                self.expected_prev = row.hash.clone();
            }
        }
    }

    /// The sequence the next row must have.
    pub fn next_sequence(&self) -> i64 {
        self.expected_sequence
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditAction;

    fn chain(n: i64) -> Vec<AuditRow> {
        let mut prev = GENESIS.to_vec();
        (1..=n)
            .map(|sequence| {
                let mut entry = AuditEntry::new("t1", "u1", AuditAction::AccessGranted, true);
                entry.door_name = format!("Door {sequence}");
                let hash = hash_row(&entry, sequence, false, &prev);
                let row = AuditRow {
                    entry,
                    sequence,
                    flagged: false,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                row
            })
            .collect()
    }

    fn verify(rows: &[AuditRow]) -> Option<(i64, String)> {
        let mut verifier = Verifier::starting_after(0, GENESIS.to_vec());
        rows.iter().for_each(|row| verifier.check(row));
        verifier.broken
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), None);
    }

    #[test]
    fn an_edited_field_is_found() {
        let mut rows = chain(5);
        rows[2].entry.success = false;
        assert_eq!(verify(&rows).unwrap().0, 3);
    }

    #[test]
    fn a_deleted_row_is_found() {
        let mut rows = chain(5);
        rows.remove(1);
        assert_eq!(verify(&rows).unwrap().0, 2);
    }

    #[test]
    fn swapped_rows_are_found() {
        let mut rows = chain(5);
        rows.swap(1, 2);
        assert_eq!(verify(&rows).unwrap().0, 2);
    }

    #[test]
    fn renumbered_swapped_rows_are_found() {
        let mut rows = chain(5);
        rows.swap(1, 2);
        rows[1].sequence = 2;
        rows[2].sequence = 3;
        assert_eq!(verify(&rows).unwrap().0, 2);
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let mut a = AuditEntry::new("t1", "u1", AuditAction::AccessGranted, true);
        let mut b = a.clone();
        a.door_name = "ab".into();
        a.door_type = "c".into();
        b.door_name = "a".into();
        b.door_type = "bc".into();
        assert_ne!(
            hash_row(&a, 1, false, &GENESIS),
            hash_row(&b, 1, false, &GENESIS)
        );
    }
}
