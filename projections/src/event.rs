//! The event vocabulary: every fact the ledger records.
//!
//! Events are past-tense facts and a persisted event name is never renamed. Each payload carries a schema
//! version (`"v": 1`). Every payload is read through [`crate::upcast`], which brings each shape ever written
//! to today's; `tests/fixtures/events/` holds one of each and the golden test folds them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Unix time in seconds, the unit of every domain time in events (JWT `iat`/`exp` use the same).
pub type UnixSeconds = i64;

/// Marker for schema version 1 of a payload: serializes as `1` and refuses any other number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct V1;

impl Serialize for V1 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}

impl<'de> Deserialize<'de> for V1 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            1 => Ok(V1),
            other => Err(serde::de::Error::custom(format!(
                "unsupported schema version {other}, expected 1"
            ))),
        }
    }
}

/// Declares the event enum, its names and the private mirror that reads the current payload shapes, from one
/// list, so a new event cannot be missing from one of them.
macro_rules! events {
    ($($name:ident),* $(,)?) => {
        /// One fact recorded in the ledger. The tag (`type`) is also stored in its own column.
        ///
        /// Reading one goes through [`crate::upcast`] first, so every shape ever written reads as today's.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "type")]
        pub enum Event {
            $($name($name),)*
        }

        impl Event {
            /// Every event type, in declaration order.
            pub const TYPES: &'static [&'static str] = &[$(stringify!($name)),*];

            /// The name stored in the `event_type` column; equal to the JSON `type` tag.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Event::$name(_) => stringify!($name),)*
                }
            }
        }

        /// Today's payload shapes, read once an old payload has been upcast.
        #[derive(Deserialize)]
        #[serde(tag = "type")]
        enum Current {
            $($name($name),)*
        }

        impl From<Current> for Event {
            fn from(current: Current) -> Self {
                match current {
                    $(Current::$name(e) => Event::$name(e),)*
                }
            }
        }
    };
}

events! {
    ClientRegistered,
    ClientUpdated,
    ClientDisabled,
    SigningKeyAdded,
    SigningKeyActivated,
    SigningKeyRetired,
    DelegationCreated,
    DelegationScopesChanged,
    DelegationRevoked,
    ConsentGranted,
    ConsentDenied,
    ConsentRevoked,
    TokenIssued,
    TokenRevoked,
    RefreshTokenIssued,
    RefreshTokenRotated,
    RefreshTokenRevoked,
    PolicyPublished,
    UserRegistered,
    UserAttributesSet,
    UserPasswordSet,
    UserTotpEnrolled,
    UserTotpRemoved,
    UserDisabled,
    AuthorizationCodeIssued,
    AuthorizationCodeRedeemed,
    RefreshTokenReuseDetected,
    TrustedIssuerConfigured,
    TrustedIssuerRemoved,
    DeviceAuthorizationRequested,
    DeviceAuthorizationApproved,
    DeviceAuthorizationDenied,
    DeviceCodeRedeemed,
    BackchannelAuthenticationRequested,
    BackchannelAuthenticationApproved,
    BackchannelAuthenticationDenied,
    BackchannelAuthenticationRedeemed,
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut payload = Value::deserialize(d)?;
        crate::upcast::upcast(&mut payload).map_err(serde::de::Error::custom)?;
        Current::deserialize(payload)
            .map(Event::from)
            .map_err(serde::de::Error::custom)
    }
}

