//! RFC 9449 DPoP: proofs at `/par` and `/token`, tokens bound to the proof's key (`cnf.jkt`,
//! `token_type: DPoP`), codes bound by `dpop_jkt`, public clients' refresh tokens bound to
//! the key, the protected resources taking a bound token only with a fresh proof by its key,
//! server nonces, and proofs single use across instances.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey::clock::Clock as _;
use latchkey::testdb::TestDb;
use latchkey_jwks::{Alg, PrivateKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::flow::{
    Fixture, REDIRECT, VERIFIER, authorize_url, basic, browser, browser_flow, claims, fixture,
    query_param,
};
use crate::harness::{Env, Server, get_json, http};

/// A DPoP proof by `key` for `method` on our `path`, at the server's clock; `ath` for an
/// access token, `nonce` when asked for one.
pub(crate) fn proof(
    server: &Server,
    key: &PrivateKey,
    method: &str,
    path: &str,
    access_token: Option<&str>,
    nonce: Option<&str>,
) -> String {
    let mut claims = json!({
        "jti": unique(),
        "htm": method,
        "htu": format!("{}{path}", server.state.config.issuer),
        "iat": server.clock.now(),
    });
    if let Some(t) = access_token {
        claims["ath"] = json!(URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes())));
    }
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    key.sign_with_embedded_key("dpop+jwt", claims.as_object().unwrap())
        .unwrap()
}

/// A fresh `jti`: the time and a process-wide counter, so no two proofs share one.
fn unique() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{t}-{n}").as_bytes()))
}

/// A public client of the code flow with refresh tokens and the devices API.
async fn public_client(env: &Env, extra: &[&str]) -> Fixture {
    let mut args = vec![
        "--public",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--scope",
        "openid",
        "--scope",
        "devices:read",
    ];
    args.extend_from_slice(extra);
    fixture(env, &args).await
}

fn code_form<'a>(client_id: &'a str, code: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ]
}

/// A POST of `form` to `path` with these DPoP headers; (status, body, DPoP-Nonce).
async fn post(
    server: &Server,
    path: &str,
    proofs: &[&str],
    auth: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, Value, Option<String>) {
    let mut req = http().post(server.url(path)).form(form);
    for p in proofs {
        req = req.header("dpop", *p);
    }
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let nonce = r
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, r.json().await.unwrap_or(Value::Null), nonce)
}

/// A GET of a protected resource: (status, WWW-Authenticate, DPoP-Nonce).
async fn get(
    server: &Server,
    path: &str,
    authorization: &str,
    proof: Option<&str>,
) -> (u16, String, Option<String>) {
    let mut req = http()
        .get(server.url(path))
        .header("authorization", authorization);
    if let Some(p) = proof {
        req = req.header("dpop", p);
    }
    let r = req.send().await.unwrap();
    let header = |n: &str| {
        r.headers()
            .get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let challenge = header("www-authenticate");
    let nonce = r
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), challenge, nonce)
}

/// Pushes `form` with a proof by `key` (so binding the code to it), follows the request by
/// reference through sign-in and consent, and returns the code.
async fn pushed_code(
    server: &Server,
    f: &Fixture,
    key: &PrivateKey,
    form: &[(&str, &str)],
) -> String {
    let (status, pushed, _) = post(
        server,
        "/par",
        &[&proof(server, key, "POST", "/par", None, None)],
        None,
        form,
    )
    .await;
    assert_eq!(status, 201, "{pushed}");
    let mut by_ref = url::Url::parse(&server.url("/authorize")).unwrap();
    by_ref
        .query_pairs_mut()
        .append_pair("client_id", &f.client_id)
        .append_pair("request_uri", pushed["request_uri"].as_str().unwrap());
    let back = browser_flow(&browser(), server, by_ref.as_str(), &f.email).await;
    query_param(&back, "code").unwrap()
}

