//! Validating a JWT a trusted issuer signed (RFC 7523 §3). Pure: the keys and the clock are arguments.
//!
//! The order matters: the algorithm is checked against the issuer's list before any key is touched (so
//! `none` and HMAC never reach a verifier), the signature before any claim (so an unsigned token learns
//! nothing about the checks), then `iss`, `sub`, `aud`, the times and `jti`.

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use projections::event::UnixSeconds;
use serde::Deserialize;
use serde_json::Value;

use super::TrustError;
use super::issuers::TrustedIssuerConfig;

/// Clock skew allowed on `exp`, `nbf` and `iat` (seconds).
pub const LEEWAY: i64 = 30;

/// Longest `jti` accepted: it becomes a key of the used-assertion record.
pub const JTI_CHARS_MAX: usize = 256;

/// What a valid assertion asserts.
#[derive(Debug, Clone, PartialEq)]
pub struct Asserted {
    pub issuer: String,
    pub subject: String,
    pub jti: String,
    pub expires_at: UnixSeconds,
    /// Every claim, as sent.
    pub claims: Value,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Decodes one base64url segment of a compact JWS as JSON, without verifying anything.
pub(super) fn segment<T: serde::de::DeserializeOwned>(token: &str, index: usize) -> Result<T, TrustError> {
    let part = token.split('.').nth(index).ok_or(TrustError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TrustError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TrustError::Malformed)
}

/// Validates `token` as an assertion by `issuer`, signed by one of `keys`, for one of
/// `expected_audiences`, at `now`.
pub fn validate(
    token: &str,
    keys: &JwkSet,
    issuer: &TrustedIssuerConfig,
    expected_audiences: &[String],
    now: UnixSeconds,
) -> Result<Asserted, TrustError> {
    if token.split('.').count() != 3 {
        return Err(TrustError::Malformed);
    }
    let header: Header = segment(token, 0)?;
    let alg = algorithm(&header.alg, issuer)?;
    let jwk = key(keys, header.kid.as_deref())?;
    if let Some(key_alg) = jwk.common.key_algorithm
        && key_alg.to_string() != header.alg
    {
        return Err(TrustError::Algorithm(
            "the key named by kid is for another algorithm".into(),
        ));
    }
    let decoding = DecodingKey::from_jwk(jwk).map_err(|_| TrustError::UnknownKey)?;
    let mut validation = Validation::new(alg);
    // Every claim is checked below against the clock passed in; the library checks the signature only.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                TrustError::Algorithm("the algorithm does not fit the issuer's key".into())
            }
            jsonwebtoken::errors::ErrorKind::InvalidSignature => TrustError::Signature,
            _ => TrustError::Malformed,
        })?
        .claims;
    check_claims(claims, issuer, expected_audiences, now)
}

/// The algorithm named in the header, if the issuer may use it. `none` and HMAC are refused whatever
/// the configuration says (it cannot say so: see `issuers::validate`).
fn algorithm(name: &str, issuer: &TrustedIssuerConfig) -> Result<Algorithm, TrustError> {
    if name.eq_ignore_ascii_case("none") {
        return Err(TrustError::Algorithm(
            "unsigned assertions (alg none) are never accepted".into(),
        ));
    }
    if name.to_ascii_uppercase().starts_with("HS") {
        return Err(TrustError::Algorithm(
            "HMAC-signed assertions are never accepted from an issuer".into(),
        ));
    }
    // The header's alg is not echoed: an error description carries no text the client chose.
    if !issuer.algorithms.iter().any(|a| a == name) {
        return Err(TrustError::Algorithm(
            "the assertion's alg is not accepted from this issuer".into(),
        ));
    }
    name.parse::<Algorithm>()
        .map_err(|_| TrustError::Algorithm("the assertion's alg is not supported".into()))
}

/// The key `kid` names, or the only key when the header names none.
fn key<'k>(keys: &'k JwkSet, kid: Option<&str>) -> Result<&'k Jwk, TrustError> {
    match kid {
        Some(kid) => keys
            .keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .ok_or(TrustError::UnknownKey),
        None => match keys.keys.as_slice() {
            [only] => Ok(only),
            _ => Err(TrustError::UnknownKey),
        },
    }
}

/// A NumericDate (RFC 7519 §2): seconds, possibly with a fraction.
fn numeric_date(claims: &Value, name: &str) -> Result<Option<UnixSeconds>, TrustError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
            .map(Some)
            .ok_or_else(|| TrustError::Claim(format!("{name} is not a NumericDate"))),
    }
}

