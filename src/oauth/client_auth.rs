//! Client authentication at the token, introspection and revocation endpoints (RFC 6749 §2.3,
//! RFC 7523 §2.2): what the client presented, and whether it proves the registered client.

use axum::http::HeaderMap;
use base64::Engine;
use projections::clients::Client;
use projections::event::UnixSeconds;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::OAuthError;
use super::form::Form;

/// The assertion type RFC 7523 §2.2 defines.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest lifetime accepted for a client assertion, so replay records stay bounded.
pub const ASSERTION_LIFETIME_MAX: i64 = 600;

/// Clock skew allowed on a client assertion's `exp` (seconds). The used-`jti` record outlives it.
pub const ASSERTION_LEEWAY: i64 = 30;

/// What every failure to prove a client's identity says: an unknown client, a disabled one, a wrong
/// secret, another method than the registered one and a bad assertion signature must be indistinguishable,
/// or `invalid_client` tells an attacker which client ids exist.
pub const AUTHENTICATION_FAILED: &str = "client authentication failed";

/// A SHA-256 (hex) no secret has: an unknown client's presented secret is compared against it, so that
/// answer costs what a wrong secret costs.
const NO_SECRET_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How a client tried to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    Basic {
        client_id: String,
        secret: String,
    },
    Post {
        client_id: String,
        secret: String,
    },
    Assertion {
        client_id: String,
        jwt: String,
    },
    /// A public client naming itself.
    None {
        client_id: String,
    },
}

impl Presented {
    /// The client id claimed.
    pub fn client_id(&self) -> &str {
        match self {
            Presented::Basic { client_id, .. }
            | Presented::Post { client_id, .. }
            | Presented::Assertion { client_id, .. }
            | Presented::None { client_id } => client_id,
        }
    }

    fn method(&self) -> &'static str {
        match self {
            Presented::Basic { .. } => "client_secret_basic",
            Presented::Post { .. } => "client_secret_post",
            Presented::Assertion { .. } => "private_key_jwt",
            Presented::None { .. } => "none",
        }
    }
}

fn invalid(m: &str) -> OAuthError {
    OAuthError::InvalidClient(m.to_owned())
}

/// Reads the credentials from the `Authorization` header and the form; more than one method is refused.
pub fn presented(headers: &HeaderMap, form: &Form) -> Result<Presented, OAuthError> {
    let mut found = Vec::new();
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| invalid("malformed Authorization header"))?;
        let (scheme, rest) = value
            .split_once(' ')
            .ok_or_else(|| invalid("malformed Authorization header"))?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(invalid("only the Basic scheme authenticates clients"));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| invalid("malformed Basic credentials"))?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or_else(|| invalid("malformed Basic credentials"))?;
        // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
        let unescape = |s: &str| -> String {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        found.push(Presented::Basic {
            client_id: unescape(id),
            secret: unescape(secret),
        });
    }
    if let Some(secret) = form.get("client_secret") {
        let client_id = form.require("client_id")?.to_owned();
        found.push(Presented::Post {
            client_id,
            secret: secret.to_owned(),
        });
    }
    if let Some(jwt) = form.get("client_assertion") {
        if form.get("client_assertion_type") != Some(JWT_BEARER_ASSERTION) {
            return Err(OAuthError::InvalidRequest(format!(
                "client_assertion_type must be {JWT_BEARER_ASSERTION}"
            )));
        }
        let client_id = match form.get("client_id") {
            Some(id) => id.to_owned(),
            // Only to learn which client claims to be speaking; the signature is checked in `verify`.
            None => jsonwebtoken::dangerous::insecure_decode::<Issuer>(jwt)
                .map(|d| d.claims.iss)
                .map_err(|_| invalid("client_assertion is not a JWT"))?,
        };
        found.push(Presented::Assertion {
            client_id,
            jwt: jwt.to_owned(),
        });
    }
    match found.len() {
        0 => match form.get("client_id") {
            Some(id) => Ok(Presented::None {
                client_id: id.to_owned(),
            }),
            None => Err(invalid("client authentication is required")),
        },
        1 => {
            let p = found.remove(0);
            if let Some(id) = form.get("client_id")
                && id != p.client_id()
            {
                return Err(invalid("client_id does not match the credentials"));
            }
            Ok(p)
        }
        _ => Err(OAuthError::InvalidRequest(
            "more than one client authentication method used".into(),
        )),
    }
}

/// SHA-256 of a client secret, hex: what the ledger stores.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Compares two secrets through their SHA-256 digests: always 32 bytes against 32 in constant time, so
/// neither where they differ nor the expected secret's length shows in the time taken.
pub fn secrets_eq(expected: &[u8], given: &[u8]) -> bool {
    constant_time_eq(&Sha256::digest(expected), &Sha256::digest(given))
}

