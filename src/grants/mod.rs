//! The token endpoint's grant types: one file each, a closed enum, one exhaustive dispatch.

pub mod authorization_code;
pub mod client_credentials;
pub mod device_code;
pub mod password;
pub mod refresh;
pub mod user_absent;

use std::net::SocketAddr;

use projections::Event;
use projections::clients::Client;
use projections::event::{TokenIssued, TokenKind, UnixSeconds, V1};
use serde::Serialize;
use serde_json::json;

use crate::app::App;
use crate::issuance::{self, Decision, IssuanceRequest, Policy};
use crate::oauth::OAuthError;
use crate::oauth::form::Form;
use crate::policy::external;
use crate::store::{AppendRequest, ExpectedVersion};

/// The device authorization grant's `grant_type` (RFC 8628 §3.4).
pub const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The grant types this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 6749 §4.1 with RFC 7636 PKCE.
    AuthorizationCode,
    /// RFC 6749 §6, rotated on every use (RFC 9700 §4.14).
    RefreshToken,
    /// RFC 6749 §4.2: tokens from the authorization endpoint; never accepted at the token endpoint.
    Implicit,
    /// RFC 6749 §4.3: the user's password, presented by the client; off unless a client lists it.
    Password,
    /// RFC 8628: a device polls while its user answers on the verification page.
    DeviceCode,
}

impl GrantType {
    /// Parses the `grant_type` parameter.
    pub fn parse(value: &str) -> Result<GrantType, OAuthError> {
        match value {
            "client_credentials" => Ok(GrantType::ClientCredentials),
            "authorization_code" => Ok(GrantType::AuthorizationCode),
            "refresh_token" => Ok(GrantType::RefreshToken),
            "password" => Ok(GrantType::Password),
            DEVICE_CODE => Ok(GrantType::DeviceCode),
            other => Err(OAuthError::UnsupportedGrantType(format!(
                "grant_type {other} is not supported"
            ))),
        }
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::Implicit => "implicit",
            GrantType::Password => "password",
            GrantType::DeviceCode => DEVICE_CODE,
        }
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// OpenID Connect, when `openid` was granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// Runs the grant for an authenticated `client`; `peer` is the client's address, which the password
/// grant counts failed sign-ins under.
pub async fn dispatch(
    app: &App,
    grant: GrantType,
    client: &Client,
    form: &Form,
    peer: Option<SocketAddr>,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    if !client.spec.grant_types.iter().any(|g| g == grant.name()) {
        return Err(OAuthError::UnauthorizedClient(format!(
            "this client may not use {}",
            grant.name()
        )));
    }
    match grant {
        GrantType::ClientCredentials => client_credentials::grant(app, client, form, now).await,
        GrantType::AuthorizationCode => authorization_code::grant(app, client, form, now).await,
        GrantType::RefreshToken => refresh::grant(app, client, form, now).await,
        GrantType::Password => password::grant(app, client, form, peer, now).await,
        GrantType::DeviceCode => device_code::grant(app, client, form, now).await,
        GrantType::Implicit => Err(OAuthError::UnsupportedGrantType(
            "implicit tokens come from the authorization endpoint".into(),
        )),
    }
}

/// Asks the policy's external decision points about `request`, then decides it. The one impure step
/// before the pure decision, shared by every grant; `request.external` is replaced by what they answer.
pub async fn decide(
    app: &App,
    policy: &Policy,
    request: IssuanceRequest<'_>,
) -> Result<Decision, OAuthError> {
    let fetched = external::fetch(
        &app.http,
        policy,
        external::Asking {
            client: &request.client.spec,
            subject: request.subject,
            grant_type: request.grant_type,
            user_present: request.user_present,
            requested: request.requested,
            now: request.now,
        },
    )
    .await;
    issuance::decide(
        policy,
        &IssuanceRequest {
            external: &fetched,
            ..request
        },
    )
}

/// Claims of an RFC 9068 JWT access token.
#[derive(Debug, Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a [String],
    client_id: &'a str,
    scope: String,
    jti: &'a str,
    iat: i64,
    exp: i64,
}

/// Signs and records an access token for `decision`, then returns the response.
///
/// The `TokenIssued` event is durable before this returns: no token leaves the server that the ledger
/// does not hold.
pub async fn issue_access_token(
    app: &App,
    policy: &Policy,
    client: &Client,
    subject: &str,
    grant: GrantType,
    decision: Decision,
    delegation_id: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let (response, request) =
        prepare_access_token(app, policy, client, subject, grant, &decision, delegation_id).await?;
    record(app, request).await?;
    Ok(response)
}

/// Appends what a grant recorded, mapping a store failure to the OAuth error the client sees.
pub async fn record(app: &App, request: AppendRequest) -> Result<crate::store::AppendResult, OAuthError> {
    app.store.append(request).await.map_err(|e| match e {
        crate::store::AppendError::Store(s) => OAuthError::from(s),
        other => OAuthError::internal("recording the token", other),
    })
}

/// Signs an access token for `decision` and returns the response with the append that records it; the
/// caller appends it (with whatever else the grant records) before answering.
pub async fn prepare_access_token(
    app: &App,
    policy: &Policy,
    client: &Client,
    subject: &str,
    grant: GrantType,
    decision: &Decision,
    delegation_id: Option<String>,
) -> Result<(TokenResponse, AppendRequest), OAuthError> {
    let key = app
        .keys
        .current(app.store.as_ref(), decision.issued_at)
        .await
        .map_err(|e| OAuthError::internal("signing key", e))?;
    let jti = crate::ids::id();
    let scopes = decision.scope_names();
    let scope = scopes.join(" ");
    let claims = AccessClaims {
        iss: &app.config.issuer,
        sub: subject,
        aud: &decision.audience,
        client_id: &client.spec.client_id,
        scope: scope.clone(),
        jti: &jti,
        iat: decision.issued_at,
        exp: decision.expires_at,
    };
    let token = key
        .sign("at+jwt", &claims)
        .map_err(|e| OAuthError::internal("signing", e))?;
    let event = Event::TokenIssued(TokenIssued {
        v: V1,
        jti: jti.clone(),
        kind: TokenKind::Access,
        client_id: client.spec.client_id.clone(),
        subject: subject.to_owned(),
        delegation_id,
        scopes,
        audience: decision.audience.clone(),
        kid: key.kid.clone(),
        grant_type: grant.name().into(),
        issued_at: decision.issued_at,
        expires_at: decision.expires_at,
        decision_trail: json!({ "scopes": decision.trail }),
        policy_version: Some(policy.version.clone()),
    });
    let request = AppendRequest::to_stream(event.stream_id(), ExpectedVersion::NoStream, vec![event])
        .with_metadata(projections::Metadata {
            request_id: None,
            actor: Some(format!("client:{}", client.spec.client_id)),
            policy_version: Some(policy.version.clone()),
        });
    Ok((
        TokenResponse {
            access_token: token,
            token_type: "Bearer",
            expires_in: decision.expires_at - decision.issued_at,
            scope: Some(scope),
            refresh_token: None,
            id_token: None,
        },
        request,
    ))
}
