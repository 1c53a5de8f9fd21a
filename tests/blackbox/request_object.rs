//! RFC 9101 (and OIDC Core §6.1) request objects by value: signed by the client's registered
//! keys, `aud` our issuer, short-lived; their claims are the request and other parameters
//! but `client_id` are ignored; at `/authorize` and `/par`; clients that require them; and
//! `request_uri` taken only from `/par`.

use latchkey::clock::Clock as _;
use latchkey::testdb::TestDb;
use latchkey_jwks::Alg;
use serde_json::{Value, json};

use crate::client_auth::{ClientKey, client_key};
use crate::flow::{
    Fixture, REDIRECT, VERIFIER, authorize_url, basic, browser, browser_flow, fixture, query_param,
    s256,
};
use crate::harness::{Env, Server, get_json, http};

/// A user and a confidential client whose keys are `key` (beside its secret), with `extra`
/// arguments for `client create`.
async fn setup(env: &Env, key: &ClientKey, extra: &[&str]) -> Fixture {
    let jwks_path = env.dir.path().join("rp-jwks.json");
    std::fs::write(&jwks_path, key.public_jwks.to_string()).unwrap();
    let jwks = jwks_path.display().to_string();
    let mut args = vec!["--jwks-file", jwks.as_str()];
    args.extend_from_slice(extra);
    fixture(env, &args).await
}

/// The claims of a code-flow request object for `client_id`.
fn request_claims(server: &Server, client_id: &str, state: &str) -> Value {
    let now = server.clock.now();
    json!({
        "iss": client_id,
        "aud": server.state.config.issuer,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "openid email",
        "state": state,
        "nonce": "n-ro",
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
    })
}

fn sign(key: &ClientKey, claims: &Value) -> String {
    key.ring
        .sign(
            Alg::Es256,
            "oauth-authz-req+jwt",
            claims.as_object().unwrap(),
        )
        .unwrap()
}

