//! Registered clients: creating them (CLI and dynamic registration alike), loading them, and
//! authenticating them at the token, revocation and introspection endpoints.

use crate::config::ClientIdMetadataConfig;
use crate::oauth::client::{AuthMethod, Client, ClientMetadata, ClientOrigin};
use crate::oauth::client_auth::Presented;
use crate::oauth::client_document;
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::outbound::{FetchError, Guard, JwksFetcher};
use crate::secrets::Pepper;
use crate::secrets::{ClientSecret, Purpose, random_token};
use crate::store::Store;
use crate::store::{
    NewClient, ORIGIN_ANONYMOUS, ORIGIN_DOCUMENT, ORIGIN_OPEN_PUBLIC, StoreError, StoredClient,
};

/// What working with clients needs: the store, the pepper (secrets are digests), the cache of
/// recently read clients and its lifetime, the fetcher of clients' `jwks_uri`, who we are (an
/// assertion's audience), and the time of the request. Built per request by
/// `AppState::clients`.
#[derive(Clone, Copy)]
pub struct Clients<'a> {
    pub store: &'a Store,
    pub pepper: &'a Pepper,
    pub cache: &'a ClientCache,
    /// `clients.cache_ttl` in seconds; 0 turns the cache off.
    pub cache_ttl: i64,
    pub jwks: &'a JwksFetcher,
    /// Client ID metadata documents: the rules, and the fetcher.
    pub documents: &'a ClientIdMetadataConfig,
    pub document_guard: &'a Guard,
    /// The address of the request, when one is being served: fetching documents is limited
    /// per address ([`DOCUMENT_FETCHES`]).
    pub peer: Option<&'a str>,
    pub issuer: &'a str,
    pub now: i64,
}

/// Registers a client: a fresh `client_id` and, for the secret-based methods, a 256-bit secret
/// that is returned this once and stored only as a digest.
impl Clients<'_> {
    pub async fn create(
        &self,
        metadata: &ClientMetadata,
        origin: ClientOrigin,
    ) -> Result<(String, Option<ClientSecret>), StoreError> {
        let now = self.now;
        let client_id = random_token(16);
        let secret = metadata
            .token_endpoint_auth_method
            .uses_secret()
            .then(ClientSecret::generate);
        let digest = secret.as_ref().map(|s| {
            self.pepper
                .digest(Purpose::ClientSecret, s.expose().as_bytes())
        });
        let stored = serde_json::to_string(metadata)
            .map_err(|e| StoreError::Corrupt(format!("client metadata: {e}")))?;
        self.store
            .create_client(&NewClient {
                client_id: &client_id,
                secret_digest: digest.as_deref(),
                metadata: &stored,
                origin: match origin {
                    ClientOrigin::Registered => None,
                    ClientOrigin::Anonymous => Some(ORIGIN_ANONYMOUS),
                    ClientOrigin::OpenPublic => Some(ORIGIN_OPEN_PUBLIC),
                    ClientOrigin::Document => Some(ORIGIN_DOCUMENT),
                },
                now,
            })
            .await?;
        Ok((client_id, secret))
    }
}

/// Recently read client records, per instance. A change made through this instance drops the
/// entry at once; one made elsewhere is seen within `clients.cache_ttl`. Unknown ids are never
/// cached, so random ids cannot fill it.
#[derive(Default)]
pub struct ClientCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (std::sync::Arc<Client>, i64)>>,
}

const CACHE_MAX: usize = 10_000;

impl ClientCache {
    fn get(&self, id: &str, now: i64, ttl: i64) -> Option<std::sync::Arc<Client>> {
        let map = self.entries.lock().ok()?;
        map.get(id)
            .filter(|(_, at)| now - at < ttl && now >= *at)
            .map(|(c, _)| c.clone())
    }

    fn put(&self, client: std::sync::Arc<Client>, now: i64) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= CACHE_MAX {
                map.clear();
            }
            map.insert(client.client_id.clone(), (client, now));
        }
    }

    pub fn forget(&self, id: &str) {
        if let Ok(mut map) = self.entries.lock() {
            map.remove(id);
        }
    }
}

