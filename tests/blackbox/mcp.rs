//! The MCP example (examples/mcp) end to end: Latchkey, the example MCP server and the
//! example agent, each its own process but Latchkey (in this test's process). The agent goes
//! from the server's 401 to a token with no operator action: it is known by its client ID
//! metadata document, the MCP server is a resource Latchkey discovers by its RFC 9728
//! metadata (`tokens.discover_resources`), and the token's `aud` is that server.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use latchkey::testdb::TestDb;
use serde_json::Value;

use crate::flow::{PASSWORD, fixture};
use crate::harness::{Env, Killed, Server, free_port};
use crate::oidc::jwt_claims;

#[tokio::test]
async fn an_mcp_client_goes_from_a_401_to_a_token_for_the_mcp_server_with_no_operator() {
    for db in TestDb::all().await {
        let port = free_port().await;
        let issuer = format!("http://localhost:{port}");
        let env = Env::new(
            db,
            &format!(
                "issuer = {issuer:?}\n\
                 [client_id_metadata]\ndanger_allow_http_and_loopback = true\n\
                 [tokens]\ndiscover_resources = true\ndanger_allow_http_and_loopback_resources = true\n"
            ),
        );
        let f = fixture(&env, &[]).await;
        let server = Server::start_at(env.config(), &format!("127.0.0.1:{port}")).await;

        let mut mcp = Killed(
            Command::new(env!("CARGO_BIN_EXE_latchkey-mcp-server"))
                .args(["--issuer", &issuer, "--listen", "127.0.0.1:0"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stdout = mcp.0.stdout.take().unwrap();
        let resource = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line.trim().to_owned()
        })
        .await
        .unwrap();
        assert!(resource.ends_with("/mcp"), "{resource}");

        let out = tokio::task::spawn_blocking({
            let (resource, email) = (resource.clone(), f.email.clone());
            move || {
                Command::new(env!("CARGO_BIN_EXE_latchkey-mcp-client"))
                    .args(["--mcp", &resource, "--email", &email])
                    .env("LATCHKEY_EXAMPLE_PASSWORD", PASSWORD)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the client failed: {stderr}");
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        let who = result["whoami"].as_str().unwrap_or_default();
        assert!(who.contains(&f.user_id), "{result}");
        let token = result["access_token"].as_str().unwrap();
        let claims = jwt_claims(token);
        assert_eq!(claims["aud"], resource.as_str());
        assert_eq!(claims["client_id"], result["client_id"]);
        // That token is the MCP server's only: our own API refuses it.
        let r = reqwest::Client::new()
            .get(server.url("/api/devices"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);

        // A resource whose metadata cannot be had is not one a token is issued for.
        let stray = format!("http://127.0.0.1:{}/mcp", free_port().await);
        let client_id = result["client_id"].as_str().unwrap();
        let mut u = url::Url::parse(&server.url("/authorize")).unwrap();
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair(
                "redirect_uri",
                &client_id.replace("client.json", "callback"),
            )
            .append_pair("scope", "mcp:tools")
            .append_pair("state", "s")
            .append_pair(
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            )
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &stray);
        let r = crate::flow::browser().get(u.as_str()).send().await.unwrap();
        assert_eq!(r.status(), 303);
        let back = crate::flow::location(&r);
        assert_eq!(
            crate::flow::query_param(&back, "error").as_deref(),
            Some("invalid_target"),
            "{back}"
        );
        // A resource configured here but given to no client stays refused, although its own
        // metadata names this issuer: configuration decides, not the resource.
        let mut config = env.config();
        config.tokens.resources.push(resource.clone());
        let strict = Server::start(config).await;
        u.query_pairs_mut()
            .clear()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair(
                "redirect_uri",
                &client_id.replace("client.json", "callback"),
            )
            .append_pair("scope", "mcp:tools")
            .append_pair("state", "s")
            .append_pair(
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            )
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &resource);
        let r = crate::flow::browser()
            .get(strict.url(&format!("/authorize?{}", u.query().unwrap())))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let back = crate::flow::location(&r);
        assert_eq!(
            crate::flow::query_param(&back, "error").as_deref(),
            Some("invalid_target"),
            "{back}"
        );
        strict.stop().await;
        drop(mcp);
        server.stop().await;
    }
}
