//! The credentials every tool takes alike: `--user NAME` and the password from
//! `--password-file FILE` (its first line), else the environment variable
//! [`PASSWORD_ENV`], else, where the tool allows it and a terminal is there, a prompt
//! that does not echo (`rpassword`). A password is never taken from the command line
//! itself (it would show in `ps` and shell history) and never printed.

use std::path::PathBuf;

use sibyl_protocol::Credentials;

/// Environment variable holding the password of `--user`.
pub const PASSWORD_ENV: &str = "SIBYL_PASSWORD";

/// The credential flags, flattened into each tool's arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CredentialArgs {
    /// Log in as this user (SCRAM-SHA-256). The password comes from --password-file,
    /// else the environment variable SIBYL_PASSWORD, else (sibyl-cli on a terminal) a
    /// prompt.
    #[arg(long, value_name = "NAME", global = true)]
    pub user: Option<String>,
    /// File whose first line is the password of --user.
    #[arg(long, value_name = "FILE", global = true)]
    pub password_file: Option<PathBuf>,
}

/// Why no credentials could be formed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// `--password-file` without `--user`.
    #[error("--password-file needs --user NAME")]
    NoUser,
    /// The password file could not be read.
    #[error("cannot read the password file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Nowhere to get the password from.
    #[error("no password for user {user}: give --password-file FILE or set SIBYL_PASSWORD{hint}")]
    NoPassword {
        /// The user.
        user: String,
        /// What else would have worked.
        hint: &'static str,
    },
    /// The prompt failed.
    #[error("cannot read the password from the terminal: {0}")]
    Prompt(std::io::Error),
}

impl CredentialArgs {
    /// The credentials to log in with (`None` without `--user`). `prompt` allows asking
    /// on the terminal when neither the file nor the environment variable gives one.
    pub fn resolve(&self, prompt: bool) -> Result<Option<Credentials>, CredentialsError> {
        self.resolve_with(prompt, std::env::var(PASSWORD_ENV).ok())
    }

    fn resolve_with(
        &self,
        prompt: bool,
        env: Option<String>,
    ) -> Result<Option<Credentials>, CredentialsError> {
        let Some(user) = self.user.clone() else {
            if self.password_file.is_some() {
                return Err(CredentialsError::NoUser);
            }
            return Ok(None);
        };
        let password = if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
                path: path.clone(),
                source,
            })?;
            text.lines().next().unwrap_or("").to_owned()
        } else if let Some(p) = env {
            p
        } else if prompt && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            rpassword::prompt_password(format!("password for {user}: "))
                .map_err(CredentialsError::Prompt)?
        } else {
            return Err(CredentialsError::NoPassword {
                user,
                hint: if prompt {
                    " (or run on a terminal to be asked)"
                } else {
                    ""
                },
            });
        };
        Ok(Some(Credentials { user, password }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_file_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\nsecond line\n").unwrap();
        let none = CredentialArgs::default();
        assert!(none
            .resolve_with(false, Some("x".into()))
            .unwrap()
            .is_none());
        let with_file = CredentialArgs {
            user: Some("alice".into()),
            password_file: Some(file),
        };
        let c = with_file
            .resolve_with(false, Some("env".into()))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("alice", "from-file")
        );
        assert!(!format!("{c:?}").contains("from-file"), "never printed");
        let env_only = CredentialArgs {
            user: Some("bob".into()),
            password_file: None,
        };
        let c = env_only
            .resolve_with(false, Some("env-pw".into()))
            .unwrap()
            .unwrap();
        assert_eq!(c.password, "env-pw");
        let e = env_only.resolve_with(false, None).unwrap_err().to_string();
        assert!(e.contains("no password for user bob"), "{e}");
        let orphan = CredentialArgs {
            user: None,
            password_file: Some("x".into()),
        };
        assert!(matches!(
            orphan.resolve_with(false, None),
            Err(CredentialsError::NoUser)
        ));
    }
}
