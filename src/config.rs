//! Server configuration: an optional TOML file, environment overrides, and validation with the key at fault.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use projections::event::{Actors, ClientAudience, ClientKind, Party, TokenExchangeSettings};
use serde::{Deserialize, Serialize};

use crate::keys::Algorithm;
use crate::policy::authorizers::AuthorizerConfig;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "consent-ledger.toml";

/// Grant types this server implements at the token endpoint.
/// The assisted token flow's identifier, a client lists among its grant types to use `/assisted-token`.
/// Not a token-endpoint grant, so not in [`SUPPORTED_GRANT_TYPES`] (discovery's list).
pub const ASSISTED_TOKEN: &str = crate::grants::ASSISTED_TOKEN;

pub const SUPPORTED_GRANT_TYPES: &[&str] = &[
    "client_credentials",
    "authorization_code",
    "refresh_token",
    "implicit",
    "password",
    crate::grants::token_exchange::GRANT_TYPE,
    crate::grants::jwt_bearer::GRANT_TYPE,
    "urn:ietf:params:oauth:grant-type:device_code",
    crate::grants::ciba::GRANT_TYPE,
];

/// Client authentication methods this server implements.
pub const SUPPORTED_AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
];

/// Everything the server is configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default = "default_bind")]
    pub bind: String,
    #[serde(default)]
    pub database: Option<String>,
    /// Where private signing keys live (owner-only files). Nodes sharing a database share this directory.
    #[serde(default = "default_key_dir")]
    pub key_dir: PathBuf,
    /// 32 bytes (hex or base64url) under which private signing keys are also kept sealed in the database,
    /// so nodes given the same value need not share `key_dir`. Never written anywhere by the server.
    #[serde(default)]
    pub key_encryption_key: Option<String>,
    #[serde(default)]
    pub signing_alg: Algorithm,
    /// Bearer token for `/admin`; the admin API is off when unset.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Bearer token a scraper presents at `/metrics` (the admin token works too); `/metrics` answers 404
    /// when neither is set.
    #[serde(default)]
    pub metrics_token: Option<String>,
    /// Audience of tokens when the request names no resource and the client has none.
    #[serde(default)]
    pub default_audience: Option<String>,
    #[serde(default)]
    pub tokens: TokenLifetimes,
    #[serde(default)]
    pub login: LoginSettings,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub device: DeviceSettings,
    #[serde(default)]
    pub ciba: CibaSettings,
    #[serde(default)]
    pub scopes: Vec<ScopeConfig>,
    /// Authorizers, defined once by name and assigned to scopes.
    #[serde(default)]
    pub authorizers: Vec<AuthorizerConfig>,
    #[serde(default)]
    pub policy: PolicySettings,
    #[serde(default)]
    pub dpop: DpopSettings,
    #[serde(default)]
    pub audit: AuditSettings,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// Issuers whose signed assertions name users (RFC 7523); read at start.
    #[serde(default)]
    pub trusted_issuers: Vec<crate::trust::issuers::TrustedIssuerConfig>,
}

/// The audit side: signed checkpoints of the log (`consent-ledger serve` signs one when either limit is
/// reached) and the audit API's live follow (`GET /audit/events` with `Accept: text/event-stream`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Sign a checkpoint once this many events were appended since the last one.
    #[serde(default = "default_checkpoint_every_events")]
    pub checkpoint_every_events: u64,
    /// Sign a checkpoint once this many seconds passed since the last one, if the log grew.
    #[serde(default = "default_checkpoint_every_seconds")]
    pub checkpoint_every_seconds: i64,
    /// Followers served at once by this node; one more is answered 503.
    #[serde(default = "default_audit_followers_max")]
    pub followers_max: u32,
    /// Seconds between heartbeat comments on an idle follow (which also read the log again, in case a
    /// commit notification was lost).
    #[serde(default = "default_audit_heartbeat_seconds")]
    pub heartbeat_seconds: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            checkpoint_every_events: default_checkpoint_every_events(),
            checkpoint_every_seconds: default_checkpoint_every_seconds(),
            followers_max: default_audit_followers_max(),
            heartbeat_seconds: default_audit_heartbeat_seconds(),
        }
    }
}

fn default_checkpoint_every_events() -> u64 {
    10_000
}

fn default_checkpoint_every_seconds() -> i64 {
    300
}

