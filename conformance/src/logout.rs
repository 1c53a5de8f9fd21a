//! `oidcc-rp-initiated-logout-certification-test-plan`.

use openidconnect::TokenResponse as _;
use url::Url;

use crate::report::{Outcome, Report};
use crate::rp::{Rp, browser};

type R = Result<Outcome, String>;

pub async fn run(rp: &Rp, config_outcome: Outcome, report: &mut Report) {
    let has_endpoint = rp.endpoint("end_session_endpoint").is_some();
    report.record(
        "oidcc-rp-initiated-logout-discovery-endpoint-verification",
        if !has_endpoint {
            Outcome::fail("end_session_endpoint is missing")
        } else {
            config_outcome
        },
    );
    let modules: [(&str, Case); 10] = [
        ("oidcc-rp-initiated-logout", Case::Good { state: true }),
        (
            "oidcc-rp-initiated-logout-bad-post-logout-redirect-uri",
            Case::MustNotRedirect(Bad::UnregisteredUri),
        ),
        (
            "oidcc-rp-initiated-logout-modified-id-token-hint",
            Case::MustNotRedirect(Bad::AlgNone),
        ),
        (
            "oidcc-rp-initiated-logout-no-id-token-hint",
            Case::MustNotRedirect(Bad::NoHint),
        ),
        (
            "oidcc-rp-initiated-logout-query-added-to-post-logout-redirect-uri",
            Case::MustNotRedirect(Bad::QueryAdded),
        ),
        (
            "oidcc-rp-initiated-logout-bad-id-token-hint",
            Case::MustNotRedirect(Bad::ForeignSignature),
        ),
        (
            "oidcc-rp-initiated-logout-no-params",
            Case::LoggedOutPage(&[]),
        ),
        (
            "oidcc-rp-initiated-logout-no-post-logout-redirect-uri",
            Case::LoggedOutPage(&["id_token_hint"]),
        ),
        (
            "oidcc-rp-initiated-logout-only-state",
            Case::LoggedOutPage(&["state"]),
        ),
        (
            "oidcc-rp-initiated-logout-no-state",
            Case::Good { state: false },
        ),
    ];
    for (name, case) in modules {
        let outcome = if !has_endpoint {
            Outcome::Skip("no end_session_endpoint".into())
        } else if rp.post_logout_redirect_uri.is_none() {
            Outcome::Skip(
                "no registered post_logout_redirect_uri given (--post-logout-redirect-uri)".into(),
            )
        } else {
            run_case(rp, case).await.unwrap_or_else(Outcome::Fail)
        };
        report.record(name, outcome);
    }
}

#[derive(Clone, Copy)]
enum Bad {
    UnregisteredUri,
    AlgNone,
    NoHint,
    QueryAdded,
    ForeignSignature,
}

#[derive(Clone, Copy)]
enum Case {
    Good { state: bool },
    MustNotRedirect(Bad),
    LoggedOutPage(&'static [&'static str]),
}

