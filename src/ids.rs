//! Every random id and secret the server makes comes from here, so their formats and their source of
//! randomness are decided in one place.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;

/// The randomness source failed (the operating system gave no random bytes).
pub use aws_lc_rs::error::Unspecified as NoRandomness;

/// A fresh random identifier: a version 4 UUID as 32 lowercase hex digits (delegation, token, consent,
/// user and key ids, nonces).
pub fn id() -> String {
    #[allow(clippy::disallowed_methods)] // the one place ids are made
    let id = uuid::Uuid::new_v4();
    id.simple().to_string()
}

/// A fresh 256-bit secret, base64url without padding (client secrets, codes, refresh tokens, session
/// cookies, CSRF tokens, stored-request ids).
pub fn secret() -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 32];
    fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Fills `bytes` with random bytes (salts, TOTP secrets).
pub fn fill(bytes: &mut [u8]) -> Result<(), NoRandomness> {
    rng().fill(bytes)
}

/// The cryptographic random number generator, for key generation.
#[allow(clippy::disallowed_methods)] // the one source of randomness
pub fn rng() -> SystemRandom {
    SystemRandom::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_secrets_keep_their_formats() {
        let id = id();
        assert_eq!(id.len(), 32);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        let secret = secret().unwrap();
        assert_eq!(secret.len(), 43, "32 bytes, base64url without padding");
        assert_ne!(secret, super::secret().unwrap());
    }
}
