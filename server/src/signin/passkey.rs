//! Passkeys (WebAuthn, through webauthn-rs): registration by a signed-in user, and sign-in
//! either usernameless (a discoverable credential names its user by the WebAuthn user handle)
//! or username-first (for security keys that are not discoverable).
//!
//! The ceremony cx stays on the server, in the store, keyed by the digest of a random id
//! the browser holds; it lives at most [`CEREMONY_LIFETIME`] seconds and is taken once. User
//! verification is required on every ceremony.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;
use webauthn_rs::prelude::{
    CreationChallengeResponse, CredentialID, DiscoverableAuthentication, DiscoverableKey, Passkey,
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Uuid, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};
use webauthn_rs_proto::{AllowCredentials, ResidentKeyRequirement};

use super::ceremony;
use crate::config::Config;
use crate::secrets::{Purpose, random_token};
use crate::signin::Signin;
use crate::store::{PasskeyRow, PasskeyUse, StoreError, User};

/// Seconds a ceremony may take, start to finish.
pub use super::ceremony::LIFETIME as CEREMONY_LIFETIME;
/// The longest passkey name we keep, in characters.
pub const MAX_NAME_CHARS: usize = 64;

const REGISTER: &str = "register";
const SIGNUP: &str = "signup";
const DISCOVERABLE: &str = "discoverable";
const USERNAME: &str = "username";
/// A username-first ceremony for an account with no passkey (or no account): it looks like
/// any other and never succeeds.
const DECOY: &str = "decoy";

#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("the passkey ceremony is unknown, used or expired")]
    Ceremony,
    #[error("the passkey response is not valid: {0}")]
    Invalid(String),
    #[error("this passkey is not registered")]
    Unknown,
    #[error("this passkey is already registered")]
    AlreadyRegistered,
    #[error("the passkey's signature counter went backwards")]
    CounterRegression,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PasskeyError {
    /// A fixed name for the audit log (the `Display` text may quote what was sent).
    pub fn code(&self) -> &'static str {
        match self {
            PasskeyError::Ceremony => "ceremony_unusable",
            PasskeyError::Invalid(_) => "invalid_response",
            PasskeyError::Unknown => "unknown_passkey",
            PasskeyError::AlreadyRegistered => "already_registered",
            PasskeyError::CounterRegression => "counter_regression",
            PasskeyError::Store(_) => "server_error",
        }
    }
}

/// Builds the relying party from the issuer (origin) and `passkeys.rp_id` (default: the
/// issuer's host).
pub fn relying_party(config: &Config) -> Result<Webauthn, String> {
    let origin = Url::parse(&config.issuer).map_err(|e| format!("issuer: {e}"))?;
    let host = origin.host_str().unwrap_or_default().to_owned();
    let rp_id = config.passkeys.rp_id.clone().unwrap_or(host);
    WebauthnBuilder::new(&rp_id, &origin)
        .and_then(|b| {
            b.rp_name(&config.passkeys.rp_name)
                .timeout(Duration::from_secs(CEREMONY_LIFETIME as u64))
                .build()
        })
        .map_err(|e| format!("passkeys.rp_id {rp_id:?} does not fit the issuer {origin}: {e}"))
}

/// How a passkey sign-in is described in tokens (RFC 8176 `amr`, and `acr`): a synced passkey
/// (backup eligible) is a software-secured key, a device-bound one hardware-secured; user
/// verification makes either multi-factor. Both are phishing-resistant (`phr`), a
/// device-bound one also hardware-protected (`phrh`).
pub fn amr_acr(backup_eligible: bool) -> (Vec<&'static str>, &'static str) {
    if backup_eligible {
        (vec!["swk", "mfa"], "phr")
    } else {
        (vec!["hwk", "mfa"], "phrh")
    }
}

/// Who signed in with a passkey, and how.
#[derive(Debug)]
pub struct PasskeySignIn {
    pub user_id: String,
    pub passkey_id: String,
    pub backup_eligible: bool,
}

async fn new_ceremony(
    cx: &Signin<'_>,
    kind: &str,
    user_id: Option<&str>,
    ceremony_state: &impl serde::Serialize,
) -> Result<String, PasskeyError> {
    Ok(ceremony::create(cx, kind, user_id, ceremony_state).await?)
}

