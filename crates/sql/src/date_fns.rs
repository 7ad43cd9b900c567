//! PostgreSQL date/time functions DataFusion lacks or answers differently:
//!
//! * `extract(field FROM x)` (rewritten to `kestrel_extract('field', x)` before planning)
//!   returns numeric, as PostgreSQL 14+: `second` and `epoch` carry six decimals,
//!   `millisecond` three, the others none. DataFusion's `date_part` (float8, as PostgreSQL's
//!   `date_part`) stays as it is.
//! * `age`, `justify_hours`, `justify_days`, `justify_interval`, `make_interval` (named
//!   arguments become positional before planning), `make_timestamp`, and `make_date` with
//!   PostgreSQL's error codes (22008 for a field out of range).
//!
//! Intervals follow PostgreSQL's arithmetic: a month is 30 days and a day 24 hours wherever
//! units must be converted, and each field keeps its own sign.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, IntervalMonthDayNano, TimeUnit};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::error::{code, SqlError};
use crate::pg_functions::{invoke_rowwise, tagged_udf};

const US_PER_SEC: i64 = 1_000_000;
const US_PER_DAY: i64 = 86_400 * US_PER_SEC;
const NS_PER_US: i64 = 1000;

fn interval_type() -> DataType {
    DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano)
}

fn field_range(what: &str) -> SqlError {
    SqlError::new(
        code::DATETIME_FIELD_OVERFLOW,
        format!("{what} field value out of range"),
    )
}

// ---------------------------------------------------------------------------------------
// extract

