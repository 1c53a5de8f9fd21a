//! Accounts of trusted issuers linked to accounts here (`federated_identities`): one account
//! per (issuer, subject), fixed the first time the subject is seen. Two first sights at once
//! link one account: the primary key decides, the loser reads the winner's link.

use super::Write as _;
use sqlx::Connection as _;
use sqlx::Row;

use super::users::{NewUser, user_insert};
use super::{Store, StoreError, is_unique_violation};

/// What provisioning an account for a new subject came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Provisioned {
    /// The account (new, or linked meanwhile by a concurrent first sight).
    User(String),
    /// An account here already has the address; nothing was created or linked.
    EmailTaken,
}

/// Links a subject unless it is linked already (the first link stays).
fn link<'q>(
    issuer: &'q str,
    subject: &'q str,
    user_id: &'q str,
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(
        "INSERT INTO federated_identities (issuer, subject, user_id, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (issuer, subject) DO NOTHING",
    )
    .bind(issuer)
    .bind(subject)
    .bind(user_id)
    .bind(now)
}

impl Store {
    /// The account linked to `subject` of `issuer`.
    pub async fn federated_user(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT user_id FROM federated_identities WHERE issuer = $1 AND subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("user_id")).transpose()?)
    }

    /// Links `subject` of `issuer` to an existing account, unless it is linked already;
    /// returns the account it is linked to either way.
    pub async fn link_federated(
        &self,
        issuer: &str,
        subject: &str,
        user_id: &str,
        now: i64,
    ) -> Result<String, StoreError> {
        link(issuer, subject, user_id, now).execute_w(self).await?;
        self.federated_user(issuer, subject)
            .await?
            .ok_or(StoreError::Conflict("the federated identity vanished"))
    }

    /// Creates an account for `subject` of `issuer` and links it, in one transaction.
    pub async fn provision_federated(
        &self,
        issuer: &str,
        subject: &str,
        user: &NewUser<'_>,
    ) -> Result<Provisioned, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        match user_insert(user).execute(&mut *tx).await {
            Ok(_) => {}
            // The address is taken: by another account, or by the account a concurrent first
            // sight of this subject just created.
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await?;
                drop(conn);
                return Ok(match self.federated_user(issuer, subject).await? {
                    Some(id) => Provisioned::User(id),
                    None => Provisioned::EmailTaken,
                });
            }
            Err(e) => return Err(e.into()),
        }
        let linked = link(issuer, subject, user.id, user.now)
            .execute(&mut *tx)
            .await?;
        if linked.rows_affected() == 1 {
            tx.commit().await?;
            return Ok(Provisioned::User(user.id.to_owned()));
        }
        // A concurrent first sight linked the subject first: keep its account, not ours.
        tx.rollback().await?;
        // The writer is not held over a read (on PostgreSQL, two pooled connections at once).
        drop(conn);
        Ok(match self.federated_user(issuer, subject).await? {
            Some(id) => Provisioned::User(id),
            None => Provisioned::EmailTaken,
        })
    }
}
