//! Black-box tests live in blackbox/; this library holds what the tools share.

pub mod process;
