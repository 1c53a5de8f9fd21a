//! Configuration: built-in defaults, then one TOML file, then `LATCHKEY_*` environment
//! variables (`__` separates sections: `LATCHKEY_KEYS__PUBLISH_LEAD=15m`), then command-line
//! options. Validated once at start; unknown keys are errors that name the key.
//!
//! Knobs that weaken security are named `danger_*`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use url::Url;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn invalid(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("config key `{key}`: {why}"))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The configuration as read: built-in defaults, then the TOML file, the environment and the
/// command line, merged by figment and deserialised with unknown keys refused. Not used by
/// the server until [`Config::validate`] has turned it into a [`Config`].
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// The issuer identifier: the URL relying parties compare tokens and discovery against.
    pub issuer: String,
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Where the embedded database and generated secrets live.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; defaults to `<data_dir>/latchkey.db`.
    pub database_url: Option<String>,
    pub log_format: LogFormat,
    /// Allow an `http://` issuer on a non-loopback host. Tokens and cookies then cross the
    /// network in clear: for a lab behind a TLS-terminating proxy that rewrites nothing, only.
    pub danger_allow_insecure_issuer: bool,
    /// Let clients' `jwks_uri` resolve to loopback or private addresses. The server then fetches
    /// URLs a registrant chose inside your network (SSRF): only for closed test setups.
    pub danger_allow_private_jwks_uri: bool,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub secrets: SecretsConfig,
    pub keys: KeysConfig,
    pub tokens: TokensConfig,
    pub sessions: SessionsConfig,
    pub signin: SigninConfig,
    pub passkeys: PasskeysConfig,
    pub signup: SignupConfig,
    pub registration: RegistrationConfig,
    pub clients: ClientsConfig,
    pub mail: MailConfig,
    pub exchange: ExchangeConfig,
    pub outbound: OutboundConfig,
    pub par: ParConfig,
    pub dpop: DpopConfig,
    pub backchannel_logout: BackchannelLogoutConfig,
    pub client_id_metadata: ClientIdMetadataConfig,
    pub audit: AuditConfig,
    pub forward_auth: ForwardAuthConfig,
    pub api_keys: ApiKeysConfig,
}

/// Forward-auth for reverse proxies (`GET /forward-auth`): which hosts are protected, by
/// whom, and the cookie their browsers carry. Off until `rules` name a host.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuthConfig {
    /// The parent domain the forward-auth cookie is set on (`example.com`): the issuer's host
    /// and every protected host must be in it. Required when there are rules.
    pub cookie_domain: Option<String>,
    /// The cookie's name (`__Secure-` is put before it on an https issuer).
    pub cookie_name: String,
    /// The names of the identity headers a 200 carries.
    pub headers: ForwardAuthHeaders,
    /// The protected hosts, first match wins; a host no rule matches is refused (403).
    pub rules: Vec<ForwardAuthRule>,
    /// How long an instance may reuse a check's session lookup (`0s`: read the database on
    /// every check). Over `0s`, a change (a sign-out, an ended or expired session, a disabled
    /// user, a changed group) is seen up to this late; a browser signing out, or a user ending
    /// their sessions on the account page, through this instance is seen by it at once. At
    /// most 60s.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for ForwardAuthConfig {
    fn default() -> Self {
        Self {
            cookie_domain: None,
            cookie_name: "latchkey_forward_auth".into(),
            headers: ForwardAuthHeaders::default(),
            rules: Vec::new(),
            cache_ttl: Duration::ZERO,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuthHeaders {
    /// The user's email address (the user id when there is none to give).
    pub user: String,
    pub email: String,
    pub name: String,
    /// The user's groups (SCIM groups), comma-separated.
    pub groups: String,
    /// The user's stable id (the `sub` of their tokens).
    pub id: String,
}

impl Default for ForwardAuthHeaders {
    fn default() -> Self {
        Self {
            user: "Remote-User".into(),
            email: "Remote-Email".into(),
            name: "Remote-Name".into(),
            groups: "Remote-Groups".into(),
            id: "Remote-Id".into(),
        }
    }
}

/// One protected host (or host glob) and who may use it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthRule {
    /// Host names or globs (`*.tools.example.com`), without port; compared without case.
    pub hosts: Vec<String>,
    /// The rule applies to paths under this prefix (default `/`: the whole host).
    #[serde(default = "root_path")]
    pub path_prefix: String,
    /// How the user must have signed in.
    #[serde(default)]
    pub policy: ForwardAuthPolicy,
    /// Who may pass: members of any of these groups, or these users (email or id). Both
    /// empty: every signed-in user.
    #[serde(default)]
    pub allow_groups: Vec<String>,
    #[serde(default)]
    pub allow_users: Vec<String>,
    /// Path prefixes answered 200 without a session (health checks, public assets).
    #[serde(default)]
    pub bypass: Vec<String>,
}

fn root_path() -> String {
    "/".into()
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ForwardAuthPolicy {
    /// Any sign-in.
    #[default]
    OneFactor,
    /// A password and a second factor, or a passkey.
    TwoFactor,
    /// A passkey.
    Passkey,
}

/// Personal API keys.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// The longest lifetime a key may be given; `0s`: keys may be made without expiry.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// How many live keys one user may hold.
    pub max_per_user: u32,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        Self {
            max_lifetime: Duration::ZERO,
            max_per_user: 50,
        }
    }
}

/// The audit log (`audit_events`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Events older than this are deleted by housekeeping; `0s` keeps them.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Also write every event as a JSON line: `"stdout"` or a file path (appended to).
    pub sink: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(90 * 24 * 60 * 60),
            sink: None,
        }
    }
}

/// Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document): a client
/// whose `client_id` is an https URL is known by the JSON metadata served there, fetched
/// under the outbound rules and cached in the database.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientIdMetadataConfig {
    /// Accept such clients at all (discovery's `client_id_metadata_document_supported`).
    pub enabled: bool,
    /// Hosts whose documents are accepted (globs: `*.example.com`, `tools.example.org`);
    /// empty means every host not denied.
    pub allow_hosts: Vec<String>,
    /// Hosts whose documents are refused, whatever `allow_hosts` says (globs).
    pub deny_hosts: Vec<String>,
    /// A document is used at least this long after it was fetched, whatever its
    /// `Cache-Control` says (and this long when it says nothing).
    #[serde(with = "humantime_serde")]
    pub min_cache: Duration,
    /// ... and at most this long.
    #[serde(with = "humantime_serde")]
    pub max_cache: Duration,
    /// How long a fetch may take, connection included.
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// The largest document read, in bytes (the draft suggests 5 kB).
    pub max_bytes: usize,
    /// Also fetch http:// URLs and loopback addresses (never other private ones): only for
    /// labs and tests, where the client runs on this machine.
    pub danger_allow_http_and_loopback: bool,
}

