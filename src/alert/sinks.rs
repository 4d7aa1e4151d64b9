//! Alert sinks: Telegram (MarkdownV2 `sendMessage`), a signed JSON webhook, and the log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::Alert;
use crate::config::{SinkConfig, SinkSpec};

const SEND_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .connect_timeout(SEND_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client builds")
}

pub struct Sink {
    pub spec: SinkSpec,
    per_minute: f64,
    /// Token bucket against storms: (tokens, last refill).
    bucket: Mutex<(f64, Instant)>,
    pub in_flight: Arc<Semaphore>,
}

impl Sink {
    pub fn new(spec: SinkSpec, per_minute: u32) -> Sink {
        Sink {
            spec,
            per_minute: per_minute as f64,
            bucket: Mutex::new((per_minute as f64, Instant::now())),
            in_flight: super::in_flight_limit(),
        }
    }

    pub fn take_token(&self) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.saturating_duration_since(b.1).as_secs_f64() * self.per_minute / 60.0;
        b.0 = (b.0 + refill).min(self.per_minute);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sends once, retries once after a pause; logs failures at warn. True when delivered.
    pub async fn deliver(&self, client: &reqwest::Client, alert: &Alert) -> bool {
        for attempt in 1..=2 {
            let result = tokio::time::timeout(SEND_TIMEOUT, self.send(client, alert)).await;
            let error = match result {
                Ok(Ok(())) => return true,
                Ok(Err(e)) => e,
                Err(_) => format!("no answer within {SEND_TIMEOUT:?}"),
            };
            tracing::warn!(sink = %self.spec.name, attempt, error = %error, "alert delivery failed");
            if attempt == 1 {
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
        false
    }

    async fn send(&self, client: &reqwest::Client, alert: &Alert) -> Result<(), String> {
        match &self.spec.config {
            SinkConfig::Log => {
                tracing::warn!(target: "switchyard::alert", event = alert.event.as_str(), "{}", alert.text());
                Ok(())
            }
            SinkConfig::Telegram {
                bot_token,
                chat_id,
                api_base,
                ..
            } => {
                let token = bot_token.as_ref().ok_or("no bot token")?;
                let url = format!("{api_base}/bot{}/sendMessage", token.expose());
                let body = json!({
                    "chat_id": chat_id,
                    "text": telegram_text(alert),
                    "parse_mode": "MarkdownV2",
                    "disable_web_page_preview": true,
                });
                let resp = client
                    .post(url)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    // The URL holds the token: report only the kind of error.
                    .map_err(|e| format!("telegram request failed ({})", error_kind(&e)))?;
                let status = resp.status();
                if status.is_success() {
                    Ok(())
                } else {
                    let text = resp.text().await.unwrap_or_default();
                    Err(format!(
                        "telegram answered {status}: {}",
                        text.chars().take(200).collect::<String>()
                    ))
                }
            }
            SinkConfig::Webhook { url, secret } => {
                let body = webhook_body(alert);
                let mut req = client
                    .post(url.clone())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(
                        "user-agent",
                        concat!("switchyard/", env!("CARGO_PKG_VERSION")),
                    );
                if let Some(secret) = secret {
                    req = req.header("x-switchyard-signature", signature(secret.expose(), &body));
                }
                let resp = req
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("webhook request failed ({})", error_kind(&e)))?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("webhook answered {}", resp.status()))
                }
            }
        }
    }
}

fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    }
}

/// `sha256=<hex HMAC-SHA256 of the body>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// The webhook payload (documented in the README).
pub fn webhook_body(alert: &Alert) -> Vec<u8> {
    let mut v = serde_json::to_value(alert).unwrap_or_default();
    v["at"] = json!(httpdate::fmt_http_date(alert.at));
    v["text"] = json!(alert.text());
    v.to_string().into_bytes()
}

/// Escapes text for Telegram MarkdownV2: every one of `_*[]()~`>#+-=|{}.!` and `\`.
pub fn escape_markdown_v2(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(
            c,
            '_' | '*'
                | '['
                | ']'
                | '('
                | ')'
                | '~'
                | '`'
                | '>'
                | '#'
                | '+'
                | '-'
                | '='
                | '|'
                | '{'
                | '}'
                | '.'
                | '!'
                | '\\'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn telegram_text(alert: &Alert) -> String {
    let icon = match alert.event {
        crate::config::AlertEvent::BackendRecovered => "✅",
        crate::config::AlertEvent::FallbackActivated => "⚠️",
        _ => "🚨",
    };
    let mut s = format!(
        "{icon} *Switchyard: {}*\n",
        escape_markdown_v2(alert.title())
    );
    for (k, v) in alert.fields() {
        s.push_str(&format!(
            "*{}:* {}\n",
            escape_markdown_v2(k),
            escape_markdown_v2(&v)
        ));
    }
    if let Some(l) = alert.suppressed_line() {
        s.push_str(&format!("_{}_\n", escape_markdown_v2(&l)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Target;
    use crate::config::AlertEvent;

    #[test]
    fn markdown_v2_escapes_every_reserved_character() {
        assert_eq!(
            escape_markdown_v2("gpt_4o-mini*[beta]"),
            r"gpt\_4o\-mini\*\[beta\]"
        );
        assert_eq!(
            escape_markdown_v2(r"a_b*c[d]e(f)g~h`i>j#k+l-m=n|o{p}q.r!s\t"),
            r"a\_b\*c\[d\]e\(f\)g\~h\`i\>j\#k\+l\-m\=n\|o\{p\}q\.r\!s\\t"
        );
        assert_eq!(escape_markdown_v2("plain text 123"), "plain text 123");
    }

    #[test]
    fn telegram_text_renders_names_verbatim() {
        let mut a = Alert::new(AlertEvent::FallbackActivated);
        a.route = Some("main".into());
        a.serving = Some(Target {
            backend: "gpt_4o-mini*[beta]".into(),
            model: "m.1".into(),
        });
        let t = telegram_text(&a);
        assert!(
            t.contains(r"*Now serving:* gpt\_4o\-mini\*\[beta\] \(m\.1\)"),
            "{t}"
        );
    }

    #[test]
    fn webhook_signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
