//! The audit log (issue 16): security-relevant actions through the pages, the protocol and the
//! command line each leave one event with who, about whom, which client, from where and the
//! outcome; no event holds a password, code, token or secret; the JSON-lines sink gets the
//! same events; `latchkey audit tail` prints them, filtered.
//! (Second factors, passkeys, password resets and token exchange are checked where those
//! flows are tested: totp.rs, passkeys.rs, reset.rs, exchange.rs; stream-key reveals in
//! streams.rs.)

use latchkey::testdb::TestDb;
use serde_json::{Value, json};

use crate::flow::{
    PASSWORD, REDIRECT, VERIFIER, account_page, authorize_url, basic, browser, browser_flow,
    fixture, input_value, query_param, signed_in_browser, token_request,
};
use crate::harness::{Env, Server, http};

#[tokio::test]
async fn security_relevant_actions_are_audited_and_no_event_holds_a_secret() {
    for db in TestDb::all().await {
        let sink_dir = tempfile::tempdir().unwrap();
        let sink = sink_dir.path().join("audit.jsonl");
        let env = Env::new(
            db,
            &format!(
                "[audit]\nsink = {:?}\n[tokens]\nrefresh_retry_grace = \"0s\"\nresources = [\"https://api.example.com\"]\n",
                sink.display().to_string()
            ),
        );
        // CLI: user.created, client.created.
        let f = fixture(
            &env,
            &[
                "--grant-type",
                "authorization_code",
                "--grant-type",
                "refresh_token",
            ],
        )
        .await;
        let mut secrets: Vec<String> = vec![PASSWORD.into(), f.client_secret.clone()];
        let server = Server::start(env.config()).await;
        let uid = f.user_id.as_str();

        // signin.failure: a wrong password (the account is named), an unknown address (not).
        for email in [f.email.as_str(), "nobody@example.com"] {
            let b = browser();
            let page = b
                .get(server.url("/login"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let r = crate::flow::sign_in(&b, &server, &page, email, "wrong horse battery").await;
            assert_eq!(r.status(), 401);
        }
        secrets.push("wrong horse battery".into());
        // Addresses typed at a failed sign-in are not kept (people type passwords there).
        secrets.push("nobody@example.com".into());
        // A client that fails to authenticate.
        let r = http()
            .post(server.url("/token"))
            .header(
                "authorization",
                basic(&f.client_id, "not-the-secret-at-all"),
            )
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        secrets.push("not-the-secret-at-all".into());

        // signin.success, consent.given, then code.replayed and token.reuse_detected.
        let b = browser();
        let back = browser_flow(
            &b,
            &server,
            &authorize_url(&server, &f.client_id, &[]),
            &f.email,
        )
        .await;
        let code = query_param(&back, "code").unwrap();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        let t: Value = token_request(&server, &f, &form)
            .await
            .json()
            .await
            .unwrap();
        let rt = t["refresh_token"].as_str().unwrap().to_owned();
        secrets.extend([
            code.clone(),
            rt.clone(),
            t["access_token"].as_str().unwrap().into(),
        ]);
        secrets.push(t["id_token"].as_str().unwrap().into());
        let refresh = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ];
        let t2: Value = token_request(&server, &f, &refresh)
            .await
            .json()
            .await
            .unwrap();
        secrets.push(t2["refresh_token"].as_str().unwrap_or_default().into());
        assert_eq!(token_request(&server, &f, &refresh).await.status(), 400);

        // The code again, after the family is gone: still refused, and recorded.
        assert_eq!(token_request(&server, &f, &form).await.status(), 400);

        // password.changed, consent.revoked, session.ended (one, then everywhere).
        let owner = signed_in_browser(&server, &f.email).await;
        let csrf = input_value(&account_page(&owner, &server).await, "csrf_token").unwrap();
        let new_password = "a much better passphrase 42";
        secrets.push(new_password.into());
        let r = owner
            .post(server.url("/account/password"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("current_password", PASSWORD),
                ("new_password", new_password),
            ])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success() || r.status().is_redirection());
        let csrf = input_value(&account_page(&owner, &server).await, "csrf_token").unwrap();
        let r = owner
            .post(server.url(&format!("/account/apps/{}/revoke", f.client_id)))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let csrf = input_value(&account_page(&owner, &server).await, "csrf_token").unwrap();
        let r = owner
            .post(server.url("/account/sessions/revoke-all"))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);

        // CLI: user.disabled, user.enabled, key.rotated, client.updated.
        env.cli(&["user", "disable", "--email", &f.email], "")
            .await
            .unwrap();
        {
            let b = browser();
            let page = b
                .get(server.url("/login"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let r = crate::flow::sign_in(&b, &server, &page, &f.email, new_password).await;
            assert_eq!(r.status(), 401, "disabled");
        }
        for args in [
            vec!["user", "enable", "--email", f.email.as_str()],
            vec!["keys", "rotate", "--alg", "ES256"],
            vec![
                "client",
                "set-resources",
                f.client_id.as_str(),
                "--resource",
                "https://api.example.com",
            ],
        ] {
            env.cli(&args, "").await.unwrap();
        }

        // registration_token.used, client.created and client.deleted through RFC 7591/7592.
        let out = env
            .cli(&["registration-token", "create", "--max-uses", "1"], "")
            .await
            .unwrap();
        let iat = serde_json::from_str::<Value>(&out).unwrap()["initial_access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let c: Value = http()
            .post(server.url("/register"))
            .bearer_auth(&iat)
            .json(&json!({"redirect_uris": [REDIRECT], "client_name": "Registered"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rat = c["registration_access_token"].as_str().unwrap().to_owned();
        let registered = c["client_id"].as_str().unwrap().to_owned();
        secrets.extend([
            iat,
            rat.clone(),
            c["client_secret"].as_str().unwrap().into(),
        ]);
        let r = http()
            .delete(server.url(&format!("/register/{registered}")))
            .bearer_auth(&rat)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);

        let events = server.audit(None).await;
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        for kind in [
            "user.created",
            "client.created",
            "signin.failure",
            "signin.success",
            "consent.given",
            "code.replayed",
            "token.reuse_detected",
            "password.changed",
            "consent.revoked",
            "session.ended",
            "user.disabled",
            "user.enabled",
            "key.rotated",
            "client.updated",
            "registration_token.used",
            "client.deleted",
            "client.auth_failure",
        ] {
            assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
        }
        let failures: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "signin.failure")
            .collect();
        assert_eq!(failures.len(), 3);
        let disabled = failures
            .iter()
            .find(|e| e.details["reason"] == "disabled_account")
            .unwrap();
        assert_eq!(disabled.subject.as_deref(), Some(uid));
        let wrong = failures
            .iter()
            .find(|e| e.details["reason"] == "wrong_password")
            .unwrap();
        assert_eq!(wrong.subject.as_deref(), Some(uid));
        let unknown = failures
            .iter()
            .find(|e| e.details["reason"] == "unknown_account")
            .unwrap();
        assert_eq!(unknown.subject, None, "an unknown address names no one");
        assert!(
            failures
                .iter()
                .all(|e| e.outcome == "failure" && e.ip.is_some())
        );
        let replay = events.iter().find(|e| e.kind == "code.replayed").unwrap();
        assert_eq!(
            (replay.subject.as_deref(), replay.client_id.as_deref()),
            (Some(uid), Some(f.client_id.as_str()))
        );
        let consent = events.iter().find(|e| e.kind == "consent.given").unwrap();
        assert_eq!(consent.actor, format!("user:{uid}"));
        let created = events.iter().find(|e| e.kind == "user.created").unwrap();
        assert_eq!(created.actor, "cli");

        // No event holds a secret, in the database or the sink.
        let stored = serde_json::to_string(&events).unwrap();
        let shipped = std::fs::read_to_string(&sink).unwrap();
        for s in secrets.iter().filter(|s| s.len() >= 8) {
            assert!(!stored.contains(s.as_str()), "an event holds a secret");
            assert!(!shipped.contains(s.as_str()), "the sink holds a secret");
        }
        // The sink has the server's events as JSON lines (the CLI's go to the database and
        // the file too).
        let lines: Vec<Value> = shipped
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), events.len(), "one line per event");

        // `audit tail` prints them as JSON lines, filtered.
        let out = env
            .cli(
                &["audit", "tail", "--user", uid, "--type", "signin.failure"],
                "",
            )
            .await
            .unwrap();
        let tailed: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(tailed.len(), 2, "wrong password, disabled account: {out}");
        assert_eq!(tailed[0]["type"], "signin.failure");
        let out = env
            .cli(&["audit", "tail", "--lines", "3"], "")
            .await
            .unwrap();
        assert_eq!(out.lines().count(), 3);
        server.stop().await;
    }
}