/// The scale of `extract(field FROM <source>)`'s numeric result.
fn extract_scale(field: &str, source: &DataType) -> i8 {
    match field {
        "second" | "seconds" => 6,
        "epoch" if *source != DataType::Date32 => 6,
        "millisecond" | "milliseconds" => 3,
        _ => 0,
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Extract {
    signature: Signature,
}

fn field_arg(v: Option<&ScalarValue>) -> Option<String> {
    match v? {
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => Some(s.to_lowercase()),
        _ => None,
    }
}

impl ScalarUDFImpl for Extract {
    fn name(&self) -> &str {
        "kestrel_extract"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Decimal128(38, 6))
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let field = field_arg(args.scalar_arguments.first().copied().flatten()).unwrap_or_default();
        let source = args.arg_fields.get(1).map(|f| f.data_type().clone());
        let scale = extract_scale(&field, source.as_ref().unwrap_or(&DataType::Null));
        Ok(Arc::new(Field::new(
            "extract",
            DataType::Decimal128(38, scale),
            true,
        )))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let ret = args.return_field.data_type().clone();
        let DataType::Decimal128(_, scale) = ret else {
            return Err(SqlError::internal("extract result type").into_datafusion());
        };
        invoke_rowwise(&args, &ret, |row| {
            let field = field_arg(row.first()).unwrap_or_default();
            let v = extract(&field, &row[1], scale).map_err(SqlError::into_datafusion)?;
            Ok(ScalarValue::Decimal128(v, 38, scale))
        })
    }
}

fn unit_not_recognized(field: &str, ty: &str) -> SqlError {
    SqlError::new(
        code::INVALID_PARAMETER_VALUE,
        format!("unit \"{field}\" not recognized for type {ty}"),
    )
}

/// `extract(field FROM v)` as an unscaled decimal of `scale`; `None` for NULL.
fn extract(field: &str, v: &ScalarValue, scale: i8) -> Result<Option<i128>, SqlError> {
    let pow = 10i128.pow(scale.max(0) as u32);
    // Values with microseconds: `us` total microseconds of the second-and-below part.
    let from_us = |us: i128| us * pow / US_PER_SEC as i128;
    let int = |n: i64| Some(n as i128 * pow);
    let (at, ty) = match v {
        v if v.is_null() => return Ok(None),
        ScalarValue::Date32(Some(d)) => (days_to_datetime(*d as i64)?, "date"),
        ScalarValue::TimestampMicrosecond(Some(t), _) => (micros_to_datetime(*t)?, "timestamp"),
        ScalarValue::TimestampNanosecond(Some(t), _) => {
            (micros_to_datetime(t.div_euclid(NS_PER_US))?, "timestamp")
        }
        ScalarValue::TimestampMillisecond(Some(t), _) => {
            (micros_to_datetime(t * 1000)?, "timestamp")
        }
        ScalarValue::TimestampSecond(Some(t), _) => {
            (micros_to_datetime(t * US_PER_SEC)?, "timestamp")
        }
        ScalarValue::IntervalMonthDayNano(Some(iv)) => return extract_interval(field, *iv, scale),
        other => {
            let iv = other
                .cast_to(&interval_type())
                .map_err(|_| unit_not_recognized(field, "this type"))?;
            return extract(field, &iv, scale);
        }
    };
    let sec_us = at.second() as i128 * US_PER_SEC as i128 + (at.nanosecond() / 1000) as i128;
    let year = at.year() as i64;
    Ok(match field {
        "year" | "years" => int(year),
        "month" | "months" => int(at.month() as i64),
        "day" | "days" => int(at.day() as i64),
        "hour" | "hours" => int(at.hour() as i64),
        "minute" | "minutes" => int(at.minute() as i64),
        "second" | "seconds" => Some(from_us(sec_us)),
        "millisecond" | "milliseconds" => Some(sec_us * pow / 1000),
        "microsecond" | "microseconds" => Some(sec_us * pow),
        "quarter" => int((at.month() as i64 - 1) / 3 + 1),
        "dow" => int(at.weekday().num_days_from_sunday() as i64),
        "isodow" => int(at.weekday().number_from_monday() as i64),
        "doy" => int(at.ordinal() as i64),
        "week" => int(at.iso_week().week() as i64),
        "isoyear" => int(at.iso_week().year() as i64),
        "decade" => int(year.div_euclid(10)),
        "century" if year > 0 => int((year + 99) / 100),
        "century" => int(-((99 - (year - 1)) / 100)),
        "millennium" if year > 0 => int((year + 999) / 1000),
        "millennium" => int(-((999 - (year - 1)) / 1000)),
        "epoch" => Some(from_us(at.and_utc().timestamp_micros() as i128)),
        "julian" => int(at.date().num_days_from_ce() as i64 + 1_721_425),
        "timezone" | "timezone_hour" | "timezone_minute" => int(0),
        _ => return Err(unit_not_recognized(field, ty)),
    })
}

fn extract_interval(
    field: &str,
    iv: IntervalMonthDayNano,
    scale: i8,
) -> Result<Option<i128>, SqlError> {
    let pow = 10i128.pow(scale.max(0) as u32);
    let us = (iv.nanoseconds / NS_PER_US) as i128;
    let int = |n: i128| Some(n * pow);
    let years = (iv.months / 12) as i128;
    let sec_us = us % (60 * US_PER_SEC as i128);
    Ok(match field {
        "year" | "years" => int(years),
        "month" | "months" => int((iv.months % 12) as i128),
        "day" | "days" => int(iv.days as i128),
        "hour" | "hours" => int(us / (3600 * US_PER_SEC as i128)),
        "minute" | "minutes" => int((us / (60 * US_PER_SEC as i128)) % 60),
        "second" | "seconds" => Some(sec_us * pow / US_PER_SEC as i128),
        "millisecond" | "milliseconds" => Some(sec_us * pow / 1000),
        "microsecond" | "microseconds" => Some(sec_us * pow),
        "quarter" => int(((iv.months % 12) / 3 + 1) as i128),
        "decade" => int(years / 10),
        "century" => int(years / 100),
        "millennium" => int(years / 1000),
        "epoch" => {
            // A year is 365.25 days, a leftover month 30 days (PostgreSQL's interval_part).
            let day_us = US_PER_DAY as i128;
            let total = years * 365 * day_us
                + years * day_us / 4
                + (iv.months % 12) as i128 * 30 * day_us
                + iv.days as i128 * day_us
                + us;
            Some(total * pow / US_PER_SEC as i128)
        }
        _ => return Err(unit_not_recognized(field, "interval")),
    })
}

fn days_to_datetime(days: i64) -> Result<NaiveDateTime, SqlError> {
    micros_to_datetime(days * US_PER_DAY)
}

fn micros_to_datetime(us: i64) -> Result<NaiveDateTime, SqlError> {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|d| d.naive_utc())
        .ok_or_else(|| SqlError::new(code::DATETIME_FIELD_OVERFLOW, "timestamp out of range"))
}

