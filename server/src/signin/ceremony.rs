//! Sign-in steps in progress (WebAuthn ceremonies, a second factor awaited after the
//! password): state kept in the store under the pepper digest of a random id the browser
//! holds, shared by every instance, at most [`LIFETIME`] seconds, taken once.

use crate::secrets::{Purpose, random_token};
use crate::state::AppState;
use crate::store::{Ceremony, StoreError};

/// How long a ceremony lasts, in seconds.
pub const LIFETIME: i64 = 300;

/// Longest id we look up; ours are 32 characters.
const MAX_ID_LEN: usize = 64;

/// Stores a new ceremony; returns the id to hand to the browser.
pub async fn create(
    state: &AppState,
    kind: &str,
    user_id: Option<&str>,
    ceremony_state: &impl serde::Serialize,
) -> Result<String, StoreError> {
    let id = random_token(24);
    let json = serde_json::to_string(ceremony_state)
        .map_err(|e| StoreError::Corrupt(format!("ceremony state: {e}")))?;
    let now = state.clock.now();
    state
        .store
        .insert_ceremony(
            &state.pepper.digest(Purpose::Ceremony, id.as_bytes()),
            kind,
            user_id,
            &json,
            now,
            now + LIFETIME,
        )
        .await?;
    Ok(id)
}

fn digests(state: &AppState, id: &str) -> Option<Vec<String>> {
    (!id.is_empty() && id.len() <= MAX_ID_LEN).then(|| {
        state
            .pepper
            .lookup_digests(Purpose::Ceremony, id.as_bytes())
    })
}

/// Takes the ceremony `id` names if it is of one of `kinds`: once, and only before it expires.
pub async fn take(
    state: &AppState,
    id: &str,
    kinds: &[&str],
) -> Result<Option<Ceremony>, StoreError> {
    let Some(digests) = digests(state, id) else {
        return Ok(None);
    };
    state
        .store
        .take_ceremony(&digests, kinds, state.clock.now())
        .await
}

/// Reads the ceremony `id` names, if it is of one of `kinds` and live, leaving it in place.
pub async fn peek(
    state: &AppState,
    id: &str,
    kinds: &[&str],
) -> Result<Option<Ceremony>, StoreError> {
    let Some(digests) = digests(state, id) else {
        return Ok(None);
    };
    state
        .store
        .peek_ceremony(&digests, kinds, state.clock.now())
        .await
}
