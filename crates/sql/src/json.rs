//! `json` and `jsonb`: values, operators and functions.
//!
//! Both types are stored and computed as text (Arrow `Utf8`) whose field carries the
//! PostgreSQL type as an Arrow extension name ([`crate::types::EXTENSION_KEY`]), so the wire
//! reports `json`/`jsonb` and a cast to text drops the tag.
//! A `jsonb` value is always in canonical form — keys unique (the last one wins) and sorted
//! by length then bytes, `", "` and `": "` separators — exactly PostgreSQL's output, so equal
//! documents have equal text except for numbers written differently (`1` vs `1.0`), which the
//! comparison functions handle. A `json` value keeps its input text (validated).
//!
//! The operators (`->`, `->>`, `#>`, `#>>`, `@>`, `<@`, `?`, `?|`, `?&`, `||`, `-`, `#-`, and
//! `=`/`<>` between jsonb values) are planned by [`JsonPlanner`], DataFusion's `ExprPlanner`
//! hook, into the scalar functions below whenever an operand is json/jsonb.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ExprSchemable, ScalarUDF, Volatility};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::error::{code, SqlError, SqlResult};

/// Deepest nesting a document may have (arrays and objects).
pub const JSON_DEPTH_MAX: usize = 512;

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number as written (validated).
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

fn invalid(kind: &str, detail: &str) -> SqlError {
    SqlError::new(
        code::INVALID_TEXT_REPRESENTATION,
        format!("invalid input syntax for type {kind}: {detail}"),
    )
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > JSON_DEPTH_MAX {
            return Err(format!(
                "nesting deeper than JSON_DEPTH_MAX = {JSON_DEPTH_MAX}"
            ));
        }
        self.ws();
        match self.s.get(self.i) {
            None => Err("The input string ended unexpectedly.".into()),
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err("Expected string.".into());
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return Err("Expected \":\".".into());
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    fields.push((k, v));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err("Expected \",\" or \"}\".".into()),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err("Expected \",\" or \"]\".".into()),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(c) if *c == b'-' || c.is_ascii_digit() => self.number(),
            Some(_) => Err("Token is invalid.".into()),
        }
    }

    fn word(&mut self, w: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(v)
        } else {
            Err("Token is invalid.".into())
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.i < p.s.len() && p.s[p.i].is_ascii_digit() {
                p.i += 1;
            }
            p.i > s
        };
        if self.s[self.i] == b'-' {
            self.i += 1;
        }
        if !digits(self) {
            return Err("Token is invalid.".into());
        }
        if self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !digits(self) {
                return Err("Token is invalid.".into());
            }
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return Err("Token is invalid.".into());
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
        Ok(Json::Num(text.to_string()))
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err("The input string ended unexpectedly.".into());
            };
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err("The input string ended unexpectedly.".into());
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let ch = self.unicode()?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err("Escape sequence is invalid.".into()),
                    }
                }
                c if c < 0x20 => return Err("Character must be escaped.".into()),
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or("\"\\u\" must be followed by four hexadecimal digits.")?;
        self.i += 4;
        Ok(h)
    }

    fn unicode(&mut self) -> Result<char, String> {
        let hi = self.hex4()?;
        if (0xd800..0xdc00).contains(&hi) {
            if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                return Err("Unicode high surrogate must not follow a high surrogate.".into());
            }
            self.i += 2;
            let lo = self.hex4()?;
            let cp = 0x10000 + ((hi - 0xd800) << 10) + (lo.wrapping_sub(0xdc00) & 0x3ff);
            return char::from_u32(cp).ok_or_else(|| "invalid surrogate pair".to_string());
        }
        if hi == 0 {
            return Err("\\u0000 cannot be converted to text.".into());
        }
        char::from_u32(hi).ok_or_else(|| "invalid unicode escape".to_string())
    }
}

/// Parses JSON text (`kind` names the type in errors: `json` or `jsonb`).
pub fn parse(text: &str, kind: &str) -> SqlResult<Json> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value(0).map_err(|d| invalid(kind, &d))?;
    p.ws();
    if p.i != p.s.len() {
        return Err(invalid(kind, "Expected end of input, but found more."));
    }
    Ok(v)
}

