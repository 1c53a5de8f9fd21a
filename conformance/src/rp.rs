//! The relying party: a certified RP library (`openidconnect`) for discovery, authorization
//! URLs with PKCE and nonce, code exchange, ID Token validation, userinfo and refresh; plus a
//! browser (a cookie-keeping HTTP client that fills sign-in and consent forms) and plain HTTP
//! for the requests a well-behaved library refuses to make.

use std::time::Duration;

use openidconnect::core::{
    CoreClient, CoreIdTokenClaims, CoreProviderMetadata, CoreTokenResponse, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthType, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    Scope, TokenResponse as _,
};
use serde_json::Value;
use url::Url;

use crate::html::forms;

pub type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

#[derive(Clone, Debug)]
pub struct Credentials {
    pub id: String,
    pub secret: String,
}

impl Credentials {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (id, secret) = s
            .split_once(':')
            .ok_or("expected CLIENT_ID:CLIENT_SECRET")?;
        Ok(Self {
            id: id.into(),
            secret: secret.into(),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Query,
    FormPost,
}

pub struct Rp {
    pub http: reqwest::Client,
    pub issuer: String,
    pub metadata: CoreProviderMetadata,
    pub raw_metadata: Value,
    pub redirect_uri: String,
    pub post_logout_redirect_uri: Option<String>,
    pub username: String,
    pub password: String,
    pub client: Credentials,
    pub post_client: Option<Credentials>,
    pub second_client: Option<Credentials>,
    pub mode: Mode,
    /// The main client's signing key (registered as its `jwks`), for request objects.
    pub client_key: Option<std::sync::Arc<RunnerKey>>,
}

/// A signing key of a client the runner plays (for private_key_jwt and request objects):
/// ES256, its public JWKS to register, and a keyring to sign with.
pub struct RunnerKey {
    ring: latchkey_jwks::Keyring,
    pub public_jwks: Value,
}

impl RunnerKey {
    pub fn generate() -> Result<Self, String> {
        let key = latchkey_jwks::PrivateKey::generate(latchkey_jwks::Alg::Es256)
            .map_err(|e| e.to_string())?;
        Self::from_key(key)
    }

    /// An ES256 key from a private JWK file (the static client's, made by local.sh).
    pub fn from_private_jwk_file(path: &str) -> Result<Self, String> {
        let json = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let key =
            latchkey_jwks::PrivateKey::from_private_jwk_json(latchkey_jwks::Alg::Es256, &json)
                .map_err(|e| format!("{path}: {e}"))?;
        Self::from_key(key)
    }

    fn from_key(key: latchkey_jwks::PrivateKey) -> Result<Self, String> {
        use latchkey_jwks::{Kek, KekRing, KeyPolicy, Keyring};
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let keks = KekRing::new(vec![Kek::new("runner", &[7; 32])]).map_err(|x| e(&x))?;
        let record = key.seal(&keks, 0, 0).map_err(|x| e(&x))?;
        let public: Value = serde_json::from_str(&record.public_jwk).map_err(|x| e(&x))?;
        let policy = KeyPolicy {
            publish_lead: 0,
            retain_retired: 0,
        };
        let ring = Keyring::load(&[record], &keks, 1, &policy).map_err(|x| e(&x))?;
        Ok(Self {
            ring,
            public_jwks: serde_json::json!({ "keys": [public] }),
        })
    }

    pub fn sign(&self, typ: &str, claims: &Value) -> Result<String, String> {
        self.ring
            .sign(
                latchkey_jwks::Alg::Es256,
                typ,
                claims.as_object().ok_or("claims must be an object")?,
            )
            .map_err(|e| e.to_string())
    }
}

/// What came back to the redirect URI, or the page the flow stopped on.
#[derive(Debug, Default, Clone)]
pub struct AuthResult {
    pub params: Vec<(String, String)>,
    /// How the response arrived: "query", "form_post", or "page" (never reached the client).
    pub via: &'static str,
    pub saw_login: bool,
    pub page_status: u16,
    pub page: String,
    /// Query parameters present on a form_post delivery (there should be none).
    pub leaked_query: bool,
}

impl AuthResult {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn code(&self) -> Option<&str> {
        self.get("code")
    }

    pub fn reached_client(&self) -> bool {
        self.via != "page"
    }
}

/// One authorization attempt, with what is needed to finish it.
pub struct Attempt {
    pub url: Url,
    pub state: CsrfToken,
    pub nonce: Nonce,
    pub verifier: PkceCodeVerifier,
}

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default()
}

impl Rp {
    pub async fn discover(
        http: &reqwest::Client,
        issuer: &str,
    ) -> Result<(CoreProviderMetadata, Value), String> {
        let url = IssuerUrl::new(issuer.to_owned()).map_err(|e| e.to_string())?;
        let metadata = CoreProviderMetadata::discover_async(url, http)
            .await
            .map_err(|e| format!("discovery through openidconnect failed: {e}"))?;
        let raw: Value = http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        Ok((metadata, raw))
    }

