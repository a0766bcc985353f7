//! The token endpoint's grant types: one file each, a closed enum, one exhaustive dispatch.

pub mod authorization_code;
pub mod ciba;
pub mod client_credentials;
pub mod device_code;
pub mod foreign_exchange;
pub mod jwt_bearer;
pub mod pace;
pub mod password;
pub mod redemption;
pub mod refresh;
pub mod token_exchange;
pub mod user_absent;

use std::net::SocketAddr;

use projections::Event;
use projections::clients::Client;
use projections::event::{Actor, Party, TokenIssued, TokenKind, UnixSeconds, V1};
use serde::Serialize;
use serde_json::{Value, json};

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
    /// RFC 8693: a token of this server exchanged for a narrower or re-targeted access token.
    TokenExchange,
    /// RFC 7523 §2.1: a JWT from a trusted issuer naming the user.
    JwtBearer,
    /// RFC 8628: a device polls while its user answers on the verification page.
    DeviceCode,
    /// OpenID CIBA Core: the client polls (or is pinged) while its user answers on `/approvals`.
    Ciba,
    /// draft-ideskog-assisted-token: a page of this server, framed by the client's registered origin,
    /// posts it an access token; never accepted at the token endpoint.
    AssistedToken,
}

/// The assisted token flow's identifier (draft-ideskog-assisted-token, as Curity names it): listed among a
/// client's grant types to allow `/assisted-token`, and recorded as its delegations' grant type.
pub const ASSISTED_TOKEN: &str = "urn:curity:params:grant-type:assisted-token";

impl GrantType {
    /// Parses the `grant_type` parameter.
    pub fn parse(value: &str) -> Result<GrantType, OAuthError> {
        match value {
            "client_credentials" => Ok(GrantType::ClientCredentials),
            "authorization_code" => Ok(GrantType::AuthorizationCode),
            "refresh_token" => Ok(GrantType::RefreshToken),
            "password" => Ok(GrantType::Password),
            token_exchange::GRANT_TYPE => Ok(GrantType::TokenExchange),
            jwt_bearer::GRANT_TYPE => Ok(GrantType::JwtBearer),
            DEVICE_CODE => Ok(GrantType::DeviceCode),
            ciba::GRANT_TYPE => Ok(GrantType::Ciba),
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
            GrantType::TokenExchange => token_exchange::GRANT_TYPE,
            GrantType::JwtBearer => jwt_bearer::GRANT_TYPE,
            GrantType::DeviceCode => DEVICE_CODE,
            GrantType::Ciba => ciba::GRANT_TYPE,
            GrantType::AssistedToken => ASSISTED_TOKEN,
        }
    }
}

/// What the token request proved about the client's key (RFC 9449), which every token it issues is
/// bound to.
///
/// It is a property of the token request, not of any grant: the token endpoint checks the proof once
/// and runs the grant inside [`bound`], and the two places every grant issues through read it —
/// [`prepare_access_token`] (the access token's `cnf.jkt`, `token_type: DPoP`) and
/// [`refresh::mint`] (a public client's refresh token). A grant that must also compare it with what it
/// redeems (a bound refresh token) reads [`binding`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    /// The JWK thumbprint of the key the request's DPoP proof was signed with.
    pub jkt: Option<String>,
    /// Whether refresh tokens are bound too: only a public client's (RFC 9449 §5); a confidential
    /// client's refresh tokens are already bound to its credentials.
    pub refresh_tokens: bool,
}

impl Binding {
    /// The key a refresh token minted now is bound to.
    pub fn refresh_jkt(&self) -> Option<String> {
        self.jkt.clone().filter(|_| self.refresh_tokens)
    }
}

tokio::task_local! {
    static BINDING: Binding;
}

/// Runs `grant` (a [`dispatch`]) with the request's DPoP binding in force.
pub async fn bound<F: std::future::Future>(binding: Binding, grant: F) -> F::Output {
    BINDING.scope(binding, grant).await
}

/// The DPoP binding of the token request being served; none outside [`bound`] (the authorization
/// endpoint's implicit tokens, the benchmarks).
pub fn binding() -> Binding {
    BINDING.try_with(Binding::clone).unwrap_or_default()
}

