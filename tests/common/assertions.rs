//! A trusted issuer in a test: an ES256 key, its JWK (inline TOML or a JWK Set) and signed assertions.

use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::TestServer;

/// An issuer's signing key.
pub struct IssuerKey {
    pub kid: String,
    encoding: EncodingKey,
    /// The public JWK, with its `kid`.
    pub jwk: Value,
    /// PKCS#8 private key, PEM (for clients that sign themselves).
    pub private_pem: String,
    /// SubjectPublicKeyInfo, PEM: what an attacker would use as an HMAC secret.
    pub public_pem: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

impl IssuerKey {
    pub fn new(kid: &str) -> IssuerKey {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = pair.to_pkcs8v1().unwrap();
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.into());
        let spki: PublicKeyX509Der = pair.public_key().as_der().unwrap();
        IssuerKey {
            kid: kid.into(),
            encoding,
            jwk: serde_json::to_value(&jwk).unwrap(),
            private_pem: pem("PRIVATE KEY", pkcs8.as_ref()),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
        }
    }

    /// Signs `claims` with this key, naming its `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding).unwrap()
    }
}

/// A JWK Set of `keys`.
pub fn jwks(keys: &[&IssuerKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

/// A JSON value as a TOML inline value (strings, numbers, booleans, arrays and objects).
pub fn toml_inline(v: &Value) -> String {
    match v {
        Value::Object(m) => format!(
            "{{ {} }}",
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{k} = {}", toml_inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(a) => format!("[{}]", a.iter().map(toml_inline).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// Claims of a good assertion by `iss` about `sub` for `s`'s token endpoint, valid for a minute.
pub fn claims(s: &TestServer, iss: &str, sub: &str, jti: &str) -> Value {
    let now = s.now();
    json!({"iss": iss, "sub": sub, "aud": format!("{}/token", s.base), "iat": now, "exp": now + 60,
           "jti": jti})
}
