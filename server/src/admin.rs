//! What operators (and users, for their own account) do to accounts, clients and sessions,
//! each with its audit event: the one place the CLI, the account page and, later, the admin
//! API and console call, so they cannot drift apart.

use serde_json::json;

use crate::audit::{Actor, Audit, Event, EventType, Origin};
use crate::clients::ClientCache;
use crate::keys::KeyService;
use crate::oauth::client::ClientMetadata;
use crate::secrets::{ClientSecret, Pepper, Purpose};
use crate::store::{Store, StoreError};

/// A user as operators see it (CLI, admin API).
pub fn user_json(u: &crate::store::User) -> serde_json::Value {
    json!({
        "id": u.id,
        "email": u.email,
        "email_verified": u.email_verified,
        "name": u.name,
        "admin": u.is_admin,
        "disabled": u.disabled_at.is_some(),
        "disabled_at": u.disabled_at,
        "created_at": u.created_at,
        "service_owner": u.service_owner,
    })
}

/// An API key as lists show it: never the secret or its digest.
pub fn api_key_json(k: &crate::store::ApiKeyRow) -> serde_json::Value {
    json!({
        "id": k.id,
        "name": k.name,
        "scope": k.scope,
        "resource": k.resource,
        "created_by": k.created_by,
        "created_at": k.created_at,
        "expires_at": k.expires_at,
        "last_used_at": k.last_used_at,
        "last_used_ip": k.last_used_ip,
    })
}

/// A client as operators see it: its metadata, id, origin and secret grace (never a secret).
pub fn client_json(c: &crate::store::StoredClient) -> Result<serde_json::Value, StoreError> {
    let mut out: serde_json::Value = serde_json::from_str(&c.metadata)
        .map_err(|e| StoreError::Corrupt(format!("client metadata: {e}")))?;
    out["client_id"] = json!(c.client_id);
    out["client_id_issued_at"] = json!(c.created_at);
    out["origin"] = json!(c.origin.as_deref().unwrap_or("registered"));
    if let Some((_, until)) = &c.previous_secret {
        out["previous_secret_expires_at"] = json!(until);
    }
    Ok(out)
}

/// Why an operation did nothing.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeysError),
}

/// A conflict the store refused (the last administrator) is the caller's mistake.
fn refused(e: StoreError) -> AdminError {
    match e {
        StoreError::Conflict(why) => AdminError::Invalid(why.into()),
        other => AdminError::Store(other),
    }
}

/// What the operations need, at one instant, for one actor.
#[derive(Clone, Copy)]
pub struct Admin<'a> {
    pub store: &'a Store,
    pub pepper: &'a Pepper,
    pub keys: &'a KeyService,
    pub audit: &'a Audit,
    pub client_cache: &'a ClientCache,
    pub api_keys: crate::api_keys::ApiKeys<'a>,
    pub actor: Actor<'a>,
    pub origin: Origin<'a>,
    pub now: i64,
}

