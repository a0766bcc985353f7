//! OpenID Client-Initiated Backchannel Authentication (CIBA Core 1.0), its decisions, all pure: what a
//! backchannel authentication request becomes, what it asks the user on `/approvals`, and who may answer
//! it. The token endpoint's side is `grants/ciba.rs`; the HTTP side (the endpoint, the page and the
//! ping) `http/ciba.rs`, with the page steps it shares with `/device` in `http/approval.rs`.

use projections::backchannel::{BackchannelRequest, BackchannelStatus};
use projections::clients::Client;
use projections::event::{BackchannelAuthenticationRequested, UnixSeconds, V1};
use projections::users::User;
use serde_json::Value;

use crate::authorize::next_step::Ask;
use crate::authorize::request::Prompt;
use crate::grants::GrantType;
use crate::issuance::{self, Policy};
use crate::oauth::OAuthError;
use crate::oidc::OPENID;

/// Longest binding message shown to the user (characters); CIBA Core §7.1 asks that it be short.
pub const BINDING_MESSAGE_CHARS_MAX: usize = 64;
/// Longest `client_notification_token` accepted (CIBA Core §7.1 recommends at most 1024).
pub const NOTIFICATION_TOKEN_CHARS_MAX: usize = 1024;

/// SHA-256 (hex) of an `auth_req_id`: all the ledger holds of it.
pub fn hash(auth_req_id: &str) -> String {
    crate::device::hash(auth_req_id)
}

/// A backchannel authentication request's parameters (CIBA Core §7.1), as sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub scope: Option<&'a [String]>,
    pub login_hint: Option<&'a str>,
    pub id_token_hint: Option<&'a str>,
    pub login_hint_token: Option<&'a str>,
    pub binding_message: Option<&'a str>,
    pub user_code: Option<&'a str>,
    pub requested_expiry: Option<&'a str>,
    pub client_notification_token: Option<&'a str>,
}

/// Which user the request names (CIBA Core §7.1: exactly one hint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint<'a> {
    /// A username.
    Login(&'a str),
    /// An ID token this server issued to the client.
    IdToken(&'a str),
}

/// The one hint of a request, or why there is none to use. Pure.
pub fn hint<'a>(request: &Request<'a>) -> Result<Hint<'a>, OAuthError> {
    match (
        request.login_hint,
        request.id_token_hint,
        request.login_hint_token,
    ) {
        (None, None, Some(_)) => Err(OAuthError::InvalidRequest(
            "login_hint_token is not supported".into(),
        )),
        (Some(name), None, None) => Ok(Hint::Login(name)),
        (None, Some(jwt), None) => Ok(Hint::IdToken(jwt)),
        (None, None, None) => Err(OAuthError::InvalidRequest(
            "name the user with login_hint or id_token_hint".into(),
        )),
        _ => Err(OAuthError::InvalidRequest(
            "send exactly one of login_hint, id_token_hint, login_hint_token".into(),
        )),
    }
}

/// What the hint was found to name, read before deciding.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// For an `id_token_hint`: the audience of the ID token, when it is one this server signed and
    /// recorded (`None`: it is not).
    pub id_token_audience: Option<Vec<String>>,
    /// The user the hint names, if one exists.
    pub user: Option<User>,
}

/// What the server sets for a new request.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The lifetime of a request that asks none, and the longest one may ask (`requested_expiry`).
    pub expiry_seconds: i64,
    pub interval_seconds: i64,
}

