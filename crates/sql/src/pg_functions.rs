//! PostgreSQL's system information and catalog functions (`version()`, `current_schema()`,
//! `format_type`, `pg_get_indexdef`, `pg_table_is_visible` …) as DataFusion scalar UDFs.
//!
//! Session-level functions (user, database, version) are registered once per session; the
//! ones that read the catalog are bound to each statement's [`CatalogInfo`], like the sequence
//! functions. Each is evaluated row by row over [`ScalarValue`]s: they serve catalog queries
//! over a few hundred rows, never data paths.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::error::{code, SqlError};
use crate::pg_catalog::{self, CatalogInfo};

type Body = dyn Fn(&[ScalarValue]) -> Result<ScalarValue, SqlError> + Send + Sync;

/// One function: a name, its argument counts, its result type and a body over one row.
pub struct PgFn {
    name: &'static str,
    signature: Signature,
    ret: DataType,
    /// The result type when it depends on the argument types (`mod`).
    ret_of: Option<fn(&[DataType]) -> DataType>,
    /// The PostgreSQL type tag of the result (`jsonb`), when Arrow's type alone is not it.
    tag: Option<&'static str>,
    body: Arc<Body>,
}

impl std::fmt::Debug for PgFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgFn({})", self.name)
    }
}
impl PartialEq for PgFn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.body, &other.body)
    }
}
impl Eq for PgFn {}
impl std::hash::Hash for PgFn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for PgFn {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.ret_of {
            Some(f) => f(arg_types),
            None => self.ret.clone(),
        })
    }
    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<datafusion::arrow::datatypes::FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let f = Field::new(self.name, self.return_type(&types)?, true);
        Ok(Arc::new(match self.tag {
            Some(tag) => f.with_metadata(crate::types::tag_metadata(tag)),
            None => f,
        }))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let ret = args.return_field.data_type().clone();
        invoke_rowwise(&args, &ret, |row| {
            let v = (self.body)(row).map_err(SqlError::into_datafusion)?;
            if v.is_null() {
                ScalarValue::try_from(&ret)
            } else {
                v.cast_to(&ret)
            }
        })
    }
}

/// Evaluates a function row by row over [`ScalarValue`]s (catalog-sized inputs, not data
/// paths): one call when every argument is a constant, else one per row.
pub fn invoke_rowwise(
    args: &ScalarFunctionArgs,
    ret: &DataType,
    f: impl Fn(&[ScalarValue]) -> DfResult<ScalarValue>,
) -> DfResult<ColumnarValue> {
    let all_scalar = args
        .args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let rows = if all_scalar { 1 } else { args.number_rows };
    let mut out = Vec::with_capacity(rows);
    for i in 0..rows {
        let row = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => Ok(s.clone()),
                ColumnarValue::Array(arr) => ScalarValue::try_from_array(arr, i),
            })
            .collect::<DfResult<Vec<_>>>()?;
        out.push(f(&row)?);
    }
    if all_scalar {
        return Ok(ColumnarValue::Scalar(match out.pop() {
            Some(v) => v,
            None => ScalarValue::try_from(ret)?,
        }));
    }
    if out.is_empty() {
        return Ok(ColumnarValue::Array(
            datafusion::arrow::array::new_empty_array(ret),
        ));
    }
    Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
}

fn udf(
    name: &'static str,
    arities: &[usize],
    ret: DataType,
    volatility: Volatility,
    body: impl Fn(&[ScalarValue]) -> Result<ScalarValue, SqlError> + Send + Sync + 'static,
) -> Arc<ScalarUDF> {
    tagged_udf(name, arities, ret, None, volatility, body)
}

/// A row-wise function taking any argument types in the given counts; `tag` marks a result
/// whose PostgreSQL type Arrow cannot tell (`jsonb`).
pub(crate) fn tagged_udf(
    name: &'static str,
    arities: &[usize],
    ret: DataType,
    tag: Option<&'static str>,
    volatility: Volatility,
    body: impl Fn(&[ScalarValue]) -> Result<ScalarValue, SqlError> + Send + Sync + 'static,
) -> Arc<ScalarUDF> {
    let sigs = arities
        .iter()
        .map(|&n| match n {
            0 => TypeSignature::Nullary,
            n => TypeSignature::Any(n),
        })
        .collect();
    Arc::new(ScalarUDF::from(PgFn {
        name,
        signature: Signature::one_of(sigs, volatility),
        ret,
        ret_of: None,
        tag,
        body: Arc::new(body),
    }))
}

