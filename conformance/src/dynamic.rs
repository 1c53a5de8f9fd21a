//! `oidcc-dynamic-certification-test-plan`: the modules that need a client registered on the
//! fly (RFC 7591). Each registers its own client with the initial access token it was given.

use openidconnect::{OAuth2TokenResponse as _, TokenResponse as _};
use serde_json::{Value, json};

use crate::report::{Outcome, Report};
use crate::rp::{Credentials, Rp, RunnerKey, browser};

type R = Result<Outcome, String>;

pub async fn run(rp: &Rp, iat: Option<&str>, config: Outcome, report: &mut Report) {
    let Some(endpoint) = rp.endpoint("registration_endpoint") else {
        for m in MODULES {
            report.record(
                m,
                Outcome::Skip(
                    "the provider offers no dynamic registration (no registration_endpoint)".into(),
                ),
            );
        }
        return;
    };
    let d = Dyn { rp, endpoint, iat };
    let done = |r: R| r.unwrap_or_else(Outcome::Fail);
    report.record("oidcc-server", done(d.server().await));
    report.record("oidcc-discovery-endpoint-verification", config);
    report.record("oidcc-idtoken-rs256", done(d.idtoken_alg("RS256").await));
    report.record(
        "oidcc-idtoken-unsigned",
        Outcome::Skip("`none` is not advertised".into()),
    );
    report.record(
        "oidcc-userinfo-rs256",
        Outcome::Skip("userinfo_signing_alg_values_supported is not advertised".into()),
    );
    report.record(
        "oidcc-ensure-redirect-uri-in-authorization-request",
        done(d.redirect_uri_required().await),
    );
    report.record(
        "oidcc-redirect-uri-query-OK",
        done(d.redirect_query(Query::Same).await),
    );
    report.record(
        "oidcc-redirect-uri-query-mismatch",
        done(d.redirect_query(Query::Mismatch).await),
    );
    report.record(
        "oidcc-redirect-uri-query-added",
        done(d.redirect_query(Query::Added).await),
    );
    report.record("oidcc-redirect-uri-regfrag", done(d.regfrag().await));
    report.record(
        "oidcc-registration-logo-uri",
        done(
            d.shown_on_page("logo_uri", "https://rp.conformance.invalid/logo.png")
                .await,
        ),
    );
    report.record(
        "oidcc-registration-policy-uri",
        done(
            d.shown_on_page("policy_uri", "https://rp.conformance.invalid/privacy")
                .await,
        ),
    );
    report.record(
        "oidcc-registration-tos-uri",
        done(
            d.shown_on_page("tos_uri", "https://rp.conformance.invalid/terms")
                .await,
        ),
    );
    report.record(
        "oidcc-registration-jwks-uri",
        Outcome::Skip("this runner does not host an https jwks_uri (private_key_jwt with jwks by value is checked below)".into()),
    );
    report.record(
        "oidcc-registration-sector-uri",
        Outcome::Skip("pairwise subjects are not advertised".into()),
    );
    report.record(
        "oidcc-registration-sector-bad",
        Outcome::Skip("pairwise subjects are not advertised".into()),
    );
    report.record("oidcc-server-rotate-keys", Outcome::Skip("key rotation is an operator action (latchkey keys rotate); covered by the server's tests".into()));
    report.record(
        "oidcc-refresh-token-rp-key-rotation",
        Outcome::Skip("this runner does not host an https jwks_uri to rotate".into()),
    );
    report.record(
        "oidcc-request-uri-unsigned",
        Outcome::Skip("request_uri_parameter_supported is false".into()),
    );
    report.record(
        "oidcc-request-uri-signed-rs256",
        Outcome::Skip("request_uri_parameter_supported is false".into()),
    );
    report.record(
        "oidcc-ensure-request-object-with-redirect-uri",
        done(d.request_object_redirect_uri().await),
    );
    report.record("oidcc-refresh-token", done(d.refresh().await));
    report.record(
        "oidcc-ensure-client-assertion-with-iss-aud-succeeds",
        done(d.client_assertion_iss_aud().await),
    );
}