// ---------------------------------------------------------------------------------------
// age, justify_*, make_*

fn as_micros(v: &ScalarValue) -> Result<Option<i64>, SqlError> {
    if v.is_null() {
        return Ok(None);
    }
    let ts = v
        .cast_to(&DataType::Timestamp(TimeUnit::Microsecond, None))
        .map_err(|e| crate::error::from_datafusion(e))?;
    match ts {
        ScalarValue::TimestampMicrosecond(t, _) => Ok(t),
        _ => Ok(None),
    }
}

fn days_in_month(year: i32, month: u32) -> i64 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    match (
        NaiveDate::from_ymd_opt(year, month, 1),
        NaiveDate::from_ymd_opt(ny, nm, 1),
    ) {
        (Some(a), Some(b)) => (b - a).num_days(),
        _ => 30,
    }
}

/// PostgreSQL's `age(a, b)`: field-by-field difference with borrowing, so the result reads
/// in years, months and days of the calendar.
pub fn age(a_us: i64, b_us: i64) -> Result<IntervalMonthDayNano, SqlError> {
    let (a, b) = (micros_to_datetime(a_us)?, micros_to_datetime(b_us)?);
    let before = a_us < b_us;
    let sign = if before { -1 } else { 1 };
    let f = |x: &NaiveDateTime| {
        [
            (x.nanosecond() / 1000) as i64,
            x.second() as i64,
            x.minute() as i64,
            x.hour() as i64,
            x.day() as i64,
            x.month() as i64,
            x.year() as i64,
        ]
    };
    let (fa, fb) = (f(&a), f(&b));
    let mut d: Vec<i64> = (0..7).map(|i| (fa[i] - fb[i]) * sign).collect();
    let limits = [US_PER_SEC, 60, 60, 24];
    for i in 0..4 {
        while d[i] < 0 {
            d[i] += limits[i];
            d[i + 1] -= 1;
        }
    }
    let (ref_year, ref_month) = if before {
        (a.year(), a.month())
    } else {
        (b.year(), b.month())
    };
    while d[4] < 0 {
        d[4] += days_in_month(ref_year, ref_month);
        d[5] -= 1;
    }
    while d[5] < 0 {
        d[5] += 12;
        d[6] -= 1;
    }
    let months = (d[6] * 12 + d[5]) * sign;
    let days = d[4] * sign;
    let time_us = (((d[3] * 60 + d[2]) * 60 + d[1]) * US_PER_SEC + d[0]) * sign;
    Ok(IntervalMonthDayNano::new(
        i32::try_from(months).map_err(|_| field_range("interval"))?,
        i32::try_from(days).map_err(|_| field_range("interval"))?,
        time_us * NS_PER_US,
    ))
}

fn as_interval(v: &ScalarValue) -> Result<Option<IntervalMonthDayNano>, SqlError> {
    if v.is_null() {
        return Ok(None);
    }
    match v
        .cast_to(&interval_type())
        .map_err(crate::error::from_datafusion)?
    {
        ScalarValue::IntervalMonthDayNano(iv) => Ok(iv),
        _ => Ok(None),
    }
}

/// `justify_hours`: whole 24-hour spans of the time part become days.
pub fn justify_hours(iv: IntervalMonthDayNano) -> IntervalMonthDayNano {
    let us = iv.nanoseconds / NS_PER_US;
    let mut days = iv.days as i64 + us / US_PER_DAY;
    let mut time = us % US_PER_DAY;
    if days > 0 && time < 0 {
        time += US_PER_DAY;
        days -= 1;
    } else if days < 0 && time > 0 {
        time -= US_PER_DAY;
        days += 1;
    }
    IntervalMonthDayNano::new(iv.months, days as i32, time * NS_PER_US)
}

/// `justify_days`: whole 30-day spans become months.
pub fn justify_days(iv: IntervalMonthDayNano) -> IntervalMonthDayNano {
    let mut months = iv.months + iv.days / 30;
    let mut days = iv.days % 30;
    if months > 0 && days < 0 {
        days += 30;
        months -= 1;
    } else if months < 0 && days > 0 {
        days -= 30;
        months += 1;
    }
    IntervalMonthDayNano::new(months, days, iv.nanoseconds)
}

