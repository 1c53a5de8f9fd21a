//! The user-facing strings handlers put on pages (error pages, form notices and errors), by
//! typed key. Their texts are in `templates/messages.toml`, embedded in the binary; a
//! `messages.toml` in `http.templates_dir` replaces entries key by key (a translation).
//!
//! Every [`Msg`] must have a text, and an override may only name keys and `{placeholders}`
//! the embedded catalog has: either mistake stops the server at start, naming the key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const EMBEDDED: &str = include_str!("../../../templates/messages.toml");

/// The file name of the catalog, embedded and in `http.templates_dir`.
const FILE: &str = "messages.toml";

/// Declares [`Msg`] with its keys; `Msg::ALL` lists every variant, in declaration order.
macro_rules! messages {
    ($($name:ident = $key:literal,)*) => {
        /// A user-facing string, named by its key in `messages.toml`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Msg {
            $($name,)*
        }

        impl Msg {
            pub const ALL: &[Msg] = &[$(Msg::$name,)*];

            pub fn key(self) -> &'static str {
                match self {
                    $(Msg::$name => $key,)*
                }
            }
        }
    };
}

messages! {
    ErrorTitle = "error.generic.title",
    ErrorMessage = "error.generic.message",
    ErrorTryAgain = "error.generic.try_again",
    ErrorTryAgainSoon = "error.generic.try_again_soon",
    ErrorPleaseTryAgain = "error.generic.please_try_again",
    RenderFailed = "error.render_failed",
    InvalidRequestTitle = "error.invalid_request.title",
    NotFoundTitle = "error.not_found.title",
    FormUnreadable = "form.unreadable",
    PathUnreadable = "request.path_unreadable",
    FormExpiredTitle = "form.expired.title",
    FormExpiredMessage = "form.expired.message",
    TooManyAttempts = "throttle.attempts",
    TooManyRequests = "throttle.requests",

    WrongPassword = "signin.wrong_password",
    PasskeySigninFailed = "signin.passkey_failed",
    SignedOutTitle = "signin.signed_out.title",
    SignedOutMessage = "signin.signed_out.message",
    SecondFactorExpiredTitle = "signin.second_factor_expired.title",
    SecondFactorExpiredMessage = "signin.second_factor_expired.message",
    WrongTotpCode = "totp.wrong_code",
    WrongRecoveryCode = "totp.wrong_recovery_code",
    TotpAlreadyEnabled = "totp.already_enabled",
    TotpDisabled = "totp.disabled",
    ConsentChoose = "consent.choose",

    SignInAgain = "account.sign_in_again",
    DeleteConfirm = "account.delete_confirm",
    LastAdmin = "account.last_admin",
    AdminTitle = "admin.title",
    AdminOnly = "admin.only",
    AdminNotFound = "admin.not_found",
    LastAdminConsole = "admin.last_admin",
    SessionNotFound = "account.session_not_found",
    AppNotFound = "account.app_not_found",
    BrowserUnknown = "account.browser.unknown",
    BrowserGeneric = "account.browser.generic",
    BrowserOnOs = "account.browser.on_os",
    PasskeyAlreadyRegistered = "passkey.already_registered",
    PasskeyNotAdded = "passkey.not_added",
    PasskeyNameRequired = "passkey.name_required",
    PasskeyOnlyWayIn = "passkey.only_way_in",
    PasskeyLastNeedsSignIn = "passkey.last_needs_sign_in",
    PasskeyNotFound = "passkey.not_found",
    WrongCurrentPassword = "password.wrong_current",
    PasswordSaved = "password.saved",
    PasswordTooShort = "password.too_short",
    PasswordTooLong = "password.too_long",
    PasswordCommon = "password.common",
    InvalidEmail = "email.invalid",
    EmailAlreadyYours = "email.already_yours",
    EmailLinkSentVerify = "email.link_sent.verify",
    EmailLinkSentChange = "email.link_sent.change",
    EmailLinkUnusable = "email.link_unusable",
    EmailTakenTitle = "email.taken.title",
    EmailTakenMessage = "email.taken.message",

    LinkUnusableTitle = "link.unusable.title",
    ResetLinkUnusable = "reset.link_unusable",
    SigninLinksOff = "signin_link.off",
    PushedRequestUnusable = "authorize.pushed_unusable",
    RequestObjectInvalid = "authorize.request_object_invalid",
    SigninLinkOtherBrowserTitle = "signin_link.other_browser.title",
    SigninLinkOtherBrowser = "signin_link.other_browser.message",
    DeviceCodeUnknown = "device.code_unknown",
    DeviceNotFound = "device.not_found",

    SignupRefusedTitle = "signup.refused.title",
    InviteUnusable = "signup.invite_unusable",
    SignupTooMany = "signup.too_many",
    InviteOnly = "signup.invite_only",
    SignupStartFromPage = "signup.start_from_signup_page",
    SignupPasskeyFailed = "signup.passkey_failed",
    SignupEmailTaken = "signup.email_taken",
    InviteOtherEmail = "signup.invite_other_email",
    SignupPasskeyTaken = "signup.passkey_taken",

    AuthorizeInvalidTitle = "authorize.invalid.title",
    AuthorizePostNotForm = "authorize.post_not_form",
    BodyUnreadable = "authorize.body_unreadable",
    NoClientId = "authorize.no_client_id",
    NoRedirectUri = "authorize.no_redirect_uri",
    RedirectUriUnregistered = "authorize.redirect_uri_unregistered",
    UnknownClient = "authorize.unknown_client",
    ClientNotRegistered = "client.not_registered",
    ClientDocumentRefused = "client.document_refused",
    ParamRepeated = "params.repeated",
    ParamTooLong = "params.too_long",
    ParamsTooMany = "params.too_many",
    ParamNotUtf8 = "params.not_utf8",
    ParamNul = "params.nul",
    LogoutInvalidTitle = "logout.invalid.title",
    LogoutPostNotForm = "logout.post_not_form",
    LogoutParamsUnreadable = "logout.params_unreadable",
    LogoutBadHint = "logout.bad_hint",
    LogoutRedirectUnregistered = "logout.redirect_uri_unregistered",
    LogoutRedirectNeedsClient = "logout.redirect_uri_needs_client",
    ForwardAuthRefusedTitle = "forward_auth.refused.title",
    ForwardAuthRefused = "forward_auth.refused.message",
    ForwardAuthNeedsTwoFactor = "forward_auth.needs_two_factor",
    ForwardAuthNeedsPasskey = "forward_auth.needs_passkey",
    ApiKeyNotFound = "api_key.not_found",
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("{file}: {error}")]
    Unreadable { file: String, error: String },
    #[error("{file}: {key} is not a string")]
    NotText { file: String, key: String },
    #[error("{file}: {key} is not a message key")]
    UnknownKey { file: String, key: String },
    #[error("{file}: {key} has {{{placeholder}}}, which the original text does not")]
    UnknownPlaceholder {
        file: String,
        key: String,
        placeholder: String,
    },
    #[error("{file}: no text for {key}")]
    Missing { file: String, key: String },
}

