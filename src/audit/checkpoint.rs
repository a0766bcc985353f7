//! What a signed checkpoint is: the statement a node signs about the log, its exact bytes, and how a
//! signature is checked against a published key.
//!
//! The signed bytes are the canonical JSON (keys sorted, no whitespace) of
//! `{"head_hash","kid","merkle_root","position","time"}`; the signature is Ed25519 over those bytes,
//! base64url without padding. `position` is the tree size: the checkpoint covers events `1..=position`.

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::merkle::Hash;

/// A checkpoint as stored, listed and exported: the signed statement and its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// The tree size: the last position the checkpoint covers.
    pub position: u64,
    /// The chain hash of the event at `position`, lowercase hex.
    pub head_hash: String,
    /// The Merkle tree hash of events `1..=position`, lowercase hex.
    pub merkle_root: String,
    /// When it was signed, in Unix seconds.
    pub time: i64,
    /// The checkpoint key that signed it.
    pub kid: String,
    /// Ed25519 over [`SignedCheckpoint::signed_bytes`], base64url without padding.
    pub signature: String,
}

/// Why a checkpoint is not to be believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {position}: no published checkpoint key has kid {kid:?}")]
    UnknownKey { position: u64, kid: String },
    #[error("checkpoint {position}: the signature does not verify with key {kid:?}")]
    BadSignature { position: u64, kid: String },
    #[error("checkpoint {position}: {problem}")]
    Malformed { position: u64, problem: String },
}

impl SignedCheckpoint {
    /// The bytes the signature covers.
    pub fn signed_bytes(position: u64, head_hash: &str, merkle_root: &str, time: i64, kid: &str) -> Vec<u8> {
        let body = json!({
            "position": position,
            "head_hash": head_hash,
            "merkle_root": merkle_root,
            "time": time,
            "kid": kid,
        });
        projections::chain::canonical_json(&body).into_bytes()
    }

    /// This checkpoint's signed bytes.
    pub fn body(&self) -> Vec<u8> {
        Self::signed_bytes(
            self.position,
            &self.head_hash,
            &self.merkle_root,
            self.time,
            &self.kid,
        )
    }

    /// The Merkle root as bytes.
    pub fn root(&self) -> Result<Hash, CheckpointError> {
        projections::chain::parse_hash(&self.merkle_root).ok_or_else(|| CheckpointError::Malformed {
            position: self.position,
            problem: format!("merkle_root {:?} is not a 64-digit hex hash", self.merkle_root),
        })
    }

    /// Checks the signature with the key among `keys` whose `kid` it names.
    pub fn verify(&self, keys: &[PublicKey]) -> Result<(), CheckpointError> {
        let key = keys
            .iter()
            .find(|k| k.kid == self.kid)
            .ok_or_else(|| CheckpointError::UnknownKey {
                position: self.position,
                kid: self.kid.clone(),
            })?;
        let bad = || CheckpointError::BadSignature {
            position: self.position,
            kid: self.kid.clone(),
        };
        let signature = B64.decode(&self.signature).map_err(|_| bad())?;
        UnparsedPublicKey::new(&ED25519, &key.x)
            .verify(&self.body(), &signature)
            .map_err(|_| bad())
    }
}

/// A checkpoint key's public half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    /// The 32-byte Ed25519 public key.
    pub x: Vec<u8>,
}

impl PublicKey {
    /// The key from its raw public bytes; the `kid` is its RFC 7638 thumbprint.
    pub fn from_raw(x: &[u8]) -> PublicKey {
        PublicKey {
            kid: thumbprint(x),
            x: x.to_vec(),
        }
    }

    /// The public JWK, as `/audit/checkpoint-keys` publishes it.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": B64.encode(&self.x),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }

    /// Reads an `OKP`/`Ed25519` JWK; its `kid`, when present, must be its thumbprint.
    pub fn from_jwk(jwk: &Value) -> Result<PublicKey, String> {
        if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" {
            return Err("a checkpoint key is an OKP JWK on Ed25519".into());
        }
        let x = jwk["x"]
            .as_str()
            .and_then(|x| B64.decode(x).ok())
            .filter(|x| x.len() == 32)
            .ok_or("the JWK's x is not a base64url Ed25519 public key")?;
        let key = PublicKey::from_raw(&x);
        match jwk.get("kid").and_then(Value::as_str) {
            Some(kid) if kid != key.kid => Err(format!(
                "the JWK's kid {kid:?} is not its thumbprint {:?}",
                key.kid
            )),
            _ => Ok(key),
        }
    }

    /// Reads a JWK set (`{"keys": [...]}`) or a single JWK.
    pub fn from_jwks(doc: &Value) -> Result<Vec<PublicKey>, String> {
        match doc.get("keys").and_then(Value::as_array) {
            Some(keys) => keys.iter().map(PublicKey::from_jwk).collect(),
            None => Ok(vec![PublicKey::from_jwk(doc)?]),
        }
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key: base64url SHA-256 of `{"crv","kty","x"}`.
pub fn thumbprint(x: &[u8]) -> String {
    use sha2::Digest;
    let members = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, B64.encode(x));
    B64.encode(sha2::Sha256::digest(members.as_bytes()))
}

