//! `latchkey-crash`: refresh-token chains survive `kill -9`.
//!
//! Starts `latchkey serve` (SQLite, or PostgreSQL with `--postgres ADMIN_URL`), opens `--chains`
//! refresh-token chains (one code flow each), then `--kills` times: every chain rotates its
//! token as fast as it can, the server is killed with SIGKILL at a random moment while
//! refreshes are in flight, and started again on the same data. A chain whose request got no
//! answer holds only the token it sent; it sends it again after the restart, as a client
//! would: either the rotation never committed and that token is still the live one, or it did
//! and the retry grace (RFC 9700 §4.14.2) answers the same successor.
//!
//! At the end every chain's last token must be active at `/introspect`, every token it held
//! before inactive, and no token answered twice with different successors (as far as the
//! client saw answers: a second live token the client never received would not show here). Then an old token of each chain is presented again
//! (a replay, its successor long used) and must revoke the chain. Exits non-zero on any chain
//! lost or torn. Run by `.ci/run` on both backends:
//!
//! ```sh
//! cargo build -p latchkey -p latchkey-tests --bins
//! target/debug/latchkey-crash [--postgres URL] [--kills 5] [--chains 16] [--port 18282]
//! target/debug/latchkey-crash --retry-grace 0s   # fails: a lost answer costs the chain
//! ```

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use latchkey_tests::process::{
    PASSWORD, REDIRECT, ServerProcess, basic, code_flow, session_cookie,
};
use serde_json::Value;

