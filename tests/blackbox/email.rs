//! Proving addresses by mail: open sign-up (a link mailed to the address creates a verified
//! account; an address with an account is told so, and the page does not say which), and
//! changing or verifying the account's address (the new address proves itself, the old one
//! is told; a change needs a recent sign-in).

use latchkey::testdb::TestDb;

use crate::flow::{
    PASSWORD, account_page, browser, fixture, input_value, location, sign_in, signed_in_browser,
};
use crate::harness::{Env, Server};
use crate::reset::{link_in, wait_for_mail};

pub async fn post_form(
    b: &reqwest::Client,
    server: &Server,
    page_path: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let page = b
        .get(server.url(page_path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = input_value(&page, "csrf_token").unwrap();
    let mut form = vec![("csrf_token", csrf.as_str())];
    form.extend_from_slice(fields);
    b.post(server.url(action)).form(&form).send().await.unwrap()
}

fn mail_to<'a>(mails: &'a [String], to: &str) -> Vec<&'a String> {
    mails
        .iter()
        .filter(|m| m.contains(&format!("To: {to}\r\n")))
        .collect()
}

#[tokio::test]
async fn open_sign_up_mails_a_link_that_creates_a_verified_account() {
    for db in TestDb::all().await {
        let env = Env::new(db, "[signup]\npolicy = \"open\"\n");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let outbox = env.data_dir().join("outbox");
        let b = browser();
        let login = b
            .get(server.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            login.contains("href=\"/signup\""),
            "the sign-in page offers sign-up"
        );

        let new = post_form(
            &b,
            &server,
            "/signup",
            "/signup/email",
            &[("email", "grace@example.com")],
        )
        .await;
        let taken = post_form(
            &b,
            &server,
            "/signup",
            "/signup/email",
            &[("email", &f.email)],
        )
        .await;
        assert_eq!((new.status().as_u16(), taken.status().as_u16()), (200, 200));
        assert_eq!(
            new.text().await.unwrap(),
            taken.text().await.unwrap(),
            "the answer does not say whether the address has an account"
        );
        let mails = wait_for_mail(&outbox, 2).await;
        let to_ada = mail_to(&mails, &f.email);
        assert_eq!(to_ada.len(), 1);
        assert!(to_ada[0].contains("already have"), "{}", to_ada[0]);
        assert!(
            !to_ada[0].contains("invite="),
            "no sign-up link for a taken address"
        );
        let to_grace = mail_to(&mails, "grace@example.com");
        let link = link_in(to_grace[0], "/signup?invite=");

        // Straight to the account form without the mailed link: refused.
        let r = post_form(
            &b,
            &server,
            "/login",
            "/signup",
            &[
                ("email", "mallory@example.com"),
                ("password", "a long enough password"),
            ],
        )
        .await;
        assert_eq!(r.status(), 403);

        // The link's form is bound to the address; the account starts verified.
        let page = b
            .get(server.url(&link))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("grace@example.com"));
        let invite = input_value(&page, "invite").unwrap();
        let r = post_form(
            &b,
            &server,
            &link,
            "/signup",
            &[
                ("invite", &invite),
                ("email", "grace@example.com"),
                ("name", "Grace"),
                ("password", "a long enough password"),
            ],
        )
        .await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        let html = account_page(&b, &server).await;
        assert!(html.contains("grace@example.com"));
        assert!(
            !html.contains("(not verified)"),
            "the mailed link verified it"
        );
        // The link works once.
        let r = b.get(server.url(&link)).send().await.unwrap();
        assert_eq!(r.status(), 403);
        server.stop().await;
    }
}

