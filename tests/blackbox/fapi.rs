//! The FAPI 2.0 Security Profile as a client profile (`client create --profile fapi2`):
//! pushed requests, PKCE, private_key_jwt, DPoP, `iss` in the response, codes of at most 60
//! seconds, PS256/ES256/EdDSA signatures; each missing piece refused with the error its
//! specification names. A plain client keeps working as before (the rest of the suite).

use latchkey::clock::Clock as _;
use latchkey::testdb::TestDb;
use latchkey_jwks::{Alg, PrivateKey};
use serde_json::Value;

use crate::client_auth::{ClientKey, assertion, client_key};
use crate::dpop::proof;
use crate::flow::{
    PASSWORD, REDIRECT, VERIFIER, authorize_url, basic, browser, browser_flow, claims, query_param,
};
use crate::harness::{Env, Server, http};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

struct Bank {
    client_id: String,
    email: String,
    key: ClientKey,
}

async fn bank(env: &Env) -> Bank {
    let email = "ada@example.com";
    env.cli(
        &[
            "user",
            "create",
            "--email",
            email,
            "--password-stdin",
            "--email-verified",
        ],
        &format!("{PASSWORD}\n"),
    )
    .await
    .unwrap();
    let key = client_key();
    let jwks = env.dir.path().join("bank-jwks.json");
    std::fs::write(&jwks, key.public_jwks.to_string()).unwrap();
    let jwks = jwks.display().to_string();
    // Not without private_key_jwt.
    let refused = env
        .cli(
            &[
                "client",
                "create",
                "--name",
                "Bank",
                "--redirect-uri",
                REDIRECT,
                "--profile",
                "fapi2",
            ],
            "",
        )
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("private_key_jwt")),
        "{refused:?}"
    );
    let out = env
        .cli(
            &[
                "client",
                "create",
                "--name",
                "Bank",
                "--redirect-uri",
                REDIRECT,
                "--profile",
                "fapi2",
                "--token-endpoint-auth-method",
                "private_key_jwt",
                "--jwks-file",
                &jwks,
            ],
            "",
        )
        .await
        .unwrap();
    let c: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["profile"], "fapi2");
    assert_eq!(c["require_pushed_authorization_requests"], true);
    assert_eq!(c["dpop_bound_access_tokens"], true);
    Bank {
        client_id: c["client_id"].as_str().unwrap().to_owned(),
        email: email.to_owned(),
        key,
    }
}

/// Client authentication by a fresh assertion.
fn auth(server: &Server, b: &Bank) -> Vec<(&'static str, String)> {
    let now = server.clock.now();
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let jti = format!("a-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    vec![
        ("client_assertion_type", ASSERTION_TYPE.to_owned()),
        (
            "client_assertion",
            assertion(
                &b.key,
                &b.client_id,
                &server.state.config.issuer,
                now,
                60,
                &jti,
            ),
        ),
    ]
}

async fn post(
    server: &Server,
    path: &str,
    dpop: Option<&str>,
    authorization: Option<&str>,
    form: &[(&str, String)],
) -> (u16, Value) {
    let mut req = http().post(server.url(path)).form(form);
    if let Some(p) = dpop {
        req = req.header("dpop", p);
    }
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Pushes the code flow's request with a proof by `key`, then follows it to a code.
async fn pushed_code(server: &Server, b: &Bank, key: &PrivateKey) -> String {
    let url = url::Url::parse(&authorize_url(server, &b.client_id, &[])).unwrap();
    let mut form: Vec<(&str, String)> = Vec::new();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    for (k, v) in &pairs {
        form.push((k.as_str(), v.clone()));
    }
    form.extend(auth(server, b));
    let p = proof(server, key, "POST", "/par", None, None);
    let (status, pushed) = post(server, "/par", Some(&p), None, &form).await;
    assert_eq!(status, 201, "{pushed}");
    let mut u = url::Url::parse(&server.url("/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", &b.client_id)
        .append_pair("request_uri", pushed["request_uri"].as_str().unwrap());
    let back = browser_flow(&browser(), server, u.as_str(), &b.email).await;
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(server.state.config.issuer.as_str()),
        "RFC 9207"
    );
    query_param(&back, "code").unwrap()
}

fn code_form<'a>(code: &str) -> Vec<(&'a str, String)> {
    vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("code_verifier", VERIFIER.to_owned()),
    ]
}

#[tokio::test]
async fn a_fapi2_client_gets_bound_tokens_only_the_fapi2_way() {
    for db in TestDb::all().await {
        let env = Env::new(db, "[tokens]\ncode_lifetime = \"5m\"\n");
        let b = bank(&env).await;
        let server = Server::start(env.config()).await;
        let key = PrivateKey::generate(Alg::Es256).unwrap();

        // Without PAR: invalid_request, back at the redirect URI.
        let back = browser_flow(
            &browser(),
            &server,
            &authorize_url(&server, &b.client_id, &[]),
            &b.email,
        )
        .await;
        assert_eq!(
            query_param(&back, "error").as_deref(),
            Some("invalid_request"),
            "{back}"
        );
        // With a client secret at /par: invalid_client.
        let url = url::Url::parse(&authorize_url(&server, &b.client_id, &[])).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let form: Vec<(&str, String)> =
            pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let (status, body) = post(
            &server,
            "/par",
            None,
            Some(&basic(&b.client_id, "guess")),
            &form,
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{body}"
        );

        // The FAPI 2.0 way: PAR with private_key_jwt, DPoP at the token endpoint.
        let code = pushed_code(&server, &b, &key).await;
        let mut form = code_form(&code);
        // Without DPoP: invalid_request (a proof is required; none is not an invalid one), and
        // the code is not spent by that.
        let mut no_proof = form.clone();
        no_proof.extend(auth(&server, &b));
        let (status, body) = post(&server, "/token", None, None, &no_proof).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
        // With client_secret_basic: invalid_client.
        let p = proof(&server, &key, "POST", "/token", None, None);
        let (status, body) = post(
            &server,
            "/token",
            Some(&p),
            Some(&basic(&b.client_id, "guess")),
            &form,
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{body}"
        );
        // A proof signed RS256: not a FAPI 2.0 algorithm.
        let rsa = PrivateKey::generate(Alg::Rs256).unwrap();
        let mut with_auth = form.clone();
        with_auth.extend(auth(&server, &b));
        let p = proof(&server, &rsa, "POST", "/token", None, None);
        let (status, body) = post(&server, "/token", Some(&p), None, &with_auth).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{body}"
        );
        form.extend(auth(&server, &b));
        let p = proof(&server, &key, "POST", "/token", None, None);
        let (status, tokens) = post(&server, "/token", Some(&p), None, &form).await;
        assert_eq!(status, 200, "{tokens}");
        assert_eq!(tokens["token_type"], "DPoP");
        assert_eq!(
            claims(tokens["access_token"].as_str().unwrap())["cnf"]["jkt"],
            key.kid()
        );
        let id_header = tokens["id_token"]
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_owned();
        let header: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, id_header)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            header["alg"], "PS256",
            "a FAPI 2.0 id_token is PS256 by default"
        );

        // Codes live 60 s for this client, whatever tokens.code_lifetime says.
        let code = pushed_code(&server, &b, &key).await;
        server.clock.advance(61);
        let mut form = code_form(&code);
        form.extend(auth(&server, &b));
        let p = proof(&server, &key, "POST", "/token", None, None);
        let (status, body) = post(&server, "/token", Some(&p), None, &form).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
        server.stop().await;
    }
}
