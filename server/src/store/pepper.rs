//! The pepper check: the database remembers, per pepper key id, an HMAC of a fixed label. A
//! start whose pepper file does not match the database is refused, instead of every digest
//! comparison failing silently later.

use super::Write as _;
use sqlx::Row;
use subtle::ConstantTimeEq;

use super::{Store, StoreError};
use crate::secrets::Pepper;

impl Store {
    pub async fn check_pepper(&self, pepper: &Pepper, now: i64) -> Result<(), StoreError> {
        let rows = sqlx::query("SELECT id, check_digest FROM pepper_keys")
            .fetch_all(&self.pool)
            .await?;
        let mut known_match = false;
        for row in &rows {
            let id: String = row.try_get("id")?;
            let stored: String = row.try_get("check_digest")?;
            if let Some(ours) = pepper.check_digest(&id) {
                if !bool::from(ours.as_bytes().ct_eq(stored.as_bytes())) {
                    return Err(StoreError::Conflict(
                        "the pepper file does not match this database: a key id is the same \
                         but its key differs",
                    ));
                }
                known_match = true;
            }
        }
        if !rows.is_empty() && !known_match {
            return Err(StoreError::Conflict(
                "the pepper file does not match this database: none of its key ids were used \
                 here (every instance on one database needs the same pepper file)",
            ));
        }
        for id in pepper.ids() {
            let known = rows
                .iter()
                .any(|r| r.try_get::<String, _>("id").is_ok_and(|i| i == id));
            if !known {
                let check = pepper.check_digest(id).unwrap_or_default();
                sqlx::query(
                    "INSERT INTO pepper_keys (id, check_digest, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(check)
                .bind(now)
                .execute_w(self)
                .await?;
            }
        }
        Ok(())
    }
}
