//! PostgreSQL's date and timestamp input: the formats `date_in`/`timestamp_in` accept
//! (with `DateStyle = ISO, MDY`) and their error codes, where Arrow's parser accepts fewer
//! formats ('2024-01-01 10:00' without seconds, 'Mar 15 2024', 'epoch') and reports every
//! failure alike.
//!
//! Accepted: `2024-03-15`, `20240315`, `03/15/2024` (month first), `Mar 15 2024`,
//! `15 March 2024`, `March 15, 2024`, each optionally followed (after a space or `T`) by
//! `HH:MM[:SS[.ffffff]]` and, for timestamptz, a zone `Z`, `UTC`, `+02`, `-05:30`, `+0530`;
//! and `epoch`. Syntax that cannot be read is 22007; a field out of range (month 13,
//! February 30th, hour 25) is 22008.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use crate::error::{code, SqlError};

/// What a date/time text said: the local date-time and its zone offset, if given.
#[derive(Debug, PartialEq)]
pub struct Parsed {
    pub at: NaiveDateTime,
    pub offset_secs: Option<i32>,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn syntax(ty: &str, s: &str) -> SqlError {
    SqlError::new(
        code::INVALID_DATETIME_FORMAT,
        format!("invalid input syntax for type {ty}: \"{s}\""),
    )
}

fn out_of_range(s: &str) -> SqlError {
    SqlError::new(
        code::DATETIME_FIELD_OVERFLOW,
        format!("date/time field value out of range: \"{s}\""),
    )
}

fn month_of(word: &str) -> Option<u32> {
    let w = word.trim_end_matches('.');
    if w.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| w.starts_with(m) && "january february march april may june july august september october november december sept".contains(w))
        .map(|i| i as u32 + 1)
}

/// Parses `s` as PostgreSQL would for type `ty` (`date`, `timestamp`, `timestamp with time
/// zone`: only the last keeps a zone).
pub fn parse(s: &str, ty: &str) -> Result<Parsed, SqlError> {
    let text = s.trim().to_ascii_lowercase();
    if text == "epoch" {
        return Ok(Parsed {
            at: NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .ok_or_else(|| syntax(ty, s))?,
            offset_secs: Some(0),
        });
    }
    // Split off the time: the first token holding a ':' (an ISO 'T' separates it too).
    let (date_part, time_part) = split_time(&text);
    let (y, m, d) = parse_date_part(date_part.trim(), ty, s)?;
    let date = NaiveDate::from_ymd_opt(y, m, d).ok_or_else(|| out_of_range(s))?;
    let (micros, offset_secs) = match time_part {
        None => (0, None),
        Some(t) => parse_time_part(t.trim(), ty, s)?,
    };
    // 24:00:00 and a leap second carry into the next day / minute, as in PostgreSQL.
    let at = date.and_time(NaiveTime::MIN) + chrono::Duration::microseconds(micros);
    Ok(Parsed { at, offset_secs })
}

fn split_time(text: &str) -> (&str, Option<&str>) {
    let Some(colon) = text.find(':') else {
        return (text, None);
    };
    let start = text[..colon]
        .rfind(|c: char| c == ' ' || c == 't')
        .map_or(0, |i| i + 1);
    (
        text[..start].trim_end_matches(['t', ' ']),
        Some(&text[start..]),
    )
}

fn number(t: &str, ty: &str, s: &str) -> Result<i64, SqlError> {
    t.parse::<i64>().map_err(|_| syntax(ty, s))
}

fn parse_date_part(p: &str, ty: &str, s: &str) -> Result<(i32, u32, u32), SqlError> {
    let fits = |v: i64| i32::try_from(v).map_err(|_| out_of_range(s));
    let small = |v: i64| u32::try_from(v).map_err(|_| out_of_range(s));
    if p.len() == 8 && p.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((
            fits(number(&p[..4], ty, s)?)?,
            small(number(&p[4..6], ty, s)?)?,
            small(number(&p[6..], ty, s)?)?,
        ));
    }
    let tokens: Vec<&str> = p
        .split(|c: char| c == '-' || c == '/' || c == ' ' || c == ',' || c == '.')
        .filter(|t| !t.is_empty())
        .collect();
    if tokens.len() != 3 {
        return Err(syntax(ty, s));
    }
    let words: Vec<usize> = (0..3)
        .filter(|&i| tokens[i].bytes().all(|b| b.is_ascii_alphabetic()))
        .collect();
    match words.as_slice() {
        [] => {
            let n: Vec<i64> = tokens
                .iter()
                .map(|t| number(t, ty, s))
                .collect::<Result<_, _>>()?;
            if tokens[0].len() >= 3 {
                Ok((fits(n[0])?, small(n[1])?, small(n[2])?)) // y-m-d
            } else {
                Ok((fits(n[2])?, small(n[0])?, small(n[1])?)) // m/d/y (DateStyle MDY)
            }
        }
        [w] => {
            let month = month_of(tokens[*w]).ok_or_else(|| syntax(ty, s))?;
            let nums: Vec<&str> = (0..3).filter(|i| i != w).map(|i| tokens[i]).collect();
            let (a, b) = (number(nums[0], ty, s)?, number(nums[1], ty, s)?);
            // The four-digit (or larger than 31) number is the year.
            let (year, day) = if nums[0].len() >= 3 || a > 31 {
                (a, b)
            } else {
                (b, a)
            };
            Ok((fits(year)?, month, small(day)?))
        }
        _ => Err(syntax(ty, s)),
    }
}