fn check_claims(
    claims: Value,
    issuer: &TrustedIssuerConfig,
    expected_audiences: &[String],
    now: UnixSeconds,
) -> Result<Asserted, TrustError> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    if text("iss") != Some(issuer.issuer.as_str()) {
        return Err(TrustError::UnknownIssuer);
    }
    let subject = text("sub").ok_or(TrustError::MissingSubject)?.to_owned();
    if !issuer.allows_subject(&subject) {
        return Err(TrustError::SubjectNotAllowed);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !audiences
        .iter()
        .any(|a| expected_audiences.iter().any(|e| e == a))
    {
        return Err(TrustError::Audience);
    }
    let exp = numeric_date(&claims, "exp")?.ok_or(TrustError::MissingExpiry)?;
    if exp + LEEWAY <= now {
        return Err(TrustError::Expired);
    }
    if exp > now + issuer.max_assertion_lifetime_seconds + LEEWAY {
        return Err(TrustError::TooLong(issuer.max_assertion_lifetime_seconds));
    }
    if numeric_date(&claims, "nbf")?.is_some_and(|nbf| nbf > now + LEEWAY) {
        return Err(TrustError::NotYetValid);
    }
    if numeric_date(&claims, "iat")?.is_some_and(|iat| iat > now + LEEWAY) {
        return Err(TrustError::IssuedInFuture);
    }
    let jti = text("jti")
        .filter(|j| j.chars().count() <= JTI_CHARS_MAX)
        .ok_or(TrustError::MissingJti)?
        .to_owned();
    Ok(Asserted {
        issuer: issuer.issuer.clone(),
        subject,
        jti,
        expires_at: exp,
        claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::issuers::SubjectsConfig;
    use jsonwebtoken::{EncodingKey, Header as JwtHeader};
    use projections::event::SubjectMapping;
    use serde_json::json;

    const NOW: UnixSeconds = 1_767_225_600;
    const AUD: &str = "https://as.example/token";

    struct Signer {
        encoding: EncodingKey,
        public_pem: Vec<u8>,
        jwk: Jwk,
    }

    fn signer(kid: &str) -> Signer {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = pair.to_pkcs8v1().unwrap();
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.into());
        let spki: PublicKeyX509Der = pair.public_key().as_der().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(spki.as_ref());
        let public_pem =
            format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n").into_bytes();
        Signer {
            encoding,
            public_pem,
            jwk,
        }
    }

    fn issuer() -> TrustedIssuerConfig {
        TrustedIssuerConfig {
            issuer: "https://idp.example".into(),
            jwks: None,
            jwks_uri: None,
            subjects: SubjectsConfig::List(vec!["ann".into()]),
            subject_mapping: SubjectMapping::Username,
            scopes: vec!["read".into()],
            max_assertion_lifetime_seconds: 300,
            algorithms: vec!["ES256".into()],
        }
    }

    fn good() -> Value {
        json!({"iss": "https://idp.example", "sub": "ann", "aud": AUD, "exp": NOW + 60,
               "iat": NOW, "jti": "j1"})
    }

    fn sign(s: &Signer, kid: Option<&str>, claims: &Value) -> String {
        let mut h = JwtHeader::new(Algorithm::ES256);
        h.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&h, claims, &s.encoding).unwrap()
    }

    fn unsigned(alg: &str, claims: &Value) -> String {
        let b = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.", b(&json!({"alg": alg, "kid": "k1"})), b(claims))
    }

    fn with(change: &[(&str, Value)]) -> Value {
        let mut c = good();
        for (k, v) in change {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(*k);
            } else {
                c[*k] = v.clone();
            }
        }
        c
    }

    fn when(token: &str, keys: &[&Signer]) -> Result<Asserted, TrustError> {
        let set = JwkSet {
            keys: keys.iter().map(|s| s.jwk.clone()).collect(),
        };
        validate(token, &set, &issuer(), &[AUD.to_owned()], NOW)
    }

    #[test]
    fn validation_table() {
        let k1 = signer("k1");
        let other = signer("k2");
        let ok = |c: &Value| sign(&k1, Some("k1"), c);
        // Given a good assertion, then its subject and jti
        let a = when(&ok(&good()), &[&k1]).unwrap();
        assert_eq!((a.subject.as_str(), a.jti.as_str()), ("ann", "j1"));
        // Given no kid and one key, then that key
        assert!(when(&sign(&k1, None, &good()), &[&k1]).is_ok());
        // Given expired (past the leeway), then refused; within the leeway accepted
        let expired = with(&[("exp", json!(NOW - LEEWAY))]);
        assert!(matches!(when(&ok(&expired), &[&k1]), Err(TrustError::Expired)));
        assert!(when(&ok(&with(&[("exp", json!(NOW - 10))])), &[&k1]).is_ok());
        // Given not yet valid, or issued in the future, then refused
        let early = with(&[("nbf", json!(NOW + 120))]);
        assert!(matches!(when(&ok(&early), &[&k1]), Err(TrustError::NotYetValid)));
        let future = with(&[("iat", json!(NOW + 120))]);
        assert!(matches!(
            when(&ok(&future), &[&k1]),
            Err(TrustError::IssuedInFuture)
        ));
        // Given an exp further ahead than the issuer allows, or none, then refused
        let long = with(&[("exp", json!(NOW + 3600))]);
        assert!(matches!(when(&ok(&long), &[&k1]), Err(TrustError::TooLong(300))));
        let no_exp = with(&[("exp", Value::Null)]);
        assert!(matches!(
            when(&ok(&no_exp), &[&k1]),
            Err(TrustError::MissingExpiry)
        ));
        // Given another audience, then refused; an array naming this server is accepted
        let wrong_aud = with(&[("aud", json!("https://elsewhere.example"))]);
        assert!(matches!(when(&ok(&wrong_aud), &[&k1]), Err(TrustError::Audience)));
        let many = with(&[("aud", json!(["https://elsewhere.example", AUD]))]);
        assert!(when(&ok(&many), &[&k1]).is_ok());
        // Given an issuer other than the one configured, then unknown
        let iss = with(&[("iss", json!("https://evil.example"))]);
        assert!(matches!(when(&ok(&iss), &[&k1]), Err(TrustError::UnknownIssuer)));
        // Given a subject the issuer may not assert, or none, then refused
        let bob = with(&[("sub", json!("bob"))]);
        assert!(matches!(
            when(&ok(&bob), &[&k1]),
            Err(TrustError::SubjectNotAllowed)
        ));
        let nobody = with(&[("sub", Value::Null)]);
        assert!(matches!(
            when(&ok(&nobody), &[&k1]),
            Err(TrustError::MissingSubject)
        ));
        // Given alg none, then refused before any key is looked at
        let none = unsigned("none", &good());
        assert!(matches!(when(&none, &[&k1]), Err(TrustError::Algorithm(m)) if m.contains("none")));
        // Given an asymmetric alg the issuer is not allowed, then refused without echoing it
        let rs = unsigned("RS256", &good());
        assert!(
            matches!(when(&rs, &[&k1]), Err(TrustError::Algorithm(m)) if m.contains("not accepted") && !m.contains("RS256"))
        );
        // Given HS256 with the issuer's public key as the HMAC secret, then refused
        let hmac = jsonwebtoken::encode(
            &JwtHeader {
                kid: Some("k1".into()),
                ..JwtHeader::new(Algorithm::HS256)
            },
            &good(),
            &EncodingKey::from_secret(&k1.public_pem),
        )
        .unwrap();
        assert!(matches!(when(&hmac, &[&k1]), Err(TrustError::Algorithm(m)) if m.contains("HMAC")));
        // Given a kid the issuer has no key for, then unknown key; another key's signature fails
        assert!(matches!(
            when(&sign(&k1, Some("k9"), &good()), &[&k1]),
            Err(TrustError::UnknownKey)
        ));
        assert!(matches!(
            when(&sign(&other, Some("k1"), &good()), &[&k1, &other]),
            Err(TrustError::Signature)
        ));
        // Given no kid and several keys, then no key is guessed
        assert!(matches!(
            when(&sign(&k1, None, &good()), &[&k1, &other]),
            Err(TrustError::UnknownKey)
        ));
        // Given no jti, then refused
        let no_jti = with(&[("jti", Value::Null)]);
        assert!(matches!(when(&ok(&no_jti), &[&k1]), Err(TrustError::MissingJti)));
        // Given something that is not a JWT, then malformed
        assert!(matches!(when("not.a-jwt", &[&k1]), Err(TrustError::Malformed)));
    }
}