/// Longest span from `nbf` (or `iat`, or now) to `exp` of a request object (RFC 9101 §10.4;
/// FAPI asks for at most 60 minutes).
const MAX_REQUEST_OBJECT_LIFETIME: i64 = 3600;

/// Longest lifetime accepted for a client assertion: its jti is remembered that long.
const MAX_ASSERTION_LIFETIME: i64 = 600;

/// Client ID metadata documents one address may make us fetch per clock hour (a copy still
/// fresh costs nothing): anyone can name any URL, so this bounds what they can make us do.
pub const DOCUMENT_FETCHES: i64 = 120;

/// What a client id comes to.
#[allow(clippy::large_enum_variant)] // Found is the common case; boxing it costs every lookup.
pub enum Lookup {
    Found(Client),
    /// No client has this id.
    Unknown,
    /// The id is a client ID metadata document's URL that cannot be used, and why (a reason
    /// about the public document, safe to show).
    Refused(String),
}

fn client_from_row(row: StoredClient) -> Result<Client, StoreError> {
    let metadata: ClientMetadata = serde_json::from_str(&row.metadata)
        .map_err(|e| StoreError::Corrupt(format!("client {} metadata: {e}", row.client_id)))?;
    Ok(Client {
        client_id: row.client_id,
        secret_digest: row.secret_digest,
        metadata,
        origin: match row.origin.as_deref() {
            Some(ORIGIN_DOCUMENT) => ClientOrigin::Document,
            Some(ORIGIN_ANONYMOUS) => ClientOrigin::Anonymous,
            Some(ORIGIN_OPEN_PUBLIC) => ClientOrigin::OpenPublic,
            _ => ClientOrigin::Registered,
        },
        previous_secret: row.previous_secret,
    })
}

