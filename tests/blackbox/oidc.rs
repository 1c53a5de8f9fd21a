//! The OpenID Connect core over real HTTP: code + PKCE with password sign-in and consent,
//! tokens, userinfo, refresh rotation, replay and reuse revocation, revocation, introspection,
//! logout, and the redirect URI rules.

use latchkey::testdb::TestDb;
use latchkey_jwks::{Alg, PublicKeySet, VerifyOptions};
use serde_json::Value;

use crate::flow::*;
use crate::harness::{Env, Server, get_json, http};

async fn setup(db: TestDb) -> (Env, Server, Fixture) {
    let env = Env::new(db, "");
    let f = fixture(&env, &[]).await;
    let server = Server::start(env.config()).await;
    (env, server, f)
}

async fn userinfo_status(server: &Server, at: &str) -> u16 {
    http()
        .get(server.url("/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn introspect(server: &Server, f: &Fixture, token: &str) -> Value {
    crate::flow::introspect_as(server, &f.client_id, &f.client_secret, token).await
}

#[tokio::test]
async fn code_flow_with_pkce_issues_verifiable_tokens_and_userinfo() {
    for db in TestDb::all().await {
        let (_env, server, f) = setup(db).await;
        let b = browser();
        let back = browser_flow(
            &b,
            &server,
            &authorize_url(&server, &f.client_id, &[]),
            &f.email,
        )
        .await;
        assert!(back.starts_with(REDIRECT), "{back}");
        assert_eq!(query_param(&back, "state").as_deref(), Some("st-123"));
        assert_eq!(
            query_param(&back, "iss").as_deref(),
            Some(server.state.config.issuer.as_str())
        );
        let code = query_param(&back, "code").unwrap();

        let resp = redeem(&server, &f, &code).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let tokens: Value = resp.json().await.unwrap();
        assert_eq!(tokens["token_type"], "Bearer");
        assert!(tokens["expires_in"].as_i64().unwrap() > 0);
        assert!(tokens["refresh_token"].is_string());

        // The id_token verifies against the published JWKS with RS256, the default.
        let jwks = get_json(&server.url("/jwks.json")).await.to_string();
        let keys = PublicKeySet::from_jwks_json(&jwks).unwrap();
        let issuer = server.state.config.issuer.clone();
        let now = latchkey::clock::Clock::now(server.clock.as_ref());
        let id = keys
            .verify(
                tokens["id_token"].as_str().unwrap(),
                &VerifyOptions {
                    algs: &[Alg::Rs256],
                    issuer: &issuer,
                    audience: &f.client_id,
                    typ: None,
                    now,
                    leeway: 5,
                },
            )
            .unwrap();
        assert_eq!(id.str("sub"), Some(f.user_id.as_str()));
        assert_eq!(id.str("nonce"), Some("n-456"));
        assert!(id.int("auth_time").unwrap() <= now);
        assert!(id.get("at_hash").is_some() && id.get("sid").is_some());
        assert_eq!(id.get("amr").unwrap(), &serde_json::json!(["pwd"]));

        // The access token is an RFC 9068 JWT.
        let at = tokens["access_token"].as_str().unwrap();
        let at_claims = keys
            .verify(
                at,
                &VerifyOptions {
                    algs: &[Alg::Es256],
                    issuer: &issuer,
                    audience: &issuer,
                    typ: Some("at+jwt"),
                    now,
                    leeway: 5,
                },
            )
            .unwrap();
        assert_eq!(at_claims.str("client_id"), Some(f.client_id.as_str()));

        // userinfo, GET and POST with the token in the body.
        let info: Value = http()
            .get(server.url("/userinfo"))
            .bearer_auth(at)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["sub"], f.user_id.as_str());
        assert_eq!(info["email"], f.email.as_str());
        assert_eq!(info["name"], "Ada Lovelace");
        let info: Value = http()
            .post(server.url("/userinfo"))
            .form(&[("access_token", at)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["sub"], f.user_id.as_str());

        // A second authorization for the same client skips sign-in and consent.
        let back = browser_flow(
            &b,
            &server,
            &authorize_url(&server, &f.client_id, &[("prompt", "none")]),
            &f.email,
        )
        .await;
        assert!(query_param(&back, "code").is_some(), "{back}");
        server.stop().await;
    }
}

#[tokio::test]
async fn code_replay_is_refused_and_revokes_what_the_code_issued() {
    let (_env, server, f) = setup(TestDb::sqlite()).await;
    let code = code_for(&server, &f, &browser()).await;
    let first: Value = redeem(&server, &f, &code).await.json().await.unwrap();
    let at = first["access_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&server, at).await, 200);

    let again = redeem(&server, &f, &code).await;
    assert_eq!(again.status(), 400);
    let err: Value = again.json().await.unwrap();
    assert_eq!(err["error"], "invalid_grant");
    assert_eq!(
        userinfo_status(&server, at).await,
        401,
        "the first access token is revoked"
    );
    let rt = first["refresh_token"].as_str().unwrap();
    let r = token_request(
        &server,
        &f,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await;
    assert_eq!(r.status(), 400, "the refresh token is revoked too");
    server.stop().await;
}

#[tokio::test]
async fn code_is_bound_to_redirect_uri_pkce_and_client() {
    let (env, server, f) = setup(TestDb::sqlite()).await;
    let other = env
        .cli(
            &[
                "client",
                "create",
                "--name",
                "Other",
                "--redirect-uri",
                REDIRECT,
            ],
            "",
        )
        .await
        .unwrap();
    let other: Value = serde_json::from_str(&other).unwrap();
    let other = Fixture {
        client_id: other["client_id"].as_str().unwrap().into(),
        client_secret: other["client_secret"].as_str().unwrap().into(),
        user_id: f.user_id.clone(),
        email: f.email.clone(),
    };
    let b = browser();
    let code = code_for(&server, &f, &b).await;
    // Another client cannot redeem it (and does not burn it).
    let r = redeem(&server, &other, &code).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // Wrong verifier.
    let r = token_request(
        &server,
        &f,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &"x".repeat(43)),
        ],
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");

    let code = code_for(&server, &f, &b).await;
    let r = token_request(
        &server,
        &f,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://rp.example.com/cb/"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");

    let code = code_for(&server, &f, &b).await;
    server.clock.advance(61);
    let r = redeem(&server, &f, &code).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "invalid_grant",
        "codes live 60 s"
    );
    server.stop().await;
}

/// Without the retry grace (see the test after this one for it), any reuse of a rotated
/// refresh token revokes its family at once.
#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    for db in TestDb::all().await {
        let env = Env::new(db, "[tokens]\nrefresh_retry_grace = \"0s\"");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let code = code_for(&server, &f, &browser()).await;
        let first: Value = redeem(&server, &f, &code).await.json().await.unwrap();
        let rt1 = first["refresh_token"].as_str().unwrap().to_owned();

        let r = token_request(
            &server,
            &f,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
        )
        .await;
        assert_eq!(r.status(), 200);
        let second: Value = r.json().await.unwrap();
        let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(rt1, rt2);
        assert!(second["id_token"].is_string());
        let at2 = second["access_token"].as_str().unwrap().to_owned();
        assert_eq!(introspect(&server, &f, &at2).await["active"], true);

        // Narrowing is allowed, widening is not.
        let r = token_request(
            &server,
            &f,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt2),
                ("scope", "openid admin"),
            ],
        )
        .await;
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");

        // Reusing rt1 (rotated) revokes the family: rt2 and the access tokens die with it.
        let r = token_request(
            &server,
            &f,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
        )
        .await;
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
        let r = token_request(
            &server,
            &f,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt2)],
        )
        .await;
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
        assert_eq!(introspect(&server, &f, &at2).await["active"], false);
        server.stop().await;
    }
}