impl Admin<'_> {
    async fn record(&self, e: Event<'_>) {
        self.audit.note(self.now, e.from(self.origin)).await;
    }

    /// The user with what operators look at: sign-in methods and live sessions, counted.
    pub async fn user_details(
        &self,
        user: &crate::store::User,
    ) -> Result<serde_json::Value, StoreError> {
        let mut out = user_json(user);
        out["passkeys"] = json!(self.store.passkeys_of(&user.id).await?.len());
        out["password"] = json!(self.store.password_hash(&user.id).await?.is_some());
        out["totp"] = json!(self.store.totp_enabled(&user.id).await?);
        out["sessions"] = json!(
            self.store
                .list_sessions(Some(&user.id), self.now, 10_000)
                .await?
                .len()
        );
        Ok(out)
    }

    /// Disables the user (sessions end, tokens stop working) or enables them again. The
    /// last enabled administrator is never disabled.
    pub async fn set_disabled(&self, user_id: &str, disabled: bool) -> Result<(), AdminError> {
        if !self
            .store
            .set_user_disabled(user_id, disabled, self.now)
            .await
            .map_err(refused)?
        {
            return Err(AdminError::NotFound);
        }
        let kind = if disabled {
            EventType::UserDisabled
        } else {
            EventType::UserEnabled
        };
        self.record(Event::new(kind, self.actor).subject(user_id))
            .await;
        Ok(())
    }

    /// A new signing key for each of `algs`, published now and signing after
    /// `keys.publish_lead`; what was made.
    pub async fn rotate_keys(
        &self,
        algs: &[latchkey_jwks::Alg],
    ) -> Result<Vec<serde_json::Value>, AdminError> {
        let mut made = Vec::with_capacity(algs.len());
        for alg in algs {
            let r = self.keys.rotate(*alg, self.now).await?;
            let key =
                json!({ "kid": r.kid, "alg": r.alg.as_str(), "activates_at": r.activates_at });
            self.record(Event::new(EventType::KeyRotated, self.actor).details(key.clone()))
                .await;
            made.push(key);
        }
        Ok(made)
    }

    /// An initial access token for dynamic registration (RFC 7591), returned this once.
    pub async fn create_registration_token(
        &self,
        expires_at: Option<i64>,
        max_uses: Option<i64>,
    ) -> Result<String, AdminError> {
        let token = crate::secrets::random_token(32);
        let digest = self
            .pepper
            .digest(Purpose::InitialAccessToken, token.as_bytes());
        self.store
            .create_initial_access_token(&digest, self.now, expires_at, max_uses)
            .await?;
        self.record(
            Event::new(EventType::RegistrationTokenCreated, self.actor)
                .details(json!({ "expires_at": expires_at, "max_uses": max_uses })),
        )
        .await;
        Ok(token)
    }

    /// Deletes the user and all that is theirs (see [`Store::delete_user`]); the audit event
    /// that remains names the account's id only, no personal data.
    pub async fn delete_user(&self, user_id: &str) -> Result<(), AdminError> {
        if !self
            .store
            .delete_user(user_id, self.now)
            .await
            .map_err(refused)?
        {
            return Err(AdminError::NotFound);
        }
        tracing::info!(user = %user_id, "user deleted");
        self.record(Event::new(EventType::UserDeleted, self.actor).subject(user_id))
            .await;
        Ok(())
    }

    /// A personal API key for the user `user_id` (their own, or an administrator's doing):
    /// the key is in the answer and nowhere else. `by` is who made it (a user id, or `cli`).
    pub async fn create_api_key(
        &self,
        user_id: &str,
        by: &str,
        k: &crate::api_keys::KeyRequest<'_>,
    ) -> Result<crate::api_keys::CreatedKey, AdminError> {
        let user = self
            .store
            .active_user(user_id)
            .await?
            .ok_or(AdminError::NotFound)?;
        // The admin API's scopes: the administrator's own doing on /account, or the CLI's.
        let own = matches!(self.actor, Actor::User(u) if u == user_id);
        let request = crate::api_keys::KeyRequest {
            admin_scopes: own || matches!(self.actor, Actor::Cli),
            ..*k
        };
        let made = self
            .api_keys
            .create(&user, by, &request, self.now)
            .await
            .map_err(|e| match e {
                crate::api_keys::CreateError::Store(e) => AdminError::Store(e),
                other => AdminError::Invalid(other.to_string()),
            })?;
        tracing::info!(user = %user_id, key = %made.id, "API key created");
        self.record(
            Event::new(EventType::ApiKeyCreated, self.actor)
                .subject(user_id)
                .details(
                    json!({"key_id": made.id, "name": k.name, "scope": made.scope,
                    "resource": k.resource, "expires_at": made.expires_at}),
                ),
        )
        .await;
        Ok(made)
    }

    /// Revokes the user's key `key_id`: refused from the next use on, on every instance.
    pub async fn revoke_api_key(&self, user_id: &str, key_id: &str) -> Result<(), AdminError> {
        if !self.store.revoke_api_key(user_id, key_id, self.now).await? {
            return Err(AdminError::NotFound);
        }
        tracing::info!(user = %user_id, key = %key_id, "API key revoked");
        self.record(
            Event::new(EventType::ApiKeyRevoked, self.actor)
                .subject(user_id)
                .details(json!({ "key_id": key_id })),
        )
        .await;
        Ok(())
    }

    /// A service account owned by the administrator `owner`: a user that is not a person,
    /// who cannot sign in and holds API keys. Its id.
    pub async fn create_service_account(
        &self,
        name: &str,
        owner: &str,
    ) -> Result<String, AdminError> {
        let name = crate::input::clean_label(name, 64).ok_or_else(|| {
            AdminError::Invalid("name is required (at most 64 characters)".into())
        })?;
        match self.store.active_user(owner).await? {
            Some(u) if u.is_admin => {}
            _ => {
                return Err(AdminError::Invalid(
                    "the owner must be an administrator".into(),
                ));
            }
        }
        let id = crate::secrets::random_token(16);
        self.store
            .create_service_account(&id, &name, owner, self.now)
            .await?;
        tracing::info!(account = %id, "service account created");
        self.record(
            Event::new(EventType::ServiceAccountCreated, self.actor)
                .subject(&id)
                .details(json!({ "name": name, "owner": owner })),
        )
        .await;
        Ok(id)
    }

    pub async fn set_admin(&self, user_id: &str, admin: bool) -> Result<(), AdminError> {
        if !self
            .store
            .set_user_admin(user_id, admin, self.now)
            .await
            .map_err(refused)?
        {
            return Err(AdminError::NotFound);
        }
        self.record(
            Event::new(EventType::UserUpdated, self.actor)
                .subject(user_id)
                .details(json!({ "admin": admin })),
        )
        .await;
        Ok(())
    }

    /// A new secret for the client, shown once; the old one keeps working for `grace` seconds
    /// (0: not at all).
    pub async fn rotate_secret(
        &self,
        client_id: &str,
        grace: i64,
    ) -> Result<(ClientSecret, Option<i64>), AdminError> {
        let secret = ClientSecret::generate();
        let digest = self
            .pepper
            .digest(Purpose::ClientSecret, secret.expose().as_bytes());
        let until = self.now.saturating_add(grace.clamp(0, 30 * 86_400));
        if !self
            .store
            .rotate_client_secret(client_id, &digest, until, self.now)
            .await?
        {
            return Err(AdminError::NotFound);
        }
        self.client_cache.forget(client_id);
        self.record(
            Event::new(EventType::ClientSecretRotated, self.actor)
                .client(client_id)
                .details(json!({ "grace_seconds": grace.max(0) })),
        )
        .await;
        Ok((secret, (grace > 0).then_some(until)))
    }

    /// Replaces the client's metadata with `metadata` (validated here).
    pub async fn update_client(
        &self,
        client_id: &str,
        metadata: ClientMetadata,
        changed: &[&str],
    ) -> Result<ClientMetadata, AdminError> {
        let metadata = metadata
            .validate()
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        let json = serde_json::to_string(&metadata)
            .map_err(|e| StoreError::Corrupt(format!("client metadata: {e}")))?;
        if !self
            .store
            .update_client_metadata(client_id, &json, self.now)
            .await?
        {
            return Err(AdminError::NotFound);
        }
        self.client_cache.forget(client_id);
        self.record(
            Event::new(EventType::ClientUpdated, self.actor)
                .client(client_id)
                .details(json!({ "changed": changed })),
        )
        .await;
        Ok(metadata)
    }

    /// Deletes the client: its grants are revoked, its consents go.
    pub async fn delete_client(&self, client_id: &str) -> Result<(), AdminError> {
        if self.store.client_by_id(client_id).await?.is_none() {
            return Err(AdminError::NotFound);
        }
        self.store.delete_client(client_id, self.now).await?;
        self.client_cache.forget(client_id);
        self.record(Event::new(EventType::ClientDeleted, self.actor).client(client_id))
            .await;
        Ok(())
    }

    /// Ends one session, whoever's it is.
    pub async fn end_session(&self, sid: &str) -> Result<(), AdminError> {
        let Some(user) = self.store.end_session(sid, self.now).await? else {
            return Err(AdminError::NotFound);
        };
        self.record(
            Event::new(EventType::SessionEnded, self.actor)
                .subject(&user)
                .details(json!({ "how": "administrator", "sid": sid })),
        )
        .await;
        Ok(())
    }

    /// Ends every session of the user.
    pub async fn end_sessions_of(&self, user_id: &str) -> Result<u64, AdminError> {
        if self.store.user_by_id(user_id).await?.is_none() {
            return Err(AdminError::NotFound);
        }
        let n = self.store.revoke_user_sessions(user_id, self.now).await?;
        self.record(
            Event::new(EventType::SessionEnded, self.actor)
                .subject(user_id)
                .details(json!({ "how": "administrator", "sessions": n })),
        )
        .await;
        Ok(n)
    }
}