impl Clients<'_> {
    /// The client of `client_id` as stored, for showing its name or sending it a
    /// back-channel logout: a document client's stored copy is taken even when it is due for
    /// a refetch, and nothing is fetched. Requests that act as the client use [`Self::lookup`].
    pub async fn find(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        if client_id.len() > client_document::MAX_URL_LEN {
            return Ok(None);
        }
        if self.cache_ttl > 0
            && let Some(c) = self.cache.get(client_id, self.now, self.cache_ttl)
        {
            return Ok(Some((*c).clone()));
        }
        self.store
            .client_by_id(client_id)
            .await?
            .map(client_from_row)
            .transpose()
    }

    /// The client of `client_id`: a registered one, or one known by the client ID metadata
    /// document at that URL (fetched when not cached, or refetched when its copy expired).
    pub async fn lookup(&self, client_id: &str) -> Result<Lookup, StoreError> {
        if client_id.len() > client_document::MAX_URL_LEN {
            return Ok(Lookup::Unknown);
        }
        let now = self.now;
        let ttl = self.cache_ttl;
        if ttl > 0
            && let Some(c) = self.cache.get(client_id, now, ttl)
        {
            return Ok(Lookup::Found((*c).clone()));
        }
        let row = self.store.client_by_id(client_id).await?;
        let is_document = row
            .as_ref()
            .is_some_and(|r| r.origin.as_deref() == Some(ORIGIN_DOCUMENT));
        if is_document || (row.is_none() && client_document::is_document_url(client_id)) {
            return self.by_document(client_id, row).await;
        }
        let Some(row) = row else {
            return Ok(Lookup::Unknown);
        };
        let client = client_from_row(row)?;
        if ttl > 0 {
            self.cache.put(std::sync::Arc::new(client.clone()), now);
        }
        Ok(Lookup::Found(client))
    }

    /// A client known by its metadata document: the stored copy while it is fresh, else the
    /// document fetched under the outbound rules, checked and stored for its cache lifetime.
    /// Failures are not stored (§5.2): the next request fetches again.
    async fn by_document(
        &self,
        client_id: &str,
        stored: Option<StoredClient>,
    ) -> Result<Lookup, StoreError> {
        let rules = self.documents;
        let refuse = |why: String| {
            tracing::info!(client = %client_id, why, "client ID metadata document refused");
            Ok(Lookup::Refused(why))
        };
        if !rules.enabled {
            return refuse("client ID metadata documents are not accepted here".into());
        }
        let url = match client_document::check_url(client_id, rules.danger_allow_http_and_loopback)
        {
            Ok(u) => u,
            Err(why) => return refuse(why.into()),
        };
        let host = url.host_str().unwrap_or_default();
        if !client_document::host_allowed(host, &rules.allow_hosts, &rules.deny_hosts) {
            return refuse(format!("documents from {host} are not accepted here"));
        }
        let now = self.now;
        if let Some(row) = &stored
            && row.document_expires_at.is_some_and(|at| at > now)
        {
            return Ok(Lookup::Found(client_from_row(row.clone())?));
        }
        if self.peer.is_some() {
            let limit = (DOCUMENT_FETCHES, 3600);
            let wait = crate::signin::throttle::quota(
                self.store,
                self.pepper,
                "document-fetch",
                self.peer,
                limit,
                now,
            )
            .await?;
            if wait > 0 {
                return refuse(format!(
                    "too many client ID metadata documents fetched for this address; retry in {wait} s"
                ));
            }
        }
        // What an administrator set on this client (resources it may have) outlives a refetch.
        let admin_set = stored
            .as_ref()
            .and_then(|row| serde_json::from_str::<ClientMetadata>(&row.metadata).ok())
            .map(|m| (m.resources, m.serves, m.first_party));
        let max = rules.max_bytes;
        let fetched = match self
            .document_guard
            .get(client_id, "the client_id URL", "application/json", max)
            .await
        {
            Ok(f) => f,
            Err(FetchError::TooLarge) => {
                return refuse(format!(
                    "the client ID metadata document is larger than {max} bytes"
                ));
            }
            Err(FetchError::TimedOut) => {
                return refuse(format!(
                    "the client ID metadata document did not arrive within {}",
                    humantime::format_duration(rules.fetch_timeout)
                ));
            }
            // What the host resolves to, or why it does not, stays in the log: the answer
            // must not map names inside our network for whoever asks.
            Err(FetchError::Refused(e) | FetchError::Failed(e)) => {
                tracing::info!(client = %client_id, error = %e, "fetching a client ID metadata document failed");
                return refuse(
                    "the client ID metadata document could not be fetched from a public address"
                        .into(),
                );
            }
        };
        match fetched.status {
            200 => {}
            300..=399 => {
                return refuse(
                    "the client_id URL redirects, and redirects are not followed".into(),
                );
            }
            s => return refuse(format!("the client_id URL answered HTTP {s}, not 200")),
        }
        let mut metadata = match client_document::parse(client_id, &fetched.body) {
            Ok(m) => m,
            Err(why) => {
                return refuse(format!("the client ID metadata document is invalid: {why}"));
            }
        };
        if let Some((resources, serves, first_party)) = admin_set {
            metadata.resources = resources;
            metadata.serves = serves;
            metadata.first_party = first_party;
        }
        let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let lifetime = client_document::lifetime(
            fetched.cache_control.as_deref(),
            secs(rules.min_cache),
            secs(rules.max_cache),
        );
        let stored = serde_json::to_string(&metadata)
            .map_err(|e| StoreError::Corrupt(format!("client metadata: {e}")))?;
        if !self
            .store
            .put_document_client(client_id, &stored, now, now.saturating_add(lifetime))
            .await?
        {
            // An administrator registered this id meanwhile: that client it is.
            return match self.store.client_by_id(client_id).await? {
                Some(row) => Ok(Lookup::Found(client_from_row(row)?)),
                None => Ok(Lookup::Unknown),
            };
        }
        Ok(Lookup::Found(Client {
            client_id: client_id.to_owned(),
            secret_digest: None,
            metadata,
            origin: ClientOrigin::Document,
            previous_secret: None,
        }))
    }

    /// Authenticates the presented credentials against the registered client: the method must be
    /// the registered one and the secret must match its digest. One error for every failure, so
    /// the answer does not tell which client ids exist.
    pub async fn authenticate(&self, presented: &Presented) -> Result<Client, TokenError> {
        let fail = || TokenError::new(T::InvalidClient, "client authentication failed");
        let client = match self.lookup(presented.client_id()).await {
            Ok(Lookup::Found(c)) => c,
            Ok(Lookup::Unknown) => return Err(fail()),
            // The document is public: saying what is wrong with it tells nothing secret.
            Ok(Lookup::Refused(why)) => return Err(TokenError::new(T::InvalidClient, why)),
            Err(e) => {
                tracing::error!(error = %e, "client lookup failed");
                return Err(TokenError::new(T::ServerError, "server error"));
            }
        };
        let method = client.metadata.token_endpoint_auth_method;
        if let (Presented::Assertion { assertion, .. }, AuthMethod::PrivateKeyJwt) =
            (presented, method)
        {
            return match self.verify_assertion(&client, assertion).await {
                Ok(()) => Ok(client),
                Err(why) => {
                    tracing::info!(client = %client.client_id, why, "client assertion refused");
                    Err(fail())
                }
            };
        }
        let ok = match (presented, method) {
            (Presented::Basic { secret, .. }, AuthMethod::ClientSecretBasic)
            | (Presented::Post { secret, .. }, AuthMethod::ClientSecretPost) => {
                let matches = |d: &str| {
                    self.pepper
                        .verify(Purpose::ClientSecret, secret.as_bytes(), d)
                };
                // The current secret, or the one it replaced while its grace lasts.
                client.secret_digest.as_deref().is_some_and(matches)
                    || client
                        .previous_secret
                        .as_ref()
                        .is_some_and(|(d, until)| *until > self.now && matches(d))
            }
            (Presented::None { .. }, AuthMethod::None) => true,
            _ => false,
        };
        if ok { Ok(client) } else { Err(fail()) }
    }

    /// `check` run with the client's registered public keys: its `jwks`, or its `jwks_uri`
    /// fetched (and refetched once for an unknown key) under the outbound rules. The outer
    /// error says the keys could not be had; the inner one is `check`'s.
    async fn signed_by_client(
        &self,
        client: &Client,
        check: impl Fn(
            &latchkey_jwks::PublicKeySet,
        ) -> Result<latchkey_jwks::Claims, latchkey_jwks::VerifyError>,
    ) -> Result<Result<latchkey_jwks::Claims, latchkey_jwks::VerifyError>, &'static str> {
        match (&client.metadata.jwks, &client.metadata.jwks_uri) {
            (Some(jwks), _) => {
                let keys = latchkey_jwks::PublicKeySet::from_jwks_value(jwks)
                    .map_err(|_| "the registered jwks is unusable")?;
                Ok(check(&keys))
            }
            (None, Some(uri)) => self.jwks.check(uri, self.now, check).await.map_err(|e| {
                tracing::warn!(client = %client.client_id, error = %e, "cannot fetch the client's jwks_uri");
                "the client's jwks_uri cannot be fetched"
            }),
            (None, None) => Err("the client has no keys"),
        }
    }

    /// RFC 9101 §6.3 (OIDC Core §6.3): a request object passed by value, signed by one of the
    /// client's registered keys (never `none`), `iss` the client, `aud` our issuer, with an
    /// `exp` no more than 60 minutes after its `nbf` (or `iat`, or now), and a `client_id`, if
    /// it has one, that is the client. Its claims, which stand for the request's parameters.
    pub async fn verify_request_object(
        &self,
        client: &Client,
        jwt: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, &'static str> {
        use latchkey_jwks::VerifyOptions;
        let now = self.now;
        let check = |keys: &latchkey_jwks::PublicKeySet| {
            keys.verify(
                jwt,
                &VerifyOptions {
                    algs: client.jws_algs(),
                    issuer: &client.client_id,
                    audience: self.issuer,
                    typ: None,
                    now,
                    leeway: 30,
                },
            )
        };
        let claims = self.signed_by_client(client, check).await?.map_err(|e| {
            tracing::info!(client = %client.client_id, error = %e, "request object refused");
            "the request object is not signed by the client, or not for this server, or expired"
        })?;
        if let Some(typ) = claims.typ()
            && !claims.typ_is("oauth-authz-req+jwt")
            && !claims.typ_is("JWT")
        {
            tracing::info!(client = %client.client_id, typ, "request object of another type refused");
            return Err("the request object's typ is not oauth-authz-req+jwt");
        }
        let exp = claims.int("exp").ok_or("the request object has no exp")?;
        let from = claims.int("nbf").or(claims.int("iat")).unwrap_or(now);
        if exp.saturating_sub(from) > MAX_REQUEST_OBJECT_LIFETIME
            || exp.saturating_sub(now) > MAX_REQUEST_OBJECT_LIFETIME
        {
            return Err("the request object lives longer than 60 minutes");
        }
        if claims
            .get("client_id")
            .is_some_and(|c| c.as_str() != Some(client.client_id.as_str()))
        {
            return Err("the request object's client_id is not the client");
        }
        Ok(claims.into_map())
    }

    /// RFC 7523 §3 for `private_key_jwt`: signed by one of the client's keys, `iss` and `sub` are
    /// the client, `aud` is the issuer or the token endpoint (a `fapi2` client: the issuer
    /// only, FAPI 2.0 §5.3.2.1), short-lived, and its `jti` is used once.
    async fn verify_assertion(&self, client: &Client, jwt: &str) -> Result<(), &'static str> {
        use latchkey_jwks::{PublicKeySet, VerifyError, VerifyOptions};
        let now = self.now;
        let issuer = self.issuer;
        let token_endpoint = format!("{issuer}/token");
        let check = |keys: &PublicKeySet| -> Result<latchkey_jwks::Claims, VerifyError> {
            let mut opts = VerifyOptions {
                algs: client.jws_algs(),
                issuer: &client.client_id,
                audience: issuer,
                typ: None,
                now,
                leeway: 30,
            };
            match keys.verify(jwt, &opts) {
                Err(VerifyError::WrongAudience) if !client.is_fapi2() => {
                    opts.audience = &token_endpoint;
                    keys.verify(jwt, &opts)
                }
                other => other,
            }
        };
        let claims = self
            .signed_by_client(client, check)
            .await?
            .map_err(|_| "the assertion does not verify")?;
        // FAPI 2.0 §5.3.2.1: a fapi2 client sends the issuer as a string, not in an array.
        if client.is_fapi2() && !claims.get("aud").is_some_and(serde_json::Value::is_string) {
            return Err("a fapi2 client's assertion must name the issuer as a string aud");
        }
        // RFC 9101 §10.8: a request object (visible in browsers' URLs) is not an assertion.
        if claims
            .typ()
            .is_some_and(|_| claims.typ_is("oauth-authz-req+jwt"))
        {
            return Err("a request object is not a client assertion");
        }
        if claims.str("sub") != Some(client.client_id.as_str()) {
            return Err("sub is not the client");
        }
        let exp = claims.int("exp").ok_or("no exp")?;
        if exp - now > MAX_ASSERTION_LIFETIME {
            return Err("the assertion lives too long");
        }
        let jti = claims
            .str("jti")
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or("no usable jti")?;
        let key = format!("{}:{jti}", client.client_id);
        match self.store.use_assertion_jti(&key, exp + 60).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the assertion's jti was already used"),
            Err(e) => {
                tracing::error!(error = %e, "recording the assertion jti failed");
                Err("server error")
            }
        }
    }
}
