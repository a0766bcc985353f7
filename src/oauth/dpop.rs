//! DPoP (RFC 9449): checking a proof of possession, and the server's nonces. Pure: the clock, the
//! expected method and URL, and the nonces accepted now are arguments.
//!
//! A proof is a JWS the client signs with a key it holds, whose public half travels in the proof's
//! header (`jwk`). A token issued against a proof is bound to that key by its JWK SHA-256 thumbprint
//! (RFC 7638, `cnf.jkt`), so whoever steals the token cannot use it without the private key.

use aws_lc_rs::hmac;
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::Jwk;
use projections::event::UnixSeconds;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::OAuthError;

/// The request header that carries a proof, and the response header that carries a fresh nonce.
pub const DPOP_HEADER: &str = "dpop";
/// The response header with a nonce the next proof must carry (RFC 9449 §8).
pub const NONCE_HEADER: &str = "dpop-nonce";
/// The `typ` every proof carries (RFC 9449 §4.2).
pub const PROOF_TYP: &str = "dpop+jwt";
/// The proof signing algorithms accepted: asymmetric only, never `none` or HMAC (RFC 9449 §4.2).
pub const SIGNING_ALGS: &[&str] = &[
    "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA",
];
/// How far in the future a proof's `iat` may be, for clocks a little ahead of ours.
pub const FUTURE_LEEWAY_SECONDS: i64 = 5;
/// The longest proof read: an RSA-4096 `jwk` and the claims fit in well under this.
const PROOF_BYTES_MAX: usize = 8 * 1024;
/// The longest `jti` accepted; RFC 9449 §4.2 suggests 96 random bits, far less.
const JTI_CHARS_MAX: usize = 256;
/// JWK members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a proof is refused. Every one is `invalid_dpop_proof` except the two about the nonce, which
/// are `use_dpop_nonce` (RFC 9449 §8: the client retries with the nonce it was given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("send exactly one DPoP header")]
    NotOne,
    #[error("the DPoP proof is not a JWS in compact form")]
    Malformed,
    #[error("the DPoP proof's typ must be dpop+jwt")]
    Typ,
    #[error(
        "the DPoP proof's alg must be one of ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA"
    )]
    Alg,
    #[error("the DPoP proof's jwk must be a public key of the kind its alg names")]
    Jwk,
    #[error("the DPoP proof's jwk must not carry private key material")]
    PrivateKey,
    #[error("the DPoP proof's signature does not verify with its jwk")]
    Signature,
    #[error("the DPoP proof's htm is not this request's method")]
    Method,
    #[error("the DPoP proof's htu is not this endpoint's URL")]
    Url,
    #[error("the DPoP proof needs an iat")]
    NoIat,
    #[error("the DPoP proof's iat is too old")]
    Stale,
    #[error("the DPoP proof's iat is in the future")]
    Future,
    #[error("the DPoP proof needs a jti")]
    Jti,
    #[error("the DPoP proof's ath is not the hash of the access token presented")]
    Ath,
    #[error("this server requires a nonce in DPoP proofs; use the one in the DPoP-Nonce header")]
    NonceMissing,
    #[error("the DPoP proof's nonce is not current; use the one in the DPoP-Nonce header")]
    NonceStale,
    #[error("the DPoP proof was already used")]
    Replayed,
}

impl From<ProofError> for OAuthError {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::NonceMissing | ProofError::NonceStale => OAuthError::UseDpopNonce(e.to_string()),
            _ => OAuthError::InvalidDpopProof(e.to_string()),
        }
    }
}

/// What a proof must match at the endpoint receiving it.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request's method (`htm`).
    pub method: &'a str,
    /// The endpoint's URL (`htu`), compared without query and fragment.
    pub url: &'a str,
    /// At a resource: the access token presented with the proof (`ath`).
    pub access_token: Option<&'a str>,
    /// When the server requires a nonce: the nonces it accepts now.
    pub nonces: Option<&'a [String]>,
    /// How old `iat` may be (`[dpop] proof_lifetime_seconds`).
    pub lifetime_seconds: i64,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The JWK SHA-256 thumbprint of the proof's key (RFC 7638), base64url: what a token is bound to.
    pub jkt: String,
    pub jti: String,
    pub iat: UnixSeconds,
}

impl Proof {
    /// The single-use key for this proof: one `jti` per key, hashed so its length is fixed.
    pub fn replay_key(&self) -> String {
        format!(
            "dpop:{}:{}",
            self.jkt,
            hex::encode(Sha256::digest(self.jti.as_bytes()))
        )
    }

