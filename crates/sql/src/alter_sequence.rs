//! `ALTER SEQUENCE`, which sqlparser does not read.
//!
//! The statement is parsed here from its tokens ([`parse`]). To travel through the session as
//! a sqlparser statement, it is carried as a `CREATE SEQUENCE` whose one-part name is
//! [`MARKER`] followed by the hex of the statement's text ([`carrier`]); DDL execution
//! recognises the marker ([`carried`]) and parses the text again. Nothing else ever
//! creates a sequence with that name: a client's own `CREATE SEQUENCE "__kestrel_alter…"`
//! parses normally and never reaches the rewrite.
//!
//! Semantics follow PostgreSQL 15:
//! * options change the descriptor; the sequence keeps its position (the next value is the
//!   last one plus the new increment), `START` only changes what a bare `RESTART` restarts
//!   at, and `RESTART [[WITH] n]` sets the next value;
//! * the position must lie inside the new bounds (22023, worded as PostgreSQL words it);
//! * `AS type` moves bounds that were the old type's defaults to the new type's;
//! * `OWNED BY table.column | NONE`, and `RENAME TO` (a column default that calls
//!   `nextval` on the old name follows the new one).
//!
//! The node hands out sequence values from a reserved block ([`crate::sequence`]); the
//! stored position is the block's end. ALTER takes the node's block away and stores the value
//! the block handed out last as the position ([`crate::sequence::Sequences::reposition`]),
//! so a sequence with CACHE 1 continues exactly where PostgreSQL's would. That write is its
//! own committed transaction under the node's refill lock, like `setval`'s: `nextval` (which
//! reserves in its own transactions too) never conflicts with the ALTER, and a `nextval`
//! later in the ALTER's transaction sees the new position and options. Unlike PostgreSQL,
//! a RESTART therefore stays when the ALTER's transaction rolls back (the options do not).

use datafusion::sql::sqlparser::ast::{Ident, ObjectName, Statement as SqlStatement};
use datafusion::sql::sqlparser::tokenizer::Token;
use kestrel_kv::Txn;

use crate::catalog;
use crate::ddl::{qualify, AfterCommit, DdlCtx};
use crate::error::{code, SqlError, SqlResult};
use crate::sequence::{self, SeqDesc};

/// The name prefix of the `CREATE SEQUENCE` that carries an ALTER SEQUENCE.
const MARKER: &str = "__kestrel_alter_sequence:";

/// A parsed `ALTER SEQUENCE`.
#[derive(Debug, PartialEq)]
pub struct AlterSequence {
    pub if_exists: bool,
    /// The sequence's name parts as PostgreSQL folds them.
    pub name: Vec<String>,
    pub action: Action,
}

#[derive(Debug, PartialEq)]
pub enum Action {
    Rename(String),
    Options(Options),
}

/// The options an ALTER names; `None` leaves a setting as it is.
#[derive(Debug, Default, PartialEq)]
pub struct Options {
    /// The new type's largest value.
    pub type_max: Option<i64>,
    pub increment: Option<i64>,
    /// `Some(None)` is `NO MINVALUE`.
    pub min: Option<Option<i64>>,
    pub max: Option<Option<i64>>,
    pub start: Option<i64>,
    /// `Some(None)` is a bare `RESTART`.
    pub restart: Option<Option<i64>>,
    pub cache: Option<i64>,
    pub cycle: Option<bool>,
    /// `Some(None)` is `OWNED BY NONE`; otherwise the column's name parts.
    pub owned_by: Option<Option<Vec<String>>>,
}

/// Whether `tokens` start with `ALTER SEQUENCE`.
pub fn is_alter_sequence(tokens: &[Token]) -> bool {
    let mut c = Cursor::new(tokens);
    c.eat("alter") && c.eat("sequence")
}

