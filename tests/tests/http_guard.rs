//! The daemon's HTTP side as a real process: the control API on its own listener with the
//! browser rules, and the overlay port under a stall attack from 127.0.0.1 while `/healthz`
//! from 127.0.0.2 keeps answering.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use overlay_e2e::{free_port, metric_sum, Daemon, DaemonOpts};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// One raw HTTP/1.1 exchange from the local address `from`: the whole answer.
async fn raw(from: [u8; 4], to: SocketAddr, request: &str) -> String {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut s = socket.connect(to).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("answer within 5 s")
        .unwrap();
    String::from_utf8_lossy(&out).to_string()
}

fn get(path: &str, host: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_listener_browser_rules_and_probes_under_attack() {
    let control_port = free_port();
    let control: SocketAddr = SocketAddr::from(([127, 0, 0, 1], control_port));
    let d = Daemon::start(
        DaemonOpts::default()
            .args(["--control-addr", &control.to_string()])
            .config("[http]\nheader_timeout_ms = 1500\nmax_conns_per_ip = 32\n"),
    )
    .await;
    let overlay = d.addr;

    // The control API moved: 404 on the overlay port, served on its own listener.
    let text = raw(
        [127, 0, 0, 1],
        overlay,
        &get("/v1/peers", &overlay.to_string(), ""),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    let text = raw(
        [127, 0, 0, 1],
        control,
        &get("/v1/peers", &control.to_string(), ""),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let text = raw(
        [127, 0, 0, 1],
        control,
        &get("/v1/peers", &format!("localhost:{control_port}"), ""),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // A web page: an Origin, a rebound host name, a form POST.
    let text = raw(
        [127, 0, 0, 1],
        control,
        &get(
            "/v1/peers",
            &control.to_string(),
            "Origin: http://evil.example\r\n",
        ),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    let text = raw(
        [127, 0, 0, 1],
        control,
        &get("/v1/peers", &format!("evil.example:{control_port}"), ""),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    let form = format!(
        "POST /v1/broadcast HTTP/1.1\r\nHost: {control}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
    );
    let text = raw([127, 0, 0, 1], control, &form).await;
    assert!(text.starts_with("HTTP/1.1 415"), "{text}");

    // 300 connections from 127.0.0.1 that never finish their headers.
    let mut attackers = Vec::new();
    for _ in 0..300 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        if let Ok(mut s) = socket.connect(overlay).await {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").await;
            attackers.push(s);
        }
    }
    for i in 0..5 {
        let started = Instant::now();
        let text = raw(
            [127, 0, 0, 2],
            overlay,
            &get("/healthz", &overlay.to_string(), ""),
        )
        .await;
        let took = started.elapsed();
        assert!(text.starts_with("HTTP/1.1 200"), "probe {i}: {text}");
        assert!(took < Duration::from_secs(1), "probe {i} took {took:?}");
    }
    // The attackers' connections are closed within the header timeout (plus a margin).
    let deadline = Instant::now() + Duration::from_millis(1500 + 2000);
    for mut s in attackers {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 256];
        let end = tokio::time::timeout(left, s.read(&mut buf)).await;
        assert!(matches!(end, Ok(Ok(0)) | Ok(Err(_))), "still open: {end:?}");
    }
    // The daemon is up and counted what it refused.
    let metrics = d.metrics_url("/metrics");
    let text = d
        .http()
        .get(metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let per_ip = metric_sum(&text, "rejected_total", "reason=\"http_conns_per_ip\"").unwrap_or(0.0);
    let refused_browser = ["http_origin", "http_host", "http_content_type"]
        .iter()
        .map(|r| metric_sum(&text, "rejected_total", &format!("reason=\"{r}\"")).unwrap_or(0.0))
        .sum::<f64>();
    let timeouts = metric_sum(&text, "errors_total", "kind=\"header_timeout\"").unwrap_or(0.0);
    let evicted = metric_sum(&text, "errors_total", "kind=\"evicted\"").unwrap_or(0.0);
    println!(
        "refused per address: {per_ip}, evicted: {evicted}, header timeouts: {timeouts}, \
         browser requests refused: {refused_browser}"
    );
    // Every attacking connection was refused (address at its cap), evicted (its address's
    // longest-stalled connection, for a newer one) or timed out.
    assert!(per_ip + evicted + timeouts >= 300.0, "{text}");
    assert!(timeouts >= 1.0, "{text}");
    assert_eq!(refused_browser, 3.0);
    let status = TcpStream::connect(overlay).await;
    assert!(status.is_ok(), "overlay port still accepts");
    let exit = d.terminate();
    assert!(exit.success(), "{exit:?}");
}
