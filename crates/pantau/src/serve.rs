//! The `/metrics` endpoint (Prometheus text format) and `/health` (JSON from
//! [`Health::status`]; 503 while the broker is unreachable) of `run`, `store`, `notify`
//! and `demo`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use prometheus::Registry;

use pantau_kafka::health::Health;
use pantau_kafka::metrics::render;

/// Serves `/metrics` and `/health` until the returned task is aborted. `/health` answers
/// 503 while the broker is down so that an orchestrator's probe sees the outage, with the
/// same JSON body either way.
pub async fn serve(
    registry: Registry,
    health: Arc<Health>,
    addr: SocketAddr,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::{http::StatusCode, routing::get, Router};
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = render(&registry);
                async move { ([("content-type", "text/plain; version=0.0.4")], text) }
            }),
        )
        .route(
            "/health",
            get(move || {
                let status = health.status();
                async move {
                    let code = if status.healthy {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    // A struct of strings, bools and floats always serializes.
                    let body = serde_json::to_string(&status).unwrap_or_default();
                    (code, [("content-type", "application/json")], body)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for /metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantau_kafka::health::{BrokerState, HealthStatus};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get_health(addr: SocketAddr) -> (u16, HealthStatus) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let code = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {response:?}"));
        let (_, body) = response.split_once("\r\n\r\n").unwrap();
        (code, serde_json::from_str(body).unwrap())
    }

    #[tokio::test]
    async fn health_endpoint_turns_503_when_broker_down() {
        let registry = Registry::new();
        let health = Health::register(&registry);
        let (addr, server) = serve(
            registry,
            health.clone(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .unwrap();

        let (code, status) = get_health(addr).await;
        assert_eq!(code, 200);
        assert!(status.healthy);

        health.broker_down("all brokers down");
        let (code, status) = get_health(addr).await;
        assert_eq!(code, 503);
        assert_eq!(status.broker, BrokerState::Down);
        assert_eq!(status.reason.as_deref(), Some("all brokers down"));

        health.broker_up();
        let (code, _) = get_health(addr).await;
        assert_eq!(code, 200);
        server.abort();
    }
}
