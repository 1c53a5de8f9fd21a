//! Sign-in methods: passkeys, passwords and TOTP with recovery codes; email links are to come.

pub mod ceremony;
pub mod passkey;
pub mod password;
pub mod throttle;
pub mod totp;

use crate::secrets::{Purpose, random_token};
use crate::store::{InviteOrigin, NewEmailLink, StoreError};

/// What the sign-in methods need of the server: storage, the pepper for digests, the
/// key-encryption keys (TOTP secrets), the configuration, the WebAuthn relying party, and the
/// time of the request, read once. Built per request by `AppState::signin`.
#[derive(Clone, Copy)]
pub struct Signin<'a> {
    pub store: &'a crate::store::Store,
    pub pepper: &'a crate::secrets::Pepper,
    pub keks: &'a latchkey_jwks::KekRing,
    pub config: &'a crate::config::Config,
    pub webauthn: &'a webauthn_rs::Webauthn,
    pub now: i64,
}

/// Makes an invitation to sign up (an administrator's when `admin`); returns the link to
/// give the person, and when it expires. Only the token's digest is stored.
pub async fn create_invite(
    cx: &Signin<'_>,
    email: Option<&str>,
    admin: bool,
    lifetime: std::time::Duration,
) -> Result<(String, i64), StoreError> {
    invite(cx, email, admin, InviteOrigin::Cli, lifetime).await
}

/// An invitation bound to `email` that we mail there ourselves (open sign-up): using it
/// proves the address.
pub async fn create_verifying_invite(
    cx: &Signin<'_>,
    email: &str,
    lifetime: std::time::Duration,
) -> Result<(String, i64), StoreError> {
    invite(cx, Some(email), false, InviteOrigin::Mail, lifetime).await
}

async fn invite(
    cx: &Signin<'_>,
    email: Option<&str>,
    admin: bool,
    origin: InviteOrigin,
    lifetime: std::time::Duration,
) -> Result<(String, i64), StoreError> {
    let token = random_token(24);
    let now = cx.now;
    let expires_at = now + crate::clock::secs(lifetime);
    cx.store
        .insert_invite(
            &cx.pepper.digest(Purpose::Invite, token.as_bytes()),
            email,
            admin,
            origin,
            now,
            expires_at,
        )
        .await?;
    Ok((
        format!("{}/signup?invite={token}", cx.config.issuer),
        expires_at,
    ))
}

/// Makes a link to mail: a 256-bit token for `purpose` (a `store::EMAIL_LINK_*`), bound to the
/// user and the address it goes to; only its digest is stored. Returns the token.
/// `browser`: for a sign-in link, the digest of the browser that asked for it
/// ([`link_browser_digest`]), which alone may use it.
pub async fn new_email_link(
    cx: &Signin<'_>,
    purpose: &str,
    user_id: &str,
    email: &str,
    request: Option<&str>,
    browser: Option<&str>,
    lifetime: std::time::Duration,
) -> Result<String, StoreError> {
    let token = random_token(32);
    let now = cx.now;
    cx.store
        .insert_email_link(&NewEmailLink {
            digest: &cx.pepper.digest(Purpose::EmailLink, token.as_bytes()),
            purpose,
            user_id,
            email,
            request,
            browser,
            now,
            expires_at: now + crate::clock::secs(lifetime),
        })
        .await?;
    Ok(token)
}

/// What binds a sign-in link to the browser that asked for it: the digest of that browser's
/// CSRF cookie (`binding`), which lasts as long as the browser session.
pub fn link_browser_digest(cx: &Signin<'_>, binding: &str) -> String {
    cx.pepper.digest(Purpose::LinkBrowser, binding.as_bytes())
}

/// The digests this browser's binding may be stored under (every pepper key); empty without
/// a binding.
pub fn link_browser_lookup(cx: &Signin<'_>, binding: Option<&str>) -> Vec<String> {
    binding.map_or_else(Vec::new, |b| {
        cx.pepper.lookup_digests(Purpose::LinkBrowser, b.as_bytes())
    })
}

/// Whether a link bound to `stored` (a browser digest) may be used by this browser.
pub fn link_browser_matches(cx: &Signin<'_>, stored: Option<&str>, binding: Option<&str>) -> bool {
    match (stored, binding) {
        (None, _) => true,
        (Some(stored), Some(b)) => cx.pepper.verify(Purpose::LinkBrowser, b.as_bytes(), stored),
        (Some(_), None) => false,
    }
}

/// The digests a mailed link's token may be stored under; None for a token that cannot be
/// one of ours.
pub fn email_link_digests(cx: &Signin<'_>, token: &str) -> Option<Vec<String>> {
    (!token.is_empty() && token.len() <= 64).then(|| {
        cx.pepper
            .lookup_digests(Purpose::EmailLink, token.as_bytes())
    })
}

/// With no administrator yet, a fresh setup link (earlier unused ones stop working), for the
/// operator who starts the server to open. None when an administrator exists.
pub async fn setup_link(cx: &Signin<'_>) -> Result<Option<(String, i64)>, StoreError> {
    if cx.store.admin_exists().await? {
        return Ok(None);
    }
    cx.store.drop_unused_setup_links().await?;
    invite(
        cx,
        None,
        true,
        InviteOrigin::Setup,
        cx.config.signup.invite_lifetime,
    )
    .await
    .map(Some)
}
