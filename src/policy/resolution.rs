//! Resolving a scope's conditions into an outcome, per the issuance decision in DESIGN.md:
//! who can consent, whether a step-up can happen, and how long the scope lives.

use projections::consents::Consent;
use projections::delegations::Delegation;
use projections::event::{AuthContext, UnixSeconds};
use projections::queries;
use serde::{Deserialize, Serialize};

use super::authorizer::{Conditions, StepUp};

/// Where the consent a scope needed came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum ConsentSource {
    /// No authorizer asked for consent.
    NotRequired,
    /// The user approved it during this request.
    UserNow,
    /// The delegation this issuance continues holds the scope.
    Delegation { delegation_id: String },
    /// A standing consent recorded at this ledger position.
    Ledger { position: u64 },
    /// Consent was needed and none was found.
    None,
}

/// What happens to a scope whose combined verdict was not a denial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Resolution {
    /// Issued, living until `expires_at` (if the scope has its own limit).
    Issued {
        consent: ConsentSource,
        expires_at: Option<UnixSeconds>,
    },
    /// The user is present and must be asked first (consent page, step-up page).
    AskUser { consent: bool, step_up: Option<StepUp> },
    /// Not issued: consent was needed and the user cannot be asked.
    DroppedNoConsent,
    /// Not issued: the delegation being continued does not hold the scope (any more).
    DroppedNotHeld,
    /// Not issued: a step-up was needed and the user cannot be asked.
    DroppedStepUp,
}

/// The facts resolution needs, fetched before deciding.
#[derive(Debug, Clone, Copy)]
pub struct Situation<'a> {
    pub subject: &'a str,
    pub client_id: &'a str,
    pub user_present: bool,
    /// The delegation this issuance continues (refresh, access-token exchange).
    pub delegation: Option<&'a Delegation>,
    /// Consents recorded by this subject for this client.
    pub consents: &'a [Consent],
    /// Never reuse ledger consent for a new delegation without the user.
    pub strict_consent: bool,
    /// Scopes the user approved during this request. Settles consent, never a step-up.
    pub approved_now: &'a [String],
    /// How the user authenticated: the only thing that settles a step-up.
    pub auth: &'a AuthContext,
    /// When the interaction began: a sign-in at or after it is fresh for this request. `None` when there
    /// is no interaction (the user is absent).
    pub fresh_since: Option<UnixSeconds>,
    pub now: UnixSeconds,
}

/// Whether the authentication `auth` already meets `step_up` at `now`.
///
/// A step-up names a class (`acr`), an oldest accepted authentication (`max_age_seconds`), or neither,
/// which means a sign-in made during this interaction (at or after `fresh_since`). Nothing the user
/// ticks or a token carries stands in for it (DESIGN.md, "Who settles what").
pub fn step_up_met(
    step_up: &StepUp,
    auth: &AuthContext,
    fresh_since: Option<UnixSeconds>,
    now: UnixSeconds,
) -> bool {
    let acr_met = step_up
        .acr
        .as_deref()
        .is_none_or(|acr| auth.acr.as_deref() == Some(acr));
    let age_met = match step_up.max_age_seconds {
        Some(max) => auth.auth_time.is_some_and(|t| now.saturating_sub(t) <= max),
        None => true,
    };
    let fresh_met = step_up.acr.is_some()
        || step_up.max_age_seconds.is_some()
        || matches!((auth.auth_time, fresh_since), (Some(t), Some(since)) if t >= since);
    acr_met && age_met && fresh_met
}

