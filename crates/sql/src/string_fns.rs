//! PostgreSQL string functions DataFusion lacks or answers differently: `format` (`%s %I %L
//! %%`, widths, `-` and positions), `regexp_split_to_array` (and, in FROM,
//! `regexp_split_to_table`), `regexp_substr`, `substring(s FROM pattern)`, `encode`/`decode`
//! (`hex`, `base64` with PostgreSQL's padding and 76-character lines, `escape`),
//! `convert_from`/`convert_to` (UTF8).
//!
//! Every pattern is compiled per call with a size limit ([`REGEX_BYTES_MAX`]); a bad one is
//! 2201B as in PostgreSQL.

use std::sync::Arc;

use base64::Engine;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ScalarUDF, Volatility};

use crate::error::{code, SqlError};
use crate::pg_functions::tagged_udf;

/// The largest compiled form a pattern may take.
pub const REGEX_BYTES_MAX: usize = 1 << 20;
/// The most arguments `format` takes after its format string.
const FORMAT_ARGS_MAX: usize = 100;

fn text(v: &ScalarValue) -> Option<String> {
    match v {
        v if v.is_null() => None,
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.clone(),
        ScalarValue::Boolean(Some(b)) => Some(if *b { "t" } else { "f" }.into()),
        v => Some(v.to_string()),
    }
}

fn bytes(v: &ScalarValue) -> Option<Vec<u8>> {
    match v {
        ScalarValue::Binary(b) | ScalarValue::LargeBinary(b) | ScalarValue::BinaryView(b) => {
            b.clone()
        }
        v => text(v).map(String::into_bytes),
    }
}

fn utf8(s: Option<String>) -> ScalarValue {
    ScalarValue::Utf8(s)
}

fn regex(pattern: &str, flags: Option<&str>) -> Result<regex::Regex, SqlError> {
    let mut b = regex::RegexBuilder::new(pattern);
    b.size_limit(REGEX_BYTES_MAX);
    for f in flags.unwrap_or("").chars() {
        match f {
            'i' => b.case_insensitive(true),
            'c' => b.case_insensitive(false),
            'n' | 'm' => b.multi_line(true),
            's' => b.dot_matches_new_line(true),
            'x' => b.ignore_whitespace(true),
            'g' => &mut b,
            other => {
                return Err(SqlError::new(
                    code::INVALID_PARAMETER_VALUE,
                    format!("invalid regular expression option: \"{other}\""),
                ))
            }
        };
    }
    b.build()
        .map_err(|e| SqlError::new("2201B", format!("invalid regular expression: {e}")))
}

/// PostgreSQL's `format`.
pub fn format(fmt: &str, args: &[ScalarValue]) -> Result<String, SqlError> {
    let bad = |m: &str| SqlError::new(code::INVALID_PARAMETER_VALUE, m.to_string());
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next_arg = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // %[position$][-][width]type
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        if chars.peek() == Some(&'$') {
            chars.next();
            let pos: usize = digits
                .parse()
                .map_err(|_| bad("invalid argument position"))?;
            if pos == 0 {
                return Err(bad(
                    "format specifies argument 0, but arguments are numbered from 1",
                ));
            }
            next_arg = pos - 1;
            digits.clear();
        }
        let left = chars.peek() == Some(&'-');
        if left {
            chars.next();
        }
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let width: usize = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| bad("invalid width"))?
        };
        let kind = chars
            .next()
            .ok_or_else(|| bad("unterminated format() type specifier"))?;
        let arg = args
            .get(next_arg)
            .ok_or_else(|| bad("too few arguments for format()"))?;
        next_arg += 1;
        let value = match kind {
            's' => text(arg).unwrap_or_default(),
            'I' => crate::pg_catalog::quote_ident(&text(arg).ok_or_else(|| {
                SqlError::new(
                    code::NULL_VALUE_NOT_ALLOWED,
                    "null values cannot be formatted as an SQL identifier",
                )
            })?),
            'L' => match text(arg) {
                None => "NULL".into(),
                Some(t) => quote_literal(&t),
            },
            other => {
                return Err(bad(&format!(
                    "unrecognized format() type specifier \"{other}\""
                )))
            }
        };
        let pad = width.saturating_sub(value.chars().count());
        if left {
            out.push_str(&value);
            out.extend(std::iter::repeat_n(' ', pad));
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&value);
        }
    }
    Ok(out)
}

