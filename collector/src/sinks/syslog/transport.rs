//! Delivery of formatted messages: one UDP datagram per message, or a TCP stream with
//! octet-counting framing (RFC 6587 section 3.4.1: `<length> <message>`).
//!
//! TCP reconnects by itself. Before each write the sink checks whether the receiver
//! closed the connection (a syslog receiver never sends, so a readable end-of-stream means
//! it is gone) and reconnects at once, so a receiver restart loses no message sent after
//! the new receiver is listening. When connecting fails, further attempts wait with
//! exponential backoff ([`BACKOFF_MIN`] doubling up to [`BACKOFF_MAX`]); a message sent
//! while the wait is running fails with [`SyslogError::Backoff`] instead of blocking.
//! A failed message is reported to the caller and not retried by the sink.

use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use super::error::SyslogError;

/// Largest UDP message sent; longer messages get their MSG part shortened (RFC 5424
/// section 6.1: receivers SHOULD accept 2048 octets).
pub const UDP_MAX: usize = 2048;
/// First wait after a failed TCP connection attempt.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between TCP connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Time limit of one TCP connect or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn resolve(address: &str) -> Result<Vec<SocketAddr>, SyslogError> {
    let addrs: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|source| SyslogError::Resolve {
            address: address.to_string(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(SyslogError::Resolve {
            address: address.to_string(),
            source: std::io::Error::new(ErrorKind::NotFound, "no address"),
        });
    }
    Ok(addrs)
}

/// One UDP socket connected to the receiver.
#[derive(Debug)]
pub struct Udp {
    address: String,
    socket: UdpSocket,
}

impl Udp {
    /// Opens a socket of the receiver's address family and connects it to the receiver.
    pub fn connect(address: &str) -> Result<Udp, SyslogError> {
        let to = resolve(address)?[0];
        let err = |source| SyslogError::Connect {
            address: address.to_string(),
            protocol: "udp",
            source,
        };
        let local: SocketAddr = if to.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).map_err(err)?;
        socket.connect(to).map_err(err)?;
        Ok(Udp {
            address: address.to_string(),
            socket,
        })
    }

    /// Sends one message as one datagram.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SyslogError> {
        self.socket
            .send(msg)
            .map(|_| ())
            .map_err(|source| SyslogError::Send {
                address: self.address.clone(),
                protocol: "udp",
                source,
            })
    }
}

/// A TCP connection to the receiver that reconnects with backoff.
#[derive(Debug)]
pub struct Tcp {
    address: String,
    stream: Option<TcpStream>,
    /// Consecutive failed connection attempts.
    failures: u32,
    /// No connection attempt before this instant.
    next_attempt: Option<Instant>,
}

/// Whether the receiver closed (or reset) the connection, without blocking.
fn peer_closed(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let mut b = [0u8; 1];
    let closed = match s.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    closed || s.set_nonblocking(false).is_err()
}

impl Tcp {
    /// Connects to the receiver now (an unreachable receiver is an error).
    pub fn connect(address: &str) -> Result<Tcp, SyslogError> {
        let mut t = Tcp {
            address: address.to_string(),
            stream: None,
            failures: 0,
            next_attempt: None,
        };
        t.reconnect()?;
        Ok(t)
    }

    /// Whether a connection is currently open.
    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    fn reconnect(&mut self) -> Result<(), SyslogError> {
        let mut last = None;
        for a in resolve(&self.address)? {
            match TcpStream::connect_timeout(&a, IO_TIMEOUT) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                    self.stream = Some(s);
                    self.failures = 0;
                    self.next_attempt = None;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        let delay = BACKOFF_MIN
            .saturating_mul(1u32 << self.failures.min(16))
            .min(BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        self.next_attempt = Some(Instant::now() + delay);
        Err(SyslogError::Connect {
            address: self.address.clone(),
            protocol: "tcp",
            source: last.unwrap_or_else(|| std::io::Error::new(ErrorKind::NotFound, "no address")),
        })
    }

    /// Sends one message with octet-counting framing, reconnecting first when needed.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SyslogError> {
        if self.stream.as_ref().is_some_and(peer_closed) {
            self.stream = None;
        }
        if self.stream.is_none() {
            if let Some(at) = self.next_attempt {
                let now = Instant::now();
                if now < at {
                    return Err(SyslogError::Backoff {
                        address: self.address.clone(),
                        retry_in: at - now,
                    });
                }
            }
            self.reconnect()?;
        }
        let stream = self.stream.as_mut().expect("connected above");
        let mut frame = Vec::with_capacity(msg.len() + 8);
        frame.extend_from_slice(msg.len().to_string().as_bytes());
        frame.push(b' ');
        frame.extend_from_slice(msg);
        if let Err(source) = stream.write_all(&frame) {
            // Broken mid-write: the next message reconnects at once.
            self.stream = None;
            return Err(SyslogError::Send {
                address: self.address.clone(),
                protocol: "tcp",
                source,
            });
        }
        Ok(())
    }
}

/// Either transport.
#[derive(Debug)]
pub enum Transport {
    /// Datagrams, shortened to [`UDP_MAX`].
    Udp(Udp),
    /// Octet-counted stream.
    Tcp(Tcp),
}

impl Transport {
    /// Largest message this transport sends whole (`None`: no limit).
    pub fn max_len(&self) -> Option<usize> {
        match self {
            Transport::Udp(_) => Some(UDP_MAX),
            Transport::Tcp(_) => None,
        }
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SyslogError> {
        match self {
            Transport::Udp(u) => u.send(msg),
            Transport::Tcp(t) => t.send(msg),
        }
    }
}
