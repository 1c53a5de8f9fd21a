//! `latchkey-bench`: throughput and latency of the token endpoint's hot paths, and the server's
//! peak memory, against a real `latchkey serve` process on loopback.
//!
//! Build both in release and run from the workspace:
//!
//! ```sh
//! cargo build --release -p latchkey -p latchkey-tests --bins
//! target/release/latchkey-bench                     # SQLite (embedded default)
//! target/release/latchkey-bench --postgres postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! Scenarios, each for `--seconds` at `--connections` concurrent keep-alive connections:
//! - `client_credentials`: POST /token with client_secret_basic, JWT access token (ES256);
//! - `code_flow`: GET /authorize with a live session and remembered consent → 303 with a code
//!   → POST /token (access token, id_token, refresh token), one flow per iteration;
//! - `refresh`: POST /token with grant_type=refresh_token, each connection rotating its own chain;
//! - both flows once for a client with the default RS256 id_tokens and once for one registered
//!   with ES256;
//! - `forward_auth`: GET /forward-auth as a reverse proxy asks it (X-Forwarded-Host/Uri from a
//!   trusted proxy, the browser's forward-auth cookie) → 200 with the identity headers
//!   (`BENCH_FORWARD_AUTH_CACHE=2s` sets `forward_auth.cache_ttl`; default `0s`).
//!
//! Peak memory is the server process's VmHWM from /proc after all scenarios.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use latchkey_tests::process::{
    PASSWORD, REDIRECT, ServerProcess, VERIFIER, authorize_url, basic, code_flow, code_from,
    session_cookie,
};
use serde_json::Value;

