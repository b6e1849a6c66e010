//! The integration tests: the real `manage` binary against a real PostgreSQL
//! cluster that the harness starts for the run. One module per area.

#![allow(clippy::unwrap_used)]

mod harness;

mod configuration;
mod controls;
mod embedded;
mod one_off_runs;
mod read_commands;
mod runner;
mod sync;
