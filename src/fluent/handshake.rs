//! The Forward protocol's handshake: the server's `HELO`, the client's `PING`, the
//! server's `PONG`.
//!
//! With a shared key, each side proves it knows the key without sending it: the client
//! sends `hex(SHA-512(salt ‖ client hostname ‖ nonce ‖ key))`, the server answers the
//! same with its own hostname. With users, the client also sends
//! `hex(SHA-512(auth salt ‖ username ‖ password))`. The nonce and the auth salt are the
//! server's, fresh per connection, so a recorded `PING` is worth nothing later.

use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::value::{Kind, Reader, write_str};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("the server refused the handshake: {0}")]
    Refused(String),
    #[error("the server's PONG does not prove it knows the shared key")]
    ServerNotProven,
}

/// 16 random bytes from the system's secure generator.
pub fn random16() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // The system generator fails only when the OS has no entropy source at all.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        bytes = fastrand::u128(..).to_le_bytes();
    }
    bytes
}

/// Lowercase hex of SHA-512 over the parts, concatenated.
pub fn digest(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
    for part in parts {
        ctx.update(part);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `given` equals `expected`, in time independent of where they differ.
pub fn same(given: &[u8], expected: &[u8]) -> bool {
    given.ct_eq(expected).into()
}

/// `["HELO", {nonce, auth, keepalive}]`; `auth` is empty when no user must log in.
pub fn helo(nonce: &[u8], auth_salt: &[u8], keepalive: bool) -> Vec<u8> {
    let mut out = vec![0x92];
    write_str(&mut out, b"HELO");
    out.push(0x83);
    write_str(&mut out, b"nonce");
    write_bin(&mut out, nonce);
    write_str(&mut out, b"auth");
    write_bin(&mut out, auth_salt);
    write_str(&mut out, b"keepalive");
    out.push(if keepalive { 0xc3 } else { 0xc2 });
    out
}

fn write_bin(out: &mut Vec<u8>, bytes: &[u8]) {
    let _ = rmp::encode::write_bin_len(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// What a client learns from `HELO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helo {
    pub nonce: Vec<u8>,
    /// Empty when the server asks for no user.
    pub auth_salt: Vec<u8>,
    pub keepalive: bool,
}

fn expect_head(r: &mut Reader<'_>, name: &'static str, len: usize) -> Result<(), HandshakeError> {
    let malformed = HandshakeError::Malformed(name);
    if r.peek().ok() != Some(Kind::Array) || r.array_len().ok() != Some(len) {
        return Err(malformed);
    }
    match r.raw_bytes() {
        Ok(head) if head == name.as_bytes() => Ok(()),
        _ => Err(malformed),
    }
}

fn text<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], HandshakeError> {
    match r.peek() {
        Ok(Kind::Str | Kind::Bin) => r.raw_bytes().map_err(|_| HandshakeError::Malformed(what)),
        _ => Err(HandshakeError::Malformed(what)),
    }
}

pub fn parse_helo(frame: &[u8]) -> Result<Helo, HandshakeError> {
    let malformed = || HandshakeError::Malformed("HELO");
    let mut r = Reader::new(frame, 4, frame.len());
    expect_head(&mut r, "HELO", 2)?;
    let mut helo = Helo {
        nonce: Vec::new(),
        auth_salt: Vec::new(),
        keepalive: true,
    };
    let n = r.map_len().map_err(|_| malformed())?;
    for _ in 0..n {
        let key = text(&mut r, "HELO")?;
        match key {
            b"nonce" => helo.nonce = text(&mut r, "HELO")?.to_vec(),
            b"auth" => helo.auth_salt = text(&mut r, "HELO")?.to_vec(),
            b"keepalive" => {
                helo.keepalive = match r.value() {
                    Ok(vrl::value::Value::Boolean(b)) => b,
                    _ => return Err(malformed()),
                }
            }
            _ => r.skip().map_err(|_| malformed())?,
        }
    }
    if helo.nonce.is_empty() {
        return Err(malformed());
    }
    Ok(helo)
}

/// The client's proof: `["PING", hostname, salt, digest, username, password digest]`.
pub fn ping(
    hostname: &str,
    salt: &[u8],
    helo: &Helo,
    shared_key: &str,
    user: Option<(&str, &str)>,
) -> Vec<u8> {
    let mut out = vec![0x96];
    write_str(&mut out, b"PING");
    write_str(&mut out, hostname.as_bytes());
    write_str(&mut out, salt);
    let proof = digest(&[
        salt,
        hostname.as_bytes(),
        &helo.nonce,
        shared_key.as_bytes(),
    ]);
    write_str(&mut out, proof.as_bytes());
    match user {
        Some((name, password)) if !helo.auth_salt.is_empty() => {
            write_str(&mut out, name.as_bytes());
            let hash = digest(&[&helo.auth_salt, name.as_bytes(), password.as_bytes()]);
            write_str(&mut out, hash.as_bytes());
        }
        _ => {
            write_str(&mut out, b"");
            write_str(&mut out, b"");
        }
    }
    out
}

/// A client's `PING`, read but not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    pub hostname: Vec<u8>,
    pub salt: Vec<u8>,
    pub digest: Vec<u8>,
    pub username: Vec<u8>,
    pub password: Vec<u8>,
}

pub fn parse_ping(frame: &[u8]) -> Result<Ping, HandshakeError> {
    let mut r = Reader::new(frame, 4, frame.len());
    expect_head(&mut r, "PING", 6)?;
    Ok(Ping {
        hostname: text(&mut r, "PING")?.to_vec(),
        salt: text(&mut r, "PING")?.to_vec(),
        digest: text(&mut r, "PING")?.to_vec(),
        username: text(&mut r, "PING")?.to_vec(),
        password: text(&mut r, "PING")?.to_vec(),
    })
}

impl Ping {
    /// Whether the client knows the shared key.
    pub fn proves(&self, nonce: &[u8], shared_key: &str) -> bool {
        let expected = digest(&[&self.salt, &self.hostname, nonce, shared_key.as_bytes()]);
        same(&self.digest, expected.as_bytes())
    }

    /// Whether the user's password digest matches `password` (over the auth salt).
    pub fn logs_in(&self, auth_salt: &[u8], username: &str, password: &str) -> bool {
        let expected = digest(&[auth_salt, username.as_bytes(), password.as_bytes()]);
        // Both checks run whatever the first says.
        same(&self.username, username.as_bytes()) & same(&self.password, expected.as_bytes())
    }
}

/// `["PONG", ok, reason, hostname, digest]`: with `ok`, the server's own proof.
pub fn pong(
    ok: bool,
    reason: &str,
    hostname: &str,
    ping: &Ping,
    nonce: &[u8],
    key: &str,
) -> Vec<u8> {
    if !ok {
        return refusal(reason);
    }
    let mut out = vec![0x95];
    write_str(&mut out, b"PONG");
    out.push(0xc3);
    write_str(&mut out, reason.as_bytes());
    write_str(&mut out, hostname.as_bytes());
    let proof = digest(&[&ping.salt, hostname.as_bytes(), nonce, key.as_bytes()]);
    write_str(&mut out, proof.as_bytes());
    out
}

/// `["PONG", false, reason, "", ""]`: the answer to a `PING` that cannot be read.
pub fn refusal(reason: &str) -> Vec<u8> {
    let mut out = vec![0x95];
    write_str(&mut out, b"PONG");
    out.push(0xc2);
    write_str(&mut out, reason.as_bytes());
    write_str(&mut out, b"");
    write_str(&mut out, b"");
    out
}

/// Checks the server's `PONG`: accepted, and proving the shared key.
pub fn check_pong(
    frame: &[u8],
    salt: &[u8],
    helo: &Helo,
    shared_key: &str,
) -> Result<(), HandshakeError> {
    let malformed = || HandshakeError::Malformed("PONG");
    let mut r = Reader::new(frame, 4, frame.len());
    expect_head(&mut r, "PONG", 5)?;
    let ok = match r.value() {
        Ok(vrl::value::Value::Boolean(b)) => b,
        _ => return Err(malformed()),
    };
    let reason = String::from_utf8_lossy(text(&mut r, "PONG")?).into_owned();
    if !ok {
        return Err(HandshakeError::Refused(crate::text::clip(&reason, 200)));
    }
    let hostname = text(&mut r, "PONG")?;
    let proof = text(&mut r, "PONG")?;
    let expected = digest(&[salt, hostname, &helo.nonce, shared_key.as_bytes()]);
    if !same(proof, expected.as_bytes()) {
        return Err(HandshakeError::ServerNotProven);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_and_a_server_with_the_same_key_agree() {
        let nonce = random16();
        let auth = random16();
        let helo = parse_helo(&helo(&nonce, &auth, true)).expect("helo");
        assert_eq!((helo.nonce.as_slice(), helo.keepalive), (&nonce[..], true));
        let salt = random16();
        let frame = ping("client-1", &salt, &helo, "s3cret", Some(("alice", "pw")));
        let got = parse_ping(&frame).expect("ping");
        assert!(got.proves(&nonce, "s3cret"));
        assert!(!got.proves(&nonce, "other"));
        assert!(
            !got.proves(&random16(), "s3cret"),
            "a replay under another nonce"
        );
        assert!(got.logs_in(&auth, "alice", "pw"));
        assert!(!got.logs_in(&auth, "alice", "wrong"));
        assert!(!got.logs_in(&auth, "bob", "pw"));
        let answer = pong(true, "", "server-1", &got, &nonce, "s3cret");
        assert_eq!(check_pong(&answer, &salt, &helo, "s3cret"), Ok(()));
        assert_eq!(
            check_pong(&answer, &salt, &helo, "other"),
            Err(HandshakeError::ServerNotProven)
        );
        let refused = pong(false, "shared_key mismatch", "", &got, &nonce, "");
        assert_eq!(
            check_pong(&refused, &salt, &helo, "s3cret"),
            Err(HandshakeError::Refused("shared_key mismatch".into()))
        );
    }

    #[test]
    fn the_digest_is_sha512_hex_of_the_concatenation() {
        // SHA-512("abc"), from FIPS 180-2's examples.
        assert!(digest(&[b"a", b"b", b"c"]).starts_with("ddaf35a193617aba"));
        assert_eq!(digest(&[b"abc"]).len(), 128);
        assert!(parse_ping(&[0x91, 0xa4, b'P', b'I', b'N', b'G']).is_err());
        assert!(parse_helo(&[0xc0]).is_err());
    }
}
