//! RFC 8628 device authorization: a public client gets a device code and an 8-character user
//! code, polls (`authorization_pending`, `slow_down` when too eager), the signed-in user types
//! the code at /device, sees the application and scopes and approves; the next poll gets tokens
//! once. Denied requests answer `access_denied`, old ones `expired_token`, and guessing user
//! codes is throttled.

use latchkey::testdb::TestDb;
use serde_json::{Value, json};

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

        // The account page lists the device, and removes it: its refresh token then fails.
        let html = crate::flow::account_page(&b, &server).await;
        assert!(html.contains("Stream Box"));
        let csrf = input_value(&html, "csrf_token").unwrap();
        let start_at = html.find("/account/devices/").unwrap() + "/account/devices/".len();
        let id = &html[start_at..start_at + html[start_at..].find('/').unwrap()];
        let r = b
            .post(server.url(&format!("/account/devices/{id}/remove")))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert!(
            !crate::flow::account_page(&b, &server)
                .await
                .contains("Stream Box")
        );
        let r = reqwest::Client::new()
            .post(server.url("/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", client_id.as_str()),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        server.stop().await;
    }
}

#[tokio::test]
async fn denied_and_expired_requests_and_guessed_codes() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
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

        // Approved, then the user is disabled before the device polls: the device code ends
        // there, and enabling the user again does not bring it back.
        let started = start(&server, &client_id).await;
        let done = answer(&b, &server, started["user_code"].as_str().unwrap(), "allow").await;
        assert!(done.contains("The device is connected"));
        env.cli(&["user", "disable", "--email", &f.email], "")
            .await
            .unwrap();
        let device_code = started["device_code"].as_str().unwrap();
        let (status, body) = poll(&server, &client_id, device_code).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("expired_token"))
        );
        env.cli(&["user", "enable", "--email", &f.email], "")
            .await
            .unwrap();
        server.clock.advance(10);
        let (_, body) = poll(&server, &client_id, device_code).await;
        assert_eq!(body["error"], "expired_token");
        let b = signed_in_browser(&server, &f.email).await;

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
        // Posted answers count too: a wrong code posted is a guess, and the address and user wait.
        let page = r.text().await.unwrap();
        let csrf = input_value(&page, "csrf_token").unwrap();
        let post = |code: String| {
            b.post(server.url("/device")).form(&[
                ("csrf_token", csrf.clone()),
                ("user_code", code),
                ("decision", "deny".to_owned()),
            ])
        };
        assert_eq!(post("BCDF-GHJR".into()).send().await.unwrap().status(), 400);
        let real = started["user_code"].as_str().unwrap().to_owned();
        assert_eq!(post(real).send().await.unwrap().status(), 429);
        server.stop().await;
    }
}

