//! The primary-key point read: `SELECT a, b FROM t WHERE k = $1` without DataFusion.
//!
//! Planning such a statement with DataFusion (SQL to plan, analyzer and optimizer, physical
//! plan) costs far more than reading the row: about 1.5 ms of CPU against a RocksDB lookup of
//! a few microseconds. A statement of exactly this shape — plain column names, one base table
//! in `public`, the single-column primary key compared for equality with a parameter — is
//! recognised on its syntax tree and answered with transactional point gets (the database
//! and table descriptors, the absence of a view of that name, the row).
//!
//! It stays a transaction's read in every respect: the database and table descriptors and the
//! row are read through the statement's [`Txn`] at its snapshot (so SERIALIZABLE validates
//! them at commit, and DDL on the table conflicts), and the result has the schema DataFusion
//! would give it (the table's own column fields). Anything else — another shape, a view, a
//! hidden column, a parameter of another type than the key, a `search_path` other than
//! `public` — returns `None` and takes the general path, which also reports every error.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::common::ScalarValue;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, Expr, Ident, ObjectNamePart, SelectItem, SetExpr, TableFactor, Value,
};

use kestrel_kv::Txn;

use crate::catalog;
use crate::datum::{array_from_datums, Datum};
use crate::error::{SqlError, SqlResult};
use crate::rowcodec::{decode_row, encode_key};
use crate::types::SqlType;

/// A recognised point read: column names and table name as PostgreSQL folds them.
#[derive(Debug, PartialEq, Eq)]
pub struct PointSelect {
    pub columns: Vec<String>,
    pub table: String,
    pub key_column: String,
    /// 0-based index of the parameter compared with the key.
    pub param: usize,
}

/// An identifier as PostgreSQL (and DataFusion) folds it: unquoted ones to ASCII lower case.
pub(crate) fn fold(id: &Ident) -> String {
    match id.quote_style {
        Some(_) => id.value.clone(),
        None => id.value.to_ascii_lowercase(),
    }
}

/// A column reference the point path may read: not a parenthesis-less function call such as
/// `current_schema`, which the general path rewrites into the function.
pub(crate) fn column_ident(id: &Ident) -> bool {
    id.quote_style.is_some() || !crate::pgcompat::NILADIC.contains(&fold(id).as_str())
}

/// The table `name` names if it is `t` or `public.t` (folded), else `None`.
pub(crate) fn public_table(name: &ast::ObjectName) -> Option<String> {
    let parts: Vec<&Ident> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => Some(id),
            _ => None,
        })
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [t] => Some(fold(t)),
        [s, t] if fold(s) == "public" => Some(fold(t)),
        _ => None,
    }
}

/// The 0-based index of a `$n` placeholder (`$0` and other spellings are not one).
fn placeholder_index(p: &str) -> Option<usize> {
    let n: usize = p.strip_prefix('$')?.parse().ok()?;
    n.checked_sub(1)
}

/// The 0-based parameter index if `e` is exactly a `$n` placeholder.
pub(crate) fn param_of(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => placeholder_index(p),
            _ => None,
        },
        _ => None,
    }
}

/// `(key column, parameter index)` if `e` is `k = $n` or `$n = k` for a plain column `k`.
pub(crate) fn key_equals_param(e: &Expr) -> Option<(String, usize)> {
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    } = e
    else {
        return None;
    };
    let (key, other) = match (left.as_ref(), right.as_ref()) {
        (Expr::Identifier(k), other) | (other, Expr::Identifier(k)) => (k, other),
        _ => return None,
    };
    column_ident(key).then_some(())?;
    Some((fold(key), param_of(other)?))
}

/// A FROM item that is one table without alias or joins: its name as written, and the
/// table it names in `public` (see [`public_table`]).
pub(crate) fn lone_table(t: &ast::TableWithJoins) -> Option<(&ast::ObjectName, String)> {
    if !t.joins.is_empty() {
        return None;
    }
    let TableFactor::Table {
        name, alias: None, ..
    } = &t.relation
    else {
        return None;
    };
    Some((name, public_table(name)?))
}

