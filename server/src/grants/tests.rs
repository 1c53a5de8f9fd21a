//! Every grant against a real database (SQLite always; PostgreSQL when
//! `LATCHKEY_TEST_POSTGRES_URL` is set): success, each refusal its RFC names, and replay.
//! Named after the requirement each proves; the black-box tests cover the same over HTTP.

use std::sync::Arc;
use std::time::Duration;

use latchkey_jwks::{Kek, KekRing, KeyPolicy};
use serde_json::{Value, json};

use super::{TokenContext, TokenRequest, TokenResponse, redeem};
use crate::access::{AccessTokens, Audience};
use crate::config::{Config, RawConfig};
use crate::federation::TrustedIssuers;
use crate::keys::KeyService;
use crate::oauth::client::{AuthMethod, Client, ClientMetadata, ClientOrigin, GrantType};
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::oauth::params::Params;
use crate::secrets::{Pepper, Purpose, random_token};
use crate::store::{Authn, CodeRow, NewClient, NewDeviceCode, NewUser, PoolSettings, Store};
use crate::testdb::TestDb;

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://id.example.test";
const API: &str = "https://api.example.test";
const REDIRECT: &str = "https://rp.example.test/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct Fixture {
    label: &'static str,
    store: Store,
    pepper: Pepper,
    keys: KeyService,
    keks: Arc<KekRing>,
    trusted: TrustedIssuers,
    config: Config,
    resource_guard: crate::outbound::Guard,
    audit: crate::audit::Audit,
    _db: TestDb,
}

/// One fixture per enabled backend, each on a fresh database with signing keys.
async fn fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    for db in TestDb::all().await {
        let settings = PoolSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(10),
        };
        let store = Store::open(&db.url, &settings)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", db.label));
        let keks = Arc::new(KekRing::new(vec![Kek::new("k", &[3; 32])]).unwrap());
        let policy = KeyPolicy {
            publish_lead: 0,
            retain_retired: 3600,
        };
        let keys = KeyService::new(store.clone(), keks.clone(), policy, 60);
        keys.ensure_keys(NOW).await.unwrap();
        let mut raw = RawConfig {
            issuer: ISSUER.into(),
            ..RawConfig::default()
        };
        raw.tokens.resources = vec![API.into()];
        let config = Config::validate(raw).unwrap();
        let audit = crate::audit::Audit::new(store.clone(), None).unwrap();
        out.push(Fixture {
            label: db.label,
            store,
            pepper: Pepper::new(vec![("p1".into(), [1; 32])]).unwrap(),
            keys,
            keks,
            trusted: TrustedIssuers::from_config(&config).unwrap(),
            config,
            resource_guard: crate::outbound::Guard::new(false, Vec::new()),
            audit,
            _db: db,
        });
    }
    out
}

fn metadata(grants: &[GrantType], scope: &str) -> ClientMetadata {
    serde_json::from_value(json!({
        "client_name": "Test app",
        "redirect_uris": [REDIRECT],
        "grant_types": grants,
        "response_types": ["code"],
        "token_endpoint_auth_method": AuthMethod::ClientSecretBasic,
        "scope": scope,
    }))
    .unwrap()
}

