//! The metrics endpoint (`--metrics-listen`): a minimal HTTP/1.1 responder on tokio.
//! `GET /metrics` (or `HEAD`) answers `200` with [`super::Metrics::encode`]'s text;
//! any other path is `404`, any other method `405`, an unreadable request `400`. Every
//! answer closes the connection (`Connection: close`), which every scraper handles.
//!
//! One task owns the listener and answers connections one at a time, each bounded by
//! [`EXCHANGE_DEADLINE`] (a scraper that stalls delays the next scrape, never the node),
//! until the node's shutdown signal; there is no task per connection to track. A
//! request head larger than [`MAX_HEAD`] is refused with `400`.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Metrics, CONTENT_TYPE};

/// Longest one exchange (read the request, write the answer) may take. Prometheus'
/// default scrape timeout is 10 s.
pub const EXCHANGE_DEADLINE: Duration = Duration::from_secs(10);
/// Largest request head read (request line and headers); scrapers send a few hundred
/// bytes.
pub const MAX_HEAD: usize = 8 * 1024;

/// Serves `metrics` on `listener` until `shutdown` turns true.
pub fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    // A dropped sender (the node gone without a shutdown) stops it too.
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let exchange = tokio::time::timeout(
                            EXCHANGE_DEADLINE,
                            answer(stream, &metrics),
                        );
                        match exchange.await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics request failed"),
                            Err(_) => tracing::debug!(%peer, "metrics request timed out"),
                        }
                    }
                    Err(e) => {
                        // Out of descriptors, usually: back off briefly, then accept again.
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    })
}

/// Reads one request head from `stream` and writes the answer.
async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break false;
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let request_line = std::str::from_utf8(&head)
        .ok()
        .filter(|_| complete)
        .and_then(|h| h.lines().next())
        .unwrap_or_default()
        .to_owned();
    let mut parts = request_line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let path = target.map(|t| t.split('?').next().unwrap_or_default());
    let response = match (method, path, version) {
        (Some(m), Some(_), Some(v)) if !v.starts_with("HTTP/1.") || m.is_empty() => {
            plain(400, "Bad Request", "not an HTTP/1.x request\n")
        }
        (Some(m @ ("GET" | "HEAD")), Some("/metrics"), Some(_)) => {
            let body = metrics.encode();
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            if m == "GET" {
                r.push_str(&body);
            }
            r
        }
        (Some("GET" | "HEAD"), Some(_), Some(_)) => {
            plain(404, "Not Found", "the metrics are at /metrics\n")
        }
        (Some(_), Some(_), Some(_)) => plain(405, "Method Not Allowed", "only GET /metrics\n"),
        _ => plain(400, "Bad Request", "not an HTTP/1.x request\n"),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A plain-text answer with `status`.
fn plain(status: u16, reason: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RequestMetrics;

    async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn metrics_endpoint_answers_get_metrics_and_refuses_the_rest() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(RequestMetrics::new());
        let (tx, rx) = watch::channel(false);
        let task = serve(listener, Arc::new(Metrics::new(requests, None)), rx);

        let ok = exchange(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(CONTENT_TYPE), "{ok}");
        assert!(
            ok.contains("# TYPE sibyl_request_errors_total counter"),
            "{ok}"
        );
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );

        let head_only = exchange(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head_only.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head_only.ends_with("\r\n\r\n"), "{head_only}");
        let missing = exchange(addr, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        let post = exchange(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        let junk = exchange(addr, "hello\r\n\r\n").await;
        assert!(junk.starts_with("HTTP/1.1 400 "), "{junk}");

        tx.send(true).unwrap();
        task.await.unwrap();
    }
}
