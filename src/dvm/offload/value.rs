//! Values a worker evaluates locally, with PostgreSQL's semantics for the types it supports.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// The column types local evaluation supports. Everything else keeps the refresh on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LocalType {
    Int2,
    Int4,
    Int8,
    /// `numeric` with or without a declared precision and scale (values carry their own scale).
    Numeric,
    /// `text`, `varchar(n)`, `character varying`: the same binary format.
    Text,
    Bool,
    /// Days since 2000-01-01, as PostgreSQL sends it.
    Date,
}

impl LocalType {
    /// The local type of a column of SQL type `sql` (as `format_type` prints it).
    pub fn of_sql(sql: &str) -> Option<LocalType> {
        let base = sql.split('(').next().unwrap_or(sql).trim();
        Some(match base {
            "smallint" => LocalType::Int2,
            "integer" => LocalType::Int4,
            "bigint" => LocalType::Int8,
            "numeric" => LocalType::Numeric,
            "text" | "character varying" => LocalType::Text,
            "boolean" => LocalType::Bool,
            "date" => LocalType::Date,
            _ => return None,
        })
    }

    pub fn is_integer(self) -> bool {
        matches!(self, LocalType::Int2 | LocalType::Int4 | LocalType::Int8)
    }

    /// Integers and numerics: what arithmetic and sums accept.
    pub fn is_number(self) -> bool {
        self.is_integer() || self == LocalType::Numeric
    }

    /// The SQL name, for the staged table's columns.
    pub fn sql(self) -> &'static str {
        match self {
            LocalType::Int2 => "smallint",
            LocalType::Int4 => "integer",
            LocalType::Int8 => "bigint",
            LocalType::Numeric => "numeric",
            LocalType::Text => "text",
            LocalType::Bool => "boolean",
            LocalType::Date => "date",
        }
    }

    /// The largest value of an integer type (None for others).
    pub fn int_range(self) -> Option<(i64, i64)> {
        match self {
            LocalType::Int2 => Some((i16::MIN as i64, i16::MAX as i64)),
            LocalType::Int4 => Some((i32::MIN as i64, i32::MAX as i64)),
            LocalType::Int8 => Some((i64::MIN, i64::MAX)),
            _ => None,
        }
    }
}

/// An exact decimal: `mantissa / 10^scale`, where `scale` is the number of digits after the point
/// PostgreSQL shows (its display scale: `1.50` has scale 2). 38 significant digits; an operation
/// that would need more fails, and the refresh runs on the server instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    pub mantissa: i128,
    pub scale: u16,
}

impl Decimal {
    pub fn from_int(v: i64) -> Decimal {
        Decimal {
            mantissa: v as i128,
            scale: 0,
        }
    }

    /// The same value shown with `scale` digits after the point (`scale` >= self.scale).
    pub fn rescaled(self, scale: u16) -> Option<Decimal> {
        let factor = 10i128.checked_pow((scale.checked_sub(self.scale)?) as u32)?;
        Some(Decimal {
            mantissa: self.mantissa.checked_mul(factor)?,
            scale,
        })
    }

    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.rescaled(scale)?, other.rescaled(scale)?);
        Some(Decimal {
            mantissa: a.mantissa.checked_add(b.mantissa)?,
            scale,
        })
    }

    pub fn checked_sub(self, other: Decimal) -> Option<Decimal> {
        self.checked_add(Decimal {
            mantissa: other.mantissa.checked_neg()?,
            scale: other.scale,
        })
    }

    /// PostgreSQL's numeric multiplication is exact: the result's scale is the sum of the scales.
    pub fn checked_mul(self, other: Decimal) -> Option<Decimal> {
        Some(Decimal {
            mantissa: self.mantissa.checked_mul(other.mantissa)?,
            scale: self.scale.checked_add(other.scale)?,
        })
    }

    pub fn checked_neg(self) -> Option<Decimal> {
        Some(Decimal {
            mantissa: self.mantissa.checked_neg()?,
            scale: self.scale,
        })
    }

    /// Compares values (`1.5` equals `1.50`). None only when aligning the scales overflows.
    pub fn compare(self, other: Decimal) -> Option<Ordering> {
        let scale = self.scale.max(other.scale);
        Some(
            self.rescaled(scale)?
                .mantissa
                .cmp(&other.rescaled(scale)?.mantissa),
        )
    }

    /// A numeric literal as PostgreSQL's normalised SQL writes it: `12`, `-3.50`, `100.5`.
    pub fn parse(text: &str) -> Option<Decimal> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa.checked_mul(10)?.checked_add((b - b'0') as i128)?;
        }
        let scale = u16::try_from(frac.len()).ok()?;
        Some(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            scale,
        })
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let sign = if self.mantissa < 0 { "-" } else { "" };
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

/// One value of a [`LocalType`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Null,
    /// Any of smallint, integer, bigint (the type is known from the column or expression).
    Int(i64),
    Numeric(Decimal),
    Text(String),
    Bool(bool),
    Date(i32),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as a decimal, for arithmetic between integers and numerics.
    pub fn decimal(&self) -> Option<Decimal> {
        match self {
            Value::Int(v) => Some(Decimal::from_int(*v)),
            Value::Numeric(d) => Some(*d),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn decimals_keep_postgresql_scales() {
        assert_eq!(d("1.5").checked_add(d("0.25")).unwrap().to_string(), "1.75");
        assert_eq!(d("1.50").checked_add(d("1")).unwrap().to_string(), "2.50");
        assert_eq!(
            d("1.5").checked_mul(d("2.00")).unwrap().to_string(),
            "3.000"
        );
        assert_eq!(
            d("0.05").checked_sub(d("0.10")).unwrap().to_string(),
            "-0.05"
        );
        assert_eq!(d("-0.5").to_string(), "-0.5");
        assert_eq!(d("1.5").compare(d("1.50")), Some(Ordering::Equal));
        assert_eq!(d("2").compare(d("10.1")), Some(Ordering::Less));
    }

    #[test]
    fn decimals_refuse_what_they_cannot_hold() {
        assert_eq!(Decimal::parse("1e5"), None);
        assert_eq!(Decimal::parse("."), None);
        assert_eq!(Decimal::parse("1".repeat(40).as_str()), None);
        let big = Decimal {
            mantissa: i128::MAX / 2,
            scale: 0,
        };
        assert_eq!(big.checked_mul(d("3")), None);
        assert_eq!(big.rescaled(5), None);
    }

    #[test]
    fn sql_types_map_to_local_types() {
        assert_eq!(LocalType::of_sql("numeric(12,2)"), Some(LocalType::Numeric));
        assert_eq!(
            LocalType::of_sql("character varying(25)"),
            Some(LocalType::Text)
        );
        assert_eq!(LocalType::of_sql("double precision"), None);
        assert_eq!(LocalType::of_sql("timestamp with time zone"), None);
    }
}
