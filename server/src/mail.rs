//! Outgoing mail. A [`MailSender`] delivers a composed message: [`Outbox`] writes it as an
//! `.eml` file (the embedded default; operators and tests read the files), [`Smtp`] hands it
//! to an SMTP server with lettre (implicit TLS or required STARTTLS, optional AUTH).
//!
//! [`Mailer::send_later`] composes from a template and delivers in the background: a page
//! that may or may not send mail (a password reset for an address that may not exist) answers
//! in the same time either way, and a slow mail server never holds a request.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use lettre::Address;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{Config, MailTransport, SmtpSecurity};
use crate::secrets::random_token;
use crate::views::Views;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("composing the message: {0}")]
    Compose(String),
    #[error("writing to the outbox: {0}")]
    Outbox(#[from] std::io::Error),
    #[error("SMTP delivery: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

type Sending<'a> = Pin<Box<dyn Future<Output = Result<(), MailError>> + Send + 'a>>;

/// Delivers one composed message.
pub trait MailSender: Send + Sync {
    fn send(&self, message: Message) -> Sending<'_>;
}

/// Writes each message to its own file, `<time>-<random>.eml`, readable by the owner only.
/// A file appears complete or not at all (written aside, then renamed).
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        crate::secrets::create_private_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }
}

impl MailSender for Outbox {
    fn send(&self, message: Message) -> Sending<'_> {
        Box::pin(async move {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let name = format!("{nanos:020}-{}", random_token(6));
            let tmp = self.dir.join(format!(".{name}.tmp"));
            let done = self.dir.join(format!("{name}.eml"));
            let body = message.formatted();
            tokio::task::spawn_blocking(move || {
                crate::secrets::write_private_file(&tmp, &body)?;
                std::fs::rename(&tmp, &done)
            })
            .await
            .map_err(|e| MailError::Outbox(std::io::Error::other(e)))??;
            Ok(())
        })
    }
}

/// Delivery through an SMTP server.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Smtp {
    pub fn new(config: &Config) -> Result<Self, String> {
        let smtp = &config.mail.smtp;
        let host = smtp.host.as_str();
        // TLS as lettre's relay()/starttls_relay() set it up, with `outbound.extra_ca_file`'s
        // trust anchors beside the system's: certificates and the host name are verified.
        let tls = || {
            let mut params = TlsParameters::builder(host.to_owned());
            for pem in &config.outbound_ca_pem {
                let cert = lettre::transport::smtp::client::Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| format!("outbound.extra_ca_file: {e}"))?;
                params = params.add_root_certificate(cert);
            }
            params
                .build()
                .map_err(|e| format!("mail.smtp.host {host:?}: {e}"))
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host);
        let (builder, default_port) = match smtp.security {
            SmtpSecurity::Tls => (builder.tls(Tls::Wrapper(tls()?)), 465),
            SmtpSecurity::Starttls => (builder.tls(Tls::Required(tls()?)), 587),
            SmtpSecurity::None => (builder, 25),
        };
        let mut builder = builder
            .timeout(Some(smtp.timeout))
            .port(smtp.port.unwrap_or(default_port));
        if let (Some(user), Some(file)) = (&smtp.username, &smtp.password_file) {
            let password = std::fs::read_to_string(file)
                .map_err(|e| format!("mail.smtp.password_file {}: {e}", file.display()))?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Self {
            transport: builder.build(),
        })
    }
}

impl MailSender for Smtp {
    fn send(&self, message: Message) -> Sending<'_> {
        Box::pin(async move {
            self.transport.send(message).await?;
            Ok(())
        })
    }
}

/// Composes mail from templates and hands it to the configured sender.
pub struct Mailer {
    from: Mailbox,
    sender: Arc<dyn MailSender>,
    views: Arc<Views>,
}

impl Mailer {
    pub fn from_config(config: &Config, views: Arc<Views>) -> Result<Self, String> {
        let from = config
            .mail
            .from
            .parse::<Mailbox>()
            .map_err(|e| format!("mail.from: {e}"))?;
        let sender: Arc<dyn MailSender> = match config.mail.transport {
            MailTransport::Outbox => {
                let dir = config.outbox_dir();
                Arc::new(
                    Outbox::new(&dir).map_err(|e| format!("mail outbox {}: {e}", dir.display()))?,
                )
            }
            MailTransport::Smtp => Arc::new(Smtp::new(config)?),
        };
        Ok(Self {
            from,
            sender,
            views,
        })
    }

    /// The message from `template` (`mail/<name>.txt`: a `Subject:` line, a blank line, the
    /// text) to `to`.
    pub fn compose(
        &self,
        to: &str,
        template: &str,
        ctx: impl serde::Serialize,
    ) -> Result<Message, MailError> {
        let rendered = self
            .views
            .render(template, ctx)
            .map_err(|e| MailError::Compose(e.to_string()))?;
        let (head, text) = rendered
            .split_once("\n\n")
            .ok_or_else(|| MailError::Compose(format!("{template}: no blank line")))?;
        let subject = head
            .trim()
            .strip_prefix("Subject:")
            .ok_or_else(|| MailError::Compose(format!("{template}: no Subject: line")))?
            .trim();
        // A bare address only, never a display name: the message goes exactly to the address
        // we hold.
        let to = Mailbox::new(
            None,
            to.parse::<Address>()
                .map_err(|e| MailError::Compose(format!("recipient: {e}")))?,
        );
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text.to_owned())
            .map_err(|e| MailError::Compose(e.to_string()))
    }

    /// Composes now and delivers in the background; a failure is logged (without the
    /// message, which may hold a link that works as a password).
    pub fn send_later(self: &Arc<Self>, to: &str, template: &str, ctx: impl serde::Serialize) {
        let message = match self.compose(to, template, ctx) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, template, "composing mail failed");
                return;
            }
        };
        let mailer = self.clone();
        let template = template.to_owned();
        tokio::spawn(async move {
            match mailer.sender.send(message).await {
                Ok(()) => tracing::info!(template, "mail sent"),
                Err(e) => tracing::error!(error = %e, template, "sending mail failed"),
            }
        });
    }
}
