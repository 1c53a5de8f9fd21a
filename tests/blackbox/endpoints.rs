//! Discovery, JWKS, health, metrics, security headers and body limits over real HTTP.

use crate::harness::{Env, Server, get_json, http, kids};
use latchkey::testdb::TestDb;

#[tokio::test]
async fn discovery_names_the_issuer_and_jwks_and_both_metadata_paths_agree() {
    let env = Env::new(TestDb::sqlite(), "issuer = \"http://localhost:8080\"");
    let server = Server::start(env.config()).await;
    let resp = http()
        .get(server.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let oidc: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(oidc["issuer"], "http://localhost:8080");
    assert_eq!(oidc["jwks_uri"], "http://localhost:8080/jwks.json");
    let rfc8414 = get_json(&server.url("/.well-known/oauth-authorization-server")).await;
    assert_eq!(oidc, rfc8414);
    assert_eq!(
        oidc["authorization_endpoint"],
        "http://localhost:8080/authorize"
    );
    assert_eq!(
        oidc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(oidc["authorization_response_iss_parameter_supported"], true);
    // Only what works is advertised: no implicit flow, no unsigned request objects.
    assert_eq!(
        oidc["response_types_supported"],
        serde_json::json!(["code"])
    );
    // Request objects only signed (RFC 9101), request_uri only from /par.
    assert_eq!(oidc["request_parameter_supported"], true);
    assert_eq!(oidc["request_uri_parameter_supported"], false);
    assert!(
        !oidc["request_object_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("none"))
    );
    let algs = oidc["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(
        algs.contains(&serde_json::json!("RS256")) && !algs.contains(&serde_json::json!("none"))
    );
    server.stop().await;
}

#[tokio::test]
async fn jwks_has_three_distinct_public_keys_an_etag_and_a_short_max_age() {
    let env = Env::new(TestDb::sqlite(), "");
    let server = Server::start(env.config()).await;
    let resp = http().get(server.url("/jwks.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        resp.headers()["cache-control"].to_str().unwrap(),
        "public, max-age=300"
    );
    let jwks: serde_json::Value = resp.json().await.unwrap();
    let mut algs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    algs.sort();
    assert_eq!(algs, ["ES256", "EdDSA", "PS256", "RS256"]);
    let mut k = kids(&jwks);
    k.dedup();
    assert_eq!(k.len(), 4);
    for key in jwks["keys"].as_array().unwrap() {
        assert!(key.get("d").is_none(), "private key material published");
    }

    let again = http()
        .get(server.url("/jwks.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    server.stop().await;
}

#[tokio::test]
async fn a_second_start_on_the_same_data_directory_publishes_the_same_kids() {
    let env = Env::new(TestDb::sqlite(), "");
    let first = Server::start(env.config()).await;
    let before = kids(&get_json(&first.url("/jwks.json")).await);
    first.stop().await;
    let second = Server::start(env.config()).await;
    let after = kids(&get_json(&second.url("/jwks.json")).await);
    assert_eq!(before, after);
    second.stop().await;

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for f in ["pepper.keys", "kek.keys"] {
            let mode = std::fs::metadata(env.data_dir().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "{f} must be readable by the owner only"
            );
        }
        let mode = std::fs::metadata(env.data_dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let env = Env::new(TestDb::sqlite(), "");
    let server = Server::start(env.config()).await;
    for path in ["/jwks.json", "/healthz", "/no-such-page"] {
        let resp = http().get(server.url(path)).send().await.unwrap();
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert!(
            h.get("strict-transport-security").is_none(),
            "no HSTS on http"
        );
    }
    server.stop().await;

    let env = Env::new(TestDb::sqlite(), "issuer = \"https://id.example.com\"");
    let server = Server::start(env.config()).await;
    let resp = http().get(server.url("/healthz")).send().await.unwrap();
    assert!(
        resp.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
    server.stop().await;
}

#[tokio::test]
async fn request_bodies_over_the_limit_are_refused() {
    let env = Env::new(TestDb::sqlite(), "[http]\nmax_body_bytes = 2048");
    let server = Server::start(env.config()).await;
    let resp = http()
        .post(server.url("/healthz"))
        .body(vec![b'a'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Without a Content-Length (chunked), the limit still holds.
    let status = raw_chunked_post(&server.base, "/healthz", &[&[b'a'; 1500], &[b'b'; 1500]]).await;
    assert_eq!(status, 413);
    let status = raw_chunked_post(&server.base, "/healthz", &[&[b'a'; 100]]).await;
    assert_eq!(
        status, 405,
        "small chunked body passes the limit and reaches routing"
    );
    server.stop().await;
}

/// Sends a chunked POST by hand and returns the status code.
async fn raw_chunked_post(base: &str, path: &str, chunks: &[&[u8]]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for c in chunks {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn readiness_checks_the_database_and_metrics_count_requests() {
    let env = Env::new(TestDb::sqlite(), "");
    let server = Server::start(env.config()).await;
    let resp = http().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = http().get(server.url("/jwks.json")).send().await.unwrap();
    // Every route is counted under its own pattern; unknown paths under `other`.
    let form = [("client_id", "nobody")];
    for path in ["/device_authorization", "/revoke"] {
        let _ = http()
            .post(server.url(path))
            .form(&form)
            .send()
            .await
            .unwrap();
    }
    for path in [
        "/device",
        "/reset",
        "/api/devices",
        "/api/devices/d1",
        "/register/c1",
        "/nowhere",
    ] {
        let _ = http().get(server.url(path)).send().await.unwrap();
    }
    let metrics = http()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "latchkey_http_requests_total{route=\"/jwks.json\",method=\"GET\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    for route in [
        "/device_authorization",
        "/revoke",
        "/device",
        "/reset",
        "/api/devices",
        "/api/devices/:id",
        "/register/:client_id",
        "other",
    ] {
        assert!(
            metrics.contains(&format!("latchkey_http_requests_total{{route=\"{route}\",")),
            "{route} has its own label: {metrics}"
        );
    }
    assert!(!metrics.contains("route=\"/api/devices/d1\""), "{metrics}");

    server.state.store.close().await;
    let resp = http().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    server.stop().await;
}

/// Browsers apply `form-action` to the redirects after a form post: the sign-in and consent
/// pages must allow the (verified) client's origin, and only it, or real browsers stop at
/// the last hop. Other pages keep `form-action 'self'`.
#[tokio::test]
async fn sign_in_and_consent_pages_let_their_forms_end_at_the_client_only() {
    let env = Env::new(TestDb::sqlite(), "");
    let f = crate::flow::fixture(&env, &[]).await;
    let server = Server::start(env.config()).await;
    let b = crate::flow::browser();
    let form_action = |r: &reqwest::Response| {
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        csp.split(';')
            .map(str::trim)
            .find(|d| d.starts_with("form-action"))
            .unwrap()
            .to_owned()
    };
    let url = crate::flow::authorize_url(&server, &f.client_id, &[]);
    let r = b.get(&url).send().await.unwrap();
    assert_eq!(form_action(&r), "form-action 'self' https://rp.example.com");
    let page = r.text().await.unwrap();
    let r = crate::flow::sign_in(&b, &server, &page, &f.email, crate::flow::PASSWORD).await;
    let r = b
        .get(server.url(&crate::flow::location(&r)))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .len()
            > 10
    );
    assert_eq!(
        form_action(&r),
        "form-action 'self' https://rp.example.com",
        "consent page"
    );
    // An unregistered redirect URI gets an error page that allows nothing else.
    let bad = url.replace("rp.example.com", "evil.example.com");
    let r = b.get(&bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(form_action(&r), "form-action 'self'");
    let r = b.get(server.url("/login")).send().await.unwrap();
    assert_eq!(form_action(&r), "form-action 'self'");
    server.stop().await;
}

/// Every RFC 8414 §2 and OIDC Discovery §3 rule a metadata document can be checked against by
/// itself, for both well-known documents (on both backends, each serving its own issuer).
#[tokio::test]
async fn rfc8414_and_oidc_discovery_metadata_rules_hold_for_both_documents() {
    use serde_json::Value;
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let server = Server::start(env.config()).await;
        let issuer = server.state.config.issuer.to_string();
        for path in [
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ] {
            let m = get_json(&server.url(path)).await;
            let ctx = format!("{path}: {m}");
            // RFC 8414 §3.3: the issuer is the one the document was fetched for.
            assert_eq!(m["issuer"], issuer.as_str(), "{ctx}");
            let iss = url::Url::parse(&issuer).unwrap();
            assert!(iss.query().is_none() && iss.fragment().is_none(), "{ctx}");
            // Required members (RFC 8414 §2; OIDC Discovery §3).
            for required in [
                "issuer",
                "authorization_endpoint",
                "token_endpoint",
                "jwks_uri",
                "response_types_supported",
                "subject_types_supported",
                "id_token_signing_alg_values_supported",
            ] {
                assert!(m.get(required).is_some(), "{required} missing: {ctx}");
            }
            let obj = m.as_object().unwrap();
            for (name, value) in obj {
                // Endpoints and URIs: absolute URLs of the issuer's scheme, no fragment.
                if name.ends_with("_endpoint") || name == "jwks_uri" {
                    let u = url::Url::parse(value.as_str().unwrap()).unwrap();
                    assert_eq!(u.scheme(), iss.scheme(), "{name}: {ctx}");
                    assert!(u.fragment().is_none(), "{name}: {ctx}");
                }
                // *_supported lists: non-empty JSON arrays of strings.
                if name.ends_with("_supported") && !value.is_boolean() {
                    let list = value.as_array().unwrap_or_else(|| panic!("{name}: {ctx}"));
                    assert!(!list.is_empty(), "{name}: {ctx}");
                    assert!(list.iter().all(Value::is_string), "{name}: {ctx}");
                }
                // An endpoint advertised with *_auth_methods_supported naming a JWT method
                // lists its *_auth_signing_alg_values_supported, without "none" (RFC 8414 §2).
                if let Some(endpoint) = name.strip_suffix("_auth_methods_supported") {
                    let methods: Vec<&str> = value
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    assert!(
                        obj.contains_key(endpoint),
                        "{endpoint} is not advertised but its auth methods are: {ctx}"
                    );
                    if methods
                        .iter()
                        .any(|m| *m == "private_key_jwt" || *m == "client_secret_jwt")
                    {
                        let algs = &m[format!("{endpoint}_auth_signing_alg_values_supported")];
                        let algs = algs
                            .as_array()
                            .unwrap_or_else(|| panic!("{endpoint} lists no signing algs: {ctx}"));
                        assert!(!algs.iter().any(|a| a == "none"), "{ctx}");
                    }
                }
            }
            // OIDC Discovery §3: RS256 is supported for id_tokens; scopes include openid.
            assert!(
                m["id_token_signing_alg_values_supported"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a == "RS256"),
                "{ctx}"
            );
            assert!(
                m["scopes_supported"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s == "openid"),
                "{ctx}"
            );
            assert!(
                m["response_types_supported"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s == "code"),
                "{ctx}"
            );
        }
        server.stop().await;
    }
}

/// RFC 8414 §3.1: for an issuer with a path, the metadata also answers at the path-inserted
/// location (both well-known names); another path there is 404.
#[tokio::test]
async fn discovery_answers_at_the_path_inserted_location_for_an_issuer_with_a_path() {
    let env = Env::new(
        TestDb::sqlite(),
        "issuer = \"http://localhost:8080/tenant\"\n",
    );
    let server = Server::start(env.config()).await;
    for name in ["oauth-authorization-server", "openid-configuration"] {
        let r = http()
            .get(server.url(&format!("/.well-known/{name}/tenant")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        let doc: serde_json::Value = r.json().await.unwrap();
        assert_eq!(doc["issuer"], "http://localhost:8080/tenant");
        assert_eq!(doc["token_endpoint"], "http://localhost:8080/tenant/token");
        let r = http()
            .get(server.url(&format!("/.well-known/{name}/other")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{name}");
    }
    let doc = get_json(&server.url("/.well-known/oauth-authorization-server")).await;
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert!(
        doc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("none"))
    );
    server.stop().await;
    // An issuer without a path has no path-inserted documents.
    let env = Env::new(TestDb::sqlite(), "");
    let server = Server::start(env.config()).await;
    let r = http()
        .get(server.url("/.well-known/oauth-authorization-server/tenant"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    server.stop().await;
}

/// CORS for browser-based clients where listed (any origin, never credentials, preflights
/// answered), and not on pages or `/authorize`.
#[tokio::test]
async fn cors_is_open_on_discovery_jwks_token_register_revoke_and_absent_on_pages() {
    let env = Env::new(TestDb::sqlite(), "");
    let server = Server::start(env.config()).await;
    let origin = "https://inspector.example";
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/jwks.json",
    ] {
        let r = http()
            .get(server.url(path))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
        assert!(
            r.headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
    }
    for path in ["/token", "/register", "/revoke"] {
        let r = http()
            .request(reqwest::Method::OPTIONS, server.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, dpop",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{path}");
        assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
        let allowed = r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap();
        assert!(
            allowed.contains("DPoP") && allowed.contains("Authorization"),
            "{allowed}"
        );
        assert!(
            r.headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
        // The request itself, an error here, carries it too.
        let r = http()
            .post(server.url(path))
            .header("origin", origin)
            .form(&[("x", "y")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
    }
    for path in ["/authorize", "/login", "/account", "/userinfo", "/signup"] {
        let r = http()
            .get(server.url(path))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{path}"
        );
    }
    server.stop().await;
}
