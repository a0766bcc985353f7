//! Private signing keys sealed under a key-encryption key, so every node sharing a database can read them
//! from it instead of from a directory copied by hand.
//!
//! A sealed key is `v1.<kek id>.<nonce>.<ciphertext>` (base64url without padding): AES-256-GCM of the
//! PKCS#8 bytes under the key-encryption key, with the key's `kid` and algorithm as associated data, so a
//! sealed value moved to another `kid` does not open. The key-encryption key itself never enters the
//! database; its id (the first 8 bytes of SHA-256 of it, hex) names which one a value was sealed under.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};

use super::Algorithm;

/// Why a key-encryption key or a sealed key is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("must be 32 bytes of base64url or 64 hex digits (e.g. `openssl rand -hex 32`)")]
    BadKek,
    #[error("the sealed key is malformed")]
    Malformed,
    #[error("the key was sealed under key-encryption key {sealed_under}, this node has {ours}")]
    OtherKek { sealed_under: String, ours: String },
    #[error("the sealed key does not open: it was altered or belongs to another kid")]
    DoesNotOpen,
    #[error("no randomness for a nonce")]
    NoRandomness,
}

/// The key-encryption key every node is given (`key_encryption_key` / `KEY_ENCRYPTION_KEY`).
#[derive(Clone)]
pub struct Kek {
    bytes: [u8; 32],
    id: String,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key, only its id.
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn associated_data(kid: &str, alg: Algorithm) -> Vec<u8> {
    format!("consent-ledger.signing-key.v1\0{kid}\0{}", alg.name()).into_bytes()
}

impl Kek {
    /// Reads a key-encryption key written as 64 hex digits or 43 base64url characters.
    pub fn parse(text: &str) -> Result<Kek, SealError> {
        let text = text.trim();
        let bytes = if text.len() == 64 {
            hex::decode(text).map_err(|_| SealError::BadKek)?
        } else {
            B64.decode(text.trim_end_matches('='))
                .map_err(|_| SealError::BadKek)?
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKek)?;
        let id = hex::encode(&Sha256::digest(bytes)[..8]);
        Ok(Kek { bytes, id })
    }

    /// The key's public name: which key a sealed value needs, without revealing it.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn aead(&self) -> Result<LessSafeKey, SealError> {
        let key = UnboundKey::new(&AES_256_GCM, &self.bytes).map_err(|_| SealError::BadKek)?;
        Ok(LessSafeKey::new(key))
    }

    /// Seals `pkcs8` for `kid` with the given nonce (the caller draws it at random).
    pub fn seal_with(
        &self,
        kid: &str,
        alg: Algorithm,
        pkcs8: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<String, SealError> {
        let mut data = pkcs8.to_vec();
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(kid, alg)),
                &mut data,
            )
            .map_err(|_| SealError::BadKek)?;
        Ok(format!(
            "v1.{}.{}.{}",
            self.id,
            B64.encode(nonce),
            B64.encode(data)
        ))
    }

    /// Seals `pkcs8` for `kid` under a fresh random nonce.
    pub fn seal(&self, kid: &str, alg: Algorithm, pkcs8: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        crate::ids::fill(&mut nonce).map_err(|_| SealError::NoRandomness)?;
        self.seal_with(kid, alg, pkcs8, nonce)
    }

    /// Opens a value [`Kek::seal`] made for `kid`.
    pub fn open(&self, kid: &str, alg: Algorithm, sealed: &str) -> Result<Vec<u8>, SealError> {
        let mut parts = sealed.split('.');
        let (Some("v1"), Some(kek_id), Some(nonce), Some(data), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(SealError::Malformed);
        };
        if kek_id != self.id {
            return Err(SealError::OtherKek {
                sealed_under: kek_id.to_owned(),
                ours: self.id.clone(),
            });
        }
        let nonce: [u8; NONCE_LEN] = B64
            .decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(SealError::Malformed)?;
        let mut data = B64.decode(data).map_err(|_| SealError::Malformed)?;
        let plain = self
            .aead()?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(kid, alg)),
                &mut data,
            )
            .map_err(|_| SealError::DoesNotOpen)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_kek_is_32_bytes_in_hex_or_base64url_and_nothing_else() {
        let hex = Kek::parse(HEX).unwrap();
        let b64 = Kek::parse(&B64.encode(hex::decode(HEX).unwrap())).unwrap();
        assert_eq!(hex.id(), b64.id());
        assert_eq!(Kek::parse("short").unwrap_err(), SealError::BadKek);
        assert_eq!(Kek::parse(&"zz".repeat(32)).unwrap_err(), SealError::BadKek);
        assert_eq!(Kek::parse(&B64.encode([7u8; 16])).unwrap_err(), SealError::BadKek);
        assert!(!format!("{hex:?}").contains("0001"), "Debug never shows the key");
    }

    #[test]
    fn a_sealed_key_opens_for_its_kid_only_and_under_its_kek_only() {
        let kek = Kek::parse(HEX).unwrap();
        let sealed = kek
            .seal_with("k1", Algorithm::ES256, b"private", [9; 12])
            .unwrap();
        assert!(!sealed.contains(&B64.encode(b"private")));
        assert_eq!(kek.open("k1", Algorithm::ES256, &sealed).unwrap(), b"private");
        assert_eq!(
            kek.open("k2", Algorithm::ES256, &sealed).unwrap_err(),
            SealError::DoesNotOpen,
            "moved to another kid"
        );
        assert_eq!(
            kek.open("k1", Algorithm::RS256, &sealed).unwrap_err(),
            SealError::DoesNotOpen,
            "relabelled as another algorithm"
        );
        let other = Kek::parse(&"ab".repeat(32)).unwrap();
        assert!(matches!(
            other.open("k1", Algorithm::ES256, &sealed).unwrap_err(),
            SealError::OtherKek { .. }
        ));
        // One byte of the ciphertext changed (a character well inside the last part).
        let i = sealed.len() - 6;
        let c = if &sealed[i..=i] == "A" { "B" } else { "A" };
        let tampered = format!("{}{c}{}", &sealed[..i], &sealed[i + 1..]);
        assert_eq!(
            kek.open("k1", Algorithm::ES256, &tampered).unwrap_err(),
            SealError::DoesNotOpen
        );
        assert_eq!(
            kek.open("k1", Algorithm::ES256, "v1.x").unwrap_err(),
            SealError::Malformed
        );
    }

    #[test]
    fn two_seals_of_one_key_differ() {
        let kek = Kek::parse(HEX).unwrap();
        let a = kek.seal("k1", Algorithm::ES256, b"private").unwrap();
        let b = kek.seal("k1", Algorithm::ES256, b"private").unwrap();
        assert_ne!(a, b, "a fresh nonce each time");
    }
}
