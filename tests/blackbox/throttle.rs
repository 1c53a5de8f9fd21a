//! Sign-in throttling: failures per address and per account lead to short, growing waits that
//! look the same for known and unknown accounts, and end by themselves.

use latchkey::testdb::TestDb;

use crate::flow::{PASSWORD, authorize_url, browser, fixture, sign_in};
use crate::harness::{Env, Server};

#[tokio::test]
async fn repeated_failures_make_sign_in_wait_then_recover() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let b = browser();
        let page = b
            .get(authorize_url(&server, &f.client_id, &[]))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for _ in 0..6 {
            assert_eq!(
                sign_in(&b, &server, &page, &f.email, "wrong password!")
                    .await
                    .status(),
                401
            );
        }
        // Now even the right password waits, and so does an unknown account from this address.
        let r = sign_in(&b, &server, &page, &f.email, PASSWORD).await;
        assert_eq!(r.status(), 429);
        assert!(r.text().await.unwrap().contains("Too many attempts"));
        assert_eq!(
            sign_in(&b, &server, &page, "nobody@example.com", "whatever!")
                .await
                .status(),
            429
        );
        // The wait ends by itself.
        server.clock.advance(3);
        let r = sign_in(&b, &server, &page, &f.email, PASSWORD).await;
        assert_eq!(r.status(), 303, "signed in after the wait");
        server.stop().await;
    }
}
