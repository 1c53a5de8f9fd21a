//! private_key_jwt (RFC 7523 §2.2, OIDC Core §9): client assertions signed with the client's
//! registered key, single use, bound to our issuer.

use latchkey::clock::Clock as _;
use latchkey::testdb::TestDb;
use latchkey_jwks::{Alg, Kek, KekRing, KeyPolicy, Keyring, PrivateKey};
use serde_json::{Value, json};

use crate::harness::{Env, Server, http};

pub(crate) struct ClientKey {
    pub ring: Keyring,
    pub public_jwks: Value,
}

pub(crate) fn client_key() -> ClientKey {
    let keks = KekRing::new(vec![Kek::new("test", &[5; 32])]).unwrap();
    let key = PrivateKey::generate(Alg::Es256).unwrap();
    let record = key.seal(&keks, 0, 0).unwrap();
    let public: Value = serde_json::from_str(&record.public_jwk).unwrap();
    let policy = KeyPolicy {
        publish_lead: 0,
        retain_retired: 0,
    };
    ClientKey {
        ring: Keyring::load(&[record], &keks, 1, &policy).unwrap(),
        public_jwks: json!({ "keys": [public] }),
    }
}

pub(crate) fn assertion(
    key: &ClientKey,
    client_id: &str,
    aud: &str,
    now: i64,
    lifetime: i64,
    jti: &str,
) -> String {
    let claims = json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + lifetime, "jti": jti});
    key.ring
        .sign(Alg::Es256, "JWT", claims.as_object().unwrap())
        .unwrap()
}

async fn token(server: &Server, jwt: &str) -> (u16, Value) {
    let r = http()
        .post(server.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", jwt),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn private_key_jwt_accepts_a_fresh_assertion_once_and_refuses_forgeries() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let key = client_key();
        let jwks_path = env.dir.path().join("client-jwks.json");
        std::fs::write(&jwks_path, key.public_jwks.to_string()).unwrap();
        let out = env
            .cli(
                &[
                    "client",
                    "create",
                    "--name",
                    "Signed service",
                    "--grant-type",
                    "client_credentials",
                    "--scope",
                    "api:read",
                    "--token-endpoint-auth-method",
                    "private_key_jwt",
                    "--jwks-file",
                    &jwks_path.display().to_string(),
                ],
                "",
            )
            .await
            .unwrap();
        let c: Value = serde_json::from_str(&out).unwrap();
        assert!(c.get("client_secret").is_none());
        let id = c["client_id"].as_str().unwrap().to_owned();
        let server = Server::start(env.config()).await;
        let issuer = server.state.config.issuer.clone();
        let now = server.clock.now();

        // aud = the token endpoint, and aud = the issuer, both work.
        let (s, t) = token(
            &server,
            &assertion(&key, &id, &format!("{issuer}/token"), now, 60, "a1"),
        )
        .await;
        assert_eq!(s, 200, "{t}");
        assert_eq!(t["scope"], "api:read");
        let jwt = assertion(&key, &id, &issuer, now, 60, "a2");
        assert_eq!(token(&server, &jwt).await.0, 200);
        // The same assertion again: its jti is spent.
        let (s, e) = token(&server, &jwt).await;
        assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
        // Wrong audience, too long-lived, expired, another key.
        assert_eq!(
            token(
                &server,
                &assertion(&key, &id, "https://elsewhere.example", now, 60, "a3")
            )
            .await
            .0,
            401
        );
        assert_eq!(
            token(&server, &assertion(&key, &id, &issuer, now, 3600, "a4"))
                .await
                .0,
            401
        );
        assert_eq!(
            token(&server, &assertion(&key, &id, &issuer, now - 600, 60, "a5"))
                .await
                .0,
            401
        );
        let other = client_key();
        assert_eq!(
            token(&server, &assertion(&other, &id, &issuer, now, 60, "a6"))
                .await
                .0,
            401
        );
        // A client secret is no way in for this client.
        let r = http()
            .post(server.url("/token"))
            .basic_auth(&id, Some("guess"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        server.stop().await;
    }
}

#[tokio::test]
async fn a_jwks_uri_on_a_private_address_is_never_fetched() {
    let env = Env::new(TestDb::sqlite(), "[registration]\npolicy = \"open\"");
    let server = Server::start(env.config()).await;
    let r = http()
        .post(server.url("/register"))
        .json(&json!({
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": "https://127.0.0.1:1/jwks.json",
            "scope": "api:read"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let c: Value = r.json().await.unwrap();
    let id = c["client_id"].as_str().unwrap();
    let key = client_key();
    let issuer = server.state.config.issuer.clone();
    let (s, e) = token(
        &server,
        &assertion(&key, id, &issuer, server.clock.now(), 60, "x1"),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    server.stop().await;
}
