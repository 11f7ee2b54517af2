//! SQL text building: identifier and literal quoting. Every identifier pg_trickle interpolates into SQL
//! goes through [`quote_ident`] (always quoted, so case, spaces and quotes survive); every value that can
//! be bound is bound as a parameter instead.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Quotes an identifier unconditionally: `my "x"` becomes `"my ""x"""`.
pub fn quote_ident(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    out.push('"');
    for ch in ident.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// Quotes a string literal with standard-conforming rules (`'` doubled; an `E''` literal when the text
/// contains a backslash, so the result is right whatever `standard_conforming_strings` says).
pub fn quote_literal(text: &str) -> String {
    let escape = text.contains('\\');
    let mut out = String::with_capacity(text.len() + 3);
    if escape {
        out.push('E');
    }
    out.push('\'');
    for ch in text.chars() {
        match ch {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A schema-qualified relation name, as stored in the catalog (unquoted parts).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        QualifiedName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// `"schema"."name"`, safe to interpolate.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// Comma-separated quoted identifiers: `"a", "b"`.
pub fn ident_list<S: AsRef<str>>(idents: &[S]) -> String {
    idents
        .iter()
        .map(|i| quote_ident(i.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted_and_escaped() {
        assert_eq!(quote_ident("orders"), "\"orders\"");
        assert_eq!(quote_ident("Order Totals"), "\"Order Totals\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_ident(""), "\"\"");
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn qualified_names_quote_both_parts() {
        let q = QualifiedName::new("My Schema", "t\"1");
        assert_eq!(q.quoted(), "\"My Schema\".\"t\"\"1\"");
        assert_eq!(ident_list(&["a", "B c"]), "\"a\", \"B c\"");
    }
}
