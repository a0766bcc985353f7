//! The OAuth wire protocol: errors, strict form bodies, scopes, client authentication.

pub mod client_auth;
pub mod error;
pub mod form;
pub mod scope;

pub use error::OAuthError;
