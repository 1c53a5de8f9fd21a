//! TOTP (RFC 6238) as the second factor after a password, and recovery codes.
//!
//! - The secret (160 bits, RFC 4226 §4) is sealed under the current key-encryption key with
//!   the user id as associated data, so a sealed secret copied to another row does not open.
//! - Enrolment shows the secret as an `otpauth://` URI and as a QR code rendered to SVG here
//!   (no external service), and is confirmed with a first code.
//! - Codes are 6 digits over 30-second steps, one step of skew either way (RFC 6238 §5.2). The
//!   newest accepted step is recorded atomically: a code is accepted once, and never one older.
//! - Ten recovery codes of 50 random bits, shown once, stored only as pepper digests bound to
//!   their user; each is spent by one atomic update.

use latchkey_jwks::KekError;
use qrcode::QrCode;
use qrcode::render::svg;
use rand::Rng as _;
use totp_rs::{Algorithm, Builder, Totp};

use crate::secrets::Purpose;
use crate::signin::Signin;
use crate::store::StoreError;

/// Seconds per time step.
pub const STEP: u64 = 30;
/// Digits per code.
pub const DIGITS: u8 = 6;
/// Recovery codes per set.
pub const RECOVERY_CODES: usize = 10;
/// Characters per recovery code (5 bits each), shown as two groups of five.
const RECOVERY_CODE_LEN: usize = 10;
/// Crockford's base32 alphabet: no I, L, O or U to misread.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    #[error("an authenticator app is already set up")]
    AlreadyEnabled,
    #[error("no authenticator app is being set up")]
    NotEnrolling,
    #[error("sealing or opening the TOTP secret failed: {0}")]
    Seal(#[from] KekError),
    #[error("TOTP parameters: {0}")]
    Params(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the enrolment page shows.
#[derive(Debug)]
pub struct Enrolment {
    /// The `otpauth://totp/...` URI apps import.
    pub uri: String,
    /// The secret in base32, in groups of four, for typing in by hand.
    pub secret: String,
    /// The URI as a QR code, an SVG document (no XML declaration) to put inline.
    pub qr_svg: String,
}

fn aad(user_id: &str) -> Vec<u8> {
    format!("totp:{user_id}").into_bytes()
}

/// The TOTP generator for `secret`, labelled with the service and the account for apps.
fn generator(secret: Vec<u8>, issuer: &str, account: &str) -> Result<Totp, TotpError> {
    // The otpauth label separates issuer and account with ':'; neither may contain one.
    let issuer = issuer.replace(':', " ");
    let account = account.replace(':', " ");
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret)
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
        .map_err(|e| TotpError::Params(e.to_string()))
}

/// Starts (or restarts) enrolment for a user without a confirmed authenticator: a new sealed
/// secret, and what to show.
pub async fn start_enrolment(
    cx: &Signin<'_>,
    user_id: &str,
    email: &str,
) -> Result<Enrolment, TotpError> {
    let mut secret = vec![0u8; 20];
    rand::rngs::OsRng.fill(&mut secret[..]);
    let (kek_id, sealed) = cx.keks.seal(&secret, &aad(user_id))?;
    if !cx
        .store
        .start_totp(user_id, &kek_id, &sealed, cx.now)
        .await?
    {
        return Err(TotpError::AlreadyEnabled);
    }
    enrolment(cx, secret, email)
}

/// What to show again for an enrolment awaiting its first code (after a wrong one).
pub async fn pending_enrolment(
    cx: &Signin<'_>,
    user_id: &str,
    email: &str,
) -> Result<Enrolment, TotpError> {
    let row = cx
        .store
        .totp_of(user_id)
        .await?
        .filter(|r| !r.confirmed)
        .ok_or(TotpError::NotEnrolling)?;
    let secret = cx
        .keks
        .open(&row.kek_id, &row.secret_sealed, &aad(user_id))?;
    enrolment(cx, secret, email)
}

fn enrolment(cx: &Signin<'_>, secret: Vec<u8>, email: &str) -> Result<Enrolment, TotpError> {
    let totp = generator(secret, &cx.config.passkeys.rp_name, email)?;
    let uri = totp
        .to_url()
        .map_err(|e| TotpError::Params(e.to_string()))?;
    let secret = totp
        .secret()
        .to_base32()
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Enrolment {
        qr_svg: qr_svg(&uri)?,
        uri,
        secret,
    })
}

/// A QR code of `data` as an inline SVG that scales with its container.
fn qr_svg(data: &str) -> Result<String, TotpError> {
    let code = QrCode::new(data.as_bytes()).map_err(|e| TotpError::Params(e.to_string()))?;
    let svg = code
        .render::<svg::Color>()
        .quiet_zone(true)
        .module_dimensions(4, 4)
        .build();
    // Inline in HTML: no XML declaration; the size comes from the stylesheet.
    let svg = svg.split_once("?>").map_or(svg.as_str(), |(_, rest)| rest);
    Ok(svg.replacen(
        "<svg ",
        "<svg role=\"img\" aria-label=\"QR code for your authenticator app\" class=\"qr\" ",
        1,
    ))
}