/// The `CREATE SEQUENCE` that carries the ALTER SEQUENCE in `tokens` (parsed, and any
/// syntax error reported, when it executes).
pub fn carrier(tokens: &[Token]) -> Option<SqlStatement> {
    let text: String = tokens.iter().map(|t| t.to_string()).collect();
    let hex = crate::syntax::hex(text.trim());
    Some(SqlStatement::CreateSequence {
        temporary: false,
        if_not_exists: false,
        name: ObjectName::from(vec![Ident::with_quote('"', format!("{MARKER}{hex}"))]),
        data_type: None,
        sequence_options: Vec::new(),
        owned_by: None,
    })
}

/// The ALTER SEQUENCE a `CREATE SEQUENCE` name carries, if it is a carrier.
pub fn carried(name: &ObjectName) -> Option<SqlResult<AlterSequence>> {
    let [part] = name.0.as_slice() else {
        return None;
    };
    let hex = part.as_ident()?.value.strip_prefix(MARKER)?;
    let Some(text) = crate::syntax::unhex(hex) else {
        return Some(Err(SqlError::syntax("malformed ALTER SEQUENCE")));
    };
    let tokens = match crate::syntax::raw_tokens(&text) {
        Some(t) => t,
        None => return Some(Err(SqlError::syntax("malformed ALTER SEQUENCE"))),
    };
    Some(parse(&tokens))
}

/// The significant tokens of one statement, read front to back.
struct Cursor<'a> {
    toks: Vec<&'a Token>,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(tokens: &'a [Token]) -> Self {
        let toks = tokens
            .iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect();
        Cursor { toks, i: 0 }
    }

    fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.i).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.toks.len()
    }

    /// The next token if it is the unquoted keyword `word`.
    fn eat(&mut self, word: &str) -> bool {
        let hit = matches!(self.peek(),
            Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word));
        if hit {
            self.i += 1;
        }
        hit
    }

    fn error(&self) -> SqlError {
        match self.peek() {
            Some(t) => SqlError::syntax(format!("syntax error at or near \"{t}\"")),
            None => SqlError::syntax("syntax error at end of input"),
        }
    }

    fn expect(&mut self, word: &str) -> SqlResult<()> {
        match self.eat(word) {
            true => Ok(()),
            false => Err(self.error()),
        }
    }

    /// An identifier, folded as PostgreSQL folds it.
    fn ident(&mut self) -> SqlResult<String> {
        let Some(Token::Word(w)) = self.peek() else {
            return Err(self.error());
        };
        self.i += 1;
        Ok(match w.quote_style {
            Some(q) => w.value.replace(&format!("{q}{q}"), &q.to_string()),
            None => w.value.to_lowercase(),
        })
    }

    /// `ident (. ident)*`.
    fn name(&mut self) -> SqlResult<Vec<String>> {
        let mut parts = vec![self.ident()?];
        while self.peek() == Some(&Token::Period) {
            self.i += 1;
            parts.push(self.ident()?);
        }
        Ok(parts)
    }

    fn at_number(&self) -> bool {
        matches!(
            self.peek(),
            Some(Token::Number(..) | Token::Minus | Token::Plus)
        )
    }

    /// A signed integer literal.
    fn int(&mut self) -> SqlResult<i64> {
        let negative = match self.peek() {
            Some(Token::Minus) => true,
            Some(Token::Plus) => false,
            _ => {
                return self.digits(false);
            }
        };
        self.i += 1;
        self.digits(negative)
    }

    fn digits(&mut self, negative: bool) -> SqlResult<i64> {
        let Some(Token::Number(n, _)) = self.peek() else {
            return Err(self.error());
        };
        let text = if negative { format!("-{n}") } else { n.clone() };
        let v = text.parse::<i64>().map_err(|_| {
            SqlError::new(
                code::INVALID_PARAMETER_VALUE,
                format!("invalid sequence option value: {text}"),
            )
        })?;
        self.i += 1;
        Ok(v)
    }
}