/// RFC 9700 §4.14.2 retry grace: the client lost the answer to a refresh and sends it again;
/// within `tokens.refresh_retry_grace` it gets the same successor (never a second new token)
/// and the login lives. Once the successor is used, the old token again is a replay.
#[tokio::test]
async fn a_refresh_retried_after_a_lost_answer_gets_the_same_successor() {
    for db in TestDb::all().await {
        let (_env, server, f) = setup(db).await;
        let code = code_for(&server, &f, &browser()).await;
        let first: Value = redeem(&server, &f, &code).await.json().await.unwrap();
        let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
        let refresh = |rt: String| {
            let (server, f) = (&server, &f);
            async move {
                token_request(
                    server,
                    f,
                    &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
                )
                .await
            }
        };
        let lost: Value = refresh(rt1.clone()).await.json().await.unwrap();
        let rt2 = lost["refresh_token"].as_str().unwrap().to_owned();
        let r = refresh(rt1.clone()).await;
        assert_eq!(r.status(), 200, "the retry is answered");
        let retried: Value = r.json().await.unwrap();
        assert_eq!(retried["refresh_token"], rt2.as_str(), "the same successor");
        let at = retried["access_token"].as_str().unwrap();
        assert_eq!(introspect(&server, &f, at).await["active"], true);

        // The successor works once; then the first token is a replay again.
        let r = refresh(rt2.clone()).await;
        assert_eq!(r.status(), 200);
        let rt3 = r.json::<Value>().await.unwrap()["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = refresh(rt1).await;
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
        let r = refresh(rt3).await;
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "invalid_grant",
            "the replay revoked the family"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn revocation_and_introspection() {
    let (env, server, f) = setup(TestDb::sqlite()).await;
    let code = code_for(&server, &f, &browser()).await;
    let t: Value = redeem(&server, &f, &code).await.json().await.unwrap();
    let at = t["access_token"].as_str().unwrap();
    let rt = t["refresh_token"].as_str().unwrap();

    let i = introspect(&server, &f, at).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["sub"], f.user_id.as_str());
    assert_eq!(
        introspect(&server, &f, rt).await["token_type"],
        "refresh_token"
    );
    assert_eq!(introspect(&server, &f, "garbage").await["active"], false);
    // Another client learns nothing about this client's refresh token.
    let other: Value = serde_json::from_str(
        &env.cli(
            &[
                "client",
                "create",
                "--name",
                "Other",
                "--redirect-uri",
                REDIRECT,
            ],
            "",
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let other = Fixture {
        client_id: other["client_id"].as_str().unwrap().into(),
        client_secret: other["client_secret"].as_str().unwrap().into(),
        user_id: String::new(),
        email: String::new(),
    };
    assert_eq!(
        introspect(&server, &other, rt).await,
        serde_json::json!({"active": false})
    );

    let revoke = |token: String| {
        let f_id = f.client_id.clone();
        let f_secret = f.client_secret.clone();
        let url = server.url("/revoke");
        async move {
            reqwest::Client::new()
                .post(url)
                .header("authorization", basic(&f_id, &f_secret))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(revoke(at.to_owned()).await, 200);
    assert_eq!(introspect(&server, &f, at).await["active"], false);
    assert_eq!(userinfo_status(&server, at).await, 401);
    assert_eq!(
        introspect(&server, &f, rt).await["active"],
        true,
        "revoking the access token leaves the refresh token"
    );
    assert_eq!(revoke(rt.to_owned()).await, 200);
    assert_eq!(introspect(&server, &f, rt).await["active"], false);
    assert_eq!(
        revoke("not-a-token".into()).await,
        200,
        "RFC 7009: unknown tokens answer 200"
    );

    // Introspection needs client authentication.
    let r = http()
        .post(server.url("/introspect"))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn client_authentication_rules_at_the_token_endpoint() {
    let (_env, server, f) = setup(TestDb::sqlite()).await;
    let form = [("grant_type", "client_credentials")];
    // Wrong secret with Basic: 401 invalid_client with a Basic challenge.
    let r = http()
        .post(server.url("/token"))
        .header("authorization", basic(&f.client_id, "wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    // Unknown client: the same answer.
    let r = http()
        .post(server.url("/token"))
        .header("authorization", basic("nobody", "x"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The registered method is basic: client_secret_post is refused.
    let r = http()
        .post(server.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", &f.client_id),
            ("client_secret", &f.client_secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    // A grant the client lacks, and one nobody supports.
    let r = token_request(&server, &f, &form).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );
    let r = token_request(&server, &f, &[("grant_type", "password")]).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    // Repeated parameters and a non-form body.
    let r = http()
        .post(server.url("/token"))
        .header("authorization", basic(&f.client_id, &f.client_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&grant_type=refresh_token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = http()
        .post(server.url("/token"))
        .header("authorization", basic(&f.client_id, &f.client_secret))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_request");
    let d = e["error_description"].as_str().unwrap();
    assert!(!d.contains('\n') && !d.contains('\t'));
    server.stop().await;
}

#[tokio::test]
async fn client_credentials_issues_an_access_token_for_the_client() {
    let env = Env::new(TestDb::sqlite(), "");
    let out = env
        .cli(
            &[
                "client",
                "create",
                "--name",
                "Billing",
                "--grant-type",
                "client_credentials",
                "--scope",
                "invoices:read",
                "--scope",
                "invoices:write",
            ],
            "",
        )
        .await
        .unwrap();
    let c: Value = serde_json::from_str(&out).unwrap();
    let server = Server::start(env.config()).await;
    let (id, secret) = (
        c["client_id"].as_str().unwrap(),
        c["client_secret"].as_str().unwrap(),
    );
    let r = http()
        .post(server.url("/token"))
        .header("authorization", basic(id, secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "invoices:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["scope"], "invoices:read");
    assert!(t.get("refresh_token").is_none() && t.get("id_token").is_none());
    let r = http()
        .post(server.url("/token"))
        .header("authorization", basic(id, secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");
    // client_secret_post works for a client registered with it.
    server.stop().await;
}

#[tokio::test]
async fn unregistered_or_altered_redirect_uris_never_receive_a_redirect() {
    let (_env, server, f) = setup(TestDb::sqlite()).await;
    let b = browser();
    for bad in [
        "https://RP.example.com/cb",
        "https://rp.example.com/CB",
        "https://rp.example.com/cb/",
        "https://rp.example.com/cb?x=1",
        "https://rp.example.com/cb/../cb",
        "https://rp.example.com:444/cb",
        "https://rp.example.com.evil.example/cb",
        "https://evil.example/cb",
        "http://rp.example.com/cb",
    ] {
        let mut u = url::Url::parse(&authorize_url(&server, &f.client_id, &[])).unwrap();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "redirect_uri" {
                    bad.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        let r = b.get(u.as_str()).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(
            r.headers().get("location").is_none(),
            "{bad} got a redirect"
        );
        assert!(r.text().await.unwrap().contains("not registered"), "{bad}");
    }
    // Missing redirect_uri and unknown client: pages too.
    let r = b
        .get(server.url("/authorize?client_id=nope&response_type=code"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    server.stop().await;
}

#[tokio::test]
async fn authorization_errors_after_verification_redirect_with_state_and_iss() {
    let (_env, server, f) = setup(TestDb::sqlite()).await;
    let b = browser();
    let r = b
        .get(authorize_url(&server, &f.client_id, &[("prompt", "none")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert_eq!(query_param(&to, "error").as_deref(), Some("login_required"));
    assert_eq!(query_param(&to, "state").as_deref(), Some("st-123"));
    assert_eq!(
        query_param(&to, "iss").as_deref(),
        Some(server.state.config.issuer.as_str())
    );

    let u = authorize_url(&server, &f.client_id, &[])
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let to = location(&b.get(u).send().await.unwrap());
    assert_eq!(
        query_param(&to, "error").as_deref(),
        Some("invalid_request")
    );
    let u = authorize_url(&server, &f.client_id, &[])
        .replace("response_type=code", "response_type=token");
    let to = location(&b.get(u).send().await.unwrap());
    assert_eq!(
        query_param(&to, "error").as_deref(),
        Some("unsupported_response_type")
    );
    server.stop().await;
}

#[tokio::test]
async fn form_post_response_mode_posts_back_with_a_page_that_needs_no_inline_script() {
    let (_env, server, f) = setup(TestDb::sqlite()).await;
    let b = browser();
    // Sign in and consent once in query mode.
    code_for(&server, &f, &b).await;
    let r = b
        .get(authorize_url(
            &server,
            &f.client_id,
            &[("response_mode", "form_post")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("form-action https://rp.example.com"), "{csp}");
    assert!(!csp.contains("unsafe-inline"));
    let html = r.text().await.unwrap();
    assert!(
        html.contains("action=\"https://rp.example.com/cb\"")
            || html.contains("action=\"https:&#x2f;&#x2f;rp.example.com&#x2f;cb\""),
        "{html}"
    );
    assert!(input_value(&html, "code").is_some());
    assert_eq!(input_value(&html, "state").as_deref(), Some("st-123"));
    assert!(html.contains("<noscript>"));
    assert!(html.contains("src=\"/static/form_post.js\""));
    server.stop().await;
}

#[tokio::test]
async fn prompt_login_and_max_age_force_a_new_sign_in() {
    let (_env, server, f) = setup(TestDb::sqlite()).await;
    let b = browser();
    let code = code_for(&server, &f, &b).await;
    let first: Value = redeem(&server, &f, &code).await.json().await.unwrap();
    let _ = first;
    server.clock.advance(5);
    // prompt=login shows the sign-in form even with a session.
    let r = b
        .get(authorize_url(&server, &f.client_id, &[("prompt", "login")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("action=\"/login\""));
    assert!(
        !input_value(&html, "request")
            .unwrap()
            .contains("prompt=login")
    );
    // max_age=1 after 5 s: sign in again.
    let r = b
        .get(authorize_url(&server, &f.client_id, &[("max_age", "1")]))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("action=\"/login\""));
    // max_age=10000: the session is fresh enough.
    let r = b
        .get(authorize_url(
            &server,
            &f.client_id,
            &[("max_age", "10000")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    server.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let (_env, server, f) = setup(TestDb::sqlite()).await;
    let b = browser();
    let page = b
        .get(authorize_url(&server, &f.client_id, &[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let wrong = sign_in(&b, &server, &page, &f.email, "wrong password!").await;
    let unknown = sign_in(&b, &server, &page, "nobody@example.com", "wrong password!").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    let strip = |s: String, email: &str| {
        // The form echoes the typed email and a fresh CSRF token; everything else must match.
        let s = s.replace(email, "EMAIL");
        s.lines()
            .filter(|l| !l.contains("csrf_token"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let a = strip(wrong.text().await.unwrap(), &f.email);
    let c = strip(unknown.text().await.unwrap(), "nobody@example.com");
    assert_eq!(a, c);
    // A login post without the CSRF token is refused.
    let r = b
        .post(server.url("/login"))
        .form(&[("email", f.email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    server.stop().await;
}

#[tokio::test]
async fn rp_initiated_logout_ends_the_session_and_redirects_only_to_registered_uris() {
    let (_env, server, f) = setup(TestDb::sqlite()).await;
    let b = browser();
    let code = code_for(&server, &f, &b).await;
    let t: Value = redeem(&server, &f, &code).await.json().await.unwrap();
    let id_token = t["id_token"].as_str().unwrap();

    // An unregistered post_logout_redirect_uri: error page, no redirect, session kept.
    let mut u = url::Url::parse(&server.url("/logout")).unwrap();
    u.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", "https://evil.example/out");
    let r = b.get(u.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    // A hint with a broken signature: error page.
    // Change a character well inside the signature (the last one may carry only padding bits).
    let mut forged: Vec<char> = id_token.chars().collect();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let mut u = url::Url::parse(&server.url("/logout")).unwrap();
    u.query_pairs_mut()
        .append_pair("id_token_hint", &forged)
        .append_pair(
            "post_logout_redirect_uri",
            "https://rp.example.com/logged-out",
        );
    let r = b.get(u.as_str()).send().await.unwrap();
    assert!(r.headers().get("location").is_none());

    let mut u = url::Url::parse(&server.url("/logout")).unwrap();
    u.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair(
            "post_logout_redirect_uri",
            "https://rp.example.com/logged-out",
        )
        .append_pair("state", "bye");
    let r = b.get(u.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "https://rp.example.com/logged-out?state=bye");

    // Signed out: prompt=none now fails.
    let r = b
        .get(authorize_url(&server, &f.client_id, &[("prompt", "none")]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        query_param(&location(&r), "error").as_deref(),
        Some("login_required")
    );
    server.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_redemptions_of_one_code_give_one_success_and_revoke_its_tokens() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        // Two instances on one database share the work.
        let a = Server::start(env.config()).await;
        let b_srv = Server::start(env.config()).await;
        let code = code_for(&a, &f, &browser()).await;
        let mut tasks = Vec::new();
        for i in 0..50 {
            let url = if i % 2 == 0 {
                a.url("/token")
            } else {
                b_srv.url("/token")
            };
            let auth = basic(&f.client_id, &f.client_secret);
            let code = code.clone();
            tasks.push(tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .post(url)
                    .header("authorization", auth)
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", code.as_str()),
                        ("redirect_uri", REDIRECT),
                        ("code_verifier", VERIFIER),
                    ])
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap())
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (200, body) => winners.push(body),
                (400, body) => assert_eq!(body["error"], "invalid_grant"),
                (other, body) => panic!("unexpected status {other}: {body}"),
            }
        }
        assert_eq!(winners.len(), 1);
        // The other 49 were replays: what the code issued is revoked, whether a replay came
        // before or after the winner made its grant.
        let at = winners[0]["access_token"].as_str().unwrap();
        let v = crate::flow::introspect_as(&a, &f.client_id, &f.client_secret, at).await;
        assert_eq!(v["active"], false, "the winner's access token is revoked");
        let rt = winners[0]["refresh_token"].as_str().unwrap();
        let r = token_request(
            &b_srv,
            &f,
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        )
        .await;
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
        a.stop().await;
        b_srv.stop().await;
    }
}

#[tokio::test]
async fn one_flow_across_two_instances() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let a = Server::start(env.config()).await;
        let b_srv = Server::start(env.config()).await;
        // Authorize on a, token on b, refresh on a.
        let code = code_for(&a, &f, &browser()).await;
        let t: Value = redeem(&b_srv, &f, &code).await.json().await.unwrap();
        let rt = t["refresh_token"].as_str().unwrap();
        let r = token_request(
            &a,
            &f,
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        )
        .await;
        assert_eq!(r.status(), 200);
        let at = r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(userinfo_status(&b_srv, &at).await, 200);
        a.stop().await;
        b_srv.stop().await;
    }
}

pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn rfc8707_resource_sets_the_audience_of_known_resources_only() {
    let env = Env::new(
        TestDb::sqlite(),
        "[tokens]\nresources = [\"https://api.example.com\", \"https://admin.example.com\"]\n\
         [clients]\ncache_ttl = \"0s\"",
    );
    let f = fixture(
        &env,
        &[
            "--resource",
            "https://api.example.com",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--grant-type",
            "client_credentials",
            "--scope",
            "openid",
            "--scope",
            "orders:read",
        ],
    )
    .await;
    let server = Server::start(env.config()).await;

    let r = token_request(
        &server,
        &f,
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://api.example.com"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let at = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(jwt_claims(&at)["aud"], "https://api.example.com");
    let i = introspect(&server, &f, &at).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["aud"], "https://api.example.com");

    let r = token_request(
        &server,
        &f,
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://other.example.com"),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_target");
    // A resource server known here but not given to this client is refused too.
    let r = token_request(
        &server,
        &f,
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://admin.example.com"),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_target");
    // Until an administrator gives it to the client.
    env.cli(
        &[
            "client",
            "set-resources",
            &f.client_id,
            "--resource",
            "https://api.example.com",
            "--resource",
            "https://admin.example.com",
        ],
        "",
    )
    .await
    .unwrap();
    let r = token_request(
        &server,
        &f,
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://admin.example.com"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // Both at once (RFC 8707 §2 allows asking): a token here has one audience.
    let r = token_request(
        &server,
        &f,
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://api.example.com"),
            ("resource", "https://admin.example.com"),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_target");
    // invalid_target is the token endpoint's; revocation and introspection (RFC 7009, RFC
    // 7662) have no such error: a repeated parameter there is an invalid_request.
    for endpoint in ["/revoke", "/introspect"] {
        let r = reqwest::Client::new()
            .post(server.url(endpoint))
            .header("authorization", basic(&f.client_id, &f.client_secret))
            .form(&[
                ("token", "x"),
                ("resource", "https://api.example.com"),
                ("resource", "https://admin.example.com"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{endpoint}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "invalid_request",
            "{endpoint}"
        );
    }
    // And the command line will not give a client one that is not configured.
    let e = env
        .cli(
            &[
                "client",
                "create",
                "--name",
                "X",
                "--grant-type",
                "client_credentials",
                "--resource",
                "https://other.example.com",
            ],
            "",
        )
        .await
        .unwrap_err();
    assert!(e.contains("tokens.resources"), "{e}");

    // A user's token for the API is not a token for userinfo.
    let code = code_for(&server, &f, &browser()).await;
    let r = token_request(
        &server,
        &f,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", "https://api.example.com"),
        ],
    )
    .await;
    let t: Value = r.json().await.unwrap();
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(at)["aud"], "https://api.example.com");
    assert_eq!(userinfo_status(&server, at).await, 401);
    server.stop().await;
}

#[tokio::test]
async fn refresh_tokens_can_require_offline_access() {
    let env = Env::new(
        TestDb::sqlite(),
        "[tokens]\nrefresh_requires_offline_access = true",
    );
    let f = fixture(&env, &[]).await;
    let server = Server::start(env.config()).await;
    let b = browser();
    let with = code_for(&server, &f, &b).await;
    let t: Value = redeem(&server, &f, &with).await.json().await.unwrap();
    assert!(t["refresh_token"].is_string(), "offline_access was granted");

    let back = browser_flow(
        &b,
        &server,
        &authorize_url(&server, &f.client_id, &[]).replace("offline_access", "email"),
        &f.email,
    )
    .await;
    let code = query_param(&back, "code").unwrap();
    let t: Value = redeem(&server, &f, &code).await.json().await.unwrap();
    assert!(
        t.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );
    server.stop().await;
}

/// Twenty requests with one refresh token, at once, on two instances. With the retry grace
/// (the default) they are one client's retries: all are answered, with one and the same
/// successor, and the family lives. Without it (`refresh_retry_grace = "0s"`), exactly one
/// rotation wins and the others, reuses, revoke the family.
#[tokio::test]
async fn concurrent_reuse_of_one_refresh_token_gives_one_success_and_revokes_the_family() {
    for db in TestDb::all().await {
        concurrent_refreshes(db, true).await;
    }
    for db in TestDb::all().await {
        concurrent_refreshes(db, false).await;
    }
}

async fn concurrent_refreshes(db: TestDb, grace: bool) {
    {
        let env = Env::new(
            db,
            if grace {
                ""
            } else {
                "[tokens]\nrefresh_retry_grace = \"0s\""
            },
        );
        let f = fixture(&env, &[]).await;
        let a = Server::start(env.config()).await;
        let b_srv = Server::start(env.config()).await;
        let code = code_for(&a, &f, &browser()).await;
        let t: Value = redeem(&a, &f, &code).await.json().await.unwrap();
        let rt = t["refresh_token"].as_str().unwrap().to_owned();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let url = if i % 2 == 0 {
                a.url("/token")
            } else {
                b_srv.url("/token")
            };
            let auth = basic(&f.client_id, &f.client_secret);
            let rt = rt.clone();
            tasks.push(tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .post(url)
                    .header("authorization", auth)
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", rt.as_str()),
                    ])
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap();
                (status, body)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (status, body) = t.await.unwrap();
            match status {
                200 => winners.push(body),
                400 => assert_eq!(body["error"], "invalid_grant"),
                other => panic!("unexpected status {other}"),
            }
        }
        if grace {
            assert_eq!(
                winners.len(),
                20,
                "every retry within the grace is answered"
            );
            let successors: std::collections::BTreeSet<&str> = winners
                .iter()
                .map(|w| w["refresh_token"].as_str().unwrap())
                .collect();
            assert_eq!(
                successors.len(),
                1,
                "one successor, never a second new token"
            );
            let next = successors.first().unwrap();
            let r = token_request(
                &a,
                &f,
                &[("grant_type", "refresh_token"), ("refresh_token", next)],
            )
            .await;
            assert_eq!(r.status(), 200, "the family lives");
            a.stop().await;
            b_srv.stop().await;
            return;
        }
        assert_eq!(winners.len(), 1, "exactly one rotation wins");
        // The others were reuses: the family is revoked, the winner's new token included.
        let new_rt = winners[0]["refresh_token"].as_str().unwrap();
        let r = token_request(
            &a,
            &f,
            &[("grant_type", "refresh_token"), ("refresh_token", new_rt)],
        )
        .await;
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
        a.stop().await;
        b_srv.stop().await;
    }
}

/// RFC 8252 §7.3: any loopback port only for native (public) clients; a confidential web
/// client's loopback redirect URI must match exactly, port included.
#[tokio::test]
async fn rfc8252_7_3_loopback_port_may_differ_only_for_public_clients() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let registered = "http://127.0.0.1:3000/cb";
        let mut ids = Vec::new();
        for public in [false, true] {
            let mut args = vec![
                "client",
                "create",
                "--name",
                "Loopback",
                "--redirect-uri",
                registered,
            ];
            if public {
                args.push("--public");
            }
            let out: Value = serde_json::from_str(&env.cli(&args, "").await.unwrap()).unwrap();
            ids.push(out["client_id"].as_str().unwrap().to_owned());
        }
        let server = Server::start(env.config()).await;
        let url = |client_id: &str, redirect: &str| {
            let mut u = url::Url::parse(&server.url("/authorize")).unwrap();
            u.query_pairs_mut()
                .append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", redirect)
                .append_pair("scope", "openid")
                .append_pair("state", "s")
                .append_pair("code_challenge", &s256(VERIFIER))
                .append_pair("code_challenge_method", "S256");
            u.to_string()
        };
        let b = browser();
        let (confidential, public) = (&ids[0], &ids[1]);
        // Another port: refused for the web client (an error page, no redirect) ...
        let r = b
            .get(url(confidential, "http://127.0.0.1:4000/cb"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{:?}", server.state.store.backend());
        assert!(r.headers().get("location").is_none());
        // ... accepted for the native app (on to sign-in), and the exact one for both.
        for (client, redirect) in [
            (public, "http://127.0.0.1:4000/cb"),
            (confidential, registered),
            (public, registered),
        ] {
            let r = b.get(url(client, redirect)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{client} {redirect}");
            assert!(r.text().await.unwrap().contains("current-password"));
        }
        server.stop().await;
    }
}

/// RFC 8707 at the authorization endpoint: the resource named there is recorded with the
/// code; the token request may repeat it, not change it; refreshes keep it; an unknown one is
/// `invalid_target` at /authorize (a redirect) and at /par (JSON).
#[tokio::test]
async fn rfc8707_a_resource_named_at_authorize_is_the_audience_of_the_whole_grant() {
    for db in TestDb::all().await {
        let env = Env::new(
            db,
            "[tokens]\nresources = [\"https://api.example.com\", \"https://admin.example.com\"]\n",
        );
        let f = fixture(
            &env,
            &[
                "--resource",
                "https://api.example.com",
                "--resource",
                "https://admin.example.com",
                "--grant-type",
                "authorization_code",
                "--grant-type",
                "refresh_token",
            ],
        )
        .await;
        let server = Server::start(env.config()).await;
        let api = "https://api.example.com";
        let flow = |extra: Vec<(&'static str, &'static str)>| {
            let server = &server;
            let f = &f;
            async move {
                browser_flow(
                    &browser(),
                    server,
                    &authorize_url(server, &f.client_id, &extra),
                    &f.email,
                )
                .await
            }
        };
        let code_form = |code: &str, resource: Option<&str>| {
            let mut form = vec![
                ("grant_type", "authorization_code".to_owned()),
                ("code", code.to_owned()),
                ("redirect_uri", REDIRECT.to_owned()),
                ("code_verifier", VERIFIER.to_owned()),
            ];
            if let Some(r) = resource {
                form.push(("resource", r.to_owned()));
            }
            form
        };
        let post = |form: Vec<(&'static str, String)>| {
            let server = &server;
            let f = &f;
            async move {
                let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let r = token_request(server, f, &pairs).await;
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };

        // Named at /authorize, not repeated at /token: the token is for it; so are refreshes.
        let back = flow(vec![("resource", api)]).await;
        let code = query_param(&back, "code").unwrap();
        let (status, t) = post(code_form(&code, None)).await;
        assert_eq!(status, 200, "{t}");
        assert_eq!(jwt_claims(t["access_token"].as_str().unwrap())["aud"], api);
        let rt = t["refresh_token"].as_str().unwrap().to_owned();
        // A refresh asking for another resource is refused and spends nothing.
        let (status, e) = post(vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", rt.clone()),
            ("resource", "https://admin.example.com".to_owned()),
        ])
        .await;
        assert_eq!((status, e["error"].as_str()), (400, Some("invalid_target")));
        let (status, t) = post(vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", rt),
        ])
        .await;
        assert_eq!(status, 200, "{t}");
        assert_eq!(jwt_claims(t["access_token"].as_str().unwrap())["aud"], api);

        // Repeated at /token: fine; another one: invalid_target.
        let code = query_param(&flow(vec![("resource", api)]).await, "code").unwrap();
        let (status, _) = post(code_form(&code, Some(api))).await;
        assert_eq!(status, 200);
        let code = query_param(&flow(vec![("resource", api)]).await, "code").unwrap();
        let (status, e) = post(code_form(&code, Some("https://admin.example.com"))).await;
        assert_eq!((status, e["error"].as_str()), (400, Some("invalid_target")));

        // Unknown, or not an absolute URI: invalid_target at the redirect URI.
        for bad in ["https://other.example.com", "not a uri"] {
            let back = flow(vec![("resource", bad)]).await;
            assert_eq!(
                query_param(&back, "error").as_deref(),
                Some("invalid_target"),
                "{bad}"
            );
        }
        // At /par: JSON.
        let url = url::Url::parse(&authorize_url(
            &server,
            &f.client_id,
            &[("resource", "https://other.example.com")],
        ))
        .unwrap();
        let form: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let r = reqwest::Client::new()
            .post(server.url("/par"))
            .header("authorization", basic(&f.client_id, &f.client_secret))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_target");
        server.stop().await;
    }
}