impl Event {
    /// The stream this event belongs to: the entity it is about. The store refuses an event appended to
    /// any other stream, so a stream's version counts exactly that entity's events.
    pub fn stream_id(&self) -> String {
        match self {
            Event::ClientRegistered(e) => streams::client(&e.client.client_id),
            Event::ClientUpdated(e) => streams::client(&e.client.client_id),
            Event::ClientDisabled(e) => streams::client(&e.client_id),
            Event::SigningKeyAdded(_) | Event::SigningKeyActivated(_) | Event::SigningKeyRetired(_) => {
                streams::SIGNING_KEYS.to_owned()
            }
            Event::DelegationCreated(e) => streams::delegation(&e.delegation_id),
            Event::DelegationScopesChanged(e) => streams::delegation(&e.delegation_id),
            Event::DelegationRevoked(e) => streams::delegation(&e.delegation_id),
            Event::ConsentGranted(e) => streams::consent(&e.consent_id),
            Event::ConsentDenied(e) => streams::consent(&e.consent_id),
            Event::ConsentRevoked(e) => streams::consent(&e.consent_id),
            Event::TokenIssued(e) => streams::token(&e.jti),
            Event::TokenRevoked(e) => streams::token(&e.jti),
            Event::RefreshTokenIssued(e) => streams::refresh_token(&e.token_hash),
            Event::RefreshTokenRotated(e) => streams::refresh_token(&e.token_hash),
            Event::RefreshTokenRevoked(e) => streams::refresh_token(&e.token_hash),
            Event::RefreshTokenReuseDetected(e) => streams::refresh_token(&e.token_hash),
            Event::PolicyPublished(_) => streams::POLICY.to_owned(),
            Event::UserRegistered(e) => streams::user(&e.username),
            Event::UserAttributesSet(e) => streams::user(&e.username),
            Event::UserPasswordSet(e) => streams::user(&e.username),
            Event::UserTotpEnrolled(e) => streams::user(&e.username),
            Event::UserTotpRemoved(e) => streams::user(&e.username),
            Event::UserDisabled(e) => streams::user(&e.username),
            Event::AuthorizationCodeIssued(e) => streams::code(&e.code_hash),
            Event::AuthorizationCodeRedeemed(e) => streams::code(&e.code_hash),
            Event::TrustedIssuerConfigured(_) | Event::TrustedIssuerRemoved(_) => {
                streams::TRUSTED_ISSUERS.to_owned()
            }
            Event::DeviceAuthorizationRequested(e) => streams::device(&e.device_code_hash),
            Event::DeviceAuthorizationApproved(e) => streams::device(&e.device_code_hash),
            Event::DeviceAuthorizationDenied(e) => streams::device(&e.device_code_hash),
            Event::DeviceCodeRedeemed(e) => streams::device(&e.device_code_hash),
            Event::BackchannelAuthenticationRequested(e) => streams::backchannel(&e.auth_req_id_hash),
            Event::BackchannelAuthenticationApproved(e) => streams::backchannel(&e.auth_req_id_hash),
            Event::BackchannelAuthenticationDenied(e) => streams::backchannel(&e.auth_req_id_hash),
            Event::BackchannelAuthenticationRedeemed(e) => streams::backchannel(&e.auth_req_id_hash),
        }
    }
}

/// Stream ids, for reading a stream's version before its next event exists. [`Event::stream_id`] is built
/// from these, so a reader and a writer cannot disagree.
pub mod streams {
    /// Every signing key's events, in one stream: its version orders rotations across nodes.
    pub const SIGNING_KEYS: &str = "signing-keys";
    /// Every `PolicyPublished`.
    pub const POLICY: &str = "policy";
    /// Every change of the trusted issuers, in one stream: one expected version covers the whole set,
    /// so nodes starting together record a change once.
    pub const TRUSTED_ISSUERS: &str = "trusted-issuers";

    /// A client's registration, updates and disabling.
    pub fn client(client_id: &str) -> String {
        format!("client-{client_id}")
    }
    /// A delegation's creation, scope changes and end.
    pub fn delegation(delegation_id: &str) -> String {
        format!("delegation-{delegation_id}")
    }
    /// A consent's grant or denial and its withdrawal.
    pub fn consent(consent_id: &str) -> String {
        format!("consent-{consent_id}")
    }
    /// An access or ID token's issuance and revocation.
    pub fn token(jti: &str) -> String {
        format!("token-{jti}")
    }
    /// A refresh token's issuance, rotation, revocation and reuse.
    pub fn refresh_token(token_hash: &str) -> String {
        format!("refresh-{token_hash}")
    }
    /// A local user's events.
    pub fn user(username: &str) -> String {
        format!("user-{username}")
    }
    /// An authorization code's issuance and redemption.
    pub fn code(code_hash: &str) -> String {
        format!("code-{code_hash}")
    }
    /// A device authorization request (RFC 8628): its request, its answer and its redemption, so the
    /// answer and the redemption each happen once.
    pub fn device(device_code_hash: &str) -> String {
        format!("device-{device_code_hash}")
    }
    /// A backchannel authentication request (OpenID CIBA): its request, its answer and its redemption,
    /// so the answer and the redemption each happen once.
    pub fn backchannel(auth_req_id_hash: &str) -> String {
        format!("backchannel-{auth_req_id_hash}")
    }
}

