//! Personal API keys (issue 17 item 2): made on the account page and by the CLI, shown once,
//! kept as a digest, scoped to a subset of what the user may grant, taken as Bearer tokens by
//! the resource APIs and at `/token` as an RFC 8693 subject token; revocation, expiry and
//! disabling the user take effect at once on two instances of one database; service accounts
//! hold keys too.

use latchkey::testdb::TestDb;
use serde_json::Value;

use crate::exchange::{EXCHANGE, Service, service_with, token};
use crate::flow::{account_page, claims, fixture, input_value, signed_in_browser};
use crate::harness::{Env, Server};

const ORDERS: &str = "https://orders.example";
const KEY_TYPE: &str = "urn:latchkey:params:oauth:token-type:api_key";

async fn devices(server: &Server, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.url("/api/devices"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn exchange_key(
    server: &Server,
    s: &Service,
    key: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", key),
        ("subject_token_type", KEY_TYPE),
    ];
    form.extend_from_slice(extra);
    token(server, s, &form).await
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

#[tokio::test]
async fn api_keys_are_shown_once_scoped_exchanged_and_revoked_everywhere_at_once() {
    for db in TestDb::all().await {
        let env = Env::new(db, &format!("[tokens]\nresources = [\"{ORDERS}\"]\n"));
        let f = fixture(&env, &[]).await;
        let a = Server::start(env.config()).await;
        let b = Server::start(env.config()).await;

        // The CLI makes a key: lk_ + 16 hex + _ + 48 hex, printed this once.
        let out = env
            .cli(
                &[
                    "api-key",
                    "create",
                    "--email",
                    &f.email,
                    "--name",
                    "ci",
                    "--scope",
                    "devices:read",
                ],
                "",
            )
            .await
            .unwrap();
        let made = json(&out);
        let k1 = made["key"].as_str().unwrap().to_owned();
        let id1 = made["id"].as_str().unwrap().to_owned();
        assert!(k1.starts_with(&format!("lk_{id1}_")), "{k1}");
        assert_eq!(k1.len(), 3 + 16 + 1 + 48);

        // Scopes are a subset of what the user may grant: no sign-in scopes, no admin API for
        // someone who is not an administrator, nothing malformed.
        for scope in ["openid", "admin:read", "streams:internal", "", "a\"b"] {
            let r = env
                .cli(
                    &[
                        "api-key", "create", "--email", &f.email, "--name", "x", "--scope", scope,
                    ],
                    "",
                )
                .await;
            assert!(r.is_err(), "{scope} was accepted");
        }
        // A lifetime of nothing is refused, not taken as "no expiry".
        let r = env
            .cli(
                &[
                    "api-key",
                    "create",
                    "--email",
                    &f.email,
                    "--name",
                    "x",
                    "--scope",
                    "devices:read",
                    "--expires-in",
                    "0s",
                ],
                "",
            )
            .await;
        assert!(r.is_err());

        // The account page makes one for a resource, shows it once, then lists it without it.
        let browser = signed_in_browser(&a, &f.email).await;
        let page = account_page(&browser, &a).await;
        let csrf = input_value(&page, "csrf_token").unwrap();
        let r = browser
            .post(a.url("/account/api-keys"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("name", "orders script"),
                ("scope", "orders:read"),
                ("resource", ORDERS),
                ("expires_in_days", "30"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let html = r.text().await.unwrap();
        let start = html
            .find("id=\"new-api-key\">")
            .expect("the new key is shown")
            + 17;
        let k2 = html[start..start + 68].to_owned();
        assert!(k2.starts_with("lk_"), "{k2}");
        let page = account_page(&browser, &a).await;
        assert!(page.contains("orders script"));
        assert!(!page.contains(&k2), "the key is shown only once");
        assert!(!page.contains(&k2[20..]), "nor its secret");
        let r = browser
            .post(a.url("/account/api-keys"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("name", "too much"),
                ("scope", "admin:write"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("administrators only"));

        // At rest: the id and a pepper digest, never the key or its secret.
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&env.config().database_url())
            .await
            .unwrap();
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, secret_digest, scope FROM api_keys ORDER BY created_at")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(rows.len(), 2);
        for (id, digest, _) in &rows {
            for key in [&k1, &k2] {
                assert!(!digest.contains(&key[20..]), "a secret is stored");
            }
            assert!(digest.contains('$') && !digest.contains(id.as_str()));
        }

        // A Bearer at the resource APIs, on either instance; the scope it lacks is refused.
        assert_eq!(devices(&a, &k1).await.status(), 200);
        assert_eq!(devices(&b, &k1).await.status(), 200);
        let r = reqwest::Client::new()
            .get(a.url("/api/streams"))
            .bearer_auth(&k1)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("insufficient_scope")
        );
        // A key for another resource is not taken here.
        assert_eq!(devices(&a, &k2).await.status(), 401);
        // A wrong secret: 401, and audited.
        let mut wrong = k1.clone();
        wrong.pop();
        wrong.push(if k1.ends_with('0') { '1' } else { '0' });
        let r = devices(&a, &wrong).await;
        assert_eq!(r.status(), 401);
        assert_eq!(a.audited("api_key.failure", None).await, 1);
        // Its last use is listed, with the address.
        let out = env
            .cli(&["api-key", "list", "--email", &f.email], "")
            .await
            .unwrap();
        let listed: Vec<Value> = out.lines().map(json).collect();
        let one = listed.iter().find(|k| k["id"] == id1.as_str()).unwrap();
        assert_eq!(one["last_used_ip"], "127.0.0.1");
        assert!(one["last_used_at"].as_i64().is_some());
        assert!(one.get("secret_digest").is_none() && !out.contains(&k1));

        // At /token: the key for a resource gives a short-lived JWT for that resource.
        let svc = service_with(
            &env,
            "Orders script runner",
            &["orders:read"],
            &["--resource", ORDERS],
        )
        .await;
        let (status, body) = exchange_key(&a, &svc, &k2, &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["issued_token_type"],
            "urn:ietf:params:oauth:token-type:access_token"
        );
        let c = claims(body["access_token"].as_str().unwrap());
        assert_eq!(c["aud"], ORDERS);
        assert_eq!(c["sub"], f.user_id.as_str());
        assert_eq!(c["scope"], "orders:read");
        assert!(c.get("act").is_none(), "the key's holder acts as the user");
        assert!(body["expires_in"].as_i64().unwrap() <= 600);
        let (status, body) = exchange_key(&b, &svc, &k2, &[("resource", ORDERS)]).await;
        assert_eq!(status, 200, "{body}");
        // Another resource, a scope the key lacks, a key that is not one: refused.
        let (status, body) =
            exchange_key(&a, &svc, &k2, &[("resource", "https://other.example")]).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_target");
        let (status, body) = exchange_key(&a, &svc, &k1, &[("scope", "orders:read")]).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_scope");
        let (status, body) = exchange_key(&a, &svc, &wrong, &[]).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_request");

        // Revoked on one instance: refused by the other at once.
        env.cli(
            &["api-key", "revoke", "--email", &f.email, "--key", &id1],
            "",
        )
        .await
        .unwrap();
        assert_eq!(devices(&b, &k1).await.status(), 401);
        assert_eq!(devices(&a, &k1).await.status(), 401);

        // An expiry: good until then, refused by both instances after.
        let out = env
            .cli(
                &[
                    "api-key",
                    "create",
                    "--email",
                    &f.email,
                    "--name",
                    "short",
                    "--scope",
                    "devices:read",
                    "--expires-in",
                    "60s",
                ],
                "",
            )
            .await
            .unwrap();
        let k3 = json(&out)["key"].as_str().unwrap().to_owned();
        assert_eq!(devices(&a, &k3).await.status(), 200);
        // (the CLI read the system clock; the servers' clocks started a little earlier)
        a.clock.advance(120);
        b.clock.advance(120);
        assert_eq!(devices(&a, &k3).await.status(), 401);
        assert_eq!(devices(&b, &k3).await.status(), 401);

        // Disabling the user stops their keys at once; deleting them deletes the keys.
        env.cli(&["user", "disable", "--email", &f.email], "")
            .await
            .unwrap();
        let (status, _) = exchange_key(&b, &svc, &k2, &[]).await;
        assert_eq!(status, 400);
        env.cli(&["user", "enable", "--email", &f.email], "")
            .await
            .unwrap();
        let (status, body) = exchange_key(&b, &svc, &k2, &[]).await;
        assert_eq!(status, 200, "{body}");
        env.cli(&["user", "delete", "--email", &f.email], "")
            .await
            .unwrap();
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 0);
        let (status, _) = exchange_key(&a, &svc, &k2, &[]).await;
        assert_eq!(status, 400);
        pool.close().await;
        a.stop().await;
        b.stop().await;
    }
}

#[tokio::test]
async fn service_accounts_are_owned_by_an_administrator_and_hold_keys() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        env.cli(
            &["user", "create", "--email", "root@example.com", "--admin"],
            "",
        )
        .await
        .unwrap();
        // Only an administrator owns one.
        assert!(
            env.cli(
                &[
                    "service-account",
                    "create",
                    "--name",
                    "deploy",
                    "--owner",
                    &f.email
                ],
                "",
            )
            .await
            .is_err()
        );
        let out = env
            .cli(
                &[
                    "service-account",
                    "create",
                    "--name",
                    "deploy bot",
                    "--owner",
                    "root@example.com",
                ],
                "",
            )
            .await
            .unwrap();
        let id = json(&out)["id"].as_str().unwrap().to_owned();
        let out = env
            .cli(
                &[
                    "api-key",
                    "create",
                    "--id",
                    &id,
                    "--name",
                    "deploy",
                    "--scope",
                    "devices:read",
                ],
                "",
            )
            .await
            .unwrap();
        let key = json(&out)["key"].as_str().unwrap().to_owned();
        let server = Server::start(env.config()).await;
        let r = devices(&server, &key).await;
        assert_eq!(r.status(), 200);
        // It is listed as a service account, and cannot sign in.
        let out = env.cli(&["user", "show", "--id", &id], "").await.unwrap();
        assert!(out.contains("\"service_owner\""), "{out}");
        server.stop().await;
    }
}