/// Parses `ALTER SEQUENCE [IF EXISTS] name { RENAME TO new | option … }`.
pub fn parse(tokens: &[Token]) -> SqlResult<AlterSequence> {
    let mut c = Cursor::new(tokens);
    c.expect("alter")?;
    c.expect("sequence")?;
    let if_exists = c.eat("if");
    if if_exists {
        c.expect("exists")?;
    }
    let name = c.name()?;
    let action = if c.eat("rename") {
        c.expect("to")?;
        Action::Rename(c.ident()?)
    } else if c.eat("set") || c.eat("owner") {
        return Err(SqlError::unsupported(
            "ALTER SEQUENCE … SET SCHEMA / SET [UN]LOGGED / OWNER TO",
        ));
    } else {
        Action::Options(options(&mut c)?)
    };
    if !c.at_end() {
        return Err(c.error());
    }
    Ok(AlterSequence {
        if_exists,
        name,
        action,
    })
}

fn redundant() -> SqlError {
    SqlError::syntax("conflicting or redundant options")
}

/// Sets `slot` once; a second time is PostgreSQL's "conflicting or redundant options".
fn once<T>(slot: &mut Option<T>, v: T) -> SqlResult<()> {
    match slot.replace(v) {
        None => Ok(()),
        Some(_) => Err(redundant()),
    }
}

fn options(c: &mut Cursor<'_>) -> SqlResult<Options> {
    let mut o = Options::default();
    if c.at_end() {
        return Err(c.error());
    }
    while !c.at_end() {
        if c.eat("as") {
            let ty = c.ident()?;
            let max = match ty.as_str() {
                "smallint" | "int2" => i16::MAX as i64,
                "integer" | "int" | "int4" => i32::MAX as i64,
                "bigint" | "int8" => i64::MAX,
                _ => {
                    return Err(SqlError::new(
                        code::INVALID_PARAMETER_VALUE,
                        "sequence type must be smallint, integer, or bigint",
                    ))
                }
            };
            once(&mut o.type_max, max)?;
        } else if c.eat("increment") {
            c.eat("by");
            once(&mut o.increment, c.int()?)?;
        } else if c.eat("minvalue") {
            once(&mut o.min, Some(c.int()?))?;
        } else if c.eat("maxvalue") {
            once(&mut o.max, Some(c.int()?))?;
        } else if c.eat("no") {
            if c.eat("minvalue") {
                once(&mut o.min, None)?;
            } else if c.eat("maxvalue") {
                once(&mut o.max, None)?;
            } else if c.eat("cycle") {
                once(&mut o.cycle, false)?;
            } else {
                return Err(c.error());
            }
        } else if c.eat("start") {
            c.eat("with");
            once(&mut o.start, c.int()?)?;
        } else if c.eat("restart") {
            let with = c.eat("with");
            let v = match with || c.at_number() {
                true => Some(c.int()?),
                false => None,
            };
            once(&mut o.restart, v)?;
        } else if c.eat("cache") {
            once(&mut o.cache, c.int()?)?;
        } else if c.eat("cycle") {
            once(&mut o.cycle, true)?;
        } else if c.eat("owned") {
            c.expect("by")?;
            let target = c.name()?;
            let owner = match target.as_slice() {
                [none] if none == "none" => None,
                _ => Some(target),
            };
            once(&mut o.owned_by, owner)?;
        } else {
            return Err(c.error());
        }
    }
    Ok(o)
}

/// Executes a carried ALTER SEQUENCE in the DDL transaction.
pub async fn execute(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    alter: &AlterSequence,
    after: &mut Vec<AfterCommit>,
) -> SqlResult<String> {
    let (schema, name) = qualify(&alter.name, ddl.db)?;
    let Some(old) = ddl.snapshot.sequences.get(&(schema.clone(), name.clone())) else {
        if crate::ddl::name_taken(ddl.snapshot, &schema, &name) {
            return Err(SqlError::new(
                code::WRONG_OBJECT_TYPE,
                format!("\"{name}\" is not a sequence"),
            ));
        }
        if alter.if_exists {
            return Ok("ALTER SEQUENCE".into());
        }
        return Err(SqlError::new(
            code::UNDEFINED_TABLE,
            format!("relation \"{name}\" does not exist"),
        ));
    };
    match &alter.action {
        Action::Rename(new) => rename(ddl, txn, old, new)?,
        Action::Options(o) => alter_options(ddl, txn, old, o, after).await?,
    }
    Ok("ALTER SEQUENCE".into())
}

