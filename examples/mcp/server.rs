//! An MCP server protected by Latchkey, as the MCP authorization specification (2025-11-25)
//! describes it: a separate process that knows nothing of Latchkey but its issuer URL.
//!
//! - It is an OAuth protected resource (RFC 9728): its metadata at
//!   `/.well-known/oauth-protected-resource/mcp` names the resource (`<public url>/mcp`) and
//!   Latchkey as its authorization server.
//! - `POST /mcp` takes JSON-RPC (MCP's Streamable HTTP transport, JSON answers only) with a
//!   bearer access token. Without one it answers 401 with `WWW-Authenticate: Bearer
//!   resource_metadata="..."`, which is how a client finds where to get a token.
//! - A token is taken only when it is a JWT access token (`typ` `at+jwt`, RFC 9068) signed by
//!   a key in the issuer's JWKS, from that issuer, not expired, and with this server as its
//!   `aud` (RFC 8707): a token Latchkey issued for any other resource is refused. Without the
//!   `mcp:tools` scope the answer is 403 `insufficient_scope`, naming the scope.
//!
//! Run: `cargo run -p latchkey-tests --bin latchkey-mcp-server -- --issuer
//! http://localhost:8080 --listen 127.0.0.1:8090`. It prints its resource URL once it listens.

use std::net::SocketAddr;
use std::sync::Arc;

use latchkey_jwks::{Alg, PublicKeySet, VerifyError, VerifyOptions};
use poem::http::{StatusCode, header};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, get, handler, post};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// The scope this server's tool needs.
const SCOPE: &str = "mcp:tools";

struct Resource {
    issuer: String,
    /// `<public url>/mcp`: the RFC 8707 resource identifier, which tokens must have as `aud`.
    resource: String,
    metadata_url: String,
    jwks_uri: String,
    keys: Mutex<Option<Arc<PublicKeySet>>>,
    http: reqwest::Client,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "latchkey-mcp-server --issuer URL [--listen 127.0.0.1:8090] [--public-url URL]\n\
             An example MCP server that takes access tokens issued by Latchkey for it."
        );
        return Ok(());
    }
    let issuer = arg(&args, "--issuer").ok_or("--issuer is required")?;
    let listen: SocketAddr = arg(&args, "--listen")
        .unwrap_or_else(|| "127.0.0.1:8090".into())
        .parse()?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    // RFC 8414 §3: the authorization server's metadata, which must name the same issuer.
    let meta: Value = http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    if meta["issuer"] != issuer.as_str() {
        return Err(format!("{issuer} calls itself {}", meta["issuer"]).into());
    }
    let jwks_uri = meta["jwks_uri"].as_str().ok_or("no jwks_uri")?.to_owned();

    let acceptor = TcpListener::bind(listen).into_acceptor().await?;
    let bound = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .ok_or("no local address")?;
    let public = arg(&args, "--public-url").unwrap_or_else(|| format!("http://{bound}"));
    let state = Arc::new(Resource {
        issuer,
        resource: format!("{public}/mcp"),
        metadata_url: format!("{public}/.well-known/oauth-protected-resource/mcp"),
        jwks_uri,
        keys: Mutex::new(None),
        http,
    });
    println!("{}", state.resource);
    let app = Route::new()
        .at("/.well-known/oauth-protected-resource/mcp", get(metadata))
        .at("/mcp", post(mcp))
        .data(state);
    poem::Server::new_with_acceptor(acceptor).run(app).await?;
    Ok(())
}

/// RFC 9728 §2.
#[handler]
fn metadata(Data(r): Data<&Arc<Resource>>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "resource": r.resource,
            "authorization_servers": [r.issuer],
            "scopes_supported": [SCOPE],
            "bearer_methods_supported": ["header"],
            "resource_name": "Latchkey example MCP server",
        }),
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

/// RFC 6750 §3 with RFC 9728 §5.1's `resource_metadata`.
fn challenge(r: &Resource, status: StatusCode, error: Option<(&str, &str)>) -> Response {
    let mut value = format!("Bearer resource_metadata=\"{}\"", r.metadata_url);
    if let Some((code, why)) = error {
        value.push_str(&format!(", error=\"{code}\", error_description=\"{why}\""));
        if code == "insufficient_scope" {
            value.push_str(&format!(", scope=\"{SCOPE}\""));
        }
    }
    Response::builder()
        .status(status)
        .header(header::WWW_AUTHENTICATE, value)
        .finish()
}

impl Resource {
    async fn keys(&self, refresh: bool) -> Result<Arc<PublicKeySet>, String> {
        let mut cached = self.keys.lock().await;
        if let Some(k) = cached.as_ref().filter(|_| !refresh) {
            return Ok(k.clone());
        }
        let text = self
            .http
            .get(&self.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let keys = Arc::new(PublicKeySet::from_jwks_json(&text)?);
        *cached = Some(keys.clone());
        Ok(keys)
    }

    /// The token's claims when it is an access token from our issuer for this resource.
    async fn verify(&self, token: &str) -> Result<latchkey_jwks::Claims, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let opts = VerifyOptions {
            algs: &Alg::ALL,
            issuer: &self.issuer,
            audience: &self.resource,
            typ: Some("at+jwt"),
            now,
            leeway: 30,
        };
        let first = self.keys(false).await?.verify(token, &opts);
        let claims = match first {
            // The issuer may have rotated its keys since they were fetched.
            Err(VerifyError::UnknownKid) => self.keys(true).await?.verify(token, &opts),
            other => other,
        }
        .map_err(|e| e.to_string())?;
        if claims.get("cnf").is_some() {
            return Err("this example takes bearer tokens, not DPoP-bound ones".into());
        }
        Ok(claims)
    }
}

#[handler]
async fn mcp(req: &Request, body: String, Data(r): Data<&Arc<Resource>>) -> Response {
    let token = req
        .header(header::AUTHORIZATION)
        .and_then(|h| h.strip_prefix("Bearer "));
    let Some(token) = token else {
        return challenge(r, StatusCode::UNAUTHORIZED, None);
    };
    let claims = match r.verify(token).await {
        Ok(c) => c,
        Err(why) => {
            eprintln!("token refused: {why}");
            return challenge(
                r,
                StatusCode::UNAUTHORIZED,
                Some((
                    "invalid_token",
                    "the access token is not valid for this server",
                )),
            );
        }
    };
    let scopes = claims.str("scope").unwrap_or_default();
    if !scopes.split(' ').any(|s| s == SCOPE) {
        return challenge(
            r,
            StatusCode::FORBIDDEN,
            Some(("insufficient_scope", "the mcp:tools scope is needed")),
        );
    }
    let Ok(call) = serde_json::from_str::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse error"}}),
        );
    };
    let Some(id) = call.get("id").cloned() else {
        // A notification: nothing to answer.
        return Response::builder().status(StatusCode::ACCEPTED).finish();
    };
    let sub = claims.str("sub").unwrap_or("?");
    let client = claims.str("client_id").unwrap_or("?");
    let result = match call["method"].as_str().unwrap_or_default() {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "latchkey-example", "version": "0.1.0"},
        }),
        "tools/list" => json!({"tools": [{
            "name": "whoami",
            "description": "Says who the access token stands for.",
            "inputSchema": {"type": "object", "properties": {}},
        }]}),
        "tools/call" if call["params"]["name"] == "whoami" => json!({
            "content": [{"type": "text", "text": format!("user {sub}, through client {client}")}],
            "isError": false,
        }),
        _ => {
            return json_response(
                StatusCode::OK,
                &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}}),
            );
        }
    };
    json_response(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
    )
}
