//! OpenID Connect: the ID token a code exchange returns when `openid` was granted, and the claims
//! `/userinfo` answers with. Claims come from the user's attributes, released by scope.

use projections::Event;
use projections::clients::Client;
use projections::event::{AuthContext, TokenIssued, TokenKind, UnixSeconds, V1};
use projections::users::User;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::keys::Algorithm;
use crate::oauth::OAuthError;
use crate::store::{AppendRequest, ExpectedVersion};

/// The scope that makes a request an OpenID Connect request.
pub const OPENID: &str = "openid";

/// The claims each standard scope releases (OpenID Connect Core §5.4), read from the user's attributes.
const SCOPE_CLAIMS: &[(&str, &[&str])] = &[
    (
        "profile",
        &[
            "name",
            "given_name",
            "family_name",
            "nickname",
            "picture",
            "locale",
            "zoneinfo",
            "updated_at",
        ],
    ),
    ("email", &["email", "email_verified"]),
    ("phone", &["phone_number", "phone_number_verified"]),
    ("address", &["address"]),
];

/// The user claims `scopes` release: `sub` always, `preferred_username` with `profile`, and each
/// standard claim the user's attributes hold.
pub fn user_claims(user: &User, scopes: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("sub".into(), json!(user.subject));
    let has = |s: &str| scopes.iter().any(|g| g == s);
    if has("profile") {
        out.insert("preferred_username".into(), json!(user.username));
    }
    for (scope, claims) in SCOPE_CLAIMS {
        if !has(scope) {
            continue;
        }
        for claim in *claims {
            if let Some(v) = user.attributes.get(*claim) {
                out.insert((*claim).to_owned(), v.clone());
            }
        }
    }
    out
}

#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    azp: &'a str,
    exp: i64,
    iat: i64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    amr: &'a [String],
    #[serde(flatten)]
    claims: Map<String, Value>,
}

/// What an ID token is minted for.
#[derive(Debug, Clone, Copy)]
pub struct IdTokenFor<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    pub auth: &'a AuthContext,
    pub nonce: Option<&'a str>,
    pub scopes: &'a [String],
    pub delegation_id: &'a str,
    pub policy_version: &'a str,
    pub now: UnixSeconds,
}

/// The algorithm `client`'s ID tokens are signed with: what it registered, else RS256, the one every
/// OpenID client must accept (OpenID Connect Core §15.1, Registration §2). Registration refuses others.
pub fn id_token_alg(client: &Client) -> Algorithm {
    client
        .spec
        .id_token_signed_response_alg
        .as_deref()
        .and_then(|a| a.parse().ok())
        .unwrap_or(Algorithm::RS256)
}

/// Signs an ID token and returns it with the append recording it (by `jti`, like every JWT).
pub async fn id_token(app: &App, f: IdTokenFor<'_>) -> Result<(String, AppendRequest), OAuthError> {
    let key = app
        .keys
        .current_for(app.store.as_ref(), id_token_alg(f.client), f.now)
        .await
        .map_err(|e| OAuthError::internal("signing key", e))?;
    let jti = crate::ids::id();
    let client_id = f.client.spec.client_id.as_str();
    let exp = f.now + app.config.tokens.id_token_seconds;
    let claims = IdClaims {
        iss: &app.config.issuer,
        sub: &f.user.subject,
        aud: client_id,
        azp: client_id,
        exp,
        iat: f.now,
        jti: &jti,
        auth_time: f.auth.auth_time,
        nonce: f.nonce,
        acr: f.auth.acr.as_deref(),
        amr: &f.auth.amr,
        claims: {
            let mut c = user_claims(f.user, f.scopes);
            c.remove("sub");
            c
        },
    };
    let jwt = key
        .sign("JWT", &claims)
        .map_err(|e| OAuthError::internal("signing", e))?;
    let event = Event::TokenIssued(TokenIssued {
        v: V1,
        jti: jti.clone(),
        kind: TokenKind::Id,
        client_id: client_id.to_owned(),
        subject: f.user.subject.clone(),
        delegation_id: Some(f.delegation_id.to_owned()),
        scopes: vec![OPENID.to_owned()],
        audience: vec![client_id.to_owned()],
        kid: key.kid.clone(),
        grant_type: "authorization_code".into(),
        issued_at: f.now,
        expires_at: exp,
        decision_trail: Value::Null,
        policy_version: Some(f.policy_version.to_owned()),
        act: None,
        may_act: None,
        dpop_jkt: None,
    });
    Ok((
        jwt,
        AppendRequest::to_stream(
            projections::event::streams::token(&jti),
            ExpectedVersion::NoStream,
            vec![event],
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_released_by_scope() {
        let user = User {
            username: "ann".into(),
            subject: "s1".into(),
            attributes: json!({"email": "ann@example.com", "email_verified": true, "name": "Ann", "role": "x"}),
            has_password: true,
            totp_enabled: false,
            created_at: 0,
            disabled: None,
        };
        let only_openid = user_claims(&user, &["openid".into()]);
        assert_eq!(Value::Object(only_openid), json!({"sub": "s1"}));
        let email = user_claims(&user, &["openid".into(), "email".into()]);
        assert_eq!(
            Value::Object(email),
            json!({"sub": "s1", "email": "ann@example.com", "email_verified": true})
        );
        let profile = user_claims(&user, &["profile".into()]);
        assert_eq!(profile["name"], "Ann");
        assert_eq!(profile["preferred_username"], "ann");
        assert!(!profile.contains_key("role"));
    }
}
