//! The keyspace layout: which prefix holds what.
//!
//! ```text
//! 0x02 "desc" be64(range_id)            range descriptor            (meta range 1)
//! 0x02 "next_range_id"                  range id counter            (meta range 1)
//! 0x03 ...                              SQL catalog (kestrel-sql)   (system range 2)
//! 0x10 be32(table_id) be32(index_id) …  table rows and indexes      (one range per table)
//! ```

pub const META_START: &[u8] = b"";
pub const SYSTEM_START: &[u8] = b"\x03";
pub const TABLES_START: &[u8] = b"\x10";

pub const META_RANGE_ID: u64 = 1;
pub const SYSTEM_RANGE_ID: u64 = 2;
pub const FIRST_USER_RANGE_ID: u64 = 3;

pub fn range_desc_key(range_id: u64) -> Vec<u8> {
    let mut k = b"\x02desc".to_vec();
    k.extend_from_slice(&range_id.to_be_bytes());
    k
}

pub fn range_desc_prefix() -> (Vec<u8>, Vec<u8>) {
    (b"\x02desc".to_vec(), b"\x02desd".to_vec())
}

pub const NEXT_RANGE_ID_KEY: &[u8] = b"\x02next_range_id";

/// The prefix of every key of table `table_id`.
pub fn table_prefix(table_id: u32) -> Vec<u8> {
    let mut k = TABLES_START.to_vec();
    k.extend_from_slice(&table_id.to_be_bytes());
    k
}

/// The span `[start, end)` of table `table_id`.
pub fn table_span(table_id: u32) -> (Vec<u8>, Vec<u8>) {
    (table_prefix(table_id), table_prefix(table_id + 1))
}
