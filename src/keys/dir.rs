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
        std::fs::create_dir_all(&self.path).map_err(|e| Self::err(&self.path, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Self::err(&self.path, e))?;
        }
        let path = self.file(&key.kid, key.alg);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&path).map_err(|e| Self::err(&path, e))?;
        f.write_all(&key.pkcs8).map_err(|e| Self::err(&path, e))?;
        f.sync_all().map_err(|e| Self::err(&path, e))
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
