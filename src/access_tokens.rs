//! Reading back an access token this server signed: signature against the ledger's published key, then
//! its record. Only access tokens are found: an ID token is signed by the same keys, but it is a statement
//! to the client about the user, never a credential a resource or `/userinfo` accepts.

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
    let Ok(header) = jsonwebtoken::decode_header(jwt) else {
        return Ok(None);
    };
    if !header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
    }) {
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
    if token.kid != kid || token.kind != TokenKind::Access {
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
