//! `oidcc-basic-certification-test-plan` (and, run in form_post mode, the formpost plan):
//! the modules in the suite's order, each named as the suite names it.

use std::time::Duration;

use openidconnect::{OAuth2TokenResponse as _, TokenResponse as _};
use serde_json::Value;

use crate::report::{Outcome, Report};
use crate::rp::{Rp, browser};

pub struct Options {
    /// Seconds oidcc-codereuse-30seconds waits before reusing the code.
    pub reuse_wait: u64,
}

type R = Result<Outcome, String>;

fn done(r: R) -> Outcome {
    r.unwrap_or_else(Outcome::Fail)
}

pub async fn run(rp: &Rp, opts: &Options, report: &mut Report) {
    report.record("oidcc-server", done(server(rp).await));
    report.record(
        "oidcc-response-type-missing",
        done(response_type_missing(rp).await),
    );
    report.record("oidcc-idtoken-signature", done(idtoken_signature(rp).await));
    report.record("oidcc-idtoken-unsigned", idtoken_unsigned(rp));
    report.record("oidcc-userinfo-get", done(userinfo_get(rp).await));
    report.record(
        "oidcc-userinfo-post-header",
        done(userinfo_post(rp, false).await),
    );
    report.record(
        "oidcc-userinfo-post-body",
        done(userinfo_post(rp, true).await),
    );
    report.record(
        "oidcc-ensure-request-without-nonce-succeeds-for-code-flow",
        done(without_nonce(rp).await),
    );
    report.record(
        "oidcc-scope-profile",
        done(scope(rp, &["openid", "profile"], &["name"]).await),
    );
    report.record(
        "oidcc-scope-email",
        done(scope(rp, &["openid", "email"], &["email", "email_verified"]).await),
    );
    report.record(
        "oidcc-scope-address",
        done(scope(rp, &["openid", "address"], &["address"]).await),
    );
    report.record(
        "oidcc-scope-phone",
        done(scope(rp, &["openid", "phone"], &["phone_number"]).await),
    );
    report.record(
        "oidcc-scope-all",
        done(
            scope(
                rp,
                &["openid", "profile", "email", "address", "phone"],
                &["name", "email"],
            )
            .await,
        ),
    );
    report.record("oidcc-alternate-happy-flow", done(alternate(rp).await));
    report.record(
        "oidcc-display-page",
        done(accepted(rp, &[("display", "page")]).await),
    );
    report.record(
        "oidcc-display-popup",
        done(accepted(rp, &[("display", "popup")]).await),
    );
    report.record("oidcc-prompt-login", done(prompt_login(rp).await));
    report.record(
        "oidcc-prompt-none-not-logged-in",
        done(prompt_none_not_logged_in(rp).await),
    );
    report.record(
        "oidcc-prompt-none-logged-in",
        done(prompt_none_logged_in(rp).await),
    );
    report.record("oidcc-max-age-1", done(max_age_1(rp).await));
    report.record("oidcc-max-age-10000", done(max_age_10000(rp).await));
    report.record(
        "oidcc-ensure-request-with-unknown-parameter-succeeds",
        done(accepted(rp, &[("extra", "foobar")]).await),
    );
    report.record("oidcc-id-token-hint", done(id_token_hint(rp).await));
    report.record(
        "oidcc-login-hint",
        done(accepted(rp, &[("login_hint", "someone@example.com")]).await),
    );
    report.record(
        "oidcc-ui-locales",
        done(accepted(rp, &[("ui_locales", "se")]).await),
    );
    report.record(
        "oidcc-claims-locales",
        done(accepted(rp, &[("claims_locales", "se")]).await),
    );
    report.record(
        "oidcc-ensure-request-with-acr-values-succeeds",
        done(acr_values(rp).await),
    );
    report.record("oidcc-codereuse", done(code_reuse(rp, 0).await));
    report.record(
        "oidcc-codereuse-30seconds",
        done(code_reuse(rp, opts.reuse_wait).await),
    );
    report.record(
        "oidcc-ensure-registered-redirect-uri",
        done(unregistered_redirect(rp).await),
    );
    report.record(
        "oidcc-ensure-post-request-succeeds",
        done(post_request(rp).await),
    );
    report.record(
        "oidcc-server-client-secret-post",
        done(client_secret_post(rp).await),
    );
    report.record(
        "oidcc-request-uri-unsigned-supported-correctly-or-rejected-as-unsupported",
        request_uri_unsigned(rp),
    );
    report.record(
        "oidcc-unsigned-request-object-supported-correctly-or-rejected-as-unsupported",
        done(unsigned_request_object(rp).await),
    );
    report.record("oidcc-claims-essential", done(claims_essential(rp).await));
    report.record(
        "oidcc-ensure-request-object-with-redirect-uri",
        done(request_object_redirect_uri(rp).await),
    );
    report.record("oidcc-refresh-token", done(refresh(rp).await));
    report.record(
        "oidcc-ensure-request-with-valid-pkce-succeeds",
        done(valid_pkce(rp).await),
    );
    // Not a module of the suite: RFC 7009 and RFC 7662 through the RP library.
    report.record(
        "latchkey-revocation-and-introspection",
        done(revoke_introspect(rp).await),
    );
}