/// When a node next signs a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub every_events: u64,
    pub every_seconds: i64,
}

impl Schedule {
    /// Is a checkpoint due for a log of `head` events, given the last checkpoint's size and time (or,
    /// before any, 0 and when the checkpointer started)? Only a log that grew gets one.
    pub fn due(&self, head: u64, last_size: u64, last_time: i64, now: i64) -> bool {
        head > last_size && (head - last_size >= self.every_events || now - last_time >= self.every_seconds)
    }
}

/// Reads checkpoints: one JSON object per line (what `audit checkpoints` exports), or one object.
pub fn parse_checkpoints(text: &str) -> Result<Vec<SignedCheckpoint>, String> {
    if let Ok(one) = serde_json::from_str::<SignedCheckpoint>(text) {
        return Ok(vec![one]);
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: not a checkpoint: {e}", i + 1)))
        .collect()
}

/// The checkpoint of `size` among `checkpoints`.
pub fn of_size(checkpoints: &[SignedCheckpoint], size: u64) -> Result<&SignedCheckpoint, String> {
    checkpoints
        .iter()
        .find(|c| c.position == size)
        .ok_or_else(|| format!("no checkpoint of size {size} was given"))
}

/// An inclusion proof as `GET /audit/events/{position}/proof` answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub event: ProvenEvent,
    /// The leaf input, base64url; when present it must be what the event's fields encode.
    #[serde(default)]
    pub leaf_input: Option<String>,
    pub audit_path: Vec<String>,
}

/// The event an inclusion proof is about, as stored.
#[derive(Debug, Clone, Deserialize)]
pub struct ProvenEvent {
    pub position: u64,
    pub stream_id: String,
    pub version: u64,
    pub event_type: String,
    pub payload: String,
    pub metadata: String,
    pub recorded_at: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// A consistency proof as `GET /audit/checkpoints/consistency` answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsistencyProof {
    pub from: SignedCheckpoint,
    pub to: SignedCheckpoint,
    pub proof: Vec<String>,
}

fn hashes(texts: &[String]) -> Result<Vec<Hash>, String> {
    texts
        .iter()
        .map(|t| projections::chain::parse_hash(t).ok_or_else(|| format!("{t:?} is not a 64-digit hex hash")))
        .collect()
}

/// Checks that `proof` puts its event in the tree `checkpoint` signs (and, with `keys`, that the
/// checkpoint's signature verifies). On success, the line to print.
pub fn check_inclusion(
    proof: &InclusionProof,
    checkpoint: &SignedCheckpoint,
    keys: Option<&[PublicKey]>,
) -> Result<String, String> {
    use projections::chain::{Link, link_bytes, parse_hash};
    let e = &proof.event;
    if proof.tree_size != checkpoint.position {
        return Err(format!(
            "the proof is for a tree of {} events, the checkpoint signs {}",
            proof.tree_size, checkpoint.position
        ));
    }
    if proof.leaf_index.checked_add(1) != Some(e.position) {
        return Err(format!(
            "leaf index {} is not the event's position {} minus one",
            proof.leaf_index, e.position
        ));
    }
    let prev = parse_hash(&e.prev_hash).ok_or("prev_hash is not a 64-digit hex hash")?;
    let input = link_bytes(
        &prev,
        &Link {
            position: e.position,
            stream_id: &e.stream_id,
            version: e.version,
            event_type: &e.event_type,
            payload: &e.payload,
            metadata: &e.metadata,
            recorded_at: e.recorded_at,
        },
    );
    if let Some(given) = &proof.leaf_input
        && B64.decode(given).ok().as_deref() != Some(input.as_slice())
    {
        return Err("leaf_input is not what the event's fields encode".into());
    }
    {
        use sha2::Digest;
        if hex::encode(sha2::Sha256::digest(&input)) != e.hash.to_ascii_lowercase() {
            return Err("the event's hash is not the chain hash of its fields".into());
        }
    }
    let path = hashes(&proof.audit_path)?;
    let root = checkpoint.root().map_err(|e| e.to_string())?;
    let leaf = super::merkle::leaf_hash(&input);
    if !super::merkle::verify_inclusion(proof.leaf_index, proof.tree_size, &leaf, &path, &root) {
        return Err(format!(
            "event {} is NOT in the tree of checkpoint {} (root {})",
            e.position, checkpoint.position, checkpoint.merkle_root
        ));
    }
    let signed = match keys {
        Some(keys) => {
            checkpoint.verify(keys).map_err(|e| e.to_string())?;
            format!("signed by {}", checkpoint.kid)
        }
        None => "signature not checked: no --checkpoint-key given".into(),
    };
    Ok(format!(
        "included: event {} ({} on {}) is in checkpoint {} (root {}, {signed})",
        e.position, e.event_type, e.stream_id, checkpoint.position, checkpoint.merkle_root
    ))
}