fn default_audit_followers_max() -> u32 {
    64
}

fn default_audit_heartbeat_seconds() -> u64 {
    15
}

/// DPoP (RFC 9449): how proofs of possession are checked.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DpopSettings {
    /// Demand a server nonce in every proof (RFC 9449 §8); a proof without a current one is answered
    /// `use_dpop_nonce` with a fresh `DPoP-Nonce`.
    #[serde(default)]
    pub require_nonce: bool,
    /// How old a proof's `iat` may be; also how long its `jti` is remembered against replay.
    #[serde(default = "default_dpop_proof_lifetime")]
    pub proof_lifetime_seconds: i64,
    /// How long a server nonce is current; the one before it is still accepted.
    #[serde(default = "default_dpop_nonce_lifetime")]
    pub nonce_lifetime_seconds: i64,
}

impl Default for DpopSettings {
    fn default() -> Self {
        DpopSettings {
            require_nonce: false,
            proof_lifetime_seconds: default_dpop_proof_lifetime(),
            nonce_lifetime_seconds: default_dpop_nonce_lifetime(),
        }
    }
}

fn default_dpop_proof_lifetime() -> i64 {
    60
}

fn default_dpop_nonce_lifetime() -> i64 {
    300
}

/// How the policy engine resolves consent.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Never reuse a consent from the ledger for a new delegation the user is not present for.
    #[serde(default)]
    pub strict_consent: bool,
}

/// Lifetimes in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenLifetimes {
    #[serde(default = "default_access_lifetime")]
    pub access_token_seconds: i64,
    /// How long a refresh token lives; each rotation starts a new one of this length.
    #[serde(default = "default_refresh_lifetime")]
    pub refresh_token_seconds: i64,
    #[serde(default = "default_id_token_lifetime")]
    pub id_token_seconds: i64,
    /// How long a delegation can be refreshed at all, counted from its creation, however often its
    /// refresh tokens rotate; then the user is asked again.
    #[serde(default = "default_delegation_lifetime")]
    pub delegation_lifetime_seconds: i64,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        TokenLifetimes {
            access_token_seconds: default_access_lifetime(),
            refresh_token_seconds: default_refresh_lifetime(),
            id_token_seconds: default_id_token_lifetime(),
            delegation_lifetime_seconds: default_delegation_lifetime(),
        }
    }
}

fn default_delegation_lifetime() -> i64 {
    90 * 24 * 3600
}

fn default_refresh_lifetime() -> i64 {
    30 * 24 * 3600
}
fn default_id_token_lifetime() -> i64 {
    300
}

/// The interactive side: login sessions, their limits, and what `/authorize` demands.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginSettings {
    /// How long a login session lasts without signing in again.
    #[serde(default = "default_session_seconds")]
    pub session_seconds: i64,
    /// Require PKCE from every client (public clients always need it).
    #[serde(default = "default_true")]
    pub require_pkce: bool,
    /// Failed sign-ins allowed per username, and per client IP, within `lockout_window_seconds`.
    #[serde(default = "default_attempts")]
    pub failed_attempts_max: u32,
    #[serde(default = "default_lockout_window")]
    pub lockout_window_seconds: i64,
    /// Ask users who enrolled TOTP for a code at every sign-in; otherwise only for a step-up.
    #[serde(default)]
    pub second_factor_at_sign_in: bool,
    /// Argon2 password verifications running at once in this process (19 MiB each); a sign-in that
    /// finds them all busy waits briefly, then is answered 503 with `Retry-After`.
    #[serde(default = "default_password_verifications")]
    pub password_verifications_concurrent_max: usize,
}

impl Default for LoginSettings {
    fn default() -> Self {
        LoginSettings {
            session_seconds: default_session_seconds(),
            require_pkce: true,
            failed_attempts_max: default_attempts(),
            lockout_window_seconds: default_lockout_window(),
            second_factor_at_sign_in: false,
            password_verifications_concurrent_max: default_password_verifications(),
        }
    }
}

fn default_session_seconds() -> i64 {
    8 * 3600
}
fn default_true() -> bool {
    true
}
fn default_attempts() -> u32 {
    5
}
fn default_lockout_window() -> i64 {
    300
}
fn default_password_verifications() -> usize {
    4
}