async fn run_case(rp: &Rp, case: Case) -> R {
    let b = browser();
    let h = rp.happy(&b, &["openid"], &[]).await?;
    let hint = h.tokens.id_token().ok_or("no id_token")?.to_string();
    let end = rp
        .endpoint("end_session_endpoint")
        .ok_or("no end_session_endpoint")?;
    let plr = rp.post_logout_redirect_uri.clone().unwrap_or_default();
    let mut url = Url::parse(&end).map_err(|e| e.to_string())?;
    match case {
        Case::Good { state } => {
            url.query_pairs_mut()
                .append_pair("id_token_hint", &hint)
                .append_pair("post_logout_redirect_uri", &plr);
            if state {
                url.query_pairs_mut().append_pair("state", "logout-state");
            }
            let resp = b.get(url).send().await.map_err(|e| e.to_string())?;
            let loc = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            if !loc.starts_with(&plr) {
                return Err(format!(
                    "expected a redirect to the post_logout_redirect_uri, got {} {loc}",
                    resp.status()
                ));
            }
            let got_state = Url::parse(&loc).ok().and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "state")
                    .map(|(_, v)| v.into_owned())
            });
            if state && got_state.as_deref() != Some("logout-state") {
                return Err("state was not returned".into());
            }
            if !state && got_state.is_some() {
                return Err("a state appeared that was not sent".into());
            }
            prompt_none_fails(rp, &b).await
        }
        Case::MustNotRedirect(bad) => {
            let (hint, uri) = match bad {
                Bad::UnregisteredUri => {
                    (Some(hint), "https://unregistered.invalid/logout".to_owned())
                }
                Bad::AlgNone => (Some(alg_none(&hint)?), plr.clone()),
                Bad::NoHint => (None, plr.clone()),
                Bad::QueryAdded => (
                    Some(hint),
                    format!("{plr}{}extra=1", if plr.contains('?') { '&' } else { '?' }),
                ),
                Bad::ForeignSignature => (Some(foreign_signature(&hint)?), plr.clone()),
            };
            if let Some(h) = &hint {
                url.query_pairs_mut().append_pair("id_token_hint", h);
            }
            url.query_pairs_mut()
                .append_pair("post_logout_redirect_uri", &uri);
            let resp = b.get(url).send().await.map_err(|e| e.to_string())?;
            let loc = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            if loc.starts_with(&uri) || (!loc.is_empty() && loc.starts_with(&plr)) {
                return Err(format!("redirected to {loc}"));
            }
            Ok(Outcome::Pass)
        }
        Case::LoggedOutPage(params) => {
            for p in params {
                match *p {
                    "id_token_hint" => url.query_pairs_mut().append_pair("id_token_hint", &hint),
                    _ => url.query_pairs_mut().append_pair("state", "s"),
                };
            }
            let mut resp = b.get(url).send().await.map_err(|e| e.to_string())?;
            // A confirmation page may be asked first: confirm it.
            let mut html = resp.text().await.map_err(|e| e.to_string())?;
            if let Some(f) = crate::html::forms(&html)
                .into_iter()
                .find(|f| f.action.ends_with("/logout"))
            {
                let fields: Vec<(String, String)> = f
                    .inputs
                    .iter()
                    .map(|(n, _, v)| (n.clone(), v.clone()))
                    .collect();
                let target = Url::parse(&rp.issuer)
                    .and_then(|i| i.join(&f.action))
                    .map_err(|e| e.to_string())?;
                resp = b
                    .post(target)
                    .form(&fields)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if resp.status().is_redirection() {
                    return Err("redirected without a registered post_logout_redirect_uri".into());
                }
                html = resp.text().await.map_err(|e| e.to_string())?;
            }
            if !html.to_ascii_lowercase().contains("signed out")
                && !html.to_ascii_lowercase().contains("logged out")
            {
                return Err("no signed-out page".into());
            }
            prompt_none_fails(rp, &b).await
        }
    }
}

pub(crate) async fn prompt_none_fails(rp: &Rp, b: &reqwest::Client) -> R {
    let client = rp.client()?;
    let a = rp.attempt(&client, &["openid"], &[("prompt", "none")], true);
    let r = rp.run_browser(b, a.url, false, false).await?;
    match r.get("error") {
        Some(_) if r.code().is_none() => Ok(Outcome::Pass),
        _ => Err("after logout prompt=none still succeeded".into()),
    }
}

fn alg_none(token: &str) -> Result<String, String> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (_, payload) = (parts.next(), parts.next().ok_or("malformed id_token")?);
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::json!({"alg": "none"}).to_string());
    Ok(format!("{header}.{payload}."))
}

fn foreign_signature(token: &str) -> Result<String, String> {
    // Same header and claims, a signature that none of the provider's keys made.
    let mut parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("malformed id_token".into());
    }
    let sig = parts[2].chars().rev().collect::<String>();
    parts[2] = &sig;
    Ok(parts.join("."))
}
