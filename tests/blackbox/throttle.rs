//! Sign-in throttling: failures per address and per account lead to short, growing waits that
//! look the same for known and unknown accounts, and end by themselves.

use latchkey::testdb::TestDb;

use crate::flow::{
    Fixture, PASSWORD, authorize_url, basic, browser, fixture, sign_in, token_request,
};
use crate::harness::{Env, Server};

#[tokio::test]
async fn repeated_failures_make_sign_in_wait_then_recover() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let b = browser();
        let page = b
            .get(authorize_url(&server, &f.client_id, &[]))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for _ in 0..6 {
            assert_eq!(
                sign_in(&b, &server, &page, &f.email, "wrong password!")
                    .await
                    .status(),
                401
            );
        }
        // Now even the right password waits, and so does an unknown account from this address.
        let r = sign_in(&b, &server, &page, &f.email, PASSWORD).await;
        assert_eq!(r.status(), 429);
        assert!(r.text().await.unwrap().contains("Too many attempts"));
        assert_eq!(
            sign_in(&b, &server, &page, "nobody@example.com", "whatever!")
                .await
                .status(),
            429
        );
        // The wait ends by itself.
        server.clock.advance(3);
        let r = sign_in(&b, &server, &page, &f.email, PASSWORD).await;
        assert_eq!(r.status(), 303, "signed in after the wait");
        server.stop().await;
    }
}

/// The token endpoint: failed client authentication counts per address (a bad grant does
/// not); past the allowance
/// the address waits (429 with `Retry-After`, right credentials included, and at the
/// introspection endpoint too), and the wait ends by itself.
#[tokio::test]
async fn failed_client_authentication_makes_the_address_wait() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(
            &env,
            &[
                "--grant-type",
                "authorization_code",
                "--grant-type",
                "client_credentials",
            ],
        )
        .await;
        let server = Server::start(env.config()).await;
        let bad = Fixture {
            client_secret: "not-the-secret".into(),
            ..f.clone()
        };
        let form = [("grant_type", "client_credentials")];
        // Errors after the client authenticated do not count: a stranger can make a real
        // client redeem bogus codes.
        for _ in 0..30 {
            let r = crate::flow::redeem(&server, &f, "bogus-code").await;
            assert_eq!(r.status(), 400);
        }
        assert_eq!(token_request(&server, &f, &form).await.status(), 200);
        for _ in 0..21 {
            let r = token_request(&server, &bad, &form).await;
            assert_eq!(r.status(), 401);
        }
        let r = token_request(&server, &f, &form).await;
        assert_eq!(r.status(), 429, "even the right secret waits");
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
        let r = reqwest::Client::new()
            .post(server.url("/introspect"))
            .header("authorization", basic(&f.client_id, &f.client_secret))
            .form(&[("token", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        server.clock.advance(3);
        let r = token_request(&server, &f, &form).await;
        assert_eq!(r.status(), 200, "the wait ends by itself");
        server.stop().await;
    }
}

/// Behind a trusted proxy (`http.trusted_proxies`), the client address is the forwarded one:
/// one client's failures make that client wait, not everyone behind the proxy.
#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_is_counted_apart() {
    let env = Env::new(
        TestDb::sqlite(),
        "[http]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    fixture(&env, &[]).await;
    let server = Server::start(env.config()).await;
    let b = browser();
    let page = b
        .get(server.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::flow::input_value(&page, "csrf_token").unwrap();
    let attempt = |from: &'static str, email: &'static str, password: &'static str| {
        b.post(server.url("/login"))
            .header("x-forwarded-for", from)
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("email", email),
                ("password", password),
            ])
            .send()
    };
    for _ in 0..6 {
        let r = attempt("198.51.100.1", "nobody@example.com", "wrong password!")
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = attempt("198.51.100.1", "ada@example.com", PASSWORD)
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "the failing client waits");
    let r = attempt("198.51.100.2", "ada@example.com", PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        303,
        "another client behind the same proxy does not"
    );
    server.stop().await;
}

/// Registration: unusable invitation links count per address like failed sign-ins, and wrong
/// initial access tokens at `/register` like failed client authentication.
#[tokio::test]
async fn guessing_invitations_and_registration_tokens_makes_the_address_wait() {
    let env = Env::new(TestDb::sqlite(), "");
    let server = Server::start(env.config()).await;
    let b = browser();
    for i in 0..6 {
        let r = b
            .get(server.url(&format!("/signup?invite=guess{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    let out = env.cli(&["invite", "create"], "").await.unwrap();
    let invite: serde_json::Value = serde_json::from_str(&out).unwrap();
    let url = url::Url::parse(invite["invite_url"].as_str().unwrap()).unwrap();
    let path = format!("{}?{}", url.path(), url.query().unwrap());
    let r = b.get(server.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 403, "even a real invitation waits");
    assert!(r.text().await.unwrap().contains("Too many attempts"));
    server.clock.advance(3);
    assert_eq!(b.get(server.url(&path)).send().await.unwrap().status(), 200);

    let register = || {
        reqwest::Client::new()
            .post(server.url("/register"))
            .bearer_auth("not-a-token")
            .json(&serde_json::json!({ "redirect_uris": ["https://rp.example.com/cb"] }))
            .send()
    };
    for _ in 0..21 {
        assert_eq!(register().await.unwrap().status(), 401);
    }
    let r = register().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    server.stop().await;
}
