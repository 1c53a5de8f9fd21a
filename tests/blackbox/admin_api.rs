//! The admin API (issue 16 item 2): every route answers an administrator's fresh token, and
//! refuses a token without the scope (403 insufficient_scope), a non-administrator's token
//! (403 access_denied) and, for writes, a sign-in older than 5 minutes (401
//! insufficient_user_authentication, RFC 9470). Every write is an audit event naming the
//! administrator.

use latchkey::testdb::TestDb;
use serde_json::{Value, json};

use crate::flow::{Fixture, REDIRECT, browser, code_flow_tokens, fixture};
use crate::harness::{Env, Server, http};

async fn cli(env: &Env, args: &[&str], stdin: &str) -> Value {
    serde_json::from_str(&env.cli(args, stdin).await.unwrap()).unwrap()
}

/// An access token for `email` through the console client, with `scope`, signed in now.
async fn token(server: &Server, console: &Fixture, email: &str, scope: &str) -> String {
    let f = Fixture {
        email: email.to_owned(),
        ..console.clone()
    };
    let t = code_flow_tokens(&browser(), server, &f, &[("scope", scope)]).await;
    t["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{t}"))
        .to_owned()
}

/// An administrator ([`crate::flow::create_root`]) and a console client that may
/// ask for the admin API's scopes (as `ada`'s fixture, with its own id and secret): the
/// administrator's id and the client.
async fn root_and_console(env: &Env, ada: &Fixture) -> (String, Fixture) {
    let root_id = crate::flow::create_root(env).await;
    let console_client = cli(
        env,
        &[
            "client",
            "create",
            "--name",
            "Console",
            "--redirect-uri",
            REDIRECT,
            "--scope",
            "openid",
            "--scope",
            "admin:read",
            "--scope",
            "admin:write",
        ],
        "",
    )
    .await;
    let console = Fixture {
        client_id: console_client["client_id"].as_str().unwrap().to_owned(),
        client_secret: console_client["client_secret"].as_str().unwrap().to_owned(),
        ..ada.clone()
    };
    (root_id, console)
}