/// The must-show of issue 14: a public client pushes its request with a proof, completes the
/// code flow with PKCE, and gets a DPoP-bound token that `/userinfo` takes only with a fresh
/// proof by its key; a replayed proof is refused, also by a second instance.
#[tokio::test]
async fn a_public_client_gets_a_bound_token_through_par_that_only_its_key_can_use() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = public_client(&env, &[]).await;
        let a = Server::start(env.config()).await;
        let b_srv = Server::start(env.config()).await;
        b_srv.clock.set(a.clock.now());
        let key = PrivateKey::generate(Alg::Es256).unwrap();
        let thief = PrivateKey::generate(Alg::Es256).unwrap();

        let meta = get_json(&a.url("/.well-known/openid-configuration")).await;
        assert_eq!(
            meta["dpop_signing_alg_values_supported"],
            json!(["ES256", "EdDSA", "PS256", "RS256"])
        );

        // Pushed with a proof: the code will be bound to this key.
        let url = url::Url::parse(&authorize_url(
            &a,
            &f.client_id,
            &[("scope", "openid devices:read")],
        ))
        .unwrap();
        let form: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let code = pushed_code(&a, &f, &key, &form).await;

        // dpop_jkt beside a proof by another key at /par: refused.
        let mut mismatched = form.clone();
        let thief_jkt = thief.kid().to_owned();
        mismatched.push(("dpop_jkt", thief_jkt.as_str()));
        let (status, body, _) = post(
            &a,
            "/par",
            &[&proof(&a, &key, "POST", "/par", None, None)],
            None,
            &mismatched,
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{body}"
        );

        // Another key cannot redeem the code (and a refusal spends it: RFC 6749 §10.5);
        // so a second flow gives the code the holder redeems.
        let (status, body, _) = post(
            &a,
            "/token",
            &[&proof(&a, &thief, "POST", "/token", None, None)],
            None,
            &code_form(&f.client_id, &code),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
        let (status, body, _) = post(
            &a,
            "/token",
            &[&proof(&a, &key, "POST", "/token", None, None)],
            None,
            &code_form(&f.client_id, &code),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "spent: {body}"
        );
        let code = pushed_code(&a, &f, &key, &form).await;
        let (status, tokens, _) = post(
            &a,
            "/token",
            &[&proof(&a, &key, "POST", "/token", None, None)],
            None,
            &code_form(&f.client_id, &code),
        )
        .await;
        assert_eq!(status, 200, "{tokens}");
        assert_eq!(tokens["token_type"], "DPoP");
        let at = tokens["access_token"].as_str().unwrap().to_owned();
        assert_eq!(claims(&at)["cnf"]["jkt"], key.kid());

        // /userinfo: with a fresh proof by the key, yes.
        let dpop_auth = format!("DPoP {at}");
        let fresh = proof(&a, &key, "GET", "/userinfo", Some(&at), None);
        let (status, ..) = get(&a, "/userinfo", &dpop_auth, Some(&fresh)).await;
        assert_eq!(status, 200);
        // The same proof again, on this instance or the other: a replay.
        for server in [&a, &b_srv] {
            let (status, challenge, _) = get(server, "/userinfo", &dpop_auth, Some(&fresh)).await;
            assert_eq!(status, 401);
            assert!(
                challenge.starts_with("DPoP ")
                    && challenge.contains("error=\"invalid_dpop_proof\""),
                "{challenge}"
            );
        }
        // A fresh proof first used on b, replayed on a.
        let other = proof(&b_srv, &key, "GET", "/userinfo", Some(&at), None);
        assert_eq!(
            get(&b_srv, "/userinfo", &dpop_auth, Some(&other)).await.0,
            200
        );
        assert_eq!(get(&a, "/userinfo", &dpop_auth, Some(&other)).await.0, 401);
        // As a Bearer token: refused, with a DPoP challenge.
        let (status, challenge, _) = get(&a, "/userinfo", &format!("Bearer {at}"), None).await;
        assert_eq!(status, 401);
        assert!(
            challenge.starts_with("DPoP ") && challenge.contains("invalid_token"),
            "{challenge}"
        );
        // With a proof by another key, or without one, or for another URL or method.
        for bad in [
            Some(proof(&a, &thief, "GET", "/userinfo", Some(&at), None)),
            None,
            Some(proof(&a, &key, "GET", "/api/devices", Some(&at), None)),
            Some(proof(&a, &key, "POST", "/userinfo", Some(&at), None)),
            Some(proof(
                &a,
                &key,
                "GET",
                "/userinfo",
                Some("another token"),
                None,
            )),
        ] {
            let (status, challenge, _) = get(&a, "/userinfo", &dpop_auth, bad.as_deref()).await;
            assert_eq!(status, 401, "{challenge}");
            assert!(challenge.contains("invalid_dpop_proof"), "{challenge}");
        }
        // The devices API takes it the same way.
        let p = proof(&a, &key, "GET", "/api/devices", Some(&at), None);
        assert_eq!(get(&a, "/api/devices", &dpop_auth, Some(&p)).await.0, 200);
        assert_eq!(
            get(&a, "/api/devices", &format!("Bearer {at}"), None)
                .await
                .0,
            401
        );

        // The refresh token is bound to the key too: not without a proof by it.
        let rt = tokens["refresh_token"].as_str().unwrap();
        let refresh = [
            ("grant_type", "refresh_token"),
            ("client_id", f.client_id.as_str()),
            ("refresh_token", rt),
        ];
        let (status, body, _) = post(
            &a,
            "/token",
            &[&proof(&a, &thief, "POST", "/token", None, None)],
            None,
            &refresh,
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        let (status, body, _) = post(&a, "/token", &[], None, &refresh).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        let (status, body, _) = post(
            &b_srv,
            "/token",
            &[&proof(&b_srv, &key, "POST", "/token", None, None)],
            None,
            &refresh,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "DPoP");
        a.stop().await;
        b_srv.stop().await;
    }
}