/// The device authorization grant (RFC 8628).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSettings {
    /// How long a device code and its user code can be used (`expires_in`).
    #[serde(default = "default_device_code_seconds")]
    pub code_seconds: i64,
    /// The least number of seconds between two polls (`interval`); polling faster adds 5 seconds.
    #[serde(default = "default_device_interval_seconds")]
    pub interval_seconds: i64,
    /// Wrong user codes one client address, or one session, may type within `lockout_window_seconds`.
    #[serde(default = "default_attempts")]
    pub user_code_attempts_max: u32,
    #[serde(default = "default_lockout_window")]
    pub lockout_window_seconds: i64,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            code_seconds: default_device_code_seconds(),
            interval_seconds: default_device_interval_seconds(),
            user_code_attempts_max: default_attempts(),
            lockout_window_seconds: default_lockout_window(),
        }
    }
}

fn default_device_code_seconds() -> i64 {
    600
}
fn default_device_interval_seconds() -> i64 {
    5
}

/// OpenID Client-Initiated Backchannel Authentication (CIBA Core 1.0).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CibaSettings {
    /// How long a request waits for its user (`expires_in`) when it asks no `requested_expiry`, and the
    /// longest it may ask.
    #[serde(default = "default_ciba_expiry_seconds")]
    pub expiry_seconds: i64,
    /// The least number of seconds between two polls (`interval`); polling faster adds 5 seconds.
    #[serde(default = "default_device_interval_seconds")]
    pub interval_seconds: i64,
    /// Most backchannel requests waiting for their users at once, across all nodes.
    #[serde(default = "default_pending_requests_max")]
    pub pending_requests_max: u64,
    /// How long the server waits for a client's notification endpoint per attempt (ping mode).
    #[serde(default = "default_ping_timeout_seconds")]
    pub ping_timeout_seconds: u64,
}

impl Default for CibaSettings {
    fn default() -> Self {
        CibaSettings {
            expiry_seconds: default_ciba_expiry_seconds(),
            interval_seconds: default_device_interval_seconds(),
            pending_requests_max: default_pending_requests_max(),
            ping_timeout_seconds: default_ping_timeout_seconds(),
        }
    }
}

fn default_ciba_expiry_seconds() -> i64 {
    300
}
fn default_ping_timeout_seconds() -> u64 {
    5
}

/// Bounds on what one request may carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "default_body_bytes_max")]
    pub body_bytes_max: usize,
    #[serde(default = "default_scopes_per_request_max")]
    pub scopes_per_request_max: usize,
    #[serde(default = "default_scope_len_max")]
    pub scope_len_max: usize,
    /// Longest `state` an authorization request may carry (bytes).
    #[serde(default = "default_state_bytes_max")]
    pub state_bytes_max: usize,
    /// Longest `nonce` (bytes).
    #[serde(default = "default_nonce_bytes_max")]
    pub nonce_bytes_max: usize,
    /// Longest `login_hint` (bytes).
    #[serde(default = "default_login_hint_bytes_max")]
    pub login_hint_bytes_max: usize,
    /// Longest `authorization_details` JSON (bytes).
    #[serde(default = "default_authorization_details_bytes_max")]
    pub authorization_details_bytes_max: usize,
    /// Largest authorization request kept while the user signs in and consents (bytes, as stored).
    #[serde(default = "default_stored_request_bytes_max")]
    pub stored_request_bytes_max: usize,
    /// Most authorization requests waiting for their user at once, across all nodes.
    #[serde(default = "default_pending_requests_max")]
    pub pending_requests_max: u64,
    /// Most authorization requests one client address may start per 10 minutes (per node); 0: no limit.
    #[serde(default = "default_pending_requests_per_address_max")]
    pub pending_requests_per_address_max: u32,
    /// Most device authorization requests waiting for their user at once, across all nodes.
    #[serde(default = "default_pending_requests_max")]
    pub pending_device_requests_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes_max: default_body_bytes_max(),
            scopes_per_request_max: default_scopes_per_request_max(),
            scope_len_max: default_scope_len_max(),
            state_bytes_max: default_state_bytes_max(),
            nonce_bytes_max: default_nonce_bytes_max(),
            login_hint_bytes_max: default_login_hint_bytes_max(),
            authorization_details_bytes_max: default_authorization_details_bytes_max(),
            stored_request_bytes_max: default_stored_request_bytes_max(),
            pending_requests_max: default_pending_requests_max(),
            pending_requests_per_address_max: default_pending_requests_per_address_max(),
            pending_device_requests_max: default_pending_requests_max(),
        }
    }
}

