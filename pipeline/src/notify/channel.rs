//! The ways a notification reaches a team: a signed webhook and the Telegram bot API.
//! Each send is one try; `deliver` decides about retries.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::Alert;
use crate::notify::message::Message;
use crate::notify::routes::Channel;

/// The longest one try may take.
const TRY_TIMEOUT: Duration = Duration::from_secs(15);
/// Telegram refuses longer messages.
const TELEGRAM_MAX_CHARS: usize = 4096;

#[async_trait::async_trait]
pub trait Sender: Send + Sync {
    async fn send(&self, alert: &Alert, message: &Message) -> anyhow::Result<()>;
}

/// The signature header a webhook receiver checks: `sha256=` and the hex HMAC-SHA256 of
/// the body under the shared secret.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// POSTs JSON and insists on a 2xx answer, off the async threads.
async fn post_json(
    url: String,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let mut request = ureq::post(&url)
            .config()
            .timeout_global(Some(TRY_TIMEOUT))
            .build()
            .header("Content-Type", "application/json");
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let mut response = request.send(&body[..])?;
        Ok(response.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .context("the HTTP task stopped")?
}

struct Webhook {
    url: String,
    secret: Option<Vec<u8>>,
}

#[derive(serde::Serialize)]
struct WebhookBody<'a> {
    alert: &'a Alert,
    message: WebhookMessage<'a>,
}

#[derive(serde::Serialize)]
struct WebhookMessage<'a> {
    subject: &'a str,
    text: &'a str,
    html: &'a str,
    dashboard_link: &'a str,
}

#[async_trait::async_trait]
impl Sender for Webhook {
    async fn send(&self, alert: &Alert, message: &Message) -> anyhow::Result<()> {
        let body = serde_json::to_vec(&WebhookBody {
            alert,
            message: WebhookMessage {
                subject: &message.subject,
                text: &message.text,
                html: &message.html,
                dashboard_link: &message.dashboard_link,
            },
        })?;
        // The alert id is deterministic, so a receiver can drop a redelivery by it.
        let mut headers = vec![("Idempotency-Key", alert.alert_id.clone())];
        if let Some(secret) = &self.secret {
            headers.push(("X-Pantau-Signature", signature(secret, &body)));
        }
        post_json(self.url.clone(), body, headers).await?;
        Ok(())
    }
}

struct Telegram {
    endpoint: String,
    chat_id: String,
}

#[async_trait::async_trait]
impl Sender for Telegram {
    async fn send(&self, _alert: &Alert, message: &Message) -> anyhow::Result<()> {
        let text: String = message.text.chars().take(TELEGRAM_MAX_CHARS).collect();
        let body = serde_json::to_vec(&serde_json::json!({
            "chat_id": self.chat_id,
            "text": text,
        }))?;
        let answer = post_json(self.endpoint.clone(), body, Vec::new()).await?;
        let ok = serde_json::from_str::<serde_json::Value>(&answer)
            .map(|v| v["ok"] == true)
            .unwrap_or(false);
        if !ok {
            bail!("the Telegram API did not accept the message: {answer}");
        }
        Ok(())
    }
}

fn secret_from(env: &str, channel: &str) -> anyhow::Result<String> {
    std::env::var(env)
        .with_context(|| format!("channel {channel:?}: environment variable {env} is not set"))
}

/// The sender of a configured channel; secrets are read from the environment now, so a
/// missing one stops `pantau notify` at start rather than at the first alert.
pub fn sender_for(name: &str, channel: &Channel) -> anyhow::Result<Arc<dyn Sender>> {
    Ok(match channel {
        Channel::Webhook { url, secret_env } => Arc::new(Webhook {
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
        } => {
            let token = secret_from(token_env, name)?;
            let base = base_url
                .as_deref()
                .unwrap_or("https://api.telegram.org")
                .trim_end_matches('/');
            Arc::new(Telegram {
                endpoint: format!("{base}/bot{token}/sendMessage"),
                chat_id: chat_id.clone(),
            })
        }
        Channel::Email { .. } => bail!(
            "channel {name:?}: e-mail delivery is not available in this version of pantau notify; use a webhook or Telegram channel"
        ),
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
}
