//! Free TCP ports on loopback, for the servers tests start.
//!
//! A port from `bind(127.0.0.1:0)` is one of the kernel's ephemeral ports. Once released,
//! any outgoing connection on the machine (the tests make thousands, to ClickHouse, the
//! collector, the API) may take it as its source port before the server the test starts
//! binds it: "Address already in use" (a collector's API port, in a CI run). So ports
//! come from below the ephemeral range (`net.ipv4.ip_local_port_range`), which outgoing
//! connections never use, and each is claimed by a lock on a file of its own held for
//! the life of the test process: two test processes running at once never get the same
//! one, and a port is free again once the process that had it exits. (The lock files,
//! empty, stay in `$TMPDIR/tidegate-test-ports`; deleting one while it is locked would
//! let a second process lock a new file of the same name.)

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

/// The lowest port handed out.
const FIRST: u16 = 20_000;
/// Fewest ports below the ephemeral range for this scheme; with fewer, ephemeral ones.
const MIN_PORTS: u16 = 1_000;

/// The lock files of the ports this process claimed (locks held until it exits).
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A TCP port nothing listens on right now, claimed for this process.
pub fn free_port() -> u16 {
    let end = ephemeral_start();
    if end < FIRST.saturating_add(MIN_PORTS) {
        return ephemeral_port();
    }
    let dir = std::env::temp_dir().join("tidegate-test-ports");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("create the port lock directory {}: {e}", dir.display()));
    let n = u32::from(end - FIRST);
    // Processes start at different ports, so they seldom contend for one.
    let start = seed() % n;
    for i in 0..n {
        let port = FIRST + ((start + i) % n) as u16;
        let path = dir.join(port.to_string());
        let Ok(file) = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        // Held by another test process, or by this one (a lock is per open file).
        if file.try_lock().is_err() {
            continue;
        }
        // Something outside the tests listens there.
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
        return port;
    }
    panic!(
        "no free port in {FIRST}..{end} (locks in {})",
        dir.display()
    )
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// The first ephemeral port (32768 when the kernel does not say).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// An ephemeral port, bound then released (machines whose ephemeral range leaves too
/// few ports below it).
fn ephemeral_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A number that differs between processes and calls.
fn seed() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one((std::process::id(), std::time::Instant::now())) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_distinct_and_bindable() {
        let end = ephemeral_start();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for p in ports {
            if end >= FIRST + MIN_PORTS {
                assert!((FIRST..end).contains(&p), "{p} outside {FIRST}..{end}");
            }
            TcpListener::bind(("127.0.0.1", p)).unwrap_or_else(|e| panic!("bind {p}: {e}"));
        }
    }

    #[test]
    fn another_process_does_not_get_a_port_this_one_holds() {
        let dir = std::env::temp_dir().join("tidegate-test-ports");
        let p = free_port();
        // A second open of its lock file (as another process would) cannot lock it.
        let other = File::options()
            .write(true)
            .open(dir.join(p.to_string()))
            .unwrap();
        assert!(other.try_lock().is_err(), "port {p}'s lock is not held");
    }
}
