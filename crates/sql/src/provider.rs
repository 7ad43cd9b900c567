//! Kestrel tables as DataFusion tables: [`KestrelTable`] (a `TableProvider`), its scan
//! ([`KvScanExec`], an `ExecutionPlan` that reads the table's key range at the statement's
//! transaction snapshot and decodes rows straight into Arrow batches) and its insert sink.
//!
//! Filters on the primary key become key bounds: equality on every key column is a point get,
//! an `IN` list on the last key column is several point gets, and a range on the first
//! non-equal key column (after equal prefix columns) is a key-range scan. DataFusion still
//! applies every filter above the scan (pushdown is `Inexact`), so bounds only ever narrow
//! what is read. `EXPLAIN` shows the bounds.
//!
//! A key-range scan without a LIMIT over at least twice `Limits::scan_partition_bytes_min`
//! of stored data is cut into partitions of about equal size (at most DataFusion's
//! `target_partitions`, one per core), which DataFusion runs in parallel, each with the
//! operators above it. All partitions read at the statement's one snapshot through the same
//! transaction, so together they read exactly what one scan would. Within each partition a
//! key-range scan emits rows in primary-key order and says so (`key_ordering`), so DataFusion
//! merges partitions instead of sorting for `ORDER BY` the key; the order of rows *across*
//! partitions is unspecified.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::StreamExt;
use kestrel_storage::keycode;

use crate::catalog::TableDesc;
use crate::check::Checks;
use crate::column_cache::Lookup;
use crate::datum::{datum_from_scalar, datums_from_array, scalar_from_datum, Datum};
use crate::error::{code, SqlError, SqlResult};
use crate::index::TableWriter;
use crate::rowcodec::{append_key_datum, encode_key, primary_prefix, BatchDecoder};
use crate::stmt::StmtCtx;
use crate::types::SqlType;

/// A table bound to one statement's transaction.
pub struct KestrelTable {
    desc: Arc<TableDesc>,
    ctx: Arc<StmtCtx>,
    /// Indexes (into `desc.columns`) of the columns this provider exposes, in schema order.
    visible: Vec<usize>,
    schema: SchemaRef,
    defaults: HashMap<String, Expr>,
}

impl fmt::Debug for KestrelTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KestrelTable({})", self.desc.name)
    }
}

impl KestrelTable {
    pub fn new(desc: Arc<TableDesc>, ctx: Arc<StmtCtx>) -> SqlResult<Self> {
        let visible = desc.visible_columns(ctx.expose_hidden);
        let schema = desc.arrow_schema(ctx.expose_hidden);
        let mut defaults = HashMap::new();
        for c in &desc.columns {
            if let Some((_, d)) = &c.default {
                defaults.insert(
                    c.name.clone(),
                    Expr::Literal(scalar_from_datum(&c.ty, d)?, None),
                );
            }
            let compiled = ctx
                .defaults
                .get()
                .and_then(|m| m.get(&(desc.id, c.name.clone())));
            if let Some(e) = compiled {
                defaults.insert(c.name.clone(), e.clone());
            }
        }
        Ok(Self {
            desc,
            ctx,
            visible,
            schema,
            defaults,
        })
    }

    pub fn desc(&self) -> &Arc<TableDesc> {
        &self.desc
    }

    fn is_full_scan(&self, b: &Bounds) -> bool {
        matches!(b, Bounds::Range { start, .. } if *start == primary_prefix(self.desc.id))
    }

    /// Keys cutting a scan of `[start, end)` into partitions that run in parallel: one per
    /// `scan_partition_bytes_min` of stored data, at most `target` (and the limit's maximum);
    /// whether the scan is a bulk scan (`scan_bulk_bytes_min` or more: it bypasses the
    /// block cache, see `Engine::scan_bulk`) and whether its partitions may use the column
    /// cache (`column_cache_scan_bytes_min` or more, see `column_cache.rs`).
    fn partition_cuts(
        &self,
        start: &[u8],
        end: &[u8],
        target: usize,
    ) -> SqlResult<(Vec<Vec<u8>>, ScanMode)> {
        let limits = &self.ctx.limits;
        let bytes = self.ctx.kv.approximate_bytes(start, end);
        let mode = ScanMode {
            bulk: limits.scan_bulk_bytes_min > 0 && bytes >= limits.scan_bulk_bytes_min,
            cached: self.ctx.column_cache.bytes_max() > 0
                && bytes >= limits.column_cache_scan_bytes_min,
        };
        if limits.scan_partition_bytes_min == 0 {
            return Ok((Vec::new(), mode));
        }
        let most = target.min(limits.scan_partitions_max).max(1);
        let parts = (bytes / limits.scan_partition_bytes_min).min(most as u64) as usize;
        let cuts = match parts {
            0 | 1 => Vec::new(),
            n => self.ctx.kv.split_points(start, end, bytes, n)?,
        };
        Ok((cuts, mode))
    }
}

