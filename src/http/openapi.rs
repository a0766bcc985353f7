//! `GET /openapi.json`: the OpenAPI document, generated from the handlers' annotations.
//!
//! The document must describe the API as it behaves: every status an endpoint can answer, the request
//! constraints the server enforces (and no others: a value the document forbids must be refused), and the
//! authentication each endpoint needs. `scripts/schemathesis` checks it against a live server in CI.

use std::collections::BTreeMap;

use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// `grant_type=client_credentials` (RFC 6749 §4.4).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum ClientCredentialsGrant {
    ClientCredentials,
}

/// `grant_type=authorization_code` (RFC 6749 §4.1.3).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum AuthorizationCodeGrant {
    AuthorizationCode,
}

/// `grant_type=refresh_token` (RFC 6749 §6).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum RefreshTokenGrant {
    RefreshToken,
}

/// `grant_type=password` (RFC 6749 §4.3).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum PasswordGrant {
    Password,
}

/// `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum TokenExchangeGrant {
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

/// A token type this server reads as a subject token (RFC 8693 §3); `jwt` is a token of a trusted
/// issuer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum SubjectTokenType {
    #[serde(rename = "urn:ietf:params:oauth:token-type:access_token")]
    AccessToken,
    #[serde(rename = "urn:ietf:params:oauth:token-type:refresh_token")]
    RefreshToken,
    #[serde(rename = "urn:ietf:params:oauth:token-type:id_token")]
    IdToken,
    #[serde(rename = "urn:ietf:params:oauth:token-type:jwt")]
    Jwt,
}

/// A token type a client may ask a token exchange for.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum RequestedTokenType {
    #[serde(rename = "urn:ietf:params:oauth:token-type:access_token")]
    AccessToken,
    #[serde(rename = "urn:ietf:params:oauth:token-type:refresh_token")]
    RefreshToken,
}

/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523 §2.1).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum JwtBearerGrant {
    #[serde(rename = "urn:ietf:params:oauth:grant-type:jwt-bearer")]
    JwtBearer,
}

/// `grant_type=urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum DeviceCodeGrant {
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
}

/// `grant_type=urn:openid:params:grant-type:ciba` (OpenID CIBA Core §10.1).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum CibaGrant {
    #[serde(rename = "urn:openid:params:grant-type:ciba")]
    Ciba,
}

/// `POST /token` with the client credentials grant. Client authentication goes in `Authorization: Basic`
/// (`client_secret_basic`) or in the form (`client_secret_post`, `private_key_jwt`, or `client_id` alone
/// for a public client); more than one method is refused with 401.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ClientCredentialsForm {
    grant_type: ClientCredentialsGrant,
    /// Space-delimited scopes; the client's defaults when absent.
    #[schema(nullable = false)]
    scope: Option<String>,
    /// RFC 8707 resource indicator: the token's audience.
    #[schema(nullable = false)]
    resource: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// For `client_secret_post`; needs `client_id`.
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`; read only with `client_assertion`.
    #[schema(nullable = false)]
    client_assertion_type: Option<String>,
    #[schema(nullable = false)]
    client_assertion: Option<String>,
    /// Unknown parameters are ignored (RFC 6749 §3.2); each parameter appears once.
    #[serde(flatten)]
    other: BTreeMap<String, String>,
}

/// `POST /token` redeeming an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.5).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuthorizationCodeForm {
    grant_type: AuthorizationCodeGrant,
    #[schema(min_length = 1)]
    code: String,
    /// Required when the authorization request carried one, and then identical.
    #[schema(nullable = false)]
    redirect_uri: Option<String>,
    /// Required when the authorization request carried a `code_challenge`.
    #[schema(nullable = false)]
    code_verifier: Option<String>,
    #[schema(nullable = false)]
    resource: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`; read only with `client_assertion`.
    #[schema(nullable = false)]
    client_assertion_type: Option<String>,
    #[schema(nullable = false)]
    client_assertion: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, String>,
}

/// `POST /token` with a refresh token (RFC 6749 §6); the refresh token rotates.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RefreshTokenForm {
    grant_type: RefreshTokenGrant,
    #[schema(min_length = 1)]
    refresh_token: String,
    /// May narrow the granted scopes, never widen them.
    #[schema(nullable = false)]
    scope: Option<String>,
    /// May narrow the granted audiences, never change them (`invalid_target`).
    #[schema(nullable = false)]
    resource: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`; read only with `client_assertion`.
    #[schema(nullable = false)]
    client_assertion_type: Option<String>,
    #[schema(nullable = false)]
    client_assertion: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, String>,
}

/// `POST /token` with a user's password (RFC 6749 §4.3), for clients registered with the `password`
/// grant type. Failed passwords count toward the same limits as the sign-in page.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PasswordForm {
    grant_type: PasswordGrant,
    #[schema(min_length = 1)]
    username: String,
    #[schema(min_length = 1)]
    password: String,
    #[schema(nullable = false)]
    scope: Option<String>,
    #[schema(nullable = false)]
    resource: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`; read only with `client_assertion`.
    #[schema(nullable = false)]
    client_assertion_type: Option<String>,
    #[schema(nullable = false)]
    client_assertion: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, String>,
}

/// `POST /token` exchanging one of this server's tokens (RFC 8693), for clients registered with the
/// token exchange grant type and `token_exchange` settings. A subject or actor token that is not active
/// is `invalid_grant`; what the client's settings or the subject token's `may_act` refuse (a missing or
/// other actor, impersonation, a refresh token) is `invalid_request`; a scope beyond the subject token's
/// is `invalid_scope`; an audience the client did not register is `invalid_target`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenExchangeForm {
    grant_type: TokenExchangeGrant,
    /// An access token, a refresh token of this client, or an ID token whose `aud` is this client.
    #[schema(min_length = 1)]
    subject_token: String,
    subject_token_type: SubjectTokenType,
    /// One of this server's access tokens issued to this client; its subject acts for the subject token's.
    /// Required when the subject token carries `may_act`.
    #[schema(nullable = false)]
    actor_token: Option<String>,
    /// `urn:ietf:params:oauth:token-type:access_token`; required with `actor_token`, refused without it.
    #[schema(nullable = false)]
    actor_token_type: Option<String>,
    /// Access token by default; a refresh token only where the client's settings allow it.
    #[schema(nullable = false)]
    requested_token_type: Option<RequestedTokenType>,
    /// Narrows the subject token's scopes, never widens them.
    #[schema(nullable = false)]
    scope: Option<String>,
    /// RFC 8707: one of the client's registered resources.
    #[schema(nullable = false)]
    resource: Option<String>,
    /// The same as `resource`; when both are given they must be equal.
    #[schema(nullable = false)]
    audience: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`; read only with `client_assertion`.
    #[schema(nullable = false)]
    client_assertion_type: Option<String>,
    #[schema(nullable = false)]
    client_assertion: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, String>,
}

/// `POST /token` with a JWT from a trusted issuer naming the user (RFC 7523 §2.1), for clients
/// registered with the grant type. The user is absent: a consent-requiring scope is issued only on a
/// standing consent in the ledger. An assertion is used once.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JwtBearerForm {
    grant_type: JwtBearerGrant,
    /// The signed JWT (RFC 7523 §3): `iss` a trusted issuer, `sub` the user, `aud` this server's issuer
    /// or token endpoint, `exp`, `jti`; signed with an asymmetric algorithm the issuer is allowed.
    #[schema(min_length = 1)]
    assertion: String,
    /// Space-delimited scopes, bounded by what the issuer may obtain; the client's defaults when absent.
    #[schema(nullable = false)]
    scope: Option<String>,
    #[schema(nullable = false)]
    resource: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`; read only with `client_assertion`.
    #[schema(nullable = false)]
    client_assertion_type: Option<String>,
    #[schema(nullable = false)]
    client_assertion: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, String>,
}

