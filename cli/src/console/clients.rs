//! Who the console's limits apply to, and what each client holds: so that no single client can
//! starve the others. A client is an IPv4 address, or an IPv6 /64 (the block one customer is
//! usually given: one host has 2^64 addresses to rotate through). Each client holds at most
//! `max_connections` connections and one analysis (its upload arriving, queued, or running), and
//! spends a token bucket of `rate_per_minute` analyses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clients whose rate is tracked; past it, the least recently seen are forgotten.
const MAX_TRACKED_CLIENTS: usize = 4096;

/// An IPv4 address, or the /64 of an IPv6 one (an IPv4-mapped IPv6 address is its IPv4 one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    pub fn of(ip: IpAddr) -> Client {
        match ip {
            IpAddr::V4(v4) => Client(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Client(IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
                }
            },
        }
    }
}

/// What a client holds now.
#[derive(Default)]
struct Held {
    connections: usize,
    analysis: bool,
}

/// A token bucket: `rate_per_minute` analyses, refilled continuously.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Every client's connections, analysis and rate.
pub struct Clients {
    max_connections: usize,
    rate_per_minute: u32,
    held: Mutex<HashMap<Client, Held>>,
    rates: Mutex<HashMap<Client, Bucket>>,
}

/// A connection a client holds; released when dropped.
pub struct Connection {
    clients: Arc<Clients>,
    client: Client,
}

/// The one analysis a client may hold at a time; released when dropped (when its work ends,
/// even if its connection closed before).
pub struct Analysis {
    clients: Arc<Clients>,
    client: Client,
}

impl Clients {
    pub fn new(max_connections: usize, rate_per_minute: u32) -> Arc<Clients> {
        Arc::new(Clients {
            max_connections: max_connections.max(1),
            rate_per_minute: rate_per_minute.max(1),
            held: Mutex::new(HashMap::new()),
            rates: Mutex::new(HashMap::new()),
        })
    }

    /// A connection for `client`, or None when it holds `max_connections` already.
    pub fn connect(self: &Arc<Self>, client: Client) -> Option<Connection> {
        let mut held = self.held.lock().unwrap();
        let entry = held.entry(client).or_default();
        if entry.connections >= self.max_connections {
            return None;
        }
        entry.connections += 1;
        Some(Connection { clients: Arc::clone(self), client })
    }

    /// The client's one analysis, or None while it holds one.
    pub fn analysis(self: &Arc<Self>, client: Client) -> Option<Analysis> {
        let mut held = self.held.lock().unwrap();
        let entry = held.entry(client).or_default();
        if entry.analysis {
            return None;
        }
        entry.analysis = true;
        Some(Analysis { clients: Arc::clone(self), client })
    }

    /// `Some(wait)` when the client has no analysis left this minute; else spends one.
    pub fn rate_limited(&self, client: Client) -> Option<Duration> {
        let rate = f64::from(self.rate_per_minute);
        let now = Instant::now();
        let mut rates = self.rates.lock().unwrap();
        if rates.len() >= MAX_TRACKED_CLIENTS && !rates.contains_key(&client) {
            // Forget the clients seen longest ago (their buckets are the fullest).
            let mut seen: Vec<Instant> = rates.values().map(|b| b.at).collect();
            seen.sort_unstable();
            let cut = seen[seen.len() / 2];
            rates.retain(|_, b| b.at > cut);
        }
        let bucket = rates.entry(client).or_insert(Bucket { tokens: rate, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate / 60.0).min(rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - bucket.tokens) * 60.0 / rate).max(Duration::from_secs(1)))
        }
    }

    fn release(&self, client: Client, what: impl FnOnce(&mut Held)) {
        let mut held = self.held.lock().unwrap();
        if let Some(entry) = held.get_mut(&client) {
            what(entry);
            // The map holds only clients holding something: at most one per open connection.
            if entry.connections == 0 && !entry.analysis {
                held.remove(&client);
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.clients.release(self.client, |h| h.connections = h.connections.saturating_sub(1));
    }
}

impl Drop for Analysis {
    fn drop(&mut self) {
        self.clients.release(self.client, |h| h.analysis = false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_its_slash_64_and_a_mapped_ipv4_its_address() {
        let a = Client::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = Client::of("2001:db8:1:2:ffff:1:2:3".parse().unwrap());
        let c = Client::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(Client::of("::ffff:192.0.2.7".parse().unwrap()), Client::of("192.0.2.7".parse().unwrap()));
        assert_ne!(Client::of("192.0.2.7".parse().unwrap()), Client::of("192.0.2.8".parse().unwrap()));
    }

    #[test]
    fn connections_and_the_analysis_are_capped_per_client_and_released() {
        let clients = Clients::new(2, 10);
        let one = Client::of("192.0.2.1".parse().unwrap());
        let other = Client::of("192.0.2.2".parse().unwrap());
        let first = clients.connect(one).unwrap();
        let second = clients.connect(one).unwrap();
        assert!(clients.connect(one).is_none());
        assert!(clients.connect(other).is_some());
        drop(first);
        assert!(clients.connect(one).is_some());

        let analysis = clients.analysis(one).unwrap();
        assert!(clients.analysis(one).is_none());
        assert!(clients.analysis(other).is_some());
        drop(analysis);
        assert!(clients.analysis(one).is_some());
        // Nothing is kept for clients that hold nothing.
        drop(clients.analysis(other));
        drop(second);
        assert!(clients.held.lock().unwrap().is_empty());
    }

    #[test]
    fn the_rate_is_spent_per_client() {
        let clients = Clients::new(2, 3);
        let one = Client::of("192.0.2.1".parse().unwrap());
        for _ in 0..3 {
            assert!(clients.rate_limited(one).is_none());
        }
        let wait = clients.rate_limited(one).unwrap();
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(clients.rate_limited(Client::of("192.0.2.2".parse().unwrap())).is_none());
    }
}
