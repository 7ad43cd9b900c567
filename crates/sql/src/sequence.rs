//! Sequences: `CREATE SEQUENCE`, `SERIAL`/`BIGSERIAL`/`GENERATED … AS IDENTITY` columns, and
//! `nextval`, `currval`, `setval`, `lastval`.
//!
//! A sequence's descriptor is a catalog row (transactional, like a table's). Its *value* is a
//! separate system key that only [`Sequences`] writes, each time in its own small transaction
//! through Raft — so, as in PostgreSQL, `nextval` is never rolled back and never waits for
//! the caller's transaction. To keep that off the per-row path, the node reserves
//! [`SEQ_BLOCK_VALUES`] values at a time (more if the sequence's CACHE asks for it) and hands
//! them out from memory; a crash loses the rest of a block, which leaves a gap exactly like
//! PostgreSQL's after a crash. `setval` and `DROP SEQUENCE` discard the node's block.
//!
//! ```text
//! 0x03 "sq" be32(db_id) escape(schema) escape(name) → SeqDesc
//! 0x03 "sv" be32(seq_id)                            → be64(last_value) ++ u8(is_called)
//! ```
//!
//! The SQL functions are DataFusion scalar UDFs bound per statement to the statement's
//! catalog snapshot (so a sequence created earlier in the same transaction resolves) and to
//! the session's `currval` memory. They are synchronous, so a block refill runs the KV
//! transaction with `tokio::task::block_in_place` (the server's runtime is multi-threaded).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use kestrel_kv::keys::SYSTEM_START;
use kestrel_kv::{Kv, Txn};
use kestrel_storage::keycode;

use crate::error::{code, SqlError, SqlResult};

/// Values one refill reserves at least (PostgreSQL logs 32 values ahead too).
pub const SEQ_BLOCK_VALUES: i64 = 32;
/// The most values one refill reserves, whatever CACHE says.
pub const SEQ_BLOCK_VALUES_MAX: i64 = 10_000;
/// Attempts of one refill when its transaction conflicts.
const REFILL_ATTEMPTS_MAX: usize = 20;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeqDesc {
    pub id: u32,
    /// Node-unique and never reused (descriptor ids come back when a CREATE rolls back):
    /// keys the stored value and the node's reserved block.
    pub uid: u64,
    pub db_id: u32,
    pub schema: String,
    pub name: String,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cycle: bool,
    pub cache: i64,
    /// `(table id, column id)` of the SERIAL/IDENTITY column that owns it (dropped with it).
    pub owner: Option<(u32, u16)>,
    /// The largest value of the sequence's type (one of [`TYPE_MAXIMA`]).
    pub type_max: i64,
}

/// The descriptor layout before catalog format version 4 (headerless bincode, no type).
#[derive(serde::Deserialize)]
struct SeqDescV1 {
    id: u32,
    uid: u64,
    db_id: u32,
    schema: String,
    name: String,
    start: i64,
    increment: i64,
    min: i64,
    max: i64,
    cycle: bool,
    cache: i64,
    owner: Option<(u32, u16)>,
}

impl From<SeqDescV1> for SeqDesc {
    /// The type was not stored: smallint or integer when a bound is that type's limit (the
    /// bounds AS gives by default), bigint otherwise.
    fn from(v: SeqDescV1) -> Self {
        let type_max = TYPE_MAXIMA
            .into_iter()
            .map(|(m, _)| m)
            .find(|m| v.max == *m || v.min == -*m - 1)
            .unwrap_or(i64::MAX);
        SeqDesc {
            id: v.id,
            uid: v.uid,
            db_id: v.db_id,
            schema: v.schema,
            name: v.name,
            start: v.start,
            increment: v.increment,
            min: v.min,
            max: v.max,
            cycle: v.cycle,
            cache: v.cache,
            owner: v.owner,
            type_max,
        }
    }
}

