//! The ways a notification reaches a team: a signed webhook, the Telegram bot API and
//! e-mail over SMTP, each carrying the evidence chart its own way. Each send is one try;
//! `deliver` decides about retries.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::message::{escape_html, Message};
use crate::routes::{Channel, Smtp, SmtpSecurity};
use pantau_core::model::Alert;

/// The longest one try may take.
const TRY_TIMEOUT: Duration = Duration::from_secs(15);
/// Telegram refuses longer messages, and longer photo captions.
const TELEGRAM_MAX_CHARS: usize = 4096;
const TELEGRAM_MAX_CAPTION: usize = 1024;
/// The Content-ID an e-mail's HTML shows the chart by.
const CHART_CID: &str = "bukti";

/// What one message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// One alert.
    Alert,
    /// Alerts past a channel's hourly limit, folded into one message.
    Folded,
    /// A district's daily digest.
    Daily,
}

/// One message to send on one channel.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    /// The receiver's idempotency key: the alert id, or the digest's own id.
    pub key: String,
    pub kind: Kind,
    /// The alert, or those folded into the message (none for a daily digest).
    pub alerts: Vec<Arc<Alert>>,
    pub message: Arc<Message>,
}

#[async_trait::async_trait]
pub(crate) trait Sender: Send + Sync {
    async fn send(&self, outbound: &Outbound) -> Result<()>;
}

/// The signature header a webhook receiver checks: `sha256=` and the hex HMAC-SHA256 of
/// the body under the shared secret.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    format!(
        "sha256={}",
        pantau_core::text::hex_prefix(&mac.finalize().into_bytes(), 64)
    )
}

/// The HTTP client of every webhook, Telegram and Prometheus call. TLS goes through the
/// system's OpenSSL and its trust store, the ones librdkafka and PostgreSQL use, so a
/// district's own CA is trusted the way the rest of the machine trusts it (the system
/// store, or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
pub fn http() -> &'static ureq::Agent {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    AGENT.get_or_init(|| {
        use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
        ureq::Agent::config_builder()
            .tls_config(
                TlsConfig::builder()
                    .provider(TlsProvider::NativeTls)
                    .root_certs(RootCerts::PlatformVerifier)
                    .build(),
            )
            .build()
            .into()
    })
}