/// Resolves `conditions` for `scope`; `lifetime_seconds` is the scope's configured default lifetime and
/// `consent_lifetime_seconds` how long a consent the user gives now would stand (the shorter of the
/// scope's and the client's, see [`crate::issuance::Policy::consent_lifetime_seconds`]).
///
/// A scope issued on the strength of a consent lives no longer than that consent: until the ledger
/// consent's `expires_at`, or, approved now, until the consent being recorded expires. So a delegation
/// stops holding (and refreshing) a scope when the consent behind it expires.
pub fn resolve(
    scope: &str,
    conditions: &Conditions,
    lifetime_seconds: Option<i64>,
    consent_lifetime_seconds: Option<i64>,
    s: &Situation<'_>,
) -> Resolution {
    let ttl = min_expiry(conditions.ttl_seconds, lifetime_seconds);
    let expires_at = ttl.map(|t| s.now.saturating_add(t.max(0)));
    if let Some(step_up) = &conditions.step_up {
        // Only the user can authenticate again, and only their authentication settles it: an approval
        // on the consent page does not.
        if !s.user_present {
            return Resolution::DroppedStepUp;
        }
        if !step_up_met(step_up, s.auth, s.fresh_since, s.now) {
            return Resolution::AskUser {
                consent: conditions.consent,
                step_up: Some(step_up.clone()),
            };
        }
    }
    if let Some(d) = s.delegation {
        // Continuing a delegation never yields more than it holds, nor past the expiry it holds it until,
        // whatever the authorizers ask; the consent given when it was created still stands.
        let Some(held) = d.scopes_at(s.now).find(|g| g.scope == scope) else {
            return Resolution::DroppedNotHeld;
        };
        return Resolution::Issued {
            consent: if conditions.consent {
                ConsentSource::Delegation {
                    delegation_id: d.delegation_id.clone(),
                }
            } else {
                ConsentSource::NotRequired
            },
            expires_at: min_expiry(expires_at, held.expires_at),
        };
    }
    if !conditions.consent {
        return Resolution::Issued {
            consent: ConsentSource::NotRequired,
            expires_at,
        };
    }
    if s.approved_now.iter().any(|a| a == scope) {
        return Resolution::Issued {
            consent: ConsentSource::UserNow,
            expires_at: min_expiry(expires_at, consent_expiry(s.now, consent_lifetime_seconds)),
        };
    }
    if s.user_present {
        // A present user is not asked again for what a standing consent already covers; the caller passes
        // no consents when the request demands the page (`prompt=consent`).
        return match queries::standing_consent(s.consents, s.subject, s.client_id, scope, s.now) {
            Some(c) => Resolution::Issued {
                consent: ConsentSource::Ledger { position: c.position },
                expires_at: min_expiry(expires_at, c.expires_at),
            },
            None => Resolution::AskUser {
                consent: true,
                step_up: None,
            },
        };
    }
    if s.strict_consent {
        return Resolution::DroppedNoConsent;
    }
    match queries::standing_consent(s.consents, s.subject, s.client_id, scope, s.now) {
        Some(c) => {
            let expires_at = min_expiry(expires_at, c.expires_at);
            Resolution::Issued {
                consent: ConsentSource::Ledger { position: c.position },
                expires_at,
            }
        }
        None => Resolution::DroppedNoConsent,
    }
}

/// The earlier of two optional limits; `None` is no limit.
fn min_expiry(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    shorter(a, b)
}

