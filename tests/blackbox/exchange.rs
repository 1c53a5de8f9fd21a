//! RFC 8693 token exchange, delegation: user → service A → service B gives a token whose
//! `act` nests B over A, which introspection shows; wider scopes, foreign audiences, another
//! client's actor token and impersonation (unless an administrator allowed the client) are
//! refused; revoking the user's grant ends the exchanged tokens too.

use latchkey::clock::Clock as _;
use latchkey::testdb::TestDb;
use serde_json::Value;

use crate::flow::{basic, browser, claims, fixture, introspect_as};
use crate::harness::{Env, Server};

pub const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const API_A: &str = "https://api.a.example";
const API_B: &str = "https://api.b.example";

pub struct Service {
    pub id: String,
    pub secret: String,
}

pub async fn service(env: &Env, name: &str, scopes: &[&str]) -> Service {
    service_with(env, name, scopes, &[]).await
}

pub async fn service_with(env: &Env, name: &str, scopes: &[&str], extra: &[&str]) -> Service {
    let mut args = vec![
        "client",
        "create",
        "--name",
        name,
        "--grant-type",
        "client_credentials",
        "--grant-type",
        EXCHANGE,
    ];
    for s in scopes {
        args.extend_from_slice(&["--scope", s]);
    }
    args.extend_from_slice(extra);
    let out = env.cli(&args, "").await.unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    Service {
        id: v["client_id"].as_str().unwrap().to_owned(),
        secret: v["client_secret"].as_str().unwrap().to_owned(),
    }
}

