//! A tiny in-process SMTP server for tests (ours and the black-box crate's): it listens on
//! 127.0.0.1 at a free port, speaks just enough SMTP for lettre (EHLO/HELO, AUTH PLAIN/LOGIN
//! accepted blindly, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no STARTTLS), and records every
//! message with its text body decoded. It is a test double: it never relays mail, keeps
//! everything in memory, and must not be used outside tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bigger messages are refused; nothing we send comes close.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
const MAX_LINE_BYTES: usize = 64 * 1024;

/// One message as the sink received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), without angle brackets.
    pub to: Vec<String>,
    /// The user name of a preceding `AUTH`, if any.
    pub auth_user: Option<String>,
    /// Everything between `DATA` and the final dot, dot-stuffing removed.
    pub data: String,
    /// The decoded `Subject` header.
    pub subject: String,
    /// The body with its transfer encoding (quoted-printable, base64) undone.
    pub text: String,
}

impl Received {
    /// A header's value (first occurrence, unfolded, undecoded).
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = split_message(&self.data);
        headers(head).into_iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }
}

struct Shared {
    messages: Mutex<Vec<Received>>,
    /// Which of `messages` `wait_for` has handed out already.
    taken: Mutex<Vec<bool>>,
    arrived: watch::Sender<usize>,
}

