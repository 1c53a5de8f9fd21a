//! Every store operation, on every enabled backend (SQLite always; PostgreSQL when
//! `LATCHKEY_TEST_POSTGRES_URL` is set), each test on its own fresh database.

use std::time::Duration;

use latchkey_jwks::{Alg, Kek, KekRing, PrivateKey};

use super::*;
use crate::secrets::Pepper;
use crate::testdb::TestDb;

const NOW: i64 = 1_800_000_000;

async fn each_backend<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in TestDb::all().await {
        let settings = PoolSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(10),
        };
        let store = Store::open(&db.url, &settings)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", db.label));
        test(store.clone()).await;
        store.close().await;
    }
}

/// CI must run the PostgreSQL half: a green run without it would prove half of the claim.
#[test]
fn postgres_suite_is_enabled_in_ci() {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        assert!(
            std::env::var(crate::testdb::POSTGRES_ENV).is_ok(),
            "CI=true but {} is not set",
            crate::testdb::POSTGRES_ENV
        );
    }
}

#[tokio::test]
async fn migrations_are_idempotent_and_ping_answers() {
    each_backend(|store| async move {
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
    })
    .await;
}

#[test]
fn embedded_migrations_match_the_migrations_directory() {
    for (backend, dir) in [(Backend::Sqlite, "sqlite"), (Backend::Postgres, "postgres")] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../migrations")
            .join(dir);
        let mut files: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = migrations::list(backend)
            .iter()
            .map(|(v, d, _)| format!("{v:04}_{d}.sql"))
            .collect();
        assert_eq!(files, listed, "{dir}: embed every migration file, in order");
    }
}

#[tokio::test]
async fn signing_keys_round_trip() {
    each_backend(|store| async move {
        let keks = KekRing::new(vec![Kek::new("k", &[3; 32])]).unwrap();
        let a = PrivateKey::generate(Alg::Es256)
            .unwrap()
            .seal(&keks, NOW, NOW)
            .unwrap();
        let b = PrivateKey::generate(Alg::EdDsa)
            .unwrap()
            .seal(&keks, NOW, NOW + 60)
            .unwrap();
        store.insert_signing_key(&a).await.unwrap();
        store.insert_signing_key(&b).await.unwrap();
        let keys = store.signing_keys().await.unwrap();
        assert_eq!(keys, vec![a.clone(), b]);
        assert!(store.insert_signing_key(&a).await.is_err(), "kid is unique");
    })
    .await;
}

