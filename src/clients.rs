//! Client registration: deciding the events for a registration, an update or a disabling.

use projections::Event;
use projections::clients::Client;
use projections::event::{
    Actors, BackchannelDeliveryMode, ClientDisabled, ClientRegistered, ClientSpec, ClientUpdated,
    UnixSeconds, V1,
};

use crate::config::{ClientConfig, SUPPORTED_AUTH_METHODS, SUPPORTED_GRANT_TYPES};
use crate::grants::token_exchange::GRANT_TYPE as TOKEN_EXCHANGE;
use crate::oauth::client_auth::secret_hash;
use crate::store::{AppendRequest, ExpectedVersion};

/// The stream of one client's events.
pub fn stream(client_id: &str) -> String {
    projections::event::streams::client(client_id)
}

/// Why a registration is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistrationError {
    #[error("client {0} already exists")]
    Exists(String),
    #[error("client {0} does not exist")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
}

/// Checks a spec's attributes.
pub fn validate(spec: &ClientSpec) -> Result<(), RegistrationError> {
    let invalid = |m: String| Err(RegistrationError::Invalid(m));
    if spec.client_id.is_empty() || spec.client_id.len() > 128 || spec.client_id.contains(':') {
        return invalid("client_id must be 1 to 128 characters without ':'".into());
    }
    if spec.name.is_empty() || spec.name.len() > 200 {
        return invalid("name must be 1 to 200 characters".into());
    }
    if let Some(g) = spec
        .grant_types
        .iter()
        .find(|g| !SUPPORTED_GRANT_TYPES.contains(&g.as_str()) && g.as_str() != crate::grants::ASSISTED_TOKEN)
    {
        return invalid(format!("unsupported grant type {g}"));
    }
    if !SUPPORTED_AUTH_METHODS.contains(&spec.token_endpoint_auth_method.as_str()) {
        return invalid(format!(
            "unsupported token_endpoint_auth_method {}",
            spec.token_endpoint_auth_method
        ));
    }
    for uri in &spec.redirect_uris {
        validate_redirect_uri(uri, spec.token_endpoint_auth_method == "none")
            .map_err(|problem| RegistrationError::Invalid(format!("redirect URI {uri:?}: {problem}")))?;
    }
    if let Some(alg) = &spec.id_token_signed_response_alg
        && !ID_TOKEN_ALGS.contains(&alg.as_str())
    {
        return invalid(format!(
            "id_token_signed_response_alg {alg:?} is not supported; use one of {}",
            ID_TOKEN_ALGS.join(", ")
        ));
    }
    if spec.resource_server && spec.token_endpoint_auth_method == "none" {
        return invalid(
            "a resource server must authenticate to introspect; it cannot be a public client".into(),
        );
    }
    if spec.resource_server && spec.resources.is_empty() {
        return invalid("a resource server names the resources it serves in resources".into());
    }
    if spec.jwks_uri.is_some() {
        return invalid(
            "jwks_uri is not fetched by this server yet; register the keys inline as jwks".into(),
        );
    }
    if spec.token_endpoint_auth_method == "private_key_jwt" && spec.jwks.is_none() {
        return invalid("private_key_jwt needs jwks".into());
    }
    let password = spec.grant_types.iter().any(|g| g == "password");
    if password && spec.dynamically_registered {
        return invalid("the password grant is for clients an operator registers, not dynamically".into());
    }
    if spec.password_grant_second_factor_users && !password {
        return invalid("password_grant_second_factor_users needs the password grant type".into());
    }
    if spec.dpop_bound_access_tokens && spec.grant_types.iter().any(|g| g == "implicit") {
        return invalid(
            "dpop_bound_access_tokens rules out the implicit grant: its tokens come from the authorization \
             endpoint, where no DPoP proof is sent"
                .into(),
        );
    }
    if spec.token_endpoint_auth_method == "none" && spec.grant_types.iter().any(|g| g == "client_credentials")
    {
        return invalid("a public client cannot use client_credentials".into());
    }
    if let Some(seconds) = spec.consent_lifetime_seconds {
        validate_consent_lifetime(seconds)
            .map_err(|problem| RegistrationError::Invalid(format!("consent_lifetime_seconds {problem}")))?;
    }
    validate_token_exchange(spec)?;
    validate_assisted_token(spec)?;
    validate_auditor(spec)?;
    validate_backchannel(spec)
}