async fn revoke_introspect(rp: &Rp) -> R {
    use openidconnect::{IntrospectionUrl, RevocationUrl, TokenIntrospectionResponse as _};
    let (Some(rev), Some(intro)) = (
        rp.endpoint("revocation_endpoint"),
        rp.endpoint("introspection_endpoint"),
    ) else {
        return Ok(Outcome::Skip(
            "no revocation or introspection endpoint advertised".into(),
        ));
    };
    let h = rp
        .happy(&browser(), &["openid", "offline_access"], &[])
        .await?;
    let client = h
        .client
        .clone()
        .set_revocation_url(RevocationUrl::new(rev.clone()).map_err(|e| e.to_string())?)
        .set_introspection_url(IntrospectionUrl::new(intro).map_err(|e| e.to_string())?);
    let at = h.tokens.access_token();
    let first = client
        .introspect(at)
        .request_async(&rp.http)
        .await
        .map_err(|e| format!("introspection failed: {e}"))?;
    if !first.active() {
        return Err("a fresh access token introspects as inactive".into());
    }
    let rt = h.tokens.refresh_token().ok_or("no refresh token")?.clone();
    if rev.starts_with("https://") {
        client
            .revoke_token(openidconnect::core::CoreRevocableToken::RefreshToken(
                rt.clone(),
            ))
            .map_err(|e| e.to_string())?
            .request_async(&rp.http)
            .await
            .map_err(|e| format!("revocation failed: {e}"))?;
    } else {
        // The RP library refuses a plain-http revocation endpoint (right for production); on a
        // loopback test host, revoke by hand.
        let resp = rp
            .http
            .post(&rev)
            .basic_auth(
                crate::rp::form_encode(&rp.client.id),
                Some(crate::rp::form_encode(&rp.client.secret)),
            )
            .form(&[
                ("token", rt.secret().as_str()),
                ("token_type_hint", "refresh_token"),
            ])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != 200 {
            return Err(format!("revocation answered {}", resp.status()));
        }
    }
    if rp.refresh(&rp.client()?, rt.secret()).await.is_ok() {
        return Err("the revoked refresh token still works".into());
    }
    let after = client
        .introspect(at)
        .request_async(&rp.http)
        .await
        .map_err(|e| format!("introspection failed: {e}"))?;
    if after.active() {
        return Ok(Outcome::Warn(
            "the access token of a revoked refresh token family is still active".into(),
        ));
    }
    Ok(Outcome::Pass)
}

async fn server(rp: &Rp) -> R {
    let b = browser();
    let h = rp.happy(&b, &["openid"], &[]).await?;
    if h.claims.auth_time().is_none() {
        return Ok(Outcome::Warn("auth_time is absent".into()));
    }
    let info = rp.userinfo(&h.client, &h.tokens).await?;
    if info.subject() != h.claims.subject() {
        return Err("userinfo sub differs from the id_token's".into());
    }
    if h.tokens.expires_in().is_none() {
        return Err("the token response has no expires_in".into());
    }
    Ok(Outcome::Pass)
}

async fn response_type_missing(rp: &Rp) -> R {
    let client = rp.client()?;
    let mut a = rp.attempt(&client, &["openid"], &[], true);
    let kept: Vec<(String, String)> = a
        .url
        .query_pairs()
        .filter(|(k, _)| k != "response_type")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    a.url.query_pairs_mut().clear().extend_pairs(kept);
    let r = rp.run_browser(&browser(), a.url, false, false).await?;
    if r.code().is_some() {
        return Err("a code was issued without response_type".into());
    }
    if !r.reached_client() {
        return Ok(Outcome::Pass); // an error page is allowed
    }
    match r.get("error") {
        Some("unsupported_response_type" | "invalid_request") => {
            check_error_description(r.get("error_description"))?;
            Ok(Outcome::Pass)
        }
        other => Err(format!(
            "expected unsupported_response_type or invalid_request, got {other:?}"
        )),
    }
}

