//! `manage`: a PostgreSQL-backed job scheduler and command suite.
//!
//! Data flows one way: the command line (`cli`) turns arguments into a
//! validated [`config::Config`] and a command; the core (`schedule`,
//! `registry`, `store`) does the work against PostgreSQL. The core never prints.

pub mod cli;
#[path = "../commands/mod.rs"]
pub mod commands;
pub mod config;
pub mod cron;
pub mod db;
pub mod error;
pub mod host;
pub mod input;
pub mod job;
pub mod mail;
pub mod metrics;
pub mod ops;
pub mod process;
pub mod registry;
pub mod runner;
pub mod schedule;
pub mod sql_text;
pub mod store;
pub mod timings;
pub mod view;
pub mod web;
