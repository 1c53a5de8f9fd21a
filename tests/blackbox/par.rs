//! RFC 9126 pushed authorization requests: `/par` with client authentication, the pushed
//! request validated at push time (JSON errors), `/authorize` taking it once by `request_uri`,
//! clients and servers that require it, and instances that share it through the database.

use latchkey::clock::Clock as _;
use latchkey::testdb::TestDb;
use serde_json::Value;

use crate::flow::{
    REDIRECT, authorize_url, basic, browser, browser_flow, fixture, query_param, redeem,
};
use crate::harness::{Env, Server, get_json, http};

const PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// The parameters of a code flow for `client_id` (as `authorize_url` makes them), as a form.
fn pushed_form(server: &Server, client_id: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let url = url::Url::parse(&authorize_url(server, client_id, extra)).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn push(server: &Server, auth: Option<&str>, form: &[(String, String)]) -> (u16, Value) {
    let mut req = http().post(server.url("/par")).form(form);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    if status == 201 {
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
    (status, r.json().await.unwrap())
}

fn by_reference(server: &Server, client_id: &str, request_uri: &str) -> String {
    let mut u = url::Url::parse(&server.url("/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("request_uri", request_uri);
    u.to_string()
}

#[tokio::test]
async fn a_pushed_request_is_validated_at_push_time_and_used_once_by_reference() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let auth = basic(&f.client_id, &f.client_secret);
        let meta = get_json(&server.url("/.well-known/oauth-authorization-server")).await;
        assert_eq!(
            meta["pushed_authorization_request_endpoint"],
            format!("{}/par", server.state.config.issuer)
        );
        assert_eq!(meta["require_pushed_authorization_requests"], false);

        // Pushed, then used by reference: the usual sign-in, consent and code.
        let (status, pushed) = push(
            &server,
            Some(&auth),
            &pushed_form(&server, &f.client_id, &[]),
        )
        .await;
        assert_eq!(status, 201, "{pushed}");
        assert_eq!(pushed["expires_in"], 60);
        let request_uri = pushed["request_uri"].as_str().unwrap().to_owned();
        assert!(request_uri.starts_with(PREFIX) && request_uri.len() > PREFIX.len() + 40);
        let b = browser();
        let back = browser_flow(
            &b,
            &server,
            &by_reference(&server, &f.client_id, &request_uri),
            &f.email,
        )
        .await;
        assert!(back.starts_with(REDIRECT), "{back}");
        assert_eq!(query_param(&back, "state").as_deref(), Some("st-123"));
        let code = query_param(&back, "code").unwrap();
        assert_eq!(redeem(&server, &f, &code).await.status(), 200);

        // Once: the same request_uri again is an error page, never a redirect.
        let r = b
            .get(by_reference(&server, &f.client_id, &request_uri))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.headers().get("location").is_none());
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("expired or was already used")
        );

        // Refused at push time with the authorization endpoint's error codes, as JSON.
        let form = pushed_form(&server, &f.client_id, &[]);
        let (status, e) = push(&server, None, &form).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (401, Some("invalid_client")),
            "{e}"
        );
        let cases: [(&[(&str, &str)], &str); 3] = [
            (
                &[("redirect_uri", "https://evil.example/cb")],
                "invalid_request",
            ),
            (&[("response_type", "token")], "unsupported_response_type"),
            (
                &[("request_uri", "urn:ietf:params:oauth:request_uri:x")],
                "invalid_request",
            ),
        ];
        for (extra, code) in cases {
            let mut form: Vec<(String, String)> = pushed_form(&server, &f.client_id, &[])
                .into_iter()
                .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
                .collect();
            form.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let (status, e) = push(&server, Some(&auth), &form).await;
            assert_eq!(
                (status, e["error"].as_str()),
                (400, Some(code)),
                "{extra:?}: {e}"
            );
        }

        // Another client's request_uri does not work for this one, and is not spent by it;
        // an expired one does not work at all.
        let (_, pushed) = push(
            &server,
            Some(&auth),
            &pushed_form(&server, &f.client_id, &[]),
        )
        .await;
        let request_uri = pushed["request_uri"].as_str().unwrap().to_owned();
        let r = browser()
            .get(by_reference(&server, "someone-else", &request_uri))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = browser()
            .get(by_reference(&server, &f.client_id, &request_uri))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "still there for its own client");
        let (_, pushed) = push(
            &server,
            Some(&auth),
            &pushed_form(&server, &f.client_id, &[]),
        )
        .await;
        let request_uri = pushed["request_uri"].as_str().unwrap().to_owned();
        server.clock.advance(61);
        let r = browser()
            .get(by_reference(&server, &f.client_id, &request_uri))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "a pushed request lives 60 s");
        server.stop().await;
    }
}

