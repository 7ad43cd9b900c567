//! COPY TO STDOUT: rows as text-format or CSV lines.

use kestrel_sql::copy::{CopyFormat, CopyOptions};

/// One row as a COPY line (with its newline).
pub fn copy_line(row: &[Option<String>], o: &CopyOptions) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            out.push(o.delimiter);
        }
        match (cell, o.format) {
            (None, _) => out.extend_from_slice(o.null.as_bytes()),
            (Some(v), CopyFormat::Text) => escape_text(v.as_bytes(), o.delimiter, &mut out),
            (Some(v), CopyFormat::Csv) => quote_csv(v.as_bytes(), o, &mut out),
        }
    }
    out.push(b'\n');
    out
}

fn escape_text(v: &[u8], delimiter: u8, out: &mut Vec<u8>) {
    for &b in v {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' if delimiter == b'\t' => out.extend_from_slice(b"\\t"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            11 => out.extend_from_slice(b"\\v"),
            b if b == delimiter => {
                out.push(b'\\');
                out.push(b);
            }
            b => out.push(b),
        }
    }
}

/// Quotes a CSV value when it must be (delimiter, quote, newline, or equal to the NULL text
/// or the end-of-data marker).
fn quote_csv(v: &[u8], o: &CopyOptions, out: &mut Vec<u8>) {
    let needs = v == o.null.as_bytes()
        || v == b"\\."
        || v.iter()
            .any(|&b| b == o.delimiter || b == o.quote || b == b'\n' || b == b'\r');
    if !needs {
        out.extend_from_slice(v);
        return;
    }
    out.push(o.quote);
    for &b in v {
        if b == o.quote || b == o.escape {
            out.push(o.escape);
        }
        out.push(b);
    }
    out.push(o.quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_csv_lines() {
        let text = CopyOptions::parse(&[], &[]).unwrap();
        let row = vec![Some("a\tb\\".to_string()), None, Some(String::new())];
        assert_eq!(copy_line(&row, &text), b"a\\tb\\\\\t\\N\t\n".to_vec());
        let mut csv = text.clone();
        csv.format = CopyFormat::Csv;
        csv.delimiter = b',';
        csv.null = String::new();
        csv.quote = b'"';
        csv.escape = b'"';
        let row = vec![
            Some("x,\"y\"".to_string()),
            None,
            Some(String::new()),
            Some("p".into()),
        ];
        assert_eq!(copy_line(&row, &csv), b"\"x,\"\"y\"\"\",,\"\",p\n".to_vec());
    }
}
