//! Which audiences a client's access tokens may have (RFC 8707 `resource`, RFC 8693
//! `audience`): the issuer, our own APIs, configured resource servers given to the client
//! ([`Client::may_have_audience`]), and, with `tokens.discover_resources`, any resource
//! server whose RFC 9728 metadata names this issuer among its authorization servers. That
//! metadata is fetched under the outbound rules and its answer kept in the database
//! (`discovered_resources`) for `tokens.resource_metadata_cache`, so every instance agrees;
//! a failed fetch or an unusable document is not kept.

use crate::config::TokensConfig;
use crate::oauth::client::Client;
use crate::oauth::resource::{external_metadata_url, names_issuer};
use crate::outbound::Guard;
use crate::store::{Store, StoreError};

/// The largest resource metadata document read.
const MAX_METADATA_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy)]
pub struct Audiences<'a> {
    pub store: &'a Store,
    pub guard: &'a Guard,
    pub issuer: &'a str,
    pub tokens: &'a TokensConfig,
    pub now: i64,
}

impl Audiences<'_> {
    /// Whether a token of `client` may have `aud`.
    pub async fn may_have(&self, client: &Client, aud: &str) -> Result<bool, StoreError> {
        if client.may_have_audience(self.issuer, &self.tokens.resources, aud) {
            return Ok(true);
        }
        // What is configured here is decided here: a configured resource not given to this
        // client stays refused even though its own metadata names us.
        let known = aud == self.issuer
            || crate::oauth::resource::by_id(self.issuer, aud).is_some()
            || self.tokens.resources.iter().any(|r| r == aud);
        if known || !self.tokens.discover_resources {
            return Ok(false);
        }
        self.names_us(aud).await
    }

    /// Whether the RFC 9728 metadata of `resource` names this issuer.
    async fn names_us(&self, resource: &str) -> Result<bool, StoreError> {
        let allow_http = self.tokens.danger_allow_http_and_loopback_resources;
        let Some(url) = external_metadata_url(resource, allow_http) else {
            return Ok(false);
        };
        if let Some(known) = self.store.discovered_resource(resource, self.now).await? {
            return Ok(known);
        }
        let fetched = match self
            .guard
            .get(
                &url,
                "the resource's metadata",
                "application/json",
                MAX_METADATA_BYTES,
            )
            .await
        {
            Ok(f) if f.status == 200 => f,
            Ok(f) => {
                tracing::info!(resource, status = f.status, "resource metadata not found");
                return Ok(false);
            }
            Err(e) => {
                tracing::info!(resource, error = %e, "resource metadata could not be fetched");
                return Ok(false);
            }
        };
        let authorized = match names_issuer(resource, &fetched.body, self.issuer) {
            Ok(a) => a,
            Err(why) => {
                tracing::info!(resource, why, "resource metadata unusable");
                return Ok(false);
            }
        };
        let lifetime = i64::try_from(self.tokens.resource_metadata_cache.as_secs()).unwrap_or(0);
        self.store
            .put_discovered_resource(resource, authorized, self.now, self.now + lifetime)
            .await?;
        Ok(authorized)
    }
}