/// POSTs a body and insists on a 2xx answer, off the async threads.
async fn post(
    url: String,
    content_type: String,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
) -> Result<String> {
    tokio::task::spawn_blocking(move || -> Result<String> {
        let mut request = http()
            .post(&url)
            .config()
            .timeout_global(Some(TRY_TIMEOUT))
            .build()
            .header("Content-Type", &content_type);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let mut response = request.send(&body[..]).map_err(Error::http)?;
        Ok(response.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .map_err(Error::task("the HTTP task"))?
}

struct Webhook {
    url: String,
    secret: Option<Vec<u8>>,
}

#[derive(serde::Serialize)]
struct WebhookBody<'a> {
    kind: Kind,
    /// The alert of a single-alert message.
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<&'a Alert>,
    /// The alerts of a folded digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    alerts: Option<Vec<&'a Alert>>,
    message: WebhookMessage<'a>,
}

#[derive(serde::Serialize)]
struct WebhookMessage<'a> {
    subject: &'a str,
    text: &'a str,
    html: &'a str,
    dashboard_link: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    chart_png_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chart_caption: Option<&'a str>,
}

#[async_trait::async_trait]
impl Sender for Webhook {
    async fn send(&self, outbound: &Outbound) -> Result<()> {
        let message = &outbound.message;
        let alerts: Vec<&Alert> = outbound.alerts.iter().map(Arc::as_ref).collect();
        let body = serde_json::to_vec(&WebhookBody {
            kind: outbound.kind,
            alert: (outbound.kind == Kind::Alert)
                .then(|| alerts.first().copied())
                .flatten(),
            alerts: (outbound.kind == Kind::Folded).then_some(alerts),
            message: WebhookMessage {
                subject: &message.subject,
                text: &message.text,
                html: &message.html,
                dashboard_link: &message.dashboard_link,
                chart_png_base64: message
                    .chart
                    .as_ref()
                    .map(|c| base64::engine::general_purpose::STANDARD.encode(&c.png)),
                chart_caption: message.chart.as_ref().map(|c| c.caption.as_str()),
            },
        })
        .map_err(Error::encode("the webhook's body"))?;
        // The key is deterministic, so a receiver can drop a redelivery by it.
        let mut headers = vec![("Idempotency-Key", outbound.key.clone())];
        if let Some(secret) = &self.secret {
            headers.push(("X-Pantau-Signature", signature(secret, &body)));
        }
        post(self.url.clone(), "application/json".into(), body, headers).await?;
        Ok(())
    }
}

struct Telegram {
    api: String,
    chat_id: String,
}

/// A `multipart/form-data` body of text fields and one file.
fn form_data(boundary: &str, fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    let (name, filename, bytes) = file;
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: image/png\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

impl Telegram {
    async fn call(&self, method: &str, content_type: String, body: Vec<u8>) -> Result<()> {
        let answer = post(
            format!("{}/{method}", self.api),
            content_type,
            body,
            Vec::new(),
        )
        .await?;
        let ok = serde_json::from_str::<serde_json::Value>(&answer)
            .map(|v| v["ok"] == true)
            .unwrap_or(false);
        if !ok {
            return Err(Error::TelegramRefused {
                method: method.to_owned(),
                answer,
            });
        }
        Ok(())
    }

    async fn send_text(&self, text: &str) -> Result<()> {
        let text: String = text.chars().take(TELEGRAM_MAX_CHARS).collect();
        let body = serde_json::to_vec(&serde_json::json!({
            "chat_id": self.chat_id,
            "text": text,
        }))
        .map_err(Error::encode("the Telegram message"))?;
        self.call("sendMessage", "application/json".into(), body)
            .await
    }
}

#[async_trait::async_trait]
impl Sender for Telegram {
    async fn send(&self, outbound: &Outbound) -> Result<()> {
        let message = &outbound.message;
        let Some(chart) = &message.chart else {
            return self.send_text(&message.text).await;
        };
        // The photo carries the whole text as its caption when it fits; otherwise the
        // subject, and the text follows as a message of its own.
        let fits = message.text.chars().count() <= TELEGRAM_MAX_CAPTION;
        let caption: String = if fits {
            &message.text
        } else {
            &message.subject
        }
        .chars()
        .take(TELEGRAM_MAX_CAPTION)
        .collect();
        let boundary = format!("pantau-{}", outbound.key);
        let body = form_data(
            &boundary,
            &[("chat_id", &self.chat_id), ("caption", &caption)],
            ("photo", "bukti.png", &chart.png),
        );
        self.call(
            "sendPhoto",
            format!("multipart/form-data; boundary={boundary}"),
            body,
        )
        .await?;
        if !fits {
            self.send_text(&message.text).await?;
        }
        Ok(())
    }
}

struct Email {
    transport: lettre::SmtpTransport,
    from: lettre::message::Mailbox,
    to: Vec<lettre::message::Mailbox>,
}

impl Email {
    fn new(name: &str, smtp: &Smtp, to: &[String]) -> Result<Email> {
        use lettre::transport::smtp::client::{Tls, TlsParameters};
        let mailbox = |address: &str| -> Result<lettre::message::Mailbox> {
            address.parse().map_err(|source| Error::Address {
                channel: name.to_owned(),
                address: address.to_owned(),
                source,
            })
        };
        let tls = || {
            TlsParameters::new(smtp.host.clone()).map_err(|source| Error::SmtpTls {
                channel: name.to_owned(),
                host: smtp.host.clone(),
                source,
            })
        };
        let mut builder = lettre::SmtpTransport::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .timeout(Some(TRY_TIMEOUT))
            .tls(match smtp.security {
                SmtpSecurity::Starttls => Tls::Required(tls()?),
                SmtpSecurity::Tls => Tls::Wrapper(tls()?),
                SmtpSecurity::None => Tls::None,
            });
        if let (Some(user), Some(password)) = (&smtp.username_env, &smtp.password_env) {
            builder =
                builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
                    secret_from(user, name)?,
                    secret_from(password, name)?,
                ));
        }
        Ok(Email {
            transport: builder.build(),
            from: mailbox(&smtp.from)?,
            to: to.iter().map(|a| mailbox(a)).collect::<Result<_>>()?,
        })
    }
}

/// The HTML with the chart shown inline, before `</body>` when there is one.
fn html_with_chart(html: &str, caption: &str) -> String {
    let img = format!(
        "<p><img src=\"cid:{CHART_CID}\" alt=\"{}\" style=\"max-width:100%\"></p>",
        escape_html(caption)
    );
    match html.rfind("</body>") {
        Some(end) => format!("{}{img}{}", &html[..end], &html[end..]),
        None => format!("{html}{img}"),
    }
}

