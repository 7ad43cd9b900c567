//! Cutting a span of user keys into parts of about equal stored size, so that a large scan
//! can run as several independent scans (one per core).
//!
//! Any user key is a valid cut: escaped keys are order-preserving and prefix-free, so every
//! version of a user key `< cut` sorts before `escape(cut)` and every version of a key
//! `>= cut` at or after it — no key's versions are ever divided between two parts. The cuts
//! are found by bisection on the engine's size estimate ([`Engine::approximate_bytes`]) over
//! keys interpolated between the span's ends; they only balance work, so a poor estimate
//! costs speed, never correctness.

use crate::engine::{Cf, Engine};
use crate::keycode;

/// Bisection steps per cut at most (each is one size estimate, a few index-block lookups).
const BISECT_STEPS_MAX: usize = 64;
/// Bytes of a key past the span's common prefix the interpolation looks at.
const KEY_WIDTH_BYTES: usize = 16;

/// About how many bytes the versions of the user keys in `[start, end)` take on disk.
pub fn approximate_bytes(engine: &dyn Engine, start: &[u8], end: &[u8]) -> u64 {
    if start >= end {
        return 0;
    }
    engine.approximate_bytes(Cf::Data, &keycode::escape(start), &keycode::escape(end))
}

/// Up to `parts - 1` ascending user keys strictly inside `(start, end)` that cut the span
/// into parts of about equal stored size. Fewer (none) when the engine knows no sizes or the
/// span's keys leave no room between them.
pub fn split_points(engine: &dyn Engine, start: &[u8], end: &[u8], parts: usize) -> Vec<Vec<u8>> {
    let Some(line) = KeyLine::new(start, end) else {
        return Vec::new();
    };
    let total = approximate_bytes(engine, start, end);
    if parts < 2 || total == 0 {
        return Vec::new();
    }
    let tolerance = total / 256;
    let mut cuts: Vec<Vec<u8>> = Vec::new();
    let mut lo = line.lo;
    for i in 1..parts as u128 {
        let target = (u128::from(total) * i / parts as u128) as u64;
        let at = line.bisect(lo, |key| {
            approximate_bytes(engine, start, key).saturating_add(tolerance) >= target
        });
        let Some(at) = at else { break };
        lo = at;
        cuts.push(line.key(at));
    }
    cuts.dedup();
    cuts
}

/// Keys of a span as numbers: the common prefix of its ends, then the next
/// [`KEY_WIDTH_BYTES`] bytes (zero-padded) read as a big-endian integer. The map is
/// monotonic, and every number strictly between the ends' numbers names a key strictly
/// between the ends.
struct KeyLine {
    prefix: Vec<u8>,
    lo: u128,
    hi: u128,
}

impl KeyLine {
    fn new(start: &[u8], end: &[u8]) -> Option<Self> {
        if start >= end {
            return None;
        }
        let common = start.iter().zip(end).take_while(|(a, b)| a == b).count();
        let number = |k: &[u8]| {
            let mut bytes = [0u8; KEY_WIDTH_BYTES];
            for (b, v) in bytes.iter_mut().zip(k.iter().skip(common)) {
                *b = *v;
            }
            u128::from_be_bytes(bytes)
        };
        let (lo, hi) = (number(start), number(end));
        assert!(lo <= hi, "start < end and share the prefix");
        (hi - lo >= 2).then(|| Self {
            prefix: start[..common].to_vec(),
            lo,
            hi,
        })
    }

    fn key(&self, x: u128) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(&x.to_be_bytes());
        k
    }

    /// The smallest number in `(from, hi)` whose key satisfies `reached` (monotonic: false,
    /// then true), within the step budget; `None` if even the last candidate does not.
    fn bisect(&self, from: u128, mut reached: impl FnMut(&[u8]) -> bool) -> Option<u128> {
        // Invariant: `reached` is false at `a` (or `a` is `from`), true at `b` (or `b` is `hi`).
        let (mut a, mut b) = (from, self.hi);
        for _ in 0..BISECT_STEPS_MAX {
            if b - a < 2 {
                break;
            }
            let m = a + (b - a) / 2;
            if reached(&self.key(m)) {
                b = m;
            } else {
                a = m;
            }
        }
        (b < self.hi).then_some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{put_version, scan, Ts};
    use crate::{Batch, MemEngine};

    fn load(e: &dyn Engine, keys: impl Iterator<Item = Vec<u8>>) {
        let mut b = Batch::new();
        for k in keys {
            put_version(&mut b, &k, Ts(5), Some(&[7u8; 100]));
            // A second version: the cut must not divide a key's versions.
            put_version(&mut b, &k, Ts(9), Some(&[8u8; 100]));
        }
        e.write(&b, false).unwrap();
    }

    fn scan_all(e: &dyn Engine, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        scan(e, start, Some(end), Ts(7), &mut |k, v| {
            out.push((k, v));
            true
        })
        .unwrap();
        out
    }

    /// The parts' scans together are the whole span's scan, and they are about equal.
    #[test]
    fn parts_cover_the_span_and_balance() {
        let dir = tempfile::tempdir().unwrap();
        let rocks = crate::RocksEngine::open(dir.path()).unwrap();
        let mem = MemEngine::new();
        // Dense big-endian integer keys after a table prefix, and an uneven tail.
        let keys = || {
            (0u64..20_000)
                .map(|i| {
                    let mut k = b"t1/".to_vec();
                    k.extend_from_slice(&(i * i).to_be_bytes());
                    k
                })
                .chain((0..3000u32).map(|i| format!("t1/~{i}").into_bytes()))
        };
        for e in [&rocks as &dyn Engine, &mem] {
            load(e, keys());
        }
        rocks.flush().unwrap();
        let (start, end) = (b"t1/".to_vec(), b"t10".to_vec());
        for e in [&rocks as &dyn Engine, &mem] {
            let whole = scan_all(e, &start, &end);
            assert_eq!(whole.len(), 23_000);
            for parts in [2usize, 3, 4, 7] {
                let cuts = split_points(e, &start, &end, parts);
                assert_eq!(cuts.len(), parts - 1, "{parts} parts");
                let mut bounds = vec![start.clone()];
                bounds.extend(cuts);
                bounds.push(end.clone());
                assert!(bounds.windows(2).all(|w| w[0] < w[1]), "ascending cuts");
                let mut joined = Vec::new();
                let mut sizes = Vec::new();
                for w in bounds.windows(2) {
                    let part = scan_all(e, &w[0], &w[1]);
                    sizes.push(part.len());
                    joined.extend(part);
                }
                assert_eq!(joined, whole, "{parts} parts");
                let even = whole.len() / parts;
                for s in &sizes {
                    assert!(
                        s.abs_diff(even) <= even / 5,
                        "{parts} parts of {sizes:?} are not about equal"
                    );
                }
            }
        }
    }

    #[test]
    fn spans_without_room_or_sizes_are_not_cut() {
        let e = MemEngine::new();
        assert!(split_points(&e, b"a", b"b", 4).is_empty(), "no data");
        load(&e, [b"a".to_vec()].into_iter());
        assert!(
            split_points(&e, b"a", b"a\x00", 4).is_empty(),
            "adjacent keys"
        );
        assert!(split_points(&e, b"b", b"a", 4).is_empty(), "empty span");
        assert!(split_points(&e, b"a", b"b", 1).is_empty(), "one part");
    }
}
