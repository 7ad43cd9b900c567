//! Bind parameters: wire bytes (text or binary) → typed DataFusion values.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use kestrel_sql::error::code;
use kestrel_sql::SqlError;
use pgwire::api::Type;
use postgres_types::FromSql;

fn bad(ty: &Type, detail: impl std::fmt::Display) -> SqlError {
    SqlError::new(
        code::INVALID_TEXT_REPRESENTATION,
        format!(
            "invalid input for parameter of type {}: {detail}",
            ty.name()
        ),
    )
}

fn out_of_range() -> SqlError {
    SqlError::new(
        code::DATETIME_FIELD_OVERFLOW,
        "date/time value out of range",
    )
}

const PG_EPOCH_DAYS: i32 = 10_957; // 2000-01-01 - 1970-01-01
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

fn binary(bytes: &[u8], ty: &Type) -> Result<ScalarValue, SqlError> {
    let e = |x: Box<dyn std::error::Error + Sync + Send>| bad(ty, x);
    Ok(match *ty {
        Type::BOOL => ScalarValue::Boolean(Some(bool::from_sql(ty, bytes).map_err(e)?)),
        Type::INT2 => ScalarValue::Int16(Some(i16::from_sql(ty, bytes).map_err(e)?)),
        Type::INT4 => ScalarValue::Int32(Some(i32::from_sql(ty, bytes).map_err(e)?)),
        Type::INT8 => ScalarValue::Int64(Some(i64::from_sql(ty, bytes).map_err(e)?)),
        Type::FLOAT4 => ScalarValue::Float32(Some(f32::from_sql(ty, bytes).map_err(e)?)),
        Type::FLOAT8 => ScalarValue::Float64(Some(f64::from_sql(ty, bytes).map_err(e)?)),
        Type::BYTEA => ScalarValue::Binary(Some(bytes.to_vec())),
        // jsonb's binary format is a version byte (1) and the text.
        Type::JSONB => match bytes.split_first() {
            Some((1, text)) => ScalarValue::Utf8(Some(
                String::from_utf8(text.to_vec()).map_err(|x| bad(ty, x))?,
            )),
            _ => return Err(bad(ty, "unsupported jsonb version")),
        },
        Type::DATE => {
            let days = i32::from_sql(&Type::INT4, bytes).map_err(e)?;
            ScalarValue::Date32(Some(
                days.checked_add(PG_EPOCH_DAYS).ok_or_else(out_of_range)?,
            ))
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let micros = i64::from_sql(&Type::INT8, bytes).map_err(e)?;
            let micros = micros
                .checked_add(PG_EPOCH_MICROS)
                .ok_or_else(out_of_range)?;
            let tz = (*ty == Type::TIMESTAMPTZ).then(|| "+00:00".into());
            ScalarValue::TimestampMicrosecond(Some(micros), tz)
        }
        Type::NUMERIC => {
            let d = rust_decimal::Decimal::from_sql(ty, bytes).map_err(e)?;
            ScalarValue::Utf8(Some(d.to_string()))
        }
        Type::UUID => {
            if bytes.len() != 16 {
                return Err(bad(ty, "uuid must be 16 bytes"));
            }
            let mut u = [0u8; 16];
            u.copy_from_slice(bytes);
            ScalarValue::Utf8(Some(crate::encode::format_uuid(&u)))
        }
        _ => ScalarValue::Utf8(Some(
            String::from_utf8(bytes.to_vec()).map_err(|_| bad(ty, "not UTF-8"))?,
        )),
    })
}

fn text(bytes: &[u8], ty: &Type) -> Result<ScalarValue, SqlError> {
    let s = std::str::from_utf8(bytes).map_err(|_| bad(ty, "not UTF-8"))?;
    if *ty == Type::BYTEA {
        return Ok(ScalarValue::Binary(Some(
            kestrel_sql::pgcompat::parse_bytea(s)?,
        )));
    }
    if *ty == Type::BOOL {
        let b = match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" | "y" => true,
            "f" | "false" | "no" | "off" | "0" | "n" => false,
            _ => {
                return Err(SqlError::new(
                    code::INVALID_TEXT_REPRESENTATION,
                    format!("invalid input syntax for type boolean: \"{s}\""),
                ))
            }
        };
        return Ok(ScalarValue::Boolean(Some(b)));
    }
    Ok(ScalarValue::Utf8(Some(s.to_string())))
}