struct Args {
    kills: u32,
    /// `tokens.refresh_retry_grace` for the server; `0s` shows what a crash costs without it.
    grace: String,
    chains: usize,
    postgres: Option<String>,
    port: u16,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        kills: 5,
        grace: "30s".to_owned(),
        chains: 16,
        postgres: None,
        port: 18282,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--kills" => a.kills = val()?.parse().map_err(|_| "bad --kills")?,
            "--retry-grace" => a.grace = val()?,
            "--chains" => a.chains = val()?.parse().map_err(|_| "bad --chains")?,
            "--postgres" => a.postgres = Some(val()?),
            "--port" => a.port = val()?.parse().map_err(|_| "bad --port")?,
            "--help" | "-h" => {
                println!(
                    "latchkey-crash [--kills N] [--chains N] [--retry-grace 30s] [--postgres ADMIN_URL] [--port P]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// One refresh-token chain, as its client knows it.
struct Chain {
    /// The token to send next.
    current: String,
    /// Every token this chain held before `current`.
    spent: Vec<String>,
    /// What each token was answered with: a token answered twice must get the same successor.
    answered: HashMap<String, String>,
}

impl Chain {
    /// Records an answer to `sent`; Err if `sent` was answered before with another successor.
    fn answer(&mut self, sent: &str, next: String) -> Result<(), String> {
        if let Some(earlier) = self.answered.get(sent)
            && *earlier != next
        {
            return Err("a token was answered with two different successors".into());
        }
        self.answered.insert(sent.to_owned(), next.clone());
        if next != self.current {
            self.spent.push(std::mem::replace(&mut self.current, next));
        }
        Ok(())
    }
}

enum Outcome {
    /// 200 with the next token.
    Rotated(String),
    /// A 4xx: the server refused the token.
    Refused(u16, String),
    /// No answer. `in_flight`: the request may have reached the server (the connection was
    /// cut, not refused), so its rotation may have committed.
    NoAnswer { in_flight: bool },
}

async fn refresh(http: &reqwest::Client, base: &str, auth: &str, token: &str) -> Outcome {
    let sent = http
        .post(format!("{base}/token"))
        .header("authorization", auth)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await;
    let r = match sent {
        Ok(r) => r,
        Err(e) => {
            return Outcome::NoAnswer {
                in_flight: !e.is_connect(),
            };
        }
    };
    let status = r.status().as_u16();
    let Ok(body) = r.json::<Value>().await else {
        return Outcome::NoAnswer { in_flight: true };
    };
    match (status, body["refresh_token"].as_str()) {
        (200, Some(next)) => Outcome::Rotated(next.to_owned()),
        _ => Outcome::Refused(status, body["error"].as_str().unwrap_or("?").to_owned()),
    }
}

async fn introspect(http: &reqwest::Client, base: &str, auth: &str, token: &str) -> bool {
    let r = http
        .post(format!("{base}/introspect"))
        .header("authorization", auth)
        .form(&[("token", token), ("token_type_hint", "refresh_token")])
        .send()
        .await;
    match r {
        Ok(r) => r
            .json::<Value>()
            .await
            .is_ok_and(|v| v["active"] == Value::Bool(true)),
        Err(_) => false,
    }
}

/// A pseudo-random number of milliseconds in `lo..hi`, different per round (no dependency for
/// this: the moment of the kill only has to vary).
fn jitter(lo: u64, hi: u64, round: u32) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    lo + (u64::from(nanos) ^ u64::from(round).wrapping_mul(2_654_435_761)) % (hi - lo)
}

async fn run() -> Result<(), String> {
    let args = args()?;
    let backend = if args.postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    // The retry grace must outlast a restart: 30 s here unless told (the default is 10 s).
    let mut server = ServerProcess::start(
        "crash",
        args.port,
        args.postgres.as_deref(),
        &[
            ("LATCHKEY_TOKENS__REFRESH_RETRY_GRACE", args.grace.clone()),
            // The replays at the end are meant: their warnings are not news.
            ("LATCHKEY_LOG", "error".to_owned()),
        ],
    )?;
    server.wait_ready().await?;
    let base = server.base.clone();
    let email = "crash@example.com";
    server.cli(
        &["user", "create", "--email", email, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )?;
    let rp = server.cli(
        &[
            "client",
            "create",
            "--name",
            "Crash RP",
            "--redirect-uri",
            REDIRECT,
        ],
        "",
    )?;
    let rp_id = rp["client_id"].as_str().unwrap_or_default().to_owned();
    let auth = basic(&rp_id, rp["client_secret"].as_str().unwrap_or_default());
    let cookie = session_cookie(&base, &rp_id, email).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut chains = Vec::with_capacity(args.chains);
    for _ in 0..args.chains {
        let t = code_flow(&http, &base, &rp_id, &auth, &cookie).await?;
        let first = t["refresh_token"]
            .as_str()
            .ok_or("the code flow gave no refresh token")?;
        chains.push(Chain {
            current: first.to_owned(),
            spent: Vec::new(),
            answered: HashMap::new(),
        });
    }
    println!(
        "latchkey-crash: {backend}, {} chains, {} kills (SIGKILL mid-load, restart on the same data)",
        args.chains, args.kills
    );

    let (mut rotations, mut cut) = (0u64, 0u64);
    for round in 1..=args.kills {
        // Load: each chain rotates in a loop until the server goes away.
        let mut tasks = Vec::new();
        for mut chain in chains.drain(..) {
            let (http, base, auth) = (http.clone(), base.clone(), auth.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    let sent = chain.current.clone();
                    match refresh(&http, &base, &auth, &sent).await {
                        Outcome::Rotated(next) => {
                            chain.answer(&sent, next)?;
                            n += 1;
                        }
                        Outcome::NoAnswer { in_flight } => return Ok((chain, n, in_flight)),
                        Outcome::Refused(status, error) => {
                            return Err(format!("a live chain was refused: {status} {error}"));
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(jitter(300, 900, round))).await;
        server.kill_hard()?;
        let mut cut_now = 0;
        for t in tasks {
            let (chain, n, in_flight) = t.await.map_err(|e| e.to_string())??;
            rotations += n;
            cut_now += u64::from(in_flight);
            chains.push(chain);
        }
        cut += cut_now;
        server.restart()?;
        server.wait_ready().await?;
        // Every chain sends its token again, as a client that got no answer would.
        for (i, chain) in chains.iter_mut().enumerate() {
            let sent = chain.current.clone();
            match refresh(&http, &base, &auth, &sent).await {
                Outcome::Rotated(next) => chain.answer(&sent, next)?,
                Outcome::Refused(status, error) => {
                    return Err(format!(
                        "round {round}: chain {i} lost after the kill: {status} {error}"
                    ));
                }
                Outcome::NoAnswer { .. } => {
                    return Err(format!("round {round}: no answer after restart"));
                }
            }
        }
        println!(
            "  kill {round}: {cut_now} of {} chains had a refresh in flight; all intact after restart",
            chains.len()
        );
    }

    // Exactly one working token per chain; none of the earlier ones works.
    for (i, chain) in chains.iter().enumerate() {
        if !introspect(&http, &base, &auth, &chain.current).await {
            return Err(format!("chain {i}: its last token is not active"));
        }
        let distinct: HashSet<&String> = chain.spent.iter().collect();
        if distinct.len() != chain.spent.len() || distinct.contains(&chain.current) {
            return Err(format!("chain {i}: a token was issued twice"));
        }
        for old in &chain.spent {
            if introspect(&http, &base, &auth, old).await {
                return Err(format!("chain {i}: an earlier token is still active"));
            }
        }
    }
    // A replay (a token whose successor was used long ago) still revokes its chain.
    for (i, chain) in chains.iter().enumerate() {
        let Some(old) = chain.spent.first() else {
            continue;
        };
        if let Outcome::Rotated(_) = refresh(&http, &base, &auth, old).await {
            return Err(format!("chain {i}: a replayed token was answered"));
        }
        if introspect(&http, &base, &auth, &chain.current).await {
            return Err(format!("chain {i}: the replay did not revoke the chain"));
        }
    }
    println!(
        "latchkey-crash: {backend}: {} kills, {rotations} rotations, {cut} refreshes cut off in flight; \
         0 chains lost or torn; every chain had one working token; replays still revoke",
        args.kills
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("latchkey-crash: {e}");
        std::process::exit(1);
    }
}
