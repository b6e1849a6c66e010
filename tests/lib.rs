//! The integration tests: the real `manage` binary against a real PostgreSQL
//! cluster that the harness starts for the run. One module per area.

#![allow(clippy::unwrap_used)]

mod harness;
mod receiver;
mod smtp;
mod store;

mod alerts;
mod browser;
mod configuration;
mod controls;
mod database_tls;
mod dead_man;
mod embedded;
mod flow;
mod high_availability;
mod jitter;
mod library;
mod notifications;
mod one_off_runs;
mod operations;
mod pause;
mod poolers;
mod private_cluster;
mod read_commands;
mod relay;
mod resilience;
mod retries;
mod run_args;
mod runner;
mod runner_pools;
mod schedules;
mod sql_jobs;
mod sync;
mod web;
mod web_pages;
mod webhooks;