/// `POST /token` polling with a device code (RFC 8628 §3.4) until the user has answered on the
/// verification page: `authorization_pending`, `slow_down` (the interval grows by 5 seconds),
/// `access_denied`, `expired_token`, then the tokens once.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeviceCodeForm {
    grant_type: DeviceCodeGrant,
    #[schema(min_length = 1)]
    device_code: String,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`; read only with `client_assertion`.
    #[schema(nullable = false)]
    client_assertion_type: Option<String>,
    #[schema(nullable = false)]
    client_assertion: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, String>,
}

/// `POST /token` with an `auth_req_id` (OpenID CIBA Core §10.1): in poll mode until the user has
/// answered on `/approvals` (`authorization_pending`, `slow_down`, `access_denied`, `expired_token`), in
/// ping mode once the server pinged; then the tokens, once.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CibaForm {
    grant_type: CibaGrant,
    #[schema(min_length = 1)]
    auth_req_id: String,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`; read only with `client_assertion`.
    #[schema(nullable = false)]
    client_assertion_type: Option<String>,
    #[schema(nullable = false)]
    client_assertion: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, String>,
}

/// Form body of `POST /bc-authorize` (OpenID CIBA Core §7.1), plus client authentication as at `/token`.
/// Exactly one of `login_hint` and `id_token_hint`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BackchannelAuthenticationForm {
    /// Space-delimited scopes; must include `openid`.
    scope: String,
    /// The user's username.
    #[schema(nullable = false)]
    login_hint: Option<String>,
    /// An ID token this server issued to the client (it may have expired).
    #[schema(nullable = false)]
    id_token_hint: Option<String>,
    /// Shown to the user on the approvals page: 1 to 64 characters, no control characters.
    #[schema(nullable = false, max_length = 64)]
    binding_message: Option<String>,
    /// Seconds the request may wait, up to `ciba.expiry_seconds`.
    #[schema(nullable = false)]
    requested_expiry: Option<String>,
    /// Ping mode: the bearer token the server pings the client's notification endpoint with.
    #[schema(nullable = false, max_length = 1024)]
    client_notification_token: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`; read only with `client_assertion`.
    #[schema(nullable = false)]
    client_assertion_type: Option<String>,
    #[schema(nullable = false)]
    client_assertion: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, String>,
}

/// OpenID CIBA Core §7.3: the client polls `/token` with `auth_req_id` (poll mode) or waits for the
/// ping (ping mode).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BackchannelAuthenticationSchema {
    auth_req_id: String,
    expires_in: i64,
    /// Seconds between polls.
    interval: i64,
}

/// Form body of `POST /device_authorization` (RFC 8628 §3.1), plus client authentication as at `/token`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeviceAuthorizationForm {
    /// Space-delimited scopes; the client's defaults when absent.
    #[schema(nullable = false)]
    scope: Option<String>,
    /// RFC 8707 resource indicator: one of the client's `resources`.
    #[schema(nullable = false)]
    resource: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`; read only with `client_assertion`.
    #[schema(nullable = false)]
    client_assertion_type: Option<String>,
    #[schema(nullable = false)]
    client_assertion: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, String>,
}

/// RFC 8628 §3.2: the device shows `user_code` and `verification_uri`, then polls `/token`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeviceAuthorizationSchema {
    device_code: String,
    /// Eight letters from `BCDFGHJKLMNPQRSTVWXZ`, shown as `WDJB-MJHT`; typed in any case, with or without
    /// the dash.
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    expires_in: i64,
    /// Seconds between polls.
    interval: i64,
}

/// Form body of `POST /token`: one of the supported grants.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum TokenForm {
    ClientCredentials(ClientCredentialsForm),
    AuthorizationCode(AuthorizationCodeForm),
    RefreshToken(RefreshTokenForm),
    Password(PasswordForm),
    DeviceCode(DeviceCodeForm),
    Ciba(CibaForm),
    TokenExchange(TokenExchangeForm),
    JwtBearer(JwtBearerForm),
}

/// Form body of `POST /introspect` and `POST /revoke`, plus client authentication as at `/token`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenParam {
    #[schema(min_length = 1)]
    token: String,
    /// `access_token` or `refresh_token`. A hint only: every token is looked up whatever it says.
    #[schema(nullable = false)]
    token_type_hint: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`; read only with `client_assertion`.
    #[schema(nullable = false)]
    client_assertion_type: Option<String>,
    #[schema(nullable = false)]
    client_assertion: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, String>,
}

/// Form body of `POST /par` (RFC 9126) and `POST /authorize`: the authorization request's parameters
/// (see `GET /authorize`), plus client authentication at `/par`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuthorizationForm {
    /// Required at `/authorize`; at `/par` it must match the authenticated client.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// `code`, or `token` for clients that enable implicit.
    #[schema(nullable = false)]
    response_type: Option<String>,
    /// One of the client's registered redirect URIs; may be left out when it has exactly one.
    #[schema(nullable = false)]
    redirect_uri: Option<String>,
    #[schema(nullable = false)]
    scope: Option<String>,
    #[schema(nullable = false)]
    state: Option<String>,
    #[schema(nullable = false)]
    nonce: Option<String>,
    /// RFC 7636; required by default.
    #[schema(nullable = false)]
    code_challenge: Option<String>,
    /// `S256` only.
    #[schema(nullable = false)]
    code_challenge_method: Option<String>,
    /// `none`, `login`, `consent`, `select_account`.
    #[schema(nullable = false)]
    prompt: Option<String>,
    #[schema(nullable = false)]
    max_age: Option<String>,
    #[schema(nullable = false)]
    acr_values: Option<String>,
    /// `query`, `fragment`, `form_post`.
    #[schema(nullable = false)]
    response_mode: Option<String>,
    /// RFC 9396 JSON array.
    #[schema(nullable = false)]
    authorization_details: Option<String>,
    /// RFC 8707.
    #[schema(nullable = false)]
    resource: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`; read only with `client_assertion`.
    #[schema(nullable = false)]
    client_assertion_type: Option<String>,
    #[schema(nullable = false)]
    client_assertion: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, String>,
}

