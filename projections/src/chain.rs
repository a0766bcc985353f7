//! The hash chain that makes the ledger tamper-evident.
//!
//! Every event's hash is SHA-256 over the previous event's hash and a canonical encoding of the event:
//!
//! ```text
//! hash(n) = SHA-256( "consent-ledger.chain.v1"
//!                    || prev_hash            32 raw bytes; 32 zero bytes before position 1
//!                    || u64_be(position)
//!                    || lp(stream_id)
//!                    || u64_be(version)
//!                    || lp(event_type)
//!                    || lp(payload)          the stored canonical JSON text
//!                    || lp(metadata)         the stored canonical JSON text
//!                    || i64_be(recorded_at)  microseconds since the Unix epoch )
//! lp(bytes) = u32_be(len(bytes)) || bytes
//! ```
//!
//! Canonical JSON is UTF-8 with no insignificant whitespace, object keys sorted by their UTF-8 bytes, and
//! strings and numbers written as `serde_json` writes them. The stored text is what is hashed, so an
//! auditor needs only the rows and this page to recompute the chain.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The hash that precedes the first event.
pub const GENESIS: [u8; 32] = [0; 32];

const DOMAIN: &[u8] = b"consent-ledger.chain.v1";

/// The fields of one event that the chain covers, as stored.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    pub position: u64,
    pub stream_id: &'a str,
    pub version: u64,
    pub event_type: &'a str,
    pub payload: &'a str,
    pub metadata: &'a str,
    pub recorded_at: i64,
}

/// Computes the hash of `link` chained to `prev`.
pub fn link_hash(prev: &[u8; 32], link: &Link<'_>) -> [u8; 32] {
    fn lp(h: &mut Sha256, bytes: &[u8]) {
        // Lengths beyond u32 cannot occur: the store caps payloads far below 4 GiB.
        h.update((bytes.len() as u32).to_be_bytes());
        h.update(bytes);
    }
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(prev);
    h.update(link.position.to_be_bytes());
    lp(&mut h, link.stream_id.as_bytes());
    h.update(link.version.to_be_bytes());
    lp(&mut h, link.event_type.as_bytes());
    lp(&mut h, link.payload.as_bytes());
    lp(&mut h, link.metadata.as_bytes());
    h.update(link.recorded_at.to_be_bytes());
    h.finalize().into()
}

/// The exact bytes [`link_hash`] hashes: the event as the chain encodes it, so SHA-256 of them is the
/// event's chain hash. The Merkle tree over the log uses them as each event's leaf input.
pub fn link_bytes(prev: &[u8; 32], link: &Link<'_>) -> Vec<u8> {
    fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    let mut out = Vec::with_capacity(
        DOMAIN.len()
            + 32
            + 8 * 3
            + 16
            + link.stream_id.len()
            + link.event_type.len()
            + link.payload.len()
            + link.metadata.len(),
    );
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(prev);
    out.extend_from_slice(&link.position.to_be_bytes());
    lp(&mut out, link.stream_id.as_bytes());
    out.extend_from_slice(&link.version.to_be_bytes());
    lp(&mut out, link.event_type.as_bytes());
    lp(&mut out, link.payload.as_bytes());
    lp(&mut out, link.metadata.as_bytes());
    out.extend_from_slice(&link.recorded_at.to_be_bytes());
    out
}

/// Parses a stored hex hash.
pub fn parse_hash(hex_text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_text).ok()?;
    bytes.try_into().ok()
}

/// Writes `value` as canonical JSON (sorted keys, no whitespace).
///
/// Sorting is done here rather than trusting `serde_json::Map`'s order, which changes to insertion order
/// when any crate in the build enables serde_json's `preserve_order` feature.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    // Only serde_json's own output and ASCII punctuation were written: always UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    // Leaves and keys go through serde_json's writer, not `Display`: this runs for every appended event
    // on the writer's critical path, and the formatting machinery costs several times more.
    fn leaf<T: serde::Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
        // Writing a string, number, bool or null into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, v);
    }
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                leaf(k.as_str(), out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        other => leaf(other, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_drops_whitespace() {
        let v = json!({"b": 1, "a": {"z": [1, {"y": true, "x": null}], "c": "é\n"}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"é\n","z":[1,{"x":null,"y":true}]},"b":1}"#
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = Link {
            position: 1,
            stream_id: "s",
            version: 1,
            event_type: "T",
            payload: "{}",
            metadata: "{}",
            recorded_at: 5,
        };
        let h = link_hash(&GENESIS, &base);
        let variants = [
            Link { position: 2, ..base },
            Link {
                stream_id: "t",
                ..base
            },
            Link { version: 2, ..base },
            Link {
                event_type: "U",
                ..base
            },
            Link {
                payload: "{ }",
                ..base
            },
            Link {
                metadata: "[]",
                ..base
            },
            Link {
                recorded_at: 6,
                ..base
            },
        ];
        for v in variants {
            assert_ne!(link_hash(&GENESIS, &v), h, "{v:?}");
        }
        assert_ne!(link_hash(&[1; 32], &base), h);
        // Length prefixes keep field boundaries: moving a byte between fields changes the hash.
        let shifted = Link {
            stream_id: "sT",
            event_type: "",
            ..base
        };
        assert_ne!(link_hash(&GENESIS, &shifted), h);
    }

    #[test]
    fn the_leaf_input_is_what_the_chain_hashes() {
        let link = Link {
            position: 7,
            stream_id: "token-j1",
            version: 2,
            event_type: "TokenIssued",
            payload: r#"{"a":1}"#,
            metadata: "{}",
            recorded_at: -3,
        };
        let prev = [9; 32];
        let digest: [u8; 32] = Sha256::digest(link_bytes(&prev, &link)).into();
        assert_eq!(digest, link_hash(&prev, &link));
    }
}