    pub fn client_for(&self, creds: &Credentials) -> Result<Client, String> {
        let redirect = RedirectUrl::new(self.redirect_uri.clone()).map_err(|e| e.to_string())?;
        Ok(CoreClient::from_provider_metadata(
            self.metadata.clone(),
            ClientId::new(creds.id.clone()),
            Some(ClientSecret::new(creds.secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    pub fn client(&self) -> Result<Client, String> {
        self.client_for(&self.client)
    }

    pub fn post_auth_client(&self, creds: &Credentials) -> Result<Client, String> {
        Ok(self.client_for(creds)?.set_auth_type(AuthType::RequestBody))
    }

    /// An authorization URL built by the RP library: code flow, PKCE S256, state, nonce,
    /// the given scopes, and `extra` parameters.
    pub fn attempt(
        &self,
        client: &Client,
        scopes: &[&str],
        extra: &[(&str, &str)],
        with_nonce: bool,
    ) -> Attempt {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client.authorize_url(
            AuthenticationFlow::<openidconnect::core::CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in scopes.iter().filter(|s| **s != "openid") {
            req = req.add_scope(Scope::new((*s).to_owned()));
        }
        req = req.set_pkce_challenge(challenge);
        if self.mode == Mode::FormPost {
            req = req.add_extra_param("response_mode", "form_post");
        }
        for (k, v) in extra {
            req = req.add_extra_param(*k, *v);
        }
        let (mut url, state, nonce) = req.url();
        if !with_nonce {
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != "nonce")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        Attempt {
            url,
            state,
            nonce,
            verifier,
        }
    }

    /// Follows an authorization request like a browser: signs in and consents when asked
    /// (if `interact`), and stops at the client's redirect URI or at a page.
    pub async fn run_browser(
        &self,
        b: &reqwest::Client,
        url: Url,
        post: bool,
        interact: bool,
    ) -> Result<AuthResult, String> {
        let mut resp = if post {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let mut base = url.clone();
            base.set_query(None);
            b.post(base).form(&pairs).send().await
        } else {
            b.get(url.clone()).send().await
        }
        .map_err(|e| e.to_string())?;
        let mut result = AuthResult::default();
        for _ in 0..8 {
            let status = resp.status().as_u16();
            if (300..400).contains(&status) {
                let loc = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or("redirect without Location")?
                    .to_owned();
                let next = Url::parse(&self.issuer)
                    .and_then(|i| i.join(&loc))
                    .map_err(|e| e.to_string())?;
                if next.as_str().starts_with(&self.redirect_uri) {
                    result.via = "query";
                    result.params = next
                        .query_pairs()
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                    return Ok(result);
                }
                if !next.as_str().starts_with(&self.issuer) {
                    return Err(format!("redirected to an unexpected place: {next}"));
                }
                resp = b.get(next).send().await.map_err(|e| e.to_string())?;
                continue;
            }
            let html = resp.text().await.map_err(|e| e.to_string())?;
            let page_forms = forms(&html);
            // A form_post response: a form that posts to the redirect URI.
            if let Some(f) = page_forms.iter().find(|f| f.action == self.redirect_uri) {
                result.via = "form_post";
                result.leaked_query = f.method != "post";
                result.params = f
                    .inputs
                    .iter()
                    .map(|(n, _, v)| (n.clone(), v.clone()))
                    .collect();
                return Ok(result);
            }
            let login = page_forms.iter().find(|f| f.has_password());
            let consent = page_forms
                .iter()
                .find(|f| f.buttons.iter().any(|(_, v)| is_yes(v)));
            let next = match (interact, login, consent) {
                (true, Some(f), _) => {
                    result.saw_login = true;
                    let mut fields: Vec<(String, String)> = Vec::new();
                    for (name, kind, value) in &f.inputs {
                        let v = match kind.as_str() {
                            "password" => self.password.clone(),
                            // As a person would: type the test user's name over any prefill
                            // (login_hint may have put someone else's there).
                            "email" | "text" => self.username.clone(),
                            _ => value.clone(),
                        };
                        fields.push((name.clone(), v));
                    }
                    Some((f.action.clone(), fields))
                }
                (true, None, Some(f)) => {
                    let mut fields: Vec<(String, String)> = f
                        .inputs
                        .iter()
                        .map(|(n, _, v)| (n.clone(), v.clone()))
                        .collect();
                    if let Some((n, v)) = f.buttons.iter().find(|(_, v)| is_yes(v)) {
                        fields.push((n.clone(), v.clone()));
                    }
                    Some((f.action.clone(), fields))
                }
                _ => None,
            };
            let Some((action, fields)) = next else {
                result.via = "page";
                result.page_status = status;
                result.page = html;
                return Ok(result);
            };
            let target = Url::parse(&self.issuer)
                .and_then(|i| i.join(&action))
                .map_err(|e| e.to_string())?;
            resp = b
                .post(target)
                .form(&fields)
                .send()
                .await
                .map_err(|e| e.to_string())?;
        }
        Err("too many steps in the browser flow".into())
    }

    /// Exchanges a code through the RP library.
    pub async fn exchange(
        &self,
        client: &Client,
        code: &str,
        verifier: PkceCodeVerifier,
    ) -> Result<CoreTokenResponse, String> {
        client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| e.to_string())?
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| describe_token_error(&e))
    }

    pub async fn refresh(&self, client: &Client, rt: &str) -> Result<CoreTokenResponse, String> {
        client
            .exchange_refresh_token(&RefreshToken::new(rt.to_owned()))
            .map_err(|e| e.to_string())?
            .request_async(&self.http)
            .await
            .map_err(|e| describe_token_error(&e))
    }

    /// Validates the ID Token with the RP library (signature against the published keys,
    /// `iss`, `aud`, `exp`, `nonce`), then the suite's extra checks.
    pub fn id_token_claims(
        &self,
        client: &Client,
        tokens: &CoreTokenResponse,
        nonce: Option<&Nonce>,
    ) -> Result<CoreIdTokenClaims, String> {
        let id_token = tokens
            .id_token()
            .ok_or("the token response has no id_token")?;
        let verifier = client.id_token_verifier();
        let claims = match nonce {
            Some(n) => id_token.claims(&verifier, n),
            None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        }
        .map_err(|e| format!("id_token does not validate: {e}"))?
        .clone();
        let now = chrono_now();
        let exp = claims.expiration().timestamp();
        if exp > now + 10 * 365 * 86400 {
            return Err("exp looks like milliseconds".into());
        }
        if claims.issue_time().timestamp() > now + 60 {
            return Err("iat is in the future".into());
        }
        if claims
            .auth_time()
            .is_some_and(|at| at.timestamp() > now + 60)
        {
            return Err("auth_time is in the future".into());
        }
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token.signing_alg().map_err(|e| e.to_string())?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| format!("no signing key: {e}"))?;
            let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key)
                .map_err(|e| e.to_string())?;
            if actual != *expected {
                return Err("at_hash does not match the access token".into());
            }
        }
        Ok(claims)
    }

    pub async fn userinfo(
        &self,
        client: &Client,
        tokens: &CoreTokenResponse,
    ) -> Result<CoreUserInfoClaims, String> {
        client
            .user_info(tokens.access_token().to_owned(), None)
            .map_err(|e| e.to_string())?
            .request_async(&self.http)
            .await
            .map_err(|e| format!("userinfo failed: {e}"))
    }

    pub fn endpoint(&self, name: &str) -> Option<String> {
        self.raw_metadata
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// A raw token request, for the answers a library would hide.
    pub async fn raw_token(
        &self,
        creds: &Credentials,
        form: &[(&str, &str)],
    ) -> Result<(u16, Value), String> {
        let url = self.endpoint("token_endpoint").ok_or("no token_endpoint")?;
        let resp = self
            .http
            .post(url)
            .basic_auth(form_encode(&creds.id), Some(form_encode(&creds.secret)))
            .form(form)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Runs a full successful flow and returns everything a module may check.
    pub async fn happy(
        &self,
        b: &reqwest::Client,
        scopes: &[&str],
        extra: &[(&str, &str)],
    ) -> Result<Happy, String> {
        let client = self.client()?;
        let attempt = self.attempt(&client, scopes, extra, true);
        let result = self
            .run_browser(b, attempt.url.clone(), false, true)
            .await?;
        self.check_response(&result, &attempt)?;
        let code = result
            .code()
            .ok_or_else(|| format!("no code: {:?}", result.params))?;
        let tokens = self.exchange(&client, code, attempt.verifier).await?;
        let claims = self.id_token_claims(&client, &tokens, Some(&attempt.nonce))?;
        Ok(Happy {
            client,
            tokens,
            claims,
            result,
        })
    }

    /// The checks every authorization response gets: it reached the client in the mode asked
    /// for, `state` is echoed, and `iss` is there and right when advertised (RFC 9207).
    pub fn check_response(&self, r: &AuthResult, attempt: &Attempt) -> Result<(), String> {
        if !r.reached_client() {
            return Err(format!(
                "the flow stopped on a page (status {})",
                r.page_status
            ));
        }
        let want = if self.mode == Mode::FormPost {
            "form_post"
        } else {
            "query"
        };
        if r.via != want {
            return Err(format!("the response came by {} instead of {want}", r.via));
        }
        if r.leaked_query {
            return Err("the form_post response is not a POST".into());
        }
        if r.get("state") != Some(attempt.state.secret().as_str()) {
            return Err("state was not echoed".into());
        }
        let advertised = self
            .raw_metadata
            .get("authorization_response_iss_parameter_supported")
            == Some(&Value::Bool(true));
        if advertised && r.get("iss") != Some(self.issuer.as_str()) {
            return Err("iss is missing or wrong in the authorization response (RFC 9207)".into());
        }
        Ok(())
    }
}

pub struct Happy {
    pub client: Client,
    pub tokens: CoreTokenResponse,
    pub claims: CoreIdTokenClaims,
    pub result: AuthResult,
}

fn is_yes(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "allow" | "approve" | "accept" | "yes" | "consent"
    )
}

pub fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn describe_token_error<E: std::fmt::Display>(e: &E) -> String {
    format!("token request failed: {e}")
}

impl Rp {
    /// `oidcc-ensure-request-object-with-redirect-uri`: the request as a request object signed
    /// by `key`, with a wrong `redirect_uri` beside it; the provider must use the object's.
    pub async fn request_object_redirect_uri(&self, key: &RunnerKey) -> Result<(), String> {
        let client = self.client()?;
        let a = self.attempt(&client, &["openid"], &[], true);
        let now = chrono_now();
        let mut claims: serde_json::Map<String, Value> = a
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        for (k, v) in [
            ("iss", Value::from(self.client.id.clone())),
            ("aud", Value::from(self.issuer.clone())),
            ("iat", Value::from(now)),
            ("nbf", Value::from(now)),
            ("exp", Value::from(now + 300)),
            (
                "jti",
                Value::from(format!("ro-{now}-{}", std::process::id())),
            ),
        ] {
            claims.insert(k.into(), v);
        }
        let object = key.sign("oauth-authz-req+jwt", &Value::Object(claims))?;
        let mut url = a.url.clone();
        url.set_query(None);
        url.query_pairs_mut()
            .append_pair("client_id", &self.client.id)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid")
            .append_pair(
                "redirect_uri",
                "https://rp.conformance.invalid/not-registered",
            )
            .append_pair("request", &object);
        let r = self.run_browser(&browser(), url, false, true).await?;
        self.check_response(&r, &a)?;
        let tokens = self
            .exchange(&client, r.code().ok_or("no code")?, a.verifier)
            .await?;
        self.id_token_claims(&client, &tokens, Some(&a.nonce))?;
        Ok(())
    }
}

pub fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