/// The mail: plain text and HTML alternatives, the chart embedded in the HTML.
pub(crate) fn email_message(
    from: lettre::message::Mailbox,
    to: &[lettre::message::Mailbox],
    outbound: &Outbound,
) -> Result<lettre::Message> {
    use lettre::message::{header::ContentType, Attachment, MultiPart};
    let message = &outbound.message;
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(message.subject.clone())
        // Lets a mail client thread repeats and a receiver drop them.
        .message_id(Some(format!("<{}@pantau>", outbound.key)));
    for address in to {
        builder = builder.to(address.clone());
    }
    let body = match &message.chart {
        None => MultiPart::alternative_plain_html(message.text.clone(), message.html.clone()),
        Some(chart) => MultiPart::related()
            .multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                html_with_chart(&message.html, &chart.caption),
            ))
            .singlepart(Attachment::new_inline(CHART_CID.to_owned()).body(
                chart.png.clone(),
                ContentType::parse("image/png").expect("image/png is a content type"),
            )),
    };
    builder.multipart(body).map_err(Error::Mail)
}

#[async_trait::async_trait]
impl Sender for Email {
    async fn send(&self, outbound: &Outbound) -> Result<()> {
        use lettre::Transport;
        let mail = email_message(self.from.clone(), &self.to, outbound)?;
        let transport = self.transport.clone();
        tokio::task::spawn_blocking(move || transport.send(&mail))
            .await
            .map_err(Error::task("the SMTP task"))?
            .map_err(|source| Error::MailRefused {
                source: Box::new(source),
            })?;
        Ok(())
    }
}

fn secret_from(env: &str, channel: &str) -> Result<String> {
    std::env::var(env).map_err(|source| Error::SecretUnset {
        channel: channel.to_owned(),
        env: env.to_owned(),
        source,
    })
}

/// The sender of a configured channel; secrets are read from the environment now, so a
/// missing one stops `pantau notify` at start rather than at the first alert.
pub(crate) fn sender_for(
    name: &str,
    channel: &Channel,
    smtp: Option<&Smtp>,
) -> Result<Arc<dyn Sender>> {
    Ok(match channel {
        Channel::Webhook {
            url, secret_env, ..
        } => Arc::new(Webhook {
            url: url.clone(),
            secret: secret_env
                .as_deref()
                .map(|env| secret_from(env, name).map(String::into_bytes))
                .transpose()?,
        }),
        Channel::Telegram {
            chat_id,
            token_env,
            base_url,
            ..
        } => {
            let token = secret_from(token_env, name)?;
            let base = base_url
                .as_deref()
                .unwrap_or("https://api.telegram.org")
                .trim_end_matches('/');
            Arc::new(Telegram {
                api: format!("{base}/bot{token}"),
                chat_id: chat_id.clone(),
            })
        }
        Channel::Email { to, .. } => {
            // The routing file refuses an e-mail channel without [smtp].
            let smtp = smtp.ok_or_else(|| Error::NoSmtp {
                channel: name.to_owned(),
            })?;
            Arc::new(Email::new(name, smtp, to)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231s_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_mail_with_a_chart_embeds_it_in_the_html_alternative() {
        let chart = crate::chart::Chart {
            png: vec![0x89, b'P', b'N', b'G'],
            caption: "Grafik: \"harga\"".into(),
            bars: 1,
        };
        let outbound = Outbound {
            key: "a1".into(),
            kind: Kind::Alert,
            alerts: Vec::new(),
            message: Arc::new(Message {
                subject: "[SEDANG] Harga di atas kewajaran".into(),
                text: "teks".into(),
                html: "<html><body><p>isi</p></body></html>".into(),
                dashboard_link: "http://grafana".into(),
                chart: Some(chart),
            }),
        };
        let mail = email_message(
            "pantau@dinsos.example".parse().unwrap(),
            &["tikor@serangkab.example".parse().unwrap()],
            &outbound,
        )
        .unwrap();
        let raw = String::from_utf8(mail.formatted()).unwrap();
        for expected in [
            "Content-Type: multipart/related",
            "Content-Type: multipart/alternative",
            "Content-Type: text/plain",
            "Content-Type: text/html",
            "Content-ID: <bukti>",
            "Content-Type: image/png",
            "Message-ID: <a1@pantau>",
        ] {
            assert!(raw.contains(expected), "{expected} missing from:\n{raw}");
        }
        // The HTML is quoted-printable: `=` is `=3D`.
        assert!(
            raw.contains("<img src=3D\"cid:bukti\" alt=3D\"Grafik:"),
            "{raw}"
        );
    }
}
