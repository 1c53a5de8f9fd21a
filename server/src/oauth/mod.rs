//! The protocol core: no HTTP framework, no SQL. Pure types and rules.

pub mod authorize;
pub mod claims;
pub mod client;
pub mod client_auth;
pub mod client_document;
pub mod device;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod exchange;
pub mod par;
pub mod params;
pub mod pkce;
pub mod redirect;
pub mod registration;
pub mod request_object;
pub mod resource;
pub mod scope;
pub mod tokens;
