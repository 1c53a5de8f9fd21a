//! Key rotation across instances: made through the CLI against a running server's database,
//! published by every instance without a restart, old tokens verifying until they expire.

use latchkey::clock::Clock as _;
use latchkey::testdb::TestDb;
use latchkey_jwks::{Alg, PublicKeySet, VerifyError, VerifyOptions};
use serde_json::json;

use crate::harness::{Env, Server, get_json, kids};

#[tokio::test]
async fn cli_rotation_is_published_by_both_instances_and_tokens_signed_before_still_verify() {
    for db in TestDb::all().await {
        let label = db.label;
        let env = Env::new(db, "");
        let a = Server::start(env.config()).await;
        let b = Server::start(env.config()).await;
        let before = kids(&get_json(&a.url("/jwks.json")).await);
        assert_eq!(before.len(), 4, "{label}");
        assert_eq!(
            before,
            kids(&get_json(&b.url("/jwks.json")).await),
            "{label}"
        );

        // A token signed by instance a before the rotation.
        let now = a.clock.now();
        let issuer = a.state.config.issuer.clone();
        let claims =
            json!({"iss": issuer, "aud": "api", "sub": "u1", "iat": now, "exp": now + 600});
        let ring = a.state.keys.keyring(now).await.unwrap();
        let old_token = ring
            .sign(Alg::Es256, "JWT", claims.as_object().unwrap())
            .unwrap();

        let out = env.cli(&["keys", "rotate"], "").await.unwrap();
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out["created"].as_array().unwrap().len(), 4, "{label}");

        // Within the refresh interval an instance serves the keyring it has...
        assert_eq!(
            kids(&get_json(&a.url("/jwks.json")).await),
            before,
            "{label}"
        );
        // ...and after it, both publish old and new keys, identically, with no restart.
        a.clock.advance(31);
        b.clock.advance(31);
        let after_a = get_json(&a.url("/jwks.json")).await;
        let after_b = get_json(&b.url("/jwks.json")).await;
        assert_eq!(kids(&after_a), kids(&after_b), "{label}");
        assert_eq!(kids(&after_a).len(), 8, "{label}");
        assert!(before.iter().all(|k| kids(&after_a).contains(k)), "{label}");

        // The pre-rotation token verifies against what is published now.
        let published = PublicKeySet::from_jwks_json(&after_b.to_string()).unwrap();
        let opts = VerifyOptions {
            algs: &[Alg::Es256],
            issuer: &issuer,
            audience: "api",
            typ: None,
            now: b.clock.now(),
            leeway: 0,
        };
        assert!(published.verify(&old_token, &opts).is_ok(), "{label}");

        // The new keys sign once the publish lead has passed; the old ones stay published
        // for the longest token lifetime after that, then leave.
        let lead = a.state.keys.policy().publish_lead;
        let retain = a.state.keys.policy().retain_retired;
        a.clock.advance(lead);
        let ring = a.state.keys.keyring(a.clock.now()).await.unwrap();
        let new_kids: Vec<String> = kids(&after_a)
            .into_iter()
            .filter(|k| !before.contains(k))
            .collect();
        assert!(
            new_kids.contains(&ring.signing_kid(Alg::Es256).unwrap().to_owned()),
            "{label}"
        );
        assert_eq!(
            kids(&get_json(&a.url("/jwks.json")).await).len(),
            8,
            "{label}"
        );
        a.clock.advance(retain);
        let late = get_json(&a.url("/jwks.json")).await;
        assert_eq!(kids(&late), new_kids, "{label}");
        let late = PublicKeySet::from_jwks_json(&late.to_string()).unwrap();
        assert_eq!(
            late.verify(&old_token, &opts),
            Err(VerifyError::UnknownKid),
            "{label}"
        );

        a.stop().await;
        b.stop().await;
    }
}

#[tokio::test]
async fn keys_list_shows_states() {
    let env = Env::new(TestDb::sqlite(), "");
    let out = env.cli(&["keys", "list", "--json"], "").await.unwrap();
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["state"] == "active"));
    env.cli(&["keys", "rotate", "--alg", "RS256"], "")
        .await
        .unwrap();
    let out = env.cli(&["keys", "list"], "").await.unwrap();
    assert_eq!(out.matches(" next ").count(), 1, "{out}");
    assert_eq!(out.matches(" active ").count(), 4, "{out}");
    assert!(
        env.cli(&["keys", "rotate", "--alg", "HS256"], "")
            .await
            .is_err()
    );
}