impl Default for ClientIdMetadataConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_hosts: Vec::new(),
            deny_hosts: Vec::new(),
            min_cache: Duration::from_secs(5 * 60),
            max_cache: Duration::from_secs(24 * 60 * 60),
            fetch_timeout: Duration::from_secs(5),
            max_bytes: 5 * 1024,
            danger_allow_http_and_loopback: false,
        }
    }
}

/// OpenID Connect Back-Channel Logout 1.0 deliveries.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackchannelLogoutConfig {
    /// Attempts per logout before it is given up (logged and counted); the waits between
    /// them double from 5 s, capped at an hour.
    pub max_attempts: u32,
    /// Also post to http:// and private or loopback addresses: only for closed test setups.
    pub danger_allow_insecure_uri: bool,
}

impl Default for BackchannelLogoutConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            danger_allow_insecure_uri: false,
        }
    }
}

/// RFC 9449 DPoP proofs, at `/token`, `/par` and where access tokens are presented.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    /// Require server-provided nonces in proofs (RFC 9449 §8, §9): a proof without a current
    /// nonce is answered `use_dpop_nonce` with a fresh one in `DPoP-Nonce`.
    pub require_nonce: bool,
    /// How long a nonce we hand out stays valid: between this and twice this. Nonces are an
    /// HMAC of the time window under the pepper, so every instance accepts every other's.
    #[serde(with = "humantime_serde")]
    pub nonce_lifetime: Duration,
    /// How far a proof's `iat` may lie from our clock, either way; a proof's `jti` is
    /// remembered (in the database) for that long, so a replay is refused by every instance.
    #[serde(with = "humantime_serde")]
    pub proof_window: Duration,
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            require_nonce: false,
            nonce_lifetime: Duration::from_secs(5 * 60),
            proof_window: Duration::from_secs(60),
        }
    }
}

/// RFC 9126 pushed authorization requests.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParConfig {
    /// Every client's authorization requests must be pushed to `/par` first (discovery's
    /// `require_pushed_authorization_requests`); otherwise only those of clients registered so.
    pub required: bool,
}

/// Outbound TLS: what Latchkey trusts when it connects out (JWKS fetches, SMTP).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// A PEM file of extra trust anchors (CA certificates), trusted beside the system's for
    /// every outbound TLS connection: a private CA for an internal issuer's `jwks_uri` or an
    /// internal mail relay. Certificates are still verified, host names included.
    pub extra_ca_file: Option<PathBuf>,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            issuer: DEFAULT_ISSUER.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./latchkey-data"),
            database_url: None,
            log_format: LogFormat::Text,
            danger_allow_insecure_issuer: false,
            danger_allow_private_jwks_uri: false,
            database: DatabaseConfig::default(),
            http: HttpConfig::default(),
            secrets: SecretsConfig::default(),
            keys: KeysConfig::default(),
            tokens: TokensConfig::default(),
            sessions: SessionsConfig::default(),
            signin: SigninConfig::default(),
            passkeys: PasskeysConfig::default(),
            mail: MailConfig::default(),
            signup: SignupConfig::default(),
            registration: RegistrationConfig::default(),
            clients: ClientsConfig::default(),
            exchange: ExchangeConfig::default(),
            outbound: OutboundConfig::default(),
            par: ParConfig::default(),
            dpop: DpopConfig::default(),
            backchannel_logout: BackchannelLogoutConfig::default(),
            client_id_metadata: ClientIdMetadataConfig::default(),
            audit: AuditConfig::default(),
            forward_auth: ForwardAuthConfig::default(),
            api_keys: ApiKeysConfig::default(),
        }
    }
}

/// The issuer identifier (RFC 8414 §2, OIDC Discovery §3): an https URL (http only on a
/// loopback host or with `danger_allow_insecure_issuer`), without a trailing slash, no query or
/// fragment. Made only by [`Config::validate`]; compared and printed as the string it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issuer(String);

