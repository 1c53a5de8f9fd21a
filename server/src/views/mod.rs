//! Pages: minijinja templates embedded in the binary (autoescaped), each overridable by a file
//! of the same name in `http.templates_dir` for theming.
//!
//! Where the words live: a page's own prose is in its template (`templates/*.html`; mail,
//! subject line included, in `templates/mail/`). Every string a handler puts on a page (error
//! pages, the notices and errors of forms) is in `templates/messages.toml`, named by a typed
//! [`Msg`] key and looked up with [`Views::msg`] or [`Views::msg_with`]: handlers hold no
//! English of their own. To translate, put in `http.templates_dir` the templates to change
//! (they replace ours by file name) and a `messages.toml` with the entries to change (they
//! replace ours key by key; see [`messages`] for what is refused at start).

pub mod messages;

use std::path::PathBuf;

use minijinja::Environment;
use serde::Serialize;

use messages::Catalog;
pub use messages::{CatalogError, Msg};

const EMBEDDED: &[(&str, &str)] = &[
    ("base.html", include_str!("../../../templates/base.html")),
    ("error.html", include_str!("../../../templates/error.html")),
    ("login.html", include_str!("../../../templates/login.html")),
    (
        "consent.html",
        include_str!("../../../templates/consent.html"),
    ),
    ("admin.html", include_str!("../../../templates/admin.html")),
    (
        "account_deleted.html",
        include_str!("../../../templates/account_deleted.html"),
    ),
    (
        "form_post.html",
        include_str!("../../../templates/form_post.html"),
    ),
    (
        "logout.html",
        include_str!("../../../templates/logout.html"),
    ),
    (
        "logged_out.html",
        include_str!("../../../templates/logged_out.html"),
    ),
    (
        "account.html",
        include_str!("../../../templates/account.html"),
    ),
    (
        "signup.html",
        include_str!("../../../templates/signup.html"),
    ),
    (
        "reset_request.html",
        include_str!("../../../templates/reset_request.html"),
    ),
    (
        "reset_confirm.html",
        include_str!("../../../templates/reset_confirm.html"),
    ),
    (
        "signup_email.html",
        include_str!("../../../templates/signup_email.html"),
    ),
    (
        "mail/signup_link.txt",
        include_str!("../../../templates/mail/signup_link.txt"),
    ),
    (
        "mail/account_exists.txt",
        include_str!("../../../templates/mail/account_exists.txt"),
    ),
    (
        "email_confirm.html",
        include_str!("../../../templates/email_confirm.html"),
    ),
    (
        "mail/email_verify.txt",
        include_str!("../../../templates/mail/email_verify.txt"),
    ),
    (
        "mail/email_change_notice.txt",
        include_str!("../../../templates/mail/email_change_notice.txt"),
    ),
    (
        "mail/second_factor_failures.txt",
        include_str!("../../../templates/mail/second_factor_failures.txt"),
    ),
    (
        "signin_link.html",
        include_str!("../../../templates/signin_link.html"),
    ),
    (
        "mail/signin_link.txt",
        include_str!("../../../templates/mail/signin_link.txt"),
    ),
    (
        "device.html",
        include_str!("../../../templates/device.html"),
    ),
    (
        "mail/password_reset.txt",
        include_str!("../../../templates/mail/password_reset.txt"),
    ),
    (
        "second_factor.html",
        include_str!("../../../templates/second_factor.html"),
    ),
    (
        "totp_setup.html",
        include_str!("../../../templates/totp_setup.html"),
    ),
    (
        "recovery_codes.html",
        include_str!("../../../templates/recovery_codes.html"),
    ),
];

/// Static assets served under `/static/`.
pub const STATIC: &[(&str, &str, &str)] = &[
    (
        "latchkey.css",
        "text/css; charset=utf-8",
        include_str!("../../../templates/static/latchkey.css"),
    ),
    (
        "form_post.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../templates/static/form_post.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../../templates/static/favicon.svg"),
    ),
    (
        "webauthn.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../templates/static/webauthn.js"),
    ),
];

pub struct Views {
    env: Environment<'static>,
    messages: Catalog,
}

impl Views {
    /// Fails when the messages are incomplete, or an override names a key or placeholder the
    /// embedded catalog does not have.
    pub fn new(override_dir: Option<PathBuf>) -> Result<Self, CatalogError> {
        let messages = Catalog::load(override_dir.as_deref())?;
        let mut env = Environment::new();
        env.set_loader(move |name| {
            if let Some(dir) = &override_dir {
                // Names are ours (a fixed list), never a request's: no traversal to guard.
                let path = dir.join(name);
                if path.is_file() {
                    return std::fs::read_to_string(&path).map(Some).map_err(|e| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("template {}: {e}", path.display()),
                        )
                    });
                }
            }
            Ok(EMBEDDED
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, src)| (*src).to_owned()))
        });
        Ok(Self { env, messages })
    }

    /// A user-facing string, for a page.
    pub fn msg(&self, m: Msg) -> &str {
        self.messages.get(m)
    }

    /// A user-facing string with its `{placeholders}` filled in from `args`.
    pub fn msg_with(&self, m: Msg, args: &[(&str, &str)]) -> String {
        self.messages.fill(m, args)
    }

    pub fn render(&self, name: &str, ctx: impl Serialize) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }

    /// Renders every embedded template once, so a broken override fails at start.
    pub fn check(&self) -> Result<(), minijinja::Error> {
        for (name, _) in EMBEDDED {
            self.env.get_template(name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_load_and_escape() {
        let v = Views::new(None).unwrap();
        v.check().unwrap();
        let html = v
            .render(
                "error.html",
                minijinja::context! { title => "Oops", message => "<script>x</script>" },
            )
            .unwrap();
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>x"));
    }
}