impl Fixture {
    fn ctx(&self) -> TokenContext<'_> {
        TokenContext {
            store: &self.store,
            pepper: &self.pepper,
            keys: &self.keys,
            keks: &self.keks,
            trusted_issuers: &self.trusted,
            issuer: ISSUER,
            tokens: &self.config.tokens,
            resource_guard: &self.resource_guard,
            audit: &self.audit,
            api_keys: crate::api_keys::ApiKeys {
                store: &self.store,
                pepper: &self.pepper,
                config: &self.config.api_keys,
            },
        }
    }

    fn access_tokens(&self) -> AccessTokens<'_> {
        self.ctx().access_tokens()
    }

    async fn client_with(&self, metadata: ClientMetadata) -> Client {
        let client_id = random_token(12);
        self.store
            .create_client(&NewClient {
                client_id: &client_id,
                secret_digest: None,
                metadata: &serde_json::to_string(&metadata).unwrap(),
                origin: None,
                now: NOW,
            })
            .await
            .unwrap();
        Client {
            client_id,
            secret_digest: None,
            metadata,
            origin: ClientOrigin::Registered,
            previous_secret: None,
        }
    }

    async fn client(&self, grants: &[GrantType], scope: &str) -> Client {
        self.client_with(metadata(grants, scope)).await
    }

    /// The usual web app: code and refresh.
    async fn web_client(&self) -> Client {
        self.client(
            &[GrantType::AuthorizationCode, GrantType::RefreshToken],
            "openid profile email",
        )
        .await
    }

    async fn user(&self) -> String {
        let id = random_token(12);
        let email = format!("{id}@example.test");
        self.store
            .create_user(&NewUser {
                id: &id,
                email: &email,
                email_verified: true,
                name: None,
                password_hash: None,
                is_admin: false,
                now: NOW,
            })
            .await
            .unwrap();
        id
    }

    /// A code for `user` and `client`, as `/authorize` stores it; returns the code.
    async fn code(&self, client: &Client, user: &str, scope: &str, expires_at: i64) -> String {
        self.code_bound(client, user, scope, expires_at, None).await
    }

    /// A code bound to a DPoP key (RFC 9449 §10 `dpop_jkt`).
    async fn code_bound(
        &self,
        client: &Client,
        user: &str,
        scope: &str,
        expires_at: i64,
        dpop_jkt: Option<&str>,
    ) -> String {
        let code = random_token(32);
        let row = CodeRow {
            grant_id: random_token(16),
            client_id: client.client_id.clone(),
            redirect_uri: REDIRECT.into(),
            scope: scope.into(),
            nonce: Some("n-1".into()),
            code_challenge: CHALLENGE.into(),
            claims: None,
            authn: Authn {
                user_id: user.into(),
                sid: None,
                auth_time: NOW - 10,
                amr: vec!["pwd".into()],
                acr: "1".into(),
            },
            expires_at,
            dpop_jkt: dpop_jkt.map(str::to_owned),
            resource: None,
        };
        let digest = self
            .pepper
            .digest(Purpose::AuthorizationCode, code.as_bytes());
        self.store.insert_code(&digest, &row, NOW).await.unwrap();
        code
    }

    /// A token request from `client` with these form parameters, at `now`.
    async fn token_at(
        &self,
        client: &Client,
        form: &[(&str, &str)],
        now: i64,
    ) -> Result<TokenResponse, TokenError> {
        self.token_proven(client, form, now, None).await
    }

    /// A token request that came with a (checked) DPoP proof by the key `jkt`.
    async fn token_proven(
        &self,
        client: &Client,
        form: &[(&str, &str)],
        now: i64,
        jkt: Option<&str>,
    ) -> Result<TokenResponse, TokenError> {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let params = Params::parse(encoded.as_bytes()).unwrap();
        let ctx = self.ctx();
        let req = TokenRequest::new(
            &ctx,
            client,
            &params,
            Some("192.0.2.1"),
            Some("test"),
            jkt,
            now,
        )
        .await?;
        redeem(&ctx, &req).await
    }

    async fn token(
        &self,
        client: &Client,
        form: &[(&str, &str)],
    ) -> Result<TokenResponse, TokenError> {
        self.token_at(client, form, NOW).await
    }

    async fn redeem_code(&self, client: &Client, code: &str) -> Result<TokenResponse, TokenError> {
        self.token(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await
    }

    async fn refresh(&self, client: &Client, token: &str) -> Result<TokenResponse, TokenError> {
        self.token(
            client,
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .await
    }

    /// Whether our access token verifies and is not revoked.
    async fn active(&self, access_token: &str) -> bool {
        self.access_tokens()
            .verify(access_token, NOW, Audience::AnyOurs)
            .await
            .is_ok()
    }

    async fn claims(&self, access_token: &str) -> serde_json::Map<String, Value> {
        self.access_tokens()
            .verify(access_token, NOW, Audience::AnyOurs)
            .await
            .unwrap()
            .into_map()
    }
}

#[track_caller]
fn refused(r: Result<TokenResponse, TokenError>, code: T, label: &str) -> TokenError {
    match r {
        Ok(_) => panic!("{label}: expected {}, got tokens", code.as_str()),
        Err(e) => {
            assert_eq!(e.code, code, "{label}: {}", e.description());
            e
        }
    }
}

// ---- the request itself (grants/mod.rs) ----

#[tokio::test]
async fn rfc6749_5_2_grant_type_and_resource_are_checked_before_any_grant() {
    for f in fixtures().await {
        let l = f.label;
        let client = f
            .client(&[GrantType::ClientCredentials], "devices:read")
            .await;
        refused(f.token(&client, &[]).await, T::InvalidRequest, l);
        refused(
            f.token(&client, &[("grant_type", "password")]).await,
            T::UnsupportedGrantType,
            l,
        );
        refused(
            f.token(&client, &[("grant_type", "authorization_code")])
                .await,
            T::UnauthorizedClient,
            l,
        );
        // RFC 8707 §2.2: a resource configured, but not given to this client.
        refused(
            f.token(
                &client,
                &[("grant_type", "client_credentials"), ("resource", API)],
            )
            .await,
            T::InvalidTarget,
            l,
        );
        let mut with_api = metadata(&[GrantType::ClientCredentials], "devices:read");
        with_api.resources = vec![API.into()];
        let client = f.client_with(with_api).await;
        let t = f
            .token(
                &client,
                &[("grant_type", "client_credentials"), ("resource", API)],
            )
            .await
            .unwrap();
        assert_eq!(f.claims(&t.access_token).await["aud"], API, "{l}");
    }
}

#[tokio::test]
async fn every_grant_requires_its_parameters() {
    for f in fixtures().await {
        let all = [
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::DeviceCode,
            GrantType::TokenExchange,
        ];
        let client = f.client(&all, "openid").await;
        let required = [
            (
                "authorization_code",
                vec!["code", "redirect_uri", "code_verifier"],
            ),
            ("refresh_token", vec!["refresh_token"]),
            (
                "urn:ietf:params:oauth:grant-type:device_code",
                vec!["device_code"],
            ),
            (
                "urn:ietf:params:oauth:grant-type:token-exchange",
                vec!["subject_token"],
            ),
        ];
        for (grant, names) in required {
            let g: GrantType = grant.parse().unwrap();
            for name in &names {
                assert!(super::parameters(g).contains(name), "{grant} lists {name}");
                let mut form: Vec<(&str, &str)> = vec![("grant_type", grant)];
                form.extend(names.iter().filter(|n| *n != name).map(|n| (*n, "x")));
                let e = refused(f.token(&client, &form).await, T::InvalidRequest, grant);
                assert_eq!(e.description(), format!("{name} is required"));
            }
        }
    }
}

// ---- authorization_code ----

#[tokio::test]
async fn rfc6749_4_1_3_a_code_gives_tokens_once() {
    for f in fixtures().await {
        let l = f.label;
        let client = f.web_client().await;
        let user = f.user().await;
        let code = f.code(&client, &user, "openid email", NOW + 60).await;
        let t = f.redeem_code(&client, &code).await.unwrap();
        assert_eq!(t.token_type, "Bearer");
        assert_eq!(t.scope.as_deref(), Some("openid email"));
        assert!(t.id_token.is_some(), "{l}: openid gives an id_token");
        let refresh = t.refresh_token.clone().expect("a refresh token");
        let at = f.claims(&t.access_token).await;
        assert_eq!(
            (at["sub"].as_str(), at["aud"].as_str()),
            (Some(user.as_str()), Some(ISSUER))
        );
        let id = latchkey_jwks::verify::unverified_payload(t.id_token.as_deref().unwrap()).unwrap();
        assert_eq!(
            (id["nonce"].as_str(), id["aud"].as_str()),
            (Some("n-1"), Some(client.client_id.as_str()))
        );

        // §4.1.2: used twice, the code revokes what it gave.
        refused(f.redeem_code(&client, &code).await, T::InvalidGrant, l);
        assert!(
            !f.active(&t.access_token).await,
            "{l}: the replay revokes the access token"
        );
        refused(f.refresh(&client, &refresh).await, T::InvalidGrant, l);
    }
}

#[tokio::test]
async fn rfc6749_4_1_3_a_code_is_bound_to_its_client_redirect_uri_and_expiry() {
    for f in fixtures().await {
        let l = f.label;
        let client = f.web_client().await;
        let other = f.web_client().await;
        let user = f.user().await;

        // Another client's attempt consumes nothing.
        let code = f.code(&client, &user, "openid", NOW + 60).await;
        refused(f.redeem_code(&other, &code).await, T::InvalidGrant, l);
        f.redeem_code(&client, &code).await.unwrap();

        // A different redirect_uri is refused, and the code is spent.
        let code = f.code(&client, &user, "openid", NOW + 60).await;
        let e = refused(
            f.token(
                &client,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", "https://rp.example.test/other"),
                    ("code_verifier", VERIFIER),
                ],
            )
            .await,
            T::InvalidGrant,
            l,
        );
        assert!(e.description().contains("redirect_uri"), "{l}");
        refused(f.redeem_code(&client, &code).await, T::InvalidGrant, l);

        let expired = f.code(&client, &user, "openid", NOW).await;
        refused(f.redeem_code(&client, &expired).await, T::InvalidGrant, l);
        refused(
            f.redeem_code(&client, "no-such-code").await,
            T::InvalidGrant,
            l,
        );
    }
}

