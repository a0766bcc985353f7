//! What a node records when it starts: the clients its configuration declares, the policy in force, the
//! trusted issuers, and a current signing key. Several nodes may start at the same moment on one database (a rolling deploy,
//! replicas scaled together), so each step is idempotent under concurrency: losing a race to another
//! node means reading what it recorded, never failing to start.

use std::sync::Arc;

use projections::clients::Client;
use projections::event::UnixSeconds;

use crate::app::App;
use crate::clients::RegistrationError;
use crate::config::{ClientConfig, Config};
use crate::keys::KeyError;
use crate::store::{self, AppendError, EventStore, StoreError};

/// How often a step re-reads after another node changed what it was about to change.
const ATTEMPTS: usize = 5;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error("client {client_id} from the configuration: {source}")]
    Client {
        client_id: String,
        source: RegistrationError,
    },
    #[error("client {0} from the configuration kept changing under concurrent writers")]
    ClientContended(String),
    #[error("the policy: {0}")]
    Policy(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Records the configured clients, builds the app, records its policy and its trusted issuers, and makes
/// sure a signing key is current; returns the app ready to serve.
pub async fn start(
    store: Arc<dyn EventStore>,
    config: Config,
    now: UnixSeconds,
) -> Result<App, StartupError> {
    for c in &config.clients {
        record_client(store.as_ref(), c, now).await?;
    }
    let app = App::new(store, config)?;
    let policy = app.policy();
    app.publish_policy(&policy, now)
        .await
        .map_err(|e| StartupError::Policy(e.to_string()))?;
    tracing::info!(version = %policy.version, "policy in force");
    let recorded = app.record_trusted_issuers(now).await?;
    if recorded > 0 {
        tracing::info!(changes = recorded, "trusted issuers recorded");
    }
    let key = app.keys.current(app.store.as_ref(), now).await?;
    tracing::info!(kid = %key.kid, alg = key.alg.name(), issuer = %app.config.issuer, "signing key ready");
    Ok(app)
}

/// Brings one configured client into the ledger: registers it when absent, updates it when it differs,
/// nothing when it matches. When another node writes the client first (the append's expected version
/// no longer holds), reads it again and decides again.
pub async fn record_client(
    store: &dyn EventStore,
    config: &ClientConfig,
    now: UnixSeconds,
) -> Result<(), StartupError> {
    for _ in 0..ATTEMPTS {
        let existing: Option<Client> = store::get(store, &config.client_id).await?;
        let request = crate::clients::bootstrap(existing.as_ref(), config, now).map_err(|source| {
            StartupError::Client {
                client_id: config.client_id.clone(),
                source,
            }
        })?;
        let Some(request) = request else {
            return Ok(());
        };
        match store.append(request).await {
            Ok(_) => {
                tracing::info!(client_id = %config.client_id, "client from the configuration recorded");
                return Ok(());
            }
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StartupError::ClientContended(config.client_id.clone()))
}