impl Json {
    /// jsonb's canonical form: unique keys (the last wins), sorted by length then bytes.
    pub fn canonical(self) -> Json {
        match self {
            Json::Arr(items) => Json::Arr(items.into_iter().map(Json::canonical).collect()),
            Json::Obj(fields) => {
                let mut out: Vec<(String, Json)> = Vec::with_capacity(fields.len());
                for (k, v) in fields {
                    let v = v.canonical();
                    match out.iter_mut().find(|(ok, _)| *ok == k) {
                        Some(slot) => slot.1 = v,
                        None => out.push((k, v)),
                    }
                }
                out.sort_by(|a, b| (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes())));
                Json::Obj(out)
            }
            v => v,
        }
    }

    /// PostgreSQL's jsonb text output.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(n),
            Json::Str(s) => write_string(s, out),
            Json::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_string(k, out);
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Num(_) => "number",
            Json::Str(_) => "string",
            Json::Arr(_) => "array",
            Json::Obj(_) => "object",
        }
    }

    /// `->>`: strings unquoted, JSON null as SQL NULL, the rest as jsonb text.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Json::Null => None,
            Json::Str(s) => Some(s.clone()),
            v => Some(v.to_text()),
        }
    }

    fn get_key(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn get_index(&self, i: i64) -> Option<&Json> {
        match self {
            Json::Arr(items) => {
                let n = items.len() as i64;
                let i = if i < 0 { n + i } else { i };
                usize::try_from(i).ok().and_then(|i| items.get(i))
            }
            _ => None,
        }
    }

    /// One path step: an object key, or an array index written as text.
    fn step(&self, p: &str) -> Option<&Json> {
        match self {
            Json::Arr(_) => p.trim().parse::<i64>().ok().and_then(|i| self.get_index(i)),
            _ => self.get_key(p),
        }
    }

    /// Semantic equality (numbers by value, object keys in any order).
    pub fn same(&self, other: &Json) -> bool {
        match (self, other) {
            (Json::Num(a), Json::Num(b)) => num_eq(a, b),
            (Json::Arr(a), Json::Arr(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            (Json::Obj(a), Json::Obj(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| other.get_key(k).is_some_and(|w| v.same(w)))
                    && b.iter().all(|(k, _)| self.get_key(k).is_some())
            }
            (a, b) => a == b,
        }
    }

    /// `@>`: does `self` contain `other` (PostgreSQL's jsonb containment)?
    pub fn contains(&self, other: &Json) -> bool {
        match (self, other) {
            (Json::Obj(_), Json::Obj(b)) => b
                .iter()
                .all(|(k, v)| self.get_key(k).is_some_and(|w| w.contains(v))),
            (Json::Arr(a), Json::Arr(b)) => b.iter().all(|v| match v {
                Json::Arr(_) | Json::Obj(_) => a.iter().any(|w| w.contains(v)),
                _ => a.iter().any(|w| w.same(v)),
            }),
            // A top-level array contains a scalar it has as an element.
            (Json::Arr(a), s) if !matches!(s, Json::Obj(_)) => a.iter().any(|w| w.same(s)),
            (a, b) => a.same(b),
        }
    }

    /// `?`: a top-level key, or a string element of an array.
    pub fn has(&self, key: &str) -> bool {
        match self {
            Json::Obj(f) => f.iter().any(|(k, _)| k == key),
            Json::Arr(items) => items.iter().any(|v| matches!(v, Json::Str(s) if s == key)),
            Json::Str(s) => s == key,
            _ => false,
        }
    }
}

fn num_eq(a: &str, b: &str) -> bool {
    a == b
        || match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Canonical jsonb text of `text` (22P02 when it is not JSON).
pub fn jsonb_in(text: &str) -> SqlResult<String> {
    Ok(parse(text, "json")?.canonical().to_text())
}

/// `text` checked to be JSON, kept as written.
pub fn json_in(text: &str) -> SqlResult<String> {
    parse(text, "json")?;
    Ok(text.to_string())
}

// ---- SQL functions ----

/// What a function returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ret {
    Jsonb,
    Json,
    Text,
    Bool,
    Int,
    /// `text[]` (the set-returning functions' rows, unnested by the caller).
    TextList,
}

impl Ret {
    fn data_type(self) -> DataType {
        match self {
            Ret::Jsonb | Ret::Json | Ret::Text => DataType::Utf8,
            Ret::Bool => DataType::Boolean,
            Ret::Int => DataType::Int32,
            Ret::TextList => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        }
    }
}

/// A function result before it becomes a ScalarValue.
enum Out {
    Text(String),
    Bool(bool),
    Int(i32),
    List(Vec<Option<String>>),
}

/// A field of the given json kind (`jsonb` / `json` tag on Utf8).
pub fn json_field(name: &str, kind: &str) -> Field {
    Field::new(name, DataType::Utf8, true).with_metadata(crate::types::tag_metadata(kind))
}

/// A json function: its body's [`Out`] becomes the ScalarValue of `ret`.
fn udf(
    name: &'static str,
    arities: &[usize],
    ret: Ret,
    body: impl Fn(&[ScalarValue]) -> SqlResult<Option<Out>> + Send + Sync + 'static,
) -> Arc<ScalarUDF> {
    let tag = match ret {
        Ret::Jsonb => Some("jsonb"),
        Ret::Json => Some("json"),
        _ => None,
    };
    let scalar = move |row: &[ScalarValue]| {
        Ok(match (ret, body(row)?) {
            (Ret::Bool, Some(Out::Bool(b))) => ScalarValue::Boolean(Some(b)),
            (Ret::Bool, _) => ScalarValue::Boolean(None),
            (Ret::Int, Some(Out::Int(n))) => ScalarValue::Int32(Some(n)),
            (Ret::Int, _) => ScalarValue::Int32(None),
            (Ret::TextList, Some(Out::List(items))) => {
                let items: Vec<ScalarValue> = items.into_iter().map(ScalarValue::Utf8).collect();
                ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Utf8))
            }
            (Ret::TextList, _) => {
                ScalarValue::try_from(&ret.data_type()).map_err(crate::error::from_datafusion)?
            }
            (_, Some(Out::Text(s))) => ScalarValue::Utf8(Some(s)),
            (_, _) => ScalarValue::Utf8(None),
        })
    };
    crate::pg_functions::tagged_udf(
        name,
        arities,
        ret.data_type(),
        tag,
        Volatility::Immutable,
        scalar,
    )
}

