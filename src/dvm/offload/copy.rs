//! PostgreSQL's binary COPY format, so a worker can read change rows with `COPY ... TO STDOUT (FORMAT binary)`
//! and write reduced rows back with `COPY ... FROM STDIN (FORMAT binary)`.
//!
//! Binary rather than text so values arrive exactly as the server holds them: no locale, no datestyle, no
//! float-style rounding, and numerics keep their display scale. Only the [`LocalType`]s are understood; a
//! stream is decoded against the column types the caller expects, and anything that does not match them is an
//! error rather than a guess.

use std::fmt;

use super::value::{Decimal, LocalType, Value};

/// The fixed start of every binary COPY stream.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Header flag: every tuple carries an OID before its fields.
const FLAG_OIDS: u32 = 1 << 16;
/// Header flags a reader must not ignore (bits 17-31 are reserved for incompatible format changes).
const FLAGS_CRITICAL: u32 = 0xFFFE_0000;

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;
/// The largest display scale PostgreSQL accepts in a binary numeric.
const NUMERIC_DSCALE_MAX: u16 = 0x3FFF;
/// A numeric's fixed part: ndigits, weight, sign, dscale.
const NUMERIC_HEADER_LEN: usize = 8;

/// What is wrong with a stream being decoded, or with rows being encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyError {
    /// The data does not start with the binary COPY signature (text or CSV format, or not COPY at all).
    BadSignature,
    /// The header says tuples carry OIDs; they are never requested, so the stream is not what was asked for.
    OidsIncluded,
    /// The header sets reserved flag bits that announce an incompatible format.
    UnknownFlags(u32),
    /// The header extension length is negative.
    BadHeaderExtension(i32),
    /// The stream ends before its trailer, in the middle of a header, tuple or field.
    Truncated,
    /// Bytes follow the trailer.
    TrailingData,
    /// A tuple's field count differs from the number of column types given.
    FieldCount { expected: usize, found: i16 },
    /// A field's length is below -1, or does not fit its type's binary format.
    BadFieldLength { ty: LocalType, length: i32 },
    /// A text field is not UTF-8.
    InvalidUtf8,
    /// A numeric field breaks the format (what is wrong is named).
    BadNumeric(&'static str),
    /// A numeric is NaN, which a [`Decimal`] cannot hold.
    NumericNan,
    /// A numeric is infinite (`negative` for -Infinity), which a [`Decimal`] cannot hold.
    NumericInfinity { negative: bool },
    /// A finite numeric whose value, written at its display scale, does not fit a 128-bit mantissa.
    NumericOverflow,
    /// A numeric has nonzero digits beyond its display scale, which PostgreSQL never sends.
    NumericHiddenDigits,
    /// A row to encode has a different number of values than the column types given.
    RowWidth { expected: usize, found: usize },
    /// An integer does not fit the column's integer type.
    OutOfRange { ty: LocalType, value: i64 },
    /// A value of one kind given for a column of another (`found` names the value's kind).
    TypeMismatch { ty: LocalType, found: &'static str },
    /// A numeric's scale is beyond what PostgreSQL accepts.
    ScaleTooLarge(u16),
    /// A text value contains a NUL byte, which PostgreSQL refuses in text.
    NulInText,
    /// A field is longer than a 32-bit length can describe.
    FieldTooLong(usize),
    /// More columns than a tuple's 16-bit field count can describe.
    TooManyColumns(usize),
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::BadSignature => write!(f, "not a binary copy stream (bad signature)"),
            CopyError::OidsIncluded => write!(f, "binary copy stream includes oids"),
            CopyError::UnknownFlags(flags) => write!(
                f,
                "binary copy header has unknown critical flags {flags:#010x}"
            ),
            CopyError::BadHeaderExtension(length) => {
                write!(
                    f,
                    "binary copy header extension has negative length {length}"
                )
            }
            CopyError::Truncated => write!(f, "binary copy stream ends early"),
            CopyError::TrailingData => write!(f, "data after the binary copy trailer"),
            CopyError::FieldCount { expected, found } => {
                write!(f, "tuple has {found} fields, expected {expected}")
            }
            CopyError::BadFieldLength { ty, length } => {
                write!(f, "{} field has invalid length {length}", ty.sql())
            }
            CopyError::InvalidUtf8 => write!(f, "text field is not valid utf-8"),
            CopyError::BadNumeric(why) => write!(f, "malformed numeric: {why}"),
            CopyError::NumericNan => write!(f, "numeric nan is not supported"),
            CopyError::NumericInfinity { negative: false } => {
                write!(f, "numeric infinity is not supported")
            }
            CopyError::NumericInfinity { negative: true } => {
                write!(f, "numeric -infinity is not supported")
            }
            CopyError::NumericOverflow => write!(f, "numeric does not fit 128 bits at its scale"),
            CopyError::NumericHiddenDigits => {
                write!(f, "numeric has nonzero digits beyond its display scale")
            }
            CopyError::RowWidth { expected, found } => {
                write!(f, "row has {found} values, expected {expected}")
            }
            CopyError::OutOfRange { ty, value } => {
                write!(f, "{value} is out of range for {}", ty.sql())
            }
            CopyError::TypeMismatch { ty, found } => {
                write!(f, "cannot encode a {found} value as {}", ty.sql())
            }
            CopyError::ScaleTooLarge(scale) => {
                write!(
                    f,
                    "numeric scale {scale} exceeds the maximum {NUMERIC_DSCALE_MAX}"
                )
            }
            CopyError::NulInText => write!(f, "text contains a nul byte"),
            CopyError::FieldTooLong(length) => write!(f, "field of {length} bytes is too long"),
            CopyError::TooManyColumns(count) => {
                write!(f, "{count} columns are too many for a binary copy tuple")
            }
        }
    }
}