/// A scope the server knows: a name, or a template such as `account.list.*` or `account.{id}.read`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    pub name: String,
    /// Shown on the consent page.
    #[serde(default)]
    pub description: String,
    /// Granted when a request names no scope.
    #[serde(default)]
    pub default: bool,
    /// The longest a delegation holds this scope; authorizers may shorten it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_seconds: Option<i64>,
    /// How long a user's consent to this scope stands before they must be asked again; the client's
    /// `consent_lifetime_seconds` may shorten it. Until revoked when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_lifetime_seconds: Option<i64>,
    /// Names of the authorizers that decide it, in order.
    #[serde(default)]
    pub authorizers: Vec<String>,
}

/// A client registered at start (created if absent, updated if changed).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    pub name: String,
    #[serde(default)]
    pub kind: ClientKind,
    #[serde(default)]
    pub audience: ClientAudience,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default = "default_auth_method")]
    pub token_endpoint_auth_method: String,
    /// SHA-256 (hex) of the client's secret; the secret itself never goes in a file.
    #[serde(default)]
    pub secret_sha256: Option<String>,
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    #[serde(default)]
    pub resources: Vec<String>,
    /// Authorization requests must arrive by PAR (RFC 9126).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// Seconds a rotated refresh token may be presented again for a fresh pair; 0 turns it off.
    #[serde(default)]
    pub refresh_reuse_grace_seconds: u32,
    /// Absolute lifetime of this client's delegations; the server's `[tokens]` value when absent.
    #[serde(default)]
    pub delegation_lifetime_seconds: Option<i64>,
    /// How long a consent given to this client stands; the scope's, if shorter, wins.
    #[serde(default)]
    pub consent_lifetime_seconds: Option<i64>,
    /// A resource server: may introspect tokens whose audience is one of its `resources`.
    #[serde(default)]
    pub resource_server: bool,
    /// The algorithm of this client's ID tokens: RS256 (the default), ES256 or EdDSA.
    #[serde(default)]
    pub id_token_signed_response_alg: Option<String>,
    /// The password grant may sign in users who have a second factor, with the password alone.
    #[serde(default)]
    pub password_grant_second_factor_users: bool,
    /// RFC 9449 §5.2: every token request must carry a DPoP proof.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// What the client may do with token exchange (RFC 8693); with the token exchange grant type.
    #[serde(default)]
    pub token_exchange: Option<TokenExchangeConfig>,
    /// The subject of the one actor that may exchange this client's access tokens (`may_act`).
    #[serde(default)]
    pub may_act: Option<String>,
    /// OpenID CIBA: `poll` or `ping`, with the CIBA grant type.
    #[serde(default)]
    pub backchannel_token_delivery_mode: Option<String>,
    /// OpenID CIBA ping mode: where the server pings the client (`https`, or `http` on loopback).
    #[serde(default)]
    pub backchannel_client_notification_endpoint: Option<String>,
    /// The assisted token flow: the exact origins that may frame `/assisted-token` for this client.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// An auditor: may be granted the `audit` scope by client credentials, which opens the audit API.
    #[serde(default)]
    pub auditor: bool,
}

/// A client's `token_exchange` settings, in the configuration file and the admin API.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeConfig {
    /// May exchange without an actor token: the new token is the subject's (impersonation).
    #[serde(default)]
    pub impersonation: bool,
    /// `true` (any actor), `false` (none, the default), or the subjects that may act.
    #[serde(default)]
    pub actors: Actors,
    /// May ask for a refresh token in its own delegations.
    #[serde(default)]
    pub refresh_tokens: bool,
}

impl TokenExchangeConfig {
    /// The settings a registration records.
    pub fn settings(&self) -> TokenExchangeSettings {
        TokenExchangeSettings {
            impersonation: self.impersonation,
            actors: self.actors.clone(),
            refresh_tokens: self.refresh_tokens,
        }
    }
}

/// The `may_act` party a client setting names: a subject of this server.
pub fn may_act_party(subject: Option<&String>) -> Option<Party> {
    subject.map(|sub| Party {
        sub: sub.clone(),
        iss: None,
    })
}