/// Decides a backchannel authentication request of an authenticated `client`: it must be allowed the
/// grant, ask `openid` and something it may have, name exactly one known, enabled user, and carry a
/// binding message people can read and, in ping mode, its notification token. Returns the event to
/// record for the `auth_req_id`'s hash. Pure.
#[allow(clippy::too_many_arguments)] // the facts, the request, the hash and the instant
pub fn decide(
    policy: &Policy,
    client: &Client,
    request: &Request<'_>,
    facts: &Facts,
    settings: Settings,
    auth_req_id_hash: &str,
    now: UnixSeconds,
) -> Result<BackchannelAuthenticationRequested, OAuthError> {
    let grant = GrantType::Ciba.name();
    let mode = match client.spec.backchannel_token_delivery_mode {
        Some(mode) if client.spec.grant_types.iter().any(|g| g == grant) => mode,
        _ => {
            return Err(OAuthError::UnauthorizedClient(format!(
                "this client may not use {grant}"
            )));
        }
    };
    let scopes = match request.scope {
        Some(s) if s.iter().any(|x| x == OPENID) => s,
        _ => {
            return Err(OAuthError::InvalidScope(
                "a backchannel authentication request asks the openid scope".into(),
            ));
        }
    };
    let hint = hint(request)?;
    if request.user_code.is_some() {
        return Err(OAuthError::InvalidRequest("user_code is not supported".into()));
    }
    let expiry = match request.requested_expiry {
        None => settings.expiry_seconds,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=settings.expiry_seconds).contains(&n) => n,
            _ => {
                return Err(OAuthError::InvalidRequest(format!(
                    "requested_expiry must be a whole number of seconds from 1 to {}",
                    settings.expiry_seconds
                )));
            }
        },
    };
    if let Some(m) = request.binding_message
        && (m.is_empty() || m.chars().count() > BINDING_MESSAGE_CHARS_MAX || m.chars().any(char::is_control))
    {
        return Err(OAuthError::InvalidBindingMessage(format!(
            "the binding message must be 1 to {BINDING_MESSAGE_CHARS_MAX} characters, without control characters"
        )));
    }
    if mode == projections::event::BackchannelDeliveryMode::Ping {
        match request.client_notification_token {
            Some(t) if !t.is_empty() && t.chars().count() <= NOTIFICATION_TOKEN_CHARS_MAX => {}
            _ => {
                return Err(OAuthError::InvalidRequest(format!(
                    "ping mode needs a client_notification_token of 1 to {NOTIFICATION_TOKEN_CHARS_MAX} characters"
                )));
            }
        }
    }
    if let Hint::IdToken(_) = hint {
        match &facts.id_token_audience {
            Some(aud) if aud.contains(&client.spec.client_id) => {}
            _ => {
                return Err(OAuthError::InvalidRequest(
                    "id_token_hint is not an ID token this server issued to this client".into(),
                ));
            }
        }
    }
    let Some(user) = facts.user.as_ref().filter(|u| u.is_enabled()) else {
        return Err(OAuthError::UnknownUserId(
            "the hint names no user who can sign in here".into(),
        ));
    };
    let may_have = |scope: &String| {
        policy
            .engine
            .find(scope)
            .is_some_and(|(def, _)| issuance::client_may_request(&client.spec, &def.name, scope))
    };
    if !scopes.iter().any(may_have) {
        return Err(OAuthError::InvalidScope(
            "none of the requested scopes can be granted to this client".into(),
        ));
    }
    Ok(BackchannelAuthenticationRequested {
        v: V1,
        auth_req_id_hash: auth_req_id_hash.to_owned(),
        client_id: client.spec.client_id.clone(),
        subject: user.subject.clone(),
        scopes: scopes.to_vec(),
        binding_message: request.binding_message.map(str::to_owned),
        mode,
        requested_at: now,
        expires_at: now + expiry,
        interval: settings.interval_seconds,
    })
}

/// What a backchannel request asks the user: the same decision and steps as an authorization request,
/// with no `prompt`, `max_age` or `acr_values`.
pub fn ask(request: &BackchannelRequest) -> Ask<'_> {
    Ask {
        client_id: &request.client_id,
        grant_type: GrantType::Ciba,
        scope: Some(&request.scopes),
        resource: None,
        authorization_details: &Value::Null,
        prompt: Prompt::default(),
        max_age: None,
        acr_values: &[],
        created_at: request.requested_at,
    }
}