#[async_trait]
impl datafusion::catalog::TableProvider for KestrelTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let projected: Vec<usize> = match projection {
            Some(p) => p.iter().map(|&i| self.visible[i]).collect(),
            None => self.visible.clone(),
        };
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let mut bounds = key_bounds(&self.desc, filters).map_err(SqlError::into_datafusion)?;
        let mut index = None;
        if self.is_full_scan(&bounds) {
            if let Some((b, ix)) =
                choose_index(&self.desc, filters).map_err(SqlError::into_datafusion)?
            {
                bounds = b;
                index = Some(ix);
            }
        }
        let (cuts, mode) = match (&bounds, &index, limit) {
            (Bounds::Range { start, end }, None, None) => self
                .partition_cuts(start, end, state.config().target_partitions())
                .map_err(SqlError::into_datafusion)?,
            _ => (Vec::new(), ScanMode::default()),
        };
        Ok(Arc::new(KvScanExec::new(
            self.desc.clone(),
            self.ctx.clone(),
            projected,
            schema,
            (bounds, index, cuts),
            limit,
            mode,
        )))
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if op != InsertOp::Append {
            return Err(SqlError::unsupported(format!("INSERT mode {op}")).into_datafusion());
        }
        let checks = match state.as_any().downcast_ref::<SessionState>() {
            Some(s) => Checks::compile(s, &self.desc).map_err(SqlError::into_datafusion)?,
            None if !crate::check::needed(&self.desc) => Checks::compile_none(),
            None => {
                return Err(
                    SqlError::internal("no session state to compile CHECK constraints")
                        .into_datafusion(),
                )
            }
        };
        let upsert = match (
            &self.ctx.on_conflict,
            state.as_any().downcast_ref::<SessionState>(),
        ) {
            (None, _) => None,
            (Some(c), Some(s)) => Some(
                crate::upsert::Upsert::compile(s, &self.desc, c)
                    .map_err(SqlError::into_datafusion)?,
            ),
            (Some(_), None) => {
                return Err(
                    SqlError::internal("no session state to compile ON CONFLICT").into_datafusion(),
                )
            }
        };
        let sink = KvInsertSink {
            upsert,
            checks,
            desc: self.desc.clone(),
            ctx: self.ctx.clone(),
            visible: self.visible.clone(),
            schema: self.schema.clone(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// How a scan reads the engine.
#[derive(Clone, Copy, Debug, Default)]
struct ScanMode {
    /// A large scan: it does not fill the block cache.
    bulk: bool,
    /// Each partition goes through the column cache (a primary-key range scan without
    /// LIMIT).
    cached: bool,
}

/// Which keys a scan reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bounds {
    /// Point gets of these full keys.
    Points(Vec<Vec<u8>>),
    /// Every key in `[start, end)`.
    Range { start: Vec<u8>, end: Vec<u8> },
}

#[derive(Default)]
struct ColConstraint {
    eq: Option<Datum>,
    in_list: Option<Vec<Datum>>,
    lower: Option<(Datum, bool)>,
    upper: Option<(Datum, bool)>,
}

/// `v` as a datum of `ty`, only if the conversion is exact (so bounds never exclude a match).
fn exact_datum(ty: &SqlType, v: &ScalarValue) -> Option<Datum> {
    if v.is_null() {
        return None;
    }
    let cast = v.cast_to(&ty.arrow()).ok()?;
    let back = cast.cast_to(&v.data_type()).ok()?;
    if &back != v {
        return None;
    }
    match ty {
        // Key order of these types differs from their comparison semantics in SQL.
        SqlType::Char(_) | SqlType::Uuid => None,
        _ => datum_from_scalar(ty, &cast).ok().filter(|d| !d.is_null()),
    }
}

fn column_literal<'a>(left: &'a Expr, right: &'a Expr) -> Option<(&'a str, &'a ScalarValue)> {
    match (left, right) {
        (Expr::Column(c), Expr::Literal(v, _)) => Some((c.name.as_str(), v)),
        _ => None,
    }
}

fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

/// The terms of `a OR b OR …`.
fn disjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            disjuncts(left, out);
            disjuncts(right, out);
        }
        other => out.push(other),
    }
}

