//! The checkpoint key: the Ed25519 key that signs checkpoints of the log, never the JWT signing key.
//!
//! It lives in the key directory as `checkpoint.EdDSA.pk8` (PKCS#8, owner-only), made on the first
//! start that finds none; nodes sharing the directory share it. Its `kid` is its RFC 7638 thumbprint.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use super::{KeyDir, KeyError};
use crate::audit::checkpoint::PublicKey;

/// The key file's name in the key directory.
pub const FILE: &str = "checkpoint.EdDSA.pk8";

/// The checkpoint key, ready to sign.
pub struct CheckpointKey {
    pair: Ed25519KeyPair,
    /// Its public half and `kid`.
    pub public: PublicKey,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("CheckpointKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl CheckpointKey {
    /// Reads the key from `dir`, or makes it when there is none yet.
    pub fn load_or_create(dir: &KeyDir) -> Result<CheckpointKey, KeyError> {
        if let Some(pkcs8) = dir.read_named(FILE)? {
            return Self::from_pkcs8(&pkcs8);
        }
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&crate::ids::rng()).map_err(|_| KeyError::Generate)?;
        if dir.create_named(FILE, pkcs8.as_ref())? {
            return Self::from_pkcs8(pkcs8.as_ref());
        }
        // Another node wrote its key first: use that one, so all sign with the same key.
        let pkcs8 = dir.read_named(FILE)?.ok_or(KeyError::Generate)?;
        Self::from_pkcs8(&pkcs8)
    }

    fn from_pkcs8(pkcs8: &[u8]) -> Result<CheckpointKey, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::File {
            path: FILE.into(),
            problem: "not an Ed25519 PKCS#8 key".into(),
        })?;
        let public = PublicKey::from_raw(pair.public_key().as_ref());
        Ok(CheckpointKey { pair, public })
    }

    /// Signs `bytes`: the signature, base64url without padding.
    pub fn sign(&self, bytes: &[u8]) -> String {
        B64.encode(self.pair.sign(bytes).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_kept_owner_only_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyDir::new(tmp.path().join("keys"));
        let first = CheckpointKey::load_or_create(&dir).unwrap();
        let again = CheckpointKey::load_or_create(&dir).unwrap();
        assert_eq!(first.public, again.public);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(tmp.path().join("keys").join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{first:?}").contains("pair"));
    }
}