impl Issuer {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Issuer {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Issuer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl PartialEq<str> for Issuer {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Issuer {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Issuer {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<Issuer> for String {
    fn eq(&self, other: &Issuer) -> bool {
        *self == other.0
    }
}

impl PartialEq<Issuer> for str {
    fn eq(&self, other: &Issuer) -> bool {
        self == other.0
    }
}

impl PartialEq<Issuer> for &str {
    fn eq(&self, other: &Issuer) -> bool {
        *self == other.0
    }
}

/// The configuration the server runs with: made from a [`RawConfig`] by [`Config::validate`]
/// only, so holding one means every rule held. Values are the raw ones, checked, with what is
/// derived from them (the issuer normalised, proxy networks parsed, trusted issuers' keys read).
#[derive(Clone, Debug)]
pub struct Config {
    /// The issuer identifier: the URL relying parties compare tokens and discovery against.
    pub issuer: Issuer,
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Where the embedded database and generated secrets live.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; defaults to `<data_dir>/latchkey.db`.
    pub database_url: Option<String>,
    pub log_format: LogFormat,
    /// Allow an `http://` issuer on a non-loopback host. Tokens and cookies then cross the
    /// network in clear: for a lab behind a TLS-terminating proxy that rewrites nothing, only.
    pub danger_allow_insecure_issuer: bool,
    /// Let clients' `jwks_uri` resolve to loopback or private addresses. The server then fetches
    /// URLs a registrant chose inside your network (SSRF): only for closed test setups.
    pub danger_allow_private_jwks_uri: bool,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub secrets: SecretsConfig,
    pub keys: KeysConfig,
    pub tokens: TokensConfig,
    pub sessions: SessionsConfig,
    pub signin: SigninConfig,
    pub passkeys: PasskeysConfig,
    pub signup: SignupConfig,
    pub registration: RegistrationConfig,
    pub clients: ClientsConfig,
    pub mail: MailConfig,
    /// Every trusted issuer checked, its inline `jwks` parsed and its `audiences` defaulted to
    /// our issuer.
    pub exchange: ExchangeConfig,
    /// `http.trusted_proxies`, parsed.
    pub trusted_proxy_nets: Vec<ipnet::IpNet>,
    pub outbound: OutboundConfig,
    pub par: ParConfig,
    pub dpop: DpopConfig,
    pub backchannel_logout: BackchannelLogoutConfig,
    pub client_id_metadata: ClientIdMetadataConfig,
    pub audit: AuditConfig,
    pub forward_auth: ForwardAuthConfig,
    pub api_keys: ApiKeysConfig,
    /// The certificates of `outbound.extra_ca_file`, read and checked (PEM, each a
    /// certificate).
    pub outbound_ca_pem: Vec<String>,
}

/// RFC 8693 token exchange.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeConfig {
    /// Other issuers whose JWTs a client may present as `subject_token`
    /// (`subject_token_type=urn:ietf:params:oauth:token-type:jwt`).
    pub trusted_issuers: Vec<TrustedIssuerConfig>,
}

/// An issuer whose signed JWTs stand for one of its users in a token exchange. Its subject
/// (`iss`, `sub`) is linked to an account here on first sight, or an account is provisioned.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerConfig {
    /// Its `iss`, compared exactly.
    pub issuer: String,
    /// Where its public keys are published (https; fetched with the outbound limits and
    /// cached). Exactly one of `jwks_uri` and `jwks`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Its public keys inline: a TOML table or a JSON string holding a JWK Set.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// The `aud` its tokens must carry (one of them); by default our issuer.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The most its tokens can be exchanged for: a token's own `scope`, when it has one,
    /// narrows this further.
    pub scopes: Vec<String>,
    /// The clients (ids) that may exchange its tokens: they are minted for us, so which of
    /// our clients may present them is ours to say.
    #[serde(default)]
    pub clients: Vec<String>,
    /// Create an account for a subject seen the first time, when its token carries an
    /// `email` with `email_verified: true` that no account here has. The account holds that
    /// address as verified here: trust in the issuer's address checks.
    #[serde(default = "yes")]
    pub provision: bool,
    /// Link a subject seen the first time to the account here with the same (verified)
    /// address, when its token says `email_verified: true`. Only for an issuer whose address
    /// checks you trust as much as your own: it can then act for those accounts.
    #[serde(default)]
    pub link_verified_email: bool,
    /// The `typ` header values its tokens may have (compared as media types). By default only
    /// RFC 9068 access tokens (`at+jwt`): an id_token (typ `JWT`, or none, which counts as
    /// `JWT`) is for the client it was issued to and is not exchanged unless listed here.
    #[serde(default = "access_token_typ")]
    pub typ: Vec<String>,
    /// Let `jwks_uri` be http:// or resolve to a loopback or private address: only for
    /// closed test setups.
    #[serde(default)]
    pub danger_allow_insecure_jwks_uri: bool,
}

fn access_token_typ() -> Vec<String> {
    vec!["at+jwt".to_owned()]
}

/// The certificates of a PEM file, each as its own PEM block; every block must parse.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<String>, ConfigError> {
    const KEY: &str = "outbound.extra_ca_file";
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(KEY, format!("{}: {e}", path.display())))?;
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    for block in text.split_inclusive(END).filter(|b| b.contains(END)) {
        let pem = block
            .get(block.find("-----BEGIN CERTIFICATE-----").unwrap_or(0)..)
            .unwrap_or_default()
            .to_owned();
        reqwest::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| invalid(KEY, format!("{}: {e}", path.display())))?;
        out.push(pem);
    }
    if out.is_empty() {
        return Err(invalid(
            KEY,
            format!("{}: no PEM certificate in it", path.display()),
        ));
    }
    Ok(out)
}

fn yes() -> bool {
    true
}

/// How mail leaves the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// Each message is written as an `.eml` file to `mail.outbox_dir` (the default: nothing
    /// leaves the machine; an operator or a test reads the files).
    #[default]
    Outbox,
    /// Delivered through the SMTP server in `[mail.smtp]`.
    Smtp,
}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// TLS from the first byte (usually port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS, which is required (usually port 587).
    #[default]
    Starttls,
    /// No TLS: only to a relay on this machine (loopback), such as a local MTA.
    None,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    pub transport: MailTransport,
    /// The sender, `Name <address>` or an address.
    pub from: String,
    /// Where the outbox writes; default `<data_dir>/outbox`.
    pub outbox_dir: Option<PathBuf>,
    /// How long a password-reset link works.
    #[serde(with = "humantime_serde")]
    pub reset_link_lifetime: Duration,
    /// How long a sign-in link (`signin.email_links`) works.
    #[serde(with = "humantime_serde")]
    pub signin_link_lifetime: Duration,
    /// How long a sign-up link (open sign-up) or an address-verification link works.
    #[serde(with = "humantime_serde")]
    pub verify_link_lifetime: Duration,
    pub smtp: SmtpConfig,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            transport: MailTransport::Outbox,
            from: "Latchkey <no-reply@localhost>".into(),
            outbox_dir: None,
            reset_link_lifetime: Duration::from_secs(20 * 60),
            verify_link_lifetime: Duration::from_secs(24 * 60 * 60),
            signin_link_lifetime: Duration::from_secs(15 * 60),
            smtp: SmtpConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 465 with `tls`, 587 with `starttls`, 25 with `none`.
    pub port: Option<u16>,
    pub security: SmtpSecurity,
    /// Username for SMTP AUTH; with it, `password_file` is required.
    pub username: Option<String>,
    /// A file holding the SMTP password (read at start; trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// Longest a delivery attempt may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: None,
            security: SmtpSecurity::Starttls,
            username: None,
            password_file: None,
            timeout: Duration::from_secs(15),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientsConfig {
    /// How long an instance reuses a client record it read. A change made through another
    /// instance (a deleted client, a new secret) takes effect here within this time; 0 reads
    /// the database on every request.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for ClientsConfig {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(5),
        }
    }
}

