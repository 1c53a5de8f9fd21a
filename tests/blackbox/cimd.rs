//! Client ID metadata documents (issue 15): an agent whose `client_id` is the https URL of its
//! metadata signs a user in with code + PKCE + `resource`, no operator involved. The documents
//! are served over https by a test server whose CA Latchkey trusts through
//! `outbound.extra_ca_file` only; `client_id_metadata.danger_allow_http_and_loopback` lets it
//! fetch from 127.0.0.1 (every other private address stays refused).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey::testdb::TestDb;
use serde_json::{Value, json};

use crate::flow::{
    PASSWORD, VERIFIER, browser, fixture, input_value, location, query_param, s256, sign_in,
};
use crate::harness::{Env, Server};
use crate::oidc::jwt_claims;
use crate::tls::TestCa;

/// What the document server answers on one path.
#[derive(Clone)]
struct Route {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Route {
    fn json(body: &Value, cache_control: &str) -> Self {
        Self {
            status: 200,
            headers: vec![("cache-control", cache_control.to_owned())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
}

/// An https server on 127.0.0.1 answering each path from a table; counts requests per path.
struct DocServer {
    port: u16,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    hits: Arc<Mutex<HashMap<String, u32>>>,
}

impl DocServer {
    fn start(ca: &TestCa) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let (acceptor, table, counts) = (ca.acceptor.clone(), routes.clone(), hits.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (acceptor, table, counts) = (acceptor.clone(), table.clone(), counts.clone());
                std::thread::spawn(move || {
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                    let Ok(mut tls) = acceptor.accept(tcp) else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
                    *counts.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let route = table.lock().unwrap().get(&path).cloned();
                    let Some(route) = route else {
                        let _ = tls.write_all(
                            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        );
                        return;
                    };
                    std::thread::sleep(route.delay);
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                        route.status,
                        route.body.len()
                    );
                    for (k, v) in &route.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = tls.write_all(head.as_bytes());
                    let _ = tls.write_all(route.body.as_bytes());
                    let _ = tls.shutdown();
                });
            }
        });
        Self { port, routes, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn serve(&self, path: &str, route: Route) {
        self.routes.lock().unwrap().insert(path.to_owned(), route);
    }

    fn hits(&self, path: &str) -> u32 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

const AGENT_REDIRECT: &str = "http://127.0.0.1:4711/callback";

fn agent_document(client_id: &str, redirects: &[&str]) -> Value {
    json!({
        "client_id": client_id,
        "client_name": "Test Agent",
        "client_uri": "https://agent.example/",
        "redirect_uris": redirects,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "openid devices:read",
        "software_id": "ignored-unknown-field",
    })
}

fn authorize(server: &Server, client_id: &str, redirect: &str, resource: &str) -> String {
    let mut u = url::Url::parse(&server.url("/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid devices:read")
        .append_pair("state", "st")
        .append_pair("code_challenge", &s256(VERIFIER))
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", resource);
    u.to_string()
}

/// Signs in (once per browser) and returns the consent page's HTML, then allows and returns
/// where the browser is sent.
pub async fn consent_and_allow(
    b: &reqwest::Client,
    server: &Server,
    url: &str,
    email: &str,
) -> (String, String) {
    let mut resp = b.get(url).send().await.unwrap();
    for _ in 0..5 {
        if resp.status() == 303 {
            let to = location(&resp);
            resp = b.get(server.url(&to)).send().await.unwrap();
            continue;
        }
        let status = resp.status();
        let html = resp.text().await.unwrap();
        assert_eq!(status, 200, "{html}");
        if html.contains("action=\"/login\"") {
            resp = sign_in(b, server, &html, email, PASSWORD).await;
            continue;
        }
        assert!(html.contains("action=\"/consent\""), "{html}");
        let csrf = input_value(&html, "csrf_token").unwrap();
        let request = input_value(&html, "request").unwrap();
        let resp = b
            .post(server.url("/consent"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("request", request.as_str()),
                ("decision", "allow"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303);
        return (html, location(&resp));
    }
    panic!("too many steps");
}

/// The error page /authorize shows for `client_id` (never a redirect).
async fn refusal(server: &Server, client_id: &str, redirect: &str) -> String {
    let resp = browser()
        .get(authorize(server, client_id, redirect, "https://x.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "{client_id}");
    resp.text().await.unwrap()
}

#[tokio::test]
async fn an_agent_known_by_its_metadata_document_signs_a_user_in_without_an_operator() {
    let ca = TestCa::new();
    let docs = DocServer::start(&ca);
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), &ca.ca_pem).unwrap();
    for db in TestDb::all().await {
        let label = db.label;
        let env = Env::new(
            db,
            &format!(
                "[client_id_metadata]\ndanger_allow_http_and_loopback = true\nfetch_timeout = \"1s\"\nmax_bytes = 2048\ndeny_hosts = [\"*.denied.example\"]\n\
                 [outbound]\nextra_ca_file = {:?}\n",
                ca_file.path().display().to_string()
            ),
        );
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let issuer = server.state.config.issuer.clone();
        let discovery: Value = reqwest::get(server.url("/.well-known/openid-configuration"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(discovery["client_id_metadata_document_supported"], true);

        let path = format!("/agent-{label}.json");
        let client_id = docs.url(&path);
        docs.serve(
            &path,
            Route::json(
                &agent_document(&client_id, &[AGENT_REDIRECT]),
                "public, max-age=600",
            ),
        );
        let resource = format!("{issuer}/api/devices");
        let b = browser();
        let (consent, back) = consent_and_allow(
            &b,
            &server,
            &authorize(&server, &client_id, AGENT_REDIRECT, &resource),
            &f.email,
        )
        .await;
        // The consent page says who this is: unverified, the document's host, where the
        // answer goes, and that it is a program on this computer.
        assert!(consent.contains("Test Agent"), "{consent}");
        assert!(consent.contains("Unverified application"), "{consent}");
        assert!(consent.contains("localhost"), "{consent}");
        assert!(consent.contains("127.0.0.1:4711"), "{consent}");
        assert!(consent.contains("a program on this computer"), "{consent}");
        assert!(back.starts_with(AGENT_REDIRECT), "{back}");
        let code = query_param(&back, "code").unwrap();

        // A public client: no secret, PKCE; the token is for the resource named.
        let resp = reqwest::Client::new()
            .post(server.url("/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", client_id.as_str()),
                ("code", code.as_str()),
                ("redirect_uri", AGENT_REDIRECT),
                ("code_verifier", VERIFIER),
                ("resource", resource.as_str()),
            ])
            .send()
            .await
            .unwrap();
        let t: Value = resp.json().await.unwrap();
        let at = t["access_token"].as_str().unwrap_or_else(|| panic!("{t}"));
        let claims = jwt_claims(at);
        assert_eq!(claims["aud"], resource.as_str());
        assert_eq!(claims["client_id"], client_id.as_str());
        let api = |p: &'static str| {
            let (server, at) = (&server, at.to_owned());
            async move {
                reqwest::Client::new()
                    .get(server.url(p))
                    .bearer_auth(at)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(api("/api/devices").await, 200);
        assert_eq!(
            api("/api/streams").await,
            401,
            "a token for A is refused by B"
        );
        assert_eq!(docs.hits(&path), 1, "fetched once, then the stored copy");

        // A second instance on the same database uses the stored copy too.
        let other = Server::start(env.config()).await;
        let resp = browser()
            .get(authorize(&other, &client_id, AGENT_REDIRECT, &resource))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.text().await.unwrap().contains("action=\"/login\""));
        assert_eq!(docs.hits(&path), 1, "no second fetch");

        // A changed document is seen once its cache lifetime (max-age=600) has passed.
        const NEW_REDIRECT: &str = "https://agent.example/callback";
        docs.serve(
            &path,
            Route::json(
                &agent_document(&client_id, &[AGENT_REDIRECT, NEW_REDIRECT]),
                "max-age=600",
            ),
        );
        let page = refusal(&server, &client_id, NEW_REDIRECT).await;
        assert!(page.contains("not registered"), "{page}");
        server.clock.advance(601);
        let resp = b
            .get(authorize(&server, &client_id, NEW_REDIRECT, &resource))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            303,
            "signed in already: on to consent or back"
        );
        assert_eq!(docs.hits(&path), 2);

        // Refusals, each on the error page (never a redirect), naming what is wrong.
        let refused = |name: &'static str, route: Route| {
            let (docs, server) = (&docs, &server);
            async move {
                let p = format!("/{name}-{label}.json");
                let id = docs.url(&p);
                let mut route = route;
                route.body = route.body.replace("SELF", &id);
                docs.serve(&p, route);
                refusal(server, &id, AGENT_REDIRECT).await
            }
        };
        let doc = |id: &str| agent_document(id, &[AGENT_REDIRECT]);
        let page = refused(
            "other-id",
            Route::json(&doc("https://elsewhere.example/a.json"), ""),
        )
        .await;
        assert!(page.contains("invalid_client"), "{page}");
        assert!(
            page.contains("client_id is not the URL it was fetched from"),
            "{page}"
        );
        let page = refused(
            "redirecting",
            Route {
                status: 302,
                headers: vec![("location", docs.url("/agent.json"))],
                body: String::new(),
                delay: Duration::ZERO,
            },
        )
        .await;
        assert!(page.contains("redirects are not followed"), "{page}");
        let mut big = doc("SELF");
        big["padding"] = json!("x".repeat(4096));
        let page = refused("big", Route::json(&big, "")).await;
        assert!(page.contains("larger than 2048 bytes"), "{page}");
        let mut slow = Route::json(&doc("SELF"), "");
        slow.delay = Duration::from_millis(2500);
        let page = refused("slow", slow).await;
        assert!(page.contains("did not arrive within 1s"), "{page}");
        let mut secret = doc("SELF");
        secret["client_secret"] = json!("s3cret");
        let page = refused("secret", Route::json(&secret, "")).await;
        assert!(page.contains("must not hold a client secret"), "{page}");
        let page = refused(
            "gone",
            Route {
                status: 404,
                ..Route::json(&doc("SELF"), "")
            },
        )
        .await;
        assert!(page.contains("HTTP 404"), "{page}");
        // Where the redirect_uri is not in the document.
        let page = refusal(&server, &client_id, "http://127.0.0.1:9999/other").await;
        assert!(page.contains("not registered"), "{page}");
        // A private address is never fetched (loopback only is let in for this lab).
        let page = refusal(&server, "https://10.1.2.3/agent.json", AGENT_REDIRECT).await;
        assert!(
            page.contains("could not be fetched from a public address"),
            "{page}"
        );
        let page = refusal(
            &server,
            "https://a.denied.example/agent.json",
            AGENT_REDIRECT,
        )
        .await;
        assert!(page.contains("not accepted here"), "{page}");
        let page = refusal(&server, "https://localhost/a/../agent.json", AGENT_REDIRECT).await;
        assert!(page.contains("or .. path segments"), "{page}");

        // At the token endpoint such a client is invalid_client, with the reason.
        let resp = reqwest::Client::new()
            .post(server.url("/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", "https://10.1.2.3/agent.json"),
                ("code", "x"),
                ("redirect_uri", AGENT_REDIRECT),
                ("code_verifier", VERIFIER),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let e: Value = resp.json().await.unwrap();
        assert_eq!(e["error"], "invalid_client", "{e}");
        other.stop().await;
        server.stop().await;
    }
}

#[tokio::test]
async fn without_the_lab_option_loopback_documents_are_refused_and_the_feature_can_be_off() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let server = Server::start(env.config()).await;
        let page = refusal(&server, "https://127.0.0.1:9/agent.json", AGENT_REDIRECT).await;
        assert!(
            page.contains("could not be fetched from a public address"),
            "{page}"
        );
        let page = refusal(&server, "http://app.example/agent.json", AGENT_REDIRECT).await;
        assert!(page.contains("must be https"), "{page}");
        server.stop().await;

        let env = Env::new(TestDb::sqlite(), "[client_id_metadata]\nenabled = false\n");
        let server = Server::start(env.config()).await;
        let page = refusal(&server, "https://app.example/agent.json", AGENT_REDIRECT).await;
        assert!(page.contains("not accepted here"), "{page}");
        let discovery: Value = reqwest::get(server.url("/.well-known/openid-configuration"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(discovery["client_id_metadata_document_supported"], false);
        server.stop().await;
    }
}
