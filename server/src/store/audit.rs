//! The audit log's rows (`audit_events`), written by `crate::audit` only.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Write as _;
use super::{Store, StoreError};
use serde_json::Value;

/// A stored event, as listed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StoredEvent {
    pub id: String,
    pub at: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub actor: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub outcome: String,
    pub details: Value,
}

/// Which events to list.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// About this user.
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// Of this type (`signin.failure`).
    pub kind: Option<String>,
    /// At or after this time.
    pub since: Option<i64>,
    /// After this event (`at`, `id`): for following the log.
    pub after: Option<(i64, String)>,
}

const COLUMNS: &str = "id, at, type, actor, subject, client_id, ip, user_agent, outcome, details";

impl Store {
    pub async fn insert_audit_event(&self, e: &StoredEvent) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO audit_events ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&e.id)
        .bind(e.at)
        .bind(&e.kind)
        .bind(&e.actor)
        .bind(&e.subject)
        .bind(&e.client_id)
        .bind(&e.ip)
        .bind(&e.user_agent)
        .bind(&e.outcome)
        .bind(e.details.to_string())
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// Events matching `f`: the newest `limit`, oldest first; or, with `f.after`, the first
    /// `limit` after it.
    pub async fn audit_events(
        &self,
        f: &AuditFilter,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut wheres = Vec::new();
        let mut args: Vec<String> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        for (col, v) in [
            ("subject", &f.subject),
            ("client_id", &f.client_id),
            ("type", &f.kind),
        ] {
            if let Some(v) = v {
                args.push(v.clone());
                wheres.push(format!("{col} = ${}", args.len()));
            }
        }
        let n = args.len();
        if let Some(since) = f.since {
            ints.push(since);
            wheres.push(format!("at >= ${}", n + ints.len()));
        }
        let mut after_id = None;
        if let Some((at, id)) = &f.after {
            ints.push(*at);
            let i = n + ints.len();
            wheres.push(format!(
                "(at > ${i} OR (at = ${i} AND id > ${}))",
                n + ints.len() + 1
            ));
            after_id = Some(id.clone());
        }
        let filter = if wheres.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", wheres.join(" AND "))
        };
        let order = if f.after.is_some() { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_events {filter} ORDER BY at {order}, id {order} LIMIT {}",
            limit.clamp(1, 10_000)
        );
        let mut q = sqlx::query(&sql);
        for a in &args {
            q = q.bind(a);
        }
        for i in &ints {
            q = q.bind(*i);
        }
        if let Some(id) = &after_id {
            q = q.bind(id);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if f.after.is_none() {
            out.reverse();
        }
        Ok(out)
    }

    /// Deletes events older than `before` (`audit.retention`).
    pub async fn purge_audit_events(&self, before: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM audit_events WHERE at < $1")
            .bind(before)
            .execute_w(self)
            .await?
            .rows_affected())
    }
}

fn event_from_row(row: &AnyRow) -> Result<StoredEvent, StoreError> {
    let details: String = row.try_get("details")?;
    Ok(StoredEvent {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        kind: row.try_get("type")?,
        actor: row.try_get("actor")?,
        subject: row.try_get("subject")?,
        client_id: row.try_get("client_id")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        outcome: row.try_get("outcome")?,
        details: serde_json::from_str(&details)
            .map_err(|e| StoreError::Corrupt(format!("audit event details: {e}")))?,
    })
}