/// Records what `pred` says about the key columns `cols` (positions into `desc.columns`).
fn constrain(desc: &TableDesc, cols: &[usize], cons: &mut [ColConstraint], pred: &Expr) {
    let pk_pos = |name: &str| cols.iter().position(|&i| desc.columns[i].name == name);
    match pred {
        // DataFusion turns short IN lists into `k = a OR k = b …`: the same points.
        Expr::BinaryExpr(BinaryExpr {
            op: Operator::Or, ..
        }) => {
            let mut target = None;
            let mut vals = Vec::new();
            let mut terms = Vec::new();
            disjuncts(pred, &mut terms);
            for d in terms {
                let Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Eq,
                    right,
                }) = d
                else {
                    return;
                };
                let Some((name, v)) = column_literal(left.as_ref(), right.as_ref())
                    .or_else(|| column_literal(right.as_ref(), left.as_ref()))
                else {
                    return;
                };
                let Some(p) = pk_pos(name) else { return };
                if target.is_some_and(|t| t != p) {
                    return;
                }
                target = Some(p);
                let Some(d) = exact_datum(&desc.columns[cols[p]].ty, v) else {
                    return;
                };
                vals.push(d);
            }
            if let Some(p) = target {
                cons[p].in_list = Some(vals);
            }
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (name, v, op) = match column_literal(left, right) {
                Some((n, v)) => (n, v, *op),
                None => match column_literal(right, left) {
                    Some((n, v)) => (n, v, flip(*op)),
                    None => return,
                },
            };
            let Some(p) = pk_pos(name) else { return };
            let Some(d) = exact_datum(&desc.columns[cols[p]].ty, v) else {
                return;
            };
            let c = &mut cons[p];
            match op {
                Operator::Eq => c.eq = Some(d),
                Operator::Gt => c.lower = Some((d, false)),
                Operator::GtEq => c.lower = Some((d, true)),
                Operator::Lt => c.upper = Some((d, false)),
                Operator::LtEq => c.upper = Some((d, true)),
                _ => {}
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let (Expr::Column(col), Expr::Literal(lo, _), Expr::Literal(hi, _)) =
                (expr.as_ref(), low.as_ref(), high.as_ref())
            else {
                return;
            };
            let Some(p) = pk_pos(&col.name) else { return };
            let ty = &desc.columns[cols[p]].ty;
            if let (Some(l), Some(h)) = (exact_datum(ty, lo), exact_datum(ty, hi)) {
                cons[p].lower = Some((l, true));
                cons[p].upper = Some((h, true));
            }
        }
        Expr::InList(list) if !list.negated => {
            let Expr::Column(col) = list.expr.as_ref() else {
                return;
            };
            let Some(p) = pk_pos(&col.name) else { return };
            let ty = &desc.columns[cols[p]].ty;
            let mut vals = Vec::new();
            for e in &list.list {
                match e {
                    Expr::Literal(v, _) => match exact_datum(ty, v) {
                        Some(d) => vals.push(d),
                        None if v.is_null() => {}
                        None => return,
                    },
                    _ => return,
                }
            }
            cons[p].in_list = Some(vals);
        }
        _ => {}
    }
}

/// The narrowest primary-key bounds the filters allow.
pub fn key_bounds(desc: &TableDesc, filters: &[Expr]) -> SqlResult<Bounds> {
    let space = KeySpace {
        prefix: primary_prefix(desc.id),
        cols: &desc.primary_key,
        nullable: false,
        unique: true,
    };
    Ok(space.bounds(desc, filters)?.0)
}

/// An ordered key space: the primary index or one secondary index.
struct KeySpace<'a> {
    prefix: Vec<u8>,
    cols: &'a [usize],
    /// Index keys mark each column NULL (0x00) or present (0x01).
    nullable: bool,
    /// Equal values on every column name at most one key.
    unique: bool,
}

impl KeySpace<'_> {
    fn push(&self, out: &mut Vec<u8>, d: &Datum) -> SqlResult<()> {
        if self.nullable {
            crate::index::append_index_datum(out, d)
        } else {
            append_key_datum(out, d)
        }
    }

    /// The bounds, and how selective they are (2 per equal column, 1 for a range).
    fn bounds(&self, desc: &TableDesc, filters: &[Expr]) -> SqlResult<(Bounds, usize)> {
        let mut cons: Vec<ColConstraint> =
            self.cols.iter().map(|_| ColConstraint::default()).collect();
        for f in filters {
            for pred in split_conjunction(f) {
                constrain(desc, self.cols, &mut cons, pred);
            }
        }
        let mut prefix = self.prefix.clone();
        let n = cons.len();
        let end_of = |k: &[u8]| keycode::prefix_end(k).unwrap_or_else(|| vec![0xFF; k.len() + 1]);
        for (i, c) in cons.iter().enumerate() {
            if let Some(eq) = &c.eq {
                self.push(&mut prefix, eq)?;
                continue;
            }
            if let (Some(list), true, true) = (&c.in_list, i == n - 1, self.unique) {
                let mut keys = Vec::with_capacity(list.len());
                for d in list {
                    let mut k = prefix.clone();
                    self.push(&mut k, d)?;
                    keys.push(k);
                }
                keys.sort();
                keys.dedup();
                return Ok((Bounds::Points(keys), 2 * n));
            }
            let start = match &c.lower {
                Some((d, incl)) => {
                    let mut k = prefix.clone();
                    self.push(&mut k, d)?;
                    if *incl {
                        k
                    } else {
                        end_of(&k)
                    }
                }
                // Skip the NULL entries of an index when only an upper bound is known.
                None if self.nullable && c.upper.is_some() => {
                    let mut k = prefix.clone();
                    k.push(0x01);
                    k
                }
                None => prefix.clone(),
            };
            let end = match &c.upper {
                Some((d, incl)) => {
                    let mut k = prefix.clone();
                    self.push(&mut k, d)?;
                    if *incl {
                        end_of(&k)
                    } else {
                        k
                    }
                }
                None => end_of(&prefix),
            };
            let score = 2 * i + usize::from(c.lower.is_some() || c.upper.is_some());
            if start >= end {
                return Ok((Bounds::Points(vec![]), score));
            }
            return Ok((Bounds::Range { start, end }, score));
        }
        if self.unique {
            return Ok((Bounds::Points(vec![prefix]), 2 * n));
        }
        let end = end_of(&prefix);
        Ok((Bounds::Range { start: prefix, end }, 2 * n))
    }
}