const MODULES: [&str; 23] = [
    "oidcc-server",
    "oidcc-discovery-endpoint-verification",
    "oidcc-idtoken-rs256",
    "oidcc-idtoken-unsigned",
    "oidcc-userinfo-rs256",
    "oidcc-ensure-redirect-uri-in-authorization-request",
    "oidcc-redirect-uri-query-OK",
    "oidcc-redirect-uri-query-mismatch",
    "oidcc-redirect-uri-query-added",
    "oidcc-redirect-uri-regfrag",
    "oidcc-registration-logo-uri",
    "oidcc-registration-policy-uri",
    "oidcc-registration-tos-uri",
    "oidcc-registration-jwks-uri",
    "oidcc-registration-sector-uri",
    "oidcc-registration-sector-bad",
    "oidcc-server-rotate-keys",
    "oidcc-refresh-token-rp-key-rotation",
    "oidcc-request-uri-unsigned",
    "oidcc-request-uri-signed-rs256",
    "oidcc-ensure-request-object-with-redirect-uri",
    "oidcc-refresh-token",
    "oidcc-ensure-client-assertion-with-iss-aud-succeeds",
];

enum Query {
    Same,
    Mismatch,
    Added,
}

pub(crate) struct Dyn<'a> {
    pub(crate) rp: &'a Rp,
    pub(crate) endpoint: String,
    pub(crate) iat: Option<&'a str>,
}