async fn alter_options(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    old: &SeqDesc,
    o: &Options,
    after: &mut Vec<AfterCommit>,
) -> SqlResult<()> {
    let mut d = old.clone();
    let type_max = o.type_max.unwrap_or(old.type_max);
    // Bounds that were the old type's defaults become the new type's.
    if d.max == old.type_max {
        d.max = type_max;
    }
    if d.min == -old.type_max - 1 {
        d.min = -type_max - 1;
    }
    d.type_max = type_max;
    if let Some(inc) = o.increment {
        d.increment = inc;
    }
    match o.min {
        Some(Some(v)) => d.min = v,
        Some(None) => d.min = if d.increment > 0 { 1 } else { -type_max - 1 },
        None => {}
    }
    match o.max {
        Some(Some(v)) => d.max = v,
        Some(None) => d.max = if d.increment > 0 { type_max } else { -1 },
        None => {}
    }
    if let Some(v) = o.start {
        d.start = v;
    }
    if let Some(v) = o.cache {
        d.cache = v;
    }
    if let Some(v) = o.cycle {
        d.cycle = v;
    }
    d.validate()?;
    if let Some(target) = &o.owned_by {
        d.owner = match target {
            None => None,
            Some(parts) => Some(owner_column(ddl, &d.schema, parts)?),
        };
    }
    // The position moves at once, in its own transaction, as `setval` does (see the module
    // comment); the descriptor commits with the statement.
    ddl.sequences.reposition(old, &d, o.restart).await?;
    sequence::put_sequence(txn, &d)?;
    // A block the node reserves before this commits follows the old options: drop it.
    after.push(AfterCommit::ForgetSequence(d.uid));
    Ok(())
}

/// `(table id, column id)` of `OWNED BY table.column`.
pub fn owner_column(ddl: &DdlCtx<'_>, seq_schema: &str, parts: &[String]) -> SqlResult<(u32, u16)> {
    let Some((column, table)) = parts.split_last().filter(|(_, t)| !t.is_empty()) else {
        return Err(SqlError::syntax(
            "invalid OWNED BY option (specify OWNED BY table.column or OWNED BY NONE)",
        ));
    };
    let (schema, table) = qualify(table, ddl.db)?;
    let Some(t) = ddl.snapshot.table(&schema, &table) else {
        return Err(SqlError::new(
            code::UNDEFINED_TABLE,
            format!("relation \"{table}\" does not exist"),
        ));
    };
    if t.schema != seq_schema {
        return Err(SqlError::new(
            code::OBJECT_NOT_IN_PREREQUISITE_STATE,
            "sequence must be in same schema as table it is linked to",
        ));
    }
    let Some((_, col)) = t.column(column).filter(|(_, c)| !c.hidden) else {
        return Err(SqlError::new(
            code::UNDEFINED_COLUMN,
            format!("column \"{column}\" of relation \"{table}\" does not exist"),
        ));
    };
    Ok((t.id, col.id))
}

