//! Secrets at rest and random ids. Provider tokens (and Mastodon client secrets) are sealed
//! with XChaCha20-Poly1305 before they reach the database: a 192-bit random nonce per value
//! (no counter to keep), and the row's id as associated data, so a sealed value copied into
//! another row does not open. The key is derived from `auth.secret`, or is 32 random bytes in
//! `{data_dir}/auth.key`, created with mode 0600 on first start. Session ids and OAuth `state`
//! values are 256 random bits from the thread's CSPRNG; the database keeps only the SHA-256 of
//! a session id, so a copy of the database does not sign anyone in.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The key file's name inside `storage.data_dir`.
pub const KEY_FILE: &str = "auth.key";
/// First byte of every sealed value: the format, so it can change later.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("cannot read or create the token key {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the token key {path} is not 32 bytes: delete it to make a new one (stored sessions end)"
    )]
    BadKeyFile { path: PathBuf },
    /// Wrong key (auth.secret changed, key file replaced), another row's value, or damage.
    #[error("a stored token does not open with this key")]
    Open,
}

/// The key that seals stored tokens.
pub struct TokenKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    fn from_bytes(key: &[u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// The key derived from `auth.secret` (at least 16 characters, checked by the config).
    pub fn from_secret(secret: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"onair auth token key v1\0");
        h.update(secret.as_bytes());
        Self::from_bytes(&h.finalize().into())
    }

    /// `auth.secret` when set, else the key file in `data_dir` (made if missing).
    pub fn load(secret: &str, data_dir: &Path) -> Result<Self, CryptoError> {
        if secret.is_empty() {
            Self::from_file(&data_dir.join(KEY_FILE))
        } else {
            Ok(Self::from_secret(secret))
        }
    }

    /// Reads the key file, or creates it with 32 random bytes, readable by this user only.
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let fail = |source| CryptoError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKeyFile {
                    path: path.to_path_buf(),
                })?;
                Ok(Self::from_bytes(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(fail)?;
                }
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(path).map_err(fail)?;
                f.write_all(&key).map_err(fail)?;
                f.sync_all().map_err(fail)?;
                Ok(Self::from_bytes(&key))
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// Seals `plain` for the row `row`.
    pub fn seal(&self, plain: &[u8], row: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plain,
            aad: row.as_bytes(),
        };
        // Encryption only fails for messages near 256 GiB; tokens are a few hundred bytes.
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a value sealed for `row`.
    pub fn open(&self, sealed: &[u8], row: &str) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(CryptoError::Open);
        }
        let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: row.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)
    }
}

/// `bytes` random bytes as unpadded base64url (32 bytes: 256 bits, 43 characters).
pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Hex SHA-256: how a session id is stored and looked up.
pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let k = TokenKey::from_secret("a secret of some length");
        let s = k.seal(b"token-123", "row-a");
        assert!(!s.windows(9).any(|w| w == b"token-123"), "not in clear");
        assert_eq!(k.open(&s, "row-a").expect("open"), b"token-123");
        assert!(matches!(k.open(&s, "row-b"), Err(CryptoError::Open)));
        let mut t = s.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(k.open(&t, "row-a").is_err());
        let other = TokenKey::from_secret("another secret of some length");
        assert!(other.open(&s, "row-a").is_err());
        assert_ne!(
            k.seal(b"x", "r"),
            k.seal(b"x", "r"),
            "fresh nonce each time"
        );
        assert!(k.open(b"", "r").is_err());
    }

    #[test]
    fn key_file_is_made_once_and_private() {
        let dir = std::env::temp_dir().join(format!("onair-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let k1 = TokenKey::load("", &dir).expect("create");
        let s = k1.seal(b"v", "r");
        let k2 = TokenKey::load("", &dir).expect("read");
        assert_eq!(k2.open(&s, "r").expect("same key"), b"v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.join(KEY_FILE), b"short").expect("write");
        assert!(matches!(
            TokenKey::load("", &dir),
            Err(CryptoError::BadKeyFile { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
        assert_eq!(sha256_hex("abc").len(), 64);
    }
}