    /// Until when the proof's `jti` must be remembered: past that, its `iat` is too old anyway.
    pub fn remember_until(&self, lifetime_seconds: i64) -> UnixSeconds {
        self.iat.saturating_add(lifetime_seconds).saturating_add(1)
    }
}

/// The request's proof: `None` without a `DPoP` header, and refused when there are several.
pub fn header(headers: &HeaderMap) -> Result<Option<&str>, ProofError> {
    let mut values = headers.get_all(DPOP_HEADER).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ProofError::NotOne);
    }
    first.to_str().map(Some).map_err(|_| ProofError::Malformed)
}

#[derive(Debug, Deserialize)]
struct ProofHeader {
    typ: Option<String>,
    alg: String,
    jwk: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ProofClaims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<i64>,
    ath: Option<String>,
    nonce: Option<String>,
}

/// Checks a proof per RFC 9449 §4.3 and returns its key's thumbprint. The caller then claims the
/// proof's `jti` once ([`Proof::replay_key`]) before acting on it.
pub fn validate(proof: &str, expected: &Expected<'_>, now: UnixSeconds) -> Result<Proof, ProofError> {
    if proof.len() > PROOF_BYTES_MAX {
        return Err(ProofError::Malformed);
    }
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProofError::Malformed);
    };
    let header: ProofHeader = decode_part(header_b64)?;
    let claims: ProofClaims = decode_part(claims_b64)?;
    if !header.typ.is_some_and(|t| t.eq_ignore_ascii_case(PROOF_TYP)) {
        return Err(ProofError::Typ);
    }
    let alg = signing_alg(&header.alg).ok_or(ProofError::Alg)?;
    let raw_jwk = header.jwk.as_ref().ok_or(ProofError::Jwk)?;
    let jwk = raw_jwk.as_object().ok_or(ProofError::Jwk)?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(ProofError::PrivateKey);
    }
    let jkt = thumbprint(raw_jwk, alg).ok_or(ProofError::Jwk)?;
    let key = serde_json::from_value::<Jwk>(raw_jwk.clone())
        .ok()
        .and_then(|k| jsonwebtoken::DecodingKey::from_jwk(&k).ok())
        .ok_or(ProofError::Jwk)?;
    let signed = &proof[..header_b64.len() + 1 + claims_b64.len()];
    if !jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &key, alg).unwrap_or(false) {
        return Err(ProofError::Signature);
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= JTI_CHARS_MAX)
        .ok_or(ProofError::Jti)?;
    // RFC 9110 §9.1: the method is case-sensitive.
    if claims.htm.as_deref() != Some(expected.method) {
        return Err(ProofError::Method);
    }
    let htu = claims.htu.as_deref().and_then(normalised_url);
    if htu.is_none() || htu != normalised_url(expected.url) {
        return Err(ProofError::Url);
    }
    if let Some(accepted) = expected.nonces {
        let nonce = claims.nonce.ok_or(ProofError::NonceMissing)?;
        if !accepted.contains(&nonce) {
            return Err(ProofError::NonceStale);
        }
    }
    let iat = claims.iat.ok_or(ProofError::NoIat)?;
    if iat > now.saturating_add(FUTURE_LEEWAY_SECONDS) {
        return Err(ProofError::Future);
    }
    if iat < now.saturating_sub(expected.lifetime_seconds) {
        return Err(ProofError::Stale);
    }
    if let Some(token) = expected.access_token
        && claims.ath.as_deref() != Some(access_token_hash(token).as_str())
    {
        return Err(ProofError::Ath);
    }
    Ok(Proof { jkt, jti, iat })
}

/// `ath`: base64url of the SHA-256 of the access token's ASCII (RFC 9449 §4.2).
pub fn access_token_hash(token: &str) -> String {
    B64.encode(Sha256::digest(token.as_bytes()))
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, ProofError> {
    let bytes = B64.decode(part).map_err(|_| ProofError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| ProofError::Malformed)
}

/// The supported algorithm `name` names; never `none` or an HMAC.
fn signing_alg(name: &str) -> Option<Algorithm> {
    if !SIGNING_ALGS.contains(&name) {
        return None;
    }
    name.parse::<Algorithm>().ok()
}

/// The RFC 7638 thumbprint of a public `jwk`, if it is a key of the kind `alg` signs with: SHA-256 of
/// the required members only, in lexicographic order, without whitespace.
fn thumbprint(jwk: &Value, alg: Algorithm) -> Option<String> {
    let member = |name: &str| -> Option<String> {
        let value = jwk.get(name)?.as_str().filter(|v| !v.is_empty())?;
        serde_json::to_string(value).ok()
    };
    let kty = jwk.get("kty")?.as_str()?;
    let canonical = match (kty, alg) {
        ("EC", Algorithm::ES256 | Algorithm::ES384) => {
            let crv = jwk.get("crv")?.as_str()?;
            let wanted = if alg == Algorithm::ES256 { "P-256" } else { "P-384" };
            if crv != wanted {
                return None;
            }
            format!(
                r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
                member("crv")?,
                member("x")?,
                member("y")?
            )
        }
        (
            "RSA",
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, member("e")?, member("n")?),
        ("OKP", Algorithm::EdDSA) => {
            if jwk.get("crv")?.as_str()? != "Ed25519" {
                return None;
            }
            format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, member("crv")?, member("x")?)
        }
        _ => return None,
    };
    Some(B64.encode(Sha256::digest(canonical.as_bytes())))
}