/// Takes the ceremony `id` names if it is of one of `kinds`: once, and only before it expires.
async fn take_ceremony(
    cx: &Signin<'_>,
    id: &str,
    kinds: &[&str],
) -> Result<crate::store::Ceremony, PasskeyError> {
    ceremony::take(cx, id, kinds)
        .await?
        .ok_or(PasskeyError::Ceremony)
}

fn stored_passkey(row: &PasskeyRow) -> Result<Passkey, PasskeyError> {
    serde_json::from_str(&row.credential)
        .map_err(|e| StoreError::Corrupt(format!("passkey {}: {e}", row.id)).into())
}

/// The counter and backup flags webauthn-rs keeps inside a passkey.
fn passkey_facts(passkey: &Passkey) -> (i64, bool, bool) {
    let v = serde_json::to_value(passkey).unwrap_or(Value::Null);
    let cred = &v["cred"];
    (
        cred["counter"].as_i64().unwrap_or(0),
        cred["backup_eligible"].as_bool().unwrap_or(false),
        cred["backup_state"].as_bool().unwrap_or(false),
    )
}

fn invalid(e: WebauthnError) -> PasskeyError {
    match e {
        WebauthnError::CredentialPossibleCompromise => PasskeyError::CounterRegression,
        other => PasskeyError::Invalid(other.to_string()),
    }
}

/// Starts registering a passkey for a signed-in user: the options for
/// `navigator.credentials.create()` and the ceremony id to send back with the answer. The
/// user's existing passkeys are excluded; a discoverable credential is asked for (preferred,
/// so a security key without resident-key storage can still be added and used username-first).
pub async fn start_registration(
    cx: &Signin<'_>,
    user: &User,
) -> Result<(String, CreationChallengeResponse), PasskeyError> {
    let handle = cx
        .store
        .webauthn_handle(&user.id, &Uuid::new_v4().to_string())
        .await?
        .and_then(|h| Uuid::parse_str(&h).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("user {} has no WebAuthn handle", user.id)))?;
    let existing = cx.store.passkeys_of(&user.id).await?;
    let exclude = existing
        .iter()
        .map(|p| stored_passkey(p).map(|p| p.cred_id().clone()))
        .collect::<Result<Vec<CredentialID>, _>>()?;
    let display = user.name.as_deref().unwrap_or(&user.email);
    let (mut options, reg) = cx
        .webauthn
        .start_passkey_registration(handle, &user.email, display, Some(exclude))
        .map_err(invalid)?;
    if let Some(sel) = options.public_key.authenticator_selection.as_mut() {
        sel.resident_key = Some(ResidentKeyRequirement::Preferred);
        sel.require_resident_key = false;
    }
    let id = new_ceremony(cx, REGISTER, Some(&user.id), &reg).await?;
    Ok((id, options))
}

/// Finishes a registration started by [`start_registration`] for the same user.
pub async fn finish_registration(
    cx: &Signin<'_>,
    user_id: &str,
    ceremony: &str,
    response: &str,
    name: &str,
) -> Result<PasskeyRow, PasskeyError> {
    let taken = take_ceremony(cx, ceremony, &[REGISTER]).await?;
    if taken.user_id.as_deref() != Some(user_id) {
        return Err(PasskeyError::Ceremony);
    }
    let reg: PasskeyRegistration = serde_json::from_str(&taken.state)
        .map_err(|e| StoreError::Corrupt(format!("ceremony cx: {e}")))?;
    let response: RegisterPublicKeyCredential =
        serde_json::from_str(response).map_err(|e| PasskeyError::Invalid(e.to_string()))?;
    let passkey = cx
        .webauthn
        .finish_passkey_registration(&response, &reg)
        .map_err(invalid)?;
    let row = passkey_row(cx, user_id, &passkey, name)?;
    match cx.store.insert_passkey(&row).await {
        Ok(()) => Ok(row),
        Err(StoreError::Conflict(_)) => {
            tracing::warn!(user = %user_id, "refused a passkey whose credential id is already registered");
            Err(PasskeyError::AlreadyRegistered)
        }
        Err(e) => Err(e.into()),
    }
}

/// A sign-up in progress: the account's first passkey is registered before the account
/// exists, under the details given when it started.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Signup {
    reg: PasskeyRegistration,
    pub handle: String,
    pub email: String,
    pub name: Option<String>,
}