/// An arithmetic function whose result is an integer for integer arguments, else float8.
fn numeric_udf(
    name: &'static str,
    arity: usize,
    body: impl Fn(&[ScalarValue]) -> Result<ScalarValue, SqlError> + Send + Sync + 'static,
) -> Arc<ScalarUDF> {
    fn ret_of(types: &[DataType]) -> DataType {
        if types.iter().all(|t| t.is_integer() || t.is_null()) {
            DataType::Int64
        } else {
            DataType::Float64
        }
    }
    Arc::new(ScalarUDF::from(PgFn {
        name,
        signature: Signature::any(arity, IMMUTABLE),
        ret: DataType::Float64,
        ret_of: Some(ret_of),
        tag: None,
        body: Arc::new(body),
    }))
}

fn division_by_zero() -> SqlError {
    SqlError::new(code::DIVISION_BY_ZERO, "division by zero")
}

/// `mod`, `div`, `sign`: PostgreSQL's integer and numeric arithmetic helpers.
fn arithmetic_udfs() -> Vec<Arc<ScalarUDF>> {
    vec![
        numeric_udf("mod", 2, |a| {
            if let (Some(x), Some(y)) = (int_only(&a[0]), int_only(&a[1])) {
                return match y {
                    0 => Err(division_by_zero()),
                    y => Ok(ScalarValue::Int64(Some(x.wrapping_rem(y)))),
                };
            }
            match (float(&a[0]), float(&a[1])) {
                (Some(_), Some(y)) if y == 0.0 => Err(division_by_zero()),
                (Some(x), Some(y)) => Ok(ScalarValue::Float64(Some(x % y))),
                _ => Ok(ScalarValue::Null),
            }
        }),
        numeric_udf("div", 2, |a| {
            if let (Some(x), Some(y)) = (int_only(&a[0]), int_only(&a[1])) {
                return match y {
                    0 => Err(division_by_zero()),
                    y => Ok(ScalarValue::Int64(Some(x.wrapping_div(y)))),
                };
            }
            match (float(&a[0]), float(&a[1])) {
                (Some(_), Some(y)) if y == 0.0 => Err(division_by_zero()),
                (Some(x), Some(y)) => Ok(ScalarValue::Float64(Some((x / y).trunc()))),
                _ => Ok(ScalarValue::Null),
            }
        }),
        numeric_udf("sign", 1, |a| {
            Ok(ScalarValue::Float64(float(&a[0]).map(|x| {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            })))
        }),
    ]
}

/// An integer argument that is not a float or decimal.
fn int_only(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_) => int(v),
        _ => None,
    }
}

/// An integer argument (oids arrive as integers or as their text).
fn int(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int8(Some(x)) => Some(*x as i64),
        ScalarValue::Int16(Some(x)) => Some(*x as i64),
        ScalarValue::Int32(Some(x)) => Some(*x as i64),
        ScalarValue::Int64(Some(x)) => Some(*x),
        ScalarValue::UInt8(Some(x)) => Some(*x as i64),
        ScalarValue::UInt16(Some(x)) => Some(*x as i64),
        ScalarValue::UInt32(Some(x)) => Some(*x as i64),
        ScalarValue::UInt64(Some(x)) => i64::try_from(*x).ok(),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A text argument (other values as their text; NULL as None).
pub(crate) fn text(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.clone(),
        v if v.is_null() => None,
        v => Some(v.to_string()),
    }
}

fn utf8(s: Option<String>) -> ScalarValue {
    ScalarValue::Utf8(s)
}

const IMMUTABLE: Volatility = Volatility::Immutable;
const STABLE: Volatility = Volatility::Stable;

