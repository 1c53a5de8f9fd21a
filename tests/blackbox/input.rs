//! Input that is not text: an encoded NUL (which PostgreSQL text cannot hold) or bytes that
//! are not UTF-8, in form fields, queries, paths and JSON bodies. Every endpoint refuses it
//! with its own 400 (JSON for the protocol and API endpoints, an HTML page for pages) and
//! nothing reaches the database: never a 500, and never a value read with U+FFFD in it.

use latchkey::testdb::TestDb;

use crate::flow::{
    PASSWORD, REDIRECT, basic, browser, code_flow_tokens, fixture, input_value, signed_in_browser,
};
use crate::harness::{Env, Server, http};

/// A form POST with a raw (already encoded) body.
async fn post_raw(c: &reqwest::Client, url: String, body: &str) -> reqwest::Response {
    c.post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[track_caller]
fn assert_json_400(status: u16, body: &str, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert!(body.contains("\"invalid_request\""), "{what}: {body}");
}

#[tokio::test]
async fn nul_bytes_and_invalid_utf8_are_refused_with_each_endpoints_400_on_both_backends() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let scopes = [
            "--scope",
            "openid",
            "--scope",
            "email",
            "--scope",
            "devices:read",
            "--scope",
            "streams:read",
        ];
        let f = fixture(&env, &scopes).await;
        let server = Server::start(env.config()).await;
        let label = format!("{:?}", server.state.store.backend());
        let h = http();
        let auth = basic(&f.client_id, &f.client_secret);

        // Protocol endpoints: RFC 6749 JSON.
        for (path, body) in [
            ("/token", "grant_type=client_credentials&client_id=a%00b"),
            ("/token", "grant_type=authorization_code&code=%FF%FE"),
            ("/introspect", "token=x&client_id=%00"),
            ("/revoke", "token=x&client_id=%00"),
            ("/device_authorization", "client_id=c%00"),
        ] {
            let r = post_raw(&h, server.url(path), body).await;
            let status = r.status().as_u16();
            assert_json_400(status, &r.text().await.unwrap(), &format!("{label} {path}"));
        }
        // Authenticated, with the NUL elsewhere in the body.
        let r = h
            .post(server.url("/token"))
            .header("authorization", &auth)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=refresh_token&refresh_token=a%00")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_json_400(status, &r.text().await.unwrap(), &label);

        // /authorize, /logout: an HTML page, not a redirect.
        for url in [
            format!(
                "/authorize?client_id=%00&response_type=code&redirect_uri={}",
                url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
            ),
            "/authorize?client_id=ab%FF".to_owned(),
            "/logout?client_id=%00".to_owned(),
        ] {
            let r = h.get(server.url(&url)).send().await.unwrap();
            assert_eq!(r.status(), 400, "{label} {url}");
            assert!(r.headers().get("location").is_none());
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html"),
                "{label} {url}"
            );
        }

        // Paths: /register/{id}, /api/streams/{id}, /api/devices/{id} (JSON), /account/...
        // (a page).
        for path in ["/register/a%00b", "/api/streams/%00", "/api/devices/%FF"] {
            let r = h.get(server.url(path)).send().await.unwrap();
            let status = r.status().as_u16();
            assert_json_400(status, &r.text().await.unwrap(), &format!("{label} {path}"));
        }
        let b = signed_in_browser(&server, &f.email).await;
        let r = b
            .post(server.url("/account/sessions/%00/revoke"))
            .form(&[("csrf_token", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{label}");
        assert!(r.text().await.unwrap().contains("<html"));

        // Page forms: /login (email with NUL), and an email change to a mangled address is
        // refused rather than stored with U+FFFD in it.
        let anon = browser();
        let page = anon
            .get(server.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = input_value(&page, "csrf_token").unwrap();
        let body = format!("csrf_token={csrf}&email=ada%00%40example.com&password={PASSWORD}");
        let r = post_raw(&anon, server.url("/login"), &body).await;
        assert_eq!(r.status(), 400, "{label} /login");
        let account = b
            .get(server.url("/account"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = input_value(&account, "csrf_token").unwrap();
        let body = format!("csrf_token={csrf}&email=new%FF%40example.com");
        let r = post_raw(&b, server.url("/account/email"), &body).await;
        assert_eq!(r.status(), 400, "{label} /account/email");
        let outbox = std::fs::read_dir(env.data_dir().join("outbox"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(outbox, 0, "{label}: no mail to a mangled address");

        // Resource APIs with a valid token: a query cursor and a JSON body.
        let tokens = code_flow_tokens(
            &b,
            &server,
            &f,
            &[("scope", "openid devices:read streams:read")],
        )
        .await;
        let at = tokens["access_token"].as_str().unwrap();
        for path in ["/api/devices?after=%00", "/api/streams?after=a%FF"] {
            let r = h
                .get(server.url(path))
                .bearer_auth(at)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            assert_json_400(status, &r.text().await.unwrap(), &format!("{label} {path}"));
        }

        server.stop().await;
    }
}

/// The RNG of the random-input test: `PROPTEST_RNG_SEED` (as the server's property tests
/// read it; a fixed default), and the number of cases per backend from
/// `PROPTEST_CASES` (default 48, each case a handful of requests).
fn random_input_runner() -> (proptest::test_runner::TestRunner, u64, u32) {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let seed: u64 = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_b10c);
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(48, |n: u32| n.clamp(1, 256));
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&seed.to_le_bytes());
    }
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    (
        TestRunner::new_with_rng(Config::default(), rng),
        seed,
        cases,
    )
}

/// Random bytes where the endpoints read outside input (form bodies, JSON bodies, queries,
/// path segments), on SQLite and PostgreSQL: never a 5xx, and the protocol endpoints answer
/// with the error codes their RFCs name.
#[tokio::test]
async fn random_bytes_at_every_parser_never_answer_5xx_on_both_backends() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    const TOKEN_ERRORS: &[&str] = &[
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
        "unsupported_token_type",
    ];
    const REGISTRATION_ERRORS: &[&str] = &[
        "invalid_client_metadata",
        "invalid_redirect_uri",
        "invalid_token",
        "invalid_request",
    ];
    let piece = prop_oneof![
        Just(b"=".to_vec()),
        Just(b"&".to_vec()),
        Just(b"%".to_vec()),
        Just(b"%00".to_vec()),
        Just(b"%FF".to_vec()),
        Just(b"grant_type=".to_vec()),
        Just(b"client_id=".to_vec()),
        Just(b"{\"redirect_uris\":[".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    let strategy = proptest::collection::vec(piece, 0..16).prop_map(|v| v.concat());
    for db in TestDb::all().await {
        let env = Env::new(db, "[registration]\npolicy = \"open\"");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let label = format!("{:?}", server.state.store.backend());
        let (mut runner, seed, cases) = random_input_runner();
        eprintln!("{label}: PROPTEST_RNG_SEED={seed} PROPTEST_CASES={cases}");
        let h = http();
        let auth = basic(&f.client_id, &f.client_secret);
        for case in 0..cases {
            // Every case counts failed client authentications against the address: an hour
            // later the gate is open again, so each case reaches the parsers, not a 429.
            server.clock.advance(3600);
            let bytes = strategy.new_tree(&mut runner).unwrap().current();
            let what = |at: &str| format!("{label} case {case} (seed {seed}) {at}: {bytes:02x?}");
            // Form bodies at the protocol endpoints, with and without client credentials.
            for path in ["/token", "/revoke", "/introspect", "/device_authorization"] {
                for with_auth in [false, true] {
                    let mut req = h
                        .post(server.url(path))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(bytes.clone());
                    if with_auth {
                        req = req.header("authorization", &auth);
                    }
                    let r = req.send().await.unwrap();
                    let status = r.status().as_u16();
                    let body = r.text().await.unwrap();
                    // RFC 7009 §2.2 / RFC 7662 §2.2: a token nobody knows is still a 200.
                    if status == 200 {
                        assert!(matches!(path, "/revoke" | "/introspect"), "{}", what(path));
                        continue;
                    }
                    assert!(
                        matches!(status, 400 | 401),
                        "{} -> {status} {body}",
                        what(path)
                    );
                    let v: serde_json::Value = serde_json::from_str(&body)
                        .unwrap_or_else(|_| panic!("{}: not JSON: {body}", what(path)));
                    let code = v["error"].as_str().unwrap_or_default();
                    assert!(TOKEN_ERRORS.contains(&code), "{}: {code}", what(path));
                }
            }
            // A JSON body at /register.
            let r = h
                .post(server.url("/register"))
                .header("content-type", "application/json")
                .body(bytes.clone())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            if status != 201 {
                assert!(
                    matches!(status, 400 | 401),
                    "{} -> {status}",
                    what("/register")
                );
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                let code = v["error"].as_str().unwrap_or_default();
                assert!(
                    REGISTRATION_ERRORS.contains(&code),
                    "{}: {code}",
                    what("/register")
                );
            }
            // The same bytes as a query and as a path segment (percent-encoded).
            let encoded: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            let raw_query = String::from_utf8_lossy(&bytes)
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .collect::<String>();
            for url in [
                format!("/authorize?{raw_query}"),
                format!("/authorize?client_id={encoded}&redirect_uri={encoded}"),
                format!("/logout?{raw_query}"),
                format!("/device?user_code={encoded}"),
                format!("/register/{encoded}"),
                format!("/api/streams/{encoded}"),
                format!("/api/devices?after={encoded}"),
                format!("/static/{encoded}"),
            ] {
                let r = h.get(server.url(&url)).send().await.unwrap();
                assert!(
                    r.status().as_u16() < 500,
                    "{} -> {}",
                    what(&url),
                    r.status()
                );
            }
        }
        server.stop().await;
    }
}