/// The integer types a sequence can have, by their largest value.
pub const TYPE_MAXIMA: [(i64, &str); 3] = [
    (i16::MAX as i64, "smallint"),
    (i32::MAX as i64, "integer"),
    (i64::MAX, "bigint"),
];

impl SeqDesc {
    /// The name of the sequence's type.
    pub fn type_name(&self) -> &'static str {
        TYPE_MAXIMA
            .into_iter()
            .find(|(m, _)| *m == self.type_max)
            .map_or("bigint", |(_, n)| n)
    }

    /// PostgreSQL's checks of a sequence's options (all 22023).
    pub fn validate(&self) -> SqlResult<()> {
        let bad = |m: String| Err(SqlError::new(code::INVALID_PARAMETER_VALUE, m));
        let (type_max, type_name) = (self.type_max, self.type_name());
        let (min, max, start) = (self.min, self.max, self.start);
        if self.increment == 0 {
            return bad("INCREMENT must not be zero".into());
        }
        if max > type_max || max < -type_max - 1 {
            return bad(format!(
                "MAXVALUE ({max}) is out of range for sequence data type {type_name}"
            ));
        }
        if min > type_max || min < -type_max - 1 {
            return bad(format!(
                "MINVALUE ({min}) is out of range for sequence data type {type_name}"
            ));
        }
        if min >= max {
            return bad(format!(
                "MINVALUE ({min}) must be less than MAXVALUE ({max})"
            ));
        }
        if start < min {
            return bad(format!(
                "START value ({start}) cannot be less than MINVALUE ({min})"
            ));
        }
        if start > max {
            return bad(format!(
                "START value ({start}) cannot be greater than MAXVALUE ({max})"
            ));
        }
        if self.cache < 1 {
            return bad(format!("CACHE ({}) must be greater than zero", self.cache));
        }
        Ok(())
    }
}

pub fn seq_prefix(db_id: u32) -> Vec<u8> {
    let mut k = SYSTEM_START.to_vec();
    k.extend_from_slice(b"sq");
    keycode::put_u32(&mut k, db_id);
    k
}

fn seq_key(db_id: u32, schema: &str, name: &str) -> Vec<u8> {
    let mut k = seq_prefix(db_id);
    keycode::put_bytes(&mut k, schema.as_bytes());
    keycode::put_bytes(&mut k, name.as_bytes());
    k
}

fn value_key(uid: u64) -> Vec<u8> {
    let mut k = SYSTEM_START.to_vec();
    k.extend_from_slice(b"sv");
    keycode::put_u64(&mut k, uid);
    k
}

/// The descriptor of sequence `schema.name` in database `db_id`, read through the node's
/// descriptor cache.
pub async fn get_sequence(
    txn: &Txn,
    db_id: u32,
    schema: &str,
    name: &str,
) -> SqlResult<Option<SeqDesc>> {
    match txn.get_cached(&seq_key(db_id, schema, name)).await? {
        Some(b) => decode_sequence(&b).map(Some),
        None => Ok(None),
    }
}

pub fn put_sequence(txn: &mut Txn, s: &SeqDesc) -> SqlResult<()> {
    txn.put(
        seq_key(s.db_id, &s.schema, &s.name),
        crate::catalog::encode(s),
    )?;
    Ok(())
}

pub fn delete_sequence(txn: &mut Txn, s: &SeqDesc) -> SqlResult<()> {
    delete_descriptor(txn, s)?;
    txn.delete(value_key(s.uid))?;
    Ok(())
}

/// Deletes only the descriptor (a rename writes it again under the new name).
pub fn delete_descriptor(txn: &mut Txn, s: &SeqDesc) -> SqlResult<()> {
    txn.delete(seq_key(s.db_id, &s.schema, &s.name))?;
    Ok(())
}

