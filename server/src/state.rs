//! Everything a request needs, passed explicitly. No globals.

use std::sync::Arc;

use latchkey_jwks::{Kek, KekRing, KeyPolicy};

use crate::clock::Clock;
use crate::config::Config;
use crate::config::redact_url;
use crate::keys::KeyService;
use crate::metrics::Metrics;
use crate::secrets::{Pepper, load_or_create_key_file};
use crate::store::{PoolSettings, Store};
use crate::views::Views;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub keys: Arc<KeyService>,
    pub pepper: Arc<Pepper>,
    pub keks: Arc<KekRing>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The audit log (`audit.rs`).
    pub audit: crate::audit::Audit,
    pub views: Arc<Views>,
    /// Bounds concurrent password hashing (`signin.password_hash_concurrency`).
    pub password_slots: Arc<tokio::sync::Semaphore>,
    /// Hash of a random password, verified against when an account does not exist.
    pub dummy_password_hash: Arc<String>,
    /// Clients' JWKS fetched from their `jwks_uri`, cached.
    pub client_jwks: Arc<crate::outbound::JwksFetcher>,
    /// Recently read client records (`clients.cache_ttl`).
    pub client_cache: Arc<crate::clients::ClientCache>,
    /// The WebAuthn relying party (`passkeys`).
    pub webauthn: Arc<webauthn_rs::Webauthn>,
    /// Outgoing mail (`mail`).
    pub mailer: Arc<crate::mail::Mailer>,
    /// Failed requests per address at the token endpoints.
    pub token_gate: Arc<crate::signin::throttle::TokenGate>,
    /// Other issuers whose JWTs a client may exchange (`exchange.trusted_issuers`).
    pub trusted_issuers: Arc<crate::federation::TrustedIssuers>,
    /// The outbound rules of back-channel logout deliveries.
    pub logout_guard: Arc<crate::outbound::Guard>,
    /// Fetches client ID metadata documents (`client_id_metadata`).
    pub document_guard: Arc<crate::outbound::Guard>,
    /// Fetches resource servers' RFC 9728 metadata (`tokens.discover_resources`).
    pub resource_guard: Arc<crate::outbound::Guard>,
    /// Recent forward-auth session lookups (`forward_auth.cache_ttl`; off by default).
    pub forward_auth_cache: Arc<crate::forward_auth::SessionCache>,
}

/// A start-up failure, worded for one line on stderr.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

