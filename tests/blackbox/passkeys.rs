//! Passkeys with a software authenticator (webauthn-authenticator-rs): registration from the
//! account page, the username-first sign-in, and each refusal — replayed or expired
//! ceremonies, a credential bound to another user, a counter that goes backwards, missing user
//! verification — spoken to over HTTP as the page script would.

use latchkey::testdb::TestDb;
use serde_json::Value;
use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};

use crate::flow::{
    PASSWORD, account_page, authorize_url, browser, claims, fixture, input_value, location,
    query_param, redeem, signed_in_browser,
};
use crate::harness::{Env, Server};

/// The default issuer: what the authenticator sees as the page's origin.
const ORIGIN: &str = "http://localhost:8080";

/// Asks for options at `path` with the page's CSRF token; returns (ceremony, options).
async fn options(
    b: &reqwest::Client,
    server: &Server,
    path: &str,
    csrf: &str,
    extra: &[(&str, &str)],
) -> (String, Value) {
    let mut form = vec![("csrf_token", csrf)];
    form.extend_from_slice(extra);
    let r = b.post(server.url(path)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v: Value = r.json().await.unwrap();
    (
        v["ceremony"].as_str().unwrap().to_owned(),
        v["options"].clone(),
    )
}

/// The options and the authenticator's answer for adding a passkey, not yet posted.
async fn registration(
    b: &reqwest::Client,
    server: &Server,
    auth: &mut SoftPasskey,
) -> (String, String, Value) {
    let html = account_page(b, server).await;
    let csrf = input_value(&html, "csrf_token").unwrap();
    let (ceremony, opts) = options(b, server, "/account/passkeys/options", &csrf, &[]).await;
    let ccr: CreationChallengeResponse = serde_json::from_value(opts.clone()).unwrap();
    let answer = auth
        .do_registration(Url::parse(ORIGIN).unwrap(), ccr)
        .expect("the authenticator registers");
    let both = serde_json::json!({ "answer": answer, "options": opts });
    (csrf, ceremony, both)
}

async fn post_registration(
    b: &reqwest::Client,
    server: &Server,
    csrf: &str,
    ceremony: &str,
    answer: &Value,
    name: &str,
) -> reqwest::Response {
    b.post(server.url("/account/passkeys"))
        .form(&[
            ("csrf_token", csrf),
            ("ceremony", ceremony),
            ("credential", &answer.to_string()),
            ("name", name),
        ])
        .send()
        .await
        .unwrap()
}

/// Adds a passkey through the account page; asserts it was added.
async fn add_passkey(b: &reqwest::Client, server: &Server, auth: &mut SoftPasskey, name: &str) {
    let (csrf, ceremony, both) = registration(b, server, auth).await;
    let r = post_registration(b, server, &csrf, &ceremony, &both["answer"], name).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(location(&r), "/account");
    assert!(account_page(b, server).await.contains(name));
}

/// Starts a username-first passkey sign-in from the sign-in page `page`; returns the ceremony
/// and the options.
async fn signin_options(
    b: &reqwest::Client,
    server: &Server,
    page: &str,
    email: &str,
) -> (String, RequestChallengeResponse) {
    let csrf = input_value(page, "csrf_token").unwrap();
    let (ceremony, opts) = options(
        b,
        server,
        "/login/passkey/options",
        &csrf,
        &[("email", email), ("mediation", "required")],
    )
    .await;
    (ceremony, serde_json::from_value(opts).unwrap())
}

async fn post_assertion(
    b: &reqwest::Client,
    server: &Server,
    page: &str,
    ceremony: &str,
    answer: &Value,
) -> reqwest::Response {
    let csrf = input_value(page, "csrf_token").unwrap();
    let request = input_value(page, "request").unwrap_or_default();
    b.post(server.url("/login/passkey"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("request", request.as_str()),
            ("ceremony", ceremony),
            ("credential", &answer.to_string()),
        ])
        .send()
        .await
        .unwrap()
}

async fn login_page(b: &reqwest::Client, _server: &Server, url: &str) -> String {
    b.get(url).send().await.unwrap().text().await.unwrap()
}

fn assert(auth: &mut SoftPasskey, options: RequestChallengeResponse) -> Value {
    let answer = auth
        .do_authentication(Url::parse(ORIGIN).unwrap(), options)
        .expect("the authenticator signs");
    serde_json::to_value(answer).unwrap()
}

#[tokio::test]
async fn a_registered_passkey_signs_in_username_first_and_tokens_say_so() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let owner = signed_in_browser(&server, &f.email).await;
        let mut auth = SoftPasskey::new(true);

        // The registration options ask for user verification and a discoverable credential.
        let (csrf, ceremony, both) = registration(&owner, &server, &mut auth).await;
        let sel = &both["options"]["publicKey"]["authenticatorSelection"];
        assert_eq!(sel["userVerification"], "required");
        assert_eq!(sel["residentKey"], "preferred");
        let r =
            post_registration(&owner, &server, &csrf, &ceremony, &both["answer"], "Laptop").await;
        assert_eq!(r.status(), 303);
        let html = account_page(&owner, &server).await;
        assert!(html.contains("Laptop"));

        // A second registration excludes the first credential.
        let html = account_page(&owner, &server).await;
        let csrf = input_value(&html, "csrf_token").unwrap();
        let (_, opts) = options(&owner, &server, "/account/passkeys/options", &csrf, &[]).await;
        let excluded = opts["publicKey"]["excludeCredentials"].as_array().unwrap();
        assert_eq!(excluded.len(), 1);
        assert_eq!(excluded[0]["id"], both["answer"]["rawId"]);

        // A fresh browser signs in with it, username-first, during an authorization.
        let b = browser();
        let page = login_page(&b, &server, &authorize_url(&server, &f.client_id, &[])).await;
        let (ceremony, opts) = signin_options(&b, &server, &page, &f.email).await;
        assert_eq!(opts.public_key.allow_credentials.len(), 1);
        let answer = assert(&mut auth, opts);
        let r = post_assertion(&b, &server, &page, &ceremony, &answer).await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        assert!(location(&r).starts_with("/authorize?"));
        // Consent, then the code; the id_token says a passkey was used.
        let back =
            crate::flow::browser_flow(&b, &server, &server.url(&location(&r)), &f.email).await;
        let code = query_param(&back, "code").expect("a code");
        let tokens: Value = redeem(&server, &f, &code).await.json().await.unwrap();
        let id = claims(tokens["id_token"].as_str().unwrap());
        assert_eq!(id["amr"], serde_json::json!(["hwk", "mfa"]), "{id}");
        assert_eq!(id["acr"], "phrh");

        // The account page shows when it was last used.
        assert!(account_page(&owner, &server).await.contains("last used"));
        let signins = server.audit(Some(&f.user_id)).await;
        assert!(
            signins
                .iter()
                .any(|e| e.kind == "signin.success" && e.details["method"] == "passkey"),
            "{signins:?}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn ceremonies_are_single_use_and_expire() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let owner = signed_in_browser(&server, &f.email).await;
        let mut auth = SoftPasskey::new(true);

        // A registration ceremony is used once.
        let (csrf, ceremony, both) = registration(&owner, &server, &mut auth).await;
        let r = post_registration(&owner, &server, &csrf, &ceremony, &both["answer"], "One").await;
        assert_eq!(r.status(), 303);
        let r = post_registration(&owner, &server, &csrf, &ceremony, &both["answer"], "Two").await;
        assert_eq!(r.status(), 400);
        assert!(!account_page(&owner, &server).await.contains("Two"));

        // A sign-in ceremony is used once: a replayed answer is refused.
        let b = browser();
        let page = login_page(&b, &server, &server.url("/login")).await;
        let (ceremony, opts) = signin_options(&b, &server, &page, &f.email).await;
        let answer = assert(&mut auth, opts);
        let r = post_assertion(&b, &server, &page, &ceremony, &answer).await;
        assert_eq!(r.status(), 303);
        let b2 = browser();
        let page2 = login_page(&b2, &server, &server.url("/login")).await;
        let r = post_assertion(&b2, &server, &page2, &ceremony, &answer).await;
        assert_eq!(r.status(), 401, "a replayed ceremony does not sign in");

        // A ceremony older than five minutes is refused.
        let (ceremony, opts) = signin_options(&b2, &server, &page2, &f.email).await;
        let answer = assert(&mut auth, opts);
        server.clock.advance(301);
        let r = post_assertion(&b2, &server, &page2, &ceremony, &answer).await;
        assert_eq!(r.status(), 401, "an expired ceremony does not sign in");
        assert!(r.text().await.unwrap().contains("could not be used"));
        server.stop().await;
    }
}

