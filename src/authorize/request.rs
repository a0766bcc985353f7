//! Validating an authorization request (RFC 6749 §4.1.1, §4.2.1; RFC 7636; OpenID Connect Core §3.1.2.1;
//! RFC 9126; RFC 9396; RFC 8707). Pure: the parameters, the client's registration and the settings in, a
//! validated request or the way to refuse it out.

use std::collections::BTreeMap;

use projections::clients::Client;
use projections::event::UnixSeconds;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::oauth::{OAuthError, scope};

/// What the client asked to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseType {
    /// An authorization code (RFC 6749 §4.1).
    Code,
    /// An access token in the fragment (RFC 6749 §4.2), for clients that enable `implicit`.
    Token,
}

/// How the response travels back (OAuth 2.0 Multiple Response Types, Form Post Response Mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

/// The OpenID Connect `prompt` values this server acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// Never show a page: answer with an error instead.
    pub none: bool,
    /// Authenticate again even with a session.
    pub login: bool,
    /// Show the consent page even when standing consents cover the request.
    pub consent: bool,
}

/// Where and how an answer (or an error) goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub redirect_uri: String,
    pub mode: ResponseMode,
    pub state: Option<String>,
}

/// A request that passed validation, as kept while the user signs in and consents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub response_type: ResponseType,
    pub target: Target,
    /// `None` when the request named no scope: the client's defaults apply.
    pub scope: Option<Vec<String>>,
    pub nonce: Option<String>,
    /// RFC 7636 S256 challenge.
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub acr_values: Vec<String>,
    /// RFC 9396; `Null` when absent.
    pub authorization_details: Value,
    /// RFC 8707.
    pub resource: Option<String>,
    pub created_at: UnixSeconds,
    /// Whether the request named its `redirect_uri` (else the only registered one was used).
    #[serde(default)]
    pub redirect_uri_given: bool,
}

/// Why a request is refused, and where the refusal goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The client or the redirect URI cannot be trusted: tell the user, never redirect (RFC 6749 §4.1.2.1).
    Page(OAuthError),
    /// The client and redirect URI are valid: send the error there.
    Redirect { error: OAuthError, target: Target },
}

/// What validation needs besides the parameters.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub require_pkce: bool,
    pub scopes_per_request_max: usize,
    pub scope_len_max: usize,
    /// Longest `state`, `nonce`, `login_hint` and `authorization_details` accepted (bytes): what is kept
    /// while the user signs in must stay small, since anyone can start a request.
    pub state_bytes_max: usize,
    pub nonce_bytes_max: usize,
    pub login_hint_bytes_max: usize,
    pub authorization_details_bytes_max: usize,
    /// The request arrived by PAR (RFC 9126) rather than on the query string.
    pub pushed: bool,
}

/// The `code_challenge` syntax of RFC 7636 §4.2 for S256: 43 base64url characters.
fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The redirect URI the request means: the one it names, exactly as registered, or the only one
/// registered. `None` when there is no such URI.
fn redirect_uri(client: &Client, given: Option<&str>) -> Option<String> {
    let registered = &client.spec.redirect_uris;
    match given {
        Some(uri) => registered.iter().find(|r| r.as_str() == uri).cloned(),
        None if registered.len() == 1 => registered.first().cloned(),
        None => None,
    }
}

/// The largest `max_age` accepted: ten years. Larger values mean nothing a clock can measure.
pub const MAX_AGE_MAX: i64 = 315_360_000;

