//! Driving the provider as a browser and a relying party would: the sign-in and consent
//! pages through their forms, the redirect back, and the token endpoint.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{Env, Server};

pub const REDIRECT: &str = "https://rp.example.com/cb";
pub const PASSWORD: &str = "correct horse battery";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A user and a confidential client registered through the CLI.
#[derive(Clone)]
pub struct Fixture {
    pub user_id: String,
    pub email: String,
    pub client_id: String,
    pub client_secret: String,
}

pub async fn fixture(env: &Env, extra_client_args: &[&str]) -> Fixture {
    let email = "ada@example.com".to_owned();
    let out = env
        .cli(
            &[
                "user",
                "create",
                "--email",
                &email,
                "--name",
                "Ada Lovelace",
                "--password-stdin",
                "--email-verified",
            ],
            &format!("{PASSWORD}\n"),
        )
        .await
        .unwrap();
    let user: Value = serde_json::from_str(&out).unwrap();
    let mut args = vec![
        "client",
        "create",
        "--name",
        "Relying Party",
        "--redirect-uri",
        REDIRECT,
        "--post-logout-redirect-uri",
        "https://rp.example.com/logged-out",
    ];
    args.extend_from_slice(extra_client_args);
    let out = env.cli(&args, "").await.unwrap();
    let client: Value = serde_json::from_str(&out).unwrap();
    Fixture {
        user_id: user["id"].as_str().unwrap().to_owned(),
        email,
        client_id: client["client_id"].as_str().unwrap().to_owned(),
        client_secret: client["client_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// A browser: keeps cookies, never follows redirects by itself.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn authorize_url(server: &Server, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&server.url("/authorize")).unwrap();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("state", "st-123")
            .append_pair("nonce", "n-456")
            .append_pair("code_challenge", &s256(VERIFIER))
            .append_pair("code_challenge_method", "S256");
        // `extra` may replace the default scope.
        if !extra.iter().any(|(k, _)| *k == "scope") {
            q.append_pair("scope", "openid profile email offline_access");
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

/// The value of a hidden or text input in a page, HTML-unescaped.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(unescape(&html[start..end]))
}

pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on {}", resp.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Submits the sign-in form shown in `login_html`; returns the redirect target.
pub async fn sign_in(
    b: &reqwest::Client,
    server: &Server,
    login_html: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let csrf = input_value(login_html, "csrf_token").expect("login form has a CSRF token");
    let request = input_value(login_html, "request").unwrap_or_default();
    b.post(server.url("/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("request", request.as_str()),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

/// Runs the whole browser part of the code flow: authorize, sign in if asked, consent if
/// asked, and returns the final redirect URL (to the client).
pub async fn browser_flow(b: &reqwest::Client, server: &Server, url: &str, email: &str) -> String {
    let mut resp = b.get(url).send().await.unwrap();
    for _ in 0..5 {
        if resp.status() == 303 {
            let to = location(&resp);
            if !to.starts_with('/') {
                return to;
            }
            resp = b.get(server.url(&to)).send().await.unwrap();
            continue;
        }
        assert_eq!(resp.status(), 200, "unexpected status on the way");
        let html = resp.text().await.unwrap();
        if html.contains("action=\"/login\"") {
            resp = sign_in(b, server, &html, email, PASSWORD).await;
        } else if html.contains("action=\"/consent\"") {
            let csrf = input_value(&html, "csrf_token").unwrap();
            let request = input_value(&html, "request").unwrap();
            resp = b
                .post(server.url("/consent"))
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("request", request.as_str()),
                    ("decision", "allow"),
                ])
                .send()
                .await
                .unwrap();
        } else {
            panic!("unexpected page: {html}");
        }
    }
    panic!("too many steps");
}

pub fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

pub async fn token_request(
    server: &Server,
    f: &Fixture,
    form: &[(&str, &str)],
) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/token"))
        .header("authorization", basic(&f.client_id, &f.client_secret))
        .form(form)
        .send()
        .await
        .unwrap()
}

pub async fn redeem(server: &Server, f: &Fixture, code: &str) -> reqwest::Response {
    token_request(
        server,
        f,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

/// The token response of a whole code flow for `f`'s client in browser `b` (signing in and
/// consenting when asked); `extra` authorization parameters, `scope` among them, if any.
pub async fn code_flow_tokens(
    b: &reqwest::Client,
    server: &Server,
    f: &Fixture,
    extra: &[(&str, &str)],
) -> Value {
    let back = browser_flow(
        b,
        server,
        &authorize_url(server, &f.client_id, extra),
        &f.email,
    )
    .await;
    let code = query_param(&back, "code").expect("a code");
    redeem(server, f, &code).await.json().await.unwrap()
}

/// Signs in and returns a code for `f`'s client.
pub async fn code_for(server: &Server, f: &Fixture, b: &reqwest::Client) -> String {
    let back = browser_flow(
        b,
        server,
        &authorize_url(server, &f.client_id, &[]),
        &f.email,
    )
    .await;
    query_param(&back, "code").expect("a code")
}

/// A browser signed in with the fixture user's password, on the account page.
pub async fn signed_in_browser(server: &Server, email: &str) -> reqwest::Client {
    let b = browser();
    let page = b
        .get(server.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = sign_in(&b, server, &page, email, PASSWORD).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        location(&r),
        "/account",
        "a sign-in without a client lands on the account page"
    );
    b
}

/// Signs the browser out from the account page. Forms shown before its sign-in carry CSRF
/// tokens bound to the browser without a session; signed out, it can send them again (to show
/// that what they spend is spent).
pub async fn sign_out(b: &reqwest::Client, server: &Server) {
    let page = account_page(b, server).await;
    let csrf = input_value(&page, "csrf_token").unwrap();
    let r = b
        .post(server.url("/account/signout"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

pub async fn account_page(b: &reqwest::Client, server: &Server) -> String {
    let r = b.get(server.url("/account")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The claims of a JWT, unverified (the tests that need a verified one check the signature).
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// RFC 7662 introspection of `token`, authenticated as the client `id` (client_secret_basic).
pub async fn introspect_as(server: &Server, id: &str, secret: &str, token: &str) -> Value {
    reqwest::Client::new()
        .post(server.url("/introspect"))
        .header("authorization", basic(id, secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An administrator, root@example.com, with the password [`PASSWORD`]; their id.
pub async fn create_root(env: &Env) -> String {
    let out = env
        .cli(
            &[
                "user",
                "create",
                "--email",
                "root@example.com",
                "--admin",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v["id"].as_str().unwrap().to_owned()
}