fn quote_literal(t: &str) -> String {
    let body = t.replace('\'', "''");
    if t.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

fn encode(b: &[u8], how: &str) -> Result<String, SqlError> {
    Ok(match how.to_lowercase().as_str() {
        "hex" => b.iter().map(|x| format!("{x:02x}")).collect(),
        "base64" => {
            let s = base64::engine::general_purpose::STANDARD.encode(b);
            let lines: Vec<&str> = s
                .as_bytes()
                .chunks(76)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect();
            lines.join("\n")
        }
        "escape" => b
            .iter()
            .map(|&x| match x {
                b'\\' => "\\\\".to_string(),
                0 | 0x80..=0xff => format!("\\{x:03o}"),
                x => (x as char).to_string(),
            })
            .collect(),
        other => return Err(unknown_encoding(other)),
    })
}

fn unknown_encoding(name: &str) -> SqlError {
    SqlError::new(
        code::INVALID_PARAMETER_VALUE,
        format!("unrecognized encoding: \"{name}\""),
    )
}

fn decode(t: &str, how: &str) -> Result<Vec<u8>, SqlError> {
    match how.to_lowercase().as_str() {
        "hex" => crate::pgcompat::parse_bytea(&format!("\\x{t}")),
        "base64" => {
            let clean: String = t.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map_err(|e| {
                    SqlError::new(
                        code::INVALID_PARAMETER_VALUE,
                        format!("invalid base64: {e}"),
                    )
                })
        }
        "escape" => crate::pgcompat::parse_bytea(t),
        other => Err(unknown_encoding(other)),
    }
}

fn check_utf8(name: &str) -> Result<(), SqlError> {
    match name.to_uppercase().replace(['-', '_'], "").as_str() {
        "UTF8" | "UNICODE" | "SQLASCII" => Ok(()),
        _ => Err(SqlError::new(
            code::INVALID_PARAMETER_VALUE,
            format!("invalid source encoding name \"{name}\""),
        )),
    }
}

fn list(items: Vec<Option<String>>) -> ScalarValue {
    let items: Vec<ScalarValue> = items.into_iter().map(ScalarValue::Utf8).collect();
    ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Utf8))
}

/// PostgreSQL's regexp_split_to_array: an empty match splits between characters.
fn split(s: &str, re: &regex::Regex) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut start = 0;
    for m in re.find_iter(s) {
        if m.start() == m.end() {
            if m.start() == 0 || m.start() >= s.len() {
                continue;
            }
        } else if m.start() == 0 && m.end() == s.len() {
            // whole string matched: PostgreSQL yields two empty strings
        }
        out.push(Some(s[start..m.start()].to_string()));
        start = m.end();
    }
    out.push(Some(s[start..].to_string()));
    out
}

