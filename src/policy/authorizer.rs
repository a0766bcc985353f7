//! What an authorizer sees and what it may answer.

use std::collections::BTreeMap;

use projections::clients::Client;
use projections::delegations::Delegation;
use projections::event::{AuthContext, UnixSeconds};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything an authorizer may base its verdict on. Built before evaluation; nothing is fetched during it.
#[derive(Debug, Clone, Serialize)]
pub struct Context<'a> {
    pub client: &'a Client,
    pub subject: &'a str,
    /// The subject's attributes (groups, roles, owned resource ids, …); `Null` when none.
    pub subject_attributes: &'a Value,
    pub grant_type: &'a str,
    /// Whether the user is there to be asked (consent, step-up).
    pub user_present: bool,
    pub auth: &'a AuthContext,
    /// The delegation this issuance continues, if any.
    pub delegation: Option<&'a Delegation>,
    /// RFC 9396 `authorization_details` requested (an array, or `Null`).
    pub authorization_details: &'a Value,
    pub now: UnixSeconds,
    /// Verdicts fetched before evaluation from external decision points, by (authorizer, scope).
    #[serde(skip)]
    pub external: &'a BTreeMap<(String, String), Verdict>,
}

/// The scope being decided.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ScopeRequest<'a> {
    /// The concrete scope requested, e.g. `account.list.05542`.
    pub scope: &'a str,
    /// The configured scope it matched, e.g. `account.list.*`.
    pub template: &'a str,
    /// For a dynamic scope, the concrete part (`05542`).
    pub value: Option<&'a str>,
}

/// A stronger or fresher authentication an authorizer demands before issuance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUp {
    /// The authentication context class required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// The oldest authentication accepted, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i64>,
}

/// Conditions on issuing a scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conditions {
    /// The user must consent (now, or by a standing consent when absent).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub consent: bool,
    /// The scope lives at most this long from issuance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up: Option<StepUp>,
}

/// One authorizer's answer for one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny { reason: String },
    Conditional { conditions: Conditions },
}

impl Verdict {
    /// A denial with `reason`.
    pub fn deny(reason: impl Into<String>) -> Verdict {
        Verdict::Deny {
            reason: reason.into(),
        }
    }

    /// Allowed once the user consents.
    pub fn consent() -> Verdict {
        Verdict::Conditional {
            conditions: Conditions {
                consent: true,
                ..Conditions::default()
            },
        }
    }

    /// Allowed for at most `seconds`.
    pub fn ttl(seconds: i64) -> Verdict {
        Verdict::Conditional {
            conditions: Conditions {
                ttl_seconds: Some(seconds),
                ..Conditions::default()
            },
        }
    }

    /// Allowed after a step-up.
    pub fn step_up(step_up: StepUp) -> Verdict {
        Verdict::Conditional {
            conditions: Conditions {
                step_up: Some(step_up),
                ..Conditions::default()
            },
        }
    }
}

/// A configured authorizer: a pure function of the context and the scope.
pub trait Authorize: Send + Sync + std::fmt::Debug {
    fn evaluate(&self, ctx: &Context<'_>, scope: &ScopeRequest<'_>) -> Verdict;
}
