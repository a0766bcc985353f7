//! The server's shared state and the imperative shell around the pure decisions: clock, store, keys.

use std::sync::Arc;

use projections::event::UnixSeconds;

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
}

/// Everything a request handler may reach.
pub struct App {
    pub store: Arc<dyn EventStore>,
    pub config: Config,
    pub policy: Policy,
    pub keys: KeyRing,
    pub endpoints: Endpoints,
}

/// Shared handle to [`App`].
pub type AppRef = Arc<App>;

/// Unix seconds from the system clock: the only place request handling reads it.
pub fn now() -> UnixSeconds {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl App {
    /// Builds the state for `config` over `store`.
    pub fn new(store: Arc<dyn EventStore>, config: Config) -> App {
        let issuer = config.issuer.clone();
        let keys = KeyRing::new(
            KeyDir::new(&config.key_dir),
            config.signing_alg,
            config.tokens.access_token_seconds,
        );
        App {
            store,
            policy: Policy::from_config(&config),
            keys,
            endpoints: Endpoints {
                token: format!("{issuer}/token"),
                introspect: format!("{issuer}/introspect"),
                revoke: format!("{issuer}/revoke"),
                jwks: format!("{issuer}/jwks"),
            },
            config,
        }
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
