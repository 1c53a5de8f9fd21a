//! The CLI contract: create commands print one JSON object; secrets are shown once and
//! stored as digests; bad configuration fails with a one-line reason.

use latchkey::secrets::Purpose;
use latchkey::state::AppState;
use latchkey::testdb::TestDb;

use crate::harness::{Env, run_cli};

async fn state(env: &Env) -> AppState {
    AppState::build(
        env.config(),
        std::sync::Arc::new(latchkey::clock::SystemClock),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn user_create_prints_the_id_and_stores_an_argon2id_hash() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let out = env
            .cli(
                &[
                    "user",
                    "create",
                    "--email",
                    "Ada@example.com",
                    "--name",
                    "Ada",
                    "--password-stdin",
                    "--admin",
                    "--email-verified",
                ],
                "correct horse battery\n",
            )
            .await
            .unwrap();
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        let id = out["id"].as_str().unwrap();
        assert_eq!(out.as_object().unwrap().len(), 1);

        let st = state(&env).await;
        let user = st
            .store
            .user_by_email("ada@EXAMPLE.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.id, id);
        assert!(user.is_admin && user.email_verified);
        let hash = st.store.password_hash(id).await.unwrap().unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(latchkey::signin::password::verify(
            "correct horse battery",
            &hash
        ));
        st.store.close().await;

        let dup = env
            .cli(&["user", "create", "--email", "ADA@example.com"], "")
            .await;
        assert!(dup.unwrap_err().contains("already exists"));
        let bad = env
            .cli(&["user", "create", "--email", "not-an-email"], "")
            .await;
        assert!(bad.unwrap_err().contains("email"));
        let short = env
            .cli(
                &[
                    "user",
                    "create",
                    "--email",
                    "b@example.com",
                    "--password-stdin",
                ],
                "short\n",
            )
            .await;
        assert!(short.unwrap_err().contains("at least 8"));
    }
}

#[tokio::test]
async fn client_create_shows_the_secret_once_and_stores_only_its_digest() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let out = env
            .cli(
                &[
                    "client",
                    "create",
                    "--name",
                    "Shop",
                    "--redirect-uri",
                    "https://shop.example.com/cb",
                    "--scope",
                    "openid",
                    "--scope",
                    "profile",
                ],
                "",
            )
            .await
            .unwrap();
        let c: serde_json::Value = serde_json::from_str(&out).unwrap();
        let client_id = c["client_id"].as_str().unwrap();
        let secret = c["client_secret"].as_str().unwrap();
        assert!(secret.len() >= 43, "at least 256 bits");
        assert_eq!(c["token_endpoint_auth_method"], "client_secret_basic");
        assert_eq!(c["redirect_uris"][0], "https://shop.example.com/cb");
        assert_eq!(
            c["grant_types"],
            serde_json::json!(["authorization_code", "refresh_token"])
        );
        assert_eq!(c["response_types"], serde_json::json!(["code"]));
        assert_eq!(c["scope"], "openid profile");
        assert_eq!(c["client_secret_expires_at"], 0);

        let st = state(&env).await;
        let row = st.store.client_by_id(client_id).await.unwrap().unwrap();
        let digest = row.secret_digest.unwrap();
        assert!(!digest.contains(secret) && !row.metadata.contains(secret));
        assert!(
            st.pepper
                .verify(Purpose::ClientSecret, secret.as_bytes(), &digest)
        );
        assert!(!st.pepper.verify(Purpose::ClientSecret, b"guess", &digest));
        st.store.close().await;

        let public = env
            .cli(
                &[
                    "client",
                    "create",
                    "--name",
                    "CLI",
                    "--public",
                    "--redirect-uri",
                    "http://127.0.0.1/cb",
                ],
                "",
            )
            .await
            .unwrap();
        let p: serde_json::Value = serde_json::from_str(&public).unwrap();
        assert!(p.get("client_secret").is_none());
        assert_eq!(p["token_endpoint_auth_method"], "none");

        let svc = env
            .cli(
                &[
                    "client",
                    "create",
                    "--name",
                    "Svc",
                    "--grant-type",
                    "client_credentials",
                ],
                "",
            )
            .await
            .unwrap();
        let s: serde_json::Value = serde_json::from_str(&svc).unwrap();
        assert_eq!(s["response_types"], serde_json::json!([]));

        let err = env
            .cli(
                &[
                    "client",
                    "create",
                    "--name",
                    "Bad",
                    "--redirect-uri",
                    "http://evil.example.com/cb",
                ],
                "",
            )
            .await
            .unwrap_err();
        assert!(err.contains("invalid_redirect_uri"), "{err}");
        let err = env
            .cli(
                &[
                    "client",
                    "create",
                    "--name",
                    "Bad",
                    "--public",
                    "--grant-type",
                    "client_credentials",
                ],
                "",
            )
            .await
            .unwrap_err();
        assert!(err.contains("invalid_client_metadata"), "{err}");
    }
}

fn write_config(dir: &tempfile::TempDir, toml: &str) -> std::path::PathBuf {
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn one_line_naming(err: &str, what: &str) {
    assert!(!err.contains('\n'), "one line: {err:?}");
    assert!(err.contains(what), "{err:?} should name {what}");
}

#[tokio::test]
async fn bad_configuration_fails_with_a_one_line_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!(
        "data_dir = {:?}\n",
        dir.path().join("d").display().to_string()
    );

    let path = write_config(&dir, &format!("{data}lisen = \"127.0.0.1:1\""));
    one_line_naming(
        &run_cli(Some(&path), &["migrate"], "").await.unwrap_err(),
        "lisen",
    );

    let path = write_config(&dir, &format!("{data}issuer = \"https//broken\""));
    one_line_naming(
        &run_cli(Some(&path), &["keys", "list"], "")
            .await
            .unwrap_err(),
        "issuer",
    );

    let path = write_config(
        &dir,
        &format!(
            "{data}database_url = \"postgres://nobody:hunter2@127.0.0.1:1/none\"\n[database]\nacquire_timeout = \"1s\""
        ),
    );
    let err = run_cli(Some(&path), &["keys", "list"], "")
        .await
        .unwrap_err();
    one_line_naming(&err, "database");
    assert!(!err.contains("hunter2"), "password leaked: {err}");

    let err = run_cli(
        None,
        &["--config", "/nonexistent/latchkey.toml", "migrate"],
        "",
    )
    .await
    .unwrap_err();
    one_line_naming(&err, "does not exist");

    let err = run_cli(
        None,
        &[
            "--issuer",
            "http://id.example.com",
            "--data-dir",
            &dir.path().join("d").display().to_string(),
            "migrate",
        ],
        "",
    )
    .await
    .unwrap_err();
    one_line_naming(&err, "danger_allow_insecure_issuer");
}

#[tokio::test]
async fn migrate_applies_migrations_to_a_fresh_database() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        env.cli(&["migrate"], "").await.unwrap();
        env.cli(&["migrate"], "").await.unwrap();
    }
}

#[tokio::test]
async fn a_database_started_with_another_pepper_is_refused() {
    let env = Env::new(TestDb::sqlite(), "");
    env.cli(&["keys", "list"], "").await.unwrap();
    std::fs::remove_file(env.data_dir().join("pepper.keys")).unwrap();
    let err = env.cli(&["keys", "list"], "").await.unwrap_err();
    one_line_naming(&err, "pepper");
}
