//! An MCP-style client (an AI agent or tool host) that gets a token from Latchkey with nobody
//! registering it first, as the MCP authorization specification (2025-11-25) lays out:
//!
//! 1. calls the MCP server without a token and reads `resource_metadata` from the 401;
//! 2. reads the server's RFC 9728 metadata: its resource identifier and authorization server;
//! 3. reads the authorization server's RFC 8414 metadata and checks that it takes client ID
//!    metadata documents and PKCE S256;
//! 4. identifies itself by the URL of its own metadata document (it serves the document and
//!    its redirect URI on a loopback address), and sends the user to `/authorize` with PKCE,
//!    `state` and `resource`;
//! 5. takes the code at its redirect URI (checking `state` and RFC 9207 `iss`) and redeems it
//!    at `/token` with the verifier and the same `resource`;
//! 6. calls the MCP server's `whoami` tool with the access token.
//!
//! A person opens the printed URL in a browser. With `--email` (and the password in
//! `LATCHKEY_EXAMPLE_PASSWORD`) the script plays that person instead, filling in Latchkey's
//! sign-in and consent pages over HTTP: that is how the test drives it.
//!
//! Latchkey fetches the document from 127.0.0.1 over http only with
//! `client_id_metadata.danger_allow_http_and_loopback = true` (a lab setting); a real agent
//! publishes its document at an https URL of its own.
//!
//! Run: `cargo run -p latchkey-tests --bin latchkey-mcp-client -- --mcp
//! http://127.0.0.1:8090/mcp`. It prints one JSON line with the outcome.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Query};
use poem::{EndpointExt, Response, Route, get, handler};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn random() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The value of a parameter in a `WWW-Authenticate` challenge.
fn challenge_param(header: &str, name: &str) -> Option<String> {
    let start = header.find(&format!("{name}=\""))? + name.len() + 2;
    let end = header[start..].find('"')? + start;
    Some(header[start..end].to_owned())
}

/// The query of the request that reached the redirect URI.
type Callback = Vec<(String, String)>;

struct Me {
    document: Value,
    /// Where the first callback goes; later ones are ignored.
    callback: Mutex<Option<mpsc::Sender<Callback>>>,
}

#[handler]
fn document(Data(me): Data<&Arc<Me>>) -> Response {
    Response::builder()
        .content_type("application/json")
        .header("cache-control", "max-age=3600")
        .body(me.document.to_string())
}

#[handler]
async fn callback(Query(params): Query<Callback>, Data(me): Data<&Arc<Me>>) -> &'static str {
    if let Some(tx) = me.callback.lock().await.take() {
        let _ = tx.send(params).await;
    }
    "Signed in. You can close this window."
}

