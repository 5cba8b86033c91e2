//! Users as LIST_USERS reports them ([`UserInfo`]). The password verifier a CREATE_USER
//! carries is [`crate::scram::ScramVerifier`]. Pure data.

use crate::error::ProtocolError;
use crate::wire::{WireReader, WireWriter};

/// One user. Wire: `string` name, `bool` superuser.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// Whether the user is a superuser.
    pub superuser: bool,
}

impl UserInfo {
    /// Smallest encoding: an empty name and the flag.
    pub const MIN_LEN: usize = 2 + 1;

    /// Writes the user.
    pub fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("user", &self.name)?;
        w.bool(self.superuser);
        Ok(())
    }

    /// Reads a user.
    pub fn decode(r: &mut WireReader) -> Result<UserInfo, ProtocolError> {
        Ok(UserInfo {
            name: r.string("user")?,
            superuser: r.bool("superuser")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_round_trip_and_reject_truncation() {
        let u = UserInfo {
            name: "admin".into(),
            superuser: true,
        };
        let mut w = WireWriter::new();
        u.encode(&mut w).unwrap();
        let bytes = w.finish();
        let mut r = WireReader::new(bytes.clone());
        assert_eq!(UserInfo::decode(&mut r).unwrap(), u);
        let mut short = WireReader::new(bytes.slice(..bytes.len() - 1));
        assert!(UserInfo::decode(&mut short).is_err());
    }
}