async fn call(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let url = server.url(path);
    let mut req = match method {
        "GET" => http().get(url),
        "POST" => http().post(url),
        "PATCH" => http().patch(url),
        "DELETE" => http().delete(url),
        m => panic!("{m}"),
    }
    .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_admin_route_takes_a_fresh_administrator_and_refuses_everyone_else() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let ada = fixture(&env, &[]).await;
        let (root_id, console) = root_and_console(&env, &ada).await;
        let service = cli(
            &env,
            &[
                "client",
                "create",
                "--name",
                "Reporting",
                "--grant-type",
                "client_credentials",
                "--scope",
                "admin:read",
            ],
            "",
        )
        .await;
        let server = Server::start(env.config()).await;

        let old = token(
            &server,
            &console,
            "root@example.com",
            "openid admin:read admin:write",
        )
        .await;
        server.clock.advance(301);
        let admin = token(
            &server,
            &console,
            "root@example.com",
            "openid admin:read admin:write",
        )
        .await;
        let read_only = token(&server, &console, "root@example.com", "openid admin:read").await;
        let not_admin = token(
            &server,
            &console,
            &ada.email,
            "openid admin:read admin:write",
        )
        .await;
        // A session of Ada's to end, and her id.
        let ada_id = ada.user_id.clone();

        // Objects the writes act on, made as the table goes.
        let routes: Vec<(&str, String, Option<Value>, bool, u16)> = vec![
            (
                "GET",
                "/admin/api/users?search=ada".into(),
                None,
                false,
                200,
            ),
            (
                "GET",
                format!("/admin/api/users/{ada_id}"),
                None,
                false,
                200,
            ),
            ("GET", "/admin/api/clients".into(), None, false, 200),
            (
                "GET",
                format!("/admin/api/clients/{}", ada.client_id),
                None,
                false,
                200,
            ),
            ("GET", "/admin/api/keys".into(), None, false, 200),
            (
                "GET",
                format!("/admin/api/sessions?user={ada_id}"),
                None,
                false,
                200,
            ),
            (
                "GET",
                "/admin/api/audit-events?type=user.created".into(),
                None,
                false,
                200,
            ),
            (
                "POST",
                "/admin/api/users".into(),
                Some(json!({"email": "victim@example.com", "name": "Victim"})),
                true,
                201,
            ),
            (
                "POST",
                "/admin/api/clients".into(),
                Some(json!({"client_name": "Made", "redirect_uris": [REDIRECT]})),
                true,
                201,
            ),
            (
                "POST",
                "/admin/api/keys/rotate".into(),
                Some(json!({"alg": "ES256"})),
                true,
                201,
            ),
            (
                "POST",
                "/admin/api/registration-tokens".into(),
                Some(json!({"max_uses": 1})),
                true,
                201,
            ),
            (
                "POST",
                "/admin/api/invitations".into(),
                Some(json!({"email": "new@example.com"})),
                true,
                201,
            ),
            (
                "POST",
                format!("/admin/api/users/{ada_id}/password-reset"),
                None,
                true,
                202,
            ),
            (
                "POST",
                format!("/admin/api/users/{ada_id}/second-factor/reset"),
                None,
                true,
                200,
            ),
            (
                "POST",
                format!("/admin/api/users/{ada_id}/sessions/revoke"),
                None,
                true,
                200,
            ),
        ];
        let mut made = serde_json::Map::new();
        for (method, path, body, write, ok) in &routes {
            let (s, e) = call(&server, &read_only, method, path, body.as_ref()).await;
            if *write {
                assert_eq!(
                    (s, e["error"].as_str()),
                    (403, Some("insufficient_scope")),
                    "{method} {path} without admin:write"
                );
                let (s, e) = call(&server, &old, method, path, body.as_ref()).await;
                assert_eq!(
                    (s, e["error"].as_str()),
                    (401, Some("insufficient_user_authentication")),
                    "{method} {path} with an old sign-in"
                );
            } else {
                let (s, _) = call(&server, &old, method, path, body.as_ref()).await;
                assert_eq!(s, 200, "{method} {path}: reads take an older sign-in");
            }
            let (s, e) = call(&server, &not_admin, method, path, body.as_ref()).await;
            assert_eq!(
                (s, e["error"].as_str()),
                (403, Some("access_denied")),
                "{method} {path} by a non-administrator"
            );
            let (s, v) = call(&server, &admin, method, path, body.as_ref()).await;
            assert_eq!(s, *ok, "{method} {path}: {v}");
            made.insert(format!("{method} {path}"), v);
        }
        let victim = made["POST /admin/api/users"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let client = made["POST /admin/api/clients"]["client_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(made["POST /admin/api/clients"]["client_secret"].is_string());
        assert!(made["GET /admin/api/users?search=ada"]["items"][0]["email"] == ada.email.as_str());

        // A session of Ada's, then the writes on what was made.
        let _ada_browser = crate::flow::signed_in_browser(&server, &ada.email).await;
        let (_, sessions) = call(
            &server,
            &admin,
            "GET",
            &format!("/admin/api/sessions?user={ada_id}"),
            None,
        )
        .await;
        let sid = sessions["items"][0]["sid"].as_str().unwrap().to_owned();
        let more: Vec<(&str, String, Option<Value>, u16)> = vec![
            (
                "PATCH",
                format!("/admin/api/users/{victim}"),
                Some(json!({"admin": true, "disabled": true})),
                200,
            ),
            (
                "PATCH",
                format!("/admin/api/clients/{client}"),
                Some(json!({"client_name": "Renamed"})),
                200,
            ),
            (
                "POST",
                format!("/admin/api/clients/{client}/rotate-secret"),
                Some(json!({"grace_seconds": 60})),
                200,
            ),
            ("DELETE", format!("/admin/api/sessions/{sid}"), None, 204),
            ("DELETE", format!("/admin/api/clients/{client}"), None, 204),
            ("DELETE", format!("/admin/api/users/{victim}"), None, 204),
        ];
        for (method, path, body, ok) in &more {
            let (s, _) = call(&server, &read_only, method, path, body.as_ref()).await;
            assert_eq!(s, 403, "{method} {path} without admin:write");
            let (s, _) = call(&server, &old, method, path, body.as_ref()).await;
            assert_eq!(s, 401, "{method} {path} with an old sign-in");
            let (s, _) = call(&server, &not_admin, method, path, body.as_ref()).await;
            assert_eq!(s, 403, "{method} {path} by a non-administrator");
            let (s, v) = call(&server, &admin, method, path, body.as_ref()).await;
            assert_eq!(s, *ok, "{method} {path}: {v}");
        }
        let (s, _) = call(
            &server,
            &admin,
            "GET",
            &format!("/admin/api/users/{victim}"),
            None,
        )
        .await;
        assert_eq!(s, 404, "deleted");
        let (s, e) = call(
            &server,
            &admin,
            "PATCH",
            &format!("/admin/api/users/{ada_id}"),
            Some(&json!({"email": "x@example.com"})),
        )
        .await;
        assert_eq!((s, e["error"].as_str()), (400, Some("invalid_request")));

        // A client given admin:read reads as itself.
        let (status, t) = {
            let r = http()
                .post(server.url("/token"))
                .header(
                    "authorization",
                    crate::flow::basic(
                        service["client_id"].as_str().unwrap(),
                        service["client_secret"].as_str().unwrap(),
                    ),
                )
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        };
        assert_eq!(status, 200, "{t}");
        let (s, _) = call(
            &server,
            t["access_token"].as_str().unwrap(),
            "GET",
            "/admin/api/users",
            None,
        )
        .await;
        assert_eq!(s, 200);

        // Every write is in the audit log, by the administrator.
        let (_, events) = call(
            &server,
            &admin,
            "GET",
            "/admin/api/audit-events?limit=1000",
            None,
        )
        .await;
        let by_admin: Vec<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["actor"] == format!("admin:{root_id}").as_str())
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        for kind in [
            "user.created",
            "client.created",
            "key.rotated",
            "registration_token.created",
            "invitation.created",
            "password.reset_sent",
            "second_factor.reset",
            "session.ended",
            "user.updated",
            "user.disabled",
            "client.updated",
            "client.secret_rotated",
            "client.deleted",
            "user.deleted",
        ] {
            assert!(by_admin.contains(&kind), "{kind} not audited: {by_admin:?}");
        }
        let dump = events.to_string();
        for secret in [
            made["POST /admin/api/clients"]["client_secret"]
                .as_str()
                .unwrap(),
            made["POST /admin/api/registration-tokens"]["initial_access_token"]
                .as_str()
                .unwrap(),
        ] {
            assert!(!dump.contains(secret));
        }
        server.stop().await;
    }
}

