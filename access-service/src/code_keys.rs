//! The server's access-code key, and the two keys derived from it: one keys the
//! HMAC-SHA256 that is all a code is stored as (a bare hash of a 6-digit code is reversed
//! by trying a million values), the other seals a code for the provisioning outbox until
//! it has been written to its lock (AES-256-GCM, bound to its outbox row).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CodeKeyError {
    #[error("ACCESS_CODE_KEY must be 64 hex characters (32 bytes)")]
    Format,
    #[error("a sealed code does not open (wrong key, or the value was altered)")]
    Open,
}

#[derive(Clone)]
pub struct CodeKeys {
    hmac_key: [u8; 32],
    /// Keys request fingerprints, apart from the codes' own hashes.
    request_key: [u8; 32],
    /// Signs event cursors, so a forged one or another tenant's is told apart.
    cursor_key: [u8; 32],
    sealer: Aes256Gcm,
}

impl std::fmt::Debug for CodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeKeys").finish_non_exhaustive()
    }
}

fn derive(label: &[u8], key: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(label)
        .chain_update(key)
        .finalize()
        .into()
}

impl CodeKeys {
    pub fn new(hex_key: &SecretString) -> Result<Self, CodeKeyError> {
        let raw = hex::decode(hex_key.expose_secret().trim()).map_err(|_| CodeKeyError::Format)?;
        if raw.len() != 32 {
            return Err(CodeKeyError::Format);
        }
        let seal_key = derive(b"latchkey/access/code-seal/v1", &raw);
        Ok(Self {
            hmac_key: derive(b"latchkey/access/code-hmac/v1", &raw),
            request_key: derive(b"latchkey/access/request-fingerprint/v1", &raw),
            cursor_key: derive(b"latchkey/access/event-cursor/v1", &raw),
            sealer: Aes256Gcm::new_from_slice(&seal_key).map_err(|_| CodeKeyError::Format)?,
        })
    }

    /// The tag binding an event cursor to its tenant and position.
    pub fn cursor_tag(&self, tenant_id: &str, sequence: i64, index: u8) -> [u8; 16] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.cursor_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(&(tenant_id.len() as u64).to_be_bytes());
        mac.update(tenant_id.as_bytes());
        mac.update(&sequence.to_be_bytes());
        mac.update(&[index]);
        let full = mac.finalize().into_bytes();
        let mut tag = [0; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }

    /// The keyed hash a code is stored and matched as, scoped to its tenant.
    pub fn hash(&self, tenant_id: &str, code: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.hmac_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(&(tenant_id.len() as u64).to_be_bytes());
        mac.update(tenant_id.as_bytes());
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// A keyed digest of a request (its operation and encoded message): requests may
    /// carry a chosen code, which a plain hash would let anyone guess back.
    pub fn request_fingerprint(&self, operation: &str, message: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.request_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(&(operation.len() as u64).to_be_bytes());
        mac.update(operation.as_bytes());
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether `code` hashes to `stored`, in time independent of where they differ.
    pub fn matches(&self, tenant_id: &str, code: &str, stored: &[u8]) -> bool {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.hmac_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(&(tenant_id.len() as u64).to_be_bytes());
        mac.update(tenant_id.as_bytes());
        mac.update(code.as_bytes());
        mac.verify_slice(stored).is_ok()
    }

    /// Seals a code for the outbox row named by `context`.
    pub fn seal(&self, code: &str, context: &str) -> Vec<u8> {
        let mut nonce = [0_u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .sealer
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: code.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<SecretString, CodeKeyError> {
        if sealed.len() <= NONCE_LEN {
            return Err(CodeKeyError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CodeKeyError::Open)?;
        let plain = self
            .sealer
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CodeKeyError::Open)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| CodeKeyError::Open)
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> CodeKeys {
        CodeKeys::new(&SecretString::from(
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f".to_owned(),
        ))
        .unwrap()
    }

    #[test]
    fn hashes_are_keyed_per_tenant_and_match_only_their_code() {
        let keys = keys();
        let stored = keys.hash("acme", "480263");
        assert!(keys.matches("acme", "480263", &stored));
        assert!(!keys.matches("acme", "480264", &stored));
        assert!(!keys.matches("other", "480263", &stored));
        assert_ne!(stored, Sha256::digest(b"480263").to_vec());
    }

    #[test]
    fn sealed_codes_open_only_in_their_context() {
        let keys = keys();
        let sealed = keys.seal("480263", "outbox/1");
        assert!(!sealed.windows(6).any(|w| w == b"480263"));
        assert_eq!(
            keys.open(&sealed, "outbox/1").unwrap().expose_secret(),
            "480263"
        );
        assert!(keys.open(&sealed, "outbox/2").is_err());
        assert!(CodeKeys::new(&SecretString::from("abcd".to_owned())).is_err());
    }
}
