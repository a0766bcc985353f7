//! Local users: the events their changes become, and their credentials (kept off the ledger).
//!
//! The ledger records that a user was registered, got a password, enrolled TOTP or was disabled; the
//! Argon2id hash (namespace `password`) and the TOTP secret (namespace `totp`, base32) live in the
//! off-ledger table, keyed by username, and never appear in an event.

pub mod password;
pub mod totp;

use projections::Event;
use projections::event::{
    UnixSeconds, UserAttributesSet, UserDisabled, UserPasswordSet, UserRegistered, UserTotpEnrolled,
    UserTotpRemoved, V1,
};
use projections::users::User;
use serde_json::Value;

use crate::store::{self, AppendError, AppendRequest, EventStore, ExpectedVersion, StoreError};

pub use password::PasswordError;

/// Off-ledger namespace of password hashes (PHC strings).
pub const PASSWORD_NAMESPACE: &str = "password";
/// Off-ledger namespace of TOTP secrets (base32).
pub const TOTP_NAMESPACE: &str = "totp";
/// Off-ledger namespace of the last TOTP step each user signed in with.
pub const TOTP_USED_NAMESPACE: &str = "totp-used";

/// Most characters in a username.
pub const USERNAME_CHARS_MAX: usize = 64;

/// The stream of one user's events.
pub fn stream(username: &str) -> String {
    projections::event::streams::user(username)
}

/// Why a change to a user is refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {0} already exists")]
    Exists(String),
    #[error("user {0} does not exist")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("the system has no randomness")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Append(#[from] AppendError),
}

/// Checks a username: 1 to 64 characters of `A-Z a-z 0-9 . _ @ -`.
pub fn validate_username(username: &str) -> Result<(), UserError> {
    let ok = !username.is_empty()
        && username.len() <= USERNAME_CHARS_MAX
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid(format!(
            "a username is 1 to {USERNAME_CHARS_MAX} characters of A-Z a-z 0-9 . _ @ -"
        )))
    }
}

fn validate_attributes(attributes: &Value) -> Result<(), UserError> {
    if attributes.is_object() {
        Ok(())
    } else {
        Err(UserError::Invalid("attributes must be a JSON object".into()))
    }
}

fn known<'a>(existing: Option<&'a User>, username: &str) -> Result<&'a User, UserError> {
    existing.ok_or_else(|| UserError::Unknown(username.to_owned()))
}

/// The append that registers `username` (which must not exist yet) with a fresh random subject.
pub fn register(
    existing: Option<&User>,
    username: &str,
    attributes: Value,
    now: UnixSeconds,
) -> Result<AppendRequest, UserError> {
    validate_username(username)?;
    validate_attributes(&attributes)?;
    if existing.is_some() {
        return Err(UserError::Exists(username.to_owned()));
    }
    Ok(AppendRequest::to_stream(
        stream(username),
        ExpectedVersion::NoStream,
        vec![Event::UserRegistered(UserRegistered {
            v: V1,
            username: username.to_owned(),
            subject: crate::ids::id(),
            attributes,
            at: now,
        })],
    ))
}

/// The append that replaces an existing user's attributes.
pub fn set_attributes(
    existing: Option<&User>,
    username: &str,
    attributes: Value,
    now: UnixSeconds,
) -> Result<AppendRequest, UserError> {
    validate_attributes(&attributes)?;
    known(existing, username)?;
    Ok(AppendRequest::to_stream(
        stream(username),
        ExpectedVersion::Any,
        vec![Event::UserAttributesSet(UserAttributesSet {
            v: V1,
            username: username.to_owned(),
            attributes,
            at: now,
        })],
    ))
}

/// The append that disables an existing, enabled user.
pub fn disable(
    existing: Option<&User>,
    username: &str,
    reason: &str,
    now: UnixSeconds,
) -> Result<AppendRequest, UserError> {
    if !known(existing, username)?.is_enabled() {
        return Err(UserError::Invalid(format!("user {username} is already disabled")));
    }
    Ok(AppendRequest::to_stream(
        stream(username),
        ExpectedVersion::Any,
        vec![Event::UserDisabled(UserDisabled {
            v: V1,
            username: username.to_owned(),
            reason: reason.to_owned(),
            at: now,
        })],
    ))
}

/// The user named `username`, as the projection holds it now.
pub async fn get(store: &dyn EventStore, username: &str) -> Result<Option<User>, StoreError> {
    store::get(store, username).await
}

