//! Latchkey: an OAuth 2.0 / OpenID Connect authorization server with passkeys.
//!
//! Dependencies point one way: `server -> http -> state -> grants / signin / clients /
//! federation / mail / logout -> access / dpop / keys -> oauth, store, secrets, config, clock`. Only `http`
//! knows poem; only `store` writes SQL; the protocol core (`oauth`) knows neither. Services
//! below `state` take the narrow context they need (`grants::TokenContext`,
//! `signin::Signin`, `clients::Clients`, `access::AccessTokens`, `dpop::DpopProofs`), built by `AppState`, never
//! `AppState` itself. `tools/module-graph` lists the module graph and fails on any circle;
//! CI runs it.

pub mod access;
pub mod admin;
pub mod api_keys;
pub mod audiences;
pub mod audit;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod dpop;
pub mod federation;
pub mod forward_auth;
pub mod grants;
pub mod http;
pub mod input;
pub mod keys;
pub mod logout;
pub mod mail;
pub mod metrics;
pub mod oauth;
pub mod outbound;
#[cfg(test)]
mod proptests;
pub mod secrets;
pub mod server;
pub mod signin;
pub mod state;
pub mod store;
pub mod streams;
pub mod testdb;
pub mod views;

pub use http::app;
