//! What a request waiting for its user needs next, as a pure function of the request, the session, the
//! account and the decision: an authorization request at `/authorize`, or a device request on the
//! verification page. The HTTP layer only carries it out.

use projections::event::UnixSeconds;
use projections::users::User;
use serde_json::Value;

use super::request::{AuthorizationRequest, Prompt, ResponseType};
use crate::grants::GrantType;
use crate::issuance::{Decision, Outcome};
use crate::oauth::OAuthError;
use crate::sessions::{ACR_TOTP, Session};

/// What a user is asked to approve, whichever page asks: the authorization endpoint, or the device
/// verification page. Both go through the same decision and the same steps.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub client_id: &'a str,
    /// The grant the answer leads to (the policy sees it).
    pub grant_type: GrantType,
    /// `None`: the client's defaults.
    pub scope: Option<&'a [String]>,
    pub resource: Option<&'a str>,
    /// RFC 9396; `Null` when absent.
    pub authorization_details: &'a Value,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub acr_values: &'a [String],
    /// When the request arrived: a sign-in since then is fresh for it.
    pub created_at: UnixSeconds,
}

impl AuthorizationRequest {
    /// What this request asks the user.
    pub fn ask(&self) -> Ask<'_> {
        Ask {
            client_id: &self.client_id,
            grant_type: match self.response_type {
                ResponseType::Code => GrantType::AuthorizationCode,
                ResponseType::Token => GrantType::Implicit,
            },
            scope: self.scope.as_deref(),
            resource: self.resource.as_deref(),
            authorization_details: &self.authorization_details,
            prompt: self.prompt,
            max_age: self.max_age,
            acr_values: &self.acr_values,
            created_at: self.created_at,
        }
    }
}

/// The next thing to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send the user to sign in; `again` when a session exists but is not good enough.
    SignIn { again: bool },
    /// Send the user to the second factor (TOTP).
    SecondFactor,
    /// Ask the user about the pending scopes.
    Consent,
    /// Nothing is missing: issue.
    Issue,
    /// Answer the client with this error.
    Fail(OAuthError),
}

/// Whether the session was (re-)authenticated after the request arrived: a sign-in demanded by this
/// request has happened.
fn fresh_for(request: &Ask<'_>, session: &Session) -> bool {
    session.auth.auth_time.is_some_and(|t| t >= request.created_at)
}

/// Before deciding: is there a sign-in good enough for this request?
pub fn authentication(
    request: &Ask<'_>,
    session: Option<&Session>,
    user: Option<&User>,
    now: UnixSeconds,
) -> Option<Step> {
    let none = request.prompt.none;
    let (Some(session), Some(user)) = (session, user.filter(|u| u.is_enabled())) else {
        return Some(if none {
            Step::Fail(OAuthError::LoginRequired("nobody is signed in".into()))
        } else {
            Step::SignIn { again: false }
        });
    };
    let auth_time = session.auth.auth_time.unwrap_or(0);
    let too_old = request
        .max_age
        .is_some_and(|max| auth_time.saturating_add(max) < now);
    if (request.prompt.login && !fresh_for(request, session)) || too_old {
        return Some(if none {
            Step::Fail(OAuthError::LoginRequired(
                "the sign-in is older than max_age".into(),
            ))
        } else {
            Step::SignIn { again: true }
        });
    }
    // acr_values is a voluntary claim (OpenID Connect Core §5.5.1.1): honoured when the account can.
    let wants_totp = request.acr_values.iter().any(|a| a == ACR_TOTP);
    if wants_totp && user.totp_enabled && session.auth.acr.as_deref() != Some(ACR_TOTP) {
        return Some(if none {
            Step::Fail(OAuthError::InteractionRequired(
                "a second factor is needed".into(),
            ))
        } else {
            Step::SecondFactor
        });
    }
    None
}

