//! Memcomparable encodings: `a < b` ⇔ `encode(a) < encode(b)` bytewise.
//!
//! * unsigned integers: big-endian;
//! * signed integers: big-endian with the sign bit flipped, so negatives sort first;
//! * floats: IEEE bits, all bits flipped for negatives and only the sign bit for positives
//!   (`-0.0` is folded into `0.0`, NaN sorts last as in PostgreSQL);
//! * byte strings: every `0x00` is escaped as `0x00 0xFF` and the string ends with `0x00 0x01`,
//!   so no encoding is a prefix of another and concatenations of encodings still sort by their
//!   components.
//!
//! Worked example — `CREATE TABLE t (id INT PRIMARY KEY, name TEXT)` with table id 53 and row
//! `(7, 'ab')`: the row key is the table prefix `0x74 ("t") ++ be32(53) ++ be32(1 /* index */)`
//! followed by `encode_i32(7) = 80 00 00 07`. The MVCC layer then stores the version under
//! `escape(row key) ++ be64(!commit_ts)`.

/// Appends the order-preserving encoding of `v`.
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, (v as u64) ^ (1 << 63));
}
pub fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&((v as u32) ^ (1 << 31)).to_be_bytes());
}
pub fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&((v as u16) ^ (1 << 15)).to_be_bytes());
}
pub fn put_i128(out: &mut Vec<u8>, v: i128) {
    out.extend_from_slice(&((v as u128) ^ (1 << 127)).to_be_bytes());
}
pub fn put_f64(out: &mut Vec<u8>, v: f64) {
    let v = if v == 0.0 { 0.0 } else { v };
    let bits = if v.is_nan() { u64::MAX } else { v.to_bits() };
    let enc = if v.is_nan() {
        bits
    } else if bits >> 63 == 1 {
        !bits
    } else {
        bits ^ (1 << 63)
    };
    put_u64(out, enc);
}
pub fn put_f32(out: &mut Vec<u8>, v: f32) {
    put_f64(out, v as f64);
}
/// Escaped byte string, terminated by `00 01`.
pub fn put_bytes(out: &mut Vec<u8>, v: &[u8]) {
    for &b in v {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.push(0x00);
    out.push(0x01);
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed key encoding")]
pub struct DecodeError;

/// A cursor over an encoded key.
pub struct Reader<'a> {
    pub buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        if self.buf.len() < N {
            return Err(DecodeError);
        }
        let (head, rest) = self.buf.split_at(N);
        self.buf = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok((self.u64()? ^ (1 << 63)) as i64)
    }
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok((u32::from_be_bytes(self.take()?) ^ (1 << 31)) as i32)
    }
    pub fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok((u16::from_be_bytes(self.take()?) ^ (1 << 15)) as i16)
    }
    pub fn i128(&mut self) -> Result<i128, DecodeError> {
        Ok((u128::from_be_bytes(self.take()?) ^ (1 << 127)) as i128)
    }
    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        let enc = self.u64()?;
        if enc == u64::MAX {
            return Ok(f64::NAN);
        }
        let bits = if enc >> 63 == 1 {
            enc ^ (1 << 63)
        } else {
            !enc
        };
        Ok(f64::from_bits(bits))
    }
    pub fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(self.f64()? as f32)
    }
    pub fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        self.bytes_into(&mut out)?;
        Ok(out)
    }
    /// [`Self::bytes`] into `out` (cleared first), copying the runs between escapes whole.
    pub fn bytes_into(&mut self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        out.clear();
        let mut rest = self.buf;
        loop {
            let zero = rest.iter().position(|&b| b == 0).ok_or(DecodeError)?;
            out.extend_from_slice(&rest[..zero]);
            match rest.get(zero + 1) {
                Some(0xFF) => out.push(0),
                Some(0x01) => {
                    self.buf = &rest[zero + 2..];
                    return Ok(());
                }
                _ => return Err(DecodeError),
            }
            rest = &rest[zero + 2..];
        }
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The escaped encoding of `v` as a fresh vector.
pub fn escape(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + 2);
    put_bytes(&mut out, v);
    out
}