fn default_issuer() -> String {
    "http://127.0.0.1:8080".into()
}
fn default_bind() -> String {
    "127.0.0.1:8080".into()
}
fn default_key_dir() -> PathBuf {
    PathBuf::from("./data/keys")
}
fn default_access_lifetime() -> i64 {
    300
}
fn default_body_bytes_max() -> usize {
    16 * 1024
}
fn default_scopes_per_request_max() -> usize {
    50
}
fn default_scope_len_max() -> usize {
    200
}
fn default_state_bytes_max() -> usize {
    512
}
fn default_nonce_bytes_max() -> usize {
    512
}
fn default_login_hint_bytes_max() -> usize {
    256
}
fn default_authorization_details_bytes_max() -> usize {
    4096
}
fn default_stored_request_bytes_max() -> usize {
    8192
}
fn default_pending_requests_max() -> u64 {
    10_000
}
fn default_pending_requests_per_address_max() -> u32 {
    300
}
fn default_auth_method() -> String {
    "client_secret_basic".into()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            issuer: default_issuer(),
            bind: default_bind(),
            database: None,
            key_dir: default_key_dir(),
            key_encryption_key: None,
            signing_alg: Algorithm::default(),
            admin_token: None,
            metrics_token: None,
            default_audience: None,
            tokens: TokenLifetimes::default(),
            login: LoginSettings::default(),
            limits: Limits::default(),
            device: DeviceSettings::default(),
            ciba: CibaSettings::default(),
            scopes: Vec::new(),
            authorizers: Vec::new(),
            policy: PolicySettings::default(),
            dpop: DpopSettings::default(),
            audit: AuditSettings::default(),
            clients: Vec::new(),
            trusted_issuers: Vec::new(),
        }
    }
}

/// A configuration the server refuses to start with.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub problem: String,
}

impl Config {
    /// Reads `path` (or the default file when present, or nothing), applies environment overrides
    /// (`ISSUER`, `BIND`, `DATABASE_URL`, `ADMIN_TOKEN`) and validates.
    pub fn load(path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let (file, text) = match path {
            Some(p) => (
                p.display().to_string(),
                Some(std::fs::read_to_string(p).map_err(|e| ConfigError {
                    file: p.display().to_string(),
                    key: "-".into(),
                    problem: format!("cannot read: {e}"),
                })?),
            ),
            None => (
                DEFAULT_CONFIG_FILE.to_owned(),
                std::fs::read_to_string(DEFAULT_CONFIG_FILE).ok(),
            ),
        };
        let mut config = match text {
            Some(t) => Self::parse(&file, &t)?,
            None => Config::default(),
        };
        if let Some(v) = env("ISSUER") {
            config.issuer = v;
        }
        if let Some(v) = env("BIND") {
            config.bind = v;
        }
        if let Some(v) = env("DATABASE_URL") {
            config.database = Some(v);
        }
        if let Some(v) = env("ADMIN_TOKEN") {
            config.admin_token = Some(v);
        }
        if let Some(v) = env("METRICS_TOKEN") {
            config.metrics_token = Some(v);
        }
        if let Some(v) = env("KEY_ENCRYPTION_KEY") {
            config.key_encryption_key = Some(v);
        }
        config.validate(&file)?;
        Ok(config)
    }

