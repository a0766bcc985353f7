//! The read-side questions the token API asks, as pure functions of rows and the time.

use crate::clients::Client;
use crate::consents::Consent;
use crate::delegations::Delegation;
use crate::event::UnixSeconds;
use crate::keys::{KeyStatus, SigningKey};
use crate::refresh_tokens::{RefreshStatus, RefreshToken};
use crate::tokens::Token;

/// The delegations of `subject` to `client_id` that are active at `now`, oldest first.
pub fn active_delegations<'a>(
    delegations: impl IntoIterator<Item = &'a Delegation>,
    subject: &'a str,
    client_id: &'a str,
    now: UnixSeconds,
) -> Vec<&'a Delegation> {
    let mut out: Vec<_> = delegations
        .into_iter()
        .filter(|d| d.subject == subject && d.client_id == client_id && d.is_active_at(now))
        .collect();
    out.sort_by_key(|d| d.created_position);
    out
}

/// The standing consent by `subject` to `client_id` that covers `scope` at `now`, if any.
///
/// The most recent decision that mentions the scope governs: a later refusal or a revocation of the
/// latest grant is not overridden by an older grant.
pub fn standing_consent<'a>(
    consents: impl IntoIterator<Item = &'a Consent>,
    subject: &str,
    client_id: &str,
    scope: &str,
    now: UnixSeconds,
) -> Option<&'a Consent> {
    consents
        .into_iter()
        .filter(|c| {
            c.subject == subject
                && c.client_id == client_id
                && c.given_at <= now
                && c.scopes.iter().any(|s| s == scope)
        })
        .max_by_key(|c| c.position)
        .filter(|c| c.is_standing_at(now))
}

/// Whether an access or id token counts at `now`: known, unexpired, unrevoked, its client enabled, its
/// delegation (if any) active, and signed by a key the server still publishes.
pub fn token_active(
    token: &Token,
    client: Option<&Client>,
    delegation: Option<&Delegation>,
    key: Option<&SigningKey>,
    now: UnixSeconds,
) -> bool {
    let delegation_ok = match (&token.delegation_id, delegation) {
        (None, _) => true,
        (Some(id), Some(d)) => &d.delegation_id == id && d.revoked.is_none(),
        (Some(_), None) => false,
    };
    token.revoked_at.is_none()
        && now < token.expires_at
        && client.is_some_and(|c| c.spec.client_id == token.client_id && c.is_enabled())
        && delegation_ok
        && key.is_some_and(|k| k.kid == token.kid && key_published(k, now))
}

/// Whether a refresh token may be redeemed at `now`: active (not rotated, not revoked), unexpired, its
/// client enabled and its delegation active.
pub fn refresh_token_active(
    token: &RefreshToken,
    client: Option<&Client>,
    delegation: Option<&Delegation>,
    now: UnixSeconds,
) -> bool {
    token.status == RefreshStatus::Active
        && token.expires_at.is_none_or(|exp| now < exp)
        && client.is_some_and(|c| c.spec.client_id == token.client_id && c.is_enabled())
        && delegation.is_some_and(|d| d.delegation_id == token.delegation_id && d.is_active_at(now))
}

/// Whether a key belongs in the JWKS at `now`.
pub fn key_published(key: &SigningKey, now: UnixSeconds) -> bool {
    match key.status {
        KeyStatus::Added | KeyStatus::Current => true,
        KeyStatus::Retired => key.publish_until.is_some_and(|until| now < until),
    }
}

/// The key new tokens are signed with: the most recently activated current key.
pub fn current_key<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Option<&'a SigningKey> {
    keys.into_iter()
        .filter(|k| k.status == KeyStatus::Current)
        .max_by_key(|k| k.activated_at)
}