#[tokio::test]
async fn rfc7636_4_6_a_wrong_code_verifier_is_refused_and_spends_the_code() {
    for f in fixtures().await {
        let l = f.label;
        let client = f.web_client().await;
        let user = f.user().await;
        let code = f.code(&client, &user, "openid", NOW + 60).await;
        let e = refused(
            f.token(
                &client,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    (
                        "code_verifier",
                        "a-different-verifier-of-the-right-length-0123",
                    ),
                ],
            )
            .await,
            T::InvalidGrant,
            l,
        );
        assert!(e.description().contains("code_verifier"), "{l}");
        // One try: the right verifier afterwards is a replay.
        refused(f.redeem_code(&client, &code).await, T::InvalidGrant, l);
    }
}

#[tokio::test]
async fn a_disabled_users_code_gives_nothing() {
    for f in fixtures().await {
        let client = f.web_client().await;
        let user = f.user().await;
        let code = f.code(&client, &user, "openid", NOW + 60).await;
        f.store.set_user_disabled(&user, true, NOW).await.unwrap();
        refused(
            f.redeem_code(&client, &code).await,
            T::InvalidGrant,
            f.label,
        );
    }
}

#[tokio::test]
async fn no_refresh_token_without_offline_access_when_the_policy_asks_for_it() {
    for mut f in fixtures().await {
        f.config.tokens.refresh_requires_offline_access = true;
        let client = f.web_client().await;
        let user = f.user().await;
        let code = f.code(&client, &user, "openid", NOW + 60).await;
        let t = f.redeem_code(&client, &code).await.unwrap();
        assert!(t.refresh_token.is_none(), "{}", f.label);
        let code = f
            .code(&client, &user, "openid offline_access", NOW + 60)
            .await;
        assert!(
            f.redeem_code(&client, &code)
                .await
                .unwrap()
                .refresh_token
                .is_some()
        );
    }
}

