//! Sign-in methods: passkeys, passwords and TOTP with recovery codes; email links are to come.

pub mod ceremony;
pub mod passkey;
pub mod password;
pub mod throttle;
pub mod totp;

use crate::secrets::{Purpose, random_token};
use crate::state::AppState;
use crate::store::{InviteOrigin, NewEmailLink, StoreError};

/// Makes an invitation to sign up (an administrator's when `admin`); returns the link to
/// give the person, and when it expires. Only the token's digest is stored.
pub async fn create_invite(
    state: &AppState,
    email: Option<&str>,
    admin: bool,
    lifetime: std::time::Duration,
) -> Result<(String, i64), StoreError> {
    invite(state, email, admin, InviteOrigin::Cli, lifetime).await
}

/// An invitation bound to `email` that we mail there ourselves (open sign-up): using it
/// proves the address.
pub async fn create_verifying_invite(
    state: &AppState,
    email: &str,
    lifetime: std::time::Duration,
) -> Result<(String, i64), StoreError> {
    invite(state, Some(email), false, InviteOrigin::Mail, lifetime).await
}

async fn invite(
    state: &AppState,
    email: Option<&str>,
    admin: bool,
    origin: InviteOrigin,
    lifetime: std::time::Duration,
) -> Result<(String, i64), StoreError> {
    let token = random_token(24);
    let now = state.clock.now();
    let expires_at = now + crate::state::secs(lifetime);
    state
        .store
        .insert_invite(
            &state.pepper.digest(Purpose::Invite, token.as_bytes()),
            email,
            admin,
            origin,
            now,
            expires_at,
        )
        .await?;
    Ok((
        format!("{}/signup?invite={token}", state.config.issuer),
        expires_at,
    ))
}

/// Makes a link to mail: a 256-bit token for `purpose` (a `store::EMAIL_LINK_*`), bound to the
/// user and the address it goes to; only its digest is stored. Returns the token.
pub async fn new_email_link(
    state: &AppState,
    purpose: &str,
    user_id: &str,
    email: &str,
    request: Option<&str>,
    lifetime: std::time::Duration,
) -> Result<String, StoreError> {
    let token = random_token(32);
    let now = state.clock.now();
    state
        .store
        .insert_email_link(&NewEmailLink {
            digest: &state.pepper.digest(Purpose::EmailLink, token.as_bytes()),
            purpose,
            user_id,
            email,
            request,
            now,
            expires_at: now + crate::state::secs(lifetime),
        })
        .await?;
    Ok(token)
}

/// The digests a mailed link's token may be stored under; None for a token that cannot be
/// one of ours.
pub fn email_link_digests(state: &AppState, token: &str) -> Option<Vec<String>> {
    (!token.is_empty() && token.len() <= 64).then(|| {
        state
            .pepper
            .lookup_digests(Purpose::EmailLink, token.as_bytes())
    })
}

/// With no administrator yet, a fresh setup link (earlier unused ones stop working), for the
/// operator who starts the server to open. None when an administrator exists.
pub async fn setup_link(state: &AppState) -> Result<Option<(String, i64)>, StoreError> {
    if state.store.admin_exists().await? {
        return Ok(None);
    }
    state.store.drop_unused_setup_links().await?;
    invite(
        state,
        None,
        true,
        InviteOrigin::Setup,
        state.config.signup.invite_lifetime,
    )
    .await
    .map(Some)
}

/// A name a person typed (a passkey's, a display name) as we keep it: trimmed, control
/// characters out, at most `max_chars`; None when nothing is left.
pub fn clean_label(raw: &str, max_chars: usize) -> Option<String> {
    let label: String = raw
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect();
    let label = label.trim();
    (!label.is_empty()).then(|| label.to_owned())
}

/// A plausible bare address (an RFC 5321 mailbox, no display name): exactly one `@`, a
/// non-empty local part and a domain with a dot, none of the characters that make a name,
/// a group or a quoted part (`<>"(),;:[]\`), no spaces or control characters, at most 254
/// bytes (RFC 5321 §4.5.3.1.3). What is stored is then exactly where mail goes; delivery is
/// the real test.
pub fn validate_email(raw: &str) -> Result<String, &'static str> {
    let email = raw.trim();
    let Some((local, domain)) = email.split_once('@') else {
        return Err("email must contain @");
    };
    if email.len() > 254
        || local.is_empty()
        || local.len() > 64
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains('@')
        || email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"(),;:[]\\".contains(c))
    {
        return Err("email address is not valid");
    }
    Ok(email.to_owned())
}

#[cfg(test)]
mod tests {
    use super::validate_email;

    #[test]
    fn email_shapes() {
        assert_eq!(
            validate_email(" ada@example.com ").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@.com",
            "\"victim@corp.example\"<attacker@evil.example>",
            "Ada <ada@example.com>",
            "ada@example.com,eve@example.com",
            "a@b@example.com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }
}
