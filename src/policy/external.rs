//! Asking external policy decision points before the decision, so that the decision itself stays pure.
//!
//! Each `http` authorizer assigned to a requested scope gets one OpenID AuthZEN Access Evaluation request
//! per scope, all sent at once, each bounded by its authorizer's timeout. Every failure (timeout,
//! transport error, non-2xx status, a body that is not an answer) becomes a denial whose reason says
//! what went wrong: the verdict lands in the decision trail, so the reason must never carry a secret
//! (the bearer token, the url's query).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use projections::event::ClientSpec;
use serde_json::{Value, json};

use crate::issuance::{self, Policy};
use crate::policy::authorizer::{Conditions, Verdict};
use crate::policy::authorizers::http::HttpConfig;

/// The largest answer read; a decision is a few hundred bytes, and a PDP gone wrong must not fill memory.
const RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// The longest reason kept from a PDP; it is written to the ledger with every token.
const REASON_CHARS_MAX: usize = 500;

/// The reason when the PDP denies without saying why.
const DEFAULT_DENIAL: &str = "the decision point denied";

/// The scopes the decision will evaluate for `client`: those requested, or the defaults when none were,
/// keeping only those the client may have: the candidates [`crate::issuance::decide`] uses, so a PDP is
/// asked about exactly what will be decided and never about a scope the client cannot get.
pub fn scopes_to_prefetch(policy: &Policy, client: &ClientSpec, requested: Option<&[String]>) -> Vec<String> {
    let mut scopes = issuance::candidates(policy, client, requested);
    scopes.retain(|scope| {
        policy
            .engine
            .find(scope)
            .is_some_and(|(def, _)| issuance::client_may_request(client, &def.name, scope))
    });
    scopes
}

/// Who is asking, as the decision points see it.
#[derive(Debug, Clone, Copy)]
pub struct Asking<'a> {
    pub client: &'a ClientSpec,
    pub subject: &'a str,
    pub grant_type: &'a str,
    pub user_present: bool,
    pub requested: Option<&'a [String]>,
    pub now: i64,
}

/// Verdicts of external decision points, by (authorizer, scope), fetched before a decision.
pub type External = BTreeMap<(String, String), Verdict>;

/// The verdicts of the policy's decision points for a request; nothing is asked (and nothing awaited)
/// when the policy has no `http` authorizer, so the common path pays nothing.
pub async fn fetch(
    http: &reqwest::Client,
    policy: &Policy,
    asking: Asking<'_>,
) -> BTreeMap<(String, String), Verdict> {
    if policy.http_authorizers.is_empty() {
        return BTreeMap::new();
    }
    let scopes = scopes_to_prefetch(policy, asking.client, asking.requested);
    let ctx_json = json!({
        "client_id": asking.client.client_id,
        "client_kind": asking.client.kind,
        "grant_type": asking.grant_type,
        "user_present": asking.user_present,
        "subject": asking.subject,
        "now": asking.now,
    });
    prefetch(http, policy, &ctx_json, asking.subject, &scopes).await
}

/// Asks every `http` authorizer assigned to each of `scopes` for its verdict, concurrently, and returns
/// them by (authorizer name, concrete scope), ready for [`crate::policy::authorizer::Context::external`].
///
/// `ctx_json` is sent as the AuthZEN `context`; `subject` as the subject's id. Never fails: a PDP that
/// cannot answer yields a denial.
pub async fn prefetch(
    http: &reqwest::Client,
    policy: &Policy,
    ctx_json: &Value,
    subject: &str,
    scopes: &[String],
) -> BTreeMap<(String, String), Verdict> {
    let mut asked = BTreeSet::new();
    let mut calls = Vec::new();
    for scope in scopes {
        let Some((def, value)) = policy.engine.find(scope) else {
            continue;
        };
        for &i in &def.authorizers {
            let Some(authorizer) = policy.engine.authorizers.get(i) else {
                continue;
            };
            // The type check guards against an authorizer of another type sharing an http one's name.
            if authorizer.type_name != "http" {
                continue;
            }
            let Some(config) = policy.http_authorizers.get(&authorizer.name) else {
                continue;
            };
            let key = (authorizer.name.clone(), scope.clone());
            // A scope requested twice, or an authorizer assigned twice, is asked once.
            if !asked.insert(key.clone()) {
                continue;
            }
            let body = json!({
                "subject": {"type": "user", "id": subject},
                "resource": {
                    "type": "scope",
                    "id": scope,
                    "properties": {"template": def.name, "value": value},
                },
                "action": {"name": "issue_token"},
                "context": ctx_json,
            });
            calls.push(async move { (key, ask(http, config, &body).await) });
        }
    }
    futures_util::future::join_all(calls).await.into_iter().collect()
}