/// An RFC 6749 §5.2 error.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`,
    /// `invalid_scope`, `invalid_target`, `invalid_request_uri`, `invalid_dpop_proof`, `use_dpop_nonce`,
    /// `server_error` or `temporarily_unavailable` (at `/userinfo`: `invalid_token`, `insufficient_scope`).
    error: String,
    #[schema(nullable = false)]
    error_description: Option<String>,
}

/// An admin API error.
#[derive(Serialize, ToSchema)]
pub struct AdminErrorBody {
    /// `unauthorized`, `not_found`, `conflict`, `invalid_request` or `server_error`.
    error: String,
    error_description: String,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
pub struct TokenResponseSchema {
    /// An RFC 9068 JWT (`typ: at+jwt`); with a DPoP proof it carries `cnf.jkt`, the key's thumbprint.
    access_token: String,
    /// Token exchange only (RFC 8693 §2.2.1): `urn:ietf:params:oauth:token-type:access_token`.
    #[schema(nullable = false)]
    issued_token_type: Option<String>,
    /// `Bearer`, or `DPoP` when the request carried a DPoP proof (RFC 9449 §5).
    token_type: String,
    expires_in: i64,
    #[schema(nullable = false)]
    scope: Option<String>,
    #[schema(nullable = false)]
    refresh_token: Option<String>,
    #[schema(nullable = false)]
    id_token: Option<String>,
}

/// An RFC 7662 introspection response; only `active` when the token is not active or not the caller's
/// to see.
#[derive(Serialize, ToSchema)]
pub struct IntrospectionSchema {
    active: bool,
    #[schema(nullable = false)]
    scope: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    sub: Option<String>,
    #[schema(nullable = false)]
    aud: Option<Vec<String>>,
    #[schema(nullable = false)]
    iss: Option<String>,
    #[schema(nullable = false)]
    exp: Option<i64>,
    #[schema(nullable = false)]
    iat: Option<i64>,
    #[schema(nullable = false)]
    jti: Option<String>,
    /// `Bearer`, `DPoP` (bound to a key: see `cnf`) or `refresh_token`.
    #[schema(nullable = false)]
    token_type: Option<String>,
    /// RFC 8693 §4.1: who acts for the subject (`sub`), nested (`act`) for each earlier actor.
    #[schema(nullable = false, value_type = Option<Object>)]
    act: Option<serde_json::Value>,
    /// RFC 8693 §4.4: the one party (`sub`) that may act for the subject with this token.
    #[schema(nullable = false, value_type = Option<Object>)]
    may_act: Option<serde_json::Value>,
    /// RFC 9449 §6.2: the key a DPoP-bound access token is bound to.
    #[schema(nullable = false)]
    cnf: Option<ConfirmationSchema>,
}

/// RFC 7800 confirmation by JWK SHA-256 thumbprint (RFC 9449 §6).
#[derive(Serialize, ToSchema)]
pub struct ConfirmationSchema {
    /// base64url SHA-256 thumbprint (RFC 7638) of the DPoP key.
    jkt: String,
}

/// A pushed authorization request's handle (RFC 9126 §2.2).
#[derive(Serialize, ToSchema)]
pub struct PushedSchema {
    request_uri: String,
    expires_in: i64,
}

/// Who a client is, as the policies see it.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum ClientKindSchema {
    FirstParty,
    ThirdParty,
}

/// Whether a client acts for people or for itself.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum ClientAudienceSchema {
    Machine,
    Human,
}

/// A grant type a client may be registered for.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum GrantTypeSchema {
    ClientCredentials,
    AuthorizationCode,
    RefreshToken,
    Implicit,
    Password,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:jwt-bearer")]
    JwtBearer,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
    #[serde(rename = "urn:openid:params:grant-type:ciba")]
    Ciba,
}

/// How a CIBA client hears that its user answered.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum DeliveryModeSchema {
    Poll,
    Ping,
}

/// How a client authenticates at the token, introspection and revocation endpoints.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum AuthMethodSchema {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

/// A client registration (`POST /admin/clients`, `PUT /admin/clients/{id}`). Rules across fields are
/// checked too and answer 400: redirect URIs are absolute `https`, loopback `http`, or (public clients
/// only) a private-use scheme, never with a fragment; `private_key_jwt` needs `jwks`; a resource server
/// names its `resources` and is confidential; a public client cannot use `client_credentials` or token
/// exchange; `token_exchange` comes with the token exchange grant type (and its `refresh_tokens` with
/// `refresh_token`); `jwks_uri` is refused.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ClientRegistration {
    /// 1 to 128 bytes, without `:`.
    #[schema(min_length = 1, max_length = 128, pattern = "^[^:]+$")]
    client_id: String,
    /// 1 to 200 bytes.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[serde(default)]
    kind: ClientKindSchema,
    #[serde(default)]
    audience: ClientAudienceSchema,
    #[serde(default)]
    dynamically_registered: bool,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    grant_types: Vec<GrantTypeSchema>,
    #[serde(default)]
    scopes: Vec<String>,
    /// `client_secret_basic` when absent; a secret is generated for the `client_secret_*` methods.
    #[serde(default)]
    token_endpoint_auth_method: AuthMethodSchema,
    /// Ignored: the only secret is the one the server generates.
    secret_hash: Option<String>,
    /// A JWK Set, for `private_key_jwt`.
    #[schema(value_type = Value)]
    jwks: Option<serde_json::Value>,
    /// Refused: not fetched by this server.
    jwks_uri: Option<String>,
    /// RFC 8707 resource indicators; the first is the client's default audience.
    #[serde(default)]
    resources: Vec<String>,
    /// Any JSON value, kept as given.
    #[serde(default)]
    #[schema(value_type = Value)]
    metadata: serde_json::Value,
    #[serde(default)]
    require_pushed_authorization_requests: bool,
    delegation_lifetime_seconds: Option<i64>,
    /// How long a consent given to this client stands, in seconds (1 to 315360000, ten years); the
    /// shorter of this and the scope's `consent_lifetime_seconds` applies. Until revoked when absent.
    #[schema(minimum = 1, maximum = 315_360_000)]
    consent_lifetime_seconds: Option<i64>,
    #[serde(default)]
    refresh_reuse_grace_seconds: u32,
    #[serde(default)]
    resource_server: bool,
    /// RS256 when absent.
    id_token_signed_response_alg: Option<IdTokenAlg>,
    /// With the `password` grant type: users with a second factor may sign in with the password alone.
    #[serde(default)]
    password_grant_second_factor_users: bool,
    /// RFC 9449 §5.2: every token request must carry a `DPoP` proof, so every access token is bound to
    /// the client's key. Not with the `implicit` grant type.
    #[serde(default)]
    dpop_bound_access_tokens: bool,
    /// Required with the token exchange grant type, refused without it; not for a public client.
    token_exchange: Option<TokenExchangeSchema>,
    /// The subject (1 to 255 bytes) of the one actor that may exchange this client's access tokens.
    #[schema(min_length = 1, max_length = 255)]
    may_act: Option<String>,
    /// Required with the CIBA grant type, refused without it; `push` is not supported.
    backchannel_token_delivery_mode: Option<DeliveryModeSchema>,
    /// Ping mode only, and required there: `https`, or `http` on a loopback address.
    backchannel_client_notification_endpoint: Option<String>,
    /// The assisted token flow (`/assisted-token`): exact origins `scheme://host[:port]` (`https`, or
    /// `http` on loopback; at most 16). Required with the grant type
    /// `urn:curity:params:grant-type:assisted-token`, refused without it; only for a public client.
    #[serde(default)]
    allowed_origins: Vec<String>,
    /// An auditor: granted the `audit` scope by `client_credentials` (the audit API). Needs that grant
    /// type; not with `dynamically_registered`. Only an auditor may list `audit` in `scopes`.
    #[serde(default)]
    auditor: bool,
}

