//! The `filemanager` binary's code, as a library so that tests can drive it: the HTTP service
//! ([`http`]), the command line ([`cli`]) and the configuration both share ([`config`]).
//!
//! Both are thin layers over the `filemanager` library, where the behaviour lives.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod config;
pub mod http;