/// `justify_interval`: both, with every field given one sign.
pub fn justify_interval(iv: IntervalMonthDayNano) -> IntervalMonthDayNano {
    let us = iv.nanoseconds / NS_PER_US;
    let mut days = iv.days as i64 + us / US_PER_DAY;
    let mut time = us % US_PER_DAY;
    let mut months = iv.months as i64 + days / 30;
    days %= 30;
    if months > 0 && (days < 0 || (days == 0 && time < 0)) {
        days += 30;
        months -= 1;
    } else if months < 0 && (days > 0 || (days == 0 && time > 0)) {
        days -= 30;
        months += 1;
    }
    if days > 0 && time < 0 {
        time += US_PER_DAY;
        days -= 1;
    } else if days < 0 && time > 0 {
        time -= US_PER_DAY;
        days += 1;
    }
    IntervalMonthDayNano::new(months as i32, days as i32, time * NS_PER_US)
}

fn float(v: &ScalarValue) -> Option<f64> {
    match v.cast_to(&DataType::Float64).ok()? {
        ScalarValue::Float64(f) => f,
        _ => None,
    }
}

/// The names of `make_interval`'s parameters, in order (all default to 0).
pub const MAKE_INTERVAL_PARAMS: [&str; 7] =
    ["years", "months", "weeks", "days", "hours", "mins", "secs"];

fn make_interval(a: &[ScalarValue]) -> Result<ScalarValue, SqlError> {
    let mut v = [0f64; 7];
    for (i, x) in a.iter().enumerate().take(7) {
        match float(x) {
            Some(f) => v[i] = f,
            None => return Ok(ScalarValue::IntervalMonthDayNano(None)),
        }
    }
    let months = v[0] * 12.0 + v[1];
    let days = v[2] * 7.0 + v[3];
    let us = ((v[4] * 60.0 + v[5]) * 60.0 + v[6]) * US_PER_SEC as f64;
    let fits = |x: f64| x.is_finite() && x.abs() <= i32::MAX as f64;
    if !fits(months) || !fits(days) || !us.is_finite() || us.abs() > 9.2e15 {
        return Err(SqlError::new(
            code::DATETIME_FIELD_OVERFLOW,
            "interval out of range",
        ));
    }
    Ok(ScalarValue::IntervalMonthDayNano(Some(
        IntervalMonthDayNano::new(months as i32, days as i32, us.round() as i64 * NS_PER_US),
    )))
}

fn make_date(a: &[ScalarValue]) -> Result<Option<NaiveDate>, SqlError> {
    let n: Vec<Option<f64>> = a.iter().take(3).map(float).collect();
    let (Some(y), Some(m), Some(d)) = (n[0], n[1], n[2]) else {
        return Ok(None);
    };
    let y = if y < 0.0 { y + 1.0 } else { y }; // PostgreSQL: year -1 is 1 BC
    NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)
        .filter(|_| m >= 1.0 && d >= 1.0 && y != 0.0)
        .map(Some)
        .ok_or_else(|| {
            SqlError::new(
                code::DATETIME_FIELD_OVERFLOW,
                format!(
                    "date field value out of range: {}-{:02}-{:02}",
                    n[0].unwrap_or(0.0),
                    m,
                    d
                ),
            )
        })
}

fn date_days(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    (d - epoch).num_days() as i32
}

fn make_timestamp(a: &[ScalarValue]) -> Result<ScalarValue, SqlError> {
    let Some(date) = make_date(a)? else {
        return Ok(ScalarValue::TimestampMicrosecond(None, None));
    };
    let t: Vec<Option<f64>> = a.iter().skip(3).take(3).map(float).collect();
    let (Some(h), Some(mi), Some(s)) = (t[0], t[1], t[2]) else {
        return Ok(ScalarValue::TimestampMicrosecond(None, None));
    };
    if !(0.0..24.0).contains(&h) || !(0.0..60.0).contains(&mi) || !(0.0..60.0).contains(&s) {
        return Err(SqlError::new(
            code::DATETIME_FIELD_OVERFLOW,
            format!("time field value out of range: {h}:{mi}:{s}"),
        ));
    }
    let us = date_days(date) as i64 * US_PER_DAY
        + ((h as i64 * 60 + mi as i64) * 60) * US_PER_SEC
        + (s * US_PER_SEC as f64).round() as i64;
    Ok(ScalarValue::TimestampMicrosecond(Some(us), None))
}

