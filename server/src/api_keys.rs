//! Personal API keys: what a key looks like, what it may carry, and the one check every use
//! makes. A key is `lk_` + a 16-hex-digit id + `_` + a 48-hex-digit secret (192 bits), so a
//! leaked one is easy to grep for; it is shown once, and only a pepper digest of the whole
//! key is stored. No HTTP here: the resource APIs (`http::bearer`), the token exchange
//! (`grants::token_exchange`), the account page, the admin API and the CLI call this.

use std::time::Duration;

use rand::RngCore;

use crate::config::ApiKeysConfig;
use crate::oauth::scope::{ADMIN_ONLY_SCOPES, USER_SCOPES, parse_scope};
use crate::secrets::{Pepper, Purpose};
use crate::store::{ApiKeyRow, NewApiKey, Store, StoreError, User};

/// RFC 8693 `subject_token_type` of an API key at `/token`.
pub const TOKEN_TYPE: &str = "urn:latchkey:params:oauth:token-type:api_key";
pub const PREFIX: &str = "lk_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 48;
/// Longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Most scope tokens one key carries.
const MAX_SCOPES: usize = 20;
/// Longest `resource`, in bytes.
const MAX_RESOURCE_BYTES: usize = 512;
/// Scopes no key carries: reading every user's stream keys is for services (clients) only.
const NEVER_ON_KEYS: &[&str] = &["streams:internal"];

fn hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a presented token is meant as an API key (by its prefix): such a token is checked
/// as a key and nothing else.
pub fn is_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// The id of a well-formed key.
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hexdigits = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (hexdigits(id, ID_HEX) && hexdigits(secret, SECRET_HEX)).then_some(id)
}

/// Why a key could not be made; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("name is required (at most 64 characters)")]
    Name,
    #[error("{0}")]
    Scope(String),
    #[error("resource must be an absolute https URI without a fragment (RFC 8707)")]
    Resource,
    #[error("the key's lifetime must be at most {0}")]
    Lifetime(String),
    #[error("the account already holds the most API keys allowed ({0}); revoke one first")]
    TooMany(u32),
    #[error("a key's lifetime must be more than zero (leave it out for no expiry)")]
    ZeroLifetime,
    #[error(
        "admin:read and admin:write go only on a key an administrator makes on their account page, or the CLI makes"
    )]
    AdminScopeForOther,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a new key is to be.
#[derive(Clone, Copy)]
pub struct KeyRequest<'a> {
    pub name: &'a str,
    pub scope: &'a str,
    pub resource: Option<&'a str>,
    /// None: no expiry (unless `api_keys.max_lifetime` sets one).
    pub lifetime: Option<Duration>,
    /// Whether the admin API's scopes may go on it: only for an administrator making their
    /// own key on the account page, or the operator at the CLI (see `admin::Admin`).
    pub admin_scopes: bool,
}

/// A key just made: the key itself (shown this once) and its id.
pub struct CreatedKey {
    pub key: String,
    pub id: String,
    pub scope: String,
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey").field("id", &self.id).finish()
    }
}

/// The scope a key for `user` may carry: well-formed, not empty, none of the OIDC scopes
/// (a key signs no one in), the admin API's only for an administrator, never
/// `streams:internal`. Returns it normalised (duplicates out).
pub fn key_scope(user: &User, scope: &str) -> Result<String, String> {
    let tokens = parse_scope(scope)?;
    if tokens.is_empty() {
        return Err("scope is required: the key carries only the scopes named".into());
    }
    if tokens.len() > MAX_SCOPES {
        return Err(format!("a key carries at most {MAX_SCOPES} scopes"));
    }
    for t in &tokens {
        if USER_SCOPES.contains(&t.as_str()) {
            return Err(format!(
                "{t} is for signing in: a key cannot carry it (exchange the key for a token instead)"
            ));
        }
        if NEVER_ON_KEYS.contains(&t.as_str()) {
            return Err(format!("{t} is for services, not keys"));
        }
        if ADMIN_ONLY_SCOPES.contains(&t.as_str()) && !user.is_admin {
            return Err(format!("{t} is for administrators only"));
        }
        if t.len() > 128 {
            return Err("a scope is at most 128 characters".into());
        }
    }
    Ok(tokens.join(" "))
}

fn valid_resource(r: &str) -> bool {
    r.len() <= MAX_RESOURCE_BYTES
        && url::Url::parse(r).is_ok_and(|u| {
            u.fragment().is_none()
                && u.has_host()
                && (u.scheme() == "https"
                    || (u.scheme() == "http"
                        && matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))))
        })
}

/// What making and checking keys needs.
#[derive(Clone, Copy)]
pub struct ApiKeys<'a> {
    pub store: &'a Store,
    pub pepper: &'a Pepper,
    pub config: &'a ApiKeysConfig,
}

