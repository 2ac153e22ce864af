//! Files that hold secrets (seeds, the master key): created 0600 and never overwritten, and
//! refused when group or others can read them — a readable seed is a leaked one.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A secret file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// Group or others may read it.
    #[error("{0} is readable by group or others; run `chmod 600` on it")]
    Readable(PathBuf),
    /// Reading, creating or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl SecretFileError {
    /// True when the file does not exist.
    pub fn is_missing(&self) -> bool {
        matches!(self, SecretFileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretFileError + '_ {
    move |source| SecretFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Read a secret file (trimmed), refusing one that group or others can read.
pub fn read_private(path: &Path) -> Result<String, SecretFileError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(SecretFileError::Readable(path.to_owned()));
    }
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(io(path))
}

/// Write a new secret file with mode 0600 and sync it; an existing file is never overwritten.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), SecretFileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_private_read_back_and_readable_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/seed");
        write_private(&p, b"SUAB\n").unwrap();
        assert_eq!(read_private(&p).unwrap(), "SUAB");
        assert!(write_private(&p, b"other").is_err(), "never overwritten");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_private(&p),
            Err(SecretFileError::Readable(_))
        ));
        assert!(
            read_private(&dir.path().join("none"))
                .unwrap_err()
                .is_missing()
        );
    }
}
