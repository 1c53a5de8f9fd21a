//! `latchkey-conformance`: runs the OpenID Foundation certification plans' checks against any
//! issuer URL, driven by a third-party relying-party library (`openidconnect`) plus plain HTTP,
//! and reports each check by name as PASS / FAIL / SKIP with the reason.
//!
//! What it checks grows with the provider: today the checks every happy flow of the suite
//! starts with (discovery and JWKS). Exit status 1 when anything FAILs.

mod checks;
mod report;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::report::Report;

#[derive(Parser, Debug)]
#[command(name = "latchkey-conformance", version, about)]
struct Args {
    /// Issuer URL of the provider under test, exactly as it appears in its tokens.
    #[arg(long, env = "CONFORMANCE_ISSUER")]
    issuer: String,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let http = match reqwest::Client::builder()
        // A relying party must not follow redirects from the provider's metadata endpoints.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(args.timeout))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("latchkey-conformance: cannot build an HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let issuer = args.issuer.trim_end_matches('/').to_owned();
    println!("conformance run against {issuer}");
    let mut report = Report::default();
    checks::run_all(&http, &issuer, &mut report).await;
    report.print_summary();
    if report.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