/// The base table `name` of `public` in database `db_name`, read through `txn`; `None` when
/// the name could mean something else (a `pg_*` catalog relation) or names no table (a view,
/// or nothing), so the general path resolves it and reports any error.
pub(crate) async fn resolve_table(
    txn: &Txn,
    db_name: &str,
    name: &str,
) -> SqlResult<Option<catalog::TableDesc>> {
    // Unqualified `pg_*` names resolve to pg_catalog first.
    if name.starts_with("pg_") {
        return Ok(None);
    }
    let Some(db) = catalog::get_database(txn, db_name).await? else {
        return Ok(None);
    };
    // No view is looked up: tables and views share one namespace (CREATE TABLE, CREATE VIEW
    // and ALTER TABLE … RENAME refuse a taken name), so a table found here is what the name
    // means.
    catalog::get_table(txn, db.id, "public", name).await
}

/// The position of `desc`'s single, visible primary-key column if it is named `name`.
pub(crate) fn single_key(desc: &catalog::TableDesc, name: &str) -> Option<usize> {
    let [key_pos] = desc.primary_key.as_slice() else {
        return None;
    };
    let c = &desc.columns[*key_pos];
    (!c.hidden && c.name == name).then_some(*key_pos)
}

/// `stmt` if it is exactly `SELECT c1, … FROM [public.]t WHERE k = $n` (either operand order).
pub fn recognize(stmt: &DFStatement) -> Option<PointSelect> {
    let DFStatement::Statement(s) = stmt else {
        return None;
    };
    let ast::Statement::Query(q) = s.as_ref() else {
        return None;
    };
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    let mut columns = Vec::with_capacity(sel.projection.len());
    let mut shown = Vec::with_capacity(sel.projection.len());
    for item in &sel.projection {
        let SelectItem::UnnamedExpr(Expr::Identifier(id)) = item else {
            return None;
        };
        if !column_ident(id) {
            return None;
        }
        columns.push(fold(id));
        shown.push(id.to_string());
    }
    let [from] = sel.from.as_slice() else {
        return None;
    };
    let (name, table) = lone_table(from)?;
    let (key, param) = key_equals_param(sel.selection.as_ref()?)?;
    // Nothing else may be attached (LIMIT, ORDER BY, FOR UPDATE, DISTINCT, a WITH …): the
    // statement must print exactly as the shape it was recognised as.
    let canonical = format!(
        "SELECT {} FROM {} WHERE {}",
        shown.join(", "),
        name,
        sel.selection.as_ref()?
    );
    if stmt.to_string() != canonical {
        return None;
    }
    Some(PointSelect {
        columns,
        table,
        key_column: key,
        param,
    })
}

/// The key value `v` as a datum of the key's type, if the parameter has exactly that type.
pub(crate) fn key_datum(ty: &SqlType, v: &ScalarValue) -> Option<Datum> {
    match (ty, v.clone()) {
        (SqlType::Int2, ScalarValue::Int16(Some(x))) => Some(Datum::I16(x)),
        (SqlType::Int4, ScalarValue::Int32(Some(x))) => Some(Datum::I32(x)),
        (SqlType::Int8, ScalarValue::Int64(Some(x))) => Some(Datum::I64(x)),
        (SqlType::Text, ScalarValue::Utf8(Some(s))) => Some(Datum::Text(s)),
        _ => None,
    }
}

