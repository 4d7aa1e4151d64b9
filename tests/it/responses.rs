//! One path from an outcome to what the client gets: with or without early headers, an outcome
//! is counted, logged and alerted on the same way; only the framing differs.

use serde_json::Value;

use crate::support::*;

async fn scrape(h: &Harness) -> String {
    scrape_metrics(&h.http, &h.gateway).await
}

#[tokio::test]
async fn a_returned_outcome_is_counted_and_logged_the_same_with_or_without_early_headers() {
    let logs = captured_logs();
    // The upstream's 400 arrives after `early_headers_after`, so with early headers on the
    // client already has a 200 and gets the error as an event.
    let slow_client_error = || status(400).with("delay_ms", 300);
    for early in [false, true] {
        let failover = if early {
            format!("{FAST}\nearly_headers_after: 50ms")
        } else {
            FAST.to_string()
        };
        let h = start(&failover, "").await;
        h.primary_always(slow_client_error()).await;
        for dialect in Dialect::BOTH {
            let request_id = format!("returned-{dialect}-early-{early}");
            let mark = logs.mark();
            let reply = post_raw(
                &h,
                dialect.path(),
                dialect.body(true).to_string(),
                &[
                    ("content-type", "application/json"),
                    ("x-request-id", &request_id),
                ],
            )
            .await;
            if early {
                assert_eq!(reply.status, 200, "{dialect}: {}", reply.text);
                let events: Vec<Value> = reply
                    .text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .filter_map(|d| serde_json::from_str(d).ok())
                    .collect();
                assert_eq!(events.len(), 1, "{dialect}: {}", reply.text);
                assert!(
                    events[0].get("error").is_some(),
                    "{dialect}: {}",
                    reply.text
                );
            } else {
                assert_eq!(reply.status, 400, "{dialect}: {}", reply.text);
            }
            let logged = logs.since(mark);
            assert!(
                logged
                    .lines()
                    .any(|l| l.contains(&format!("request_id={request_id}"))
                        && l.contains("returned the upstream's error to the client")),
                "early headers {early}, {dialect}: no `returned` log line in\n{logged}"
            );
            let backend = format!("backend=\"{}\"", dialect.backend("primary"));
            let route = match dialect {
                Dialect::Anthropic => "route=\"claude\"",
                Dialect::OpenAi => "route=\"gpt\"",
            };
            let m = scrape(&h).await;
            let returned = [
                "switchyard_requests_total{",
                route,
                &backend,
                "outcome=\"returned\"",
            ];
            assert_eq!(
                sample(&m, &returned),
                Some(1.0),
                "early headers {early}, {dialect}:\n{m}"
            );
        }
        assert_eq!(
            h.fallback_requests().await,
            0,
            "a client error was failed over"
        );
    }
}