fn check_error_description(d: Option<&str>) -> Result<(), String> {
    if d.is_some_and(|d| d.contains(['\r', '\n', '\t'])) {
        return Err("error_description contains CR, LF or TAB".into());
    }
    Ok(())
}

async fn idtoken_signature(rp: &Rp) -> R {
    let h = rp.happy(&browser(), &["openid"], &[]).await?;
    let id = h.tokens.id_token().ok_or("no id_token")?;
    let alg = id.signing_alg().map_err(|e| e.to_string())?;
    if *alg != openidconnect::core::CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256 {
        return Err(format!(
            "a client that registered no alg got {alg:?}, not RS256"
        ));
    }
    // The RP library already checked the signature against the published key named by kid.
    Ok(Outcome::Pass)
}

fn idtoken_unsigned(rp: &Rp) -> Outcome {
    let algs = rp.raw_metadata.get("id_token_signing_alg_values_supported");
    let none = algs
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "none"));
    if none {
        Outcome::fail("`none` is advertised; this runner does not accept unsigned id_tokens")
    } else {
        Outcome::Skip(
            "`none` is not in id_token_signing_alg_values_supported (as it should not be)".into(),
        )
    }
}

async fn userinfo_get(rp: &Rp) -> R {
    let h = rp.happy(&browser(), &["openid"], &[]).await?;
    let info = rp.userinfo(&h.client, &h.tokens).await?;
    if info.subject() != h.claims.subject() {
        return Err("userinfo sub differs".into());
    }
    Ok(Outcome::Pass)
}

async fn userinfo_post(rp: &Rp, in_body: bool) -> R {
    let h = rp.happy(&browser(), &["openid"], &[]).await?;
    let url = rp
        .endpoint("userinfo_endpoint")
        .ok_or("no userinfo_endpoint")?;
    let at = h.tokens.access_token().secret().clone();
    let req = rp.http.post(url);
    let req = if in_body {
        req.form(&[("access_token", at.as_str())])
    } else {
        req.bearer_auth(&at).form(&[("x", "1")])
    };
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if status != 200 {
        return if in_body {
            Ok(Outcome::Warn(format!(
                "token in the body refused with {status} (optional)"
            )))
        } else {
            Err(format!("userinfo POST answered {status}"))
        };
    }
    let v: Value = resp.json().await.map_err(|e| e.to_string())?;
    if v.get("sub").and_then(Value::as_str) != Some(h.claims.subject().as_str()) {
        return Err("userinfo sub differs".into());
    }
    Ok(Outcome::Pass)
}

async fn without_nonce(rp: &Rp) -> R {
    let client = rp.client()?;
    let a = rp.attempt(&client, &["openid"], &[], false);
    let r = rp
        .run_browser(&browser(), a.url.clone(), false, true)
        .await?;
    rp.check_response(&r, &a)?;
    let code = r.code().ok_or("no code without nonce")?;
    let tokens = rp.exchange(&client, code, a.verifier).await?;
    let claims = rp.id_token_claims(&client, &tokens, None)?;
    if claims.nonce().is_some() {
        return Err("a nonce appeared though none was sent".into());
    }
    Ok(Outcome::Pass)
}

async fn scope(rp: &Rp, scopes: &[&str], claims: &[&str]) -> R {
    // As the suite does: ask anyway; a scope the provider does not support is ignored by it,
    // and the claims it would have carried are missing (a warning, not a failure).
    let supported: Vec<String> = rp
        .raw_metadata
        .get("scopes_supported")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let unsupported: Vec<&&str> = scopes
        .iter()
        .filter(|s| !supported.iter().any(|x| x == **s))
        .collect();
    let h = rp.happy(&browser(), scopes, &[]).await?;
    let url = rp
        .endpoint("userinfo_endpoint")
        .ok_or("no userinfo_endpoint")?;
    let v: Value = rp
        .http
        .get(url)
        .bearer_auth(h.tokens.access_token().secret())
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let missing: Vec<&&str> = claims.iter().filter(|c| v.get(**c).is_none()).collect();
    if missing.is_empty() {
        Ok(Outcome::Pass)
    } else if !unsupported.is_empty() {
        Ok(Outcome::Warn(format!(
            "scopes not supported: {unsupported:?}"
        )))
    } else {
        Ok(Outcome::Warn(format!(
            "claims missing from userinfo: {missing:?}"
        )))
    }
}