/// The user whose `sub` is `subject`: whom a token, code or delegation names.
pub async fn by_subject(store: &dyn EventStore, subject: &str) -> Result<Option<User>, StoreError> {
    let filter = store::RowFilter {
        subject: Some(subject),
        ..store::RowFilter::default()
    };
    Ok(store::find::<User>(store, filter).await?.into_iter().next())
}

/// Appends one event to the user's stream (for changes any order of which is fine).
async fn record(store: &dyn EventStore, username: &str, event: Event) -> Result<(), UserError> {
    store
        .append(AppendRequest::to_stream(
            stream(username),
            ExpectedVersion::Any,
            vec![event],
        ))
        .await?;
    Ok(())
}

async fn require(store: &dyn EventStore, username: &str) -> Result<User, UserError> {
    get(store, username)
        .await?
        .ok_or_else(|| UserError::Unknown(username.to_owned()))
}

/// Registers `username` and returns the new user. Two concurrent registrations of one name: one wins,
/// the other gets [`UserError::Exists`].
pub async fn add(
    store: &dyn EventStore,
    username: &str,
    attributes: Value,
    now: UnixSeconds,
) -> Result<User, UserError> {
    let existing = get(store, username).await?;
    let request = register(existing.as_ref(), username, attributes, now)?;
    match store.append(request).await {
        Ok(_) => {}
        Err(AppendError::Conflict { .. }) => return Err(UserError::Exists(username.to_owned())),
        Err(e) => return Err(e.into()),
    }
    require(store, username).await
}

/// Sets a user's password: the Argon2id hash goes off the ledger first, then `UserPasswordSet` (which
/// carries no hash) is appended. Refuses passwords shorter than 8 characters.
pub async fn set_password(
    store: &dyn EventStore,
    username: &str,
    password: &str,
    now: UnixSeconds,
) -> Result<(), UserError> {
    password::check_strength(password)?;
    require(store, username).await?;
    let phc = password::hash_blocking(password.to_owned()).await?;
    store
        .off_ledger_put(PASSWORD_NAMESPACE, username, &phc, None, now)
        .await?;
    record(
        store,
        username,
        Event::UserPasswordSet(UserPasswordSet {
            v: V1,
            username: username.to_owned(),
            at: now,
        }),
    )
    .await?;
    Ok(())
}

/// Whether `password` is `user`'s password. Spends one Argon2 verification whatever the outcome (against
/// a dummy hash when the user has none), so the time taken does not tell which accounts have one.
/// Says nothing about whether the user may sign in (see [`authenticate`]).
pub async fn verify_password(
    store: &dyn EventStore,
    user: &User,
    password: &str,
    now: UnixSeconds,
) -> Result<bool, StoreError> {
    let phc = if user.has_password {
        store
            .off_ledger_get(PASSWORD_NAMESPACE, &user.username, now)
            .await?
    } else {
        None
    };
    Ok(password::verify_blocking(phc, password.to_owned()).await)
}

/// The user `username` names when `password` is theirs and they may sign in; `None` otherwise (unknown,
/// no password, wrong password, disabled), after the same Argon2 work in every case.
pub async fn authenticate(
    store: &dyn EventStore,
    username: &str,
    password: &str,
    now: UnixSeconds,
) -> Result<Option<User>, StoreError> {
    let user = if validate_username(username).is_ok() {
        get(store, username).await?
    } else {
        None
    };
    let Some(user) = user else {
        password::verify_blocking(None, password.to_owned()).await;
        return Ok(None);
    };
    let ok = verify_password(store, &user, password, now).await?;
    Ok((ok && user.is_enabled()).then_some(user))
}

fn random_secret() -> Result<Vec<u8>, UserError> {
    let mut secret = vec![0u8; totp::SECRET_BYTES];
    crate::ids::fill(&mut secret).map_err(|_| UserError::Random)?;
    Ok(secret)
}

/// Enrolls (or re-enrolls) a TOTP second factor: a fresh 160-bit secret goes off the ledger, then
/// `UserTotpEnrolled` is appended. Returns the secret, to show the user once.
pub async fn enroll_totp(
    store: &dyn EventStore,
    username: &str,
    now: UnixSeconds,
) -> Result<Vec<u8>, UserError> {
    require(store, username).await?;
    let secret = random_secret()?;
    store
        .off_ledger_put(TOTP_NAMESPACE, username, &totp::base32_encode(&secret), None, now)
        .await?;
    record(
        store,
        username,
        Event::UserTotpEnrolled(UserTotpEnrolled {
            v: V1,
            username: username.to_owned(),
            at: now,
        }),
    )
    .await?;
    Ok(secret)
}

