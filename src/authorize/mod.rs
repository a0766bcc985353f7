//! The authorization endpoint's decisions: validating requests, what each needs next from the user, and
//! the events an answer becomes. `http/authorize.rs` carries them out.

pub mod assisted;
pub mod consent;
pub mod details;
pub mod interaction;
pub mod issue;
pub mod next_step;
pub mod request;
pub mod response;
