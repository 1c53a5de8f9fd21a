//! Password reset by email through the file outbox: the same answer for known and unknown
//! addresses, a link that works once and signs no one in, a new password that must not be a
//! common one, every session ended, the second factor still asked, and requests throttled.

use std::path::Path;
use std::time::Duration;

use latchkey::clock::Clock as _;
use latchkey::testdb::TestDb;

use crate::flow::{
    PASSWORD, browser, fixture, input_value, location, sign_in, signed_in_browser, unescape,
};
use crate::harness::{Env, Server};
use crate::totp::{enrol, second_factor};

const NEW_PASSWORD: &str = "a brand new passphrase";

/// The messages in the outbox, oldest first, once there are `n` (mail leaves in the
/// background).
pub async fn wait_for_mail(dir: &Path, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        if names.len() >= n {
            names.sort();
            return names
                .iter()
                .map(|p| std::fs::read_to_string(p).unwrap())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} messages in {}", dir.display());
}

/// The link starting with `path` in a message (quoted-printable undone), as a path on the
/// test server.
pub fn link_in(mail: &str, path: &str) -> String {
    let body = mail.replace("=\r\n", "").replace("=3D", "=");
    let start = body.find(path).expect("a link");
    let end = body[start..]
        .find(|c: char| c.is_whitespace())
        .map_or(body.len(), |e| start + e);
    body[start..end].to_owned()
}

pub async fn ask_reset(b: &reqwest::Client, server: &Server, email: &str) -> (u16, String) {
    let page = b
        .get(server.url("/reset"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = input_value(&page, "csrf_token").unwrap();
    let r = b
        .post(server.url("/reset"))
        .form(&[("csrf_token", csrf.as_str()), ("email", email)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub async fn choose_password(
    b: &reqwest::Client,
    server: &Server,
    link: &str,
    password: &str,
) -> reqwest::Response {
    let r = b.get(server.url(link)).send().await.unwrap();
    assert_eq!(r.status(), 200, "opening the link");
    let page = r.text().await.unwrap();
    let csrf = input_value(&page, "csrf_token").unwrap();
    let token = input_value(&page, "token").unwrap();
    b.post(server.url("/reset/confirm"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("token", token.as_str()),
            ("new_password", password),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn reset_by_email_works_once_ends_sessions_and_still_asks_for_totp() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let owner = signed_in_browser(&server, &f.email).await;
        let (app, _) = enrol(&owner, &server).await;
        let outbox = env.data_dir().join("outbox");

        // Known and unknown addresses get the same answer; only the known one gets mail.
        let b = browser();
        let (status_unknown, unknown) = ask_reset(&b, &server, "nobody@example.com").await;
        let (status_known, known) = ask_reset(&b, &server, "ADA@example.com").await;
        assert_eq!((status_unknown, status_known), (200, 200));
        assert_eq!(
            unknown, known,
            "the page does not tell whether the account exists"
        );
        assert!(known.contains("If an account uses that address"));
        let mail = wait_for_mail(&outbox, 1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            wait_for_mail(&outbox, 1).await.len(),
            1,
            "no mail for the unknown address"
        );
        assert!(mail[0].contains("To: ada@example.com"), "{}", mail[0]);
        assert!(mail[0].contains("Subject: Reset your Latchkey password"));
        let link = link_in(&mail[0], "/reset/confirm?token=");

        // A common password is refused and the link still works.
        let r = choose_password(&b, &server, &link, "password123").await;
        assert_eq!(r.status(), 400);
        assert!(unescape(&r.text().await.unwrap()).contains("too common"));
        let r = choose_password(&b, &server, &link, NEW_PASSWORD).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Your password is changed"));
        // No one is signed in by it, and the browser signed in before is signed out.
        let r = b.get(server.url("/account")).send().await.unwrap();
        assert_eq!(location(&r), "/login");
        let r = owner.get(server.url("/account")).send().await.unwrap();
        assert_eq!(location(&r), "/login", "sessions end with a reset");
        // The link works once.
        let r = b.get(server.url(&link)).send().await.unwrap();
        assert_eq!(r.status(), 400);

        // The old password is gone; the new one still needs the authenticator app.
        let login = b
            .get(server.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r = sign_in(&b, &server, &login, &f.email, PASSWORD).await;
        assert_eq!(r.status(), 401);
        let (b2, page) = {
            let b2 = browser();
            let login = b2
                .get(server.url("/login"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let r = sign_in(&b2, &server, &login, &f.email, NEW_PASSWORD).await;
            assert_eq!(r.status(), 200, "a reset does not skip the second factor");
            (b2, r.text().await.unwrap())
        };
        assert!(page.contains("action=\"/login/second-factor\""));
        let r = second_factor(
            &b2,
            &server,
            &page,
            "code",
            &app.code_at(server.clock.now()),
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(server.audited("password.reset", Some(&f.user_id)).await, 1);
        server.stop().await;
    }
}

#[tokio::test]
async fn reset_links_expire_and_requests_are_throttled() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let outbox = env.data_dir().join("outbox");
        let b = browser();
        let (status, _) = ask_reset(&b, &server, &f.email).await;
        assert_eq!(status, 200);
        let link = link_in(&wait_for_mail(&outbox, 1).await[0], "/reset/confirm?token=");
        // 20 minutes by default.
        server.clock.advance(20 * 60 + 1);
        let r = b.get(server.url(&link)).send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("cannot be used"));

        // (The first request is outside the counting window by now.) Six requests go through,
        // the sixth starting a wait; then the address waits, known or not.
        for _ in 0..6 {
            assert_eq!(ask_reset(&b, &server, &f.email).await.0, 200);
        }
        let (status, page) = ask_reset(&b, &server, &f.email).await;
        assert_eq!(status, 429);
        assert!(page.contains("Too many requests"));
        assert_eq!(ask_reset(&b, &server, "nobody@example.com").await.0, 429);
        server.clock.advance(3);
        assert_eq!(ask_reset(&b, &server, "nobody@example.com").await.0, 200);
        server.stop().await;
    }
}