/// Validates `params` for `client` (`None`: unknown or disabled).
pub fn validate(
    params: &BTreeMap<String, String>,
    client: Option<&Client>,
    settings: Settings,
    now: UnixSeconds,
) -> Result<AuthorizationRequest, Rejection> {
    let get = |k: &str| params.get(k).map(String::as_str);
    let page = |m: &str| Rejection::Page(OAuthError::InvalidRequest(m.to_owned()));
    let client_id = get("client_id").ok_or_else(|| page("the request names no client_id"))?;
    let client = client
        .filter(|c| c.spec.client_id == client_id && c.is_enabled())
        .ok_or_else(|| Rejection::Page(OAuthError::InvalidClient("unknown or disabled client".into())))?;
    let redirect_uri = redirect_uri(client, get("redirect_uri")).ok_or_else(|| {
        page(match get("redirect_uri") {
            Some(_) => "the redirect_uri is not registered for this client",
            None => "the request names no redirect_uri and the client has more than one",
        })
    })?;

    // An over-long state is refused here, before it could be echoed in a redirect.
    if get("state").is_some_and(|v| v.len() > settings.state_bytes_max) {
        return Err(page(&format!(
            "state is longer than {} bytes",
            settings.state_bytes_max
        )));
    }

    // From here on, errors go back to the client. The response type decides the default mode.
    let response_type = match get("response_type") {
        Some("code") => Ok(ResponseType::Code),
        Some("token") => Ok(ResponseType::Token),
        Some(other) => Err(OAuthError::UnsupportedResponseType(format!(
            "response_type {other} is not supported"
        ))),
        None => Err(OAuthError::InvalidRequest(
            "missing parameter response_type".into(),
        )),
    };
    let default_mode = match response_type {
        Ok(ResponseType::Token) => ResponseMode::Fragment,
        _ => ResponseMode::Query,
    };
    let mode = match get("response_mode") {
        None => Ok(default_mode),
        Some("query") => Ok(ResponseMode::Query),
        Some("fragment") => Ok(ResponseMode::Fragment),
        Some("form_post") => Ok(ResponseMode::FormPost),
        Some(other) => Err(OAuthError::InvalidRequest(format!(
            "response_mode {other} is not supported"
        ))),
    };
    let target = Target {
        redirect_uri,
        mode: *mode.as_ref().unwrap_or(&default_mode),
        state: get("state").map(str::to_owned),
    };
    let fail = |error: OAuthError| Rejection::Redirect {
        error,
        target: target.clone(),
    };
    let response_type = response_type.map_err(fail)?;
    let mode = mode.map_err(fail)?;
    let invalid = |m: &str| fail(OAuthError::InvalidRequest(m.to_owned()));

    if client.spec.require_pushed_authorization_requests && !settings.pushed {
        return Err(invalid("this client must push its authorization requests (PAR)"));
    }
    let grant_needed = match response_type {
        ResponseType::Code => "authorization_code",
        ResponseType::Token => "implicit",
    };
    if !client.spec.grant_types.iter().any(|g| g == grant_needed) {
        return Err(fail(OAuthError::UnauthorizedClient(format!(
            "this client may not use {grant_needed}"
        ))));
    }
    if response_type == ResponseType::Token && mode == ResponseMode::Query {
        // Tokens never go in a query string, where logs and referrers keep them.
        return Err(invalid("response_type=token cannot use response_mode=query"));
    }

    let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (Some(c), Some("S256")) if is_s256_challenge(c) => Some(c.to_owned()),
        (Some(_), Some("S256")) => return Err(invalid("code_challenge must be 43 base64url characters")),
        (Some(_), None) | (Some(_), Some(_)) => {
            // Without a method RFC 7636 means `plain`, which this server refuses.
            return Err(invalid("code_challenge_method must be S256"));
        }
        (None, Some(_)) => return Err(invalid("code_challenge_method without code_challenge")),
        (None, None) => None,
    };
    let public = client.spec.token_endpoint_auth_method == "none";
    if response_type == ResponseType::Code && code_challenge.is_none() && (public || settings.require_pkce) {
        return Err(invalid(
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        ));
    }

    let mut prompt = Prompt::default();
    for p in get("prompt").unwrap_or("").split(' ').filter(|p| !p.is_empty()) {
        match p {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            // Only one account per session: choosing one is the same as signing in.
            "select_account" => prompt.login = true,
            other => return Err(invalid(&format!("prompt value {other} is not supported"))),
        }
    }
    if prompt.none && (prompt.login || prompt.consent) {
        return Err(invalid("prompt=none cannot be combined with other values"));
    }
    let max_age = match get("max_age") {
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| (0..=MAX_AGE_MAX).contains(n))
                .ok_or_else(|| invalid("max_age must be an integer from 0 to 315360000 (ten years)"))?,
        ),
        None => None,
    };
    let acr_values = get("acr_values")
        .map(|v| {
            v.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for (name, max) in [
        ("nonce", settings.nonce_bytes_max),
        ("login_hint", settings.login_hint_bytes_max),
        ("authorization_details", settings.authorization_details_bytes_max),
    ] {
        if get(name).is_some_and(|v| v.len() > max) {
            return Err(invalid(&format!("{name} is longer than {max} bytes")));
        }
    }
    let scope = get("scope")
        .map(|s| scope::parse(s, settings.scopes_per_request_max, settings.scope_len_max))
        .transpose()
        .map_err(fail)?;
    let authorization_details = match get("authorization_details") {
        Some(text) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_array)
            .ok_or_else(|| {
                fail(OAuthError::InvalidRequest(
                    "authorization_details must be a JSON array".into(),
                ))
            })?,
        None => Value::Null,
    };
    if get("request").is_some() {
        return Err(invalid(
            "request objects are not supported; push the request with PAR instead",
        ));
    }
    Ok(AuthorizationRequest {
        client_id: client_id.to_owned(),
        response_type,
        target,
        scope,
        nonce: get("nonce").map(str::to_owned),
        code_challenge,
        prompt,
        max_age,
        acr_values,
        authorization_details,
        resource: get("resource").map(str::to_owned),
        created_at: now,
        redirect_uri_given: get("redirect_uri").is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use projections::event::{ClientAudience, ClientKind, ClientSpec};

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client(auth: &str, grants: &[&str]) -> Client {
        Client {
            spec: ClientSpec {
                client_id: "app".into(),
                name: "App".into(),
                kind: ClientKind::ThirdParty,
                audience: ClientAudience::Human,
                dynamically_registered: false,
                redirect_uris: vec!["https://app.example/cb".into(), "https://app.example/cb2".into()],
                grant_types: grants.iter().map(|g| g.to_string()).collect(),
                scopes: vec!["read".into()],
                token_endpoint_auth_method: auth.into(),
                secret_hash: None,
                jwks: None,
                jwks_uri: None,
                resources: vec![],
                metadata: Value::Null,
                ..Default::default()
            },
            registered_at: 0,
            updated_at: 0,
            disabled: None,
        }
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn settings() -> Settings {
        Settings {
            require_pkce: true,
            scopes_per_request_max: 10,
            scope_len_max: 64,
            state_bytes_max: 512,
            nonce_bytes_max: 512,
            login_hint_bytes_max: 256,
            authorization_details_bytes_max: 4096,
            pushed: false,
        }
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("client_id", "app"),
            ("redirect_uri", "https://app.example/cb"),
            ("response_type", "code"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("state", "xyz"),
            ("scope", "read"),
        ]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> BTreeMap<String, String> {
        let mut p = params(&good());
        for (k, v) in extra {
            if v.is_empty() {
                p.remove(*k);
            } else {
                p.insert(k.to_string(), v.to_string());
            }
        }
        p
    }

    fn check(p: &BTreeMap<String, String>, c: &Client) -> Result<AuthorizationRequest, Rejection> {
        validate(p, Some(c), settings(), 100)
    }

    fn redirected_code(r: Result<AuthorizationRequest, Rejection>) -> String {
        match r {
            Err(Rejection::Redirect { error, target }) => {
                assert_eq!(target.state.as_deref(), Some("xyz"));
                error.to_string()
            }
            other => panic!("expected a redirected error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_passes() {
        let r = check(
            &params(&good()),
            &client("client_secret_basic", &["authorization_code"]),
        )
        .unwrap();
        assert_eq!(r.response_type, ResponseType::Code);
        assert_eq!(r.target.mode, ResponseMode::Query);
        assert_eq!(r.code_challenge.as_deref(), Some(CHALLENGE));
        assert_eq!(r.scope, Some(vec!["read".to_owned()]));
    }

    #[test]
    fn untrusted_client_or_redirect_uri_never_redirects() {
        let c = client("client_secret_basic", &["authorization_code"]);
        for p in [
            with(&[("redirect_uri", "https://evil.example/cb")]),
            with(&[("redirect_uri", "https://app.example/cb/")]),
            with(&[("redirect_uri", "")]),
            with(&[("client_id", "")]),
        ] {
            assert!(matches!(check(&p, &c), Err(Rejection::Page(_))), "{p:?}");
        }
        assert!(matches!(
            validate(&params(&good()), None, settings(), 100),
            Err(Rejection::Page(OAuthError::InvalidClient(_)))
        ));
    }

    #[test]
    fn pkce_is_s256_only_and_required() {
        let c = client("client_secret_basic", &["authorization_code"]);
        let plain = with(&[("code_challenge_method", "plain")]);
        assert_eq!(redirected_code(check(&plain, &c)), "invalid_request");
        let missing = with(&[("code_challenge", ""), ("code_challenge_method", "")]);
        assert_eq!(redirected_code(check(&missing, &c)), "invalid_request");
        let lax = Settings {
            require_pkce: false,
            ..settings()
        };
        assert!(validate(&missing, Some(&c), lax, 100).is_ok());
        let public = client("none", &["authorization_code"]);
        assert!(validate(&missing, Some(&public), lax, 100).is_err());
    }

    #[test]
    fn response_types_follow_the_registration() {
        let c = client("client_secret_basic", &["authorization_code"]);
        let token = with(&[("response_type", "token")]);
        assert_eq!(redirected_code(check(&token, &c)), "unauthorized_client");
        let implicit = client("client_secret_basic", &["implicit"]);
        let r = check(&token, &implicit).unwrap();
        assert_eq!(r.target.mode, ResponseMode::Fragment);
        let in_query = with(&[("response_type", "token"), ("response_mode", "query")]);
        assert_eq!(redirected_code(check(&in_query, &implicit)), "invalid_request");
        let odd = with(&[("response_type", "id_token token")]);
        assert_eq!(redirected_code(check(&odd, &c)), "unsupported_response_type");
    }

    #[test]
    fn prompt_and_max_age_are_checked() {
        let c = client("client_secret_basic", &["authorization_code"]);
        let r = check(&with(&[("prompt", "login consent"), ("max_age", "60")]), &c).unwrap();
        assert!(r.prompt.login && r.prompt.consent && !r.prompt.none);
        assert_eq!(r.max_age, Some(60));
        assert_eq!(
            redirected_code(check(&with(&[("prompt", "none login")]), &c)),
            "invalid_request"
        );
        assert_eq!(
            redirected_code(check(&with(&[("max_age", "-1")]), &c)),
            "invalid_request"
        );
    }

    #[test]
    fn par_only_clients_refuse_front_channel_requests() {
        let mut c = client("client_secret_basic", &["authorization_code"]);
        c.spec.require_pushed_authorization_requests = true;
        assert_eq!(redirected_code(check(&params(&good()), &c)), "invalid_request");
        let pushed = Settings {
            pushed: true,
            ..settings()
        };
        assert!(validate(&params(&good()), Some(&c), pushed, 100).is_ok());
    }

    #[test]
    fn authorization_details_must_be_an_array() {
        let c = client("client_secret_basic", &["authorization_code"]);
        let bad = with(&[("authorization_details", "{\"type\":\"x\"}")]);
        assert_eq!(redirected_code(check(&bad, &c)), "invalid_request");
        let good = with(&[("authorization_details", "[{\"type\":\"payment\"}]")]);
        assert!(check(&good, &c).unwrap().authorization_details.is_array());
    }

    #[test]
    fn over_long_values_are_refused() {
        let c = client("client_secret_basic", &["authorization_code"]);
        let long = |n: usize| -> &'static str { Box::leak("x".repeat(n).into_boxed_str()) };
        assert!(matches!(
            check(&with(&[("state", long(513))]), &c),
            Err(Rejection::Page(OAuthError::InvalidRequest(_)))
        ));
        assert!(check(&with(&[("state", long(512))]), &c).is_ok());
        assert_eq!(
            redirected_code(check(&with(&[("nonce", long(513))]), &c)),
            "invalid_request"
        );
        assert_eq!(
            redirected_code(check(&with(&[("login_hint", long(257))]), &c)),
            "invalid_request"
        );
        let details: &'static str =
            Box::leak(format!("[{{\"type\":\"{}\"}}]", "x".repeat(4096)).into_boxed_str());
        assert_eq!(
            redirected_code(check(&with(&[("authorization_details", details)]), &c)),
            "invalid_request"
        );
    }
}