/// The functions of this module, registered once per session.
pub fn udfs() -> Vec<Arc<ScalarUDF>> {
    let imm = Volatility::Immutable;
    let text_list = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    let format_arities: Vec<usize> = (1..=FORMAT_ARGS_MAX + 1).collect();
    vec![
        tagged_udf("format", &format_arities, DataType::Utf8, None, imm, |a| {
            let Some(fmt) = text(&a[0]) else {
                return Ok(utf8(None));
            };
            Ok(utf8(Some(format(&fmt, &a[1..])?)))
        }),
        tagged_udf(
            "regexp_split_to_array",
            &[2, 3],
            text_list,
            None,
            imm,
            |a| {
                let (Some(s), Some(p)) = (text(&a[0]), text(&a[1])) else {
                    return ScalarValue::try_from(&DataType::List(Arc::new(
                        Field::new_list_field(DataType::Utf8, true),
                    )))
                    .map_err(crate::error::from_datafusion);
                };
                let flags = a.get(2).and_then(text);
                Ok(list(split(&s, &regex(&p, flags.as_deref())?)))
            },
        ),
        tagged_udf("regexp_substr", &[2], DataType::Utf8, None, imm, |a| {
            let (Some(s), Some(p)) = (text(&a[0]), text(&a[1])) else {
                return Ok(utf8(None));
            };
            Ok(utf8(
                regex(&p, None)?.find(&s).map(|m| m.as_str().to_string()),
            ))
        }),
        tagged_udf(
            "kestrel_substring_regex",
            &[2],
            DataType::Utf8,
            None,
            imm,
            |a| {
                let (Some(s), Some(p)) = (text(&a[0]), text(&a[1])) else {
                    return Ok(utf8(None));
                };
                let re = regex(&p, None)?;
                // The first parenthesized group if the pattern has one, else the whole match.
                Ok(utf8(re.captures(&s).and_then(|c| {
                    c.get(if c.len() > 1 { 1 } else { 0 })
                        .map(|m| m.as_str().to_string())
                })))
            },
        ),
        tagged_udf("encode", &[2], DataType::Utf8, None, imm, |a| {
            let (Some(b), Some(how)) = (bytes(&a[0]), text(&a[1])) else {
                return Ok(utf8(None));
            };
            Ok(utf8(Some(encode(&b, &how)?)))
        }),
        tagged_udf("decode", &[2], DataType::Binary, None, imm, |a| {
            let (Some(t), Some(how)) = (text(&a[0]), text(&a[1])) else {
                return Ok(ScalarValue::Binary(None));
            };
            Ok(ScalarValue::Binary(Some(decode(&t, &how)?)))
        }),
        tagged_udf("convert_from", &[2], DataType::Utf8, None, imm, |a| {
            let (Some(b), Some(enc)) = (bytes(&a[0]), text(&a[1])) else {
                return Ok(utf8(None));
            };
            check_utf8(&enc)?;
            String::from_utf8(b).map(|s| utf8(Some(s))).map_err(|_| {
                SqlError::new(
                    code::CHARACTER_NOT_IN_REPERTOIRE,
                    "invalid byte sequence for encoding \"UTF8\"",
                )
            })
        }),
        tagged_udf("convert_to", &[2], DataType::Binary, None, imm, |a| {
            let (Some(t), Some(enc)) = (text(&a[0]), text(&a[1])) else {
                return Ok(ScalarValue::Binary(None));
            };
            check_utf8(&enc)?;
            Ok(ScalarValue::Binary(Some(t.into_bytes())))
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_like_postgres() {
        let s = |v: &str| ScalarValue::Utf8(Some(v.into()));
        assert_eq!(format("%s-%s", &[s("a"), s("b")]).unwrap(), "a-b");
        assert_eq!(format("%I", &[s("Some Col")]).unwrap(), "\"Some Col\"");
        assert_eq!(format("%L", &[s("x'y")]).unwrap(), "'x''y'");
        assert_eq!(
            format("%5s|%-5s|", &[s("r"), s("l")]).unwrap(),
            "    r|l    |"
        );
        assert_eq!(format("%2$s %1$s", &[s("a"), s("b")]).unwrap(), "b a");
        assert_eq!(format("%L", &[ScalarValue::Utf8(None)]).unwrap(), "NULL");
        assert!(format("%s %s", &[s("a")]).is_err());
    }

    #[test]
    fn split_and_encode() {
        let re = regex("[0-9]+", None).unwrap();
        assert_eq!(
            split("a1b22c333d", &re),
            vec![
                Some("a".into()),
                Some("b".into()),
                Some("c".into()),
                Some("d".into())
            ]
        );
        assert_eq!(encode(b"hello", "base64").unwrap(), "aGVsbG8=");
        assert_eq!(encode(b"abc", "hex").unwrap(), "616263");
        assert_eq!(decode("616263", "hex").unwrap(), b"abc");
        assert_eq!(regex("(", None).unwrap_err().code, "2201B");
    }
}