/// The longest consent lifetime a client or a scope may set: ten years.
pub const CONSENT_LIFETIME_SECONDS_MAX: i64 = 10 * 365 * 86_400;

/// Checks a consent lifetime, from a client registration or a scope declaration alike.
pub fn validate_consent_lifetime(seconds: i64) -> Result<(), String> {
    if (1..=CONSENT_LIFETIME_SECONDS_MAX).contains(&seconds) {
        Ok(())
    } else {
        Err(format!(
            "must be between 1 and {CONSENT_LIFETIME_SECONDS_MAX} seconds (ten years)"
        ))
    }
}

/// The auditor setting: the `audit` scope is granted by client credentials only, to a client an operator
/// registered, so an auditor has that grant type and is not dynamically registered; a client that is not
/// an auditor cannot list the scope.
pub fn validate_auditor(spec: &ClientSpec) -> Result<(), RegistrationError> {
    let invalid = |m: &str| Err(RegistrationError::Invalid(m.into()));
    let audit_listed = spec.scopes.iter().any(|s| s == crate::issuance::AUDIT_SCOPE);
    if !spec.auditor {
        return match audit_listed {
            true => invalid("the audit scope is granted only to a client registered with auditor = true"),
            false => Ok(()),
        };
    }
    if !spec.grant_types.iter().any(|g| g == "client_credentials") {
        return invalid("an auditor is granted the audit scope by client_credentials; add that grant type");
    }
    if spec.dynamically_registered {
        return invalid("an auditor is a client an operator registers, not a dynamically registered one");
    }
    Ok(())
}

/// The assisted token settings: the identifier among the grant types, only for a public client (the page
/// that asks cannot keep a secret), with at least one origin; and `allowed_origins` only with it.
pub fn validate_assisted_token(spec: &ClientSpec) -> Result<(), RegistrationError> {
    let invalid = |m: String| Err(RegistrationError::Invalid(m));
    let assisted = spec
        .grant_types
        .iter()
        .any(|g| g == crate::grants::ASSISTED_TOKEN);
    match (assisted, spec.allowed_origins.is_empty()) {
        (false, true) => return Ok(()),
        (false, false) => {
            return invalid(format!(
                "allowed_origins needs the assisted token grant type {}",
                crate::grants::ASSISTED_TOKEN
            ));
        }
        (true, true) => return invalid("the assisted token grant type needs allowed_origins".into()),
        (true, false) => {}
    }
    if spec.token_endpoint_auth_method != "none" {
        return invalid(
            "the assisted token flow is for public clients (token_endpoint_auth_method none)".into(),
        );
    }
    if spec.allowed_origins.len() > ALLOWED_ORIGINS_MAX {
        return invalid(format!("at most {ALLOWED_ORIGINS_MAX} allowed_origins"));
    }
    for origin in &spec.allowed_origins {
        validate_origin(origin)
            .map_err(|p| RegistrationError::Invalid(format!("allowed origin {origin:?}: {p}")))?;
    }
    Ok(())
}

/// Most origins one client may list for the assisted token flow.
pub const ALLOWED_ORIGINS_MAX: usize = 16;