#[tokio::test]
async fn a_counter_that_goes_backwards_is_refused() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let owner = signed_in_browser(&server, &f.email).await;
        let mut auth = SoftPasskey::new(true);
        add_passkey(&owner, &server, &mut auth, "Key").await;

        // Two answers signed in order (counters 1 and 2), presented in the opposite order:
        // what a cloned authenticator looks like.
        let b = browser();
        let page = login_page(&b, &server, &server.url("/login")).await;
        let (first_ceremony, opts) = signin_options(&b, &server, &page, &f.email).await;
        let first = assert(&mut auth, opts);
        let (second_ceremony, opts) = signin_options(&b, &server, &page, &f.email).await;
        let second = assert(&mut auth, opts);
        let r = post_assertion(&b, &server, &page, &second_ceremony, &second).await;
        assert_eq!(r.status(), 303);
        // The page was shown before that sign-in: signed out, the browser can post it again.
        crate::flow::sign_out(&b, &server).await;
        let r = post_assertion(&b, &server, &page, &first_ceremony, &first).await;
        assert_eq!(r.status(), 401, "the older counter is refused");
        server.stop().await;
    }
}

#[tokio::test]
async fn user_verification_is_required() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let owner = signed_in_browser(&server, &f.email).await;
        let mut auth = SoftPasskey::new(true);
        add_passkey(&owner, &server, &mut auth, "Key").await;

        // An authenticator that does no user verification answers when not asked for it;
        // the server still requires it.
        let mut no_uv = auth;
        let b = browser();
        let page = login_page(&b, &server, &server.url("/login")).await;
        let (ceremony, mut opts) = signin_options(&b, &server, &page, &f.email).await;
        opts.public_key.user_verification =
            webauthn_rs_proto::UserVerificationPolicy::Discouraged_DO_NOT_USE;
        let answer = assert(&mut no_uv, opts);
        let r = post_assertion(&b, &server, &page, &ceremony, &answer).await;
        assert_eq!(r.status(), 401);
        server.stop().await;
    }
}