/// Who may register clients at `/register` (RFC 7591).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationPolicy {
    /// No dynamic registration; `/register` does not exist.
    Closed,
    /// A bearer initial access token from `latchkey registration-token create` is needed.
    #[default]
    InitialAccessToken,
    /// Anyone may register a client.
    Open,
    /// Anyone may register a public client of the code flow (AI agents, MCP hosts, native
    /// apps): `token_endpoint_auth_method` `none`, loopback or https redirect URIs only,
    /// authorization_code and refresh_token only.
    #[serde(alias = "open-public")]
    OpenPublic,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    pub policy: RegistrationPolicy,
    /// A client registered by anyone (`open`, `open_public`) that got no grant for this long
    /// and holds no live refresh token is removed by housekeeping; `0s` keeps them.
    #[serde(with = "humantime_serde")]
    pub unused_expiry: Duration,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            policy: RegistrationPolicy::default(),
            unused_expiry: Duration::from_secs(30 * 24 * 60 * 60),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// A directory of templates that override the embedded ones by file name.
    pub templates_dir: Option<PathBuf>,
    /// Addresses or networks (`10.0.0.0/8`) of reverse proxies in front of the server. A
    /// request from one of them is taken to be from the rightmost address in its
    /// `X-Forwarded-For` that is not itself a trusted proxy; from anyone else the header is
    /// ignored. Throttling, sessions and logs use that address.
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(10),
            templates_dir: None,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// File of HMAC pepper keys (`id:base64url` per line, current first). Default
    /// `<data_dir>/pepper.keys`, generated on first start.
    pub pepper_file: Option<PathBuf>,
    /// File of AES-256-GCM key-encryption keys, same format. Default `<data_dir>/kek.keys`.
    pub kek_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// How long a new signing key is published before it signs.
    #[serde(with = "humantime_serde")]
    pub publish_lead: Duration,
    /// How long an instance reuses the keyring it loaded before reading the database again;
    /// a rotation made elsewhere is seen within this time.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// `Cache-Control: max-age` of `/jwks.json`.
    #[serde(with = "humantime_serde")]
    pub jwks_max_age: Duration,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            publish_lead: Duration::from_secs(15 * 60),
            refresh_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(5 * 60),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    #[serde(with = "humantime_serde")]
    pub access_token_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub id_token_lifetime: Duration,
    /// Authorization codes are single use and short-lived (RFC 6749 §4.1.2: at most 10 min).
    #[serde(with = "humantime_serde")]
    pub code_lifetime: Duration,
    /// Absolute lifetime of a refresh token family: rotation does not extend it.
    #[serde(with = "humantime_serde")]
    pub refresh_token_lifetime: Duration,
    /// Issue refresh tokens only when the `offline_access` scope was granted (otherwise to
    /// every client that has the refresh_token grant).
    pub refresh_requires_offline_access: bool,
    /// Retry grace (beside RFC 9700 §4.14.2 rotation): a refresh token of a confidential client presented again by it this soon
    /// after its rotation, while its successor is unused, answers that same successor (the
    /// client lost the answer) instead of revoking the family. `0s` turns it off; at most 60s.
    #[serde(with = "humantime_serde")]
    pub refresh_retry_grace: Duration,
    /// Resource servers a client may name with RFC 8707 `resource` at the token endpoint; the
    /// access token's `aud` is then that resource instead of the issuer.
    pub resources: Vec<String>,
    /// Also take as `resource` any https resource server whose RFC 9728 metadata
    /// (`/.well-known/oauth-protected-resource` + its path) names this issuer in
    /// `authorization_servers` (fetched under the outbound rules, cached in the database for
    /// `resource_metadata_cache`). For MCP servers and other resource servers that point
    /// their users here without an operator listing them.
    pub discover_resources: bool,
    #[serde(with = "humantime_serde")]
    pub resource_metadata_cache: Duration,
    /// Also fetch resource metadata over http:// and from loopback addresses (never other
    /// private ones): only for labs and tests, where the resource server runs on this machine.
    pub danger_allow_http_and_loopback_resources: bool,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            access_token_lifetime: Duration::from_secs(10 * 60),
            id_token_lifetime: Duration::from_secs(60 * 60),
            code_lifetime: Duration::from_secs(60),
            refresh_token_lifetime: Duration::from_secs(30 * 24 * 60 * 60),
            refresh_requires_offline_access: false,
            refresh_retry_grace: Duration::from_secs(10),
            resources: Vec::new(),
            discover_resources: false,
            resource_metadata_cache: Duration::from_secs(60 * 60),
            danger_allow_http_and_loopback_resources: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// A session unused this long ends.
    #[serde(with = "humantime_serde")]
    pub idle_lifetime: Duration,
    /// A session ends this long after sign-in, used or not.
    #[serde(with = "humantime_serde")]
    pub absolute_lifetime: Duration,
    /// How long after signing in a session counts as recent: removing the last passkey or
    /// turning off a second factor needs a sign-in this fresh.
    #[serde(with = "humantime_serde")]
    pub recent_signin: Duration,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            idle_lifetime: Duration::from_secs(24 * 60 * 60),
            absolute_lifetime: Duration::from_secs(14 * 24 * 60 * 60),
            recent_signin: Duration::from_secs(10 * 60),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasskeysConfig {
    /// The WebAuthn relying party id: the issuer's host unless set. It may be a registrable
    /// parent of that host (`example.com` for `https://id.example.com`), never another site.
    /// Passkeys are bound to it: changing it later orphans every registered passkey.
    pub rp_id: Option<String>,
    /// The name authenticators show next to the account.
    pub rp_name: String,
}

impl Default for PasskeysConfig {
    fn default() -> Self {
        Self {
            rp_id: None,
            rp_name: "Latchkey".into(),
        }
    }
}

/// Who may create an account at `/signup`. The first administrator's setup link works
/// whatever the policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignupPolicy {
    /// Accounts are made by an administrator (`latchkey user create`).
    Closed,
    /// With an invitation link from `latchkey invite create`.
    #[default]
    Invite,
    /// Anyone who receives the sign-up link we mail to the address they give (which verifies
    /// it).
    Open,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignupConfig {
    pub policy: SignupPolicy,
    /// How long an invitation (and the setup link) can be used.
    #[serde(with = "humantime_serde")]
    pub invite_lifetime: Duration,
}

