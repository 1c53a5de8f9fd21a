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
