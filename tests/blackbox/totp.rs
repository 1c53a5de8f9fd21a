//! TOTP as the second factor after a password: enrolment from the account page (confirmed by
//! a first code), password + code sign-in with tokens that say so, no code accepted twice,
//! recovery codes that work once, throttling of wrong codes, and the recent sign-in that
//! turning it off needs.

use latchkey::clock::Clock as _;
use latchkey::testdb::TestDb;
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::flow::{
    PASSWORD, account_page, authorize_url, browser, browser_flow, claims, fixture, input_value,
    location, query_param, redeem, sign_in, sign_out, signed_in_browser, unescape,
};
use crate::harness::{Env, Server};

/// The text of the element with `id`, tags stripped.
fn element_text(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let start = html.find(&marker).expect(id);
    let open_end = html[start..].find('>').unwrap() + start + 1;
    let close = html[open_end..].find("</").unwrap() + open_end;
    unescape(html[open_end..close].trim())
}

fn codes_in(html: &str) -> Vec<String> {
    let list = &html[html.find("id=\"recovery-codes\"").unwrap()..];
    let list = &list[..list.find("</ul>").unwrap()];
    list.split("<code>")
        .skip(1)
        .map(|c| c[..c.find("</code>").unwrap()].to_owned())
        .collect()
}

/// The authenticator app: generates codes from the secret the setup page shows.
pub struct App(Totp);

impl App {
    pub fn code_at(&self, now: i64) -> String {
        self.0.generate(u64::try_from(now).unwrap()).to_string()
    }
}

async fn post(
    b: &reqwest::Client,
    server: &Server,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    b.post(server.url(path)).form(form).send().await.unwrap()
}