impl Default for SignupConfig {
    fn default() -> Self {
        Self {
            policy: SignupPolicy::Invite,
            invite_lifetime: Duration::from_secs(7 * 24 * 60 * 60),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigninConfig {
    /// Password hashes computed at once; more wait, so a login flood cannot starve the
    /// token endpoint of CPU.
    pub password_hash_concurrency: usize,
    /// Offer "Email me a sign-in link" on the sign-in page: a link mailed to the account's
    /// address signs in (and asks for the authenticator app when the account has one).
    pub email_links: bool,
}

impl Default for SigninConfig {
    fn default() -> Self {
        Self {
            password_hash_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            email_links: false,
        }
    }
}

pub const DEFAULT_ISSUER: &str = "http://localhost:8080";

/// Values given on the command line; they win over the file and the environment.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// Environment variables with our prefix that are not configuration keys.
const ENV_NOT_CONFIG: &[&str] = &["config", "log"];

impl Config {
    /// Loads and validates. `file` is the `--config` path, if any.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from(file, overrides, Env::prefixed("LATCHKEY_"))
    }

    fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        env: Env,
    ) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        let env = env
            .filter(|k| {
                let k = k.as_str().to_ascii_lowercase();
                !ENV_NOT_CONFIG.contains(&k.as_str()) && !k.starts_with("test_")
            })
            .split("__");
        fig = fig.merge(env).merge(Serialized::defaults(overrides));
        let raw: RawConfig = fig.extract().map_err(|e| {
            let first = e.into_iter().next();
            ConfigError(first.map_or_else(|| "invalid configuration".into(), |e| e.to_string()))
        })?;
        Self::validate(raw)
    }

    /// Checks every rule, each error naming its key, and makes the configuration the server
    /// runs with. The raw values are not changed: what is derived from them (the normalised
    /// issuer, the proxy networks, the trusted issuers' keys) is made anew.
    pub fn validate(raw: RawConfig) -> Result<Self, ConfigError> {
        let issuer = validate_issuer(&raw.issuer, raw.danger_allow_insecure_issuer)?;
        if let Some(db) = &raw.database_url {
            validate_database_url(db)?;
        }
        if raw.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if !(1024..=16 * 1024 * 1024).contains(&raw.http.max_body_bytes) {
            return Err(invalid(
                "http.max_body_bytes",
                "must be between 1024 and 16777216",
            ));
        }
        let positive = |key: &str, d: Duration| {
            if d.is_zero() {
                Err(invalid(key, "must be longer than zero"))
            } else {
                Ok(())
            }
        };
        positive(
            "tokens.access_token_lifetime",
            raw.tokens.access_token_lifetime,
        )?;
        positive("tokens.id_token_lifetime", raw.tokens.id_token_lifetime)?;
        positive("keys.jwks_max_age", raw.keys.jwks_max_age)?;
        positive(
            "tokens.refresh_token_lifetime",
            raw.tokens.refresh_token_lifetime,
        )?;
        positive("sessions.idle_lifetime", raw.sessions.idle_lifetime)?;
        positive("sessions.absolute_lifetime", raw.sessions.absolute_lifetime)?;
        if raw.tokens.code_lifetime.is_zero() || raw.tokens.code_lifetime > Duration::from_secs(600)
        {
            return Err(invalid(
                "tokens.code_lifetime",
                "must be between 1s and 10m (RFC 6749 §4.1.2)",
            ));
        }
        let max_grace = crate::store::MAX_REFRESH_RETRY_GRACE;
        if raw.tokens.refresh_retry_grace > Duration::from_secs(max_grace.unsigned_abs()) {
            return Err(invalid(
                "tokens.refresh_retry_grace",
                format!("must be at most {max_grace}s"),
            ));
        }
        if !(1..=20).contains(&raw.backchannel_logout.max_attempts) {
            return Err(invalid(
                "backchannel_logout.max_attempts",
                "must be between 1 and 20",
            ));
        }
        for (name, d, max) in [
            ("dpop.nonce_lifetime", raw.dpop.nonce_lifetime, 3600),
            ("dpop.proof_window", raw.dpop.proof_window, 600),
        ] {
            if d < Duration::from_secs(5) || d > Duration::from_secs(max) {
                return Err(invalid(name, format!("must be between 5s and {max}s")));
            }
        }
        let cimd = &raw.client_id_metadata;
        if cimd.min_cache > cimd.max_cache {
            return Err(invalid(
                "client_id_metadata.min_cache",
                "must not exceed client_id_metadata.max_cache",
            ));
        }
        if cimd.fetch_timeout < Duration::from_millis(100)
            || cimd.fetch_timeout > Duration::from_secs(30)
        {
            return Err(invalid(
                "client_id_metadata.fetch_timeout",
                "must be between 100ms and 30s",
            ));
        }
        if !(512..=256 * 1024).contains(&cimd.max_bytes) {
            return Err(invalid(
                "client_id_metadata.max_bytes",
                "must be between 512 and 262144",
            ));
        }
        for (key, globs) in [
            ("client_id_metadata.allow_hosts", &cimd.allow_hosts),
            ("client_id_metadata.deny_hosts", &cimd.deny_hosts),
        ] {
            if let Some(g) = globs
                .iter()
                .find(|g| g.is_empty() || g.contains(['/', ':', '@']))
            {
                return Err(invalid(key, format!("{g:?} is not a host name glob")));
            }
        }
        if raw.tokens.resource_metadata_cache > Duration::from_secs(7 * 86_400) {
            return Err(invalid(
                "tokens.resource_metadata_cache",
                "must be at most 7d",
            ));
        }
        for r in &raw.tokens.resources {
            let ok = Url::parse(r).is_ok_and(|u| u.fragment().is_none() && u.has_host());
            if !ok {
                return Err(invalid(
                    "tokens.resources",
                    format!("{r:?} is not an absolute URI without a fragment (RFC 8707)"),
                ));
            }
        }
        if raw.signin.password_hash_concurrency == 0 {
            return Err(invalid(
                "signin.password_hash_concurrency",
                "must be at least 1",
            ));
        }
        validate_mail(&raw.mail)?;
        validate_forward_auth(&raw.forward_auth, &issuer)?;
        let exchange = validate_exchange(&raw.exchange, &issuer)?;
        let trusted_proxy_nets = raw
            .http
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "http.trusted_proxies",
                            format!("{p:?} is not an IP address or network (10.0.0.0/8)"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        if raw.keys.publish_lead < raw.keys.refresh_interval + raw.keys.jwks_max_age {
            return Err(invalid(
                "keys.publish_lead",
                "must be at least keys.refresh_interval + keys.jwks_max_age, so every instance \
                 and every JWKS cache sees a new key before it signs",
            ));
        }
        let outbound_ca_pem = match &raw.outbound.extra_ca_file {
            None => Vec::new(),
            Some(path) => read_ca_file(path)?,
        };
        Ok(Self {
            issuer,
            listen: raw.listen,
            data_dir: raw.data_dir,
            database_url: raw.database_url,
            log_format: raw.log_format,
            danger_allow_insecure_issuer: raw.danger_allow_insecure_issuer,
            danger_allow_private_jwks_uri: raw.danger_allow_private_jwks_uri,
            database: raw.database,
            http: raw.http,
            secrets: raw.secrets,
            keys: raw.keys,
            tokens: raw.tokens,
            sessions: raw.sessions,
            signin: raw.signin,
            passkeys: raw.passkeys,
            signup: raw.signup,
            registration: raw.registration,
            clients: raw.clients,
            mail: raw.mail,
            exchange,
            trusted_proxy_nets,
            outbound: raw.outbound,
            par: raw.par,
            dpop: raw.dpop,
            backchannel_logout: raw.backchannel_logout,
            client_id_metadata: raw.client_id_metadata,
            audit: raw.audit,
            forward_auth: raw.forward_auth,
            api_keys: raw.api_keys,
            outbound_ca_pem,
        })
    }

    /// Where the outbox writes.
    pub fn outbox_dir(&self) -> PathBuf {
        self.mail
            .outbox_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("outbox"))
    }

