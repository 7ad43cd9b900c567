//! COPY … FROM STDIN and COPY … TO STDOUT, text and CSV formats.
//!
//! COPY FROM is a bulk path: the client's data arrives in chunks, complete lines are parsed
//! into rows batch by batch (each column of a batch is converted from text with one Arrow
//! cast), validated like INSERT rows and buffered in one transaction — the open block's, or
//! a fresh one committed at the end — so a COPY is atomic and costs one commit, not one per
//! row. Rows whose key already holds a committed row fail the commit with 23505.
//!
//! COPY TO runs the equivalent query; the wire layer formats the rows ([`CopyOptions`] says
//! how).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};
use kestrel_kv::Txn;
use tokio::sync::RwLock;

use crate::catalog::TableDesc;
use crate::datum::{datums_from_array, Datum};
use crate::error::{code, SqlError, SqlResult};
use crate::provider::validate_row;
use crate::types::SqlType;

/// Rows converted and buffered per batch.
const COPY_BATCH_ROWS: usize = 1024;
/// The longest line (row) COPY FROM accepts.
pub const COPY_LINE_BYTES_MAX: usize = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: u8,
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
}

fn single_byte(c: char, what: &str) -> SqlResult<u8> {
    if c.is_ascii() {
        Ok(c as u8)
    } else {
        Err(SqlError::unsupported(format!(
            "COPY {what} must be a single one-byte character"
        )))
    }
}

impl CopyOptions {
    pub fn parse(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> SqlResult<Self> {
        let mut format = CopyFormat::Text;
        let (mut delimiter, mut null, mut header, mut quote, mut escape) =
            (None, None, false, None, None);
        for o in options {
            match o {
                CopyOption::Format(f) => {
                    format = match f.value.to_lowercase().as_str() {
                        "text" => CopyFormat::Text,
                        "csv" => CopyFormat::Csv,
                        "binary" => return Err(SqlError::unsupported("COPY binary format")),
                        other => {
                            return Err(SqlError::new(
                                code::INVALID_PARAMETER_VALUE,
                                format!("COPY format \"{other}\" not recognized"),
                            ))
                        }
                    }
                }
                CopyOption::Freeze(_) | CopyOption::Encoding(_) => {}
                CopyOption::Delimiter(c) => delimiter = Some(single_byte(*c, "delimiter")?),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(h) => header = *h,
                CopyOption::Quote(c) => quote = Some(single_byte(*c, "quote")?),
                CopyOption::Escape(c) => escape = Some(single_byte(*c, "escape")?),
                other => return Err(SqlError::unsupported(format!("COPY option {other}"))),
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Binary => {
                    return Err(SqlError::unsupported("COPY binary format"))
                }
                CopyLegacyOption::Delimiter(c) => delimiter = Some(single_byte(*c, "delimiter")?),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                CopyLegacyOption::Csv(opts) => {
                    format = CopyFormat::Csv;
                    for c in opts {
                        match c {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(q) => {
                                quote = Some(single_byte(*q, "quote")?)
                            }
                            CopyLegacyCsvOption::Escape(e) => {
                                escape = Some(single_byte(*e, "escape")?)
                            }
                            other => {
                                return Err(SqlError::unsupported(format!("COPY option {other}")))
                            }
                        }
                    }
                }
                other => return Err(SqlError::unsupported(format!("COPY option {other}"))),
            }
        }
        let csv = format == CopyFormat::Csv;
        if header && !csv {
            return Err(SqlError::unsupported("COPY HEADER in text format"));
        }
        let quote = quote.unwrap_or(b'"');
        Ok(Self {
            format,
            delimiter: delimiter.unwrap_or(if csv { b',' } else { b'\t' }),
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            header,
            quote,
            escape: escape.unwrap_or(quote),
        })
    }
}

fn bad_copy(msg: impl Into<String>) -> SqlError {
    SqlError::new(code::BAD_COPY_FILE_FORMAT, msg)
}

/// Decodes one text-format field (backslash escapes).
fn unescape_text(field: &[u8]) -> SqlResult<String> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' || i >= field.len() {
            out.push(b);
            continue;
        }
        let c = field[i];
        i += 1;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = (c - b'0') as u32;
                for _ in 0..2 {
                    match field.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xFF) as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    out.push(b'x');
                } else {
                    out.push(v as u8);
                }
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).map_err(|_| {
        SqlError::new(
            code::CHARACTER_NOT_IN_REPERTOIRE,
            "invalid byte sequence for encoding \"UTF8\"",
        )
    })
}