fn text_arg(v: &ScalarValue) -> Option<String> {
    crate::pg_functions::text(v)
}

fn int_arg(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int8(Some(x)) => Some(*x as i64),
        ScalarValue::Int16(Some(x)) => Some(*x as i64),
        ScalarValue::Int32(Some(x)) => Some(*x as i64),
        ScalarValue::Int64(Some(x)) => Some(*x),
        ScalarValue::UInt32(Some(x)) => Some(*x as i64),
        ScalarValue::UInt64(Some(x)) => i64::try_from(*x).ok(),
        _ => None,
    }
}

/// A json/jsonb argument, parsed (None for SQL NULL).
fn doc(v: &ScalarValue) -> SqlResult<Option<Json>> {
    text_arg(v).map(|t| parse(&t, "json")).transpose()
}

/// A text[] argument: an Arrow list, or PostgreSQL array text (`'{a,b}'`).
fn text_list(v: &ScalarValue) -> SqlResult<Option<Vec<String>>> {
    match v {
        ScalarValue::List(l) => {
            if datafusion::arrow::array::Array::is_null(l.as_ref(), 0) {
                return Ok(None);
            }
            let vals = datafusion::arrow::compute::cast(&l.value(0), &DataType::Utf8)
                .map_err(|e| SqlError::internal(e.to_string()))?;
            let vals = vals
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .ok_or_else(|| SqlError::internal("text[] argument"))?;
            Ok(Some(vals.iter().flatten().map(str::to_string).collect()))
        }
        v => match text_arg(v) {
            None => Ok(None),
            Some(t) => Ok(Some(
                crate::pg_ops::parse_array_text(&t)?
                    .into_iter()
                    .flatten()
                    .collect(),
            )),
        },
    }
}

fn jsonb_out(j: Json) -> Option<Out> {
    Some(Out::Text(j.canonical().to_text()))
}

/// A SQL value as JSON (`to_jsonb`): numbers and booleans bare, text quoted, lists as arrays.
fn to_json(v: &ScalarValue, meta_json: bool) -> SqlResult<Json> {
    Ok(match v {
        v if v.is_null() => Json::Null,
        ScalarValue::Boolean(Some(b)) => Json::Bool(*b),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            if let Some(raw) = s.strip_prefix(EMBED_MARK) {
                parse(raw, "json")?
            } else if meta_json {
                parse(s, "json")?
            } else {
                Json::Str(s.clone())
            }
        }
        ScalarValue::List(l) => {
            let arr = l.value(0);
            let mut items = Vec::with_capacity(arr.len());
            for i in 0..datafusion::arrow::array::Array::len(&arr) {
                let s =
                    ScalarValue::try_from_array(&arr, i).map_err(crate::error::from_datafusion)?;
                items.push(to_json(&s, false)?);
            }
            Json::Arr(items)
        }
        v if v.data_type().is_numeric() => Json::Num(v.to_string()),
        ScalarValue::Date32(_) | ScalarValue::TimestampMicrosecond(..) => {
            Json::Str(v.to_string().replace('T', " "))
        }
        v => Json::Str(v.to_string()),
    })
}

/// Builds an object from key/value arguments.
fn build_object(a: &[ScalarValue], json_args: &[bool]) -> SqlResult<Json> {
    if a.len() % 2 != 0 {
        return Err(SqlError::new(
            code::INVALID_PARAMETER_VALUE,
            "argument list must have even number of elements",
        ));
    }
    let mut fields = Vec::new();
    for (i, pair) in a.chunks(2).enumerate() {
        let key = text_arg(&pair[0]).ok_or_else(|| {
            SqlError::new(
                code::INVALID_PARAMETER_VALUE,
                "null value not allowed for object key",
            )
        })?;
        fields.push((
            key,
            to_json(&pair[1], json_args.get(2 * i + 1) == Some(&true))?,
        ));
    }
    Ok(Json::Obj(fields))
}

/// json's own (non-canonical) text for json_build_object: `{"k" : 1, "a" : [1,2]}`.
fn json_text(j: &Json) -> String {
    match j {
        Json::Arr(items) => format!(
            "[{}]",
            items.iter().map(json_text).collect::<Vec<_>>().join(",")
        ),
        Json::Obj(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| {
                    let mut s = String::new();
                    write_string(k, &mut s);
                    format!("{s} : {}", json_text(v))
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        v => v.to_text(),
    }
}

fn path_get<'a>(j: &'a Json, path: &[String]) -> Option<&'a Json> {
    path.iter().try_fold(j, |cur, p| cur.step(p))
}

