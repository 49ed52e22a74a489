//! Customer API keys: `m8brain_<env>_<32 chars of base32>`, 160 bits from the OS CSPRNG.
//!
//! Only the SHA-256 of the plaintext ([`KeyHash`]) is ever stored; the plaintext is shown
//! once, when the key is minted.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use sha2::{Digest, Sha256};

const PREFIX: &str = "m8brain_";
const SECRET_BYTES: usize = 20;
const SECRET_CHARS: usize = 32;
const MAX_ENV_CHARS: usize = 16;

/// Why a key or key environment is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key does not have the `m8brain_<env>_<secret>` shape.
    #[error("an API key looks like m8brain_<env>_<32 base32 characters>")]
    Malformed,
    /// The `<env>` part is not 1–16 characters of `[a-z0-9]`.
    #[error("a key environment is 1 to 16 characters of [a-z0-9]")]
    Env,
    /// The OS random source failed.
    #[error("the OS random number generator failed: {0}")]
    Random(String),
}

/// The `<env>` part of a key: 1–16 characters of `[a-z0-9]` (`dev`, `prod`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyEnv(String);

impl KeyEnv {
    /// Checks a key environment name.
    ///
    /// # Errors
    /// [`KeyError::Env`] unless `s` is 1–16 characters of `[a-z0-9]`.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let ok = (1..=MAX_ENV_CHARS).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(KeyEnv(s.to_owned()))
        } else {
            Err(KeyError::Env)
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A customer API key in plaintext. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    plaintext: String,
}

impl ApiKey {
    /// Mints a new key for `env` with 160 bits from the OS CSPRNG.
    ///
    /// # Errors
    /// [`KeyError::Random`] when the OS random source fails.
    pub fn generate(env: &KeyEnv) -> Result<Self, KeyError> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(ApiKey {
            plaintext: format!("{PREFIX}{}_{}", env.0, BASE32_NOPAD.encode(&secret)),
        })
    }

    /// Checks the shape of a presented key.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] unless `s` is `m8brain_<env>_<32 base32 characters>`.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let rest = s.strip_prefix(PREFIX).ok_or(KeyError::Malformed)?;
        let (env, secret) = rest.split_once('_').ok_or(KeyError::Malformed)?;
        KeyEnv::parse(env).map_err(|_| KeyError::Malformed)?;
        if secret.len() != SECRET_CHARS || BASE32_NOPAD.decode(secret.as_bytes()).is_err() {
            return Err(KeyError::Malformed);
        }
        Ok(ApiKey {
            plaintext: s.to_owned(),
        })
    }

    /// The plaintext, to show once or to send as a bearer token.
    pub fn expose(&self) -> &str {
        &self.plaintext
    }

    /// The key's environment (`dev`, `prod`, …).
    pub fn env(&self) -> &str {
        self.plaintext[PREFIX.len()..]
            .split_once('_')
            .map_or("", |(env, _)| env)
    }

    /// The last four characters, safe to show in listings.
    pub fn last4(&self) -> &str {
        &self.plaintext[self.plaintext.len() - 4..]
    }

    /// The SHA-256 of the plaintext: what the server stores and looks keys up by.
    pub fn hash(&self) -> KeyHash {
        KeyHash(hex::encode(Sha256::digest(self.plaintext.as_bytes())))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey(m8brain_{}_…{})", self.env(), self.last4())
    }
}

/// Lower-case hex SHA-256 of a key's plaintext (64 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyHash(String);

impl KeyHash {
    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
