//! A real `latchkey serve` process for the tools that measure or break it (`latchkey-bench`,
//! `latchkey-crash`): started from the `latchkey` binary next to the tool's own, on a data
//! directory of its own (and, with an admin URL, a PostgreSQL database of its own), spoken to
//! over HTTP and through its CLI.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const REDIRECT: &str = "https://rp.bench.invalid/cb";
pub const PASSWORD: &str = "benchmark-password-1";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// The server process, its data directory and database; dropping it kills the process and
/// removes both.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    pub envs: Vec<(&'static str, String)>,
    dir: PathBuf,
    pg_cleanup: Option<(String, String)>,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((admin, db)) = self.pg_cleanup.take() {
            let _ = Command::new("psql")
                .args([
                    &admin,
                    "-qc",
                    &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
                ])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `latchkey` binary built beside the running tool.
pub fn latchkey_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name("latchkey")
}

impl ServerProcess {
    /// Starts `latchkey serve` on `port` with `extra` environment (configuration as
    /// `LATCHKEY_*` variables), on SQLite, or on a new PostgreSQL database when `postgres`
    /// names an admin URL. `name` tells the data directory and database apart.
    pub fn start(
        name: &str,
        port: u16,
        postgres: Option<&str>,
        extra: &[(&'static str, String)],
    ) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("latchkey-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let issuer = format!("http://localhost:{port}");
        let mut envs = vec![
            ("LATCHKEY_DATA_DIR", dir.join("data").display().to_string()),
            ("LATCHKEY_ISSUER", issuer.clone()),
            ("LATCHKEY_LISTEN", format!("127.0.0.1:{port}")),
            ("LATCHKEY_LOG", "warn".to_owned()),
        ];
        envs.extend(extra.iter().cloned());
        let mut pg_cleanup = None;
        if let Some(admin) = postgres {
            let db = format!("latchkey_{name}_{}", std::process::id());
            let ok = Command::new("psql")
                .args([admin, "-qc", &format!("CREATE DATABASE {db}")])
                .status();
            if !ok.is_ok_and(|s| s.success()) {
                return Err("cannot create the PostgreSQL database (is psql installed?)".into());
            }
            let mut url = url::Url::parse(admin).map_err(|e| e.to_string())?;
            url.set_path(&db);
            envs.push(("LATCHKEY_DATABASE_URL", url.to_string()));
            pg_cleanup = Some((admin.to_owned(), db));
        }
        let child = spawn_serve(&envs)?;
        Ok(Self {
            child,
            base: issuer,
            envs,
            dir,
            pg_cleanup,
        })
    }

    /// SIGKILL, no shutdown of any kind: what a crash or an OOM kill does.
    pub fn kill_hard(&mut self) -> Result<(), String> {
        self.child.kill().map_err(|e| e.to_string())?;
        self.child.wait().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Starts the server again on the same data and configuration.
    pub fn restart(&mut self) -> Result<(), String> {
        self.child = spawn_serve(&self.envs)?;
        Ok(())
    }

    /// Waits until `/readyz` answers 200 (at most 20 s).
    pub async fn wait_ready(&self) -> Result<(), String> {
        let http = reqwest::Client::new();
        for _ in 0..200 {
            let ready = http
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("the server did not become ready within 20 s".into())
    }

    /// Runs the `latchkey` CLI against this server's data; its JSON output.
    pub fn cli(&self, args: &[&str], stdin: &str) -> Result<Value, String> {
        use std::io::Write as _;
        let mut cmd = Command::new(latchkey_bin());
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", latchkey_bin().display()))?;
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("latchkey {args:?} failed"));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }
}

fn spawn_serve(envs: &[(&'static str, String)]) -> Result<Child, String> {
    let mut cmd = Command::new(latchkey_bin());
    cmd.arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start the server: {e}"))
}

pub fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

pub fn authorize_url(base: &str, client_id: &str) -> String {
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
    format!(
        "{base}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=openid+profile+offline_access&state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    )
}

pub fn code_from(location: &str) -> Option<String> {
    url::Url::parse(location)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
}

/// Signs in through the login form and consents once; returns the session cookie.
pub async fn session_cookie(base: &str, client_id: &str, email: &str) -> Result<String, String> {
    let b = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let url = authorize_url(base, client_id);
    let html = b
        .get(&url)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let field = |html: &str, name: &str| -> Option<String> {
        let m = format!("name=\"{name}\" value=\"");
        let s = html.find(&m)? + m.len();
        let e = html[s..].find('"')? + s;
        Some(
            html[s..e]
                .replace("&amp;", "&")
                .replace("&#x2f;", "/")
                .replace("&quot;", "\""),
        )
    };
    let csrf = field(&html, "csrf_token").ok_or("no login form")?;
    let request = field(&html, "request").unwrap_or_default();
    let r = b
        .post(format!("{base}/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("request", request.as_str()),
            ("email", email),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("latchkey_session="))
        .and_then(|c| c.split(';').next())
        .ok_or("no session cookie")?
        .to_owned();
    let html = b
        .get(&url)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let csrf = field(&html, "csrf_token").ok_or("no consent form")?;
    let request = field(&html, "request").unwrap_or_default();
    b.post(format!("{base}/consent"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("request", request.as_str()),
            ("decision", "allow"),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(cookie)
}

/// A code flow with a signed-in session (consent given): the token response.
pub async fn code_flow(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    client_auth: &str,
    cookie: &str,
) -> Result<Value, String> {
    let r = http
        .get(authorize_url(base, client_id))
        .header("cookie", cookie)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let code = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .and_then(code_from)
        .ok_or("no code")?;
    http.post(format!("{base}/token"))
        .header("authorization", client_auth)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}
