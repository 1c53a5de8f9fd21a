//! Outbound TLS, end to end: a test CA (made here with OpenSSL), an https server that
//! publishes a trusted issuer's JWKS, and an SMTP receiver speaking implicit TLS or STARTTLS,
//! all on 127.0.0.1 with certificates for `localhost`. Latchkey trusts the CA only through
//! `outbound.extra_ca_file`: without it every connection fails verification (there is no
//! option that turns verification off).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey::clock::Clock as _;
use latchkey::testdb::TestDb;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};
use serde_json::{Value, json};

use crate::harness::{Env, Server};

/// A CA and a `localhost` server certificate it issued.
pub struct TestCa {
    pub ca_pem: String,
    pub acceptor: Arc<SslAcceptor>,
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn name(cn: &str) -> openssl::x509::X509Name {
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    n.build()
}

fn serial() -> openssl::asn1::Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    bn.to_asn1_integer().unwrap()
}

impl TestCa {
    pub fn new() -> Self {
        let ca_key = key();
        let mut ca = X509::builder().unwrap();
        ca.set_version(2).unwrap();
        ca.set_serial_number(&serial()).unwrap();
        ca.set_subject_name(&name("Latchkey test CA")).unwrap();
        ca.set_issuer_name(&name("Latchkey test CA")).unwrap();
        ca.set_pubkey(&ca_key).unwrap();
        ca.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        ca.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        ca.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        ca.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
        ca.sign(&ca_key, MessageDigest::sha256()).unwrap();
        let ca = ca.build();

        let leaf_key = key();
        let mut leaf = X509::builder().unwrap();
        leaf.set_version(2).unwrap();
        leaf.set_serial_number(&serial()).unwrap();
        leaf.set_subject_name(&name("localhost")).unwrap();
        leaf.set_issuer_name(ca.subject_name()).unwrap();
        leaf.set_pubkey(&leaf_key).unwrap();
        leaf.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        leaf.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&leaf.x509v3_context(Some(&ca), None))
            .unwrap();
        leaf.append_extension(san).unwrap();
        leaf.sign(&ca_key, MessageDigest::sha256()).unwrap();
        let leaf = leaf.build();

        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        acceptor.set_private_key(&leaf_key).unwrap();
        acceptor.set_certificate(&leaf).unwrap();
        acceptor.add_extra_chain_cert(ca.clone()).unwrap();
        acceptor.check_private_key().unwrap();
        Self {
            ca_pem: String::from_utf8(ca.to_pem().unwrap()).unwrap(),
            acceptor: Arc::new(acceptor.build()),
        }
    }
}

/// Serves `body` (read at each request) as JSON over https on 127.0.0.1; counts the
/// requests that completed a TLS handshake. Returns the port.
fn serve_https(ca: &TestCa, body: Arc<Mutex<String>>, served: Arc<Mutex<u32>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = ca.acceptor.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(mut tls) = acceptor.accept(tcp) else {
                continue;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            *served.lock().unwrap() += 1;
            let body = body.lock().unwrap().clone();
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.shutdown();
        }
    });
    port
}

/// How the SMTP receiver starts TLS.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// TLS from the first byte (port 465 style).
    Implicit,
    /// Plain greeting, then STARTTLS (port 587 style); nothing is accepted before it.
    Starttls,
}

/// A one-message-at-a-time SMTP receiver on 127.0.0.1 that accepts mail only over TLS; the
/// messages it received (DATA) go to the returned list. Returns the port.
pub fn smtp_receiver(ca: &TestCa, mode: SmtpTls) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let (acceptor, out) = (ca.acceptor.clone(), received.clone());
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = session(&acceptor, tcp, mode, &out);
        }
    });
    (port, received)
}