/// An origin a page may be framed by and post to: exactly `scheme://host[:port]` as a browser serializes
/// it (lower case, no default port, no path, no wildcard); `https`, or `http` on a loopback host.
pub fn validate_origin(origin: &str) -> Result<(), String> {
    if origin.len() > 256 || origin.contains('*') {
        return Err("must be at most 256 characters, without wildcards".into());
    }
    let parsed = url::Url::parse(origin).map_err(|e| format!("not an origin ({e})"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err("needs a host".into()),
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err("must be https (http only on loopback)".into()),
    }
    // The serialized origin is the whole string: no path, query, fragment or user information, and the
    // browser's own spelling (what `event.origin` and `frame-ancestors` compare against).
    if parsed.origin().ascii_serialization() != origin {
        return Err("must be exactly scheme://host[:port], as a browser writes it".into());
    }
    Ok(())
}

/// The `backchannel_token_delivery_mode` a registration names: `poll` or `ping`. Push is refused: FAPI-CIBA
/// forbids it, and a token sent to the client unasked is a token nobody asked the ledger for.
pub fn delivery_mode(mode: Option<&str>) -> Result<Option<BackchannelDeliveryMode>, RegistrationError> {
    match mode {
        None => Ok(None),
        Some("poll") => Ok(Some(BackchannelDeliveryMode::Poll)),
        Some("ping") => Ok(Some(BackchannelDeliveryMode::Ping)),
        Some("push") => Err(RegistrationError::Invalid(
            "backchannel_token_delivery_mode push is not supported (FAPI-CIBA forbids it); use poll or ping"
                .into(),
        )),
        Some(other) => Err(RegistrationError::Invalid(format!(
            "backchannel_token_delivery_mode {other:?} is not one of poll, ping"
        ))),
    }
}

/// The CIBA settings (OpenID CIBA Core §4): the grant type comes with a delivery mode, only for a client
/// that authenticates, and a ping client names where it is pinged: `https`, or `http` on loopback.
pub fn validate_backchannel(spec: &ClientSpec) -> Result<(), RegistrationError> {
    let invalid = |m: &str| Err(RegistrationError::Invalid(m.into()));
    let ciba = spec
        .grant_types
        .iter()
        .any(|g| g == crate::grants::ciba::GRANT_TYPE);
    let endpoint = spec.backchannel_client_notification_endpoint.as_deref();
    match (spec.backchannel_token_delivery_mode, ciba) {
        (None, false) if endpoint.is_none() => return Ok(()),
        (None, false) => {
            return invalid(
                "backchannel_client_notification_endpoint needs the CIBA grant type in ping mode",
            );
        }
        (Some(_), false) => return invalid("backchannel_token_delivery_mode needs the CIBA grant type"),
        (None, true) => {
            return invalid("the CIBA grant type needs backchannel_token_delivery_mode poll or ping");
        }
        (Some(_), true) => {}
    }
    if spec.token_endpoint_auth_method == "none" {
        return invalid("a public client cannot use CIBA: nothing proves which client asks");
    }
    match (spec.backchannel_token_delivery_mode, endpoint) {
        (Some(BackchannelDeliveryMode::Ping), None) => {
            invalid("ping mode needs backchannel_client_notification_endpoint")
        }
        (Some(BackchannelDeliveryMode::Ping), Some(uri)) => {
            validate_notification_endpoint(uri).map_err(|p| {
                RegistrationError::Invalid(format!("backchannel_client_notification_endpoint: {p}"))
            })
        }
        (_, Some(_)) => invalid("backchannel_client_notification_endpoint is only for ping mode"),
        (_, None) => Ok(()),
    }
}

/// Where a ping may go: an absolute `https` URL, or `http` on a loopback address; no fragment, no user
/// information.
pub fn validate_notification_endpoint(uri: &str) -> Result<(), String> {
    if uri.len() > 2048 || uri.contains('#') || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be at most 2048 characters, without fragment or whitespace".into());
    }
    let parsed = url::Url::parse(uri).map_err(|e| format!("not an absolute URL ({e})"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry user information".into());
    }
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err("needs a host".into()),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err("must be https (http only on loopback)".into()),
    }
}

