//! Authorization flows over HTTP: authorize, consent, code exchange.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use base64::Engine;
use reqwest::header::COOKIE;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Node;
use super::users::{location, no_redirect_client};

/// The redirect URI test clients register.
pub const REDIRECT: &str = "https://app.example/cb";

/// A PKCE pair (RFC 7636, S256).
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    let verifier = format!("{}{}", consent_ledger::ids::id(), consent_ledger::ids::id());
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce { verifier, challenge }
}

/// Registers a confidential web client with the code and refresh grants; `extra` overrides fields.
pub async fn register_app(s: &Node, client_id: &str, scopes: &[&str], extra: Value) -> String {
    let mut body = json!({
        "client_id": client_id,
        "name": "Photo Printer",
        "kind": "third_party",
        "audience": "human",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": scopes,
        "token_endpoint_auth_method": "client_secret_basic",
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    s.register(body).await.unwrap_or_default()
}

/// Query (or fragment) parameters of a URL.
pub fn params_of(url: &str) -> BTreeMap<String, String> {
    let part = url.split_once(['?', '#']).map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(part.as_bytes()).into_owned().collect()
}

/// The value of a hidden input in a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    let len = html[start..].find('"').unwrap();
    html[start..start + len].to_owned()
}

/// GET /authorize with `params` and the browser's cookies; follows nothing.
pub async fn authorize(s: &Node, cookie: Option<&str>, params: &[(&str, &str)]) -> reqwest::Response {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut req = no_redirect_client().get(format!("{}/authorize?{query}", s.base));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.unwrap()
}

/// The usual code request for `client_id`, with `scope` and a PKCE challenge.
pub fn code_request<'a>(client_id: &'a str, scope: &'a str, pkce: &'a Pkce) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "st-123"),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// Answers a consent page: approves `approve` (the other listed scopes are left unticked), or denies.
pub async fn answer_consent(
    s: &Node,
    cookie: &str,
    page: &str,
    approve: Option<&[&str]>,
) -> reqwest::Response {
    let id = hidden(page, "id");
    let csrf = hidden(page, "csrf");
    let mut form: Vec<(String, String)> = vec![("id".into(), id), ("csrf".into(), csrf)];
    match approve {
        Some(scopes) => {
            form.push(("action".into(), "approve".into()));
            for sc in scopes {
                form.push((format!("scope.{sc}"), "on".into()));
            }
        }
        None => form.push(("action".into(), "deny".into())),
    }
    no_redirect_client()
        .post(format!("{}/authorize/consent", s.base))
        .header(COOKIE, cookie)
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// Follows /authorize to a code: answers the consent page (approving `approve`) when one is shown.
/// Returns the redirect's parameters.
pub async fn code_for(
    s: &Node,
    cookie: &str,
    params: &[(&str, &str)],
    approve: &[&str],
) -> BTreeMap<String, String> {
    let r = authorize(s, Some(cookie), params).await;
    let r = match r.status().as_u16() {
        303 => r,
        200 => {
            let page = r.text().await.unwrap();
            answer_consent(s, cookie, &page, Some(approve)).await
        }
        other => panic!("authorize answered {other}: {}", r.text().await.unwrap()),
    };
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let to = location(r.headers());
    assert!(to.starts_with(REDIRECT), "{to}");
    params_of(&to)
}

/// POST /token with the code.
pub async fn exchange(s: &Node, client: (&str, &str), code: &str, verifier: Option<&str>) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    let (status, _, body) = s.post_form("/token", Some(client), &form).await;
    (status, body)
}

/// The whole code flow for a signed-in browser: authorize, consent to `approve`, redeem. Returns the
/// token response.
pub async fn code_flow(s: &Node, cookie: &str, client: (&str, &str), scope: &str, approve: &[&str]) -> Value {
    let p = pkce();
    let params = code_for(s, cookie, &code_request(client.0, scope, &p), approve).await;
    let code = params
        .get("code")
        .unwrap_or_else(|| panic!("no code: {params:?}"));
    let (status, body) = exchange(s, client, code, Some(&p.verifier)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The claims of a JWT, unverified (tests verify signatures where that is the point).
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// POST /introspect by the client; returns the body.
pub async fn introspect(s: &Node, client: (&str, &str), token: &str) -> Value {
    let (status, _, body) = s
        .post_form("/introspect", Some(client), &[("token", token)])
        .await;
    assert_eq!(status, 200, "{body}");
    body
}