fn session(
    acceptor: &SslAcceptor,
    mut tcp: TcpStream,
    mode: SmtpTls,
    out: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    if mode == SmtpTls::Starttls {
        // The plain part: greeting, EHLO offering STARTTLS, and STARTTLS itself.
        tcp.write_all(b"220 localhost ESMTP test\r\n")?;
        let mut reader = BufReader::new(tcp.try_clone()?);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end().to_ascii_uppercase();
            if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                tcp.write_all(b"250-localhost\r\n250 STARTTLS\r\n")?;
            } else if cmd == "STARTTLS" {
                tcp.write_all(b"220 go ahead\r\n")?;
                break;
            } else if cmd == "QUIT" {
                tcp.write_all(b"221 bye\r\n")?;
                return Ok(());
            } else {
                tcp.write_all(b"530 must issue STARTTLS first\r\n")?;
            }
        }
    }
    let tls = acceptor
        .accept(tcp)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tls = Arc::new(Mutex::new(tls));
    let write = |s: &[u8]| tls.lock().unwrap().write_all(s);
    let read_line = || -> std::io::Result<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            let n = tls.lock().unwrap().read(&mut byte)?;
            if n == 0 {
                break;
            }
            line.push(byte[0]);
            if byte[0] == b'\n' {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    };
    if mode == SmtpTls::Implicit {
        write(b"220 localhost ESMTP test\r\n")?;
    }
    loop {
        let line = read_line()?;
        if line.is_empty() {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
            write(b"250 localhost\r\n")?;
        } else if cmd.starts_with("MAIL FROM") || cmd.starts_with("RCPT TO") || cmd == "RSET" {
            write(b"250 ok\r\n")?;
        } else if cmd == "DATA" {
            write(b"354 go on\r\n")?;
            let mut message = String::new();
            loop {
                let l = read_line()?;
                if l.is_empty() || l == ".\r\n" {
                    break;
                }
                message.push_str(&l);
            }
            out.lock().unwrap().push(message);
            write(b"250 queued\r\n")?;
        } else if cmd == "QUIT" {
            write(b"221 bye\r\n")?;
            return Ok(());
        } else {
            write(b"502 not here\r\n")?;
        }
    }
}

/// Writes the CA to a file in the test's data directory; its path for `extra_ca_file`.
fn ca_file(env: &Env, ca: &TestCa) -> String {
    let path = env.data_dir().join("test-ca.pem");
    std::fs::create_dir_all(env.data_dir()).unwrap();
    std::fs::write(&path, &ca.ca_pem).unwrap();
    path.display().to_string()
}