fn one_line(s: impl std::fmt::Display) -> String {
    s.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl AppState {
    /// Prepares the data directory and secrets, opens and migrates the database, checks the
    /// pepper against it and makes sure signing keys exist.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let uses_data_dir = config.database_url.is_none()
            || config.secrets.pepper_file.is_none()
            || config.secrets.kek_file.is_none();
        if uses_data_dir {
            crate::secrets::create_private_dir(&config.data_dir).map_err(|e| {
                StartError(format!("data directory {}: {e}", config.data_dir.display()))
            })?;
        }
        // Generated only when they are the defaults under the data directory: a configured
        // path that is missing is a deployment mistake, not a first start.
        let pepper = load_or_create_key_file(
            &config.pepper_file(),
            "pepper",
            config.secrets.pepper_file.is_none(),
        )
        .map_err(|e| StartError(format!("pepper file {}", one_line(e))))?;
        let pepper = Pepper::new(pepper).map_err(StartError)?;
        let keks =
            load_or_create_key_file(&config.kek_file(), "kek", config.secrets.kek_file.is_none())
                .map_err(|e| StartError(format!("key-encryption key file {}", one_line(e))))?;
        let keks = KekRing::new(keks.into_iter().map(|(id, k)| Kek::new(id, &k)).collect())
            .map_err(|e| StartError(e.to_string()))?;

        let url = config.database_url();
        let settings = PoolSettings {
            max_connections: config.database.max_connections,
            acquire_timeout: config.database.acquire_timeout,
        };
        let store = Store::open(&url, &settings)
            .await
            .map_err(|e| StartError(format!("database {}: {}", redact_url(&url), one_line(e))))?;
        if config.database_url.is_none() {
            for file in ["latchkey.db", "latchkey.db-wal", "latchkey.db-shm"] {
                let path = config.data_dir.join(file);
                if path.exists() {
                    restrict_to_owner(&path);
                }
            }
        }
        let now = clock.now();
        store
            .check_pepper(&pepper, now)
            .await
            .map_err(|e| StartError(one_line(e)))?;

        let keks = Arc::new(keks);
        let policy = KeyPolicy {
            publish_lead: secs(config.keys.publish_lead),
            retain_retired: secs(config.longest_jwt_lifetime()),
        };
        let keys = KeyService::new(
            store.clone(),
            keks.clone(),
            policy,
            secs(config.keys.refresh_interval),
        );
        keys.ensure_keys(now)
            .await
            .map_err(|e| StartError(one_line(e)))?;
        keys.keyring(now)
            .await
            .map_err(|e| StartError(one_line(e)))?;

        let webauthn = crate::signin::passkey::relying_party(&config).map_err(StartError)?;
        let views = Views::new(config.http.templates_dir.clone())
            .map_err(|e| StartError(format!("messages: {}", one_line(e))))?;
        views
            .check()
            .map_err(|e| StartError(format!("templates: {}", one_line(e))))?;
        let views = Arc::new(views);
        let mailer =
            crate::mail::Mailer::from_config(&config, views.clone()).map_err(StartError)?;
        let dummy = tokio::task::spawn_blocking(|| {
            crate::signin::password::hash(&crate::secrets::random_token(16))
        })
        .await
        .map_err(|e| StartError(e.to_string()))?
        .map_err(|e| StartError(e.to_string()))?;
        let slots = config.signin.password_hash_concurrency;

        let trusted_issuers =
            crate::federation::TrustedIssuers::from_config(&config).map_err(StartError)?;
        let roots = crate::outbound::extra_roots(&config.outbound_ca_pem);
        let cimd = &config.client_id_metadata;
        let document_guard = if cimd.danger_allow_http_and_loopback {
            crate::outbound::Guard::loopback(roots.clone())
        } else {
            crate::outbound::Guard::new(false, roots.clone())
        }
        .with_timeout(cimd.fetch_timeout);
        let resource_guard = if config.tokens.danger_allow_http_and_loopback_resources {
            crate::outbound::Guard::loopback(roots.clone())
        } else {
            crate::outbound::Guard::new(false, roots.clone())
        };
        let logout_guard = if config.backchannel_logout.danger_allow_insecure_uri {
            crate::outbound::Guard::insecure(roots)
        } else {
            crate::outbound::Guard::new(false, roots)
        };
        let audit = crate::audit::Audit::new(store.clone(), config.audit.sink.as_deref())
            .map_err(|e| StartError(format!("audit.sink: {e}")))?;
        let forward_auth_cache = Arc::new(crate::forward_auth::SessionCache::new(
            config.forward_auth.cache_ttl,
        ));
        Ok(Self {
            audit,
            logout_guard: Arc::new(logout_guard),
            document_guard: Arc::new(document_guard),
            resource_guard: Arc::new(resource_guard),
            trusted_issuers: Arc::new(trusted_issuers),
            views,
            mailer: Arc::new(mailer),
            token_gate: Arc::default(),
            forward_auth_cache,
            webauthn: Arc::new(webauthn),
            password_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            dummy_password_hash: Arc::new(dummy),
            client_cache: Arc::new(crate::clients::ClientCache::default()),
            client_jwks: Arc::new(crate::outbound::JwksFetcher::new(
                config.danger_allow_private_jwks_uri,
                crate::outbound::extra_roots(&config.outbound_ca_pem),
            )),
            config: Arc::new(config),
            store,
            keys: Arc::new(keys),
            pepper: Arc::new(pepper),
            keks,
            clock,
            metrics: Arc::new(Metrics::new()),
        })
    }
}

impl AppState {
    /// Verifies a password against a stored hash (or, when there is none, against a dummy
    /// hash, so the cost is the same) on a blocking thread, at most
    /// `signin.password_hash_concurrency` at a time.
    pub async fn verify_password(&self, password: String, hash: Option<String>) -> bool {
        let Ok(_permit) = self.password_slots.clone().acquire_owned().await else {
            return false;
        };
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_password_hash.as_str().to_owned());
        let ok =
            tokio::task::spawn_blocking(move || crate::signin::password::verify(&password, &hash))
                .await
                .unwrap_or(false);
        ok && known
    }

    /// Checks a new password against the policy and hashes it, under the same bound on
    /// concurrent hashing as sign-in.
    pub async fn hash_password(
        &self,
        password: String,
    ) -> Result<String, crate::signin::password::PasswordError> {
        use crate::signin::password::{self, PasswordError};
        password::check_policy(&password)?;
        let _permit = self
            .password_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Hash)?;
        tokio::task::spawn_blocking(move || password::hash(&password))
            .await
            .map_err(|_| PasswordError::Hash)?
    }
}

