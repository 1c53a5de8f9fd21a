//! OpenID Connect Back-Channel Logout 1.0: a relying party (a real HTTP listener here)
//! receives a signed logout token when a session it got a grant in ends: RP-initiated
//! logout, "sign out everywhere"; deliveries come from a queue in the database, so a receiver
//! that is down gets it once it is back, also after the sending instance was replaced, and of
//! two instances only one sends it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey::clock::Clock as _;
use latchkey::testdb::TestDb;
use latchkey_jwks::{Alg, PublicKeySet, VerifyOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::flow::{
    Fixture, authorize_url, browser, browser_flow, claims, code_for, fixture, input_value,
    query_param, redeem,
};
use crate::harness::{Env, Server, free_port, get_json};

const CONFIG: &str = "[backchannel_logout]\ndanger_allow_insecure_uri = true\n";

/// A relying party's back-channel logout endpoint: the `logout_token`s it received.
#[derive(Clone, Default)]
struct Receiver {
    tokens: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    /// Listens on `port` (0: any) and answers every POST 200; returns the port.
    async fn listen(&self, port: u16) -> (u16, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let tokens = self.tokens.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let tokens = tokens.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Headers, then Content-Length bytes of body.
                    let body = loop {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len = text[..end]
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break text[end + 4..end + 4 + len].to_owned();
                            }
                        }
                    };
                    if let Some(t) = url::form_urlencoded::parse(body.as_bytes())
                        .find(|(k, _)| k == "logout_token")
                        .map(|(_, v)| v.into_owned())
                    {
                        tokens.lock().unwrap().push(t);
                    }
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        (port, task)
    }

    fn received(&self) -> Vec<String> {
        self.tokens.lock().unwrap().clone()
    }

    /// Waits (up to 15 s of real time; the senders run every 2 s) for `n` tokens.
    async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..150 {
            if self.received().len() >= n {
                return self.received();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("expected {n} logout tokens, got {}", self.received().len());
    }
}

async fn rp(env: &Env, port: u16) -> Fixture {
    let uri = format!("http://127.0.0.1:{port}/backchannel");
    fixture(
        env,
        &[
            "--backchannel-logout-uri",
            &uri,
            "--backchannel-logout-session-required",
        ],
    )
    .await
}