/// Splits one text-format line into fields (`None` = NULL).
fn split_text(line: &[u8], o: &CopyOptions) -> SqlResult<Vec<Option<String>>> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i <= line.len() {
        if i == line.len() || line[i] == o.delimiter {
            let raw = &line[start..i];
            fields.push(if raw == o.null.as_bytes() {
                None
            } else {
                Some(unescape_text(raw)?)
            });
            start = i + 1;
        } else if line[i] == b'\\' {
            i += 1; // the escaped byte cannot be a delimiter
        }
        i += 1;
    }
    Ok(fields)
}

/// Splits one CSV record into fields. Unquoted fields equal to the NULL string are NULL.
fn split_csv(rec: &[u8], o: &CopyOptions) -> SqlResult<Vec<Option<String>>> {
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let mut buf = Vec::new();
        let mut quoted = false;
        while i < rec.len() && rec[i] != o.delimiter {
            if rec[i] == o.quote {
                quoted = true;
                i += 1;
                loop {
                    match rec.get(i) {
                        None => return Err(bad_copy("unterminated CSV quoted field")),
                        Some(&c)
                            if c == o.escape
                                && matches!(rec.get(i + 1), Some(&n) if n == o.quote || n == o.escape) =>
                        {
                            buf.push(rec[i + 1]);
                            i += 2;
                        }
                        Some(&c) if c == o.quote => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            buf.push(c);
                            i += 1;
                        }
                    }
                }
            } else {
                buf.push(rec[i]);
                i += 1;
            }
        }
        let text = String::from_utf8(buf).map_err(|_| {
            SqlError::new(
                code::CHARACTER_NOT_IN_REPERTOIRE,
                "invalid byte sequence for encoding \"UTF8\"",
            )
        })?;
        fields.push(if !quoted && text == o.null {
            None
        } else {
            Some(text)
        });
        if i >= rec.len() {
            return Ok(fields);
        }
        i += 1; // the delimiter
    }
}

/// Where a CSV record ends in `buf` (index of its terminating newline), honouring quotes:
/// `Ok(end)`, or `Err(resume)` — where to continue scanning once more data has arrived (an
/// escape byte at the very end of `buf` is decided only by the byte after it).
fn csv_record_end(
    buf: &[u8],
    from: usize,
    o: &CopyOptions,
    in_quotes: &mut bool,
) -> Result<usize, usize> {
    let mut i = from;
    while i < buf.len() {
        let c = buf[i];
        if *in_quotes {
            if c == o.escape && o.escape != o.quote {
                match buf.get(i + 1) {
                    None => return Err(i),
                    Some(&q) if q == o.quote || q == o.escape => {
                        i += 2;
                        continue;
                    }
                    Some(_) => {}
                }
            }
            if c == o.quote {
                *in_quotes = false;
            }
        } else if c == o.quote {
            *in_quotes = true;
        } else if c == b'\n' {
            return Ok(i);
        }
        i += 1;
    }
    Err(buf.len())
}

/// Converts text fields of one column to datums of `ty`.
fn convert_column(ty: &SqlType, values: Vec<Option<String>>) -> SqlResult<Vec<Datum>> {
    if *ty == SqlType::Bytea {
        return values
            .into_iter()
            .map(|v| match v {
                None => Ok(Datum::Null),
                Some(s) => crate::pgcompat::parse_bytea(&s).map(Datum::Bytes),
            })
            .collect();
    }
    let text: ArrayRef = Arc::new(StringArray::from(values));
    let target = ty.arrow();
    let arr = if text.data_type() == &target {
        text
    } else {
        let opts = CastOptions {
            safe: false,
            ..Default::default()
        };
        cast_with_options(&text, &target, &opts).map_err(|e| {
            SqlError::new(
                code::INVALID_TEXT_REPRESENTATION,
                format!("invalid input syntax for type {}: {e}", ty.pg_name()),
            )
        })?
    };
    datums_from_array(ty, &arr)
}

