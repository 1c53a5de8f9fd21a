//! RFC 8693 token exchange, delegation: user → service A → service B gives a token whose
//! `act` nests B over A, which introspection shows; wider scopes, foreign audiences, another
//! client's actor token and impersonation (unless an administrator allowed the client) are
//! refused; revoking the user's grant ends the exchanged tokens too.

use latchkey::testdb::TestDb;
use serde_json::Value;

use crate::flow::{basic, browser, claims, fixture};
use crate::harness::{Env, Server};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const API_B: &str = "https://api.b.example";

struct Service {
    id: String,
    secret: String,
}

async fn service(env: &Env, name: &str, scopes: &[&str]) -> Service {
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
    let out = env.cli(&args, "").await.unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    Service {
        id: v["client_id"].as_str().unwrap().to_owned(),
        secret: v["client_secret"].as_str().unwrap().to_owned(),
    }
}

async fn token(server: &Server, s: &Service, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(server.url("/token"))
        .header("authorization", basic(&s.id, &s.secret))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn own_token(server: &Server, s: &Service) -> String {
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
        let env = Env::new(db, &format!("[tokens]\nresources = [\"{API_B}\"]\n"));
        let f = fixture(
            &env,
            &[
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
        let a = service(&env, "Service A", &["orders:read", "orders:write"]).await;
        let b = service(&env, "Service B", &["orders:read"]).await;
        let server = Server::start(env.config()).await;

        // The user's token, by the code flow.
        let tokens = crate::flow::code_flow_tokens(
            &browser(),
            &server,
            &f,
            &[("scope", "openid offline_access orders:read orders:write")],
        )
        .await;
        let user_at = tokens["access_token"].as_str().unwrap().to_owned();
        let user_rt = tokens["refresh_token"].as_str().unwrap().to_owned();

        // user → A.
        let a_own = own_token(&server, &a).await;
        let (status, t1) = exchange(&server, &a, &user_at, Some(&a_own), &[]).await;
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
        let introspect = |t: String| {
            reqwest::Client::new()
                .post(server.url("/introspect"))
                .header("authorization", basic(&f.client_id, &f.client_secret))
                .form(&[("token", t)])
                .send()
        };
        let seen: Value = introspect(t2.clone()).await.unwrap().json().await.unwrap();
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
        let seen: Value = introspect(t2).await.unwrap().json().await.unwrap();
        assert_eq!(seen["active"], false);
        server.stop().await;
    }
}