impl std::error::Error for CopyError {}

type Result<T> = std::result::Result<T, CopyError>;

/// Decodes a whole binary COPY stream (header, tuples, trailer) whose tuples have exactly `types.len()` fields
/// of these types.
pub fn decode(data: &[u8], types: &[LocalType]) -> Result<Vec<Vec<Value>>> {
    if !data.starts_with(SIGNATURE) {
        // A cut-off signature is a short read, not a different format.
        return Err(if SIGNATURE.starts_with(data) {
            CopyError::Truncated
        } else {
            CopyError::BadSignature
        });
    }
    let mut input = Reader {
        data,
        pos: SIGNATURE.len(),
    };
    let flags = input.u32()?;
    if flags & FLAG_OIDS != 0 {
        return Err(CopyError::OidsIncluded);
    }
    if flags & FLAGS_CRITICAL != 0 {
        return Err(CopyError::UnknownFlags(flags & FLAGS_CRITICAL));
    }
    let extension = input.i32()?;
    let extension_len =
        usize::try_from(extension).map_err(|_| CopyError::BadHeaderExtension(extension))?;
    input.take(extension_len)?;

    let mut rows = Vec::new();
    loop {
        let count = input.i16()?;
        if count == -1 {
            break;
        }
        if usize::try_from(count).ok() != Some(types.len()) {
            return Err(CopyError::FieldCount {
                expected: types.len(),
                found: count,
            });
        }
        let mut row = Vec::with_capacity(types.len());
        for &ty in types {
            let length = input.i32()?;
            let value = match length {
                -1 => Value::Null,
                _ => {
                    let len = usize::try_from(length)
                        .map_err(|_| CopyError::BadFieldLength { ty, length })?;
                    decode_field(input.take(len)?, ty, length)?
                }
            };
            row.push(value);
        }
        rows.push(row);
    }
    if input.pos != data.len() {
        return Err(CopyError::TrailingData);
    }
    Ok(rows)
}

/// Encodes rows (each `types.len()` values; `Value::Null` allowed anywhere) as a complete binary COPY stream
/// (header, tuples, trailer).
///
/// A `Value::Int` is accepted for a numeric column (it converts exactly), since PostgreSQL's own arithmetic
/// turns integers into numerics freely; every other mismatch is an error.
pub fn encode(rows: &[Vec<Value>], types: &[LocalType]) -> Result<Vec<u8>> {
    let count = i16::try_from(types.len()).map_err(|_| CopyError::TooManyColumns(types.len()))?;
    let mut out = Vec::new();
    out.extend_from_slice(SIGNATURE);
    put_u32(&mut out, 0);
    put_i32(&mut out, 0);
    for row in rows {
        if row.len() != types.len() {
            return Err(CopyError::RowWidth {
                expected: types.len(),
                found: row.len(),
            });
        }
        put_i16(&mut out, count);
        for (value, &ty) in row.iter().zip(types) {
            encode_field(&mut out, value, ty)?;
        }
    }
    put_i16(&mut out, -1);
    Ok(out)
}

/// Reads big-endian integers and byte runs, failing with [`CopyError::Truncated`] instead of running off the end.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(len).ok_or(CopyError::Truncated)?;
        let bytes = self.data.get(self.pos..end).ok_or(CopyError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| CopyError::Truncated)
    }

    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
}

