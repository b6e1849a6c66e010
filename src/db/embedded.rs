//! TEMPORARY stand-in for the embedded cluster.
use std::path::{Path, PathBuf};
#[derive(Debug, Clone)]
pub struct Embedded {
    pub data_dir: PathBuf,
    pub pg_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub created: bool,
    pub started: bool,
}
impl Embedded {
    pub fn connection_config(&self) -> postgres::Config {
        let mut c = postgres::Config::new();
        c.host_path(&self.socket_dir)
            .user("manage")
            .dbname("manage");
        c
    }
    pub fn describe(&self) -> String {
        format!("using the embedded database in {}", self.pg_dir.display())
    }
}
pub fn data_dir_from_env() -> PathBuf {
    PathBuf::from("/tmp/x")
}
pub fn ensure_running(d: &Path) -> anyhow::Result<Embedded> {
    anyhow::bail!("no {}", d.display())
}
pub fn start(d: &Path) -> anyhow::Result<Embedded> {
    anyhow::bail!("no {}", d.display())
}
pub enum Status {
    Running { pid: u32 },
    NotRunning,
    NotCreated,
}
pub fn status(_d: &Path) -> Status {
    Status::NotCreated
}
pub fn stop(_d: &Path) -> anyhow::Result<bool> {
    Ok(false)
}
