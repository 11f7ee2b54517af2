//! Refresh modes and stream-table states, as stored in the catalog and accepted from users.

use crate::error::{PgtError, PgtResult, SqlState};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshMode {
    Full,
    Differential,
    Auto,
}

impl RefreshMode {
    pub fn parse(text: &str) -> PgtResult<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "FULL" => Ok(RefreshMode::Full),
            "DIFFERENTIAL" => Ok(RefreshMode::Differential),
            "AUTO" => Ok(RefreshMode::Auto),
            _ => Err(PgtError::new(
                SqlState::InvalidParameterValue,
                format!("unknown refresh mode \"{text}\""),
            )
            .hint("Valid refresh modes are FULL, DIFFERENTIAL and AUTO.")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RefreshMode::Full => "FULL",
            RefreshMode::Differential => "DIFFERENTIAL",
            RefreshMode::Auto => "AUTO",
        }
    }
}

/// Lifecycle state of a stream table. The scheduler refreshes ACTIVE ones only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Suspended,
}

impl Status {
    /// Parses a status a user may set with `alter_stream_table`.
    pub fn parse_settable(text: &str) -> PgtResult<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "ACTIVE" => Ok(Status::Active),
            "SUSPENDED" => Ok(Status::Suspended),
            _ => Err(PgtError::new(
                SqlState::InvalidParameterValue,
                format!("invalid status \"{text}\""),
            )
            .hint("A stream table's status can be set to ACTIVE or SUSPENDED.")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::Suspended => "SUSPENDED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_case_insensitively() {
        assert_eq!(RefreshMode::parse("full").unwrap(), RefreshMode::Full);
        assert_eq!(
            RefreshMode::parse(" Differential ").unwrap(),
            RefreshMode::Differential
        );
        assert_eq!(RefreshMode::parse("AUTO").unwrap(), RefreshMode::Auto);
        let err = RefreshMode::parse("INCREMENTAL").unwrap_err();
        assert_eq!(err.state, SqlState::InvalidParameterValue);
        assert!(err.hint.unwrap().contains("DIFFERENTIAL"));
    }

    #[test]
    fn only_active_and_suspended_are_settable() {
        assert_eq!(
            Status::parse_settable("suspended").unwrap(),
            Status::Suspended
        );
        assert_eq!(Status::parse_settable("ACTIVE").unwrap(), Status::Active);
        assert!(Status::parse_settable("ERROR").is_err());
        assert!(Status::parse_settable("paused").is_err());
    }
}