/// One non-NULL field of type `ty`; `length` is the length word as sent, for error messages.
fn decode_field(bytes: &[u8], ty: LocalType, length: i32) -> Result<Value> {
    let bad_length = CopyError::BadFieldLength { ty, length };
    Ok(match ty {
        LocalType::Int2 => {
            Value::Int(i16::from_be_bytes(bytes.try_into().map_err(|_| bad_length)?) as i64)
        }
        LocalType::Int4 => {
            Value::Int(i32::from_be_bytes(bytes.try_into().map_err(|_| bad_length)?) as i64)
        }
        LocalType::Int8 => Value::Int(i64::from_be_bytes(
            bytes.try_into().map_err(|_| bad_length)?,
        )),
        // Like PostgreSQL's boolrecv: any nonzero byte is true.
        LocalType::Bool => Value::Bool(<[u8; 1]>::try_from(bytes).map_err(|_| bad_length)? != [0]),
        LocalType::Date => Value::Date(i32::from_be_bytes(
            bytes.try_into().map_err(|_| bad_length)?,
        )),
        LocalType::Text => {
            Value::Text(String::from_utf8(bytes.to_vec()).map_err(|_| CopyError::InvalidUtf8)?)
        }
        LocalType::Numeric => Value::Numeric(decode_numeric(bytes, length)?),
    })
}

/// A binary numeric as an exact [`Decimal`] at the value's display scale.
///
/// The digit groups need not line up with the display scale: trailing groups may reach past it (only with
/// zeros, which are dropped) or stop short of it (the value is padded with zeros). Each nonzero group is
/// placed directly at its power of ten in the mantissa, so no intermediate can overflow that the result
/// would not.
fn decode_numeric(bytes: &[u8], length: i32) -> Result<Decimal> {
    let bad_length = CopyError::BadFieldLength {
        ty: LocalType::Numeric,
        length,
    };
    if bytes.len() < NUMERIC_HEADER_LEN {
        return Err(bad_length);
    }
    let mut input = Reader {
        data: bytes,
        pos: 0,
    };
    let ndigits = input.i16()?;
    let weight = input.i16()?;
    let sign = input.u16()?;
    let dscale = input.u16()?;
    let ndigits =
        usize::try_from(ndigits).map_err(|_| CopyError::BadNumeric("negative digit count"))?;
    if bytes.len() != NUMERIC_HEADER_LEN + 2 * ndigits {
        return Err(bad_length);
    }
    let negative = match sign {
        NUMERIC_POS => false,
        NUMERIC_NEG => true,
        NUMERIC_NAN => return Err(CopyError::NumericNan),
        NUMERIC_PINF => return Err(CopyError::NumericInfinity { negative: false }),
        NUMERIC_NINF => return Err(CopyError::NumericInfinity { negative: true }),
        _ => return Err(CopyError::BadNumeric("unknown sign")),
    };
    if dscale > NUMERIC_DSCALE_MAX {
        return Err(CopyError::BadNumeric("display scale out of range"));
    }

    let mut magnitude: u128 = 0;
    for i in 0..ndigits {
        let digit = input.i16()?;
        if !(0..10_000).contains(&digit) {
            return Err(CopyError::BadNumeric("digit out of range"));
        }
        if digit == 0 {
            continue;
        }
        // The power of ten this group's units have in the mantissa (the value times 10^dscale).
        let exponent = 4 * (weight as i64 - i as i64) + dscale as i64;
        let digit = digit as u128;
        let term = if exponent >= 0 {
            let factor = u32::try_from(exponent)
                .ok()
                .and_then(|e| 10u128.checked_pow(e));
            factor
                .and_then(|factor| digit.checked_mul(factor))
                .ok_or(CopyError::NumericOverflow)?
        } else {
            // The group straddles or lies past the display scale: its hidden part must be zero.
            let divisor = match exponent {
                -1 => 10,
                -2 => 100,
                -3 => 1000,
                _ => return Err(CopyError::NumericHiddenDigits),
            };
            if !digit.is_multiple_of(divisor) {
                return Err(CopyError::NumericHiddenDigits);
            }
            digit / divisor
        };
        magnitude = magnitude
            .checked_add(term)
            .ok_or(CopyError::NumericOverflow)?;
    }
    let mantissa = if negative {
        0i128.checked_sub_unsigned(magnitude)
    } else {
        i128::try_from(magnitude).ok()
    };
    Ok(Decimal {
        mantissa: mantissa.ok_or(CopyError::NumericOverflow)?,
        scale: dscale,
    })
}

