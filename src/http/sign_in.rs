//! A password presented for a user, wherever it is presented (the sign-in page, the password grant):
//! counted under the username and the client address before it is checked ([`super::rate_limit`], per
//! node), checked behind the process-wide Argon2 gate ([`crate::app::App::password_gate`]), and settled
//! by its outcome. One place, so no entry point has a looser limit than another.

use std::net::SocketAddr;
use std::time::Duration;

use projections::event::UnixSeconds;
use projections::users::User;

use super::rate_limit;
use crate::app::App;
use crate::store::StoreError;
use crate::users;

/// How long a check waits for a free password verification slot before it is answered 503.
const PASSWORD_VERIFICATION_WAIT: Duration = Duration::from_secs(2);

fn peer_key(app: &App, peer: Option<SocketAddr>) -> String {
    rate_limit::address_key(&app.config.issuer, peer)
}

fn user_key(app: &App, username: &str) -> String {
    let name: String = username.chars().take(users::USERNAME_CHARS_MAX + 1).collect();
    format!("{}\u{0}user\u{0}{name}", app.config.issuer)
}

/// One sign-in attempt, counted under the username and the client address before anything is checked
/// (so concurrent guesses cannot all slip under the limit), and settled by its outcome. Dropped without
/// being settled (the client went away mid-check), it stays counted as a failure.
pub struct Attempt {
    keys: [String; 2],
    at: UnixSeconds,
}

impl Attempt {
    /// Reserves an attempt; `None` when the username or the address has used up its attempts.
    pub fn reserve(app: &App, username: &str, peer: Option<SocketAddr>, now: UnixSeconds) -> Option<Self> {
        let l = &app.config.login;
        let keys = [user_key(app, username), peer_key(app, peer)];
        let refs = [keys[0].as_str(), keys[1].as_str()];
        rate_limit::sign_in()
            .reserve(&refs, l.failed_attempts_max, l.lockout_window_seconds, now)
            .then_some(Attempt { keys, at: now })
    }
    /// The password or code was wrong: the attempt stays counted.
    pub fn failed(self) {}
    /// Nothing was checked (busy, or a store error): the attempt is given back.
    pub fn release(self) {
        for k in &self.keys {
            rate_limit::sign_in().release(k, self.at);
        }
    }
    /// A right password before a code is due: the attempt is given back, earlier failures stay.
    pub fn passed(self) {
        self.release();
    }
    /// After a complete sign-in: the username's count restarts; the address's attempt is given back.
    pub fn succeeded(self) {
        rate_limit::sign_in().clear(&self.keys[0]);
        rate_limit::sign_in().release(&self.keys[1], self.at);
    }
}

/// What became of a presented password.
pub enum Checked {
    /// The password is the user's and they may sign in; the attempt is still to be settled (a second
    /// factor may be due).
    Right(User, Attempt),
    /// Unknown user, no password, wrong password or a disabled account: one answer for all of them.
    /// The attempt stays counted.
    Wrong,
    /// The username or the address has used up its attempts; nothing was checked.
    TooMany,
    /// Every verification slot stayed taken; nothing was checked.
    Busy,
    /// The store failed; nothing was decided.
    Store(StoreError),
    /// The verification task ended without an answer; nothing was decided.
    Crashed(tokio::task::JoinError),
}

/// Counts, then checks `password` for `username`, spending the same Argon2 work whatever the outcome.
pub async fn check_password(
    app: &App,
    username: &str,
    password: &str,
    peer: Option<SocketAddr>,
    now: UnixSeconds,
) -> Checked {
    let Some(attempt) = Attempt::reserve(app, username, peer, now) else {
        metrics::counter!("sign_in_lockouts_total").increment(1);
        return Checked::TooMany;
    };
    let Some(permit) = app.password_gate.enter(PASSWORD_VERIFICATION_WAIT).await else {
        attempt.release();
        return Checked::Busy;
    };
    // Its own task, holding the permit: if the client goes away, the verification still finishes before
    // the permit is returned, so the gate bounds the Argon2 work actually running.
    let store = app.store.clone();
    let (username, password) = (username.to_owned(), password.to_owned());
    let checked = tokio::spawn(async move {
        let _permit = permit;
        users::authenticate(store.as_ref(), &username, &password, now).await
    })
    .await;
    match checked {
        Ok(Ok(Some(user))) => Checked::Right(user, attempt),
        Ok(Ok(None)) => {
            metrics::counter!("sign_in_failures_total").increment(1);
            attempt.failed();
            Checked::Wrong
        }
        Ok(Err(e)) => {
            attempt.release();
            Checked::Store(e)
        }
        Err(e) => {
            attempt.release();
            Checked::Crashed(e)
        }
    }
}
