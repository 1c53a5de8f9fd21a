//! Latchkey: an OAuth 2.0 / OpenID Connect authorization server with passkeys.
//!
//! Dependencies point one way: `http -> oauth / signin -> store`. The protocol core
//! (`oauth`) knows neither poem nor sqlx.

pub mod access;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod federation;
pub mod grants;
pub mod http;
pub mod keys;
pub mod mail;
pub mod oauth;
pub mod outbound;
pub mod secrets;
pub mod server;
pub mod signin;
pub mod state;
pub mod store;
pub mod streams;
pub mod testdb;
pub mod views;

pub use http::app;
