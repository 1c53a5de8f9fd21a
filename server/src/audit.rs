//! The audit log: every security-relevant action goes through [`Audit::record`], which stores
//! one row in `audit_events` and, when `audit.sink` is set, writes the same event as one JSON
//! line (to a file or stdout) for shipping to a SIEM. An event names who acted, whom it is
//! about, the client, the address and user agent, the outcome, and details built from named
//! fields only: never a password, code, token or secret.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

pub use crate::store::StoredEvent;
use crate::store::{Store, StoreError};

/// What happened. `as_str` is the stored `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    SigninSuccess,
    SigninFailure,
    SecondFactorFailure,
    /// An administrator removed a user's authenticator app and recovery codes.
    SecondFactorReset,
    /// An authenticator app set up, or turned off, by its user.
    SecondFactorEnabled,
    SecondFactorDisabled,
    RecoveryCodesReplaced,
    /// A new address confirmed from its mailed link.
    EmailChanged,
    /// A device's request approved or denied (RFC 8628), or a device removed.
    DeviceAnswered,
    DeviceRemoved,
    /// A client failed to authenticate at the token, revocation or introspection endpoint.
    ClientAuthFailure,
    PasskeyAdded,
    PasskeyRemoved,
    PasswordChanged,
    PasswordReset,
    /// An administrator had a reset link mailed to the user.
    PasswordResetSent,
    SessionEnded,
    ConsentGiven,
    ConsentRevoked,
    /// A rotated refresh token came back: its family is revoked.
    TokenReuse,
    /// A spent authorization code came back: its grant is revoked.
    CodeReplay,
    ClientCreated,
    ClientUpdated,
    ClientDeleted,
    ClientSecretRotated,
    UserCreated,
    UserDisabled,
    UserEnabled,
    /// Made an administrator, or not any more.
    UserUpdated,
    UserDeleted,
    KeyRotated,
    RegistrationTokenCreated,
    RegistrationTokenUsed,
    InvitationCreated,
    TokenExchanged,
    StreamKeyRevealed,
    StreamsReadInternal,
    /// A SCIM group created, changed or deleted.
    GroupChanged,
    ScimTokenCreated,
    ScimTokenDeleted,
    ApiKeyCreated,
    ApiKeyRevoked,
    /// A presented API key was unknown, wrong, expired, revoked or its user's disabled.
    ApiKeyFailure,
    ServiceAccountCreated,
}

