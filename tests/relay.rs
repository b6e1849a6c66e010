//! A TCP relay on 127.0.0.1 in front of the test cluster's Unix socket, which
//! a test can freeze: it then passes no byte either way and closes nothing,
//! as a proxy that hangs or a NAT that dropped its state does. The kernel
//! still acknowledges what the client sends, so neither keepalives nor a TCP
//! user timeout notice: only the runner's own clock can.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Relay {
    pub port: u16,
    frozen: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
}

impl Relay {
    /// A relay to the server of a `host=DIR port=P …` conninfo.
    pub fn to(conninfo: &str) -> Relay {
        let field = |key: &str| {
            conninfo
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("no {key} in {conninfo}"))
                .to_string()
        };
        let socket = PathBuf::from(field("host")).join(format!(".s.PGSQL.{}", field("port")));
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the relay");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let port = listener.local_addr().expect("the relay's address").port();
        let frozen = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        let (f, s) = (Arc::clone(&frozen), Arc::clone(&stopped));
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = UnixStream::connect(&socket) else {
                            continue;
                        };
                        let _ = client.set_nonblocking(false);
                        relay_pair(client, server, &f, &s);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => return,
                }
            }
        });
        Relay {
            port,
            frozen,
            stopped,
        }
    }

    /// From now on nothing passes, either way.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Bytes pass again, on the connections it held still too.
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

fn relay_pair(
    client: TcpStream,
    server: UnixStream,
    frozen: &Arc<AtomicBool>,
    stopped: &Arc<AtomicBool>,
) {
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    pump(client, server, frozen, stopped);
    pump(server2, client2, frozen, stopped);
}

/// Copy `from` to `to` on a thread of its own, holding still while frozen.
fn pump(
    mut from: impl Read + Send + Timeout + 'static,
    mut to: impl Write + Send + 'static,
    frozen: &Arc<AtomicBool>,
    stopped: &Arc<AtomicBool>,
) {
    let (frozen, stopped) = (Arc::clone(frozen), Arc::clone(stopped));
    from.read_timeout(Duration::from_millis(50));
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        while !stopped.load(Ordering::SeqCst) {
            if frozen.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            match from.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => {
                    while frozen.load(Ordering::SeqCst) && !stopped.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    if to.write_all(&buffer[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    });
}

/// Both stream kinds take a read timeout, so a pump can see `stopped`.
trait Timeout {
    fn read_timeout(&mut self, timeout: Duration);
}

impl Timeout for TcpStream {
    fn read_timeout(&mut self, timeout: Duration) {
        let _ = self.set_read_timeout(Some(timeout));
    }
}

impl Timeout for UnixStream {
    fn read_timeout(&mut self, timeout: Duration) {
        let _ = self.set_read_timeout(Some(timeout));
    }
}
