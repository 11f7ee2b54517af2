//! One error type for the whole extension. Internal code returns `Result<_, PgtError>`; the SQL boundary
//! turns it into a PostgreSQL error (SQLSTATE + message + detail + hint) exactly once.

use std::fmt;

/// The SQLSTATEs pg_trickle raises itself. Errors raised by PostgreSQL while running our SQL keep theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    /// 22023
    InvalidParameterValue,
    /// 22004
    NullValueNotAllowed,
    /// 42601
    SyntaxError,
    /// 42602
    InvalidName,
    /// 3F000
    InvalidSchemaName,
    /// 42P01
    UndefinedTable,
    /// 42P07
    DuplicateTable,
    /// 42809
    WrongObjectType,
    /// 42883
    UndefinedFunction,
    /// 42939
    ReservedName,
    /// 42701
    DuplicateColumn,
    /// 42P16
    InvalidTableDefinition,
    /// 42P22
    IndeterminateCollation,
    /// 0A000
    FeatureNotSupported,
    /// 42501
    InsufficientPrivilege,
    /// 55000
    ObjectNotInPrerequisiteState,
    /// 55P03
    LockNotAvailable,
    /// 25006
    ReadOnlySqlTransaction,
    /// 40001
    SerializationFailure,
    /// 2BP01
    DependentObjectsStillExist,
    /// XX000
    InternalError,
    /// An error PostgreSQL raised, re-raised with its own SQLSTATE (PostgreSQL's 6-bit packed form).
    Passthrough(i32),
}

impl SqlState {
    pub fn code(self) -> &'static str {
        match self {
            SqlState::InvalidParameterValue => "22023",
            SqlState::NullValueNotAllowed => "22004",
            SqlState::SyntaxError => "42601",
            SqlState::InvalidName => "42602",
            SqlState::InvalidSchemaName => "3F000",
            SqlState::UndefinedTable => "42P01",
            SqlState::DuplicateTable => "42P07",
            SqlState::WrongObjectType => "42809",
            SqlState::UndefinedFunction => "42883",
            SqlState::ReservedName => "42939",
            SqlState::DuplicateColumn => "42701",
            SqlState::InvalidTableDefinition => "42P16",
            SqlState::IndeterminateCollation => "42P22",
            SqlState::FeatureNotSupported => "0A000",
            SqlState::InsufficientPrivilege => "42501",
            SqlState::ObjectNotInPrerequisiteState => "55000",
            SqlState::LockNotAvailable => "55P03",
            SqlState::ReadOnlySqlTransaction => "25006",
            SqlState::SerializationFailure => "40001",
            SqlState::DependentObjectsStillExist => "2BP01",
            SqlState::InternalError => "XX000",
            SqlState::Passthrough(_) => "PGERR",
        }
    }

    /// The five characters of the SQLSTATE.
    pub fn sqlstate(self) -> String {
        match self {
            SqlState::Passthrough(packed) => unpack_sqlstate(packed),
            own => own.code().to_string(),
        }
    }

    /// Whether the error is about the moment rather than the statement: a cancel (`pg_cancel_backend`,
    /// a timeout) or shutdown (class 57), a deadlock or serialization failure (40), a lock not
    /// available (55P03), resources exhausted (53), a system error (58). Code that takes an error as
    /// an answer ("this query no longer works") must let these through, as PL/pgSQL's `WHEN OTHERS`
    /// never catches a cancel.
    pub fn is_transient(self) -> bool {
        let code = self.sqlstate();
        matches!(&code[..2], "40" | "53" | "57" | "58") || code == "55P03"
    }
}

/// A SQLSTATE from PostgreSQL's packed form (`MAKE_SQLSTATE`: six bits a character, the first lowest).
pub fn unpack_sqlstate(packed: i32) -> String {
    (0..5)
        .map(|i| char::from(((packed >> (6 * i)) & 0x3F) as u8 + b'0'))
        .collect()
}

/// An SQL argument that must not be NULL (the API functions take NULLs to say so clearly instead of
/// silently returning NULL, as STRICT functions do).
pub fn required<T>(value: Option<T>, argument: &str) -> Result<T, PgtError> {
    value.ok_or_else(|| {
        PgtError::new(
            SqlState::NullValueNotAllowed,
            format!("{argument} must not be NULL"),
        )
        .hint("Pass a value, or leave out an argument that has a default.")
    })
}

