//! Listening sockets that survive the replacement of the component using them.
//!
//! A source binds through the pool. The pool keeps the original socket and hands out
//! duplicates (`dup(2)`: the same socket, another descriptor). When a reload replaces a
//! webhook on the same address, the new server accepts on its duplicate while the old
//! one stops accepting and finishes its requests: connections wait in the one shared
//! backlog instead of being refused. The pool closes a socket only when no running
//! source uses its address any more.

use std::collections::HashMap;
use std::net::{TcpListener as StdListener, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex};

/// Shared by all sources of a process.
#[derive(Clone, Default)]
pub(crate) struct ListenerPool {
    sockets: Arc<Mutex<HashMap<String, StdListener>>>,
    /// UDP sockets by their key (`udp:` and the address, see [`udp_key`]): a replacement
    /// reads from the same socket, so no datagram waits in a socket nobody reads.
    datagrams: Arc<Mutex<HashMap<String, StdUdpSocket>>>,
}

/// How a UDP address is named among listen addresses, apart from TCP's.
pub(crate) fn udp_key(address: &str) -> String {
    format!("udp:{address}")
}

impl std::fmt::Debug for ListenerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenerPool")
    }
}

impl ListenerPool {
    /// A listener on `address`, sharing the socket already bound there if any.
    pub(crate) fn bind(&self, address: &str) -> std::io::Result<tokio::net::TcpListener> {
        let mut sockets = self
            .sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let socket = match sockets.get(address) {
            Some(s) => s.try_clone()?,
            None => {
                let s = StdListener::bind(address)?;
                s.set_nonblocking(true)?;
                let dup = s.try_clone()?;
                sockets.insert(address.to_owned(), s);
                dup
            }
        };
        tokio::net::TcpListener::from_std(socket)
    }

    /// A UDP socket on `address`, sharing the socket already bound there if any.
    pub(crate) fn bind_udp(&self, address: &str) -> std::io::Result<tokio::net::UdpSocket> {
        let mut sockets = self
            .datagrams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = udp_key(address);
        let socket = match sockets.get(&key) {
            Some(s) => s.try_clone()?,
            None => {
                let s = StdUdpSocket::bind(address)?;
                s.set_nonblocking(true)?;
                let dup = s.try_clone()?;
                sockets.insert(key, s);
                dup
            }
        };
        tokio::net::UdpSocket::from_std(socket)
    }

    /// Closes the pool's copies of every socket whose address (or UDP key) is not in
    /// `keep`.
    pub(crate) fn retain<'a>(&self, keep: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<&str> = keep.into_iter().collect();
        self.sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|address, _| keep.contains(address.as_str()));
        self.datagrams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|key, _| keep.contains(key.as_str()));
    }
}
