//! Which key signs now, kept in step with the ledger across processes.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use projections::event::{SigningKeyActivated, SigningKeyAdded, SigningKeyRetired, UnixSeconds, V1};
use projections::keys::SigningKey;
use projections::{Event, queries};

use super::{Algorithm, KeyDir, KeyError, KeyMaterial};
use crate::store::{self, AppendError, AppendRequest, EventStore, ExpectedVersion, RowFilter};

/// The stream every key event is appended to, so rotations are serialised by its version.
pub const KEYS_STREAM: &str = projections::event::streams::SIGNING_KEYS;

/// How long a process keeps signing with the key it last saw before asking the ledger again.
pub const CURRENT_KEY_CACHE: Duration = Duration::from_secs(10);

/// The signing keys as this process uses them.
pub struct KeyRing {
    dir: KeyDir,
    alg: Algorithm,
    /// Longest lifetime of any token signed; a retired key stays published this long (plus the cache).
    token_lifetime_max: i64,
    current: RwLock<Option<(Arc<KeyMaterial>, Instant)>>,
}

impl KeyRing {
    /// A ring over the private keys in `dir`, generating `alg` keys.
    pub fn new(dir: KeyDir, alg: Algorithm, token_lifetime_max: i64) -> Self {
        KeyRing {
            dir,
            alg,
            token_lifetime_max,
            current: RwLock::new(None),
        }
    }

    /// Every signing key row in the ledger.
    pub async fn all(store: &dyn EventStore) -> Result<Vec<SigningKey>, KeyError> {
        Ok(store::find::<SigningKey>(store, RowFilter::default()).await?)
    }

    /// The public JWKs to publish at `now`: current keys and retired ones whose tokens may still be live.
    pub async fn jwks(store: &dyn EventStore, now: UnixSeconds) -> Result<Vec<serde_json::Value>, KeyError> {
        Ok(Self::all(store)
            .await?
            .into_iter()
            .filter(|k| queries::key_published(k, now))
            .map(|k| k.public_jwk)
            .collect())
    }

    /// The key to sign with now, generating and recording the first one if the ledger has none.
    pub async fn current(
        &self,
        store: &dyn EventStore,
        now: UnixSeconds,
    ) -> Result<Arc<KeyMaterial>, KeyError> {
        if let Ok(guard) = self.current.read()
            && let Some((key, at)) = guard.as_ref()
            && at.elapsed() < CURRENT_KEY_CACHE
        {
            return Ok(key.clone());
        }
        let keys = Self::all(store).await?;
        let key = match queries::current_key(&keys) {
            Some(row) => {
                let alg: Algorithm = row.alg.parse().map_err(|e: String| KeyError::File {
                    path: row.kid.clone(),
                    problem: e,
                })?;
                match self.cached(&row.kid) {
                    Some(k) => k,
                    None => Arc::new(self.dir.load(&row.kid, alg)?),
                }
            }
            None => Arc::new(self.install(store, None, now).await?),
        };
        if let Ok(mut guard) = self.current.write() {
            *guard = Some((key.clone(), Instant::now()));
        }
        Ok(key)
    }

    fn cached(&self, kid: &str) -> Option<Arc<KeyMaterial>> {
        let guard = self.current.read().ok()?;
        guard
            .as_ref()
            .filter(|(k, _)| k.kid == kid)
            .map(|(k, _)| k.clone())
    }

    /// Adds a new key and makes it current; the previous current key is retired but stays published until
    /// every token it signed has expired.
    pub async fn rotate(&self, store: &dyn EventStore, now: UnixSeconds) -> Result<KeyMaterial, KeyError> {
        let keys = Self::all(store).await?;
        let previous = queries::current_key(&keys).map(|k| k.kid.clone());
        let key = self.install(store, previous, now).await?;
        if let Ok(mut guard) = self.current.write() {
            *guard = None;
        }
        Ok(key)
    }

    /// Generates a key, saves its private half, and records it (retiring `previous`). The append expects
    /// the keys stream at the version it read, so two processes racing to install a key cannot both win.
    async fn install(
        &self,
        store: &dyn EventStore,
        previous: Option<String>,
        now: UnixSeconds,
    ) -> Result<KeyMaterial, KeyError> {
        let expected = match store.stream_version(KEYS_STREAM).await? {
            Some(v) => ExpectedVersion::Exact(v),
            None => ExpectedVersion::NoStream,
        };
        let key = KeyMaterial::generate(self.alg)?;
        self.dir.save(&key)?;
        let mut events = vec![
            Event::SigningKeyAdded(SigningKeyAdded {
                v: V1,
                kid: key.kid.clone(),
                alg: key.alg.name().into(),
                public_jwk: key.public_jwk.clone(),
                at: now,
            }),
            Event::SigningKeyActivated(SigningKeyActivated {
                v: V1,
                kid: key.kid.clone(),
                at: now,
            }),
        ];
        if let Some(kid) = previous {
            events.push(Event::SigningKeyRetired(SigningKeyRetired {
                v: V1,
                kid,
                at: now,
                publish_until: now + self.token_lifetime_max + CURRENT_KEY_CACHE.as_secs() as i64,
            }));
        }
        match store
            .append(AppendRequest::to_stream(KEYS_STREAM, expected, events))
            .await
        {
            Ok(_) => Ok(key),
            Err(e) => {
                self.dir.discard(&key);
                match e {
                    // Another process installed a key first: use theirs.
                    AppendError::Conflict { .. } => {
                        let keys = Self::all(store).await?;
                        let row = queries::current_key(&keys).ok_or(KeyError::NoCurrentKey)?;
                        let alg = row.alg.parse().map_err(|e: String| KeyError::File {
                            path: row.kid.clone(),
                            problem: e,
                        })?;
                        self.dir.load(&row.kid, alg)
                    }
                    other => Err(KeyError::Append(other.to_string())),
                }
            }
        }
    }
}
