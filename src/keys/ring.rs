//! Which key signs now, kept in step with the ledger across processes.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use projections::event::{SigningKeyActivated, SigningKeyAdded, SigningKeyRetired, UnixSeconds, V1};
use projections::keys::{KeyStatus, SigningKey};
use projections::{Event, queries};

use super::{Algorithm, Kek, KeyDir, KeyError, KeyMaterial};
use crate::store::{self, AppendError, AppendRequest, EventStore, ExpectedVersion, RowFilter};

/// The stream every key event is appended to, so rotations are serialised by its version.
pub const KEYS_STREAM: &str = projections::event::streams::SIGNING_KEYS;

/// The off-ledger namespace holding sealed private keys, by `kid`.
const SEALED_NAMESPACE: &str = "signing-key";

/// How long a process keeps signing with the key it last saw before asking the ledger again.
pub const CURRENT_KEY_CACHE: Duration = Duration::from_secs(10);

/// Whether a key cached at `at` may still be used at `now` (a clock set back makes it stale).
fn fresh(at: UnixSeconds, now: UnixSeconds) -> bool {
    (0..CURRENT_KEY_CACHE.as_secs() as i64).contains(&(now - at))
}

/// The signing keys as this process uses them: one current key per algorithm in use. Access tokens are
/// signed with the configured algorithm's key; ID tokens with the key of the algorithm their client
/// registered (RS256 unless it asked for another), generated and recorded the first time it is needed.
pub struct KeyRing {
    dir: KeyDir,
    /// With it, every private key is also sealed in the database, where other nodes find it.
    kek: Option<Kek>,
    alg: Algorithm,
    /// Longest lifetime of any token signed; a retired key stays published this long (plus the cache).
    token_lifetime_max: i64,
    /// The current key of each algorithm this process signed with, and the second (by the server's
    /// clock) it was read from the ledger.
    current: RwLock<Vec<(Arc<KeyMaterial>, UnixSeconds)>>,
}

/// The current key of `alg` among `keys`: the most recently activated one.
fn current_of(keys: &[SigningKey], alg: Algorithm) -> Option<&SigningKey> {
    queries::current_key(keys.iter().filter(|k| k.alg == alg.name()))
}

fn parse_alg(row: &SigningKey) -> Result<Algorithm, KeyError> {
    row.alg.parse().map_err(|e: String| KeyError::File {
        path: row.kid.clone(),
        problem: e,
    })
}

impl KeyRing {
    /// A ring over the private keys in `dir`, signing access tokens with `alg` keys.
    pub fn new(dir: KeyDir, alg: Algorithm, token_lifetime_max: i64) -> Self {
        KeyRing {
            dir,
            kek: None,
            alg,
            token_lifetime_max,
            current: RwLock::new(Vec::new()),
        }
    }

    /// Keeps every private key sealed under `kek` in the database too, and reads keys this node's
    /// directory lacks from there.
    pub fn with_kek(mut self, kek: Option<Kek>) -> Self {
        self.kek = kek;
        self
    }

    /// The private half of `kid`: the file in this node's directory, or else the copy sealed in the
    /// database. A key found only as a file is sealed into the database on the way, so a deployment that
    /// adds a key-encryption key later needs no step of its own.
    async fn load(
        &self,
        store: &dyn EventStore,
        kid: &str,
        alg: Algorithm,
        now: UnixSeconds,
    ) -> Result<KeyMaterial, KeyError> {
        let sealed_err = |source| KeyError::Sealed {
            kid: kid.to_owned(),
            source,
        };
        if let Some(key) = self.dir.load(kid, alg)? {
            if let Some(kek) = &self.kek {
                let sealed = kek.seal(kid, alg, &key.pkcs8).map_err(sealed_err)?;
                store
                    .off_ledger_insert(SEALED_NAMESPACE, kid, &sealed, None, now)
                    .await?;
            }
            return Ok(key);
        }
        let missing = |hint| KeyError::Missing {
            kid: kid.to_owned(),
            file: self.dir.describe(kid, alg),
            hint,
        };
        let Some(kek) = &self.kek else {
            return Err(missing(
                " (give every node the same key_dir, or the same key_encryption_key)",
            ));
        };
        let sealed = store
            .off_ledger_get(SEALED_NAMESPACE, kid, now)
            .await?
            .ok_or_else(|| missing(" (the node that made it had no key_encryption_key)"))?;
        let pkcs8 = kek.open(kid, alg, &sealed).map_err(sealed_err)?;
        KeyMaterial::from_pkcs8(kid.to_owned(), alg, pkcs8)
    }

