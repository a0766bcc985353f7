//! The private halves of signing keys, one owner-only file per `kid`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Algorithm, KeyError, KeyMaterial};

/// A directory of `<kid>.<alg>.pk8` files.
#[derive(Debug, Clone)]
pub struct KeyDir {
    path: PathBuf,
}

impl KeyDir {
    /// The directory at `path` (created on first write).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KeyDir { path: path.into() }
    }

    fn file(&self, kid: &str, alg: Algorithm) -> PathBuf {
        self.path.join(format!("{kid}.{}.pk8", alg.name()))
    }

    fn err(path: &Path, e: impl std::fmt::Display) -> KeyError {
        KeyError::File {
            path: path.display().to_string(),
            problem: e.to_string(),
        }
    }

    /// Writes `key` with permissions 0600 in a 0700 directory; never overwrites.
    pub fn save(&self, key: &KeyMaterial) -> Result<(), KeyError> {
        let path = self.file(&key.kid, key.alg);
        self.create(&path, &key.pkcs8).map_err(|e| Self::err(&path, e))
    }

    /// Creates the file `name` holding `bytes`, owner-only; `Ok(false)` when it already exists (another
    /// node made it first), which is left untouched.
    pub fn create_named(&self, name: &str, bytes: &[u8]) -> Result<bool, KeyError> {
        let path = self.path.join(name);
        match self.create(&path, bytes) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Self::err(&path, e)),
        }
    }

    /// Reads the file `name`; `None` when there is none.
    pub fn read_named(&self, name: &str) -> Result<Option<Vec<u8>>, KeyError> {
        let path = self.path.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::err(&path, e)),
        }
    }

    fn create(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    }

    /// Reads the private key for `kid`; `None` when this directory has no file for it.
    pub fn load(&self, kid: &str, alg: Algorithm) -> Result<Option<KeyMaterial>, KeyError> {
        let path = self.file(kid, alg);
        match std::fs::read(&path) {
            Ok(bytes) => KeyMaterial::from_pkcs8(kid.to_owned(), alg, bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::err(&path, e)),
        }
    }

    /// Where the file of `kid` would be, for messages.
    pub fn describe(&self, kid: &str, alg: Algorithm) -> String {
        self.file(kid, alg).display().to_string()
    }

    /// Removes a key file that never made it into the ledger.
    pub fn discard(&self, key: &KeyMaterial) {
        let _ = std::fs::remove_file(self.file(&key.kid, key.alg));
    }
}