/// Why a delegation, token or refresh token was revoked. Serialized as the exact strings the ledger has
/// always held; a new reason is a new variant, and an old one is never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// An authorization code was redeemed a second time.
    CodeReplay,
    /// A rotated refresh token was presented again, past any grace window.
    RefreshTokenReuse,
    /// The client revoked its refresh token (RFC 7009), ending the delegation.
    RefreshTokenRevoked,
    /// The user revoked the delegation on `/account`.
    RevokedByUser,
    /// The client revoked an access token (RFC 7009).
    ClientRequest,
    /// The client revoked a refresh token (RFC 7009).
    RevokedByClient,
}

impl RevocationReason {
    /// The persisted string.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::CodeReplay => "code_replay",
            RevocationReason::RefreshTokenReuse => "refresh_token_reuse",
            RevocationReason::RefreshTokenRevoked => "refresh_token_revoked",
            RevocationReason::RevokedByUser => "revoked_by_user",
            RevocationReason::ClientRequest => "client_request",
            RevocationReason::RevokedByClient => "revoked_by_client",
        }
    }
}

/// Compares with the persisted string, so code that checks a reason reads like the ledger it reads.
impl PartialEq<&str> for RevocationReason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a client is, as the policies see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// Operated by the same party as this server.
    FirstParty,
    /// Operated by someone else; the default, because it is the cautious one.
    #[default]
    ThirdParty,
}

/// Whether a client acts for people or for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAudience {
    /// A service acting on its own behalf (client credentials).
    Machine,
    /// An application people sign in to.
    #[default]
    Human,
}

/// Every attribute of a registered client; `ClientRegistered` and `ClientUpdated` carry it whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClientSpec {
    pub client_id: String,
    pub name: String,
    #[serde(default)]
    pub kind: ClientKind,
    #[serde(default)]
    pub audience: ClientAudience,
    #[serde(default)]
    pub dynamically_registered: bool,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `client_secret_basic`, `client_secret_post`, `private_key_jwt` or `none`; every event written has it.
    pub token_endpoint_auth_method: String,
    /// SHA-256 of the generated secret, hex; never the secret itself.
    #[serde(default)]
    pub secret_hash: Option<String>,
    #[serde(default)]
    pub jwks: Option<Value>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// RFC 8707 resource indicators the client may ask tokens for; the first is its default audience.
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub metadata: Value,
    /// Authorization requests must arrive by PAR (RFC 9126).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_pushed_authorization_requests: bool,
    /// How long a delegation of this client can be refreshed at all, from its creation, before the user
    /// must be asked again; `None` takes the server's `[tokens] delegation_lifetime_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_lifetime_seconds: Option<i64>,
    /// How long a consent this client is given stands, from when it is given; the shorter of this and
    /// the scope's `consent_lifetime_seconds` applies, and `None` on both sides means until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_lifetime_seconds: Option<i64>,
    /// A rotated refresh token presented again within this many seconds gets a fresh pair instead of
    /// revoking the delegation; 0 (the default) turns the grace window off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refresh_reuse_grace_seconds: u32,
    /// A resource server: it may introspect tokens whose audience is one of its `resources` (RFC 7662 §4).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resource_server: bool,
    /// The JWS algorithm of this client's ID tokens (OpenID Connect Registration §2); RS256 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_signed_response_alg: Option<String>,
    /// The password grant may sign in a user who has a second factor, with the password alone (their
    /// step-up scopes are still dropped).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub password_grant_second_factor_users: bool,
    /// What this client may do with OAuth 2.0 Token Exchange (RFC 8693); `None` for a client that does
    /// not exchange tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_exchange: Option<TokenExchangeSettings>,
    /// Access tokens issued to this client name the one party that may act for their subject
    /// (RFC 8693 §4.4 `may_act`): exchanging them needs that actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_act: Option<Party>,
    /// RFC 9449 §5.2: every token request of this client must carry a DPoP proof, so its access tokens
    /// are always bound to a key it holds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
    /// How this client hears of a backchannel authentication's answer (OpenID CIBA); `None` for a client
    /// that does not use CIBA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_token_delivery_mode: Option<BackchannelDeliveryMode>,
    /// Where the server pings this client when a backchannel request is answered (ping mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_client_notification_endpoint: Option<String>,
    /// The exact origins (`scheme://host[:port]`) that may frame this client's assisted-token page and
    /// receive its messages; empty for a client that does not use the assisted token flow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// An auditor: the one kind of client granted the `audit` scope, by client credentials, which opens
    /// the audit API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auditor: bool,
}

