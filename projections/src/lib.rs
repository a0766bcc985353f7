//! consent-ledger's event vocabulary and the pure folds over it.
//!
//! Nothing here performs I/O or reads a clock: every function is a function of its arguments, so the
//! same events always fold to the same state, on a server, in an auditor's replay, or in a property test.

pub mod backchannel;
pub mod chain;
pub mod clients;
pub mod codes;
pub mod consents;
pub mod delegations;
pub mod devices;
pub mod event;
pub mod keys;
pub mod projection;
pub mod queries;
pub mod refresh_tokens;
pub mod tokens;
pub mod trusted_issuers;
pub mod upcast;
pub mod users;

#[cfg(feature = "testing")]
pub mod testing;

pub use event::{Event, Metadata, RecordedEvent};
pub use projection::{LedgerState, Projection, RowIndex, RowWrite, TABLES, Touched};
