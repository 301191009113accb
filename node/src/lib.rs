//! A Maillon node: a partner's own store, its MLS share groups, its verifiable
//! audit log, and the peer and client APIs that expose them.
//!
//! See `ARCHITECTURE.md` at the repository root for the map of modules and the
//! rules between them.

pub mod audit;
pub mod census;
pub mod clock;
pub mod config;
pub mod consent;
pub mod console;
pub mod crypto;
pub mod daemon;
pub mod escape;
pub mod failpoint;
pub mod fuzzing;
pub mod indicators;
pub mod limits;
pub mod locks;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod roster;
pub mod service;
pub mod sharing;
pub mod storage;
pub mod transport;
pub mod types;