/// A client's token exchange permissions (RFC 8693).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TokenExchangeSettings {
    /// May exchange a token without an actor: the new token is the subject's own (impersonation).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub impersonation: bool,
    /// Who may act for the subject when an `actor_token` is presented (delegation).
    #[serde(default, skip_serializing_if = "Actors::is_none")]
    pub actors: Actors,
    /// May ask for a refresh token (`requested_token_type` refresh_token) in its own delegations.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh_tokens: bool,
}

/// Which actors a client may present: any (`true`), none (`false`, the default), or these subjects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Actors {
    Any(bool),
    Only(Vec<String>),
}

impl Default for Actors {
    fn default() -> Self {
        Actors::Any(false)
    }
}

impl Actors {
    /// Whether the subject `sub` may act.
    pub fn allows(&self, sub: &str) -> bool {
        match self {
            Actors::Any(any) => *any,
            Actors::Only(list) => list.iter().any(|a| a == sub),
        }
    }

    /// Whether no actor at all is allowed.
    pub fn is_none(&self) -> bool {
        match self {
            Actors::Any(any) => !any,
            Actors::Only(list) => list.is_empty(),
        }
    }
}

/// A party named in a token's `may_act` claim (RFC 8693 §4.4): its subject and, if given, its issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// A token's `act` claim (RFC 8693 §4.1): who acts for the subject, and who acted before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A client was registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRegistered {
    pub v: V1,
    pub client: ClientSpec,
    pub at: UnixSeconds,
}

/// A client's attributes were replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientUpdated {
    pub v: V1,
    pub client: ClientSpec,
    pub at: UnixSeconds,
}

/// A client may no longer authenticate; its tokens stop being active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientDisabled {
    pub v: V1,
    pub client_id: String,
    pub reason: String,
    pub at: UnixSeconds,
}

/// A signing key's public part was published; the private part never enters the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKeyAdded {
    pub v: V1,
    pub kid: String,
    pub alg: String,
    pub public_jwk: Value,
    pub at: UnixSeconds,
}

/// A key became the one new tokens are signed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKeyActivated {
    pub v: V1,
    pub kid: String,
    pub at: UnixSeconds,
}

/// A key stopped signing; it stays in the JWKS until `publish_until`, when every token it signed has expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKeyRetired {
    pub v: V1,
    pub kid: String,
    pub at: UnixSeconds,
    pub publish_until: UnixSeconds,
}

/// One scope held by a delegation, with its own expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantedScope {
    pub scope: String,
    /// `None`: lasts as long as the delegation.
    pub expires_at: Option<UnixSeconds>,
}

/// How the subject authenticated when a delegation was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AuthContext {
    #[serde(default)]
    pub acr: Option<String>,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default)]
    pub auth_time: Option<UnixSeconds>,
}

/// A subject granted a client a standing delegation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelegationCreated {
    pub v: V1,
    pub delegation_id: String,
    pub subject: String,
    pub client_id: String,
    pub scopes: Vec<GrantedScope>,
    #[serde(default)]
    pub authorization_details: Value,
    #[serde(default)]
    pub claims: Value,
    #[serde(default)]
    pub auth: AuthContext,
    pub grant_type: String,
    pub at: UnixSeconds,
    /// The RFC 8707 audiences granted; tokens from the delegation may narrow them, never change them.
    /// Empty in delegations recorded before audiences were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
}

/// The set of scopes a delegation holds was replaced (narrowed, extended, or expiries changed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelegationScopesChanged {
    pub v: V1,
    pub delegation_id: String,
    pub scopes: Vec<GrantedScope>,
    pub at: UnixSeconds,
}

/// A delegation ended; every token issued from it stops being active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelegationRevoked {
    pub v: V1,
    pub delegation_id: String,
    pub reason: RevocationReason,
    pub at: UnixSeconds,
}

/// A subject, present, approved scopes for a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentGranted {
    pub v: V1,
    pub consent_id: String,
    pub subject: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub authorization_details: Value,
    /// When the consent stops counting (the shorter of the scopes' and the client's consent lifetimes
    /// from `at`); `None`, and every event written before lifetimes existed, never expires. One answer
    /// whose scopes end at different times is recorded as one `ConsentGranted` per end.
    pub expires_at: Option<UnixSeconds>,
    pub at: UnixSeconds,
    /// What the consent page showed for each scope (description, lifetime), as the user saw it. Absent
    /// when null; [`crate::upcast`] restores it on read.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub shown: Value,
}