/// Removes a user's TOTP second factor: `UserTotpRemoved`, then the secret is forgotten.
pub async fn remove_totp(store: &dyn EventStore, username: &str, now: UnixSeconds) -> Result<(), UserError> {
    let user = require(store, username).await?;
    if !user.totp_enabled {
        return Err(UserError::Invalid(format!(
            "user {username} has no TOTP enrolled"
        )));
    }
    record(
        store,
        username,
        Event::UserTotpRemoved(UserTotpRemoved {
            v: V1,
            username: username.to_owned(),
            at: now,
        }),
    )
    .await?;
    store.off_ledger_delete(TOTP_NAMESPACE, username).await?;
    store.off_ledger_delete(TOTP_USED_NAMESPACE, username).await?;
    Ok(())
}

/// The step among now−1, now, now+1 whose code is `code`, if any (each compared in constant time).
pub fn matching_step(secret: &[u8], code: &str, now: UnixSeconds) -> Option<i64> {
    let code = code.trim();
    if code.len() != totp::DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = totp::step_of(now);
    let mut found = None;
    for step in [current - 1, current, current + 1] {
        let expected = totp::code_for_step(secret, step);
        if crate::oauth::client_auth::constant_time_eq(expected.as_bytes(), code.as_bytes())
            && found.is_none()
        {
            found = Some(step);
        }
    }
    found
}

/// Whether `code` is `username`'s current TOTP code (the step before or after also counts, for clock
/// drift), and no sign-in used that step or a later one before. A code is good once.
pub async fn verify_totp(
    store: &dyn EventStore,
    username: &str,
    code: &str,
    now: UnixSeconds,
) -> Result<bool, StoreError> {
    let Some(encoded) = store.off_ledger_get(TOTP_NAMESPACE, username, now).await? else {
        return Ok(false);
    };
    let Some(secret) = totp::base32_decode(&encoded) else {
        return Err(StoreError::Corrupt(format!(
            "the TOTP secret of {username} is not base32"
        )));
    };
    let Some(step) = matching_step(&secret, code, now) else {
        return Ok(false);
    };
    let last_used = store
        .off_ledger_get(TOTP_USED_NAMESPACE, username, now)
        .await?
        .and_then(|s| s.parse::<i64>().ok());
    if last_used.is_some_and(|last| step <= last) {
        return Ok(false);
    }
    // Two requests racing with the same code: the claim lets exactly one through.
    let expires = (step + 2) * totp::STEP_SECONDS;
    if !store
        .claim_once(&format!("totp:{username}:{step}"), expires, now)
        .await?
    {
        return Ok(false);
    }
    store
        .off_ledger_put(TOTP_USED_NAMESPACE, username, &step.to_string(), None, now)
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_short_and_plain() {
        for ok in ["alice", "a", "alice.smith@example.com", "A_b-9", &"x".repeat(64)] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in ["", "al ice", "alice/..", "ålice", "a:b", &"x".repeat(65)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registration_is_once_per_name_with_a_random_subject() {
        let a = register(None, "alice", serde_json::json!({"dept": "x"}), 10).unwrap();
        let b = register(None, "alice", serde_json::json!({}), 10).unwrap();
        let subject = |r: &AppendRequest| match &r.events[0].event {
            Event::UserRegistered(e) => e.subject.clone(),
            other => panic!("{other:?}"),
        };
        assert_ne!(subject(&a), subject(&b));
        assert_eq!(a.events[0].stream_id, "user-alice");
        assert_eq!(a.expectations[0].expected, ExpectedVersion::NoStream);
        assert!(register(None, "alice", serde_json::json!([1]), 10).is_err());
    }

    #[test]
    fn a_code_matches_its_step_and_the_neighbours_only() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111;
        let step = totp::step_of(now);
        for s in [step - 1, step, step + 1] {
            assert_eq!(
                matching_step(secret, &totp::code_for_step(secret, s), now),
                Some(s)
            );
        }
        assert_eq!(
            matching_step(secret, &totp::code_for_step(secret, step + 2), now),
            None
        );
        assert_eq!(matching_step(secret, "12345", now), None);
        assert_eq!(matching_step(secret, "abcdef", now), None);
    }
}