// ---- refresh_token ----

/// A fresh login: the refresh token and access token of a redeemed code.
async fn login(f: &Fixture, client: &Client, scope: &str) -> TokenResponse {
    let user = f.user().await;
    let code = f.code(client, &user, scope, NOW + 60).await;
    f.redeem_code(client, &code).await.unwrap()
}

#[tokio::test]
async fn rfc9700_4_14_2_refresh_rotates_and_reuse_revokes_the_family() {
    for f in fixtures().await {
        let l = f.label;
        let client = f.web_client().await;
        let first = login(&f, &client, "openid email").await;
        let old = first.refresh_token.unwrap();
        let second = f.refresh(&client, &old).await.unwrap();
        let new = second.refresh_token.clone().unwrap();
        assert_ne!(old, new, "{l}: rotated");
        assert_eq!(second.scope.as_deref(), Some("openid email"));
        assert!(second.id_token.is_some(), "{l}: OIDC Core §12.2");
        let third = f.refresh(&client, &new).await.unwrap();

        // The rotated one again: the whole family goes.
        refused(f.refresh(&client, &old).await, T::InvalidGrant, l);
        refused(
            f.refresh(&client, third.refresh_token.as_deref().unwrap())
                .await,
            T::InvalidGrant,
            l,
        );
        assert!(!f.active(&third.access_token).await, "{l}");
    }
}