async fn alternate(rp: &Rp) -> R {
    let client = rp.client()?;
    let a = rp.attempt(&client, &["openid", "email", "profile"], &[], true);
    // Reverse the order of the query parameters.
    let mut pairs: Vec<(String, String)> = a
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.reverse();
    for (k, v) in pairs.iter_mut() {
        if k == "scope" {
            *v = v.split(' ').rev().collect::<Vec<_>>().join(" ");
        }
    }
    let mut url = a.url.clone();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let r = rp.run_browser(&browser(), url, false, true).await?;
    rp.check_response(&r, &a)?;
    let tokens = rp
        .exchange(&client, r.code().ok_or("no code")?, a.verifier)
        .await?;
    rp.id_token_claims(&client, &tokens, Some(&a.nonce))?;
    Ok(Outcome::Pass)
}

async fn accepted(rp: &Rp, extra: &[(&str, &str)]) -> R {
    rp.happy(&browser(), &["openid"], extra).await?;
    Ok(Outcome::Pass)
}

async fn prompt_login(rp: &Rp) -> R {
    let b = browser();
    let first = rp.happy(&b, &["openid"], &[]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = rp.happy(&b, &["openid"], &[("prompt", "login")]).await?;
    if !second.result.saw_login {
        return Err("prompt=login did not ask to sign in again".into());
    }
    let (Some(t1), Some(t2)) = (first.claims.auth_time(), second.claims.auth_time()) else {
        return Err("auth_time missing".into());
    };
    if t2 <= t1 {
        return Err("auth_time did not move forward after prompt=login".into());
    }
    Ok(Outcome::Pass)
}

async fn prompt_none_not_logged_in(rp: &Rp) -> R {
    let client = rp.client()?;
    let a = rp.attempt(&client, &["openid"], &[("prompt", "none")], true);
    let r = rp
        .run_browser(&browser(), a.url.clone(), false, false)
        .await?;
    if !r.reached_client() {
        return Err("prompt=none showed a page instead of answering the client".into());
    }
    if r.get("state") != Some(a.state.secret().as_str()) {
        return Err("state was not echoed".into());
    }
    match r.get("error") {
        Some("login_required" | "interaction_required" | "consent_required") => Ok(Outcome::Pass),
        other => Err(format!("expected login_required, got {other:?}")),
    }
}

async fn prompt_none_logged_in(rp: &Rp) -> R {
    let b = browser();
    let first = rp.happy(&b, &["openid"], &[]).await?;
    let second = rp.happy(&b, &["openid"], &[("prompt", "none")]).await?;
    if second.claims.subject() != first.claims.subject() {
        return Err("sub changed".into());
    }
    if second.claims.auth_time() != first.claims.auth_time() {
        return Err("auth_time changed without a new sign-in".into());
    }
    Ok(Outcome::Pass)
}

async fn max_age_1(rp: &Rp) -> R {
    let b = browser();
    let first = rp.happy(&b, &["openid"], &[]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = rp.happy(&b, &["openid"], &[("max_age", "1")]).await?;
    if !second.result.saw_login {
        return Err("max_age=1 did not ask to sign in again".into());
    }
    match (first.claims.auth_time(), second.claims.auth_time()) {
        (Some(a), Some(b)) if b > a => Ok(Outcome::Pass),
        (_, None) => Err("auth_time is required with max_age".into()),
        _ => Err("auth_time did not move forward".into()),
    }
}

async fn max_age_10000(rp: &Rp) -> R {
    let b = browser();
    let first = rp.happy(&b, &["openid"], &[("max_age", "15000")]).await?;
    let second = rp.happy(&b, &["openid"], &[("max_age", "10000")]).await?;
    if second.result.saw_login {
        return Err("max_age=10000 asked to sign in again".into());
    }
    match (first.claims.auth_time(), second.claims.auth_time()) {
        (Some(a), Some(b)) if a == b && first.claims.subject() == second.claims.subject() => {
            Ok(Outcome::Pass)
        }
        (Some(_), Some(_)) => Err("auth_time or sub changed".into()),
        _ => Err("auth_time is required with max_age".into()),
    }
}

async fn id_token_hint(rp: &Rp) -> R {
    let b = browser();
    let first = rp.happy(&b, &["openid"], &[]).await?;
    let hint = first.tokens.id_token().ok_or("no id_token")?.to_string();
    let second = rp
        .happy(
            &b,
            &["openid"],
            &[("prompt", "none"), ("id_token_hint", &hint)],
        )
        .await?;
    if second.claims.subject() != first.claims.subject() {
        return Err("sub changed".into());
    }
    Ok(Outcome::Pass)
}

async fn acr_values(rp: &Rp) -> R {
    let h = rp
        .happy(&browser(), &["openid"], &[("acr_values", "1 2")])
        .await?;
    if h.claims.auth_context_ref().is_none() {
        return Ok(Outcome::Warn("acr was not returned".into()));
    }
    Ok(Outcome::Pass)
}

async fn code_reuse(rp: &Rp, wait: u64) -> R {
    let b = browser();
    let client = rp.client()?;
    let a = rp.attempt(&client, &["openid"], &[], true);
    let r = rp.run_browser(&b, a.url.clone(), false, true).await?;
    rp.check_response(&r, &a)?;
    let code = r.code().ok_or("no code")?.to_owned();
    let verifier = a.verifier.secret().clone();
    let tokens = rp.exchange(&client, &code, a.verifier).await?;
    if wait > 0 {
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
    let redirect = rp.redirect_uri.clone();
    let (status, body) = rp
        .raw_token(
            &rp.client,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect),
                ("code_verifier", &verifier),
            ],
        )
        .await?;
    if status == 200 {
        return if wait == 0 {
            Ok(Outcome::Warn("the reused code was accepted".into()))
        } else {
            Err("the code was accepted a second time".into())
        };
    }
    if body.get("error").and_then(Value::as_str) != Some("invalid_grant") {
        return Err(format!("expected invalid_grant, got {body}"));
    }
    check_error_description(body.get("error_description").and_then(Value::as_str))?;
    if wait > 0 {
        let url = rp
            .endpoint("userinfo_endpoint")
            .ok_or("no userinfo_endpoint")?;
        let s = rp
            .http
            .get(url)
            .bearer_auth(tokens.access_token().secret())
            .send()
            .await
            .map_err(|e| e.to_string())?
            .status();
        if s == 200 {
            return Ok(Outcome::Warn(
                "the first access token still works after the code was reused".into(),
            ));
        }
    }
    Ok(Outcome::Pass)
}

async fn unregistered_redirect(rp: &Rp) -> R {
    let client = rp.client()?;
    let a = rp.attempt(&client, &["openid"], &[], true);
    let evil = "https://unregistered.invalid/callback";
    let pairs: Vec<(String, String)> = a
        .url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "redirect_uri" {
                evil.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    let mut url = a.url.clone();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let resp = rp.http.get(url).send().await.map_err(|e| e.to_string())?;
    if resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|loc| loc.starts_with(evil))
    {
        return Err("redirected to an unregistered redirect_uri".into());
    }
    let body = resp.text().await.unwrap_or_default();
    if body.contains(evil) && body.contains("<form") {
        return Err("the page posts to the unregistered redirect_uri".into());
    }
    Ok(Outcome::Pass)
}

async fn post_request(rp: &Rp) -> R {
    let client = rp.client()?;
    let a = rp.attempt(&client, &["openid"], &[], true);
    let r = rp
        .run_browser(&browser(), a.url.clone(), true, true)
        .await?;
    rp.check_response(&r, &a)?;
    let tokens = rp
        .exchange(&client, r.code().ok_or("no code")?, a.verifier)
        .await?;
    rp.id_token_claims(&client, &tokens, Some(&a.nonce))?;
    Ok(Outcome::Pass)
}

async fn client_secret_post(rp: &Rp) -> R {
    let Some(creds) = &rp.post_client else {
        return Ok(Outcome::Skip(
            "no client registered for client_secret_post was given (--post-client)".into(),
        ));
    };
    let client = rp.post_auth_client(creds)?;
    let a = rp.attempt(&client, &["openid"], &[], true);
    let r = rp
        .run_browser(&browser(), a.url.clone(), false, true)
        .await?;
    rp.check_response(&r, &a)?;
    let tokens = rp
        .exchange(&client, r.code().ok_or("no code")?, a.verifier)
        .await?;
    rp.id_token_claims(&client, &tokens, Some(&a.nonce))?;
    Ok(Outcome::Pass)
}

fn request_uri_unsigned(rp: &Rp) -> Outcome {
    if none_advertised(rp) {
        Outcome::fail(
            "unsigned request_uri is advertised but this runner does not host request objects",
        )
    } else {
        Outcome::Skip("`none` is not in request_object_signing_alg_values_supported".into())
    }
}

/// The suite skips this module unless `none` is advertised for request objects; when it is,
/// the object must be processed (or `request_not_supported` answered).
async fn unsigned_request_object(rp: &Rp) -> R {
    use base64::Engine as _;
    if !none_advertised(rp) {
        return Ok(Outcome::Skip(
            "`none` is not in request_object_signing_alg_values_supported".into(),
        ));
    }
    let enc = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let client = rp.client()?;
    let a = rp.attempt(&client, &["openid"], &[], true);
    let claims: serde_json::Map<String, Value> = a
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let jwt = format!(
        "{}.{}.",
        enc(&serde_json::json!({"alg": "none"})),
        enc(&Value::Object(claims))
    );
    let mut url = a.url.clone();
    url.query_pairs_mut().append_pair("request", &jwt);
    let r = rp.run_browser(&browser(), url, false, true).await?;
    if r.code().is_some() {
        rp.check_response(&r, &a)?;
        return Ok(Outcome::Pass);
    }
    match r.get("error") {
        Some("request_not_supported") => Ok(Outcome::Pass),
        other if r.reached_client() => Err(format!(
            "expected a code or request_not_supported, got {other:?}"
        )),
        _ => Err("the request object was answered with a page".into()),
    }
}

fn none_advertised(rp: &Rp) -> bool {
    rp.raw_metadata
        .get("request_object_signing_alg_values_supported")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "none"))
}