/// The shorter of two optional lifetimes (or earlier of two instants); `None` is no limit.
pub fn shorter(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When a consent given at `given_at` with `lifetime_seconds` stops counting; `None` never.
pub fn consent_expiry(given_at: UnixSeconds, lifetime_seconds: Option<i64>) -> Option<UnixSeconds> {
    lifetime_seconds.map(|l| given_at.saturating_add(l.max(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use projections::consents::Decision;

    fn consent(scopes: &[&str], position: u64, expires_at: Option<i64>) -> Consent {
        Consent {
            consent_id: format!("k{position}"),
            subject: "u".into(),
            client_id: "c".into(),
            decision: Decision::Granted,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            authorization_details: serde_json::Value::Null,
            given_at: 0,
            position,
            expires_at,
            revoked_at: None,
        }
    }

    fn situation<'a>(consents: &'a [Consent]) -> Situation<'a> {
        Situation {
            subject: "u",
            client_id: "c",
            user_present: false,
            delegation: None,
            consents,
            strict_consent: false,
            approved_now: &[],
            auth: &NO_AUTH,
            fresh_since: None,
            now: 100,
        }
    }

    static NO_AUTH: AuthContext = AuthContext {
        acr: None,
        amr: vec![],
        auth_time: None,
    };

    fn needs_consent() -> Conditions {
        Conditions {
            consent: true,
            ..Conditions::default()
        }
    }

    #[test]
    fn absent_user_new_delegation_needs_a_standing_ledger_consent() {
        let consents = [consent(&["read"], 7, Some(500))];
        let s = situation(&consents);
        assert_eq!(
            resolve("read", &needs_consent(), None, None, &s),
            Resolution::Issued {
                consent: ConsentSource::Ledger { position: 7 },
                expires_at: Some(500)
            }
        );
        assert_eq!(
            resolve("write", &needs_consent(), None, None, &s),
            Resolution::DroppedNoConsent
        );
        let strict = Situation {
            strict_consent: true,
            ..s
        };
        assert_eq!(
            resolve("read", &needs_consent(), None, None, &strict),
            Resolution::DroppedNoConsent
        );
        let later = Situation { now: 600, ..s };
        assert_eq!(
            resolve("read", &needs_consent(), None, None, &later),
            Resolution::DroppedNoConsent
        );
    }

    /// A consent to `read` given at 0 that expires at `expires_at`, and the decision at `now`.
    struct ExpiryCase {
        name: &'static str,
        expires_at: Option<i64>,
        now: i64,
        user_present: bool,
        then: Resolution,
    }

    #[test]
    fn a_consent_counts_until_its_expiry_and_not_from_it() {
        let ledger = |expires_at| Resolution::Issued {
            consent: ConsentSource::Ledger { position: 7 },
            expires_at,
        };
        let ask = Resolution::AskUser {
            consent: true,
            step_up: None,
        };
        let cases = [
            ExpiryCase {
                name: "live, user absent: issued until the consent expires",
                expires_at: Some(1_000),
                now: 999,
                user_present: false,
                then: ledger(Some(1_000)),
            },
            ExpiryCase {
                name: "expired one second ago, user absent: dropped",
                expires_at: Some(1_000),
                now: 1_001,
                user_present: false,
                then: Resolution::DroppedNoConsent,
            },
            ExpiryCase {
                name: "expiring this very second, user absent: dropped",
                expires_at: Some(1_000),
                now: 1_000,
                user_present: false,
                then: Resolution::DroppedNoConsent,
            },
            ExpiryCase {
                name: "no lifetime, user absent, years later: issued",
                expires_at: None,
                now: 10 * 365 * 86_400,
                user_present: false,
                then: ledger(None),
            },
            ExpiryCase {
                name: "live, user present: not asked again",
                expires_at: Some(1_000),
                now: 999,
                user_present: true,
                then: ledger(Some(1_000)),
            },
            ExpiryCase {
                name: "expired one second ago, user present: asked again",
                expires_at: Some(1_000),
                now: 1_001,
                user_present: true,
                then: ask,
            },
            ExpiryCase {
                name: "no lifetime, user present: not asked again",
                expires_at: None,
                now: 1_001,
                user_present: true,
                then: ledger(None),
            },
        ];
        for case in cases {
            // Given a consent to read recorded at position 7
            let consents = [consent(&["read"], 7, case.expires_at)];
            let s = Situation {
                user_present: case.user_present,
                now: case.now,
                ..situation(&consents)
            };
            // When a new delegation asks for read, Then
            assert_eq!(
                resolve("read", &needs_consent(), None, None, &s),
                case.then,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn a_scope_approved_now_lives_no_longer_than_the_consent_recorded_for_it() {
        let approved = ["read".to_owned()];
        let s = Situation {
            user_present: true,
            approved_now: &approved,
            ..situation(&[])
        };
        // A 30-second consent caps a 60-second scope lifetime; the scope lifetime caps a longer consent.
        assert_eq!(
            resolve("read", &needs_consent(), Some(60), Some(30), &s),
            Resolution::Issued {
                consent: ConsentSource::UserNow,
                expires_at: Some(130)
            }
        );
        assert_eq!(
            resolve("read", &needs_consent(), Some(60), Some(600), &s),
            Resolution::Issued {
                consent: ConsentSource::UserNow,
                expires_at: Some(160)
            }
        );
        // A consent lifetime means nothing to a scope no authorizer asks consent for.
        assert_eq!(
            resolve("read", &Conditions::default(), None, Some(30), &s),
            Resolution::Issued {
                consent: ConsentSource::NotRequired,
                expires_at: None
            }
        );
        assert_eq!(shorter(Some(5), None), Some(5));
        assert_eq!(shorter(Some(5), Some(3)), Some(3));
        assert_eq!(consent_expiry(100, Some(50)), Some(150));
        assert_eq!(consent_expiry(100, None), None);
    }

    #[test]
    fn a_present_user_is_asked_and_an_absent_one_cannot_step_up() {
        let s = Situation {
            user_present: true,
            ..situation(&[])
        };
        assert_eq!(
            resolve("read", &needs_consent(), None, None, &s),
            Resolution::AskUser {
                consent: true,
                step_up: None
            }
        );
        let approved = ["read".to_owned()];
        let s2 = Situation {
            approved_now: &approved,
            ..s
        };
        assert!(matches!(
            resolve("read", &needs_consent(), None, None, &s2),
            Resolution::Issued {
                consent: ConsentSource::UserNow,
                ..
            }
        ));
        let step = Conditions {
            step_up: Some(StepUp::default()),
            ..Conditions::default()
        };
        assert_eq!(
            resolve("read", &step, None, None, &situation(&[])),
            Resolution::DroppedStepUp
        );
    }

    #[test]
    fn the_ttl_is_the_shortest_of_conditions_and_scope_lifetime() {
        let c = Conditions {
            ttl_seconds: Some(50),
            ..Conditions::default()
        };
        assert_eq!(
            resolve("read", &c, Some(30), None, &situation(&[])),
            Resolution::Issued {
                consent: ConsentSource::NotRequired,
                expires_at: Some(130)
            }
        );
        assert_eq!(
            resolve("read", &Conditions::default(), None, None, &situation(&[])),
            Resolution::Issued {
                consent: ConsentSource::NotRequired,
                expires_at: None
            }
        );
    }

    #[test]
    fn continuing_a_delegation_never_yields_more_than_it_holds() {
        let d = Delegation {
            delegation_id: "d1".into(),
            subject: "u".into(),
            client_id: "c".into(),
            scopes: vec![
                projections::event::GrantedScope {
                    scope: "read".into(),
                    expires_at: Some(150),
                },
                projections::event::GrantedScope {
                    scope: "old".into(),
                    expires_at: Some(90),
                },
            ],
            authorization_details: serde_json::Value::Null,
            claims: serde_json::Value::Null,
            auth: Default::default(),
            grant_type: "authorization_code".into(),
            created_at: 0,
            created_position: 1,
            last_used_at: 0,
            revoked: None,
            audience: vec![],
        };
        let s = Situation {
            delegation: Some(&d),
            ..situation(&[])
        };
        // Even a scope no authorizer asks consent for: held until 150, not past it.
        assert_eq!(
            resolve("read", &Conditions::default(), Some(3_600), None, &s),
            Resolution::Issued {
                consent: ConsentSource::NotRequired,
                expires_at: Some(150)
            }
        );
        assert_eq!(
            resolve("read", &needs_consent(), None, None, &s),
            Resolution::Issued {
                consent: ConsentSource::Delegation {
                    delegation_id: "d1".into()
                },
                expires_at: Some(150)
            }
        );
        // Past its delegated expiry, or never held: dropped, with or without a consent authorizer.
        assert_eq!(
            resolve("old", &Conditions::default(), None, None, &s),
            Resolution::DroppedNotHeld
        );
        assert_eq!(
            resolve("write", &Conditions::default(), None, None, &s),
            Resolution::DroppedNotHeld
        );
    }

    fn step_up(acr: Option<&str>, max_age_seconds: Option<i64>) -> Conditions {
        Conditions {
            consent: true,
            step_up: Some(StepUp {
                acr: acr.map(str::to_owned),
                max_age_seconds,
            }),
            ..Conditions::default()
        }
    }

    fn signed_in(acr: &str, auth_time: i64) -> AuthContext {
        AuthContext {
            acr: Some(acr.into()),
            amr: vec![],
            auth_time: Some(auth_time),
        }
    }

    #[test]
    fn an_approval_on_the_consent_page_never_settles_a_step_up() {
        // Given a password sign-in, a scope needing mfa, and the user ticking its box
        let approved = ["pay".to_owned()];
        let auth = signed_in("pwd", 90);
        let s = Situation {
            user_present: true,
            approved_now: &approved,
            auth: &auth,
            fresh_since: Some(80),
            ..situation(&[])
        };
        // Then the step-up is still asked for
        assert!(matches!(
            resolve("pay", &step_up(Some("mfa"), None), None, None, &s),
            Resolution::AskUser { step_up: Some(_), .. }
        ));
        // And once the session itself is mfa, the approval settles the consent
        let mfa = signed_in("mfa", 95);
        let s = Situation { auth: &mfa, ..s };
        assert!(matches!(
            resolve("pay", &step_up(Some("mfa"), None), None, None, &s),
            Resolution::Issued {
                consent: ConsentSource::UserNow,
                ..
            }
        ));
    }

    #[test]
    fn a_step_up_without_class_or_age_needs_a_sign_in_during_the_interaction() {
        let before = signed_in("pwd", 70);
        let during = signed_in("pwd", 85);
        let band = step_up(None, None).step_up.unwrap();
        assert!(!step_up_met(&band, &before, Some(80), 100));
        assert!(step_up_met(&band, &during, Some(80), 100));
        assert!(!step_up_met(&band, &during, None, 100));
        let fresh = StepUp {
            acr: None,
            max_age_seconds: Some(20),
        };
        assert!(!step_up_met(&fresh, &before, None, 100));
        assert!(step_up_met(&fresh, &during, None, 100));
        assert!(!step_up_met(&fresh, &AuthContext::default(), None, 100));
    }
}