/// Whether `subject` may see and answer `request` now: it names them, waits, and has not expired.
/// Pure.
pub fn answerable(request: &BackchannelRequest, subject: &str, now: UnixSeconds) -> bool {
    request.subject == subject && request.status == BackchannelStatus::Pending && now < request.expires_at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::{self, NOW, client};
    use projections::event::BackchannelDeliveryMode;

    fn policy() -> Policy {
        testing::policy(
            r#"
            [[scopes]]
            name = "openid"
            [[scopes]]
            name = "read"
            [[scopes]]
            name = "write"
        "#,
        )
    }

    const CIBA: &str = "urn:openid:params:grant-type:ciba";
    const SETTINGS: Settings = Settings {
        expiry_seconds: 300,
        interval_seconds: 5,
    };

    fn bank(grants: &[&str], mode: Option<BackchannelDeliveryMode>) -> Client {
        let mut c = client("bank");
        c.spec.grant_types = grants.iter().map(|g| (*g).to_owned()).collect();
        c.spec.scopes = vec!["openid".into(), "read".into()];
        c.spec.backchannel_token_delivery_mode = mode;
        c
    }

    fn ann() -> User {
        crate::policy::authorizers::testing::ann()
    }

    fn facts() -> Facts {
        Facts {
            id_token_audience: None,
            user: Some(ann()),
        }
    }

    fn when(client: &Client, request: Request<'_>, facts: &Facts) -> Result<(), String> {
        decide(&policy(), client, &request, facts, SETTINGS, "ah", NOW)
            .map(|e| {
                assert_eq!(e.subject, "sub-ann");
                assert_eq!(e.interval, 5);
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn backchannel_authentication_table() {
        let poll = bank(&[CIBA], Some(BackchannelDeliveryMode::Poll));
        let ping = bank(&[CIBA], Some(BackchannelDeliveryMode::Ping));
        let openid = ["openid".to_owned(), "read".to_owned()];
        let ok = Request {
            scope: Some(&openid),
            login_hint: Some("ann"),
            ..Request::default()
        };
        // Given a CIBA client, when it names a known user and asks openid, then a request
        assert_eq!(when(&poll, ok, &facts()), Ok(()));
        let event = decide(&policy(), &poll, &ok, &facts(), SETTINGS, "ah", NOW).unwrap();
        assert_eq!(
            (event.expires_at, event.mode),
            (NOW + 300, BackchannelDeliveryMode::Poll)
        );
        // ... with a shorter requested expiry, then that expiry
        let shorter = Request {
            requested_expiry: Some("60"),
            ..ok
        };
        let event = decide(&policy(), &poll, &shorter, &facts(), SETTINGS, "ah", NOW).unwrap();
        assert_eq!(event.expires_at, NOW + 60);
        // Given a client without the grant (or without a delivery mode), then unauthorized_client
        assert_eq!(
            when(&bank(&["authorization_code"], None), ok, &facts()),
            Err("unauthorized_client".into())
        );
        assert_eq!(
            when(&bank(&[CIBA], None), ok, &facts()),
            Err("unauthorized_client".into())
        );
        // When openid is not asked, then invalid_scope
        let no_openid = ["read".to_owned()];
        let r = Request {
            scope: Some(&no_openid),
            ..ok
        };
        assert_eq!(when(&poll, r, &facts()), Err("invalid_scope".into()));
        let r = Request { scope: None, ..ok };
        assert_eq!(when(&poll, r, &facts()), Err("invalid_scope".into()));
        // When no hint, several, or login_hint_token, then invalid_request
        let r = Request {
            login_hint: None,
            ..ok
        };
        assert_eq!(when(&poll, r, &facts()), Err("invalid_request".into()));
        let r = Request {
            id_token_hint: Some("x.y.z"),
            ..ok
        };
        assert_eq!(when(&poll, r, &facts()), Err("invalid_request".into()));
        let r = Request {
            login_hint: None,
            login_hint_token: Some("t"),
            ..ok
        };
        assert_eq!(when(&poll, r, &facts()), Err("invalid_request".into()));
        // When the user is unknown or disabled, then unknown_user_id
        assert_eq!(when(&poll, ok, &Facts::default()), Err("unknown_user_id".into()));
        let mut disabled = facts();
        if let Some(u) = disabled.user.as_mut() {
            u.disabled = Some("left".into());
        }
        assert_eq!(when(&poll, ok, &disabled), Err("unknown_user_id".into()));
        // When an id_token_hint is not this client's ID token, then invalid_request; when it is, a request
        let by_id_token = Request {
            login_hint: None,
            id_token_hint: Some("x.y.z"),
            ..ok
        };
        assert_eq!(when(&poll, by_id_token, &facts()), Err("invalid_request".into()));
        let theirs = Facts {
            id_token_audience: Some(vec!["other".into()]),
            ..facts()
        };
        assert_eq!(when(&poll, by_id_token, &theirs), Err("invalid_request".into()));
        let mine = Facts {
            id_token_audience: Some(vec!["bank".into()]),
            ..facts()
        };
        assert_eq!(when(&poll, by_id_token, &mine), Ok(()));
        // When the binding message is too long or holds control characters, then invalid_binding_message
        let long = "x".repeat(65);
        for bad in [long.as_str(), "line\nbreak", ""] {
            let r = Request {
                binding_message: Some(bad),
                ..ok
            };
            assert_eq!(
                when(&poll, r, &facts()),
                Err("invalid_binding_message".into()),
                "{bad:?}"
            );
        }
        let r = Request {
            binding_message: Some("Sign in to Bank: W4SCT ✓"),
            ..ok
        };
        assert_eq!(when(&poll, r, &facts()), Ok(()));
        // When user_code is sent, or the expiry is not a positive number within the maximum, then
        // invalid_request
        let r = Request {
            user_code: Some("1234"),
            ..ok
        };
        assert_eq!(when(&poll, r, &facts()), Err("invalid_request".into()));
        for bad in ["0", "-5", "301", "ten", "1.5"] {
            let r = Request {
                requested_expiry: Some(bad),
                ..ok
            };
            assert_eq!(when(&poll, r, &facts()), Err("invalid_request".into()), "{bad}");
        }
        // Given a ping client, when the notification token is missing or too long, then invalid_request
        assert_eq!(when(&ping, ok, &facts()), Err("invalid_request".into()));
        let too_long = "t".repeat(1025);
        let r = Request {
            client_notification_token: Some(&too_long),
            ..ok
        };
        assert_eq!(when(&ping, r, &facts()), Err("invalid_request".into()));
        let r = Request {
            client_notification_token: Some("bearer-secret"),
            ..ok
        };
        assert_eq!(when(&ping, r, &facts()), Ok(()));
    }

    #[test]
    fn only_the_named_user_answers_a_waiting_unexpired_request() {
        let request = BackchannelRequest {
            auth_req_id_hash: "ah".into(),
            client_id: "bank".into(),
            subject: "sub-ann".into(),
            scopes: vec!["openid".into()],
            binding_message: None,
            mode: BackchannelDeliveryMode::Poll,
            requested_at: NOW - 10,
            expires_at: NOW + 10,
            interval: 5,
            status: BackchannelStatus::Pending,
        };
        assert!(answerable(&request, "sub-ann", NOW));
        assert!(!answerable(&request, "sub-bob", NOW));
        assert!(!answerable(&request, "sub-ann", NOW + 10));
        let denied = BackchannelRequest {
            status: BackchannelStatus::Denied,
            ..request
        };
        assert!(!answerable(&denied, "sub-ann", NOW));
    }
}