/// The token exchange settings (RFC 8693): only with the grant type, only for a confidential client, and
/// allowing at least one way to exchange.
fn validate_token_exchange(spec: &ClientSpec) -> Result<(), RegistrationError> {
    let invalid = |m: &str| Err(RegistrationError::Invalid(m.into()));
    let exchanges = spec.grant_types.iter().any(|g| g == TOKEN_EXCHANGE);
    if let Some(party) = &spec.may_act
        && (party.sub.is_empty() || party.sub.len() > 255)
    {
        return invalid("may_act must be a subject of 1 to 255 characters");
    }
    let settings = match (&spec.token_exchange, exchanges) {
        (None, false) => return Ok(()),
        (Some(_), false) => return invalid("token_exchange needs the token exchange grant type"),
        (None, true) => {
            return invalid(
                "the token exchange grant type needs token_exchange settings allowing impersonation or actors",
            );
        }
        (Some(settings), true) => settings,
    };
    if spec.token_endpoint_auth_method == "none" {
        return invalid("a public client cannot exchange tokens: nothing proves which client asks");
    }
    if !settings.impersonation && settings.actors.is_none() {
        return invalid(
            "token_exchange must allow impersonation or actors, or the client could exchange nothing",
        );
    }
    if let Actors::Only(list) = &settings.actors
        && list.iter().any(|a| a.is_empty() || a.len() > 255)
    {
        return invalid("token_exchange.actors names subjects of 1 to 255 characters");
    }
    if settings.refresh_tokens && !spec.grant_types.iter().any(|g| g == "refresh_token") {
        return invalid("token_exchange.refresh_tokens needs the refresh_token grant type");
    }
    Ok(())
}

/// The algorithms a client may ask its ID tokens to be signed with (RS256 when it asks nothing).
pub const ID_TOKEN_ALGS: &[&str] = &["RS256", "ES256", "EdDSA"];

/// Schemes that run or read something where they land rather than reaching a client: never a redirect.
const FORBIDDEN_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "file",
    "vbscript",
    "blob",
    "about",
    "filesystem",
];

/// Whether `uri` may be registered as a redirect URI (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700 §4.1):
/// absolute `https`; `http` only to a loopback host (127.0.0.0/8, `[::1]`, `localhost`); a private-use
/// scheme in reverse-domain form (one with a `.`) only for a public (native) client. Never a fragment,
/// never a wildcard. `Err` says why not.
pub fn validate_redirect_uri(uri: &str, public_client: bool) -> Result<(), String> {
    if uri.contains('*') {
        return Err("wildcards are not allowed; register each URI exactly".into());
    }
    if uri.contains('#') {
        return Err("a redirect URI must not have a fragment".into());
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a redirect URI must not contain whitespace".into());
    }
    let parsed = url::Url::parse(uri).map_err(|e| format!("not an absolute URI ({e})"))?;
    let scheme = parsed.scheme();
    if FORBIDDEN_SCHEMES.contains(&scheme) {
        return Err(format!("the {scheme}: scheme is never a redirect URI"));
    }
    match scheme {
        "https" => match parsed.host() {
            Some(_) if parsed.username().is_empty() && parsed.password().is_none() => Ok(()),
            Some(_) => Err("a redirect URI must not carry user information".into()),
            None => Err("an https redirect URI needs a host".into()),
        },
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("http is allowed only on loopback (127.0.0.1, [::1], localhost); use https".into())
            }
        }
        private if private.contains('.') => {
            if public_client {
                Ok(())
            } else {
                Err(format!(
                    "the private-use scheme {private}: is for native apps, which register as public \
                     clients (token_endpoint_auth_method \"none\", RFC 8252 §8.4)"
                ))
            }
        }
        other => Err(format!(
            "the {other}: scheme is not allowed; use https, http on loopback, or a private-use scheme in \
             reverse-domain form such as com.example.app: (RFC 8252 §7.1)"
        )),
    }
}

