//! The admin token: from `BRAIN_ADMIN_TOKEN`, else read from (or generated into)
//! `<data_dir>/admin_token` with mode 0600.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use secrecy::SecretString;

use crate::config::ADMIN_TOKEN_FILE;

/// Bytes of CSPRNG output in a generated token (hex-encoded: 64 characters).
const TOKEN_BYTES: usize = 32;

/// Where the admin token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// Given by flag or environment.
    Configured,
    /// Read from the token file.
    File,
    /// Generated now and written to the token file.
    Generated,
}

/// Returns the admin token: `configured` if given, else the token file's content, else a new
/// token written to the token file (mode 0600).
///
/// # Errors
/// An I/O error when the file cannot be read or written, or the OS random source fails.
pub fn resolve(
    configured: Option<SecretString>,
    data_dir: &Path,
) -> io::Result<(SecretString, TokenSource)> {
    if let Some(token) = configured {
        return Ok((token, TokenSource::Configured));
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => {
            return Ok((SecretString::from(s.trim().to_owned()), TokenSource::File));
        }
        Ok(_) => fs::remove_file(&path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir_all(data_dir)?;
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    let token = hex::encode(bytes);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(token.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok((SecretString::from(token), TokenSource::Generated))
}