/// Functions that depend only on the session: registered once per session.
pub fn session_udfs(database: &str, user: &str) -> Vec<Arc<ScalarUDF>> {
    let db = database.to_string();
    let db2 = db.clone();
    let mut out = vec![
        udf("version", &[0], DataType::Utf8, IMMUTABLE, |_| {
            Ok(utf8(Some(format!(
                "PostgreSQL {} on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
                crate::SERVER_VERSION
            ))))
        }),
        udf(
            "current_database",
            &[0],
            DataType::Utf8,
            STABLE,
            move |_| Ok(utf8(Some(db.clone()))),
        ),
        udf("current_catalog", &[0], DataType::Utf8, STABLE, move |_| {
            Ok(utf8(Some(db2.clone())))
        }),
        udf("current_schema", &[0], DataType::Utf8, STABLE, |_| {
            Ok(utf8(Some(crate::catalog::DEFAULT_SCHEMA.into())))
        }),
        udf(
            "current_schemas",
            &[1],
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            STABLE,
            |a| {
                let implicit = matches!(a.first(), Some(ScalarValue::Boolean(Some(true))));
                let mut names = Vec::new();
                if implicit {
                    names.push(ScalarValue::Utf8(Some(pg_catalog::PG_CATALOG.into())));
                }
                names.push(ScalarValue::Utf8(Some(
                    crate::catalog::DEFAULT_SCHEMA.into(),
                )));
                Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                    &names,
                    &DataType::Utf8,
                )))
            },
        ),
        udf(
            "pg_encoding_to_char",
            &[1],
            DataType::Utf8,
            IMMUTABLE,
            |a| {
                Ok(utf8(
                    int(&a[0]).map(|e| if e == 6 { "UTF8" } else { "" }.to_string()),
                ))
            },
        ),
        udf("format_type", &[2], DataType::Utf8, STABLE, |a| {
            let typmod = int(&a[1]).unwrap_or(-1) as i32;
            Ok(utf8(int(&a[0]).map(|oid| {
                pg_catalog::format_type(oid, typmod).unwrap_or_else(|| "???".into())
            })))
        }),
        udf("kestrel_regtype", &[1], DataType::Utf8, STABLE, |a| {
            Ok(utf8(int(&a[0]).map(|oid| {
                pg_catalog::format_type(oid, -1).unwrap_or_else(|| oid.to_string())
            })))
        }),
        udf("pg_get_expr", &[2, 3], DataType::Utf8, STABLE, |a| {
            Ok(utf8(text(&a[0])))
        }),
        udf("shobj_description", &[2], DataType::Utf8, STABLE, |_| {
            Ok(utf8(None))
        }),
        udf(
            "pg_get_statisticsobjdef_columns",
            &[1],
            DataType::Utf8,
            STABLE,
            |_| Ok(utf8(None)),
        ),
        udf(
            "pg_relation_is_publishable",
            &[1],
            DataType::Boolean,
            STABLE,
            |_| Ok(ScalarValue::Boolean(Some(false))),
        ),
        // A table that is not a partition is its own (only) ancestor.
        udf(
            "pg_partition_ancestors",
            &[1],
            DataType::Int64,
            STABLE,
            |a| Ok(ScalarValue::Int64(int(&a[0]))),
        ),
        udf("pg_is_in_recovery", &[0], DataType::Boolean, STABLE, |_| {
            Ok(ScalarValue::Boolean(Some(false)))
        }),
        tagged_udf(
            "kestrel_uuid_in",
            &[1],
            DataType::Utf8,
            Some("uuid"),
            IMMUTABLE,
            |a| {
                Ok(match text(&a[0]) {
                    None => utf8(None),
                    Some(s) => {
                        let u = crate::datum::parse_uuid(&s)?;
                        utf8(Some(uuid::Uuid::from_bytes(u).hyphenated().to_string()))
                    }
                })
            },
        ),
        udf("quote_ident", &[1], DataType::Utf8, IMMUTABLE, |a| {
            Ok(utf8(text(&a[0]).map(|s| pg_catalog::quote_ident(&s))))
        }),
        udf(
            "kestrel_array_prefix",
            &[2],
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            IMMUTABLE,
            |a| {
                let prefix = text(&a[0]).unwrap_or_default();
                let items = match &a[1] {
                    ScalarValue::List(l)
                        if !datafusion::arrow::array::Array::is_null(l.as_ref(), 0) =>
                    {
                        let vals = datafusion::arrow::compute::cast(&l.value(0), &DataType::Utf8)
                            .map_err(|e| SqlError::internal(e.to_string()))?;
                        let vals = vals
                            .as_any()
                            .downcast_ref::<datafusion::arrow::array::StringArray>()
                            .ok_or_else(|| SqlError::internal("array of text"))?;
                        vals.iter()
                            .map(|v| ScalarValue::Utf8(v.map(|v| format!("{prefix}{v}"))))
                            .collect()
                    }
                    _ => Vec::new(),
                };
                Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                    &items,
                    &DataType::Utf8,
                )))
            },
        ),
        udf("kestrel_expandarray", &[1], expand_type(), IMMUTABLE, |a| {
            expand_array(&a[0])
        }),
        udf("num_nulls", &VARIADIC, DataType::Int32, IMMUTABLE, |a| {
            Ok(ScalarValue::Int32(Some(
                a.iter().filter(|v| v.is_null()).count() as i32,
            )))
        }),
        udf("num_nonnulls", &VARIADIC, DataType::Int32, IMMUTABLE, |a| {
            Ok(ScalarValue::Int32(Some(
                a.iter().filter(|v| !v.is_null()).count() as i32,
            )))
        }),
        udf("quote_literal", &[1], DataType::Utf8, IMMUTABLE, |a| {
            Ok(utf8(text(&a[0]).map(|s| quote_literal(&s))))
        }),
        udf("width_bucket", &[4], DataType::Int32, IMMUTABLE, |a| {
            let f = |v: &ScalarValue| float(v);
            let (Some(x), Some(lo), Some(hi), Some(n)) = (f(&a[0]), f(&a[1]), f(&a[2]), int(&a[3]))
            else {
                return Ok(ScalarValue::Int32(None));
            };
            width_bucket(x, lo, hi, n).map(|b| ScalarValue::Int32(Some(b)))
        }),
        udf("array_upper", &[2], DataType::Int32, IMMUTABLE, |a| {
            Ok(ScalarValue::Int32(array_len(&a[0]).filter(|n| *n > 0)))
        }),
        udf("array_lower", &[2], DataType::Int32, IMMUTABLE, |a| {
            Ok(ScalarValue::Int32(
                array_len(&a[0]).filter(|n| *n > 0).map(|_| 1),
            ))
        }),
    ];
    for name in [
        "current_user",
        "session_user",
        "current_role",
        "user",
        "pg_get_userbyid",
    ] {
        let u = user.to_string();
        out.push(udf(name, &[0, 1], DataType::Utf8, STABLE, move |a| {
            // PostgreSQL 15's `public` schema belongs to the pg_database_owner role.
            if a.first().and_then(int) == Some(pg_catalog::ROLE_DATABASE_OWNER) {
                return Ok(utf8(Some("pg_database_owner".into())));
            }
            Ok(utf8(Some(u.clone())))
        }));
    }
    out.extend(arithmetic_udfs());
    let ceiling = datafusion::functions::math::ceil()
        .as_ref()
        .clone()
        .with_aliases(["ceiling"]);
    out.push(Arc::new(ceiling));
    // Every type, function and collation lives in pg_catalog, which is always searched.
    for name in [
        "pg_type_is_visible",
        "pg_function_is_visible",
        "pg_collation_is_visible",
    ] {
        out.push(udf(name, &[1], DataType::Boolean, STABLE, |a| {
            Ok(ScalarValue::Boolean(int(&a[0]).map(|_| true)))
        }));
    }
    // Kestrel has no privileges yet: every client is a superuser.
    for name in [
        "has_table_privilege",
        "has_schema_privilege",
        "has_database_privilege",
        "has_column_privilege",
        "has_sequence_privilege",
        "pg_has_role",
    ] {
        out.push(udf(name, &[2, 3, 4], DataType::Boolean, STABLE, |_| {
            Ok(ScalarValue::Boolean(Some(true)))
        }));
    }
    out
}

