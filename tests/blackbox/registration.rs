//! Dynamic client registration (RFC 7591) with initial access tokens, and client
//! configuration (RFC 7592) with the registration access token.

use latchkey::testdb::TestDb;
use serde_json::{Value, json};

use crate::flow::{REDIRECT, authorize_url, browser};
use crate::harness::{Env, Server, get_json, http};

async fn register(server: &Server, iat: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = http().post(server.url("/register")).json(body);
    if let Some(t) = iat {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn registration_needs_an_initial_access_token_which_can_be_used_up() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let out = env
            .cli(
                &[
                    "registration-token",
                    "create",
                    "--max-uses",
                    "1",
                    "--expires-in",
                    "1h",
                ],
                "",
            )
            .await
            .unwrap();
        let iat = serde_json::from_str::<Value>(&out).unwrap()["initial_access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let server = Server::start(env.config()).await;
        let meta = get_json(&server.url("/.well-known/openid-configuration")).await;
        assert_eq!(
            meta["registration_endpoint"],
            format!("{}/register", server.state.config.issuer)
        );

        let body = json!({
            "redirect_uris": [REDIRECT],
            "client_name": "Shop",
            "logo_uri": "https://rp.example.com/logo.png",
            "policy_uri": "https://rp.example.com/privacy",
            "tos_uri": "https://rp.example.com/tos",
            "scope": "openid profile email",
            "unknown_metadata": "is ignored"
        });
        let r = register(&server, None, &body).await;
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );

        // Malformed requests are refused without spending the single use.
        for bad in [
            json!({"redirect_uris": ["https://rp.example.com/cb#frag"]}),
            json!({"client_name": "no redirect"}),
        ] {
            let r = register(&server, Some(&iat), &bad).await;
            assert_eq!(r.status(), 400, "{:?}: {bad}", server.state.store.backend());
        }
        let r = http()
            .post(server.url("/register"))
            .bearer_auth(&iat)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);

        let r = register(&server, Some(&iat), &body).await;
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let c: Value = r.json().await.unwrap();
        assert_eq!(c["client_name"], "Shop");
        assert_eq!(c["token_endpoint_auth_method"], "client_secret_basic");
        assert!(c["client_secret"].as_str().unwrap().len() >= 43);
        assert!(c.get("unknown_metadata").is_none());
        let client_id = c["client_id"].as_str().unwrap();
        assert_eq!(
            c["registration_client_uri"],
            format!("{}/register/{client_id}", server.state.config.issuer)
        );

        // Used up.
        let r = register(&server, Some(&iat), &body).await;
        assert_eq!(r.status(), 401);

        // The consent page shows the registered name, logo and links.
        let b = browser();
        let html = b
            .get(authorize_url(&server, client_id, &[]))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("Shop"));
        let page = crate::flow::sign_in(&b, &server, &html, "nobody@example.com", "x").await;
        assert_eq!(page.status(), 401);
        server.stop().await;
    }
}

#[tokio::test]
async fn invalid_metadata_gets_the_rfc7591_error_codes() {
    let env = Env::new(TestDb::sqlite(), "[registration]\npolicy = \"open\"");
    let server = Server::start(env.config()).await;
    for (body, code) in [
        (
            json!({"redirect_uris": ["https://rp.example.com/cb#frag"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["http://rp.example.com/cb"]}),
            "invalid_redirect_uri",
        ),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": [REDIRECT], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "tls_client_auth"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": "not a list"}),
            "invalid_client_metadata",
        ),
    ] {
        let r = register(&server, None, &body).await;
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], code, "{body}");
    }
    // A public client gets no secret.
    let r = register(
        &server,
        None,
        &json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let c: Value = r.json().await.unwrap();
    assert!(c.get("client_secret").is_none());

    // Open registration: one address may make 20 requests in each clock hour (8 so far); a
    // burst of 20 at once gets exactly 12 through, the rest 429 until the next hour.
    let public =
        json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"});
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let req = http().post(server.url("/register")).json(&public);
        burst.spawn(async move { req.send().await.unwrap() });
    }
    let answers = burst.join_all().await;
    let created = answers.iter().filter(|r| r.status() == 201).count();
    let refused: Vec<_> = answers.iter().filter(|r| r.status() == 429).collect();
    assert_eq!((created, refused.len()), (12, 8));
    let wait: i64 = refused[0].headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
    assert_eq!(register(&server, None, &public).await.status(), 429);
    server.clock.advance(wait);
    assert_eq!(register(&server, None, &public).await.status(), 201);
    server.stop().await;
}

#[tokio::test]
async fn rfc7592_read_update_delete_with_the_registration_access_token() {
    for db in TestDb::all().await {
        rfc7592_read_update_delete(db).await;
    }
}

