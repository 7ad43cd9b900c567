//! Token-level rewrites for PostgreSQL syntax that sqlparser 0.62 does not read.
//!
//! [`crate::session::parse`] tries the text as written first; only when that fails is each
//! statement passed through [`rewrite`] and parsed again, so a rewrite can never change the
//! meaning of text that already parses. Tokens are raw (not unescaped), so printing them
//! back keeps every quote escape: a literal stays one literal. Each rewrite maps the construct onto syntax sqlparser
//! reads and that has the same meaning (sometimes with a marker the AST pass resolves):
//! - `x [NOT] BETWEEN SYMMETRIC a AND b` → `x [NOT] BETWEEN __kestrel_symmetric(a) AND b`;
//!   [`crate::pgcompat`] expands the marker into PostgreSQL's definition,
//!   `(x BETWEEN a AND b OR x BETWEEN b AND a)`. `BETWEEN ASYMMETRIC` is plain BETWEEN.
//! - a column's inline `UNIQUE NULLS [NOT] DISTINCT` becomes the same table constraint over
//!   that column.
//! - `ON CONFLICT (expr, …) [WHERE predicate] DO …` (an inference specification sqlparser
//!   reads only as plain column names) becomes `ON CONFLICT ON CONSTRAINT "<marker><hex of
//!   the specification>" DO …`; [`crate::upsert`] reads the specification back out of the
//!   name ([`inference_spec`]) and infers the arbiter indexes from it.

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// The marker function around a symmetric BETWEEN's lower bound.
pub const SYMMETRIC_MARKER: &str = "__kestrel_symmetric";

/// The rewritten text of one statement, or `None` when no rewrite applies.
pub fn rewrite(tokens: &[Token]) -> Option<String> {
    let mut changed = false;
    let mut toks: Vec<Token> = tokens.to_vec();
    if let Some(t) = between_symmetric(&toks) {
        toks = t;
        changed = true;
    }
    if let Some(t) = inline_unique_nulls(&toks) {
        toks = t;
        changed = true;
    }
    if let Some(t) = conflict_inference(&toks) {
        toks = t;
        changed = true;
    }
    changed.then(|| toks.iter().map(|t| t.to_string()).collect())
}

/// Tokens of generated text, raw like the statement's own.
pub(crate) fn raw_tokens(text: &str) -> Option<Vec<Token>> {
    datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&crate::dialect::KestrelDialect, text)
        .with_unescape(false)
        .tokenize()
        .ok()
}

fn is_kw(t: &Token, kw: Keyword) -> bool {
    matches!(t, Token::Word(w) if w.keyword == kw && w.quote_style.is_none())
}