/// Every [`Msg`]'s text, in `Msg::ALL` order.
#[derive(Debug)]
pub struct Catalog {
    texts: Vec<String>,
}

impl Catalog {
    /// The embedded catalog, with `messages.toml` from `override_dir` over it when there is one.
    pub fn load(override_dir: Option<&Path>) -> Result<Self, CatalogError> {
        let mut catalog = Self::embedded()?;
        if let Some(path) = override_dir.map(|d| d.join(FILE)).filter(|p| p.is_file()) {
            let file = path.display().to_string();
            let src = std::fs::read_to_string(&path).map_err(|e| CatalogError::Unreadable {
                file: file.clone(),
                error: e.to_string(),
            })?;
            catalog.apply(&file, &src)?;
        }
        Ok(catalog)
    }

    fn embedded() -> Result<Self, CatalogError> {
        let file = format!("embedded {FILE}");
        let mut entries = parse(&file, EMBEDDED)?;
        let mut texts = Vec::with_capacity(Msg::ALL.len());
        for m in Msg::ALL {
            let text = entries
                .remove(m.key())
                .ok_or_else(|| CatalogError::Missing {
                    file: file.clone(),
                    key: m.key().to_owned(),
                })?;
            texts.push(text);
        }
        match entries.into_keys().next() {
            Some(key) => Err(CatalogError::UnknownKey { file, key }),
            None => Ok(Self { texts }),
        }
    }