/// A stored descriptor: the current layout behind the catalog header, or the headerless
/// layout of stores written before format version 4.
pub fn decode_sequence(b: &[u8]) -> SqlResult<SeqDesc> {
    let corrupt =
        |e: bincode::Error| SqlError::internal(format!("corrupt sequence descriptor: {e}"));
    match crate::catalog::split_header(b, "sequence")? {
        Some((4.., body)) => bincode::deserialize(body).map_err(corrupt),
        Some((v, _)) => Err(SqlError::internal(format!(
            "sequence descriptor with format version {v}, which never held sequences"
        ))),
        None => bincode::deserialize::<SeqDescV1>(b)
            .map(SeqDesc::from)
            .map_err(corrupt),
    }
}

/// `(last_value, is_called)`; `None` before the first `nextval`.
type SeqState = Option<(i64, bool)>;

fn decode_state(b: &[u8]) -> SqlResult<SeqState> {
    if b.len() != 9 {
        return Err(SqlError::internal("corrupt sequence value"));
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[..8]);
    Ok(Some((i64::from_be_bytes(v), b[8] != 0)))
}

fn encode_state(last: i64, called: bool) -> Vec<u8> {
    let mut b = last.to_be_bytes().to_vec();
    b.push(called as u8);
    b
}

/// The stored `(last_value, is_called)` of sequence `uid` as `txn` sees it.
async fn stored_state(txn: &mut Txn, uid: u64) -> SqlResult<Option<(i64, bool)>> {
    match txn.get(&value_key(uid)).await? {
        Some(b) => decode_state(&b),
        None => Ok(None),
    }
}

/// The value after `state`, if the sequence has one.
fn step(s: &SeqDesc, state: SeqState) -> Option<i64> {
    match state {
        None => Some(s.start),
        Some((v, false)) => Some(v),
        Some((v, true)) => match v.checked_add(s.increment) {
            Some(n) if n >= s.min && n <= s.max => Some(n),
            _ if s.cycle => Some(if s.increment > 0 { s.min } else { s.max }),
            _ => None,
        },
    }
}

fn limit_reached(s: &SeqDesc) -> SqlError {
    let (which, v) = if s.increment > 0 {
        ("maximum", s.max)
    } else {
        ("minimum", s.min)
    };
    SqlError::new(
        code::SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
        format!(
            "nextval: reached {which} value of sequence \"{}\" ({v})",
            s.name
        ),
    )
}

/// The values one node reserved for one sequence and has not handed out yet.
struct Block {
    rest: VecDeque<i64>,
    /// The value handed out last (the stored state is the block's end, not this).
    last: i64,
    /// The block's last reserved value: what the stored state said when it was reserved.
    end: i64,
}

/// The node's sequence allocator: blocks of reserved values per sequence.
pub struct Sequences {
    kv: Arc<Kv>,
    /// Reserved values by sequence uid.
    blocks: Mutex<HashMap<u64, Block>>,
    refill: tokio::sync::Mutex<()>,
}

