//! Consents that expire, over HTTP, on SQLite and PostgreSQL: a consent given on the consent page
//! stands for the shorter of its scope's and its client's consent lifetime, so a user-absent grant
//! (here a JWT bearer assertion) issues the scope on day 179 of a 180-day consent and not on day 181,
//! the consent page asks the user again once it has expired, and the account page says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::assertions::{IssuerKey, claims, jwks, toml_inline};
use common::flows::{
    authorize, claims as token_claims, code_flow, code_request, params_of, pkce, register_app,
};
use common::users::{add_user, location, login, no_redirect_client};
use common::{TestDb, TestServer};
use consent_ledger::store::EventStore;
use projections::Event;
use projections::event::ConsentGranted;
use reqwest::header::COOKIE;
use serde_json::{Value, json};

const URN: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ISS: &str = "https://idp.partner.example";
const PASSWORD: &str = "correct horse battery";
const DAY: i64 = 86_400;

/// `accounts` needs consent, which stands 180 days (PSD2); `contacts` needs consent with no lifetime.
fn config(key: &IssuerKey) -> String {
    format!(
        r#"
admin_token = "admin-token-admin-token-admin-token-0123"
default_audience = "https://api.example"
[[authorizers]]
name = "consent"
type = "consent"
[[scopes]]
name = "profile"
description = "See your profile"
default = true
[[scopes]]
name = "accounts"
description = "Read your account balances"
authorizers = ["consent"]
consent_lifetime_seconds = {}
[[scopes]]
name = "contacts"
description = "Read your contacts"
authorizers = ["consent"]
[[trusted_issuers]]
issuer = "{ISS}"
subjects = ["ann"]
subject_mapping = {{ by = "username" }}
scopes = ["profile", "accounts", "contacts"]
algorithms = ["ES256"]
jwks = {}
"#,
        180 * DAY,
        toml_inline(&jwks(&[key]))
    )
}

