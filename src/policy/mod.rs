//! The policy engine: authorizers assigned to scopes decide each scope at issuance.

pub mod authorizer;
pub mod authorizers;
pub mod combine;
pub mod engine;
pub mod external;
pub mod resolution;
pub mod templates;
