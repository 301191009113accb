//! The `maillon` command: node set-up, governance, dossiers, consent, sharing,
//! audit, and the demo. Talks to nodes over gRPC; reuses the node library's
//! pure verification code so that an auditor checks logs with the same code
//! the nodes use.

pub mod audit;
pub mod bench;
pub mod cli;
pub mod client;
pub mod demo;
pub mod federation;