/// The `token_type` of a DPoP-bound access token (RFC 9449 §5).
pub const DPOP_TOKEN_TYPE: &str = "DPoP";

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// RFC 8693 §2.2.1: what `access_token` holds, in a token exchange response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
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
        GrantType::TokenExchange => token_exchange::grant(app, client, form, now).await,
        GrantType::JwtBearer => jwt_bearer::grant(app, client, form, now).await,
        GrantType::DeviceCode => device_code::grant(app, client, form, now).await,
        GrantType::Ciba => ciba::grant(app, client, form, now).await,
        GrantType::Implicit => Err(OAuthError::UnsupportedGrantType(
            "implicit tokens come from the authorization endpoint".into(),
        )),
        GrantType::AssistedToken => Err(OAuthError::UnsupportedGrantType(
            "assisted tokens come from /assisted-token".into(),
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
    #[serde(skip_serializing_if = "Option::is_none")]
    act: Option<&'a Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    may_act: Option<&'a Party>,
    /// RFC 9449 §6.1: the key the token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Confirmation<'a>>,
}

/// RFC 7800 confirmation claim, by JWK SHA-256 thumbprint (RFC 9449 §6.1).
#[derive(Debug, Serialize)]
struct Confirmation<'a> {
    jkt: &'a str,
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
        // Only an assertion is claimed with an issuance: another request used it first.
        crate::store::AppendError::Claimed { .. } => {
            OAuthError::InvalidGrant("the assertion was already used".into())
        }
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
    prepare_exchanged_token(
        app,
        policy,
        client,
        subject,
        grant,
        decision,
        delegation_id,
        Exchanged::default(),
    )
    .await
}

/// What a token exchange adds to the token it issues.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exchanged {
    /// RFC 8693 §4.1 `act`: signed into the token and recorded in its `TokenIssued`.
    pub act: Option<Actor>,
    /// Which tokens were exchanged (by `jti` or hash), kept in the decision trail for auditors.
    pub from: Option<Value>,
}

/// [`prepare_access_token`] for a token exchange: `exchanged.act` acts for the subject. Every access
/// token also carries the client's `may_act`, if it names one.
#[allow(clippy::too_many_arguments)]
pub async fn prepare_exchanged_token(
    app: &App,
    policy: &Policy,
    client: &Client,
    subject: &str,
    grant: GrantType,
    decision: &Decision,
    delegation_id: Option<String>,
    exchanged: Exchanged,
) -> Result<(TokenResponse, AppendRequest), OAuthError> {
    let Exchanged { act, from } = exchanged;
    let key = app
        .keys
        .current(app.store.as_ref(), decision.issued_at)
        .await
        .map_err(|e| OAuthError::internal("signing key", e))?;
    let jti = crate::ids::id();
    let dpop_jkt = binding().jkt;
    for t in &decision.trail {
        metrics::counter!("issuance_scopes_total", "grant" => grant.name(), "outcome" => t.outcome.name())
            .increment(1);
    }
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
        act: act.as_ref(),
        may_act: client.spec.may_act.as_ref(),
        cnf: dpop_jkt.as_deref().map(|jkt| Confirmation { jkt }),
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
        decision_trail: match from {
            Some(from) => json!({ "scopes": decision.trail, "exchanged": from }),
            None => json!({ "scopes": decision.trail }),
        },
        policy_version: Some(policy.version.clone()),
        act,
        may_act: client.spec.may_act.clone(),
        dpop_jkt: dpop_jkt.clone(),
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
            issued_token_type: None,
            token_type: if dpop_jkt.is_some() {
                DPOP_TOKEN_TYPE
            } else {
                "Bearer"
            },
            expires_in: decision.expires_at - decision.issued_at,
            scope: Some(scope),
            refresh_token: None,
            id_token: None,
        },
        request,
    ))
}

/// Adds to a new delegation's issuance for `user` what its access token comes with: a refresh token when
/// the client may refresh, and an ID token when `openid` was granted (with the sign-in's `auth` and the
/// authorization request's `nonce`). Returns the append with their records.
#[allow(clippy::too_many_arguments)] // the issuance's facts, the response it completes and its instant
pub(crate) async fn with_user_tokens(
    app: &App,
    policy: &Policy,
    client: &Client,
    user: &projections::users::User,
    auth: &projections::event::AuthContext,
    nonce: Option<&str>,
    decision: &Decision,
    delegation_id: &str,
    response: &mut TokenResponse,
    mut append: AppendRequest,
    now: UnixSeconds,
) -> Result<AppendRequest, OAuthError> {
    let scopes = decision.scope_names();
    if client
        .spec
        .grant_types
        .iter()
        .any(|g| g == GrantType::RefreshToken.name())
    {
        let (value, minted) = refresh::mint(refresh::Minting {
            delegation_id,
            client_id: &client.spec.client_id,
            subject: &user.subject,
            scopes: scopes.clone(),
            now,
            lifetime_seconds: app.config.tokens.refresh_token_seconds,
            parent_hash: None,
        })?;
        response.refresh_token = Some(value);
        append = append.and(minted);
    }
    if scopes.iter().any(|s| s == crate::oidc::OPENID) {
        let (jwt, recorded) = crate::oidc::id_token(
            app,
            crate::oidc::IdTokenFor {
                client,
                user,
                auth,
                nonce,
                scopes: &scopes,
                delegation_id,
                policy_version: &policy.version,
                now,
            },
        )
        .await?;
        response.id_token = Some(jwt);
        append = append.and(recorded);
    }
    Ok(append)
}