impl Sequences {
    pub fn new(kv: Arc<Kv>) -> Self {
        Self {
            kv,
            blocks: Mutex::new(HashMap::new()),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    fn take(&self, uid: u64) -> Option<i64> {
        let mut blocks = self.blocks.lock().ok()?;
        let block = blocks.get_mut(&uid)?;
        let v = block.rest.pop_front()?;
        block.last = v;
        Some(v)
    }

    pub fn forget(&self, uid: u64) {
        self.drain(uid);
    }

    /// Discards the node's block of `uid` and returns `(last handed out, block end)`: the
    /// sequence's true position and the stored state it is behind of while the block lives.
    pub fn drain(&self, uid: u64) -> Option<(i64, i64)> {
        self.blocks
            .lock()
            .ok()?
            .remove(&uid)
            .map(|b| (b.last, b.end))
    }

    /// The next value of `s`.
    pub async fn next(&self, s: &SeqDesc) -> SqlResult<i64> {
        if let Some(v) = self.take(s.uid) {
            return Ok(v);
        }
        let _refill = self.refill.lock().await;
        if let Some(v) = self.take(s.uid) {
            return Ok(v);
        }
        let mut rest: VecDeque<i64> = self.reserve(s).await?.into();
        let end = rest.back().copied().ok_or_else(|| limit_reached(s))?;
        let first = rest.pop_front().ok_or_else(|| limit_reached(s))?;
        if let Ok(mut b) = self.blocks.lock() {
            b.insert(
                s.uid,
                Block {
                    rest,
                    last: first,
                    end,
                },
            );
        }
        Ok(first)
    }

    /// Reserves the next block of values in one committed transaction.
    async fn reserve(&self, s: &SeqDesc) -> SqlResult<Vec<i64>> {
        let want = s.cache.clamp(SEQ_BLOCK_VALUES, SEQ_BLOCK_VALUES_MAX);
        let mut last_err = None;
        for _ in 0..REFILL_ATTEMPTS_MAX {
            let mut txn = self.kv.begin();
            let mut state = match txn.get(&value_key(s.uid)).await? {
                Some(b) => decode_state(&b)?,
                None => None,
            };
            let mut vals = Vec::new();
            while (vals.len() as i64) < want {
                let Some(v) = step(s, state) else { break };
                vals.push(v);
                state = Some((v, true));
            }
            let Some(&last) = vals.last() else {
                return Err(limit_reached(s));
            };
            txn.put(value_key(s.uid), encode_state(last, true))?;
            match txn.commit().await {
                Ok(_) => return Ok(vals),
                Err(e) => {
                    let e = SqlError::from(e);
                    if !e.is_retryable() {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| SqlError::internal("sequence refill failed")))
    }

    /// `setval`: the next `nextval` returns `v` (`called = false`) or the value after it.
    pub async fn set(&self, s: &SeqDesc, v: i64, called: bool) -> SqlResult<()> {
        if v < s.min || v > s.max {
            return Err(SqlError::new(
                code::NUMERIC_VALUE_OUT_OF_RANGE,
                format!(
                    "setval: value {v} is out of bounds for sequence \"{}\" ({}..{})",
                    s.name, s.min, s.max
                ),
            ));
        }
        let _refill = self.refill.lock().await;
        self.forget(s.uid);
        let mut txn = self.kv.begin();
        txn.put(value_key(s.uid), encode_state(v, called))?;
        txn.commit().await?;
        Ok(())
    }

    /// ALTER SEQUENCE: discards the node's block and stores the position `new` continues
    /// from — `restart` (a bare RESTART is `new.start`), or else the value handed out last —
    /// after checking it against `new`'s bounds. One committed transaction under the refill
    /// lock, so no value of the node's block can be handed out meanwhile.
    pub async fn reposition(
        &self,
        old: &SeqDesc,
        new: &SeqDesc,
        restart: Option<Option<i64>>,
    ) -> SqlResult<()> {
        let _refill = self.refill.lock().await;
        let block = self.drain(old.uid);
        let mut last_err = None;
        for _ in 0..REFILL_ATTEMPTS_MAX {
            let mut txn = self.kv.begin();
            let stored = stored_state(&mut txn, old.uid).await?;
            let (last, called) = match (restart, stored, block) {
                (Some(r), _, _) => (r.unwrap_or(new.start), false),
                // The node's block is the newest reservation: its last value is the position.
                (None, Some((end, true)), Some((last, block_end))) if end == block_end => {
                    (last, true)
                }
                (None, Some(state), _) => state,
                (None, None, _) => (old.start, false),
            };
            check_position(new, last)?;
            txn.put(value_key(old.uid), encode_state(last, called))?;
            match txn.commit().await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let e = SqlError::from(e);
                    if !e.is_retryable() {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| SqlError::internal("sequence reposition failed")))
    }
}

/// PostgreSQL's check that a sequence's position lies inside its (new) bounds.
fn check_position(d: &SeqDesc, last: i64) -> SqlResult<()> {
    let bad = |m: String| Err(SqlError::new(code::INVALID_PARAMETER_VALUE, m));
    if last < d.min {
        return bad(format!(
            "RESTART value ({last}) cannot be less than MINVALUE ({})",
            d.min
        ));
    }
    if last > d.max {
        return bad(format!(
            "RESTART value ({last}) cannot be greater than MAXVALUE ({})",
            d.max
        ));
    }
    Ok(())
}

/// What one session remembers for `currval` and `lastval`.
#[derive(Debug, Default)]
pub struct SessionSequences {
    current: HashMap<u32, i64>,
    last: Option<i64>,
}

impl SessionSequences {
    /// `nextval` of sequence `id` returned `v` in this session.
    pub fn record(&mut self, id: u32, v: i64) {
        self.current.insert(id, v);
        self.last = Some(v);
    }
}

/// The sequences of one database as a statement sees them, by `(schema, name)`.
pub type SeqMap = Arc<BTreeMap<(String, String), Arc<SeqDesc>>>;

/// The SQL functions' shared state for one statement.
#[derive(Clone)]
pub struct SeqFunctions {
    pub seqs: Arc<Sequences>,
    pub map: SeqMap,
    pub session: Arc<Mutex<SessionSequences>>,
}

impl std::fmt::Debug for SeqFunctions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeqFunctions")
    }
}

/// The sequences a column default draws from: the `(schema, name)` of every
/// `nextval('…')` in it, with or without `::regclass`.
pub fn default_sequences(default_expr: &str) -> Vec<(String, String)> {
    const CALL: &str = "nextval('";
    let mut out = Vec::new();
    let mut rest = default_expr;
    while let Some(i) = rest.to_ascii_lowercase().find(CALL) {
        let after = &rest[i + CALL.len()..];
        // The literal runs to the first quote that is not doubled.
        let mut text = String::new();
        let mut chars = after.char_indices().peekable();
        let mut end = after.len();
        while let Some((j, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().map(|(_, n)| *n) == Some('\'') {
                    chars.next();
                    text.push('\'');
                    continue;
                }
                end = j + 1;
                break;
            }
            text.push(c);
        }
        if let Ok(name) = parse_name(&text) {
            out.push(name);
        }
        rest = &after[end.min(after.len())..];
    }
    out
}

/// `(schema, name)` of a sequence named in text the way `regclass` input reads it.
pub fn parse_name(text: &str) -> SqlResult<(String, String)> {
    let part = |p: &str| match p.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        Some(q) => q.replace("\"\"", "\""),
        None => p.trim().to_lowercase(),
    };
    let parts: Vec<&str> = text.split('.').collect();
    match parts.as_slice() {
        [n] => Ok((crate::catalog::DEFAULT_SCHEMA.to_string(), part(n))),
        [s, n] => Ok((part(s), part(n))),
        _ => Err(SqlError::new(
            code::INVALID_NAME,
            format!("improper relation name (too many dotted names): {text}"),
        )),
    }
}

fn df(e: SqlError) -> DataFusionError {
    e.into_datafusion()
}

impl SeqFunctions {
    fn resolve(&self, text: &str) -> SqlResult<Arc<SeqDesc>> {
        let key = parse_name(text)?;
        self.map.get(&key).cloned().ok_or_else(|| {
            SqlError::new(
                code::UNDEFINED_TABLE,
                format!("relation \"{text}\" does not exist"),
            )
        })
    }

