//! Stream destinations (keys sealed, never in clear) and the audit log of secret reads.

use super::Write as _;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};

/// A stream destination as stored: the key still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRow {
    pub id: String,
    pub user_id: String,
    pub label: String,
    pub platform: String,
    pub rtmp_url: String,
    pub kek_id: String,
    pub key_sealed: Vec<u8>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, user_id, label, platform, rtmp_url, kek_id, key_sealed, enabled, created_at, updated_at";

fn stream_from_row(r: &AnyRow) -> Result<StreamRow, StoreError> {
    Ok(StreamRow {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        label: r.try_get("label")?,
        platform: r.try_get("platform")?,
        rtmp_url: r.try_get("rtmp_url")?,
        kek_id: r.try_get("kek_id")?,
        key_sealed: r.try_get("key_sealed")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn insert_stream(&self, s: &StreamRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO streams ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&s.id)
        .bind(&s.user_id)
        .bind(&s.label)
        .bind(&s.platform)
        .bind(&s.rtmp_url)
        .bind(&s.kek_id)
        .bind(&s.key_sealed)
        .bind(i64::from(s.enabled))
        .bind(s.created_at)
        .bind(s.updated_at)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// Replaces one of the user's streams (all but id, owner and creation); false for
    /// another user's.
    pub async fn update_stream(&self, s: &StreamRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE streams SET label = $1, platform = $2, rtmp_url = $3, kek_id = $4, \
             key_sealed = $5, enabled = $6, updated_at = $7 WHERE id = $8 AND user_id = $9",
        )
        .bind(&s.label)
        .bind(&s.platform)
        .bind(&s.rtmp_url)
        .bind(&s.kek_id)
        .bind(&s.key_sealed)
        .bind(i64::from(s.enabled))
        .bind(s.updated_at)
        .bind(&s.id)
        .bind(&s.user_id)
        .execute_w(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_stream(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM streams WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute_w(self)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One of the user's streams (None for another user's).
    pub async fn stream_of(
        &self,
        user_id: &str,
        id: &str,
    ) -> Result<Option<StreamRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM streams WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(stream_from_row).transpose()
    }

    /// The user's streams, oldest first, after the stream `after` (a page cursor), at most
    /// `limit`.
    pub async fn streams_of(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StreamRow>, StoreError> {
        let rows = self
            .user_page("streams", COLUMNS, user_id, after, limit)
            .await?;
        rows.iter().map(stream_from_row).collect()
    }
}
