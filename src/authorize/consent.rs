//! The decision with the user present: what a request issues, and what the consent page's answer
//! settles. The authorization endpoint and the device verification page both use it. A consent answer settles consent only; a step-up is settled by the
//! session's own authentication, never by a ticked box (DESIGN.md, "Who settles what").

use projections::clients::Client;
use projections::consents::Consent;
use projections::event::UnixSeconds;
use projections::users::User;

use super::next_step::{self, Ask, Step};
use crate::issuance::{self, Decision, IssuanceRequest, Policy};
use crate::oauth::OAuthError;
use crate::policy::external::External;
use crate::sessions::Session;

/// What a decision for a present user is made on, fetched before deciding.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub request: Ask<'a>,
    pub session: &'a Session,
    pub user: &'a User,
    pub client: &'a Client,
    /// Standing consents of this user for this client (none when the request demands the page).
    pub consents: &'a [Consent],
    pub external: &'a External,
}

/// The issuance decision for the request, counting `approved_now` as consented. Pure.
pub fn decision(
    policy: &Policy,
    facts: &Facts<'_>,
    approved_now: &[String],
    now: UnixSeconds,
) -> Result<Decision, OAuthError> {
    issuance::decide(
        policy,
        &IssuanceRequest {
            client: facts.client,
            subject: &facts.user.subject,
            subject_attributes: &facts.user.attributes,
            requested: facts.request.scope,
            resource: facts.request.resource,
            grant_type: facts.request.grant_type.name(),
            user_present: true,
            auth: &facts.session.auth,
            delegation: None,
            authorization_details: facts.request.authorization_details,
            consents: facts.consents,
            approved_now,
            fresh_since: Some(facts.request.created_at),
            external: facts.external,
            now,
        },
    )
}

/// The user's answer on the consent page.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// `false` when the user pressed "deny".
    pub approving: bool,
    /// The scopes whose box was ticked.
    pub ticked: Vec<String>,
}

/// What a consent page answer becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The request was not waiting for consent (a step-up is due first, or nothing needs asking): the
    /// answer is ignored and the request goes on with this step.
    NotAsked(Step),
    /// Everything asked was refused: the refusal is recorded and the client hears `access_denied`.
    Refused { answered: Answered },
    /// Issue `decision`.
    Approved {
        decision: Box<Decision>,
        answered: Answered,
    },
}

/// What the page asked (the decision before the answer, whose pending scopes it showed) and how each
/// asked scope was answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub shown: Box<Decision>,
    pub approved: Vec<String>,
    pub refused: Vec<String>,
}

/// Decides a consent page answer. The page's scopes are the ones pending before the answer; an answer
/// for a request that still needs a step-up (or anything but consent) settles nothing. Pure.
pub fn decide(
    policy: &Policy,
    facts: &Facts<'_>,
    answer: &Answer,
    now: UnixSeconds,
) -> Result<Outcome, OAuthError> {
    let shown = decision(policy, facts, &[], now)?;
    match next_step::after_decision(&facts.request, &shown, facts.session, facts.user) {
        Step::Consent => {}
        other => return Ok(Outcome::NotAsked(other)),
    }
    let (approved, refused): (Vec<String>, Vec<String>) = shown
        .pending()
        .map(|t| t.scope.clone())
        .partition(|s| answer.approving && answer.ticked.contains(s));
    let shown = Box::new(shown);
    if approved.is_empty() {
        return Ok(Outcome::Refused {
            answered: Answered {
                shown,
                approved,
                refused,
            },
        });
    }
    let decision = decision(policy, facts, &approved, now)?;
    // Consent was the only thing pending, so the approvals leave nothing else to ask; checked again
    // because issuing with a step-up outstanding is the one thing this step must never do.
    if decision
        .pending()
        .any(|t| matches!(&t.outcome, issuance::Outcome::AskUser { step_up: Some(_), .. }))
    {
        return Ok(Outcome::NotAsked(next_step::after_decision(
            &facts.request,
            &decision,
            facts.session,
            facts.user,
        )));
    }
    Ok(Outcome::Approved {
        decision: Box::new(decision),
        answered: Answered {
            shown,
            approved,
            refused,
        },
    })
}
