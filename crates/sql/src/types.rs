//! SQL column types: how each maps to Arrow (for DataFusion) and to PostgreSQL (for the wire).

use std::collections::HashMap;

use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};
use datafusion::sql::sqlparser::ast::{self, CharacterLength, ExactNumberInfo, TimezoneInfo};

use crate::error::{SqlError, SqlResult};

/// Field metadata key naming the PostgreSQL type when Arrow alone cannot tell
/// (uuid, varchar, char and unconstrained numeric all have wider Arrow types).
pub const PG_TYPE_META: &str = "kestrel.pg_type";

/// json/jsonb are tagged as Arrow extension types (`kestrel.jsonb`, `kestrel.json`): a cast
/// drops extension tags, so `body::text` is text while `body` stays jsonb.
pub const EXTENSION_KEY: &str = "ARROW:extension:name";

/// The PostgreSQL type tag of a field (`uuid`, `varchar`, `jsonb` …), if it has one.
pub fn pg_tag(field: &Field) -> Option<&str> {
    let m = field.metadata();
    m.get(PG_TYPE_META).map(|s| s.as_str()).or_else(|| {
        m.get(EXTENSION_KEY)
            .and_then(|s| s.strip_prefix("kestrel."))
    })
}

/// Metadata tagging a field with PostgreSQL type `tag`.
pub fn tag_metadata(tag: &str) -> HashMap<String, String> {
    match tag {
        "json" | "jsonb" => HashMap::from([(EXTENSION_KEY.to_string(), format!("kestrel.{tag}"))]),
        t => HashMap::from([(PG_TYPE_META.to_string(), t.to_string())]),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SqlType {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `numeric(p, s)`; `numeric` without a typmod is stored as `numeric(38, 10)` and printed
    /// without trailing zeros.
    Numeric {
        precision: u8,
        scale: i8,
        constrained: bool,
    },
    Text,
    Varchar(Option<u32>),
    Char(u32),
    Bool,
    Date,
    Timestamp,
    TimestampTz,
    Bytea,
    Uuid,
    /// `jsonb`: canonical JSON text ([`crate::json`]).
    Jsonb,
    /// `json`: JSON text as written.
    Json,
    /// `interval`: months, days and nanoseconds (Arrow's month-day-nano interval).
    Interval,
    /// A one-dimensional array (`text[]`, `int[]` …) of a scalar type; Arrow `List`.
    Array(Box<SqlType>),
}

const UNCONSTRAINED_PRECISION: u8 = 38;
const UNCONSTRAINED_SCALE: i8 = 10;

impl SqlType {
    pub fn arrow(&self) -> DataType {
        match self {
            SqlType::Int2 => DataType::Int16,
            SqlType::Int4 => DataType::Int32,
            SqlType::Int8 => DataType::Int64,
            SqlType::Float4 => DataType::Float32,
            SqlType::Float8 => DataType::Float64,
            SqlType::Numeric {
                precision, scale, ..
            } => DataType::Decimal128(*precision, *scale),
            SqlType::Text
            | SqlType::Varchar(_)
            | SqlType::Char(_)
            | SqlType::Uuid
            | SqlType::Jsonb
            | SqlType::Json => DataType::Utf8,
            SqlType::Bool => DataType::Boolean,
            SqlType::Date => DataType::Date32,
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqlType::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
            }
            SqlType::Bytea => DataType::Binary,
            SqlType::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            SqlType::Array(elem) => DataType::List(std::sync::Arc::new(Field::new_list_field(
                elem.arrow(),
                true,
            ))),
        }
    }

    /// The Arrow field for a column of this type, tagged with its PostgreSQL type where needed.
    pub fn field(&self, name: &str) -> Field {
        let f = Field::new(name, self.arrow(), true);
        let tag = match self {
            SqlType::Uuid => Some("uuid"),
            SqlType::Jsonb => Some("jsonb"),
            SqlType::Json => Some("json"),
            SqlType::Varchar(_) => Some("varchar"),
            SqlType::Char(_) => Some("bpchar"),
            SqlType::Numeric {
                constrained: false, ..
            } => Some("numeric"),
            _ => None,
        };
        match tag {
            Some(t) => f.with_metadata(tag_metadata(t)),
            None => f,
        }
    }

    /// The SQL type of a query result column (CREATE TABLE AS), if Kestrel stores it.
    pub fn from_arrow(t: &DataType) -> Option<SqlType> {
        Some(match t {
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => SqlType::Int2,
            DataType::Int32 | DataType::UInt16 => SqlType::Int4,
            DataType::Int64 | DataType::UInt32 => SqlType::Int8,
            DataType::Float32 => SqlType::Float4,
            DataType::Float64 => SqlType::Float8,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => SqlType::Text,
            DataType::Boolean => SqlType::Bool,
            DataType::Date32 => SqlType::Date,
            DataType::Timestamp(_, None) => SqlType::Timestamp,
            DataType::Timestamp(_, Some(_)) => SqlType::TimestampTz,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => SqlType::Bytea,
            DataType::Decimal128(p, s) if *p <= 38 && *s >= 0 => {
                return SqlType::from_ast(&ast::DataType::Numeric(
                    ast::ExactNumberInfo::PrecisionAndScale(*p as u64, *s as i64),
                ))
                .ok()
            }
            DataType::Interval(_) => SqlType::Interval,
            DataType::List(f) => match SqlType::from_arrow(f.data_type())? {
                SqlType::Array(_) => return None,
                elem => SqlType::Array(Box::new(elem)),
            },
            DataType::Null => SqlType::Text,
            _ => return None,
        })
    }

    /// The type's name as PostgreSQL prints it (`format_type`).
    pub fn pg_name(&self) -> String {
        match self {
            SqlType::Int2 => "smallint".into(),
            SqlType::Int4 => "integer".into(),
            SqlType::Int8 => "bigint".into(),
            SqlType::Float4 => "real".into(),
            SqlType::Float8 => "double precision".into(),
            SqlType::Numeric {
                constrained: false, ..
            } => "numeric".into(),
            SqlType::Numeric {
                precision, scale, ..
            } => format!("numeric({precision},{scale})"),
            SqlType::Text => "text".into(),
            SqlType::Varchar(None) => "character varying".into(),
            SqlType::Varchar(Some(n)) => format!("character varying({n})"),
            SqlType::Char(n) => format!("character({n})"),
            SqlType::Bool => "boolean".into(),
            SqlType::Date => "date".into(),
            SqlType::Timestamp => "timestamp without time zone".into(),
            SqlType::TimestampTz => "timestamp with time zone".into(),
            SqlType::Bytea => "bytea".into(),
            SqlType::Uuid => "uuid".into(),
            SqlType::Jsonb => "jsonb".into(),
            SqlType::Json => "json".into(),
            SqlType::Interval => "interval".into(),
            SqlType::Array(elem) => format!("{}[]", elem.pg_name()),
        }
    }

    /// Translates a parsed SQL type; unsupported types are a clear 0A000.
    pub fn from_ast(t: &ast::DataType) -> SqlResult<SqlType> {
        use ast::DataType as D;
        Ok(match t {
            D::SmallInt(_) | D::Int2(_) => SqlType::Int2,
            D::Int(_) | D::Integer(_) | D::Int4(_) => SqlType::Int4,
            D::BigInt(_) | D::Int8(_) => SqlType::Int8,
            D::Real | D::Float4 => SqlType::Float4,
            D::DoublePrecision | D::Float8 | D::Double(_) => SqlType::Float8,
            D::Float(info) => match info {
                ExactNumberInfo::Precision(p) if *p <= 24 => SqlType::Float4,
                _ => SqlType::Float8,
            },
            D::Numeric(info) | D::Decimal(info) | D::Dec(info) => numeric(info)?,
            D::Text => SqlType::Text,
            D::Varchar(len) | D::CharacterVarying(len) | D::CharVarying(len) => {
                SqlType::Varchar(char_len(len)?)
            }
            D::Char(len) | D::Character(len) => SqlType::Char(char_len(len)?.unwrap_or(1)),
            D::Bool | D::Boolean => SqlType::Bool,
            D::Date => SqlType::Date,
            D::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
                SqlType::Timestamp
            }
            D::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => SqlType::TimestampTz,
            D::Bytea => SqlType::Bytea,
            D::Uuid => SqlType::Uuid,
            D::JSONB => SqlType::Jsonb,
            D::JSON => SqlType::Json,
            D::Interval { .. } => SqlType::Interval,
            D::Array(
                ast::ArrayElemTypeDef::SquareBracket(inner, _)
                | ast::ArrayElemTypeDef::AngleBracket(inner)
                | ast::ArrayElemTypeDef::Parenthesis(inner),
            ) => match SqlType::from_ast(inner)? {
                SqlType::Array(_) => {
                    return Err(SqlError::unsupported("multidimensional array columns"))
                }
                elem => SqlType::Array(Box::new(elem)),
            },
            D::Custom(name, _) => match name.to_string().to_ascii_lowercase().as_str() {
                "timestamptz" => SqlType::TimestampTz,
                "uuid" => SqlType::Uuid,
                "jsonb" => SqlType::Jsonb,
                "json" => SqlType::Json,
                "interval" => SqlType::Interval,
                "bpchar" => SqlType::Char(1),
                "serial" | "bigserial" | "smallserial" => {
                    return Err(SqlError::unsupported(format!("type {name} (sequences)")))
                }
                _ => {
                    return Err(SqlError::new(
                        crate::error::code::UNDEFINED_OBJECT,
                        format!("type \"{name}\" does not exist"),
                    ))
                }
            },
            other => return Err(SqlError::unsupported(format!("type {other}"))),
        })
    }
}