#[tokio::test]
async fn clients_and_servers_that_require_pushed_requests() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &["--require-par"]).await;
        let server = Server::start(env.config()).await;
        let auth = basic(&f.client_id, &f.client_secret);
        // A plain request goes back to the client with invalid_request.
        let r = browser()
            .get(authorize_url(&server, &f.client_id, &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let to = crate::flow::location(&r);
        assert!(to.starts_with(REDIRECT), "{to}");
        assert_eq!(
            query_param(&to, "error").as_deref(),
            Some("invalid_request")
        );
        // Pushed, it goes through sign-in and consent (the forms carry the pushed mark).
        let (_, pushed) = push(
            &server,
            Some(&auth),
            &pushed_form(&server, &f.client_id, &[]),
        )
        .await;
        let request_uri = pushed["request_uri"].as_str().unwrap();
        let b = browser();
        let login = b
            .get(by_reference(&server, &f.client_id, request_uri))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let carried = crate::flow::input_value(&login, "request").unwrap();
        assert!(carried.contains("pushed_mark="), "{carried}");
        // The mark proves nothing in another browser, nor over other parameters.
        let refused = |r: reqwest::Response| {
            assert_eq!(r.status(), 303);
            let to = crate::flow::location(&r);
            assert_eq!(
                query_param(&to, "error").as_deref(),
                Some("invalid_request"),
                "{to}"
            );
        };
        refused(
            browser()
                .get(server.url(&format!("/authorize?{carried}")))
                .send()
                .await
                .unwrap(),
        );
        refused(
            b.get(server.url(&format!("/authorize?{carried}&prompt=none")))
                .send()
                .await
                .unwrap(),
        );
        // In the browser that took it, the flow goes on to a code.
        let r = crate::flow::sign_in(&b, &server, &login, &f.email, crate::flow::PASSWORD).await;
        let back = browser_flow(
            &b,
            &server,
            &server.url(&crate::flow::location(&r)),
            &f.email,
        )
        .await;
        assert!(query_param(&back, "code").is_some(), "{back}");
        server.stop().await;

        // Registration metadata (RFC 9126 §6) says the same.
        let env = Env::new(TestDb::sqlite(), "[registration]\npolicy = \"open\"");
        let server = Server::start(env.config()).await;
        let r = http()
            .post(server.url("/register"))
            .json(&serde_json::json!({
                "redirect_uris": [REDIRECT],
                "require_pushed_authorization_requests": true,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let c: Value = r.json().await.unwrap();
        assert_eq!(c["require_pushed_authorization_requests"], true, "{c}");
        let r = browser()
            .get(authorize_url(
                &server,
                c["client_id"].as_str().unwrap(),
                &[],
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(
            query_param(&crate::flow::location(&r), "error").as_deref(),
            Some("invalid_request")
        );
        server.stop().await;

        // par.required: every client, and discovery says so.
        let env = Env::new(TestDb::sqlite(), "[par]\nrequired = true");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let meta = get_json(&server.url("/.well-known/openid-configuration")).await;
        assert_eq!(meta["require_pushed_authorization_requests"], true);
        let r = browser()
            .get(authorize_url(&server, &f.client_id, &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(
            query_param(&crate::flow::location(&r), "error").as_deref(),
            Some("invalid_request")
        );
        server.stop().await;
    }
}

/// Pushed on one instance, used on another: the request lives in the database, and of two
/// instances only one can take it.
#[tokio::test]
async fn a_request_pushed_to_one_instance_is_used_once_on_any() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let a = Server::start(env.config()).await;
        let b_srv = Server::start(env.config()).await;
        let auth = basic(&f.client_id, &f.client_secret);
        let (_, pushed) = push(&a, Some(&auth), &pushed_form(&a, &f.client_id, &[])).await;
        let request_uri = pushed["request_uri"].as_str().unwrap().to_owned();
        let now = a.clock.now();
        b_srv.clock.set(now);
        let back = browser_flow(
            &browser(),
            &b_srv,
            &by_reference(&b_srv, &f.client_id, &request_uri),
            &f.email,
        )
        .await;
        assert!(query_param(&back, "code").is_some(), "{back}");
        let r = browser()
            .get(by_reference(&a, &f.client_id, &request_uri))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "used on b: gone on a too");
        a.stop().await;
        b_srv.stop().await;
    }
}