#[tokio::test]
async fn changing_the_address_proves_the_new_one_and_tells_the_old_one() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let outbox = env.data_dir().join("outbox");
        let owner = signed_in_browser(&server, &f.email).await;
        let new_address = "countess@example.org";

        let r = post_form(
            &owner,
            &server,
            "/account",
            "/account/email",
            &[("email", new_address)],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("We have sent a link to countess@example.org")
        );
        let mails = wait_for_mail(&outbox, 2).await;
        let notice = mail_to(&mails, &f.email);
        assert_eq!(notice.len(), 1, "the old address is told");
        assert!(notice[0].contains("countess@example.org"));
        let link = link_in(mail_to(&mails, new_address)[0], "/email/confirm?token=");
        // A browser not signed in to the account cannot confirm a change (no one attaches an
        // address to their account by getting its owner to click).
        let stranger = browser();
        let page = stranger
            .get(server.url(&link))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("Sign in first"), "{page}");
        assert!(input_value(&page, "token").is_none());
        // The owner's browser: opening it only shows a button naming both addresses.
        let page = owner
            .get(server.url(&link))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains(&f.email) && page.contains(new_address));
        assert!(account_page(&owner, &server).await.contains(&f.email));
        let csrf = input_value(&page, "csrf_token").unwrap();
        let token = input_value(&page, "token").unwrap();
        let r = stranger
            .post(server.url("/email/confirm"))
            .form(&[("csrf_token", csrf.as_str()), ("token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "nor post it");
        let b = owner.clone();
        let r = b
            .post(server.url("/email/confirm"))
            .form(&[("csrf_token", csrf.as_str()), ("token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Your address is changed"));
        let mails = wait_for_mail(&outbox, 3).await;
        assert_eq!(
            mail_to(&mails, &f.email).len(),
            2,
            "the old address is told it is done"
        );
        assert!(account_page(&owner, &server).await.contains(new_address));
        let r = b.get(server.url(&link)).send().await.unwrap();
        assert_eq!(r.status(), 400, "the link works once");

        // The new address signs in; the old one is an unknown account now.
        let b2 = browser();
        let login = b2
            .get(server.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            sign_in(&b2, &server, &login, &f.email, PASSWORD)
                .await
                .status(),
            401
        );
        let r = sign_in(&b2, &server, &login, new_address, PASSWORD).await;
        assert_eq!(location(&r), "/account");

        // Later, another change asks for a fresh sign-in.
        server.clock.advance(11 * 60);
        let r = post_form(
            &owner,
            &server,
            "/account",
            "/account/email",
            &[("email", "x@example.net")],
        )
        .await;
        assert!(r.text().await.unwrap().contains("sign in again"));
        server.stop().await;
    }
}

#[tokio::test]
async fn an_unverified_address_is_verified_by_its_link() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        env.cli(
            &[
                "user",
                "create",
                "--email",
                "lin@example.com",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        )
        .await
        .unwrap();
        let server = Server::start(env.config()).await;
        let outbox = env.data_dir().join("outbox");
        let owner = signed_in_browser(&server, "lin@example.com").await;
        assert!(
            account_page(&owner, &server)
                .await
                .contains("(not verified)")
        );
        // Verifying the address the account has needs no fresh sign-in, and tells no one else.
        server.clock.advance(11 * 60);
        let r = post_form(
            &owner,
            &server,
            "/account",
            "/account/email",
            &[("email", "lin@example.com")],
        )
        .await;
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("Open it to confirm your address")
        );
        let mails = wait_for_mail(&outbox, 1).await;
        assert_eq!(mails.len(), 1);
        let link = link_in(&mails[0], "/email/confirm?token=");
        let page = owner
            .get(server.url(&link))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = input_value(&page, "csrf_token").unwrap();
        let token = input_value(&page, "token").unwrap();
        let r = owner
            .post(server.url("/email/confirm"))
            .form(&[("csrf_token", csrf.as_str()), ("token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("Your address is confirmed")
        );
        assert!(
            !account_page(&owner, &server)
                .await
                .contains("(not verified)")
        );
        server.stop().await;
    }
}

/// Sign-in by a mailed link (`signin.email_links`): off by default; on, the link continues the
/// authorization it was asked from, works once, says `amr` `email`, and asks for the
/// authenticator app when the account has one.
#[tokio::test]
async fn a_mailed_sign_in_link_signs_in_once_and_still_asks_for_totp() {
    for db in TestDb::all().await {
        // Off by default.
        let env = Env::new(TestDb::sqlite(), "");
        let server = Server::start(env.config()).await;
        let r = post_form(
            &browser(),
            &server,
            "/login",
            "/login/email",
            &[("email", "a@b.example")],
        )
        .await;
        assert_eq!(r.status(), 404);
        server.stop().await;

        let env = Env::new(db, "[signin]\nemail_links = true\n");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let outbox = env.data_dir().join("outbox");

        // Asked from an authorization's sign-in page; the same answer for an unknown address.
        let b = browser();
        let auth = crate::flow::authorize_url(&server, &f.client_id, &[]);
        let login = b.get(&auth).send().await.unwrap().text().await.unwrap();
        assert!(login.contains("action=\"/login/email\""));
        let csrf = input_value(&login, "csrf_token").unwrap();
        let request = input_value(&login, "request").unwrap();
        let ask = |email: &'static str| {
            b.post(server.url("/login/email")).form(&[
                ("csrf_token", csrf.clone()),
                ("request", request.clone()),
                ("email", email.to_owned()),
            ])
        };
        let unknown = ask("nobody@example.com")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let known = ask("ada@example.com")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(unknown, known);
        assert!(known.contains("we have sent it a link"));
        let mails = wait_for_mail(&outbox, 1).await;
        let link = link_in(&mails[0], "/login/email/confirm?token=");

        // Another browser (the link forwarded, or asked for someone else's address) can
        // neither open nor use it, and spends nothing.
        let elsewhere = browser();
        let r = elsewhere.get(server.url(&link)).send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("where you asked for it"));
        let own = elsewhere
            .get(server.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let token_param = crate::flow::query_param(&server.url(&link), "token").unwrap();
        let r = elsewhere
            .post(server.url("/login/email/confirm"))
            .form(&[
                (
                    "csrf_token",
                    input_value(&own, "csrf_token").unwrap().as_str(),
                ),
                ("token", token_param.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "the other browser cannot use it");
        assert_eq!(
            elsewhere
                .get(server.url("/account"))
                .send()
                .await
                .unwrap()
                .status(),
            303,
            "the other browser is not signed in by it"
        );

        // Opening the link changes nothing; its button signs in and goes on to the client.
        let page = b
            .get(server.url(&link))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("Sign in as <strong>ada@example.com</strong>"));
        assert_eq!(
            b.get(server.url("/account")).send().await.unwrap().status(),
            303
        );
        let csrf2 = input_value(&page, "csrf_token").unwrap();
        let token = input_value(&page, "token").unwrap();
        let confirm = || {
            b.post(server.url("/login/email/confirm"))
                .form(&[("csrf_token", csrf2.as_str()), ("token", token.as_str())])
        };
        let r = confirm().send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert!(
            location(&r).starts_with("/authorize?"),
            "the authorization goes on"
        );
        let back =
            crate::flow::browser_flow(&b, &server, &server.url(&location(&r)), &f.email).await;
        let code = crate::flow::query_param(&back, "code").unwrap();
        let tokens: serde_json::Value = crate::flow::redeem(&server, &f, &code)
            .await
            .json()
            .await
            .unwrap();
        let id = crate::flow::claims(tokens["id_token"].as_str().unwrap());
        assert_eq!(id["amr"], serde_json::json!(["email"]));
        assert_eq!(id["acr"], "1");
        // Its form was shown before the sign-in: signed out again, the browser can send it.
        crate::flow::sign_out(&b, &server).await;
        assert_eq!(
            confirm().send().await.unwrap().status(),
            400,
            "the link works once"
        );

        // With an authenticator app, the link is only the first step.
        let owner = signed_in_browser(&server, &f.email).await;
        let (app, _) = crate::totp::enrol(&owner, &server).await;
        // One message per address a minute at most, whoever asks: within the minute the
        // same answer, and no mail.
        let quick = post_form(
            &browser(),
            &server,
            "/login",
            "/login/email",
            &[("email", "ada@example.com")],
        )
        .await;
        assert_eq!(quick.status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            wait_for_mail(&outbox, 1).await.len(),
            1,
            "nothing sent within the minute"
        );
        server.clock.advance(60);
        let b3 = browser();
        let r = post_form(
            &b3,
            &server,
            "/login",
            "/login/email",
            &[("email", "ada@example.com")],
        )
        .await;
        assert_eq!(r.status(), 200);
        let mails = wait_for_mail(&outbox, 2).await;
        let link = link_in(&mails[1], "/login/email/confirm?token=");
        let page = b3
            .get(server.url(&link))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r = b3
            .post(server.url("/login/email/confirm"))
            .form(&[
                (
                    "csrf_token",
                    input_value(&page, "csrf_token").unwrap().as_str(),
                ),
                ("token", input_value(&page, "token").unwrap().as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let second = r.text().await.unwrap();
        assert!(second.contains("action=\"/login/second-factor\""));
        use latchkey::clock::Clock as _;
        let r = crate::totp::second_factor(
            &b3,
            &server,
            &second,
            "code",
            &app.code_at(server.clock.now()),
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(location(&r), "/account");
        server.stop().await;
    }
}
