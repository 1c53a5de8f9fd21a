//! CSRF tokens are bound to the browser's session once it has one: a CSRF cookie planted in
//! a victim's browser (an http issuer, or a sibling domain that can set cookies) cannot be
//! paired with a token the attacker got for that cookie.

use latchkey::testdb::TestDb;

use crate::flow::{PASSWORD, fixture, input_value, sign_in};
use crate::harness::{Env, Server};

/// A client without a cookie store: the test says which cookies each request carries.
fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value a response sets for cookie `name`.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The sign-in page for `cookies`: the CSRF cookie it sets (or the one sent) and its token.
async fn login_form(server: &Server, cookies: &str) -> (String, String, String) {
    let r = bare()
        .get(server.url("/login"))
        .header("cookie", cookies)
        .send()
        .await
        .unwrap();
    let csrf_cookie = set_cookie(&r, "latchkey_csrf");
    let html = r.text().await.unwrap();
    let token = input_value(&html, "csrf_token").unwrap();
    (csrf_cookie.unwrap_or_default(), token, html)
}

#[tokio::test]
async fn a_planted_csrf_cookie_cannot_be_paired_with_the_attackers_token() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let label = format!("{:?}", server.state.store.backend());

        // The victim signs in: a CSRF cookie, then a session cookie.
        let (victim_csrf, _, html) = login_form(&server, "").await;
        let r = bare()
            .post(server.url("/login"))
            .header("cookie", format!("latchkey_csrf={victim_csrf}"))
            .form(&[
                (
                    "csrf_token",
                    input_value(&html, "csrf_token").unwrap().as_str(),
                ),
                ("email", f.email.as_str()),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{}: the victim signs in", label);
        let session = set_cookie(&r, "latchkey_session").expect("a session cookie");

        // The attacker gets a CSRF cookie and its token from a page of their own, and plants
        // the cookie in the victim's browser, which keeps its session cookie.
        let (attacker_csrf, attacker_token, _) = login_form(&server, "").await;
        let planted = format!("latchkey_session={session}; latchkey_csrf={attacker_csrf}");
        let forged = bare()
            .post(server.url("/account/sessions/revoke-all"))
            .header("cookie", &planted)
            .form(&[("csrf_token", attacker_token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(
            forged.status(),
            403,
            "{}: a token made without the session does not pass with it",
            label
        );

        // The victim's own form still works: a page shown with the session carries a token
        // bound to it (whatever CSRF cookie the browser holds).
        let account = bare()
            .get(server.url("/account"))
            .header("cookie", &planted)
            .send()
            .await
            .unwrap();
        assert_eq!(account.status(), 200);
        let token = input_value(&account.text().await.unwrap(), "csrf_token").unwrap();
        let own = bare()
            .post(server.url("/account/sessions/revoke-all"))
            .header("cookie", &planted)
            .form(&[("csrf_token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(own.status(), 303, "{}: the session's own form", label);

        // A form shown before the sign-in is spent by it.
        let (_, old_token, html) =
            login_form(&server, &format!("latchkey_csrf={victim_csrf}")).await;
        let r = sign_in(&crate::flow::browser(), &server, &html, &f.email, PASSWORD).await;
        assert_eq!(
            r.status(),
            403,
            "{label}: another browser has no matching cookie"
        );
        let r = bare()
            .post(server.url("/login"))
            .header("cookie", format!("latchkey_csrf={victim_csrf}"))
            .form(&[
                ("csrf_token", old_token.as_str()),
                ("email", f.email.as_str()),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let session = set_cookie(&r, "latchkey_session").unwrap();
        let stale = bare()
            .post(server.url("/account/signout"))
            .header(
                "cookie",
                format!("latchkey_session={session}; latchkey_csrf={victim_csrf}"),
            )
            .form(&[("csrf_token", old_token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(
            stale.status(),
            403,
            "{}: a token from before the sign-in does not pass after it",
            label
        );
        server.stop().await;
    }
}