async fn mcp_call(
    http: &reqwest::Client,
    mcp: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<reqwest::Response, Error> {
    let mut req = http
        .post(mcp)
        .header("accept", "application/json, text/event-stream")
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    Ok(req.send().await?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "latchkey-mcp-client --mcp URL [--listen 127.0.0.1:0] [--email ADDRESS]\n\
             An example MCP client: from a 401 to a token by a client ID metadata document,\n\
             PKCE and RFC 8707 resource. With --email it signs in itself (password in\n\
             LATCHKEY_EXAMPLE_PASSWORD)."
        );
        return Ok(());
    }
    let mcp = arg(&args, "--mcp").ok_or("--mcp is required")?;
    let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    // 1. No token: the 401 says where the resource's metadata is.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "latchkey-example-client", "version": "0.1.0"}}});
    let first = mcp_call(&http, &mcp, None, &init).await?;
    if first.status() != 401 {
        return Err(format!("expected 401 without a token, got {}", first.status()).into());
    }
    let www = first
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let metadata_url =
        challenge_param(www, "resource_metadata").ok_or("the 401 names no resource_metadata")?;

    // 2. RFC 9728: the resource and its authorization server.
    let pr: Value = http.get(&metadata_url).send().await?.json().await?;
    let resource = pr["resource"].as_str().ok_or("no resource")?.to_owned();
    // RFC 9728 §3.3: the metadata must be about the server we called.
    if resource != mcp {
        return Err(format!("the metadata describes {resource}, not {mcp}").into());
    }
    let issuer = pr["authorization_servers"][0]
        .as_str()
        .ok_or("no authorization server")?
        .to_owned();

    // 3. RFC 8414: its endpoints, and whether it takes what this client needs.
    let asm: Value = http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .await?
        .json()
        .await?;
    if asm["issuer"] != issuer.as_str() {
        return Err("the authorization server's metadata names another issuer".into());
    }
    if asm["client_id_metadata_document_supported"] != true {
        return Err("the authorization server does not take client ID metadata documents".into());
    }
    if !asm["code_challenge_methods_supported"]
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x == "S256"))
    {
        return Err("the authorization server does not offer PKCE S256".into());
    }
    let authorize_endpoint = asm["authorization_endpoint"]
        .as_str()
        .ok_or("no authorize")?;
    let token_endpoint = asm["token_endpoint"].as_str().ok_or("no token endpoint")?;

    // 4. Our own document and redirect URI, on a loopback address.
    let acceptor = TcpListener::bind(listen.as_str()).into_acceptor().await?;
    let here = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .ok_or("no local address")?;
    let client_id = format!("http://{here}/client.json");
    let redirect_uri = format!("http://{here}/callback");
    let (tx, mut rx) = mpsc::channel(1);
    let me = Arc::new(Me {
        document: json!({
            "client_id": client_id,
            "client_name": "Latchkey example MCP client",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "mcp:tools",
        }),
        callback: Mutex::new(Some(tx)),
    });
    let app = Route::new()
        .at("/client.json", get(document))
        .at("/callback", get(callback))
        .data(me);
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));

    let verifier = random();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = random();
    let mut url = url::Url::parse(authorize_endpoint)?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", "mcp:tools")
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &resource);
    match arg(&args, "--email") {
        Some(email) => {
            let password = std::env::var("LATCHKEY_EXAMPLE_PASSWORD")
                .map_err(|_| "set LATCHKEY_EXAMPLE_PASSWORD with --email")?;
            play_the_user(url.as_str(), &email, &password).await?;
        }
        None => eprintln!("Open this in a browser to sign in:\n{url}"),
    }

    // 5. The code, at our redirect URI.
    let params = rx.recv().await.ok_or("no callback")?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("state").as_deref() != Some(state.as_str()) {
        return Err("the callback's state is not ours".into());
    }
    if get("iss").as_deref() != Some(issuer.as_str()) {
        return Err("the callback's iss is not the authorization server (RFC 9207)".into());
    }
    let code = get("code").ok_or_else(|| format!("no code: {:?}", get("error")))?;
    let t: Value = http
        .post(token_endpoint)
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id.as_str()),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", verifier.as_str()),
            ("resource", resource.as_str()),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = t["access_token"]
        .as_str()
        .ok_or_else(|| format!("no access token: {t}"))?;

    // 6. The tool, with the token.
    let r = mcp_call(&http, &mcp, Some(token), &init).await?;
    if r.status() != 200 {
        return Err(format!("initialize with the token answered {}", r.status()).into());
    }
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}}});
    let answer: Value = mcp_call(&http, &mcp, Some(token), &call)
        .await?
        .json()
        .await?;
    println!(
        "{}",
        json!({
            "client_id": client_id,
            "resource": resource,
            "access_token": token,
            "whoami": answer["result"]["content"][0]["text"],
        })
    );
    Ok(())
}

/// What the person at the browser would do: sign in with a password on Latchkey's page and
/// allow on its consent page, then follow the redirect to the client. Latchkey-specific page
/// scraping, for demos and tests only.
async fn play_the_user(authorize: &str, email: &str, password: &str) -> Result<(), Error> {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = url::Url::parse(authorize)?;
    let mut resp = browser.get(authorize).send().await?;
    for _ in 0..8 {
        if resp.status().is_redirection() {
            let to = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or("a redirect without Location")?;
            let to = base.join(to)?;
            if to.origin() != base.origin() {
                // Back to the client's redirect URI: the callback takes it from here.
                browser.get(to).send().await?;
                return Ok(());
            }
            resp = browser.get(to).send().await?;
            continue;
        }
        let status = resp.status();
        let html = resp.text().await?;
        if !status.is_success() {
            return Err(format!("the sign-in page answered {status}: {html}").into());
        }
        let field = |name: &str| -> Option<String> {
            let marker = format!("name=\"{name}\" value=\"");
            let start = html.find(&marker)? + marker.len();
            let end = html[start..].find('"')? + start;
            Some(
                html[start..end]
                    .replace("&quot;", "\"")
                    .replace("&#x27;", "'")
                    .replace("&#x2f;", "/")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            )
        };
        let csrf = field("csrf_token").ok_or("no form on the page")?;
        let request = field("request").unwrap_or_default();
        resp = if html.contains("action=\"/login\"") {
            browser
                .post(base.join("/login")?)
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("request", request.as_str()),
                    ("email", email),
                    ("password", password),
                ])
                .send()
                .await?
        } else if html.contains("action=\"/consent\"") {
            browser
                .post(base.join("/consent")?)
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("request", request.as_str()),
                    ("decision", "allow"),
                ])
                .send()
                .await?
        } else {
            return Err("an unexpected page on the way".into());
        };
    }
    Err("too many steps".into())
}