/// `dpop_jkt` at /authorize binds the code; a client registered `dpop_bound_access_tokens`
/// must prove; introspection names the key; malformed proofs are `invalid_dpop_proof`.
#[tokio::test]
async fn dpop_jkt_binding_required_clients_introspection_and_bad_proofs() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let auth = basic(&f.client_id, &f.client_secret);
        let key = PrivateKey::generate(Alg::EdDsa).unwrap();

        // A malformed dpop_jkt goes back to the client as invalid_request.
        let back = browser_flow(
            &browser(),
            &server,
            &authorize_url(&server, &f.client_id, &[("dpop_jkt", "short")]),
            &f.email,
        )
        .await;
        assert_eq!(
            query_param(&back, "error").as_deref(),
            Some("invalid_request"),
            "{back}"
        );

        let flow = |jkt: String| {
            let server = &server;
            let f = &f;
            async move {
                let back = browser_flow(
                    &browser(),
                    server,
                    &authorize_url(server, &f.client_id, &[("dpop_jkt", &jkt)]),
                    &f.email,
                )
                .await;
                query_param(&back, "code").unwrap()
            }
        };
        let form = |code: &str| {
            vec![
                ("grant_type", "authorization_code".to_owned()),
                ("code", code.to_owned()),
                ("redirect_uri", REDIRECT.to_owned()),
                ("code_verifier", VERIFIER.to_owned()),
            ]
        };
        let as_refs = |v: &[(&'static str, String)]| -> Vec<(&'static str, String)> { v.to_vec() };
        // Without a proof: the bound code is refused.
        let code = flow(key.kid().to_owned()).await;
        let v = as_refs(&form(&code));
        let pairs: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body, _) = post(&server, "/token", &[], Some(&auth), &pairs).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
        // With the proof: a DPoP token, which introspection says is bound, and to what.
        let code = flow(key.kid().to_owned()).await;
        let v = as_refs(&form(&code));
        let pairs: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, tokens, _) = post(
            &server,
            "/token",
            &[&proof(&server, &key, "POST", "/token", None, None)],
            Some(&auth),
            &pairs,
        )
        .await;
        assert_eq!(status, 200, "{tokens}");
        let at = tokens["access_token"].as_str().unwrap();
        let (_, intro, _) = post(&server, "/introspect", &[], Some(&auth), &[("token", at)]).await;
        assert_eq!(intro["active"], true);
        assert_eq!(intro["token_type"], "DPoP");
        assert_eq!(intro["cnf"]["jkt"], key.kid());
        // A confidential client's refresh token is not bound: it refreshes without a proof
        // (and gets a Bearer token then).
        let rt = tokens["refresh_token"].as_str().unwrap();
        let (status, body, _) = post(
            &server,
            "/token",
            &[],
            Some(&auth),
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        // An unbound token presented with the DPoP scheme (and a proof): refused in that
        // scheme, and so is a revoked one.
        let plain = body["access_token"].as_str().unwrap();
        let p = proof(&server, &key, "GET", "/userinfo", Some(plain), None);
        let (status, challenge, _) =
            get(&server, "/userinfo", &format!("DPoP {plain}"), Some(&p)).await;
        assert_eq!(status, 401);
        assert!(
            challenge.starts_with("DPoP ") && challenge.contains("invalid_token"),
            "{challenge}"
        );
        let (status, _, _) = post(&server, "/revoke", &[], Some(&auth), &[("token", at)]).await;
        assert_eq!(status, 200);
        let p = proof(&server, &key, "GET", "/userinfo", Some(at), None);
        let (status, challenge, _) =
            get(&server, "/userinfo", &format!("DPoP {at}"), Some(&p)).await;
        assert_eq!(status, 401);
        assert!(
            challenge.starts_with("DPoP ") && challenge.contains("invalid_token"),
            "{challenge}"
        );

        // A client registered dpop_bound_access_tokens (--require-dpop).
        let out = env
            .cli(
                &[
                    "client",
                    "create",
                    "--name",
                    "Bound service",
                    "--grant-type",
                    "client_credentials",
                    "--scope",
                    "api:read",
                    "--require-dpop",
                ],
                "",
            )
            .await
            .unwrap();
        let c: Value = serde_json::from_str(&out).unwrap();
        let sauth = basic(
            c["client_id"].as_str().unwrap(),
            c["client_secret"].as_str().unwrap(),
        );
        let cc = [("grant_type", "client_credentials")];
        let (status, body, _) = post(&server, "/token", &[], Some(&sauth), &cc).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
        let (status, body, _) = post(
            &server,
            "/token",
            &[&proof(&server, &key, "POST", "/token", None, None)],
            Some(&sauth),
            &cc,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "DPoP");

        // Proofs that break a rule, each refused before the grant runs.
        let now = server.clock.now();
        let signed = |claims: Value| {
            key.sign_with_embedded_key("dpop+jwt", claims.as_object().unwrap())
                .unwrap()
        };
        let htu = format!("{}/token", server.state.config.issuer);
        let good = proof(&server, &key, "POST", "/token", None, None);
        for (label, proofs) in [
            (
                "two headers",
                vec![
                    good.clone(),
                    proof(&server, &key, "POST", "/token", None, None),
                ],
            ),
            (
                "wrong htu",
                vec![proof(&server, &key, "POST", "/par", None, None)],
            ),
            (
                "wrong htm",
                vec![proof(&server, &key, "GET", "/token", None, None)],
            ),
            (
                "old iat",
                vec![signed(
                    json!({"jti": "old-1", "htm": "POST", "htu": htu, "iat": now - 600}),
                )],
            ),
            (
                "no jti",
                vec![signed(json!({"htm": "POST", "htu": htu, "iat": now}))],
            ),
            ("not a JWS", vec!["not-a-proof".to_owned()]),
            (
                "typ JWT",
                vec![
                    key.sign_with_embedded_key(
                        "JWT",
                        json!({"jti": "t-1", "htm": "POST", "htu": htu, "iat": now})
                            .as_object()
                            .unwrap(),
                    )
                    .unwrap(),
                ],
            ),
        ] {
            let refs: Vec<&str> = proofs.iter().map(String::as_str).collect();
            let (status, body, _) = post(&server, "/token", &refs, Some(&sauth), &cc).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_dpop_proof")),
                "{label}: {body}"
            );
        }
        // The proof used once is not used twice.
        let (status, _, _) = post(&server, "/token", &[&good], Some(&sauth), &cc).await;
        assert_eq!(status, 200);
        let (status, body, _) = post(&server, "/token", &[&good], Some(&sauth), &cc).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof"))
        );
        server.stop().await;
    }
}