fn parse_time_part(t: &str, ty: &str, s: &str) -> Result<(i64, Option<i32>), SqlError> {
    let zone_at = t
        .char_indices()
        .skip(1)
        .find(|(_, c)| matches!(c, '+' | '-' | 'z' | 'u' | 'g' | ' '))
        .map(|(i, _)| i);
    let (clock, zone) = match zone_at {
        Some(i) => (&t[..i], Some(t[i..].trim())),
        None => (t, None),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(syntax(ty, s));
    }
    let h = number(parts[0], ty, s)?;
    let m = number(parts[1], ty, s)?;
    let (sec, micros) = match parts.get(2) {
        None => (0, 0),
        Some(p) => {
            let (whole, frac) = p.split_once('.').unwrap_or((p, ""));
            if !frac.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax(ty, s));
            }
            let digits: String = frac.chars().chain(std::iter::repeat('0')).take(7).collect();
            let seven = digits.parse::<i64>().map_err(|_| syntax(ty, s))?;
            (number(whole, ty, s)?, (seven + 5) / 10) // round to microseconds
        }
    };
    let total_us = ((h * 60 + m) * 60 + sec) * 1_000_000 + micros;
    let in_range = (0..24).contains(&h) && (0..60).contains(&m) && (0..=60).contains(&sec);
    if !(in_range || total_us == 24 * 3_600_000_000) {
        return Err(out_of_range(s));
    }
    let offset = match zone {
        None => None,
        Some(z) => Some(parse_zone(z).ok_or_else(|| syntax(ty, s))?),
    };
    Ok((total_us, offset))
}

fn parse_zone(z: &str) -> Option<i32> {
    if matches!(z, "z" | "utc" | "gmt" | "zulu") {
        return Some(0);
    }
    let sign = match z.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body = &z[1..];
    let (h, m) = match body.split_once(':') {
        Some((h, m)) => (h, m),
        None if body.len() == 4 => (&body[..2], &body[2..]),
        None => (body, "0"),
    };
    let (h, m) = (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?);
    if !(0..=15).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// Days since 1970-01-01 of date text `s`.
pub fn date_days(s: &str) -> Result<i32, SqlError> {
    let p = parse(s, "date")?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    Ok((p.at.date() - epoch).num_days() as i32)
}

/// Microseconds since 1970-01-01 00:00 of timestamp text `s`; with `zoned`, the instant in
/// UTC (text without a zone is UTC, the session time zone).
pub fn timestamp_micros(s: &str, zoned: bool) -> Result<i64, SqlError> {
    let ty = if zoned {
        "timestamp with time zone"
    } else {
        "timestamp"
    };
    let p = parse(s, ty)?;
    let local = p.at.and_utc().timestamp_micros();
    Ok(match (zoned, p.offset_secs) {
        (true, Some(off)) => local - off as i64 * 1_000_000,
        _ => local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> String {
        let us = timestamp_micros(s, true).unwrap();
        chrono::DateTime::from_timestamp_micros(us)
            .unwrap()
            .naive_utc()
            .to_string()
    }

    #[test]
    fn formats_postgres_accepts() {
        assert_eq!(ts("2024-01-01 10:00"), "2024-01-01 10:00:00");
        assert_eq!(ts("2024-01-01T10:00:30.5"), "2024-01-01 10:00:30.500");
        assert_eq!(ts("2024-03-15 10:00:00+02"), "2024-03-15 08:00:00");
        assert_eq!(ts("2024-03-15 10:00:00-05:30"), "2024-03-15 15:30:00");
        assert_eq!(ts("2024-03-15 10:00Z"), "2024-03-15 10:00:00");
        assert_eq!(ts("epoch"), "1970-01-01 00:00:00");
        assert_eq!(ts("Mar 15 2024"), "2024-03-15 00:00:00");
        assert_eq!(ts("15 March 2024"), "2024-03-15 00:00:00");
        assert_eq!(ts("March 15, 2024 01:02:03"), "2024-03-15 01:02:03");
        assert_eq!(ts("03/15/2024"), "2024-03-15 00:00:00");
        assert_eq!(ts("20240102"), "2024-01-02 00:00:00");
        assert_eq!(ts("2024-01-01 24:00:00"), "2024-01-02 00:00:00");
        assert_eq!(date_days("1970-01-02").unwrap(), 1);
    }

    #[test]
    fn errors_carry_postgres_codes() {
        let c = |s: &str| date_days(s).unwrap_err().code;
        assert_eq!(c("2023-02-29"), code::DATETIME_FIELD_OVERFLOW);
        assert_eq!(c("2024-13-01"), code::DATETIME_FIELD_OVERFLOW);
        assert_eq!(c("2024-04-31"), code::DATETIME_FIELD_OVERFLOW);
        assert_eq!(c("not a date"), code::INVALID_DATETIME_FORMAT);
        assert_eq!(c("yesterdayish"), code::INVALID_DATETIME_FORMAT);
        assert_eq!(c("garbage-date"), code::INVALID_DATETIME_FORMAT);
        let t = timestamp_micros("2024-01-01 25:00:00", false).unwrap_err();
        assert_eq!(t.code, code::DATETIME_FIELD_OVERFLOW);
    }
}