/// One evaluation request, bounded by the authorizer's timeout as a whole (connect, send, read).
async fn ask(http: &reqwest::Client, config: &HttpConfig, body: &Value) -> Verdict {
    let timed_out = || {
        Verdict::deny(format!(
            "http: decision point timed out after {} ms",
            config.timeout_ms
        ))
    };
    let mut request = http.post(&config.url).json(body);
    if let Some(token) = &config.bearer_token {
        request = request.bearer_auth(token);
    }
    match tokio::time::timeout(Duration::from_millis(config.timeout_ms), exchange(request)).await {
        Err(_) => timed_out(),
        Ok(Ok(verdict)) => verdict,
        Ok(Err(Failure::TimedOut)) => timed_out(),
        Ok(Err(Failure::Other(problem))) => Verdict::deny(format!("http: decision point failed: {problem}")),
    }
}

/// Why an exchange gave no answer.
enum Failure {
    TimedOut,
    Other(String),
}

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            return Failure::TimedOut;
        }
        // Without the url, which may carry a secret in its query; the causes (e.g. "connection refused")
        // name no secret and are what an operator needs.
        let e = e.without_url();
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        Failure::Other(text)
    }
}

async fn exchange(request: reqwest::RequestBuilder) -> Result<Verdict, Failure> {
    let mut response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failure::Other(format!("status {}", status.as_u16())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
            return Err(Failure::Other(format!(
                "the response is larger than {RESPONSE_BYTES_MAX} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let answer: Value = serde_json::from_slice(&body)
        .map_err(|e| Failure::Other(format!("the response is not JSON: {e}")))?;
    verdict_from(&answer).map_err(Failure::Other)
}

/// The verdict an AuthZEN answer `{"decision": bool, "context": {...}}` gives.
fn verdict_from(answer: &Value) -> Result<Verdict, String> {
    let decision = answer
        .get("decision")
        .and_then(Value::as_bool)
        .ok_or("the response has no boolean decision")?;
    let context = answer.get("context").filter(|c| !c.is_null());
    if let Some(c) = context
        && !c.is_object()
    {
        return Err("the response's context is not an object".into());
    }
    if !decision {
        let reason = context
            .and_then(|c| c.get("reason"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map_or_else(
                || DEFAULT_DENIAL.to_owned(),
                |r| r.chars().take(REASON_CHARS_MAX).collect(),
            );
        return Ok(Verdict::deny(reason));
    }
    match context.and_then(|c| c.get("conditions")).filter(|c| !c.is_null()) {
        None => Ok(Verdict::Allow),
        Some(conditions) => Ok(Verdict::Conditional {
            conditions: conditions_from(conditions)?,
        }),
    }
}

/// Parses conditions strictly: [`Conditions`] ignores unknown keys, but here an unknown key is a
/// condition we would silently drop (`"ttl": 60` read as no TTL at all), so it is refused instead, and the
/// refusal denies.
fn conditions_from(value: &Value) -> Result<Conditions, String> {
    let bad = |why: String| format!("the conditions are not understood: {why}");
    let known = |v: &Value, keys: &[&str]| -> Result<(), String> {
        let object = v.as_object().ok_or_else(|| bad("not an object".into()))?;
        match object.keys().find(|k| !keys.contains(&k.as_str())) {
            Some(k) => Err(bad(format!("unknown key {k:?}"))),
            None => Ok(()),
        }
    };
    known(value, &["consent", "ttl_seconds", "step_up"])?;
    if let Some(step_up) = value.get("step_up").filter(|s| !s.is_null()) {
        known(step_up, &["acr", "max_age_seconds"])?;
    }
    let conditions: Conditions = serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?;
    if conditions.ttl_seconds.is_some_and(|t| t <= 0) {
        return Err(bad("ttl_seconds must be positive".into()));
    }
    if conditions
        .step_up
        .as_ref()
        .and_then(|s| s.max_age_seconds)
        .is_some_and(|m| m < 0)
    {
        return Err(bad("max_age_seconds must not be negative".into()));
    }
    Ok(conditions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizer::StepUp;

    #[test]
    fn answers_map_to_verdicts() {
        let cases = [
            (json!({"decision": true}), Verdict::Allow),
            (json!({"decision": true, "context": {}}), Verdict::Allow),
            (
                json!({"decision": true, "context": {"conditions": null}}),
                Verdict::Allow,
            ),
            (json!({"decision": false}), Verdict::deny(DEFAULT_DENIAL)),
            (
                json!({"decision": false, "context": {"reason": "  "}}),
                Verdict::deny(DEFAULT_DENIAL),
            ),
            (
                json!({"decision": false, "context": {"reason": "over quota"}}),
                Verdict::deny("over quota"),
            ),
            (
                json!({"decision": true, "context": {"conditions": {"ttl_seconds": 60}}}),
                Verdict::ttl(60),
            ),
            (
                json!({"decision": true, "context": {"conditions": {
                    "consent": true, "step_up": {"acr": "mfa", "max_age_seconds": 0}
                }}}),
                Verdict::Conditional {
                    conditions: Conditions {
                        consent: true,
                        ttl_seconds: None,
                        step_up: Some(StepUp {
                            acr: Some("mfa".into()),
                            max_age_seconds: Some(0),
                        }),
                    },
                },
            ),
        ];
        for (answer, expected) in cases {
            assert_eq!(verdict_from(&answer), Ok(expected), "{answer}");
        }
    }

    #[test]
    fn answers_that_are_not_understood_are_refused() {
        for answer in [
            json!({}),
            json!({"decision": "true"}),
            json!([true]),
            json!({"decision": true, "context": "ok"}),
            json!({"decision": true, "context": {"conditions": {"ttl": 60}}}),
            json!({"decision": true, "context": {"conditions": {"ttl_seconds": "60"}}}),
            json!({"decision": true, "context": {"conditions": {"ttl_seconds": 0}}}),
            json!({"decision": true, "context": {"conditions": {"step_up": {"level": 2}}}}),
            json!({"decision": true, "context": {"conditions": {"step_up": {"max_age_seconds": -1}}}}),
            json!({"decision": true, "context": {"conditions": 60}}),
        ] {
            assert!(verdict_from(&answer).is_err(), "{answer}");
        }
    }

    #[tokio::test]
    async fn a_decision_point_that_cannot_be_reached_denies_without_naming_the_url() {
        // Given a port nothing listens on, over http and https, with a secret in the query
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        for scheme in ["http", "https"] {
            let config = HttpConfig {
                url: format!("{scheme}://{addr}/evaluation?key=s3cret"),
                timeout_ms: 1000,
                bearer_token: Some("t0ken".into()),
            };

            // When it is asked
            let verdict = ask(&reqwest::Client::new(), &config, &json!({})).await;

            // Then the scope is denied, and the reason names neither the url nor a secret
            let Verdict::Deny { reason } = verdict else {
                panic!("{scheme}: {verdict:?}")
            };
            assert!(reason.starts_with("http: decision point failed: "), "{reason}");
            for secret in ["s3cret", "t0ken", "127.0.0.1"] {
                assert!(!reason.contains(secret), "{reason}");
            }
        }
    }

    #[test]
    fn a_long_reason_is_cut() {
        let long = "x".repeat(REASON_CHARS_MAX * 2);
        let Ok(Verdict::Deny { reason }) =
            verdict_from(&json!({"decision": false, "context": {"reason": long}}))
        else {
            panic!("a denial")
        };
        assert_eq!(reason.chars().count(), REASON_CHARS_MAX);
    }
}
