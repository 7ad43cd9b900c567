//! The SQL dialect every Kestrel parse uses: sqlparser's PostgreSQL dialect, with the few
//! places where it is more lenient than PostgreSQL made strict.
//!
//! [`KestrelDialect`] delegates every method PostgreSQL's dialect overrides and reports
//! PostgreSQL's type id, so the parser's `dialect_of!(… is PostgreSqlDialect)` branches
//! still apply. What it changes:
//! - `ON` is never a bare select-item alias (it is a reserved word in PostgreSQL), so
//!   `INSERT INTO t SELECT 'a', 1 ON CONFLICT …` parses as an upsert.

use std::any::TypeId;

use datafusion::sql::sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

/// PostgreSQL's reserved words that sqlparser would otherwise take as a bare column alias.
const RESERVED_AS_ALIAS: &[Keyword] = &[Keyword::ON];

#[derive(Debug, Default, Clone, Copy)]
pub struct KestrelDialect;

const PG: PostgreSqlDialect = PostgreSqlDialect {};

macro_rules! delegate_flags {
    ($($name:ident),* $(,)?) => {
        $(fn $name(&self) -> bool { PG.$name() })*
    };
}

impl Dialect for KestrelDialect {
    fn dialect(&self) -> TypeId {
        TypeId::of::<PostgreSqlDialect>()
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        PG.identifier_quote_style(identifier)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        PG.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        PG.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        PG.is_identifier_part(ch)
    }

    fn is_reserved_for_identifier(&self, kw: Keyword) -> bool {
        PG.is_reserved_for_identifier(kw)
    }

    fn is_custom_operator_part(&self, ch: char) -> bool {
        PG.is_custom_operator_part(ch)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        PG.get_next_precedence(parser)
    }

    fn prec_value(&self, prec: Precedence) -> u8 {
        PG.prec_value(prec)
    }

    fn is_column_alias(&self, kw: &Keyword, parser: &mut Parser) -> bool {
        !RESERVED_AS_ALIAS.contains(kw) && PG.is_column_alias(kw, parser)
    }

    fn is_select_item_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool {
        explicit || self.is_column_alias(kw, parser)
    }

    delegate_flags!(
        supports_unicode_string_literal,
        supports_filter_during_aggregation,
        supports_group_by_expr,
        allow_extract_custom,
        allow_extract_single_quotes,
        supports_create_index_with_clause,
        supports_explain_with_utility_options,
        supports_listen_notify,
        supports_factorial_operator,
        supports_bitwise_shift_operators,
        supports_comment_on,
        supports_load_extension,
        supports_named_fn_args_with_colon_operator,
        supports_named_fn_args_with_expr_name,
        supports_empty_projections,
        supports_nested_comments,
        supports_string_escape_constant,
        supports_numeric_literal_underscores,
        supports_array_typedef_with_brackets,
        supports_geometric_types,
        supports_set_names,
        supports_alter_column_type_using,
        supports_notnull_operator,
        supports_interval_options,
        supports_insert_table_alias,
        supports_create_table_like_parenthesized,
        supports_select_wildcard_with_alias,
        supports_comma_separated_trim,
        supports_xml_expressions,
        supports_comment_optimizer_hint,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::Statement;

    fn parse(sql: &str) -> Result<Vec<Statement>, ParserError> {
        Parser::parse_sql(&KestrelDialect, sql)
    }

    #[test]
    fn on_is_not_a_select_alias() {
        let stmts =
            parse("INSERT INTO t SELECT 'a', 100 ON CONFLICT (w) DO NOTHING").expect("parses");
        let Statement::Insert(ins) = &stmts[0] else {
            panic!("not an insert: {stmts:?}");
        };
        assert!(ins.on.is_some(), "ON CONFLICT lost: {ins:?}");
        assert!(parse("SELECT 1 on").is_err());
        assert!(parse("SELECT 1 AS on").is_ok());
    }

    #[test]
    fn postgres_behaviour_is_kept() {
        // Parser branches keyed on the PostgreSQL dialect's type id.
        assert!((&KestrelDialect as &dyn Dialect).is::<PostgreSqlDialect>());
        assert!(
            parse("SELECT 'a'::text, $1, x::int[] FROM t WHERE a ~ 'b' AND b ILIKE 'c'").is_ok()
        );
        assert!(parse("SELECT E'\\n', 1_000, 5 !").is_ok());
    }
}