/// What a client may do with token exchange (RFC 8693). At least one of `impersonation` and `actors`
/// must allow something.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenExchangeSchema {
    /// May exchange without an actor token: the new token is the subject's alone.
    #[serde(default)]
    impersonation: bool,
    /// `true` (any actor), `false` (none), or the subjects that may act.
    #[serde(default)]
    actors: ActorsSchema,
    /// May ask for a refresh token in its own delegations; needs the `refresh_token` grant type.
    #[serde(default)]
    refresh_tokens: bool,
}

/// Which actors a client may present.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum ActorsSchema {
    Any(bool),
    Only(Vec<String>),
}

/// An ID token signing algorithm a client may register.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum IdTokenAlg {
    RS256,
    ES256,
    EdDSA,
}

/// A disable request's reason.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DisableRequest {
    reason: Option<String>,
}

/// The positional form of [`DisableRequest`]: `[]` or `[reason]`, which the JSON reader also accepts.
pub struct PositionalDisableRequest;

impl utoipa::PartialSchema for PositionalDisableRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])))
            .max_items(Some(1))
            .into()
    }
}

impl ToSchema for PositionalDisableRequest {}

/// Body of `POST /admin/clients/{id}/disable`.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum DisableBody {
    Named(DisableRequest),
    Positional(PositionalDisableRequest),
}

// Responses every endpoint of a kind shares. utoipa takes them per path; these notes keep them aligned:
// - a store-backed OAuth endpoint answers 503 `temporarily_unavailable` with `Retry-After` when the
//   database is down, and 500 `server_error` for anything else that fails;
// - client authentication failures answer 401 `invalid_client` with a `WWW-Authenticate: Basic` challenge
//   that names the error;
// - a form body that is not `application/x-www-form-urlencoded`, over the body limit, or repeats a
//   parameter answers 400 `invalid_request`;
// - the admin API checks its token before it reads the JSON body: 401 comes first, then body errors
//   (400, 413, 415, 422, plain text); its 503 is `temporarily_unavailable` with `Retry-After`.

#[utoipa::path(post, path = "/token", tag = "oauth", security(("client_basic" = []), ()),
    description = "With a `DPoP` proof (RFC 9449) for `POST` on this URL, the access token is bound to the proof's key (`token_type: DPoP`), and so is a public client's refresh token, which then refreshes only with a proof by the same key.",
    params(("DPoP" = Option<String>, Header, description = "RFC 9449 proof: a JWS with `typ: dpop+jwt`, an asymmetric `alg` from `dpop_signing_alg_values_supported`, the public `jwk`; claims `jti`, `htm`, `htu`, `iat` and, when the server requires one, `nonce`. Required for clients registered with `dpop_bound_access_tokens`.")),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponseSchema, headers(("Cache-Control" = String, description = "`no-store`"),
            ("DPoP-Nonce" = String, description = "When the server requires DPoP nonces: the nonce for the next proof"))),
        (status = 400, description = "`invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`, `invalid_target`, `invalid_dpop_proof`, `use_dpop_nonce`", body = ErrorBody,
            headers(("DPoP-Nonce" = String, description = "When the server requires DPoP nonces: the nonce to retry with"))),
        (status = 401, description = "`invalid_client`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 500, description = "`server_error`; for a device code or a CIBA `auth_req_id` also `authorization_pending`, `slow_down`, `access_denied`, `expired_token`", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`: the database is unavailable", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds to wait")))))]
#[allow(dead_code)]
fn token() {}

#[utoipa::path(post, path = "/device_authorization", tag = "oauth", security(("client_basic" = []), ()),
    description = "RFC 8628 §3.1: a device asks to be authorized. The user then types the code on `verification_uri` (a page for people, not in this document) while the device polls `POST /token` with `grant_type=urn:ietf:params:oauth:grant-type:device_code`.",
    request_body(content = DeviceAuthorizationForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = DeviceAuthorizationSchema, headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "`invalid_request`, `unauthorized_client` (the client is not registered for the device grant), `invalid_scope`, `invalid_target`", body = ErrorBody),
        (status = 401, description = "`invalid_client`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`: the database is unavailable, or too many device requests are waiting", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds to wait")))))]
#[allow(dead_code)]
fn device_authorization() {}

#[utoipa::path(post, path = "/bc-authorize", tag = "oauth", security(("client_basic" = []), ()),
    description = "OpenID CIBA Core §7: a client asks that a user approve, on this server's `/approvals` page (for people, not in this document), while it polls `POST /token` with `grant_type=urn:openid:params:grant-type:ciba` or, in ping mode, waits for the server's `POST` of `{\"auth_req_id\"}` to its notification endpoint with its `client_notification_token` as bearer token.",
    request_body(content = BackchannelAuthenticationForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = BackchannelAuthenticationSchema, headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "`invalid_request` (no hint, several, `login_hint_token`, `user_code`, a bad `requested_expiry`, ping without `client_notification_token`), `invalid_scope` (no `openid`), `unknown_user_id`, `invalid_binding_message`, `unauthorized_client` (the client is not registered for CIBA)", body = ErrorBody),
        (status = 401, description = "`invalid_client`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`: the database is unavailable, or too many requests are waiting", body = ErrorBody, headers(("Retry-After" = String, description = "Seconds to wait")))))]
