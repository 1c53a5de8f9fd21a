//! `fapi2-security-profile-final-test-plan`, variant private_key_jwt client authentication,
//! DPoP sender constraining, plain FAPI, unsigned (pushed) requests, plain responses: the
//! modules of the OpenID Foundation's plan (`FAPI2SPFinalTestPlan`, the message-signing
//! plan's modules less those needing signed requests), by their suite names, with the checks
//! each makes. It needs two clients registered for the profile (`--fapi-client`,
//! `--fapi-second-client`, private_key_jwt with the key of `--client-jwk`). Modules that need
//! what the runner has not (an RSA client key, a user who declines, another profile) SKIP
//! with the reason.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_jwks::{Alg, PrivateKey};
use openidconnect::{CsrfToken, PkceCodeChallenge};
use serde_json::{Value, json};

use crate::report::{Outcome, Report};
use crate::rp::{AuthResult, Rp, RunnerKey, browser, chrono_now};

type R = Result<Outcome, String>;

const PREFIX: &str = "fapi2-security-profile-final-";

pub struct Fapi<'a> {
    pub rp: &'a Rp,
    pub client: String,
    pub second: String,
    pub key: &'a RunnerKey,
    pub expiry_wait: u64,
}

/// One authorization request, ready to push.
struct Request {
    params: Vec<(String, String)>,
    verifier: String,
    state: String,
}

/// What a pushed and followed request came to.
struct Flow {
    result: AuthResult,
    verifier: String,
    state: String,
}

