//! Secrets at rest and in memory.
//!
//! - [`Pepper`]: HMAC-SHA-256 keys with ids. Credentials the server hands out (client secrets,
//!   codes, refresh tokens, ...) are stored only as `"<key id>$<base64url HMAC>"`, so a read of
//!   the database alone never yields a usable credential, and the pepper can rotate: new digests
//!   use the current key, old ones still verify under theirs.
//! - Secret newtypes ([`secret_type!`]): redacted `Debug`, no `Clone`, constant-time equality.
//! - Key files: the pepper and the key-encryption keys live in small files readable only by the
//!   owner, generated on first start when they are the defaults under the data directory.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Random bytes from the OS, base64url-encoded.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// What a digest is for. Part of the HMAC input, so a digest made for one purpose never
/// matches a lookup for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    ClientSecret,
    PepperCheck,
    Session,
    Csrf,
    AuthorizationCode,
    RefreshToken,
    InitialAccessToken,
    RegistrationAccessToken,
    Throttle,
    /// WebAuthn ceremony ids.
    Ceremony,
    /// Stand-in credential ids for unknown accounts on the username-first passkey path.
    PasskeyDecoy,
    /// Sign-up invitations and the first administrator's setup link.
    Invite,
    /// TOTP recovery codes (bound to their user).
    RecoveryCode,
    /// RFC 8628 device codes.
    DeviceCode,
    /// RFC 8628 user codes (canonical form).
    UserCode,
    /// Links sent by email (password reset).
    EmailLink,
    /// The browser a sign-in link was asked from (its CSRF cookie).
    LinkBrowser,
    /// RFC 9126 `request_uri`s.
    PushedRequest,
    /// The mark that an authorization request's parameters came from a pushed request, as
    /// the sign-in and consent forms carry them.
    PushedCarry,
    /// RFC 9449 server nonces (an HMAC of the time window).
    DpopNonce,
    /// SCIM provisioning credentials (`latchkey scim-token create`).
    ScimToken,
    /// Personal API keys (`lk_...`).
    ApiKey,
    /// Forward-auth cookies.
    ForwardAuth,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::ClientSecret => b"client_secret",
            Purpose::PepperCheck => b"pepper_check",
            Purpose::Session => b"session",
            Purpose::Csrf => b"csrf",
            Purpose::AuthorizationCode => b"authorization_code",
            Purpose::RefreshToken => b"refresh_token",
            Purpose::InitialAccessToken => b"initial_access_token",
            Purpose::RegistrationAccessToken => b"registration_access_token",
            Purpose::Throttle => b"throttle",
            Purpose::Ceremony => b"ceremony",
            Purpose::PasskeyDecoy => b"passkey_decoy",
            Purpose::Invite => b"invite",
            Purpose::RecoveryCode => b"recovery_code",
            Purpose::DeviceCode => b"device_code",
            Purpose::UserCode => b"user_code",
            Purpose::EmailLink => b"email_link",
            Purpose::LinkBrowser => b"link_browser",
            Purpose::PushedRequest => b"pushed_request",
            Purpose::PushedCarry => b"pushed_carry",
            Purpose::DpopNonce => b"dpop_nonce",
            Purpose::ScimToken => b"scim_token",
            Purpose::ApiKey => b"api_key",
            Purpose::ForwardAuth => b"forward_auth",
        }
    }
}

struct PepperKey {
    id: String,
    mac: HmacSha256,
}

/// The HMAC pepper ring. The first key is current.
pub struct Pepper {
    keys: Vec<PepperKey>,
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.id))
            .finish()
    }
}

impl Pepper {
    pub fn new(keys: Vec<(String, [u8; 32])>) -> Result<Self, String> {
        if keys.is_empty() {
            return Err("no pepper key".into());
        }
        let keys = keys
            .into_iter()
            .map(|(id, key)| {
                HmacSha256::new_from_slice(&key)
                    .map(|mac| PepperKey { id, mac })
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys })
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    fn mac(key: &PepperKey, purpose: Purpose, secret: &[u8]) -> String {
        let mut mac = key.mac.clone();
        mac.update(purpose.label());
        mac.update(&[0]);
        mac.update(secret);
        format!(
            "{}${}",
            key.id,
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// The digest to store, under the current key.
    pub fn digest(&self, purpose: Purpose, secret: &[u8]) -> String {
        // `new` refuses an empty ring, so there is always a first key.
        self.keys
            .first()
            .map(|k| Self::mac(k, purpose, secret))
            .unwrap_or_default()
    }

    /// Digests under every key, for looking a credential up by its digest.
    pub fn lookup_digests(&self, purpose: Purpose, secret: &[u8]) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| Self::mac(k, purpose, secret))
            .collect()
    }

    /// Whether `secret` matches a stored digest, in constant time for a given key id.
    pub fn verify(&self, purpose: Purpose, secret: &[u8], stored: &str) -> bool {
        let Some((id, _)) = stored.split_once('$') else {
            return false;
        };
        let Some(key) = self.keys.iter().find(|k| k.id == id) else {
            return false;
        };
        let computed = Self::mac(key, purpose, secret);
        computed.as_bytes().ct_eq(stored.as_bytes()).into()
    }

    /// The check value stored per key id (see the `pepper_keys` table).
    pub fn check_digest(&self, id: &str) -> Option<String> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .map(|k| Self::mac(k, Purpose::PepperCheck, b"latchkey"))
    }
}

