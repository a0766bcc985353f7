//! A trusted issuer's keys: given inline, or fetched from its `jwks_uri` and cached.
//!
//! A fetch is bounded (5 s, 64 KiB, no redirects: the app's client follows none). The cache is fetched
//! on first use and again after an hour; an assertion naming an unknown `kid` (the issuer rotated its
//! key) refetches at most once a minute per issuer, so assertions with made-up `kid`s cannot make the
//! server hammer the issuer. After a failed fetch nothing is fetched for a minute either. Every time is
//! the app's clock, passed in.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use projections::event::UnixSeconds;
use serde_json::Value;

use super::TrustError;

/// Largest JWK Set accepted from a `jwks_uri`.
pub const JWKS_BYTES_MAX: usize = 64 * 1024;
/// How long a `jwks_uri` may take to answer.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Least time between two refetches for an unknown `kid`, and after a failed fetch.
pub const REFETCH_INTERVAL_SECONDS: i64 = 60;
/// How long fetched keys are used before they are fetched again.
pub const KEYS_MAX_AGE_SECONDS: i64 = 3600;

/// Where one issuer's keys come from.
#[derive(Debug)]
pub enum KeySource {
    Inline(Arc<JwkSet>),
    Remote(Remote),
}

/// A `jwks_uri` and what was last fetched from it.
#[derive(Debug)]
pub struct Remote {
    uri: String,
    state: tokio::sync::Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    keys: Option<Arc<JwkSet>>,
    fetched_at: UnixSeconds,
    failed_at: Option<UnixSeconds>,
    refetched_for_kid_at: Option<UnixSeconds>,
}

impl KeySource {
    /// Inline keys, or a `jwks_uri` not fetched yet.
    pub fn new(inline: Option<JwkSet>, jwks_uri: Option<&str>) -> KeySource {
        match (inline, jwks_uri) {
            (_, Some(uri)) => KeySource::Remote(Remote {
                uri: uri.to_owned(),
                state: tokio::sync::Mutex::new(Cached::default()),
            }),
            (inline, None) => KeySource::Inline(Arc::new(inline.unwrap_or(JwkSet { keys: vec![] }))),
        }
    }

    /// The keys to verify with now: fetched on first use and when an hour old.
    pub async fn current(&self, http: &reqwest::Client, now: UnixSeconds) -> Result<Arc<JwkSet>, TrustError> {
        let remote = match self {
            KeySource::Inline(keys) => return Ok(keys.clone()),
            KeySource::Remote(r) => r,
        };
        let mut cached = remote.state.lock().await;
        let stale = cached
            .keys
            .as_ref()
            .is_none_or(|_| now - cached.fetched_at >= KEYS_MAX_AGE_SECONDS);
        let resting = cached
            .failed_at
            .is_some_and(|t| now - t < REFETCH_INTERVAL_SECONDS);
        if stale && !resting {
            remote.refresh(&mut cached, http, now).await;
        }
        // Keys past their age are still used while the issuer cannot be reached.
        cached.keys.clone().ok_or(TrustError::KeysUnavailable)
    }

    /// Fetches the keys again because an assertion named a `kid` they lack, unless that was done less
    /// than a minute ago. `None`: not refetched (inline keys, or too soon).
    pub async fn refetch_for_unknown_kid(
        &self,
        http: &reqwest::Client,
        now: UnixSeconds,
    ) -> Option<Arc<JwkSet>> {
        let KeySource::Remote(remote) = self else {
            return None;
        };
        let mut cached = remote.state.lock().await;
        let recent = |t: Option<UnixSeconds>| t.is_some_and(|t| now - t < REFETCH_INTERVAL_SECONDS);
        if recent(cached.refetched_for_kid_at) || recent(cached.failed_at) {
            return None;
        }
        cached.refetched_for_kid_at = Some(now);
        remote.refresh(&mut cached, http, now).await;
        cached.keys.clone()
    }
}

impl Remote {
    async fn refresh(&self, cached: &mut Cached, http: &reqwest::Client, now: UnixSeconds) {
        match fetch(http, &self.uri).await {
            Ok(keys) => {
                cached.keys = Some(Arc::new(keys));
                cached.fetched_at = now;
                cached.failed_at = None;
            }
            Err(problem) => {
                tracing::warn!(jwks_uri = %self.uri, %problem, "fetching a trusted issuer's keys failed");
                cached.failed_at = Some(now);
            }
        }
    }
}

/// GETs a JWK Set: 2xx only (a redirect is not followed), at most [`JWKS_BYTES_MAX`], within
/// [`FETCH_TIMEOUT`]. Keys that cannot verify signatures (symmetric, unknown types) are left out.
async fn fetch(http: &reqwest::Client, uri: &str) -> Result<JwkSet, String> {
    let mut response = http
        .get(uri)
        .timeout(FETCH_TIMEOUT)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > JWKS_BYTES_MAX as u64)
    {
        return Err("the JWK Set is too large".into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > JWKS_BYTES_MAX {
            return Err("the JWK Set is too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    parse(&body)
}

/// The verifying keys of a JWK Set document.
pub fn parse(body: &[u8]) -> Result<JwkSet, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWK Set: no \"keys\" array")?;
    let keys: Vec<Jwk> = keys
        .iter()
        // Never a private or symmetric key, whatever the issuer publishes.
        .filter(|k| k.get("d").is_none() && k.get("k").is_none())
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|k| super::issuers::usable(k).is_ok())
        .collect();
    Ok(JwkSet { keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_verifying_keys_are_kept() {
        let doc = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"hmac"},
            {"kty":"EC","crv":"P-256","kid":"ec","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"weird","kid":"w"}
        ]}"#;
        let set = parse(doc).unwrap();
        let kids: Vec<_> = set.keys.iter().filter_map(|k| k.common.key_id.clone()).collect();
        assert_eq!(kids, ["ec"]);
        assert!(parse(b"[]").is_err());
    }
}