#[tokio::test]
async fn rfc9700_4_14_2_a_retry_within_the_grace_answers_the_same_successor() {
    for f in fixtures().await {
        let l = f.label;
        let client = f.web_client().await;
        let other = f.web_client().await;
        let old = login(&f, &client, "openid email")
            .await
            .refresh_token
            .unwrap();
        let refresh_at = |token: String, now: i64| {
            let client = client.clone();
            let f = &f;
            async move {
                f.token_at(
                    &client,
                    &[("grant_type", "refresh_token"), ("refresh_token", &token)],
                    now,
                )
                .await
            }
        };
        let answered = refresh_at(old.clone(), NOW).await.unwrap();
        let successor = answered.refresh_token.clone().unwrap();
        // The answer was lost; the client sends the same request again, within the grace.
        let retried = refresh_at(old.clone(), NOW + 5).await.unwrap();
        assert_eq!(
            retried.refresh_token.as_deref(),
            Some(successor.as_str()),
            "{l}: the same successor, never a second new token"
        );
        assert!(retried.id_token.is_some(), "{l}");
        assert!(f.active(&retried.access_token).await, "{l}");
        // Another client presenting it is a replay, retry grace or not.
        refused(f.refresh(&other, &old).await, T::InvalidGrant, l);
        // ...which revoked the family: the successor is dead too.
        refused(
            refresh_at(successor.clone(), NOW + 6).await,
            T::InvalidGrant,
            l,
        );

        // After the grace, the same retry is a replay and revokes the family.
        let old = login(&f, &client, "openid").await.refresh_token.unwrap();
        let successor = refresh_at(old.clone(), NOW)
            .await
            .unwrap()
            .refresh_token
            .unwrap();
        let grace = f.config.tokens.refresh_retry_grace.as_secs() as i64;
        refused(refresh_at(old, NOW + grace + 1).await, T::InvalidGrant, l);
        refused(
            refresh_at(successor, NOW + grace + 2).await,
            T::InvalidGrant,
            l,
        );
    }
}

#[tokio::test]
async fn a_public_clients_refresh_gets_no_retry_grace() {
    for f in fixtures().await {
        let l = f.label;
        let mut m = metadata(
            &[GrantType::AuthorizationCode, GrantType::RefreshToken],
            "openid profile email",
        );
        m.token_endpoint_auth_method = AuthMethod::None;
        let client = f.client_with(m).await;
        let old = login(&f, &client, "openid").await.refresh_token.unwrap();
        let next = f
            .refresh(&client, &old)
            .await
            .unwrap()
            .refresh_token
            .unwrap();
        // At once, successor unused: still a replay for a public client.
        refused(f.refresh(&client, &old).await, T::InvalidGrant, l);
        refused(f.refresh(&client, &next).await, T::InvalidGrant, l);
    }
}

#[tokio::test]
async fn rfc6749_6_a_refresh_narrows_but_never_widens_and_a_refusal_costs_nothing() {
    for f in fixtures().await {
        let l = f.label;
        let client = f.web_client().await;
        let rt = login(&f, &client, "openid email")
            .await
            .refresh_token
            .unwrap();
        let wider = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("scope", "openid email profile"),
        ];
        refused(f.token(&client, &wider).await, T::InvalidScope, l);
        // The refused request rotated nothing: the token still works, once.
        let narrower = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("scope", "email"),
        ];
        let t = f.token(&client, &narrower).await.unwrap();
        assert_eq!(t.scope.as_deref(), Some("email"), "{l}");
        assert!(t.id_token.is_none(), "{l}: no openid, no id_token");
        // The next refresh token keeps the grant's scope (RFC 6749 §6).
        let next = f
            .refresh(&client, t.refresh_token.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(next.scope.as_deref(), Some("openid email"), "{l}");
    }
}

#[tokio::test]
async fn rfc6749_6_a_refresh_token_is_bound_to_its_client_and_its_user() {
    for f in fixtures().await {
        let l = f.label;
        let client = f.web_client().await;
        let other = f.web_client().await;
        let user = f.user().await;
        let code = f.code(&client, &user, "openid", NOW + 60).await;
        let rt = f
            .redeem_code(&client, &code)
            .await
            .unwrap()
            .refresh_token
            .unwrap();
        refused(f.refresh(&other, &rt).await, T::InvalidGrant, l);
        refused(f.refresh(&client, "not-a-token").await, T::InvalidGrant, l);
        f.store.set_user_disabled(&user, true, NOW).await.unwrap();
        refused(f.refresh(&client, &rt).await, T::InvalidGrant, l);
    }
}

// ---- client_credentials ----