/// One field, length word included.
fn encode_field(out: &mut Vec<u8>, value: &Value, ty: LocalType) -> Result<()> {
    match (ty, value) {
        (_, Value::Null) => put_i32(out, -1),
        (LocalType::Int2 | LocalType::Int4 | LocalType::Int8, Value::Int(v)) => {
            let out_of_range = CopyError::OutOfRange { ty, value: *v };
            match ty {
                LocalType::Int2 => put_field(
                    out,
                    &i16::try_from(*v).map_err(|_| out_of_range)?.to_be_bytes(),
                )?,
                LocalType::Int4 => put_field(
                    out,
                    &i32::try_from(*v).map_err(|_| out_of_range)?.to_be_bytes(),
                )?,
                _ => put_field(out, &v.to_be_bytes())?,
            }
        }
        (LocalType::Numeric, Value::Numeric(d)) => encode_numeric(out, *d)?,
        (LocalType::Numeric, Value::Int(v)) => encode_numeric(out, Decimal::from_int(*v))?,
        (LocalType::Text, Value::Text(s)) => {
            if s.contains('\0') {
                return Err(CopyError::NulInText);
            }
            put_field(out, s.as_bytes())?
        }
        (LocalType::Bool, Value::Bool(b)) => put_field(out, &[*b as u8])?,
        (LocalType::Date, Value::Date(days)) => put_field(out, &days.to_be_bytes())?,
        (_, other) => {
            return Err(CopyError::TypeMismatch {
                ty,
                found: kind(other),
            })
        }
    }
    Ok(())
}

/// A numeric exactly as PostgreSQL's numeric_send writes it: no leading or trailing zero digit groups, the
/// weight of the first remaining group, and the decimal's scale as display scale.
fn encode_numeric(out: &mut Vec<u8>, d: Decimal) -> Result<()> {
    if d.scale > NUMERIC_DSCALE_MAX {
        return Err(CopyError::ScaleTooLarge(d.scale));
    }
    let (weight, digits) = base_10000(d.mantissa.unsigned_abs(), d.scale)?;
    let ndigits = i16::try_from(digits.len()).map_err(|_| CopyError::ScaleTooLarge(d.scale))?;
    let length = NUMERIC_HEADER_LEN + 2 * digits.len();
    put_i32(
        out,
        i32::try_from(length).map_err(|_| CopyError::FieldTooLong(length))?,
    );
    put_i16(out, ndigits);
    put_i16(out, weight);
    put_u16(
        out,
        if d.mantissa < 0 {
            NUMERIC_NEG
        } else {
            NUMERIC_POS
        },
    );
    put_u16(out, d.scale);
    for digit in digits {
        put_i16(out, digit);
    }
    Ok(())
}

/// `magnitude / 10^scale` as base-10000 digit groups aligned on the decimal point (group `w` holds the
/// decimal digits of 10^(4w) to 10^(4w+3)), most significant first and without zero groups at either end,
/// plus the weight of the first group. Zero has no groups and weight 0.
fn base_10000(mut magnitude: u128, scale: u16) -> Result<(i16, Vec<i16>)> {
    // Walk the decimal digits from the least significant, whose power of ten is -scale.
    let mut exponent = -(scale as i32);
    let lowest = exponent.div_euclid(4);
    let mut groups: Vec<i16> = Vec::new(); // least significant first: groups[k] is group `lowest + k`
    while magnitude != 0 {
        let place = exponent.rem_euclid(4);
        if groups.is_empty() || place == 0 {
            groups.push(0);
        }
        if let Some(group) = groups.last_mut() {
            *group += (magnitude % 10) as i16 * 10i16.pow(place as u32);
        }
        magnitude /= 10;
        exponent += 1;
    }
    // The last group holds the leading decimal digit, so it is nonzero whenever there are groups at all.
    let weight = match groups.len() {
        0 => 0,
        len => lowest + len as i32 - 1,
    };
    let weight = i16::try_from(weight).map_err(|_| CopyError::ScaleTooLarge(scale))?;
    let trailing_zeros = groups.iter().take_while(|&&g| g == 0).count();
    Ok((
        weight,
        groups.iter().skip(trailing_zeros).rev().copied().collect(),
    ))
}

/// A value's kind, for type mismatch errors.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Int(_) => "integer",
        Value::Numeric(_) => "numeric",
        Value::Text(_) => "text",
        Value::Bool(_) => "boolean",
        Value::Date(_) => "date",
    }
}