impl EventType {
    pub const ALL: [EventType; 44] = [
        EventType::SigninSuccess,
        EventType::SigninFailure,
        EventType::SecondFactorFailure,
        EventType::SecondFactorReset,
        EventType::SecondFactorEnabled,
        EventType::SecondFactorDisabled,
        EventType::RecoveryCodesReplaced,
        EventType::EmailChanged,
        EventType::DeviceAnswered,
        EventType::DeviceRemoved,
        EventType::ClientAuthFailure,
        EventType::PasskeyAdded,
        EventType::PasskeyRemoved,
        EventType::PasswordChanged,
        EventType::PasswordReset,
        EventType::PasswordResetSent,
        EventType::SessionEnded,
        EventType::ConsentGiven,
        EventType::ConsentRevoked,
        EventType::TokenReuse,
        EventType::CodeReplay,
        EventType::ClientCreated,
        EventType::ClientUpdated,
        EventType::ClientDeleted,
        EventType::ClientSecretRotated,
        EventType::UserCreated,
        EventType::UserDisabled,
        EventType::UserEnabled,
        EventType::UserUpdated,
        EventType::UserDeleted,
        EventType::KeyRotated,
        EventType::RegistrationTokenCreated,
        EventType::RegistrationTokenUsed,
        EventType::InvitationCreated,
        EventType::TokenExchanged,
        EventType::StreamKeyRevealed,
        EventType::StreamsReadInternal,
        EventType::GroupChanged,
        EventType::ScimTokenCreated,
        EventType::ScimTokenDeleted,
        EventType::ApiKeyCreated,
        EventType::ApiKeyRevoked,
        EventType::ApiKeyFailure,
        EventType::ServiceAccountCreated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SigninSuccess => "signin.success",
            EventType::SigninFailure => "signin.failure",
            EventType::SecondFactorFailure => "second_factor.failure",
            EventType::SecondFactorReset => "second_factor.reset",
            EventType::SecondFactorEnabled => "second_factor.enabled",
            EventType::SecondFactorDisabled => "second_factor.disabled",
            EventType::RecoveryCodesReplaced => "recovery_codes.replaced",
            EventType::EmailChanged => "email.changed",
            EventType::DeviceAnswered => "device.answered",
            EventType::DeviceRemoved => "device.removed",
            EventType::ClientAuthFailure => "client.auth_failure",
            EventType::PasskeyAdded => "passkey.added",
            EventType::PasskeyRemoved => "passkey.removed",
            EventType::PasswordChanged => "password.changed",
            EventType::PasswordReset => "password.reset",
            EventType::PasswordResetSent => "password.reset_sent",
            EventType::SessionEnded => "session.ended",
            EventType::ConsentGiven => "consent.given",
            EventType::ConsentRevoked => "consent.revoked",
            EventType::TokenReuse => "token.reuse_detected",
            EventType::CodeReplay => "code.replayed",
            EventType::ClientCreated => "client.created",
            EventType::ClientUpdated => "client.updated",
            EventType::ClientDeleted => "client.deleted",
            EventType::ClientSecretRotated => "client.secret_rotated",
            EventType::UserCreated => "user.created",
            EventType::UserDisabled => "user.disabled",
            EventType::UserEnabled => "user.enabled",
            EventType::UserUpdated => "user.updated",
            EventType::UserDeleted => "user.deleted",
            EventType::KeyRotated => "key.rotated",
            EventType::RegistrationTokenCreated => "registration_token.created",
            EventType::RegistrationTokenUsed => "registration_token.used",
            EventType::InvitationCreated => "invitation.created",
            EventType::TokenExchanged => "token.exchanged",
            EventType::StreamKeyRevealed => "stream_key.revealed",
            EventType::StreamsReadInternal => "streams.internal_read",
            EventType::GroupChanged => "group.changed",
            EventType::ScimTokenCreated => "scim_token.created",
            EventType::ScimTokenDeleted => "scim_token.deleted",
            EventType::ApiKeyCreated => "api_key.created",
            EventType::ApiKeyRevoked => "api_key.revoked",
            EventType::ApiKeyFailure => "api_key.failure",
            EventType::ServiceAccountCreated => "service_account.created",
        }
    }

    /// Failures of someone trying; everything else is a success.
    fn outcome(self) -> &'static str {
        match self {
            EventType::SigninFailure
            | EventType::ApiKeyFailure
            | EventType::ClientAuthFailure
            | EventType::SecondFactorFailure
            | EventType::TokenReuse
            | EventType::CodeReplay => "failure",
            _ => "success",
        }
    }
}