/// The append that registers `spec`, which must not exist yet.
pub fn register(
    existing: Option<&Client>,
    spec: ClientSpec,
    now: UnixSeconds,
) -> Result<AppendRequest, RegistrationError> {
    validate(&spec)?;
    if existing.is_some() {
        return Err(RegistrationError::Exists(spec.client_id));
    }
    Ok(AppendRequest::to_stream(
        stream(&spec.client_id),
        ExpectedVersion::NoStream,
        vec![Event::ClientRegistered(ClientRegistered {
            v: V1,
            client: spec,
            at: now,
        })],
    ))
}

/// The append that replaces an existing client's attributes.
pub fn update(
    existing: Option<&Client>,
    spec: ClientSpec,
    now: UnixSeconds,
) -> Result<AppendRequest, RegistrationError> {
    validate(&spec)?;
    if existing.is_none() {
        return Err(RegistrationError::Unknown(spec.client_id));
    }
    Ok(AppendRequest::to_stream(
        stream(&spec.client_id),
        ExpectedVersion::Any,
        vec![Event::ClientUpdated(ClientUpdated {
            v: V1,
            client: spec,
            at: now,
        })],
    ))
}

/// The append that disables a client.
pub fn disable(
    existing: Option<&Client>,
    client_id: &str,
    reason: &str,
    now: UnixSeconds,
) -> Result<AppendRequest, RegistrationError> {
    if existing.is_none() {
        return Err(RegistrationError::Unknown(client_id.to_owned()));
    }
    Ok(AppendRequest::to_stream(
        stream(client_id),
        ExpectedVersion::Any,
        vec![Event::ClientDisabled(ClientDisabled {
            v: V1,
            client_id: client_id.into(),
            reason: reason.into(),
            at: now,
        })],
    ))
}

/// The spec a config file entry describes.
pub fn spec_from_config(c: &ClientConfig) -> ClientSpec {
    ClientSpec {
        client_id: c.client_id.clone(),
        name: c.name.clone(),
        kind: c.kind,
        audience: c.audience,
        dynamically_registered: false,
        redirect_uris: c.redirect_uris.clone(),
        grant_types: c.grant_types.clone(),
        scopes: c.scopes.clone(),
        token_endpoint_auth_method: c.token_endpoint_auth_method.clone(),
        secret_hash: c.secret_sha256.clone().map(|h| h.to_ascii_lowercase()),
        jwks: c.jwks.clone(),
        jwks_uri: None,
        resources: c.resources.clone(),
        metadata: serde_json::Value::Null,
        require_pushed_authorization_requests: c.require_pushed_authorization_requests,
        delegation_lifetime_seconds: c.delegation_lifetime_seconds,
        consent_lifetime_seconds: c.consent_lifetime_seconds,
        refresh_reuse_grace_seconds: c.refresh_reuse_grace_seconds,
        resource_server: c.resource_server,
        id_token_signed_response_alg: c.id_token_signed_response_alg.clone(),
        password_grant_second_factor_users: c.password_grant_second_factor_users,
        token_exchange: c.token_exchange.as_ref().map(|t| t.settings()),
        may_act: crate::config::may_act_party(c.may_act.as_ref()),
        dpop_bound_access_tokens: c.dpop_bound_access_tokens,
        // An unknown mode was refused when the file was loaded.
        backchannel_token_delivery_mode: delivery_mode(c.backchannel_token_delivery_mode.as_deref())
            .ok()
            .flatten(),
        backchannel_client_notification_endpoint: c.backchannel_client_notification_endpoint.clone(),
        allowed_origins: c.allowed_origins.clone(),
        auditor: c.auditor,
    }
}

