//! Reading back an access token this server signed: signature against the ledger's published key, then
//! its record. Only access tokens are found by [`find`]: an ID token is signed by the same keys, but it is a
//! statement to the client about the user, never a credential a resource or `/userinfo` accepts; token
//! exchange alone reads one, when the client names it as one ([`find_id_token`]).

use jsonwebtoken::{DecodingKey, Validation, jwk::Jwk};
use projections::clients::Client;
use projections::delegations::Delegation;
use projections::event::{TokenKind, UnixSeconds};
use projections::keys::SigningKey;
use projections::queries;
use projections::tokens::Token;
use serde::Deserialize;

use crate::keys::Algorithm;
use crate::store::{self, EventStore, StoreError};

/// The JWT `typ` every access token carries (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

#[derive(Debug, Deserialize)]
struct Claims {
    jti: String,
}

/// A token found in the ledger with the rows that decide whether it is active.
#[derive(Debug, Clone)]
pub struct Found {
    pub token: Token,
    pub client: Option<Client>,
    pub active: bool,
}

/// Verifies `jwt` and loads its record; `None` when it is not an access token this server signed and
/// recorded as one (RFC 9068 §4: `typ` is `at+jwt`, and the ledger's record says `access`).
///
/// The signature is checked against the key the ledger records for its `kid`, even a retired one, so a
/// token signed by an unknown key is never found. Expiry and revocation are judged from the record at
/// `now`, not from the system clock.
pub async fn find(
    store: &dyn EventStore,
    issuer: &str,
    jwt: &str,
    now: UnixSeconds,
) -> Result<Option<Found>, StoreError> {
    let typ_ok =
        |t: &str| t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt");
    find_kind(store, issuer, jwt, typ_ok, TokenKind::Access, now).await
}

/// Verifies an ID token this server signed and loads its record, for the two places that accept an ID
/// token by name: token exchange with `subject_token_type` id_token (RFC 8693 §3), and the
/// `id_token_hint` of a backchannel authentication request (OpenID CIBA §7.1), where it only names the
/// user, who must still approve. Found only with the ledger's record of kind `id`; `active` as for an
/// access token (unexpired, unrevoked, its client and delegation active). Never a credential anywhere
/// else.
pub async fn find_id_token(
    store: &dyn EventStore,
    issuer: &str,
    jwt: &str,
    now: UnixSeconds,
) -> Result<Option<Found>, StoreError> {
    find_kind(
        store,
        issuer,
        jwt,
        |t| t.eq_ignore_ascii_case("JWT"),
        TokenKind::Id,
        now,
    )
    .await
}

async fn find_kind(
    store: &dyn EventStore,
    issuer: &str,
    jwt: &str,
    typ_ok: impl Fn(&str) -> bool,
    kind: TokenKind,
    now: UnixSeconds,
) -> Result<Option<Found>, StoreError> {
    let Ok(header) = jsonwebtoken::decode_header(jwt) else {
        return Ok(None);
    };
    if !header.typ.as_deref().is_some_and(typ_ok) {
        return Ok(None);
    }
    let Some(kid) = header.kid else { return Ok(None) };
    let Some(key) = store::get::<SigningKey>(store, &kid).await? else {
        return Ok(None);
    };
    let Ok(alg) = key.alg.parse::<Algorithm>() else {
        return Ok(None);
    };
    let Ok(jwk) = serde_json::from_value::<Jwk>(key.public_jwk.clone()) else {
        return Ok(None);
    };
    let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
        return Ok(None);
    };
    let mut validation = Validation::new(alg.jwt());
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false;
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["iss"]);
    let Ok(data) = jsonwebtoken::decode::<Claims>(jwt, &decoding, &validation) else {
        return Ok(None);
    };
    let Some(token) = store::get::<Token>(store, &data.claims.jti).await? else {
        return Ok(None);
    };
    if token.kid != kid || token.kind != kind {
        return Ok(None);
    }
    let client: Option<Client> = store::get(store, &token.client_id).await?;
    let delegation: Option<Delegation> = match &token.delegation_id {
        Some(id) => store::get(store, id).await?,
        None => None,
    };
    let active = queries::token_active(&token, client.as_ref(), delegation.as_ref(), Some(&key), now);
    Ok(Some(Found {
        token,
        client,
        active,
    }))
}
