//! The command line: `latchkey serve | migrate | keys | user | client`. Create commands print
//! one JSON object on stdout; everything else a person reads goes to stderr. Commands other
//! than `serve` work directly on the database, so they can run beside a live server.

use crate::audit::{Actor, Event, EventType};
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use latchkey_jwks::Alg;
use serde_json::json;

use crate::clock::{Clock, SystemClock};
use crate::config::redact_url;
use crate::config::{Config, LogFormat, Overrides};
use crate::input::validate_email;
use crate::oauth::client::{AuthMethod, ClientMetadata, GrantType};
use crate::secrets::{Purpose, random_token};
use crate::signin::password;
use crate::state::AppState;
use crate::store::{NewUser, PoolSettings, Store};

#[derive(Parser, Debug)]
#[command(
    name = "latchkey",
    version,
    about = "OAuth 2.0 / OpenID Connect authorization server with passkeys",
    long_about = "OAuth 2.0 / OpenID Connect authorization server with passkeys.\n\n\
        With no configuration, `latchkey serve` keeps everything under ./latchkey-data/ \
        (SQLite, generated pepper and key-encryption key) and serves http://localhost:8080 \
        on 127.0.0.1:8080. Configuration: a TOML file (--config), then LATCHKEY_* environment \
        variables (LATCHKEY_SECTION__KEY for nested keys), then these options."
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct GlobalArgs {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for the embedded database and generated secrets [default: ./latchkey-data].
    #[arg(long, global = true, env = "LATCHKEY_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://USER@HOST/DB [default: SQLite in the data directory].
    #[arg(
        long,
        global = true,
        env = "LATCHKEY_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Issuer identifier: the public base URL [default: http://localhost:8080].
    #[arg(long, global = true, env = "LATCHKEY_ISSUER", value_name = "URL")]
    issuer: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, global = true, env = "LATCHKEY_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Log format on stderr [default: text].
    #[arg(long, global = true, env = "LATCHKEY_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

/// `client create --profile`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Profile {
    Fapi2,
}

#[derive(Subcommand, Debug)]
// Parsed once per run: the size of `client create`'s options does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the server until SIGTERM or SIGINT (migrations run first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Signing keys: list them, or rotate.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Users.
    #[command(subcommand)]
    User(UserCommand),
    /// OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Initial access tokens for dynamic client registration (RFC 7591).
    #[command(subcommand, name = "registration-token")]
    RegistrationToken(RegistrationTokenCommand),
    /// Invitations to create an account at /signup.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// The audit log: sign-ins, changes to users and clients, token reuse, ...
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Browser sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Credentials for SCIM provisioning clients (/scim/v2/).
    #[command(subcommand, name = "scim-token")]
    ScimToken(ScimTokenCommand),
    /// Personal API keys (lk_...): for a user, or a service account.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Service accounts: users that are not people, owned by an administrator; they cannot
    /// sign in, and hold API keys.
    #[command(subcommand, name = "service-account")]
    ServiceAccount(ServiceAccountCommand),
}