/// Sets up TOTP for the signed-in browser `b`; returns the app and the recovery codes.
pub async fn enrol(b: &reqwest::Client, server: &Server) -> (App, Vec<String>) {
    let html = account_page(b, server).await;
    assert!(html.contains("Set up an authenticator app"));
    let csrf = input_value(&html, "csrf_token").unwrap();
    let r = post(b, server, "/account/totp/setup", &[("csrf_token", &csrf)]).await;
    assert_eq!(r.status(), 200);
    let setup = r.text().await.unwrap();
    assert!(setup.contains("<svg"), "the QR code is inline SVG");
    let uri = element_text(&setup, "totp-uri");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let secret = element_text(&setup, "totp-secret").replace(' ', "");
    assert!(uri.contains(&format!("secret={secret}")));
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(Secret::try_from_base32(&secret).unwrap())
        .build()
        .unwrap();
    let app = App(totp);

    // A wrong first code leaves it off and shows the same secret again.
    let r = post(
        b,
        server,
        "/account/totp/confirm",
        &[("csrf_token", &csrf), ("code", "000000")],
    )
    .await;
    assert_eq!(r.status(), 400);
    let again = r.text().await.unwrap();
    assert!(again.contains("not right"));
    assert_eq!(element_text(&again, "totp-secret").replace(' ', ""), secret);

    let code = app.code_at(server.clock.now());
    let r = post(
        b,
        server,
        "/account/totp/confirm",
        &[("csrf_token", &csrf), ("code", &code)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let codes = codes_in(&r.text().await.unwrap());
    assert_eq!(codes.len(), 10);
    let html = account_page(b, server).await;
    assert!(html.contains("10 of 10 recovery codes left"), "{html}");
    // The code that confirmed it was used: the next one must come from a later step.
    server.clock.advance(30);
    (app, codes)
}

/// Starts a password sign-in for an authorization in a fresh browser; returns the browser and
/// the second-factor page.
pub async fn password_step(
    server: &Server,
    client_id: &str,
    email: &str,
) -> (reqwest::Client, String) {
    let b = browser();
    let login = b
        .get(authorize_url(server, client_id, &[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = sign_in(&b, server, &login, email, PASSWORD).await;
    assert_eq!(r.status(), 200, "the password alone does not sign in");
    let page = r.text().await.unwrap();
    assert!(page.contains("action=\"/login/second-factor\""));
    assert!(page.contains("autocomplete=\"one-time-code\""));
    // No session yet.
    let r = b.get(server.url("/account")).send().await.unwrap();
    assert_eq!(location(&r), "/login");
    (b, page)
}

pub async fn second_factor(
    b: &reqwest::Client,
    server: &Server,
    page: &str,
    field: &str,
    value: &str,
) -> reqwest::Response {
    let csrf = input_value(page, "csrf_token").unwrap();
    let pending = input_value(page, "pending").unwrap();
    post(
        b,
        server,
        "/login/second-factor",
        &[("csrf_token", &csrf), ("pending", &pending), (field, value)],
    )
    .await
}

#[tokio::test]
async fn password_and_totp_sign_in_and_no_code_twice() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let owner = signed_in_browser(&server, &f.email).await;
        let (app, _) = enrol(&owner, &server).await;

        let (b, page) = password_step(&server, &f.client_id, &f.email).await;
        let r = second_factor(&b, &server, &page, "code", "123456").await;
        assert_eq!(r.status(), 401);
        assert!(r.text().await.unwrap().contains("not right"));

        let code = app.code_at(server.clock.now());
        let r = second_factor(&b, &server, &page, "code", &code).await;
        assert_eq!(r.status(), 303);
        assert!(location(&r).starts_with("/authorize?"));
        let back = browser_flow(&b, &server, &server.url(&location(&r)), &f.email).await;
        let tokens: serde_json::Value = redeem(&server, &f, &query_param(&back, "code").unwrap())
            .await
            .json()
            .await
            .unwrap();
        let id = claims(tokens["id_token"].as_str().unwrap());
        assert_eq!(id["amr"], serde_json::json!(["pwd", "otp", "mfa"]), "{id}");
        assert_eq!(id["acr"], "2");

        // The same form again (shown before the sign-in, so sent signed out): that sign-in
        // step is spent.
        sign_out(&b, &server).await;
        let r = second_factor(&b, &server, &page, "code", &code).await;
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("expired"));

        // The same code in another sign-in, still within its window: refused.
        let (b2, page2) = password_step(&server, &f.client_id, &f.email).await;
        let r = second_factor(&b2, &server, &page2, "code", &code).await;
        assert_eq!(r.status(), 401, "a code is accepted once");
        // So is the previous step's code, although it is within the skew.
        let older = app.code_at(server.clock.now() - 30);
        let r = second_factor(&b2, &server, &page2, "code", &older).await;
        assert_eq!(r.status(), 401, "no code older than one used");
        // The next step's code works.
        server.clock.advance(30);
        let r = second_factor(
            &b2,
            &server,
            &page2,
            "code",
            &app.code_at(server.clock.now()),
        )
        .await;
        assert_eq!(r.status(), 303);
        server.stop().await;
    }
}

#[tokio::test]
async fn recovery_codes_sign_in_once_and_sensitive_changes_need_a_recent_sign_in() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let owner = signed_in_browser(&server, &f.email).await;
        let (_, codes) = enrol(&owner, &server).await;

        let (b, page) = password_step(&server, &f.client_id, &f.email).await;
        // Typed with capitals and spaces: still the code.
        let typed = format!(" {} ", codes[0].to_uppercase());
        let r = second_factor(&b, &server, &page, "recovery_code", &typed).await;
        assert_eq!(r.status(), 303);
        assert!(location(&r).starts_with("/authorize?"));

        let (b2, page2) = password_step(&server, &f.client_id, &f.email).await;
        let r = second_factor(&b2, &server, &page2, "recovery_code", &codes[0]).await;
        assert_eq!(r.status(), 401, "a recovery code works once");
        assert!(r.text().await.unwrap().contains("used before"));
        let r = second_factor(&b2, &server, &page2, "recovery_code", &codes[1]).await;
        assert_eq!(r.status(), 303);
        assert!(account_page(&owner, &server).await.contains("8 of 10"));

        // Later, new codes, turning it off, setting it up again and adding a passkey ask for
        // a fresh sign-in.
        server.clock.advance(11 * 60);
        let html = account_page(&owner, &server).await;
        assert!(!html.contains("Set up an authenticator app"));
        assert!(html.contains("To add a passkey"));
        let csrf = input_value(&html, "csrf_token").unwrap();
        for path in [
            "/account/recovery-codes",
            "/account/totp/disable",
            "/account/totp/setup",
            "/account/passkeys",
        ] {
            let r = post(&owner, &server, path, &[("csrf_token", &csrf)]).await;
            assert_eq!(r.status(), 400, "{path}");
            assert!(r.text().await.unwrap().contains("sign in again"), "{path}");
        }
        // A fresh sign-in (password and a recovery code) can: new codes replace the old ones.
        let (b3, page3) = password_step(&server, &f.client_id, &f.email).await;
        let r = second_factor(&b3, &server, &page3, "recovery_code", &codes[2]).await;
        assert_eq!(r.status(), 303);
        let html = account_page(&b3, &server).await;
        let csrf = input_value(&html, "csrf_token").unwrap();
        let r = post(
            &b3,
            &server,
            "/account/recovery-codes",
            &[("csrf_token", &csrf)],
        )
        .await;
        assert_eq!(r.status(), 200);
        let fresh = codes_in(&r.text().await.unwrap());
        assert_eq!(fresh.len(), 10);
        let (b4, page4) = password_step(&server, &f.client_id, &f.email).await;
        let r = second_factor(&b4, &server, &page4, "recovery_code", &codes[3]).await;
        assert_eq!(r.status(), 401, "the old set no longer works");
        let r = second_factor(&b4, &server, &page4, "recovery_code", &fresh[0]).await;
        assert_eq!(r.status(), 303);

        let r = post(
            &b3,
            &server,
            "/account/totp/disable",
            &[("csrf_token", &csrf)],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("turned off"));
        // Now the password alone signs in again.
        let b5 = browser();
        let login = b5
            .get(server.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r = sign_in(&b5, &server, &login, &f.email, PASSWORD).await;
        assert_eq!(r.status(), 303);
        server.stop().await;
    }
}

#[tokio::test]
async fn wrong_codes_are_throttled_per_account_and_the_wait_ends() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let owner = signed_in_browser(&server, &f.email).await;
        let (app, codes) = enrol(&owner, &server).await;

        let (b, page) = password_step(&server, &f.client_id, &f.email).await;
        let outbox = env.data_dir().join("outbox");
        let mails_sent = || {
            std::fs::read_dir(&outbox).map_or(0, |d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
                })
                .count()
            })
        };
        for i in 0..6 {
            let r = second_factor(&b, &server, &page, "code", &format!("00000{i}")).await;
            assert_eq!(r.status(), 401);
            if i == 3 {
                // Four failures tell no one yet.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                assert_eq!(mails_sent(), 0);
            }
        }
        // The fifth tells the owner, at their address.
        let mails = crate::reset::wait_for_mail(&outbox, 1).await;
        assert!(
            mails[0].contains("Subject: Failed sign-in attempts")
                && mails[0].contains(&format!("To: {}", f.email)),
            "{}",
            mails[0]
        );
        // Now even the right code waits, and so do recovery codes: they share the count.
        let r = second_factor(&b, &server, &page, "code", &app.code_at(server.clock.now())).await;
        assert_eq!(r.status(), 429);
        assert!(r.text().await.unwrap().contains("Too many attempts"));
        let r = second_factor(&b, &server, &page, "recovery_code", &codes[0]).await;
        assert_eq!(r.status(), 429);
        // The wait is short and ends by itself; the pending sign-in is still there.
        server.clock.advance(3);
        let r = second_factor(&b, &server, &page, "code", &app.code_at(server.clock.now())).await;
        assert_eq!(r.status(), 303);
        // Once per run of failures: the sixth sent nothing more.
        assert_eq!(mails_sent(), 1);
        // Each wrong code is in the audit log, then the sign-in that passed both factors.
        let uid = Some(f.user_id.as_str());
        assert_eq!(server.audited("second_factor.failure", uid).await, 6);
        let events = server.audit(uid).await;
        let last = events.iter().rfind(|e| e.kind == "signin.success").unwrap();
        assert_eq!(last.details["second_factor"], "totp", "{last:?}");
        server.stop().await;
    }
}