/// Checks that `proof` shows its later checkpoint's tree extending `earlier` (a checkpoint the auditor
/// kept, which must be the proof's `from`), and, with `keys`, both signatures.
pub fn check_consistency(
    proof: &ConsistencyProof,
    earlier: &SignedCheckpoint,
    keys: Option<&[PublicKey]>,
) -> Result<String, String> {
    if &proof.from != earlier {
        return Err(format!(
            "the proof starts from a checkpoint of size {} that is not the one given",
            proof.from.position
        ));
    }
    let (from, to) = (&proof.from, &proof.to);
    let path = hashes(&proof.proof)?;
    let (from_root, to_root) = (
        from.root().map_err(|e| e.to_string())?,
        to.root().map_err(|e| e.to_string())?,
    );
    if !super::merkle::verify_consistency(from.position, to.position, &from_root, &to_root, &path) {
        return Err(format!(
            "checkpoint {} does NOT extend checkpoint {}",
            to.position, from.position
        ));
    }
    let signed = match keys {
        Some(keys) => {
            from.verify(keys).map_err(|e| e.to_string())?;
            to.verify(keys).map_err(|e| e.to_string())?;
            "both signatures verify".to_owned()
        }
        None => "signatures not checked: no --checkpoint-key given".into(),
    };
    Ok(format!(
        "consistent: checkpoint {} extends checkpoint {} ({signed})",
        to.position, from.position
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    fn signed(pair: &Ed25519KeyPair, position: u64) -> SignedCheckpoint {
        let key = PublicKey::from_raw(pair.public_key().as_ref());
        let (head, root) = ("aa".repeat(32), "bb".repeat(32));
        let body = SignedCheckpoint::signed_bytes(position, &head, &root, 1_700_000_000, &key.kid);
        SignedCheckpoint {
            position,
            head_hash: head,
            merkle_root: root,
            time: 1_700_000_000,
            kid: key.kid,
            signature: B64.encode(pair.sign(&body).as_ref()),
        }
    }

    fn pair() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&crate::ids::rng()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    #[test]
    fn the_signed_bytes_are_canonical_json_with_sorted_keys() {
        let bytes = SignedCheckpoint::signed_bytes(3, "ab", "cd", 10, "k");
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"head_hash":"ab","kid":"k","merkle_root":"cd","position":3,"time":10}"#
        );
    }

    #[test]
    fn a_signature_verifies_and_any_changed_field_fails() {
        let p = pair();
        let key = PublicKey::from_raw(p.public_key().as_ref());
        let c = signed(&p, 5);
        assert_eq!(c.verify(std::slice::from_ref(&key)), Ok(()));
        let changed = [
            SignedCheckpoint {
                position: 6,
                ..c.clone()
            },
            SignedCheckpoint {
                head_hash: "ab".repeat(32),
                ..c.clone()
            },
            SignedCheckpoint {
                merkle_root: "ab".repeat(32),
                ..c.clone()
            },
            SignedCheckpoint { time: 1, ..c.clone() },
        ];
        for bad in changed {
            assert!(matches!(
                bad.verify(std::slice::from_ref(&key)),
                Err(CheckpointError::BadSignature { .. })
            ));
        }
        let other = PublicKey::from_raw(pair().public_key().as_ref());
        assert!(matches!(
            c.verify(&[other]),
            Err(CheckpointError::UnknownKey { .. })
        ));
    }

    #[test]
    fn a_published_jwk_reads_back_and_a_wrong_kid_is_refused() {
        let key = PublicKey::from_raw(pair().public_key().as_ref());
        assert_eq!(PublicKey::from_jwk(&key.jwk()), Ok(key.clone()));
        assert_eq!(
            PublicKey::from_jwks(&json!({"keys": [key.jwk()]})),
            Ok(vec![key.clone()])
        );
        let mut wrong = key.jwk();
        wrong["kid"] = json!("someone-else");
        assert!(PublicKey::from_jwk(&wrong).is_err());
        assert!(PublicKey::from_jwk(&json!({"kty": "EC"})).is_err());
    }

    #[test]
    fn a_checkpoint_is_due_after_enough_events_or_time_but_never_for_an_unchanged_log() {
        let s = Schedule {
            every_events: 10,
            every_seconds: 60,
        };
        assert!(!s.due(9, 0, 100, 120));
        assert!(s.due(10, 0, 100, 120));
        assert!(s.due(1, 0, 100, 160));
        assert!(!s.due(5, 5, 0, 10_000));
        assert!(s.due(25, 15, 100, 101));
    }
}
