//! Integration tests: real nodes on loopback, real TLS, sled and MLS. One test
//! binary, one module per area.

mod alerts;
mod audit_cli;
mod auditors;
mod backup;
mod bad_input;
mod break_glass;
mod browser;
mod census;
mod cli;
mod closing;
mod commissions;
mod consent;
mod console;
mod crash;
mod deploy;
mod dossier;
mod governance;
mod hostile;
mod indicators;
mod json;
mod logs;
mod operations;
mod orientations;
mod python;
mod races;
mod read_path;
mod referent;
mod restart;
mod roles;
mod roster;
mod tidy;
mod transport;
