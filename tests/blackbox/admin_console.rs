//! The admin console (issue 16 item 3), without a browser (the browser test drives it in
//! Chromium): administrators only, forms CSRF-checked and refused after a stale sign-in,
//! changes audited with the administrator as actor.

use latchkey::clock::Clock as _;
use latchkey::testdb::TestDb;

use crate::flow::{fixture, input_value, signed_in_browser};
use crate::harness::{Env, Server};

#[tokio::test]
async fn the_console_is_for_recently_signed_in_administrators_only() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let ada = fixture(&env, &[]).await;
        crate::flow::create_root(&env).await;
        let server = Server::start(env.config()).await;

        // Signed out: to sign in. Not an administrator: 403.
        let r = crate::flow::browser()
            .get(server.url("/admin/users"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(crate::flow::location(&r), "/login");
        let user = signed_in_browser(&server, &ada.email).await;
        let r = user.get(server.url("/admin/users")).send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("Only administrators"));

        let root = signed_in_browser(&server, "root@example.com").await;
        let page = root
            .get(server.url("/admin/users?search=ada"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains(&ada.email), "{page}");
        let page = root
            .get(server.url(&format!("/admin/users/{}", ada.user_id)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("id=\"session-count\">1<"),
            "Ada's session is listed"
        );
        let csrf = input_value(&page, "csrf_token").unwrap();
        let end = format!("/admin/users/{}/sessions/revoke", ada.user_id);
        // Without the CSRF token: refused, nothing ends.
        let r = root
            .post(server.url(&end))
            .form(&[("x", "y")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = user.get(server.url("/account")).send().await.unwrap();
        assert_eq!(r.status(), 200, "still signed in");
        // A stale sign-in: refused.
        server.clock.advance(11 * 60);
        let r = root
            .post(server.url(&end))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("sign in again"));
        // Fresh: done, and Ada is signed out.
        let root = signed_in_browser(&server, "root@example.com").await;
        let page = root
            .get(server.url(&format!("/admin/users/{}", ada.user_id)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = input_value(&page, "csrf_token").unwrap();
        let r = root
            .post(server.url(&end))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let r = user.get(server.url("/account")).send().await.unwrap();
        assert_eq!(r.status(), 303, "Ada is signed out");
        assert_eq!(crate::flow::location(&r), "/login");
        let ended: Vec<_> = server
            .audit(Some(&ada.user_id))
            .await
            .into_iter()
            .filter(|e| e.kind == "session.ended" && e.actor.starts_with("admin:"))
            .collect();
        assert_eq!(ended.len(), 1);

        // Clients: rotating a secret shows the new one once.
        let page = root
            .get(server.url(&format!("/admin/clients/{}", ada.client_id)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = input_value(&page, "csrf_token").unwrap();
        let r = root
            .post(server.url(&format!("/admin/clients/{}/rotate-secret", ada.client_id)))
            .form(&[("csrf_token", csrf.as_str()), ("grace", "0")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        assert!(page.contains("id=\"new-secret\""));
        assert!(page.contains("The old secret no longer works."));
        // Sessions: every live one listed, one ended by its button.
        let page = root
            .get(server.url("/admin/sessions"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("root@example.com"), "{page}");
        let csrf = input_value(&page, "csrf_token").unwrap();
        let other = signed_in_browser(&server, &ada.email).await;
        let sid = server
            .state
            .store
            .list_sessions(Some(&ada.user_id), server.clock.now(), 10)
            .await
            .unwrap()[0]
            .sid
            .clone();
        let r = root
            .post(server.url(&format!("/admin/sessions/{sid}/end")))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let r = other.get(server.url("/account")).send().await.unwrap();
        assert_eq!(r.status(), 303, "that session ended");
        assert_eq!(crate::flow::location(&r), "/login");
        for path in [
            "/admin/keys",
            "/admin/audit?type=client.secret_rotated",
            "/admin/clients",
        ] {
            let r = root.get(server.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
        }
        server.stop().await;
    }
}

/// A user's API keys on the console's user page (issue 17): listed without their secret,
/// revocable; the key then stops working.
#[tokio::test]
async fn the_console_lists_and_revokes_a_users_api_keys() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let ada = fixture(&env, &[]).await;
        crate::flow::create_root(&env).await;
        let out = env
            .cli(
                &[
                    "api-key",
                    "create",
                    "--email",
                    &ada.email,
                    "--name",
                    "nightly export",
                    "--scope",
                    "devices:read",
                ],
                "",
            )
            .await
            .unwrap();
        let made: serde_json::Value = serde_json::from_str(&out).unwrap();
        let key = made["key"].as_str().unwrap().to_owned();
        let id = made["id"].as_str().unwrap().to_owned();
        let server = Server::start(env.config()).await;
        let root = signed_in_browser(&server, "root@example.com").await;
        let page = root
            .get(server.url(&format!("/admin/users/{}", ada.user_id)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("nightly export"), "{page}");
        assert!(!page.contains(&key[20..]), "no secret on the page");
        let csrf = input_value(&page, "csrf_token").unwrap();
        let r = root
            .post(server.url(&format!(
                "/admin/users/{}/api-keys/{id}/revoke",
                ada.user_id
            )))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let r = reqwest::Client::new()
            .get(server.url("/api/devices"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(
            server.audited("api_key.revoked", Some(&ada.user_id)).await,
            1
        );
        server.stop().await;
    }
}