/// The smallest key greater than every key that starts with `prefix` (`None`: no such key).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The smallest key strictly greater than `key`.
pub fn next_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc_i64(v: i64) -> Vec<u8> {
        let mut o = vec![];
        put_i64(&mut o, v);
        o
    }
    fn enc_f64(v: f64) -> Vec<u8> {
        let mut o = vec![];
        put_f64(&mut o, v);
        o
    }

    #[test]
    fn integers_sort_and_round_trip() {
        let vals = [i64::MIN, -1000, -1, 0, 1, 7, 1 << 40, i64::MAX];
        for w in vals.windows(2) {
            assert!(enc_i64(w[0]) < enc_i64(w[1]), "{} < {}", w[0], w[1]);
        }
        for v in vals {
            assert_eq!(Reader::new(&enc_i64(v)).i64().unwrap(), v);
        }
        for v in [i32::MIN, -5, 0, 5, i32::MAX] {
            let mut o = vec![];
            put_i32(&mut o, v);
            assert_eq!(Reader::new(&o).i32().unwrap(), v);
        }
        for v in [i16::MIN, -5, 0, 5, i16::MAX] {
            let mut o = vec![];
            put_i16(&mut o, v);
            assert_eq!(Reader::new(&o).i16().unwrap(), v);
        }
        let mut a = vec![];
        let mut b = vec![];
        put_i128(&mut a, -12345678901234567890123);
        put_i128(&mut b, 5);
        assert!(a < b);
        assert_eq!(Reader::new(&a).i128().unwrap(), -12345678901234567890123);
    }

    #[test]
    fn floats_sort_and_round_trip() {
        let vals = [
            f64::NEG_INFINITY,
            -1e300,
            -1.5,
            -0.0,
            1e-300,
            2.5,
            f64::INFINITY,
            f64::NAN,
        ];
        for w in vals.windows(2) {
            assert!(enc_f64(w[0]) <= enc_f64(w[1]), "{} <= {}", w[0], w[1]);
        }
        assert_eq!(enc_f64(-0.0), enc_f64(0.0));
        for v in [-1e300, -1.5, 0.0, 2.5, f64::INFINITY] {
            assert_eq!(Reader::new(&enc_f64(v)).f64().unwrap(), v);
        }
        assert!(Reader::new(&enc_f64(f64::NAN)).f64().unwrap().is_nan());
    }

    #[test]
    fn bytes_sort_round_trip_and_are_prefix_free() {
        let vals: Vec<&[u8]> = vec![
            b"",
            b"\x00",
            b"\x00\x00",
            b"\x00\x01",
            b"a",
            b"a\x00",
            b"a\x00b",
            b"ab",
            b"b",
        ];
        for w in vals.windows(2) {
            assert!(escape(w[0]) < escape(w[1]), "{:?} < {:?}", w[0], w[1]);
        }
        for v in &vals {
            let e = escape(v);
            let mut r = Reader::new(&e);
            assert_eq!(r.bytes().unwrap(), v.to_vec());
            assert!(r.is_empty());
        }
        // Composite keys: ("a", 2) < ("a\0", 1) because the first component decides.
        let mut k1 = escape(b"a");
        put_i64(&mut k1, 2);
        let mut k2 = escape(b"a\x00");
        put_i64(&mut k2, 1);
        assert!(k1 < k2);
        assert_eq!(Reader::new(b"a\x00\x02").bytes(), Err(DecodeError));
        assert_eq!(Reader::new(b"abc").bytes(), Err(DecodeError));
    }

    #[test]
    fn prefix_end_and_next_key() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xFF"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xFF\xFF"), None);
        assert!(next_key(b"ab") > b"ab".to_vec());
        assert!(next_key(b"ab") < b"ab\x00\x00".to_vec());
    }
}