impl Dyn<'_> {
    async fn register(&self, body: Value) -> Result<(u16, Value), String> {
        let mut req = self.rp.http.post(&self.endpoint).json(&body);
        if let Some(t) = self.iat {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Registers a client and returns an RP configured with it.
    pub(crate) async fn rp_with(&self, mut body: Value) -> Result<Rp, String> {
        if body.get("redirect_uris").is_none() {
            body["redirect_uris"] = json!([self.rp.redirect_uri]);
        }
        body["scope"] = json!("openid profile email offline_access");
        body["grant_types"] = json!(["authorization_code", "refresh_token"]);
        let (status, c) = self.register(body).await?;
        if status != 201 {
            return Err(format!("registration answered {status}: {c}"));
        }
        let id = c["client_id"].as_str().ok_or("no client_id")?.to_owned();
        let secret = c["client_secret"]
            .as_str()
            .ok_or("no client_secret")?
            .to_owned();
        let redirect = c["redirect_uris"][0]
            .as_str()
            .unwrap_or(&self.rp.redirect_uri)
            .to_owned();
        Ok(Rp {
            http: self.rp.http.clone(),
            issuer: self.rp.issuer.clone(),
            metadata: self.rp.metadata.clone(),
            raw_metadata: self.rp.raw_metadata.clone(),
            redirect_uri: redirect,
            post_logout_redirect_uri: None,
            username: self.rp.username.clone(),
            password: self.rp.password.clone(),
            client: Credentials { id, secret },
            post_client: None,
            second_client: None,
            mode: self.rp.mode,
            client_key: None,
        })
    }

    async fn server(&self) -> R {
        let rp = self.rp_with(json!({"client_name": "Dynamic RP"})).await?;
        let h = rp.happy(&browser(), &["openid"], &[]).await?;
        let info = rp.userinfo(&h.client, &h.tokens).await?;
        if info.subject() != h.claims.subject() {
            return Err("userinfo sub differs".into());
        }
        Ok(Outcome::Pass)
    }

    async fn idtoken_alg(&self, alg: &str) -> R {
        let rp = self
            .rp_with(json!({"id_token_signed_response_alg": alg}))
            .await?;
        let h = rp.happy(&browser(), &["openid"], &[]).await?;
        let got = h
            .tokens
            .id_token()
            .ok_or("no id_token")?
            .signing_alg()
            .map_err(|e| e.to_string())?;
        let want =
            serde_json::from_value::<openidconnect::core::CoreJwsSigningAlgorithm>(json!(alg))
                .map_err(|e| e.to_string())?;
        if *got != want {
            return Err(format!("registered {alg}, got {got:?}"));
        }
        Ok(Outcome::Pass)
    }

    async fn redirect_uri_required(&self) -> R {
        let second = format!("{}2", self.rp.redirect_uri);
        let rp = self
            .rp_with(json!({"redirect_uris": [self.rp.redirect_uri, second]}))
            .await?;
        let client = rp.client()?;
        let mut a = rp.attempt(&client, &["openid"], &[], true);
        let kept: Vec<(String, String)> = a
            .url
            .query_pairs()
            .filter(|(k, _)| k != "redirect_uri")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        a.url.query_pairs_mut().clear().extend_pairs(kept);
        let r = rp.run_browser(&browser(), a.url, false, true).await?;
        if r.reached_client() {
            return Err("the provider redirected although redirect_uri was missing".into());
        }
        Ok(Outcome::Pass)
    }

    async fn redirect_query(&self, q: Query) -> R {
        let registered = format!("{}?foo=bar", self.rp.redirect_uri);
        let rp = self.rp_with(json!({"redirect_uris": [registered]})).await?;
        let used = match q {
            Query::Same => registered.clone(),
            Query::Mismatch => format!("{}?foo=zot", self.rp.redirect_uri),
            Query::Added => format!("{registered}&foo2=bar2"),
        };
        let mut rp = rp;
        rp.redirect_uri = used.clone();
        let client = rp.client()?;
        let a = rp.attempt(&client, &["openid"], &[], true);
        let r = rp
            .run_browser(&browser(), a.url.clone(), false, true)
            .await?;
        match q {
            Query::Same => {
                rp.check_response(&r, &a)?;
                if r.get("foo") != Some("bar") {
                    return Err("the registered query was not kept".into());
                }
                rp.exchange(&client, r.code().ok_or("no code")?, a.verifier)
                    .await?;
                Ok(Outcome::Pass)
            }
            Query::Mismatch | Query::Added => {
                if r.reached_client() {
                    Err(format!("redirected to an unregistered URI {used}"))
                } else {
                    Ok(Outcome::Pass)
                }
            }
        }
    }

    async fn regfrag(&self) -> R {
        let (status, body) = self
            .register(json!({"redirect_uris": [format!("{}#fragment", self.rp.redirect_uri)]}))
            .await?;
        if status == 201 {
            return Err("a redirect URI with a fragment was registered".into());
        }
        match body.get("error").and_then(Value::as_str) {
            Some("invalid_redirect_uri" | "invalid_client_metadata") => Ok(Outcome::Pass),
            other => Err(format!("expected invalid_redirect_uri, got {other:?}")),
        }
    }

    /// The value must be on a page the user sees during the flow (sign-in or consent).
    async fn shown_on_page(&self, field: &str, value: &str) -> R {
        let rp = self
            .rp_with(json!({ field: value, "client_name": "Dynamic RP with links" }))
            .await?;
        let client = rp.client()?;
        let a = rp.attempt(&client, &["openid"], &[], true);
        let b = browser();
        let mut resp = b
            .get(a.url.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        for _ in 0..6 {
            if resp.status().is_redirection() {
                let loc = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                if loc.starts_with(&rp.redirect_uri) {
                    break;
                }
                let next = url::Url::parse(&rp.issuer)
                    .and_then(|i| i.join(&loc))
                    .map_err(|e| e.to_string())?;
                resp = b.get(next).send().await.map_err(|e| e.to_string())?;
                continue;
            }
            let html = resp.text().await.map_err(|e| e.to_string())?;
            if crate::html::unescape(&html).contains(value) {
                return Ok(Outcome::Pass);
            }
            let Some(f) = crate::html::forms(&html)
                .into_iter()
                .find(|f| f.has_password())
            else {
                break;
            };
            let fields: Vec<(String, String)> = f
                .inputs
                .iter()
                .map(|(n, t, v)| match t.as_str() {
                    "password" => (n.clone(), rp.password.clone()),
                    "email" | "text" => (n.clone(), rp.username.clone()),
                    _ => (n.clone(), v.clone()),
                })
                .collect();
            let target = url::Url::parse(&rp.issuer)
                .and_then(|i| i.join(&f.action))
                .map_err(|e| e.to_string())?;
            resp = b
                .post(target)
                .form(&fields)
                .send()
                .await
                .map_err(|e| e.to_string())?;
        }
        Err(format!("{field} is not shown to the user during the flow"))
    }

    /// private_key_jwt with `aud` = the issuer (OIDC Core §9 allows it) must be accepted.
    async fn client_assertion_iss_aud(&self) -> R {
        let methods = self
            .rp
            .raw_metadata
            .get("token_endpoint_auth_methods_supported");
        if !methods
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|v| v == "private_key_jwt"))
        {
            return Ok(Outcome::Skip("private_key_jwt is not advertised".into()));
        }
        let key = RunnerKey::generate()?;
        let (status, c) = self
            .register(json!({
                "redirect_uris": [self.rp.redirect_uri],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": key.public_jwks,
                "scope": "openid",
            }))
            .await?;
        if status != 201 {
            return Err(format!("registration answered {status}: {c}"));
        }
        let client_id = c["client_id"].as_str().ok_or("no client_id")?.to_owned();
        let mut rp = self.rp_with_existing(&client_id);
        rp.client.secret = String::new();
        let client = rp.client()?;
        let a = rp.attempt(&client, &["openid"], &[], true);
        let r = rp
            .run_browser(&browser(), a.url.clone(), false, true)
            .await?;
        rp.check_response(&r, &a)?;
        let code = r.code().ok_or("no code")?;
        let now = crate::rp::chrono_now();
        let claims = json!({
            "iss": client_id, "sub": client_id, "aud": rp.issuer, "iat": now, "exp": now + 60,
            "jti": format!("runner-{now}-{}", std::process::id()),
        });
        let assertion = key.sign("JWT", &claims)?;
        let url = rp.endpoint("token_endpoint").ok_or("no token_endpoint")?;
        let resp = rp
            .http
            .post(url)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", rp.redirect_uri.as_str()),
                ("code_verifier", a.verifier.secret().as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(format!(
                "the token endpoint answered {status}: {}",
                resp.text().await.unwrap_or_default()
            ));
        }
        Ok(Outcome::Pass)
    }

    /// A client registered with its `jwks`, sending its request as a signed request object.
    async fn request_object_redirect_uri(&self) -> R {
        if self.rp.raw_metadata.get("request_parameter_supported") != Some(&Value::Bool(true)) {
            return Ok(Outcome::Skip("request_parameter_supported is false".into()));
        }
        let key = RunnerKey::generate()?;
        let rp = self.rp_with(json!({ "jwks": key.public_jwks })).await?;
        rp.request_object_redirect_uri(&key).await?;
        Ok(Outcome::Pass)
    }

    fn rp_with_existing(&self, client_id: &str) -> Rp {
        Rp {
            http: self.rp.http.clone(),
            issuer: self.rp.issuer.clone(),
            metadata: self.rp.metadata.clone(),
            raw_metadata: self.rp.raw_metadata.clone(),
            redirect_uri: self.rp.redirect_uri.clone(),
            post_logout_redirect_uri: None,
            username: self.rp.username.clone(),
            password: self.rp.password.clone(),
            client: Credentials {
                id: client_id.to_owned(),
                secret: String::new(),
            },
            post_client: None,
            second_client: None,
            mode: self.rp.mode,
            client_key: None,
        }
    }

    async fn refresh(&self) -> R {
        let rp = self.rp_with(json!({})).await?;
        let h = rp
            .happy(&browser(), &["openid", "offline_access"], &[])
            .await?;
        let rt = h
            .tokens
            .refresh_token()
            .ok_or("no refresh token")?
            .secret()
            .clone();
        let refreshed = rp.refresh(&h.client, &rt).await?;
        if refreshed.id_token().is_some() {
            rp.id_token_claims(&h.client, &refreshed, None)?;
        }
        Ok(Outcome::Pass)
    }
}
