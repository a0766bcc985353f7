//! How fast a polling client may ask again (RFC 8628 §3.5, which OpenID CIBA Core §11 adopts for its
//! poll mode). Kept off the ledger: a poll's pace is not an audit fact.

use projections::event::UnixSeconds;
use serde::{Deserialize, Serialize};

use crate::oauth::OAuthError;

/// How much a poll that came too early adds to the client's interval (RFC 8628 §3.5).
pub const SLOW_DOWN_SECONDS: i64 = 5;

/// How a client has been polling one request: when it last polled and the interval it must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pace {
    pub last_poll: UnixSeconds,
    pub interval: i64,
}

/// A poll while the user has not answered: `slow_down` (and 5 seconds more to keep) when it came before
/// the interval since the last one, else `authorization_pending`; with the pace to remember. `previous`
/// is `None` before the first poll, which keeps `interval`, the one the request was given. Pure.
pub fn pending(previous: Option<Pace>, interval: i64, now: UnixSeconds) -> (Pace, OAuthError) {
    match previous {
        Some(p) if now - p.last_poll < p.interval => (
            Pace {
                last_poll: now,
                interval: p.interval + SLOW_DOWN_SECONDS,
            },
            OAuthError::SlowDown(format!(
                "poll at most every {} seconds",
                p.interval + SLOW_DOWN_SECONDS
            )),
        ),
        p => (
            Pace {
                last_poll: now,
                interval: p.map_or(interval, |p| p.interval),
            },
            OAuthError::AuthorizationPending("the user has not answered yet".into()),
        ),
    }
}