    fn next_blocking(&self, s: &SeqDesc) -> SqlResult<i64> {
        let v = match self.seqs.take(s.uid) {
            Some(v) => v,
            None => run_blocking(self.seqs.next(s))?,
        };
        if let Ok(mut m) = self.session.lock() {
            m.record(s.id, v);
        }
        Ok(v)
    }

    fn current(&self, s: &SeqDesc) -> SqlResult<i64> {
        self.session
            .lock()
            .ok()
            .and_then(|m| m.current.get(&s.id).copied())
            .ok_or_else(|| {
                SqlError::new(
                    code::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!(
                        "currval of sequence \"{}\" is not yet defined in this session",
                        s.name
                    ),
                )
            })
    }

    /// The scalar UDFs to register for one statement.
    pub fn udfs(&self) -> Vec<Arc<ScalarUDF>> {
        [
            Which::Nextval,
            Which::Currval,
            Which::Setval,
            Which::Lastval,
        ]
        .into_iter()
        .map(|which| {
            Arc::new(ScalarUDF::from(SeqUdf {
                which,
                f: self.clone(),
                signature: which.signature(),
            }))
        })
        .collect()
    }
}

/// Runs a future to completion from synchronous code on a multi-threaded runtime.
pub(crate) fn run_blocking<T>(
    fut: impl std::future::Future<Output = SqlResult<T>>,
) -> SqlResult<T> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| SqlError::internal("sequence functions need a tokio runtime"))?;
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return Err(SqlError::internal(
            "sequence functions need a multi-threaded runtime",
        ));
    }
    tokio::task::block_in_place(|| handle.block_on(fut))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Which {
    Nextval,
    Currval,
    Setval,
    Lastval,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Nextval => "nextval",
            Which::Currval => "currval",
            Which::Setval => "setval",
            Which::Lastval => "lastval",
        }
    }

    fn signature(self) -> Signature {
        let v = Volatility::Volatile;
        match self {
            Which::Nextval | Which::Currval => Signature::exact(vec![DataType::Utf8], v),
            Which::Setval => Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64, DataType::Boolean]),
                ],
                v,
            ),
            Which::Lastval => Signature::nullary(v),
        }
    }
}

