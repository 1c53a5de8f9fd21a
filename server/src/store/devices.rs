//! RFC 8628 device codes and the devices they become. A device code moves from pending to
//! approved or denied once (a conditional `UPDATE`), and is consumed once, when its tokens are
//! issued.

use super::Write as _;
use sqlx::Connection as _;
use sqlx::Row;

use super::{Store, StoreError};

/// A device code as the token endpoint sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCodeRow {
    pub client_id: String,
    pub scope: String,
    pub status: String,
    pub interval_secs: i64,
    /// This poll came sooner than the interval after the previous one (which then grew).
    pub too_soon: bool,
    pub expires_at: i64,
    pub consumed: bool,
}

/// A pending request as the verification page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDevice {
    pub client_id: String,
    pub scope: String,
}

/// An approved device code, taken for its tokens.
#[derive(Debug)]
pub struct ApprovedDevice {
    pub user_id: String,
    pub scope: String,
    /// JSON of the approving sign-in.
    pub authn: String,
}

pub struct NewDeviceCode<'a> {
    pub device_code_digest: &'a str,
    pub user_code_digest: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub interval_secs: i64,
    pub now: i64,
    pub expires_at: i64,
}

/// A device as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

const DEVICE_COLUMNS: &str = "id, client_id, name, ip, user_agent, created_at, last_used_at";

fn device_from_row(r: &sqlx::any::AnyRow) -> Result<Device, StoreError> {
    Ok(Device {
        id: r.try_get("id")?,
        client_id: r.try_get("client_id")?,
        name: r.try_get("name")?,
        ip: r.try_get("ip")?,
        user_agent: r.try_get("user_agent")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
    })
}

pub struct NewDevice<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub client_id: &'a str,
    pub grant_id: &'a str,
    pub name: &'a str,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub now: i64,
}

