//! Addresses the box's DNS answered, with the names they answered for: a domain rule allows a
//! flow to an address only while it is pinned here for a name the rule matches.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The most (address, name) pins held: bounds memory whatever the guest resolves; the
/// oldest go first.
pub const MAX_PINS: usize = 4096;
/// The most names pinned to one address (a CDN address serves many): the oldest go first.
pub const MAX_NAMES_PER_ADDR: usize = 16;
/// The shortest pin: programs cache answers past a short TTL (and TTL 0 is common), so a pin
/// outlives the TTL by at least this much.
pub const MIN_PIN_TTL: Duration = Duration::from_secs(300);
/// The longest pin: an address can move to someone else; a day bounds how stale it gets.
pub const MAX_PIN_TTL: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone)]
struct Pin {
    name: String,
    expires: Instant,
    seq: u64,
}

/// The pin table.
#[derive(Debug, Default)]
pub struct Pins {
    by_addr: HashMap<IpAddr, Vec<Pin>>,
    /// Insertion order: (seq, address), for evicting the oldest; entries whose pin was
    /// refreshed or dropped are skipped when met.
    order: VecDeque<(u64, IpAddr)>,
    len: usize,
    seq: u64,
}

impl Pins {
    /// Pins `addr` to `name` for `ttl` seconds (clamped) from `now`, refreshing an existing pin.
    pub fn pin(&mut self, addr: IpAddr, name: &str, ttl: u32, now: Instant) {
        let ttl = Duration::from_secs(u64::from(ttl)).clamp(MIN_PIN_TTL, MAX_PIN_TTL);
        self.seq += 1;
        let seq = self.seq;
        let pins = self.by_addr.entry(addr).or_default();
        let before = pins.len();
        pins.retain(|p| p.expires > now);
        if let Some(p) = pins.iter_mut().find(|p| p.name == name) {
            p.expires = now + ttl;
            p.seq = seq;
        } else {
            if pins.len() >= MAX_NAMES_PER_ADDR {
                pins.remove(0);
            }
            pins.push(Pin {
                name: name.to_owned(),
                expires: now + ttl,
                seq,
            });
        }
        self.len = self.len - before + pins.len();
        self.order.push_back((seq, addr));
        while self.len > MAX_PINS {
            self.evict_oldest();
        }
        // Stale order entries can pile up under refreshes; rebuild when they dominate.
        if self.order.len() > 4 * MAX_PINS {
            self.rebuild_order();
        }
    }

    /// The names `addr` is pinned to now.
    pub fn names(&self, addr: IpAddr, now: Instant) -> impl Iterator<Item = &str> {
        self.by_addr
            .get(&addr)
            .into_iter()
            .flatten()
            .filter(move |p| p.expires > now)
            .map(|p| p.name.as_str())
    }

    /// How many pins are held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn evict_oldest(&mut self) {
        while let Some((seq, addr)) = self.order.pop_front() {
            let Some(pins) = self.by_addr.get_mut(&addr) else {
                continue;
            };
            if let Some(i) = pins.iter().position(|p| p.seq == seq) {
                pins.remove(i);
                self.len -= 1;
                if pins.is_empty() {
                    self.by_addr.remove(&addr);
                }
                return;
            }
        }
    }

    fn rebuild_order(&mut self) {
        let mut all: Vec<(u64, IpAddr)> = self
            .by_addr
            .iter()
            .flat_map(|(a, ps)| ps.iter().map(|p| (p.seq, *a)))
            .collect();
        all.sort_unstable();
        self.order = all.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(n.into())
    }

    #[test]
    fn pins_expire_after_the_clamped_ttl() {
        let mut pins = Pins::default();
        let t0 = Instant::now();
        pins.pin(ip(1), "a.example", 0, t0);
        assert_eq!(
            pins.names(ip(1), t0 + MIN_PIN_TTL - Duration::from_secs(1))
                .count(),
            1
        );
        assert_eq!(pins.names(ip(1), t0 + MIN_PIN_TTL).count(), 0);
        pins.pin(ip(2), "b.example", u32::MAX, t0);
        assert_eq!(pins.names(ip(2), t0 + MAX_PIN_TTL).count(), 0);
    }

    #[test]
    fn table_is_bounded_and_evicts_oldest() {
        let mut pins = Pins::default();
        let t0 = Instant::now();
        for n in 0..(MAX_PINS as u32 + 10) {
            pins.pin(ip(n), "x.example", 60, t0);
        }
        assert_eq!(pins.len(), MAX_PINS);
        assert_eq!(pins.names(ip(0), t0).count(), 0);
        assert_eq!(pins.names(ip(MAX_PINS as u32 + 9), t0).count(), 1);
    }

    #[test]
    fn names_per_address_are_bounded() {
        let mut pins = Pins::default();
        let t0 = Instant::now();
        for n in 0..MAX_NAMES_PER_ADDR + 3 {
            pins.pin(ip(1), &format!("n{n}.example"), 60, t0);
        }
        let names: Vec<_> = pins.names(ip(1), t0).map(str::to_owned).collect();
        assert_eq!(names.len(), MAX_NAMES_PER_ADDR);
        assert!(!names.contains(&"n0.example".to_owned()));
    }

    #[test]
    fn refresh_keeps_one_pin() {
        let mut pins = Pins::default();
        let t0 = Instant::now();
        for _ in 0..10 {
            pins.pin(ip(1), "a.example", 60, t0);
        }
        pins.pin(ip(1), "b.example", 60, t0);
        assert_eq!(pins.len(), 2);
    }
}
