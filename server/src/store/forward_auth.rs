//! Forward-auth sessions: the cookie of protected hosts, bound by `sid` to the Latchkey
//! session it was minted from. A check is one read that joins the cookie's row, the live
//! session, the enabled user and the user's groups.

use super::Write as _;
use sqlx::Row;

use super::{Backend, Store, StoreError, placeholders};

/// What a forward-auth check needs to know of a cookie's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardAuthSession {
    pub sid: String,
    pub user_id: String,
    pub email: String,
    pub name: Option<String>,
    pub amr: Vec<String>,
    pub last_seen_at: i64,
    pub groups: Vec<String>,
}

/// Separates group names in the aggregate: the ASCII unit separator, a control character
/// (a group name holding one would be split in two, and match neither half's rules).
const SEP: char = '\u{1f}';

impl Store {
    pub async fn create_forward_auth_session(
        &self,
        id_digest: &str,
        sid: &str,
        user_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO forward_auth_sessions (id_digest, sid, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_digest)
        .bind(sid)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// The live forward-auth session among `digests`: its own row unexpired, its Latchkey
    /// session live (not ended, not past its absolute or `idle` lifetime), its user enabled.
    pub async fn forward_auth_session(
        &self,
        digests: &[String],
        now: i64,
        idle: i64,
    ) -> Result<Option<ForwardAuthSession>, StoreError> {
        let groups = match self.backend {
            Backend::Sqlite => "group_concat(g.display_name, char(31))",
            Backend::Postgres => "string_agg(g.display_name, chr(31))",
        };
        let n = digests.len();
        let sql = format!(
            "SELECT s.sid, s.user_id, s.amr, s.last_seen_at, u.email, u.name, \
             (SELECT {groups} FROM scim_group_members m JOIN scim_groups g ON g.id = m.group_id \
              WHERE m.user_id = u.id) AS groups \
             FROM forward_auth_sessions f JOIN sessions s ON s.sid = f.sid \
             JOIN users u ON u.id = s.user_id \
             WHERE f.id_digest IN ({}) AND f.user_id = s.user_id AND f.expires_at > ${} \
             AND s.revoked_at IS NULL AND s.expires_at > ${} AND s.last_seen_at > ${} \
             AND u.disabled_at IS NULL",
            placeholders(1, n),
            n + 1,
            n + 1,
            n + 2,
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d);
        }
        let Some(row) = q
            .bind(now)
            .bind(now.saturating_sub(idle))
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let amr: String = row.try_get("amr")?;
        let groups: Option<String> = row.try_get("groups")?;
        let mut groups: Vec<String> = groups
            .map(|g| g.split(SEP).map(str::to_owned).collect())
            .unwrap_or_default();
        groups.sort();
        Ok(Some(ForwardAuthSession {
            sid: row.try_get("sid")?,
            user_id: row.try_get("user_id")?,
            email: row.try_get("email")?,
            name: row.try_get("name")?,
            amr: serde_json::from_str(&amr)
                .map_err(|e| StoreError::Corrupt(format!("session amr: {e}")))?,
            last_seen_at: row.try_get("last_seen_at")?,
            groups,
        }))
    }
}