#[derive(Debug)]
struct SeqUdf {
    which: Which,
    f: SeqFunctions,
    signature: Signature,
}

impl PartialEq for SeqUdf {
    fn eq(&self, other: &Self) -> bool {
        self.which == other.which
    }
}
impl Eq for SeqUdf {}
impl std::hash::Hash for SeqUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.which.hash(state)
    }
}

fn text_arg(args: &[ColumnarValue], i: usize, row: usize) -> DfResult<Option<String>> {
    match args.get(i) {
        Some(ColumnarValue::Scalar(ScalarValue::Utf8(s))) => Ok(s.clone()),
        Some(ColumnarValue::Array(a)) => {
            let a = a
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| DataFusionError::Internal("sequence name is not text".into()))?;
            Ok(a.is_valid(row).then(|| a.value(row).to_string()))
        }
        _ => Err(DataFusionError::Internal(
            "sequence name is not text".into(),
        )),
    }
}

fn scalar_at(args: &[ColumnarValue], i: usize, row: usize) -> DfResult<ScalarValue> {
    match args.get(i) {
        Some(ColumnarValue::Scalar(s)) => Ok(s.clone()),
        Some(ColumnarValue::Array(a)) => ScalarValue::try_from_array(a, row),
        None => Err(DataFusionError::Internal("missing argument".into())),
    }
}

impl ScalarUDFImpl for SeqUdf {
    fn name(&self) -> &str {
        self.which.name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        // One call per row; an empty batch consumes no value.
        let n = args.number_rows;
        let mut out: Vec<Option<i64>> = Vec::with_capacity(n);
        for row in 0..n {
            out.push(self.one(&args.args, row)?);
        }
        Ok(ColumnarValue::Array(
            Arc::new(Int64Array::from(out)) as ArrayRef
        ))
    }
}