    /// The algorithm access tokens are signed with.
    pub fn access_token_alg(&self) -> Algorithm {
        self.alg
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

    /// The key to sign access tokens with now, generating and recording the first one if the ledger has
    /// none.
    pub async fn current(
        &self,
        store: &dyn EventStore,
        now: UnixSeconds,
    ) -> Result<Arc<KeyMaterial>, KeyError> {
        self.current_for(store, self.alg, now).await
    }

    /// The current key of `alg`, generating and recording one if the ledger has none for it.
    pub async fn current_for(
        &self,
        store: &dyn EventStore,
        alg: Algorithm,
        now: UnixSeconds,
    ) -> Result<Arc<KeyMaterial>, KeyError> {
        if let Some(key) = self.cached(|k, at| k.alg == alg && fresh(*at, now)) {
            return Ok(key);
        }
        let keys = Self::all(store).await?;
        let key = match current_of(&keys, alg) {
            Some(row) => match self.cached(|k, _| k.kid == row.kid) {
                Some(k) => k,
                None => Arc::new(self.load(store, &row.kid, parse_alg(row)?, now).await?),
            },
            None => Arc::new(self.install(store, alg, None, now).await?),
        };
        if let Ok(mut guard) = self.current.write() {
            guard.retain(|(k, _)| k.alg != alg);
            guard.push((key.clone(), now));
        }
        Ok(key)
    }

    fn cached(&self, fits: impl Fn(&KeyMaterial, &UnixSeconds) -> bool) -> Option<Arc<KeyMaterial>> {
        let guard = self.current.read().ok()?;
        guard.iter().find(|(k, at)| fits(k, at)).map(|(k, _)| k.clone())
    }

    /// Replaces the current key of every algorithm in use (the access-token algorithm's always, and each
    /// other algorithm with a current key, such as RS256 for ID tokens) with a fresh one; each previous key
    /// is retired but stays published until every token it signed has expired. Returns the new
    /// access-token key.
    pub async fn rotate(&self, store: &dyn EventStore, now: UnixSeconds) -> Result<KeyMaterial, KeyError> {
        let keys = Self::all(store).await?;
        let mut algs = vec![self.alg];
        for row in keys.iter().filter(|k| k.status == KeyStatus::Current) {
            let alg = parse_alg(row)?;
            if !algs.contains(&alg) {
                algs.push(alg);
            }
        }
        let mut access_key = None;
        for alg in algs {
            let replacing = current_of(&keys, alg).map(|k| k.kid.clone());
            let key = self.install(store, alg, replacing, now).await?;
            access_key.get_or_insert(key);
        }
        if let Ok(mut guard) = self.current.write() {
            guard.clear();
        }
        access_key.ok_or(KeyError::NoCurrentKey)
    }

    /// Generates an `alg` key, saves its private half, and records it, retiring the current key of the
    /// same algorithm. The append expects the keys stream at the version it read, so two processes racing
    /// to install a key cannot both win; the loser uses the winner's key when it is of `alg`, and tries
    /// again when the winner installed another algorithm's. `replacing` is the current key the caller
    /// saw (`None`: it saw none); when another process has changed it since, its key is used instead of
    /// replacing it again, so nodes starting together install one key, not one each.
    async fn install(
        &self,
        store: &dyn EventStore,
        alg: Algorithm,
        replacing: Option<String>,
        now: UnixSeconds,
    ) -> Result<KeyMaterial, KeyError> {
        for _ in 0..3 {
            let expected = match store.stream_version(KEYS_STREAM).await? {
                Some(v) => ExpectedVersion::Exact(v),
                None => ExpectedVersion::NoStream,
            };
            let keys = Self::all(store).await?;
            let previous = current_of(&keys, alg).map(|k| k.kid.clone());
            if let Some(kid) = previous.as_ref().filter(|kid| Some(*kid) != replacing.as_ref()) {
                return self.load(store, kid, alg, now).await;
            }
            let key = KeyMaterial::generate(alg)?;
            self.dir.save(&key)?;
            // Sealed before the ledger names it, so no node ever sees a kid it cannot find.
            if let Some(kek) = &self.kek {
                let sealed = kek
                    .seal(&key.kid, alg, &key.pkcs8)
                    .map_err(|source| KeyError::Sealed {
                        kid: key.kid.clone(),
                        source,
                    })?;
                if let Err(e) = store
                    .off_ledger_insert(SEALED_NAMESPACE, &key.kid, &sealed, None, now)
                    .await
                {
                    self.dir.discard(&key);
                    return Err(e.into());
                }
            }
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
            if let Some(kid) = previous.clone() {
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
                Ok(_) => return Ok(key),
                Err(e) => {
                    self.dir.discard(&key);
                    if self.kek.is_some() {
                        // Best effort: a sealed key no event names is never used.
                        let _ = store.off_ledger_delete(SEALED_NAMESPACE, &key.kid).await;
                    }
                    match e {
                        // Another process changed the keys first: use its key of `alg` if it installed
                        // one, else look again.
                        AppendError::Conflict { .. } => {
                            let keys = Self::all(store).await?;
                            if let Some(row) = current_of(&keys, alg)
                                && Some(&row.kid) != previous.as_ref()
                            {
                                return self.load(store, &row.kid, alg, now).await;
                            }
                        }
                        other => return Err(KeyError::Append(other.to_string())),
                    }
                }
            }
        }
        Err(KeyError::NoCurrentKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_key_is_fresh_for_the_cache_period_of_the_servers_clock_only() {
        assert!(fresh(100, 100));
        assert!(fresh(100, 109));
        assert!(!fresh(100, 110), "ten seconds later the ledger is asked again");
        assert!(!fresh(100, 99), "a clock set back does not keep a key forever");
    }
}