/// Starts registering the first passkey of an account that does not exist yet.
pub async fn start_signup(
    cx: &Signin<'_>,
    email: &str,
    name: Option<&str>,
) -> Result<(String, CreationChallengeResponse), PasskeyError> {
    let handle = Uuid::new_v4();
    let (mut options, reg) = cx
        .webauthn
        .start_passkey_registration(handle, email, name.unwrap_or(email), None)
        .map_err(invalid)?;
    if let Some(sel) = options.public_key.authenticator_selection.as_mut() {
        sel.resident_key = Some(ResidentKeyRequirement::Preferred);
        sel.require_resident_key = false;
    }
    let signup = Signup {
        reg,
        handle: handle.to_string(),
        email: email.to_owned(),
        name: name.map(str::to_owned),
    };
    let id = new_ceremony(cx, SIGNUP, None, &signup).await?;
    Ok((id, options))
}

/// Finishes a sign-up's passkey: the details it started with, and the passkey to store for
/// the user `user_id` (the caller creates both at once).
pub async fn finish_signup(
    cx: &Signin<'_>,
    ceremony: &str,
    response: &str,
    user_id: &str,
) -> Result<(Signup, PasskeyRow), PasskeyError> {
    let taken = take_ceremony(cx, ceremony, &[SIGNUP]).await?;
    let signup: Signup = serde_json::from_str(&taken.state)
        .map_err(|e| StoreError::Corrupt(format!("ceremony cx: {e}")))?;
    let response: RegisterPublicKeyCredential =
        serde_json::from_str(response).map_err(|e| PasskeyError::Invalid(e.to_string()))?;
    let passkey = cx
        .webauthn
        .finish_passkey_registration(&response, &signup.reg)
        .map_err(invalid)?;
    let row = passkey_row(cx, user_id, &passkey, "Passkey")?;
    Ok((signup, row))
}

fn passkey_row(
    cx: &Signin<'_>,
    user_id: &str,
    passkey: &Passkey,
    name: &str,
) -> Result<PasskeyRow, PasskeyError> {
    let (sign_count, backup_eligible, backup_state) = passkey_facts(passkey);
    let credential =
        serde_json::to_string(passkey).map_err(|e| StoreError::Corrupt(format!("passkey: {e}")))?;
    Ok(PasskeyRow {
        id: random_token(12),
        user_id: user_id.to_owned(),
        credential_id: URL_SAFE_NO_PAD.encode(passkey.cred_id()),
        name: clean_name(name).unwrap_or_else(|| "Passkey".to_owned()),
        credential,
        sign_count,
        backup_eligible,
        backup_state,
        created_at: cx.now,
        last_used_at: None,
    })
}

/// A passkey name as we keep it (see [`crate::input::clean_label`]), at most [`MAX_NAME_CHARS`].
pub fn clean_name(raw: &str) -> Option<String> {
    crate::input::clean_label(raw, MAX_NAME_CHARS)
}