#[derive(Subcommand, Debug)]
enum ApiKeyCommand {
    /// Make a key; prints it once (only its digest is stored), with its id and scope.
    Create {
        #[command(flatten)]
        which: WhichUser,
        /// What it is for, as its lists show it.
        #[arg(long)]
        name: String,
        /// The scopes it carries, space-separated (no OIDC scopes; admin:* for administrators).
        #[arg(long)]
        scope: String,
        /// The resource (RFC 8707) it may be exchanged for tokens for, and only that one.
        #[arg(long)]
        resource: Option<String>,
        /// How long it lasts (e.g. 90d); none: until revoked, unless api_keys.max_lifetime.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// The user's live keys as JSON lines: id, name, scope, last use (never the key).
    List {
        #[command(flatten)]
        which: WhichUser,
    },
    /// Revoke a key by its id: refused from the next use on.
    Revoke {
        #[command(flatten)]
        which: WhichUser,
        /// The key's id (the 16 hex digits after lk_).
        #[arg(long = "key")]
        key: String,
    },
}

#[derive(Subcommand, Debug)]
enum ServiceAccountCommand {
    /// Make a service account owned by an administrator; prints its id (give keys to it with
    /// `api-key create --id`).
    Create {
        #[arg(long)]
        name: String,
        /// The owning administrator's email address.
        #[arg(long)]
        owner: String,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Print the newest events as JSON lines, oldest first; with --follow, keep printing new
    /// ones as they are recorded (by any instance) until interrupted.
    Tail {
        /// Keep printing new events.
        #[arg(long)]
        follow: bool,
        /// Only events about this user (id).
        #[arg(long, value_name = "ID")]
        user: Option<String>,
        /// Only events of this client.
        #[arg(long, value_name = "CLIENT_ID")]
        client: Option<String>,
        /// Only events of this type, e.g. signin.failure.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// How many of the newest events to print first.
        #[arg(long, value_name = "N", default_value_t = 50)]
        lines: i64,
    },
}

#[derive(Subcommand, Debug)]
enum InviteCommand {
    /// Make a one-time sign-up link; prints it once (only its digest is stored).
    Create {
        /// Only this address may use it.
        #[arg(long)]
        email: Option<String>,
        /// The account will be an administrator.
        #[arg(long)]
        admin: bool,
        /// Lifetime, e.g. 1h or 7d [default: signup.invite_lifetime].
        #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
}

#[derive(Subcommand, Debug)]
enum RegistrationTokenCommand {
    /// Mint an initial access token; prints it once (only its digest is stored).
    Create {
        /// Lifetime, e.g. 1h or 7d [default: no expiry].
        #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// How many registrations it allows [default: unlimited].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_uses: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// List signing keys with their state (next, active, retired, expired).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a new key: published at once, signing after keys.publish_lead; the key it
    /// replaces stays published until the tokens it signed have expired.
    Rotate {
        /// Rotate only this algorithm [default: all of ES256, RS256, EdDSA].
        #[arg(long, value_parser = parse_alg)]
        alg: Option<Alg>,
    },
}

fn parse_alg(s: &str) -> Result<Alg, String> {
    s.parse()
        .map_err(|e: latchkey_jwks::UnknownAlgError| e.to_string())
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user; prints {"id": ...}.
    Create {
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Mark the email address as verified.
        #[arg(long)]
        email_verified: bool,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// Disable a user: their sessions end, their refresh tokens, access tokens, unredeemed
    /// codes and approved device codes stop working, and they cannot sign in until enabled
    /// again (which brings none of those back).
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled user again (ended sessions and tokens stay ended).
    Enable {
        #[arg(long)]
        email: String,
    },
    /// List users as JSON lines, in id order.
    List {
        /// Only users whose address or name contains this.
        #[arg(long)]
        search: Option<String>,
        /// Start after this user id (the last one of the previous page).
        #[arg(long, value_name = "ID", allow_hyphen_values = true)]
        after: Option<String>,
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: i64,
    },
    /// Show one user as JSON, with their sign-in methods and live sessions counted.
    Show(WhichUser),
    /// Delete a user and everything that is theirs (sessions, grants and tokens, passkeys,
    /// authenticator app, devices, stream keys, personal data), in one transaction; the
    /// applications they used are told by back-channel logout.
    Delete(WhichUser),
    /// Make a user an administrator, or (with --off) not any more.
    SetAdmin {
        #[command(flatten)]
        which: WhichUser,
        #[arg(long)]
        off: bool,
    },
}

/// A user, by address or by id.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
struct WhichUser {
    #[arg(long)]
    email: Option<String>,
    /// User ids are base64url and may begin with `-`.
    #[arg(long, allow_hyphen_values = true)]
    id: Option<String>,
}

#[derive(Subcommand, Debug)]
enum ScimTokenCommand {
    /// Make a bearer credential for a provisioning client (an identity provider's SCIM
    /// connector); prints it once (only its digest is stored).
    Create {
        /// What it is for, e.g. okta; its events in the audit log name it (scim:<name>).
        #[arg(long)]
        name: String,
    },
    /// List the credentials as JSON lines: name, created, last used (never the credential).
    List,
    /// Delete the credentials of this name: the connector using them is refused at once.
    Delete {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum SessionCommand {
    /// List live browser sessions as JSON lines, most recently used first.
    List {
        /// Only this user's (id).
        #[arg(long, value_name = "ID", allow_hyphen_values = true)]
        user: Option<String>,
    },
    /// End a session by its id, or every session of a user with --user.
    Revoke {
        #[arg(allow_hyphen_values = true, required_unless_present = "user")]
        sid: Option<String>,
        #[arg(
            long,
            value_name = "ID",
            allow_hyphen_values = true,
            conflicts_with = "sid"
        )]
        user: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
// Parsed once per run: the size of `create`'s options does not matter.
#[allow(clippy::large_enum_variant)]
enum ClientCommand {
    /// Register a client; prints client_id, client_secret (confidential clients only, shown
    /// this once) and the registered metadata.
    Create {
        #[arg(long)]
        name: String,
        /// Redirect URI, exact string (repeat for several).
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// A public client (no secret; token_endpoint_auth_method none).
        #[arg(long)]
        public: bool,
        /// Grant type (repeat) [default: authorization_code and refresh_token].
        #[arg(long = "grant-type", value_enum, value_name = "G")]
        grant_types: Vec<GrantType>,
        /// Scope the client may ask for (repeat) [default: openid profile email
        /// offline_access for clients of the code flow, none otherwise].
        #[arg(long = "scope", value_name = "S")]
        scopes: Vec<String>,
        /// Client authentication at the token endpoint [default: client_secret_basic, or
        /// none with --public].
        #[arg(long, value_enum, value_name = "M")]
        token_endpoint_auth_method: Option<AuthMethod>,
        /// JWKS URL of the client's keys (for private_key_jwt).
        #[arg(long, value_name = "URL")]
        jwks_uri: Option<String>,
        /// A file holding the client's public JWKS (for private_key_jwt).
        #[arg(long, value_name = "FILE")]
        jwks_file: Option<PathBuf>,
        /// Where RP-initiated logout may send the user back (repeat for several).
        #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
        post_logout_redirect_uris: Vec<String>,
        /// Algorithm of this client's id_tokens [default: RS256].
        #[arg(long, value_name = "ALG")]
        id_token_signed_response_alg: Option<String>,
        /// A first-party client: users are not asked for consent.
        #[arg(long)]
        first_party: bool,
        /// RFC 9126: this client's authorization requests must be pushed to /par first.
        #[arg(long)]
        require_par: bool,
        /// RFC 9449: every token request of this client must carry a DPoP proof, so all its
        /// access tokens are DPoP-bound (`dpop_bound_access_tokens`).
        #[arg(long)]
        require_dpop: bool,
        /// RFC 9101: this client's authorization requests must be request objects signed with
        /// its keys (`--jwks-file` or `--jwks-uri`), `require_signed_request_object`.
        #[arg(long)]
        require_signed_request_object: bool,
        /// A security profile: `fapi2` (FAPI 2.0 Security Profile: needs
        /// `--token-endpoint-auth-method private_key_jwt` and keys; turns on PAR and DPoP;
        /// PS256, ES256 or EdDSA only; codes of at most 60 s).
        #[arg(long, value_name = "PROFILE")]
        profile: Option<Profile>,
        /// OpenID Connect Back-Channel Logout: where logout tokens are POSTed when a session
        /// in which this client got a grant ends (https).
        #[arg(long, value_name = "URI")]
        backchannel_logout_uri: Option<String>,
        /// The client needs `sid` in its logout tokens (they always carry it).
        #[arg(long)]
        backchannel_logout_session_required: bool,
        /// RFC 8693 impersonation: this client may exchange a user's token without an actor
        /// token, for a token that does not name the client in `act`.
        #[arg(long)]
        allow_impersonation: bool,
        /// A resource server (one of `tokens.resources`) this client may have tokens for,
        /// by RFC 8707 `resource` or RFC 8693 `audience` (repeat) [default: none, tokens are
        /// for the issuer only].
        #[arg(long = "resource", value_name = "URI")]
        resources: Vec<String>,
        /// A resource server (one of `tokens.resources`) this client is: users' tokens for it
        /// are meant for this client, which may exchange them by RFC 8693 (repeat).
        #[arg(long = "serves", value_name = "URI")]
        serves: Vec<String>,
    },
    /// List clients as JSON lines, in client_id order.
    List {
        #[arg(long, value_name = "CLIENT_ID", allow_hyphen_values = true)]
        after: Option<String>,
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: i64,
    },
    /// Show one client's metadata as JSON.
    Show {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Change a client's metadata; what is not given stays as it is. Repeated options replace
    /// the whole list.
    Update {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
        post_logout_redirect_uris: Vec<String>,
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        #[arg(long, value_name = "URI")]
        logo_uri: Option<String>,
        /// Skip (true) or show (false) the consent page.
        #[arg(long, value_name = "BOOL")]
        first_party: Option<bool>,
    },
    /// Delete a client: its grants are revoked and its consents removed.
    Delete {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Give a confidential client a new secret, printed once; with --grace the old one keeps
    /// working that long (e.g. 1h) while deployments switch over.
    RotateSecret {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
        grace: Option<std::time::Duration>,
    },
    /// Set the resource servers a client may have tokens for (--resource) and is (--serves),
    /// replacing both lists; prints the client's metadata. Other instances see the change
    /// within clients.cache_ttl.
    SetResources {
        /// Client ids are base64url and may begin with `-`.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        #[arg(long = "resource", value_name = "URI")]
        resources: Vec<String>,
        #[arg(long = "serves", value_name = "URI")]
        serves: Vec<String>,
    },
}

/// A failure to report in one line.
#[derive(Debug)]
pub enum CliError {
    Usage(clap::Error),
    Failed(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(e) => write!(f, "{e}"),
            CliError::Failed(m) => f.write_str(m),
        }
    }
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(
        e.to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("latchkey: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdin = std::io::BufReader::new(std::io::stdin());
    let mut stdout = std::io::stdout();
    match runtime.block_on(run(std::env::args_os(), &mut stdin, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(e)) => {
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
        }
        Err(e) => {
            eprintln!("latchkey: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `args` and runs the command. Tests call this in-process.
pub async fn run<I, T>(
    args: I,
    stdin: &mut (dyn BufRead + Send),
    stdout: &mut (dyn Write + Send),
) -> Result<(), CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(CliError::Usage)?;
    let g = cli.global;
    let overrides = Overrides {
        issuer: g.issuer,
        listen: g.listen,
        data_dir: g.data_dir,
        database_url: g.database_url,
        log_format: g.log_format,
    };
    let config = Config::load(g.config.as_deref(), &overrides).map_err(failed)?;
    init_logging(config.log_format);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    match cli.command {
        Command::Serve => serve(config, clock).await,
        Command::RegistrationToken(RegistrationTokenCommand::Create {
            expires_in,
            max_uses,
        }) => {
            let state = cli_state(config, clock).await?;
            let result = registration_token(&state, expires_in, max_uses, stdout).await;
            state.store.close().await;
            result
        }
        Command::User(UserCommand::Disable { email }) => {
            set_disabled(config, clock, &email, true, stdout).await
        }
        Command::User(UserCommand::Enable { email }) => {
            set_disabled(config, clock, &email, false, stdout).await
        }
        Command::Invite(InviteCommand::Create {
            email,
            admin,
            expires_in,
        }) => {
            let email = email
                .map(|e| validate_email(&e))
                .transpose()
                .map_err(failed)?;
            let lifetime = expires_in.unwrap_or(config.signup.invite_lifetime);
            let state = cli_state(config, clock).await?;
            let result =
                crate::signin::create_invite(&state.signin(), email.as_deref(), admin, lifetime)
                    .await;
            if let Ok((_, expires_at)) = &result {
                audit(
                    &state,
                    Event::new(EventType::InvitationCreated, Actor::Cli)
                        .details(json!({ "admin": admin, "expires_at": expires_at })),
                )
                .await;
            }
            state.store.close().await;
            let (url, expires_at) = result.map_err(failed)?;
            print_json(
                stdout,
                &json!({ "invite_url": url, "expires_at": expires_at }),
            )
        }
        Command::Migrate => {
            let url = config.database_url();
            if config.database_url.is_none() {
                std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                    failed(format!("data directory {}: {e}", config.data_dir.display()))
                })?;
            }
            let settings = PoolSettings {
                max_connections: 1,
                acquire_timeout: config.database.acquire_timeout,
            };
            let store = Store::open(&url, &settings)
                .await
                .map_err(|e| failed(format!("database {}: {e}", redact_url(&url))))?;
            store.close().await;
            eprintln!("migrations applied to {}", redact_url(&url));
            Ok(())
        }
        Command::Audit(AuditCommand::Tail {
            follow,
            user,
            client,
            kind,
            lines,
        }) => {
            let state = cli_state(config, clock).await?;
            let filter = crate::store::AuditFilter {
                subject: user,
                client_id: client,
                kind,
                ..Default::default()
            };
            let result = audit_tail(&state, filter, lines, follow, stdout).await;
            state.store.close().await;
            result
        }
        Command::Keys(cmd) => {
            let state = cli_state(config, clock).await?;
            let result = keys(&state, cmd, stdout).await;
            state.store.close().await;
            result
        }
        Command::User(UserCommand::Create {
            email,
            name,
            password_stdin,
            email_verified,
            admin,
        }) => {
            let email = validate_email(&email).map_err(failed)?;
            let password_hash = if password_stdin {
                let mut line = String::new();
                stdin
                    .read_line(&mut line)
                    .map_err(|e| failed(format!("reading the password: {e}")))?;
                let pw = line.trim_end_matches(['\r', '\n']).to_owned();
                let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
                    .await
                    .map_err(failed)?
                    .map_err(failed)?;
                Some(hash)
            } else {
                None
            };
            let state = cli_state(config, clock).await?;
            let id = random_token(16);
            let result = state
                .store
                .create_user(&NewUser {
                    id: &id,
                    email: &email,
                    email_verified,
                    name: name.as_deref().map(str::trim).filter(|n| !n.is_empty()),
                    password_hash: password_hash.as_deref(),
                    is_admin: admin,
                    now: state.clock.now(),
                })
                .await
                .map_err(failed);
            if result.is_ok() {
                audit(
                    &state,
                    Event::new(EventType::UserCreated, Actor::Cli)
                        .subject(&id)
                        .details(json!({ "admin": admin })),
                )
                .await;
            }
            state.store.close().await;
            result?;
            print_json(stdout, &json!({ "id": id }))
        }
        Command::User(
            cmd @ (UserCommand::List { .. }
            | UserCommand::Show(_)
            | UserCommand::Delete(_)
            | UserCommand::SetAdmin { .. }),
        ) => {
            let state = cli_state(config, clock).await?;
            let result = users(&state, cmd, stdout).await;
            state.store.close().await;
            result
        }
        Command::Client(
            cmd @ (ClientCommand::List { .. }
            | ClientCommand::Show { .. }
            | ClientCommand::Update { .. }
            | ClientCommand::Delete { .. }
            | ClientCommand::RotateSecret { .. }),
        ) => {
            let state = cli_state(config, clock).await?;
            let result = clients(&state, cmd, stdout).await;
            state.store.close().await;
            result
        }
        Command::ScimToken(ScimTokenCommand::Create { name }) => {
            let name = name.trim().to_owned();
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(failed(
                    "--name must be 1 to 64 letters, digits, '-', '_' or '.'",
                ));
            }
            let state = cli_state(config, clock).await?;
            let token = format!("lkscim_{}", random_token(32));
            let digest = state.pepper.digest(Purpose::ScimToken, token.as_bytes());
            let result = state
                .store
                .create_scim_token(&digest, &name, state.clock.now())
                .await
                .map_err(failed);
            if result.is_ok() {
                audit(
                    &state,
                    Event::new(EventType::ScimTokenCreated, Actor::Cli)
                        .details(json!({ "name": name })),
                )
                .await;
            }
            state.store.close().await;
            result?;
            print_json(stdout, &json!({ "scim_token": token, "name": name }))
        }
        Command::ScimToken(ScimTokenCommand::List) => {
            let state = cli_state(config, clock).await?;
            let result = state.store.scim_tokens().await.map_err(failed);
            state.store.close().await;
            for (name, created_at, last_used_at) in result? {
                print_json(
                    stdout,
                    &json!({ "name": name, "created_at": created_at, "last_used_at": last_used_at }),
                )?;
            }
            Ok(())
        }
        Command::ScimToken(ScimTokenCommand::Delete { name }) => {
            let state = cli_state(config, clock).await?;
            let result = state.store.delete_scim_tokens(&name).await.map_err(failed);
            if let Ok(n) = &result {
                audit(
                    &state,
                    Event::new(EventType::ScimTokenDeleted, Actor::Cli)
                        .details(json!({ "name": name, "deleted": n })),
                )
                .await;
            }
            state.store.close().await;
            let n = result?;
            if n == 0 {
                return Err(failed(format!("no SCIM credential named {name}")));
            }
            print_json(stdout, &json!({ "name": name, "deleted": n }))
        }
        Command::ApiKey(cmd) => {
            let state = cli_state(config, clock).await?;
            let result = api_keys(&state, cmd, stdout).await;
            state.store.close().await;
            result
        }
        Command::ServiceAccount(ServiceAccountCommand::Create { name, owner }) => {
            let state = cli_state(config, clock).await?;
            let result = async {
                let owner = state
                    .store
                    .active_user_by_email(&owner)
                    .await
                    .map_err(failed)?
                    .ok_or_else(|| failed("no enabled user has that --owner address"))?;
                let id = state
                    .admin(Actor::Cli, crate::audit::Origin::default())
                    .create_service_account(&name, &owner.id)
                    .await
                    .map_err(admin_failed)?;
                print_json(
                    stdout,
                    &json!({ "id": id, "name": name, "owner": owner.id }),
                )
            }
            .await;
            state.store.close().await;
            result
        }
        Command::Session(cmd) => {
            let state = cli_state(config, clock).await?;
            let result = sessions(&state, cmd, stdout).await;
            state.store.close().await;
            result
        }
        Command::Client(ClientCommand::SetResources {
            client_id,
            resources,
            serves,
        }) => {
            configured_resources(&config, &resources, &serves)?;
            let state = cli_state(config, clock).await?;
            let result = set_resources(&state, &client_id, resources, serves, stdout).await;
            state.store.close().await;
            result
        }
        Command::Client(ClientCommand::Create {
            name,
            redirect_uris,
            public,
            grant_types,
            scopes,
            token_endpoint_auth_method,
            jwks_uri,
            jwks_file,
            post_logout_redirect_uris,
            id_token_signed_response_alg,
            first_party,
            require_par,
            require_dpop,
            require_signed_request_object,
            backchannel_logout_uri,
            backchannel_logout_session_required,
            profile,
            allow_impersonation,
            resources,
            serves,
        }) => {
            configured_resources(&config, &resources, &serves)?;
            let jwks = match jwks_file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| failed(format!("{}: {e}", path.display())))?;
                    Some(
                        serde_json::from_str(&text)
                            .map_err(|e| failed(format!("{}: {e}", path.display())))?,
                    )
                }
                None => None,
            };
            let method = match (public, token_endpoint_auth_method) {
                (true, None | Some(AuthMethod::None)) => AuthMethod::None,
                (true, Some(_)) => {
                    return Err(failed(
                        "--public clients use token_endpoint_auth_method none",
                    ));
                }
                (false, Some(m)) => m,
                (false, None) => AuthMethod::ClientSecretBasic,
            };
            let grant_types = if grant_types.is_empty() {
                vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
            } else {
                grant_types
            };
            let scope = if scopes.is_empty() && grant_types.contains(&GrantType::AuthorizationCode)
            {
                "openid profile email offline_access".to_owned()
            } else {
                scopes.join(" ")
            };
            let metadata = ClientMetadata {
                client_name: name,
                redirect_uris,
                grant_types,
                response_types: Vec::new(),
                token_endpoint_auth_method: method,
                scope,
                jwks_uri,
                jwks,
                post_logout_redirect_uris,
                id_token_signed_response_alg,
                logo_uri: None,
                policy_uri: None,
                tos_uri: None,
                first_party,
                require_pushed_authorization_requests: require_par,
                dpop_bound_access_tokens: require_dpop,
                require_signed_request_object,
                backchannel_logout_uri,
                backchannel_logout_session_required,
                profile: profile.map(|Profile::Fapi2| crate::oauth::client::Profile::Fapi2),
                token_exchange_impersonation: allow_impersonation,
                resources,
                serves,
            }
            .validate()
            .map_err(failed)?;
            let state = cli_state(config, clock).await?;
            let result = create_client(&state, metadata, stdout).await;
            state.store.close().await;
            result
        }
    }
}

async fn registration_token(
    state: &AppState,
    expires_in: Option<std::time::Duration>,
    max_uses: Option<u32>,
    stdout: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let expires_at = expires_in.map(|d| state.clock.now() + crate::state::secs(d));
    let token = state
        .admin(Actor::Cli, crate::audit::Origin::default())
        .create_registration_token(expires_at, max_uses.map(i64::from))
        .await
        .map_err(failed)?;
    print_json(
        stdout,
        &json!({ "initial_access_token": token, "expires_at": expires_at, "max_uses": max_uses }),
    )
}

async fn serve(config: Config, clock: Arc<dyn Clock>) -> Result<(), CliError> {
    let listen = config.listen;
    let issuer = config.issuer.clone();
    let state = AppState::build(config, clock).await.map_err(failed)?;
    let store = state.store.clone();
    // The setup link is a credential: printed for the operator on stderr, never logged.
    if let Some((url, _)) = crate::signin::setup_link(&state.signin())
        .await
        .map_err(failed)?
    {
        eprintln!(
            "\nNo administrator yet. Open this one-time link to create one and enrol a passkey\n(valid {}, and only until the next start):\n\n    {url}\n",
            humantime::format_duration(state.config.signup.invite_lifetime)
        );
    }
    let running = crate::server::start(state, listen, true)
        .await
        .map_err(failed)?;
    tracing::info!(addr = %running.addr, %issuer, "latchkey is listening");
    let result = running.wait().await.map_err(failed);
    store.close().await;
    tracing::info!("stopped");
    result
}

async fn set_disabled(
    config: Config,
    clock: Arc<dyn Clock>,
    email: &str,
    disabled: bool,
    stdout: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let state = cli_state(config, clock).await?;
    let result = async {
        let user = state
            .store
            .user_by_email(email)
            .await
            .map_err(failed)?
            .ok_or_else(|| failed(format!("no user with the email {email}")))?;
        state
            .admin(Actor::Cli, crate::audit::Origin::default())
            .set_disabled(&user.id, disabled)
            .await
            .map_err(admin_failed)?;
        Ok::<_, CliError>(user.id)
    }
    .await;
    state.store.close().await;
    let id = result?;
    print_json(stdout, &json!({ "id": id, "disabled": disabled }))
}

async fn keys(
    state: &AppState,
    cmd: KeysCommand,
    stdout: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let now = state.clock.now();
    match cmd {
        KeysCommand::List { json } => {
            let statuses = state.keys.statuses(now).await.map_err(failed)?;
            if json {
                let rows: Vec<_> = statuses
                    .iter()
                    .map(|s| {
                        json!({
                            "kid": s.kid, "alg": s.alg.as_str(), "state": s.state.as_str(),
                            "created_at": s.created_at, "activates_at": s.activates_at,
                            "retired_at": s.retired_at, "unpublish_at": s.unpublish_at,
                        })
                    })
                    .collect();
                print_json(stdout, &json!(rows))
            } else {
                let mut out = format!(
                    "{:<45} {:<6} {:<8} {:>12}\n",
                    "KID", "ALG", "STATE", "ACTIVATES_AT"
                );
                for s in &statuses {
                    out.push_str(&format!(
                        "{:<45} {:<6} {:<8} {:>12}\n",
                        s.kid,
                        s.alg.as_str(),
                        s.state.as_str(),
                        s.activates_at
                    ));
                }
                stdout.write_all(out.as_bytes()).map_err(failed)
            }
        }
        KeysCommand::Rotate { alg } => {
            let algs = alg.map_or_else(|| Alg::ALL.to_vec(), |a| vec![a]);
            let created = state
                .admin(Actor::Cli, crate::audit::Origin::default())
                .rotate_keys(&algs)
                .await
                .map_err(failed)?;
            print_json(stdout, &json!({ "created": created }))
        }
    }
}

/// Resource servers given to a client must be configured ones.
fn configured_resources(
    config: &Config,
    resources: &[String],
    serves: &[String],
) -> Result<(), CliError> {
    for (flag, list) in [("--resource", resources), ("--serves", serves)] {
        if let Some(r) = list.iter().find(|r| !config.tokens.resources.contains(r)) {
            return Err(failed(format!(
                "{flag} {r} is not in tokens.resources of the configuration"
            )));
        }
    }
    Ok(())
}

async fn set_resources(
    state: &AppState,
    client_id: &str,
    resources: Vec<String>,
    serves: Vec<String>,
    stdout: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let stored = state
        .store
        .client_by_id(client_id)
        .await
        .map_err(failed)?
        .ok_or_else(|| failed(format!("no client with the id {client_id}")))?;
    let mut metadata: ClientMetadata = serde_json::from_str(&stored.metadata).map_err(failed)?;
    metadata.resources = resources;
    metadata.serves = serves;
    let metadata = metadata.validate().map_err(failed)?;
    let json = serde_json::to_string(&metadata).map_err(failed)?;
    let updated = state
        .store
        .update_client_metadata(client_id, &json, state.clock.now())
        .await
        .map_err(failed)?;
    if !updated {
        return Err(failed(format!("no client with the id {client_id}")));
    }
    audit(
        state,
        Event::new(EventType::ClientUpdated, Actor::Cli)
            .client(client_id)
            .details(json!({ "resources": metadata.resources, "serves": metadata.serves })),
    )
    .await;
    let mut out = serde_json::to_value(&metadata).map_err(failed)?;
    if let Some(obj) = out.as_object_mut() {
        obj.insert("client_id".into(), json!(client_id));
    }
    print_json(stdout, &out)
}

async fn create_client(
    state: &AppState,
    metadata: ClientMetadata,
    stdout: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let now = state.clock.now();
    let (client_id, secret) = state
        .clients()
        .create(&metadata, crate::oauth::client::ClientOrigin::Registered)
        .await
        .map_err(failed)?;
    audit(
        state,
        Event::new(EventType::ClientCreated, Actor::Cli)
            .client(&client_id)
            .details(json!({ "client_name": metadata.client_name })),
    )
    .await;
    // RFC 7591 §3.2.1 response shape.
    let mut out = serde_json::to_value(&metadata).map_err(failed)?;
    if let Some(obj) = out.as_object_mut() {
        obj.insert("client_id".into(), json!(client_id));
        obj.insert("client_id_issued_at".into(), json!(now));
        if let Some(secret) = &secret {
            obj.insert("client_secret".into(), json!(secret.expose()));
            obj.insert("client_secret_expires_at".into(), json!(0));
        }
    }
    print_json(stdout, &out)
}

/// The server's state for one command. Its audit events go to the database (and a file sink),
/// never to stdout, which carries the command's answer.
async fn cli_state(mut config: Config, clock: Arc<dyn Clock>) -> Result<AppState, CliError> {
    // A sink file this operator cannot write does not keep them from working: the events
    // still go to the database.
    if let Some(path) = config.audit.sink.as_deref().filter(|p| *p != "stdout")
        && let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        eprintln!("audit.sink {path}: {e}; events of this command go to the database only");
        config.audit.sink = None;
    }
    let mut state = AppState::build(config, clock).await.map_err(failed)?;
    state.audit = state.audit.without_stdout();
    Ok(state)
}

/// `audit tail`: the newest `lines` events, then (with `follow`) each new one, polling the
/// database once a second.
async fn audit_tail(
    state: &AppState,
    mut filter: crate::store::AuditFilter,
    lines: i64,
    follow: bool,
    stdout: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    // Ids are random and an event's time is taken when its request began, so a cursor on
    // (time, id) would skip events committed late or out of order: each poll reads a window
    // reaching back LOOKBACK seconds and prints what it has not printed yet.
    const LOOKBACK: i64 = 30;
    let mut printed: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut newest = state.clock.now() - 1;
    let mut batch = if lines > 0 {
        state
            .store
            .audit_events(&filter, lines)
            .await
            .map_err(failed)?
    } else {
        Vec::new()
    };
    loop {
        for e in &batch {
            if printed.contains_key(&e.id) {
                continue;
            }
            print_json(stdout, &serde_json::to_value(e).map_err(failed)?)?;
            printed.insert(e.id.clone(), e.at);
            newest = newest.max(e.at);
        }
        stdout.flush().map_err(failed)?;
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = state.clock.now();
        newest = newest.max(now - LOOKBACK);
        filter.since = Some(newest - LOOKBACK);
        printed.retain(|_, at| *at >= newest - LOOKBACK);
        batch = state
            .store
            .audit_events(&filter, 1000)
            .await
            .map_err(failed)?;
    }
}

/// The user `which` names.
async fn which_user(state: &AppState, which: &WhichUser) -> Result<crate::store::User, CliError> {
    let found = match (&which.email, &which.id) {
        (Some(email), _) => state.store.user_by_email(email).await,
        (None, Some(id)) => state.store.user_by_id(id).await,
        (None, None) => return Err(failed("give --email or --id")),
    }
    .map_err(failed)?;
    found.ok_or_else(|| failed("no such user"))
}

fn admin_failed(e: crate::admin::AdminError) -> CliError {
    match e {
        crate::admin::AdminError::NotFound => failed("no such user, client or session"),
        other => failed(other),
    }
}

async fn api_keys(
    state: &AppState,
    cmd: ApiKeyCommand,
    stdout: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let admin = state.admin(Actor::Cli, crate::audit::Origin::default());
    match cmd {
        ApiKeyCommand::Create {
            which,
            name,
            scope,
            resource,
            expires_in,
        } => {
            let u = which_user(state, &which).await?;
            let made = admin
                .create_api_key(
                    &u.id,
                    "cli",
                    &crate::api_keys::KeyRequest {
                        name: &name,
                        scope: &scope,
                        resource: resource.as_deref(),
                        lifetime: expires_in,
                        // set by admin::Admin::create_api_key from who is asking
                        admin_scopes: false,
                    },
                )
                .await
                .map_err(admin_failed)?;
            print_json(
                stdout,
                &json!({
                    "key": made.key,
                    "id": made.id,
                    "user": u.id,
                    "scope": made.scope,
                    "expires_at": made.expires_at,
                }),
            )
        }
        ApiKeyCommand::List { which } => {
            let u = which_user(state, &which).await?;
            let keys = state
                .store
                .api_keys_of(&u.id, state.clock.now())
                .await
                .map_err(failed)?;
            for k in &keys {
                print_json(stdout, &crate::admin::api_key_json(k))?;
            }
            Ok(())
        }
        ApiKeyCommand::Revoke { which, key } => {
            let u = which_user(state, &which).await?;
            admin
                .revoke_api_key(&u.id, &key)
                .await
                .map_err(admin_failed)?;
            print_json(stdout, &json!({ "id": key, "revoked": true }))
        }
    }
}

async fn users(
    state: &AppState,
    cmd: UserCommand,
    stdout: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let admin = state.admin(Actor::Cli, crate::audit::Origin::default());
    match cmd {
        UserCommand::List {
            search,
            after,
            limit,
        } => {
            let list = state
                .store
                .list_users(search.as_deref(), after.as_deref(), limit)
                .await
                .map_err(failed)?;
            for u in &list {
                print_json(stdout, &crate::admin::user_json(u))?;
            }
            Ok(())
        }
        UserCommand::Show(which) => {
            let u = which_user(state, &which).await?;
            let out = admin.user_details(&u).await.map_err(failed)?;
            print_json(stdout, &out)
        }
        UserCommand::Delete(which) => {
            let u = which_user(state, &which).await?;
            admin.delete_user(&u.id).await.map_err(admin_failed)?;
            print_json(stdout, &json!({ "id": u.id, "deleted": true }))
        }
        UserCommand::SetAdmin { which, off } => {
            let u = which_user(state, &which).await?;
            admin.set_admin(&u.id, !off).await.map_err(admin_failed)?;
            print_json(stdout, &json!({ "id": u.id, "admin": !off }))
        }
        UserCommand::Create { .. } | UserCommand::Disable { .. } | UserCommand::Enable { .. } => {
            Err(failed("not handled here"))
        }
    }
}

async fn clients(
    state: &AppState,
    cmd: ClientCommand,
    stdout: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let admin = state.admin(Actor::Cli, crate::audit::Origin::default());
    let stored = |id: String| async move {
        state
            .store
            .client_by_id(&id)
            .await
            .map_err(failed)?
            .ok_or_else(|| failed(format!("no client with the id {id}")))
    };
    match cmd {
        ClientCommand::List { after, limit } => {
            for c in state
                .store
                .list_clients(after.as_deref(), limit)
                .await
                .map_err(failed)?
            {
                let m = crate::admin::client_json(&c).map_err(failed)?;
                print_json(
                    stdout,
                    &json!({
                        "client_id": c.client_id,
                        "client_name": m["client_name"],
                        "origin": m["origin"],
                        "token_endpoint_auth_method": m["token_endpoint_auth_method"],
                        "grant_types": m["grant_types"],
                        "client_id_issued_at": c.created_at,
                    }),
                )?;
            }
            Ok(())
        }
        ClientCommand::Show { client_id } => {
            let c = stored(client_id).await?;
            print_json(stdout, &crate::admin::client_json(&c).map_err(failed)?)
        }
        ClientCommand::Update {
            client_id,
            name,
            redirect_uris,
            post_logout_redirect_uris,
            scopes,
            logo_uri,
            first_party,
        } => {
            let c = stored(client_id.clone()).await?;
            let mut m: ClientMetadata = serde_json::from_str(&c.metadata).map_err(failed)?;
            let mut changed = Vec::new();
            if let Some(n) = name {
                m.client_name = n;
                changed.push("client_name");
            }
            if !redirect_uris.is_empty() {
                m.redirect_uris = redirect_uris;
                changed.push("redirect_uris");
            }
            if !post_logout_redirect_uris.is_empty() {
                m.post_logout_redirect_uris = post_logout_redirect_uris;
                changed.push("post_logout_redirect_uris");
            }
            if !scopes.is_empty() {
                m.scope = scopes.join(" ");
                changed.push("scope");
            }
            if let Some(l) = logo_uri {
                m.logo_uri = Some(l);
                changed.push("logo_uri");
            }
            if let Some(f) = first_party {
                m.first_party = f;
                changed.push("first_party");
            }
            if changed.is_empty() {
                return Err(failed("nothing to change: give at least one option"));
            }
            admin
                .update_client(&client_id, m, &changed)
                .await
                .map_err(admin_failed)?;
            let c = stored(client_id).await?;
            print_json(stdout, &crate::admin::client_json(&c).map_err(failed)?)
        }
        ClientCommand::Delete { client_id } => {
            admin
                .delete_client(&client_id)
                .await
                .map_err(admin_failed)?;
            print_json(stdout, &json!({ "client_id": client_id, "deleted": true }))
        }
        ClientCommand::RotateSecret { client_id, grace } => {
            let grace = grace.map_or(0, |g| i64::try_from(g.as_secs()).unwrap_or(i64::MAX));
            if grace > 30 * 86_400 {
                return Err(failed("--grace is at most 30 days"));
            }
            let (secret, until) = admin.rotate_secret(&client_id, grace).await.map_err(
                |e| match e {
                    crate::admin::AdminError::NotFound => failed(
                        "no such client, or it has no secret (a public or private_key_jwt client)",
                    ),
                    other => failed(other),
                },
            )?;
            print_json(
                stdout,
                &json!({
                    "client_id": client_id,
                    "client_secret": secret.expose(),
                    "previous_secret_expires_at": until,
                }),
            )
        }
        ClientCommand::Create { .. } | ClientCommand::SetResources { .. } => {
            Err(failed("not handled here"))
        }
    }
}

async fn sessions(
    state: &AppState,
    cmd: SessionCommand,
    stdout: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let admin = state.admin(Actor::Cli, crate::audit::Origin::default());
    match cmd {
        SessionCommand::List { user } => {
            let list = state
                .store
                .list_sessions(user.as_deref(), state.clock.now(), 10_000)
                .await
                .map_err(failed)?;
            for s in &list {
                print_json(stdout, &serde_json::to_value(s).map_err(failed)?)?;
            }
            Ok(())
        }
        SessionCommand::Revoke { sid: Some(sid), .. } => {
            admin.end_session(&sid).await.map_err(admin_failed)?;
            print_json(stdout, &json!({ "sid": sid, "ended": true }))
        }
        SessionCommand::Revoke {
            sid: None,
            user: Some(user),
        } => {
            let n = admin.end_sessions_of(&user).await.map_err(admin_failed)?;
            print_json(stdout, &json!({ "user": user, "ended": n }))
        }
        SessionCommand::Revoke {
            sid: None,
            user: None,
        } => Err(failed("give a session id or --user")),
    }
}

/// Records what a command did (actor `cli`).
async fn audit(state: &AppState, e: crate::audit::Event<'_>) {
    state.audit.note(state.clock.now(), e).await;
}

fn print_json(stdout: &mut (dyn Write + Send), value: &serde_json::Value) -> Result<(), CliError> {
    writeln!(stdout, "{value}").map_err(failed)
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LATCHKEY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,poem=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second call (tests run several commands in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_that_begins_with_a_hyphen_is_taken_as_the_id() {
        let cli = Cli::try_parse_from([
            "latchkey",
            "client",
            "set-resources",
            "-mX2vQ9",
            "--resource",
            "https://api.example.com",
        ])
        .unwrap();
        let Command::Client(ClientCommand::SetResources {
            client_id,
            resources,
            ..
        }) = cli.command
        else {
            panic!("parsed as another command");
        };
        assert_eq!(client_id, "-mX2vQ9");
        assert_eq!(resources, ["https://api.example.com"]);
    }
}
