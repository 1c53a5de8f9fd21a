//! Signing keys: inserted by generation and rotation, read whole by every instance's keyring.

use super::Write as _;
use latchkey_jwks::{Alg, KeyRecord};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};

impl Store {
    pub async fn insert_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, public_jwk, kek_id, private_sealed, created_at, activates_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.kid)
        .bind(key.alg.as_str())
        .bind(&key.public_jwk)
        .bind(&key.kek_id)
        .bind(&key.private_sealed)
        .bind(key.created_at)
        .bind(key.activates_at)
        .execute_w(self)
        .await?;
        Ok(())
    }

    pub async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, alg, public_jwk, kek_id, private_sealed, created_at, activates_at \
             FROM signing_keys ORDER BY activates_at, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }
}

fn key_from_row(row: &AnyRow) -> Result<KeyRecord, StoreError> {
    let kid: String = row.try_get("kid")?;
    let alg: String = row.try_get("alg")?;
    let alg: Alg = alg
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("signing key {kid} has unknown alg {alg:?}")))?;
    Ok(KeyRecord {
        alg,
        public_jwk: row.try_get("public_jwk")?,
        kek_id: row.try_get("kek_id")?,
        private_sealed: row.try_get("private_sealed")?,
        created_at: row.try_get("created_at")?,
        activates_at: row.try_get("activates_at")?,
        kid,
    })
}