pub use crate::clock::secs;

impl AppState {
    /// What the token endpoint's grants need of the server.
    pub fn token_context(&self) -> crate::grants::TokenContext<'_> {
        crate::grants::TokenContext {
            store: &self.store,
            pepper: &self.pepper,
            keys: &self.keys,
            keks: &self.keks,
            trusted_issuers: &self.trusted_issuers,
            issuer: &self.config.issuer,
            tokens: &self.config.tokens,
            resource_guard: &self.resource_guard,
            audit: &self.audit,
            api_keys: self.api_keys(),
        }
    }

    /// Personal API keys: making them and checking them.
    pub fn api_keys(&self) -> crate::api_keys::ApiKeys<'_> {
        crate::api_keys::ApiKeys {
            store: &self.store,
            pepper: &self.pepper,
            config: &self.config.api_keys,
        }
    }

    /// What operators (and users, for their own account) do, as `actor`, at this instant.
    pub fn admin<'a>(
        &'a self,
        actor: crate::audit::Actor<'a>,
        origin: crate::audit::Origin<'a>,
    ) -> crate::admin::Admin<'a> {
        crate::admin::Admin {
            api_keys: self.api_keys(),
            store: &self.store,
            pepper: &self.pepper,
            keys: &self.keys,
            audit: &self.audit,
            client_cache: &self.client_cache,
            actor,
            origin,
            now: self.clock.now(),
        }
    }

    /// Which audiences a client's tokens may have, at this instant.
    pub fn audiences(&self) -> crate::audiences::Audiences<'_> {
        crate::audiences::Audiences {
            store: &self.store,
            guard: &self.resource_guard,
            issuer: &self.config.issuer,
            tokens: &self.config.tokens,
            now: self.clock.now(),
        }
    }

    /// What the sign-in methods need, at this instant.
    pub fn signin(&self) -> crate::signin::Signin<'_> {
        crate::signin::Signin {
            store: &self.store,
            pepper: &self.pepper,
            keks: &self.keks,
            config: &self.config,
            webauthn: &self.webauthn,
            now: self.clock.now(),
        }
    }

    /// Registered clients: creating, finding and authenticating them, at this instant.
    pub fn clients(&self) -> crate::clients::Clients<'_> {
        crate::clients::Clients {
            store: &self.store,
            pepper: &self.pepper,
            cache: &self.client_cache,
            cache_ttl: secs(self.config.clients.cache_ttl),
            jwks: &self.client_jwks,
            documents: &self.config.client_id_metadata,
            document_guard: &self.document_guard,
            peer: None,
            issuer: &self.config.issuer,
            now: self.clock.now(),
        }
    }

    /// Sends the queued back-channel logouts.
    pub fn logout_sender(&self) -> crate::logout::Sender<'_> {
        crate::logout::Sender {
            store: &self.store,
            clients: self.clients(),
            keys: &self.keys,
            guard: &self.logout_guard,
            issuer: &self.config.issuer,
            config: &self.config.backchannel_logout,
            metrics: &self.metrics,
            clock: &*self.clock,
        }
    }

    /// Checks RFC 9449 DPoP proofs and hands out server nonces.
    pub fn dpop(&self) -> crate::dpop::DpopProofs<'_> {
        crate::dpop::DpopProofs {
            store: &self.store,
            pepper: &self.pepper,
            config: &self.config.dpop,
            issuer: &self.config.issuer,
        }
    }

    /// Verifies our access tokens where they are presented.
    pub fn access_tokens(&self) -> crate::access::AccessTokens<'_> {
        crate::access::AccessTokens {
            keys: &self.keys,
            store: &self.store,
            issuer: &self.config.issuer,
            resources: &self.config.tokens.resources,
        }
    }
}

/// The database holds digests and sealed keys; SQLite gives its -wal and -shm files the
/// same mode as the main file.
fn restrict_to_owner(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot restrict the database file to its owner");
        }
    }
}
