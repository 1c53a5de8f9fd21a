//! Registered clients: the secret only as a digest, the registered metadata as JSON.

use super::Write as _;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, is_unique_violation};

pub struct NewClient<'a> {
    pub client_id: &'a str,
    pub secret_digest: Option<&'a str>,
    /// The validated registration metadata, as JSON.
    pub metadata: &'a str,
    pub now: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredClient {
    pub client_id: String,
    pub secret_digest: Option<String>,
    pub metadata: String,
    pub created_at: i64,
}

impl Store {
    pub async fn create_client(&self, c: &NewClient<'_>) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO clients (client_id, secret_digest, metadata, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(c.client_id)
        .bind(c.secret_digest)
        .bind(c.metadata)
        .bind(c.now)
        .execute_w(self)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
                "a client with this client_id already exists",
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn client_by_id(&self, client_id: &str) -> Result<Option<StoredClient>, StoreError> {
        let row = sqlx::query(
            "SELECT client_id, secret_digest, metadata, created_at FROM clients WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(client_from_row).transpose()
    }
}

fn client_from_row(row: &AnyRow) -> Result<StoredClient, StoreError> {
    Ok(StoredClient {
        client_id: row.try_get("client_id")?,
        secret_digest: row.try_get("secret_digest")?,
        metadata: row.try_get("metadata")?,
        created_at: row.try_get("created_at")?,
    })
}