fn expand_fields() -> datafusion::arrow::datatypes::Fields {
    datafusion::arrow::datatypes::Fields::from(vec![
        Field::new("x", DataType::Int64, true),
        Field::new("n", DataType::Int32, false),
    ])
}

/// `_pg_expandarray`'s rows: a list of `(x, n)` structs.
fn expand_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(expand_fields()),
        true,
    )))
}

fn expand_array(v: &ScalarValue) -> Result<ScalarValue, SqlError> {
    use datafusion::arrow::array::{Array, Int32Array, Int64Array, StructArray};
    let values: Vec<Option<i64>> = match v {
        ScalarValue::List(l) if !l.is_null(0) => {
            let items = datafusion::arrow::compute::cast(&l.value(0), &DataType::Int64)
                .map_err(|e| SqlError::internal(e.to_string()))?;
            let items = items
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| SqlError::internal("array of integers"))?;
            items.iter().collect()
        }
        _ => Vec::new(),
    };
    let n = Int32Array::from((1..=values.len() as i32).collect::<Vec<_>>());
    let structs = StructArray::try_new(
        expand_fields(),
        vec![Arc::new(Int64Array::from(values)), Arc::new(n)],
        None,
    )
    .map_err(|e| SqlError::internal(e.to_string()))?;
    let list = datafusion::arrow::array::ListArray::try_new(
        Arc::new(Field::new_list_field(
            DataType::Struct(expand_fields()),
            true,
        )),
        datafusion::arrow::buffer::OffsetBuffer::from_lengths([structs.len()]),
        Arc::new(structs),
        None,
    )
    .map_err(|e| SqlError::internal(e.to_string()))?;
    Ok(ScalarValue::List(Arc::new(list)))
}