/// Where an error points into a query, shown the way psql shows positions: the line, then a caret.
/// `position` is PostgreSQL's 1-based character offset into `query`.
pub fn position_detail(query: &str, position: usize) -> String {
    let target = position.saturating_sub(1);
    let (mut line_no, mut line_start_char, mut line_start_byte) = (1, 0, 0);
    for (i, (byte, ch)) in query.char_indices().enumerate() {
        if i >= target {
            break;
        }
        if ch == '\n' {
            line_no += 1;
            line_start_char = i + 1;
            line_start_byte = byte + 1;
        }
    }
    let line = query[line_start_byte..].lines().next().unwrap_or("");
    let column = target.saturating_sub(line_start_char);
    format!(
        "In the defining query, line {line_no}:\n{line}\n{}^",
        " ".repeat(column)
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgtError {
    pub state: SqlState,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

pub type PgtResult<T> = Result<T, PgtError>;

impl PgtError {
    pub fn new(state: SqlState, message: impl Into<String>) -> Self {
        PgtError {
            state,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn internal(message: impl Into<String>) -> Self {
        PgtError::new(SqlState::InternalError, message)
    }
}

impl fmt::Display for PgtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for PgtError {}

#[cfg(test)]
mod tests {
    use super::{position_detail, unpack_sqlstate, SqlState};

    /// MAKE_SQLSTATE of PostgreSQL's elog.h.
    fn packed(code: &str) -> i32 {
        code.bytes()
            .enumerate()
            .map(|(i, c)| (((c - b'0') & 0x3F) as i32) << (6 * i))
            .sum()
    }

    #[test]
    fn transient_errors_are_told_from_errors_about_the_statement() {
        assert_eq!(unpack_sqlstate(packed("57014")), "57014");
        assert_eq!(unpack_sqlstate(packed("42P01")), "42P01");
        for transient in [
            "57014", "57P01", "40001", "40P01", "55P03", "53200", "58030",
        ] {
            assert!(
                SqlState::Passthrough(packed(transient)).is_transient(),
                "{transient}"
            );
        }
        for answer in [
            "42P01", "42703", "0A000", "22012", "23514", "55000", "XX000",
        ] {
            assert!(
                !SqlState::Passthrough(packed(answer)).is_transient(),
                "{answer}"
            );
        }
        assert!(SqlState::SerializationFailure.is_transient());
        assert!(!SqlState::FeatureNotSupported.is_transient());
    }

    #[test]
    fn caret_points_at_the_character() {
        assert_eq!(
            position_detail("SELEC 1", 1),
            "In the defining query, line 1:\nSELEC 1\n^"
        );
        assert_eq!(
            position_detail("SELECT * FROM nope", 15),
            "In the defining query, line 1:\nSELECT * FROM nope\n              ^"
        );
    }

    #[test]
    fn later_lines_and_multibyte_text_are_counted_in_characters() {
        let q = "SELECT 'é'\nFROM nope";
        assert_eq!(
            position_detail(q, 17),
            "In the defining query, line 2:\nFROM nope\n     ^"
        );
    }
}

#[cfg(feature = "pg")]
mod report {
    use super::{PgtError, SqlState};
    use pgrx::pg_sys::errcodes::PgSqlErrorCode as C;
    use pgrx::pg_sys::panic::ErrorReport;
    use pgrx::PgLogLevel;

    impl SqlState {
        fn pg_code(self) -> C {
            match self {
                SqlState::InvalidParameterValue => C::ERRCODE_INVALID_PARAMETER_VALUE,
                SqlState::NullValueNotAllowed => C::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                SqlState::SyntaxError => C::ERRCODE_SYNTAX_ERROR,
                SqlState::InvalidName => C::ERRCODE_INVALID_NAME,
                SqlState::InvalidSchemaName => C::ERRCODE_INVALID_SCHEMA_NAME,
                SqlState::UndefinedTable => C::ERRCODE_UNDEFINED_TABLE,
                SqlState::DuplicateTable => C::ERRCODE_DUPLICATE_TABLE,
                SqlState::WrongObjectType => C::ERRCODE_WRONG_OBJECT_TYPE,
                SqlState::UndefinedFunction => C::ERRCODE_UNDEFINED_FUNCTION,
                SqlState::ReservedName => C::ERRCODE_RESERVED_NAME,
                SqlState::DuplicateColumn => C::ERRCODE_DUPLICATE_COLUMN,
                SqlState::InvalidTableDefinition => C::ERRCODE_INVALID_TABLE_DEFINITION,
                SqlState::IndeterminateCollation => C::ERRCODE_INDETERMINATE_COLLATION,
                SqlState::FeatureNotSupported => C::ERRCODE_FEATURE_NOT_SUPPORTED,
                SqlState::InsufficientPrivilege => C::ERRCODE_INSUFFICIENT_PRIVILEGE,
                SqlState::ObjectNotInPrerequisiteState => {
                    C::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
                }
                SqlState::LockNotAvailable => C::ERRCODE_LOCK_NOT_AVAILABLE,
                SqlState::SerializationFailure => C::ERRCODE_T_R_SERIALIZATION_FAILURE,
                SqlState::DependentObjectsStillExist => C::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
                SqlState::ReadOnlySqlTransaction => C::ERRCODE_READ_ONLY_SQL_TRANSACTION,
                SqlState::InternalError => C::ERRCODE_INTERNAL_ERROR,
                SqlState::Passthrough(code) => C::from(code),
            }
        }
    }

    impl PgtError {
        /// Raises this error as a PostgreSQL ERROR. Does not return. Its LOCATION is the caller's
        /// (the SQL function's code), not this file.
        #[track_caller]
        pub fn raise(self) -> ! {
            let mut report = ErrorReport::new(self.state.pg_code(), self.message, "pg_trickle");
            if let Some(d) = self.detail {
                report = report.set_detail(d);
            }
            if let Some(h) = self.hint {
                report = report.set_hint(h);
            }
            report.report(PgLogLevel::ERROR);
            unreachable!("ereport(ERROR) returned")
        }
    }

    /// Unwraps a result at the SQL boundary, raising the error as a PostgreSQL ERROR.
    pub trait OrRaise<T> {
        #[track_caller]
        fn or_raise(self) -> T;
    }

    impl<T> OrRaise<T> for Result<T, PgtError> {
        #[track_caller]
        fn or_raise(self) -> T {
            match self {
                Ok(value) => value,
                Err(e) => e.raise(),
            }
        }
    }
}

#[cfg(feature = "pg")]
pub use report::OrRaise;