/// A logout token verified as an RP must (Back-Channel Logout 1.0 §2.6): signature with the
/// issuer's JWKS, `typ`, `iss`, `aud`, `iat`/`exp`, the event, `sid`/`sub`, no `nonce`.
async fn verified(server: &Server, f: &Fixture, token: &str) -> Value {
    let jwks = get_json(&server.url("/jwks.json")).await;
    let keys = PublicKeySet::from_jwks_value(&jwks).unwrap();
    let claims = keys
        .verify(
            token,
            &VerifyOptions {
                algs: &Alg::ALL,
                issuer: &server.state.config.issuer,
                audience: &f.client_id,
                typ: Some("logout+jwt"),
                now: server.clock.now(),
                leeway: 5,
            },
        )
        .unwrap();
    let c = Value::Object(claims.into_map());
    assert!(c["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(c.get("nonce").is_none(), "never a nonce");
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert!(c["iat"].is_i64() && c["exp"].as_i64() > c["iat"].as_i64());
    assert_eq!(c["sub"], f.user_id.as_str());
    c
}

/// Signs in, gets tokens for the client, returns the browser and the id_token's `sid`.
async fn signed_in(server: &Server, f: &Fixture) -> (reqwest::Client, String, String) {
    let b = browser();
    let code = code_for(server, f, &b).await;
    let t: Value = redeem(server, f, &code).await.json().await.unwrap();
    let id_token = t["id_token"].as_str().unwrap().to_owned();
    let claims = claims(&id_token);
    (b, claims["sid"].as_str().unwrap().to_owned(), id_token)
}

async fn rp_logout(server: &Server, b: &reqwest::Client, id_token: &str) {
    let mut u = url::Url::parse(&server.url("/logout")).unwrap();
    u.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair(
            "post_logout_redirect_uri",
            "https://rp.example.com/logged-out",
        );
    let r = b.get(u.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn rp_initiated_logout_and_sign_out_everywhere_reach_the_relying_party() {
    for db in TestDb::all().await {
        let env = Env::new(db, CONFIG);
        let receiver = Receiver::default();
        let (port, task) = receiver.listen(0).await;
        let f = rp(&env, port).await;
        let server = Server::start(env.config()).await;
        let meta = get_json(&server.url("/.well-known/openid-configuration")).await;
        assert_eq!(meta["backchannel_logout_supported"], true);
        assert_eq!(meta["backchannel_logout_session_supported"], true);

        // Signing in again in the same browser (prompt=login) keeps the session's sid and
        // tells nobody of a logout.
        let (b, sid, _) = signed_in(&server, &f).await;
        let back = browser_flow(
            &b,
            &server,
            &authorize_url(&server, &f.client_id, &[("prompt", "login")]),
            &f.email,
        )
        .await;
        let code = query_param(&back, "code").unwrap();
        let t: Value = redeem(&server, &f, &code).await.json().await.unwrap();
        let id_token = t["id_token"].as_str().unwrap().to_owned();
        assert_eq!(claims(&id_token)["sid"], sid.as_str());
        assert!(
            server
                .state
                .store
                .logout_deliveries(&f.client_id)
                .await
                .unwrap()
                .is_empty()
        );

        // RP-initiated logout: one token, for that session.
        rp_logout(&server, &b, &id_token).await;
        let got = receiver.wait_for(1).await;
        let c = verified(&server, &f, &got[0]).await;
        assert_eq!(c["sid"], sid.as_str());

        // Two more sessions with grants, then "sign out everywhere" from one of them: a
        // token for each.
        let (b1, sid1, _) = signed_in(&server, &f).await;
        let (_b2, sid2, _) = signed_in(&server, &f).await;
        let page = b1.get(server.url("/account")).send().await.unwrap();
        let token = input_value(&page.text().await.unwrap(), "csrf_token").unwrap();
        let r = b1
            .post(server.url("/account/sessions/revoke-all"))
            .form(&[("csrf_token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let got = receiver.wait_for(3).await;
        let mut sids: Vec<String> = Vec::new();
        for t in &got[1..] {
            sids.push(
                verified(&server, &f, t).await["sid"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        sids.sort();
        let mut want = vec![sid1, sid2];
        want.sort();
        assert_eq!(sids, want);
        // An account signed out of one session from the account page, then disabled by an
        // operator with another session open: a token for each.
        let (b3, sid3, _) = signed_in(&server, &f).await;
        let (_b4, sid4, _) = signed_in(&server, &f).await;
        let page = b3.get(server.url("/account")).send().await.unwrap();
        let token = input_value(&page.text().await.unwrap(), "csrf_token").unwrap();
        let r = b3
            .post(server.url("/account/signout"))
            .form(&[("csrf_token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let got = receiver.wait_for(4).await;
        assert_eq!(verified(&server, &f, &got[3]).await["sid"], sid3.as_str());
        env.cli(&["user", "disable", "--email", &f.email], "")
            .await
            .unwrap();
        // The CLI stamps the queue with the wall clock; the server's test clock stands still.
        server.clock.advance(60);
        let got = receiver.wait_for(5).await;
        assert_eq!(verified(&server, &f, &got[4]).await["sid"], sid4.as_str());

        let rows = server
            .state
            .store
            .logout_deliveries(&f.client_id)
            .await
            .unwrap();
        assert_eq!(rows.len(), 5);
        assert!(
            rows.iter().all(|(_, _, delivered, _)| *delivered),
            "{rows:?}"
        );
        server.stop().await;
        task.abort();
    }
}

/// The receiver is down when the session ends; the sender retries with backoff. The instance
/// is replaced before the receiver is back: the new one (of two on the database) delivers it,
/// once.
#[tokio::test]
async fn a_logout_reaches_a_receiver_that_comes_back_after_the_sender_restarts() {
    for db in TestDb::all().await {
        let env = Env::new(db, CONFIG);
        let port = free_port().await;
        let f = rp(&env, port).await;
        let a = Server::start(env.config()).await;
        let (b, sid, id_token) = signed_in(&a, &f).await;
        rp_logout(&a, &b, &id_token).await;
        // The first attempt fails (connection refused) and is scheduled again.
        let mut tried = false;
        for _ in 0..100 {
            let rows = a.state.store.logout_deliveries(&f.client_id).await.unwrap();
            if rows
                .first()
                .is_some_and(|(_, attempts, _, _)| *attempts >= 1)
            {
                tried = true;
                assert!(!rows[0].2 && !rows[0].3, "neither delivered nor given up");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(tried, "the first attempt was made");
        let now = a.clock.now();
        a.stop().await;

        // The receiver comes back; two new instances, past the backoff.
        let receiver = Receiver::default();
        let (_, task) = receiver.listen(port).await;
        let b1 = Server::start(env.config()).await;
        let b2 = Server::start(env.config()).await;
        for s in [&b1, &b2] {
            s.clock.set(now + 30);
        }
        let got = receiver.wait_for(1).await;
        let c = verified(&b1, &f, &got[0]).await;
        assert_eq!(c["sid"], sid.as_str());
        // A few more rounds of both senders: still one.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(receiver.received().len(), 1, "sent by one instance, once");
        let rows = b1
            .state
            .store
            .logout_deliveries(&f.client_id)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].2, "delivered: {rows:?}");
        b1.stop().await;
        b2.stop().await;
        task.abort();
    }
}