/// Checks a code against the user's authenticator at the server's time. With `confirming`,
/// against an enrolment awaiting its first code, which the code then confirms; otherwise
/// against the confirmed authenticator. True once per code: the step it matched is recorded
/// and no code of that step or an older one passes again.
pub async fn verify(
    cx: &Signin<'_>,
    user_id: &str,
    code: &str,
    confirming: bool,
) -> Result<bool, TotpError> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(false);
    }
    let Some(row) = cx.store.totp_of(user_id).await? else {
        return Ok(false);
    };
    if row.confirmed == confirming {
        return Ok(false);
    }
    let secret = cx
        .keks
        .open(&row.kek_id, &row.secret_sealed, &aad(user_id))?;
    let totp = generator(secret, "-", "-")?;
    let now = u64::try_from(cx.now).unwrap_or(0);
    let Some(step) = totp.check(&code, now) else {
        return Ok(false);
    };
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    Ok(cx
        .store
        .accept_totp_step(
            user_id,
            step,
            confirming.then_some(row.secret_sealed.as_slice()),
            cx.now,
        )
        .await?)
}

/// A fresh set of recovery codes for the user, replacing any earlier set. The codes are
/// returned once, to show; only their digests are stored.
pub async fn new_recovery_codes(cx: &Signin<'_>, user_id: &str) -> Result<Vec<String>, TotpError> {
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
    let digests: Vec<String> = codes
        .iter()
        .map(|c| {
            cx.pepper
                .digest(Purpose::RecoveryCode, recovery_input(user_id, c).as_bytes())
        })
        .collect();
    cx.store
        .replace_recovery_codes(user_id, &digests, cx.now)
        .await?;
    Ok(codes)
}

/// Spends one of the user's recovery codes: true once per code.
pub async fn use_recovery_code(
    cx: &Signin<'_>,
    user_id: &str,
    code: &str,
) -> Result<bool, TotpError> {
    let Some(code) = normalize_recovery_code(code) else {
        return Ok(false);
    };
    let digests = cx.pepper.lookup_digests(
        Purpose::RecoveryCode,
        recovery_input(user_id, &code).as_bytes(),
    );
    Ok(cx
        .store
        .use_recovery_code(user_id, &digests, cx.now)
        .await?)
}

fn recovery_input(user_id: &str, normalized: &str) -> String {
    format!("{user_id}:{}", normalized.replace('-', ""))
}

/// A random recovery code: `xxxxx-xxxxx`.
fn recovery_code() -> String {
    let mut rng = rand::rngs::OsRng;
    let mut code = String::with_capacity(RECOVERY_CODE_LEN + 1);
    for i in 0..RECOVERY_CODE_LEN {
        if i == RECOVERY_CODE_LEN / 2 {
            code.push('-');
        }
        code.push(char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]));
    }
    code
}

/// A recovery code as typed, in its canonical form (lower case, no separators, Crockford's
/// look-alikes mapped), or None when it cannot be one.
fn normalize_recovery_code(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            c => c,
        })
        .collect();
    (code.len() == RECOVERY_CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_test_vectors() {
        // RFC 6238 Appendix B, SHA-1, truncated to 6 digits.
        let totp = generator(b"12345678901234567890".to_vec(), "Latchkey", "a@b.c").unwrap();
        for (time, code) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1111111111, "050471"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(totp.generate(time).to_string(), code, "at {time}");
        }
        // One step of skew either way, no more.
        assert_eq!(totp.check("081804", 1111111109 + 30), Some(1111111109 / 30));
        assert_eq!(totp.check("081804", 1111111109 - 30), Some(1111111109 / 30));
        assert_eq!(totp.check("081804", 1111111109 + 60), None);
    }

    #[test]
    fn otpauth_uri_and_qr() {
        let totp = generator(vec![7; 20], "Latch:key", "ada@example.com").unwrap();
        let uri = totp.to_url().unwrap();
        assert!(uri.starts_with("otpauth://totp/Latch%20key:ada%40example.com?secret="));
        assert!(uri.contains("issuer=Latch%20key"));
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<svg role=\"img\""), "{svg:.80}");
        assert!(!svg.contains("<?xml"));
    }

    #[test]
    fn recovery_codes_are_random_and_read_forgivingly() {
        let a = recovery_code();
        let b = recovery_code();
        assert_ne!(a, b);
        assert_eq!(a.len(), 11);
        assert_eq!(
            normalize_recovery_code(&a).unwrap(),
            a.replace('-', ""),
            "a code reads back as itself"
        );
        assert_eq!(
            normalize_recovery_code(" AB1O2-ILxyz ").as_deref(),
            Some("ab10211xyz")
        );
        assert_eq!(normalize_recovery_code("abc"), None);
        assert_eq!(
            normalize_recovery_code("abcde-fghiu"),
            None,
            "u is not in it"
        );
    }
}