/// A subject, present, refused scopes for a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentDenied {
    pub v: V1,
    pub consent_id: String,
    pub subject: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub at: UnixSeconds,
}

/// A subject withdrew an earlier consent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentRevoked {
    pub v: V1,
    pub consent_id: String,
    pub at: UnixSeconds,
}

/// What kind of token an issuance minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Access,
    Id,
}

/// A JWT was minted; it is recorded by `jti` only, never by its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenIssued {
    pub v: V1,
    pub jti: String,
    pub kind: TokenKind,
    pub client_id: String,
    pub subject: String,
    #[serde(default)]
    pub delegation_id: Option<String>,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub audience: Vec<String>,
    pub kid: String,
    pub grant_type: String,
    pub issued_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    /// Why each scope was or was not issued; opaque to the folds, read by auditors.
    #[serde(default)]
    pub decision_trail: Value,
    #[serde(default)]
    pub policy_version: Option<String>,
    /// RFC 8693 `act`: who acts for the subject (a token exchanged with an actor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// RFC 8693 `may_act`: the one party that may act for the subject with this token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_act: Option<Party>,
    /// RFC 9449: the JWK SHA-256 thumbprint of the key the token is bound to (its `cnf.jkt`); it is
    /// accepted only with a DPoP proof signed by that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// A token was revoked before it expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRevoked {
    pub v: V1,
    pub jti: String,
    pub reason: RevocationReason,
    pub at: UnixSeconds,
}

/// A refresh token was minted; only the SHA-256 of its value is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshTokenIssued {
    pub v: V1,
    pub token_hash: String,
    pub delegation_id: String,
    pub client_id: String,
    pub subject: String,
    pub scopes: Vec<String>,
    pub issued_at: UnixSeconds,
    pub expires_at: Option<UnixSeconds>,
    /// The refresh token this one replaced by rotation.
    #[serde(default)]
    pub parent_hash: Option<String>,
    /// RFC 9449 §5: a public client's refresh token is bound to the DPoP key it was issued with (its
    /// JWK SHA-256 thumbprint); only a proof by that key refreshes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// A refresh token was used and replaced by its successor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshTokenRotated {
    pub v: V1,
    pub token_hash: String,
    pub successor_hash: String,
    pub at: UnixSeconds,
}

/// A refresh token was revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshTokenRevoked {
    pub v: V1,
    pub token_hash: String,
    pub reason: RevocationReason,
    pub at: UnixSeconds,
}

/// What the server did about a rotated refresh token presented again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReuseAction {
    /// Past the client's grace window (or none): the delegation was revoked (RFC 9700 §4.14).
    DelegationRevoked,
    /// Within the client's grace window: a fresh pair was issued in the same delegation.
    GraceReissued,
}

/// A refresh token that had already been rotated was presented again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshTokenReuseDetected {
    pub v: V1,
    pub token_hash: String,
    pub delegation_id: String,
    pub client_id: String,
    pub action: ReuseAction,
    pub at: UnixSeconds,
}

/// A local user account was created. `username` is what the person types; `subject` is the stable `sub`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub v: V1,
    pub username: String,
    pub subject: String,
    /// Read by the `subject` and `resource-owner` authorizers.
    #[serde(default)]
    pub attributes: Value,
    pub at: UnixSeconds,
}

/// A user's attributes were replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserAttributesSet {
    pub v: V1,
    pub username: String,
    pub attributes: Value,
    pub at: UnixSeconds,
}

/// A user's password was set. The hash is kept outside the ledger; this records only that it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPasswordSet {
    pub v: V1,
    pub username: String,
    pub at: UnixSeconds,
}

/// A user enrolled a TOTP second factor (RFC 6238). The secret is kept outside the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserTotpEnrolled {
    pub v: V1,
    pub username: String,
    pub at: UnixSeconds,
}

/// A user's TOTP second factor was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserTotpRemoved {
    pub v: V1,
    pub username: String,
    pub at: UnixSeconds,
}