fn next_id() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub async fn run(f: &Fapi<'_>, report: &mut Report) {
    let done = |r: R| r.unwrap_or_else(Outcome::Fail);
    let m = |name: &str| format!("{PREFIX}{name}");
    report.record(&m("discovery-end-point-verification"), f.discovery());
    report.record(&m("happy-flow"), done(f.happy_flow().await));
    report.record(
        &m("user-rejects-authentication"),
        Outcome::Skip("the runner's user always approves".into()),
    );
    report.record(
        &m("ensure-authorization-request-without-state-success"),
        done(f.variant_succeeds(&[("state", "")]).await),
    );
    report.record(
        &m("ensure-authorization-request-without-nonce-success"),
        done(f.variant_succeeds(&[("nonce", "")]).await),
    );
    let nonce64 = "n".repeat(64);
    report.record(
        &m("ensure-authorization-request-with-64-char-nonce-success"),
        done(f.variant_succeeds(&[("nonce", &nonce64)]).await),
    );
    report.record(
        &m("ensure-other-scope-order-succeeds"),
        done(f.variant_succeeds(&[("scope", "email openid")]).await),
    );
    report.record(
        &m("access-token-type-header-case-sensitivity"),
        done(f.scheme_case().await),
    );
    report.record(&m("check-dpop-proof-nbf-exp"), done(f.proof_iat(0).await));
    report.record(
        &m("ensure-dpopproof-with-iat-10seconds-before-succeeds"),
        done(f.proof_iat(-10).await),
    );
    report.record(
        &m("ensure-dpopproof-with-iat-10seconds-after-succeeds"),
        done(f.proof_iat(10).await),
    );
    report.record(
        &m("ensure-mismatched-dpop-jkt-fails"),
        done(f.mismatched_jkt_at_par().await),
    );
    report.record(
        &m("ensure-token-endpoint-fails-with-mismatched-dpop-proof-jkt"),
        done(f.token_with_other_key(false).await),
    );
    report.record(
        &m("ensure-token-endpoint-fails-with-mismatched-dpop-jkt"),
        done(f.token_with_other_key(true).await),
    );
    report.record(
        &m("ensure-dpopproof-at-par-endpoint-binding-success"),
        done(f.bound_success(false).await),
    );
    report.record(
        &m("ensure-dpop-auth-code-binding-success"),
        done(f.bound_success(true).await),
    );
    let long = "x".repeat(384);
    report.record(
        &m("ensure-authorization-request-with-long-nonce"),
        done(f.variant_succeeds(&[("nonce", &long)]).await),
    );
    report.record(
        &m("ensure-authorization-request-with-long-state"),
        done(f.variant_succeeds(&[("state", &long)]).await),
    );
    report.record(
        &m("ensure-registered-redirect-uri"),
        done(
            f.par_refused(&[(
                "redirect_uri",
                "https://rp.conformance.invalid/unregistered",
            )])
            .await,
        ),
    );
    report.record(
        &m("ensure-unsigned-authorization-request-without-using-par-fails"),
        done(f.without_par().await),
    );
    report.record(
        &m("ensure-redirect-uri-in-authorization-request"),
        done(f.par_refused(&[("redirect_uri", "")]).await),
    );
    report.record(
        &m("ensure-response-type-code-idtoken-fails"),
        done(f.par_refused(&[("response_type", "code id_token")]).await),
    );
    report.record(
        &m("ensure-response-type-token-fails"),
        done(f.par_refused(&[("response_type", "token")]).await),
    );
    report.record(
        &m("ensure-client-id-in-token-endpoint"),
        done(f.token_without_client_auth().await),
    );
    report.record(
        &m("ensure-holder-of-key-required"),
        done(f.holder_of_key_required().await),
    );
    report.record(
        &m("ensure-authorization-code-is-bound-to-client"),
        done(f.code_bound_to_client().await),
    );
    report.record(
        &m("attempt-reuse-authorization-code-after-one-second"),
        done(f.code_reuse().await),
    );
    report.record(
        &m("ensure-token-endpoint-fails-with-expired-auth-code"),
        done(f.expired_code().await),
    );
    report.record(
        &m("ensure-signed-client-assertion-with-RS256-fails"),
        Outcome::Skip(
            "the runner's FAPI client has no RSA key registered to sign an RS256 assertion with"
                .into(),
        ),
    );
    report.record(
        &m("ensure-client-assertion-in-token-endpoint"),
        done(f.token_without_client_auth().await),
    );
    report.record(
        &m("ensure-client-assertion-with-exp-is-5-minutes-in-past-fails"),
        done(f.bad_assertion_at_token(Bad::Expired).await),
    );
    report.record(
        &m("ensure-client-assertion-with-wrong-aud-fails"),
        done(f.bad_assertion_at_token(Bad::WrongAud).await),
    );
    report.record(
        &m("ensure-client-assertion-with-no-sub-fails"),
        done(f.bad_assertion_at_token(Bad::NoSub).await),
    );
    report.record(&m("dpop-negative-tests"), done(f.dpop_negative().await));
    report.record(&m("refresh-token"), done(f.refresh().await));
    report.record(
        &m("par-ensure-reused-request-uri-prior-to-auth-completion-succeeds"),
        Outcome::Skip(
            "Latchkey takes a request_uri once, at the first request (RFC 9126 §4 allows either)"
                .into(),
        ),
    );
    report.record(
        &m("par-attempt-reuse-request_uri"),
        done(f.request_uri_reuse().await),
    );
    report.record(
        &m("par-attempt-to-use-expired-request_uri"),
        done(f.expired_request_uri().await),
    );
    report.record(
        &m("par-ensure-jwt-client-assertions-nbf-8-seconds-in-the-future-is-accepted"),
        done(f.par_assertion_in_future(8, true).await),
    );
    report.record(
        &m("par-ensure-jwt-client-assertions-nbf-over-60-seconds-in-the-future-fails"),
        done(f.par_assertion_in_future(61, false).await),
    );
    report.record(
        &m("par-attempt-to-use-request_uri-for-different-client"),
        done(f.request_uri_bound_to_client().await),
    );
    report.record(
        &m("par-authorization-request-containing-request_uri-form-param"),
        done(
            f.par_refused(&[("request_uri", "urn:ietf:params:oauth:request_uri:abc")])
                .await,
        ),
    );
    report.record(
        &m("par-attempt-invalid-http-method"),
        done(f.par_get().await),
    );
    report.record(
        &m("par-ensure-pkce-required"),
        done(
            f.par_refused(&[("code_challenge", ""), ("code_challenge_method", "")])
                .await,
        ),
    );
    report.record(
        &m("ensure-pkce-code-verifier-required"),
        done(f.verifier(Some("")).await),
    );
    report.record(
        &m("incorrect-pkce-code-verifier-rejected"),
        done(
            f.verifier(Some("incorrect-verifier-incorrect-verifier-incorrect"))
                .await,
        ),
    );
    report.record(
        &m("par-plain-pkce-rejected"),
        done(f.par_refused(&[("code_challenge_method", "plain")]).await),
    );
    report.record(
        &m("par-without-duplicate-parameters"),
        done(f.variant_succeeds(&[]).await),
    );
    report.record(
        &m("test-claims-parameter-identity-claims"),
        done(f.claims_parameter().await),
    );
    for (name, aud) in [
        ("par-test-array-as-audience-fails", Aud::ParArray),
        ("par-test-par-endpoint-url-as-audience-fails", Aud::Par),
        ("par-test-token-endpoint-url-as-audience-fails", Aud::Token),
    ] {
        report.record(&m(name), done(f.par_assertion_aud(aud).await));
    }
}

