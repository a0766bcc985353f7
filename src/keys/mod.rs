//! Signing keys: generation, the private halves on disk, and signing JWTs.
//!
//! Private keys live as PKCS#8 files in the key directory (owner-only permissions); only public JWKs and
//! `kid`s enter the ledger. Servers sharing one PostgreSQL ledger either share the key directory or are
//! each given the same key-encryption key, under which every private key is also kept sealed in the
//! database (`sealed.rs`), outside the ledger.

pub mod checkpoint;
mod dir;
mod material;
mod ring;
mod sealed;

pub use checkpoint::CheckpointKey;
pub use dir::KeyDir;
pub use material::KeyMaterial;
pub use ring::KeyRing;
pub use sealed::{Kek, SealError};

use serde::{Deserialize, Serialize};

/// The signature algorithms tokens may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256: the default, small and fast.
    #[default]
    ES256,
    /// Ed25519.
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256 over a 2048-bit key, for clients that know nothing else.
    RS256,
}

impl Algorithm {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::RS256 => "RS256",
        }
    }

    /// The `jsonwebtoken` algorithm.
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(Algorithm::ES256),
            "EdDSA" => Ok(Algorithm::EdDSA),
            "RS256" => Ok(Algorithm::RS256),
            other => Err(format!(
                "unknown signing algorithm {other:?}: use ES256, EdDSA or RS256"
            )),
        }
    }
}

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed")]
    Generate,
    #[error("key file {path}: {problem}")]
    File { path: String, problem: String },
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    #[error("no current signing key")]
    NoCurrentKey,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("recording the key failed: {0}")]
    Append(String),
    #[error(
        "signing key {kid} is in the ledger but its private half is neither at {file} nor sealed in the database{hint}"
    )]
    Missing {
        kid: String,
        file: String,
        hint: &'static str,
    },
    #[error("signing key {kid} sealed in the database: {source}")]
    Sealed { kid: String, source: SealError },
}
