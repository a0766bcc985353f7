//! The contract every projection row type meets, and the whole folded state.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Serialize, de::DeserializeOwned};

use crate::event::{Event, RecordedEvent};
use crate::{
    backchannel::BackchannelRequest, clients::Client, codes::AuthorizationCode, consents::Consent,
    delegations::Delegation, devices::DeviceAuthorization, keys::SigningKey, refresh_tokens::RefreshToken,
    tokens::Token, trusted_issuers::TrustedIssuer, users::User,
};

/// Lookup columns a store keeps beside a row's JSON state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowIndex {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// The owning delegation, for tokens and refresh tokens.
    pub delegation_id: Option<String>,
}

/// A kind of projection row: which events touch which rows, and how one row changes.
///
/// Architecture invariant: a row's new value depends only on its old value and the event, never on
/// another row. That is what lets a store fold just the rows a batch touches, inside the append
/// transaction, and still equal the fold of the whole log.
pub trait Projection: Clone + PartialEq + std::fmt::Debug + Serialize + DeserializeOwned {
    /// The table (and state map) this kind lives in.
    const TABLE: &'static str;
    /// Ids of the rows of this kind that `event` changes.
    fn touched(event: &Event) -> Vec<&str>;
    /// The row after `event`; `row` is `None` when it does not exist yet.
    fn apply(row: Option<Self>, id: &str, event: &RecordedEvent) -> Option<Self>;
    /// Lookup columns for the store.
    fn index(&self) -> RowIndex;
}

/// Every projection, folded from the log.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LedgerState {
    pub clients: BTreeMap<String, Client>,
    pub signing_keys: BTreeMap<String, SigningKey>,
    pub delegations: BTreeMap<String, Delegation>,
    pub consents: BTreeMap<String, Consent>,
    pub tokens: BTreeMap<String, Token>,
    pub refresh_tokens: BTreeMap<String, RefreshToken>,
    #[serde(default)]
    pub users: BTreeMap<String, User>,
    #[serde(default)]
    pub authorization_codes: BTreeMap<String, AuthorizationCode>,
    #[serde(default)]
    pub trusted_issuers: BTreeMap<String, TrustedIssuer>,
    pub device_authorizations: BTreeMap<String, DeviceAuthorization>,
    #[serde(default)]
    pub backchannel_requests: BTreeMap<String, BackchannelRequest>,
}

fn apply_to<P: Projection>(map: &mut BTreeMap<String, P>, event: &RecordedEvent) {
    apply_where(map, event, &mut |_, _| true);
}

fn apply_where<P: Projection>(
    map: &mut BTreeMap<String, P>,
    event: &RecordedEvent,
    keep: &mut impl FnMut(&'static str, &str) -> bool,
) {
    for id in P::touched(&event.event) {
        if !keep(P::TABLE, id) {
            continue;
        }
        let old = map.remove(id);
        if let Some(new) = P::apply(old, id, event) {
            map.insert(id.to_owned(), new);
        }
    }
}

/// A serialized row the store writes back: table, id, lookup columns and the state as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct RowWrite {
    pub table: &'static str,
    pub id: String,
    pub index: RowIndex,
    pub state: serde_json::Value,
}

/// Ids touched by a sequence of events, grouped by table.
pub type Touched = BTreeMap<&'static str, BTreeSet<String>>;

/// The table names, in a fixed order.
pub const TABLES: [&str; 11] = [
    Client::TABLE,
    SigningKey::TABLE,
    Delegation::TABLE,
    Consent::TABLE,
    Token::TABLE,
    RefreshToken::TABLE,
    User::TABLE,
    AuthorizationCode::TABLE,
    TrustedIssuer::TABLE,
    DeviceAuthorization::TABLE,
    BackchannelRequest::TABLE,
];

fn touched_by<P: Projection>(events: &[RecordedEvent], out: &mut Touched) {
    for e in events {
        for id in P::touched(&e.event) {
            out.entry(P::TABLE).or_default().insert(id.to_owned());
        }
    }
}

fn load_into<P: Projection>(
    map: &mut BTreeMap<String, P>,
    table: &str,
    id: &str,
    state: serde_json::Value,
) -> Result<(), serde_json::Error> {
    if table == P::TABLE {
        map.insert(id.to_owned(), serde_json::from_value(state)?);
    }
    Ok(())
}