/// The append (if any) that brings a config-file client into the ledger: register when absent, update
/// when its attributes changed, nothing when they match.
pub fn bootstrap(
    existing: Option<&Client>,
    config: &ClientConfig,
    now: UnixSeconds,
) -> Result<Option<AppendRequest>, RegistrationError> {
    let spec = spec_from_config(config);
    match existing {
        None => register(None, spec, now).map(Some),
        Some(c) if c.spec == spec => Ok(None),
        Some(c) => update(Some(c), spec, now).map(Some),
    }
}

/// Hashes a presented secret the way registrations store it.
pub fn hash_secret(secret: &str) -> String {
    secret_hash(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_loopback_http_or_native_private_use() {
        for ok in [
            "https://app.example/cb",
            "https://app.example:8443/cb?x=1",
            "http://127.0.0.1:8080/cb",
            "http://[::1]/cb",
            "http://localhost:3000/cb",
        ] {
            assert_eq!(validate_redirect_uri(ok, false), Ok(()), "{ok}");
        }
        assert_eq!(
            validate_redirect_uri("com.example.app:/oauth2redirect", true),
            Ok(())
        );
        for bad in [
            "javascript:alert(1)//",
            "data:text/html,hi",
            "file:///etc/passwd",
            "*",
            "https://*.example/cb",
            "https://app.example/cb#frag",
            "https://app.example/cb#",
            "http://app.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "/relative/cb",
            "myapp:/cb",
            "https://user:pw@app.example/cb",
            "https://app.example/c b",
        ] {
            let e = validate_redirect_uri(bad, true);
            assert!(e.is_err(), "{bad}");
        }
        assert!(validate_redirect_uri("com.example.app:/oauth2redirect", false).is_err());
    }

    #[test]
    fn assisted_token_clients_are_public_and_name_exact_origins() {
        let assisted = crate::grants::ASSISTED_TOKEN;
        let spec = |grants: &[&str], method: &str, origins: &[&str]| ClientSpec {
            client_id: "spa".into(),
            name: "Single-page app".into(),
            grant_types: grants.iter().map(|g| (*g).to_owned()).collect(),
            token_endpoint_auth_method: method.into(),
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..ClientSpec::default()
        };
        for ok in [
            "https://app.example",
            "https://app.example:8443",
            "http://127.0.0.1:3000",
            "http://localhost:8080",
        ] {
            assert_eq!(validate(&spec(&[assisted], "none", &[ok])), Ok(()), "{ok}");
        }
        for bad in [
            "https://app.example/",
            "https://app.example/path",
            "https://*.app.example",
            "http://app.example",
            "https://APP.example",
            "https://app.example:443",
            "https://user@app.example",
            "app.example",
            "https://app.example?x=1",
        ] {
            assert!(validate(&spec(&[assisted], "none", &[bad])).is_err(), "{bad}");
        }
        // Only with the grant type, only public, at least one origin.
        assert!(validate(&spec(&["authorization_code"], "none", &["https://app.example"])).is_err());
        assert!(
            validate(&spec(
                &[assisted],
                "client_secret_basic",
                &["https://app.example"]
            ))
            .is_err()
        );
        assert!(validate(&spec(&[assisted], "none", &[])).is_err());
        assert_eq!(validate(&spec(&["authorization_code"], "none", &[])), Ok(()));
    }

    #[test]
    fn ciba_settings_name_poll_or_ping_and_a_ping_endpoint_clients_can_be_reached_at() {
        use BackchannelDeliveryMode::{Ping, Poll};
        let ciba = crate::grants::ciba::GRANT_TYPE;
        let spec =
            |grants: &[&str], mode: Option<BackchannelDeliveryMode>, endpoint: Option<&str>| ClientSpec {
                client_id: "bank".into(),
                name: "Bank".into(),
                grant_types: grants.iter().map(|g| (*g).to_owned()).collect(),
                token_endpoint_auth_method: "client_secret_basic".into(),
                backchannel_token_delivery_mode: mode,
                backchannel_client_notification_endpoint: endpoint.map(str::to_owned),
                ..ClientSpec::default()
            };
        assert_eq!(validate(&spec(&[ciba], Some(Poll), None)), Ok(()));
        for ok in [
            "https://bank.example/ciba",
            "http://127.0.0.1:8443/cb",
            "http://[::1]/cb",
            "http://localhost/cb",
        ] {
            assert_eq!(validate(&spec(&[ciba], Some(Ping), Some(ok))), Ok(()), "{ok}");
        }
        for (why, bad) in [
            ("the grant without a mode", spec(&[ciba], None, None)),
            ("a mode without the grant", spec(&[], Some(Poll), None)),
            (
                "an endpoint without the grant",
                spec(&[], None, Some("https://b.example/cb")),
            ),
            ("ping without an endpoint", spec(&[ciba], Some(Ping), None)),
            (
                "poll with an endpoint",
                spec(&[ciba], Some(Poll), Some("https://b.example/cb")),
            ),
            (
                "plain http elsewhere",
                spec(&[ciba], Some(Ping), Some("http://b.example/cb")),
            ),
            (
                "a fragment",
                spec(&[ciba], Some(Ping), Some("https://b.example/cb#x")),
            ),
            (
                "user information",
                spec(&[ciba], Some(Ping), Some("https://u:p@b.example/cb")),
            ),
            ("not a URL", spec(&[ciba], Some(Ping), Some("/cb"))),
        ] {
            assert!(validate(&bad).is_err(), "{why}");
        }
        let public = ClientSpec {
            token_endpoint_auth_method: "none".into(),
            ..spec(&[ciba], Some(Poll), None)
        };
        assert!(validate(&public).is_err(), "a public client");
        assert_eq!(delivery_mode(Some("ping")), Ok(Some(Ping)));
        assert_eq!(delivery_mode(None), Ok(None));
        let push = delivery_mode(Some("push")).unwrap_err().to_string();
        assert!(push.contains("push is not supported"), "{push}");
        assert!(delivery_mode(Some("Poll")).is_err());
    }

    #[test]
    fn token_exchange_settings_come_with_the_grant_type_and_allow_something() {
        use projections::event::TokenExchangeSettings;
        let spec = |grants: &[&str], settings: Option<TokenExchangeSettings>, auth: &str| ClientSpec {
            client_id: "svc".into(),
            name: "Service".into(),
            grant_types: grants.iter().map(|g| (*g).to_owned()).collect(),
            token_endpoint_auth_method: auth.into(),
            token_exchange: settings,
            ..ClientSpec::default()
        };
        let impersonate = TokenExchangeSettings {
            impersonation: true,
            ..TokenExchangeSettings::default()
        };
        let with_refresh = TokenExchangeSettings {
            refresh_tokens: true,
            ..impersonate.clone()
        };
        let te = TOKEN_EXCHANGE;
        let basic = "client_secret_basic";
        assert_eq!(validate(&spec(&[te], Some(impersonate.clone()), basic)), Ok(()));
        let actors = TokenExchangeSettings {
            actors: Actors::Only(vec!["sub-bob".into()]),
            ..TokenExchangeSettings::default()
        };
        assert_eq!(validate(&spec(&[te], Some(actors), basic)), Ok(()));
        for (why, bad) in [
            (
                "settings without the grant",
                spec(&[], Some(impersonate.clone()), basic),
            ),
            ("the grant without settings", spec(&[te], None, basic)),
            (
                "settings allowing nothing",
                spec(&[te], Some(TokenExchangeSettings::default()), basic),
            ),
            ("a public client", spec(&[te], Some(impersonate.clone()), "none")),
            (
                "refresh tokens without the grant",
                spec(&[te], Some(with_refresh), basic),
            ),
        ] {
            assert!(validate(&bad).is_err(), "{why}");
        }
    }
}
