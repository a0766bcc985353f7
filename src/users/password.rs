//! Password hashing: Argon2id with explicit parameters (m = 19 MiB, t = 2, p = 1, as OWASP recommends),
//! stored as a PHC string, which carries its own parameters: a hash made with others still verifies. Both hashing and verifying are CPU-bound for tens of milliseconds, so callers on the runtime
//! use the `_blocking` wrappers, which run them on the blocking pool. Each verification holds 19 MiB
//! for its duration, so the sign-in form passes through a [`VerifyGate`] that bounds how many run at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Fewest characters a password may have.
pub const PASSWORD_CHARS_MIN: usize = 8;
/// Most bytes a password may have (the form body limit is larger; hashing a megabyte is pointless).
pub const PASSWORD_BYTES_MAX: usize = 1024;

/// Argon2 memory cost in KiB: 19 MiB.
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Argon2 passes over the memory.
pub const ITERATIONS: u32 = 2;
/// Argon2 lanes (parallelism).
pub const LANES: u32 = 1;
/// Bytes of hash output.
const OUTPUT_BYTES: usize = 32;

/// The hasher new passwords are hashed with: Argon2id, version 0x13, the parameters above, spelled out
/// so a change of the crate's defaults cannot change the cost silently.
fn hasher() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, Some(OUTPUT_BYTES))
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// An Argon2id hash (the parameters above) of a random password nobody knows: verified against when the
/// user is unknown or has no password, so the answer takes as long as for a real user.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2lnbi1pbi1kdW1teS1zYWx0$0q7Tu3Xvv3rjkS7j8sL0V3w3N9o0xNzq1mB0n9m5uQ4";

