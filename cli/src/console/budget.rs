//! The console's daily query budget, so that it cannot be used as a membership oracle at scale
//! (docs/security.md): each client (an IPv4 address, an IPv6 /64) may have at most
//! `daily_images` distinct images analysed a day, and each image may be analysed in at most
//! `daily_sets_per_image` distinct sets a day, whoever asks. An image is known by its pixels as
//! the model reads them (re-encoding a file does not make it new) and the model asked about.
//! Asking again what was asked before spends nothing: the answer is the same, so nothing new
//! is learnt. A day is 24 hours from a client's (or an image's) first analysis.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::clients::Client;

const DAY: Duration = Duration::from_secs(24 * 3600);
/// Clients and images whose day is tracked; past them, expired days are forgotten, then the
/// oldest (which gives an evicted one a fresh day: the price of bounded memory, documented).
const MAX_TRACKED_CLIENTS: usize = 4096;
const MAX_TRACKED_IMAGES: usize = 1 << 18;

/// An image as the budget knows it: 8 bytes of sha256 over the model's id and the pixels.
pub type ImageKey = u64;

pub fn image_key(model: &str, pixels: &[f32]) -> ImageKey {
    let mut hash = Sha256::new();
    hash.update(model.as_bytes());
    hash.update([0]);
    for p in pixels {
        hash.update(p.to_le_bytes());
    }
    u64::from_le_bytes(hash.finalize()[..8].try_into().expect("8 bytes"))
}

/// Why a request was refused, and when the budget renews.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    Client { limit: usize, renews_in: Duration },
    Image { limit: usize, renews_in: Duration },
}

impl Refusal {
    pub fn message(&self) -> String {
        let hours = |d: &Duration| d.as_secs().div_ceil(3600).max(1);
        match self {
            Refusal::Client { limit, renews_in } => format!(
                "Your address has had {limit} images analysed today, the most this console analyses for one address a day \
                 (so that it cannot be used to test strangers' images at scale). Images analysed before count nothing again; \
                 new ones can be analysed in about {} hours.",
                hours(renews_in)
            ),
            Refusal::Image { limit, renews_in } => format!(
                "One of these images has been analysed in {limit} different sets today, the most this console allows for one \
                 image a day. The same set again is answered; new sets with it can be analysed in about {} hours.",
                hours(renews_in)
            ),
        }
    }

    pub fn renews_in(&self) -> Duration {
        match self {
            Refusal::Client { renews_in, .. } | Refusal::Image { renews_in, .. } => *renews_in,
        }
    }
}

struct ClientDay {
    since: Instant,
    seen: HashSet<ImageKey>,
}

struct ImageDay {
    since: Instant,
    sets: Vec<u64>,
}

#[derive(Default)]
struct Days {
    clients: HashMap<Client, ClientDay>,
    images: HashMap<ImageKey, ImageDay>,
}

pub struct Budget {
    daily_images: usize,
    daily_sets_per_image: usize,
    days: Mutex<Days>,
}

impl Budget {
    pub fn new(daily_images: usize, daily_sets_per_image: usize) -> Budget {
        Budget {
            daily_images: daily_images.max(1),
            daily_sets_per_image: daily_sets_per_image.max(1),
            days: Mutex::new(Days::default()),
        }
    }

    /// Spends `client`'s budget on the set `images`, all or nothing.
    pub fn spend(&self, client: Client, images: &[ImageKey]) -> Result<(), Refusal> {
        self.spend_at(client, images, Instant::now())
    }

    fn spend_at(&self, client: Client, images: &[ImageKey], now: Instant) -> Result<(), Refusal> {
        let mut distinct: Vec<ImageKey> = images.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let set = set_key(&distinct);
        let mut days = self.days.lock().unwrap();
        let days = &mut *days;
        forget(&mut days.clients, MAX_TRACKED_CLIENTS, now, |d| d.since);
        forget(&mut days.images, MAX_TRACKED_IMAGES.saturating_sub(distinct.len()), now, |d| d.since);

        let day = days.clients.entry(client).or_insert_with(|| ClientDay { since: now, seen: HashSet::new() });
        if now.duration_since(day.since) >= DAY {
            *day = ClientDay { since: now, seen: HashSet::new() };
        }
        let new = distinct.iter().filter(|k| !day.seen.contains(k)).count();
        if day.seen.len() + new > self.daily_images {
            return Err(Refusal::Client { limit: self.daily_images, renews_in: DAY - now.duration_since(day.since) });
        }
        for key in &distinct {
            if let Some(image) = days.images.get(key) {
                let fresh = now.duration_since(image.since) >= DAY;
                if !fresh && !image.sets.contains(&set) && image.sets.len() >= self.daily_sets_per_image {
                    return Err(Refusal::Image {
                        limit: self.daily_sets_per_image,
                        renews_in: DAY - now.duration_since(image.since),
                    });
                }
            }
        }
        // Within budget: spend.
        day.seen.extend(distinct.iter().copied());
        for key in distinct {
            let image = days.images.entry(key).or_insert_with(|| ImageDay { since: now, sets: Vec::new() });
            if now.duration_since(image.since) >= DAY {
                *image = ImageDay { since: now, sets: Vec::new() };
            }
            if !image.sets.contains(&set) {
                image.sets.push(set);
            }
        }
        Ok(())
    }
}

