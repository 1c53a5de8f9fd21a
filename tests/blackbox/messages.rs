//! Translation: a `messages.toml` in `http.templates_dir` replaces the embedded page strings
//! key by key; one naming a key the catalog does not have stops the server at start.

use latchkey::testdb::TestDb;

use crate::flow::{browser, fixture, sign_in};
use crate::harness::{Env, Server};

/// An environment whose `http.templates_dir` holds only `messages.toml` with `messages`.
fn env_with_messages(templates: &tempfile::TempDir, messages: &str) -> Env {
    std::fs::write(templates.path().join("messages.toml"), messages).unwrap();
    let dir = templates.path().display().to_string();
    Env::new(
        TestDb::sqlite(),
        &format!("[http]\ntemplates_dir = {dir:?}\n"),
    )
}

#[tokio::test]
async fn messages_toml_in_templates_dir_replaces_page_strings_key_by_key() {
    let templates = tempfile::tempdir().unwrap();
    let env = env_with_messages(
        &templates,
        "[signin]\nwrong_password = \"Adresse ou mot de passe incorrect.\"\n",
    );
    let f = fixture(&env, &[]).await;
    let server = Server::start(env.config()).await;
    let b = browser();
    let page = b
        .get(server.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = sign_in(&b, &server, &page, &f.email, "wrong password!").await;
    assert_eq!(r.status(), 401);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Adresse ou mot de passe incorrect."),
        "{html}"
    );
    assert!(!html.contains("The email or password is not right."));
    // Keys the file leaves out keep the embedded text.
    let r = b
        .get(server.url("/authorize?response_type=code"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("The request has no client_id.")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_messages_toml_with_an_unknown_key_or_placeholder_stops_start_naming_it() {
    for (messages, named) in [
        (
            "signin.wrong_pasword = \"Faux.\"\n",
            &["signin.wrong_pasword"][..],
        ),
        (
            "throttle.attempts = \"Réessayez dans {secondes} s.\"\n",
            &["throttle.attempts", "{secondes}"][..],
        ),
    ] {
        let templates = tempfile::tempdir().unwrap();
        let env = env_with_messages(&templates, messages);
        let err = env.cli(&["keys", "list"], "").await.unwrap_err();
        assert!(!err.contains('\n'), "one line: {err:?}");
        for what in named {
            assert!(err.contains(what), "{err:?} should name {what}");
        }
    }
}