fn is_word(t: &Token, word: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// The index of the next non-whitespace token at or after `i`.
fn next_solid(toks: &[Token], mut i: usize) -> Option<usize> {
    while i < toks.len() {
        if !matches!(toks[i], Token::Whitespace(_)) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn depth_step(t: &Token, depth: &mut i32) {
    match t {
        Token::LParen | Token::LBracket => *depth += 1,
        Token::RParen | Token::RBracket => *depth -= 1,
        _ => {}
    }
}

fn between_symmetric(toks: &[Token]) -> Option<Vec<Token>> {
    let mut out = Vec::with_capacity(toks.len() + 4);
    let mut changed = false;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        out.push(t.clone());
        i += 1;
        if !is_kw(t, Keyword::BETWEEN) {
            continue;
        }
        let Some(j) = next_solid(toks, i) else { break };
        if is_word(&toks[j], "asymmetric") {
            i = j + 1;
            changed = true;
            continue;
        }
        if !is_word(&toks[j], "symmetric") {
            continue;
        }
        // The lower bound runs to the first AND at its own nesting depth.
        let mut k = j + 1;
        let mut depth = 0;
        while k < toks.len() && !(depth == 0 && is_kw(&toks[k], Keyword::AND)) {
            depth_step(&toks[k], &mut depth);
            if depth < 0 {
                return None;
            }
            k += 1;
        }
        if k == toks.len() {
            return None;
        }
        out.push(Token::Whitespace(
            datafusion::sql::sqlparser::tokenizer::Whitespace::Space,
        ));
        out.push(Token::make_word(SYMMETRIC_MARKER, None));
        out.push(Token::LParen);
        out.extend_from_slice(&toks[j + 1..k]);
        out.push(Token::RParen);
        out.push(Token::Whitespace(
            datafusion::sql::sqlparser::tokenizer::Whitespace::Space,
        ));
        i = k;
        changed = true;
    }
    changed.then_some(out)
}

/// Keywords that open a table constraint rather than a column definition.
fn starts_table_constraint(t: &Token) -> bool {
    [
        Keyword::CONSTRAINT,
        Keyword::PRIMARY,
        Keyword::UNIQUE,
        Keyword::CHECK,
        Keyword::FOREIGN,
        Keyword::LIKE,
        Keyword::EXCLUDE,
    ]
    .iter()
    .any(|&kw| is_kw(t, kw))
}

fn inline_unique_nulls(toks: &[Token]) -> Option<Vec<Token>> {
    let first = next_solid(toks, 0)?;
    if !is_kw(&toks[first], Keyword::CREATE) || !toks.iter().any(|t| is_kw(t, Keyword::TABLE)) {
        return None;
    }
    let open = toks.iter().position(|t| *t == Token::LParen)?;
    let mut out: Vec<Token> = toks[..=open].to_vec();
    let mut added: Vec<Token> = Vec::new();
    let mut depth = 1;
    let mut i = open + 1;
    let mut element_start = true;
    let mut column: Option<Token> = None;
    while i < toks.len() {
        let t = &toks[i];
        if depth == 1 && element_start && !matches!(t, Token::Whitespace(_)) {
            column = (!starts_table_constraint(t)).then(|| t.clone());
            element_start = false;
        }
        if depth == 1 && is_kw(t, Keyword::UNIQUE) {
            if let (Some(col), Some(tail)) = (&column, unique_nulls_tail(toks, i + 1)) {
                let (not, end) = tail;
                let clause = if not { "NOT DISTINCT" } else { "DISTINCT" };
                let text = format!(", UNIQUE NULLS {clause} ({col})");
                added.extend(raw_tokens(&text)?);
                i = end;
                continue;
            }
        }
        depth_step(t, &mut depth);
        if depth == 0 {
            out.extend(added.drain(..));
            out.extend_from_slice(&toks[i..]);
            return (out.len() != toks.len()).then_some(out);
        }
        if depth == 1 && *t == Token::Comma {
            element_start = true;
        }
        out.push(t.clone());
        i += 1;
    }
    None
}

/// After `UNIQUE`: `NULLS [NOT] DISTINCT` → (NOT present, index after DISTINCT).
fn unique_nulls_tail(toks: &[Token], from: usize) -> Option<(bool, usize)> {
    let a = next_solid(toks, from)?;
    if !is_word(&toks[a], "nulls") {
        return None;
    }
    let b = next_solid(toks, a + 1)?;
    let (not, c) = if is_kw(&toks[b], Keyword::NOT) {
        (true, next_solid(toks, b + 1)?)
    } else {
        (false, b)
    };
    is_kw(&toks[c], Keyword::DISTINCT).then_some((not, c + 1))
}

/// `text` as lower-case hex: carries SQL text inside a quoted identifier (a marker name)
/// without its quotes getting in the way.
pub(crate) fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The text [`hex`] encoded, if `hex` is well-formed.
pub(crate) fn unhex(hex: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The constraint-name prefix that carries an ON CONFLICT inference specification.
const INFERENCE_MARKER: &str = "__kestrel_infer:";

fn conflict_inference(toks: &[Token]) -> Option<Vec<Token>> {
    let on = (0..toks.len()).find(|&i| {
        is_kw(&toks[i], Keyword::ON)
            && next_solid(toks, i + 1).is_some_and(|j| is_kw(&toks[j], Keyword::CONFLICT))
    })?;
    let conflict = next_solid(toks, on + 1)?;
    let open = next_solid(toks, conflict + 1)?;
    if toks[open] != Token::LParen {
        return None;
    }
    // The specification runs to the DO at depth 0.
    let mut depth = 0;
    let mut k = open;
    while k < toks.len() && !(depth == 0 && is_kw(&toks[k], Keyword::DO)) {
        depth_step(&toks[k], &mut depth);
        k += 1;
    }
    if k == toks.len() {
        return None;
    }
    let spec: String = toks[open..k].iter().map(|t| t.to_string()).collect();
    let mut out = toks[..=conflict].to_vec();
    // Hex keeps the specification's own quotes out of the quoted name.
    let text = format!(" ON CONSTRAINT \"{INFERENCE_MARKER}{}\" ", hex(spec.trim()));
    out.extend(raw_tokens(&text)?);
    out.extend_from_slice(&toks[k..]);
    Some(out)
}

/// The inference specification carried by a constraint name ([`conflict_inference`]):
/// `(expr, …) [WHERE predicate]` as its key expressions and predicate.
pub fn inference_spec(
    name: &str,
) -> Option<Result<(Vec<ast::Expr>, Option<ast::Expr>), crate::error::SqlError>> {
    let hex = name.strip_prefix(INFERENCE_MARKER)?;
    let Some(text) = unhex(hex) else {
        return Some(Err(crate::error::SqlError::syntax(
            "malformed ON CONFLICT target",
        )));
    };
    let parse = || -> Result<_, datafusion::sql::sqlparser::parser::ParserError> {
        let mut p = Parser::new(&crate::dialect::KestrelDialect).try_with_sql(&text)?;
        p.expect_token(&Token::LParen)?;
        let keys = p.parse_comma_separated(|p| p.parse_expr())?;
        p.expect_token(&Token::RParen)?;
        let predicate = if p.parse_keyword(Keyword::WHERE) {
            Some(p.parse_expr()?)
        } else {
            None
        };
        p.expect_token(&Token::EOF)?;
        Ok((keys, predicate))
    };
    Some(parse().map_err(|e| crate::error::SqlError::syntax(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn fix(sql: &str) -> Option<String> {
        let toks = Tokenizer::new(&crate::dialect::KestrelDialect, sql)
            .with_unescape(false)
            .tokenize()
            .expect("tokenizes");
        rewrite(&toks)
    }

    #[test]
    fn symmetric_between_marks_the_lower_bound() {
        assert_eq!(
            fix("SELECT x NOT BETWEEN SYMMETRIC f(a, b) + 1 AND 2 FROM t").as_deref(),
            Some("SELECT x NOT BETWEEN __kestrel_symmetric( f(a, b) + 1 ) AND 2 FROM t")
        );
        assert_eq!(
            fix("SELECT 1 BETWEEN ASYMMETRIC 0 AND 2").as_deref(),
            Some("SELECT 1 BETWEEN 0 AND 2")
        );
        assert_eq!(fix("SELECT 1 BETWEEN 0 AND 2"), None);
        assert_eq!(fix("SELECT 1 BETWEEN SYMMETRIC 0"), None);
    }

    #[test]
    fn inline_unique_nulls_becomes_a_table_constraint() {
        assert_eq!(
            fix("CREATE TABLE t (a INT UNIQUE NULLS NOT DISTINCT, b text, CHECK (b <> ''))")
                .as_deref(),
            Some("CREATE TABLE t (a INT , b text, CHECK (b <> ''), UNIQUE NULLS NOT DISTINCT (a))")
        );
        assert_eq!(
            fix("CREATE TABLE t (\"A b\" INT UNIQUE NULLS DISTINCT)").as_deref(),
            Some("CREATE TABLE t (\"A b\" INT , UNIQUE NULLS DISTINCT (\"A b\"))")
        );
        assert_eq!(
            fix("CREATE TABLE t (a INT UNIQUE, UNIQUE NULLS NOT DISTINCT (a))"),
            None
        );
    }

    #[test]
    fn conflict_inference_travels_in_a_constraint_name() {
        let sql =
            fix("INSERT INTO t VALUES (1) ON CONFLICT (lower(\"N\"), b) WHERE b > 0 DO NOTHING")
                .expect("rewritten");
        let stmts = Parser::parse_sql(&crate::dialect::KestrelDialect, &sql).expect("parses");
        let ast::Statement::Insert(ins) = &stmts[0] else {
            panic!("{stmts:?}");
        };
        let Some(ast::OnInsert::OnConflict(c)) = &ins.on else {
            panic!("{ins:?}");
        };
        let Some(ast::ConflictTarget::OnConstraint(name)) = &c.conflict_target else {
            panic!("{c:?}");
        };
        let name = crate::ddl::last_ident(name);
        let (keys, pred) = inference_spec(&name).expect("marked").expect("parses");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].to_string(), "lower(\"N\")");
        assert_eq!(pred.map(|p| p.to_string()).as_deref(), Some("b > 0"));
        assert!(inference_spec("t_pkey").is_none());
    }
}
