//! The device authorization grant's decisions (RFC 8628), all pure: user codes, what a device
//! authorization request becomes, and what the verification page makes of a typed code. The token
//! endpoint's side is `grants/device_code.rs`; the HTTP side `http/device.rs`.

use projections::clients::Client;
use projections::devices::{DeviceAuthorization, DeviceStatus};
use projections::event::{DeviceAuthorizationRequested, UnixSeconds, V1};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::authorize::next_step::Ask;
use crate::authorize::request::Prompt;
use crate::grants::GrantType;
use crate::issuance::{self, Policy};
use crate::oauth::OAuthError;

/// The letters of a user code: consonants only, so no word can be spelled and no letter is mistaken for
/// a digit (RFC 8628 §6.1).
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code: 20^8 ≈ 2^34.6 values.
pub const USER_CODE_LEN: usize = 8;

/// A user code from `random` bytes, one letter per byte below 240 (240 = 12 × 20, so every letter is
/// equally likely); `None` when the bytes ran out first.
pub fn user_code_from(random: &[u8]) -> Option<String> {
    let letters: String = random
        .iter()
        .filter(|b| **b < 240)
        .take(USER_CODE_LEN)
        .map(|b| char::from(USER_CODE_ALPHABET[usize::from(*b) % USER_CODE_ALPHABET.len()]))
        .collect();
    (letters.len() == USER_CODE_LEN).then_some(letters)
}

/// A fresh user code, normalised (eight letters, no dash).
pub fn new_user_code() -> Result<String, OAuthError> {
    let mut bytes = [0u8; 64];
    crate::ids::fill(&mut bytes).map_err(|e| OAuthError::internal("randomness", e))?;
    user_code_from(&bytes).ok_or_else(|| OAuthError::internal("randomness", "too few usable bytes"))
}

/// What the user typed, as stored: case, dashes and spaces do not matter. `None` when it cannot be a
/// user code at all.
pub fn normalize(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b))).then_some(code)
}

/// A normalised user code as people read it: `WDJB-MJHT`.
pub fn display(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) if !b.is_empty() => format!("{a}-{b}"),
        _ => code.to_owned(),
    }
}

/// SHA-256 (hex) of a normalised user code or of a device code: all the ledger holds of either.
pub fn hash(code: &str) -> String {
    hex::encode(Sha256::digest(code.as_bytes()))
}

/// A device authorization request's parameters (RFC 8628 §3.1).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub scope: Option<&'a [String]>,
    pub resource: Option<&'a str>,
}

/// What the server sets for a new device request.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub code_seconds: i64,
    pub interval_seconds: i64,
}

/// Decides a device authorization request of an authenticated `client`: it must be allowed the grant,
/// the resource must be one of its own, and something it asks must be a scope it may have. Returns the
/// event to record for the two codes' hashes. Pure.
#[allow(clippy::too_many_arguments)] // the facts, the two hashes and the instant
pub fn decide(
    policy: &Policy,
    client: &Client,
    request: Request<'_>,
    settings: Settings,
    device_code_hash: &str,
    user_code_hash: &str,
    now: UnixSeconds,
) -> Result<DeviceAuthorizationRequested, OAuthError> {
    let grant = GrantType::DeviceCode.name();
    if !client.spec.grant_types.iter().any(|g| g == grant) {
        return Err(OAuthError::UnauthorizedClient(format!(
            "this client may not use {grant}"
        )));
    }
    if let Some(r) = request.resource
        && !client.spec.resources.iter().any(|a| a == r)
    {
        return Err(OAuthError::InvalidTarget(
            "the resource is not allowed for this client".into(),
        ));
    }
    let may_have = |scope: &String| {
        policy
            .engine
            .find(scope)
            .is_some_and(|(def, _)| issuance::client_may_request(&client.spec, &def.name, scope))
    };
    if !issuance::candidates(policy, &client.spec, request.scope)
        .iter()
        .any(may_have)
    {
        return Err(OAuthError::InvalidScope(
            "none of the requested scopes can be granted to this client".into(),
        ));
    }
    Ok(DeviceAuthorizationRequested {
        v: V1,
        device_code_hash: device_code_hash.to_owned(),
        user_code_hash: user_code_hash.to_owned(),
        client_id: client.spec.client_id.clone(),
        scopes: request.scope.map(<[String]>::to_vec),
        resource: request.resource.map(str::to_owned),
        requested_at: now,
        expires_at: now + settings.code_seconds,
        interval: settings.interval_seconds,
    })
}

/// What a device request asks the user: the same decision and steps as an authorization request, with
/// no `prompt`, `max_age` or `acr_values` (a device cannot send them).
pub fn ask(device: &DeviceAuthorization) -> Ask<'_> {
    Ask {
        client_id: &device.client_id,
        grant_type: GrantType::DeviceCode,
        scope: device.scopes.as_deref(),
        resource: device.resource.as_deref(),
        authorization_details: &Value::Null,
        prompt: Prompt::default(),
        max_age: None,
        acr_values: &[],
        created_at: device.requested_at,
    }
}