/// `url` without query and fragment, with scheme and host lowercased and a default port dropped
/// (RFC 9449 §4.3 item 9, RFC 3986 §6.2.2–6.2.3); `None` unless it is an absolute http(s) URL.
fn normalised_url(url: &str) -> Option<String> {
    let mut parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host().is_none() {
        return None;
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    Some(parsed.to_string())
}

/// The server nonce for the time slot `slot`: HMAC-SHA256 under the shared key, base64url. Every node
/// computes the same one, so nothing is stored.
pub fn nonce(key: &hmac::Key, slot: i64) -> String {
    let mut message = b"consent-ledger.dpop-nonce\0".to_vec();
    message.extend_from_slice(&slot.to_be_bytes());
    B64.encode(hmac::sign(key, &message).as_ref())
}

/// The nonce to hand out at `now`, and the ones accepted: the current slot's and the previous one's, so
/// a nonce handed out just before a slot ends still works.
pub fn nonces(key: &hmac::Key, now: UnixSeconds, slot_seconds: i64) -> (String, [String; 2]) {
    let slot = now.div_euclid(slot_seconds.max(1));
    let current = nonce(key, slot);
    (current.clone(), [current, nonce(key, slot - 1)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::NOW;
    use aws_lc_rs::signature::{self as sig, KeyPair as _};
    use serde_json::json;

    const URL: &str = "https://issuer.example/token";
    const LIFETIME: i64 = 60;

    /// An ES256 key pair: the encoding key and its public JWK.
    fn es256() -> (jsonwebtoken::EncodingKey, Value) {
        let rng = crate::ids::rng();
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair = sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])});
        (jsonwebtoken::EncodingKey::from_ec_der(&pkcs8), jwk)
    }

    fn jws(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> String) -> String {
        let message = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = sign(message.as_bytes());
        format!("{message}.{signature}")
    }

    fn good_claims() -> Value {
        json!({"jti": "j1", "htm": "POST", "htu": URL, "iat": NOW})
    }

    fn expected() -> Expected<'static> {
        Expected {
            method: "POST",
            url: URL,
            access_token: None,
            nonces: None,
            lifetime_seconds: LIFETIME,
        }
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk, Algorithm::RS256).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        assert_eq!(thumbprint(&jwk, Algorithm::ES256), None, "an RSA key for ES256");
    }

    #[test]
    fn htu_is_compared_normalised() {
        assert_eq!(
            normalised_url("HTTPS://Issuer.Example:443/token?x=1#f"),
            normalised_url(URL)
        );
        assert_ne!(
            normalised_url("https://issuer.example:8443/token"),
            normalised_url(URL)
        );
        assert_ne!(
            normalised_url("https://issuer.example/token/"),
            normalised_url(URL)
        );
        assert_eq!(normalised_url("ftp://issuer.example/token"), None);
    }

    #[test]
    fn nonces_accept_the_current_and_previous_slot_only() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
        let (current, accepted) = nonces(&key, 1_000, 300);
        assert_eq!(accepted[0], current);
        let (next, next_accepted) = nonces(&key, 1_300, 300);
        assert_ne!(next, current);
        assert!(next_accepted.contains(&current), "the previous slot still counts");
        let (_, later) = nonces(&key, 1_600, 300);
        assert!(!later.contains(&current), "two slots on, it is stale");
        let other = hmac::Key::new(hmac::HMAC_SHA256, &[8u8; 32]);
        assert_ne!(
            nonces(&other, 1_000, 300).0,
            current,
            "another key, another nonce"
        );
    }

    /// Given a proof built by `make`, when checked against `expected` at `NOW`, then `want`.
    #[test]
    fn proof_validation_table() {
        let (key, jwk) = es256();
        let es = |alg: Algorithm| {
            let key = key.clone();
            move |m: &[u8]| jsonwebtoken::crypto::sign(m, &key, alg).unwrap()
        };
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let with = |base: &Value, k: &str, v: Value| {
            let mut out = base.clone();
            out[k] = v;
            out
        };
        let without = |base: &Value, k: &str| {
            let mut out = base.clone();
            out.as_object_mut().unwrap().remove(k);
            out
        };
        let mut private_jwk = jwk.clone();
        // Whatever its value, a `d` member makes it a private key.
        private_jwk["d"] = json!(B64.encode([1u8; 32]));
        let hmac_key = jsonwebtoken::EncodingKey::from_secret(b"shared secret, not a key pair");
        let token = "an.access.token";
        let at_resource = Expected {
            method: "GET",
            url: "https://issuer.example/userinfo",
            access_token: Some(token),
            ..expected()
        };
        let resource_claims = json!({
            "jti": "j2", "htm": "GET", "htu": "https://issuer.example/userinfo", "iat": NOW,
            "ath": access_token_hash(token),
        });
        let nonce_list = ["n-current".to_owned(), "n-previous".to_owned()];
        let needs_nonce = Expected {
            nonces: Some(&nonce_list),
            ..expected()
        };
        let unsigned = format!(
            "{}.{}.",
            B64.encode(json!({"typ": "dpop+jwt", "alg": "none", "jwk": jwk}).to_string()),
            B64.encode(good_claims().to_string())
        );
        let cases: Vec<(&str, String, Expected<'_>, Result<(), ProofError>)> = vec![
            (
                "good",
                jws(&header, &good_claims(), es(Algorithm::ES256)),
                expected(),
                Ok(()),
            ),
            (
                "typ is case-insensitive",
                jws(
                    &with(&header, "typ", json!("DPoP+JWT")),
                    &good_claims(),
                    es(Algorithm::ES256),
                ),
                expected(),
                Ok(()),
            ),
            (
                "wrong typ",
                jws(
                    &with(&header, "typ", json!("JWT")),
                    &good_claims(),
                    es(Algorithm::ES256),
                ),
                expected(),
                Err(ProofError::Typ),
            ),
            (
                "no typ",
                jws(&without(&header, "typ"), &good_claims(), es(Algorithm::ES256)),
                expected(),
                Err(ProofError::Typ),
            ),
            ("alg none", unsigned, expected(), Err(ProofError::Alg)),
            (
                "HMAC",
                jws(&with(&header, "alg", json!("HS256")), &good_claims(), |m| {
                    jsonwebtoken::crypto::sign(m, &hmac_key, Algorithm::HS256).unwrap()
                }),
                expected(),
                Err(ProofError::Alg),
            ),
            (
                "alg not matching the key",
                jws(
                    &with(&header, "alg", json!("RS256")),
                    &good_claims(),
                    es(Algorithm::ES256),
                ),
                expected(),
                Err(ProofError::Jwk),
            ),
            (
                "no jwk",
                jws(&without(&header, "jwk"), &good_claims(), es(Algorithm::ES256)),
                expected(),
                Err(ProofError::Jwk),
            ),
            (
                "jwk with a private key",
                jws(
                    &with(&header, "jwk", private_jwk),
                    &good_claims(),
                    es(Algorithm::ES256),
                ),
                expected(),
                Err(ProofError::PrivateKey),
            ),
            (
                "signed by another key",
                jws(
                    &with(&header, "jwk", es256().1),
                    &good_claims(),
                    es(Algorithm::ES256),
                ),
                expected(),
                Err(ProofError::Signature),
            ),
            ("not a JWS", "a.b".into(), expected(), Err(ProofError::Malformed)),
            (
                "wrong htm",
                jws(
                    &header,
                    &with(&good_claims(), "htm", json!("GET")),
                    es(Algorithm::ES256),
                ),
                expected(),
                Err(ProofError::Method),
            ),
            (
                "wrong htu",
                jws(
                    &header,
                    &with(&good_claims(), "htu", json!("https://issuer.example/introspect")),
                    es(Algorithm::ES256),
                ),
                expected(),
                Err(ProofError::Url),
            ),
            (
                "htu of another host",
                jws(
                    &header,
                    &with(&good_claims(), "htu", json!("https://evil.example/token")),
                    es(Algorithm::ES256),
                ),
                expected(),
                Err(ProofError::Url),
            ),
            (
                "htu differing only in case, default port and query",
                jws(
                    &header,
                    &with(
                        &good_claims(),
                        "htu",
                        json!("HTTPS://ISSUER.example:443/token?a=b"),
                    ),
                    es(Algorithm::ES256),
                ),
                expected(),
                Ok(()),
            ),
            (
                "stale iat",
                jws(
                    &header,
                    &with(&good_claims(), "iat", json!(NOW - LIFETIME - 1)),
                    es(Algorithm::ES256),
                ),
                expected(),
                Err(ProofError::Stale),
            ),
            (
                "iat at the edge of the window",
                jws(
                    &header,
                    &with(&good_claims(), "iat", json!(NOW - LIFETIME)),
                    es(Algorithm::ES256),
                ),
                expected(),
                Ok(()),
            ),
            (
                "future iat",
                jws(
                    &header,
                    &with(&good_claims(), "iat", json!(NOW + FUTURE_LEEWAY_SECONDS + 1)),
                    es(Algorithm::ES256),
                ),
                expected(),
                Err(ProofError::Future),
            ),
            (
                "iat slightly ahead",
                jws(
                    &header,
                    &with(&good_claims(), "iat", json!(NOW + FUTURE_LEEWAY_SECONDS)),
                    es(Algorithm::ES256),
                ),
                expected(),
                Ok(()),
            ),
            (
                "missing iat",
                jws(&header, &without(&good_claims(), "iat"), es(Algorithm::ES256)),
                expected(),
                Err(ProofError::NoIat),
            ),
            (
                "missing jti",
                jws(&header, &without(&good_claims(), "jti"), es(Algorithm::ES256)),
                expected(),
                Err(ProofError::Jti),
            ),
            (
                "ath of the token",
                jws(&header, &resource_claims, es(Algorithm::ES256)),
                at_resource,
                Ok(()),
            ),
            (
                "wrong ath",
                jws(
                    &header,
                    &with(&resource_claims, "ath", json!(access_token_hash("another.token"))),
                    es(Algorithm::ES256),
                ),
                at_resource,
                Err(ProofError::Ath),
            ),
            (
                "missing ath",
                jws(&header, &without(&resource_claims, "ath"), es(Algorithm::ES256)),
                at_resource,
                Err(ProofError::Ath),
            ),
            (
                "nonce required and missing",
                jws(&header, &good_claims(), es(Algorithm::ES256)),
                needs_nonce,
                Err(ProofError::NonceMissing),
            ),
            (
                "nonce required and stale",
                jws(
                    &header,
                    &with(&good_claims(), "nonce", json!("n-old")),
                    es(Algorithm::ES256),
                ),
                needs_nonce,
                Err(ProofError::NonceStale),
            ),
            (
                "nonce required and current",
                jws(
                    &header,
                    &with(&good_claims(), "nonce", json!("n-current")),
                    es(Algorithm::ES256),
                ),
                needs_nonce,
                Ok(()),
            ),
            (
                "nonce required and previous",
                jws(
                    &header,
                    &with(&good_claims(), "nonce", json!("n-previous")),
                    es(Algorithm::ES256),
                ),
                needs_nonce,
                Ok(()),
            ),
        ];
        for (name, proof, expected, want) in cases {
            let got = validate(&proof, &expected, NOW).map(|_| ());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_good_proof_gives_its_keys_thumbprint() {
        let (key, jwk) = es256();
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let proof = jws(&header, &good_claims(), |m| {
            jsonwebtoken::crypto::sign(m, &key, Algorithm::ES256).unwrap()
        });
        let got = validate(&proof, &expected(), NOW).unwrap();
        assert_eq!(Some(got.jkt.clone()), thumbprint(&jwk, Algorithm::ES256));
        assert_eq!(got.jkt.len(), 43);
        assert_eq!(got.jti, "j1");
        assert!(got.replay_key().starts_with(&format!("dpop:{}:", got.jkt)));
        assert_eq!(got.remember_until(LIFETIME), NOW + LIFETIME + 1);
    }

    #[test]
    fn nonce_errors_ask_for_a_nonce_and_the_rest_are_invalid_proofs() {
        assert!(matches!(
            OAuthError::from(ProofError::NonceMissing),
            OAuthError::UseDpopNonce(_)
        ));
        assert!(matches!(
            OAuthError::from(ProofError::NonceStale),
            OAuthError::UseDpopNonce(_)
        ));
        assert!(matches!(
            OAuthError::from(ProofError::Replayed),
            OAuthError::InvalidDpopProof(_)
        ));
    }

    #[test]
    fn several_dpop_headers_are_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(header(&headers), Ok(None));
        headers.append(DPOP_HEADER, "a.b.c".parse().unwrap());
        assert_eq!(header(&headers), Ok(Some("a.b.c")));
        headers.append(DPOP_HEADER, "d.e.f".parse().unwrap());
        assert_eq!(header(&headers), Err(ProofError::NotOne));
    }
}