/// RFC 7592 §3 / OIDC Registration §3.2: every read and update answers the client's
/// `registration_client_uri` and a new `registration_access_token` (only digests are stored,
/// so the one in use cannot be answered again); the token it replaces stops working at once.
async fn rfc7592_read_update_delete(db: TestDb) {
    let env = Env::new(
        db,
        "[registration]\npolicy = \"open\"\n[tokens]\nresources = [\"https://api.example.com\"]",
    );
    let server = Server::start(env.config()).await;
    let c: Value = register(
        &server,
        None,
        &json!({"redirect_uris": [REDIRECT], "client_name": "Before"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let registered_uri = c["registration_client_uri"].as_str().unwrap().to_owned();
    let uri = registered_uri.replace(server.state.config.issuer.as_str(), &server.base);
    let first = c["registration_access_token"].as_str().unwrap().to_owned();
    let client_id = c["client_id"].as_str().unwrap();

    let r = http().get(&uri).bearer_auth(&first).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let read: Value = r.json().await.unwrap();
    assert_eq!(read["client_name"], "Before");
    assert!(read.get("client_secret").is_none());
    assert_eq!(read["registration_client_uri"], registered_uri.as_str());
    let second = read["registration_access_token"]
        .as_str()
        .expect("the read answer carries a registration_access_token")
        .to_owned();
    assert_ne!(second, first, "a new token replaces the one used");
    let status = |r: reqwest::Response| r.status();
    assert_eq!(
        status(http().get(&uri).bearer_auth(&first).send().await.unwrap()),
        401,
        "the replaced token stops working"
    );
    assert_eq!(
        status(http().get(&uri).bearer_auth("wrong").send().await.unwrap()),
        401
    );

    // An administrator gives the client a resource server; the client's own update keeps it.
    env.cli(
        &[
            "client",
            "set-resources",
            client_id,
            "--resource",
            "https://api.example.com",
        ],
        "",
    )
    .await
    .unwrap();
    let r = http()
        .put(&uri)
        .bearer_auth(&second)
        .json(&json!({"client_id": client_id, "redirect_uris": [REDIRECT], "client_name": "After", "resources": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let updated: Value = r.json().await.unwrap();
    assert_eq!(updated["client_name"], "After");
    assert_eq!(updated["resources"], json!(["https://api.example.com"]));
    assert_eq!(updated["registration_client_uri"], registered_uri.as_str());
    let third = updated["registration_access_token"]
        .as_str()
        .expect("the update answer carries a registration_access_token")
        .to_owned();
    assert_ne!(third, second);
    assert_eq!(
        status(http().get(&uri).bearer_auth(&second).send().await.unwrap()),
        401
    );
    // set-resources names a client that exists.
    let e = env
        .cli(&["client", "set-resources", "no-such-client"], "")
        .await
        .unwrap_err();
    assert!(e.contains("no client"), "{e}");
    // A refused update keeps the token it was sent with.
    let r = http()
        .put(&uri)
        .bearer_auth(&third)
        .json(&json!({"client_id": "someone-else", "redirect_uris": [REDIRECT]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    assert_eq!(
        status(
            http()
                .delete(&uri)
                .bearer_auth(&third)
                .send()
                .await
                .unwrap()
        ),
        204
    );
    assert_eq!(
        status(http().get(&uri).bearer_auth(&third).send().await.unwrap()),
        401
    );
    let r = browser()
        .get(authorize_url(&server, client_id, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a deleted client is unknown");
    server.stop().await;
}

#[tokio::test]
async fn closed_registration_is_not_advertised_and_not_served() {
    let env = Env::new(TestDb::sqlite(), "[registration]\npolicy = \"closed\"");
    let server = Server::start(env.config()).await;
    let meta = get_json(&server.url("/.well-known/openid-configuration")).await;
    assert!(meta.get("registration_endpoint").is_none());
    let r = register(&server, None, &json!({"redirect_uris": [REDIRECT]})).await;
    assert_eq!(r.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn a_client_deleted_on_one_instance_is_refused_by_another_within_the_cache_ttl() {
    let env = Env::new(TestDb::sqlite(), "[registration]\npolicy = \"open\"");
    let a = Server::start(env.config()).await;
    let b = Server::start(env.config()).await;
    let c: Value = register(&a, None, &json!({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"], "response_types": []}))
        .await
        .json()
        .await
        .unwrap();
    let (id, secret) = (
        c["client_id"].as_str().unwrap(),
        c["client_secret"].as_str().unwrap(),
    );
    let cc = |server: &Server| {
        http()
            .post(server.url("/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    assert_eq!(cc(&b).await.unwrap().status(), 200, "b has read the client");
    let uri = c["registration_client_uri"]
        .as_str()
        .unwrap()
        .replace(a.state.config.issuer.as_str(), &a.base);
    let rat = c["registration_access_token"].as_str().unwrap();
    assert_eq!(
        http()
            .delete(&uri)
            .bearer_auth(rat)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        cc(&a).await.unwrap().status(),
        401,
        "gone at once where it was deleted"
    );
    b.clock.advance(6);
    assert_eq!(
        cc(&b).await.unwrap().status(),
        401,
        "gone elsewhere after clients.cache_ttl"
    );
    a.stop().await;
    b.stop().await;
}

/// A relying party that registers no `scope` (most OIDC libraries send none) may ask for the
/// standard OIDC scopes, and gets the email claims it asks for.
#[tokio::test]
async fn registration_without_scope_allows_the_standard_oidc_scopes() {
    for db in TestDb::all().await {
        let env = Env::new(db, "[registration]\npolicy = \"open\"");
        let f = crate::flow::fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let c: Value = register(
            &server,
            None,
            &json!({"redirect_uris": [REDIRECT], "client_name": "Plain RP"}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(c["scope"], "openid profile email", "{c}");
        let rp = crate::flow::Fixture {
            client_id: c["client_id"].as_str().unwrap().to_owned(),
            client_secret: c["client_secret"].as_str().unwrap().to_owned(),
            ..f.clone()
        };
        let b = browser();
        let tokens =
            crate::flow::code_flow_tokens(&b, &server, &rp, &[("scope", "openid email")]).await;
        assert_eq!(tokens["scope"], "openid email", "{tokens}");
        let info: Value = http()
            .get(server.url("/userinfo"))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["email"], f.email.as_str(), "{info}");

        // One that names its scope gets exactly that.
        let narrow: Value = register(
            &server,
            None,
            &json!({"redirect_uris": [REDIRECT], "scope": "openid"}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(narrow["scope"], "openid");
        server.stop().await;
    }
}

/// `registration.policy = "open-public"`: anyone may register a public client of the code
/// flow with https or loopback redirect URIs, and nothing more; the consent page says nobody
/// checked it, and it cannot update itself out of those bounds.
#[tokio::test]
async fn open_public_registration_takes_public_code_flow_clients_only() {
    for db in TestDb::all().await {
        let env = Env::new(db, "[registration]\npolicy = \"open-public\"");
        let f = crate::flow::fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let refused = |body: Value, code: &'static str| {
            let server = &server;
            async move {
                let r = register(server, None, &body).await;
                assert_eq!(r.status(), 400, "{body}");
                let e: Value = r.json().await.unwrap();
                assert_eq!(e["error"], code, "{e}");
                e["error_description"].as_str().unwrap().to_owned()
            }
        };
        let why = refused(
            json!({"redirect_uris": [REDIRECT]}),
            "invalid_client_metadata",
        )
        .await;
        assert!(why.contains("public clients only"), "{why}");
        refused(
            json!({"redirect_uris": ["com.example.app:/cb"], "token_endpoint_auth_method": "none"}),
            "invalid_redirect_uri",
        )
        .await;
        refused(
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            "invalid_client_metadata",
        )
        .await;

        let r = register(
            &server,
            None,
            &json!({
                "client_name": "Some Agent",
                "redirect_uris": [REDIRECT, "http://127.0.0.1:33418/callback"],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
            }),
        )
        .await;
        assert_eq!(r.status(), 201);
        let c: Value = r.json().await.unwrap();
        assert!(c.get("client_secret").is_none(), "{c}");
        let client_id = c["client_id"].as_str().unwrap();

        let (consent, back) = crate::cimd::consent_and_allow(
            &browser(),
            &server,
            &authorize_url(&server, client_id, &[]),
            &f.email,
        )
        .await;
        assert!(consent.contains("Unverified application"), "{consent}");
        assert!(consent.contains("It registered itself"), "{consent}");
        assert!(consent.contains("rp.example.com"), "{consent}");
        assert!(back.starts_with(REDIRECT), "{back}");

        // RFC 7592: it cannot update itself out of open_public's bounds, even once the
        // policy has changed (a custom scheme and the device grant are fine for others).
        server.stop().await;
        let mut config = env.config();
        config.registration.policy = latchkey::config::RegistrationPolicy::InitialAccessToken;
        let server = Server::start(config).await;
        let update = |body: Value| {
            let (server, client_id) = (&server, client_id.to_owned());
            let token = c["registration_access_token"].as_str().unwrap().to_owned();
            async move {
                let mut body = body;
                body["client_id"] = json!(client_id);
                let r = http()
                    .put(server.url(&format!("/register/{client_id}")))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
        let (status, e) = update(json!({
            "redirect_uris": ["com.example.app:/cb"],
            "token_endpoint_auth_method": "none",
        }))
        .await;
        assert_eq!(
            (status, e["error"].as_str()),
            (400, Some("invalid_redirect_uri")),
            "{e}"
        );
        let (status, e) = update(json!({
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
        }))
        .await;
        assert_eq!(
            (status, e["error"].as_str()),
            (400, Some("invalid_client_metadata")),
            "{e}"
        );
        server.stop().await;
    }
}
