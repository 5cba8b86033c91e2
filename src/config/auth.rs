//! The authentication part of the node configuration ([`AuthConfig`]): whether clients
//! must authenticate, the first superuser created at start, and the safe-by-default rule
//! that keeps a node without authentication off the network.
//!
//! Safe by default (Redis's protected mode is the model): a node whose client or peer
//! address is not loopback refuses to start unless authentication is required
//! (`--auth required`) or the operator says `--insecure-no-auth`. A loopback node (the
//! quick start, `sibyl dev-cluster`, the tests) runs without authentication as before.
//!
//! The first superuser's password comes from a file (`--auth-superuser-password-file`,
//! its first line) or the environment variable [`SUPERUSER_PASSWORD_ENV`]; there is no
//! default password. It never appears in a `Debug` print ([`Password`]).
//!
//! Pure data; read once at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Cli, ConfigError, FileConfig};

/// Environment variable holding the first superuser's password when no file is given.
pub const SUPERUSER_PASSWORD_ENV: &str = "SIBYL_SUPERUSER_PASSWORD";

/// Whether clients must authenticate, as named in flags and files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// No authentication: every connection may make every request (loopback nodes, or
    /// with `--insecure-no-auth`). Credentials a client offers are still checked.
    #[default]
    Off,
    /// Every connection authenticates (SCRAM-SHA-256) before any other request.
    Required,
}

/// A password read from a file or the environment; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The superuser a node creates at start when no user of that name exists yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperuserSeed {
    /// The user name.
    pub name: String,
    /// Its password.
    pub password: Password,
}

/// Authentication settings of a node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthConfig {
    /// Whether clients must authenticate.
    pub mode: AuthMode,
    /// The operator accepts a non-loopback node without authentication.
    pub insecure_no_auth: bool,
    /// The first superuser, created at start if missing.
    pub superuser: Option<SuperuserSeed>,
}

impl AuthConfig {
    /// Flags over file over defaults; reads the superuser's password file (or
    /// [`SUPERUSER_PASSWORD_ENV`]) and applies the safe-by-default rule to the two
    /// addresses.
    pub fn resolve(
        cli: &Cli,
        file: &FileConfig,
        listen: SocketAddr,
        peer_listen: SocketAddr,
    ) -> Result<AuthConfig, ConfigError> {
        let mode = cli.auth.or(file.auth).unwrap_or_default();
        let insecure_no_auth = cli.insecure_no_auth || file.insecure_no_auth.unwrap_or(false);
        let name = cli
            .auth_superuser
            .clone()
            .or_else(|| file.auth_superuser.clone());
        let password_file = cli
            .auth_superuser_password_file
            .clone()
            .or_else(|| file.auth_superuser_password_file.clone());
        let superuser = match name {
            None => {
                if password_file.is_some() {
                    return Err(invalid(
                        "auth_superuser_password_file",
                        "needs --auth-superuser NAME",
                    ));
                }
                None
            }
            Some(name) => {
                let password = match &password_file {
                    Some(path) => read_password_file(path)?,
                    None => std::env::var(SUPERUSER_PASSWORD_ENV).map_err(|_| {
                        invalid(
                            "auth_superuser",
                            format!(
                                "needs a password: --auth-superuser-password-file FILE or the \
                                 environment variable {SUPERUSER_PASSWORD_ENV}"
                            ),
                        )
                    })?,
                };
                if password.is_empty() {
                    return Err(invalid("auth_superuser", "the password is empty"));
                }
                Some(SuperuserSeed {
                    name,
                    password: Password(password),
                })
            }
        };
        let config = AuthConfig {
            mode,
            insecure_no_auth,
            superuser,
        };
        config.check_exposure(listen, peer_listen)?;
        Ok(config)
    }