#[tokio::test]
async fn rfc6749_4_4_a_client_gets_a_token_for_itself_without_user_scopes() {
    for f in fixtures().await {
        let l = f.label;
        let client = f
            .client(
                &[GrantType::ClientCredentials],
                "openid devices:read streams:internal",
            )
            .await;
        let t = f
            .token(&client, &[("grant_type", "client_credentials")])
            .await
            .unwrap();
        assert_eq!(
            t.scope.as_deref(),
            Some("devices:read streams:internal"),
            "{l}"
        );
        assert!(
            t.refresh_token.is_none() && t.id_token.is_none(),
            "{l}: §4.4.3"
        );
        let at = f.claims(&t.access_token).await;
        assert_eq!(at["sub"], json!(client.client_id), "{l}: RFC 9068 §2.2");
        assert!(at.get("gid").is_none(), "{l}: no user grant");

        for asked in ["openid", "devices:write", "a\"b"] {
            refused(
                f.token(
                    &client,
                    &[("grant_type", "client_credentials"), ("scope", asked)],
                )
                .await,
                T::InvalidScope,
                asked,
            );
        }
        let none = f.client(&[GrantType::ClientCredentials], "openid").await;
        let t = f
            .token(&none, &[("grant_type", "client_credentials")])
            .await
            .unwrap();
        assert!(t.scope.is_none(), "{l}: an empty scope is left out");
    }
}

// ---- device_code ----

#[tokio::test]
async fn rfc8628_3_5_polling_answers_pending_slow_down_denied_expired_then_tokens_once() {
    for f in fixtures().await {
        let l = f.label;
        let client = f
            .client(
                &[GrantType::DeviceCode, GrantType::RefreshToken],
                "openid devices:read",
            )
            .await;
        let user = f.user().await;
        let new_code = |user_code: &'static str| {
            let device_code = random_token(32);
            (device_code, user_code)
        };
        let store_code = |device_code: &str, user_code: &str| {
            let dc = f.pepper.digest(Purpose::DeviceCode, device_code.as_bytes());
            let uc = f.pepper.digest(Purpose::UserCode, user_code.as_bytes());
            let store = f.store.clone();
            let client_id = client.client_id.clone();
            async move {
                store
                    .insert_device_code(&NewDeviceCode {
                        device_code_digest: &dc,
                        user_code_digest: &uc,
                        client_id: &client_id,
                        scope: "openid devices:read",
                        interval_secs: 5,
                        now: NOW,
                        expires_at: NOW + 600,
                    })
                    .await
                    .unwrap();
            }
        };
        let poll = |code: String, at: i64| {
            let client = &client;
            let f = &f;
            async move {
                f.token_at(
                    client,
                    &[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                        ("device_code", &code),
                    ],
                    at,
                )
                .await
            }
        };
        let answer = |user_code: &str, approve: bool| {
            let uc = f
                .pepper
                .lookup_digests(Purpose::UserCode, user_code.as_bytes());
            let store = f.store.clone();
            let user = user.clone();
            async move {
                let authn = json!({"sid": "s", "auth_time": NOW - 5, "amr": ["hwk"], "acr": "phr"})
                    .to_string();
                let approved = approve.then_some((user.as_str(), authn.as_str()));
                assert!(store.answer_device(&uc, approved, NOW).await.unwrap());
            }
        };

        let (dc, uc) = new_code("BCDFGHJK");
        store_code(&dc, uc).await;
        refused(poll(dc.clone(), NOW + 5).await, T::AuthorizationPending, l);
        refused(poll(dc.clone(), NOW + 6).await, T::SlowDown, l);
        answer(uc, true).await;
        let t = poll(dc.clone(), NOW + 30).await.unwrap();
        assert!(t.refresh_token.is_some() && t.id_token.is_some(), "{l}");
        let at = f.claims(&t.access_token).await;
        assert_eq!(
            (at["sub"].as_str(), at["acr"].as_str()),
            (Some(user.as_str()), Some("phr"))
        );
        let devices = f.store.devices_of(&user, None, 10).await.unwrap();
        assert_eq!(devices.len(), 1, "{l}: the device is recorded");
        refused(poll(dc, NOW + 60).await, T::InvalidGrant, l);

        let (dc, uc) = new_code("LMNPQRST");
        store_code(&dc, uc).await;
        answer(uc, false).await;
        refused(poll(dc, NOW + 10).await, T::AccessDenied, l);

        let (dc, uc) = new_code("VWXZBCDF");
        store_code(&dc, uc).await;
        refused(poll(dc, NOW + 601).await, T::ExpiredToken, l);

        refused(poll(random_token(32), NOW).await, T::InvalidGrant, l);
        refused(poll("x".repeat(65), NOW).await, T::InvalidGrant, l);
    }
}

// ---- token exchange ----

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

