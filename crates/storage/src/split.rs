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
/// into parts of about equal stored size (`total`: the span's size, as [`approximate_bytes`]
/// said). Fewer (none) when the engine knows no sizes or the stored keys leave no room.
pub fn split_points(
    engine: &dyn Engine,
    start: &[u8],
    end: &[u8],
    total: u64,
    parts: usize,
) -> crate::Result<Vec<Vec<u8>>> {
    if parts < 2 || total == 0 {
        return Ok(Vec::new());
    }
    // The line runs between the first and the last stored key, not the span's ends: keys
    // that share a long prefix (text keys, constant leading columns) then still differ
    // within the line's window.
    let Some((first, last)) = stored_ends(engine, start, end)? else {
        return Ok(Vec::new());
    };
    let Some(line) = KeyLine::new(&first, &keycode::next_key(&last)) else {
        return Ok(Vec::new());
    };
    let tolerance = total / 256;
    let mut cuts: Vec<Vec<u8>> = Vec::new();
    let mut lo = line.lo;
    for i in 1..parts as u128 {
        let target = (u128::from(total) * i / parts as u128) as u64;
        let at = line.bisect(lo, target, tolerance, |key| {
            approximate_bytes(engine, start, key)
        });
        let Some(at) = at else { break };
        lo = at;
        cuts.push(line.key(at));
    }
    cuts.dedup();
    Ok(cuts)
}

/// The user keys of the first and the last stored version in `[start, end)`.
fn stored_ends(
    engine: &dyn Engine,
    start: &[u8],
    end: &[u8],
) -> crate::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let (lo, hi) = (keycode::escape(start), keycode::escape(end));
    let mut first = None;
    engine.scan(Cf::Data, &lo, Some(&hi), &mut |k, _| {
        first = Some(k.to_vec());
        false
    })?;
    let mut last = None;
    engine.scan_rev(Cf::Data, Some(&hi), &mut |k, _| {
        last = Some(k.to_vec());
        false
    })?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(None);
    };
    if last < lo {
        return Ok(None);
    }
    let first = crate::mvcc::decode_version_key(&first)?.0;
    let last = crate::mvcc::decode_version_key(&last)?.0;
    Ok(Some((first, last)))
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

    /// A number in `(from, hi)` whose key has `size_to(key)` within `tolerance` of `target`,
    /// or else the smallest one found at or past `target` in the step budget (`size_to`
    /// grows with the key); `None` if no candidate reaches it.
    fn bisect(
        &self,
        from: u128,
        target: u64,
        tolerance: u64,
        mut size_to: impl FnMut(&[u8]) -> u64,
    ) -> Option<u128> {
        // Invariant: below `target` at `a` (or `a` is `from`), at or past it at `b` (or `b`
        // is `hi`).
        let (mut a, mut b) = (from, self.hi);
        for _ in 0..BISECT_STEPS_MAX {
            if b - a < 2 {
                break;
            }
            let m = a + (b - a) / 2;
            let size = size_to(&self.key(m));
            if size.abs_diff(target) <= tolerance {
                return Some(m);
            }
            if size >= target {
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

    fn cuts(e: &dyn Engine, start: &[u8], end: &[u8], parts: usize) -> Vec<Vec<u8>> {
        split_points(e, start, end, approximate_bytes(e, start, end), parts).unwrap()
    }

    /// Cuts `[start, end)` of `e` into `parts` and checks that the parts' scans together are
    /// the whole span's scan and that they are about equal.
    fn check_parts(e: &dyn Engine, start: &[u8], end: &[u8], rows: usize, parts: usize) {
        let whole = scan_all(e, start, end);
        assert_eq!(whole.len(), rows);
        let cuts = cuts(e, start, end, parts);
        assert_eq!(cuts.len(), parts - 1, "{parts} parts");
        let mut bounds = vec![start.to_vec()];
        bounds.extend(cuts);
        bounds.push(end.to_vec());
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

    #[test]
    fn parts_cover_the_span_and_balance() {
        let dir = tempfile::tempdir().unwrap();
        let rocks = crate::RocksEngine::open(dir.path()).unwrap();
        let mem = MemEngine::new();
        // Sparse big-endian integer keys after a table prefix, and an uneven tail.
        let keys = || {
            (0u64..20_000)
                .map(|i| {
                    let mut k = b"t1/".to_vec();
                    k.extend_from_slice(&(i * i).to_be_bytes());
                    k
                })
                .chain((0..3000u32).map(|i| format!("t1/~{i}").into_bytes()))
        };
        // Text keys sharing a prefix longer than the line's window.
        let long = || {
            (0..10_000u32).map(|i| format!("t2/ORDER-2026-12-01-branch-0042-{i:06}").into_bytes())
        };
        for e in [&rocks as &dyn Engine, &mem] {
            load(e, keys().chain(long()));
        }
        rocks.flush().unwrap();
        for e in [&rocks as &dyn Engine, &mem] {
            for parts in [2usize, 3, 4, 7] {
                check_parts(e, b"t1/", b"t10", 23_000, parts);
                check_parts(e, b"t2/", b"t20", 10_000, parts);
            }
        }
    }

    #[test]
    fn spans_without_room_or_sizes_are_not_cut() {
        let e = MemEngine::new();
        assert!(cuts(&e, b"a", b"b", 4).is_empty(), "no data");
        load(&e, [b"a".to_vec()].into_iter());
        assert!(cuts(&e, b"a", b"b", 4).is_empty(), "one key");
        assert!(cuts(&e, b"a", b"a\x00", 4).is_empty(), "adjacent keys");
        assert!(cuts(&e, b"b", b"a", 4).is_empty(), "empty span");
        assert!(cuts(&e, b"a", b"b", 1).is_empty(), "one part");
    }
}
