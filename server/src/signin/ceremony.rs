//! Sign-in steps in progress (WebAuthn ceremonies, a second factor awaited after the
//! password): cx kept in the store under the pepper digest of a random id the browser
//! holds, shared by every instance, at most [`LIFETIME`] seconds, taken once.

use crate::secrets::{Purpose, random_token};
use crate::signin::Signin;
use crate::store::{Ceremony, StoreError};

/// How long a ceremony lasts, in seconds.
pub const LIFETIME: i64 = 300;

/// Longest id we look up; ours are 32 characters.
const MAX_ID_LEN: usize = 64;

/// Stores a new ceremony; returns the id to hand to the browser.
pub async fn create(
    cx: &Signin<'_>,
    kind: &str,
    user_id: Option<&str>,
    ceremony_state: &impl serde::Serialize,
) -> Result<String, StoreError> {
    let id = random_token(24);
    let json = serde_json::to_string(ceremony_state)
        .map_err(|e| StoreError::Corrupt(format!("ceremony cx: {e}")))?;
    let now = cx.now;
    cx.store
        .insert_ceremony(
            &cx.pepper.digest(Purpose::Ceremony, id.as_bytes()),
            kind,
            user_id,
            &json,
            now,
            now + LIFETIME,
        )
        .await?;
    Ok(id)
}

fn digests(cx: &Signin<'_>, id: &str) -> Option<Vec<String>> {
    (!id.is_empty() && id.len() <= MAX_ID_LEN)
        .then(|| cx.pepper.lookup_digests(Purpose::Ceremony, id.as_bytes()))
}

/// Takes the ceremony `id` names if it is of one of `kinds`: once, and only before it expires.
pub async fn take(
    cx: &Signin<'_>,
    id: &str,
    kinds: &[&str],
) -> Result<Option<Ceremony>, StoreError> {
    let Some(digests) = digests(cx, id) else {
        return Ok(None);
    };
    cx.store.take_ceremony(&digests, kinds, cx.now).await
}

/// Reads the ceremony `id` names, if it is of one of `kinds` and live, leaving it in place.
pub async fn peek(
    cx: &Signin<'_>,
    id: &str,
    kinds: &[&str],
) -> Result<Option<Ceremony>, StoreError> {
    let Some(digests) = digests(cx, id) else {
        return Ok(None);
    };
    cx.store.peek_ceremony(&digests, kinds, cx.now).await
}