/// The running sink; it stops when dropped.
pub struct SmtpSink {
    port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Binds 127.0.0.1:0 and starts accepting connections.
    #[expect(clippy::expect_used, reason = "a sink that cannot listen fails the test that started it, with the cause")]
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("SMTP sink: bind 127.0.0.1:0");
        let port = listener.local_addr().expect("SMTP sink: local address").port();
        let shared = Arc::new(Shared {
            messages: Mutex::new(Vec::new()),
            taken: Mutex::new(Vec::new()),
            arrived: watch::Sender::new(0),
        });
        let accept_shared = shared.clone();
        let task = tokio::spawn(async move {
            let mut sessions = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors, say: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let shared = accept_shared.clone();
                // Owned by the set, so aborting the accept loop ends every session too.
                sessions.spawn(async move {
                    let _ = session(stream, &shared).await;
                });
                while sessions.try_join_next().is_some() {}
            }
        });
        SmtpSink { port, shared, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `courier.smtp.connection_uri` that reaches this sink in plain text.
    pub fn connection_uri(&self) -> String {
        format!("smtp://127.0.0.1:{}/?disable_starttls=true", self.port)
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Received> {
        lock(&self.shared.messages).clone()
    }

    /// The oldest message to `recipient` (case-insensitive) not yet returned by `wait_for`,
    /// waiting up to `timeout` for one to arrive. Each message is handed out once, so a test
    /// that causes two e-mails gets them in order.
    pub async fn wait_for(&self, recipient: &str, timeout: Duration) -> Option<Received> {
        let mut rx = self.shared.arrived.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if let Some(found) = self.take(recipient) {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.take(recipient),
            }
        }
    }

    fn take(&self, recipient: &str) -> Option<Received> {
        let messages = lock(&self.shared.messages);
        let mut taken = lock(&self.shared.taken);
        let index = messages
            .iter()
            .enumerate()
            .position(|(i, m)| !taken[i] && m.to.iter().any(|to| to.eq_ignore_ascii_case(recipient)))?;
        taken[index] = true;
        Some(messages[index].clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The first standalone six-digit number in `text` (not part of a longer run of letters or
/// digits): the one-time code in our e-mails.
pub fn six_digit_code(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphanumeric() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let word = &text[start..i];
            if word.len() == 6 && word.bytes().all(|b| b.is_ascii_digit()) {
                return Some(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    None
}

#[derive(Default)]
struct Envelope {
    from: Option<String>,
    to: Vec<String>,
}

async fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    write.write_all(b"220 portcullis-sink ESMTP ready\r\n").await?;
    let mut envelope = Envelope::default();
    let mut auth_user: Option<String> = None;
    loop {
        let Some(line) = read_line(&mut reader).await? else { return Ok(()) };
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        let reply: &[u8] = match verb {
            "EHLO" => b"250-portcullis-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 AUTH PLAIN LOGIN\r\n",
            "HELO" => b"250 portcullis-sink\r\n",
            "AUTH" => {
                auth_user = authenticate(&line, &mut reader, &mut write).await?;
                b"235 2.7.0 Authentication successful\r\n"
            }
            "MAIL" => {
                envelope = Envelope { from: Some(address_after(&line, "FROM:")), to: Vec::new() };
                b"250 2.1.0 OK\r\n"
            }
            "RCPT" if envelope.from.is_none() => b"503 5.5.1 MAIL first\r\n",
            "RCPT" => {
                envelope.to.push(address_after(&line, "TO:"));
                b"250 2.1.5 OK\r\n"
            }
            "DATA" if envelope.to.is_empty() => b"503 5.5.1 RCPT first\r\n",
            "DATA" => {
                write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let Some(data) = read_data(&mut reader).await? else {
                    write.write_all(b"552 5.3.4 Message too big\r\n").await?;
                    envelope = Envelope::default();
                    continue;
                };
                let env = std::mem::take(&mut envelope);
                record(shared, env, auth_user.clone(), data);
                b"250 2.0.0 OK queued\r\n"
            }
            "RSET" => {
                envelope = Envelope::default();
                b"250 2.0.0 OK\r\n"
            }
            "NOOP" => b"250 2.0.0 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.1 Command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// Accepts any credentials; returns the user name.
async fn authenticate(
    line: &str,
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
) -> std::io::Result<Option<String>> {
    let decode = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let mut parts = line.split_whitespace().skip(1);
    let mechanism = parts.next().unwrap_or("").to_ascii_uppercase();
    let initial = parts.next().map(str::to_owned);
    if mechanism == "LOGIN" {
        write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
        let user = read_line(reader).await?.unwrap_or_default();
        write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
        let _password = read_line(reader).await?;
        return Ok(decode(&user));
    }
    let response = match initial {
        Some(r) => r,
        None => {
            write.write_all(b"334 \r\n").await?;
            read_line(reader).await?.unwrap_or_default()
        }
    };
    // PLAIN: authzid NUL authcid NUL password.
    Ok(decode(&response).and_then(|s| s.split('\0').nth(1).map(str::to_owned)))
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = reader.take(MAX_LINE_BYTES as u64).read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Ok(None);
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Reads up to the lone `.` line; `None` when the message is too big (the rest is drained).
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<String>> {
    let mut out = String::new();
    let mut too_big = false;
    loop {
        let Some(line) = read_line(reader).await? else { return Ok(None) };
        if line == "." {
            return Ok(if too_big { None } else { Some(out) });
        }
        let line = line.strip_prefix('.').unwrap_or(&line);
        if out.len() + line.len() > MAX_MESSAGE_BYTES {
            too_big = true;
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
}

/// `MAIL FROM:<a@b> SIZE=1` → `a@b`.
fn address_after(line: &str, keyword: &str) -> String {
    let upper = line.to_ascii_uppercase();
    let rest = upper.find(keyword).map_or("", |i| &line[i + keyword.len()..]).trim_start();
    match rest.strip_prefix('<') {
        Some(inner) => inner.split('>').next().unwrap_or("").to_owned(),
        None => rest.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

fn record(shared: &Shared, envelope: Envelope, auth_user: Option<String>, data: String) {
    let (head, body) = split_message(&data);
    let fields = headers(head);
    let field = |name: &str| fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let subject = decode_words(field("subject").unwrap_or(""));
    let text = decode_body(field("content-transfer-encoding").unwrap_or("7bit"), body);
    let received =
        Received { from: envelope.from.unwrap_or_default(), to: envelope.to, auth_user, data, subject, text };
    let count = {
        let mut messages = lock(&shared.messages);
        messages.push(received);
        lock(&shared.taken).push(false);
        messages.len()
    };
    shared.arrived.send_replace(count);
}

fn split_message(data: &str) -> (&str, &str) {
    data.split_once("\r\n\r\n").unwrap_or((data, ""))
}

/// Header fields in order, continuation lines unfolded.
fn headers(head: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

fn decode_body(encoding: &str, body: &str) -> String {
    match encoding.trim().to_ascii_lowercase().as_str() {
        "quoted-printable" => String::from_utf8_lossy(&quoted_printable(body)).into_owned(),
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| body.to_owned())
        }
        _ => body.strip_suffix("\r\n").unwrap_or(body).to_owned(),
    }
    .replace("\r\n", "\n")
}

fn quoted_printable(body: &str) -> Vec<u8> {
    let body = body.strip_suffix("\r\n").unwrap_or(body);
    let mut out = Vec::with_capacity(body.len());
    let mut lines = body.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_end_matches([' ', '\t']);
        let (line, soft_break) = line.strip_suffix('=').map_or((line, false), |l| (l, true));
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let hex = (bytes[i] == b'=').then(|| line.get(i + 1..i + 3)).flatten();
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
        }
        if !soft_break && lines.peek().is_some() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`) in a header value.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let decoded = rest[start + 2..].split_once("?=").and_then(|(word, after)| {
            let mut parts = word.splitn(3, '?');
            let (_charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
            let bytes = match encoding.to_ascii_lowercase().as_str() {
                "b" => base64::engine::general_purpose::STANDARD.decode(text).ok()?,
                "q" => quoted_printable(&text.replace('_', " ")),
                _ => return None,
            };
            Some((String::from_utf8_lossy(&bytes).into_owned(), after))
        });
        match decoded {
            Some((text, after)) => {
                let between = &rest[..start];
                // Whitespace between two encoded words is not part of the text (RFC 2047 §6.2).
                if !(last_was_word && between.trim().is_empty()) {
                    out.push_str(between);
                }
                out.push_str(&text);
                rest = after;
                last_was_word = true;
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn courier_sink_finds_standalone_six_digit_codes() {
        assert_eq!(six_digit_code("Your code is 123456."), Some("123456".into()));
        assert_eq!(six_digit_code("id 1234567, ref a12345b, then 654321"), Some("654321".into()));
        assert_eq!(six_digit_code("2026-01-05 code:000042 x"), Some("000042".into()));
        assert_eq!(six_digit_code("no code here 12345"), None);
    }

    #[test]
    fn courier_sink_decodes_transfer_encodings_and_subjects() {
        assert_eq!(
            decode_body("quoted-printable", "caf=C3=A9 code=\r\n 123456\r\nline2\r\n"),
            "café code 123456\nline2"
        );
        assert_eq!(decode_body("base64", "Y29kZSAxMjM0\r\nNTY=\r\n"), "code 123456");
        assert_eq!(decode_body("7bit", "plain\r\ntext\r\n"), "plain\ntext");
        assert_eq!(decode_words("=?utf-8?b?Q29kZSDinJM=?= now"), "Code ✓ now");
        assert_eq!(decode_words("=?utf-8?q?Caf=C3=A9_code?= =?utf-8?q?_x?="), "Café code x");
        assert_eq!(decode_words("plain subject"), "plain subject");
        assert_eq!(address_after("MAIL FROM:<a@b.c> SIZE=10", "FROM:"), "a@b.c");
        assert_eq!(address_after("rcpt to: <X@Y.z>", "TO:"), "X@Y.z");
    }

    #[tokio::test]
    async fn courier_sink_speaks_enough_smtp_for_lettre() {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        let sink = SmtpSink::start().await;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(sink.port())
            .credentials(lettre::transport::smtp::authentication::Credentials::new("u".into(), "p".into()))
            .build();
        let body = format!("Bonjour, voici votre code : 987654\n{}\n", "long line ".repeat(20));
        for to in ["Alice@Example.com", "bob@example.com", "alice@example.com"] {
            let message = Message::builder()
                .from("no-reply@portcullis.local".parse().unwrap())
                .to(to.parse().unwrap())
                .subject("Votre code ✓")
                .body(body.clone())
                .unwrap();
            transport.send(message).await.unwrap();
        }
        let first = sink.wait_for("alice@example.com", Duration::from_secs(5)).await.unwrap();
        assert_eq!(first.to, ["Alice@Example.com"]);
        assert_eq!(first.from, "no-reply@portcullis.local");
        assert_eq!(first.auth_user.as_deref(), Some("u"));
        assert_eq!(first.subject, "Votre code ✓");
        assert_eq!(first.text.trim_end(), body.trim_end(), "{}", first.data);
        assert_eq!(six_digit_code(&first.text).as_deref(), Some("987654"));
        assert!(first.header("date").is_some());
        let second = sink.wait_for("ALICE@example.com", Duration::from_secs(5)).await.unwrap();
        assert_eq!(second.to, ["alice@example.com"]);
        assert!(sink.wait_for("alice@example.com", Duration::from_millis(50)).await.is_none());
        assert_eq!(sink.messages().len(), 3);
        assert!(sink.connection_uri().ends_with(&format!(":{}/?disable_starttls=true", sink.port())));
    }
}
