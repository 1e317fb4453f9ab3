//! Encryption at rest of TTLock credentials: AES-256-GCM with a random 96-bit nonce per
//! value, the row and column bound in as associated data (a ciphertext copied to another
//! row or column does not open). Each ciphertext is stored with the id of its key, so
//! keys rotate: configure the new key as current and keep the old ones as previous
//! until every row has been re-written (`RegisterAccount` again, or the next token save).
//! The digest key is not derived anew at each rotation: the one kept in the database is
//! adopted at start ([`crate::digest_key`]).

use std::collections::HashMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("an encryption key must be 64 hex characters (32 bytes)")]
    KeyFormat,
    #[error("no key with id {0:?} is configured")]
    UnknownKey(String),
    #[error("a stored secret does not decrypt (wrong key, or the value was altered)")]
    Open,
    #[error("a previous key must be written as id=hex")]
    PreviousFormat,
}

/// The configured keys: one current (used to seal) and any previous (only to open).
#[derive(Clone)]
pub struct Sealer {
    current: String,
    keys: HashMap<String, Aes256Gcm>,
    /// Keys the digests that de-duplicate callbacks and records without storing the
    /// credentials they carry. Derived from the current key until the stored one is
    /// adopted ([`Sealer::with_digest_key`]), which outlives key rotations.
    digest_key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

fn cipher(hex_key: &str) -> Result<Aes256Gcm, CryptoError> {
    let bytes = hex::decode(hex_key.trim()).map_err(|_| CryptoError::KeyFormat)?;
    Aes256Gcm::new_from_slice(&bytes).map_err(|_| CryptoError::KeyFormat)
}

impl Sealer {
    /// `previous` is a comma-separated list of `id=hex` keys still accepted for reading.
    pub fn new(
        current_id: &str,
        current: &SecretString,
        previous: Option<&SecretString>,
    ) -> Result<Self, CryptoError> {
        let mut keys = HashMap::new();
        keys.insert(current_id.to_owned(), cipher(current.expose_secret())?);
        let raw =
            hex::decode(current.expose_secret().trim()).map_err(|_| CryptoError::KeyFormat)?;
        let digest_key: [u8; 32] = Sha256::new()
            .chain_update(b"latchkey/gateway/digest/v1")
            .chain_update(&raw)
            .finalize()
            .into();
        if let Some(previous) = previous {
            for pair in previous
                .expose_secret()
                .split(',')
                .filter(|p| !p.trim().is_empty())
            {
                let (id, key) = pair.split_once('=').ok_or(CryptoError::PreviousFormat)?;
                keys.insert(id.trim().to_owned(), cipher(key)?);
            }
        }
        Ok(Self {
            current: current_id.to_owned(),
            keys,
            digest_key,
        })
    }

    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// The digest key, hex-encoded, for keeping it sealed.
    pub fn digest_key(&self) -> SecretString {
        SecretString::from(hex::encode(self.digest_key))
    }

    /// This sealer with digests keyed by `hex_key`, as [`Sealer::digest_key`] gave it.
    pub fn with_digest_key(mut self, hex_key: &SecretString) -> Result<Self, CryptoError> {
        let raw =
            hex::decode(hex_key.expose_secret().trim()).map_err(|_| CryptoError::KeyFormat)?;
        self.digest_key = raw.try_into().map_err(|_| CryptoError::KeyFormat)?;
        Ok(self)
    }

    /// HMAC-SHA256 of `parts`, each length-prefixed so no two lists collide. Unlike a
    /// bare hash, it cannot be reversed by trying every 4-9 digit passcode.
    pub fn digest(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.digest_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// Seals `plaintext` under the current key, bound to `context`.
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<Vec<u8>, CryptoError> {
        let cipher = self
            .keys
            .get(&self.current)
            .ok_or_else(|| CryptoError::UnknownKey(self.current.clone()))?;
        let mut nonce = [0_u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value sealed under `key_id` for `context`.
    pub fn open(
        &self,
        key_id: &str,
        sealed: &[u8],
        context: &str,
    ) -> Result<SecretString, CryptoError> {
        let cipher = self
            .keys
            .get(key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        if sealed.len() <= NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Open)?;
        let plain = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Open)
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEY_B: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn seals_open_only_in_their_context() {
        let sealer = Sealer::new("a", &secret(KEY_A), None).unwrap();
        let sealed = sealer
            .seal("client-secret-value", "acct-1/client_secret")
            .unwrap();
        assert!(
            !sealed.windows(6).any(|w| w == b"client"),
            "ciphertext hides the value"
        );
        let opened = sealer.open("a", &sealed, "acct-1/client_secret").unwrap();
        assert_eq!(opened.expose_secret(), "client-secret-value");
        assert!(sealer.open("a", &sealed, "acct-2/client_secret").is_err());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(sealer.open("a", &altered, "acct-1/client_secret").is_err());
    }

    #[test]
    fn rotated_keys_still_open_old_values_and_seal_with_the_new_one() {
        let old = Sealer::new("a", &secret(KEY_A), None).unwrap();
        let sealed = old.seal("pw", "ctx").unwrap();
        let rotated =
            Sealer::new("b", &secret(KEY_B), Some(&secret(&format!("a={KEY_A}")))).unwrap();
        assert_eq!(
            rotated.open("a", &sealed, "ctx").unwrap().expose_secret(),
            "pw"
        );
        assert_eq!(rotated.current_key_id(), "b");
        let resealed = rotated.seal("pw", "ctx").unwrap();
        assert!(rotated.open("a", &resealed, "ctx").is_err());
        assert_ne!(old.digest(&[b"12", b"3"]), old.digest(&[b"1", b"23"]));
        assert_eq!(old.digest(&[b"123"]), old.digest(&[b"123"]));
        assert_ne!(old.digest(&[b"123"]), rotated.digest(&[b"123"]));
        let adopted = rotated.with_digest_key(&old.digest_key()).unwrap();
        assert_eq!(old.digest(&[b"123"]), adopted.digest(&[b"123"]));
        assert!(matches!(
            adopted.with_digest_key(&secret("abcd")),
            Err(CryptoError::KeyFormat)
        ));
        assert!(matches!(
            Sealer::new("x", &secret("short"), None),
            Err(CryptoError::KeyFormat)
        ));
    }
}