#[tokio::test]
async fn rfc8693_delegation_names_the_actor_and_narrows_scope_and_audience() {
    for f in fixtures().await {
        let l = f.label;
        let mut meta = metadata(
            &[
                GrantType::AuthorizationCode,
                GrantType::TokenExchange,
                GrantType::ClientCredentials,
            ],
            "openid email devices:read",
        );
        meta.resources = vec![API.into()];
        let client = f.client_with(meta).await;
        let user_token = login(&f, &client, "openid email").await.access_token;
        let own = f
            .token(
                &client,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "devices:read"),
                ],
            )
            .await
            .unwrap()
            .access_token;
        let exchange = |extra: Vec<(&'static str, String)>| {
            let f = &f;
            let client = &client;
            let user_token = user_token.clone();
            let own = own.clone();
            async move {
                let mut form: Vec<(&str, String)> = vec![
                    ("grant_type", EXCHANGE.into()),
                    ("subject_token", user_token),
                    ("subject_token_type", AT.into()),
                    ("actor_token", own),
                    ("actor_token_type", AT.into()),
                ];
                for (k, v) in extra {
                    form.retain(|(n, _)| *n != k);
                    if !v.is_empty() {
                        form.push((k, v));
                    }
                }
                let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                f.token(client, &pairs).await
            }
        };
        let t = exchange(vec![("scope", "email".into()), ("audience", API.into())])
            .await
            .unwrap();
        assert_eq!(t.issued_token_type, Some(AT));
        assert!(t.refresh_token.is_none(), "{l}: no refresh token");
        let c = f.claims(&t.access_token).await;
        assert_eq!(c["act"], json!({"sub": client.client_id}), "{l}");
        assert_eq!(
            (c["scope"].as_str(), c["aud"].as_str()),
            (Some("email"), Some(API))
        );

        refused(
            exchange(vec![("scope", "email profile".into())]).await,
            T::InvalidScope,
            l,
        );
        refused(
            exchange(vec![("audience", "https://elsewhere.test".into())]).await,
            T::InvalidTarget,
            l,
        );
        refused(
            exchange(vec![("subject_token_type", "urn:x".into())]).await,
            T::InvalidRequest,
            l,
        );
        refused(
            exchange(vec![("subject_token", "not.a.jwt".into())]).await,
            T::InvalidRequest,
            l,
        );
        // Impersonation only for a client allowed it.
        refused(
            exchange(vec![
                ("actor_token", String::new()),
                ("actor_token_type", String::new()),
            ])
            .await,
            T::InvalidRequest,
            l,
        );
        // The actor is the client itself, and the subject token is meant for it.
        let stranger = f
            .client(
                &[GrantType::AuthorizationCode, GrantType::TokenExchange],
                "openid email",
            )
            .await;
        let theirs = login(&f, &stranger, "openid email").await.access_token;
        refused(
            exchange(vec![("subject_token", theirs)]).await,
            T::InvalidRequest,
            l,
        );
        refused(
            exchange(vec![("actor_token", user_token.clone())]).await,
            T::InvalidRequest,
            l,
        );
    }
}

// ---- RFC 9449 DPoP (the proof itself is checked before the grant: oauth::dpop) ----

const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
const OTHER_JKT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

fn code_form(code: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ]
}

#[tokio::test]
async fn rfc9449_5_tokens_of_a_proven_request_are_bound_to_its_key() {
    for f in fixtures().await {
        let l = f.label;
        let client = f.web_client().await;
        let user = f.user().await;
        let code = f.code(&client, &user, "openid", NOW + 60).await;
        let t = f
            .token_proven(&client, &code_form(&code), NOW, Some(JKT))
            .await
            .unwrap();
        assert_eq!(t.token_type, "DPoP", "{l}");
        assert_eq!(f.claims(&t.access_token).await["cnf"]["jkt"], JKT, "{l}");
        // Without a proof: Bearer, unbound.
        let plain = login(&f, &client, "openid").await;
        assert_eq!(plain.token_type, "Bearer", "{l}");
        assert!(f.claims(&plain.access_token).await.get("cnf").is_none());
        // client_credentials too.
        let service = f.client(&[GrantType::ClientCredentials], "api:read").await;
        let cc = f
            .token_proven(
                &service,
                &[("grant_type", "client_credentials")],
                NOW,
                Some(JKT),
            )
            .await
            .unwrap();
        assert_eq!(cc.token_type, "DPoP", "{l}");
        assert_eq!(f.claims(&cc.access_token).await["cnf"]["jkt"], JKT);
    }
}

