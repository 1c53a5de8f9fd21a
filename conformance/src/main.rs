//! `latchkey-conformance`: runs the OpenID Foundation certification plans' checks against any
//! issuer, driven by a certified relying-party library (`openidconnect`) plus plain HTTP, and
//! reports every module by its suite name as PASS / FAIL / SKIP with the reason.
//!
//! It needs a test user's credentials and a confidential client (client_secret_basic) whose
//! redirect URI it names; the redirect URI is never loaded, the runner reads the response off
//! the redirect or the form_post page. Exit status 1 when any module FAILs.

mod backchannel;
mod basic;
mod checks;
mod config;
mod dynamic;
mod fapi2;
mod html;
mod logout;
mod report;
mod rp;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;

use crate::report::{Outcome, Report};
use crate::rp::{Credentials, Mode, Rp};

#[derive(Parser, Debug)]
#[command(name = "latchkey-conformance", version, about)]
struct Args {
    /// Issuer URL of the provider under test, exactly as it appears in its tokens.
    #[arg(long, env = "CONFORMANCE_ISSUER")]
    issuer: String,
    /// The test user's sign-in name.
    #[arg(long, env = "CONFORMANCE_USERNAME")]
    username: String,
    /// The test user's password.
    #[arg(long, env = "CONFORMANCE_PASSWORD", hide_env_values = true)]
    password: String,
    /// A confidential client using client_secret_basic, as CLIENT_ID:CLIENT_SECRET.
    #[arg(long, env = "CONFORMANCE_CLIENT", hide_env_values = true)]
    client: String,
    /// A client registered for client_secret_post (oidcc-server-client-secret-post).
    #[arg(long, env = "CONFORMANCE_POST_CLIENT", hide_env_values = true)]
    post_client: Option<String>,
    /// A second client, to check that refresh tokens are bound to theirs (oidcc-refresh-token).
    #[arg(long, env = "CONFORMANCE_SECOND_CLIENT", hide_env_values = true)]
    second_client: Option<String>,
    /// A redirect URI registered for every client above.
    #[arg(long, env = "CONFORMANCE_REDIRECT_URI")]
    redirect_uri: String,
    /// A post_logout_redirect_uri registered for the main client (the logout plan).
    #[arg(long, env = "CONFORMANCE_POST_LOGOUT_REDIRECT_URI")]
    post_logout_redirect_uri: Option<String>,
    /// An initial access token for dynamic registration (the oidcc-dynamic plan).
    #[arg(long, env = "CONFORMANCE_INITIAL_ACCESS_TOKEN", hide_env_values = true)]
    initial_access_token: Option<String>,
    /// The main client's ES256 private key as a JWK file (its public half registered as the
    /// client's `jwks`), for the request-object modules of the basic plan.
    #[arg(long, env = "CONFORMANCE_CLIENT_JWK")]
    client_jwk: Option<String>,
    /// A client registered for the FAPI 2.0 Security Profile (private_key_jwt with the key of
    /// --client-jwk, PAR, DPoP): the fapi2-security-profile-final plan runs with it.
    #[arg(long, env = "CONFORMANCE_FAPI_CLIENT")]
    fapi_client: Option<String>,
    /// A second such client (codes and request_uris bound to their client).
    #[arg(long, env = "CONFORMANCE_FAPI_SECOND_CLIENT")]
    fapi_second_client: Option<String>,
    /// Seconds the FAPI 2.0 expiry modules wait for a code and a request_uri to expire
    /// (0 skips them).
    #[arg(long, default_value_t = 0)]
    fapi_expiry_wait: u64,
    /// Where the runner listens for back-channel logout requests (e.g. 127.0.0.1:0); the
    /// provider must be allowed to post there (Latchkey: `backchannel_logout.danger_allow_insecure_uri`).
    #[arg(long, env = "CONFORMANCE_BACKCHANNEL_LISTEN")]
    backchannel_listen: Option<String>,
    /// Seconds oidcc-codereuse-30seconds waits, as the suite does.
    #[arg(long, default_value_t = 30)]
    reuse_wait: u64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(report) if report.failed() == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("latchkey-conformance: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<Report, String> {
    let http = reqwest::Client::builder()
        // A relying party must not follow redirects from the provider's endpoints.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(args.timeout))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let issuer = args.issuer.trim_end_matches('/').to_owned();
    println!("conformance run against {issuer}");
    let mut report = Report::default();

    // Discovery: raw (content type, fields) and through the RP library.
    let url = format!("{issuer}/.well-known/openid-configuration");
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let doc: Value = resp
        .json()
        .await
        .map_err(|e| format!("discovery is not JSON: {e}"))?;
    println!("== oidcc-config-certification-test-plan");
    let config_outcome = config::discovery_endpoint_verification(&issuer, &content_type, &doc);
    report.record(
        "oidcc-discovery-endpoint-verification",
        config_outcome.clone(),
    );
    report.record("jwks (every happy flow)", checks::jwks(&http, &doc).await);

    let (metadata, raw_metadata) = match Rp::discover(&http, &issuer).await {
        Ok(m) => m,
        Err(e) => {
            report.record("discovery through openidconnect", Outcome::Fail(e));
            report.print_summary();
            return Ok(report);
        }
    };
    let creds = |s: &Option<String>| s.as_deref().map(Credentials::parse).transpose();
    let mut rp = Rp {
        http,
        issuer: issuer.clone(),
        metadata,
        raw_metadata,
        redirect_uri: args.redirect_uri,
        post_logout_redirect_uri: args.post_logout_redirect_uri,
        username: args.username,
        password: args.password,
        client: Credentials::parse(&args.client)?,
        post_client: creds(&args.post_client)?,
        second_client: creds(&args.second_client)?,
        mode: Mode::Query,
        client_key: match &args.client_jwk {
            Some(path) => Some(std::sync::Arc::new(rp::RunnerKey::from_private_jwk_file(
                path,
            )?)),
            None => None,
        },
    };
    let opts = basic::Options {
        reuse_wait: args.reuse_wait,
    };

    println!("== oidcc-basic-certification-test-plan (response_type=code, client_secret_basic)");
    basic::run(&rp, &opts, &mut report).await;

    println!("== oidcc-formpost-basic-certification-test-plan (response_mode=form_post)");
    rp.mode = Mode::FormPost;
    basic::run(&rp, &opts, &mut report).await;
    rp.mode = Mode::Query;

    println!("== oidcc-rp-initiated-logout-certification-test-plan");
    logout::run(&rp, config_outcome, &mut report).await;

    println!("== oidcc-backchannel-rp-initiated-logout-certification-test-plan (dynamic client)");
    backchannel::run(
        &rp,
        args.initial_access_token.as_deref(),
        args.backchannel_listen.as_deref(),
        &mut report,
    )
    .await;

    println!(
        "== fapi2-security-profile-final-test-plan (private_key_jwt, DPoP, plain FAPI, unsigned requests)"
    );
    match (&args.fapi_client, &args.fapi_second_client, &rp.client_key) {
        (Some(client), Some(second), Some(key)) => {
            let f = fapi2::Fapi {
                rp: &rp,
                client: client.clone(),
                second: second.clone(),
                key,
                expiry_wait: args.fapi_expiry_wait,
            };
            fapi2::run(&f, &mut report).await;
        }
        _ => println!("(not run: --fapi-client, --fapi-second-client and --client-jwk are needed)"),
    }

    println!("== oidcc-dynamic-certification-test-plan");
    let config = config::discovery_endpoint_verification(&issuer, &content_type, &doc);
    dynamic::run(
        &rp,
        args.initial_access_token.as_deref(),
        config,
        &mut report,
    )
    .await;

    report.print_summary();
    Ok(report)
}
