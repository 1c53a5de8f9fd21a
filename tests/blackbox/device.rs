//! RFC 8628 device authorization: a public client gets a device code and an 8-character user
//! code, polls (`authorization_pending`, `slow_down` when too eager), the signed-in user types
//! the code at /device, sees the application and scopes and approves; the next poll gets tokens
//! once. Denied requests answer `access_denied`, old ones `expired_token`, and guessing user
//! codes is throttled.

use latchkey::testdb::TestDb;
use serde_json::Value;

use crate::flow::{
    PASSWORD, browser, claims, fixture, input_value, location, sign_in, signed_in_browser,
};
use crate::harness::{Env, Server};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A public client of the device flow (a TV app, say); returns its client_id.
async fn device_client(env: &Env) -> String {
    let out = env
        .cli(
            &[
                "client",
                "create",
                "--name",
                "Stream Box",
                "--public",
                "--grant-type",
                GRANT,
                "--grant-type",
                "refresh_token",
                "--scope",
                "openid",
                "--scope",
                "offline_access",
            ],
            "",
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v["client_id"].as_str().unwrap().to_owned()
}

async fn start(server: &Server, client_id: &str) -> Value {
    let r = reqwest::Client::new()
        .post(server.url("/device_authorization"))
        .form(&[("client_id", client_id), ("scope", "openid offline_access")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.json().await.unwrap()
}

async fn poll(server: &Server, client_id: &str, device_code: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(server.url("/token"))
        .form(&[
            ("grant_type", GRANT),
            ("client_id", client_id),
            ("device_code", device_code),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The signed-in user opens the verification page for `user_code` and answers.
async fn answer(b: &reqwest::Client, server: &Server, user_code: &str, decision: &str) -> String {
    let page = b
        .get(server.url(&format!("/device?user_code={user_code}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Stream Box"),
        "the page names the application: {page}"
    );
    assert!(page.contains("offline_access"), "and the scopes");
    let csrf = input_value(&page, "csrf_token").unwrap();
    let r = b
        .post(server.url("/device"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("user_code", user_code),
            ("decision", decision),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn a_device_pairs_by_user_code_and_gets_tokens_once() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let client_id = device_client(&env).await;
        let server = Server::start(env.config()).await;

        let discovery: Value =
            crate::harness::get_json(&server.url("/.well-known/openid-configuration")).await;
        assert_eq!(
            discovery["device_authorization_endpoint"],
            "http://localhost:8080/device_authorization"
        );
        assert!(
            discovery["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&GRANT.into())
        );

        let started = start(&server, &client_id).await;
        let user_code = started["user_code"].as_str().unwrap().to_owned();
        assert_eq!(user_code.len(), 9);
        assert_eq!(&user_code[4..5], "-");
        assert!(
            user_code
                .replace('-', "")
                .chars()
                .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c))
        );
        assert_eq!(started["expires_in"], 600);
        assert_eq!(started["interval"], 5);
        assert_eq!(started["verification_uri"], "http://localhost:8080/device");
        assert_eq!(
            started["verification_uri_complete"],
            format!("http://localhost:8080/device?user_code={user_code}")
        );
        let device_code = started["device_code"].as_str().unwrap().to_owned();

        // Polling before the user answers; too soon again is slow_down.
        let (status, body) = poll(&server, &client_id, &device_code).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("authorization_pending"))
        );
        let (_, body) = poll(&server, &client_id, &device_code).await;
        assert_eq!(body["error"], "slow_down");

        // Signed out, the verification page asks for a sign-in first and comes back with the
        // code afterwards.
        let b = browser();
        let page = b
            .get(server.url(&format!("/device?user_code={user_code}")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r = sign_in(&b, &server, &page, &f.email, PASSWORD).await;
        assert_eq!(
            location(&r),
            format!("/device?user_code={}", user_code.replace('-', ""))
        );
        let done = answer(&b, &server, &user_code, "allow").await;
        assert!(done.contains("The device is connected"));

        // The interval has grown to 10 s by the slow_down.
        server.clock.advance(10);
        let (status, tokens) = poll(&server, &client_id, &device_code).await;
        assert_eq!(status, 200, "{tokens}");
        assert!(tokens["refresh_token"].is_string());
        let id = claims(tokens["id_token"].as_str().unwrap());
        assert_eq!(id["sub"], f.user_id);
        assert_eq!(id["amr"], serde_json::json!(["pwd"]));
        let at = claims(tokens["access_token"].as_str().unwrap());
        assert_eq!(at["client_id"], client_id);

        // Once only.
        server.clock.advance(10);
        let (_, body) = poll(&server, &client_id, &device_code).await;
        assert_eq!(body["error"], "invalid_grant");
        // Another client cannot use it.
        let (_, body) = poll(&server, "someone-else", &device_code).await;
        assert_ne!(body["error"], "authorization_pending");
        server.stop().await;
    }
}

#[tokio::test]
async fn denied_and_expired_requests_and_guessed_codes() {
    let env = Env::new(TestDb::sqlite(), "");
    let f = fixture(&env, &[]).await;
    let client_id = device_client(&env).await;
    let server = Server::start(env.config()).await;
    let b = signed_in_browser(&server, &f.email).await;

    let started = start(&server, &client_id).await;
    let done = answer(&b, &server, started["user_code"].as_str().unwrap(), "deny").await;
    assert!(done.contains("denied"));
    let (_, body) = poll(
        &server,
        &client_id,
        started["device_code"].as_str().unwrap(),
    )
    .await;
    assert_eq!(body["error"], "access_denied");

    let started = start(&server, &client_id).await;
    server.clock.advance(601);
    let (_, body) = poll(
        &server,
        &client_id,
        started["device_code"].as_str().unwrap(),
    )
    .await;
    assert_eq!(body["error"], "expired_token");
    let page = b
        .get(server.url(&format!(
            "/device?user_code={}",
            started["user_code"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400, "an expired code is not shown");

    // Guessing: wrong codes count like failed sign-ins (the expired one above was the
    // first); past five, a real code waits too.
    let started = start(&server, &client_id).await;
    for guess in [
        "BCDF-GHJK",
        "BCDF-GHJL",
        "BCDF-GHJM",
        "BCDF-GHJN",
        "BCDF-GHJP",
    ] {
        let r = b
            .get(server.url(&format!("/device?user_code={guess}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let r = b
        .get(server.url(&format!(
            "/device?user_code={}",
            started["user_code"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    server.clock.advance(3);
    let r = b
        .get(server.url(&format!(
            "/device?user_code={}",
            started["user_code"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}
