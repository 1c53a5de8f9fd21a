//! `oidcc-backchannel-rp-initiated-logout-certification-test-plan`: discovery says
//! back-channel logout (with sessions) is supported, and an RP-initiated logout makes the
//! provider POST a valid logout token to the client's `backchannel_logout_uri` (here a
//! listener of the runner's, `--backchannel-listen`), redirect to the post_logout_redirect_uri
//! with the state, and end the session (`prompt=none` then fails). The client is registered
//! on the fly, as the suite's dynamic variant does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_jwks::{Alg, PublicKeySet, VerifyOptions};
use openidconnect::TokenResponse as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::dynamic::Dyn;
use crate::report::{Outcome, Report};
use crate::rp::{Rp, browser, chrono_now};

type R = Result<Outcome, String>;

pub async fn run(rp: &Rp, iat: Option<&str>, listen: Option<&str>, report: &mut Report) {
    let m = &rp.raw_metadata;
    let discovery = if m["backchannel_logout_supported"] != true {
        Outcome::fail("backchannel_logout_supported is not true")
    } else if m["backchannel_logout_session_supported"] != true {
        Outcome::fail("backchannel_logout_session_supported is not true")
    } else if m.get("end_session_endpoint").is_none() {
        Outcome::fail("end_session_endpoint is missing")
    } else {
        Outcome::Pass
    };
    report.record(
        "oidcc-backchannel-logout-discovery-endpoint-verification",
        discovery,
    );
    let outcome = match (rp.endpoint("registration_endpoint"), listen) {
        (None, _) => Outcome::Skip("no registration_endpoint to register the client with".into()),
        (_, None) => Outcome::Skip(
            "no listener for the backchannel_logout_uri (--backchannel-listen)".into(),
        ),
        (Some(endpoint), Some(addr)) => {
            let d = Dyn { rp, endpoint, iat };
            rp_initiated(&d, addr).await.unwrap_or_else(Outcome::Fail)
        }
    };
    report.record("oidcc-backchannel-rp-initiated-logout", outcome);
}

/// The bodies POSTed to the listener.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<String>>>);

async fn listen(addr: &str) -> Result<(String, Received, tokio::task::JoinHandle<()>), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let received = Received::default();
    let store = received.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        if let Ok(mut all) = store.0.lock() {
                            all.push(text[end + 4..end + 4 + len].to_owned());
                        }
                        break;
                    }
                }
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    Ok((format!("http://{local}/backchannel_logout"), received, task))
}

async fn rp_initiated(d: &Dyn<'_>, addr: &str) -> R {
    let (uri, received, task) = listen(addr).await?;
    let result = flow(d, &uri, &received).await;
    task.abort();
    result
}

async fn flow(d: &Dyn<'_>, uri: &str, received: &Received) -> R {
    let plr = "https://rp.conformance.invalid/post_logout_redirect".to_owned();
    let mut rp = d
        .rp_with(json!({
            "backchannel_logout_uri": uri,
            "backchannel_logout_session_required": true,
            "post_logout_redirect_uris": [plr],
        }))
        .await?;
    rp.post_logout_redirect_uri = Some(plr.clone());
    let b = browser();
    let h = rp.happy(&b, &["openid"], &[]).await?;
    let id_token = h.tokens.id_token().ok_or("no id_token")?.to_string();
    let id_claims = payload(&id_token)?;

    // To the end session endpoint, with a long state (the suite uses 128 characters).
    let state = "s".repeat(128);
    let mut url = url::Url::parse(
        &rp.endpoint("end_session_endpoint")
            .ok_or("no end_session_endpoint")?,
    )
    .map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("id_token_hint", &id_token)
        .append_pair("post_logout_redirect_uri", &plr)
        .append_pair("state", &state);
    let resp = b.get(url).send().await.map_err(|e| e.to_string())?;
    let loc = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let back = url::Url::parse(&loc).map_err(|_| {
        format!(
            "no redirect to the post_logout_redirect_uri ({})",
            resp.status()
        )
    })?;
    if !loc.starts_with(&plr) {
        return Err(format!(
            "redirected to {loc}, not the post_logout_redirect_uri"
        ));
    }
    let got_state = back
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned());
    if got_state.as_deref() != Some(state.as_str()) {
        return Err("the state did not come back unchanged".into());
    }
    if back.query_pairs().any(|(k, _)| k != "state") {
        return Err("unexpected parameters in the post logout redirect".into());
    }

    // The logout token, within 30 seconds.
    let mut body = None;
    for _ in 0..300 {
        if let Some(b) = received.0.lock().ok().and_then(|v| v.first().cloned()) {
            body = Some(b);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = body.ok_or("no back-channel logout request arrived within 30 s")?;
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if params.iter().any(|(k, _)| k != "logout_token") {
        return Err("unexpected parameters in the back-channel logout request".into());
    }
    let token = params
        .iter()
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.clone())
        .ok_or("no logout_token in the back-channel logout request")?;
    check_logout_token(&rp, &token, &id_claims).await?;
    crate::logout::prompt_none_fails(&rp, &b).await
}

/// Back-Channel Logout 1.0 §2.6: signature with the provider's keys, `typ`, `iss`, `aud`,
/// `iat`, `jti`, the event, `sub`/`sid` of the id_token, no `nonce`.
async fn check_logout_token(rp: &Rp, token: &str, id: &Value) -> Result<(), String> {
    let jwks_uri = rp.endpoint("jwks_uri").ok_or("no jwks_uri")?;
    let jwks: Value = rp
        .http
        .get(&jwks_uri)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let keys = PublicKeySet::from_jwks_value(&jwks)?;
    let claims = keys
        .verify(
            token,
            &VerifyOptions {
                algs: &Alg::ALL,
                issuer: &rp.issuer,
                audience: &rp.client.id,
                typ: Some("logout+jwt"),
                now: chrono_now(),
                leeway: 60,
            },
        )
        .map_err(|e| format!("the logout token does not verify: {e}"))?;
    let c = Value::Object(claims.into_map());
    if !c["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object() {
        return Err("the logout token has no back-channel logout event".into());
    }
    if c.get("nonce").is_some() {
        return Err("the logout token has a nonce".into());
    }
    if c["iat"].as_i64().is_none() || c["jti"].as_str().is_none_or(str::is_empty) {
        return Err("the logout token lacks iat or jti".into());
    }
    if c.get("sub").is_none() && c.get("sid").is_none() {
        return Err("the logout token has neither sub nor sid".into());
    }
    if c.get("sub").is_some() && c["sub"] != id["sub"] {
        return Err("the logout token's sub is not the id_token's".into());
    }
    if c.get("sid").is_some() && c["sid"] != id["sid"] {
        return Err("the logout token's sid is not the id_token's".into());
    }
    if c.get("sid").is_none() {
        return Err("backchannel_logout_session_required: the logout token has no sid".into());
    }
    Ok(())
}

fn payload(jwt: &str) -> Result<Value, String> {
    let p = jwt.split('.').nth(1).ok_or("not a JWT")?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())
}