/// A server with Ann and the client `app` (code, refresh and JWT bearer grants; `extra` overrides).
async fn setup(db: &TestDb, key: &IssuerKey, extra: Value) -> (TestServer, String) {
    let s = TestServer::start(db, &config(key)).await;
    let mut settings = json!({"grant_types": [URN, "authorization_code", "refresh_token"]});
    if let (Some(b), Some(e)) = (settings.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let secret = register_app(&s, "app", &["profile", "accounts", "contacts"], settings).await;
    add_user(&s, "ann", PASSWORD, json!({})).await;
    (s, secret)
}

/// The scopes a JWT bearer assertion about Ann gets now, asking for `scope`.
async fn bearer_scopes(s: &TestServer, secret: &str, key: &IssuerKey, jti: &str, scope: &str) -> Vec<String> {
    let assertion = key.sign(&claims(s, ISS, "ann", jti));
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(("app", secret)),
            &[("grant_type", URN), ("assertion", &assertion), ("scope", scope)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    token_claims(body["access_token"].as_str().unwrap())["scope"]
        .as_str()
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect()
}

/// Every `ConsentGranted` in the ledger, in order.
async fn consents_granted(s: &TestServer) -> Vec<ConsentGranted> {
    let store: &dyn EventStore = s.app.store.as_ref();
    store
        .read_from(1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.decode().unwrap().event {
            Event::ConsentGranted(g) => Some(g),
            _ => None,
        })
        .collect()
}

async fn account_page(s: &TestServer, cookie: &str) -> String {
    let r = no_redirect_client()
        .get(format!("{}/account", s.base))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// A Unix time as the account page writes it.
fn utc(t: i64) -> String {
    let d = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute()
    )
}

on_both_stores!(
    a_180_day_consent_issues_the_scope_on_day_179_and_not_on_day_181,
    the_consent_page_asks_again_once_the_consent_expired,
    the_shorter_of_the_client_and_scope_consent_lifetimes_applies,
);

async fn a_180_day_consent_issues_the_scope_on_day_179_and_not_on_day_181(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, secret) = setup(&db, &key, json!({})).await;

    // Given Ann's consent to accounts and contacts on the consent page, today
    let cookie = login(&s, "ann", PASSWORD).await;
    let given_at = s.now();
    code_flow(
        &s,
        &cookie,
        ("app", &secret),
        "accounts contacts",
        &["accounts", "contacts"],
    )
    .await;
    let expires_at = given_at + 180 * DAY;
    let granted = consents_granted(&s).await;
    let by_scope = |scope: &str| {
        granted
            .iter()
            .find(|g| g.scopes.iter().any(|x| x == scope))
            .unwrap()
            .expires_at
    };
    assert_eq!(
        (by_scope("accounts"), by_scope("contacts")),
        (Some(expires_at), None)
    );
    // and the account page shows when the live consent expires
    let page = account_page(&s, &cookie).await;
    assert!(page.contains(&utc(expires_at)), "{page}");
    assert!(page.contains("Until revoked"), "{page}");

    // When Ann is away and the partner's assertion asks for them on day 179: both are issued
    s.advance(179 * DAY);
    assert_eq!(
        bearer_scopes(&s, &secret, &key, "a1", "profile accounts contacts").await,
        ["profile", "accounts", "contacts"]
    );
    // One second before the end, still; at the end and on day 181, accounts no longer
    s.advance(DAY - 1);
    assert_eq!(
        bearer_scopes(&s, &secret, &key, "a2", "profile accounts").await,
        ["profile", "accounts"]
    );
    s.advance(1);
    assert_eq!(
        bearer_scopes(&s, &secret, &key, "a3", "profile accounts").await,
        ["profile"]
    );
    s.advance(DAY);
    assert_eq!(
        bearer_scopes(&s, &secret, &key, "a4", "profile accounts contacts").await,
        ["profile", "contacts"]
    );

    // Then the account page says the consent expired, and when
    let cookie = login(&s, "ann", PASSWORD).await;
    let page = account_page(&s, &cookie).await;
    assert!(page.contains(&format!("Expired {}", utc(expires_at))), "{page}");
}

async fn the_consent_page_asks_again_once_the_consent_expired(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, secret) = setup(&db, &key, json!({})).await;
    let cookie = login(&s, "ann", PASSWORD).await;
    code_flow(&s, &cookie, ("app", &secret), "accounts", &["accounts"]).await;
    let p = pkce();

    // On day 179 the standing consent spares Ann the page: straight back to the client
    s.advance(179 * DAY);
    let cookie = login(&s, "ann", PASSWORD).await;
    let r = authorize(&s, Some(&cookie), &code_request("app", "accounts", &p)).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let to = location(r.headers());
    assert!(params_of(&to).contains_key("code"), "{to}");

    // On day 181 it has expired: the page asks her again
    s.advance(2 * DAY);
    let cookie = login(&s, "ann", PASSWORD).await;
    let r = authorize(&s, Some(&cookie), &code_request("app", "accounts", &p)).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Read your account balances"), "{page}");

    // Approving again records a new consent that stands another 180 days
    let before = consents_granted(&s).await.len();
    code_flow(&s, &cookie, ("app", &secret), "accounts", &["accounts"]).await;
    let granted = consents_granted(&s).await;
    assert_eq!(granted.len(), before + 1);
    assert_eq!(granted.last().unwrap().expires_at, Some(s.now() + 180 * DAY));
    assert_eq!(
        bearer_scopes(&s, &secret, &key, "a1", "accounts").await,
        ["accounts"]
    );
}

async fn the_shorter_of_the_client_and_scope_consent_lifetimes_applies(db: TestDb) {
    let key = IssuerKey::new("k1");
    // A client whose consents last 30 days: shorter than accounts' 180, and a limit for contacts
    let (s, secret) = setup(&db, &key, json!({"consent_lifetime_seconds": 30 * DAY})).await;
    let cookie = login(&s, "ann", PASSWORD).await;
    let given_at = s.now();
    code_flow(
        &s,
        &cookie,
        ("app", &secret),
        "accounts contacts",
        &["accounts", "contacts"],
    )
    .await;
    let granted = consents_granted(&s).await;
    assert_eq!(granted.len(), 1, "one expiry, one consent: {granted:?}");
    assert_eq!(granted[0].expires_at, Some(given_at + 30 * DAY));

    s.advance(30 * DAY - 1);
    assert_eq!(
        bearer_scopes(&s, &secret, &key, "a1", "accounts contacts").await,
        ["accounts", "contacts"]
    );
    s.advance(1);
    assert_eq!(
        bearer_scopes(&s, &secret, &key, "a2", "profile accounts contacts").await,
        ["profile"]
    );

    // The admin API refuses a lifetime that is not a positive number of seconds up to ten years
    for bad in [json!(0), json!(-5), json!(11 * 365 * DAY)] {
        let r = s
            .http
            .post(format!("{}/admin/clients", s.base))
            .bearer_auth("admin-token-admin-token-admin-token-0123")
            .json(&json!({
                "client_id": "other",
                "name": "Other",
                "grant_types": ["client_credentials"],
                "scopes": ["profile"],
                "consent_lifetime_seconds": bad,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert!(body.to_string().contains("consent_lifetime_seconds"), "{body}");
    }
}