/// Defines a secret newtype: redacted `Debug`, no `Clone`, constant-time `PartialEq`.
macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        pub struct $name(String);

        impl $name {
            pub fn new(value: String) -> Self {
                Self(value)
            }

            /// The secret itself: for the one place that must send or hash it.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
            }
        }

        impl Eq for $name {}
    };
}

secret_type!(
    /// A client secret: 256 random bits, shown once at registration, stored as a digest.
    ClientSecret
);

impl ClientSecret {
    pub fn generate() -> Self {
        Self(random_token(32))
    }
}

secret_type!(
    /// A refresh token: 256 random bits, sent to the client once, stored as a digest.
    RefreshToken
);

secret_type!(
    /// An authorization code: 256 random bits, sent once through the browser, stored as a
    /// digest, redeemable once within `tokens.code_lifetime`.
    AuthorizationCode
);

secret_type!(
    /// A browser session's id: 256 random bits in the session cookie, stored as a digest.
    SessionId
);

impl RefreshToken {
    pub fn generate() -> Self {
        Self(random_token(32))
    }
}

impl AuthorizationCode {
    pub fn generate() -> Self {
        Self(random_token(32))
    }
}

impl SessionId {
    pub fn generate() -> Self {
        Self(random_token(32))
    }
}

/// Parses a key file: one `id:base64url-32-bytes` per line, current key first; `#` comments.
pub fn parse_key_file(text: &str) -> Result<Vec<(String, [u8; 32])>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (id, b64) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: expected id:base64url", n + 1))?;
        let id = id.trim();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("line {}: key id must be [A-Za-z0-9_-]+", n + 1));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(b64.trim())
            .map_err(|_| format!("line {}: key is not base64url", n + 1))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("line {}: key must be 32 bytes", n + 1))?;
        if keys.iter().any(|(i, _)| i == id) {
            return Err(format!("line {}: duplicate key id {id}", n + 1));
        }
        keys.push((id.to_owned(), key));
    }
    if keys.is_empty() {
        return Err("no keys".into());
    }
    Ok(keys)
}

/// Reads a key file, generating it (mode 0600) when it is missing and `generate` is set.
pub fn load_or_create_key_file(
    path: &Path,
    prefix: &str,
    generate: bool,
) -> Result<Vec<(String, [u8; 32])>, String> {
    let shown = path.display();
    if !path.exists() {
        if !generate {
            return Err(format!("{shown} does not exist"));
        }
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let id = format!("{prefix}-{}", &random_token(6));
        let body = format!(
            "# Latchkey {prefix} keys: id:base64url(32 bytes), current first. Keep secret; back up.\n{id}:{}\n",
            URL_SAFE_NO_PAD.encode(key)
        );
        write_private_file(path, body.as_bytes()).map_err(|e| format!("{shown}: {e}"))?;
    }
    warn_if_readable_by_others(path);
    let text = fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    parse_key_file(&text).map_err(|e| format!("{shown}: {e}"))
}

pub(crate) fn write_private_file(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(body)?;
    file.sync_all()
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "secret key file is readable by group or others; chmod 600 it"
                );
            }
        }
    }
}

/// Creates a directory only its owner can enter (the data directory, the mail outbox: both
/// hold secrets), with its parents; an existing one is left as it is.
pub fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pepper() -> Pepper {
        Pepper::new(vec![("p2".into(), [2; 32]), ("p1".into(), [1; 32])]).unwrap()
    }

    #[test]
    fn digest_verifies_and_is_bound_to_purpose() {
        let p = pepper();
        let d = p.digest(Purpose::ClientSecret, b"s3cret");
        assert!(d.starts_with("p2$"));
        assert!(!d.contains("s3cret"));
        assert!(p.verify(Purpose::ClientSecret, b"s3cret", &d));
        assert!(!p.verify(Purpose::ClientSecret, b"s3creT", &d));
        assert!(!p.verify(Purpose::PepperCheck, b"s3cret", &d));
    }

    #[test]
    fn digest_under_an_older_pepper_still_verifies() {
        let old = Pepper::new(vec![("p1".into(), [1; 32])]).unwrap();
        let d = old.digest(Purpose::ClientSecret, b"x");
        assert!(pepper().verify(Purpose::ClientSecret, b"x", &d));
        assert!(
            pepper()
                .lookup_digests(Purpose::ClientSecret, b"x")
                .contains(&d)
        );
        let unknown = Pepper::new(vec![("p9".into(), [1; 32])]).unwrap();
        assert!(!pepper().verify(
            Purpose::ClientSecret,
            b"x",
            &unknown.digest(Purpose::ClientSecret, b"x")
        ));
    }

    #[test]
    fn secrets_are_redacted_and_long_enough() {
        let s = ClientSecret::generate();
        assert_eq!(format!("{s:?}"), "ClientSecret(<redacted>)");
        // 32 bytes = 256 bits, base64url without padding.
        assert_eq!(s.expose().len(), 43);
        assert_ne!(s, ClientSecret::generate());
    }

    #[test]
    fn key_files_are_created_private_and_reread_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pepper.keys");
        let first = load_or_create_key_file(&path, "pepper", true).unwrap();
        let again = load_or_create_key_file(&path, "pepper", false).unwrap();
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(load_or_create_key_file(&dir.path().join("missing"), "x", false).is_err());
    }

    #[test]
    fn key_file_errors_name_the_line() {
        assert!(parse_key_file("a:AAAA").unwrap_err().contains("line 1"));
        assert!(parse_key_file("# only a comment").is_err());
        assert!(
            parse_key_file("bad id:AAAA")
                .unwrap_err()
                .contains("key id")
        );
    }
}