    /// The database URL in force: the configured one or the embedded SQLite file.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("latchkey.db").display()
            ),
        }
    }

    pub fn pepper_file(&self) -> PathBuf {
        self.secrets
            .pepper_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pepper.keys"))
    }

    pub fn kek_file(&self) -> PathBuf {
        self.secrets
            .kek_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("kek.keys"))
    }

    /// The issuer's origin (`scheme://host[:port]`), as browsers send it in `Origin`.
    pub fn issuer_origin(&self) -> String {
        Url::parse(&self.issuer)
            .map_or_else(|_| String::new(), |u| u.origin().ascii_serialization())
    }

    pub fn issuer_is_https(&self) -> bool {
        self.issuer.starts_with("https://")
    }

    /// The longest lifetime of any JWT we sign: how long a retired key stays published.
    pub fn longest_jwt_lifetime(&self) -> Duration {
        self.tokens
            .access_token_lifetime
            .max(self.tokens.id_token_lifetime)
    }
}

/// `exchange.trusted_issuers`, checked, as the server uses them: an inline `jwks` given as a
/// JSON string parsed, and no `audiences` meaning our issuer (`ours`).
fn validate_exchange(raw: &ExchangeConfig, ours: &str) -> Result<ExchangeConfig, ConfigError> {
    const KEY: &str = "exchange.trusted_issuers";
    let mut seen = std::collections::HashSet::new();
    let mut checked = Vec::with_capacity(raw.trusted_issuers.len());
    for t in &raw.trusted_issuers {
        let mut t = t.clone();
        let named = |why: &str| invalid(KEY, format!("{:?}: {why}", t.issuer));
        let url = Url::parse(&t.issuer).map_err(|_| named("issuer is not a URL"))?;
        if !matches!(url.scheme(), "https" | "http") || !url.has_host() {
            return Err(named("issuer must be an http(s) URL"));
        }
        if t.issuer == ours {
            return Err(named("our own issuer needs no trust entry"));
        }
        if !seen.insert(t.issuer.clone()) {
            return Err(named("listed twice"));
        }
        match (&t.jwks_uri, &mut t.jwks) {
            (Some(uri), None) => {
                let u = Url::parse(uri).map_err(|_| named("jwks_uri is not a URL"))?;
                let https = u.scheme() == "https";
                if !(https || t.danger_allow_insecure_jwks_uri && u.scheme() == "http") {
                    return Err(named(
                        "jwks_uri must be https (or set danger_allow_insecure_jwks_uri)",
                    ));
                }
            }
            (None, Some(jwks)) => {
                if let serde_json::Value::String(text) = jwks {
                    *jwks = serde_json::from_str(text).map_err(|_| named("jwks is not JSON"))?;
                }
                let keys = latchkey_jwks::PublicKeySet::from_jwks_value(jwks)
                    .map_err(|e| named(&format!("jwks: {e}")))?;
                if keys.is_empty() {
                    return Err(named("jwks holds no usable signing key"));
                }
            }
            _ => return Err(named("give exactly one of jwks_uri and jwks")),
        }
        if t.scopes.is_empty() {
            return Err(named(
                "scopes must name what its tokens can be exchanged for",
            ));
        }
        if t.clients.is_empty() {
            return Err(named(
                "clients must name the clients that may exchange its tokens",
            ));
        }
        if t.typ.is_empty() || t.typ.iter().any(|v| v.trim().is_empty()) {
            return Err(named(
                "typ must name the token types accepted (at+jwt for access tokens)",
            ));
        }
        if t.audiences.is_empty() {
            t.audiences.push(ours.to_owned());
        }
        checked.push(t);
    }
    Ok(ExchangeConfig {
        trusted_issuers: checked,
    })
}

