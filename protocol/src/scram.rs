//! SCRAM-SHA-256 (RFC 5802 with the hash of RFC 7677): the password verifier a server
//! stores, and the two ends of the exchange the AUTH_START / AUTH_FINISH messages carry
//! (`doc/wire_format.md`, section 6, "Authentication").
//!
//! The exchange, without channel binding (GS2 header `n,,`):
//! ```text
//! client-first  = "n,,n=" user ",r=" client-nonce
//! server-first  = "r=" client-nonce server-nonce ",s=" base64(salt) ",i=" iterations
//! client-final  = "c=biws,r=" nonce ",p=" base64(ClientKey XOR HMAC(StoredKey, AuthMessage))
//! server-final  = "v=" base64(HMAC(ServerKey, AuthMessage))
//! AuthMessage   = client-first-bare "," server-first "," client-final-without-proof
//! ```
//! with `SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations)`,
//! `ClientKey = HMAC(SaltedPassword, "Client Key")`, `StoredKey = SHA-256(ClientKey)`,
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`. The server keeps only
//! [`ScramVerifier`] (salt, iterations, StoredKey, ServerKey): it can check a proof but
//! cannot log in as the user, and the password never crosses the wire.
//!
//! Passwords are used as their UTF-8 bytes (no SASLprep). User names are escaped as the
//! RFC says (`,` as `=2C`, `=` as `=3D`).
//!
//! An unknown user gets a server-first built from [`ScramVerifier::mock`]: a salt derived
//! from the user name and a server secret (stable across attempts, so the answer does not
//! reveal that the user is missing) and keys no proof matches.
//!
//! The primitives are the RustCrypto crates (`sha2`, `hmac`, `pbkdf2`); comparisons of
//! secrets are constant-time. Pure functions and values; no I/O. Nothing panics on what a
//! peer sends: every malformed message is a [`ScramError`].

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The mechanism name AUTH_START carries.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// PBKDF2 iterations of a new verifier (RFC 7677's minimum, PostgreSQL's default).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Fewest iterations a server accepts in a stored verifier (RFC 7677, section 4).
pub const MIN_ITERATIONS: u32 = 4096;
/// Most iterations a client accepts from a server (a server cannot make a client burn
/// minutes of CPU: 2^20 is about a second and a half at 4096 per 6 ms).
pub const MAX_ITERATIONS: u32 = 1 << 20;
/// Bytes of salt of a new verifier.
pub const SALT_LEN: usize = 16;
/// Fewest bytes of salt a stored verifier may have.
pub const MIN_SALT_LEN: usize = 8;
/// Most bytes of salt a stored verifier may have.
pub const MAX_SALT_LEN: usize = 64;
/// Bytes of a SHA-256 key (StoredKey, ServerKey, proofs, signatures).
pub const KEY_LEN: usize = 32;
/// Random bytes in a nonce (base64: 24 printable characters).
const NONCE_BYTES: usize = 18;
/// Longest nonce accepted from the other side.
const MAX_NONCE_LEN: usize = 256;
/// Longest SCRAM message accepted (far above any honest one).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// base64 of the GS2 header `n,,`: the channel-binding field of client-final.
const GS2_HEADER_B64: &str = "biws";

/// Why a SCRAM message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramError {
    /// The message does not follow the grammar.
    #[error("malformed SCRAM {what}: {reason}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// The client asked for channel binding, which this protocol does not offer.
    #[error("SCRAM channel binding is not supported")]
    ChannelBinding,
    /// The server's nonce does not extend the client's, or client-final's is not it.
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,
    /// The server asked for an iteration count outside what this side accepts.
    #[error("SCRAM iteration count {iterations} outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations {
        /// The count asked for.
        iterations: u32,
    },
    /// The client's proof is wrong (wrong password, or no such user).
    #[error("SCRAM proof does not match")]
    ProofMismatch,
    /// The server's signature is wrong: it does not know the password.
    #[error("SCRAM server signature does not match: the server is not who it says")]
    ServerSignature,
    /// The server answered with an error (`e=`).
    #[error("SCRAM server error: {0}")]
    Server(String),
}

/// What a server stores per user: enough to verify a proof, not to log in.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ScramVerifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// SHA-256(ClientKey).
    pub stored_key: [u8; KEY_LEN],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; KEY_LEN],
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; KEY_LEN] {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; KEY_LEN],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> [u8; KEY_LEN] {
    Sha256::digest(data).into()
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; KEY_LEN] {
    pbkdf2::pbkdf2_hmac_array::<Sha256, KEY_LEN>(password.as_bytes(), salt, iterations)
}

/// Constant-time equality of two byte strings of the same length.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut v);
    v
}

/// A fresh nonce: random bytes in base64 (printable, no `,`).
pub fn new_nonce() -> String {
    BASE64.encode(random_bytes(NONCE_BYTES))
}

impl ScramVerifier {
    /// The verifier of `password` with `salt` and `iterations` (slow: PBKDF2).
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> ScramVerifier {
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// The verifier of `password` with a fresh random salt and [`DEFAULT_ITERATIONS`].
    pub fn generate(password: &str) -> ScramVerifier {
        ScramVerifier::derive(password, &random_bytes(SALT_LEN), DEFAULT_ITERATIONS)
    }

    /// A verifier for a user that does not exist: its salt is derived from `user` and
    /// `secret` (the same on every attempt), its keys match no proof.
    pub fn mock(user: &str, secret: &[u8]) -> ScramVerifier {
        let mut material = b"sibyl mock salt ".to_vec();
        material.extend_from_slice(user.as_bytes());
        let salt = hmac(secret, &material);
        let mut key_material = b"sibyl mock key ".to_vec();
        key_material.extend_from_slice(user.as_bytes());
        ScramVerifier {
            iterations: DEFAULT_ITERATIONS,
            salt: salt.get(..SALT_LEN).unwrap_or(&salt).to_vec(),
            stored_key: hmac(secret, &key_material),
            server_key: hmac(secret, b"sibyl mock server key"),
        }
    }

    /// Why a verifier (e.g. one a client sent in CREATE_USER) is unfit to store.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.iterations < MIN_ITERATIONS {
            return Err("iterations must be at least 4096");
        }
        if self.iterations > MAX_ITERATIONS {
            return Err("iterations must be at most 1048576");
        }
        if self.salt.len() < MIN_SALT_LEN || self.salt.len() > MAX_SALT_LEN {
            return Err("salt must be 8..=64 bytes");
        }
        Ok(())
    }
}

/// Escapes a user name for `n=` (RFC 5802 `saslname`).
fn escape_user(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// Unescapes a `saslname`; `=` followed by anything but `2C` / `3D` is an error.
fn unescape_user(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(rest.get(..at).unwrap_or(""));
        let tail = rest.get(at..).unwrap_or("");
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return Err(malformed("client-first", "bad escape in the user name"));
        }
        rest = tail.get(3..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

fn malformed(what: &'static str, reason: &'static str) -> ScramError {
    ScramError::Malformed { what, reason }
}

/// The value of attribute `key` (`k=value`) at the front of `part`.
fn attribute<'a>(
    part: Option<&'a str>,
    key: char,
    what: &'static str,
) -> Result<&'a str, ScramError> {
    let part = part.ok_or(malformed(what, "an attribute is missing"))?;
    let mut chars = part.chars();
    if chars.next() != Some(key) || chars.next() != Some('=') {
        return Err(malformed(what, "an attribute is missing or out of order"));
    }
    Ok(part.get(2..).unwrap_or(""))
}

fn check_len(message: &str, what: &'static str) -> Result<(), ScramError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(malformed(what, "too long"));
    }
    Ok(())
}

fn check_nonce(nonce: &str, what: &'static str) -> Result<(), ScramError> {
    if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
        return Err(malformed(what, "bad nonce length"));
    }
    if !nonce
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(malformed(what, "nonce must be printable ASCII without ','"));
    }
    Ok(())
}

fn decode_key(text: &str, what: &'static str) -> Result<[u8; KEY_LEN], ScramError> {
    let bytes = BASE64
        .decode(text)
        .map_err(|_| malformed(what, "invalid base64"))?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| malformed(what, "wrong key length"))
}

/// The client's side of one exchange.
#[derive(Debug)]
pub struct ScramClient {
    user: String,
    password: String,
    nonce: String,
    /// client-first-bare, kept for the AuthMessage.
    first_bare: String,
    /// The ServerSignature expected in server-final, once client-final is built.
    expected_server_signature: Option<[u8; KEY_LEN]>,
}

impl ScramClient {
    /// Starts an exchange for `user` with a fresh nonce.
    pub fn new(user: &str, password: &str) -> ScramClient {
        ScramClient::with_nonce(user, password, &new_nonce())
    }

    /// Starts an exchange with a given nonce (test vectors; use [`ScramClient::new`]).
    pub fn with_nonce(user: &str, password: &str, nonce: &str) -> ScramClient {
        let first_bare = format!("n={},r={nonce}", escape_user(user));
        ScramClient {
            user: user.to_owned(),
            password: password.to_owned(),
            nonce: nonce.to_owned(),
            first_bare,
            expected_server_signature: None,
        }
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// client-first-message.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// Reads server-first and returns client-final (runs PBKDF2: slow by design).
    pub fn client_final(&mut self, server_first: &str) -> Result<String, ScramError> {
        const WHAT: &str = "server-first";
        check_len(server_first, WHAT)?;
        if let Some(e) = server_first.strip_prefix("e=") {
            return Err(ScramError::Server(e.to_owned()));
        }
        let mut parts = server_first.split(',');
        let nonce = attribute(parts.next(), 'r', WHAT)?;
        let salt = attribute(parts.next(), 's', WHAT)?;
        let iterations = attribute(parts.next(), 'i', WHAT)?;
        check_nonce(nonce, WHAT)?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = BASE64
            .decode(salt)
            .map_err(|_| malformed(WHAT, "invalid base64 salt"))?;
        if salt.is_empty() || salt.len() > MAX_SALT_LEN {
            return Err(malformed(WHAT, "bad salt length"));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| malformed(WHAT, "iteration count is not a number"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations { iterations });
        }
        let salted = salted_password(&self.password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = sha256(&client_key);
        let without_proof = format!("c={GS2_HEADER_B64},r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let mut proof = client_key;
        for (p, s) in proof.iter_mut().zip(client_signature) {
            *p ^= s;
        }
        let server_key = hmac(&salted, b"Server Key");
        self.expected_server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)))
    }

    /// Checks server-final: the server proved it holds this user's verifier.
    pub fn verify_server_final(&self, server_final: &str) -> Result<(), ScramError> {
        const WHAT: &str = "server-final";
        check_len(server_final, WHAT)?;
        if let Some(e) = server_final.strip_prefix("e=") {
            return Err(ScramError::Server(e.to_owned()));
        }
        let value = attribute(server_final.split(',').next(), 'v', WHAT)?;
        let got = decode_key(value, WHAT)?;
        match &self.expected_server_signature {
            Some(expected) if ct_eq(expected, &got) => Ok(()),
            _ => Err(ScramError::ServerSignature),
        }
    }
}

/// client-first as the server reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user name (unescaped).
    pub user: String,
    /// The client's nonce.
    pub nonce: String,
    /// client-first-bare, for the AuthMessage.
    pub bare: String,
}

impl ClientFirst {
    /// Parses client-first-message. Channel binding (`p=` or `y` GS2 flags) and
    /// authorization identities (`a=`) are refused; extensions are refused.
    pub fn parse(message: &str) -> Result<ClientFirst, ScramError> {
        const WHAT: &str = "client-first";
        check_len(message, WHAT)?;
        let bare = if let Some(rest) = message.strip_prefix("n,,") {
            rest
        } else if message.starts_with("y,") || message.starts_with("p=") {
            return Err(ScramError::ChannelBinding);
        } else {
            return Err(malformed(WHAT, "GS2 header must be \"n,,\""));
        };
        let mut parts = bare.split(',');
        let user = unescape_user(attribute(parts.next(), 'n', WHAT)?)?;
        let nonce = attribute(parts.next(), 'r', WHAT)?;
        if parts.next().is_some() {
            return Err(malformed(WHAT, "extensions are not supported"));
        }
        if user.is_empty() {
            return Err(malformed(WHAT, "empty user name"));
        }
        check_nonce(nonce, WHAT)?;
        Ok(ClientFirst {
            user,
            nonce: nonce.to_owned(),
            bare: bare.to_owned(),
        })
    }
}

/// The server's side of one exchange, between server-first and client-final.
#[derive(Debug)]
pub struct ScramServer {
    first: ClientFirst,
    verifier: ScramVerifier,
    nonce: String,
    server_first: String,
}

impl ScramServer {
    /// Answers `first` with a fresh server nonce; `verifier` is the user's (or
    /// [`ScramVerifier::mock`] for an unknown user).
    pub fn new(first: ClientFirst, verifier: ScramVerifier) -> ScramServer {
        ScramServer::with_nonce(first, verifier, &new_nonce())
    }

    /// [`ScramServer::new`] with a given server nonce (test vectors).
    pub fn with_nonce(
        first: ClientFirst,
        verifier: ScramVerifier,
        server_nonce: &str,
    ) -> ScramServer {
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&verifier.salt),
            verifier.iterations
        );
        ScramServer {
            first,
            verifier,
            nonce,
            server_first,
        }
    }

    /// The user name the client gave.
    pub fn user(&self) -> &str {
        &self.first.user
    }

    /// The verifier the exchange runs against.
    pub fn verifier(&self) -> &ScramVerifier {
        &self.verifier
    }

    /// server-first-message.
    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    /// Checks client-final; on success returns server-final.
    pub fn finish(&self, client_final: &str) -> Result<String, ScramError> {
        const WHAT: &str = "client-final";
        check_len(client_final, WHAT)?;
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or(malformed(WHAT, "no proof"))?;
        let mut parts = without_proof.split(',');
        let binding = attribute(parts.next(), 'c', WHAT)?;
        let nonce = attribute(parts.next(), 'r', WHAT)?;
        if parts.next().is_some() {
            return Err(malformed(WHAT, "extensions are not supported"));
        }
        if binding != GS2_HEADER_B64 {
            return Err(ScramError::ChannelBinding);
        }
        if !ct_eq(nonce.as_bytes(), self.nonce.as_bytes()) {
            return Err(ScramError::NonceMismatch);
        }
        let proof = decode_key(proof, WHAT)?;
        let auth_message = format!("{},{},{without_proof}", self.first.bare, self.server_first);
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(client_signature) {
            *k ^= s;
        }
        if !ct_eq(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::ProofMismatch);
        }
        let signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677, section 3.
    const USER: &str = "user";
    const PASSWORD: &str = "pencil";
    const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_verifier() -> ScramVerifier {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        ScramVerifier::derive(PASSWORD, &salt, 4096)
    }

    #[test]
    fn scram_client_matches_rfc7677_vector() {
        let mut client = ScramClient::with_nonce(USER, PASSWORD, CLIENT_NONCE);
        assert_eq!(client.client_first(), CLIENT_FIRST);
        assert_eq!(client.client_final(SERVER_FIRST).unwrap(), CLIENT_FINAL);
        client.verify_server_final(SERVER_FINAL).unwrap();
    }

    #[test]
    fn scram_server_matches_rfc7677_vector() {
        let first = ClientFirst::parse(CLIENT_FIRST).unwrap();
        assert_eq!(first.user, USER);
        let server = ScramServer::with_nonce(first, rfc_verifier(), SERVER_NONCE);
        assert_eq!(server.server_first(), SERVER_FIRST);
        assert_eq!(server.finish(CLIENT_FINAL).unwrap(), SERVER_FINAL);
    }

    #[test]
    fn scram_wrong_password_and_mock_user_fail_alike() {
        let exchange = |password: &str, verifier: ScramVerifier| {
            let mut client = ScramClient::new(USER, password);
            let first = ClientFirst::parse(&client.client_first()).unwrap();
            let server = ScramServer::new(first, verifier);
            let last = client.client_final(server.server_first()).unwrap();
            server.finish(&last)
        };
        assert!(exchange(PASSWORD, rfc_verifier()).is_ok());
        assert_eq!(
            exchange("pencil2", rfc_verifier()),
            Err(ScramError::ProofMismatch)
        );
        let mock = ScramVerifier::mock(USER, b"secret");
        assert_eq!(
            mock,
            ScramVerifier::mock(USER, b"secret"),
            "stable per user"
        );
        assert_eq!(exchange(PASSWORD, mock), Err(ScramError::ProofMismatch));
    }

    #[test]
    fn scram_client_refuses_a_forged_server_signature() {
        let mut client = ScramClient::with_nonce(USER, PASSWORD, CLIENT_NONCE);
        client.client_final(SERVER_FIRST).unwrap();
        let forged = format!("v={}", BASE64.encode([7u8; KEY_LEN]));
        assert_eq!(
            client.verify_server_final(&forged),
            Err(ScramError::ServerSignature)
        );
    }

    #[test]
    fn scram_malformed_messages_are_errors_not_panics() {
        for bad in [
            "",
            "n,,",
            "n,,n=",
            "n,,r=x,n=u",
            "y,,n=u,r=x",
            "p=tls,,n=u,r=x",
            "n,,n=u=,r=x",
            "n,,n=u,r=a,b",
            "n,,n=u,r=a b",
            "n,,n=,r=x",
        ] {
            assert!(ClientFirst::parse(bad).is_err(), "{bad:?}");
        }
        let first = ClientFirst::parse("n,,n=a=2Cb=3Dc,r=abc").unwrap();
        assert_eq!(first.user, "a,b=c");
        let server = ScramServer::new(first, rfc_verifier());
        for bad in [
            "",
            "c=biws",
            "c=biws,r=x,p=",
            "c=eSws,r=x,p=AA==",
            "p=,c=biws",
        ] {
            assert!(server.finish(bad).is_err(), "{bad:?}");
        }
        let mut client = ScramClient::with_nonce(USER, PASSWORD, CLIENT_NONCE);
        for bad in [
            "r=other,s=AAAA,i=4096",
            "r=rOprNGfwEbeRWgbNEkqO,s=AAAA,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOx,s=AAAA,i=1",
            "r=rOprNGfwEbeRWgbNEkqOx,s=!!,i=4096",
            "e=other-error",
        ] {
            assert!(client.client_final(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scram_verifier_check_bounds() {
        assert!(rfc_verifier().check().is_ok());
        let mut weak = rfc_verifier();
        weak.iterations = 1;
        assert!(weak.check().is_err());
        let mut short = rfc_verifier();
        short.salt = vec![1];
        assert!(short.check().is_err());
    }
}