/// Runs `p` in `txn` for database `db_name`; `None` if the general path must run it.
pub async fn execute(
    p: &PointSelect,
    txn: &Txn,
    db_name: &str,
    params: &[ScalarValue],
) -> SqlResult<Option<(Arc<Schema>, RecordBatch)>> {
    let Some(value) = params.get(p.param) else {
        return Ok(None);
    };
    let Some(desc) = resolve_table(txn, db_name, &p.table).await? else {
        return Ok(None);
    };
    let Some(key_pos) = single_key(&desc, &p.key_column) else {
        return Ok(None);
    };
    let key_col = &desc.columns[key_pos];
    let mut positions = Vec::with_capacity(p.columns.len());
    for name in &p.columns {
        match desc.column(name) {
            Some((i, c)) if !c.hidden => positions.push(i),
            _ => return Ok(None),
        }
    }
    let Some(key_value) = key_datum(&key_col.ty, value) else {
        return Ok(None);
    };
    let mut row = vec![Datum::Null; desc.columns.len()];
    row[key_pos] = key_value;
    let key = encode_key(&desc, &row)?;
    let found = match txn.get(&key).await? {
        Some(v) => Some(decode_row(&desc, &key, &v)?),
        None => None,
    };
    let fields: Vec<_> = positions
        .iter()
        .map(|&i| desc.columns[i].ty.field(&desc.columns[i].name))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let arrays = positions
        .iter()
        .map(|&i| {
            let vals: Vec<Datum> = found.iter().map(|r| r[i].clone()).collect();
            array_from_datums(&desc.columns[i].ty, &vals)
        })
        .collect::<SqlResult<Vec<_>>>()?;
    let opts = datafusion::arrow::array::RecordBatchOptions::new()
        .with_row_count(Some(usize::from(found.is_some())));
    let batch = RecordBatch::try_new_with_options(schema.clone(), arrays, &opts)
        .map_err(|e| SqlError::internal(format!("building a point-read batch: {e}")))?;
    crate::metrics::METRICS.point_reads.inc();
    Ok(Some((schema, batch)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sql: &str) -> Option<PointSelect> {
        let mut stmts = crate::session::parse(sql).unwrap();
        recognize(&stmts.pop().unwrap())
    }

    #[test]
    fn recognises_only_the_point_shape() {
        assert_eq!(
            rec("SELECT abalance FROM pgbench_accounts WHERE aid = $1"),
            Some(PointSelect {
                columns: vec!["abalance".into()],
                table: "pgbench_accounts".into(),
                key_column: "aid".into(),
                param: 0,
            })
        );
        let p = rec(r#"select A, "B" from public.T where $2 = K"#).unwrap();
        assert_eq!(p.columns, vec!["a".to_string(), "B".to_string()]);
        // Only ASCII letters fold, as in PostgreSQL and DataFusion.
        assert_eq!(
            rec("SELECT É FROM t WHERE k = $1").unwrap().columns,
            vec!["É".to_string()]
        );
        assert!(rec(r#"SELECT "current_schema" FROM t WHERE k = $1"#).is_some());
        assert_eq!(
            (p.table.as_str(), p.key_column.as_str(), p.param),
            ("t", "k", 1)
        );
        for sql in [
            "SELECT a FROM t WHERE k = $1 LIMIT 1",
            "SELECT a FROM t WHERE k = $1 FOR UPDATE",
            "SELECT a FROM t WHERE k = $1 ORDER BY a",
            "SELECT DISTINCT a FROM t WHERE k = $1",
            "SELECT a AS b FROM t WHERE k = $1",
            "SELECT * FROM t WHERE k = $1",
            "SELECT a + 1 FROM t WHERE k = $1",
            "SELECT a FROM t x WHERE k = $1",
            "SELECT a FROM t WHERE k = 1",
            "SELECT a FROM t WHERE k > $1",
            "SELECT a FROM t WHERE k = $1 AND a = $2",
            "SELECT a FROM t, u WHERE k = $1",
            "SELECT a FROM s.t WHERE k = $1",
            "SELECT a FROM t WHERE k = $0",
            "WITH x AS (SELECT 1) SELECT a FROM t WHERE k = $1",
            "SELECT a FROM t WHERE k = $1 UNION SELECT a FROM t WHERE k = $1",
            "SELECT current_schema FROM t WHERE k = $1",
            "SELECT a FROM t WHERE current_role = $1",
        ] {
            assert_eq!(rec(sql), None, "{sql}");
        }
    }
}