/// Who acted.
#[derive(Clone, Copy, Debug)]
pub enum Actor<'a> {
    /// A user, by id (or, for a failed sign-in, nobody known yet: [`Actor::Anonymous`]).
    User(&'a str),
    Client(&'a str),
    /// An administrator, by user id, through the admin API or console.
    Admin(&'a str),
    /// The command line, run by whoever holds the server's configuration.
    Cli,
    /// The server itself (key rotation, housekeeping).
    System,
    /// Someone not (yet) known: a failed sign-in.
    Anonymous,
    /// A SCIM provisioning client, by the name of its credential.
    Provisioning(&'a str),
}

impl Actor<'_> {
    fn render(self) -> String {
        match self {
            Actor::User(id) => format!("user:{id}"),
            Actor::Client(id) => format!("client:{id}"),
            Actor::Admin(id) => format!("admin:{id}"),
            Actor::Cli => "cli".into(),
            Actor::System => "system".into(),
            Actor::Anonymous => "anonymous".into(),
            Actor::Provisioning(name) => format!("scim:{name}"),
        }
    }
}

/// Where a request came from.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin<'a> {
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// One event, before it is stored.
#[derive(Clone, Debug)]
pub struct Event<'a> {
    pub kind: EventType,
    pub actor: Actor<'a>,
    /// The user the event is about.
    pub subject: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub origin: Origin<'a>,
    /// Named, non-secret facts (a method, a reason, a count): a JSON object.
    pub details: Value,
}

impl<'a> Event<'a> {
    pub fn new(kind: EventType, actor: Actor<'a>) -> Self {
        Self {
            kind,
            actor,
            subject: None,
            client_id: None,
            origin: Origin::default(),
            details: json!({}),
        }
    }

    /// What a user did to their own account (actor and subject both that user).
    pub fn by_user(kind: EventType, user_id: &'a str) -> Self {
        Self::new(kind, Actor::User(user_id)).subject(user_id)
    }

    pub fn subject(mut self, user_id: &'a str) -> Self {
        self.subject = Some(user_id);
        self
    }

    pub fn client(mut self, client_id: &'a str) -> Self {
        self.client_id = Some(client_id);
        self
    }

    pub fn from(mut self, origin: Origin<'a>) -> Self {
        self.origin = origin;
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Where events also go, one JSON object per line.
#[derive(Clone)]
enum Sink {
    Stdout,
    File(Arc<Mutex<std::fs::File>>),
}

/// Records events. Cheap to clone; one per server.
#[derive(Clone)]
pub struct Audit {
    store: Store,
    sink: Option<Sink>,
}

/// The longest user agent kept.
const MAX_USER_AGENT: usize = 256;

impl Audit {
    /// `sink`: `None`, `"stdout"`, or a file path (appended to, created with mode 0600).
    pub fn new(store: Store, sink: Option<&str>) -> std::io::Result<Self> {
        let sink = match sink {
            None => None,
            Some("stdout") => Some(Sink::Stdout),
            Some(path) => {
                let mut open = std::fs::OpenOptions::new();
                open.create(true).append(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    open.mode(0o600);
                }
                Some(Sink::File(Arc::new(Mutex::new(open.open(path)?))))
            }
        };
        Ok(Self { store, sink })
    }

    /// The same log without a stdout sink: for the command line, whose stdout is its answer.
    pub fn without_stdout(mut self) -> Self {
        if matches!(self.sink, Some(Sink::Stdout)) {
            self.sink = None;
        }
        self
    }

    /// Stores the event (and writes it to the sink). An error means it is not stored: a caller
    /// for whom the record must exist before it goes on (a revealed secret) stops there;
    /// others log it with [`Audit::note`].
    pub async fn record(&self, now: i64, e: Event<'_>) -> Result<(), StoreError> {
        let ua = e
            .origin
            .user_agent
            .map(|u| u.chars().take(MAX_USER_AGENT).collect::<String>());
        let stored = StoredEvent {
            id: crate::secrets::random_token(16),
            at: now,
            kind: e.kind.as_str().to_owned(),
            actor: e.actor.render(),
            subject: e.subject.map(str::to_owned),
            client_id: e.client_id.map(str::to_owned),
            ip: e.origin.ip.map(str::to_owned),
            user_agent: ua,
            outcome: e.kind.outcome().to_owned(),
            details: if e.details.is_object() {
                e.details
            } else {
                json!({})
            },
        };
        self.store.insert_audit_event(&stored).await?;
        if let Some(sink) = &self.sink {
            let line = serde_json::to_string(&stored).unwrap_or_default();
            let written = match sink {
                Sink::Stdout => writeln!(std::io::stdout().lock(), "{line}"),
                Sink::File(f) => match f.lock() {
                    Ok(mut f) => writeln!(f, "{line}"),
                    Err(_) => Ok(()),
                },
            };
            if let Err(err) = written {
                tracing::warn!(error = %err, "writing to the audit sink failed");
            }
        }
        Ok(())
    }

    /// [`Audit::record`], where a failure to record must not undo what happened: logged.
    pub async fn note(&self, now: i64, e: Event<'_>) {
        let kind = e.kind.as_str();
        if let Err(err) = self.record(now, e).await {
            tracing::error!(error = %err, kind, "recording an audit event failed");
        }
    }
}
