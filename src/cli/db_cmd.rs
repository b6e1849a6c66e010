//! `manage db status|stop`: the embedded default cluster.

use clap::Subcommand;

use crate::db::embedded::{self, Status};
use crate::error::Exit;

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Whether the embedded cluster runs, and where it is (exit 0 running, 1 not)
    Status,
    /// Stop the embedded cluster
    Stop,
}

pub fn run(command: &DbCommand) -> anyhow::Result<()> {
    let dir = embedded::data_dir_from_env();
    let pg_dir = dir.join("pg");
    match command {
        DbCommand::Status => match embedded::status(&dir) {
            Status::Running { pid } => {
                println!("running (pid {pid}) in {}", pg_dir.display());
                Ok(())
            }
            Status::NotRunning => {
                println!("not running in {}", pg_dir.display());
                Err(Exit(1).into())
            }
            Status::NotCreated => {
                println!("not created in {}", pg_dir.display());
                Err(Exit(1).into())
            }
        },
        DbCommand::Stop => {
            if embedded::stop(&dir)? {
                println!("stopped the embedded database in {}", pg_dir.display());
            } else {
                println!("not running");
            }
            Ok(())
        }
    }
}
