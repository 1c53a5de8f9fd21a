//! The streams API: stream destinations created and listed with the key masked, the key
//! sealed in the database, a reveal that needs a sign-in within 5 minutes (else the RFC 9470
//! challenge), the internal read for a service with `streams:internal` only, and the audit
//! log of both.

use latchkey::testdb::TestDb;
use serde_json::{Value, json};

use crate::flow::{basic, fixture, signed_in_browser};
use crate::harness::{Env, Server};

const KEY: &str = "live_123456789_secretABCD";

/// An access token for `scope` by the code flow, with extra authorization parameters.
async fn user_token(
    b: &reqwest::Client,
    server: &Server,
    f: &crate::flow::Fixture,
    scope: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut params = vec![("scope", scope)];
    params.extend_from_slice(extra);
    let tokens = crate::flow::code_flow_tokens(b, server, f, &params).await;
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// A client_credentials token of a new service client allowed `scope`.
async fn service_token(env: &Env, server: &Server, scope: &str) -> String {
    let out = env
        .cli(
            &[
                "client",
                "create",
                "--name",
                "Relay",
                "--grant-type",
                "client_credentials",
                "--scope",
                scope,
            ],
            "",
        )
        .await
        .unwrap();
    let c: Value = serde_json::from_str(&out).unwrap();
    let r: Value = reqwest::Client::new()
        .post(server.url("/token"))
        .header(
            "authorization",
            basic(
                c["client_id"].as_str().unwrap(),
                c["client_secret"].as_str().unwrap(),
            ),
        )
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn stream_keys_are_sealed_masked_revealed_after_a_fresh_sign_in_and_audited() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let mut args = vec![];
        for s in [
            "openid",
            "profile",
            "email",
            "offline_access",
            "streams:read",
            "streams:write",
            "streams:reveal",
        ] {
            args.extend_from_slice(&["--scope", s]);
        }
        // The app also acts for its user by RFC 8693 delegation (see the audit below).
        for g in [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ] {
            args.extend_from_slice(&["--grant-type", g]);
        }
        let f = fixture(&env, &args).await;
        let server = Server::start(env.config()).await;
        let b = signed_in_browser(&server, &f.email).await;
        let token = user_token(
            &b,
            &server,
            &f,
            "openid streams:read streams:write streams:reveal",
            &[],
        )
        .await;
        let api = reqwest::Client::new();

        // Create: 201, the key masked to its last four characters.
        let r = api
            .post(server.url("/api/streams"))
            .bearer_auth(&token)
            .json(&json!({
                "label": "Main channel", "platform": "twitch",
                "rtmp_url": "rtmps://live.twitch.tv/app", "stream_key": KEY
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        assert_eq!(created["stream_key_last4"], "ABCD");
        assert!(created.get("stream_key").is_none());
        let id = created["id"].as_str().unwrap().to_owned();
        // Bad bodies say why.
        let r = api
            .post(server.url("/api/streams"))
            .bearer_auth(&token)
            .json(&json!({ "label": "x", "platform": "myspace", "rtmp_url": "rtmp://a.b/x", "stream_key": "k" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("platform"));

        // Listed masked; the database holds no key in clear.
        let list: Value = api
            .get(server.url("/api/streams"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["items"][0]["stream_key_last4"], "ABCD");
        assert!(!list.to_string().contains(KEY));
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&env.config().database_url())
            .await
            .unwrap();
        let rows: Vec<(String, String, Vec<u8>)> =
            sqlx::query_as("SELECT label, rtmp_url, key_sealed FROM streams")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(rows.len(), 1);
        assert!(
            !rows[0].2.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "sealed at rest"
        );
        assert!(!rows[0].2.windows(4).any(|w| w == b"ABCD"));

        // An update without a key keeps it.
        let r = api
            .put(server.url(&format!("/api/streams/{id}")))
            .bearer_auth(&token)
            .json(&json!({ "label": "Renamed", "platform": "twitch", "rtmp_url": "rtmps://live.twitch.tv/app", "enabled": false }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let updated: Value = r.json().await.unwrap();
        assert_eq!(
            (
                updated["label"].as_str(),
                updated["stream_key_last4"].as_str()
            ),
            (Some("Renamed"), Some("ABCD"))
        );
        assert_eq!(updated["enabled"], false);

        // Reveal: fine right after signing in; six minutes later the RFC 9470 challenge.
        let reveal = |t: &str| {
            api.post(server.url(&format!("/api/streams/{id}/reveal")))
                .bearer_auth(t.to_owned())
                .send()
        };
        let r = reveal(&token).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["stream_key"], KEY);
        server.clock.advance(6 * 60);
        let r = reveal(&token).await.unwrap();
        assert_eq!(r.status(), 401);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.contains("error=\"insufficient_user_authentication\""),
            "{challenge}"
        );
        assert!(challenge.contains("max_age=\"300\""), "{challenge}");
        // After a fresh sign-in (max_age=300 asks for one), it works again.
        let fresh = user_token(
            &b,
            &server,
            &f,
            "openid streams:reveal",
            &[("max_age", "300")],
        )
        .await;
        let r = reveal(&fresh).await.unwrap();
        assert_eq!(r.status(), 200);
        // A token without the scope cannot.
        let read_only = user_token(&b, &server, &f, "openid streams:read", &[]).await;
        let r = reveal(&read_only).await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("scope=\"streams:reveal\"")
        );

        // The internal read: only a client's own token with streams:internal.
        let internal = |t: String| {
            api.get(server.url(&format!("/api/internal/users/{}/streams", f.user_id)))
                .bearer_auth(t)
                .send()
        };
        let service = service_token(&env, &server, "streams:internal").await;
        let r = internal(service).await.unwrap();
        assert_eq!(r.status(), 200);
        let got: Value = r.json().await.unwrap();
        assert_eq!(got["items"][0]["stream_key"], KEY);
        let other_service = service_token(&env, &server, "streams:read").await;
        assert_eq!(internal(other_service).await.unwrap().status(), 403);
        assert_eq!(internal(fresh.clone()).await.unwrap().status(), 403);

        // A reveal by a service acting for the user (a delegated token) records the `act`.
        server.clock.advance(1);
        let token_call = |form: Vec<(&'static str, String)>| {
            api.post(server.url("/token"))
                .header("authorization", basic(&f.client_id, &f.client_secret))
                .form(&form)
                .send()
        };
        let own: Value = token_call(vec![("grant_type", "client_credentials".into())])
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
        let delegated: Value = token_call(vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".into(),
            ),
            ("subject_token", fresh.clone()),
            ("subject_token_type", AT.into()),
            ("actor_token", own["access_token"].as_str().unwrap().into()),
            ("actor_token_type", AT.into()),
            ("scope", "streams:reveal".into()),
        ])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let delegated = delegated["access_token"]
            .as_str()
            .expect("a delegated token");
        let r = reveal(delegated).await.unwrap();
        assert_eq!(r.status(), 200);

        // Three reveals and one internal read are in the audit log, with who and what.
        let audit: Vec<(String, String, String)> =
            sqlx::query_as("SELECT actor, type, details FROM audit_events WHERE type LIKE 'stream%' ORDER BY at, id")
                .fetch_all(&pool)
                .await
                .unwrap();
        let actions: Vec<&str> = audit.iter().map(|a| a.1.as_str()).collect();
        let mut sorted = actions.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [
                "stream_key.revealed",
                "stream_key.revealed",
                "stream_key.revealed",
                "streams.internal_read",
            ]
        );
        let details: Vec<Value> = audit
            .iter()
            .map(|a| serde_json::from_str(&a.2).unwrap())
            .collect();
        let reveals: Vec<usize> = (0..audit.len())
            .filter(|i| audit[*i].1 == "stream_key.revealed")
            .collect();
        let first = reveals[0];
        assert_eq!(audit[first].0, format!("user:{}", f.user_id));
        assert_eq!(details[first]["target"], id.as_str());
        assert!(
            reveals.iter().any(|i| details[*i]["act"].is_null()),
            "the user's own reveal names no actor"
        );
        let internal = (0..audit.len())
            .find(|i| audit[*i].1 == "streams.internal_read")
            .unwrap();
        assert!(audit[internal].0.starts_with("client:"));
        assert!(
            reveals
                .iter()
                .any(|i| details[*i]["act"] == json!({ "sub": f.client_id })),
            "the delegated reveal names its actor: {details:?}"
        );
        pool.close().await;

        // Delete.
        let r = api
            .delete(server.url(&format!("/api/streams/{id}")))
            .bearer_auth(&fresh)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "the fresh token lacks streams:write");
        let r = api
            .delete(server.url(&format!("/api/streams/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = api
            .get(server.url(&format!("/api/streams/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        server.stop().await;
    }
}

/// The OpenAPI document of the resource APIs is served, with this server as its server.
#[tokio::test]
async fn the_openapi_document_describes_the_apis() {
    let env = Env::new(TestDb::sqlite(), "");
    let server = Server::start(env.config()).await;
    let doc = crate::harness::get_json(&server.url("/api/openapi.json")).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "http://localhost:8080");
    for path in [
        "/api/devices",
        "/api/devices/{id}",
        "/api/streams",
        "/api/streams/{id}",
        "/api/streams/{id}/reveal",
        "/api/internal/users/{id}/streams",
        "/admin/api/users/{id}/api-keys",
        "/admin/api/users/{id}/api-keys/{key}",
        "/admin/api/service-accounts",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
    server.stop().await;
}

/// RFC 9728 for our own APIs: each has a metadata document naming us as its authorization
/// server; its refusals point at it (`resource_metadata`); a token asked for one API with RFC
/// 8707 `resource` has that `aud` and is taken by that API only.
#[tokio::test]
async fn our_apis_are_protected_resources_and_a_token_for_one_is_refused_by_the_other() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let mut args = vec![];
        for s in ["openid", "devices:read", "streams:read"] {
            args.extend_from_slice(&["--scope", s]);
        }
        let f = fixture(&env, &args).await;
        let server = Server::start(env.config()).await;
        let issuer = server.state.config.issuer.clone();
        let devices = format!("{issuer}/api/devices");
        let streams = format!("{issuer}/api/streams");

        for (path, resource, scope) in [
            ("/api/devices", &devices, "devices:read"),
            ("/api/streams", &streams, "streams:read"),
        ] {
            let doc = crate::harness::get_json(
                &server.url(&format!("/.well-known/oauth-protected-resource{path}")),
            )
            .await;
            assert_eq!(doc["resource"], resource.as_str());
            assert_eq!(doc["authorization_servers"], json!([issuer]));
            assert!(
                doc["scopes_supported"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(scope))
            );
            // A request without a token is told where that document is.
            let r = reqwest::Client::new()
                .get(server.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
            let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(
                challenge.starts_with("Bearer ")
                    && challenge.contains(&format!(
                        "resource_metadata=\"{issuer}/.well-known/oauth-protected-resource{path}\""
                    )),
                "{challenge}"
            );
        }
        let r = reqwest::Client::new()
            .get(server.url("/.well-known/oauth-protected-resource/api/other"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        // A token for the devices API: aud is that API; it works there, not at the streams API
        // (which also says where to look) nor at userinfo.
        let b = crate::flow::browser();
        let back = crate::flow::browser_flow(
            &b,
            &server,
            &crate::flow::authorize_url(
                &server,
                &f.client_id,
                &[("scope", "openid devices:read streams:read")],
            ),
            &f.email,
        )
        .await;
        let code = crate::flow::query_param(&back, "code").unwrap();
        let t: Value = crate::flow::token_request(
            &server,
            &f,
            &[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", crate::flow::REDIRECT),
                ("code_verifier", crate::flow::VERIFIER),
                ("resource", devices.as_str()),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
        let token = t["access_token"].as_str().unwrap().to_owned();
        assert_eq!(crate::flow::claims(&token)["aud"], devices.as_str());
        let api = reqwest::Client::new();
        let r = api
            .get(server.url("/api/devices"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = api
            .get(server.url("/api/streams"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("invalid_token") && challenge.contains("resource_metadata"));
        let r = api
            .get(server.url("/userinfo"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        server.stop().await;
    }
}