/// `RENAME TO`: the descriptor moves to the new name, and column defaults that call
/// `nextval` on the old name call it on the new one.
fn rename(ddl: &DdlCtx<'_>, txn: &mut Txn, old: &SeqDesc, new: &str) -> SqlResult<()> {
    if crate::ddl::name_taken(ddl.snapshot, &old.schema, new) {
        return Err(SqlError::new(
            code::DUPLICATE_TABLE,
            format!("relation \"{new}\" already exists"),
        ));
    }
    let mut d = old.clone();
    d.name = new.to_string();
    sequence::delete_descriptor(txn, old)?;
    sequence::put_sequence(txn, &d)?;
    // A default that draws from the sequence becomes the canonical call on the new name
    // (PostgreSQL stores the sequence's oid; Kestrel stores the text).
    let to = crate::ddl::nextval_default(&old.schema, new);
    for (t, columns) in crate::ddl::defaults_using(ddl.snapshot, old) {
        let mut t = t.as_ref().clone();
        for i in columns {
            t.columns[i].default_expr = Some(to.clone());
        }
        catalog::put_table(txn, &t)?;
    }
    Ok(())
}

/// `CREATE SEQUENCE … OWNED BY`: the owner named by sqlparser's name.
pub fn create_owner(
    ddl: &DdlCtx<'_>,
    seq_schema: &str,
    owned_by: &ObjectName,
) -> SqlResult<Option<(u32, u16)>> {
    let parts: Vec<String> = owned_by
        .0
        .iter()
        .map(|p| p.as_ident().map(crate::ddl::ident).unwrap_or_default())
        .collect();
    match parts.as_slice() {
        [none] if none == "none" => Ok(None),
        _ => owner_column(ddl, seq_schema, &parts).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> SqlResult<AlterSequence> {
        parse(&crate::syntax::raw_tokens(sql).expect("tokens"))
    }

    #[test]
    fn options_parse_in_any_order() {
        let a = parsed("ALTER SEQUENCE IF EXISTS s.\"Seq\" RESTART WITH -5 NO MAXVALUE INCREMENT 2 CYCLE OWNED BY t.id")
            .unwrap();
        assert!(a.if_exists);
        assert_eq!(a.name, vec!["s".to_string(), "Seq".to_string()]);
        let Action::Options(o) = a.action else {
            panic!("options expected")
        };
        assert_eq!(o.restart, Some(Some(-5)));
        assert_eq!(o.max, Some(None));
        assert_eq!(o.increment, Some(2));
        assert_eq!(o.cycle, Some(true));
        assert_eq!(
            o.owned_by,
            Some(Some(vec!["t".to_string(), "id".to_string()]))
        );
        let bare = parsed("alter sequence s restart").unwrap();
        let Action::Options(o) = bare.action else {
            panic!("options expected")
        };
        assert_eq!(o.restart, Some(None));
    }

    #[test]
    fn bad_statements_are_refused() {
        assert_eq!(
            parsed("ALTER SEQUENCE s").unwrap_err().code,
            code::SYNTAX_ERROR
        );
        assert_eq!(
            parsed("ALTER SEQUENCE s INCREMENT 1 INCREMENT 2")
                .unwrap_err()
                .code,
            code::SYNTAX_ERROR
        );
        assert_eq!(
            parsed("ALTER SEQUENCE s FOO").unwrap_err().code,
            code::SYNTAX_ERROR
        );
        assert_eq!(
            parsed("ALTER SEQUENCE s AS text").unwrap_err().code,
            code::INVALID_PARAMETER_VALUE
        );
        assert_eq!(
            parsed("ALTER SEQUENCE s OWNER TO bob").unwrap_err().code,
            code::FEATURE_NOT_SUPPORTED
        );
        assert_eq!(
            parsed("ALTER SEQUENCE s RENAME TO t").unwrap().action,
            Action::Rename("t".into())
        );
    }

    #[test]
    fn the_carrier_round_trips_quotes() {
        let toks = crate::syntax::raw_tokens("ALTER SEQUENCE \"a'b\" RESTART 3").unwrap();
        let SqlStatement::CreateSequence { name, .. } = carrier(&toks).unwrap() else {
            panic!("carrier is a CREATE SEQUENCE")
        };
        let a = carried(&name).unwrap().unwrap();
        assert_eq!(a.name, vec!["a'b".to_string()]);
        assert!(carried(&ObjectName::from(vec![Ident::new("s")])).is_none());
    }
}