impl ApiKeys<'_> {
    /// Makes a key for `user`, by `created_by` (the user's own id, or an administrator's):
    /// the key is in the answer and nowhere else.
    pub async fn create(
        &self,
        user: &User,
        created_by: &str,
        k: &KeyRequest<'_>,
        now: i64,
    ) -> Result<CreatedKey, CreateError> {
        let name = crate::input::clean_label(k.name, MAX_NAME_CHARS).ok_or(CreateError::Name)?;
        let scope = key_scope(user, k.scope).map_err(CreateError::Scope)?;
        if !k.admin_scopes && scope.split(' ').any(|s| s.starts_with("admin:")) {
            return Err(CreateError::AdminScopeForOther);
        }
        let resource = match k.resource.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) if valid_resource(r) => Some(r),
            Some(_) => return Err(CreateError::Resource),
            None => None,
        };
        let max = self.config.max_lifetime;
        let lifetime = match k.lifetime {
            Some(l) if !max.is_zero() && l > max => {
                return Err(CreateError::Lifetime(
                    humantime::format_duration(max).to_string(),
                ));
            }
            Some(l) if l.as_secs() == 0 => return Err(CreateError::ZeroLifetime),
            Some(l) => Some(l),
            None if max.is_zero() => None,
            None => Some(max),
        };
        let expires_at = lifetime.map(|l| now.saturating_add(l.as_secs() as i64));
        let id = hex(ID_HEX / 2);
        let key = format!("{PREFIX}{id}_{}", hex(SECRET_HEX / 2));
        let digest = self.pepper.digest(Purpose::ApiKey, key.as_bytes());
        let made = self
            .store
            .create_api_key(
                &NewApiKey {
                    id: &id,
                    user_id: &user.id,
                    name: &name,
                    secret_digest: &digest,
                    scope: &scope,
                    resource,
                    created_by,
                    now,
                    expires_at,
                },
                self.config.max_per_user,
            )
            .await?;
        if !made {
            return Err(CreateError::TooMany(self.config.max_per_user));
        }
        Ok(CreatedKey {
            key,
            id,
            scope,
            expires_at,
        })
    }

    /// The live key `key` is, of an enabled user, its use noted (time and `ip`); None for
    /// anything else (malformed, unknown, wrong secret, revoked, expired, user disabled or
    /// gone): one answer for all, so a caller learns nothing about which.
    pub async fn check(
        &self,
        key: &str,
        now: i64,
        ip: Option<&str>,
    ) -> Result<Option<ApiKeyRow>, StoreError> {
        let Some(id) = key_id(key) else {
            return Ok(None);
        };
        let Some(row) = self.store.live_api_key(id, now).await? else {
            // The same HMAC as for a known id, so timing does not tell which ids exist.
            std::hint::black_box(self.pepper.digest(Purpose::ApiKey, key.as_bytes()));
            return Ok(None);
        };
        if !self
            .pepper
            .verify(Purpose::ApiKey, key.as_bytes(), &row.secret_digest)
        {
            return Ok(None);
        }
        // At most a write a minute per key and address: the list shows when and where from.
        // Recording it is not worth refusing the key over.
        let stale = row.last_used_at.is_none_or(|t| now - t >= 60);
        if (stale || row.last_used_ip.as_deref() != ip)
            && let Err(e) = self.store.note_api_key_use(&row.id, now, ip).await
        {
            tracing::warn!(error = %e, "could not record an API key's use");
        }
        Ok(Some(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(admin: bool) -> User {
        User {
            id: "u1".into(),
            email: "a@example.com".into(),
            email_verified: true,
            name: None,
            is_admin: admin,
            disabled_at: None,
            created_at: 0,
            service_owner: None,
        }
    }

    #[test]
    fn key_shape() {
        let key = format!("{PREFIX}{}_{}", hex(8), hex(24));
        assert_eq!(key.len(), 3 + 16 + 1 + 48);
        assert!(key_id(&key).is_some());
        assert!(key_id(&key.to_uppercase()).is_none());
        assert!(key_id(&key[..key.len() - 1]).is_none());
        assert!(key_id("lk_abc_def").is_none());
        assert!(key_id("eyJhbGciOi.x.y").is_none());
    }

    #[test]
    fn scopes_a_key_may_carry() {
        assert_eq!(
            key_scope(&user(false), "devices:read devices:read orders:read").unwrap(),
            "devices:read orders:read"
        );
        assert!(key_scope(&user(false), "").is_err());
        assert!(key_scope(&user(false), "openid").is_err());
        assert!(key_scope(&user(false), "admin:read").is_err());
        assert!(key_scope(&user(true), "admin:read").is_ok());
        assert!(key_scope(&user(true), "streams:internal").is_err());
        assert!(key_scope(&user(false), "bad\"scope").is_err());
    }

    #[test]
    fn resources() {
        assert!(valid_resource("https://api.example.com/orders"));
        assert!(valid_resource("http://127.0.0.1:9000/api"));
        assert!(!valid_resource("http://api.example.com/"));
        assert!(!valid_resource("https://api.example.com/#x"));
        assert!(!valid_resource("urn:x"));
    }
}
