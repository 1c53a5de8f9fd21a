//! Black-box tests: the real server on 127.0.0.1:0, spoken to over HTTP, and the real CLI
//! run in-process. Each test gets its own database; the PostgreSQL half runs when
//! `LATCHKEY_TEST_POSTGRES_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin_api;
mod admin_console;
mod api_keys;
mod audit;
mod backchannel;
mod cimd;
mod cli;
mod client_auth;
mod csrf;
mod device;
mod dpop;
mod email;
mod endpoints;
mod exchange;
mod fapi;
mod flow;
mod forward_auth;
mod harness;
mod input;
mod keys;
mod mail;
mod mcp;
mod messages;
mod oidc;
mod operators;
mod par;
mod passkeys;
mod registration;
mod request_object;
mod reset;
mod scim;
mod signup;
mod streams;
mod throttle;
mod tls;
mod totp;