/// A trusted issuer whose keys are published at an https `jwks_uri` on a private CA: fetched
/// only when the CA is configured as an extra trust anchor, and fetched again when a token
/// names a key the cached set does not hold (after a rotation).
#[tokio::test]
async fn an_https_jwks_uri_on_a_private_ca_is_fetched_and_refetched_for_a_new_kid() {
    use crate::client_auth::client_key;
    let ca = TestCa::new();
    const PARTNER: &str = "https://login.partner.example";
    for trusted in [false, true] {
        for db in TestDb::all().await {
            let first = client_key();
            let second = client_key();
            let jwks = Arc::new(Mutex::new(first.public_jwks.to_string()));
            let served = Arc::new(Mutex::new(0));
            let port = serve_https(&ca, jwks.clone(), served.clone());
            let env = Env::new(db, "");
            let svc = crate::exchange::service(&env, "Service A", &["orders:read"]).await;
            let mut toml = std::fs::read_to_string(&env.config_path).unwrap();
            if trusted {
                toml.push_str(&format!(
                    "[outbound]\nextra_ca_file = \"{}\"\n",
                    ca_file(&env, &ca)
                ));
            }
            // https, on loopback: the danger option lifts the address rule only; TLS is
            // verified all the same.
            toml.push_str(&format!(
                "[[exchange.trusted_issuers]]\nissuer = \"{PARTNER}\"\n\
                 jwks_uri = \"https://localhost:{port}/jwks\"\n\
                 danger_allow_insecure_jwks_uri = true\nscopes = [\"orders:read\"]\n\
                 clients = [\"{}\"]\n",
                svc.id
            ));
            std::fs::write(&env.config_path, toml).unwrap();
            let server = Server::start(env.config()).await;
            let issuer = env.config().issuer.to_string();
            let own = crate::exchange::own_token(&server, &svc).await;
            let sign = |key: &crate::client_auth::ClientKey| {
                let now = server.clock.now();
                let claims = json!({
                    "iss": PARTNER, "aud": issuer, "iat": now, "exp": now + 300,
                    "sub": "p-1", "email": "partner-user@example.org", "email_verified": true,
                });
                key.ring
                    .sign(
                        latchkey_jwks::Alg::Es256,
                        "at+jwt",
                        claims.as_object().unwrap(),
                    )
                    .unwrap()
            };
            let swap = |jwt: String| {
                let (server, svc, own) = (&server, &svc, own.clone());
                async move {
                    crate::exchange::token(
                        server,
                        svc,
                        &[
                            ("grant_type", crate::exchange::EXCHANGE),
                            ("subject_token", jwt.as_str()),
                            ("subject_token_type", crate::exchange::JWT),
                            ("actor_token", own.as_str()),
                            ("actor_token_type", crate::exchange::AT),
                        ],
                    )
                    .await
                }
            };
            let before = *served.lock().unwrap();
            let (status, body) = swap(sign(&first)).await;
            if !trusted {
                assert_eq!(status, 400, "{body}");
                assert_eq!(body["error"], "invalid_request");
                assert_eq!(
                    *served.lock().unwrap(),
                    before,
                    "without the CA no TLS handshake completes"
                );
                server.stop().await;
                continue;
            }
            assert_eq!(status, 200, "{body}");
            assert_eq!(*served.lock().unwrap(), before + 1, "fetched over https");
            // The issuer rotates: the new key's tokens name a kid the cache lacks, and the
            // keys are fetched again (at most once a minute).
            *jwks.lock().unwrap() = second.public_jwks.to_string();
            server.clock.advance(61);
            let (status, body): (u16, Value) = swap(sign(&second)).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                *served.lock().unwrap(),
                before + 2,
                "refetched for the new kid"
            );
            server.stop().await;
        }
    }
}

/// Mail over SMTP with implicit TLS and with STARTTLS, to a relay whose certificate a private
/// CA issued: delivered when the CA is an extra trust anchor; never delivered (nor sent in
/// clear) without it.
#[tokio::test]
async fn smtp_over_tls_and_starttls_is_verified_against_the_extra_ca() {
    let ca = TestCa::new();
    for (mode, security) in [(SmtpTls::Implicit, "tls"), (SmtpTls::Starttls, "starttls")] {
        for trusted in [true, false] {
            let (port, received) = smtp_receiver(&ca, mode);
            let env = Env::new(TestDb::sqlite(), "");
            let f = crate::flow::fixture(&env, &[]).await;
            let mut toml = std::fs::read_to_string(&env.config_path).unwrap();
            if trusted {
                toml.push_str(&format!(
                    "[outbound]\nextra_ca_file = \"{}\"\n",
                    ca_file(&env, &ca)
                ));
            }
            toml.push_str(&format!(
                "[mail]\ntransport = \"smtp\"\nfrom = \"Latchkey <id@example.com>\"\n\
                 [mail.smtp]\nhost = \"localhost\"\nport = {port}\nsecurity = \"{security}\"\n\
                 timeout = \"5s\"\n"
            ));
            std::fs::write(&env.config_path, toml).unwrap();
            let server = Server::start(env.config()).await;
            let r = crate::email::post_form(
                &crate::flow::browser(),
                &server,
                "/reset",
                "/reset",
                &[("email", f.email.as_str())],
            )
            .await;
            assert_eq!(r.status(), 200);
            let mut got = Vec::new();
            // Delivery starts right after the answer; a refused handshake fails at once.
            for _ in 0..if trusted { 50 } else { 20 } {
                got = received.lock().unwrap().clone();
                if !got.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if trusted {
                assert_eq!(got.len(), 1, "{security}: the reset mail is delivered");
                assert!(got[0].contains("/reset/confirm?token="), "{}", got[0]);
            } else {
                assert!(
                    got.is_empty(),
                    "{security}: no delivery to an unverified relay"
                );
            }
            server.stop().await;
        }
    }
}
