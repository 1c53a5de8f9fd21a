//! Delivery over SMTP (`mail.transport = "smtp"`): lettre speaks to an SMTP receiver on
//! loopback, authenticates with the configured username and password file, and hands over
//! the reset mail. The receiver here is a minimal SMTP server written for the test (EHLO,
//! AUTH PLAIN, MAIL, RCPT, DATA, QUIT), which records the conversation.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use latchkey::testdb::TestDb;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::flow::{browser, fixture, input_value};
use crate::harness::{Env, Server};

#[derive(Default)]
struct Received {
    auth: Option<String>,
    from: String,
    to: Vec<String>,
    data: String,
}

/// Accepts SMTP connections on loopback and records each message; returns its port.
async fn smtp_receiver(received: Arc<Mutex<Vec<Received>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let received = received.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let mut msg = Received::default();
                write.write_all(b"220 test ESMTP\r\n").await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-test\r\n250 AUTH PLAIN\r\n"
                    } else if upper.starts_with("AUTH PLAIN") {
                        msg.auth = line.split_whitespace().nth(2).map(str::to_owned);
                        b"235 2.7.0 accepted\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        msg.from = line[10..].to_owned();
                        b"250 ok\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        msg.to.push(line[8..].to_owned());
                        b"250 ok\r\n"
                    } else if upper == "DATA" {
                        write.write_all(b"354 go ahead\r\n").await.unwrap();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            msg.data.push_str(&l);
                            msg.data.push('\n');
                        }
                        received.lock().unwrap().push(std::mem::take(&mut msg));
                        b"250 queued\r\n"
                    } else if upper == "QUIT" {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn reset_mail_goes_out_over_smtp_with_auth() {
    for db in TestDb::all().await {
        let received = Arc::new(Mutex::new(Vec::new()));
        let port = smtp_receiver(received.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("smtp-password");
        std::fs::write(&password_file, "s3cret-relay\n").unwrap();
        let env = Env::new(
            db,
            &format!(
                "[mail]\ntransport = \"smtp\"\nfrom = \"Accounts <accounts@example.com>\"\n\
                 [mail.smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n\
                 username = \"relay-user\"\npassword_file = {:?}\n",
                password_file.display().to_string()
            ),
        );
        let f = fixture(&env, &[]).await;
        let server = Server::start(env.config()).await;
        let b = browser();
        let page = b
            .get(server.url("/reset"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = input_value(&page, "csrf_token").unwrap();
        let r = b
            .post(server.url("/reset"))
            .form(&[("csrf_token", csrf.as_str()), ("email", f.email.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut message = None;
        for _ in 0..100 {
            if let Some(m) = received.lock().unwrap().pop() {
                message = Some(m);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let m = message.expect("the mail reached the SMTP server");
        let auth = base64::engine::general_purpose::STANDARD
            .decode(m.auth.expect("AUTH PLAIN was used"))
            .unwrap();
        assert_eq!(auth, b"\0relay-user\0s3cret-relay");
        assert_eq!(m.from, "<accounts@example.com>");
        assert_eq!(m.to, vec!["<ada@example.com>".to_owned()]);
        assert!(m.data.contains("Subject: Reset your Latchkey password"));
        assert!(m.data.contains("/reset/confirm?token="));
        assert!(
            !env.data_dir().join("outbox").exists(),
            "nothing goes to the outbox with SMTP"
        );
        server.stop().await;
    }
}