/// A field's length word and bytes.
fn put_field(out: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    put_i32(
        out,
        i32::try_from(bytes.len()).map_err(|_| CopyError::FieldTooLong(bytes.len()))?,
    );
    out.extend_from_slice(bytes);
    Ok(())
}

fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use LocalType::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    /// A header with no flags and no extension.
    fn header() -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&[0; 8]);
        out
    }

    /// A stream of one tuple with one field of these bytes (None for NULL).
    fn one_field(field: Option<&[u8]>) -> Vec<u8> {
        let mut out = header();
        put_i16(&mut out, 1);
        match field {
            Some(bytes) => put_field(&mut out, bytes).unwrap(),
            None => put_i32(&mut out, -1),
        }
        put_i16(&mut out, -1);
        out
    }

    /// A numeric field's bytes (without the length word).
    fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut out = Vec::new();
        put_i16(&mut out, digits.len() as i16);
        put_i16(&mut out, weight);
        put_u16(&mut out, sign);
        put_u16(&mut out, dscale);
        for &digit in digits {
            put_i16(&mut out, digit);
        }
        out
    }

    fn decode_numeric_field(bytes: &[u8]) -> Result<Value> {
        decode(&one_field(Some(bytes)), &[Numeric]).map(|mut rows| rows.remove(0).remove(0))
    }

    #[test]
    fn a_literal_stream_decodes_and_encodes() {
        let stream: &[u8] = b"PGCOPY\n\xff\r\n\0\
            \x00\x00\x00\x00\x00\x00\x00\x00\
            \x00\x01\
            \x00\x00\x00\x0c\x00\x02\x00\x00\x00\x00\x00\x02\x00\x01\x13\x88\
            \xff\xff";
        let rows = vec![vec![Value::Numeric(d("1.50"))]];
        assert_eq!(decode(stream, &[Numeric]), Ok(rows.clone()));
        assert_eq!(encode(&rows, &[Numeric]).unwrap(), stream);
    }

    #[test]
    fn numerics_match_postgresql_bytes() {
        let cases: [(&str, i16, u16, u16, &[i16]); 9] = [
            ("1.50", 0, NUMERIC_POS, 2, &[1, 5000]),
            ("12345.6789", 1, NUMERIC_POS, 4, &[1, 2345, 6789]),
            ("0.0001", -1, NUMERIC_POS, 4, &[1]),
            ("10000", 1, NUMERIC_POS, 0, &[1]),
            ("-3.5", 0, NUMERIC_NEG, 1, &[3, 5000]),
            ("0.00", 0, NUMERIC_POS, 2, &[]),
            ("0", 0, NUMERIC_POS, 0, &[]),
            ("-0.000012", -2, NUMERIC_NEG, 6, &[1200]),
            (
                "123456789012345678901234567890.12",
                7,
                NUMERIC_POS,
                2,
                &[12, 3456, 7890, 1234, 5678, 9012, 3456, 7890, 1200],
            ),
        ];
        for (text, weight, sign, dscale, digits) in cases {
            let bytes = numeric(weight, sign, dscale, digits);
            let value = Value::Numeric(d(text));
            assert_eq!(
                decode_numeric_field(&bytes),
                Ok(value.clone()),
                "decoding {text}"
            );
            assert_eq!(
                encode(&[vec![value]], &[Numeric]).unwrap(),
                one_field(Some(&bytes)),
                "encoding {text}"
            );
        }
    }

    #[test]
    fn numeric_digits_need_not_line_up_with_the_display_scale() {
        // Groups reaching past the display scale with zeros only.
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_POS, 1, &[1, 5000])),
            Ok(Value::Numeric(d("1.5")))
        );
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_POS, 0, &[7, 0, 0])),
            Ok(Value::Numeric(d("7")))
        );
        // Fewer groups than the display scale needs.
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_POS, 6, &[1])),
            Ok(Value::Numeric(d("1.000000")))
        );
        assert_eq!(
            decode_numeric_field(&numeric(2, NUMERIC_POS, 0, &[3])),
            Ok(Value::Numeric(d("300000000")))
        );
        // Leading zero groups and a negative zero are still exact.
        assert_eq!(
            decode_numeric_field(&numeric(1, NUMERIC_POS, 2, &[0, 4, 2500])),
            Ok(Value::Numeric(d("4.25")))
        );
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_NEG, 1, &[])),
            Ok(Value::Numeric(d("0.0")))
        );
        // A nonzero digit the display scale would hide.
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_POS, 0, &[1, 5000])),
            Err(CopyError::NumericHiddenDigits)
        );
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_POS, 3, &[1, 5])),
            Err(CopyError::NumericHiddenDigits)
        );
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_POS, 4, &[1, 5])),
            Ok(Value::Numeric(d("1.0005")))
        );
    }

    #[test]
    fn numerics_at_the_limits_of_a_decimal() {
        for mantissa in [i128::MAX, i128::MIN, i128::MIN + 1, -1, 1] {
            for scale in [0, 3, 10, 38, 100] {
                let value = Value::Numeric(Decimal { mantissa, scale });
                let stream = encode(&[vec![value.clone()]], &[Numeric]).unwrap();
                assert_eq!(
                    decode(&stream, &[Numeric]),
                    Ok(vec![vec![value]]),
                    "{mantissa} at scale {scale}"
                );
            }
        }
        // 10^40, and 1 shown with more decimals than 128 bits hold.
        assert_eq!(
            decode_numeric_field(&numeric(10, NUMERIC_POS, 0, &[1])),
            Err(CopyError::NumericOverflow)
        );
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_POS, 1000, &[1])),
            Err(CopyError::NumericOverflow)
        );
        assert_eq!(
            decode_numeric_field(&numeric(i16::MAX, NUMERIC_POS, 0, &[1])),
            Err(CopyError::NumericOverflow)
        );
        // 2^127 fits only as a negative.
        let two_127: &[i16] = &[170, 1411, 8346, 469, 2317, 3168, 7303, 7158, 8410, 5728];
        let bytes = numeric(9, NUMERIC_NEG, 0, two_127);
        assert_eq!(
            decode_numeric_field(&bytes),
            Ok(Value::Numeric(Decimal {
                mantissa: i128::MIN,
                scale: 0
            }))
        );
        let bytes = numeric(9, NUMERIC_POS, 0, two_127);
        assert_eq!(
            decode_numeric_field(&bytes),
            Err(CopyError::NumericOverflow)
        );
        // Zero keeps any scale PostgreSQL allows; beyond that encoding refuses.
        let zero = Value::Numeric(Decimal {
            mantissa: 0,
            scale: NUMERIC_DSCALE_MAX,
        });
        assert_eq!(
            decode(
                &encode(&[vec![zero.clone()]], &[Numeric]).unwrap(),
                &[Numeric]
            ),
            Ok(vec![vec![zero]])
        );
        let tiny = Value::Numeric(Decimal {
            mantissa: 5,
            scale: NUMERIC_DSCALE_MAX + 1,
        });
        assert_eq!(
            encode(&[vec![tiny]], &[Numeric]),
            Err(CopyError::ScaleTooLarge(NUMERIC_DSCALE_MAX + 1))
        );
    }

    #[test]
    fn non_finite_numerics_are_refused() {
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_NAN, 0, &[])),
            Err(CopyError::NumericNan)
        );
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_PINF, 0, &[])),
            Err(CopyError::NumericInfinity { negative: false })
        );
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_NINF, 0, &[])),
            Err(CopyError::NumericInfinity { negative: true })
        );
    }

    #[test]
    fn malformed_numerics_are_refused() {
        let bad_length = |length| {
            Err(CopyError::BadFieldLength {
                ty: Numeric,
                length,
            })
        };
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_POS, 0, &[1])[..9]),
            bad_length(9)
        );
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_POS, 0, &[1])[..6]),
            bad_length(6)
        );
        let mut extra = numeric(0, NUMERIC_POS, 0, &[1]);
        extra.extend_from_slice(&[0, 0]);
        assert_eq!(decode_numeric_field(&extra), bad_length(12));
        let mut negative_count = numeric(0, NUMERIC_POS, 0, &[]);
        negative_count[..2].copy_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(
            decode_numeric_field(&negative_count),
            Err(CopyError::BadNumeric("negative digit count"))
        );
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_POS, 0, &[10_000])),
            Err(CopyError::BadNumeric("digit out of range"))
        );
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_POS, 0, &[-1])),
            Err(CopyError::BadNumeric("digit out of range"))
        );
        assert_eq!(
            decode_numeric_field(&numeric(0, 0x1234, 0, &[1])),
            Err(CopyError::BadNumeric("unknown sign"))
        );
        assert_eq!(
            decode_numeric_field(&numeric(0, NUMERIC_POS, 0x4000, &[1])),
            Err(CopyError::BadNumeric("display scale out of range"))
        );
    }

    #[test]
    fn mixed_rows_with_nulls_round_trip() {
        let types = [Int2, Int4, Int8, Numeric, Text, Bool, Date];
        let full = vec![
            Value::Int(-32768),
            Value::Int(-2_147_483_648),
            Value::Int(i64::MIN),
            Value::Numeric(d("-98765.4321")),
            Value::Text("plain".into()),
            Value::Bool(true),
            Value::Date(-36524),
        ];
        let mut rows = vec![full.clone(), vec![Value::Null; types.len()]];
        // Each column NULL once, the others set.
        for column in 0..types.len() {
            let mut row = full.clone();
            row[column] = Value::Null;
            rows.push(row);
        }
        rows.push(vec![
            Value::Int(32767),
            Value::Int(2_147_483_647),
            Value::Int(i64::MAX),
            Value::Numeric(d("0.00")),
            Value::Text(String::new()),
            Value::Bool(false),
            Value::Date(i32::MAX),
        ]);
        let stream = encode(&rows, &types).unwrap();
        assert_eq!(decode(&stream, &types), Ok(rows));
    }

    #[test]
    fn fields_match_postgresql_bytes() {
        let types = [Int2, Int4, Int8, Bool, Date, Text];
        let row = vec![
            Value::Int(-2),
            Value::Null,
            Value::Int(258),
            Value::Bool(true),
            Value::Date(-1),
            Value::Text("é".into()),
        ];
        let mut expected = header();
        expected.extend_from_slice(&[0, 6]);
        expected.extend_from_slice(&[0, 0, 0, 2, 0xff, 0xfe]);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2]);
        expected.extend_from_slice(&[0, 0, 0, 1, 1]);
        expected.extend_from_slice(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0, 0, 0, 2, 0xc3, 0xa9]);
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(
            encode(std::slice::from_ref(&row), &types).unwrap(),
            expected
        );
        assert_eq!(decode(&expected, &types), Ok(vec![row]));
    }

    #[test]
    fn unicode_text_round_trips() {
        let texts = [
            "naïve café",
            "日本語のテキスト",
            "emoji 🦀🐘",
            "ß\u{200d}\u{10FFFF}",
            "tab\tnewline\n\\",
        ];
        let rows: Vec<Vec<Value>> = texts
            .iter()
            .map(|t| vec![Value::Text(t.to_string()), Value::Int(-7)])
            .collect();
        let stream = encode(&rows, &[Text, Int4]).unwrap();
        assert_eq!(decode(&stream, &[Text, Int4]), Ok(rows));
    }

    #[test]
    fn text_must_be_utf8_without_nul() {
        assert_eq!(
            decode(&one_field(Some(b"\xc3\x28")), &[Text]),
            Err(CopyError::InvalidUtf8)
        );
        assert_eq!(
            encode(&[vec![Value::Text("a\0b".into())]], &[Text]),
            Err(CopyError::NulInText)
        );
    }

    #[test]
    fn bools_follow_postgresql() {
        assert_eq!(
            decode(&one_field(Some(&[0])), &[Bool]),
            Ok(vec![vec![Value::Bool(false)]])
        );
        assert_eq!(
            decode(&one_field(Some(&[2])), &[Bool]),
            Ok(vec![vec![Value::Bool(true)]])
        );
    }

    #[test]
    fn integers_are_range_checked_on_encode() {
        let out_of_range = |ty, value| Err(CopyError::OutOfRange { ty, value });
        assert_eq!(
            encode(&[vec![Value::Int(40000)]], &[Int2]),
            out_of_range(Int2, 40000)
        );
        assert_eq!(
            encode(&[vec![Value::Int(-32769)]], &[Int2]),
            out_of_range(Int2, -32769)
        );
        assert_eq!(
            encode(&[vec![Value::Int(1 << 31)]], &[Int4]),
            out_of_range(Int4, 1 << 31)
        );
        assert!(encode(&[vec![Value::Int(-(1 << 31))]], &[Int4]).is_ok());
    }

    #[test]
    fn values_must_suit_their_columns() {
        assert_eq!(
            encode(&[vec![Value::Text("1".into())]], &[Int4]),
            Err(CopyError::TypeMismatch {
                ty: Int4,
                found: "text"
            })
        );
        assert_eq!(
            encode(&[vec![Value::Numeric(d("1"))]], &[Int8]),
            Err(CopyError::TypeMismatch {
                ty: Int8,
                found: "numeric"
            })
        );
        assert_eq!(
            encode(&[vec![Value::Date(1)]], &[Bool]),
            Err(CopyError::TypeMismatch {
                ty: Bool,
                found: "date"
            })
        );
        // Integers widen exactly to numeric.
        let stream = encode(&[vec![Value::Int(-42)]], &[Numeric]).unwrap();
        assert_eq!(
            decode(&stream, &[Numeric]),
            Ok(vec![vec![Value::Numeric(d("-42"))]])
        );
        assert_eq!(
            encode(&[vec![Value::Int(1)]], &[Int4, Int4]),
            Err(CopyError::RowWidth {
                expected: 2,
                found: 1
            })
        );
    }

    #[test]
    fn empty_streams() {
        let stream = encode(&[], &[Int4, Text]).unwrap();
        let mut expected = header();
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(stream, expected);
        assert_eq!(decode(&stream, &[Int4, Text]), Ok(vec![]));
    }

    #[test]
    fn bad_signatures_are_refused() {
        assert_eq!(
            decode(b"1\tfoo\n\\.\n", &[Int4, Text]),
            Err(CopyError::BadSignature)
        );
        let mut stream = one_field(Some(&[0, 0, 0, 1]));
        stream[5] = b'X';
        assert_eq!(decode(&stream, &[Int4]), Err(CopyError::BadSignature));
    }

    #[test]
    fn truncated_streams_are_refused() {
        let rows = vec![vec![
            Value::Int(1),
            Value::Numeric(d("2.5")),
            Value::Text("three".into()),
            Value::Null,
        ]];
        let types = [Int8, Numeric, Text, Date];
        let stream = encode(&rows, &types).unwrap();
        assert_eq!(decode(&stream, &types), Ok(rows));
        for len in 0..stream.len() {
            assert_eq!(
                decode(&stream[..len], &types),
                Err(CopyError::Truncated),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn trailing_data_is_refused() {
        let mut stream = one_field(Some(&[0, 0, 0, 1]));
        stream.push(0);
        assert_eq!(decode(&stream, &[Int4]), Err(CopyError::TrailingData));
    }

    #[test]
    fn field_counts_and_lengths_must_match() {
        let stream = encode(&[vec![Value::Int(1), Value::Int(2)]], &[Int4, Int4]).unwrap();
        assert_eq!(
            decode(&stream, &[Int4]),
            Err(CopyError::FieldCount {
                expected: 1,
                found: 2
            })
        );
        assert_eq!(
            decode(&stream, &[Int4, Int4, Int4]),
            Err(CopyError::FieldCount {
                expected: 3,
                found: 2
            })
        );
        assert_eq!(
            decode(&one_field(Some(&[0, 0, 0, 1])), &[Int2]),
            Err(CopyError::BadFieldLength {
                ty: Int2,
                length: 4
            })
        );
        assert_eq!(
            decode(&one_field(Some(&[0, 1])), &[Date]),
            Err(CopyError::BadFieldLength {
                ty: Date,
                length: 2
            })
        );
        assert_eq!(
            decode(&one_field(Some(&[])), &[Bool]),
            Err(CopyError::BadFieldLength {
                ty: Bool,
                length: 0
            })
        );
        let mut negative = header();
        negative.extend_from_slice(&[0, 1, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff]);
        assert_eq!(
            decode(&negative, &[Text]),
            Err(CopyError::BadFieldLength {
                ty: Text,
                length: -2
            })
        );
    }

    #[test]
    fn header_flags_and_extensions() {
        let mut oids = one_field(None);
        oids[11..15].copy_from_slice(&FLAG_OIDS.to_be_bytes());
        assert_eq!(decode(&oids, &[Int4]), Err(CopyError::OidsIncluded));
        let mut critical = one_field(None);
        critical[11..15].copy_from_slice(&(1u32 << 20).to_be_bytes());
        assert_eq!(
            decode(&critical, &[Int4]),
            Err(CopyError::UnknownFlags(1 << 20))
        );
        // Low flag bits are ignorable, and the extension area is skipped.
        let mut extended = SIGNATURE.to_vec();
        extended.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 3, 9, 9, 9]);
        extended.extend_from_slice(&one_field(None)[header().len()..]);
        assert_eq!(decode(&extended, &[Int4]), Ok(vec![vec![Value::Null]]));
        let mut negative = SIGNATURE.to_vec();
        negative.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            decode(&negative, &[Int4]),
            Err(CopyError::BadHeaderExtension(-1))
        );
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            CopyError::NumericInfinity { negative: true }.to_string(),
            "numeric -infinity is not supported"
        );
        assert_eq!(
            CopyError::OutOfRange {
                ty: Int2,
                value: 40000
            }
            .to_string(),
            "40000 is out of range for smallint"
        );
        assert_eq!(
            CopyError::FieldCount {
                expected: 3,
                found: 2
            }
            .to_string(),
            "tuple has 2 fields, expected 3"
        );
    }
}
