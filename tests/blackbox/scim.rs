//! SCIM 2.0 provisioning (issue 16 item 6), as an identity provider's connector drives it:
//! the requests below are the shapes Okta's and Entra ID's SCIM clients send (Okta's user
//! body, Entra's PATCH with `"Replace"` and the string `"False"`). A user is created, found by
//! filter, put in a group (the `groups` claim), deactivated (refresh then fails, as after
//! `latchkey user disable`), and deleted.

use latchkey::testdb::TestDb;
use serde_json::{Value, json};

use crate::flow::{Fixture, PASSWORD, browser, code_flow_tokens, fixture, token_request};
use crate::harness::{Env, Server, http};

async fn scim(
    server: &Server,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = server.url(&format!("/scim/v2{path}"));
    let mut req = match method {
        "GET" => http().get(url),
        "POST" => http().post(url),
        "PUT" => http().put(url),
        "PATCH" => http().patch(url),
        "DELETE" => http().delete(url),
        m => panic!("{m}"),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_identity_provider_provisions_groups_deactivates_and_deletes_a_user() {
    for db in TestDb::all().await {
        let env = Env::new(db, "");
        let f = fixture(
            &env,
            &[
                "--scope",
                "openid",
                "--scope",
                "email",
                "--scope",
                "groups",
                "--grant-type",
                "authorization_code",
                "--grant-type",
                "refresh_token",
            ],
        )
        .await;
        let out = env
            .cli(&["scim-token", "create", "--name", "okta"], "")
            .await
            .unwrap();
        let token: Value = serde_json::from_str(&out).unwrap();
        let token = token["scim_token"].as_str().unwrap().to_owned();
        let server = Server::start(env.config()).await;
        let t = Some(token.as_str());

        // Without the credential: 401 in SCIM's error format.
        let (s, e) = scim(&server, None, "GET", "/Users", None).await;
        assert_eq!(s, 401);
        assert_eq!(
            e["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        let (s, _) = scim(&server, Some("lkscim_wrong"), "GET", "/Users", None).await;
        assert_eq!(s, 401);
        for path in ["/ServiceProviderConfig", "/Schemas", "/ResourceTypes"] {
            let (s, v) = scim(&server, t, "GET", path, None).await;
            assert_eq!(s, 200, "{path}: {v}");
        }

        // Okta creates the user.
        let (s, u) = scim(
            &server,
            t,
            "POST",
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "grace@example.com",
                "name": {"givenName": "Grace", "familyName": "Hopper"},
                "emails": [{"primary": true, "value": "grace@example.com", "type": "work"}],
                "displayName": "Grace Hopper",
                "locale": "en-US",
                "externalId": "00u1abcd",
                "groups": [],
                "password": "ignored-by-latchkey-1",
                "active": true,
            })),
        )
        .await;
        assert_eq!(s, 201, "{u}");
        let id = u["id"].as_str().unwrap().to_owned();
        assert_eq!(
            (u["userName"].as_str(), u["active"].as_bool()),
            (Some("grace@example.com"), Some(true))
        );
        let (s, e) = scim(
            &server,
            t,
            "POST",
            "/Users",
            Some(json!({"userName": "grace@example.com"})),
        )
        .await;
        assert_eq!((s, e["scimType"].as_str()), (409, Some("uniqueness")));

        // ... finds it by filter (userName, externalId), not another.
        for filter in [
            r#"userName eq "grace@example.com""#,
            r#"externalId eq "00u1abcd""#,
        ] {
            let q: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
            let (s, list) = scim(
                &server,
                t,
                "GET",
                &format!("/Users?filter={q}&startIndex=1&count=100"),
                None,
            )
            .await;
            assert_eq!(s, 200);
            assert_eq!(list["totalResults"], 1, "{filter}: {list}");
            assert_eq!(list["Resources"][0]["id"], id.as_str());
        }
        let q: String =
            url::form_urlencoded::byte_serialize(br#"userName eq "nobody@example.com""#).collect();
        let (_, list) = scim(&server, t, "GET", &format!("/Users?filter={q}"), None).await;
        assert_eq!(list["totalResults"], 0);
        let (s, e) = scim(
            &server,
            t,
            "GET",
            "/Users?filter=userName%20co%20%22a%22",
            None,
        )
        .await;
        assert_eq!((s, e["scimType"].as_str()), (400, Some("invalidFilter")));
        // An empty value matches no one (not everyone).
        let q: String = url::form_urlencoded::byte_serialize(br#"externalId eq """#).collect();
        let (_, list) = scim(&server, t, "GET", &format!("/Users?filter={q}"), None).await;
        assert_eq!(list["totalResults"], 0);
        // Administrators are not the identity provider's: invisible and untouchable.
        let root = env
            .cli(
                &["user", "create", "--email", "root@example.com", "--admin"],
                "",
            )
            .await
            .unwrap();
        let root_id = serde_json::from_str::<Value>(&root).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let q: String =
            url::form_urlencoded::byte_serialize(br#"userName eq "root@example.com""#).collect();
        let (_, list) = scim(&server, t, "GET", &format!("/Users?filter={q}"), None).await;
        assert_eq!(list["totalResults"], 0);
        for (method, body) in [
            ("GET", None),
            ("PUT", Some(json!({"userName": "attacker@example.com"}))),
            (
                "PATCH",
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "userName", "value": "attacker@example.com"}],
                })),
            ),
            ("DELETE", None),
        ] {
            let (s, _) = scim(&server, t, method, &format!("/Users/{root_id}"), body).await;
            assert_eq!(s, 404, "{method} on an administrator");
        }
        let shown = env
            .cli(&["user", "show", "--id", &root_id], "")
            .await
            .unwrap();
        assert!(shown.contains("root@example.com"), "unchanged: {shown}");
        // A userName that is no address is refused, not swapped.
        let (s, e) = scim(
            &server,
            t,
            "POST",
            "/Users",
            Some(json!({"userName": "jdoe", "emails": [{"value": "jdoe@example.com", "primary": true}]})),
        )
        .await;
        assert_eq!((s, e["scimType"].as_str()), (400, Some("invalidValue")));

        // ... and puts it in a group.
        let (s, g) = scim(
            &server,
            t,
            "POST",
            "/Groups",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "engineering",
                "members": [{"value": id, "display": "grace@example.com"}],
            })),
        )
        .await;
        assert_eq!(s, 201, "{g}");
        assert_eq!(g["members"][0]["value"], id.as_str());

        // Grace sets a password by the reset mail and signs in to the app: her groups are in
        // the id_token and at userinfo.
        let outbox = env.data_dir().join("outbox");
        let b = browser();
        crate::reset::ask_reset(&b, &server, "grace@example.com").await;
        let mail = crate::reset::wait_for_mail(&outbox, 1).await;
        let link = crate::reset::link_in(&mail[0], "/reset/confirm");
        let r = crate::reset::choose_password(&b, &server, &link, PASSWORD).await;
        assert_eq!(r.status(), 200);
        let grace = Fixture {
            email: "grace@example.com".into(),
            ..f.clone()
        };
        let tokens = code_flow_tokens(
            &browser(),
            &server,
            &grace,
            &[("scope", "openid email groups")],
        )
        .await;
        let id_token = crate::flow::claims(tokens["id_token"].as_str().unwrap());
        assert_eq!(id_token["groups"], json!(["engineering"]), "{id_token}");
        let at = tokens["access_token"].as_str().unwrap().to_owned();
        let info: Value = http()
            .get(server.url("/userinfo"))
            .bearer_auth(&at)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["groups"], json!(["engineering"]));
        let rt = tokens["refresh_token"].as_str().unwrap().to_owned();

        // Without the groups scope, no groups claim (not even when asked for by name).
        let plain = code_flow_tokens(
            &browser(),
            &server,
            &grace,
            &[
                ("scope", "openid email"),
                (
                    "claims",
                    r#"{"id_token":{"groups":null},"userinfo":{"groups":null}}"#,
                ),
            ],
        )
        .await;
        let id_plain = crate::flow::claims(plain["id_token"].as_str().unwrap());
        assert!(id_plain.get("groups").is_none(), "{id_plain}");

        // Entra ID-style deactivation, batched with attributes Latchkey does not keep: the
        // user is disabled; refreshing fails.
        let (s, u) = scim(
            &server,
            t,
            "PATCH",
            &format!("/Users/{id}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [
                    {"op": "Replace", "path": "active", "value": "False"},
                    {"op": "Replace", "path": "title", "value": "Rear Admiral"},
                    {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Navy"},
                    {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "grace@example.com"},
                    {"op": "Remove", "path": "externalId"},
                ],
            })),
        )
        .await;
        assert_eq!(s, 200, "{u}");
        assert_eq!(u["active"], false);
        let r = token_request(
            &server,
            &grace,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt.as_str()),
            ],
        )
        .await;
        assert_eq!(
            r.status(),
            400,
            "a deactivated user's refresh token is refused"
        );
        let r = http()
            .get(server.url("/userinfo"))
            .bearer_auth(&at)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // Okta-style replace with a value object: active again, and a new name.
        let (s, u) = scim(
            &server,
            t,
            "PATCH",
            &format!("/Users/{id}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": true, "displayName": "Rear Admiral Hopper"}}],
            })),
        )
        .await;
        assert_eq!(s, 200, "{u}");
        assert_eq!(
            (u["active"].as_bool(), u["displayName"].as_str()),
            (Some(true), Some("Rear Admiral Hopper"))
        );

        // Group membership changes by PATCH; then the user is deleted.
        let gid = g["id"].as_str().unwrap();
        let (s, g2) = scim(
            &server,
            t,
            "PATCH",
            &format!("/Groups/{gid}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}],
            })),
        )
        .await;
        assert_eq!(s, 200, "{g2}");
        assert_eq!(g2["members"], json!([]));
        let (s, _) = scim(&server, t, "DELETE", &format!("/Users/{id}"), None).await;
        assert_eq!(s, 204);
        let (s, e) = scim(&server, t, "GET", &format!("/Users/{id}"), None).await;
        assert_eq!(s, 404);
        assert_eq!(e["status"], "404");

        // Every change is audited, by the credential's name.
        let events = server.audit(None).await;
        let by_scim: Vec<&str> = events
            .iter()
            .filter(|e| e.actor == "scim:okta")
            .map(|e| e.kind.as_str())
            .collect();
        for kind in [
            "user.created",
            "group.changed",
            "user.disabled",
            "user.enabled",
            "user.deleted",
        ] {
            assert!(by_scim.contains(&kind), "{kind}: {by_scim:?}");
        }
        assert!(!serde_json::to_string(&events).unwrap().contains(&token));
        server.stop().await;
    }
}