#[derive(Debug, Deserialize)]
struct Issuer {
    iss: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    jti: String,
    exp: i64,
}

/// A verified client assertion whose `jti` must be used only once, until `expires_at` (its `exp` plus the
/// leeway: as long as any server would still accept it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionUse {
    pub jti: String,
    pub expires_at: UnixSeconds,
}

/// Checks `presented` against the registered `client` at `now`.
///
/// `audiences` are the values a client assertion's `aud` may carry (issuer, token endpoint, this
/// endpoint). Returns the assertion `jti` to record when one was used: replay is refused by the caller.
pub fn verify(
    presented: &Presented,
    client: Option<&Client>,
    audiences: &[String],
    now: UnixSeconds,
) -> Result<Option<AssertionUse>, OAuthError> {
    let client = client.filter(|c| c.is_enabled() && c.spec.token_endpoint_auth_method == presented.method());
    let Some(client) = client else {
        // Do the work a wrong secret costs, so the time taken does not tell the two apart.
        if let Presented::Basic { secret, .. } | Presented::Post { secret, .. } = presented {
            std::hint::black_box(constant_time_eq(
                secret_hash(secret).as_bytes(),
                NO_SECRET_HASH.as_bytes(),
            ));
        }
        return Err(invalid(AUTHENTICATION_FAILED));
    };
    match presented {
        Presented::Basic { secret, .. } | Presented::Post { secret, .. } => {
            let stored = client.spec.secret_hash.as_deref().unwrap_or(NO_SECRET_HASH);
            if constant_time_eq(secret_hash(secret).as_bytes(), stored.as_bytes()) {
                Ok(None)
            } else {
                Err(invalid(AUTHENTICATION_FAILED))
            }
        }
        Presented::None { .. } => Ok(None),
        Presented::Assertion { jwt, client_id } => {
            verify_assertion(jwt, client_id, client, audiences, now).map(Some)
        }
    }
}

fn verify_assertion(
    jwt: &str,
    client_id: &str,
    client: &Client,
    audiences: &[String],
    now: UnixSeconds,
) -> Result<AssertionUse, OAuthError> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| invalid("client_assertion is not a JWT"))?;
    if !matches!(
        header.alg,
        Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA | Algorithm::RS256 | Algorithm::PS256
    ) {
        return Err(invalid("client_assertion algorithm not accepted"));
    }
    let set: JwkSet = client
        .spec
        .jwks
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| invalid(AUTHENTICATION_FAILED))?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(audiences);
    validation.set_issuer(&[client_id]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    validation.leeway = ASSERTION_LEEWAY as u64;
    // The clock is an argument: check exp against `now` below rather than the system time.
    validation.validate_exp = false;
    let candidates = set
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid);
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let Ok(data) = jsonwebtoken::decode::<Claims>(jwt, &key, &validation) else {
            continue;
        };
        let c = data.claims;
        if c.sub != client_id || c.iss != client.spec.client_id {
            return Err(invalid("client_assertion iss and sub must be the client_id"));
        }
        if c.exp.saturating_add(ASSERTION_LEEWAY) <= now {
            return Err(invalid("client_assertion has expired"));
        }
        if c.exp > now + ASSERTION_LIFETIME_MAX {
            return Err(invalid("client_assertion lives too long"));
        }
        if c.jti.is_empty() {
            return Err(invalid("client_assertion needs a jti"));
        }
        return Ok(AssertionUse {
            jti: c.jti,
            // Kept until no server would accept the assertion any more: a record that ended at `exp`
            // would let it be replayed during the leeway.
            expires_at: c.exp + ASSERTION_LEEWAY,
        });
    }
    Err(invalid(AUTHENTICATION_FAILED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn form(s: &str) -> Form {
        Form::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut h = HeaderMap::new();
        let b = base64::engine::general_purpose::STANDARD.encode("my%20app:s%3Acret");
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Basic {b}")).unwrap(),
        );
        assert_eq!(
            presented(&h, &form("")).unwrap(),
            Presented::Basic {
                client_id: "my app".into(),
                secret: "s:cret".into()
            }
        );
    }

    #[test]
    fn two_methods_at_once_are_refused() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Basic YTpi"));
        assert!(matches!(
            presented(&h, &form("client_id=a&client_secret=b")),
            Err(OAuthError::InvalidRequest(_))
        ));
    }

    #[test]
    fn no_credentials_at_all_is_invalid_client() {
        assert!(matches!(
            presented(&HeaderMap::new(), &form("")),
            Err(OAuthError::InvalidClient(_))
        ));
    }

    #[test]
    fn secrets_compare_by_digest() {
        assert!(secrets_eq(b"admin-token", b"admin-token"));
        assert!(!secrets_eq(b"admin-token", b"admin-tokem"));
        assert!(!secrets_eq(b"admin-token", b"admin"));
    }

    #[test]
    fn equal_means_equal() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