/// The most selective secondary index for `filters`, if any constrains its first column.
fn choose_index(
    desc: &TableDesc,
    filters: &[Expr],
) -> SqlResult<Option<(Bounds, crate::index::Resolved)>> {
    let mut best: Option<(usize, Bounds, crate::index::Resolved)> = None;
    for ix in TableWriter::new(desc)?
        .indexes
        .into_iter()
        .filter(|ix| ix.desc.is_plain())
    {
        let space = KeySpace {
            prefix: crate::index::index_prefix(desc.id, ix.desc.id),
            cols: &ix.positions,
            nullable: true,
            unique: ix.desc.unique,
        };
        let (bounds, score) = space.bounds(desc, filters)?;
        if score > 0 && best.as_ref().is_none_or(|(s, _, _)| score > *s) {
            best = Some((score, bounds, ix));
        }
    }
    Ok(best.map(|(_, b, ix)| (b, ix)))
}

/// Reads a table's rows at the statement's snapshot.
pub struct KvScanExec {
    desc: Arc<TableDesc>,
    ctx: Arc<StmtCtx>,
    projected: Vec<usize>,
    schema: SchemaRef,
    bounds: Bounds,
    /// Read through this secondary index (`bounds` are then index keys).
    index: Option<crate::index::Resolved>,
    /// Keys inside a `Bounds::Range` that cut it into partitions (scanned in parallel).
    cuts: Vec<Vec<u8>>,
    limit: Option<usize>,
    mode: ScanMode,
    props: Arc<PlanProperties>,
}

impl fmt::Debug for KvScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KvScanExec({})", self.desc.name)
    }
}

/// The order a primary-key range scan emits rows in, within each partition: ascending by
/// the key columns, as far as they are projected in key order and their key encoding sorts
/// as Arrow compares their values (integers, dates, text compared bytewise). Declaring it
/// lets DataFusion drop a sort on the key (`ORDER BY pk [LIMIT n]`) or merge the partitions
/// instead of sorting them. Key columns are never NULL.
fn key_ordering(
    desc: &TableDesc,
    projected: &[usize],
    schema: &SchemaRef,
) -> Vec<datafusion::physical_expr::PhysicalSortExpr> {
    use datafusion::arrow::compute::SortOptions;
    use datafusion::physical_expr::expressions::Column;
    let mut ordering = Vec::new();
    for &k in &desc.primary_key {
        let sorts_as_encoded = matches!(
            desc.columns[k].ty,
            SqlType::Int2 | SqlType::Int4 | SqlType::Int8 | SqlType::Date | SqlType::Text
        );
        let Some(pos) = projected.iter().position(|&p| p == k) else {
            break;
        };
        if !sorts_as_encoded {
            break;
        }
        let column = Arc::new(Column::new(schema.field(pos).name(), pos));
        ordering.push(datafusion::physical_expr::PhysicalSortExpr::new(
            column,
            SortOptions {
                descending: false,
                nulls_first: false,
            },
        ));
    }
    ordering
}

impl KvScanExec {
    fn new(
        desc: Arc<TableDesc>,
        ctx: Arc<StmtCtx>,
        projected: Vec<usize>,
        schema: SchemaRef,
        (bounds, index, cuts): (Bounds, Option<crate::index::Resolved>, Vec<Vec<u8>>),
        limit: Option<usize>,
        mode: ScanMode,
    ) -> Self {
        assert!(
            cuts.is_empty()
                || matches!(&bounds, Bounds::Range { start, end } if cuts.first() > Some(start) && cuts.last() < Some(end) && cuts.windows(2).all(|w| w[0] < w[1])),
            "partition cuts ascend strictly inside a key range"
        );
        let ordering = match (&bounds, &index) {
            (Bounds::Range { .. }, None) => key_ordering(&desc, &projected, &schema),
            _ => Vec::new(),
        };
        let eq = match ordering.is_empty() {
            true => EquivalenceProperties::new(schema.clone()),
            false => EquivalenceProperties::new_with_orderings(schema.clone(), [ordering]),
        };
        let props = Arc::new(PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(cuts.len() + 1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            desc,
            ctx,
            projected,
            schema,
            bounds,
            index,
            cuts,
            limit,
            mode,
            props,
        }
    }

    fn partitions(&self) -> usize {
        self.cuts.len() + 1
    }

    fn describe_bounds(&self) -> String {
        let prefix = match &self.index {
            Some(ix) => crate::index::index_prefix(self.desc.id, ix.desc.id).len(),
            None => primary_prefix(self.desc.id).len(),
        };
        let hex = |k: &[u8]| {
            k.get(prefix..)
                .unwrap_or_default()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        match &self.bounds {
            Bounds::Points(keys) if keys.len() == 1 && keys[0].len() == prefix => "full".into(),
            Bounds::Points(keys) => format!(
                "point get x{} [{}]",
                keys.len(),
                keys.iter().map(|k| hex(k)).collect::<Vec<_>>().join(", ")
            ),
            Bounds::Range { start, end } if start.len() == prefix && end.len() == prefix => {
                "full".into()
            }
            Bounds::Range { start, end } => format!("key range [/{} , /{})", hex(start), hex(end)),
        }
    }
}

impl DisplayAs for KvScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let cols: Vec<&str> = self
            .projected
            .iter()
            .map(|&i| self.desc.columns[i].name.as_str())
            .collect();
        let via = match &self.index {
            Some(ix) => format!("index {} ", ix.desc.name),
            None => String::new(),
        };
        write!(
            f,
            "KvScanExec: table={}, scan={via}{}, projection=[{}]",
            self.desc.name,
            self.describe_bounds(),
            cols.join(", ")
        )?;
        if let Some(l) = self.limit {
            write!(f, ", limit={l}")?;
        }
        if self.partitions() > 1 {
            write!(f, ", partitions={}", self.partitions())?;
        }
        Ok(())
    }
}