fn interval_fn(
    name: &'static str,
    f: fn(IntervalMonthDayNano) -> IntervalMonthDayNano,
) -> Arc<ScalarUDF> {
    tagged_udf(
        name,
        &[1],
        interval_type(),
        None,
        Volatility::Immutable,
        move |a| {
            Ok(ScalarValue::IntervalMonthDayNano(
                as_interval(&a[0])?.map(f),
            ))
        },
    )
}

/// The functions of this module, registered once per session.
pub fn udfs() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(Extract {
            signature: Signature::any(2, Volatility::Immutable),
        })),
        tagged_udf(
            "age",
            &[2],
            interval_type(),
            None,
            Volatility::Immutable,
            |a| {
                Ok(ScalarValue::IntervalMonthDayNano(
                    match (as_micros(&a[0])?, as_micros(&a[1])?) {
                        (Some(x), Some(y)) => Some(age(x, y)?),
                        _ => None,
                    },
                ))
            },
        ),
        interval_fn("justify_hours", justify_hours),
        interval_fn("justify_days", justify_days),
        interval_fn("justify_interval", justify_interval),
        tagged_udf(
            "make_interval",
            &[0, 1, 2, 3, 4, 5, 6, 7],
            interval_type(),
            None,
            Volatility::Immutable,
            make_interval,
        ),
        tagged_udf(
            "make_date",
            &[3],
            DataType::Date32,
            None,
            Volatility::Immutable,
            |a| Ok(ScalarValue::Date32(make_date(a)?.map(date_days))),
        ),
        tagged_udf(
            "make_timestamp",
            &[6],
            DataType::Timestamp(TimeUnit::Microsecond, None),
            None,
            Volatility::Immutable,
            make_timestamp,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        crate::datetime::timestamp_micros(s, false).unwrap()
    }

    #[test]
    fn age_borrows_like_postgres() {
        let a = age(ts("2024-03-15"), ts("2000-01-01")).unwrap();
        assert_eq!((a.months, a.days, a.nanoseconds), (24 * 12 + 2, 14, 0));
        let b = age(ts("2024-03-15"), ts("2024-01-20")).unwrap();
        assert_eq!((b.months, b.days), (1, 26));
        let c = age(ts("2024-01-01 10:00"), ts("2024-01-01 08:30")).unwrap();
        assert_eq!(c.nanoseconds, 90 * 60 * 1_000_000_000);
        let d = age(ts("2024-01-20"), ts("2024-03-15")).unwrap();
        assert_eq!((d.months, d.days), (-1, -26));
    }

    #[test]
    fn justify() {
        let h = |x: i64| x * 3600 * 1_000_000_000;
        let j = justify_hours(IntervalMonthDayNano::new(0, 0, h(25)));
        assert_eq!((j.days, j.nanoseconds), (1, h(1)));
        let d = justify_days(IntervalMonthDayNano::new(0, 35, 0));
        assert_eq!((d.months, d.days), (1, 5));
        let i = justify_interval(IntervalMonthDayNano::new(1, 0, -h(1)));
        assert_eq!((i.months, i.days, i.nanoseconds), (0, 29, h(23)));
    }

    #[test]
    fn extract_scales_and_fields() {
        let t = ScalarValue::TimestampMicrosecond(Some(ts("2024-03-15 10:20:30.5")), None);
        assert_eq!(extract("second", &t, 6).unwrap(), Some(30_500_000));
        assert_eq!(extract("hour", &t, 0).unwrap(), Some(10));
        assert_eq!(extract("quarter", &t, 0).unwrap(), Some(1));
        assert_eq!(extract("century", &t, 0).unwrap(), Some(21));
        assert_eq!(extract("decade", &t, 0).unwrap(), Some(202));
        assert_eq!(extract("dow", &t, 0).unwrap(), Some(5));
        let iv = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(
            0,
            0,
            3_600_000_000_000,
        )));
        assert_eq!(extract("epoch", &iv, 6).unwrap(), Some(3_600_000_000));
        assert_eq!(
            extract("fortnight", &t, 0).unwrap_err().code,
            code::INVALID_PARAMETER_VALUE
        );
    }
}