#[tokio::test]
async fn pepper_check_refuses_a_foreign_pepper_and_accepts_rotation() {
    each_backend(|store| async move {
        let p1 = Pepper::new(vec![("p1".into(), [1; 32])]).unwrap();
        store.check_pepper(&p1, NOW).await.unwrap();
        store.check_pepper(&p1, NOW).await.unwrap();

        let same_id_other_key = Pepper::new(vec![("p1".into(), [9; 32])]).unwrap();
        assert!(matches!(
            store.check_pepper(&same_id_other_key, NOW).await,
            Err(StoreError::Conflict(_))
        ));
        let unrelated = Pepper::new(vec![("p7".into(), [7; 32])]).unwrap();
        assert!(matches!(
            store.check_pepper(&unrelated, NOW).await,
            Err(StoreError::Conflict(_))
        ));

        let rotated = Pepper::new(vec![("p2".into(), [2; 32]), ("p1".into(), [1; 32])]).unwrap();
        store.check_pepper(&rotated, NOW).await.unwrap();
        let only_new = Pepper::new(vec![("p2".into(), [2; 32])]).unwrap();
        store.check_pepper(&only_new, NOW).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn users_are_unique_by_email_case_insensitively() {
    each_backend(|store| async move {
        let new = NewUser {
            id: "u1",
            email: "Ada@Example.com",
            email_verified: true,
            name: Some("Ada"),
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
            is_admin: true,
            now: NOW,
        };
        store.create_user(&new).await.unwrap();
        let by_email = store
            .user_by_email("ada@example.COM")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_email.id, "u1");
        assert_eq!(by_email.email, "Ada@Example.com");
        assert!(by_email.is_admin && by_email.email_verified);
        assert_eq!(store.user_by_id("u1").await.unwrap(), Some(by_email));
        assert_eq!(store.user_by_id("nope").await.unwrap(), None);
        assert!(
            store
                .password_hash("u1")
                .await
                .unwrap()
                .unwrap()
                .starts_with("$argon2id$")
        );

        let dup = NewUser {
            id: "u2",
            email: "ADA@example.com",
            ..new
        };
        assert!(matches!(
            store.create_user(&dup).await,
            Err(StoreError::Conflict(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn clients_store_only_the_secret_digest() {
    each_backend(|store| async move {
        let c = NewClient {
            client_id: "c1",
            secret_digest: Some("p1$digest"),
            metadata: r#"{"client_name":"App"}"#,
            origin: None,
            now: NOW,
        };
        store.create_client(&c).await.unwrap();
        let got = store.client_by_id("c1").await.unwrap().unwrap();
        assert_eq!(got.secret_digest.as_deref(), Some("p1$digest"));
        assert_eq!(got.metadata, r#"{"client_name":"App"}"#);
        assert_eq!(got.created_at, NOW);
        assert!(matches!(
            store.create_client(&c).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.client_by_id("c2").await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn unused_self_registered_clients_are_removed_and_used_ones_kept() {
    each_backend(|store| async move {
        let day = 86_400;
        let old = NOW - 40 * day;
        for (id, origin) in [
            ("admin", None),
            ("open-unused", Some(ORIGIN_ANONYMOUS)),
            ("anon-unused", Some(ORIGIN_OPEN_PUBLIC)),
            ("anon-granted", Some(ORIGIN_OPEN_PUBLIC)),
            ("anon-refreshing", Some(ORIGIN_OPEN_PUBLIC)),
        ] {
            store
                .create_client(&NewClient {
                    client_id: id,
                    secret_digest: None,
                    metadata: "{}",
                    origin,
                    now: old,
                })
                .await
                .unwrap();
        }
        assert!(store.put_document_client("https://a.example/doc", "{}", old, old + 60).await.unwrap());
        let exec = |sql: &'static str, id: &'static str, at: i64| {
            let pool = store.pool.clone();
            async move {
                sqlx::query(sql).bind(id).bind(at).execute(&pool).await.unwrap();
            }
        };
        exec(
            "INSERT INTO grants (id, client_id, user_id, created_at, expires_at) VALUES ('g1', $1, 'u', $2, $2 + 999999)",
            "anon-granted",
            NOW - day,
        )
        .await;
        exec(
            "INSERT INTO refresh_tokens (token_digest, grant_id, client_id, user_id, scope, auth_time, amr, acr, created_at, expires_at) \
             VALUES ('rt', 'g0', $1, 'u', 'openid', 0, '[]', '1', $2 - 999999, $2 + 999999)",
            "anon-refreshing",
            NOW,
        )
        .await;
        let removed = store.purge_unused_clients(NOW - 30 * day, NOW).await.unwrap();
        assert_eq!(removed, 2, "the unused open_public client and the document copy");
        for (id, kept) in [
            ("admin", true),
            // open registration may be client_credentials, which leaves no grant
            ("open-unused", true),
            ("anon-unused", false),
            ("anon-granted", true),
            ("anon-refreshing", true),
            ("https://a.example/doc", false),
        ] {
            assert_eq!(store.client_by_id(id).await.unwrap().is_some(), kept, "{id}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_document_never_overwrites_a_registered_client() {
    each_backend(|store| async move {
        let url = "https://app.example/client.json";
        store
            .create_client(&NewClient {
                client_id: url,
                secret_digest: None,
                metadata: "registered",
                origin: None,
                now: NOW,
            })
            .await
            .unwrap();
        assert!(
            !store
                .put_document_client(url, "doc", NOW, NOW + 60)
                .await
                .unwrap()
        );
        let got = store.client_by_id(url).await.unwrap().unwrap();
        assert_eq!((got.metadata.as_str(), got.origin), ("registered", None));

        let doc = "https://app.example/other.json";
        assert!(
            store
                .put_document_client(doc, "v1", NOW, NOW + 60)
                .await
                .unwrap()
        );
        assert!(
            store
                .put_document_client(doc, "v2", NOW + 61, NOW + 120)
                .await
                .unwrap()
        );
        let got = store.client_by_id(doc).await.unwrap().unwrap();
        assert_eq!(got.metadata, "v2");
        assert_eq!(got.origin.as_deref(), Some(ORIGIN_DOCUMENT));
        assert_eq!(got.document_expires_at, Some(NOW + 120));
        assert_eq!(got.created_at, NOW, "a refetch keeps the row");
    })
    .await;
}

async fn a_user(store: &Store, id: &str, email: &str) {
    store
        .create_user(&NewUser {
            id,
            email,
            email_verified: false,
            name: None,
            password_hash: Some("$argon2id$old"),
            is_admin: false,
            now: NOW,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn totp_steps_are_accepted_once_and_in_order() {
    each_backend(|store| async move {
        a_user(&store, "u1", "a@example.com").await;
        assert!(store.start_totp("u1", "k", b"sealed", NOW).await.unwrap());
        assert!(!store.totp_enabled("u1").await.unwrap());
        // A confirmed authenticator does not exist yet: only confirming counts.
        assert!(!store.accept_totp_step("u1", 10, None, NOW).await.unwrap());
        // Confirming checks the secret the code was checked against.
        assert!(
            !store
                .accept_totp_step("u1", 10, Some(b"other"), NOW)
                .await
                .unwrap()
        );
        assert!(
            store
                .accept_totp_step("u1", 10, Some(b"sealed"), NOW)
                .await
                .unwrap()
        );
        assert!(store.totp_enabled("u1").await.unwrap());
        // Confirmed: a new enrolment cannot replace it, the same step or an older one is
        // refused, a newer one passes once.
        assert!(!store.start_totp("u1", "k", b"other", NOW).await.unwrap());
        assert!(!store.accept_totp_step("u1", 10, None, NOW).await.unwrap());
        assert!(!store.accept_totp_step("u1", 9, None, NOW).await.unwrap());
        assert!(
            !store
                .accept_totp_step("u1", 11, Some(b"sealed"), NOW)
                .await
                .unwrap()
        );
        assert!(store.accept_totp_step("u1", 11, None, NOW).await.unwrap());
        assert!(!store.accept_totp_step("u1", 11, None, NOW).await.unwrap());
        assert_eq!(
            store.totp_of("u1").await.unwrap().unwrap().secret_sealed,
            b"sealed"
        );
        // Recovery codes: each once, bound to its user, replaced as a set.
        store
            .replace_recovery_codes("u1", &["d1".into(), "d2".into()], NOW)
            .await
            .unwrap();
        a_user(&store, "u2", "b@example.com").await;
        assert!(
            !store
                .use_recovery_code("u2", &["d1".into()], NOW)
                .await
                .unwrap()
        );
        assert!(
            store
                .use_recovery_code("u1", &["x".into(), "d1".into()], NOW)
                .await
                .unwrap()
        );
        assert!(
            !store
                .use_recovery_code("u1", &["d1".into()], NOW)
                .await
                .unwrap()
        );
        assert_eq!(store.recovery_codes_left("u1").await.unwrap(), 1);
        store
            .replace_recovery_codes("u1", &["d3".into()], NOW)
            .await
            .unwrap();
        assert!(
            !store
                .use_recovery_code("u1", &["d2".into()], NOW)
                .await
                .unwrap()
        );
        assert!(store.delete_totp("u1").await.unwrap());
        assert!(!store.totp_enabled("u1").await.unwrap());
        assert_eq!(store.recovery_codes_left("u1").await.unwrap(), 0);
    })
    .await;
}

async fn put_link(
    store: &Store,
    digest: &str,
    purpose: &str,
    user_id: &str,
    email: &str,
    created_at: i64,
    expires_at: i64,
) {
    store
        .insert_email_link(&NewEmailLink {
            digest,
            purpose,
            user_id,
            email,
            request: None,
            browser: None,
            now: created_at,
            expires_at,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn email_links_are_used_once_and_purged_when_expired() {
    each_backend(|store| async move {
        a_user(&store, "u1", "a@example.com").await;
        a_user(&store, "u2", "b@example.com").await;
        let reset = "reset";
        for (digest, expires) in [("r1", NOW + 60), ("r2", NOW + 60), ("old", NOW - 1)] {
            put_link(
                &store,
                digest,
                reset,
                "u1",
                "a@example.com",
                NOW - 10,
                expires,
            )
            .await;
        }
        assert!(
            store
                .email_link(&["old".into()], reset, NOW)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .email_link(&["r1".into()], "email", NOW)
                .await
                .unwrap()
                .is_none()
        );
        // Using one reset link spends the user's others too.
        let used = store
            .reset_password(&["r1".into()], "$argon2id$new", NOW)
            .await
            .unwrap();
        assert_eq!(used.as_deref(), Some("u1"));
        assert_eq!(
            store.password_hash("u1").await.unwrap().as_deref(),
            Some("$argon2id$new")
        );
        assert!(
            store
                .reset_password(&["r1".into()], "$x", NOW)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .reset_password(&["r2".into()], "$x", NOW)
                .await
                .unwrap()
                .is_none()
        );

        // An address link moves the account, unless another account has the address by then;
        // then the link stays usable.
        put_link(&store, "e1", "email", "u1", "B@example.com", NOW, NOW + 60).await;
        assert!(matches!(
            store.confirm_email(&["e1".into()], NOW).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(
            store
                .email_link(&["e1".into()], "email", NOW)
                .await
                .unwrap()
                .is_some()
        );
        put_link(&store, "e2", "email", "u1", "c@example.com", NOW, NOW + 60).await;
        let change = store
            .confirm_email(&["e2".into()], NOW)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (change.old.as_str(), change.new.as_str()),
            ("a@example.com", "c@example.com")
        );
        let user = store.user_by_email("C@EXAMPLE.COM").await.unwrap().unwrap();
        assert!(user.email_verified);
        assert!(
            store
                .confirm_email(&["e2".into()], NOW)
                .await
                .unwrap()
                .is_none()
        );

        // The change spent the user's other links: e1, asked for earlier, no longer works.
        let e1 = store
            .email_link(&["e1".into()], "email", NOW)
            .await
            .unwrap();
        assert!(e1.is_none());

        // A verification link proves the address it went to while it is the account's, and
        // never moves the account.
        put_link(&store, "v1", "verify", "u1", "c@example.com", NOW, NOW + 60).await;
        put_link(&store, "v2", "verify", "u1", "a@example.com", NOW, NOW + 60).await;
        let v1 = store
            .confirm_email(&["v1".into()], NOW)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (v1.old.as_str(), v1.new.as_str()),
            ("c@example.com", "c@example.com")
        );
        assert!(
            store
                .confirm_email(&["v2".into()], NOW)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .user_by_email("a@example.com")
                .await
                .unwrap()
                .is_none()
        );

        // Housekeeping removes expired links, not live ones.
        put_link(
            &store,
            "live",
            "reset",
            "u2",
            "b@example.com",
            NOW,
            NOW + 60,
        )
        .await;
        store.purge_expired(NOW).await.unwrap();
        assert!(
            store
                .email_link(&["live".into()], "reset", NOW)
                .await
                .unwrap()
                .is_some()
        );
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM email_links WHERE token_digest = 'old'")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(left, 0);
    })
    .await;
}

/// Writes from many tasks at once all land, each seeing the ones before it (SQLite's single
/// writer queues them; PostgreSQL's upsert serialises them), and a closed store refuses
/// writes with an error rather than hanging or panicking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_all_land_and_a_closed_store_refuses_writes() {
    each_backend(|store| async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let s = store.clone();
            tasks.spawn(async move { s.record_failure("k", NOW, 60).await });
        }
        let mut counts = Vec::new();
        while let Some(done) = tasks.join_next().await {
            counts.push(done.unwrap().unwrap());
        }
        counts.sort_unstable();
        assert_eq!(counts, (1..=64).collect::<Vec<i64>>());
        store.close().await;
        assert!(store.record_failure("k", NOW, 60).await.is_err());
    })
    .await;
}

/// A grant is made only for an enabled user: disabling revokes the grants there are and
/// refuses new ones (the code or device code taken before the disabling gives nothing).
#[tokio::test]
async fn grants_are_made_only_for_enabled_users() {
    each_backend(|store| async move {
        a_user(&store, "u1", "u1@example.com").await;
        assert!(
            store
                .create_grant("g1", "c", "u1", NOW, NOW + 60)
                .await
                .unwrap()
        );
        assert!(store.set_user_disabled("u1", true, NOW).await.unwrap());
        assert!(store.access_token_revoked("j", Some("g1")).await.unwrap());
        assert!(
            !store
                .create_grant("g2", "c", "u1", NOW, NOW + 60)
                .await
                .unwrap()
        );
        assert!(
            !store
                .create_grant("g3", "c", "nobody", NOW, NOW + 60)
                .await
                .unwrap()
        );
        assert!(store.set_user_disabled("u1", false, NOW).await.unwrap());
        assert!(
            store
                .create_grant("g4", "c", "u1", NOW, NOW + 60)
                .await
                .unwrap()
        );
    })
    .await;
}

/// Redeeming a code is one transaction: the code is taken, its grant made and its first
/// refresh token stored together, or none of it happens. A second redemption is a replay,
/// which revokes the grant; a refusal by the caller's check leaves the code spent.
#[tokio::test]
async fn a_code_is_redeemed_in_one_transaction_and_a_replay_revokes_its_grant() {
    each_backend(|store| async move {
        a_user(&store, "u1", "u1@example.com").await;
        let code = |grant: &str| CodeRow {
            grant_id: grant.into(),
            client_id: "c".into(),
            redirect_uri: "https://rp.example/cb".into(),
            scope: "openid".into(),
            nonce: None,
            code_challenge: "x".repeat(43),
            claims: None,
            authn: Authn {
                user_id: "u1".into(),
                sid: None,
                auth_time: NOW,
                amr: vec!["pwd".into()],
                acr: "0".into(),
            },
            expires_at: NOW + 60,
            dpop_jkt: None,
            resource: None,
        };
        let redeem = |digest: &'static str, refresh: Option<&'static str>| {
            let store = store.clone();
            async move {
                store
                    .redeem_code(&[digest.to_owned()], "c", NOW, NOW + 600, None, |_| {
                        Ok::<_, ()>(refresh.map(str::to_owned))
                    })
                    .await
            }
        };

        store.insert_code("d-1", &code("g-1"), NOW).await.unwrap();
        assert_eq!(
            redeem("d-1", Some("r-1")).await.unwrap(),
            Redeemed::Fresh(code("g-1"))
        );
        let live = store
            .refresh_token_grant(&["r-1".to_owned()], NOW)
            .await
            .unwrap();
        assert_eq!(live.map(|r| r.grant_id).as_deref(), Some("g-1"));
        let Redeemed::Replayed(replay) = redeem("d-1", None).await.unwrap() else {
            panic!("a second redemption is a replay");
        };
        assert!(!store.access_token_revoked("j", Some("g-1")).await.unwrap());
        store
            .revoke_replayed(&replay, NOW, NOW + 600)
            .await
            .unwrap();
        assert!(store.access_token_revoked("j", Some("g-1")).await.unwrap());
        assert!(
            store
                .refresh_token_grant(&["r-1".to_owned()], NOW)
                .await
                .unwrap()
                .is_none(),
            "the replay ends the refresh token too"
        );

        // A failure inside the transaction (here: the refresh digest is taken) undoes the
        // take: the code is still there to redeem, and no grant was made.
        store.insert_code("d-2", &code("g-2"), NOW).await.unwrap();
        assert!(redeem("d-2", Some("r-1")).await.is_err());
        assert_eq!(
            redeem("d-2", Some("r-2")).await.unwrap(),
            Redeemed::Fresh(code("g-2"))
        );

        // A refusal by the check spends the code and makes no grant.
        store.insert_code("d-3", &code("g-3"), NOW).await.unwrap();
        let refused = store
            .redeem_code(&["d-3".to_owned()], "c", NOW, NOW + 600, None, |_| {
                Err("no")
            })
            .await
            .unwrap();
        assert_eq!(refused, Redeemed::Refused("no"));
        assert!(matches!(
            redeem("d-3", None).await.unwrap(),
            Redeemed::Replayed(_)
        ));
    })
    .await;
}

/// Rotating a refresh token is one transaction: the old one is taken and its successor
/// stored together. A refusal, or a failure before the commit, leaves the old one live.
#[tokio::test]
async fn refresh_rotation_takes_and_stores_the_successor_in_one_transaction() {
    each_backend(|store| async move {
        a_user(&store, "u1", "u1@example.com").await;
        assert!(
            store
                .create_grant("g", "c", "u1", NOW, NOW + 600)
                .await
                .unwrap()
        );
        let row = RefreshRow {
            grant_id: "g".into(),
            client_id: "c".into(),
            scope: "openid".into(),
            claims: None,
            authn: Authn {
                user_id: "u1".into(),
                sid: None,
                auth_time: NOW,
                amr: vec!["pwd".into()],
                acr: "0".into(),
            },
            expires_at: NOW + 600,
            dpop_jkt: None,
            resource: None,
        };
        store.insert_refresh_token("r-1", &row, NOW).await.unwrap();
        store
            .insert_refresh_token("r-other", &row, NOW)
            .await
            .unwrap();
        let rotate_at =
            |old: &'static str, next: Result<&'static str, &'static str>, now: i64, grace: i64| {
                let store = store.clone();
                async move {
                    store
                        .rotate_refresh_token(&[old.to_owned()], "c", now, grace, |_| {
                            next.map(|d| {
                                Some(Successor {
                                    digest: d.to_owned(),
                                    sealed: format!("sealed {d}"),
                                })
                            })
                        })
                        .await
                }
            };
        let rotate = |old, next| rotate_at(old, next, NOW, 0);
        assert_eq!(
            rotate("r-1", Err("refused")).await.unwrap(),
            Redeemed::Refused("refused")
        );
        // The successor's digest collides: the insert fails, and the take is undone.
        assert!(rotate("r-1", Ok("r-other")).await.is_err());
        assert_eq!(
            rotate("r-1", Ok("r-2")).await.unwrap(),
            Redeemed::Fresh(row.clone())
        );
        assert!(matches!(
            rotate("r-1", Ok("r-3")).await.unwrap(),
            Redeemed::Replayed(_)
        ));
        // Within a retry grace, by its client, while the successor is unused: the same
        // successor again; after the grace, or by another client, a replay.
        let again = Successor {
            digest: "r-2".into(),
            sealed: "sealed r-2".into(),
        };
        assert_eq!(
            rotate_at("r-1", Ok("r-3"), NOW + 10, 10).await.unwrap(),
            Redeemed::Retried(row.clone(), again.clone())
        );
        assert!(matches!(
            rotate_at("r-1", Ok("r-3"), NOW + 11, 10).await.unwrap(),
            Redeemed::Replayed(_)
        ));
        let other_client = store
            .rotate_refresh_token(&["r-1".to_owned()], "c2", NOW + 1, 10, |_| {
                Ok::<_, ()>(None)
            })
            .await
            .unwrap();
        assert!(matches!(other_client, Redeemed::Replayed(_)));
        assert_eq!(
            rotate("r-2", Ok("r-4")).await.unwrap(),
            Redeemed::Fresh(row.clone()),
            "the successor carries the grant on"
        );
        // Once the successor is used, the first token's retry is a replay, and the sealed
        // copy of the successor kept for it is gone at once.
        let sealed: Option<String> = sqlx::query_scalar(
            "SELECT successor_sealed FROM refresh_tokens WHERE token_digest = 'r-1'",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(sealed, None);
        assert!(matches!(
            rotate_at("r-1", Ok("r-5"), NOW + 1, 10).await.unwrap(),
            Redeemed::Replayed(_)
        ));
        // Housekeeping wipes sealed successors once no grace can reach them.
        store
            .purge_expired(NOW + crate::store::MAX_REFRESH_RETRY_GRACE + 1)
            .await
            .unwrap();
        let sealed: Option<String> = sqlx::query_scalar(
            "SELECT successor_sealed FROM refresh_tokens WHERE token_digest = 'r-2'",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(sealed, None);
    })
    .await;
}

/// Two instances claiming back-channel logouts at once never take the same one, and a
/// delivery is recorded only under the claim that took it.
#[tokio::test]
async fn two_instances_claim_disjoint_logout_deliveries() {
    for db in TestDb::all().await {
        let settings = || PoolSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(10),
        };
        let a = Store::open(&db.url, &settings()).await.unwrap();
        let b = Store::open(&db.url, &settings()).await.unwrap();
        for i in 0..40 {
            sqlx::query(
                "INSERT INTO logout_deliveries (client_id, sid, user_id, created_at, next_attempt_at) \
                 VALUES ($1, $2, 'u', $3, $3)",
            )
            .bind("c")
            .bind(format!("s{i:02}"))
            .bind(NOW)
            .execute(&a.pool)
            .await
            .unwrap();
        }
        let mut taken = Vec::new();
        for _ in 0..4 {
            let (x, y) = tokio::join!(a.claim_logouts(NOW, 60, 7), b.claim_logouts(NOW, 60, 7));
            taken.extend(x.unwrap());
            taken.extend(y.unwrap());
        }
        let mut sids: Vec<&str> = taken.iter().map(|d| d.sid.as_str()).collect();
        let n = sids.len();
        sids.sort_unstable();
        sids.dedup();
        assert_eq!(sids.len(), n, "{}: a delivery claimed twice", db.label);
        assert_eq!(n, 40, "{}", db.label);
        // Nothing left to claim while the claims hold; after they run out, all again.
        assert!(a.claim_logouts(NOW + 59, 60, 100).await.unwrap().is_empty());
        let again = b.claim_logouts(NOW + 60, 60, 100).await.unwrap();
        assert_eq!(again.len(), 40, "{}", db.label);
        // The first claim is over: recording under it changes nothing; under the new one it
        // does.
        let stale = &taken[0];
        a.finish_logout(stale, &LogoutOutcome::Delivered, NOW + 61)
            .await
            .unwrap();
        let fresh = again.iter().find(|d| d.sid == stale.sid).unwrap();
        let rows = a.logout_deliveries("c").await.unwrap();
        assert!(
            rows.iter().all(|(_, _, delivered, _)| !delivered),
            "{}",
            db.label
        );
        b.finish_logout(fresh, &LogoutOutcome::Delivered, NOW + 61)
            .await
            .unwrap();
        let rows = a.logout_deliveries("c").await.unwrap();
        assert_eq!(
            rows.iter().filter(|(_, _, d, _)| *d).count(),
            1,
            "{}",
            db.label
        );
        a.close().await;
        b.close().await;
    }
}
