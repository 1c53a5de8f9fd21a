//! Starting servers and running the CLI against a throwaway database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use latchkey::clock::{Clock, ManualClock, SystemClock};
use latchkey::config::{Config, Overrides};
use latchkey::state::AppState;
use latchkey::testdb::TestDb;

/// A data directory plus a config file pointing at one test database.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// Held so the database lives as long as the environment.
    _db: TestDb,
    pub config_path: PathBuf,
}

impl Env {
    pub fn new(db: TestDb, extra_toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("latchkey.toml");
        let toml = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\ndatabase_url = {:?}\n{extra_toml}\n",
            dir.path().join("data").display().to_string(),
            db.url,
        );
        std::fs::write(&config_path, toml).unwrap();
        Self {
            dir,
            _db: db,
            config_path,
        }
    }

    pub fn config(&self) -> Config {
        Config::load(Some(&self.config_path), &Overrides::default()).unwrap()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs the CLI with `--config` and `args`; returns stdout or the one-line error.
    pub async fn cli(&self, args: &[&str], stdin: &str) -> Result<String, String> {
        run_cli(Some(&self.config_path), args, stdin).await
    }
}

pub async fn run_cli(config: Option<&Path>, args: &[&str], stdin: &str) -> Result<String, String> {
    let mut argv: Vec<String> = vec!["latchkey".into()];
    if let Some(path) = config {
        argv.push("--config".into());
        argv.push(path.display().to_string());
    }
    argv.extend(args.iter().map(|s| s.to_string()));
    let mut input = std::io::Cursor::new(stdin.as_bytes().to_vec());
    let mut out = Vec::new();
    match latchkey::cli::run(argv, &mut input, &mut out).await {
        Ok(()) => Ok(String::from_utf8(out).unwrap()),
        Err(e) => Err(e.to_string()),
    }
}

pub struct Server {
    pub base: String,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    running: Option<latchkey::server::Running>,
}

impl Server {
    pub async fn start(config: Config) -> Self {
        Self::start_at(config, "127.0.0.1:0").await
    }

    /// Listening on `addr`: for tests whose issuer must be where the server is.
    pub async fn start_at(config: Config, addr: &str) -> Self {
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let state = AppState::build(config, clock.clone()).await.unwrap();
        let running = latchkey::server::start(state.clone(), addr.parse().unwrap(), false)
            .await
            .unwrap();
        Self {
            base: format!("http://{}", running.addr),
            state,
            clock,
            running: Some(running),
        }
    }

    /// The audit log's events (about `user`, when given), oldest first.
    pub async fn audit(&self, user: Option<&str>) -> Vec<latchkey::store::StoredEvent> {
        let filter = latchkey::store::AuditFilter {
            subject: user.map(str::to_owned),
            ..Default::default()
        };
        self.state
            .store
            .audit_events(&filter, 10_000)
            .await
            .unwrap()
    }

    /// How many events of `kind` the audit log holds (about `user`, when given).
    pub async fn audited(&self, kind: &str, user: Option<&str>) -> usize {
        self.audit(user)
            .await
            .iter()
            .filter(|e| e.kind == kind)
            .count()
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            return path.to_owned();
        }
        format!("{}{path}", self.base)
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
        self.state.store.close().await;
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn get_json(url: &str) -> serde_json::Value {
    let resp = http().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.unwrap()
}

pub fn kids(jwks: &serde_json::Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

/// A loopback port nothing listens on (yet): for a server whose issuer must name its port.
pub async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    l.local_addr().unwrap().port()
}

/// Kills and reaps a child process when the test ends, passed or not.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
