//! The protocol core: no HTTP framework, no SQL. Pure types and rules.

pub mod client;
pub mod discovery;
pub mod scope;