/// Whether `host` is `domain` or under it (both lowercase).
pub fn in_domain(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

fn validate_forward_auth(fa: &ForwardAuthConfig, issuer: &Issuer) -> Result<(), ConfigError> {
    if fa.cookie_name.is_empty()
        || !fa
            .cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "forward_auth.cookie_name",
            "must be letters, digits, '_' and '-'",
        ));
    }
    let h = &fa.headers;
    for (key, name) in [
        ("forward_auth.headers.user", &h.user),
        ("forward_auth.headers.email", &h.email),
        ("forward_auth.headers.name", &h.name),
        ("forward_auth.headers.groups", &h.groups),
        ("forward_auth.headers.id", &h.id),
    ] {
        if poem::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(invalid(key, format!("{name:?} is not a header name")));
        }
    }
    if fa.cache_ttl > Duration::from_secs(60) {
        return Err(invalid("forward_auth.cache_ttl", "must be at most 60s"));
    }
    if fa.rules.is_empty() {
        return Ok(());
    }
    let Some(domain) = fa.cookie_domain.as_deref().map(str::to_ascii_lowercase) else {
        return Err(invalid(
            "forward_auth.cookie_domain",
            "is required when forward_auth.rules protect hosts",
        ));
    };
    if domain.is_empty() || domain.starts_with('.') || domain.contains(['/', ':', '*', '@']) {
        return Err(invalid(
            "forward_auth.cookie_domain",
            format!("{domain:?} is not a domain name (example.com)"),
        ));
    }
    let issuer_host = Url::parse(issuer.as_str())
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if !in_domain(&issuer_host, &domain) {
        return Err(invalid(
            "forward_auth.cookie_domain",
            format!(
                "the issuer's host {issuer_host} is not in {domain}: the sign-in could not set the cookie"
            ),
        ));
    }
    for (i, rule) in fa.rules.iter().enumerate() {
        let key = format!("forward_auth.rules[{i}]");
        if rule.hosts.is_empty() {
            return Err(invalid(&key, "hosts is empty"));
        }
        for g in &rule.hosts {
            let g = g.to_ascii_lowercase();
            if g.is_empty() || g.contains(['/', ':', '@']) {
                return Err(invalid(&key, format!("{g:?} is not a host name or glob")));
            }
            // What follows the last wildcard (`*.` + a domain) or the whole name must be
            // under the cookie's domain, or browsers would not send the cookie there.
            let tail = match g.rfind(['*', '?']) {
                Some(i) => g[i + 1..].strip_prefix('.'),
                None => Some(g.as_str()),
            };
            if !tail.is_some_and(|t| in_domain(t, &domain)) {
                return Err(invalid(
                    &key,
                    format!(
                        "{g:?} is not under forward_auth.cookie_domain {domain}: its browsers \
                         would not carry the cookie"
                    ),
                ));
            }
        }
        for p in std::iter::once(&rule.path_prefix).chain(&rule.bypass) {
            if !p.starts_with('/') {
                return Err(invalid(&key, format!("the path {p:?} must start with '/'")));
            }
        }
    }
    Ok(())
}

fn validate_mail(mail: &MailConfig) -> Result<(), ConfigError> {
    if mail.from.parse::<lettre::message::Mailbox>().is_err() {
        return Err(invalid(
            "mail.from",
            format!("{:?} is not an address or `Name <address>`", mail.from),
        ));
    }
    if mail.reset_link_lifetime.is_zero() || mail.reset_link_lifetime > Duration::from_secs(60 * 60)
    {
        return Err(invalid(
            "mail.reset_link_lifetime",
            "must be between 1s and 1h: a reset link is a password",
        ));
    }
    if mail.signin_link_lifetime.is_zero()
        || mail.signin_link_lifetime > Duration::from_secs(60 * 60)
    {
        return Err(invalid(
            "mail.signin_link_lifetime",
            "must be between 1s and 1h: a sign-in link is a password",
        ));
    }
    if mail.verify_link_lifetime.is_zero()
        || mail.verify_link_lifetime > Duration::from_secs(7 * 24 * 60 * 60)
    {
        return Err(invalid(
            "mail.verify_link_lifetime",
            "must be between 1s and 7d",
        ));
    }
    if mail.transport != MailTransport::Smtp {
        return Ok(());
    }
    let smtp = &mail.smtp;
    if smtp.host.trim().is_empty() {
        return Err(invalid(
            "mail.smtp.host",
            "is required with mail.transport = \"smtp\"",
        ));
    }
    let loopback =
        smtp.host == "localhost" || smtp.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if smtp.security == SmtpSecurity::None && !loopback {
        return Err(invalid(
            "mail.smtp.security",
            "\"none\" sends reset links in clear: allowed only to a relay on localhost",
        ));
    }
    if smtp.username.is_some() != smtp.password_file.is_some() {
        return Err(invalid(
            "mail.smtp.password_file",
            "mail.smtp.username and mail.smtp.password_file go together",
        ));
    }
    if smtp.timeout.is_zero() {
        return Err(invalid("mail.smtp.timeout", "must be longer than zero"));
    }
    Ok(())
}