/// After deciding: what the decision still needs from the user.
pub fn after_decision(request: &Ask<'_>, decision: &Decision, session: &Session, user: &User) -> Step {
    let none = request.prompt.none;
    let mut consent = false;
    for trail in decision.pending() {
        let Outcome::AskUser {
            consent: asks_consent,
            step_up,
        } = &trail.outcome
        else {
            continue;
        };
        consent |= *asks_consent;
        let Some(step_up) = step_up else { continue };
        let acr_missing = step_up
            .acr
            .as_deref()
            .is_some_and(|acr| session.auth.acr.as_deref() != Some(acr));
        if acr_missing {
            let totp_helps = step_up.acr.as_deref() == Some(ACR_TOTP)
                && user.totp_enabled
                && session.auth.acr.as_deref() != Some(ACR_TOTP);
            return match (totp_helps, none) {
                (true, false) => Step::SecondFactor,
                (true, true) => Step::Fail(OAuthError::InteractionRequired(format!(
                    "{} needs a second factor",
                    trail.scope
                ))),
                (false, _) => Step::Fail(OAuthError::AccessDenied(format!(
                    "{} needs a stronger sign-in than this account offers",
                    trail.scope
                ))),
            };
        }
        // A freshness step-up: signing in again satisfies it, once; asking twice would loop.
        if fresh_for(request, session) {
            return Step::Fail(OAuthError::AccessDenied(format!(
                "{} still needs a step-up after signing in again",
                trail.scope
            )));
        }
        return if none {
            Step::Fail(OAuthError::LoginRequired(format!(
                "{} needs a fresh sign-in",
                trail.scope
            )))
        } else {
            Step::SignIn { again: true }
        };
    }
    match (consent, none) {
        (true, true) => Step::Fail(OAuthError::ConsentRequired(
            "the user has not consented to every requested scope".into(),
        )),
        (true, false) => Step::Consent,
        (false, _) => Step::Issue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::request::{ResponseMode, Target};
    use crate::issuance::ScopeTrail;
    use crate::policy::authorizer::StepUp;
    use projections::event::AuthContext;
    use serde_json::Value;

    fn request(prompt: Prompt, max_age: Option<i64>) -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: "app".into(),
            response_type: ResponseType::Code,
            target: Target {
                redirect_uri: "https://app.example/cb".into(),
                mode: ResponseMode::Query,
                state: None,
            },
            scope: None,
            nonce: None,
            code_challenge: None,
            prompt,
            max_age,
            acr_values: vec![],
            authorization_details: Value::Null,
            resource: None,
            created_at: 1_000,
            redirect_uri_given: true,
        }
    }

    fn session(acr: &str, auth_time: i64) -> Session {
        Session {
            key: "k".into(),
            username: "ann".into(),
            subject: "s".into(),
            auth: AuthContext {
                acr: Some(acr.into()),
                amr: vec!["pwd".into()],
                auth_time: Some(auth_time),
            },
            expires_at: 9_999,
        }
    }

    fn user(totp: bool) -> User {
        User {
            username: "ann".into(),
            subject: "s".into(),
            attributes: Value::Null,
            has_password: true,
            totp_enabled: totp,
            created_at: 0,
            disabled: None,
        }
    }

    fn pending(consent: bool, step_up: Option<StepUp>) -> Decision {
        Decision {
            scopes: vec![],
            audience: vec![],
            issued_at: 1_000,
            expires_at: 1_300,
            trail: vec![ScopeTrail {
                scope: "pay".into(),
                template: None,
                authorizers: vec![],
                combined: None,
                outcome: Outcome::AskUser { consent, step_up },
            }],
            defaulted: false,
        }
    }

    const NONE: Prompt = Prompt {
        none: true,
        login: false,
        consent: false,
    };

    #[test]
    fn nobody_signed_in_means_sign_in_or_login_required() {
        let r = request(Prompt::default(), None);
        assert_eq!(
            authentication(&r.ask(), None, None, 1_000),
            Some(Step::SignIn { again: false })
        );
        let r = request(NONE, None);
        assert!(matches!(
            authentication(&r.ask(), None, None, 1_000),
            Some(Step::Fail(OAuthError::LoginRequired(_)))
        ));
    }

    #[test]
    fn prompt_login_and_max_age_demand_a_fresh_sign_in_once() {
        let login = Prompt {
            login: true,
            ..Prompt::default()
        };
        let r = request(login, None);
        let u = user(false);
        assert_eq!(
            authentication(&r.ask(), Some(&session("pwd", 900)), Some(&u), 1_000),
            Some(Step::SignIn { again: true })
        );
        assert_eq!(
            authentication(&r.ask(), Some(&session("pwd", 1_001)), Some(&u), 1_010),
            None
        );
        let r = request(Prompt::default(), Some(60));
        assert_eq!(
            authentication(&r.ask(), Some(&session("pwd", 900)), Some(&u), 1_000),
            Some(Step::SignIn { again: true })
        );
        assert_eq!(
            authentication(&r.ask(), Some(&session("pwd", 950)), Some(&u), 1_000),
            None
        );
    }

    #[test]
    fn consent_is_asked_unless_prompt_none() {
        let d = pending(true, None);
        let s = session("pwd", 900);
        assert_eq!(
            after_decision(&request(Prompt::default(), None).ask(), &d, &s, &user(false)),
            Step::Consent
        );
        assert!(matches!(
            after_decision(&request(NONE, None).ask(), &d, &s, &user(false)),
            Step::Fail(OAuthError::ConsentRequired(_))
        ));
    }

    #[test]
    fn an_acr_step_up_goes_to_the_second_factor_when_the_account_has_one() {
        let d = pending(
            false,
            Some(StepUp {
                acr: Some(ACR_TOTP.into()),
                max_age_seconds: None,
            }),
        );
        let s = session("pwd", 900);
        let r = request(Prompt::default(), None);
        assert_eq!(after_decision(&r.ask(), &d, &s, &user(true)), Step::SecondFactor);
        assert!(matches!(
            after_decision(&r.ask(), &d, &s, &user(false)),
            Step::Fail(OAuthError::AccessDenied(_))
        ));
        assert!(matches!(
            after_decision(&request(NONE, None).ask(), &d, &s, &user(true)),
            Step::Fail(OAuthError::InteractionRequired(_))
        ));
    }

    #[test]
    fn a_freshness_step_up_signs_in_again_but_never_loops() {
        let d = pending(
            false,
            Some(StepUp {
                acr: None,
                max_age_seconds: Some(60),
            }),
        );
        let r = request(Prompt::default(), None);
        assert_eq!(
            after_decision(&r.ask(), &d, &session("pwd", 100), &user(false)),
            Step::SignIn { again: true }
        );
        assert!(matches!(
            after_decision(&r.ask(), &d, &session("pwd", 1_005), &user(false)),
            Step::Fail(OAuthError::AccessDenied(_))
        ));
    }
}