/// A user may no longer sign in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDisabled {
    pub v: V1,
    pub username: String,
    pub reason: String,
    pub at: UnixSeconds,
}

/// An authorization code was handed to a client's redirect URI; only its SHA-256 is recorded. It carries
/// the decision made while the user was present, which redeeming it turns into a delegation and tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationCodeIssued {
    pub v: V1,
    pub code_hash: String,
    pub client_id: String,
    pub subject: String,
    pub redirect_uri: String,
    /// RFC 7636 S256 challenge; `None` when the request carried none.
    #[serde(default)]
    pub code_challenge: Option<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    pub scopes: Vec<GrantedScope>,
    #[serde(default)]
    pub audience: Vec<String>,
    #[serde(default)]
    pub authorization_details: Value,
    #[serde(default)]
    pub auth: AuthContext,
    /// The decision trail for each requested scope, as `TokenIssued` carries it.
    #[serde(default)]
    pub decision_trail: Value,
    #[serde(default)]
    pub policy_version: Option<String>,
    pub issued_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    /// When the authorization request arrived: a sign-in since then was fresh for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<UnixSeconds>,
    /// Whether the authorization request named its `redirect_uri`, which the token request must then
    /// repeat (RFC 6749 §4.1.3).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redirect_uri_in_request: bool,
}

/// An authorization code was exchanged and became `delegation_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationCodeRedeemed {
    pub v: V1,
    pub code_hash: String,
    pub delegation_id: String,
    pub at: UnixSeconds,
}

/// A device asked to be authorized (RFC 8628 §3.1); only the SHA-256 of its device code and of its
/// user code are recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAuthorizationRequested {
    pub v: V1,
    pub device_code_hash: String,
    /// SHA-256 of the normalised user code (the eight letters, upper case, no dash).
    pub user_code_hash: String,
    pub client_id: String,
    /// `None` when the request named no scope: the client's defaults apply.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// RFC 8707.
    #[serde(default)]
    pub resource: Option<String>,
    pub requested_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    /// The polling interval the device was given (seconds).
    pub interval: i64,
}

/// The user approved a device request on the verification page. It carries the decision made while the
/// user was present, which redeeming the device code turns into a delegation and tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAuthorizationApproved {
    pub v: V1,
    pub device_code_hash: String,
    pub subject: String,
    pub auth: AuthContext,
    /// What the decision issues, with each scope's expiry.
    pub scopes: Vec<GrantedScope>,
    #[serde(default)]
    pub audience: Vec<String>,
    /// What the consent page showed for each scope it asked about (null when nothing was asked).
    #[serde(default)]
    pub shown: Value,
    /// The asked scopes the user approved, and those they refused.
    #[serde(default)]
    pub approved: Vec<String>,
    #[serde(default)]
    pub refused: Vec<String>,
    #[serde(default)]
    pub decision_trail: Value,
    #[serde(default)]
    pub policy_version: Option<String>,
    pub at: UnixSeconds,
}

/// A device request was refused: by the user, or by the policy while the user was there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAuthorizationDenied {
    pub v: V1,
    pub device_code_hash: String,
    pub subject: String,
    /// What the consent page showed (null when the policy refused before asking).
    #[serde(default)]
    pub shown: Value,
    #[serde(default)]
    pub refused: Vec<String>,
    pub reason: String,
    pub at: UnixSeconds,
}

/// An approved device code was exchanged at the token endpoint and became `delegation_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceCodeRedeemed {
    pub v: V1,
    pub device_code_hash: String,
    pub delegation_id: String,
    pub at: UnixSeconds,
}

/// How a CIBA client hears that the user answered (CIBA Core §5): it polls the token endpoint, or the
/// server pings its notification endpoint and then it asks once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackchannelDeliveryMode {
    Poll,
    Ping,
}

/// A client asked, on the back channel, that a user authenticate and approve on their own device
/// (OpenID CIBA Core §7.1); only the SHA-256 of its `auth_req_id` is recorded, and never the client's
/// notification token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackchannelAuthenticationRequested {
    pub v: V1,
    pub auth_req_id_hash: String,
    pub client_id: String,
    /// The user the hint named.
    pub subject: String,
    pub scopes: Vec<String>,
    /// What the client shows the user too, so they can tell the request is theirs.
    #[serde(default)]
    pub binding_message: Option<String>,
    pub mode: BackchannelDeliveryMode,
    pub requested_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    /// The polling interval the client was given (seconds).
    pub interval: i64,
}