/// The devices API: the device paired above shows up for its user (not for another), can be
/// renamed, and deleted; its access token is then inactive at once (introspection and the
/// APIs) and its refresh token fails.
#[tokio::test]
async fn a_paired_device_is_listed_renamed_and_deleted_through_the_api() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let scopes = [
            "--scope",
            "openid",
            "--scope",
            "profile",
            "--scope",
            "email",
            "--scope",
            "offline_access",
            "--scope",
            "devices:read",
            "--scope",
            "devices:write",
        ];
        let f = fixture(&env, &scopes).await;
        let client_id = device_client(&env).await;
        let server = Server::start(env.config()).await;
        let b = signed_in_browser(&server, &f.email).await;

        // Pair a device.
        let started = start(&server, &client_id).await;
        answer(&b, &server, started["user_code"].as_str().unwrap(), "allow").await;
        let (status, device_tokens) = poll(
            &server,
            &client_id,
            started["device_code"].as_str().unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        let device_at = device_tokens["access_token"].as_str().unwrap().to_owned();
        let device_rt = device_tokens["refresh_token"].as_str().unwrap().to_owned();

        // The user's own app gets a token for the devices API by the code flow.
        let api_scope = [("scope", "openid devices:read devices:write")];
        let tokens = crate::flow::code_flow_tokens(&b, &server, &f, &api_scope).await;
        let api_token = tokens["access_token"].as_str().unwrap().to_owned();
        let api = reqwest::Client::new();

        // Without a token, with a token lacking the scope, with the right one.
        let r = api.get(server.url("/api/devices")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = api
            .get(server.url("/api/devices"))
            .bearer_auth(&device_at)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.contains("insufficient_scope")
                && challenge.contains("scope=\"devices:read\""),
            "{challenge}"
        );
        let list: Value = api
            .get(server.url("/api/devices"))
            .bearer_auth(&api_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{list}");
        assert_eq!(items[0]["name"], "Stream Box");
        assert_eq!(items[0]["client_id"], client_id);
        assert!(list["next"].is_null());
        let id = items[0]["id"].as_str().unwrap().to_owned();

        // Rename; bad bodies are refused with a reason; an unknown id is 404.
        let patch = |body: Value, id: &str| {
            api.patch(server.url(&format!("/api/devices/{id}")))
                .bearer_auth(&api_token)
                .json(&body)
                .send()
        };
        let r = patch(json!({ "name": "Living room" }), &id).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["name"], "Living room");
        let r = patch(json!({ "name": "" }), &id).await.unwrap();
        assert_eq!(r.status(), 400);
        let r = patch(json!({ "client_id": "x" }), &id).await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("only name"));
        let r = patch(json!({ "name": "x" }), "no-such-device")
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        // Paging: a page of one.
        let page: Value = api
            .get(server.url("/api/devices?limit=1"))
            .bearer_auth(&api_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
        let r = api
            .get(server.url("/api/devices?limit=1000"))
            .bearer_auth(&api_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);

        // A refresh is a use of the device: when, and with what, show in the list.
        let created = items[0]["created_at"].as_i64().unwrap();
        server.clock.advance(120);
        let refreshed: Value = reqwest::Client::new()
            .post(server.url("/token"))
            .header("user-agent", "StreamBox/2.0")
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", client_id.as_str()),
                ("refresh_token", device_rt.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let device_rt = refreshed["refresh_token"].as_str().unwrap().to_owned();
        let list: Value = api
            .get(server.url("/api/devices"))
            .bearer_auth(&api_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["items"][0]["last_used_at"], created + 120, "{list}");
        assert_eq!(list["items"][0]["user_agent"], "StreamBox/2.0");

        // Another user sees none of it: their list is empty, the device id answers 404.
        env.cli(
            &[
                "user",
                "create",
                "--email",
                "eve@example.com",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        )
        .await
        .unwrap();
        let eve = browser();
        let url = crate::flow::authorize_url(&server, &f.client_id, &api_scope);
        let back = crate::flow::browser_flow(&eve, &server, &url, "eve@example.com").await;
        let code = crate::flow::query_param(&back, "code").unwrap();
        let eve_tokens: Value = crate::flow::redeem(&server, &f, &code)
            .await
            .json()
            .await
            .unwrap();
        let eve_token = eve_tokens["access_token"].as_str().unwrap();
        let eve_list: Value = api
            .get(server.url("/api/devices"))
            .bearer_auth(eve_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(eve_list["items"].as_array().unwrap().is_empty());
        for r in [
            api.delete(server.url(&format!("/api/devices/{id}")))
                .bearer_auth(eve_token)
                .send()
                .await
                .unwrap(),
            api.patch(server.url(&format!("/api/devices/{id}")))
                .bearer_auth(eve_token)
                .json(&json!({ "name": "mine now" }))
                .send()
                .await
                .unwrap(),
        ] {
            assert_eq!(r.status(), 404);
        }

        // Delete: the device's tokens stop at once.
        let r = api
            .delete(server.url(&format!("/api/devices/{id}")))
            .bearer_auth(&api_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let introspected =
            crate::flow::introspect_as(&server, &f.client_id, &f.client_secret, &device_at).await;
        assert_eq!(introspected["active"], false);
        let r = api
            .get(server.url("/userinfo"))
            .bearer_auth(&device_at)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "the device's access token is inactive");
        let r = reqwest::Client::new()
            .post(server.url("/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", client_id.as_str()),
                ("refresh_token", device_rt.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
        let list: Value = api
            .get(server.url("/api/devices"))
            .bearer_auth(&api_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(list["items"].as_array().unwrap().is_empty());
        let r = api
            .delete(server.url(&format!("/api/devices/{id}")))
            .bearer_auth(&api_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        server.stop().await;
    }
}
