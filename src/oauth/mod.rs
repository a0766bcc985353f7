//! The OAuth wire protocol: errors, strict form bodies, scopes, client authentication, DPoP proofs.

pub mod client_auth;
pub mod dpop;
pub mod error;
pub mod form;
pub mod scope;

pub use error::OAuthError;