async fn request_object_redirect_uri(rp: &Rp) -> R {
    if rp.raw_metadata.get("request_parameter_supported") != Some(&Value::Bool(true)) {
        return Ok(Outcome::Skip("request_parameter_supported is false".into()));
    }
    let Some(key) = &rp.client_key else {
        return Ok(Outcome::Skip(
            "no key of the main client was given (--client-jwk) to sign request objects with"
                .into(),
        ));
    };
    rp.request_object_redirect_uri(key).await?;
    Ok(Outcome::Pass)
}

async fn claims_essential(rp: &Rp) -> R {
    let claims = r#"{"userinfo":{"name":{"essential":true}}}"#;
    let h = rp
        .happy(&browser(), &["openid"], &[("claims", claims)])
        .await?;
    let url = rp
        .endpoint("userinfo_endpoint")
        .ok_or("no userinfo_endpoint")?;
    let v: Value = rp
        .http
        .get(url)
        .bearer_auth(h.tokens.access_token().secret())
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if v.get("name").is_none() {
        return Ok(Outcome::Warn(
            "name was requested as essential but is absent".into(),
        ));
    }
    Ok(Outcome::Pass)
}

async fn refresh(rp: &Rp) -> R {
    let h = rp
        .happy(&browser(), &["openid", "offline_access"], &[])
        .await?;
    let Some(rt) = h.tokens.refresh_token() else {
        return Ok(Outcome::Skip("no refresh token was issued".into()));
    };
    let rt = rt.secret().clone();
    if let Some(other) = &rp.second_client {
        let (status, body) = rp
            .raw_token(
                other,
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            )
            .await?;
        if status == 200 || body.get("error").and_then(Value::as_str) != Some("invalid_grant") {
            return Err(format!("another client's refresh answered {status} {body}"));
        }
    }
    let refreshed = rp.refresh(&h.client, &rt).await?;
    if refreshed.access_token().secret() == h.tokens.access_token().secret() {
        return Err("the refresh returned the same access token".into());
    }
    if refreshed.id_token().is_some() {
        let claims = rp.id_token_claims(&h.client, &refreshed, None)?;
        if claims.subject() != h.claims.subject() || claims.auth_time() != h.claims.auth_time() {
            return Err("the refreshed id_token changed sub or auth_time".into());
        }
    }
    if rp.second_client.is_none() {
        return Ok(Outcome::Warn(
            "no second client given (--second-client): binding to the client not checked".into(),
        ));
    }
    Ok(Outcome::Pass)
}

async fn valid_pkce(rp: &Rp) -> R {
    // Every flow of this runner sends S256 PKCE; this one checks it on its own.
    rp.happy(&browser(), &["openid"], &[]).await?;
    Ok(Outcome::Pass)
}
