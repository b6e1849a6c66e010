//! Closing a connection from another thread, so that a database which went
//! silent cannot hold the runner's connection for ever (§18).
//!
//! A peer that acknowledges every byte and answers none (a proxy that hangs,
//! a NAT that kept half its state) defeats keepalives and the TCP user
//! timeout: a query on such a connection blocks until something closes the
//! socket. The synchronous `postgres` client offers no way to do that — its
//! socket is private — so the socket is found the one way left: the socket
//! descriptors of this process before and after the connection was made.
//! Connections are made one at a time (a lock) so that the difference is the
//! new connection's socket; when it is not exactly one (another thread opened
//! a socket meanwhile: a cancel request, a mail server), the connection gets
//! no handle and is only as watched as before.
//!
//! A handle remembers the descriptor *and* its socket's inode, and shuts the
//! socket down only while the descriptor still names that socket: after the
//! client is dropped the number may be anyone's, the inode never is. A
//! `shutdown(2)` (not a `close`) wakes the client's pending read with an end
//! of file, its query returns an error, and the descriptor stays the
//! client's to close.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::sync::Mutex;

/// One connection at a time, so that its socket is the one that is new.
static CONNECTING: Mutex<()> = Mutex::new(());

thread_local! {
    /// The socket of the last connection this thread made.
    static LAST: RefCell<Option<SocketHandle>> = const { RefCell::new(None) };
}

/// A connection's socket, to shut down from any thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketHandle {
    fd: RawFd,
    inode: u64,
}

impl SocketHandle {
    /// The socket of the connection this thread made last, if it was found.
    pub fn last_connected() -> Option<SocketHandle> {
        LAST.with(|last| last.borrow().clone())
    }

    /// Shut the socket down both ways, if the descriptor is still it; true
    /// when it was.
    pub fn shut_down(&self) -> bool {
        if socket_inode(self.fd) != Some(self.inode) {
            return false;
        }
        nix::sys::socket::shutdown(self.fd, nix::sys::socket::Shutdown::Both).is_ok()
    }
}

/// Make a connection with `connect`, and note its socket for this thread.
pub fn connecting<T>(connect: impl FnOnce() -> T) -> T {
    let _one_at_a_time = CONNECTING.lock().unwrap_or_else(|p| p.into_inner());
    let before = sockets();
    let connected = connect();
    // The client's own runtime brings sockets too (tokio's signal driver
    // makes an unnamed socket pair): only one with a named peer — a TCP
    // address or a server's socket file — is a connection to a server.
    let new: Vec<(RawFd, u64)> = sockets()
        .into_iter()
        .filter(|s| !before.contains(s) && has_named_peer(s.0))
        .collect();
    let handle = match new.as_slice() {
        [(fd, inode)] => Some(SocketHandle {
            fd: *fd,
            inode: *inode,
        }),
        _ => None,
    };
    LAST.with(|last| *last.borrow_mut() = handle);
    connected
}

/// This process's socket descriptors, with their inodes.
fn sockets() -> Vec<(RawFd, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
        .filter_map(|fd| Some((fd, socket_inode(fd)?)))
        .collect()
}

/// Whether the socket `fd` is connected to an address with a name.
fn has_named_peer(fd: RawFd) -> bool {
    use nix::sys::socket::{getpeername, AddressFamily, SockaddrLike, SockaddrStorage};
    let Ok(peer) = getpeername::<SockaddrStorage>(fd) else {
        return false;
    };
    match peer.family() {
        Some(AddressFamily::Inet | AddressFamily::Inet6) => true,
        Some(AddressFamily::Unix) => peer
            .as_unix_addr()
            .is_some_and(|unix| unix.path().is_some()),
        _ => false,
    }
}

/// The inode of the socket descriptor `fd` names (`socket:[INODE]`).
fn socket_inode(fd: RawFd) -> Option<u64> {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    parse_socket_link(target.to_str()?)
}

fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_socket_link_names_its_inode_and_nothing_else_does() {
        assert_eq!(parse_socket_link("socket:[123456]"), Some(123456));
        assert_eq!(parse_socket_link("pipe:[123456]"), None);
        assert_eq!(parse_socket_link("/dev/null"), None);
        assert_eq!(parse_socket_link("socket:[x]"), None);
    }

    #[test]
    fn the_new_socket_is_found_and_shutting_it_down_ends_a_blocked_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        // Another test's socket opened meanwhile makes it ambiguous: again.
        let (mut stream, handle) = (0..50)
            .find_map(|_| {
                let stream = connecting(|| std::net::TcpStream::connect(address).unwrap());
                SocketHandle::last_connected().map(|handle| (stream, handle))
            })
            .expect("the one new socket");
        // A peer that accepts and never answers.
        let (_peer, _) = listener.accept().unwrap();
        let shut = std::thread::spawn({
            let handle = handle.clone();
            move || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                handle.shut_down()
            }
        });
        let mut buffer = [0u8; 8];
        assert_eq!(stream.read(&mut buffer).unwrap(), 0, "an end of file");
        assert!(shut.join().unwrap());
        drop(stream);
        assert!(!handle.shut_down(), "a closed descriptor is not shut down");
    }
}
