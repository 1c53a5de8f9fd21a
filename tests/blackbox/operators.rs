//! The operator's command line (issue 16 item 4) and account deletion by the user (item 5):
//! every command prints JSON (lists as JSON lines) and leaves its audit event; a deleted
//! account leaves nothing of the user but an audit event naming the id.

use latchkey::testdb::TestDb;
use serde_json::Value;

use crate::flow::{
    PASSWORD, account_page, basic, browser, code_flow_tokens, fixture, input_value,
    signed_in_browser,
};
use crate::harness::{Env, Server, http};

fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn cli_json(env: &Env, args: &[&str]) -> Value {
    let out = env
        .cli(args, "")
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    serde_json::from_str(&out).unwrap()
}

async fn token_with(server: &Server, id: &str, secret: &str) -> u16 {
    http()
        .post(server.url("/token"))
        .header("authorization", basic(id, secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_cli_lists_shows_changes_and_deletes_users_clients_and_sessions() {
    for db in TestDb::all().await {
        let env = Env::new(db, "[clients]\ncache_ttl = \"0s\"\n");
        let f = fixture(&env, &[]).await;
        let service = cli_json(
            &env,
            &[
                "client",
                "create",
                "--name",
                "Billing",
                "--grant-type",
                "client_credentials",
                "--scope",
                "orders:read",
            ],
        )
        .await;
        let sid = service["client_id"].as_str().unwrap().to_owned();
        let old_secret = service["client_secret"].as_str().unwrap().to_owned();
        let server = Server::start(env.config()).await;

        // Users: list (search), show, set-admin.
        let out = env
            .cli(&["user", "list", "--search", "ADA@"], "")
            .await
            .unwrap();
        let found = lines(&out);
        assert_eq!(found.len(), 1, "{out}");
        assert_eq!(found[0]["id"], f.user_id.as_str());
        assert!(
            env.cli(&["user", "list", "--search", "%"], "")
                .await
                .unwrap()
                .is_empty()
        );
        let shown = cli_json(&env, &["user", "show", "--email", &f.email]).await;
        assert_eq!(
            (shown["password"].as_bool(), shown["admin"].as_bool()),
            (Some(true), Some(false))
        );
        cli_json(&env, &["user", "set-admin", "--id", &f.user_id]).await;
        assert_eq!(
            cli_json(&env, &["user", "show", "--id", &f.user_id]).await["admin"],
            true
        );

        // Clients: list, show, update.
        let out = env.cli(&["client", "list"], "").await.unwrap();
        let ids: Vec<Value> = lines(&out).iter().map(|c| c["client_id"].clone()).collect();
        assert!(
            ids.contains(&Value::from(f.client_id.as_str()))
                && ids.contains(&Value::from(sid.as_str()))
        );
        let updated = cli_json(
            &env,
            &[
                "client",
                "update",
                &f.client_id,
                "--name",
                "Renamed",
                "--first-party",
                "true",
            ],
        )
        .await;
        assert_eq!(
            (
                updated["client_name"].as_str(),
                updated["first_party"].as_bool()
            ),
            (Some("Renamed"), Some(true))
        );
        assert_eq!(
            cli_json(&env, &["client", "show", &f.client_id]).await["client_name"],
            "Renamed"
        );
        assert!(
            env.cli(&["client", "update", &f.client_id], "")
                .await
                .is_err(),
            "nothing to change"
        );

        // Rotate with a grace: both secrets work until it ends, then only the new one.
        assert_eq!(token_with(&server, &sid, &old_secret).await, 200);
        let rotated = cli_json(&env, &["client", "rotate-secret", &sid, "--grace", "1h"]).await;
        let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
        assert!(rotated["previous_secret_expires_at"].is_i64());
        assert_eq!(token_with(&server, &sid, &old_secret).await, 200);
        assert_eq!(token_with(&server, &sid, &new_secret).await, 200);
        // The CLI dated the grace by the system clock, some seconds after the server's manual
        // clock started: past the hour by a margin, or a slow machine still finds it running.
        server.clock.advance(3600 + 120);
        assert_eq!(token_with(&server, &sid, &old_secret).await, 401);
        assert_eq!(token_with(&server, &sid, &new_secret).await, 200);
        // Without a grace the old one stops at once.
        let again = cli_json(&env, &["client", "rotate-secret", &sid]).await;
        assert!(again["previous_secret_expires_at"].is_null());
        assert_eq!(token_with(&server, &sid, &new_secret).await, 401);
        let newest = again["client_secret"].as_str().unwrap();
        assert_eq!(token_with(&server, &sid, newest).await, 200);
        assert!(
            env.cli(&["client", "rotate-secret", "no-such-client"], "")
                .await
                .is_err()
        );

        // Sessions: list, revoke one, revoke a user's all.
        let b1 = signed_in_browser(&server, &f.email).await;
        let _b2 = signed_in_browser(&server, &f.email).await;
        let out = env
            .cli(&["session", "list", "--user", &f.user_id], "")
            .await
            .unwrap();
        let live = lines(&out);
        assert_eq!(live.len(), 2, "{out}");
        let one = live[0]["sid"].as_str().unwrap();
        assert_eq!(
            cli_json(&env, &["session", "revoke", one]).await["ended"],
            true
        );
        let out = env
            .cli(&["session", "list", "--user", &f.user_id], "")
            .await
            .unwrap();
        assert_eq!(lines(&out).len(), 1);
        assert_eq!(
            cli_json(&env, &["session", "revoke", "--user", &f.user_id]).await["ended"],
            1
        );
        let r = b1.get(server.url("/account")).send().await.unwrap();
        assert_ne!(r.status(), 200, "signed out");

        // Delete the client, then the user.
        cli_json(&env, &["client", "delete", &sid]).await;
        assert_eq!(token_with(&server, &sid, newest).await, 401);
        // Never the last enabled administrator (Ada is the only one).
        for args in [
            vec!["user", "delete", "--email", f.email.as_str()],
            vec!["user", "set-admin", "--email", f.email.as_str(), "--off"],
            vec!["user", "disable", "--email", f.email.as_str()],
        ] {
            let e = env.cli(&args, "").await.unwrap_err();
            assert!(e.contains("last enabled administrator"), "{args:?}: {e}");
        }
        env.cli(
            &["user", "create", "--email", "root@example.com", "--admin"],
            "",
        )
        .await
        .unwrap();
        cli_json(&env, &["user", "delete", "--email", &f.email]).await;
        assert!(
            env.cli(&["user", "show", "--id", &f.user_id], "")
                .await
                .is_err()
        );

        let events = server.audit(None).await;
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        for kind in [
            "user.updated",
            "client.updated",
            "client.secret_rotated",
            "client.deleted",
            "session.ended",
            "user.deleted",
        ] {
            assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
        }
        let dump = serde_json::to_string(&events).unwrap();
        for secret in [old_secret.as_str(), new_secret.as_str(), newest] {
            assert!(!dump.contains(secret));
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn a_user_deletes_their_account_and_nothing_of_it_remains() {
    for db in TestDb::all().await {
        let env = Env::new(
            db,
            "[backchannel_logout]\ndanger_allow_insecure_uri = true\n",
        );
        let f = fixture(
            &env,
            &[
                "--backchannel-logout-uri",
                "http://127.0.0.1:9/backchannel",
                "--grant-type",
                "authorization_code",
                "--grant-type",
                "refresh_token",
            ],
        )
        .await;
        let server = Server::start(env.config()).await;
        let b = browser();
        let tokens = code_flow_tokens(&b, &server, &f, &[]).await;
        let at = tokens["access_token"].as_str().unwrap().to_owned();
        let rt = tokens["refresh_token"].as_str().unwrap().to_owned();

        // Only after a recent sign-in, and with the account's own address typed.
        let owner = signed_in_browser(&server, &f.email).await;
        let page = account_page(&owner, &server).await;
        assert!(page.contains("Delete your account"));
        let post = |b: &reqwest::Client, confirm: &str| {
            let (b, server, confirm) = (b.clone(), &server, confirm.to_owned());
            async move {
                let csrf = input_value(&account_page(&b, server).await, "csrf_token").unwrap();
                b.post(server.url("/account/delete"))
                    .form(&[("csrf_token", csrf.as_str()), ("confirm", confirm.as_str())])
                    .send()
                    .await
                    .unwrap()
            }
        };
        let r = post(&owner, "someone@example.com").await;
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("Type your own email address")
        );
        server.clock.advance(11 * 60);
        let r = post(&owner, &f.email).await;
        assert!(r.text().await.unwrap().contains("sign in again"));
        let fresh = signed_in_browser(&server, &f.email).await;
        let r = post(&fresh, &f.email.to_uppercase()).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Your account is deleted"));

        // Nothing of the user remains; what was issued stops working.
        let pool = sqlx::AnyPool::connect(&env.config().database_url())
            .await
            .unwrap();
        for table in [
            "users",
            "sessions",
            "consents",
            "passkeys",
            "totp",
            "recovery_codes",
            "devices",
            "streams",
            "refresh_tokens",
            "authorization_codes",
            "email_links",
            "grants",
        ] {
            let col = if table == "users" { "id" } else { "user_id" };
            let n: i64 =
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE {col} = $1"))
                    .bind(&f.user_id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!(n, 0, "{table}");
        }
        pool.close().await;
        let r = http()
            .post(server.url("/token"))
            .header("authorization", basic(&f.client_id, &f.client_secret))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = http()
            .get(server.url("/userinfo"))
            .bearer_auth(&at)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = http()
            .post(server.url("/introspect"))
            .header("authorization", basic(&f.client_id, &f.client_secret))
            .form(&[("token", at.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["active"], false);
        // The application is told (a back-channel logout is queued for the session it used).
        let queued = server
            .state
            .store
            .logout_deliveries(&f.client_id)
            .await
            .unwrap();
        assert!(!queued.is_empty());
        // Signing in again fails like for any unknown address.
        let again = browser();
        let login = again
            .get(server.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r = crate::flow::sign_in(&again, &server, &login, &f.email, PASSWORD).await;
        assert_eq!(r.status(), 401);
        // The event that remains names the id only.
        let deleted: Vec<_> = server
            .audit(Some(&f.user_id))
            .await
            .into_iter()
            .filter(|e| e.kind == "user.deleted")
            .collect();
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0].actor, format!("user:{}", f.user_id));
        let text = serde_json::to_string(&deleted[0]).unwrap();
        assert!(!text.contains(&f.email) && !text.contains("Ada"), "{text}");
        server.stop().await;
    }
}