/// Why a password cannot be set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("a password needs at least {PASSWORD_CHARS_MIN} characters")]
    TooShort,
    #[error("a password may have at most {PASSWORD_BYTES_MAX} bytes")]
    TooLong,
    #[error("the system has no randomness")]
    Random,
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// Checks a new password's length.
pub fn check_strength(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < PASSWORD_CHARS_MIN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > PASSWORD_BYTES_MAX {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// The PHC string of `password` with a fresh 128-bit salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    check_strength(password)?;
    let mut salt = [0u8; 16];
    crate::ids::fill(&mut salt).map_err(|_| PasswordError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Argon2 working memory kept for reuse, one buffer per verification running at once (so at most the
/// gate's limit in steady state). Freed and reallocated instead, each 19 MiB buffer tends to stay with
/// the allocator's per-thread arena: 40 sign-ins, four at a time, left the process 700 MB larger.
static MEMORY: std::sync::Mutex<Vec<Vec<Block>>> = std::sync::Mutex::new(Vec::new());
/// Buffers kept at most (more are only ever out when verifications bypass the gate, as in tests).
const MEMORY_KEPT_MAX: usize = 16;

fn take_memory(blocks: usize) -> Vec<Block> {
    let reused = MEMORY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .pop();
    match reused {
        Some(mut m) => {
            // Every block is written before it is read on the first pass, so old contents do not matter.
            m.resize(blocks, Block::default());
            m
        }
        None => vec![Block::default(); blocks],
    }
}

fn give_back_memory(memory: Vec<Block>) {
    let mut kept = MEMORY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if kept.len() < MEMORY_KEPT_MAX {
        kept.push(memory);
    }
}

/// Recomputes the hash `phc` describes for `password` in reused memory and compares the outputs
/// (constant time: `Output`'s equality).
fn matches_phc(phc: &str, password: &str) -> Option<bool> {
    let parsed = PasswordHash::new(phc).ok()?;
    let expected = parsed.hash?;
    let params = Params::try_from(&parsed).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let mut salt = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
    let mut out = vec![0u8; expected.len()];
    let mut memory = take_memory(params.block_count());
    let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        &mut out,
        &mut memory[..],
    );
    give_back_memory(memory);
    hashed.ok()?;
    Some(Output::new(&out).ok()? == expected)
}

/// Whether `password` matches the PHC string `phc`. With `None`, verifies against a dummy hash and
/// answers false, taking the same time.
pub fn verify(phc: Option<&str>, password: &str) -> bool {
    match phc {
        Some(phc) if password.len() <= PASSWORD_BYTES_MAX => matches_phc(phc, password).unwrap_or(false),
        _ => {
            let _ = matches_phc(DUMMY_HASH, password);
            false
        }
    }
}

/// [`hash`] on the blocking pool.
pub async fn hash_blocking(password: String) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?
}

/// [`verify`] on the blocking pool.
pub async fn verify_blocking(phc: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || verify(phc.as_deref(), &password))
        .await
        .unwrap_or(false)
}

/// At most a fixed number of password verifications at once, process-wide: a flood of sign-ins (even
/// with different usernames and addresses) costs bounded memory and leaves CPU for everything else.
#[derive(Debug, Clone)]
pub struct VerifyGate {
    inner: Arc<GateInner>,
}

#[derive(Debug)]
struct GateInner {
    permits: Arc<tokio::sync::Semaphore>,
    running: AtomicUsize,
    peak: AtomicUsize,
    started: AtomicU64,
}

/// A place at the gate: one verification may run while it is held.
#[derive(Debug)]
pub struct VerifyPermit {
    _permit: tokio::sync::OwnedSemaphorePermit,
    gate: Arc<GateInner>,
}

impl Drop for VerifyPermit {
    fn drop(&mut self) {
        self.gate.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl VerifyGate {
    /// A gate letting `max` verifications (at least one) run at once.
    pub fn new(max: usize) -> VerifyGate {
        VerifyGate {
            inner: Arc::new(GateInner {
                permits: Arc::new(tokio::sync::Semaphore::new(max.max(1))),
                running: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                started: AtomicU64::new(0),
            }),
        }
    }

    /// A permit, waiting at most `wait` for one; `None` when the gate stayed full that long.
    pub async fn enter(&self, wait: Duration) -> Option<VerifyPermit> {
        let permit = tokio::time::timeout(wait, self.inner.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        let running = self.inner.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.peak.fetch_max(running, Ordering::SeqCst);
        self.inner.started.fetch_add(1, Ordering::SeqCst);
        Some(VerifyPermit {
            _permit: permit,
            gate: self.inner.clone(),
        })
    }

    /// The most verifications that held a permit at once since start.
    pub fn peak(&self) -> usize {
        self.inner.peak.load(Ordering::SeqCst)
    }

    /// How many permits were handed out since start: one per password checked.
    pub fn started(&self) -> u64 {
        self.inner.started.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_the_parameters_the_readme_promises_and_verify() {
        let phc = hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(Some(&phc), "correct horse"));
        assert!(!verify(Some(&phc), "correct horsE"));
        assert!(!verify(None, "correct horse"));
        assert_ne!(hash("correct horse").unwrap(), phc, "a fresh salt each time");
    }

    #[test]
    fn hashes_with_other_parameters_verify_in_reused_memory() {
        let params = Params::new(4096, 3, 1, Some(32)).unwrap();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let phc = argon.hash_password(b"open sesame", &salt).unwrap().to_string();
        // Twice each: the second runs in memory the first left behind.
        for _ in 0..2 {
            assert!(verify(Some(&phc), "open sesame"));
            assert!(!verify(Some(&phc), "open sesamE"));
        }
        assert!(verify(Some(&hash("correct horse").unwrap()), "correct horse"));
        assert!(!verify(Some("not a hash"), "anything"));
    }

    #[test]
    fn the_dummy_hash_is_a_real_argon2id_hash_with_the_same_cost() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        let real = hash("whatever-it-is").unwrap();
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(parsed.algorithm, real.algorithm);
        assert_eq!(parsed.params, real.params);
        assert_eq!(parsed.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert_eq!(check_strength("1234567"), Err(PasswordError::TooShort));
        assert_eq!(check_strength("ääääääää"), Ok(()), "characters, not bytes");
        assert_eq!(check_strength(&"x".repeat(2000)), Err(PasswordError::TooLong));
    }
}