/// The user approved a backchannel request on `/approvals`: the decision made while they were there,
/// which redeeming the `auth_req_id` turns into a delegation and tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackchannelAuthenticationApproved {
    pub v: V1,
    pub auth_req_id_hash: String,
    pub subject: String,
    pub auth: AuthContext,
    /// What the decision issues, with each scope's expiry.
    pub scopes: Vec<GrantedScope>,
    #[serde(default)]
    pub audience: Vec<String>,
    /// What the consent page showed for each scope it asked about (null when nothing was asked).
    #[serde(default)]
    pub shown: Value,
    /// The asked scopes the user approved, and those they refused.
    #[serde(default)]
    pub approved: Vec<String>,
    #[serde(default)]
    pub refused: Vec<String>,
    #[serde(default)]
    pub decision_trail: Value,
    #[serde(default)]
    pub policy_version: Option<String>,
    pub at: UnixSeconds,
}

/// A backchannel request was refused: by the user, or by the policy while the user was there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackchannelAuthenticationDenied {
    pub v: V1,
    pub auth_req_id_hash: String,
    pub subject: String,
    /// What the consent page showed (null when the policy refused before asking).
    #[serde(default)]
    pub shown: Value,
    #[serde(default)]
    pub refused: Vec<String>,
    pub reason: String,
    pub at: UnixSeconds,
}

/// An approved `auth_req_id` was exchanged at the token endpoint and became `delegation_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackchannelAuthenticationRedeemed {
    pub v: V1,
    pub auth_req_id_hash: String,
    pub delegation_id: String,
    pub at: UnixSeconds,
}

/// A policy configuration came into force; issuances record its `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyPublished {
    pub v: V1,
    /// SHA-256 (hex) of the canonical JSON of `policy`.
    pub version: String,
    /// Scopes, authorizers and lifetimes, as configured.
    pub policy: Value,
    pub at: UnixSeconds,
}

/// Where a trusted issuer's signing keys come from. Only what identifies them is recorded: the RFC 7638
/// thumbprints of inline keys, or the URL they are fetched from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum TrustedKeys {
    /// Keys given in the configuration, by their SHA-256 JWK thumbprints.
    Jwks { thumbprints: Vec<String> },
    /// Keys fetched from the issuer's JWKS URL.
    JwksUri { uri: String },
}

/// Which asserted subjects a trusted issuer may speak for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "allow", rename_all = "snake_case")]
pub enum TrustedSubjects {
    /// Any `sub`.
    All,
    /// Only these `sub` values.
    Only { subjects: Vec<String> },
}

/// How an asserted `sub` names a local user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "by", rename_all = "snake_case", deny_unknown_fields)]
pub enum SubjectMapping {
    /// The `sub` is the local user's stable subject.
    #[default]
    Subject,
    /// The `sub` is the local user's username.
    Username,
    /// The `sub` equals the string value of this user attribute.
    Attribute { name: String },
}

/// A trusted issuer's configuration as the ledger records it; no key material beyond thumbprints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedIssuerSettings {
    pub issuer: String,
    pub keys: TrustedKeys,
    pub subjects: TrustedSubjects,
    pub subject_mapping: SubjectMapping,
    /// The most its assertions can obtain; the client's scopes and the policy narrow it further.
    pub scopes: Vec<String>,
    pub max_assertion_lifetime_seconds: i64,
    /// JWS algorithms its assertions may be signed with; never `none`, never HMAC.
    pub algorithms: Vec<String>,
}

/// The server began trusting an issuer's assertions, or their settings changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustedIssuerConfigured {
    pub v: V1,
    pub trust: TrustedIssuerSettings,
    pub at: UnixSeconds,
}

/// The server stopped trusting an issuer's assertions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustedIssuerRemoved {
    pub v: V1,
    pub issuer: String,
    pub at: UnixSeconds,
}

/// Context an event was appended in; hashed with the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

/// An event as the ledger holds it, with its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Gap-free, starting at 1, in commit order.
    pub position: u64,
    pub stream_id: String,
    /// Starting at 1 within the stream.
    pub version: u64,
    pub event: Event,
    pub metadata: Metadata,
    /// Unix time in microseconds when the store committed it.
    pub recorded_at: i64,
    /// Hex SHA-256 of the chain link (see `chain`).
    pub hash: String,
}