    /// The safe-by-default rule: a node without authentication binds only to loopback
    /// addresses, unless `insecure_no_auth`.
    pub fn check_exposure(
        &self,
        listen: SocketAddr,
        peer_listen: SocketAddr,
    ) -> Result<(), ConfigError> {
        if self.mode == AuthMode::Required || self.insecure_no_auth {
            return Ok(());
        }
        for (key, addr) in [("listen", listen), ("peer_listen", peer_listen)] {
            if !addr.ip().is_loopback() {
                return Err(ConfigError::Exposed { key, addr });
            }
        }
        Ok(())
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// The first line of `path`, without its line end.
fn read_password_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: PathBuf::from(path),
        source,
    })?;
    Ok(text.lines().next().unwrap_or("").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use clap::Parser;

    fn resolve(args: &[&str]) -> Result<Config, ConfigError> {
        let mut all = vec!["sibyl"];
        all.extend_from_slice(args);
        Config::resolve(Cli::parse_from(all), FileConfig::default())
    }

    #[test]
    fn auth_loopback_node_runs_without_auth() {
        let c = resolve(&[
            "--listen",
            "127.0.0.3:7400",
            "--peer-listen",
            "127.0.0.3:7401",
        ])
        .expect("loopback is fine");
        assert_eq!(c.auth.mode, AuthMode::Off);
        let c = resolve(&["--listen", "[::1]:7400", "--peer-listen", "[::1]:7401"]);
        assert!(c.is_ok());
    }

    #[test]
    fn auth_exposed_node_without_auth_is_refused() {
        for args in [
            [
                "--listen",
                "0.0.0.0:7400",
                "--peer-listen",
                "127.0.0.1:7401",
            ],
            [
                "--listen",
                "127.0.0.1:7400",
                "--peer-listen",
                "10.0.0.1:7401",
            ],
        ] {
            let e = resolve(&args).expect_err("exposed without auth");
            let text = e.to_string();
            assert!(text.contains("--auth required"), "{text}");
            assert!(text.contains("--insecure-no-auth"), "{text}");
        }
        let ok = resolve(&[
            "--listen",
            "0.0.0.0:7400",
            "--peer-listen",
            "0.0.0.0:7401",
            "--insecure-no-auth",
        ]);
        assert!(ok.is_ok());
        let ok = resolve(&["--listen", "0.0.0.0:7400", "--auth", "required"]);
        assert!(ok.is_ok());
    }

    #[test]
    fn auth_keys_in_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "from-file\n").unwrap();
        let text = format!(
            "listen = \"0.0.0.0:7400\"\nauth = \"required\"\nauth_superuser = \"root\"\n\
             auth_superuser_password_file = {:?}\n",
            pw.to_str().unwrap()
        );
        let file: FileConfig = toml::from_str(&text).unwrap();
        let c = Config::resolve(Cli::parse_from(["sibyl"]), file).unwrap();
        assert_eq!(c.auth.mode, AuthMode::Required);
        assert_eq!(c.auth.superuser.unwrap().password.0, "from-file");
        let open: FileConfig =
            toml::from_str("listen = \"0.0.0.0:7400\"\ninsecure_no_auth = true").unwrap();
        assert!(Config::resolve(Cli::parse_from(["sibyl"]), open).is_ok());
    }

    #[test]
    fn auth_superuser_password_comes_from_its_file_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret-pass\nignored\n").unwrap();
        let c = resolve(&[
            "--auth",
            "required",
            "--auth-superuser",
            "admin",
            "--auth-superuser-password-file",
            path.to_str().unwrap(),
        ])
        .unwrap();
        let seed = c.auth.superuser.clone().unwrap();
        assert_eq!(seed.name, "admin");
        assert_eq!(seed.password.0, "s3cret-pass");
        assert!(!format!("{c:?}").contains("s3cret"));
        std::fs::write(&path, "\n").unwrap();
        let e = resolve(&[
            "--auth-superuser",
            "admin",
            "--auth-superuser-password-file",
            path.to_str().unwrap(),
        ]);
        assert!(e.is_err(), "an empty password is refused");
    }
}
