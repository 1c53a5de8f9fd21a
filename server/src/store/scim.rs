//! SCIM 2.0 provisioning's rows (RFC 7643/7644): users' external ids, groups and their
//! members, and the provisioning credentials (digests only).

use super::Write as _;
use sqlx::Connection as _;
use sqlx::Row;

use super::users::{USER_COLUMNS, user_from_row};
use super::{Store, StoreError, User, is_unique_violation};

/// A group and its members' user ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimGroup {
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    pub members: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    pub async fn create_scim_token(
        &self,
        digest: &str,
        name: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO scim_tokens (token_digest, name, created_at) VALUES ($1, $2, $3)")
            .bind(digest)
            .bind(name)
            .bind(now)
            .execute_w(self)
            .await?;
        Ok(())
    }

    /// The name of the provisioning credential among `digests`, if one is (its last use
    /// is noted).
    pub async fn scim_token_name(
        &self,
        digests: &[String],
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        for d in digests {
            let name: Option<String> =
                sqlx::query_scalar("SELECT name FROM scim_tokens WHERE token_digest = $1")
                    .bind(d)
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some(name) = name {
                sqlx::query("UPDATE scim_tokens SET last_used_at = $1 WHERE token_digest = $2")
                    .bind(now)
                    .bind(d)
                    .execute_w(self)
                    .await?;
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// The user's external id (the provisioning identity provider's own id for them).
    pub async fn external_id(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT external_id FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    /// Sets what SCIM may change of a user: address, name, external id.
    pub async fn scim_update_user(
        &self,
        user_id: &str,
        email: &str,
        name: Option<&str>,
        external_id: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE users SET email = $1, email_key = $2, name = $3, external_id = $4, updated_at = $5 \
             WHERE id = $6",
        )
        .bind(email)
        .bind(super::email_key(email))
        .bind(name)
        .bind(external_id)
        .bind(now)
        .bind(user_id)
        .execute_w(self)
        .await;
        match r {
            Ok(r) => Ok(r.rows_affected() == 1),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
                "a user with this email already exists",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Users by `userName` (address) or `externalId`, or all, in id order from `offset`.
    pub async fn scim_users(
        &self,
        email: Option<&str>,
        external_id: Option<&str>,
        offset: i64,
        count: i64,
    ) -> Result<(i64, Vec<(User, Option<String>)>), StoreError> {
        // Administrators are not the identity provider's to manage.
        let cond = "is_admin = 0 AND service_owner IS NULL AND ($1 = '' OR email_key = $1) AND ($2 = '' OR external_id = $2)";
        let email = email.map(super::email_key).unwrap_or_default();
        let external = external_id.unwrap_or_default();
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM users WHERE {cond}"))
            .bind(&email)
            .bind(external)
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, external_id FROM users WHERE {cond} ORDER BY id LIMIT $3 OFFSET $4"
        ))
        .bind(&email)
        .bind(external)
        .bind(count.clamp(0, 1000))
        .bind(offset.max(0))
        .fetch_all(&self.pool)
        .await?;
        let users = rows
            .iter()
            .map(|r| Ok((user_from_row(r)?, r.try_get("external_id")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((total, users))
    }

    /// The display names of the user's groups (the `groups` claim).
    pub async fn group_names_of(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT g.display_name FROM scim_groups g JOIN scim_group_members m ON m.group_id = g.id \
             WHERE m.user_id = $1 ORDER BY g.display_name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Creates a group with `members` (user ids that do not exist are left out).
    pub async fn create_group(
        &self,
        id: &str,
        display_name: &str,
        external_id: Option<&str>,
        members: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let r = sqlx::query(
            "INSERT INTO scim_groups (id, display_name, external_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(id)
        .bind(display_name)
        .bind(external_id)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict("a group with this displayName exists"));
            }
            Err(e) => return Err(e.into()),
        }
        add_members(&mut tx, id, members).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a group's name, external id and members; false if there is no such group.
    pub async fn replace_group(
        &self,
        id: &str,
        display_name: &str,
        external_id: Option<&str>,
        members: &[String],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let n = sqlx::query(
            "UPDATE scim_groups SET display_name = $1, external_id = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(display_name)
        .bind(external_id)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("a group with this displayName exists")
            } else {
                e.into()
            }
        })?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM scim_group_members WHERE group_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        add_members(&mut tx, id, members).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The provisioning credentials: name, created, last used (never the credential).
    pub async fn scim_tokens(&self) -> Result<Vec<(String, i64, Option<i64>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, created_at, last_used_at FROM scim_tokens ORDER BY created_at, name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("name")?,
                    r.try_get("created_at")?,
                    r.try_get("last_used_at")?,
                ))
            })
            .collect()
    }

    /// Deletes the credentials named `name`; how many.
    pub async fn delete_scim_tokens(&self, name: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM scim_tokens WHERE name = $1")
            .bind(name)
            .execute_w(self)
            .await?
            .rows_affected())
    }

    /// Adds and removes members; false if there is no such group.
    pub async fn change_members(
        &self,
        id: &str,
        add: &[String],
        remove: &[String],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let n = sqlx::query("UPDATE scim_groups SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        for user in remove {
            sqlx::query("DELETE FROM scim_group_members WHERE group_id = $1 AND user_id = $2")
                .bind(id)
                .bind(user)
                .execute(&mut *tx)
                .await?;
        }
        add_members(&mut tx, id, add).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn delete_group(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("DELETE FROM scim_group_members WHERE group_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM scim_groups WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Groups by `displayName`, or all, in id order from `offset`, with their members.
    pub async fn scim_groups(
        &self,
        display_name: Option<&str>,
        id: Option<&str>,
        offset: i64,
        count: i64,
    ) -> Result<(i64, Vec<ScimGroup>), StoreError> {
        let cond = "($1 = '' OR display_name = $1) AND ($2 = '' OR id = $2)";
        let name = display_name.unwrap_or_default();
        let id = id.unwrap_or_default();
        let total: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM scim_groups WHERE {cond}"))
                .bind(name)
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        let rows = sqlx::query(&format!(
            "SELECT id, display_name, external_id, created_at, updated_at FROM scim_groups \
             WHERE {cond} ORDER BY id LIMIT $3 OFFSET $4"
        ))
        .bind(name)
        .bind(id)
        .bind(count.clamp(0, 1000))
        .bind(offset.max(0))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let gid: String = r.try_get("id")?;
            let members: Vec<String> = sqlx::query_scalar(
                "SELECT user_id FROM scim_group_members WHERE group_id = $1 ORDER BY user_id",
            )
            .bind(&gid)
            .fetch_all(&self.pool)
            .await?;
            out.push(ScimGroup {
                id: gid,
                display_name: r.try_get("display_name")?,
                external_id: r.try_get("external_id")?,
                members,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            });
        }
        Ok((total, out))
    }
}

async fn add_members(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    group: &str,
    members: &[String],
) -> Result<(), StoreError> {
    for user in members {
        sqlx::query(
            "INSERT INTO scim_group_members (group_id, user_id) SELECT $1, id FROM users WHERE id = $2 \
             ON CONFLICT (group_id, user_id) DO NOTHING",
        )
        .bind(group)
        .bind(user)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