struct Args {
    connections: usize,
    seconds: u64,
    postgres: Option<String>,
    port: u16,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        connections: 32,
        seconds: 10,
        postgres: None,
        port: 18181,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--connections" => a.connections = val()?.parse().map_err(|_| "bad --connections")?,
            "--seconds" => a.seconds = val()?.parse().map_err(|_| "bad --seconds")?,
            "--postgres" => a.postgres = Some(val()?),
            "--port" => a.port = val()?.parse().map_err(|_| "bad --port")?,
            "--help" | "-h" => {
                println!(
                    "latchkey-bench [--connections N] [--seconds S] [--postgres ADMIN_URL] [--port P]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

struct Stats {
    count: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    elapsed: Duration,
}

impl Stats {
    fn print(&mut self, name: &str, unit: &str) {
        self.latencies_us.sort_unstable();
        let pct = |p: f64| -> f64 {
            if self.latencies_us.is_empty() {
                return 0.0;
            }
            let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
            f64::from(self.latencies_us[i]) / 1000.0
        };
        println!(
            "{name:<20} {:>9.0} {unit}/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} ok, {} errors, {:.1} s)",
            self.count as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            self.count,
            self.errors,
            self.elapsed.as_secs_f64()
        );
    }
}

/// Runs `op` on `connections` workers for `seconds`; each worker has its own HTTP client (one
/// keep-alive connection) and its own state.
async fn load<S, F, Fut>(
    connections: usize,
    seconds: u64,
    mut make: impl FnMut(usize) -> S,
    op: F,
) -> Stats
where
    S: Send + 'static,
    F: Fn(reqwest::Client, S) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = (S, bool)> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..connections {
        let stop = stop.clone();
        let mut state = make(i);
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(1)
                .build()
                .unwrap_or_default();
            let (mut ok, mut err, mut lat) = (0u64, 0u64, Vec::with_capacity(1 << 16));
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (s, good) = op(client.clone(), state).await;
                state = s;
                if good {
                    ok += 1;
                    lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                } else {
                    err += 1;
                }
            }
            (ok, err, lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut stats = Stats {
        count: 0,
        errors: 0,
        latencies_us: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        if let Ok((ok, err, lat)) = t.await {
            stats.count += ok;
            stats.errors += err;
            stats.latencies_us.extend(lat);
        }
    }
    stats.elapsed = started.elapsed();
    stats
}

/// The processor's name, so that figures can be compared across machines (they differ a lot:
/// this project's VMs have been several times apart in single-core speed).
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "processor unknown".to_owned())
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn run() -> Result<(), String> {
    let args = args()?;
    let backend = if args.postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let db_connections = std::env::var("BENCH_DB_CONNECTIONS").unwrap_or_else(|_| "16".to_owned());
    // Forward-auth protects app.localhost; the issuer is http://localhost:<port>.
    let fa_config =
        std::env::temp_dir().join(format!("latchkey-bench-{}.toml", std::process::id()));
    std::fs::write(
        &fa_config,
        format!(
            "[http]\ntrusted_proxies = [\"127.0.0.1\"]\n[forward_auth]\ncookie_domain = \"localhost\"\n\
             cache_ttl = {:?}\n[[forward_auth.rules]]\nhosts = [\"app.localhost\"]\n",
            std::env::var("BENCH_FORWARD_AUTH_CACHE").unwrap_or_else(|_| "0s".to_owned())
        ),
    )
    .map_err(|e| e.to_string())?;
    let server = ServerProcess::start(
        "bench",
        args.port,
        args.postgres.as_deref(),
        &[
            ("LATCHKEY_DATABASE__MAX_CONNECTIONS", db_connections),
            ("LATCHKEY_CONFIG", fa_config.display().to_string()),
        ],
    )?;
    let base = server.base.clone();
    server.wait_ready().await?;
    let email = "bench@example.com";
    server.cli(
        &["user", "create", "--email", email, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )?;
    let cc = server.cli(
        &[
            "client",
            "create",
            "--name",
            "Bench service",
            "--grant-type",
            "client_credentials",
            "--scope",
            "api:read",
        ],
        "",
    )?;
    let rp = server.cli(
        &[
            "client",
            "create",
            "--name",
            "Bench RP",
            "--redirect-uri",
            REDIRECT,
        ],
        "",
    )?;
    let es = server.cli(
        &[
            "client",
            "create",
            "--name",
            "Bench RP (ES256)",
            "--redirect-uri",
            REDIRECT,
            "--id-token-signed-response-alg",
            "ES256",
        ],
        "",
    )?;
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let cc_auth = basic(&s(&cc, "client_id"), &s(&cc, "client_secret"));
    let rp_id = s(&rp, "client_id");
    let rp_auth = basic(&rp_id, &s(&rp, "client_secret"));
    let es_id = s(&es, "client_id");
    let es_auth = basic(&es_id, &s(&es, "client_secret"));

    println!(
        "latchkey-bench: {backend}, {} connections, {} s per scenario, server and load generator on one {}-core machine ({})",
        args.connections,
        args.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );

    let token_url = Arc::new(format!("{base}/token"));
    let cc_auth = Arc::new(cc_auth);
    let mut stats = load(
        args.connections,
        args.seconds,
        |_| (token_url.clone(), cc_auth.clone()),
        |c, st: (Arc<String>, Arc<String>)| async move {
            let ok = c
                .post(st.0.as_str())
                .header("authorization", st.1.as_str())
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials")
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            (st, ok)
        },
    )
    .await;
    stats.print("client_credentials", "req");

    // The default client gets RS256 id_tokens (OIDC's default); the second registered ES256.
    let mut session = None;
    for (label, id, auth) in [
        ("RS256 id_token", &rp_id, &rp_auth),
        ("ES256 id_token", &es_id, &es_auth),
    ] {
        let cookie = session_cookie(&base, id, email).await?;
        flows(&args, &base, label, id, auth, &cookie).await?;
        session = Some(cookie);
    }

    // Forward-auth: the cookie a browser gets back from /login?rd= with a live session.
    let session = session.ok_or("no session")?;
    let fa_cookie = forward_auth_cookie(&base, &session).await?;
    let fa = Arc::new((format!("{base}/forward-auth"), fa_cookie));
    let mut stats = load(
        args.connections,
        args.seconds,
        |_| fa.clone(),
        |c, st: Arc<(String, String)>| async move {
            let ok = c
                .get(st.0.as_str())
                .header("x-forwarded-proto", "http")
                .header("x-forwarded-host", "app.localhost")
                .header("x-forwarded-uri", "/reports")
                .header("x-forwarded-method", "GET")
                .header("cookie", st.1.as_str())
                .send()
                .await
                .is_ok_and(|r| r.status() == 200 && r.headers().contains_key("remote-user"));
            (st, ok)
        },
    )
    .await;
    stats.print("forward_auth", "check");
    let _ = std::fs::remove_file(&fa_config);

    match peak_rss_mib(server.child.id()) {
        Some(m) => println!("server peak RSS (VmHWM): {m:.1} MiB"),
        None => println!("server peak RSS: unavailable (no /proc)"),
    }
    Ok(())
}

/// The forward-auth cookie (`name=value`) that `/login?rd=` sets for a signed-in browser.
async fn forward_auth_cookie(base: &str, session: &str) -> Result<String, String> {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?
        .get(format!(
            "{base}/login?rd=http%3A%2F%2Fapp.localhost%2Freports"
        ))
        .header("cookie", session)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("latchkey_forward_auth="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| format!("/login?rd= set no forward-auth cookie ({})", r.status()))
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("latchkey-bench: {e}");
        std::process::exit(1);
    }
}

/// The code-flow and refresh scenarios for one client.
async fn flows(
    args: &Args,
    base: &str,
    label: &str,
    rp_id: &str,
    rp_auth: &str,
    cookie: &str,
) -> Result<(), String> {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let flow = Arc::new((
        authorize_url(base, rp_id),
        format!("{base}/token"),
        rp_auth.to_owned(),
        cookie.to_owned(),
    ));
    let mut stats = load(args.connections, args.seconds, |_| flow.clone(), |c, st: Arc<(String, String, String, String)>| async move {
        let ok = async {
            let r = c.get(st.0.as_str()).header("cookie", st.3.as_str()).send().await.ok()?;
            let code = code_from(r.headers().get("location")?.to_str().ok()?)?;
            let body = format!(
                "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
                url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
            );
            let t = c
                .post(st.1.as_str())
                .header("authorization", st.2.as_str())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .ok()?;
            (t.status() == 200).then_some(())
        }
        .await
        .is_some();
        (st, ok)
    })
    .await;
    stats.print(&format!("code_flow ({label})"), "flows");

    // One refresh chain per connection, set up on fresh connections.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let mut chains = Vec::new();
    for _ in 0..args.connections {
        let t = code_flow(&http, base, rp_id, rp_auth, cookie).await?;
        chains.push(s(&t, "refresh_token"));
    }
    let shared = Arc::new((format!("{base}/token"), rp_auth.to_owned()));
    let mut stats = load(
        args.connections,
        args.seconds,
        |i| (shared.clone(), chains[i].clone()),
        |c, (sh, rt): (Arc<(String, String)>, String)| async move {
            let r = c
                .post(sh.0.as_str())
                .header("authorization", sh.1.as_str())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("grant_type=refresh_token&refresh_token={rt}"))
                .send()
                .await;
            let next = match r {
                Ok(r) if r.status() == 200 => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["refresh_token"].as_str().map(str::to_owned)),
                _ => None,
            };
            match next {
                Some(n) => ((sh, n), true),
                None => ((sh, rt), false),
            }
        },
    )
    .await;
    stats.print(&format!("refresh ({label})"), "req");

    Ok(())
}