    /// Replaces the texts an override file names, after checking its keys and placeholders.
    fn apply(&mut self, file: &str, src: &str) -> Result<(), CatalogError> {
        for (key, text) in parse(file, src)? {
            let Some(i) = Msg::ALL.iter().position(|m| m.key() == key) else {
                return Err(CatalogError::UnknownKey {
                    file: file.to_owned(),
                    key,
                });
            };
            let original = self.texts.get(i).map(String::as_str).unwrap_or_default();
            let allowed = placeholders(original);
            if let Some(p) = placeholders(&text).difference(&allowed).next() {
                return Err(CatalogError::UnknownPlaceholder {
                    file: file.to_owned(),
                    key,
                    placeholder: (*p).to_owned(),
                });
            }
            if let Some(slot) = self.texts.get_mut(i) {
                *slot = text;
            }
        }
        Ok(())
    }

    pub fn get(&self, m: Msg) -> &str {
        // Every variant has its text: `embedded` refuses to build otherwise.
        self.texts
            .get(m as usize)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The text with each `{name}` in `args` filled in; other braces are left as they are.
    pub fn fill(&self, m: Msg, args: &[(&str, &str)]) -> String {
        let mut out = String::new();
        let mut rest = self.get(m);
        while let Some((before, after)) = rest.split_once('{') {
            out.push_str(before);
            match placeholder_at(after) {
                Some((name, tail)) => {
                    match args.iter().find(|(k, _)| *k == name) {
                        Some((_, value)) => out.push_str(value),
                        None => {
                            out.push('{');
                            out.push_str(name);
                            out.push('}');
                        }
                    }
                    rest = tail;
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// `key = "text"` entries; dotted keys and `[section]` tables both name `section.key`.
fn parse(file: &str, src: &str) -> Result<BTreeMap<String, String>, CatalogError> {
    let table: toml::Table =
        src.parse()
            .map_err(|e: toml::de::Error| CatalogError::Unreadable {
                file: file.to_owned(),
                error: e.to_string(),
            })?;
    let mut out = BTreeMap::new();
    flatten(file, "", table, &mut out)?;
    Ok(out)
}

fn flatten(
    file: &str,
    prefix: &str,
    table: toml::Table,
    out: &mut BTreeMap<String, String>,
) -> Result<(), CatalogError> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::String(text) => {
                out.insert(key, text);
            }
            toml::Value::Table(t) => flatten(file, &key, t, out)?,
            _ => {
                return Err(CatalogError::NotText {
                    file: file.to_owned(),
                    key,
                });
            }
        }
    }
    Ok(())
}

/// `name` and what follows `name}`, when `s` (just after a `{`) starts a placeholder.
fn placeholder_at(s: &str) -> Option<(&str, &str)> {
    let (name, tail) = s.split_once('}')?;
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ok.then_some((name, tail))
}

fn placeholders(text: &str) -> BTreeSet<&str> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some((_, after)) = rest.split_once('{') {
        rest = match placeholder_at(after) {
            Some((name, tail)) => {
                found.insert(name);
                tail
            }
            None => after,
        };
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_has_exactly_the_keys_of_msg() {
        let entries = parse("embedded", EMBEDDED).unwrap();
        let keys: BTreeSet<&str> = entries.keys().map(String::as_str).collect();
        let wanted: BTreeSet<&str> = Msg::ALL.iter().map(|m| m.key()).collect();
        assert_eq!(keys, wanted, "messages.toml and Msg differ");
        assert_eq!(wanted.len(), Msg::ALL.len(), "two variants share a key");
        let catalog = Catalog::load(None).unwrap();
        for (i, m) in Msg::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i, "Msg::ALL is in declaration order");
            assert_eq!(catalog.get(*m), entries[m.key()]);
        }
    }

    #[test]
    fn placeholders_are_filled_and_other_braces_kept() {
        let c = Catalog::load(None).unwrap();
        assert_eq!(
            c.fill(Msg::TooManyAttempts, &[("seconds", "30")]),
            "Too many attempts. Try again in 30 seconds."
        );
        let mut c = c;
        c.apply("t", "throttle.attempts = \"{seconds}s {Wait} {} {x\"")
            .unwrap();
        assert_eq!(
            c.fill(Msg::TooManyAttempts, &[("seconds", "5")]),
            "5s {Wait} {} {x"
        );
    }

    #[test]
    fn override_replaces_entries_key_by_key() {
        let mut c = Catalog::load(None).unwrap();
        c.apply(
            "fr",
            "throttle.attempts = \"Réessayez dans {seconds} s.\"\n\
             [signin]\nwrong_password = \"L'adresse ou le mot de passe est faux.\"\n",
        )
        .unwrap();
        assert_eq!(
            c.get(Msg::WrongPassword),
            "L'adresse ou le mot de passe est faux."
        );
        assert_eq!(
            c.fill(Msg::TooManyAttempts, &[("seconds", "9")]),
            "Réessayez dans 9 s."
        );
        assert_eq!(c.get(Msg::ErrorTitle), "Something went wrong");
    }

    #[test]
    fn override_with_an_unknown_key_is_refused_naming_it() {
        let mut c = Catalog::load(None).unwrap();
        let err = c
            .apply("fr", "signin.wrong_pasword = \"Faux.\"")
            .unwrap_err();
        assert_eq!(
            err,
            CatalogError::UnknownKey {
                file: "fr".into(),
                key: "signin.wrong_pasword".into()
            }
        );
        assert!(err.to_string().contains("signin.wrong_pasword"));
    }

    #[test]
    fn override_with_an_unknown_placeholder_is_refused_naming_it() {
        let mut c = Catalog::load(None).unwrap();
        let err = c
            .apply("fr", "throttle.attempts = \"Réessayez dans {secondes} s.\"")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "fr: throttle.attempts has {secondes}, which the original text does not"
        );
        // A placeholder of another message is no better.
        assert!(
            c.apply("fr", "signin.wrong_password = \"{seconds}\"")
                .is_err()
        );
    }

    #[test]
    fn override_with_a_non_text_value_or_bad_toml_is_refused() {
        let mut c = Catalog::load(None).unwrap();
        assert!(matches!(
            c.apply("fr", "signin.wrong_password = 3"),
            Err(CatalogError::NotText { .. })
        ));
        assert!(matches!(
            c.apply("fr", "signin.wrong_password = "),
            Err(CatalogError::Unreadable { .. })
        ));
    }

    #[test]
    fn override_file_is_read_from_the_templates_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "consent.choose = \"Oui ou non ?\"").unwrap();
        let c = Catalog::load(Some(dir.path())).unwrap();
        assert_eq!(c.get(Msg::ConsentChoose), "Oui ou non ?");
        std::fs::write(dir.path().join(FILE), "consent.chose = \"Oui ou non ?\"").unwrap();
        let err = Catalog::load(Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("consent.chose"), "{err}");
    }
}