fn numeric(info: &ExactNumberInfo) -> SqlResult<SqlType> {
    let (p, s) = match info {
        ExactNumberInfo::None => {
            return Ok(SqlType::Numeric {
                precision: UNCONSTRAINED_PRECISION,
                scale: UNCONSTRAINED_SCALE,
                constrained: false,
            })
        }
        ExactNumberInfo::Precision(p) => (*p, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
    };
    if !(1..=38).contains(&p) {
        return Err(SqlError::new(
            crate::error::code::INVALID_PARAMETER_VALUE,
            format!("NUMERIC precision {p} must be between 1 and 38"),
        ));
    }
    if s < 0 || s as u64 > p {
        return Err(SqlError::new(
            crate::error::code::INVALID_PARAMETER_VALUE,
            format!("NUMERIC scale {s} must be between 0 and precision {p}"),
        ));
    }
    Ok(SqlType::Numeric {
        precision: p as u8,
        scale: s as i8,
        constrained: true,
    })
}

fn char_len(len: &Option<CharacterLength>) -> SqlResult<Option<u32>> {
    match len {
        None => Ok(None),
        Some(CharacterLength::Max) => Ok(None),
        Some(CharacterLength::IntegerLength { length, .. }) => {
            if *length == 0 || *length > 10_485_760 {
                return Err(SqlError::new(
                    crate::error::code::INVALID_PARAMETER_VALUE,
                    format!("length for type varchar must be between 1 and 10485760, not {length}"),
                ));
            }
            Ok(Some(*length as u32))
        }
    }
}