/// OIDC Discovery §3 / RFC 8414 §2: an https URL with no query or fragment. A trailing slash
/// is removed so that `{issuer}/path` joins cleanly; the result is what tokens carry.
fn validate_issuer(raw: &str, allow_insecure: bool) -> Result<Issuer, ConfigError> {
    let url =
        Url::parse(raw).map_err(|e| invalid("issuer", format!("{raw:?} is not a URL: {e}")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("issuer", "must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("issuer", "must not contain credentials"));
    }
    let host = url
        .host_str()
        .ok_or_else(|| invalid("issuer", "must have a host"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(host) || allow_insecure => {}
        "http" => {
            return Err(invalid(
                "issuer",
                format!(
                    "http:// is only allowed for localhost and loopback addresses ({host} is \
                     neither); use https://, or set danger_allow_insecure_issuer = true"
                ),
            ));
        }
        other => {
            return Err(invalid(
                "issuer",
                format!("scheme {other:?} is not http(s)"),
            ));
        }
    }
    Ok(Issuer(url.as_str().trim_end_matches('/').to_owned()))
}

pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn validate_database_url(raw: &str) -> Result<(), ConfigError> {
    let scheme = raw.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" | "postgres" | "postgresql" => Ok(()),
        _ => Err(invalid(
            "database_url",
            format!(
                "{:?} is not a sqlite:// or postgres:// URL",
                redact_url(raw)
            ),
        )),
    }
}

/// A database URL fit for a log line or an error: the password is replaced.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => raw
            .split_once('@')
            .map_or_else(|| raw.to_owned(), |(_, host)| format!("***@{host}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(toml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latchkey.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load_from(
            Some(&path),
            &Overrides::default(),
            Env::prefixed("LATCHKEY_UNIT_TEST_NOTHING_"),
        )
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type
    fn environment_overrides_the_file_and_flags_override_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "issuer = \"https://file.example.com\"\n[keys]\njwks_max_age = \"1m\"",
            )?;
            jail.set_env("LATCHKEY_ISSUER", "https://env.example.com");
            jail.set_env("LATCHKEY_KEYS__JWKS_MAX_AGE", "2m");
            jail.set_env("LATCHKEY_TEST_POSTGRES_URL", "postgres://ignored");
            let c = Config::load(Some(Path::new("c.toml")), &Overrides::default()).unwrap();
            assert_eq!(c.issuer, "https://env.example.com");
            assert_eq!(c.keys.jwks_max_age, Duration::from_secs(120));
            let flags = Overrides {
                issuer: Some("https://flag.example.com".into()),
                ..Overrides::default()
            };
            let c = Config::load(Some(Path::new("c.toml")), &flags).unwrap();
            assert_eq!(c.issuer, "https://flag.example.com");

            jail.set_env("LATCHKEY_LISTN", "0.0.0.0:1");
            let err = Config::load(Some(Path::new("c.toml")), &flags)
                .unwrap_err()
                .0;
            assert!(err.contains("listn"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn defaults_are_zero_config() {
        let c = load_toml("").unwrap();
        assert_eq!(c.issuer, DEFAULT_ISSUER);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.database_url().starts_with("sqlite://"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load_toml("isuer = \"https://x\"").unwrap_err().0;
        assert!(err.contains("isuer"), "{err}");
        let err = load_toml("[keys]\nrotate = 1").unwrap_err().0;
        assert!(err.contains("rotate"), "{err}");
    }

    #[test]
    fn malformed_issuer_is_refused_with_the_key_named() {
        let err = load_toml("issuer = \"not a url\"").unwrap_err().0;
        assert!(err.contains("`issuer`"), "{err}");
        assert!(!err.contains('\n'));
        let err = load_toml("issuer = \"https://id.example.com/?x=1\"")
            .unwrap_err()
            .0;
        assert!(err.contains("query"), "{err}");
    }

    #[test]
    fn insecure_issuer_needs_the_danger_option() {
        let err = load_toml("issuer = \"http://id.example.com\"")
            .unwrap_err()
            .0;
        assert!(err.contains("danger_allow_insecure_issuer"), "{err}");
        let ok =
            load_toml("issuer = \"http://id.example.com\"\ndanger_allow_insecure_issuer = true");
        assert!(ok.is_ok());
        for loopback in [
            "http://localhost:9000",
            "http://127.0.0.1",
            "http://[::1]:80",
        ] {
            assert!(
                load_toml(&format!("issuer = \"{loopback}\"")).is_ok(),
                "{loopback}"
            );
        }
    }

    #[test]
    fn issuer_trailing_slash_is_removed() {
        let c = load_toml("issuer = \"https://id.example.com/tenant/\"").unwrap();
        assert_eq!(c.issuer, "https://id.example.com/tenant");
    }

    #[test]
    fn durations_are_human_and_checked() {
        let c = load_toml("[tokens]\naccess_token_lifetime = \"5m\"").unwrap();
        assert_eq!(c.tokens.access_token_lifetime, Duration::from_secs(300));
        let err = load_toml("[keys]\npublish_lead = \"1s\"").unwrap_err().0;
        assert!(err.contains("keys.publish_lead"), "{err}");
    }

    #[test]
    fn database_url_scheme_is_checked_without_echoing_passwords() {
        let err = load_toml("database_url = \"mysql://u:hunter2@h/db\"")
            .unwrap_err()
            .0;
        assert!(err.contains("database_url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn trusted_issuers_are_checked_when_loaded() {
        const KEY: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"k1"}]}"#;
        let entry = |body: &str| format!("[[exchange.trusted_issuers]]\n{body}\n");
        let ok = load_toml(&entry(&format!(
            "issuer = \"https://partner.example\"\njwks = '{KEY}'\nscopes = [\"a\"]\nclients = [\"c\"]"
        )))
        .unwrap();
        let t = &ok.exchange.trusted_issuers[0];
        assert_eq!(
            t.audiences,
            vec![ok.issuer.clone()],
            "our issuer by default"
        );
        assert!(t.provision && !t.link_verified_email);
        assert!(
            t.jwks.as_ref().unwrap().is_object(),
            "a JSON string is parsed"
        );
        // Also as a TOML table.
        let table = load_toml(&entry(
            "issuer = \"https://p.example\"\nscopes = [\"a\"]\nclients = [\"c\"]\n[exchange.trusted_issuers.jwks]\nkeys = [{kty = \"EC\", crv = \"P-256\", x = \"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\", y = \"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]",
        ));
        assert!(table.is_ok(), "{:?}", table.err());

        for (body, says) in [
            (
                "issuer = \"https://p.example\"\nscopes = [\"a\"]",
                "exactly one",
            ),
            (
                "issuer = \"https://p.example\"\njwks_uri = \"http://p.example/jwks\"\nscopes = [\"a\"]",
                "https",
            ),
            (
                "issuer = \"https://p.example\"\njwks_uri = \"https://p.example/jwks\"\nscopes = []",
                "scopes",
            ),
            (
                "issuer = \"https://p.example\"\njwks = '{\"keys\":[]}'\nscopes = [\"a\"]",
                "no usable",
            ),
            (
                "issuer = \"https://p.example\"\njwks = '{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}'\nscopes = [\"a\"]",
                "private or symmetric",
            ),
            (
                "issuer = \"http://localhost:8080\"\njwks_uri = \"https://p.example/jwks\"\nscopes = [\"a\"]",
                "our own issuer",
            ),
            (
                "issuer = \"https://p.example\"\njwks_uri = \"https://p.example/jwks\"\nscopes = [\"a\"]",
                "clients must name",
            ),
        ] {
            let err = load_toml(&entry(body)).unwrap_err().0;
            assert!(err.contains(says), "{body}: {err}");
        }
        let twice = entry(
            "issuer = \"https://p.example\"\njwks_uri = \"https://p.example/j\"\nscopes = [\"a\"]\nclients = [\"c\"]",
        );
        let err = load_toml(&format!("{twice}{twice}")).unwrap_err().0;
        assert!(err.contains("listed twice"), "{err}");
        let insecure = load_toml(&entry(
            "issuer = \"https://p.example\"\njwks_uri = \"http://127.0.0.1:9/j\"\nscopes = [\"a\"]\nclients = [\"c\"]\ndanger_allow_insecure_jwks_uri = true",
        ));
        assert!(insecure.is_ok(), "{:?}", insecure.err());
    }
}
