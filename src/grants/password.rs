//! RFC 6749 §4.3: the resource owner password credentials grant. Off unless a client lists `password`
//! in its grant types (RFC 9700 §2.4 says not to use it; it exists for clients being migrated off it).
//!
//! The password is checked exactly as on the sign-in page (the same attempt limits and Argon2 gate,
//! `http/sign_in.rs`). There is no page to ask the user anything, so the user counts as absent: a
//! consent-requiring scope comes only from a standing ledger consent, a step-up scope is dropped, and a
//! user with a second factor is refused unless the client is explicitly allowed to sign them in with
//! the password alone.

use std::net::SocketAddr;

use projections::clients::Client;
use projections::event::{AuthContext, UnixSeconds};

use super::user_absent::{self, Facts};
use super::{GrantType, TokenResponse};
use crate::app::App;
use crate::http::sign_in::{Attempt, Checked, check_password};
use crate::issuance::{Decision, Policy};
use crate::oauth::form::Form;
use crate::oauth::{OAuthError, scope};
use crate::sessions::ACR_PASSWORD;

/// How a password grant authenticated the user: a password, just now.
pub fn password_auth(now: UnixSeconds) -> AuthContext {
    AuthContext {
        acr: Some(ACR_PASSWORD.to_owned()),
        amr: vec!["pwd".to_owned()],
        auth_time: Some(now),
    }
}

/// Decides a password grant for a user whose password was right. Pure.
pub fn decide(
    policy: &Policy,
    client: &Client,
    facts: &Facts,
    request: user_absent::Request<'_>,
    now: UnixSeconds,
) -> Result<Decision, OAuthError> {
    if facts.user.as_ref().is_some_and(|u| u.totp_enabled) && !client.spec.password_grant_second_factor_users
    {
        return Err(OAuthError::InvalidGrant(
            "this account has a second factor; sign in through the authorization endpoint".into(),
        ));
    }
    user_absent::decide(
        policy,
        client,
        facts,
        GrantType::Password,
        &password_auth(now),
        request,
        now,
    )
}

/// Issues tokens for the user whose username and password the client presents: check the password,
/// fetch, [`decide`], record.
pub async fn grant(
    app: &App,
    client: &Client,
    form: &Form,
    peer: Option<SocketAddr>,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let username = form.require("username")?;
    let password = form.require("password")?;
    let limits = &app.config.limits;
    let scope = form
        .get("scope")
        .map(|s| scope::parse(s, limits.scopes_per_request_max, limits.scope_len_max))
        .transpose()?;
    let request = user_absent::Request {
        scope: scope.as_deref(),
        resource: form.get("resource"),
    };
    let (user, attempt) = match check_password(app, username, password, peer, now).await {
        Checked::Right(user, attempt) => (user, attempt),
        // One answer for an unknown user, a wrong password and a disabled account.
        Checked::Wrong => {
            return Err(OAuthError::InvalidGrant(
                "the username or password is incorrect".into(),
            ));
        }
        // As the sign-in page: nothing is checked past the limit, so the answer tells nothing about the
        // password.
        Checked::TooMany => {
            return Err(OAuthError::InvalidGrant(
                "too many failed sign-ins for this account or address; try again later".into(),
            ));
        }
        Checked::Busy => return Err(OAuthError::TemporarilyUnavailable),
        Checked::Store(e) => return Err(e.into()),
        Checked::Crashed(e) => return Err(OAuthError::internal("checking the password", e)),
    };
    let policy = app.policy();
    let facts = user_absent::fetch(
        app,
        &policy,
        client,
        Some(user),
        GrantType::Password,
        request,
        now,
    )
    .await;
    let outcome = facts.and_then(|facts| {
        let decision = decide(&policy, client, &facts, request, now)?;
        Ok((facts, decision))
    });
    let (facts, decision) = settle(attempt, outcome)?;
    let Some(user) = &facts.user else {
        return Err(OAuthError::InvalidGrant(
            "the username or password is incorrect".into(),
        ));
    };
    user_absent::record(
        app,
        &policy,
        client,
        user,
        GrantType::Password,
        &password_auth(now),
        &decision,
        None,
        now,
    )
    .await
}

/// A right password is a complete sign-in unless the account's second factor refused it.
fn settle<T>(attempt: Attempt, outcome: Result<T, OAuthError>) -> Result<T, OAuthError> {
    match &outcome {
        Ok(_) => attempt.succeeded(),
        Err(_) => attempt.passed(),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::{self, NOW, client};
    use crate::policy::external::External;
    use projections::users::User;

    fn policy() -> Policy {
        testing::policy(
            r#"
            [[authorizers]]
            name = "fresh"
            type = "authentication-freshness"
            full_ttl_seconds = 600
            step_up_after_seconds = 60
            [[authorizers]]
            name = "mfa"
            type = "acr"
            required = "mfa"
            order = ["pwd", "mfa"]
            [[scopes]]
            name = "read"
            [[scopes]]
            name = "recent"
            authorizers = ["fresh"]
            [[scopes]]
            name = "pay"
            authorizers = ["mfa"]
        "#,
        )
    }

    fn app_client(second_factor_users: bool) -> Client {
        let mut c = client("app");
        c.spec.grant_types = vec!["password".into()];
        c.spec.scopes = vec!["read".into(), "recent".into(), "pay".into()];
        c.spec.password_grant_second_factor_users = second_factor_users;
        c
    }

    fn given(totp: bool) -> Facts {
        Facts {
            user: Some(User {
                totp_enabled: totp,
                ..crate::policy::authorizers::testing::ann()
            }),
            consents: vec![],
            external: External::default(),
        }
    }

    fn when(client: &Client, facts: &Facts) -> Result<Vec<String>, String> {
        let wanted: Vec<String> = ["read", "recent", "pay"].map(String::from).to_vec();
        let request = user_absent::Request {
            scope: Some(&wanted),
            resource: None,
        };
        decide(&policy(), client, facts, request, NOW)
            .map(|d| d.scope_names())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn password_table() {
        // Given a user without a second factor, then what a password sign-in just now meets: the
        // freshness scope, not the one needing mfa (nobody can be asked to step up)
        assert_eq!(
            when(&app_client(false), &given(false)),
            Ok(vec!["read".into(), "recent".into()])
        );
        // Given a user with TOTP, then refused unless the client may sign them in with the password
        assert_eq!(
            when(&app_client(false), &given(true)),
            Err("invalid_grant".into())
        );
        assert_eq!(
            when(&app_client(true), &given(true)),
            Ok(vec!["read".into(), "recent".into()])
        );
    }
}