/// Starts a sign-in. Without an email: usernameless, for any discoverable passkey of this
/// site (`conditional` asks the browser to offer them in the username field's autofill).
/// With an email: the account's passkeys are listed, or, for an unknown account or one
/// without passkeys, a stand-in that looks the same and never succeeds.
pub async fn start_authentication(
    cx: &Signin<'_>,
    email: Option<&str>,
    conditional: bool,
) -> Result<(String, RequestChallengeResponse), PasskeyError> {
    let Some(email) = email else {
        let (mut options, auth) = cx
            .webauthn
            .start_discoverable_authentication()
            .map_err(invalid)?;
        if !conditional {
            options.mediation = None;
        }
        let id = new_ceremony(cx, DISCOVERABLE, None, &auth).await?;
        return Ok((id, options));
    };
    let user = cx.store.active_user_by_email(email).await?;
    let passkeys = match &user {
        Some(u) => cx
            .store
            .passkeys_of(&u.id)
            .await?
            .iter()
            .map(stored_passkey)
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    match user {
        Some(u) if !passkeys.is_empty() => {
            let (options, auth) = cx
                .webauthn
                .start_passkey_authentication(&passkeys)
                .map_err(invalid)?;
            let id = new_ceremony(cx, USERNAME, Some(&u.id), &auth).await?;
            Ok((id, options))
        }
        _ => {
            let (mut options, auth) = cx
                .webauthn
                .start_discoverable_authentication()
                .map_err(invalid)?;
            options.mediation = None;
            options.public_key.extensions = None;
            // Stable per address, so asking twice does not tell a stand-in from a real key.
            let decoy = cx.pepper.digest(
                Purpose::PasskeyDecoy,
                email.trim().to_lowercase().as_bytes(),
            );
            options.public_key.allow_credentials = vec![AllowCredentials {
                type_: "public-key".into(),
                id: Sha256::digest(decoy.as_bytes()).to_vec(),
                transports: None,
            }];
            let id = new_ceremony(cx, DECOY, None, &auth).await?;
            Ok((id, options))
        }
    }
}

/// Finishes a sign-in started by [`start_authentication`]: verifies the assertion, moves the
/// passkey's counter forward atomically and says who signed in.
pub async fn finish_authentication(
    cx: &Signin<'_>,
    ceremony: &str,
    response: &str,
) -> Result<PasskeySignIn, PasskeyError> {
    let response: PublicKeyCredential =
        serde_json::from_str(response).map_err(|e| PasskeyError::Invalid(e.to_string()))?;
    let now = cx.now;
    let taken = take_ceremony(cx, ceremony, &[DISCOVERABLE, USERNAME, DECOY]).await?;
    let kind = taken.kind.as_str();
    if kind == DECOY {
        return Err(PasskeyError::Unknown);
    }
    let credential_id = URL_SAFE_NO_PAD.encode(&response.raw_id);
    let row = cx
        .store
        .passkey_by_credential_id(&credential_id)
        .await?
        .ok_or(PasskeyError::Unknown)?;
    let mut passkey = stored_passkey(&row)?;
    let result = if kind == DISCOVERABLE {
        let (handle, _) = cx
            .webauthn
            .identify_discoverable_authentication(&response)
            .map_err(invalid)?;
        let owner = cx
            .store
            .user_id_by_webauthn_handle(&handle.to_string())
            .await?;
        if owner.as_deref() != Some(row.user_id.as_str()) {
            return Err(PasskeyError::Unknown);
        }
        let auth: DiscoverableAuthentication = serde_json::from_str(&taken.state)
            .map_err(|e| StoreError::Corrupt(format!("ceremony cx: {e}")))?;
        cx.webauthn
            .finish_discoverable_authentication_v2(&response, auth, DiscoverableKey::from(&passkey))
            .map_err(invalid)
    } else {
        if taken.user_id.as_deref() != Some(row.user_id.as_str()) {
            return Err(PasskeyError::Unknown);
        }
        let auth: PasskeyAuthentication = serde_json::from_str(&taken.state)
            .map_err(|e| StoreError::Corrupt(format!("ceremony cx: {e}")))?;
        cx.webauthn
            .finish_passkey_authentication(&response, &auth)
            .map_err(invalid)
    };
    let result = match result {
        Ok(r) => r,
        Err(PasskeyError::CounterRegression) => {
            tracing::warn!(user = %row.user_id, passkey = %row.id, "refused a passkey whose signature counter went backwards: it may be cloned");
            return Err(PasskeyError::CounterRegression);
        }
        Err(e) => return Err(e),
    };
    if !result.user_verified() {
        return Err(PasskeyError::Invalid(
            "user verification is required".into(),
        ));
    }
    passkey.update_credential(&result);
    let (_, backup_eligible, backup_state) = passkey_facts(&passkey);
    let credential = serde_json::to_string(&passkey)
        .map_err(|e| StoreError::Corrupt(format!("passkey: {e}")))?;
    let recorded = cx
        .store
        .record_passkey_use(&PasskeyUse {
            id: &row.id,
            credential: &credential,
            sign_count: i64::from(result.counter()),
            backup_eligible,
            backup_state,
            now,
        })
        .await?;
    if !recorded {
        tracing::warn!(user = %row.user_id, passkey = %row.id, "refused a passkey whose signature counter did not move forward: it may be cloned");
        return Err(PasskeyError::CounterRegression);
    }
    Ok(PasskeySignIn {
        user_id: row.user_id,
        passkey_id: row.id,
        backup_eligible,
    })
}