impl Store {
    /// Stores a new device code. A user code already in use is a Conflict (the caller draws
    /// another).
    pub async fn insert_device_code(&self, d: &NewDeviceCode<'_>) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO device_codes (device_code_digest, user_code_digest, client_id, scope, status, \
             interval_secs, created_at, expires_at) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7)",
        )
        .bind(d.device_code_digest)
        .bind(d.user_code_digest)
        .bind(d.client_id)
        .bind(d.scope)
        .bind(d.interval_secs)
        .bind(d.now)
        .bind(d.expires_at)
        .execute_w(self)
        .await;
        match done {
            Ok(_) => Ok(()),
            Err(e) if super::is_unique_violation(&e) => {
                Err(StoreError::Conflict("user code in use"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The pending, unexpired request a user code names.
    pub async fn pending_device(
        &self,
        user_code_digests: &[String],
        now: i64,
    ) -> Result<Option<PendingDevice>, StoreError> {
        let sql = format!(
            "SELECT client_id, scope FROM device_codes WHERE user_code_digest IN ({}) \
             AND status = 'pending' AND expires_at > ${}",
            super::placeholders(1, user_code_digests.len()),
            user_code_digests.len() + 1
        );
        let mut q = sqlx::query(&sql);
        for d in user_code_digests {
            q = q.bind(d);
        }
        let row = q.bind(now).fetch_optional(&self.pool).await?;
        row.map(|r| {
            Ok(PendingDevice {
                client_id: r.try_get("client_id")?,
                scope: r.try_get("scope")?,
            })
        })
        .transpose()
    }

    /// Answers a pending request: approved by `user_id` signed in as `authn`, or denied. True
    /// once; false when it was answered, expired or never was.
    pub async fn answer_device(
        &self,
        user_code_digests: &[String],
        approve: Option<(&str, &str)>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = user_code_digests.len();
        let sql = format!(
            "UPDATE device_codes SET status = ${}, user_id = ${}, authn = ${} \
             WHERE user_code_digest IN ({}) AND status = 'pending' AND expires_at > ${}",
            n + 1,
            n + 2,
            n + 3,
            super::placeholders(1, n),
            n + 4
        );
        let mut q = sqlx::query(&sql);
        for d in user_code_digests {
            q = q.bind(d);
        }
        let (status, user_id, authn) = match approve {
            Some((user, authn)) => ("approved", Some(user), Some(authn)),
            None => ("denied", None, None),
        };
        let done = q
            .bind(status)
            .bind(user_id)
            .bind(authn)
            .bind(now)
            .execute_w(self)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a poll of a device code: returns the code, and, when the client polled sooner
    /// than its interval, says so and adds 5 s to the interval (RFC 8628 §3.5).
    pub async fn poll_device_code(
        &self,
        device_code_digests: &[String],
        client_id: &str,
        now: i64,
    ) -> Result<Option<DeviceCodeRow>, StoreError> {
        let n = device_code_digests.len();
        let sql = format!(
            "SELECT device_code_digest, client_id, scope, status, interval_secs, last_polled_at, \
             expires_at, consumed_at FROM device_codes WHERE device_code_digest IN ({}) \
             AND client_id = ${}",
            super::placeholders(1, n),
            n + 1
        );
        let mut q = sqlx::query(&sql);
        for d in device_code_digests {
            q = q.bind(d);
        }
        let Some(r) = q.bind(client_id).fetch_optional_w(self).await? else {
            return Ok(None);
        };
        let digest: String = r.try_get("device_code_digest")?;
        // One conditional UPDATE decides whether this poll is on time, so two polls in flight
        // cannot both pass as on time.
        let on_time = sqlx::query(
            "UPDATE device_codes SET last_polled_at = $1 WHERE device_code_digest = $2 \
             AND (last_polled_at IS NULL OR $1 - last_polled_at >= interval_secs)",
        )
        .bind(now)
        .bind(&digest)
        .execute_w(self)
        .await?
        .rows_affected()
            == 1;
        if !on_time {
            sqlx::query(
                "UPDATE device_codes SET last_polled_at = $1, interval_secs = interval_secs + 5 \
                 WHERE device_code_digest = $2",
            )
            .bind(now)
            .bind(&digest)
            .execute_w(self)
            .await?;
        }
        let row = DeviceCodeRow {
            client_id: r.try_get("client_id")?,
            scope: r.try_get("scope")?,
            status: r.try_get("status")?,
            interval_secs: r.try_get("interval_secs")?,
            too_soon: !on_time,
            expires_at: r.try_get("expires_at")?,
            consumed: r.try_get::<Option<i64>, _>("consumed_at")?.is_some(),
        };
        Ok(Some(row))
    }

    /// Takes an approved, unexpired, unconsumed device code of an enabled user for its
    /// tokens: once.
    pub async fn take_approved_device(
        &self,
        device_code_digests: &[String],
        client_id: &str,
        now: i64,
    ) -> Result<Option<ApprovedDevice>, StoreError> {
        let n = device_code_digests.len();
        let sql = format!(
            "UPDATE device_codes SET consumed_at = ${now} WHERE device_code_digest IN ({}) \
             AND client_id = ${client} AND status = 'approved' AND consumed_at IS NULL \
             AND expires_at > ${now} AND {} RETURNING user_id, scope, authn",
            super::placeholders(1, n),
            super::grants::user_enabled("device_codes"),
            now = n + 1,
            client = n + 2,
        );
        let mut q = sqlx::query(&sql);
        for d in device_code_digests {
            q = q.bind(d);
        }
        let row = q.bind(now).bind(client_id).fetch_optional_w(self).await?;
        row.map(|r| {
            Ok(ApprovedDevice {
                user_id: r.try_get("user_id")?,
                scope: r.try_get("scope")?,
                authn: r.try_get("authn")?,
            })
        })
        .transpose()
    }

    pub async fn insert_device(&self, d: &NewDevice<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO devices (id, user_id, client_id, grant_id, name, ip, user_agent, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(d.id)
        .bind(d.user_id)
        .bind(d.client_id)
        .bind(d.grant_id)
        .bind(d.name)
        .bind(d.ip)
        .bind(d.user_agent)
        .bind(d.now)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// A device's refresh: when, from where and with what it was last used.
    pub async fn touch_device(
        &self,
        grant_id: &str,
        ip: Option<&str>,
        user_agent: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE devices SET last_used_at = $1, ip = COALESCE($2, ip), \
             user_agent = COALESCE($3, user_agent) WHERE grant_id = $4",
        )
        .bind(now)
        .bind(ip)
        .bind(user_agent)
        .bind(grant_id)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// The user's devices, oldest first, after the device `after` (a page cursor), at most
    /// `limit`.
    pub async fn devices_of(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Device>, StoreError> {
        let rows = self
            .user_page("devices", DEVICE_COLUMNS, user_id, after, limit)
            .await?;
        rows.iter().map(device_from_row).collect()
    }

    /// One of the user's devices (None for another user's).
    pub async fn device_of(&self, user_id: &str, id: &str) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// Renames one of the user's devices; false for another user's.
    pub async fn rename_device(
        &self,
        user_id: &str,
        id: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE devices SET name = $1 WHERE id = $2 AND user_id = $3")
            .bind(name)
            .bind(id)
            .bind(user_id)
            .execute_w(self)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes one of the user's devices and revokes its grant in one transaction: its refresh
    /// tokens stop working and its access tokens are inactive everywhere at once. False for
    /// another user's device.
    pub async fn delete_device(
        &self,
        user_id: &str,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let Some(row) =
            sqlx::query("DELETE FROM devices WHERE id = $1 AND user_id = $2 RETURNING grant_id")
                .bind(id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(false);
        };
        let grant_id: String = row.try_get("grant_id")?;
        sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(&grant_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