#[derive(Clone, Copy)]
enum Bad {
    Expired,
    WrongAud,
    NoSub,
}

#[derive(Clone, Copy)]
enum Aud {
    Par,
    ParArray,
    Token,
}

impl Fapi<'_> {
    fn url(&self, name: &str) -> Result<String, String> {
        self.rp.endpoint(name).ok_or(format!("no {name}"))
    }

    /// A client assertion of `client_id` for our issuer, signed with the runner's key.
    fn assertion_for(&self, client_id: &str, claims: Value) -> Result<String, String> {
        let now = chrono_now();
        let mut c = json!({
            "iss": client_id, "sub": client_id, "aud": self.rp.issuer,
            "iat": now, "exp": now + 60, "jti": format!("fapi-{now}-{}-{}", std::process::id(), next_id()),
        });
        if let (Value::Object(base), Value::Object(over)) = (&mut c, claims) {
            for (k, v) in over {
                if v.is_null() {
                    base.remove(&k);
                } else {
                    base.insert(k, v);
                }
            }
        }
        self.key.sign("JWT", &c)
    }

    fn client_auth(&self, client_id: &str, over: Value) -> Result<Vec<(String, String)>, String> {
        Ok(vec![
            (
                "client_assertion_type".into(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ),
            (
                "client_assertion".into(),
                self.assertion_for(client_id, over)?,
            ),
        ])
    }

    /// A DPoP proof by `key` for `method` on `url`, `iat` shifted by `skew` seconds.
    fn proof(
        &self,
        key: &PrivateKey,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        skew: i64,
    ) -> Result<String, String> {
        let mut claims = json!({
            "jti": format!("p-{}-{}-{}", chrono_now(), std::process::id(), next_id()),
            "htm": method, "htu": url, "iat": chrono_now() + skew,
        });
        if let Some(at) = access_token {
            use sha2::Digest as _;
            claims["ath"] = json!(URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(at.as_bytes())));
        }
        key.sign_with_embedded_key("dpop+jwt", claims.as_object().ok_or("claims")?)
            .map_err(|e| e.to_string())
    }

    fn request(&self, client_id: &str, over: &[(&str, &str)]) -> Request {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random().secret().clone();
        let mut params: Vec<(String, String)> = vec![
            ("response_type".into(), "code".into()),
            ("client_id".into(), client_id.into()),
            ("redirect_uri".into(), self.rp.redirect_uri.clone()),
            ("scope".into(), "openid".into()),
            ("state".into(), state.clone()),
            ("nonce".into(), CsrfToken::new_random().secret().clone()),
            ("code_challenge".into(), challenge.as_str().into()),
            ("code_challenge_method".into(), "S256".into()),
        ];
        for (k, v) in over {
            params.retain(|(n, _)| n != k);
            if !v.is_empty() {
                params.push(((*k).into(), (*v).into()));
            }
        }
        let state = params
            .iter()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Request {
            params,
            verifier: verifier.secret().clone(),
            state,
        }
    }

    /// POSTs a form (with a DPoP proof for `path`'s URL when `dpop`); (status, JSON body).
    async fn post(
        &self,
        endpoint: &str,
        form: &[(String, String)],
        dpop: Option<String>,
    ) -> Result<(u16, Value), String> {
        let url = self.url(endpoint)?;
        let mut req = self.rp.http.post(&url).form(form);
        if let Some(p) = dpop {
            req = req.header("DPoP", p);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn push(
        &self,
        client_id: &str,
        r: &Request,
        dpop: Option<&PrivateKey>,
    ) -> Result<(u16, Value), String> {
        let mut form = r.params.clone();
        form.extend(self.client_auth(client_id, json!({}))?);
        let proof = match dpop {
            Some(k) => Some(self.proof(
                k,
                "POST",
                &self.url("pushed_authorization_request_endpoint")?,
                None,
                0,
            )?),
            None => None,
        };
        self.post("pushed_authorization_request_endpoint", &form, proof)
            .await
    }

    /// Pushes `r`, follows the `request_uri` through sign-in and consent.
    async fn flow(
        &self,
        client_id: &str,
        r: Request,
        dpop: Option<&PrivateKey>,
    ) -> Result<Flow, String> {
        let (status, pushed) = self.push(client_id, &r, dpop).await?;
        if status != 201 {
            return Err(format!("/par answered {status}: {pushed}"));
        }
        let request_uri = pushed["request_uri"].as_str().ok_or("no request_uri")?;
        let result = self.by_reference(client_id, request_uri).await?;
        Ok(Flow {
            result,
            verifier: r.verifier,
            state: r.state,
        })
    }

    async fn by_reference(&self, client_id: &str, request_uri: &str) -> Result<AuthResult, String> {
        let mut url =
            url::Url::parse(&self.url("authorization_endpoint")?).map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("request_uri", request_uri);
        self.rp.run_browser(&browser(), url, false, true).await
    }

    /// A code that reached the client with the state and RFC 9207 `iss` it must carry.
    fn code(&self, flow: &Flow) -> Result<String, String> {
        let r = &flow.result;
        if !r.reached_client() {
            return Err(format!(
                "the flow stopped on a page (status {})",
                r.page_status
            ));
        }
        if let Some(e) = r.get("error") {
            return Err(format!("the authorization answered {e}"));
        }
        if r.get("iss") != Some(self.rp.issuer.as_str()) {
            return Err("the authorization response has no iss (RFC 9207)".into());
        }
        if !flow.state.is_empty() && r.get("state") != Some(flow.state.as_str()) {
            return Err("the state came back changed".into());
        }
        r.code().map(str::to_owned).ok_or("no code".into())
    }

    /// The form of a code redemption (`code_verifier` left out when empty or absent).
    fn code_form(&self, code: &str, verifier: Option<&str>) -> Vec<(String, String)> {
        let mut form: Vec<(String, String)> = vec![
            ("grant_type".into(), "authorization_code".into()),
            ("code".into(), code.into()),
            ("redirect_uri".into(), self.rp.redirect_uri.clone()),
        ];
        if let Some(v) = verifier.filter(|v| !v.is_empty()) {
            form.push(("code_verifier".into(), v.into()));
        }
        form
    }

    async fn token(
        &self,
        client_id: &str,
        code: &str,
        verifier: Option<&str>,
        dpop: Option<&PrivateKey>,
    ) -> Result<(u16, Value), String> {
        let mut form = self.code_form(code, verifier);
        form.extend(self.client_auth(client_id, json!({}))?);
        let proof = match dpop {
            Some(k) => Some(self.proof(k, "POST", &self.url("token_endpoint")?, None, 0)?),
            None => None,
        };
        self.post("token_endpoint", &form, proof).await
    }

    /// A full flow of the main client with a DPoP key: the token response.
    async fn tokens(&self, over: &[(&str, &str)], key: &PrivateKey) -> Result<Value, String> {
        let flow = self
            .flow(&self.client, self.request(&self.client, over), Some(key))
            .await?;
        let code = self.code(&flow)?;
        let (status, t) = self
            .token(&self.client, &code, Some(&flow.verifier), Some(key))
            .await?;
        if status != 200 {
            return Err(format!("the token endpoint answered {status}: {t}"));
        }
        if t["token_type"] != "DPoP" {
            return Err(format!("token_type is {}, not DPoP", t["token_type"]));
        }
        Ok(t)
    }

    async fn userinfo(&self, scheme: &str, at: &str, key: &PrivateKey) -> Result<u16, String> {
        let url = self.url("userinfo_endpoint")?;
        let proof = self.proof(key, "GET", &url, Some(at), 0)?;
        let resp = self
            .rp
            .http
            .get(&url)
            .header("Authorization", format!("{scheme} {at}"))
            .header("DPoP", proof)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Ok(resp.status().as_u16())
    }

    fn discovery(&self) -> Outcome {
        let m = &self.rp.raw_metadata;
        let has = |field: &str, v: &str| {
            m.get(field)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x == v))
        };
        let checks = [
            (
                m.get("pushed_authorization_request_endpoint").is_some(),
                "pushed_authorization_request_endpoint",
            ),
            (
                has("token_endpoint_auth_methods_supported", "private_key_jwt"),
                "private_key_jwt in token_endpoint_auth_methods_supported",
            ),
            (
                has("code_challenge_methods_supported", "S256"),
                "S256 in code_challenge_methods_supported",
            ),
            (
                m["authorization_response_iss_parameter_supported"] == true,
                "authorization_response_iss_parameter_supported",
            ),
            (
                has("dpop_signing_alg_values_supported", "PS256")
                    || has("dpop_signing_alg_values_supported", "ES256"),
                "dpop_signing_alg_values_supported with PS256 or ES256",
            ),
            (
                has("id_token_signing_alg_values_supported", "PS256"),
                "PS256 in id_token_signing_alg_values_supported",
            ),
            (
                !has("response_types_supported", "token")
                    && !has("response_types_supported", "code id_token"),
                "only the code response type",
            ),
            (
                !has("token_endpoint_auth_signing_alg_values_supported", "none"),
                "no none algorithm",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, what)) => Outcome::fail(format!("discovery lacks {what}")),
            None => Outcome::Pass,
        }
    }

    async fn happy_flow(&self) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let t = self.tokens(&[], &key).await?;
        let at = t["access_token"].as_str().ok_or("no access_token")?;
        let id_token = t["id_token"].as_str().ok_or("no id_token")?;
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(id_token.split('.').next().unwrap_or_default())
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        if !["PS256", "ES256", "EdDSA"].contains(&header["alg"].as_str().unwrap_or_default()) {
            return Err(format!("the id_token is signed {}", header["alg"]));
        }
        // Its signature, with the published keys.
        let jwks: Value = self
            .rp
            .http
            .get(self.url("jwks_uri")?)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        latchkey_jwks::PublicKeySet::from_jwks_value(&jwks)?
            .verify(
                id_token,
                &latchkey_jwks::VerifyOptions {
                    algs: &[Alg::Ps256, Alg::Es256, Alg::EdDsa],
                    issuer: &self.rp.issuer,
                    audience: &self.client,
                    typ: None,
                    now: chrono_now(),
                    leeway: 60,
                },
            )
            .map_err(|e| format!("the id_token does not verify with the JWKS: {e}"))?;
        let status = self.userinfo("DPoP", at, &key).await?;
        if status != 200 {
            return Err(format!("userinfo answered {status} with a DPoP proof"));
        }
        Ok(Outcome::Pass)
    }

    async fn variant_succeeds(&self, over: &[(&str, &str)]) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        self.tokens(over, &key).await?;
        Ok(Outcome::Pass)
    }

    /// The `claims` parameter asking for identity claims in the id_token: those the provider
    /// keeps (name, email) come back.
    async fn claims_parameter(&self) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let claims = r#"{"id_token":{"name":null,"email":null,"email_verified":null}}"#;
        let t = self
            .tokens(&[("scope", "openid email"), ("claims", claims)], &key)
            .await?;
        let id_token = t["id_token"].as_str().ok_or("no id_token")?;
        let c: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(id_token.split('.').nth(1).unwrap_or_default())
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        for name in ["name", "email"] {
            if c.get(name).is_none() {
                return Err(format!("the id_token lacks {name}, asked for with claims"));
            }
        }
        Ok(Outcome::Pass)
    }

    async fn scheme_case(&self) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let t = self.tokens(&[], &key).await?;
        let at = t["access_token"].as_str().ok_or("no access_token")?;
        for scheme in ["dpop", "DPOP"] {
            let status = self.userinfo(scheme, at, &key).await?;
            if status != 200 {
                return Err(format!(
                    "userinfo answered {status} to the scheme {scheme:?}"
                ));
            }
        }
        Ok(Outcome::Pass)
    }

    async fn proof_iat(&self, skew: i64) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let flow = self
            .flow(&self.client, self.request(&self.client, &[]), None)
            .await?;
        let code = self.code(&flow)?;
        let mut form = self.code_form(&code, Some(&flow.verifier));
        form.extend(self.client_auth(&self.client, json!({}))?);
        let proof = self.proof(&key, "POST", &self.url("token_endpoint")?, None, skew)?;
        let (status, t) = self.post("token_endpoint", &form, Some(proof)).await?;
        if status != 200 {
            return Err(format!(
                "a proof with iat {skew:+} s was answered {status}: {t}"
            ));
        }
        Ok(Outcome::Pass)
    }

    async fn mismatched_jkt_at_par(&self) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let other = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let r = self.request(&self.client, &[("dpop_jkt", other.kid())]);
        let (status, body) = self.push(&self.client, &r, Some(&key)).await?;
        expect_error(status, &body, &["invalid_dpop_proof", "invalid_request"])
    }

    async fn token_with_other_key(&self, via_param: bool) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let other = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let flow = if via_param {
            self.flow(
                &self.client,
                self.request(&self.client, &[("dpop_jkt", key.kid())]),
                None,
            )
            .await?
        } else {
            self.flow(&self.client, self.request(&self.client, &[]), Some(&key))
                .await?
        };
        let code = self.code(&flow)?;
        let (status, body) = self
            .token(&self.client, &code, Some(&flow.verifier), Some(&other))
            .await?;
        expect_error(status, &body, &["invalid_grant", "invalid_dpop_proof"])
    }

    async fn bound_success(&self, via_param: bool) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let flow = if via_param {
            self.flow(
                &self.client,
                self.request(&self.client, &[("dpop_jkt", key.kid())]),
                None,
            )
            .await?
        } else {
            self.flow(&self.client, self.request(&self.client, &[]), Some(&key))
                .await?
        };
        let code = self.code(&flow)?;
        let (status, t) = self
            .token(&self.client, &code, Some(&flow.verifier), Some(&key))
            .await?;
        if status != 200 {
            return Err(format!("the token endpoint answered {status}: {t}"));
        }
        Ok(Outcome::Pass)
    }

    async fn par_refused(&self, over: &[(&str, &str)]) -> R {
        let r = self.request(&self.client, over);
        let (status, body) = self.push(&self.client, &r, None).await?;
        expect_error(
            status,
            &body,
            &[
                "invalid_request",
                "unsupported_response_type",
                "invalid_redirect_uri",
                "invalid_request_uri",
            ],
        )
    }

    async fn without_par(&self) -> R {
        let r = self.request(&self.client, &[]);
        let mut url =
            url::Url::parse(&self.url("authorization_endpoint")?).map_err(|e| e.to_string())?;
        url.query_pairs_mut().extend_pairs(&r.params);
        let result = self.rp.run_browser(&browser(), url, false, true).await?;
        if result.code().is_some() {
            return Err("a request not pushed got a code".into());
        }
        match result.get("error") {
            Some("invalid_request") | None => Ok(Outcome::Pass),
            Some(e) => Err(format!("expected invalid_request, got {e}")),
        }
    }

    async fn token_without_client_auth(&self) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let flow = self
            .flow(&self.client, self.request(&self.client, &[]), Some(&key))
            .await?;
        let code = self.code(&flow)?;
        let mut form = self.code_form(&code, Some(&flow.verifier));
        form.push(("client_id".into(), self.client.clone()));
        let proof = self.proof(&key, "POST", &self.url("token_endpoint")?, None, 0)?;
        let (status, body) = self.post("token_endpoint", &form, Some(proof)).await?;
        expect_error(status, &body, &["invalid_client"])
    }

    /// No proof at the token endpoint: refused (the suite accepts invalid_request or
    /// invalid_dpop_proof).
    async fn holder_of_key_required(&self) -> R {
        let flow = self
            .flow(&self.client, self.request(&self.client, &[]), None)
            .await?;
        let code = self.code(&flow)?;
        let (status, body) = self
            .token(&self.client, &code, Some(&flow.verifier), None)
            .await?;
        expect_error(status, &body, &["invalid_dpop_proof", "invalid_request"])
    }

    async fn code_bound_to_client(&self) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let flow = self
            .flow(&self.client, self.request(&self.client, &[]), Some(&key))
            .await?;
        let code = self.code(&flow)?;
        let (status, body) = self
            .token(&self.second, &code, Some(&flow.verifier), Some(&key))
            .await?;
        expect_error(status, &body, &["invalid_grant"])
    }

    async fn code_reuse(&self) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let flow = self
            .flow(&self.client, self.request(&self.client, &[]), Some(&key))
            .await?;
        let code = self.code(&flow)?;
        let (status, t) = self
            .token(&self.client, &code, Some(&flow.verifier), Some(&key))
            .await?;
        if status != 200 {
            return Err(format!("the first redemption answered {status}: {t}"));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let (status, body) = self
            .token(&self.client, &code, Some(&flow.verifier), Some(&key))
            .await?;
        expect_error(status, &body, &["invalid_grant"])?;
        // The tokens of the reused code no longer work (RFC 6749 §4.1.2 SHOULD).
        let at = t["access_token"].as_str().ok_or("no access_token")?;
        let status = self.userinfo("DPoP", at, &key).await?;
        if status == 200 {
            return Ok(Outcome::fail(
                "the access token still works after the code was reused",
            ));
        }
        Ok(Outcome::Pass)
    }

    async fn expired_code(&self) -> R {
        if self.expiry_wait == 0 {
            return Ok(Outcome::Skip(
                "needs a wait past the code lifetime (--fapi-expiry-wait)".into(),
            ));
        }
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let flow = self
            .flow(&self.client, self.request(&self.client, &[]), Some(&key))
            .await?;
        let code = self.code(&flow)?;
        tokio::time::sleep(std::time::Duration::from_secs(self.expiry_wait)).await;
        let (status, body) = self
            .token(&self.client, &code, Some(&flow.verifier), Some(&key))
            .await?;
        expect_error(status, &body, &["invalid_grant"])
    }

    async fn bad_assertion_at_token(&self, bad: Bad) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let flow = self
            .flow(&self.client, self.request(&self.client, &[]), Some(&key))
            .await?;
        let code = self.code(&flow)?;
        let now = chrono_now();
        let over = match bad {
            Bad::Expired => json!({"iat": now - 360, "exp": now - 300}),
            Bad::WrongAud => json!({"aud": "https://not-this-server.invalid"}),
            Bad::NoSub => json!({"sub": null}),
        };
        let mut form = self.code_form(&code, Some(&flow.verifier));
        form.extend(self.client_auth(&self.client, over)?);
        let proof = self.proof(&key, "POST", &self.url("token_endpoint")?, None, 0)?;
        let (status, body) = self.post("token_endpoint", &form, Some(proof)).await?;
        expect_error(status, &body, &["invalid_client"])
    }

    async fn dpop_negative(&self) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let token_url = self.url("token_endpoint")?;
        let now = chrono_now();
        let sign = |claims: Value, typ: &str| {
            key.sign_with_embedded_key(typ, claims.as_object().unwrap_or(&serde_json::Map::new()))
                .map_err(|e| e.to_string())
        };
        let cases = [
            (
                "wrong typ",
                sign(
                    json!({"jti": "n1", "htm": "POST", "htu": token_url, "iat": now}),
                    "JWT",
                )?,
            ),
            (
                "wrong htm",
                sign(
                    json!({"jti": "n2", "htm": "GET", "htu": token_url, "iat": now}),
                    "dpop+jwt",
                )?,
            ),
            (
                "wrong htu",
                sign(
                    json!({"jti": "n3", "htm": "POST", "htu": "https://other.invalid/token", "iat": now}),
                    "dpop+jwt",
                )?,
            ),
            (
                "old iat",
                sign(
                    json!({"jti": "n4", "htm": "POST", "htu": token_url, "iat": now - 3600}),
                    "dpop+jwt",
                )?,
            ),
            (
                "no jti",
                sign(
                    json!({"htm": "POST", "htu": token_url, "iat": now}),
                    "dpop+jwt",
                )?,
            ),
        ];
        for (what, proof) in cases {
            let flow = self
                .flow(&self.client, self.request(&self.client, &[]), None)
                .await?;
            let code = self.code(&flow)?;
            let mut form = self.code_form(&code, Some(&flow.verifier));
            form.extend(self.client_auth(&self.client, json!({}))?);
            let (status, body) = self.post("token_endpoint", &form, Some(proof)).await?;
            expect_error(status, &body, &["invalid_dpop_proof"])
                .map_err(|e| format!("{what}: {e}"))?;
        }
        Ok(Outcome::Pass)
    }

    async fn refresh(&self) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let t = self
            .tokens(&[("scope", "openid offline_access")], &key)
            .await?;
        let Some(rt) = t["refresh_token"].as_str() else {
            return Ok(Outcome::Skip("no refresh token was issued".into()));
        };
        let mut form: Vec<(String, String)> = vec![
            ("grant_type".into(), "refresh_token".into()),
            ("refresh_token".into(), rt.into()),
        ];
        form.extend(self.client_auth(&self.client, json!({}))?);
        let proof = self.proof(&key, "POST", &self.url("token_endpoint")?, None, 0)?;
        let (status, body) = self.post("token_endpoint", &form, Some(proof)).await?;
        if status != 200 || body["token_type"] != "DPoP" {
            return Err(format!("the refresh answered {status}: {body}"));
        }
        Ok(Outcome::Pass)
    }

    async fn request_uri_reuse(&self) -> R {
        let r = self.request(&self.client, &[]);
        let (status, pushed) = self.push(&self.client, &r, None).await?;
        if status != 201 {
            return Err(format!("/par answered {status}: {pushed}"));
        }
        let uri = pushed["request_uri"].as_str().ok_or("no request_uri")?;
        let first = self.by_reference(&self.client, uri).await?;
        if first.code().is_none() {
            return Err("the first use of the request_uri gave no code".into());
        }
        let again = self.by_reference(&self.client, uri).await?;
        if again.code().is_some() {
            return Ok(Outcome::fail("a request_uri was used twice"));
        }
        Ok(Outcome::Pass)
    }

    async fn expired_request_uri(&self) -> R {
        if self.expiry_wait == 0 {
            return Ok(Outcome::Skip(
                "needs a wait past the request_uri lifetime (--fapi-expiry-wait)".into(),
            ));
        }
        let r = self.request(&self.client, &[]);
        let (status, pushed) = self.push(&self.client, &r, None).await?;
        if status != 201 {
            return Err(format!("/par answered {status}: {pushed}"));
        }
        let uri = pushed["request_uri"]
            .as_str()
            .ok_or("no request_uri")?
            .to_owned();
        tokio::time::sleep(std::time::Duration::from_secs(self.expiry_wait)).await;
        let result = self.by_reference(&self.client, &uri).await?;
        if result.code().is_some() {
            return Ok(Outcome::fail("an expired request_uri gave a code"));
        }
        Ok(Outcome::Pass)
    }

    async fn par_assertion_in_future(&self, secs: i64, accepted: bool) -> R {
        let now = chrono_now();
        let r = self.request(&self.client, &[]);
        let mut form = r.params.clone();
        form.extend(self.client_auth(
            &self.client,
            json!({"iat": now + secs, "nbf": now + secs, "exp": now + secs + 60}),
        )?);
        let (status, body) = self
            .post("pushed_authorization_request_endpoint", &form, None)
            .await?;
        if accepted {
            if status != 201 {
                return Err(format!("/par answered {status}: {body}"));
            }
            Ok(Outcome::Pass)
        } else {
            expect_error(status, &body, &["invalid_client"])
        }
    }

    async fn request_uri_bound_to_client(&self) -> R {
        let r = self.request(&self.client, &[]);
        let (status, pushed) = self.push(&self.client, &r, None).await?;
        if status != 201 {
            return Err(format!("/par answered {status}: {pushed}"));
        }
        let uri = pushed["request_uri"].as_str().ok_or("no request_uri")?;
        let result = self.by_reference(&self.second, uri).await?;
        if result.code().is_some() {
            return Ok(Outcome::fail("another client used the request_uri"));
        }
        Ok(Outcome::Pass)
    }

    async fn par_get(&self) -> R {
        let url = self.url("pushed_authorization_request_endpoint")?;
        let resp = self
            .rp
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match resp.status().as_u16() {
            405 | 400 => Ok(Outcome::Pass),
            s => Err(format!("GET /par answered {s}")),
        }
    }

    async fn verifier(&self, verifier: Option<&str>) -> R {
        let key = PrivateKey::generate(Alg::Es256).map_err(|e| e.to_string())?;
        let flow = self
            .flow(&self.client, self.request(&self.client, &[]), Some(&key))
            .await?;
        let code = self.code(&flow)?;
        let (status, body) = self
            .token(&self.client, &code, verifier, Some(&key))
            .await?;
        expect_error(status, &body, &["invalid_grant", "invalid_request"])
    }

    async fn par_assertion_aud(&self, aud: Aud) -> R {
        let par = self.url("pushed_authorization_request_endpoint")?;
        let token = self.url("token_endpoint")?;
        let aud = match aud {
            Aud::Par => json!(par),
            // The suite's: the issuer, but in an array (FAPI 2.0 §5.3.2.1: a string).
            Aud::ParArray => json!([self.rp.issuer, par]),
            Aud::Token => json!(token),
        };
        let r = self.request(&self.client, &[]);
        let mut form = r.params.clone();
        form.extend(self.client_auth(&self.client, json!({ "aud": aud }))?);
        let (status, body) = self
            .post("pushed_authorization_request_endpoint", &form, None)
            .await?;
        expect_error(status, &body, &["invalid_client"])
    }
}

/// A 4xx JSON error with one of `codes`.
fn expect_error(status: u16, body: &Value, codes: &[&str]) -> R {
    let code = body["error"].as_str().unwrap_or_default();
    if (400..500).contains(&status) && codes.contains(&code) {
        Ok(Outcome::Pass)
    } else {
        Err(format!(
            "expected {} (4xx), got {status}: {body}",
            codes.join(" or ")
        ))
    }
}
