//! Consistency levels as the tools spell them: `one`, `two`, `three`, `quorum`, `all`,
//! `local_quorum`, or a replica count (`2`), optionally followed by `:strict` or `:sloppy`
//! (`quorum:strict`; sloppy is the default, as in the protocol). The same spelling is used
//! by `--consistency` flags, the shell's `consistency` command and `create table`. Pure
//! functions.

use sibyl_protocol::{Consistency, ConsistencyLevel, QuorumMode};

/// A consistency spelling that is not one of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid consistency {given:?}: expected one, two, three, quorum, all, local_quorum or a \
     replica count, optionally followed by :strict or :sloppy"
)]
pub struct ConsistencyParseError {
    /// What was given.
    pub given: String,
}

/// Parses `LEVEL[:strict|:sloppy]` (case-insensitive).
pub fn parse_consistency(s: &str) -> Result<Consistency, ConsistencyParseError> {
    let err = || ConsistencyParseError {
        given: s.to_owned(),
    };
    let lower = s.trim().to_ascii_lowercase();
    let (level, mode) = match lower.split_once(':') {
        Some((l, m)) => (l, Some(m)),
        None => (lower.as_str(), None),
    };
    let mode = match mode {
        None | Some("sloppy") => QuorumMode::Sloppy,
        Some("strict") => QuorumMode::Strict,
        Some(_) => return Err(err()),
    };
    Ok(Consistency {
        level: parse_level(level).ok_or_else(err)?,
        mode,
        read_repair: sibyl_protocol::ReadRepair::Background,
    })
}

/// Parses a level name or replica count; `None` when it is neither.
pub fn parse_level(s: &str) -> Option<ConsistencyLevel> {
    Some(match s {
        "one" => ConsistencyLevel::One,
        "two" => ConsistencyLevel::Two,
        "three" => ConsistencyLevel::Three,
        "quorum" => ConsistencyLevel::Quorum,
        "all" => ConsistencyLevel::All,
        "local_quorum" | "local-quorum" => ConsistencyLevel::LocalQuorum,
        n => match n.parse::<u16>() {
            Ok(n) if n > 0 => ConsistencyLevel::Explicit(n),
            _ => return None,
        },
    })
}

/// The spelling [`parse_consistency`] reads back (`quorum`, `2:strict`).
pub fn show_consistency(c: &Consistency) -> String {
    let level = match c.level {
        ConsistencyLevel::One => "one".to_owned(),
        ConsistencyLevel::Two => "two".to_owned(),
        ConsistencyLevel::Three => "three".to_owned(),
        ConsistencyLevel::Quorum => "quorum".to_owned(),
        ConsistencyLevel::All => "all".to_owned(),
        ConsistencyLevel::LocalQuorum => "local_quorum".to_owned(),
        ConsistencyLevel::Explicit(n) => n.to_string(),
    };
    match c.mode {
        QuorumMode::Sloppy => level,
        QuorumMode::Strict => format!("{level}:strict"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_consistency_reads_names_counts_and_modes() {
        assert_eq!(parse_consistency("QUORUM"), Ok(Consistency::QUORUM));
        assert_eq!(parse_consistency("one:sloppy"), Ok(Consistency::ONE));
        assert_eq!(
            parse_consistency("2:strict"),
            Ok(Consistency::explicit(2).strict())
        );
    }

    #[test]
    fn parse_consistency_rejects_unknown_and_zero() {
        assert!(parse_consistency("most").is_err());
        assert!(parse_consistency("0").is_err());
        assert!(parse_consistency("one:lax").is_err());
    }

    #[test]
    fn show_consistency_round_trips() {
        for c in [
            Consistency::ONE,
            Consistency::ALL.strict(),
            Consistency::LOCAL_QUORUM,
            Consistency::explicit(4),
        ] {
            assert_eq!(parse_consistency(&show_consistency(&c)), Ok(c));
        }
    }
}