fn set_path(j: &mut Json, path: &[String], value: Json, create: bool, insert: bool) {
    let Some((last, init)) = path.split_last() else {
        return;
    };
    let mut cur = j;
    for p in init {
        let next = match cur {
            Json::Obj(f) => f.iter_mut().find(|(k, _)| k == p).map(|(_, v)| v),
            Json::Arr(items) => {
                let n = items.len() as i64;
                p.trim()
                    .parse::<i64>()
                    .ok()
                    .map(|i| if i < 0 { n + i } else { i })
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| items.get_mut(i))
            }
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match cur {
        Json::Obj(f) => match f.iter_mut().find(|(k, _)| k == last) {
            Some(slot) if !insert => slot.1 = value,
            Some(_) => {}
            None if create || insert => f.push((last.clone(), value)),
            None => {}
        },
        Json::Arr(items) => {
            let Ok(i) = last.trim().parse::<i64>() else {
                return;
            };
            let n = items.len() as i64;
            let idx = if i < 0 { n + i } else { i };
            if insert {
                let at = idx.clamp(0, n) as usize;
                items.insert(at, value);
            } else if (0..n).contains(&idx) {
                items[idx as usize] = value;
            } else if create {
                if idx < 0 {
                    items.insert(0, value);
                } else {
                    items.push(value);
                }
            }
        }
        _ => {}
    }
}

fn delete_path(j: &mut Json, path: &[String]) {
    let Some((last, init)) = path.split_last() else {
        return;
    };
    let mut cur = j;
    for p in init {
        let next = match cur {
            Json::Obj(f) => f.iter_mut().find(|(k, _)| k == p).map(|(_, v)| v),
            Json::Arr(items) => p
                .trim()
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match cur {
        Json::Obj(f) => f.retain(|(k, _)| k != last),
        Json::Arr(items) => {
            if let Ok(i) = last.trim().parse::<i64>() {
                let n = items.len() as i64;
                let idx = if i < 0 { n + i } else { i };
                if (0..n).contains(&idx) {
                    items.remove(idx as usize);
                }
            }
        }
        _ => {}
    }
}

fn strip_nulls(j: Json) -> Json {
    match j {
        Json::Obj(f) => Json::Obj(
            f.into_iter()
                .filter(|(_, v)| *v != Json::Null)
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Json::Arr(items) => Json::Arr(items.into_iter().map(strip_nulls).collect()),
        v => v,
    }
}

fn pretty(j: &Json, indent: usize, out: &mut String) {
    let pad = |n: usize| "    ".repeat(n);
    match j {
        Json::Arr(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (i, v) in items.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                pretty(v, indent + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push(']');
        }
        Json::Obj(f) if !f.is_empty() => {
            out.push_str("{\n");
            for (i, (k, v)) in f.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                write_string(k, out);
                out.push_str(": ");
                pretty(v, indent + 1, out);
                out.push_str(if i + 1 < f.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push('}');
        }
        v => out.push_str(&v.to_text()),
    }
}

fn concat(a: Json, b: Json) -> Json {
    match (a, b) {
        (Json::Obj(mut x), Json::Obj(y)) => {
            for (k, v) in y {
                x.retain(|(ok, _)| *ok != k);
                x.push((k, v));
            }
            Json::Obj(x)
        }
        (Json::Arr(mut x), Json::Arr(y)) => {
            x.extend(y);
            Json::Arr(x)
        }
        (Json::Arr(mut x), v) => {
            x.push(v);
            Json::Arr(x)
        }
        (v, Json::Arr(mut y)) => {
            y.insert(0, v);
            Json::Arr(y)
        }
        (x, y) => Json::Arr(vec![x, y]),
    }
}

/// Every json function and operator implementation.
/// The elements of a JSON array (`jsonb_array_elements`); 22023 for other values.
fn elements(j: Json) -> SqlResult<Vec<Json>> {
    match j {
        Json::Arr(items) => Ok(items),
        Json::Obj(_) => Err(SqlError::new(
            code::INVALID_PARAMETER_VALUE,
            "cannot extract elements from an object",
        )),
        _ => Err(SqlError::new(
            code::INVALID_PARAMETER_VALUE,
            "cannot extract elements from a scalar",
        )),
    }
}

/// The fields of a JSON object (`jsonb_each`, `jsonb_object_keys`); 22023 for other values.
fn fields(j: Json, function: &str) -> SqlResult<Vec<(String, Json)>> {
    match j.canonical() {
        Json::Obj(f) => Ok(f),
        other => Err(SqlError::new(
            code::INVALID_PARAMETER_VALUE,
            format!("cannot call {function} on {}", article(other.type_name())),
        )),
    }
}

fn article(type_name: &str) -> String {
    match type_name {
        "array" => "an array".into(),
        "object" => "an object".into(),
        _ => "a scalar".into(),
    }
}

/// A JSON value as `->>` shows it: strings unquoted, null as SQL NULL.
fn as_text(j: Json) -> Option<String> {
    match j {
        Json::Null => None,
        Json::Str(s) => Some(s),
        other => Some(other.canonical().to_text()),
    }
}

/// The keys of a JSON object argument, as the rows of `function`.
fn keys(v: &ScalarValue, function: &str) -> SqlResult<Option<Out>> {
    let Some(j) = doc(v)? else { return Ok(None) };
    let keys = fields(j, function)?.into_iter().map(|(k, _)| Some(k));
    Ok(Some(Out::List(keys.collect())))
}

/// The texts of a list argument (the aggregates' `array_agg` results).
fn list_items(v: &ScalarValue) -> SqlResult<Option<Vec<Option<String>>>> {
    let ScalarValue::List(l) = v else {
        return Ok(None);
    };
    if datafusion::arrow::array::Array::is_null(l.as_ref(), 0) {
        return Ok(None);
    }
    let vals = datafusion::arrow::compute::cast(&l.value(0), &DataType::Utf8)
        .map_err(|e| SqlError::internal(e.to_string()))?;
    let vals = vals
        .as_any()
        .downcast_ref::<datafusion::arrow::array::StringArray>()
        .ok_or_else(|| SqlError::internal("list argument"))?;
    Ok(Some(vals.iter().map(|x| x.map(str::to_string)).collect()))
}

/// Elements of an aggregated list as JSON (each is `to_jsonb` text, or NULL).
fn json_items(v: &ScalarValue) -> SqlResult<Option<Vec<Json>>> {
    let Some(items) = list_items(v)? else {
        return Ok(None);
    };
    items
        .into_iter()
        .map(|x| x.map_or(Ok(Json::Null), |t| parse(&t, "json")))
        .collect::<SqlResult<Vec<_>>>()
        .map(Some)
}

/// Prefix marking text that is already JSON (a json/jsonb value passed to `to_jsonb`,
/// `jsonb_build_object` …): SQL text cannot contain NUL, so no text value starts with it.
const EMBED_MARK: char = '\u{0}';

/// The functions that turn SQL values into JSON: a json/jsonb argument is embedded as JSON,
/// not quoted as a string.
const JSON_BUILDERS: [&str; 6] = [
    "to_jsonb",
    "to_json",
    "jsonb_build_object",
    "json_build_object",
    "jsonb_build_array",
    "json_build_array",
];

/// Analyzer rule (after coercion): json/jsonb arguments of the [`JSON_BUILDERS`] are marked
/// with [`EMBED_MARK`] so the function embeds them (`jsonb_build_object('a', '[1]'::jsonb)`
/// is `{"a": [1]}`, not `{"a": "[1]"}`).
#[derive(Debug, Default)]
pub struct JsonEmbedRule;

impl datafusion::optimizer::AnalyzerRule for JsonEmbedRule {
    fn analyze(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
        _config: &datafusion::common::config::ConfigOptions,
    ) -> DfResult<datafusion::logical_expr::LogicalPlan> {
        let builds =
            |e: &Expr| matches!(e, Expr::ScalarFunction(f) if JSON_BUILDERS.contains(&f.name()));
        if !crate::pg_ops::plan_has(&plan, builds) {
            return Ok(plan);
        }
        crate::pg_ops::rewrite_plan(plan, true, &|e, schema, top| {
            use datafusion::common::tree_node::Transformed;
            let Expr::ScalarFunction(mut f) = e else {
                return Ok(Transformed::no(e));
            };
            if top || !JSON_BUILDERS.contains(&f.name()) {
                return Ok(Transformed::no(Expr::ScalarFunction(f)));
            }
            let mut changed = false;
            for a in f.args.iter_mut() {
                if json_kind(a, schema).is_some() {
                    *a = call("kestrel_json_embed", vec![a.clone()]);
                    changed = true;
                }
            }
            Ok(Transformed::new_transformed(
                Expr::ScalarFunction(f),
                changed,
            ))
        })
    }
    fn name(&self) -> &str {
        "kestrel_json_embed"
    }
}

/// The set-returning json functions (as lists: `FROM jsonb_each(x)` becomes an UNNEST of
/// them) and the aggregates' finishing functions (`jsonb_agg(x)` is
/// `kestrel_jsonb_from_list(array_agg(to_jsonb(x)))`).
fn set_and_aggregate_udfs() -> Vec<Arc<ScalarUDF>> {
    let list = |v: Vec<Option<String>>| Ok(Some(Out::List(v)));
    vec![
        udf("kestrel_json_embed", &[1], Ret::Text, |a| {
            Ok(text_arg(&a[0]).map(|t| Out::Text(format!("{EMBED_MARK}{t}"))))
        }),
        udf("kestrel_json_elements", &[1], Ret::TextList, move |a| {
            let Some(j) = doc(&a[0])? else {
                return Ok(None);
            };
            list(
                elements(j)?
                    .into_iter()
                    .map(|e| Some(e.canonical().to_text()))
                    .collect(),
            )
        }),
        udf(
            "kestrel_json_elements_text",
            &[1],
            Ret::TextList,
            move |a| {
                let Some(j) = doc(&a[0])? else {
                    return Ok(None);
                };
                list(elements(j)?.into_iter().map(as_text).collect())
            },
        ),
        udf("kestrel_json_keys", &[1], Ret::TextList, |a| {
            keys(&a[0], "jsonb_each")
        }),
        udf("kestrel_json_object_keys", &[1], Ret::TextList, |a| {
            keys(&a[0], "jsonb_object_keys")
        }),
        udf("kestrel_json_values", &[1], Ret::TextList, move |a| {
            let Some(j) = doc(&a[0])? else {
                return Ok(None);
            };
            let f = fields(j, "jsonb_each")?;
            list(
                f.into_iter()
                    .map(|(_, v)| Some(v.canonical().to_text()))
                    .collect(),
            )
        }),
        udf("kestrel_json_values_text", &[1], Ret::TextList, move |a| {
            let Some(j) = doc(&a[0])? else {
                return Ok(None);
            };
            list(
                fields(j, "jsonb_each_text")?
                    .into_iter()
                    .map(|(_, v)| as_text(v))
                    .collect(),
            )
        }),
        udf("kestrel_jsonb_from_list", &[1], Ret::Jsonb, |a| {
            Ok(json_items(&a[0])?.and_then(|items| jsonb_out(Json::Arr(items))))
        }),
        udf("kestrel_json_from_list", &[1], Ret::Json, |a| {
            Ok(json_items(&a[0])?.map(|items| {
                let texts: Vec<String> = items.iter().map(json_text).collect();
                Out::Text(format!("[{}]", texts.join(", ")))
            }))
        }),
        udf("kestrel_jsonb_object_from_lists", &[2], Ret::Jsonb, |a| {
            let (Some(keys), Some(values)) = (list_items(&a[0])?, json_items(&a[1])?) else {
                return Ok(None);
            };
            let mut f = Vec::with_capacity(keys.len());
            for (k, v) in keys.into_iter().zip(values) {
                let k = k.ok_or_else(|| {
                    SqlError::new(code::INVALID_PARAMETER_VALUE, "field name must not be null")
                })?;
                f.push((k, v));
            }
            Ok(jsonb_out(Json::Obj(f)))
        }),
    ]
}

pub fn udfs() -> Vec<Arc<ScalarUDF>> {
    UDFS.clone()
}

static UDFS: std::sync::LazyLock<Vec<Arc<ScalarUDF>>> = std::sync::LazyLock::new(build_udfs);

fn build_udfs() -> Vec<Arc<ScalarUDF>> {
    vec![
        udf("kestrel_jsonb_in", &[1], Ret::Jsonb, |a| {
            Ok(text_arg(&a[0])
                .map(|t| jsonb_in(&t))
                .transpose()?
                .map(Out::Text))
        }),
        udf("kestrel_json_in", &[1], Ret::Json, |a| {
            Ok(text_arg(&a[0])
                .map(|t| json_in(&t))
                .transpose()?
                .map(Out::Text))
        }),
        udf("kestrel_jsonb_get", &[2], Ret::Jsonb, |a| {
            let Some(j) = doc(&a[0])? else {
                return Ok(None);
            };
            let v = match int_arg(&a[1]) {
                Some(i) => j.get_index(i),
                None => text_arg(&a[1]).and_then(|k| j.get_key(&k).map(|v| v as &Json)),
            };
            Ok(v.cloned().and_then(jsonb_out))
        }),
        udf("kestrel_jsonb_get_text", &[2], Ret::Text, |a| {
            let Some(j) = doc(&a[0])? else {
                return Ok(None);
            };
            let v = match int_arg(&a[1]) {
                Some(i) => j.get_index(i),
                None => text_arg(&a[1]).and_then(|k| j.get_key(&k).map(|v| v as &Json)),
            };
            Ok(v.and_then(|v| v.clone().canonical().as_text())
                .map(Out::Text))
        }),
        udf("kestrel_jsonb_path", &[2], Ret::Jsonb, |a| {
            let (Some(j), Some(p)) = (doc(&a[0])?, text_list(&a[1])?) else {
                return Ok(None);
            };
            Ok(path_get(&j, &p).cloned().and_then(jsonb_out))
        }),
        udf("kestrel_jsonb_path_text", &[2], Ret::Text, |a| {
            let (Some(j), Some(p)) = (doc(&a[0])?, text_list(&a[1])?) else {
                return Ok(None);
            };
            Ok(path_get(&j, &p)
                .and_then(|v| v.clone().canonical().as_text())
                .map(Out::Text))
        }),
        udf("kestrel_jsonb_contains", &[2], Ret::Bool, |a| {
            let (Some(x), Some(y)) = (doc(&a[0])?, doc(&a[1])?) else {
                return Ok(None);
            };
            Ok(Some(Out::Bool(x.contains(&y))))
        }),
        udf("kestrel_jsonb_exists", &[2], Ret::Bool, |a| {
            let (Some(j), Some(k)) = (doc(&a[0])?, text_arg(&a[1])) else {
                return Ok(None);
            };
            Ok(Some(Out::Bool(j.has(&k))))
        }),
        udf("kestrel_jsonb_exists_any", &[2], Ret::Bool, |a| {
            let (Some(j), Some(keys)) = (doc(&a[0])?, text_list(&a[1])?) else {
                return Ok(None);
            };
            Ok(Some(Out::Bool(keys.iter().any(|k| j.has(k)))))
        }),
        udf("kestrel_jsonb_exists_all", &[2], Ret::Bool, |a| {
            let (Some(j), Some(keys)) = (doc(&a[0])?, text_list(&a[1])?) else {
                return Ok(None);
            };
            Ok(Some(Out::Bool(keys.iter().all(|k| j.has(k)))))
        }),
        udf("kestrel_jsonb_eq", &[2], Ret::Bool, |a| {
            let (Some(x), Some(y)) = (doc(&a[0])?, doc(&a[1])?) else {
                return Ok(None);
            };
            Ok(Some(Out::Bool(x.same(&y))))
        }),
        udf("kestrel_jsonb_concat", &[2], Ret::Jsonb, |a| {
            let (Some(x), Some(y)) = (doc(&a[0])?, doc(&a[1])?) else {
                return Ok(None);
            };
            Ok(jsonb_out(concat(x.canonical(), y.canonical())))
        }),
        udf("kestrel_jsonb_delete", &[2], Ret::Jsonb, |a| {
            let Some(mut j) = doc(&a[0])?.map(Json::canonical) else {
                return Ok(None);
            };
            match (int_arg(&a[1]), &mut j) {
                (Some(i), Json::Arr(items)) => {
                    let n = items.len() as i64;
                    let idx = if i < 0 { n + i } else { i };
                    if (0..n).contains(&idx) {
                        items.remove(idx as usize);
                    }
                }
                (None, Json::Obj(f)) => {
                    let k = text_arg(&a[1]).unwrap_or_default();
                    f.retain(|(ok, _)| *ok != k);
                }
                (None, Json::Arr(items)) => {
                    let k = text_arg(&a[1]).unwrap_or_default();
                    items.retain(|v| !matches!(v, Json::Str(s) if *s == k));
                }
                _ => {}
            }
            Ok(jsonb_out(j))
        }),
        udf("kestrel_jsonb_delete_path", &[2], Ret::Jsonb, |a| {
            let (Some(mut j), Some(p)) = (doc(&a[0])?, text_list(&a[1])?) else {
                return Ok(None);
            };
            delete_path(&mut j, &p);
            Ok(jsonb_out(j))
        }),
        udf(
            "jsonb_build_object",
            &[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20],
            Ret::Jsonb,
            |a| Ok(jsonb_out(build_object(a, &[])?)),
        ),
        udf(
            "json_build_object",
            &[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20],
            Ret::Json,
            |a| Ok(Some(Out::Text(json_text(&build_object(a, &[])?)))),
        ),
        udf(
            "jsonb_build_array",
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            Ret::Jsonb,
            |a| {
                let items = a
                    .iter()
                    .map(|v| to_json(v, false))
                    .collect::<SqlResult<_>>()?;
                Ok(jsonb_out(Json::Arr(items)))
            },
        ),
        udf(
            "json_build_array",
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            Ret::Json,
            |a| {
                let items = a
                    .iter()
                    .map(|v| to_json(v, false))
                    .collect::<SqlResult<_>>()?;
                Ok(Some(Out::Text(json_text(&Json::Arr(items)))))
            },
        ),
        udf("to_jsonb", &[1], Ret::Jsonb, |a| {
            if a[0].is_null() {
                return Ok(None);
            }
            Ok(jsonb_out(to_json(&a[0], false)?))
        }),
        udf("to_json", &[1], Ret::Json, |a| {
            if a[0].is_null() {
                return Ok(None);
            }
            Ok(Some(Out::Text(json_text(&to_json(&a[0], false)?))))
        }),
        udf("jsonb_typeof", &[1], Ret::Text, |a| {
            Ok(doc(&a[0])?.map(|j| Out::Text(j.type_name().into())))
        }),
        udf("json_typeof", &[1], Ret::Text, |a| {
            Ok(doc(&a[0])?.map(|j| Out::Text(j.type_name().into())))
        }),
        udf("jsonb_array_length", &[1], Ret::Int, array_length),
        udf("json_array_length", &[1], Ret::Int, array_length),
        udf("jsonb_strip_nulls", &[1], Ret::Jsonb, |a| {
            Ok(doc(&a[0])?.map(strip_nulls).and_then(jsonb_out))
        }),
        udf("jsonb_pretty", &[1], Ret::Text, |a| {
            Ok(doc(&a[0])?.map(|j| {
                let mut s = String::new();
                pretty(&j.canonical(), 0, &mut s);
                Out::Text(s)
            }))
        }),
        udf("jsonb_set", &[3, 4], Ret::Jsonb, |a| {
            let (Some(mut j), Some(p), Some(v)) = (doc(&a[0])?, text_list(&a[1])?, doc(&a[2])?)
            else {
                return Ok(None);
            };
            let create = !matches!(a.get(3), Some(ScalarValue::Boolean(Some(false))));
            set_path(&mut j, &p, v, create, false);
            Ok(jsonb_out(j))
        }),
        udf("jsonb_insert", &[3, 4], Ret::Jsonb, |a| {
            let (Some(mut j), Some(mut p), Some(v)) = (doc(&a[0])?, text_list(&a[1])?, doc(&a[2])?)
            else {
                return Ok(None);
            };
            if matches!(a.get(3), Some(ScalarValue::Boolean(Some(true)))) {
                // insert_after: one position further for arrays.
                if let Some(last) = p.last_mut() {
                    if let Ok(i) = last.parse::<i64>() {
                        *last = (i + 1).to_string();
                    }
                }
            }
            set_path(&mut j, &p, v, false, true);
            Ok(jsonb_out(j))
        }),
    ]
    .into_iter()
    .chain(set_and_aggregate_udfs())
    .collect()
}

fn array_length(a: &[ScalarValue]) -> SqlResult<Option<Out>> {
    match doc(&a[0])? {
        None => Ok(None),
        Some(Json::Arr(items)) => Ok(Some(Out::Int(items.len() as i32))),
        Some(Json::Obj(_)) => Err(SqlError::new(
            code::INVALID_PARAMETER_VALUE,
            "cannot get array length of a non-array",
        )),
        Some(_) => Err(SqlError::new(
            code::INVALID_PARAMETER_VALUE,
            "cannot get array length of a scalar",
        )),
    }
}

// ---- operators ----

/// Plans json operators into the functions above when an operand is json or jsonb.
#[derive(Debug, Default)]
pub struct JsonPlanner;

/// `Some("jsonb")` / `Some("json")` when `e` is of that type in `schema`.
fn json_kind(e: &Expr, schema: &DFSchema) -> Option<String> {
    let (_, field) = e.to_field(schema).ok()?;
    crate::types::pg_tag(&field)
        .filter(|k| *k == "jsonb" || *k == "json")
        .map(str::to_string)
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    let f = UDFS.iter().find(|u| u.name() == name).cloned();
    match f {
        Some(f) => Expr::ScalarFunction(ScalarFunction::new_udf(f, args)),
        None => Expr::Literal(ScalarValue::Null, None),
    }
}

impl ExprPlanner for JsonPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        use BinaryOperator as B;
        let RawBinaryExpr { op, left, right } = expr;
        let relevant = matches!(
            op,
            B::Arrow
                | B::LongArrow
                | B::HashArrow
                | B::HashLongArrow
                | B::AtArrow
                | B::ArrowAt
                | B::Question
                | B::QuestionPipe
                | B::QuestionAnd
                | B::HashMinus
                | B::StringConcat
                | B::Minus
                | B::Eq
                | B::NotEq
        );
        if !relevant {
            return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }));
        }
        let lk = json_kind(&left, schema);
        let rk = json_kind(&right, schema);
        let either = lk.is_some() || rk.is_some();
        let planned = match op {
            B::Arrow if lk.is_some() => call("kestrel_jsonb_get", vec![left, right]),
            B::LongArrow if lk.is_some() => call("kestrel_jsonb_get_text", vec![left, right]),
            B::HashArrow if lk.is_some() => call("kestrel_jsonb_path", vec![left, right]),
            B::HashLongArrow if lk.is_some() => call("kestrel_jsonb_path_text", vec![left, right]),
            B::AtArrow if either => call("kestrel_jsonb_contains", vec![left, right]),
            B::ArrowAt if either => call("kestrel_jsonb_contains", vec![right, left]),
            B::Question if lk.is_some() => call("kestrel_jsonb_exists", vec![left, right]),
            B::QuestionPipe if lk.is_some() => call("kestrel_jsonb_exists_any", vec![left, right]),
            B::QuestionAnd if lk.is_some() => call("kestrel_jsonb_exists_all", vec![left, right]),
            B::HashMinus if lk.is_some() => call("kestrel_jsonb_delete_path", vec![left, right]),
            B::StringConcat if lk.as_deref() == Some("jsonb") || rk.as_deref() == Some("jsonb") => {
                call("kestrel_jsonb_concat", vec![left, right])
            }
            B::Minus if lk.as_deref() == Some("jsonb") => {
                call("kestrel_jsonb_delete", vec![left, right])
            }
            B::Eq if lk.as_deref() == Some("jsonb") || rk.as_deref() == Some("jsonb") => {
                call("kestrel_jsonb_eq", vec![left, right])
            }
            B::NotEq if lk.as_deref() == Some("jsonb") || rk.as_deref() == Some("jsonb") => {
                Expr::Not(Box::new(call("kestrel_jsonb_eq", vec![left, right])))
            }
            _ => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        Ok(PlannerResult::Planned(planned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonb_canonical_text_matches_postgres() {
        assert_eq!(
            jsonb_in(r#"{"b": 1, "a": 2, "a": 3}"#).unwrap(),
            r#"{"a": 3, "b": 1}"#
        );
        assert_eq!(
            jsonb_in(r#"{"aa":1,"b":[1,2,{"c":null}]}"#).unwrap(),
            r#"{"b": [1, 2, {"c": null}], "aa": 1}"#
        );
        assert_eq!(jsonb_in(r#""a\"b\u00e9""#).unwrap(), "\"a\\\"bé\"");
        assert!(jsonb_in("{bad json").is_err());
        assert!(jsonb_in(r#"{"a": }"#).is_err());
        assert!(jsonb_in("[1,]").is_err());
        assert!(jsonb_in("01x").is_err());
    }

    #[test]
    fn containment_and_equality() {
        let j = |s: &str| parse(s, "jsonb").unwrap();
        assert!(j(r#"{"a": 1, "b": 2}"#).contains(&j(r#"{"a": 1}"#)));
        assert!(!j(r#"{"a": 1}"#).contains(&j(r#"{"a": 1, "b": 2}"#)));
        assert!(j("[1, 2, 3]").contains(&j("[3, 1]")));
        assert!(j(r#"{"a": {"b": 1, "c": 2}}"#).contains(&j(r#"{"a": {"b": 1}}"#)));
        assert!(j(r#"{"a": 1}"#).same(&j(r#"{"a": 1.0}"#)));
        assert!(j(r#"["x", "y"]"#).has("x"));
    }
}