fn writes_of<P: Projection>(
    map: &BTreeMap<String, P>,
    touched: &Touched,
    out: &mut Vec<RowWrite>,
) -> Result<(), serde_json::Error> {
    for id in touched.get(P::TABLE).into_iter().flatten() {
        if let Some(row) = map.get(id) {
            out.push(RowWrite {
                table: P::TABLE,
                id: id.clone(),
                index: row.index(),
                state: serde_json::to_value(row)?,
            });
        }
    }
    Ok(())
}

impl LedgerState {
    /// Folds one event into every projection.
    pub fn apply(&mut self, event: &RecordedEvent) {
        apply_to(&mut self.clients, event);
        apply_to(&mut self.signing_keys, event);
        apply_to(&mut self.delegations, event);
        apply_to(&mut self.consents, event);
        apply_to(&mut self.tokens, event);
        apply_to(&mut self.refresh_tokens, event);
        apply_to(&mut self.users, event);
        apply_to(&mut self.authorization_codes, event);
        apply_to(&mut self.trusted_issuers, event);
        apply_to(&mut self.device_authorizations, event);
        apply_to(&mut self.backchannel_requests, event);
    }

    /// Folds one event into only the rows `keep(table, id)` accepts.
    ///
    /// By the [`Projection`] invariant a row depends only on the events that touch it, so folding the
    /// whole log with a `keep` that accepts a subset of the rows gives exactly those rows of the full
    /// fold: the rows can be folded part by part, in bounded memory.
    pub fn apply_where(&mut self, event: &RecordedEvent, mut keep: impl FnMut(&'static str, &str) -> bool) {
        apply_where(&mut self.clients, event, &mut keep);
        apply_where(&mut self.signing_keys, event, &mut keep);
        apply_where(&mut self.delegations, event, &mut keep);
        apply_where(&mut self.consents, event, &mut keep);
        apply_where(&mut self.tokens, event, &mut keep);
        apply_where(&mut self.refresh_tokens, event, &mut keep);
        apply_where(&mut self.users, event, &mut keep);
        apply_where(&mut self.authorization_codes, event, &mut keep);
        apply_where(&mut self.trusted_issuers, event, &mut keep);
        apply_where(&mut self.device_authorizations, event, &mut keep);
        apply_where(&mut self.backchannel_requests, event, &mut keep);
    }

    /// Whether `event` touches any row `keep(table, id)` accepts.
    pub fn touches_any(event: &Event, mut keep: impl FnMut(&'static str, &str) -> bool) -> bool {
        fn any<P: Projection>(event: &Event, keep: &mut impl FnMut(&'static str, &str) -> bool) -> bool {
            P::touched(event).into_iter().any(|id| keep(P::TABLE, id))
        }
        any::<Client>(event, &mut keep)
            || any::<SigningKey>(event, &mut keep)
            || any::<Delegation>(event, &mut keep)
            || any::<Consent>(event, &mut keep)
            || any::<Token>(event, &mut keep)
            || any::<RefreshToken>(event, &mut keep)
            || any::<User>(event, &mut keep)
            || any::<AuthorizationCode>(event, &mut keep)
            || any::<TrustedIssuer>(event, &mut keep)
            || any::<DeviceAuthorization>(event, &mut keep)
            || any::<BackchannelRequest>(event, &mut keep)
    }

    /// Number of rows in every table.
    pub fn row_count(&self) -> usize {
        self.clients.len()
            + self.signing_keys.len()
            + self.delegations.len()
            + self.consents.len()
            + self.tokens.len()
            + self.refresh_tokens.len()
            + self.users.len()
            + self.authorization_codes.len()
            + self.trusted_issuers.len()
            + self.device_authorizations.len()
            + self.backchannel_requests.len()
    }

    /// Removes one row and gives it serialized as the store would hold it; `None` when absent.
    pub fn take_row(
        &mut self,
        table: &str,
        id: &str,
    ) -> Option<Result<serde_json::Value, serde_json::Error>> {
        fn take<P: Projection>(
            map: &mut BTreeMap<String, P>,
            id: &str,
        ) -> Option<Result<serde_json::Value, serde_json::Error>> {
            map.remove(id).map(|row| serde_json::to_value(&row))
        }
        match table {
            t if t == Client::TABLE => take(&mut self.clients, id),
            t if t == SigningKey::TABLE => take(&mut self.signing_keys, id),
            t if t == Delegation::TABLE => take(&mut self.delegations, id),
            t if t == Consent::TABLE => take(&mut self.consents, id),
            t if t == Token::TABLE => take(&mut self.tokens, id),
            t if t == RefreshToken::TABLE => take(&mut self.refresh_tokens, id),
            t if t == User::TABLE => take(&mut self.users, id),
            t if t == AuthorizationCode::TABLE => take(&mut self.authorization_codes, id),
            t if t == TrustedIssuer::TABLE => take(&mut self.trusted_issuers, id),
            t if t == DeviceAuthorization::TABLE => take(&mut self.device_authorizations, id),
            t if t == BackchannelRequest::TABLE => take(&mut self.backchannel_requests, id),
            _ => None,
        }
    }

    /// Folds a sequence of events from the empty state.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a RecordedEvent>) -> Self {
        let mut state = Self::default();
        for e in events {
            state.apply(e);
        }
        state
    }

    /// The rows `events` change, by table: what a store must load before folding them.
    pub fn touched(events: &[RecordedEvent]) -> Touched {
        let mut out = Touched::new();
        touched_by::<Client>(events, &mut out);
        touched_by::<SigningKey>(events, &mut out);
        touched_by::<Delegation>(events, &mut out);
        touched_by::<Consent>(events, &mut out);
        touched_by::<Token>(events, &mut out);
        touched_by::<RefreshToken>(events, &mut out);
        touched_by::<User>(events, &mut out);
        touched_by::<AuthorizationCode>(events, &mut out);
        touched_by::<TrustedIssuer>(events, &mut out);
        touched_by::<DeviceAuthorization>(events, &mut out);
        touched_by::<BackchannelRequest>(events, &mut out);
        out
    }

    /// Adds one stored row (its JSON state) to this state.
    pub fn load_row(
        &mut self,
        table: &str,
        id: &str,
        state: serde_json::Value,
    ) -> Result<(), serde_json::Error> {
        load_into(&mut self.clients, table, id, state.clone())?;
        load_into(&mut self.signing_keys, table, id, state.clone())?;
        load_into(&mut self.delegations, table, id, state.clone())?;
        load_into(&mut self.consents, table, id, state.clone())?;
        load_into(&mut self.tokens, table, id, state.clone())?;
        load_into(&mut self.refresh_tokens, table, id, state.clone())?;
        load_into(&mut self.users, table, id, state.clone())?;
        load_into(&mut self.authorization_codes, table, id, state.clone())?;
        load_into(&mut self.trusted_issuers, table, id, state.clone())?;
        load_into(&mut self.device_authorizations, table, id, state.clone())?;
        load_into(&mut self.backchannel_requests, table, id, state)
    }

    /// Serializes the rows named in `touched`, for the store to write back.
    pub fn row_writes(&self, touched: &Touched) -> Result<Vec<RowWrite>, serde_json::Error> {
        let mut out = Vec::new();
        writes_of(&self.clients, touched, &mut out)?;
        writes_of(&self.signing_keys, touched, &mut out)?;
        writes_of(&self.delegations, touched, &mut out)?;
        writes_of(&self.consents, touched, &mut out)?;
        writes_of(&self.tokens, touched, &mut out)?;
        writes_of(&self.refresh_tokens, touched, &mut out)?;
        writes_of(&self.users, touched, &mut out)?;
        writes_of(&self.authorization_codes, touched, &mut out)?;
        writes_of(&self.trusted_issuers, touched, &mut out)?;
        writes_of(&self.device_authorizations, touched, &mut out)?;
        writes_of(&self.backchannel_requests, touched, &mut out)?;
        Ok(out)
    }

    /// Every row, serialized, as the store would hold them after folding the whole log.
    pub fn all_rows(&self) -> Result<Vec<RowWrite>, serde_json::Error> {
        let mut touched = Touched::new();
        let mut add = |table: &'static str, ids: Vec<&String>| {
            touched.entry(table).or_default().extend(ids.into_iter().cloned());
        };
        add(Client::TABLE, self.clients.keys().collect());
        add(SigningKey::TABLE, self.signing_keys.keys().collect());
        add(Delegation::TABLE, self.delegations.keys().collect());
        add(Consent::TABLE, self.consents.keys().collect());
        add(Token::TABLE, self.tokens.keys().collect());
        add(RefreshToken::TABLE, self.refresh_tokens.keys().collect());
        add(User::TABLE, self.users.keys().collect());
        add(
            AuthorizationCode::TABLE,
            self.authorization_codes.keys().collect(),
        );
        add(TrustedIssuer::TABLE, self.trusted_issuers.keys().collect());
        add(
            DeviceAuthorization::TABLE,
            self.device_authorizations.keys().collect(),
        );
        add(
            BackchannelRequest::TABLE,
            self.backchannel_requests.keys().collect(),
        );
        self.row_writes(&touched)
    }
}