#[tokio::test]
async fn rfc9449_5_2_a_client_registered_dpop_bound_must_prove() {
    for f in fixtures().await {
        let mut m = metadata(&[GrantType::ClientCredentials], "api:read");
        m.dpop_bound_access_tokens = true;
        let client = f.client_with(m).await;
        let form = [("grant_type", "client_credentials")];
        refused(f.token(&client, &form).await, T::InvalidRequest, f.label);
        assert!(f.token_proven(&client, &form, NOW, Some(JKT)).await.is_ok());
    }
}

#[tokio::test]
async fn rfc9449_10_a_code_bound_by_dpop_jkt_needs_a_proof_by_that_key() {
    for f in fixtures().await {
        let l = f.label;
        let client = f.web_client().await;
        let user = f.user().await;
        for jkt in [None, Some(OTHER_JKT)] {
            let code = f
                .code_bound(&client, &user, "openid", NOW + 60, Some(JKT))
                .await;
            refused(
                f.token_proven(&client, &code_form(&code), NOW, jkt).await,
                T::InvalidGrant,
                l,
            );
        }
        let code = f
            .code_bound(&client, &user, "openid", NOW + 60, Some(JKT))
            .await;
        let t = f
            .token_proven(&client, &code_form(&code), NOW, Some(JKT))
            .await
            .unwrap();
        assert_eq!(t.token_type, "DPoP", "{l}");
    }
}

#[tokio::test]
async fn rfc9449_5_a_public_clients_refresh_token_is_bound_to_its_key() {
    for f in fixtures().await {
        let l = f.label;
        let mut m = metadata(
            &[GrantType::AuthorizationCode, GrantType::RefreshToken],
            "openid",
        );
        m.token_endpoint_auth_method = AuthMethod::None;
        let public = f.client_with(m).await;
        let user = f.user().await;
        let code = f.code(&public, &user, "openid", NOW + 60).await;
        let first = f
            .token_proven(&public, &code_form(&code), NOW, Some(JKT))
            .await
            .unwrap();
        let rt = first.refresh_token.unwrap();
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ];
        // Without the key, or with another: refused, and the token stays usable.
        refused(f.token(&public, &form).await, T::InvalidGrant, l);
        refused(
            f.token_proven(&public, &form, NOW, Some(OTHER_JKT)).await,
            T::InvalidGrant,
            l,
        );
        let next = f
            .token_proven(&public, &form, NOW, Some(JKT))
            .await
            .unwrap();
        assert_eq!(next.token_type, "DPoP", "{l}");
        // The successor keeps the binding.
        let rt2 = next.refresh_token.unwrap();
        let form2 = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt2.as_str()),
        ];
        refused(f.token(&public, &form2).await, T::InvalidGrant, l);
        assert!(
            f.token_proven(&public, &form2, NOW, Some(JKT))
                .await
                .is_ok()
        );

        // A confidential client's refresh token is not bound (its credentials are enough).
        let web = f.web_client().await;
        let code = f.code(&web, &user, "openid", NOW + 60).await;
        let t = f
            .token_proven(&web, &code_form(&code), NOW, Some(JKT))
            .await
            .unwrap();
        let bearer = f.refresh(&web, &t.refresh_token.unwrap()).await.unwrap();
        assert_eq!(bearer.token_type, "Bearer", "{l}");
    }
}

#[tokio::test]
async fn rfc9449_a_bound_token_is_exchanged_only_with_a_proof_by_its_key() {
    for f in fixtures().await {
        let l = f.label;
        let mut meta = metadata(
            &[GrantType::AuthorizationCode, GrantType::TokenExchange],
            "openid email",
        );
        meta.token_exchange_impersonation = true;
        let client = f.client_with(meta).await;
        let user = f.user().await;
        let code = f.code(&client, &user, "openid email", NOW + 60).await;
        let bound = f
            .token_proven(&client, &code_form(&code), NOW, Some(JKT))
            .await
            .unwrap()
            .access_token;
        let form = [
            ("grant_type", EXCHANGE),
            ("subject_token", bound.as_str()),
            ("subject_token_type", AT),
        ];
        refused(f.token(&client, &form).await, T::InvalidRequest, l);
        refused(
            f.token_proven(&client, &form, NOW, Some(OTHER_JKT)).await,
            T::InvalidRequest,
            l,
        );
        let t = f
            .token_proven(&client, &form, NOW, Some(JKT))
            .await
            .unwrap();
        assert_eq!(t.token_type, "DPoP", "{l}");
    }
}