/// `dpop.require_nonce`: a proof without a current nonce is answered `use_dpop_nonce` with
/// one; the nonce of one instance works on another; a stale one is refused again.
#[tokio::test]
async fn server_nonces_are_asked_for_shared_by_instances_and_expire() {
    for db in TestDb::all().await {
        let env = Env::new(
            db,
            "[dpop]\nrequire_nonce = true\nnonce_lifetime = \"60s\"\n",
        );
        let out = env
            .cli(
                &[
                    "client",
                    "create",
                    "--name",
                    "Service",
                    "--grant-type",
                    "client_credentials",
                    "--scope",
                    "api:read",
                ],
                "",
            )
            .await
            .unwrap();
        let c: Value = serde_json::from_str(&out).unwrap();
        let a = Server::start(env.config()).await;
        let b_srv = Server::start(env.config()).await;
        b_srv.clock.set(a.clock.now());
        let auth = basic(
            c["client_id"].as_str().unwrap(),
            c["client_secret"].as_str().unwrap(),
        );
        let key = PrivateKey::generate(Alg::Es256).unwrap();
        let cc = [("grant_type", "client_credentials")];

        let (status, body, nonce) = post(
            &a,
            "/token",
            &[&proof(&a, &key, "POST", "/token", None, None)],
            Some(&auth),
            &cc,
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("use_dpop_nonce")),
            "{body}"
        );
        let nonce = nonce.expect("a DPoP-Nonce with use_dpop_nonce");
        // The nonce of a, at b.
        let (status, body, again) = post(
            &b_srv,
            "/token",
            &[&proof(&b_srv, &key, "POST", "/token", None, Some(&nonce))],
            Some(&auth),
            &cc,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(again.is_some(), "every answer carries the current nonce");
        // A made-up nonce, and an old one, are asked to be replaced.
        let (status, body, _) = post(
            &a,
            "/token",
            &[&proof(&a, &key, "POST", "/token", None, Some("1.made-up"))],
            Some(&auth),
            &cc,
        )
        .await;
        assert_eq!(body["error"], "use_dpop_nonce", "{status}");

        // At a resource: a bound token, the nonce asked for in a DPoP challenge.
        let at = body_token(&a, &key, &nonce_of(&a, &key, &auth).await, &auth).await;
        let dpop_auth = format!("DPoP {at}");
        let (status, challenge, fresh) = get(
            &a,
            "/userinfo",
            &dpop_auth,
            Some(&proof(&a, &key, "GET", "/userinfo", Some(&at), None)),
        )
        .await;
        assert_eq!(status, 401);
        assert!(challenge.contains("use_dpop_nonce"), "{challenge}");
        let fresh = fresh.expect("a DPoP-Nonce with use_dpop_nonce");
        // userinfo needs openid, which this service token lacks: past the proof, it is the
        // scope that is refused.
        let (status, challenge, _) = get(
            &a,
            "/userinfo",
            &dpop_auth,
            Some(&proof(
                &a,
                &key,
                "GET",
                "/userinfo",
                Some(&at),
                Some(&fresh),
            )),
        )
        .await;
        assert_eq!(status, 403, "{challenge}");
        assert!(
            challenge.starts_with("DPoP ")
                && challenge.contains("insufficient_scope")
                && challenge.contains("scope=\"openid\""),
            "{challenge}"
        );

        // One window later the nonce still works (the window before the current one)...
        for s in [&a, &b_srv] {
            s.clock.advance(60);
        }
        let (status, body, _) = post(
            &a,
            "/token",
            &[&proof(&a, &key, "POST", "/token", None, Some(&fresh))],
            Some(&auth),
            &cc,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // ... two windows later it is stale.
        for s in [&a, &b_srv] {
            s.clock.advance(61);
        }
        let (status, body, _) = post(
            &a,
            "/token",
            &[&proof(&a, &key, "POST", "/token", None, Some(&fresh))],
            Some(&auth),
            &cc,
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("use_dpop_nonce"))
        );
        a.stop().await;
        b_srv.stop().await;
    }
}

/// The current nonce, as a refused request hands it out.
async fn nonce_of(server: &Server, key: &PrivateKey, auth: &str) -> String {
    let (_, _, nonce) = post(
        server,
        "/token",
        &[&proof(server, key, "POST", "/token", None, None)],
        Some(auth),
        &[("grant_type", "client_credentials")],
    )
    .await;
    nonce.unwrap()
}

/// A client_credentials access token bound to `key`.
async fn body_token(server: &Server, key: &PrivateKey, nonce: &str, auth: &str) -> String {
    let (status, body, _) = post(
        server,
        "/token",
        &[&proof(server, key, "POST", "/token", None, Some(nonce))],
        Some(auth),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}