/// An in-progress COPY FROM STDIN.
pub struct CopyIn {
    desc: Arc<TableDesc>,
    checks: crate::check::Checks,
    /// The table column each input field fills, in input order.
    targets: Vec<usize>,
    opts: CopyOptions,
    pub txn: Arc<RwLock<Txn>>,
    /// Commit when the data ends (no transaction block is open).
    pub autocommit: bool,
    /// Bytes received but not yet parsed (an incomplete last line).
    pending: Vec<u8>,
    /// Resume position of the CSV record scan within `pending`.
    scan_from: usize,
    in_quotes: bool,
    header_pending: bool,
    /// The end-of-data marker `\.` was seen; later data is ignored.
    ended: bool,
    batch: Vec<Vec<Option<String>>>,
    pub rows: u64,
    line: u64,
    unique_id: Box<dyn Fn() -> i64 + Send + Sync>,
    writer: crate::index::TableWriter,
    /// Per-row DEFAULTs of the columns COPY does not name (`nextval(…)`, `now()` …).
    per_row: Vec<(usize, Arc<dyn datafusion::physical_expr::PhysicalExpr>)>,
    /// The catalog the table's foreign keys find their parents in (none: no foreign keys).
    parents: Option<Arc<crate::catalog::CatalogSnapshot>>,
}

impl CopyIn {
    pub fn new(
        desc: Arc<TableDesc>,
        checks: crate::check::Checks,
        targets: Vec<usize>,
        opts: CopyOptions,
        txn: Arc<RwLock<Txn>>,
        autocommit: bool,
        unique_id: Box<dyn Fn() -> i64 + Send + Sync>,
    ) -> SqlResult<Self> {
        let header_pending = opts.header;
        let writer = crate::index::TableWriter::new(&desc)?;
        Ok(Self {
            desc,
            checks,
            targets,
            opts,
            txn,
            autocommit,
            pending: Vec::new(),
            scan_from: 0,
            in_quotes: false,
            header_pending,
            ended: false,
            batch: Vec::new(),
            rows: 0,
            line: 0,
            unique_id,
            writer,
            per_row: Vec::new(),
            parents: None,
        })
    }

    /// Checks every copied row's foreign keys against `catalog`'s parent tables.
    pub fn with_foreign_keys(mut self, catalog: Arc<crate::catalog::CatalogSnapshot>) -> Self {
        if !self.desc.foreign_keys.is_empty() {
            self.parents = Some(catalog);
        }
        self
    }

    pub fn with_per_row_defaults(
        mut self,
        per_row: Vec<(usize, Arc<dyn datafusion::physical_expr::PhysicalExpr>)>,
    ) -> Self {
        self.per_row = per_row;
        self
    }

    /// Evaluates the per-row defaults for `n` rows, column by column.
    fn per_row_values(&self, n: usize) -> SqlResult<Vec<(usize, Vec<Datum>)>> {
        use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
        let empty = Arc::new(datafusion::arrow::datatypes::Schema::empty());
        let opts = RecordBatchOptions::new().with_row_count(Some(n));
        let batch = RecordBatch::try_new_with_options(empty, vec![], &opts)
            .map_err(|e| SqlError::internal(format!("default batch: {e}")))?;
        let mut out = Vec::with_capacity(self.per_row.len());
        for (i, e) in &self.per_row {
            let arr = e
                .evaluate(&batch)
                .and_then(|v| v.into_array(n))
                .map_err(crate::error::from_datafusion)?;
            out.push((
                *i,
                crate::datum::datums_from_array(&self.desc.columns[*i].ty, &arr)?,
            ));
        }
        Ok(out)
    }

    pub fn columns(&self) -> usize {
        self.targets.len()
    }