/// A text parameter the plan expects as an integer, parsed as PostgreSQL's integer input
/// does (surrounding whitespace, an optional sign, decimal digits) without going through a
/// text value and an Arrow cast; `None` when `target` is not an integer type.
fn integer_text(bytes: &[u8], target: &DataType) -> Option<Result<ScalarValue, SqlError>> {
    let (min, max, name) = match target {
        DataType::Int16 => (i64::from(i16::MIN), i64::from(i16::MAX), "smallint"),
        DataType::Int32 => (i64::from(i32::MIN), i64::from(i32::MAX), "integer"),
        DataType::Int64 => (i64::MIN, i64::MAX, "bigint"),
        _ => return None,
    };
    let raw = String::from_utf8_lossy(bytes);
    let s = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Err(SqlError::new(
            code::INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type {name}: \"{raw}\""),
        )));
    }
    let v = match s.parse::<i128>() {
        Ok(v) if v >= i128::from(min) && v <= i128::from(max) => v as i64,
        _ => {
            return Some(Err(SqlError::new(
                code::NUMERIC_VALUE_OUT_OF_RANGE,
                format!("value \"{raw}\" is out of range for type {name}"),
            )))
        }
    };
    Some(Ok(match target {
        DataType::Int16 => ScalarValue::Int16(Some(v as i16)),
        DataType::Int32 => ScalarValue::Int32(Some(v as i32)),
        _ => ScalarValue::Int64(Some(v)),
    }))
}

/// Decodes one parameter sent as `ty` and converts it to `target` (the type the plan expects).
pub fn decode(
    bytes: Option<&[u8]>,
    is_binary: bool,
    ty: &Type,
    target: Option<&DataType>,
) -> Result<ScalarValue, SqlError> {
    if let (Some(b), false, Some(t)) = (bytes, is_binary, target) {
        // Text the generic path below would read as text and cast (not bytea or boolean).
        if *ty != Type::BYTEA && *ty != Type::BOOL {
            if let Some(v) = integer_text(b, t) {
                return v;
            }
        }
    }
    let v = match bytes {
        None => ScalarValue::Null,
        Some(b) if is_binary => binary(b, ty)?,
        Some(b) => text(b, ty)?,
    };
    match target {
        Some(t) if &v.data_type() != t => v.cast_to(t).map_err(|_| {
            SqlError::new(
                code::INVALID_TEXT_REPRESENTATION,
                format!("invalid input syntax for parameter of type {t}: \"{v}\""),
            )
        }),
        _ => Ok(v),
    }
}

/// The PostgreSQL type announced for a parameter the plan expects as `dt`.
pub fn pg_type_of(field: Option<&datafusion::arrow::datatypes::Field>) -> Type {
    match field {
        None => Type::TEXT,
        Some(f) => crate::encode::pg_type(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_parameters_decode() {
        assert_eq!(
            decode(Some(b"42"), false, &Type::INT4, Some(&DataType::Int32)).unwrap(),
            ScalarValue::Int32(Some(42))
        );
        assert_eq!(
            decode(
                Some(&7i64.to_be_bytes()),
                true,
                &Type::INT8,
                Some(&DataType::Int32)
            )
            .unwrap(),
            ScalarValue::Int32(Some(7))
        );
        assert_eq!(
            decode(None, false, &Type::INT4, None).unwrap(),
            ScalarValue::Null
        );
        assert_eq!(
            decode(Some(b"\\x0aff"), false, &Type::BYTEA, None).unwrap(),
            ScalarValue::Binary(Some(vec![10, 255]))
        );
        assert!(decode(Some(b"x1"), false, &Type::INT4, Some(&DataType::Int32)).is_err());
    }

    /// Integer text parameters read like PostgreSQL's integer input, with its SQLSTATEs.
    #[test]
    fn integer_text_parameters_follow_postgres_input_rules() {
        let int = |s: &str, t: DataType| decode(Some(s.as_bytes()), false, &Type::INT4, Some(&t));
        let code_of = |r: Result<ScalarValue, SqlError>| r.unwrap_err().code.to_string();
        assert_eq!(
            int(" +42\n", DataType::Int32).unwrap(),
            ScalarValue::Int32(Some(42))
        );
        assert_eq!(
            int("-7", DataType::Int16).unwrap(),
            ScalarValue::Int16(Some(-7))
        );
        assert_eq!(
            int("-9223372036854775808", DataType::Int64).unwrap(),
            ScalarValue::Int64(Some(i64::MIN))
        );
        assert_eq!(code_of(int("2147483648", DataType::Int32)), "22003");
        assert_eq!(code_of(int("32768", DataType::Int16)), "22003");
        assert_eq!(
            code_of(int("99999999999999999999", DataType::Int64)),
            "22003"
        );
        for bad in ["", " ", "1 2", "1.5", "0x10", "+", "--1", "1e3"] {
            assert_eq!(code_of(int(bad, DataType::Int32)), "22P02", "{bad:?}");
        }
        // Other targets keep the generic path (text, then a cast).
        assert_eq!(
            int("1.5", DataType::Float64).unwrap(),
            ScalarValue::Float64(Some(1.5))
        );
    }
}