    /// Parses TOML text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            ConfigError {
                file: line.map_or(file.to_owned(), |l| format!("{file}:{l}")),
                key: "-".into(),
                problem: e.message().to_owned(),
            }
        })
    }

    /// Checks what TOML types cannot: URLs, names, references between sections.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: String, problem: String| {
            Err(ConfigError {
                file: file.to_owned(),
                key,
                problem,
            })
        };
        if !(self.issuer.starts_with("https://") || self.issuer.starts_with("http://"))
            || self.issuer.contains(['?', '#'])
            || self.issuer.ends_with('/')
        {
            return err(
                "issuer".into(),
                format!(
                    "{:?} must be an http(s) URL with no query, fragment or trailing slash",
                    self.issuer
                ),
            );
        }
        if self.bind.parse::<std::net::SocketAddr>().is_err() {
            return err(
                "bind".into(),
                format!("{:?} is not an address like 127.0.0.1:8080", self.bind),
            );
        }
        if !(1..=86_400).contains(&self.tokens.access_token_seconds) {
            return err(
                "tokens.access_token_seconds".into(),
                "must be between 1 and 86400".into(),
            );
        }
        if !(1..=10_000).contains(&self.audit.followers_max) {
            return err("audit.followers_max".into(), "must be 1 to 10000".into());
        }
        if !(1..=300).contains(&self.audit.heartbeat_seconds) {
            return err("audit.heartbeat_seconds".into(), "must be 1 to 300".into());
        }
        if !(1..=3600).contains(&self.dpop.proof_lifetime_seconds) {
            return err(
                "dpop.proof_lifetime_seconds".into(),
                "must be between 1 and 3600".into(),
            );
        }
        if !(10..=86_400).contains(&self.dpop.nonce_lifetime_seconds) {
            return err(
                "dpop.nonce_lifetime_seconds".into(),
                "must be between 10 and 86400".into(),
            );
        }
        if !(1..=1_000_000).contains(&self.audit.checkpoint_every_events) {
            return err(
                "audit.checkpoint_every_events".into(),
                "must be between 1 and 1000000".into(),
            );
        }
        if !(1..=86_400).contains(&self.audit.checkpoint_every_seconds) {
            return err(
                "audit.checkpoint_every_seconds".into(),
                "must be between 1 and 86400".into(),
            );
        }
        if !(60..=3_600).contains(&self.device.code_seconds) {
            return err("device.code_seconds".into(), "must be between 60 and 3600".into());
        }
        if !(1..=60).contains(&self.device.interval_seconds) {
            return err(
                "device.interval_seconds".into(),
                "must be between 1 and 60".into(),
            );
        }
        if !(30..=3_600).contains(&self.ciba.expiry_seconds) {
            return err("ciba.expiry_seconds".into(), "must be between 30 and 3600".into());
        }
        if !(1..=60).contains(&self.ciba.interval_seconds) {
            return err("ciba.interval_seconds".into(), "must be between 1 and 60".into());
        }
        if !(1..=30).contains(&self.ciba.ping_timeout_seconds) {
            return err(
                "ciba.ping_timeout_seconds".into(),
                "must be between 1 and 30".into(),
            );
        }
        if self.login.password_verifications_concurrent_max == 0 {
            return err(
                "login.password_verifications_concurrent_max".into(),
                "must be at least 1".into(),
            );
        }
        if let Some(t) = &self.admin_token
            && t.len() < 32
        {
            return err("admin_token".into(), "must be at least 32 characters".into());
        }
        if let Some(t) = &self.metrics_token
            && t.len() < 32
        {
            return err("metrics_token".into(), "must be at least 32 characters".into());
        }
        if let Some(Err(e)) = self.key_encryption_key.as_deref().map(crate::keys::Kek::parse) {
            return err("key_encryption_key".into(), e.to_string());
        }
        let policy = crate::issuance::Policy::from_config(self).map_err(|(key, problem)| ConfigError {
            file: file.to_owned(),
            key,
            problem,
        })?;
        let mut names = BTreeSet::new();
        for (i, s) in self.scopes.iter().enumerate() {
            if !crate::oauth::scope::is_scope_token(&s.name) {
                return err(
                    format!("scopes[{i}].name"),
                    format!("{:?} is not a valid scope name", s.name),
                );
            }
            if s.name == crate::issuance::AUDIT_SCOPE {
                return err(
                    format!("scopes[{i}].name"),
                    "\"audit\" is built in: granted to clients with auditor = true, it needs no entry".into(),
                );
            }
            if !names.insert(s.name.as_str()) {
                return err(
                    format!("scopes[{i}].name"),
                    format!("{:?} is defined twice", s.name),
                );
            }
            if let Some(Err(problem)) = s
                .consent_lifetime_seconds
                .map(crate::clients::validate_consent_lifetime)
            {
                return err(format!("scopes[{i}].consent_lifetime_seconds"), problem);
            }
        }
        let mut ids = BTreeSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            let key = |k: &str| format!("clients[{i}].{k}");
            if c.client_id.is_empty() || c.client_id.len() > 128 || c.client_id.contains(':') {
                return err(key("client_id"), "1 to 128 characters, no ':'".into());
            }
            if !ids.insert(c.client_id.as_str()) {
                return err(key("client_id"), format!("{:?} is defined twice", c.client_id));
            }
            if let Some(g) = c
                .grant_types
                .iter()
                .find(|g| !SUPPORTED_GRANT_TYPES.contains(&g.as_str()) && g.as_str() != ASSISTED_TOKEN)
            {
                return err(key("grant_types"), format!("unsupported grant type {g:?}"));
            }
            if !SUPPORTED_AUTH_METHODS.contains(&c.token_endpoint_auth_method.as_str()) {
                return err(
                    key("token_endpoint_auth_method"),
                    format!(
                        "{:?} is not one of {SUPPORTED_AUTH_METHODS:?}",
                        c.token_endpoint_auth_method
                    ),
                );
            }
            if let Some(s) = c.scopes.iter().find(|s| {
                !names.contains(s.as_str())
                    && policy.engine.find(s).is_none()
                    && s.as_str() != crate::issuance::AUDIT_SCOPE
            }) {
                return err(
                    key("scopes"),
                    format!("scope {s:?} is not defined under [[scopes]]"),
                );
            }
            let secret_method = c.token_endpoint_auth_method.starts_with("client_secret");
            match &c.secret_sha256 {
                Some(h) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    return err(key("secret_sha256"), "must be 64 hex digits".into());
                }
                None if secret_method => {
                    return err(
                        key("secret_sha256"),
                        format!("required by {}", c.token_endpoint_auth_method),
                    );
                }
                _ => {}
            }
            if c.token_endpoint_auth_method == "private_key_jwt" && c.jwks.is_none() {
                return err(key("jwks"), "required by private_key_jwt".into());
            }
            if let Some(Err(problem)) = c
                .consent_lifetime_seconds
                .map(crate::clients::validate_consent_lifetime)
            {
                return err(key("consent_lifetime_seconds"), problem);
            }
            if let Err(e) = crate::clients::delivery_mode(c.backchannel_token_delivery_mode.as_deref()) {
                return err(key("backchannel_token_delivery_mode"), e.to_string());
            }
            if let Err(e) = crate::clients::validate_backchannel(&crate::clients::spec_from_config(c)) {
                return err(key("backchannel_token_delivery_mode"), e.to_string());
            }
            if let Err(e) = crate::clients::validate_assisted_token(&crate::clients::spec_from_config(c)) {
                return err(key("allowed_origins"), e.to_string());
            }
            if let Err(e) = crate::clients::validate_auditor(&crate::clients::spec_from_config(c)) {
                return err(key("auditor"), e.to_string());
            }
        }
        let mut issuers = BTreeSet::new();
        for (i, t) in self.trusted_issuers.iter().enumerate() {
            let key = |k: &str| format!("trusted_issuers[{i}].{k}");
            t.validate(|s| names.contains(s) || policy.engine.find(s).is_some())
                .or_else(|(k, problem)| err(key(k), problem))?;
            if !issuers.insert(t.issuer.as_str()) {
                return err(key("issuer"), format!("{:?} is defined twice", t.issuer));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn no_file_means_the_documented_defaults() {
        let c = Config::load(None, no_env).unwrap();
        assert_eq!(
            (c.issuer.as_str(), c.bind.as_str()),
            ("http://127.0.0.1:8080", "127.0.0.1:8080")
        );
        assert_eq!(c.signing_alg, Algorithm::ES256);
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = |k: &str| (k == "ISSUER").then(|| "https://id.example".to_owned());
        let c = Config::load(None, env).unwrap();
        assert_eq!(c.issuer, "https://id.example");
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_problem() {
        let e = Config::parse("c.toml", "issuer = 3\n").unwrap_err();
        assert!(e.to_string().starts_with("c.toml:1: -: "), "{e}");
        let e = Config::parse("c.toml", "isuer = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("isuer"), "{e}");

        let text = r#"
            [[scopes]]
            name = "read"
            [[clients]]
            client_id = "svc"
            name = "Service"
            grant_types = ["client_credentials"]
            scopes = ["write"]
            secret_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
        "#;
        let e = Config::parse("c.toml", text)
            .unwrap()
            .validate("c.toml")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml: clients[0].scopes: scope \"write\" is not defined under [[scopes]]"
        );

        let bad_issuer = Config {
            issuer: "http://x/".into(),
            ..Config::default()
        };
        assert_eq!(bad_issuer.validate("f").unwrap_err().key, "issuer");
    }

    #[test]
    fn consent_lifetimes_on_scopes_and_clients_are_checked_naming_the_key() {
        let file = |scope: &str, client: &str| {
            format!(
                r#"
                [[scopes]]
                name = "accounts"
                consent_lifetime_seconds = {scope}
                [[clients]]
                client_id = "tpp"
                name = "Payment service"
                grant_types = ["client_credentials"]
                secret_sha256 = "{}"
                consent_lifetime_seconds = {client}
                "#,
                "a".repeat(64)
            )
        };
        let psd2 = Config::parse("c.toml", &file("15552000", "7776000")).unwrap();
        assert!(psd2.validate("c.toml").is_ok());
        assert_eq!(
            crate::clients::spec_from_config(&psd2.clients[0]).consent_lifetime_seconds,
            Some(7_776_000)
        );
        let e = Config::parse("c.toml", &file("0", "60"))
            .unwrap()
            .validate("c.toml")
            .unwrap_err();
        assert_eq!(e.key, "scopes[0].consent_lifetime_seconds");
        let e = Config::parse("c.toml", &file("60", "-1"))
            .unwrap()
            .validate("c.toml")
            .unwrap_err();
        assert_eq!(e.key, "clients[0].consent_lifetime_seconds");
        let ten_years_and_a_day = crate::clients::CONSENT_LIFETIME_SECONDS_MAX + 86_400;
        let e = Config::parse("c.toml", &file(&ten_years_and_a_day.to_string(), "60"))
            .unwrap()
            .validate("c.toml")
            .unwrap_err();
        assert!(e.problem.contains("ten years"), "{}", e.problem);
    }

    #[test]
    fn a_client_file_entry_takes_ciba_settings_and_push_is_refused_naming_the_key() {
        let file = |mode: &str| {
            format!(
                r#"
                [[clients]]
                client_id = "bank"
                name = "Bank"
                grant_types = ["{}"]
                secret_sha256 = "{}"
                backchannel_token_delivery_mode = "{mode}"
                backchannel_client_notification_endpoint = "https://bank.example/ciba"
                "#,
                crate::grants::ciba::GRANT_TYPE,
                "a".repeat(64)
            )
        };
        let ping = Config::parse("c.toml", &file("ping")).unwrap();
        assert!(ping.validate("c.toml").is_ok());
        let spec = crate::clients::spec_from_config(&ping.clients[0]);
        assert_eq!(
            spec.backchannel_token_delivery_mode,
            Some(projections::event::BackchannelDeliveryMode::Ping)
        );
        let push = Config::parse("c.toml", &file("push")).unwrap();
        let e = push.validate("c.toml").unwrap_err();
        assert_eq!(e.key, "clients[0].backchannel_token_delivery_mode");
        let poll = Config::parse("c.toml", &file("poll")).unwrap();
        let e = poll.validate("c.toml").unwrap_err();
        assert!(e.problem.contains("only for ping"), "{}", e.problem);
    }

    #[test]
    fn a_client_file_entry_takes_token_exchange_settings_and_may_act() {
        let client = |exchange: &str| {
            format!(
                r#"
                [[clients]]
                client_id = "svc"
                name = "Service"
                grant_types = ["{}"]
                secret_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
                may_act = "gateway"
                token_exchange = {exchange}
                "#,
                crate::grants::token_exchange::GRANT_TYPE
            )
        };
        let c = Config::parse(
            "c.toml",
            &client(r#"{ impersonation = true, actors = ["gateway"] }"#),
        )
        .unwrap();
        let spec = crate::clients::spec_from_config(&c.clients[0]);
        assert_eq!(crate::clients::validate(&spec), Ok(()));
        assert_eq!(spec.may_act.map(|p| p.sub), Some("gateway".to_owned()));
        let settings = spec.token_exchange.unwrap();
        assert!(settings.impersonation && !settings.refresh_tokens);
        assert_eq!(settings.actors, Actors::Only(vec!["gateway".into()]));
        let any = Config::parse("c.toml", &client("{ actors = true }")).unwrap();
        assert_eq!(
            any.clients[0].token_exchange.as_ref().map(|t| t.actors.clone()),
            Some(Actors::Any(true))
        );
        let e = Config::parse("c.toml", &client("{ impersonate = true }")).unwrap_err();
        assert!(e.to_string().contains("impersonate"), "{e}");
    }
}