    /// Consumes one chunk of client data.
    pub async fn data(&mut self, chunk: &[u8]) -> SqlResult<()> {
        if self.ended {
            return Ok(());
        }
        self.pending.extend_from_slice(chunk);
        let mut consumed = 0;
        loop {
            let end = match self.opts.format {
                CopyFormat::Text => self.pending[consumed..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map(|p| p + consumed)
                    .ok_or(self.pending.len()),
                CopyFormat::Csv => {
                    let from = self.scan_from.max(consumed);
                    csv_record_end(&self.pending, from, &self.opts, &mut self.in_quotes)
                }
            };
            let end = match end {
                Ok(end) => end,
                Err(resume) => {
                    self.scan_from = resume;
                    break;
                }
            };
            let line = self.pending[consumed..end].to_vec();
            consumed = end + 1;
            self.scan_from = consumed;
            self.line(&line).await?;
            if self.ended {
                break;
            }
        }
        self.pending.drain(..consumed);
        self.scan_from -= consumed.min(self.scan_from);
        if self.pending.len() > COPY_LINE_BYTES_MAX {
            return Err(SqlError::new(
                code::PROGRAM_LIMIT_EXCEEDED,
                format!("COPY line longer than {COPY_LINE_BYTES_MAX} bytes"),
            ));
        }
        Ok(())
    }

    async fn line(&mut self, line: &[u8]) -> SqlResult<()> {
        self.line += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"\\." {
            self.ended = true;
            return Ok(());
        }
        if self.header_pending {
            self.header_pending = false;
            return Ok(());
        }
        let fields = match self.opts.format {
            CopyFormat::Text => split_text(line, &self.opts)?,
            CopyFormat::Csv => split_csv(line, &self.opts)?,
        };
        if fields.len() != self.targets.len() {
            let what = if fields.len() < self.targets.len() {
                "missing data for column"
            } else {
                "extra data after last expected column"
            };
            return Err(bad_copy(format!("{what} (line {})", self.line)));
        }
        self.batch.push(fields);
        if self.batch.len() >= COPY_BATCH_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    /// Converts and buffers the pending rows.
    async fn flush(&mut self) -> SqlResult<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let n = batch.len();
        let ncols = self.desc.columns.len();
        let mut rows: Vec<Vec<Datum>> = (0..n).map(|_| vec![Datum::Null; ncols]).collect();
        for (j, &col) in self.targets.iter().enumerate() {
            let values: Vec<Option<String>> = batch.iter().map(|r| r[j].clone()).collect();
            let datums = convert_column(&self.desc.columns[col].ty, values)?;
            for (row, d) in rows.iter_mut().zip(datums) {
                row[col] = d;
            }
        }
        for (i, vals) in self.per_row_values(n)? {
            for (row, v) in rows.iter_mut().zip(vals) {
                row[i] = v;
            }
        }
        for row in rows.iter_mut() {
            for (i, c) in self.desc.columns.iter().enumerate() {
                if self.targets.contains(&i) || c.default_expr.is_some() {
                    continue;
                }
                if c.hidden {
                    row[i] = Datum::I64((self.unique_id)());
                } else if let Some((_, d)) = &c.default {
                    row[i] = d.clone();
                }
            }
        }
        self.checks.generate(&self.desc, &mut rows)?;
        let mut full = Vec::with_capacity(rows.len());
        for mut row in rows {
            validate_row(&self.desc, &mut row)?;
            full.push(row);
        }
        self.checks.verify(&self.desc, &full)?;
        let mut txn = self.txn.write().await;
        for row in &full {
            self.writer.insert_row(&mut txn, &self.desc, row).await?;
        }
        if let Some(catalog) = &self.parents {
            crate::fk::check_rows(&mut txn, catalog, &self.desc, &full).await?;
        }
        self.rows += n as u64;
        Ok(())
    }

    /// The client finished sending: parses what is left and buffers it.
    pub async fn finish(&mut self) -> SqlResult<u64> {
        if !self.ended && !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            if self.opts.format == CopyFormat::Csv && self.in_quotes {
                return Err(bad_copy("unterminated CSV quoted field"));
            }
            self.line(&rest).await?;
        }
        self.flush().await?;
        Ok(self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> CopyOptions {
        CopyOptions::parse(&[], &[]).unwrap()
    }

    fn csv() -> CopyOptions {
        CopyOptions::parse(
            &[CopyOption::Format(
                datafusion::sql::sqlparser::ast::Ident::new("csv"),
            )],
            &[],
        )
        .unwrap()
    }

    #[test]
    fn text_fields_unescape_and_null() {
        let f = split_text(b"1\t\\N\ta\\tb\\\\c\t\\101\\x41", &text()).unwrap();
        assert_eq!(
            f,
            vec![
                Some("1".into()),
                None,
                Some("a\tb\\c".into()),
                Some("AA".into())
            ]
        );
        assert_eq!(split_text(b"", &text()).unwrap(), vec![Some(String::new())]);
    }

    #[test]
    fn csv_fields_quotes_and_null() {
        let o = csv();
        let f = split_csv(b"1,,\"\",\"a,\"\"b\"\"\",x", &o).unwrap();
        assert_eq!(
            f,
            vec![
                Some("1".into()),
                None,
                Some(String::new()),
                Some("a,\"b\"".into()),
                Some("x".into())
            ]
        );
        let mut q = false;
        let buf = b"1,\"line\nbreak\"\n2,x\n";
        let end = csv_record_end(buf, 0, &o, &mut q).unwrap();
        // A custom escape at the end of a chunk waits for the next byte.
        let mut esc = o.clone();
        esc.escape = b'\\';
        let mut q = true;
        assert_eq!(csv_record_end(b"a\\", 0, &esc, &mut q), Err(1));
        assert_eq!(csv_record_end(b"a\\\"b\"\n", 1, &esc, &mut q), Ok(5));
        assert_eq!(&buf[..end], b"1,\"line\nbreak\"");
        assert!(split_csv(b"\"open", &o).is_err());
    }
}