#[allow(dead_code)]
fn bc_authorize() {}

#[utoipa::path(post, path = "/introspect", tag = "oauth", security(("client_basic" = []), ()),
    description = "Only authenticated confidential clients may introspect (a public client gets 401); a token that is not the caller's to see answers `{\"active\": false}`.",
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = IntrospectionSchema),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`invalid_client`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`", body = ErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn introspect() {}

#[utoipa::path(post, path = "/revoke", tag = "oauth", security(("client_basic" = []), ()),
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or not a token this client may revoke (RFC 7009 §2.2)"),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`invalid_client`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`", body = ErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn revoke() {}

#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "RFC 8414 authorization server metadata", body = Object)))]
#[allow(dead_code)]
fn oauth_metadata() {}

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "OpenID Connect discovery document: the same metadata", body = Object)))]
#[allow(dead_code)]
fn openid_configuration() {}

#[utoipa::path(get, path = "/jwks", tag = "discovery",
    responses(
        (status = 200, description = "JSON Web Key Set: current keys and retired keys whose tokens may be live", body = Object),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`", body = ErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn jwks() {}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process answers", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn healthz() {}

#[utoipa::path(get, path = "/metrics", tag = "operations", security(("admin_token" = [])),
    description = "Prometheus text format. The bearer token is the `metrics_token` (for a scraper; it can do nothing else) or the admin token.",
    responses((status = 200, description = "Every series", body = String, content_type = "text/plain"),
              (status = 401, description = "No or a wrong bearer token", body = String, content_type = "text/plain", headers(("WWW-Authenticate" = String))),
              (status = 404, description = "Neither `metrics_token` nor `admin_token` is configured", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Database reachable and migrated", body = String, content_type = "text/plain"),
              (status = 503, description = "Not ready", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn readyz() {}

#[utoipa::path(post, path = "/admin/clients", tag = "admin", security(("admin_token" = [])),
    request_body(content = ClientRegistration, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered; `client_secret` appears in this response only", body = Object),
        (status = 400, description = "The registration is invalid, or the body is not JSON", content((AdminErrorBody = "application/json"), (String = "text/plain"))),
        (status = 401, description = "A valid admin bearer token is required", body = AdminErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "The admin API is not enabled", body = AdminErrorBody),
        (status = 409, description = "The client exists", body = AdminErrorBody),
        (status = 413, description = "The body is over the limit", body = String, content_type = "text/plain"),
        (status = 415, description = "The body is not `application/json`", body = String, content_type = "text/plain"),
        (status = 422, description = "The JSON does not match the registration's fields", body = String, content_type = "text/plain"),
        (status = 500, description = "No randomness for the secret", body = AdminErrorBody),
        (status = 503, description = "The database is unavailable", body = AdminErrorBody)))]
#[allow(dead_code)]
fn admin_create() {}

#[utoipa::path(get, path = "/admin/clients", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every client, without secret hashes", body = Object),
        (status = 401, description = "A valid admin bearer token is required", body = AdminErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "The admin API is not enabled", body = AdminErrorBody),
        (status = 503, description = "The database is unavailable", body = AdminErrorBody)))]
#[allow(dead_code)]
fn admin_list() {}

#[utoipa::path(get, path = "/admin/clients/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, body = Object),
        (status = 401, description = "A valid admin bearer token is required", body = AdminErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "Unknown client, or the admin API is not enabled", body = AdminErrorBody),
        (status = 503, description = "The database is unavailable", body = AdminErrorBody)))]
#[allow(dead_code)]
fn admin_get() {}

#[utoipa::path(put, path = "/admin/clients/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path)),
    request_body(content = ClientRegistration, content_type = "application/json", description = "The whole registration; `client_id` must equal the path's. The secret stays."),
    responses(
        (status = 200, body = Object),
        (status = 400, description = "Invalid, `client_id` differs from the path, or the body is not JSON", content((AdminErrorBody = "application/json"), (String = "text/plain"))),
        (status = 401, description = "A valid admin bearer token is required", body = AdminErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "Unknown client, or the admin API is not enabled", body = AdminErrorBody),
        (status = 409, description = "The client changed meanwhile; retry", body = AdminErrorBody),
        (status = 413, description = "The body is over the limit", body = String, content_type = "text/plain"),
        (status = 415, description = "The body is not `application/json`", body = String, content_type = "text/plain"),
        (status = 422, description = "The JSON does not match the registration's fields", body = String, content_type = "text/plain"),
        (status = 503, description = "The database is unavailable", body = AdminErrorBody)))]
#[allow(dead_code)]
fn admin_update() {}

#[utoipa::path(post, path = "/admin/clients/{id}/disable", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path)), request_body(content = DisableBody, content_type = "application/json"),
    responses(
        (status = 200, body = Object),
        (status = 400, description = "The body is not JSON", body = String, content_type = "text/plain"),
        (status = 401, description = "A valid admin bearer token is required", body = AdminErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "Unknown client, or the admin API is not enabled", body = AdminErrorBody),
        (status = 409, description = "The client changed meanwhile; retry", body = AdminErrorBody),
        (status = 413, description = "The body is over the limit", body = String, content_type = "text/plain"),
        (status = 415, description = "The body is not `application/json`", body = String, content_type = "text/plain"),
        (status = 422, description = "The JSON does not match", body = String, content_type = "text/plain"),
        (status = 503, description = "The database is unavailable", body = AdminErrorBody)))]
#[allow(dead_code)]
fn admin_disable() {}

#[utoipa::path(post, path = "/admin/policy/reload", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "The new policy version, in force for the next token", body = Object),
        (status = 400, description = "The configuration is invalid; the previous policy stays", body = AdminErrorBody),
        (status = 401, description = "A valid admin bearer token is required", body = AdminErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "The admin API is not enabled", body = AdminErrorBody),
        (status = 503, description = "The policy could not be recorded", body = AdminErrorBody)))]
#[allow(dead_code)]
fn admin_reload_policy() {}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document", body = Object)))]
#[allow(dead_code)]
fn openapi() {}

#[utoipa::path(get, path = "/authorize", tag = "oauth",
    description = "Errors about the client or its redirect URI are shown to the user (400); every other error goes back to the client's redirect URI (303), as RFC 6749 §4.1.2.1 says, so the other parameters are not refused here.",
    params(("client_id" = String, Query, min_length = 1),
           ("response_type" = Option<String>, Query, description = "`code`, or `token` for clients that enable implicit"),
           ("redirect_uri" = Option<String>, Query, description = "A registered redirect URI; may be left out when the client has exactly one"),
           ("scope" = Option<String>, Query), ("state" = Option<String>, Query), ("nonce" = Option<String>, Query),
           ("code_challenge" = Option<String>, Query, description = "RFC 7636; required by default"),
           ("code_challenge_method" = Option<String>, Query, description = "`S256` only"),
           ("prompt" = Option<String>, Query, description = "`none`, `login`, `consent`, `select_account`"),
           ("max_age" = Option<String>, Query, description = "Seconds, at most ten years"), ("acr_values" = Option<String>, Query),
           ("response_mode" = Option<String>, Query, description = "`query`, `fragment`, `form_post`"),
           ("authorization_details" = Option<String>, Query, description = "RFC 9396 JSON array"),
           ("resource" = Option<String>, Query, description = "RFC 8707"),
           ("request_uri" = Option<String>, Query, description = "From `POST /par`; the other parameters then come from the pushed request")),
    responses(
        (status = 200, description = "The consent page, or a form_post response", body = String, content_type = "text/html"),
        (status = 303, description = "To sign-in, or to the client's redirect URI with a code, token or error", headers(("Location" = String))),
        (status = 400, description = "An error page: the client or redirect URI cannot be trusted, or the request is malformed", body = String, content_type = "text/html"),
        (status = 500, description = "An error page", body = String, content_type = "text/html"),
        (status = 503, description = "An error page: the database is unavailable", body = String, content_type = "text/html")))]
#[allow(dead_code)]
fn authorize() {}

#[utoipa::path(post, path = "/authorize", tag = "oauth",
    description = "The authorization request as a form (OpenID Connect Core §3.1.2.1), answered as `GET /authorize`.",
    request_body(content = AuthorizationForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The consent page, or a form_post response", body = String, content_type = "text/html"),
        (status = 303, description = "To sign-in, or to the client's redirect URI with a code, token or error", headers(("Location" = String))),
        (status = 400, description = "An error page", body = String, content_type = "text/html"),
        (status = 500, description = "An error page", body = String, content_type = "text/html"),
        (status = 503, description = "An error page: the database is unavailable", body = String, content_type = "text/html")))]
#[allow(dead_code)]
fn authorize_post() {}

#[utoipa::path(post, path = "/par", tag = "oauth", security(("client_basic" = []), ()),
    request_body(content = AuthorizationForm, content_type = "application/x-www-form-urlencoded",
                 description = "The authorization request's parameters, plus client authentication"),
    responses(
        (status = 201, description = "RFC 9126 §2.2", body = PushedSchema),
        (status = 400, description = "The request would be refused at `/authorize`", body = ErrorBody),
        (status = 401, description = "`invalid_client`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`", body = ErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn par() {}

#[utoipa::path(get, path = "/userinfo", tag = "oauth", security(("access_token" = ["openid"])),
    description = "A DPoP-bound token is accepted only as `Authorization: DPoP <token>` with a `DPoP` proof by its key (`htm`, `htu` this URL, `ath`); as `Bearer` it is refused.",
    params(("DPoP" = Option<String>, Header, description = "RFC 9449 proof, with `Authorization: DPoP`")),
    responses(
        (status = 200, description = "The user's claims, released by the token's scopes", body = Object,
            headers(("DPoP-Nonce" = String, description = "When the server requires DPoP nonces"))),
        (status = 401, description = "No token (bare `Bearer` and `DPoP` challenges), `invalid_token`, `invalid_dpop_proof` or `use_dpop_nonce`", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "A `Bearer` and a `DPoP algs=\"…\"` challenge; the one of the scheme that failed names the error"),
                    ("DPoP-Nonce" = String, description = "When the server requires DPoP nonces: the nonce to retry with"))),
        (status = 403, description = "`insufficient_scope`: the token was not granted `openid`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`", body = ErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn userinfo() {}

#[utoipa::path(post, path = "/userinfo", tag = "oauth", security(("access_token" = ["openid"])),
    description = "As `GET /userinfo` (OpenID Connect Core §5.3.1); the token goes in the `Authorization` header, and a DPoP proof's `htm` is `POST`.",
    params(("DPoP" = Option<String>, Header, description = "RFC 9449 proof, with `Authorization: DPoP`")),
    responses(
        (status = 200, description = "The user's claims, released by the token's scopes", body = Object,
            headers(("DPoP-Nonce" = String, description = "When the server requires DPoP nonces"))),
        (status = 401, description = "No token (bare `Bearer` and `DPoP` challenges), `invalid_token`, `invalid_dpop_proof` or `use_dpop_nonce`", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "A `Bearer` and a `DPoP algs=\"…\"` challenge; the one of the scheme that failed names the error"),
                    ("DPoP-Nonce" = String, description = "When the server requires DPoP nonces: the nonce to retry with"))),
        (status = 403, description = "`insufficient_scope`: the token was not granted `openid`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`", body = ErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn userinfo_post() {}

#[utoipa::path(get, path = "/audit/checkpoint-keys", tag = "audit",
    description = "The Ed25519 public keys (JWK `OKP`) that sign checkpoints; `kid` is each key's RFC 7638 thumbprint. Public, like `/jwks`.",
    responses(
        (status = 200, description = "A JWK set", body = Object),
        (status = 500, description = "A stored key is unreadable", body = AdminErrorBody),
        (status = 503, description = "The database is unavailable", body = AdminErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn audit_checkpoint_keys() {}

#[utoipa::path(get, path = "/audit/checkpoints", tag = "audit", security(("admin_token" = [])),
    description = "Signed checkpoints, largest first. Pass `next_before` as `before` for the next page.",
    params(
        ("before" = Option<u64>, Query, minimum = 1, maximum = 9223372036854775807_u64, description = "Only checkpoints of a smaller size"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 100)")),
    responses(
        (status = 200, description = "`{checkpoints: [...], next_before}`", body = Object),
        (status = 400, description = "A parameter is not a positive integer, or is repeated", body = AdminErrorBody),
        (status = 401, description = "A valid bearer token is required", body = AdminErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "The audit API is not enabled", body = AdminErrorBody),
        (status = 500, description = "The ledger could not be read", body = AdminErrorBody),
        (status = 503, description = "The database is unavailable", body = AdminErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn audit_checkpoints() {}

#[utoipa::path(get, path = "/audit/checkpoints/consistency", tag = "audit", security(("admin_token" = [])),
    description = "RFC 9162 consistency proof that the tree of checkpoint `to` extends that of checkpoint `from`.",
    params(
        ("from" = u64, Query, minimum = 1, maximum = 9223372036854775807_u64, description = "The earlier checkpoint's size"),
        ("to" = u64, Query, minimum = 1, maximum = 9223372036854775807_u64, description = "The later checkpoint's size, not smaller than `from`")),
    responses(
        (status = 200, description = "`{from, to, proof}`: both checkpoints and the proof's hashes (hex)", body = Object),
        (status = 400, description = "A parameter is missing, not a positive integer, or repeated, or `from` is larger than `to`", body = AdminErrorBody),
        (status = 401, description = "A valid bearer token is required", body = AdminErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "No checkpoint of one of the sizes, or the audit API is not enabled", body = AdminErrorBody),
        (status = 500, description = "The ledger could not be read", body = AdminErrorBody),
        (status = 503, description = "The database is unavailable", body = AdminErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn audit_consistency() {}

#[utoipa::path(get, path = "/audit/events/{position}/proof", tag = "audit", security(("admin_token" = [])),
    description = "RFC 9162 inclusion proof of the event at `position` in the tree of the checkpoint of size `checkpoint`, with the event's stored fields and its leaf input. `consent-ledger audit prove-included` checks it offline.",
    params(
        ("position" = u64, Path, minimum = 1, maximum = 9223372036854775807_u64, description = "The event's position"),
        ("checkpoint" = u64, Query, minimum = 1, maximum = 9223372036854775807_u64, description = "The checkpoint's size; at least `position`")),
    responses(
        (status = 200, description = "`{checkpoint, leaf_index, tree_size, event, leaf_input, audit_path}`", body = Object),
        (status = 400, description = "The position or checkpoint is not a positive integer, is repeated or missing, or the checkpoint does not cover the position", body = AdminErrorBody),
        (status = 401, description = "A valid bearer token is required", body = AdminErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "No checkpoint of that size, no such event, or the audit API is not enabled", body = AdminErrorBody),
        (status = 500, description = "The ledger could not be read", body = AdminErrorBody),
        (status = 503, description = "The database is unavailable", body = AdminErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn audit_inclusion() {}

/// An error of the audit API (`unauthorized`, `invalid_token`, `invalid_dpop_proof`, `use_dpop_nonce`,
/// `insufficient_scope`, `invalid_request`, `not_found`, `too_many_followers`, `temporarily_unavailable`).
#[derive(Serialize, ToSchema)]
pub struct AuditErrorBody {
    error: String,
    error_description: String,
}

/// One line of `GET /audit/events` (and of `consent-ledger audit export`): an event as the ledger holds
/// it. `payload` and `metadata` are the stored JSON, so the hash can be recomputed from the lines.
#[derive(Serialize, ToSchema)]
pub struct AuditEventLine {
    position: u64,
    stream: String,
    version: u64,
    #[serde(rename = "type")]
    event_type: String,
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    #[schema(value_type = Object)]
    metadata: serde_json::Value,
    /// When the event was recorded: RFC 3339, UTC, to the microsecond.
    time: String,
    /// The chain hash, lowercase hex.
    hash: String,
}

#[utoipa::path(get, path = "/audit/events", tag = "audit", security(("audit_token" = ["audit"]), ("admin_token" = [])),
    description = "The ledger's events after `after`, as NDJSON (one `AuditEventLine` per line), at most `limit`. A page walks at most 10,000 positions whatever the filters, so a rare filter may answer fewer lines (even none) with a `Link` to the next page; the `Link` is absent once a page reaches the end of the log (or `to`). With `Accept: text/event-stream` the log is followed live (see the audit guide).",
    params(
        ("after" = Option<u64>, Query, description = "The last position already read; 0 (the default) starts at the beginning"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Events on the page; 100 by default"),
        ("stream" = Option<String>, Query, description = "Only this stream's events (`delegation-…`, `token-…`)"),
        ("type" = Option<String>, Query, description = "Only events of this type (`TokenIssued`)"),
        ("subject" = Option<String>, Query, description = "Only events whose payload names this subject"),
        ("client_id" = Option<String>, Query, description = "Only events whose payload names this client"),
        ("from" = Option<String>, Query, format = DateTime, description = "Only events recorded at or after this RFC 3339 time"),
        ("to" = Option<String>, Query, format = DateTime, description = "Only events recorded at or before this RFC 3339 time"),
        ("DPoP" = Option<String>, Header, description = "RFC 9449 proof, with `Authorization: DPoP`"),
        ("Last-Event-ID" = Option<u64>, Header, description = "With `Accept: text/event-stream`: resume after this position (takes the place of `after`)"),
    ),
    responses(
        (status = 200, description = "A page of events, one JSON object per line; or, asked with `Accept: text/event-stream`, the live follow: each event an SSE `data:` line with `id:` its position, and a `: heartbeat` comment when idle", body = AuditEventLine, content_type = "application/x-ndjson",
            headers(("Link" = String, description = "`</audit/events?after=N&…>; rel=\"next\"`: the next page, the same filters; absent at the end"))),
        (status = 400, description = "`invalid_request`: an unknown parameter, a `limit` out of range, a time that is not RFC 3339", body = AuditErrorBody),
        (status = 401, description = "No credential (`unauthorized`), `invalid_token`, `invalid_dpop_proof` or `use_dpop_nonce`", body = AuditErrorBody,
            headers(("WWW-Authenticate" = String, description = "A `Bearer` and a `DPoP algs=\"…\"` challenge; the one of the scheme that failed names the error"))),
        (status = 403, description = "`insufficient_scope`: the token was not granted `audit`, or its client is no longer an auditor", body = AuditErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`, or `too_many_followers` when a follow would pass `audit.followers_max`", body = ErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn audit_events() {}

#[utoipa::path(get, path = "/audit/tokens/{jti}", tag = "audit", security(("audit_token" = ["audit"]), ("admin_token" = [])),
    description = "A token's record and the explanation of its issuance: each requested scope's authorizers and verdicts, where consent came from (with its ledger position), the outcome, and the policy version. The same JSON as `consent-ledger audit explain --json`.",
    params(("jti" = String, Path), ("DPoP" = Option<String>, Header, description = "RFC 9449 proof, with `Authorization: DPoP`")),
    responses(
        (status = 200, description = "The explanation", body = Object),
        (status = 404, description = "`not_found`: the ledger holds no such token", body = AuditErrorBody),
        (status = 401, description = "No credential (`unauthorized`), `invalid_token`, `invalid_dpop_proof` or `use_dpop_nonce`", body = AuditErrorBody,
            headers(("WWW-Authenticate" = String, description = "A `Bearer` and a `DPoP algs=\"…\"` challenge; the one of the scheme that failed names the error"))),
        (status = 403, description = "`insufficient_scope`: the token was not granted `audit`, or its client is no longer an auditor", body = AuditErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`", body = ErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn audit_token() {}

#[utoipa::path(get, path = "/audit/delegations/{id}", tag = "audit", security(("audit_token" = ["audit"]), ("admin_token" = [])),
    description = "The delegation as of `as_of`, folded from its streams up to that point: its scopes and their expiries (and which were still held), whether it was active, the consents of its subject to its client (each standing or not), and the tokens and refresh tokens active then.",
    params(("id" = String, Path),
        ("as_of" = Option<String>, Query, description = "A ledger position (digits) or an RFC 3339 time; the head when absent"),
        ("DPoP" = Option<String>, Header, description = "RFC 9449 proof, with `Authorization: DPoP`")),
    responses(
        (status = 200, description = "The state then, with `as_of` naming the position and time it stands for", body = Object),
        (status = 400, description = "`invalid_request`: `as_of` is neither a position nor an RFC 3339 time, or an unknown parameter", body = AuditErrorBody),
        (status = 404, description = "`not_found`: no such delegation, or not yet created at that point", body = AuditErrorBody),
        (status = 401, description = "No credential (`unauthorized`), `invalid_token`, `invalid_dpop_proof` or `use_dpop_nonce`", body = AuditErrorBody,
            headers(("WWW-Authenticate" = String, description = "A `Bearer` and a `DPoP algs=\"…\"` challenge; the one of the scheme that failed names the error"))),
        (status = 403, description = "`insufficient_scope`: the token was not granted `audit`, or its client is no longer an auditor", body = AuditErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`", body = ErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn audit_delegation() {}

#[utoipa::path(get, path = "/audit/subjects/{sub}", tag = "audit", security(("audit_token" = ["audit"]), ("admin_token" = [])),
    description = "The subject as of `as_of`: its delegations (each active or not, with the scopes held), its consents (each standing or not), and the tokens and refresh tokens active then. A subject the ledger never saw has empty lists.",
    params(("sub" = String, Path),
        ("as_of" = Option<String>, Query, description = "A ledger position (digits) or an RFC 3339 time; the head when absent"),
        ("DPoP" = Option<String>, Header, description = "RFC 9449 proof, with `Authorization: DPoP`")),
    responses(
        (status = 200, description = "The state then, with `as_of` naming the position and time it stands for", body = Object),
        (status = 400, description = "`invalid_request`: `as_of` is neither a position nor an RFC 3339 time, or an unknown parameter", body = AuditErrorBody),
        (status = 401, description = "No credential (`unauthorized`), `invalid_token`, `invalid_dpop_proof` or `use_dpop_nonce`", body = AuditErrorBody,
            headers(("WWW-Authenticate" = String, description = "A `Bearer` and a `DPoP algs=\"…\"` challenge; the one of the scheme that failed names the error"))),
        (status = 403, description = "`insufficient_scope`: the token was not granted `audit`, or its client is no longer an auditor", body = AuditErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`", body = ErrorBody, headers(("Retry-After" = String)))))]
#[allow(dead_code)]
fn audit_subject() {}

/// The security schemes: client authentication, the admin token, and access tokens.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            AuthorizationCode, ClientCredentials, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes,
            SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "client_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "client_secret_basic. Instead, the form may carry client_secret_post or private_key_jwt \
                         credentials, or a public client's client_id alone (not at /introspect).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The configured admin_token; the admin API is off (404) without one.",
                    ))
                    .build(),
            ),
        );
        // Access tokens are what this server issues: the flows name its own endpoints.
        components.add_security_scheme(
            "access_token",
            SecurityScheme::OAuth2(OAuth2::with_description(
                [
                    Flow::AuthorizationCode(AuthorizationCode::new(
                        "/authorize",
                        "/token",
                        Scopes::from_iter([("openid", "The user's identity, for /userinfo")]),
                    )),
                    Flow::ClientCredentials(ClientCredentials::new("/token", Scopes::new())),
                ],
                "An RFC 9068 access token (`typ: at+jwt`) as a bearer token, or as `DPoP <token>` with a `DPoP` \
                 proof when it is bound to a key (RFC 9449); ID tokens are refused.",
            )),
        );
        components.add_security_scheme(
            "audit_token",
            SecurityScheme::OAuth2(OAuth2::with_description(
                [Flow::ClientCredentials(ClientCredentials::new(
                    "/token",
                    Scopes::from_iter([("audit", "The audit API; granted only to auditor clients")]),
                ))],
                "An access token granted `audit` by client_credentials to a client registered with \
                 `auditor = true` (bearer, or `DPoP <token>` with a proof when bound to a key).",
            )),
        );
    }
}

/// Every endpoint the server routes; a test checks the two lists agree.
#[derive(OpenApi)]
#[openapi(
    info(title = "consent-ledger", description = "OAuth 2.0 authorization server with a tamper-evident ledger"),
    paths(token, introspect, revoke, oauth_metadata, openid_configuration, jwks, healthz, readyz, metrics,
          admin_create, admin_list, admin_get, admin_update, admin_disable, admin_reload_policy, openapi,
          authorize, authorize_post, par, userinfo, userinfo_post, device_authorization, bc_authorize,
          audit_checkpoint_keys, audit_checkpoints, audit_consistency, audit_inclusion,
          audit_events, audit_token, audit_delegation, audit_subject),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use utoipa::OpenApi;

    /// Operations that read nothing from the store, so cannot answer 503.
    const STORELESS: &[&str] = &[
        "get /healthz",
        // The head it shows is read if the store answers; a scrape does not fail with the store.
        "get /metrics",
        "get /openapi.json",
        "get /.well-known/oauth-authorization-server",
        "get /.well-known/openid-configuration",
    ];

    #[test]
    fn store_backed_operations_document_503_and_authenticated_ones_401_with_a_challenge() {
        let doc = serde_json::to_value(super::ApiDoc::openapi()).unwrap();
        for (path, operations) in doc["paths"].as_object().unwrap() {
            for (method, op) in operations.as_object().unwrap() {
                let name = format!("{method} {path}");
                let responses = &op["responses"];
                if !STORELESS.contains(&name.as_str()) {
                    assert!(responses.get("503").is_some(), "{name} does not document 503");
                }
                let schemes: Vec<&str> = op["security"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_object)
                    .flat_map(|r| r.keys().map(String::as_str))
                    .collect();
                if !schemes.is_empty() {
                    let challenge = &responses["401"]["headers"]["WWW-Authenticate"];
                    assert!(
                        !challenge.is_null(),
                        "{name} needs credentials but documents no 401 with WWW-Authenticate"
                    );
                }
                if schemes.contains(&"client_basic") {
                    assert!(
                        responses["503"]["headers"].get("Retry-After").is_some(),
                        "{name}: an OAuth 503 carries Retry-After"
                    );
                }
            }
        }
    }
}
