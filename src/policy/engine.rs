//! The compiled policy: scope definitions with their authorizers, evaluated per requested scope.

use serde::Serialize;

use super::authorizer::{Authorize, Context, ScopeRequest, Verdict};
use super::combine::combine;
use super::templates::{self, Template};

/// An authorizer built once, at load, under its configured name.
#[derive(Debug)]
pub struct NamedAuthorizer {
    pub name: String,
    pub type_name: &'static str,
    pub authorizer: Box<dyn Authorize>,
}

/// A configured scope (static or template) and the authorizers assigned to it, in order.
#[derive(Debug, Clone)]
pub struct ScopeDef {
    pub name: String,
    pub template: Template,
    pub description: String,
    pub default: bool,
    pub lifetime_seconds: Option<i64>,
    /// How long a consent to this scope stands (`consent_lifetime_seconds`); `None` until revoked.
    pub consent_lifetime_seconds: Option<i64>,
    /// Indexes into [`PolicyEngine::authorizers`].
    pub authorizers: Vec<usize>,
}

impl ScopeDef {
    /// How long a consent `client` is given to this scope stands: the shorter of the scope's and the
    /// client's consent lifetimes; `None` (until revoked) when neither sets one.
    pub fn consent_lifetime_seconds_for(&self, client: &projections::event::ClientSpec) -> Option<i64> {
        super::resolution::shorter(self.consent_lifetime_seconds, client.consent_lifetime_seconds)
    }
}

/// Scopes and authorizers, ready to decide.
#[derive(Debug, Default)]
pub struct PolicyEngine {
    pub scopes: Vec<ScopeDef>,
    pub authorizers: Vec<NamedAuthorizer>,
    pub templates: Vec<Template>,
    /// Never reuse ledger consent for a new delegation without the user.
    pub strict_consent: bool,
}

/// One authorizer's verdict, named for the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorizerVerdict {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// Every assigned authorizer's verdict for one scope, and their combination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeEvaluation {
    pub verdicts: Vec<AuthorizerVerdict>,
    pub combined: Verdict,
}

impl PolicyEngine {
    /// Builds an engine; `scopes` name authorizers by index.
    pub fn new(scopes: Vec<ScopeDef>, authorizers: Vec<NamedAuthorizer>, strict_consent: bool) -> Self {
        let templates = scopes.iter().map(|s| s.template.clone()).collect();
        PolicyEngine {
            scopes,
            authorizers,
            templates,
            strict_consent,
        }
    }

    /// The definition `scope` matches and its concrete value.
    pub fn find<'s>(&self, scope: &'s str) -> Option<(&ScopeDef, Option<&'s str>)> {
        templates::find(&self.templates, scope).and_then(|(i, v)| self.scopes.get(i).map(|d| (d, v)))
    }

    /// Runs the authorizers assigned to `def` for `scope`, in order, and combines their verdicts.
    pub fn evaluate(
        &self,
        def: &ScopeDef,
        scope: &str,
        value: Option<&str>,
        ctx: &Context<'_>,
    ) -> ScopeEvaluation {
        let request = ScopeRequest {
            scope,
            template: &def.name,
            value,
        };
        let verdicts: Vec<AuthorizerVerdict> = def
            .authorizers
            .iter()
            .filter_map(|&i| self.authorizers.get(i))
            .map(|a| AuthorizerVerdict {
                name: a.name.clone(),
                type_name: a.type_name.to_owned(),
                verdict: a.authorizer.evaluate(ctx, &request),
            })
            .collect();
        let combined = combine(verdicts.iter().map(|v| &v.verdict));
        ScopeEvaluation { verdicts, combined }
    }
}
