//! `manage web`: the flags, the safety rule about where it may listen, then
//! the server (`crate::web`).

use std::net::SocketAddr;

use clap::Args;

use crate::cli::Context;
use crate::error::bad_input;

/// Where `manage web` listens without `--listen` or `[web] listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

#[derive(Debug, Args)]
pub struct WebArgs {
    /// The address and port to listen on [default: [web] listen, else 127.0.0.1:8000]
    #[arg(long, value_name = "ADDR:PORT", value_parser = crate::config::parse_listen)]
    listen: Option<SocketAddr>,
    /// Show the pages without any button or form, and refuse every change (403)
    #[arg(long)]
    read_only: bool,
}

pub fn run(ctx: Context, args: WebArgs) -> anyhow::Result<()> {
    let listen = match args.listen.or(ctx.config.web.listen) {
        Some(listen) => listen,
        None => DEFAULT_LISTEN.parse()?,
    };
    let token = ctx.config.web.token.clone();
    // Without a token anyone who can reach the port could hold every job:
    // only this machine may, then (§16).
    if token.is_none() && !listen.ip().is_loopback() {
        return bad_input(format!(
            "--listen {listen}: not a loopback address, and no token is set; expected a loopback \
             address such as 127.0.0.1:8000, or a token in [web] token or MANAGE_WEB_TOKEN"
        ));
    }
    crate::web::serve(
        ctx.config,
        crate::web::Options {
            listen,
            read_only: args.read_only,
            token,
        },
    )
}