pub async fn token(server: &Server, s: &Service, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(server.url("/token"))
        .header("authorization", basic(&s.id, &s.secret))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

pub async fn own_token(server: &Server, s: &Service) -> String {
    let (status, body) = token(server, s, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn exchange(
    server: &Server,
    s: &Service,
    subject: &str,
    actor: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", AT),
    ];
    if let Some(a) = actor {
        form.extend_from_slice(&[("actor_token", a), ("actor_token_type", AT)]);
    }
    form.extend_from_slice(extra);
    token(server, s, &form).await
}

#[tokio::test]
async fn a_delegation_chain_nests_act_and_stays_within_the_subject_token() {
    for db in TestDb::all().await {
        let env = Env::new(
            db,
            &format!("[tokens]\nresources = [\"{API_A}\", \"{API_B}\"]\n"),
        );
        let f = fixture(
            &env,
            &[
                "--resource",
                API_A,
                "--scope",
                "openid",
                "--scope",
                "offline_access",
                "--scope",
                "orders:read",
                "--scope",
                "orders:write",
            ],
        )
        .await;
        // A serves API A and calls API B; B serves API B.
        let a = service_with(
            &env,
            "Service A",
            &["orders:read", "orders:write"],
            &["--serves", API_A, "--resource", API_B],
        )
        .await;
        let b = service_with(&env, "Service B", &["orders:read"], &["--serves", API_B]).await;
        let server = Server::start(env.config()).await;

        // The user's token, by the code flow.
        let tokens = crate::flow::code_flow_tokens(
            &browser(),
            &server,
            &f,
            &[("scope", "openid offline_access orders:read orders:write")],
        )
        .await;
        let app_at = tokens["access_token"].as_str().unwrap().to_owned();
        // The app calls API A with a token for it (RFC 8707, at a refresh).
        let (status, for_a) = token(
            &server,
            &Service {
                id: f.client_id.clone(),
                secret: f.client_secret.clone(),
            },
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                ("resource", API_A),
            ],
        )
        .await;
        assert_eq!(status, 200, "{for_a}");
        let user_at = for_a["access_token"].as_str().unwrap().to_owned();
        let user_rt = for_a["refresh_token"].as_str().unwrap().to_owned();

        // A token that is neither A's nor for a resource server A serves is not A's to
        // exchange: the app's own token, say, should A get hold of it.
        let a_own = own_token(&server, &a).await;
        let (_, e) = exchange(&server, &a, &app_at, Some(&a_own), &[]).await;
        assert_eq!(e["error"], "invalid_request", "{e}");

        // user → A, for API B.
        let (status, t1) =
            exchange(&server, &a, &user_at, Some(&a_own), &[("audience", API_B)]).await;
        assert_eq!(status, 200, "{t1}");
        assert_eq!(t1["issued_token_type"], AT);
        assert_eq!(t1["token_type"], "Bearer");
        assert!(t1.get("refresh_token").is_none());
        let t1 = t1["access_token"].as_str().unwrap().to_owned();
        let c1 = claims(&t1);
        assert_eq!(c1["sub"], f.user_id);
        assert_eq!(c1["act"], serde_json::json!({ "sub": a.id }));
        assert_eq!(c1["scope"], "orders:read orders:write");

        // A → B, narrowed to orders:read for API B.
        let b_own = own_token(&server, &b).await;
        let (status, t2) = exchange(
            &server,
            &b,
            &t1,
            Some(&b_own),
            &[("scope", "orders:read"), ("audience", API_B)],
        )
        .await;
        assert_eq!(status, 200, "{t2}");
        let t2 = t2["access_token"].as_str().unwrap().to_owned();
        let c2 = claims(&t2);
        assert_eq!(
            c2["act"],
            serde_json::json!({ "sub": b.id, "act": { "sub": a.id } })
        );
        assert_eq!(c2["aud"], API_B);
        assert_eq!(c2["sub"], f.user_id);

        // Introspection shows the chain.
        let (server_ref, f_ref) = (&server, &f);
        let introspect = |t: String| async move {
            introspect_as(server_ref, &f_ref.client_id, &f_ref.client_secret, &t).await
        };
        let seen = introspect(t2.clone()).await;
        assert_eq!(seen["active"], true);
        assert_eq!(seen["act"], c2["act"]);

        // Refusals.
        let (_, e) = exchange(&server, &b, &t1, Some(&b_own), &[("scope", "orders:write")]).await;
        assert_eq!(e["error"], "invalid_scope", "B may not ask orders:write");
        let (_, e) = exchange(
            &server,
            &a,
            &user_at,
            Some(&a_own),
            &[("scope", "orders:read admin")],
        )
        .await;
        assert_eq!(e["error"], "invalid_scope", "wider than the subject token");
        let (_, e) = exchange(
            &server,
            &b,
            &t1,
            Some(&b_own),
            &[("audience", "https://evil.example")],
        )
        .await;
        assert_eq!(e["error"], "invalid_target");
        // API A is known here, but B was not given it.
        let (_, e) = exchange(&server, &b, &t1, Some(&b_own), &[("audience", API_A)]).await;
        assert_eq!(e["error"], "invalid_target", "{e}");
        let (_, e) = exchange(&server, &b, &t1, Some(&b_own), &[("resource", API_A)]).await;
        assert_eq!(e["error"], "invalid_target", "{e}");
        // Several targets at once (RFC 8693 §2.1 allows asking): a token here has one
        // audience, so the answer is invalid_target (§2.2.2), not a generic invalid_request.
        let (_, e) = exchange(
            &server,
            &b,
            &t1,
            Some(&b_own),
            &[("audience", API_B), ("audience", API_A)],
        )
        .await;
        assert_eq!(e["error"], "invalid_target", "{e}");
        // Nor is the user's token for API A B's to exchange.
        let (_, e) = exchange(&server, &b, &user_at, Some(&b_own), &[]).await;
        assert_eq!(e["error"], "invalid_request", "{e}");
        let (_, e) = exchange(&server, &b, &t1, Some(&a_own), &[]).await;
        assert_eq!(
            e["error"], "invalid_request",
            "A's token is not B's to present"
        );
        let (_, e) = exchange(&server, &b, &t1, None, &[]).await;
        assert_eq!(e["error"], "invalid_request", "no impersonation for B");
        // A client an administrator allowed to impersonate gets a token naming no new actor.
        let c = {
            let out = env
                .cli(
                    &[
                        "client",
                        "create",
                        "--name",
                        "Service C",
                        "--grant-type",
                        EXCHANGE,
                        "--scope",
                        "orders:read",
                        "--allow-impersonation",
                        "--serves",
                        API_A,
                    ],
                    "",
                )
                .await
                .unwrap();
            let v: Value = serde_json::from_str(&out).unwrap();
            Service {
                id: v["client_id"].as_str().unwrap().to_owned(),
                secret: v["client_secret"].as_str().unwrap().to_owned(),
            }
        };
        let (status, t3) = exchange(&server, &c, &user_at, None, &[("scope", "orders:read")]).await;
        assert_eq!(status, 200, "{t3}");
        let c3 = claims(t3["access_token"].as_str().unwrap());
        assert_eq!(c3["sub"], f.user_id);
        assert_eq!(c3["client_id"], c.id);
        assert!(c3.get("act").is_none(), "{c3}");
        let (_, e) = exchange(&server, &b, "not-a-token", Some(&b_own), &[]).await;
        assert_eq!(e["error"], "invalid_request");
        // A client's own token is no one to act for.
        let (_, e) = exchange(&server, &b, &a_own, Some(&b_own), &[]).await;
        assert_eq!(e["error"], "invalid_request");

        // Revoking the user's grant ends the exchanged tokens too.
        let r = reqwest::Client::new()
            .post(server.url("/revoke"))
            .header("authorization", basic(&f.client_id, &f.client_secret))
            .form(&[("token", user_rt.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let seen = introspect(t2).await;
        assert_eq!(seen["active"], false);
        // Each exchange is in the audit log about the user, naming who acts.
        let exchanged: Vec<_> = server
            .audit(Some(&f.user_id))
            .await
            .into_iter()
            .filter(|e| e.kind == "token.exchanged")
            .collect();
        assert!(!exchanged.is_empty());
        // The chain user → A → B: B acts, over A.
        assert!(
            exchanged
                .iter()
                .any(|e| !e.details["act"]["act"]["sub"].is_null()),
            "{exchanged:?}"
        );
        server.stop().await;
    }
}

/// Serves `body` as JSON to every request on 127.0.0.1 (a trusted issuer's jwks_uri).
async fn serve_json(body: String) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/jwks.json")
}

pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const PARTNER: &str = "https://partner.example";
const SISTER: &str = "https://sister.example";

#[tokio::test]
async fn another_issuers_jwt_is_exchanged_for_a_linked_or_provisioned_account() {
    use crate::client_auth::client_key;
    for db in TestDb::all().await {
        let partner = client_key();
        let sister = client_key();
        let stranger = client_key();
        let sister_jwks = serve_json(sister.public_jwks.to_string()).await;
        let env = Env::new(db, "");
        let issuer = env.config().issuer.to_string();
        let f = fixture(&env, &[]).await;
        let a = service(&env, "Service A", &["orders:read", "orders:write"]).await;
        let b = service(&env, "Service B", &["orders:read"]).await;
        // Both issuers' tokens may be exchanged by A only.
        let trust = format!(
            "[[exchange.trusted_issuers]]\nissuer = \"{PARTNER}\"\njwks = '{}'\n\
             scopes = [\"orders:read\", \"orders:write\"]\nclients = [\"{a_id}\"]\n\
             [[exchange.trusted_issuers]]\nissuer = \"{SISTER}\"\njwks_uri = \"{sister_jwks}\"\n\
             danger_allow_insecure_jwks_uri = true\nscopes = [\"orders:read\"]\n\
             clients = [\"{a_id}\"]\nprovision = false\nlink_verified_email = true\n\
             typ = [\"at+jwt\", \"JWT\"]\n",
            partner.public_jwks,
            a_id = a.id,
        );
        let mut toml = std::fs::read_to_string(&env.config_path).unwrap();
        toml.push_str(&trust);
        std::fs::write(&env.config_path, toml).unwrap();
        let server = Server::start(env.config()).await;
        let a_own = own_token(&server, &a).await;
        let now = server.clock.now();
        let sign = |key: &crate::client_auth::ClientKey, extra: Value| {
            let mut c = serde_json::json!({
                "iss": PARTNER, "aud": issuer, "iat": now, "exp": now + 300,
            });
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            key.ring
                .sign(latchkey_jwks::Alg::Es256, "at+jwt", c.as_object().unwrap())
                .unwrap()
        };
        // The same, with another `typ` header: an id_token says `JWT`.
        let sign_typed = |key: &crate::client_auth::ClientKey, typ: &str, extra: Value| {
            let mut c = serde_json::json!({
                "iss": PARTNER, "aud": issuer, "iat": now, "exp": now + 300,
            });
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            key.ring
                .sign(latchkey_jwks::Alg::Es256, typ, c.as_object().unwrap())
                .unwrap()
        };
        let swap = |jwt: String, extra: Vec<(&'static str, &'static str)>| {
            let server = &server;
            let a = &a;
            let a_own = a_own.clone();
            async move {
                let mut form = vec![
                    ("grant_type", EXCHANGE.to_owned()),
                    ("subject_token", jwt),
                    ("subject_token_type", JWT.to_owned()),
                    ("actor_token", a_own),
                    ("actor_token_type", AT.to_owned()),
                ];
                form.extend(extra.into_iter().map(|(k, v)| (k, v.to_owned())));
                let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                token(server, a, &form).await
            }
        };
        let newcomer = serde_json::json!({
            "sub": "p-1", "email": "newcomer@example.org", "email_verified": true,
            "scope": "orders:read", "act": {"sub": "partner-gateway"},
        });

        // First sight of a subject with a verified address: an account is provisioned.
        let (status, t1) = swap(sign(&partner, newcomer.clone()), vec![]).await;
        assert_eq!(status, 200, "{t1}");
        assert_eq!(t1["issued_token_type"], AT);
        assert!(t1.get("refresh_token").is_none());
        let c1 = claims(t1["access_token"].as_str().unwrap());
        let provisioned = c1["sub"].as_str().unwrap().to_owned();
        assert_ne!(provisioned, "p-1", "sub is the account here, not theirs");
        assert_ne!(provisioned, f.user_id);
        assert_eq!(c1["iss"], issuer);
        assert_eq!(c1["scope"], "orders:read", "the token's own scope narrows");
        // The partner's actor is named in the partner's namespace, so marked with its iss.
        assert_eq!(
            c1["act"],
            serde_json::json!({"sub": a.id, "act": {"sub": "partner-gateway", "iss": PARTNER}})
        );
        let exp = c1["exp"].as_i64().unwrap();
        assert!(
            exp > now && exp <= now + 300,
            "never past the subject token"
        );
        assert!(t1["expires_in"].as_i64().unwrap() > 0);
        // Only the clients listed for the issuer may exchange its tokens.
        let b_own = own_token(&server, &b).await;
        let partner_token = sign(&partner, newcomer.clone());
        let (status, e) = token(
            &server,
            &b,
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", partner_token.as_str()),
                ("subject_token_type", JWT),
                ("actor_token", b_own.as_str()),
                ("actor_token_type", AT),
            ],
        )
        .await;
        assert_eq!(
            (status, e["error"].as_str()),
            (400, Some("invalid_request")),
            "{e}"
        );
        // The second sight finds the same account.
        let (_, again) = swap(sign(&partner, newcomer.clone()), vec![]).await;
        assert_eq!(
            claims(again["access_token"].as_str().unwrap())["sub"],
            provisioned
        );
        // Introspection shows the delegation; the account exists with the verified address.
        let seen = introspect_as(
            &server,
            &a.id,
            &a.secret,
            t1["access_token"].as_str().unwrap(),
        )
        .await;
        assert_eq!(seen["active"], true, "{seen}");
        assert_eq!(seen["act"], c1["act"]);

        // may_act is enforced: naming someone else refuses; A's id without our iss names
        // someone in the partner's namespace, not our client, and refuses too; A by our
        // issuer passes.
        let mut named = newcomer.clone();
        for may in [
            serde_json::json!({"sub": "someone-else", "iss": issuer}),
            serde_json::json!({"sub": a.id}),
        ] {
            named["may_act"] = may;
            let (status, e) = swap(sign(&partner, named.clone()), vec![]).await;
            assert_eq!(
                (status, e["error"].as_str()),
                (400, Some("invalid_request")),
                "{e}"
            );
        }
        named["may_act"] = serde_json::json!({"sub": a.id, "iss": issuer});
        let (status, ok) = swap(sign(&partner, named), vec![]).await;
        assert_eq!(status, 200, "{ok}");

        // A scope the token states as a list (scp) narrows too; a malformed one refuses.
        let mut listed = newcomer.clone();
        listed.as_object_mut().unwrap().remove("scope");
        listed["scp"] = serde_json::json!(["orders:write"]);
        let (status, ok) = swap(sign(&partner, listed.clone()), vec![]).await;
        assert_eq!(status, 200, "{ok}");
        assert_eq!(ok["scope"], "orders:write");
        listed["scope"] = serde_json::json!(["orders:write"]);
        listed.as_object_mut().unwrap().remove("scp");
        let (status, e) = swap(sign(&partner, listed), vec![]).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (400, Some("invalid_request")),
            "{e}"
        );

        // Wider than the token holds, or than the issuer may grant, is invalid_scope.
        let (_, e) = swap(
            sign(&partner, newcomer.clone()),
            vec![("scope", "orders:write")],
        )
        .await;
        assert_eq!(e["error"], "invalid_scope", "{e}");
        // A foreign audience for the new token is invalid_target.
        let (_, e) = swap(
            sign(&partner, newcomer.clone()),
            vec![("audience", "https://evil.example")],
        )
        .await;
        assert_eq!(e["error"], "invalid_target", "{e}");

        // Tokens that are not the partner's to give are invalid_request: altered after
        // signing, another key, another audience, expired (within the verification leeway
        // too), an issuer not trusted.
        let tampered = {
            let good = sign(&partner, newcomer.clone());
            let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
            let mut body = claims(&good);
            body["sub"] = serde_json::json!("p-someone-else");
            parts[1] = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                body.to_string(),
            );
            parts.join(".")
        };
        let refused = [
            tampered,
            sign(&stranger, newcomer.clone()),
            sign(&partner, {
                let mut c = newcomer.clone();
                c["aud"] = serde_json::json!("https://elsewhere.example");
                c
            }),
            sign(&partner, {
                let mut c = newcomer.clone();
                c["exp"] = serde_json::json!(now - 120);
                c
            }),
            sign(&partner, {
                let mut c = newcomer.clone();
                c["exp"] = serde_json::json!(now - 5);
                c
            }),
            sign(&partner, {
                let mut c = newcomer.clone();
                c["iss"] = serde_json::json!("https://unknown.example");
                c
            }),
            "not.a.jwt".to_owned(),
            // An id_token of the partner's (typ JWT, a nonce): by default only access tokens
            // (typ at+jwt) stand for a user here.
            sign_typed(&partner, "JWT", {
                let mut c = newcomer.clone();
                c["nonce"] = serde_json::json!("n-1");
                c
            }),
        ];
        for jwt in refused {
            let (status, e) = swap(jwt, vec![]).await;
            assert_eq!(
                (status, e["error"].as_str()),
                (400, Some("invalid_request")),
                "{e}"
            );
        }

        // No account is made from an unverified address, nor from one an account here has
        // (the partner may not take it over: linking by address is off for it).
        for claims_of in [
            serde_json::json!({"sub": "p-2", "email": "other@example.org", "email_verified": false}),
            serde_json::json!({"sub": "p-3", "email": f.email, "email_verified": true}),
            serde_json::json!({"sub": "p-4"}),
        ] {
            let (status, e) = swap(sign(&partner, claims_of), vec![]).await;
            assert_eq!(
                (status, e["error"].as_str()),
                (400, Some("invalid_request")),
                "{e}"
            );
        }

        // The sister issuer publishes its keys at a jwks_uri and may link by verified address,
        // but only to an account whose address was verified here too.
        env.cli(
            &[
                "user",
                "create",
                "--email",
                "unverified@example.org",
                "--password-stdin",
            ],
            &format!("{}\n", crate::flow::PASSWORD),
        )
        .await
        .unwrap();
        let unverified_here = serde_json::json!({
            "iss": SISTER, "sub": "s-0", "email": "unverified@example.org", "email_verified": true,
        });
        let (status, e) = swap(sign(&sister, unverified_here), vec![]).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (400, Some("invalid_request")),
            "{e}"
        );
        // Its subject with the fixture's (verified) address becomes that account.
        let sister_user = serde_json::json!({
            "iss": SISTER, "sub": "s-1", "email": f.email, "email_verified": true,
        });
        // The sister lists JWT among its token types: its plain JWTs pass.
        let (status, t2) = swap(sign_typed(&sister, "JWT", sister_user), vec![]).await;
        assert_eq!(status, 200, "{t2}");
        let c2 = claims(t2["access_token"].as_str().unwrap());
        assert_eq!(c2["sub"], f.user_id);
        assert_eq!(
            c2["scope"], "orders:read",
            "the sister may grant orders:read only"
        );
        assert_eq!(c2["act"], serde_json::json!({"sub": a.id}));

        // The provisioned account is a real one: disabling it ends its exchanged tokens.
        env.cli(&["user", "disable", "--email", "newcomer@example.org"], "")
            .await
            .unwrap();
        let seen = introspect_as(
            &server,
            &a.id,
            &a.secret,
            t1["access_token"].as_str().unwrap(),
        )
        .await;
        assert_eq!(seen["active"], false, "{seen}");
        let (_, e) = swap(sign(&partner, newcomer), vec![]).await;
        assert_eq!(e["error"], "invalid_request", "{e}");
        server.stop().await;
    }
}
