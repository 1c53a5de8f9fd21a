//! Throwaway databases for tests: a SQLite file in a temporary directory, or a fresh PostgreSQL
//! database created beside the one `LATCHKEY_TEST_POSTGRES_URL` names and dropped afterwards.
//! Used by the store tests here and by the black-box tests crate.

use std::path::PathBuf;

use crate::secrets::random_token;

/// The environment variable that enables the PostgreSQL half of the suites.
pub const POSTGRES_ENV: &str = "LATCHKEY_TEST_POSTGRES_URL";

pub struct TestDb {
    pub url: String,
    pub label: &'static str,
    /// Holds the SQLite file's directory alive.
    _dir: Option<tempfile_dir::TempDir>,
    pg_drop: Option<(String, String)>,
}

mod tempfile_dir {
    /// A directory removed on drop (no dependency on the tempfile crate outside tests).
    pub struct TempDir(pub std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl TestDb {
    /// One database per backend that is enabled: SQLite always, PostgreSQL when configured.
    pub async fn all() -> Vec<TestDb> {
        let mut dbs = vec![Self::sqlite()];
        if let Ok(admin) = std::env::var(POSTGRES_ENV) {
            match Self::postgres(&admin).await {
                Ok(db) => dbs.push(db),
                // A configured but unusable PostgreSQL must fail the run, not skip it.
                Err(e) => dbs.push(TestDb {
                    url: format!("postgres-unavailable://{e}"),
                    label: "postgres",
                    _dir: None,
                    pg_drop: None,
                }),
            }
        }
        dbs
    }

    pub fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("latchkey-test-{}", random_token(9)));
        let _ = std::fs::create_dir_all(&dir);
        let path: PathBuf = dir.join("test.db");
        TestDb {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            label: "sqlite",
            _dir: Some(tempfile_dir::TempDir(dir)),
            pg_drop: None,
        }
    }

    pub async fn postgres(admin_url: &str) -> Result<TestDb, String> {
        use sqlx::Connection as _;
        let name = format!(
            "latchkey_test_{}",
            random_token(9).to_lowercase().replace(['-', '_'], "x")
        );
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
        let _ = admin.close().await;
        let mut url = url::Url::parse(admin_url).map_err(|e| e.to_string())?;
        url.set_path(&name);
        Ok(TestDb {
            url: url.to_string(),
            label: "postgres",
            _dir: None,
            pg_drop: Some((admin_url.to_owned(), name)),
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.pg_drop.take() else {
            return;
        };
        // Drop may run inside a runtime; do the blocking work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use sqlx::Connection as _;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}
