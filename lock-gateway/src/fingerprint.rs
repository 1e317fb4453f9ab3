//! The fingerprint of a request, kept with the claim of its request id: a retry (the
//! same request) replays the first answer, another request under that id is refused.
//!
//! It is HMAC-SHA256 under the gateway's digest key ([`crate::digest_key`], kept across
//! rotations of the encryption key) over a canonical encoding: the operation, then every
//! field that shapes what is done, each named and tagged with its kind (absent, text,
//! integer), in a fixed order and in the form sent to TTLock (a window in epoch
//! milliseconds). Codes and credentials are part of it, yet without the key no guess can
//! be tested against a stored fingerprint, as one could against a plain hash of a 4 to 9
//! digit code. Its `Debug` shows nothing: it holds the code until digested.

use crate::crypto::Sealer;

/// Names this encoding, so a later one never compares equal to it.
const DOMAIN: &[u8] = b"latchkey/gateway/request/v1";

const ABSENT: u8 = 0;
const TEXT: u8 = 1;
const INT: u8 = 2;

/// A request's canonical encoding, built field by field, then digested.
pub struct Fingerprint {
    parts: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fingerprint").finish_non_exhaustive()
    }
}

impl Fingerprint {
    /// The encoding of a request for `operation`.
    pub fn of(operation: &str) -> Self {
        Self {
            parts: vec![DOMAIN.to_vec(), operation.as_bytes().to_vec()],
        }
    }

    pub fn text(self, field: &str, value: &str) -> Self {
        self.field(field, TEXT, value.as_bytes())
    }

    pub fn int(self, field: &str, value: i64) -> Self {
        self.field(field, INT, &value.to_be_bytes())
    }

    /// A field that may be left out; absent differs from empty.
    pub fn maybe_text(self, field: &str, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.text(field, value),
            None => self.field(field, ABSENT, &[]),
        }
    }

    /// A validity window in epoch milliseconds; none for a permanent code or a change
    /// that keeps the window.
    pub fn window(self, window: Option<(i64, i64)>) -> Self {
        match window {
            Some((start_ms, end_ms)) => self.int("start_ms", start_ms).int("end_ms", end_ms),
            None => self
                .field("start_ms", ABSENT, &[])
                .field("end_ms", ABSENT, &[]),
        }
    }

    fn field(mut self, name: &str, kind: u8, value: &[u8]) -> Self {
        self.parts.push(name.as_bytes().to_vec());
        let mut tagged = Vec::with_capacity(value.len() + 1);
        tagged.push(kind);
        tagged.extend_from_slice(value);
        self.parts.push(tagged);
        self
    }

    /// The keyed digest of the encoding (each part length-prefixed by the digest).
    pub fn digest(self, sealer: &Sealer) -> Vec<u8> {
        let parts: Vec<&[u8]> = self.parts.iter().map(Vec::as_slice).collect();
        sealer.digest(&parts)
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEY_B: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    fn sealer(key: &str) -> Sealer {
        Sealer::new("k", &SecretString::from(key.to_owned()), None).unwrap()
    }

    fn create(code: &str, name: Option<&str>, window: Option<(i64, i64)>) -> Fingerprint {
        Fingerprint::of("CREATE")
            .text("account_id", "0190a1b2-0000-7000-8000-000000000001")
            .int("lock_id", 7_252_408)
            .text("code", code)
            .maybe_text("name", name)
            .window(window)
    }

    #[test]
    fn every_field_counts_and_only_what_was_asked() {
        let sealer = sealer(KEY_A);
        let first = create("58317", Some("Guest"), None).digest(&sealer);
        assert_eq!(first, create("58317", Some("Guest"), None).digest(&sealer));
        for other in [
            create("58391", Some("Guest"), None),
            create("58317", Some("Cleaner"), None),
            create("58317", None, None),
            create("58317", Some(""), None),
            create("58317", Some("Guest"), Some((1_000, 2_000))),
            Fingerprint::of("CHANGE")
                .text("account_id", "0190a1b2-0000-7000-8000-000000000001")
                .int("lock_id", 7_252_408)
                .text("code", "58317")
                .maybe_text("name", Some("Guest"))
                .window(None),
        ] {
            assert_ne!(first, other.digest(&sealer));
        }
        assert_ne!(
            create("58317", None, Some((1_000, 2_000))).digest(&sealer),
            create("58317", None, Some((1_000, 2_001))).digest(&sealer)
        );
    }

    #[test]
    fn fingerprints_are_keyed() {
        let a = create("58317", None, None).digest(&sealer(KEY_A));
        assert_ne!(a, create("58317", None, None).digest(&sealer(KEY_B)));
    }
}
