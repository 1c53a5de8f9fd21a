//! The server side of signing keys: first-start generation, rotation, and a keyring cache
//! that every instance refreshes from the database, so a rotation made anywhere is seen
//! everywhere within `keys.refresh_interval` without a restart.

use std::sync::Arc;

use latchkey_jwks::{Alg, KekRing, KeyPolicy, KeyRecord, KeyStatus, Keyring, PrivateKey};
use tokio::sync::{Mutex, RwLock};

use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing keys: {0}")]
    Key(#[from] latchkey_jwks::KeyError),
}

struct Cached {
    ring: Arc<Keyring>,
    loaded_at: i64,
}

pub struct KeyService {
    store: Store,
    keks: Arc<KekRing>,
    policy: KeyPolicy,
    refresh_interval: i64,
    cache: RwLock<Option<Cached>>,
    reload: Mutex<()>,
}

impl KeyService {
    pub fn new(store: Store, keks: Arc<KekRing>, policy: KeyPolicy, refresh_interval: i64) -> Self {
        Self {
            store,
            keks,
            policy,
            refresh_interval,
            cache: RwLock::new(None),
            reload: Mutex::new(()),
        }
    }

    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    /// Generates a key for every algorithm that has none published (first start, or after
    /// every key of an algorithm has expired). Such a key signs at once.
    pub async fn ensure_keys(&self, now: i64) -> Result<(), KeysError> {
        let records = self.store.signing_keys().await?;
        let statuses = KeyStatus::derive(&records, now, &self.policy);
        for alg in Alg::ALL {
            let usable = statuses
                .iter()
                .any(|s| s.alg == alg && s.state.is_published() && s.retired_at.is_none());
            if !usable {
                self.insert_new(alg, &records, now).await?;
            }
        }
        self.invalidate().await;
        Ok(())
    }

    /// Adds a new key for `alg`: published now, signing after the publish lead. The key it
    /// replaces stays published until tokens it signed have expired.
    pub async fn rotate(&self, alg: Alg, now: i64) -> Result<KeyRecord, KeysError> {
        let records = self.store.signing_keys().await?;
        let record = self.insert_new(alg, &records, now).await?;
        self.invalidate().await;
        Ok(record)
    }

    async fn insert_new(
        &self,
        alg: Alg,
        records: &[KeyRecord],
        now: i64,
    ) -> Result<KeyRecord, KeysError> {
        let activates_at = latchkey_jwks::activation_time(records, alg, now, &self.policy);
        // RSA generation takes a while; keep it off the async workers.
        let key = tokio::task::spawn_blocking(move || PrivateKey::generate(alg))
            .await
            .map_err(|e| latchkey_jwks::KeyError::Generate(e.to_string()))??;
        let record = key.seal(&self.keks, now, activates_at)?;
        self.store.insert_signing_key(&record).await?;
        tracing::info!(kid = %record.kid, alg = %alg, activates_at, "signing key created");
        Ok(record)
    }

    pub async fn statuses(&self, now: i64) -> Result<Vec<KeyStatus>, KeysError> {
        let records = self.store.signing_keys().await?;
        Ok(KeyStatus::derive(&records, now, &self.policy))
    }

    /// The keyring in force at `now`, from the cache while it is fresh.
    pub async fn keyring(&self, now: i64) -> Result<Arc<Keyring>, KeysError> {
        if let Some(ring) = self.fresh(now).await {
            return Ok(ring);
        }
        // One reload at a time; whoever waited may find it done.
        let _guard = self.reload.lock().await;
        if let Some(ring) = self.fresh(now).await {
            return Ok(ring);
        }
        let records = self.store.signing_keys().await?;
        let ring = Arc::new(Keyring::load(&records, &self.keks, now, &self.policy)?);
        *self.cache.write().await = Some(Cached {
            ring: ring.clone(),
            loaded_at: now,
        });
        Ok(ring)
    }

    async fn fresh(&self, now: i64) -> Option<Arc<Keyring>> {
        let cache = self.cache.read().await;
        let c = cache.as_ref()?;
        let fresh = now < c.loaded_at.saturating_add(self.refresh_interval)
            && now < c.ring.valid_until()
            && now >= c.loaded_at;
        fresh.then(|| c.ring.clone())
    }

    async fn invalidate(&self) {
        *self.cache.write().await = None;
    }
}