/// `/authorize` with `client_id`, `request` and the outer parameters `outer`.
fn by_value(server: &Server, client_id: &str, request: &str, outer: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&server.url("/authorize")).unwrap();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("client_id", client_id)
            .append_pair("request", request);
        for (k, v) in outer {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

#[tokio::test]
async fn a_signed_request_object_is_the_request_and_a_bad_one_is_refused() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let key = client_key();
        let f = setup(&env, &key, &[]).await;
        let server = Server::start(env.config()).await;
        let meta = get_json(&server.url("/.well-known/openid-configuration")).await;
        assert_eq!(meta["request_parameter_supported"], true);
        assert_eq!(
            meta["request_object_signing_alg_values_supported"],
            json!(["RS256", "PS256", "ES256", "EdDSA"])
        );
        assert_eq!(meta["request_uri_parameter_supported"], false);

        // The object's redirect_uri and state win over those beside it (which are not even
        // registered): only the object counts.
        let object = sign(&key, &request_claims(&server, &f.client_id, "inner"));
        let url = by_value(
            &server,
            &f.client_id,
            &object,
            &[
                ("redirect_uri", "https://evil.example/cb"),
                ("state", "outer"),
                ("response_type", "code"),
                ("scope", "openid"),
            ],
        );
        let back = browser_flow(&browser(), &server, &url, &f.email).await;
        assert!(back.starts_with(REDIRECT), "{back}");
        assert_eq!(query_param(&back, "state").as_deref(), Some("inner"));
        let code = query_param(&back, "code").unwrap();
        let r = http()
            .post(server.url("/token"))
            .header("authorization", basic(&f.client_id, &f.client_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ])
            .send()
            .await
            .unwrap();
        let tokens: Value = r.json().await.unwrap();
        assert_eq!(tokens["scope"], "openid email", "{tokens}");

        // Refused objects: invalid_request_object, to the registered redirect_uri beside it.
        let other = client_key();
        let now = server.clock.now();
        let good = request_claims(&server, &f.client_id, "s");
        let with = |k: &str, v: Value| {
            let mut c = good.clone();
            c[k] = v;
            c
        };
        let unsigned = {
            use base64::Engine as _;
            let enc =
                |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            format!("{}.{}.", enc(&json!({"alg": "none"})), enc(&good))
        };
        for (label, object) in [
            ("another key", sign(&other, &good)),
            (
                "aud",
                sign(&key, &with("aud", json!("https://other.example"))),
            ),
            ("iss", sign(&key, &with("iss", json!("someone-else")))),
            ("expired", sign(&key, &with("exp", json!(now - 120)))),
            ("too long", sign(&key, &with("exp", json!(now + 7200)))),
            ("client_id", sign(&key, &with("client_id", json!("other")))),
            (
                "nested",
                sign(&key, &with("request_uri", json!("https://x.example/r"))),
            ),
            ("alg none", unsigned),
        ] {
            let url = by_value(
                &server,
                &f.client_id,
                &object,
                &[("redirect_uri", REDIRECT), ("state", "o")],
            );
            let back = browser_flow(&browser(), &server, &url, &f.email).await;
            assert!(back.starts_with(REDIRECT), "{label}: {back}");
            assert_eq!(
                query_param(&back, "error").as_deref(),
                Some("invalid_request_object"),
                "{label}"
            );
            assert!(query_param(&back, "code").is_none(), "{label}");
        }
        // Without a registered redirect_uri beside it: a page, never a redirect.
        let url = by_value(&server, &f.client_id, &sign(&other, &good), &[]);
        let r = browser().get(url).send().await.unwrap();
        assert_eq!(r.status(), 400);

        // A request_uri that did not come from /par is not fetched.
        let mut u = url::Url::parse(&authorize_url(&server, &f.client_id, &[])).unwrap();
        u.query_pairs_mut()
            .append_pair("request_uri", "https://rp.example.com/r.jwt");
        let url = u.to_string();
        let back = browser_flow(&browser(), &server, &url, &f.email).await;
        assert_eq!(
            query_param(&back, "error").as_deref(),
            Some("request_uri_not_supported"),
            "{back}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn clients_that_require_signed_objects_and_objects_pushed_to_par() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let key = client_key();
        let f = setup(&env, &key, &["--require-signed-request-object"]).await;
        let server = Server::start(env.config()).await;
        let auth = basic(&f.client_id, &f.client_secret);

        // A plain request: refused, at /authorize and at /par.
        let plain = authorize_url(&server, &f.client_id, &[]);
        let back = browser_flow(&browser(), &server, &plain, &f.email).await;
        assert_eq!(
            query_param(&back, "error").as_deref(),
            Some("invalid_request"),
            "{back}"
        );
        let form: Vec<(String, String)> = url::Url::parse(&plain)
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let r = http()
            .post(server.url("/par"))
            .header("authorization", &auth)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_request", "{e}");

        // A signed one, by value: through sign-in and consent to a code (the steps in between
        // still know it was signed).
        let object = sign(&key, &request_claims(&server, &f.client_id, "st"));
        let back = browser_flow(
            &browser(),
            &server,
            &by_value(&server, &f.client_id, &object, &[]),
            &f.email,
        )
        .await;
        assert!(query_param(&back, "code").is_some(), "{back}");

        // Pushed as an object: 201, then used by reference.
        let object = sign(&key, &request_claims(&server, &f.client_id, "pushed"));
        let r = http()
            .post(server.url("/par"))
            .header("authorization", &auth)
            .form(&[("request", object.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let pushed: Value = r.json().await.unwrap();
        let mut u = url::Url::parse(&server.url("/authorize")).unwrap();
        u.query_pairs_mut()
            .append_pair("client_id", &f.client_id)
            .append_pair("request_uri", pushed["request_uri"].as_str().unwrap());
        let back = browser_flow(&browser(), &server, u.as_str(), &f.email).await;
        assert_eq!(query_param(&back, "state").as_deref(), Some("pushed"));
        assert!(query_param(&back, "code").is_some(), "{back}");
        // A bad object at /par is a JSON invalid_request_object.
        let r = http()
            .post(server.url("/par"))
            .header("authorization", &auth)
            .form(&[(
                "request",
                sign(&client_key(), &request_claims(&server, &f.client_id, "x")).as_str(),
            )])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_request_object", "{e}");
        server.stop().await;
    }
}

/// A client that must push its requests cannot send its object to /authorize instead.
#[tokio::test]
async fn a_client_that_must_push_cannot_send_an_object_to_authorize() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let key = client_key();
        let f = setup(&env, &key, &["--require-par"]).await;
        let server = Server::start(env.config()).await;
        let object = sign(&key, &request_claims(&server, &f.client_id, "st"));
        let back = browser_flow(
            &browser(),
            &server,
            &by_value(&server, &f.client_id, &object, &[]),
            &f.email,
        )
        .await;
        assert_eq!(
            query_param(&back, "error").as_deref(),
            Some("invalid_request"),
            "{back}"
        );
        server.stop().await;
    }
}
