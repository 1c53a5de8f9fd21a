//! Creating accounts: the first administrator's setup link (account and passkey at once),
//! invitations from the CLI (password or passkey), and the refusals: no invitation, a used
//! one, another address than the invited one, a taken address, a short password, and
//! `signup.policy = "closed"`. And disabling a user.

use latchkey::testdb::TestDb;
use serde_json::Value;
use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::CreationChallengeResponse;

use crate::flow::{browser, input_value, location};
use crate::harness::{Env, Server};

const ORIGIN: &str = "http://localhost:8080";

/// The path and query of an invite URL (the issuer is not where the test server listens).
fn path_of(url: &str) -> String {
    let u = Url::parse(url).unwrap();
    format!("{}?{}", u.path(), u.query().unwrap())
}

fn token_of(url: &str) -> String {
    crate::flow::query_param(url, "invite").unwrap()
}

async fn form_page(b: &reqwest::Client, server: &Server, path: &str) -> (u16, String) {
    let r = b.get(server.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Signs up with a software passkey through `/signup/options` and `/signup`.
async fn passkey_signup(
    b: &reqwest::Client,
    server: &Server,
    page: &str,
    invite: &str,
    email: &str,
    auth: &mut SoftPasskey,
) -> reqwest::Response {
    let csrf = input_value(page, "csrf_token").unwrap();
    let r = b
        .post(server.url("/signup/options"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("invite", invite),
            ("email", email),
            ("name", "Grace"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let ccr: CreationChallengeResponse = serde_json::from_value(v["options"].clone()).unwrap();
    let answer = auth
        .do_registration(Url::parse(ORIGIN).unwrap(), ccr)
        .unwrap();
    b.post(server.url("/signup"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("invite", invite),
            ("ceremony", v["ceremony"].as_str().unwrap()),
            ("credential", &serde_json::to_string(&answer).unwrap()),
            ("email", "ignored@example.com"),
        ])
        .send()
        .await
        .unwrap()
}

async fn password_signup(
    b: &reqwest::Client,
    server: &Server,
    page: &str,
    invite: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let csrf = input_value(page, "csrf_token").unwrap();
    b.post(server.url("/signup"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("invite", invite),
            ("email", email),
            ("name", "Bob"),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_setup_link_creates_the_first_administrator_with_a_passkey_once() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let server = Server::start(env.config()).await;
        let (link, _) = latchkey::signin::setup_link(&server.state.signin())
            .await
            .unwrap()
            .expect("no administrator yet: a setup link");
        // A later start replaces it: the first link stops working.
        let (link2, _) = latchkey::signin::setup_link(&server.state.signin())
            .await
            .unwrap()
            .unwrap();
        let b = browser();
        let (status, _) = form_page(&b, &server, &path_of(&link)).await;
        assert_eq!(status, 403, "a replaced setup link is refused");
        let (status, page) = form_page(&b, &server, &path_of(&link2)).await;
        assert_eq!(status, 200);
        assert!(page.contains("Set up the first administrator"));
        assert!(page.contains("autocomplete=\"new-password\""));

        let mut auth = SoftPasskey::new(true);
        let r = passkey_signup(
            &b,
            &server,
            &page,
            &token_of(&link2),
            "grace@example.com",
            &mut auth,
        )
        .await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        assert_eq!(location(&r), "/account");
        let user = server
            .state
            .store
            .user_by_email("grace@example.com")
            .await
            .unwrap()
            .unwrap();
        assert!(user.is_admin);
        assert_eq!(user.name.as_deref(), Some("Grace"));
        assert_eq!(
            server
                .state
                .store
                .passkeys_of(&user.id)
                .await
                .unwrap()
                .len(),
            1
        );
        // Signed in: the account page shows the passkey.
        let (status, account) = form_page(&b, &server, "/account").await;
        assert_eq!(status, 200);
        assert!(account.contains("grace@example.com") && account.contains("Passkey"));

        // Used once; and with an administrator, no new setup link.
        let (status, _) = form_page(&browser(), &server, &path_of(&link2)).await;
        assert_eq!(status, 403);
        assert!(
            latchkey::signin::setup_link(&server.state.signin())
                .await
                .unwrap()
                .is_none()
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn invitations_from_the_cli_create_accounts_with_a_password_or_a_passkey() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let bound: Value = serde_json::from_str(
            &env.cli(&["invite", "create", "--email", "bob@example.com"], "")
                .await
                .unwrap(),
        )
        .unwrap();
        let open: Value =
            serde_json::from_str(&env.cli(&["invite", "create"], "").await.unwrap()).unwrap();
        let server = Server::start(env.config()).await;
        let bound_link = bound["invite_url"].as_str().unwrap();
        let b = browser();

        // Without an invitation there is no sign-up.
        let (status, page) = form_page(&b, &server, "/signup").await;
        assert_eq!(status, 403);
        assert!(page.contains("by invitation"));

        // The bound invitation shows its address, and refuses another one.
        let (status, page) = form_page(&b, &server, &path_of(bound_link)).await;
        assert_eq!(status, 200);
        assert!(page.contains("value=\"bob@example.com\" readonly"));
        let invite = token_of(bound_link);
        let r = password_signup(&b, &server, &page, &invite, "bob@example.com", "short").await;
        assert_eq!(r.status(), 400, "a 5-character password is refused");
        assert!(r.text().await.unwrap().contains("at least 8 characters"));
        let r = password_signup(
            &b,
            &server,
            &page,
            &invite,
            "bob@example.com",
            "long enough password",
        )
        .await;
        assert_eq!(r.status(), 303);
        let bob = server
            .state
            .store
            .user_by_email("bob@example.com")
            .await
            .unwrap()
            .unwrap();
        assert!(!bob.is_admin && !bob.email_verified);
        // Used: a second account from it is refused.
        let b2 = browser();
        let (status, _) = form_page(&b2, &server, &path_of(bound_link)).await;
        assert_eq!(status, 403);

        // The open invitation: a taken address is refused and leaves the invitation usable.
        let open_link = open["invite_url"].as_str().unwrap();
        let (_, page) = form_page(&b2, &server, &path_of(open_link)).await;
        let r = password_signup(
            &b2,
            &server,
            &page,
            &token_of(open_link),
            "BOB@example.com",
            "another long password",
        )
        .await;
        assert_eq!(r.status(), 409);
        let mut auth = SoftPasskey::new(true);
        let r = passkey_signup(
            &b2,
            &server,
            &page,
            &token_of(open_link),
            "carol@example.com",
            &mut auth,
        )
        .await;
        assert_eq!(r.status(), 303);
        let carol = server
            .state
            .store
            .user_by_email("carol@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            server
                .state
                .store
                .passkeys_of(&carol.id)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            server
                .state
                .store
                .password_hash(&carol.id)
                .await
                .unwrap()
                .is_none()
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn a_closed_policy_refuses_invitations_but_not_the_setup_link() {
    let env = Env::new(TestDb::sqlite(), "[signup]\npolicy = \"closed\"\n");
    let invite: Value =
        serde_json::from_str(&env.cli(&["invite", "create"], "").await.unwrap()).unwrap();
    let server = Server::start(env.config()).await;
    let b = browser();
    let (status, _) = form_page(
        &b,
        &server,
        &path_of(invite["invite_url"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 403);
    let (link, _) = latchkey::signin::setup_link(&server.state.signin())
        .await
        .unwrap()
        .unwrap();
    let (status, _) = form_page(&b, &server, &path_of(&link)).await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// `latchkey user disable` ends the user's sessions, makes their codes, refresh and access
/// tokens stop working, and refuses their sign-in with the same answer as a wrong password.
#[tokio::test]
async fn disabling_a_user_ends_sessions_and_tokens() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = crate::flow::fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let b = browser();
        let code = crate::flow::code_for(&server, &f, &b).await;
        let tokens: Value = crate::flow::redeem(&server, &f, &code)
            .await
            .json()
            .await
            .unwrap();
        let access = tokens["access_token"].as_str().unwrap();
        let refresh = tokens["refresh_token"].as_str().unwrap();
        assert_eq!(form_page(&b, &server, "/account").await.0, 200);
        // A code issued before the user is disabled, redeemed after.
        let late_code = crate::flow::code_for(&server, &f, &b).await;

        let out = env
            .cli(&["user", "disable", "--email", &f.email], "")
            .await
            .unwrap();
        assert!(out.contains("\"disabled\":true") || out.contains("\"disabled\": true"));

        // The session is over: the account page sends the browser to sign in.
        let r = b.get(server.url("/account")).send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(location(&r), "/login");
        // Refresh is refused; the access token is inactive and refused at userinfo.
        let r = crate::flow::token_request(
            &server,
            &f,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
        let r = crate::flow::redeem(&server, &f, &late_code).await;
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
        let v = crate::flow::introspect_as(&server, &f.client_id, &f.client_secret, access).await;
        assert_eq!(v["active"], false);
        let r = reqwest::Client::new()
            .get(server.url("/userinfo"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // Signing in answers as for a wrong password.
        let b2 = browser();
        let (_, page) = form_page(&b2, &server, "/login").await;
        let r = crate::flow::sign_in(&b2, &server, &page, &f.email, crate::flow::PASSWORD).await;
        assert_eq!(r.status(), 401);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("The email or password is not right.")
        );

        // Enabled again: a fresh sign-in works.
        env.cli(&["user", "enable", "--email", &f.email], "")
            .await
            .unwrap();
        let r = crate::flow::sign_in(&b2, &server, &page, &f.email, crate::flow::PASSWORD).await;
        assert_eq!(r.status(), 303);
        // The code issued before the user was disabled stays dead.
        let r = crate::flow::redeem(&server, &f, &late_code).await;
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
        server.stop().await;
    }
}

/// Each start without an administrator replaces the setup link; an administrator invitation
/// made with the CLI is not a setup link and keeps working.
#[tokio::test]
async fn a_new_setup_link_replaces_the_old_one_but_not_cli_admin_invitations() {
    let env = Env::new(TestDb::sqlite(), "");
    let server = Server::start(env.config()).await;
    let b = browser();
    let out = env.cli(&["invite", "create", "--admin"], "").await.unwrap();
    let cli_invite: Value = serde_json::from_str(&out).unwrap();
    let cli_path = path_of(cli_invite["invite_url"].as_str().unwrap());
    let (first, _) = latchkey::signin::setup_link(&server.state.signin())
        .await
        .unwrap()
        .unwrap();
    let (second, _) = latchkey::signin::setup_link(&server.state.signin())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(form_page(&b, &server, &path_of(&first)).await.0, 403);
    assert_eq!(form_page(&b, &server, &path_of(&second)).await.0, 200);
    assert_eq!(form_page(&b, &server, &cli_path).await.0, 200);
    server.stop().await;
}
