//! What `manage` shows, whichever interface shows it: the facts and their
//! wording that `jobs list`, `jobs show` and `jobs status` print and the web
//! page and its `/api/` and `/healthz` serve. It sits below both the command
//! line (`cli`) and the web page (`web`), so that neither reaches into the
//! other for them: the command line adds the tables and the terminal, the web
//! page the HTML.
//!
//! No clap, comfy-table, dialoguer or HTML here, and nothing is printed.

pub mod health;
pub mod json;
pub mod text;