fn set_key(sorted: &[ImageKey]) -> u64 {
    let mut hash = Sha256::new();
    for k in sorted {
        hash.update(k.to_le_bytes());
    }
    u64::from_le_bytes(hash.finalize()[..8].try_into().expect("8 bytes"))
}

/// Keeps `map` under `cap` entries: expired days first, then the oldest half.
fn forget<K: std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    cap: usize,
    now: Instant,
    since: impl Fn(&V) -> Instant,
) {
    if map.len() < cap {
        return;
    }
    map.retain(|_, v| now.duration_since(since(v)) < DAY);
    if map.len() >= cap {
        let mut starts: Vec<Instant> = map.values().map(&since).collect();
        starts.sort_unstable();
        let cut = starts[starts.len() / 2];
        map.retain(|_, v| since(v) > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(last: u8) -> Client {
        Client::of(std::net::IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn a_client_spends_new_images_only_and_its_day_renews() {
        let budget = Budget::new(5, 100);
        let t = Instant::now();
        assert_eq!(budget.spend_at(client(1), &[1, 2, 3], t), Ok(()));
        // The same images again, and a set with two of them: nothing new spent.
        assert_eq!(budget.spend_at(client(1), &[3, 2, 1, 1], t), Ok(()));
        assert_eq!(budget.spend_at(client(1), &[1, 2], t), Ok(()));
        assert_eq!(budget.spend_at(client(1), &[1, 4, 5], t), Ok(()));
        let refused = budget.spend_at(client(1), &[6], t + Duration::from_secs(3600)).unwrap_err();
        assert_eq!(refused, Refusal::Client { limit: 5, renews_in: DAY - Duration::from_secs(3600) });
        assert!(refused.message().contains("in about 23 hours"), "{}", refused.message());
        // All or nothing: the refused request spent nothing, and what was seen is still free.
        assert_eq!(budget.spend_at(client(1), &[5, 4], t), Ok(()));
        // Another client has its own day; this one's renews after 24 hours.
        assert_eq!(budget.spend_at(client(2), &[6, 7], t), Ok(()));
        assert_eq!(budget.spend_at(client(1), &[6, 7, 8], t + DAY), Ok(()));
    }

    #[test]
    fn an_image_is_analysed_in_a_bounded_number_of_sets_a_day_whoever_asks() {
        let budget = Budget::new(1000, 3);
        let t = Instant::now();
        let target = 99;
        for (i, pad) in [10, 11, 12].into_iter().enumerate() {
            assert_eq!(budget.spend_at(client(i as u8), &[target, pad], t), Ok(()));
        }
        let refused = budget.spend_at(client(9), &[target, 13], t).unwrap_err();
        assert!(matches!(refused, Refusal::Image { limit: 3, .. }), "{refused:?}");
        // A set asked before is answered again; the target alone is a new set.
        assert_eq!(budget.spend_at(client(9), &[11, target], t), Ok(()));
        assert!(budget.spend_at(client(9), &[target], t).is_err());
        assert_eq!(budget.spend_at(client(9), &[target, 13], t + DAY), Ok(()));
    }

    #[test]
    fn an_image_is_its_pixels_for_a_model() {
        let a = image_key("m", &[0.0, 0.5]);
        assert_eq!(a, image_key("m", &[0.0, 0.5]));
        assert_ne!(a, image_key("m", &[0.0, 0.25]));
        assert_ne!(a, image_key("other", &[0.0, 0.5]));
    }

    #[test]
    fn memory_is_bounded() {
        let mut map: HashMap<u32, Instant> = HashMap::new();
        let t = Instant::now();
        for i in 0..100u32 {
            map.insert(i, t + Duration::from_secs(u64::from(i)));
        }
        forget(&mut map, 100, t + Duration::from_secs(100), |v| *v);
        assert!(map.len() <= 50 && map.contains_key(&99));
    }
}
