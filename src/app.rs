//! The server's shared state and the imperative shell around the pure decisions: clock, store, keys.
//!
//! A request reads [`App::now`] once, at its entry, and passes the instant to every decision.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use projections::event::UnixSeconds;

use crate::clock::ClockRef;
use crate::config::Config;
use crate::issuance::Policy;
use crate::keys::{KeyDir, KeyRing};
use crate::store::EventStore;

/// The endpoint URLs derived from the issuer.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub token: String,
    pub introspect: String,
    pub revoke: String,
    pub jwks: String,
    pub userinfo: String,
}

/// Everything a request handler may reach.
pub struct App {
    pub store: Arc<dyn EventStore>,
    /// The store's clock: the only source of the current time (a manual one in tests).
    pub clock: ClockRef,
    pub config: Config,
    /// The file the configuration came from, re-read on policy reload.
    pub config_file: Option<PathBuf>,
    policy: RwLock<Arc<Policy>>,
    pub keys: KeyRing,
    pub endpoints: Endpoints,
    /// For outgoing calls (external decision points); one client, so connections are pooled.
    pub http: reqwest::Client,
    /// Bounds the Argon2 verifications running at once (`login.password_verifications_concurrent_max`).
    pub password_gate: crate::users::password::VerifyGate,
    /// The CSRF HMAC key, read from (or created in) the off-ledger store on first use.
    pub csrf_key: tokio::sync::OnceCell<aws_lc_rs::hmac::Key>,
    /// The DPoP nonce HMAC key, read from (or created in) the off-ledger store on first use.
    pub dpop_nonce_key: tokio::sync::OnceCell<aws_lc_rs::hmac::Key>,
    /// The trusted issuers of `[[trusted_issuers]]` and their keys (fetched ones cached here).
    pub trust: crate::trust::Trust,
    /// One permit per live follower of the audit API (`audit.followers_max`).
    pub audit_followers: Arc<tokio::sync::Semaphore>,
}

/// Why a policy could not be loaded or published.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("recording the policy failed: {0}")]
    Append(#[from] crate::store::AppendError),
}

/// Shared handle to [`App`].
pub type AppRef = Arc<App>;

impl App {
    /// Builds the state for a validated `config` over `store`; the server reads the store's clock, so
    /// decisions and `recorded_at` agree.
    pub fn new(store: Arc<dyn EventStore>, config: Config) -> Result<App, crate::config::ConfigError> {
        crate::telemetry::install();
        let policy = Policy::from_config(&config).map_err(|(key, problem)| crate::config::ConfigError {
            file: "configuration".into(),
            key,
            problem,
        })?;
        let issuer = config.issuer.clone();
        let kek = config
            .key_encryption_key
            .as_deref()
            .map(crate::keys::Kek::parse)
            .transpose()
            .map_err(|e| crate::config::ConfigError {
                file: "configuration".into(),
                key: "key_encryption_key".into(),
                problem: e.to_string(),
            })?;
        let keys = KeyRing::new(
            KeyDir::new(&config.key_dir),
            config.signing_alg,
            // A retired key stays published while any token it signed may live: access or ID token.
            config
                .tokens
                .access_token_seconds
                .max(config.tokens.id_token_seconds),
        )
        .with_kek(kek);
        // Redirects are not followed: a decision point that answers elsewhere is misconfigured, and a 3xx
        // denies like any other non-2xx. Built rather than `Client::new()`, which panics on failure.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| crate::config::ConfigError {
                file: "configuration".into(),
                key: "-".into(),
                problem: format!("cannot set up the HTTP client: {e}"),
            })?;
        Ok(App {
            clock: store.clock(),
            store,
            config_file: None,
            policy: RwLock::new(Arc::new(policy)),
            keys,
            endpoints: Endpoints {
                token: format!("{issuer}/token"),
                introspect: format!("{issuer}/introspect"),
                revoke: format!("{issuer}/revoke"),
                jwks: format!("{issuer}/jwks"),
                userinfo: format!("{issuer}/userinfo"),
            },
            password_gate: crate::users::password::VerifyGate::new(
                config.login.password_verifications_concurrent_max,
            ),
            csrf_key: tokio::sync::OnceCell::new(),
            dpop_nonce_key: tokio::sync::OnceCell::new(),
            trust: crate::trust::Trust::new(&config.trusted_issuers),
            audit_followers: Arc::new(tokio::sync::Semaphore::new(config.audit.followers_max as usize)),
            config,
            http,
        })
    }

    /// The current Unix second. Read once per request and passed down, so one request sees one instant.
    pub fn now(&self) -> UnixSeconds {
        self.clock.now()
    }

    /// The policy in force now. A reload swaps it whole; a decision holds one version throughout.
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Records the policy in force as `PolicyPublished`, once per version (the version is the
    /// idempotency key, so every node publishing the same policy writes it once).
    pub async fn publish_policy(&self, policy: &Policy, now: UnixSeconds) -> Result<(), PolicyError> {
        let event = projections::Event::PolicyPublished(projections::event::PolicyPublished {
            v: projections::event::V1,
            version: policy.version.clone(),
            policy: policy.document.clone(),
            at: now,
        });
        let mut request = crate::store::AppendRequest::to_stream(
            projections::event::streams::POLICY,
            crate::store::ExpectedVersion::Any,
            vec![event],
        );
        request.idempotency_key = Some(format!("policy-{}", policy.version));
        self.store.append(request).await?;
        Ok(())
    }

    /// Records the configured trusted issuers in the ledger where they differ from what it holds (at
    /// start, beside the policy). Idempotent; nodes starting together record a change once.
    pub async fn record_trusted_issuers(&self, now: UnixSeconds) -> Result<usize, crate::store::AppendError> {
        crate::trust::issuers::record(self.store.as_ref(), &self.config.trusted_issuers, now).await
    }

    /// Re-reads the configuration file and puts its policy (scopes, authorizers, lifetimes) in force for
    /// the next token issued. Other settings (issuer, bind, database) need a restart.
    pub async fn reload_policy(&self, now: UnixSeconds) -> Result<String, PolicyError> {
        let fresh = Config::load(self.config_file.as_deref(), |k| std::env::var(k).ok())?;
        let mut next = self.config.clone();
        next.scopes = fresh.scopes;
        next.authorizers = fresh.authorizers;
        next.policy = fresh.policy;
        next.tokens = fresh.tokens;
        let file = self
            .config_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "configuration".into());
        next.validate(&file)?;
        let policy = Policy::from_config(&next).map_err(|(key, problem)| crate::config::ConfigError {
            file,
            key,
            problem,
        })?;
        // Recorded before it is used, so no token cites a version the ledger does not hold.
        self.publish_policy(&policy, now).await?;
        let version = policy.version.clone();
        if let Ok(mut guard) = self.policy.write() {
            *guard = Arc::new(policy);
        }
        Ok(version)
    }
    /// The audiences a client assertion sent to `endpoint` may name.
    pub fn assertion_audiences(&self, endpoint: &str) -> Vec<String> {
        vec![
            self.config.issuer.clone(),
            self.endpoints.token.clone(),
            endpoint.to_owned(),
        ]
    }
}