impl ExecutionPlan for KvScanExec {
    fn name(&self) -> &'static str {
        "KvScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition >= self.partitions() {
            return Err(DataFusionError::Internal(format!(
                "KvScanExec has {} partitions, not {partition}",
                self.partitions()
            )));
        }
        let batch_rows = context
            .session_config()
            .batch_size()
            .clamp(1, self.ctx.limits.scan_batch_rows_max);
        let cursor = match &self.bounds {
            Bounds::Points(keys) => Cursor::Points(keys.clone()),
            Bounds::Range { start, end } => Cursor::Range {
                next: Some(match partition {
                    0 => start.clone(),
                    p => self.cuts[p - 1].clone(),
                }),
                end: self.cuts.get(partition).unwrap_or(end).clone(),
            },
        };
        let probe = match (&cursor, self.mode.cached, &self.index, self.limit) {
            (
                Cursor::Range {
                    next: Some(from),
                    end,
                },
                true,
                None,
                None,
            ) => Some((from.clone(), end.clone())),
            _ => None,
        };
        let state = ScanState {
            desc: self.desc.clone(),
            ctx: self.ctx.clone(),
            decoded: self.projected.clone(),
            projected: self.projected.len(),
            schema: self.schema.clone(),
            cursor,
            via_index: self.index.is_some(),
            bulk: self.mode.bulk,
            remaining: self.limit.unwrap_or(usize::MAX),
            batch_rows,
            probe,
            fill: None,
        };
        let stream = futures::stream::try_unfold(state, |mut st| async move {
            match st.next_batch().await.map_err(SqlError::into_datafusion)? {
                Some(b) => Ok(Some((b, st))),
                None => Ok(None),
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

enum Cursor {
    Points(Vec<Vec<u8>>),
    Range {
        next: Option<Vec<u8>>,
        end: Vec<u8>,
    },
    /// Rows from the column cache: the projection's arrays, handed out in slices.
    Cached {
        arrays: Vec<ArrayRef>,
        rows: usize,
        offset: usize,
    },
    Done,
}

/// A partition scan that keeps what it decodes, to fill the column cache at its end.
struct CacheFill {
    cache: Arc<crate::column_cache::ColumnCache>,
    /// The partition's key span.
    span: (Vec<u8>, Vec<u8>),
    /// The span's stamp before the scan.
    stamp: kestrel_kv::SpanStamp,
    /// The snapshot the scan reads at.
    read_ts: kestrel_kv::Ts,
    /// Every decoded column's arrays so far, batch by batch.
    kept: Vec<Vec<ArrayRef>>,
    /// The values' bytes of `kept`, reserved in the cache (see `ColumnCache::reserve`).
    kept_bytes: usize,
    stats: kestrel_kv::ScanStats,
}

impl CacheFill {
    /// Whether the rows scanned so far can still become an entry.
    fn viable(&self, kv: &kestrel_kv::Kv) -> bool {
        !self.stats.own_writes
            && self.stats.newest <= self.read_ts
            && kv.span_stamp(&self.span.0, &self.span.1) == self.stamp
    }
}

impl Drop for CacheFill {
    fn drop(&mut self) {
        self.cache.release(self.kept_bytes);
    }
}

struct ScanState {
    desc: Arc<TableDesc>,
    ctx: Arc<StmtCtx>,
    /// The columns decoded (positions in `desc.columns`): the projection first, then the
    /// columns a cache fill adds.
    decoded: Vec<usize>,
    /// How many of `decoded` the scan returns.
    projected: usize,
    schema: SchemaRef,
    cursor: Cursor,
    /// The cursor reads index entries, whose values are primary keys.
    via_index: bool,
    /// See `KvScanExec::bulk`.
    bulk: bool,
    remaining: usize,
    batch_rows: usize,
    /// The partition's span, to look up in the column cache before the first batch.
    probe: Option<(Vec<u8>, Vec<u8>)>,
    fill: Option<CacheFill>,
}

impl ScanState {
    async fn next_batch(&mut self) -> SqlResult<Option<RecordBatch>> {
        if let Some(span) = self.probe.take() {
            self.probe_cache(span).await?;
        }
        loop {
            if self.remaining == 0 {
                return Ok(None);
            }
            let pairs = match std::mem::replace(&mut self.cursor, Cursor::Done) {
                Cursor::Done => return Ok(None),
                Cursor::Cached {
                    arrays,
                    rows,
                    offset,
                } => {
                    if offset >= rows {
                        return Ok(None);
                    }
                    let n = self.batch_rows.min(rows - offset);
                    let slices = arrays.iter().map(|a| a.slice(offset, n)).collect();
                    self.cursor = Cursor::Cached {
                        arrays,
                        rows,
                        offset: offset + n,
                    };
                    return self.batch_of(slices, n).map(Some);
                }
                Cursor::Points(keys) => {
                    let txn = self.ctx.txn.read().await;
                    let mut out = Vec::new();
                    for k in keys {
                        if let Some(v) = txn.get(&k).await? {
                            out.push((k, v));
                        }
                    }
                    out
                }
                Cursor::Range { next: None, .. } => return Ok(None),
                Cursor::Range {
                    next: Some(from),
                    end,
                } if !self.via_index => match self.decode_range(&from, end).await? {
                    Some(batch) => return Ok(Some(batch)),
                    None => continue,
                },
                Cursor::Range {
                    next: Some(from),
                    end,
                } => {
                    let want = self.batch_rows.min(self.remaining);
                    let (rows, resume) = self
                        .ctx
                        .txn
                        .read()
                        .await
                        .scan(&from, Some(&end), want)
                        .await?;
                    self.cursor = Cursor::Range { next: resume, end };
                    rows
                }
            };
            let pairs = if self.via_index {
                self.rows_of_entries(pairs).await?
            } else {
                pairs
            };
            if pairs.is_empty() {
                continue;
            }
            let take = pairs.len().min(self.remaining);
            self.remaining -= take;
            return self.decode(&pairs[..take]).map(Some);
        }
    }

    /// The rows index entries point at.
    async fn rows_of_entries(
        &self,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> SqlResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = primary_prefix(self.desc.id);
        let txn = self.ctx.txn.read().await;
        let mut out = Vec::with_capacity(entries.len());
        for (_, pk) in entries {
            let mut key = prefix.clone();
            key.extend_from_slice(&pk);
            match txn.get(&key).await? {
                Some(v) => out.push((key, v)),
                None => {
                    return Err(SqlError::internal(format!(
                        "index entry of table {} points at a missing row",
                        self.desc.name
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Looks the partition up in the column cache: a hit turns the cursor into slices of the
    /// cached arrays; otherwise the scan reads the engine and, if it may fill the cache,
    /// also decodes the table's narrow columns the entry lacks (see `column_cache.rs`).
    async fn probe_cache(&mut self, span: (Vec<u8>, Vec<u8>)) -> SqlResult<()> {
        let txn = self.ctx.txn.read().await;
        let Some(stamp) = txn.stamp_span(&span.0, &span.1).await? else {
            return Ok(()); // own writes in the span
        };
        let column = |i: usize| {
            let c = &self.desc.columns[i];
            (c.id, c.ty.clone())
        };
        let want: Vec<_> = self.decoded.iter().map(|&i| column(i)).collect();
        let cache = self.ctx.column_cache.clone();
        let have = match cache.lookup(&span, &stamp, txn.read_ts(), &want) {
            Lookup::Hit(arrays, rows) => {
                txn.note_span_read(&span.0, &span.1);
                self.cursor = Cursor::Cached {
                    arrays,
                    rows,
                    offset: 0,
                };
                return Ok(());
            }
            Lookup::Partial(have) => have,
            Lookup::Miss => Vec::new(),
        };
        let extra: Vec<usize> = (0..self.desc.columns.len())
            .filter(|&i| {
                crate::column_cache::is_narrow(&self.desc.columns[i].ty)
                    && !self.decoded.contains(&i)
                    && !have.contains(&column(i))
            })
            .collect();
        let read_ts = txn.read_ts();
        drop(txn);
        self.decoded.extend(extra);
        self.fill = Some(CacheFill {
            cache,
            span,
            stamp,
            read_ts,
            kept: vec![Vec::new(); self.decoded.len()],
            kept_bytes: 0,
            stats: Default::default(),
        });
        Ok(())
    }

    /// Stops filling the cache (the scan goes on decoding its projection only).
    fn abandon_fill(&mut self) {
        self.fill = None;
        self.decoded.truncate(self.projected);
    }

    /// Keeps a decoded batch's arrays for the cache while the fill can still succeed and
    /// the cache grants the memory.
    fn keep(&mut self, arrays: &[ArrayRef], stats: kestrel_kv::ScanStats) {
        let Some(fill) = self.fill.as_mut() else {
            return;
        };
        fill.stats.newest = fill.stats.newest.max(stats.newest);
        fill.stats.own_writes |= stats.own_writes;
        // The values' bytes (a batch's builders have spare capacity; the cached arrays,
        // compacted, do not).
        let bytes = arrays
            .iter()
            .map(|a| {
                a.to_data()
                    .get_slice_memory_size()
                    .unwrap_or(usize::MAX / 4)
            })
            .sum::<usize>();
        if !fill.viable(&self.ctx.kv) || !fill.cache.reserve(bytes) {
            self.abandon_fill();
            return;
        }
        fill.kept_bytes += bytes;
        for (kept, a) in fill.kept.iter_mut().zip(arrays) {
            kept.push(a.clone());
        }
    }

    /// At the end of the partition: fills the cache with what the scan kept, if the span
    /// is unchanged since the scan began and the scan saw its newest state.
    fn finish_fill(&mut self) {
        let Some(mut fill) = self.fill.take() else {
            return;
        };
        if !fill.viable(&self.ctx.kv) || fill.kept.first().is_none_or(Vec::is_empty) {
            return;
        }
        let mut columns = Vec::with_capacity(self.decoded.len());
        // One column at a time, dropping its chunks once copied: the peak is the entry
        // plus one column's chunks.
        for (&i, chunks) in self.decoded.iter().zip(std::mem::take(&mut fill.kept)) {
            match compact(&chunks) {
                Ok(array) => {
                    let c = &self.desc.columns[i];
                    columns.push((c.id, c.ty.clone(), array));
                }
                Err(e) => {
                    tracing::warn!("column cache: not keeping a scan's columns: {e}");
                    return;
                }
            }
        }
        let rows = columns[0].2.len();
        let (span, stamp, newest) = (
            std::mem::take(&mut fill.span),
            fill.stamp.clone(),
            fill.stats.newest,
        );
        fill.cache.fill(span, stamp, newest, rows, columns);
    }

    /// The next batch of rows of `[from, end)`, decoded as the engine lends them (no copy of
    /// the pairs); advances the cursor. `None`: no row in this step (the cursor may go on).
    async fn decode_range(&mut self, from: &[u8], end: Vec<u8>) -> SqlResult<Option<RecordBatch>> {
        let want = self.batch_rows.min(self.remaining);
        let mut decoder = BatchDecoder::new(&self.desc, &self.decoded, want);
        let mut failed = None;
        let mut stats = kestrel_kv::ScanStats::default();
        let resume = self
            .ctx
            .txn
            .read()
            .await
            .scan_visit_stats(
                from,
                Some(&end),
                want,
                self.bulk,
                &mut |k, v| match decoder.push(k, v) {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                },
                &mut stats,
            )
            .await?;
        if let Some(e) = failed {
            return Err(e);
        }
        let done = resume.is_none();
        self.cursor = Cursor::Range { next: resume, end };
        let rows = decoder.rows();
        let arrays = if rows > 0 {
            let arrays = decoder.finish()?;
            self.keep(&arrays, stats);
            Some(arrays)
        } else {
            if let Some(fill) = self.fill.as_mut() {
                fill.stats.newest = fill.stats.newest.max(stats.newest);
                fill.stats.own_writes |= stats.own_writes;
            }
            None
        };
        if done {
            self.finish_fill();
        }
        let Some(mut arrays) = arrays else {
            return Ok(None);
        };
        self.remaining -= rows.min(self.remaining);
        arrays.truncate(self.projected);
        self.batch_of(arrays, rows).map(Some)
    }

    fn decode(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> SqlResult<RecordBatch> {
        let mut decoder = BatchDecoder::new(&self.desc, &self.decoded, pairs.len());
        for (k, v) in pairs {
            decoder.push(k, v)?;
        }
        let rows = decoder.rows();
        let mut arrays = decoder.finish()?;
        arrays.truncate(self.projected);
        self.batch_of(arrays, rows)
    }

    fn batch_of(&self, arrays: Vec<ArrayRef>, rows: usize) -> SqlResult<RecordBatch> {
        let opts = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &opts)
            .map_err(|e| SqlError::internal(format!("building a scan batch: {e}")))
    }
}

/// `chunks` as one array of exactly their values' size (a batch's builders leave spare
/// capacity, which a cached array would hold for its life).
fn compact(chunks: &[ArrayRef]) -> SqlResult<ArrayRef> {
    use datafusion::arrow::array::{make_array, Array, MutableArrayData};
    if chunks.len() > 1 {
        // Allocates exactly the values it copies.
        let parts: Vec<&dyn Array> = chunks.iter().map(|a| a.as_ref()).collect();
        return datafusion::arrow::compute::concat(&parts)
            .map_err(|e| SqlError::internal(format!("caching a scan's columns: {e}")));
    }
    let data: Vec<_> = chunks.iter().map(|a| a.to_data()).collect();
    let rows = data.iter().map(|d| d.len()).sum();
    let mut out = MutableArrayData::new(data.iter().collect(), false, rows);
    for (i, d) in data.iter().enumerate() {
        out.try_extend(i, 0, d.len())
            .map_err(|e| SqlError::internal(format!("caching a scan's columns: {e}")))?;
    }
    Ok(make_array(out.freeze()))
}

/// Checks a full row against the table's constraints and normalizes it (char padding).
pub fn validate_row(desc: &TableDesc, row: &mut [Datum]) -> SqlResult<()> {
    for (i, col) in desc.columns.iter().enumerate() {
        if row[i].is_null() {
            if !col.nullable {
                return Err(SqlError::new(
                    code::NOT_NULL_VIOLATION,
                    format!("null value in column \"{}\" of relation \"{}\" violates not-null constraint", col.name, desc.name),
                ));
            }
            continue;
        }
        match (&col.ty, &mut row[i]) {
            (SqlType::Varchar(Some(n)), Datum::Text(s)) => {
                fit_length(s, *n as usize, "character varying", false)?
            }
            (SqlType::Char(n), Datum::Text(s)) => fit_length(s, *n as usize, "character", true)?,
            (SqlType::Jsonb, Datum::Text(s)) => *s = crate::json::jsonb_in(s)?,
            (SqlType::Json, Datum::Text(s)) => {
                crate::json::json_in(s)?;
            }
            (SqlType::Numeric { precision, .. }, Datum::Decimal(v))
                if v.unsigned_abs() >= 10u128.pow(*precision as u32) =>
            {
                return Err(SqlError::new(
                    code::NUMERIC_VALUE_OUT_OF_RANGE,
                    "numeric field overflow",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// PostgreSQL's rule: too long is an error unless only trailing spaces are cut.
fn fit_length(s: &mut String, n: usize, type_name: &str, pad: bool) -> SqlResult<()> {
    let len = s.chars().count();
    if len > n {
        let (keep, cut): (String, String) =
            (s.chars().take(n).collect(), s.chars().skip(n).collect());
        if cut.chars().any(|c| c != ' ') {
            return Err(SqlError::new(
                code::STRING_DATA_RIGHT_TRUNCATION,
                format!("value too long for type {type_name}({n})"),
            ));
        }
        *s = keep;
    } else if pad && len < n {
        s.extend(std::iter::repeat_n(' ', n - len));
    }
    Ok(())
}

/// The error PostgreSQL reports for a primary-key collision.
pub fn duplicate_key_error(desc: &TableDesc, row: &[Datum]) -> SqlError {
    let cols: Vec<&str> = desc
        .primary_key
        .iter()
        .map(|&i| desc.columns[i].name.as_str())
        .collect();
    let vals: Vec<String> = desc
        .primary_key
        .iter()
        .map(|&i| row[i].display(&desc.columns[i].ty))
        .collect();
    SqlError::new(
        code::UNIQUE_VIOLATION,
        format!(
            "duplicate key value violates unique constraint \"{}\"",
            desc.pkey_name()
        ),
    )
    .with_detail(format!(
        "Key ({})=({}) already exists.",
        cols.join(", "),
        vals.join(", ")
    ))
}

/// Writes the rows of an INSERT into the statement's transaction.
struct KvInsertSink {
    upsert: Option<crate::upsert::Upsert>,
    checks: Checks,
    desc: Arc<TableDesc>,
    ctx: Arc<StmtCtx>,
    visible: Vec<usize>,
    schema: SchemaRef,
}

impl fmt::Debug for KvInsertSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KvInsertSink({})", self.desc.name)
    }
}

impl DisplayAs for KvInsertSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "KvInsertSink: table={}", self.desc.name)
    }
}

#[async_trait]
impl DataSink for KvInsertSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        // Rows are collected first and written when the input is exhausted, so an
        // `INSERT INTO t SELECT … FROM t` never reads its own new rows.
        let mut rows: Vec<Vec<Datum>> = Vec::new();
        let mut seen = HashSet::new();
        while let Some(batch) = data.next().await {
            let batch = batch?;
            self.collect_batch(&batch, &mut rows, &mut seen)
                .await
                .map_err(SqlError::into_datafusion)?;
        }
        let mut txn = self.ctx.txn.write().await;
        if let Some(up) = &self.upsert {
            let written = up
                .run(&mut txn, &self.desc, &self.checks, rows, &self.ctx.fk)
                .await
                .map_err(SqlError::into_datafusion)?;
            let n = written.len() as u64;
            self.ctx.capture(written);
            return Ok(n);
        }
        let n = rows.len() as u64;
        let writer = TableWriter::new(&self.desc).map_err(SqlError::into_datafusion)?;
        for row in &rows {
            writer
                .insert_row(&mut txn, &self.desc, row)
                .await
                .map_err(SqlError::into_datafusion)?;
        }
        self.ctx.fk.inserted(&self.desc, &rows);
        Ok(n)
    }
}

impl KvInsertSink {
    async fn collect_batch(
        &self,
        batch: &RecordBatch,
        rows: &mut Vec<Vec<Datum>>,
        seen: &mut HashSet<Vec<u8>>,
    ) -> SqlResult<()> {
        let ncols = self.desc.columns.len();
        let mut columns: Vec<Vec<Datum>> = Vec::with_capacity(self.visible.len());
        for (j, &i) in self.visible.iter().enumerate() {
            columns.push(datums_from_array(
                &self.desc.columns[i].ty,
                batch.column(j),
            )?);
        }
        let max = self.ctx.limits.statement_rows_max;
        let first = rows.len();
        for r in 0..batch.num_rows() {
            let mut row = vec![Datum::Null; ncols];
            for (j, &i) in self.visible.iter().enumerate() {
                row[i] = std::mem::replace(&mut columns[j][r], Datum::Null);
            }
            for (i, c) in self.desc.columns.iter().enumerate() {
                if c.hidden && row[i].is_null() {
                    row[i] = Datum::I64(self.ctx.kv.unique_id());
                }
            }
            self.checks
                .generate(&self.desc, std::slice::from_mut(&mut row))?;
            validate_row(&self.desc, &mut row)?;
            if self.upsert.is_none() {
                let key = encode_key(&self.desc, &row)?;
                if !seen.insert(key.clone()) || self.ctx.txn.read().await.get(&key).await?.is_some()
                {
                    return Err(duplicate_key_error(&self.desc, &row));
                }
            }
            rows.push(row);
            if rows.len() > max {
                return Err(SqlError::new(
                    code::PROGRAM_LIMIT_EXCEEDED,
                    format!("statement writes more than statement_rows_max = {max} rows"),
                ));
            }
        }
        if self.upsert.is_none() {
            self.checks.verify(&self.desc, &rows[first..])?;
            self.ctx.capture(rows[first..].iter().cloned());
        }
        Ok(())
    }
}