/// Argument counts a variadic function accepts.
const VARIADIC: [usize; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

fn float(v: &ScalarValue) -> Option<f64> {
    match v {
        ScalarValue::Float32(Some(x)) => Some(*x as f64),
        ScalarValue::Float64(Some(x)) => Some(*x),
        ScalarValue::Decimal128(Some(x), _, s) => Some(*x as f64 / 10f64.powi(*s as i32)),
        v => int(v).map(|i| i as f64),
    }
}

/// `quote_literal`: single quotes doubled; with a backslash, the `E'…'` form.
fn quote_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// PostgreSQL's `width_bucket(x, lo, hi, n)` for `lo < hi` or `lo > hi`.
fn width_bucket(x: f64, lo: f64, hi: f64, n: i64) -> Result<i32, SqlError> {
    let invalid = |m: &str| SqlError::new("2201G", m.to_string());
    if n <= 0 {
        return Err(invalid("count must be greater than zero"));
    }
    if lo == hi || !lo.is_finite() || !hi.is_finite() {
        return Err(invalid("lower bound cannot equal upper bound"));
    }
    let b = if lo < hi {
        if x < lo {
            0
        } else if x >= hi {
            n + 1
        } else {
            ((x - lo) / (hi - lo) * n as f64) as i64 + 1
        }
    } else if x > lo {
        0
    } else if x <= hi {
        n + 1
    } else {
        ((lo - x) / (lo - hi) * n as f64) as i64 + 1
    };
    i32::try_from(b)
        .map_err(|_| SqlError::new(code::NUMERIC_VALUE_OUT_OF_RANGE, "integer out of range"))
}

fn array_len(v: &ScalarValue) -> Option<i32> {
    match v {
        ScalarValue::List(a) if !datafusion::arrow::array::Array::is_null(a.as_ref(), 0) => {
            Some(a.value_length(0))
        }
        _ => None,
    }
}

/// Functions that read the statement's catalog.
pub fn catalog_udfs(info: Arc<CatalogInfo>) -> Vec<Arc<ScalarUDF>> {
    let i1 = info.clone();
    let i2 = info.clone();
    let i3 = info.clone();
    let i4 = info.clone();
    let i5 = info.clone();
    let i6 = info.clone();
    let i7 = info.clone();
    let i8 = info.clone();
    let i9 = info.clone();
    let i10 = info;
    vec![
        // COMMENT ON: relations (catalog pg_class) and their columns.
        udf(
            "obj_description",
            &[1, 2],
            DataType::Utf8,
            STABLE,
            move |a| {
                let class = a.get(1).map(text).unwrap_or(Some("pg_class".into()));
                Ok(utf8(match (int(&a[0]), class.as_deref()) {
                    (Some(oid), Some("pg_class")) => i9.comment(oid, 0),
                    _ => None,
                }))
            },
        ),
        udf("col_description", &[2], DataType::Utf8, STABLE, move |a| {
            Ok(utf8(match (int(&a[0]), int(&a[1])) {
                (Some(oid), Some(n)) if n > 0 => i10.comment(oid, n),
                _ => None,
            }))
        }),
        // The sequence a SERIAL / IDENTITY column draws from, schema-qualified.
        udf(
            "pg_get_serial_sequence",
            &[2],
            DataType::Utf8,
            STABLE,
            move |a| {
                let (Some(table), Some(column)) = (text(&a[0]), text(&a[1])) else {
                    return Ok(utf8(None));
                };
                let rel = i8.rel_by_name(&table)?.ok_or_else(|| {
                    SqlError::new(
                        code::UNDEFINED_TABLE,
                        format!("relation \"{table}\" does not exist"),
                    )
                })?;
                let pg_catalog::RelKind::Table(t) = &rel.kind else {
                    return Ok(utf8(None));
                };
                let col = t.column(&column).map(|(_, c)| c).ok_or_else(|| {
                    SqlError::new(
                        code::UNDEFINED_COLUMN,
                        format!("column \"{column}\" of relation \"{table}\" does not exist"),
                    )
                })?;
                let seq = col
                    .default_expr
                    .as_deref()
                    .and_then(|d| d.split('\'').nth(1))
                    .map(|name| match name.contains('.') {
                        true => name.to_string(),
                        false => format!("{}.{name}", t.schema),
                    });
                Ok(utf8(seq))
            },
        ),
        udf(
            "pg_table_is_visible",
            &[1],
            DataType::Boolean,
            STABLE,
            move |a| {
                Ok(ScalarValue::Boolean(
                    int(&a[0]).map(|oid| i1.rel(oid).is_some_and(|r| i1.visible(r))),
                ))
            },
        ),
        // `x::regclass`: a relation's oid from its name (or from an oid).
        udf(
            "kestrel_regclass",
            &[1],
            DataType::Int64,
            STABLE,
            move |a| {
                if let Some(oid) = int(&a[0]) {
                    return Ok(ScalarValue::Int64(Some(oid)));
                }
                let Some(name) = text(&a[0]) else {
                    return Ok(ScalarValue::Int64(None));
                };
                match i2.rel_by_name(&name)? {
                    Some(r) => Ok(ScalarValue::Int64(Some(r.oid))),
                    None => Err(SqlError::new(
                        code::UNDEFINED_TABLE,
                        format!("relation \"{name}\" does not exist"),
                    )),
                }
            },
        ),
        udf("to_regclass", &[1], DataType::Int64, STABLE, move |a| {
            let name = text(&a[0]).unwrap_or_default();
            Ok(ScalarValue::Int64(
                i3.rel_by_name(&name).ok().flatten().map(|r| r.oid),
            ))
        }),
        udf(
            "kestrel_regnamespace",
            &[1],
            DataType::Utf8,
            STABLE,
            move |a| {
                Ok(utf8(int(&a[0]).map(|oid| {
                    i4.ns_name(oid).unwrap_or_else(|| oid.to_string())
                })))
            },
        ),
        udf(
            "pg_get_indexdef",
            &[1, 3],
            DataType::Utf8,
            STABLE,
            move |a| {
                let column = a.get(1).and_then(int).unwrap_or(0);
                Ok(utf8(
                    int(&a[0])
                        .and_then(|oid| i5.rel(oid))
                        .and_then(|r| i5.indexdef(r, column)),
                ))
            },
        ),
        udf(
            "pg_get_constraintdef",
            &[1, 2],
            DataType::Utf8,
            STABLE,
            move |a| {
                let pretty = matches!(a.get(1), Some(ScalarValue::Boolean(Some(true))));
                Ok(utf8(
                    int(&a[0]).and_then(|oid| i6.constraintdef(oid, pretty)),
                ))
            },
        ),
        udf(
            "pg_get_viewdef",
            &[1, 2],
            DataType::Utf8,
            STABLE,
            move |a| {
                let rel = match int(&a[0]) {
                    Some(oid) => i7.rel(oid),
                    None => text(&a[0]).and_then(|n| i7.rel_by_name(&n).ok().flatten()),
                };
                Ok(utf8(rel.and_then(|r| match &r.kind {
                    pg_catalog::RelKind::View(v) => Some(format!(" {};", v.query)),
                    _ => None,
                })))
            },
        ),
    ]
}