impl SeqUdf {
    fn one(&self, args: &[ColumnarValue], row: usize) -> DfResult<Option<i64>> {
        if self.which == Which::Lastval {
            let last = self.f.session.lock().ok().and_then(|m| m.last);
            return last.map(Some).ok_or_else(|| {
                df(SqlError::new(
                    code::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "lastval is not yet defined in this session",
                ))
            });
        }
        let Some(name) = text_arg(args, 0, row)? else {
            return Ok(None);
        };
        let s = self.f.resolve(&name).map_err(df)?;
        match self.which {
            Which::Nextval => self.f.next_blocking(&s).map(Some).map_err(df),
            Which::Currval => self.f.current(&s).map(Some).map_err(df),
            Which::Setval => {
                let ScalarValue::Int64(Some(v)) = scalar_at(args, 1, row)? else {
                    return Ok(None);
                };
                let called = match scalar_at(args, 2, row) {
                    Ok(ScalarValue::Boolean(Some(b))) => b,
                    _ => true,
                };
                run_blocking(self.f.seqs.set(&s, v, called)).map_err(df)?;
                if called {
                    if let Ok(mut m) = self.f.session.lock() {
                        m.current.insert(s.id, v);
                        m.last = Some(v);
                    }
                }
                Ok(Some(v))
            }
            Which::Lastval => unreachable!("handled above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(start: i64, inc: i64, min: i64, max: i64, cycle: bool) -> SeqDesc {
        SeqDesc {
            id: 1,
            uid: 1,
            db_id: 1,
            schema: "public".into(),
            name: "s".into(),
            start,
            increment: inc,
            min,
            max,
            cycle,
            cache: 1,
            owner: None,
            type_max: i64::MAX,
        }
    }

    #[test]
    fn headerless_descriptors_decode_with_an_inferred_type() {
        let old = (
            1u32, 7u64, 1u32, "public", "s", 1i64, 1i64, 1i64, 32767i64, false, 1i64,
        );
        let mut bytes = bincode::serialize(&old).unwrap();
        bytes.extend(bincode::serialize(&None::<(u32, u16)>).unwrap());
        let d = decode_sequence(&bytes).unwrap();
        assert_eq!((d.uid, d.max, d.type_max), (7, 32767, i16::MAX as i64));
        assert_eq!(d.type_name(), "smallint");
        let mut now = seq(1, 1, 1, 100, false);
        now.type_max = i32::MAX as i64;
        let round = decode_sequence(&crate::catalog::encode(&now)).unwrap();
        assert_eq!(
            round, now,
            "the type survives: a small MAXVALUE stays an integer"
        );
    }

    #[test]
    fn steps_follow_start_increment_bounds_and_cycle() {
        let s = seq(5, 3, 1, 10, false);
        assert_eq!(step(&s, None), Some(5));
        assert_eq!(step(&s, Some((5, true))), Some(8));
        assert_eq!(step(&s, Some((8, true))), None);
        assert_eq!(step(&s, Some((7, false))), Some(7), "setval(…, false)");
        let c = seq(1, 1, 1, 3, true);
        assert_eq!(step(&c, Some((3, true))), Some(1));
        let d = seq(-1, -1, -3, -1, false);
        assert_eq!(step(&d, Some((-3, true))), None);
        let big = seq(i64::MAX, 1, 1, i64::MAX, false);
        assert_eq!(step(&big, Some((i64::MAX, true))), None, "no overflow");
    }

    #[test]
    fn defaults_name_their_sequences() {
        let p = |s: &str, n: &str| (s.to_string(), n.to_string());
        assert_eq!(
            default_sequences("nextval('t_id_seq')"),
            vec![p("public", "t_id_seq")]
        );
        assert_eq!(
            default_sequences("NEXTVAL('S.\"It''s\"'::REGCLASS) + nextval('b')"),
            vec![p("s", "It's"), p("public", "b")]
        );
        assert!(default_sequences("now()").is_empty());
    }

    #[test]
    fn names_parse_like_regclass() {
        assert_eq!(
            parse_name("T_id_seq").unwrap(),
            ("public".into(), "t_id_seq".into())
        );
        assert_eq!(
            parse_name("s.\"MixedCase\"").unwrap(),
            ("s".into(), "MixedCase".into())
        );
        assert!(parse_name("a.b.c").is_err());
    }
}