/// API keys and service accounts through the admin API (issue 17 item 2): an administrator
/// makes a service account and a key for it, lists and revokes a user's keys; the admin API's
/// own scopes never go on a key made for someone else.
#[tokio::test]
async fn administrators_make_service_accounts_and_keys_through_the_admin_api() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let ada = fixture(&env, &[]).await;
        let (_, console) = root_and_console(&env, &ada).await;
        let server = Server::start(env.config()).await;
        let admin = token(
            &server,
            &console,
            "root@example.com",
            "openid admin:read admin:write",
        )
        .await;

        let (s, sa) = call(
            &server,
            &admin,
            "POST",
            "/admin/api/service-accounts",
            Some(&json!({"name": "deploy bot"})),
        )
        .await;
        assert_eq!(s, 201, "{sa}");
        let sa_id = sa["id"].as_str().unwrap().to_owned();
        let (s, k) = call(
            &server,
            &admin,
            "POST",
            &format!("/admin/api/users/{sa_id}/api-keys"),
            Some(&json!({"name": "deploy", "scope": "devices:read", "expires_in": 3600})),
        )
        .await;
        assert_eq!(s, 201, "{k}");
        let key = k["key"].as_str().unwrap().to_owned();
        let devices = |key: String| {
            let url = server.url("/api/devices");
            async move {
                http()
                    .get(url)
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(devices(key.clone()).await, 200);

        // No admin API scope on a key made for someone else.
        let (s, e) = call(
            &server,
            &admin,
            "POST",
            &format!("/admin/api/users/{}/api-keys", ada.user_id),
            Some(&json!({"name": "x", "scope": "admin:read"})),
        )
        .await;
        assert_eq!(s, 400, "{e}");
        let (s, k) = call(
            &server,
            &admin,
            "POST",
            &format!("/admin/api/users/{}/api-keys", ada.user_id),
            Some(&json!({"name": "ada's", "scope": "devices:read"})),
        )
        .await;
        assert_eq!(s, 201, "{k}");
        let ada_key = k["key"].as_str().unwrap().to_owned();
        let ada_key_id = k["id"].as_str().unwrap().to_owned();
        let (s, list) = call(
            &server,
            &admin,
            "GET",
            &format!("/admin/api/users/{}/api-keys", ada.user_id),
            None,
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(list["items"][0]["id"], ada_key_id.as_str());
        assert!(
            !list.to_string().contains(&ada_key[20..]),
            "no secret listed"
        );
        let (s, _) = call(
            &server,
            &admin,
            "DELETE",
            &format!("/admin/api/users/{}/api-keys/{ada_key_id}", ada.user_id),
            None,
        )
        .await;
        assert_eq!(s, 204);
        assert_eq!(devices(ada_key).await, 401);
        assert_eq!(
            server.audited("api_key.revoked", Some(&ada.user_id)).await,
            1
        );

        // An administrator's own key with admin:write (made by the operator) writes through
        // the admin API with no sign-in behind it; with only admin:read it cannot.
        let out = cli(
            &env,
            &[
                "api-key",
                "create",
                "--email",
                "root@example.com",
                "--name",
                "automation",
                "--scope",
                "admin:read admin:write",
            ],
            "",
        )
        .await;
        let admin_key = out["key"].as_str().unwrap().to_owned();
        let (s, sa) = call(
            &server,
            &admin_key,
            "POST",
            "/admin/api/service-accounts",
            Some(&json!({"name": "ci bot"})),
        )
        .await;
        assert_eq!(s, 201, "{sa}");
        let out = cli(
            &env,
            &[
                "api-key",
                "create",
                "--email",
                "root@example.com",
                "--name",
                "reader",
                "--scope",
                "admin:read",
            ],
            "",
        )
        .await;
        let reader = out["key"].as_str().unwrap().to_owned();
        let (s, _) = call(&server, &reader, "GET", "/admin/api/users", None).await;
        assert_eq!(s, 200);
        let (s, _) = call(
            &server,
            &reader,
            "POST",
            "/admin/api/service-accounts",
            Some(&json!({"name": "nope"})),
        )
        .await;
        assert_eq!(s, 403);
        server.stop().await;
    }
}
