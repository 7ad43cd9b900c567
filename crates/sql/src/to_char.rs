//! PostgreSQL's `to_char(timestamp | date | interval, format)`: the template patterns
//! (`YYYY`, `MM`, `DD`, `HH24`, `MI`, `SS`, `MS`, `US`, `AM`, `Month`, `Mon`, `Day`, `Dy`,
//! `DDD`, `WW`, `Q`, …, with the `FM` fill-mode prefix, `"quoted"` literals and `\` escapes).
//! DataFusion's own `to_char` reads chrono's `%Y` formats, so PostgreSQL templates would come
//! back verbatim; this replaces it.

use std::sync::Arc;

use chrono::{Datelike, NaiveDateTime, Timelike};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{code, SqlError};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A value to format: its wall-clock time (an interval's time of day part).
struct Moment {
    t: NaiveDateTime,
}

fn moment(v: &ScalarValue) -> Option<Moment> {
    let micros_to = |m: i64| chrono::DateTime::from_timestamp_micros(m).map(|d| d.naive_utc());
    let t = match v {
        ScalarValue::Date32(Some(d)) => micros_to(*d as i64 * 86_400_000_000)?,
        ScalarValue::Date64(Some(ms)) => micros_to(ms.saturating_mul(1000))?,
        ScalarValue::TimestampMicrosecond(Some(m), _) => micros_to(*m)?,
        ScalarValue::TimestampNanosecond(Some(n), _) => micros_to(n / 1000)?,
        ScalarValue::TimestampMillisecond(Some(ms), _) => micros_to(ms.saturating_mul(1000))?,
        ScalarValue::TimestampSecond(Some(s), _) => micros_to(s.saturating_mul(1_000_000))?,
        ScalarValue::IntervalMonthDayNano(Some(i)) => {
            let micros = i.nanoseconds / 1000;
            return Some(Moment {
                t: micros_to(micros.rem_euclid(86_400_000_000))?,
            });
        }
        _ => return None,
    };
    Some(Moment { t })
}

/// The template patterns, longest first so `HH24` wins over `HH` and `DDD` over `DD`.
const PATTERNS: &[&str] = &[
    "HH24", "HH12", "YYYY", "MONTH", "Month", "month", "A.M.", "P.M.", "a.m.", "p.m.", "DDD",
    "YYY", "MON", "Mon", "mon", "DAY", "Day", "day", "HH", "MI", "SS", "MS", "US", "AM", "PM",
    "am", "pm", "YY", "MM", "DD", "DY", "Dy", "dy", "WW", "Q", "Y", "D",
];

fn case_like(name: &str, pattern: &str) -> String {
    if pattern.chars().all(|c| c.is_ascii_uppercase()) {
        name.to_uppercase()
    } else if pattern.chars().all(|c| c.is_ascii_lowercase()) {
        name.to_lowercase()
    } else {
        name.to_string()
    }
}

fn field(m: &Moment, pattern: &str, fill: bool) -> String {
    let t = &m.t;
    let num = |v: i64, width: usize| {
        if fill {
            v.to_string()
        } else {
            format!("{v:0width$}")
        }
    };
    let name = |n: &str, pattern: &str, width: usize| {
        let s = case_like(n, pattern);
        if fill {
            s
        } else {
            format!("{s:width$}")
        }
    };
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let pm = t.hour() >= 12;
    match pattern {
        "HH24" => num(t.hour() as i64, 2),
        "HH12" | "HH" => num(hour12 as i64, 2),
        "MI" => num(t.minute() as i64, 2),
        "SS" => num(t.second() as i64, 2),
        "MS" => num((t.nanosecond() / 1_000_000) as i64, 3),
        "US" => num((t.nanosecond() / 1000) as i64, 6),
        "AM" | "PM" => if pm { "PM" } else { "AM" }.into(),
        "am" | "pm" => if pm { "pm" } else { "am" }.into(),
        "A.M." | "P.M." => if pm { "P.M." } else { "A.M." }.into(),
        "a.m." | "p.m." => if pm { "p.m." } else { "a.m." }.into(),
        "YYYY" => num(t.year() as i64, 4),
        "YYY" => num((t.year() % 1000) as i64, 3),
        "YY" => num((t.year() % 100) as i64, 2),
        "Y" => num((t.year() % 10) as i64, 1),
        "MM" => num(t.month() as i64, 2),
        "DD" => num(t.day() as i64, 2),
        "DDD" => num(t.ordinal() as i64, 3),
        "D" => num(t.weekday().num_days_from_sunday() as i64 + 1, 1),
        "WW" => num(((t.ordinal() - 1) / 7 + 1) as i64, 2),
        "Q" => num(((t.month() - 1) / 3 + 1) as i64, 1),
        "MONTH" | "Month" | "month" => name(MONTHS[t.month0() as usize], pattern, 9),
        "MON" | "Mon" | "mon" => name(&MONTHS[t.month0() as usize][..3], pattern, 3),
        "DAY" | "Day" | "day" => name(
            DAYS[t.weekday().num_days_from_sunday() as usize],
            pattern,
            9,
        ),
        "DY" | "Dy" | "dy" => name(
            &DAYS[t.weekday().num_days_from_sunday() as usize][..3],
            pattern,
            3,
        ),
        _ => String::new(),
    }
}

/// Formats `m` with a PostgreSQL template.
fn format(m: &Moment, template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            // A quoted literal, with \" inside.
            let mut chars = r.char_indices();
            let mut end = r.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            rest = &r[end.min(r.len())..];
            continue;
        }
        if let Some(r) = rest.strip_prefix('\\') {
            let mut chars = r.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
            continue;
        }
        let (fill, body) = match rest.strip_prefix("FM") {
            Some(b) => (true, b),
            None => (false, rest),
        };
        if let Some(p) = PATTERNS.iter().find(|p| body.starts_with(**p)) {
            out.push_str(&field(m, p, fill));
            rest = &body[p.len()..];
            continue;
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToChar {
    signature: Signature,
}

impl ToChar {
    pub fn udf() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::from(Self {
            signature: Signature::any(2, Volatility::Stable),
        }))
    }
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        crate::pg_functions::invoke_rowwise(&args, &DataType::Utf8, |row| {
            let template = match &row[1] {
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)) => s,
                _ => return Ok(ScalarValue::Utf8(None)),
            };
            if row[0].is_null() {
                return Ok(ScalarValue::Utf8(None));
            }
            let m = moment(&row[0]).ok_or_else(|| {
                SqlError::new(
                    code::UNDEFINED_FUNCTION,
                    format!(
                        "function to_char({}, text) does not exist",
                        row[0].data_type()
                    ),
                )
                .into_datafusion()
            })?;
            Ok(ScalarValue::Utf8(Some(format(&m, template))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Moment {
        Moment {
            t: NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap(),
        }
    }

    #[test]
    fn templates_match_postgres() {
        let m = at("2024-03-05 14:07:09.123");
        assert_eq!(format(&m, "YYYY-MM-DD"), "2024-03-05");
        assert_eq!(format(&m, "HH12:MI AM"), "02:07 PM");
        assert_eq!(format(&m, "Mon DD, YYYY"), "Mar 05, 2024");
        assert_eq!(format(&m, "FMMonth FMDD"), "March 5");
        assert_eq!(format(&m, "Day|Dy|FMDay"), "Tuesday  |Tue|Tuesday");
        assert_eq!(format(&m, "YY-Q-WW-DDD"), "24-1-10-065");
        assert_eq!(format(&m, "MS US"), "123 123000");
        assert_eq!(format(&m, "\"day\" DD"), "day 05");
    }
}