/// What the verification page makes of a typed code.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed<'a> {
    /// No such request: a wrong code, counted against the address and the session.
    Wrong,
    /// The request exists but can no longer be answered.
    Expired,
    Answered,
    /// Waiting for this user's answer.
    Pending(&'a DeviceAuthorization),
}

/// Classifies the request a typed code found (`None`: it found none). Pure.
pub fn typed(found: Option<&DeviceAuthorization>, now: UnixSeconds) -> Typed<'_> {
    match found {
        None => Typed::Wrong,
        Some(d) if d.status != DeviceStatus::Pending => Typed::Answered,
        Some(d) if now >= d.expires_at => Typed::Expired,
        Some(d) => Typed::Pending(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::{self, NOW, client};

    #[test]
    fn user_codes_are_eight_consonants_read_in_two_halves_and_typed_loosely() {
        let code = user_code_from(&[0, 1, 2, 3, 19, 20, 239, 240, 241, 255, 4]).unwrap();
        assert_eq!(code, "BCDFZBZG");
        assert_eq!(display(&code), "BCDF-ZBZG");
        assert_eq!(
            user_code_from(&[250; 64]),
            None,
            "bytes at 240 and above are skipped"
        );
        assert_eq!(normalize("wdjb-mjht"), Some("WDJBMJHT".into()));
        assert_eq!(normalize(" WDJB MJHT "), Some("WDJBMJHT".into()));
        assert_eq!(normalize("WDJB-MJH"), None, "seven letters");
        assert_eq!(normalize("WDJB-MJHA"), None, "a vowel is never in a code");
        assert_eq!(hash("WDJBMJHT"), hash(&normalize("wdjb-mjht").unwrap()));
        let fresh = new_user_code().unwrap();
        assert_eq!(normalize(&fresh), Some(fresh.clone()));
    }

    fn policy() -> Policy {
        testing::policy(
            r#"
            [[scopes]]
            name = "read"
            default = true
            [[scopes]]
            name = "write"
        "#,
        )
    }

    fn device_client(grants: &[&str]) -> Client {
        let mut c = client("tv");
        c.spec.grant_types = grants.iter().map(|g| (*g).to_owned()).collect();
        c.spec.scopes = vec!["read".into()];
        c.spec.resources = vec!["https://api.example".into()];
        c
    }

    const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";
    const SETTINGS: Settings = Settings {
        code_seconds: 600,
        interval_seconds: 5,
    };

    fn when(client: &Client, scope: Option<&[&str]>, resource: Option<&str>) -> Result<(), String> {
        let scope: Option<Vec<String>> = scope.map(|s| s.iter().map(|x| (*x).to_owned()).collect());
        let request = Request {
            scope: scope.as_deref(),
            resource,
        };
        decide(&policy(), client, request, SETTINGS, "dh", "uh", NOW)
            .map(|e| {
                assert_eq!((e.expires_at, e.interval), (NOW + 600, 5));
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn device_authorization_table() {
        let tv = device_client(&[DEVICE]);
        // Given a client with the grant, when it asks for a scope it may have, then a request
        assert_eq!(when(&tv, Some(&["read"]), None), Ok(()));
        // ... or names no scope (its defaults), or one of its resources
        assert_eq!(when(&tv, None, Some("https://api.example")), Ok(()));
        // Given a client without the grant, then unauthorized_client
        assert_eq!(
            when(&device_client(&["authorization_code"]), Some(&["read"]), None),
            Err("unauthorized_client".into())
        );
        // When nothing asked is a scope the client may have, then invalid_scope
        assert_eq!(when(&tv, Some(&["write"]), None), Err("invalid_scope".into()));
        assert_eq!(when(&tv, Some(&["nope"]), None), Err("invalid_scope".into()));
        // When the resource is not the client's, then invalid_target
        assert_eq!(
            when(&tv, Some(&["read"]), Some("https://other.example")),
            Err("invalid_target".into())
        );
    }

    #[test]
    fn a_typed_code_is_wrong_expired_answered_or_pending() {
        let pending = DeviceAuthorization {
            device_code_hash: "dh".into(),
            user_code_hash: "uh".into(),
            client_id: "tv".into(),
            scopes: None,
            resource: None,
            requested_at: NOW - 10,
            expires_at: NOW + 10,
            interval: 5,
            status: DeviceStatus::Pending,
        };
        let denied = DeviceAuthorization {
            status: DeviceStatus::Denied { subject: "s".into() },
            ..pending.clone()
        };
        assert_eq!(typed(None, NOW), Typed::Wrong);
        assert_eq!(typed(Some(&pending), NOW), Typed::Pending(&pending));
        assert_eq!(typed(Some(&pending), NOW + 10), Typed::Expired);
        assert_eq!(typed(Some(&denied), NOW), Typed::Answered);
    }
}