#[tokio::test]
async fn a_credential_bound_to_another_user_is_refused() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        env.cli(
            &[
                "user",
                "create",
                "--email",
                "mallory@example.com",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        )
        .await
        .unwrap();
        let server = Server::start(env.config()).await;
        let ada = signed_in_browser(&server, &f.email).await;
        let mallory = signed_in_browser(&server, "mallory@example.com").await;
        let mut ada_key = SoftPasskey::new(true);
        let mut mallory_key = SoftPasskey::new(true);
        let (csrf, ceremony, ada_reg) = registration(&ada, &server, &mut ada_key).await;
        let r =
            post_registration(&ada, &server, &csrf, &ceremony, &ada_reg["answer"], "Ada's").await;
        assert_eq!(r.status(), 303);

        // Mallory answers her own ceremony with Ada's credential id spliced into the
        // authenticator data, sent with attestation "none" (which signs nothing), so only the
        // binding of a credential id to one user stops it.
        let (csrf, ceremony, reg) = registration(&mallory, &server, &mut mallory_key).await;
        let mut answer = reg["answer"].clone();
        let theirs = b64(answer["rawId"].as_str().unwrap());
        let ada_id = b64(ada_reg["answer"]["rawId"].as_str().unwrap());
        assert_eq!(theirs.len(), ada_id.len());
        let att: serde_cbor_2::Value =
            serde_cbor_2::from_slice(&b64(answer["response"]["attestationObject"]
                .as_str()
                .unwrap()))
            .unwrap();
        let serde_cbor_2::Value::Map(map) = att else {
            panic!("an attestation object is a map")
        };
        let Some(serde_cbor_2::Value::Bytes(mut auth_data)) = map
            .get(&serde_cbor_2::Value::Text("authData".into()))
            .cloned()
        else {
            panic!("authData")
        };
        let at = auth_data
            .windows(theirs.len())
            .position(|w| w == theirs.as_slice())
            .unwrap();
        auth_data[at..at + theirs.len()].copy_from_slice(&ada_id);
        let forged = serde_cbor_2::Value::Map(
            [
                ("fmt", serde_cbor_2::Value::Text("none".into())),
                ("attStmt", serde_cbor_2::Value::Map(Default::default())),
                ("authData", serde_cbor_2::Value::Bytes(auth_data)),
            ]
            .into_iter()
            .map(|(k, v)| (serde_cbor_2::Value::Text(k.into()), v))
            .collect(),
        );
        answer["response"]["attestationObject"] =
            Value::String(enc(&serde_cbor_2::to_vec(&forged).unwrap()));
        answer["rawId"] = ada_reg["answer"]["rawId"].clone();
        answer["id"] = ada_reg["answer"]["id"].clone();
        let r = post_registration(&mallory, &server, &csrf, &ceremony, &answer, "Stolen").await;
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("already registered"));
        assert!(!account_page(&mallory, &server).await.contains("Stolen"));
        server.stop().await;
    }
}

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn enc(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[tokio::test]
async fn an_unknown_email_gets_options_that_look_like_a_real_accounts() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let owner = signed_in_browser(&server, &f.email).await;
        let mut auth = SoftPasskey::new(true);
        add_passkey(&owner, &server, &mut auth, "Key").await;

        let b = browser();
        let page = login_page(&b, &server, &server.url("/login")).await;
        let (_, known) = signin_options(&b, &server, &page, &f.email).await;
        let (_, unknown) = signin_options(&b, &server, &page, "nobody@example.com").await;
        let (_, again) = signin_options(&b, &server, &page, "nobody@example.com").await;
        assert_eq!(known.public_key.allow_credentials.len(), 1);
        assert_eq!(unknown.public_key.allow_credentials.len(), 1);
        assert_eq!(
            unknown.public_key.allow_credentials[0].id, again.public_key.allow_credentials[0].id,
            "the stand-in is stable, as a real credential id is"
        );
        assert!(known.mediation.is_none() && unknown.mediation.is_none());
        assert_eq!(
            known.public_key.user_verification,
            unknown.public_key.user_verification
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn passkeys_are_renamed_and_removed_by_their_owner_only() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        env.cli(
            &[
                "user",
                "create",
                "--email",
                "eve@example.com",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        )
        .await
        .unwrap();
        let server = Server::start(env.config()).await;
        let owner = signed_in_browser(&server, &f.email).await;
        let mut auth = SoftPasskey::new(true);
        add_passkey(&owner, &server, &mut auth, "Old name").await;
        add_passkey(&owner, &server, &mut SoftPasskey::new(true), "Second").await;
        let passkeys = server.state.store.passkeys_of(&f.user_id).await.unwrap();
        let id = passkeys
            .iter()
            .find(|p| p.name == "Old name")
            .unwrap()
            .id
            .clone();

        // Someone else cannot touch it: 404, and nothing changes.
        let eve = signed_in_browser(&server, "eve@example.com").await;
        let eve_csrf = input_value(&account_page(&eve, &server).await, "csrf_token").unwrap();
        for action in ["rename", "delete"] {
            let r = eve
                .post(server.url(&format!("/account/passkeys/{id}/{action}")))
                .form(&[("csrf_token", eve_csrf.as_str()), ("name", "Eve's now")])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{action}");
        }

        // Without the CSRF token, nothing happens either.
        let r = owner
            .post(server.url(&format!("/account/passkeys/{id}/rename")))
            .form(&[("name", "No token")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);

        let csrf = input_value(&account_page(&owner, &server).await, "csrf_token").unwrap();
        let r = owner
            .post(server.url(&format!("/account/passkeys/{id}/rename")))
            .form(&[("csrf_token", csrf.as_str()), ("name", "  New name  ")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let html = account_page(&owner, &server).await;
        assert!(html.contains("New name") && !html.contains("Old name"));

        let r = owner
            .post(server.url(&format!("/account/passkeys/{id}/delete")))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(
            server
                .state
                .store
                .passkeys_of(&f.user_id)
                .await
                .unwrap()
                .len(),
            1
        );

        // The last passkey goes only after a recent sign-in.
        let last = server.state.store.passkeys_of(&f.user_id).await.unwrap()[0]
            .id
            .clone();
        server.clock.advance(11 * 60);
        let r = owner
            .post(server.url(&format!("/account/passkeys/{last}/delete")))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("sign in again"));
        let fresh = signed_in_browser(&server, &f.email).await;
        let csrf = input_value(&account_page(&fresh, &server).await, "csrf_token").unwrap();
        let r = fresh
            .post(server.url(&format!("/account/passkeys/{last}/delete")))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert!(
            server
                .state
                .store
                .passkeys_of(&f.user_id)
                .await
                .unwrap()
                .is_empty()
        );
        // The audit log saw both passkeys come and go.
        let uid = Some(f.user_id.as_str());
        assert_eq!(server.audited("passkey.added", uid).await, 2);
        assert_eq!(server.audited("passkey.removed", uid).await, 2);
        server.stop().await;
    }
}

#[tokio::test]
async fn acr_values_phr_asks_for_a_passkey_even_with_a_password_session() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &["--first-party"]).await;
        let server = Server::start(env.config()).await;
        let b = signed_in_browser(&server, &f.email).await;
        let mut auth = SoftPasskey::new(true);
        add_passkey(&b, &server, &mut auth, "Key").await;

        // Signed in with a password: a plain request gets a code at once...
        let r = b
            .get(authorize_url(&server, &f.client_id, &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        // ...one asking for phishing resistance gets the passkey-only sign-in page.
        let url = authorize_url(&server, &f.client_id, &[("acr_values", "phr")]);
        let page = login_page(&b, &server, &url).await;
        assert!(page.contains("asks for a passkey sign-in"), "{page}");
        assert!(!page.contains("current-password"));
        let (ceremony, opts) = signin_options(&b, &server, &page, &f.email).await;
        let answer = assert(&mut auth, opts);
        let r = post_assertion(&b, &server, &page, &ceremony, &answer).await;
        assert_eq!(r.status(), 303);
        let r = b.get(server.url(&location(&r))).send().await.unwrap();
        assert_eq!(r.status(), 303);
        let code = query_param(&location(&r), "code").expect("a code after the passkey");
        let tokens: Value = redeem(&server, &f, &code).await.json().await.unwrap();
        assert_eq!(claims(tokens["id_token"].as_str().unwrap())["acr"], "phrh");
        server.stop().await;
    }
}
