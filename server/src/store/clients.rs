//! Registered clients: the secret only as a digest, the registered metadata as JSON. Clients
//! known by a client ID metadata document have a row too (`origin = 'document'`): it caches the
//! document until `document_expires_at` and holds their grants and consents.

use super::Write as _;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, is_unique_violation};

pub struct NewClient<'a> {
    pub client_id: &'a str,
    pub secret_digest: Option<&'a str>,
    /// The validated registration metadata, as JSON.
    pub metadata: &'a str,
    /// Where the client came from: `None` for an administrator or an initial access token,
    /// [`ORIGIN_ANONYMOUS`] for open registration.
    pub origin: Option<&'a str>,
    pub now: i64,
}

/// `clients.origin` of a client registered by anyone (open registration).
pub const ORIGIN_ANONYMOUS: &str = "anonymous";
/// `clients.origin` of a client registered by anyone under `registration.policy =
/// "open_public"`.
pub const ORIGIN_OPEN_PUBLIC: &str = "open_public";
/// `clients.origin` of a client known by its client ID metadata document.
pub const ORIGIN_DOCUMENT: &str = "document";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredClient {
    pub client_id: String,
    pub secret_digest: Option<String>,
    pub metadata: String,
    pub created_at: i64,
    pub origin: Option<String>,
    /// For a document client: until when the stored metadata is used without a refetch.
    pub document_expires_at: Option<i64>,
    /// The secret a rotation replaced, and until when it still works.
    pub previous_secret: Option<(String, i64)>,
}

impl Store {
    pub async fn create_client(&self, c: &NewClient<'_>) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO clients (client_id, secret_digest, metadata, origin, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(c.client_id)
        .bind(c.secret_digest)
        .bind(c.metadata)
        .bind(c.origin)
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
            "SELECT client_id, secret_digest, metadata, created_at, origin, document_expires_at, \
             previous_secret_digest, previous_secret_expires_at FROM clients WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    /// Stores a client ID metadata document's metadata, fetched now and used until
    /// `expires_at`: a new document client, or the refreshed copy of one. A client that was
    /// registered (not from a document) under this id is never overwritten: false then.
    pub async fn put_document_client(
        &self,
        client_id: &str,
        metadata: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO clients (client_id, metadata, origin, document_expires_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (client_id) DO UPDATE SET metadata = excluded.metadata, \
             document_expires_at = excluded.document_expires_at, updated_at = excluded.updated_at \
             WHERE clients.origin = $3",
        )
        .bind(client_id)
        .bind(metadata)
        .bind(ORIGIN_DOCUMENT)
        .bind(expires_at)
        .bind(now)
        .execute_w(self)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}

pub(super) fn client_from_row(row: &AnyRow) -> Result<StoredClient, StoreError> {
    Ok(StoredClient {
        client_id: row.try_get("client_id")?,
        secret_digest: row.try_get("secret_digest")?,
        metadata: row.try_get("metadata")?,
        created_at: row.try_get("created_at")?,
        origin: row.try_get("origin")?,
        document_expires_at: row.try_get("document_expires_at")?,
        previous_secret: match (
            row.try_get::<Option<String>, _>("previous_secret_digest")?,
            row.try_get::<Option<i64>, _>("previous_secret_expires_at")?,
        ) {
            (Some(d), Some(until)) => Some((d, until)),
            _ => None,
        },
    })
}
