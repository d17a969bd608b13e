//! The agent's Prometheus metrics: a real scrape checked by Prometheus's own `promtool check
//! metrics`, the example alerting rules tested with `promtool test rules`, no secret in any
//! series, counters that move, and bad addresses refused at start.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::io::Write;
use std::process::Stdio;

use common::fixture::{free_port, http};
use common::running::Agent;
use common::{CLIENT_ID, CLIENT_SECRET, Env, MockServer, assert_one_line_error, stderr, tool};

/// GET /metrics from the agent serving them on `port`.
fn scrape(port: u16) -> String {
    let reply = http(port, "GET", "/metrics", None).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
}

/// Prometheus's own checker, on a scrape as served.
fn promtool_check(text: &str) {
    let mut check = tool("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

#[test]
fn a_real_scrape_passes_promtool_and_names_no_secret() {
    let server = MockServer::start();
    let env = Env::new();
    env.authorized_profile("payroll", &server, &["--auto-refresh"]);
    env.add_profile("new", &server, &[]);
    let port = free_port();
    let _agent = Agent::start(&env, &["--metrics", &port.to_string()]);
    let text = scrape(port);
    for series in [
        "tokdeck_access_token_expiry_timestamp_seconds{profile=\"payroll\"}",
        "tokdeck_refresh_window_end_timestamp_seconds{profile=\"payroll\"}",
        "tokdeck_profile_state{profile=\"payroll\",state=\"ok\"} 1",
        "tokdeck_profile_state{profile=\"payroll\",state=\"error\"} 0",
        "tokdeck_profile_state{profile=\"new\",state=\"no-token\"} 1",
        "tokdeck_agent_info{version=\"",
        "tokdeck_refresh_duration_seconds_bucket",
        "tokdeck_vault_reloads_total",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    let access = server.last_access_token().unwrap();
    let refresh = server.last_refresh_token().unwrap();
    for secret in [CLIENT_SECRET, CLIENT_ID, access.as_str(), refresh.as_str()] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
    promtool_check(&text);
    // A refresh through the agent is counted, with its duration.
    let mut socket = std::os::unix::net::UnixStream::connect(env.agent_socket()).unwrap();
    socket
        .write_all(b"{\"v\":1,\"op\":\"refresh\",\"profile\":\"payroll\"}\n")
        .unwrap();
    let mut reply = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(socket), &mut reply).unwrap();
    assert!(reply.contains("\"ok\":true"), "{reply}");
    let text = scrape(port);
    assert!(
        sample(
            &text,
            "tokdeck_refreshes_total{profile=\"payroll\",result=\"success\"}"
        ) >= 1.0,
        "{text}"
    );
    assert!(sample(&text, "tokdeck_refresh_duration_seconds_count") >= 1.0);
    promtool_check(&text);
    // Anything but GET /metrics is refused.
    assert_eq!(http(port, "GET", "/", None).unwrap().status, 404);
}

#[test]
fn the_example_alerting_rules_pass_promtool_test_rules() {
    let dir = tokdeck_testkit::fixtures_dir().join("prometheus");
    let out = tool("promtool")
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

#[test]
fn bad_metrics_addresses_are_refused_at_start() {
    let env = Env::new();
    let out = env.run(&["agent", "--metrics", "0.0.0.0:9184"]);
    assert_one_line_error(&out, "add --metrics-public");
    let out = env.run(&["agent", "--metrics", "metrics.example.com:9184"]);
    assert_one_line_error(&out, "an IP address and port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = env.run(&["agent", "--metrics", &port]);
    assert_one_line_error(&out, "cannot serve metrics on 127.0.0.1:");
    assert!(!env.agent_socket().exists(), "the agent did not start");
}

#[test]
fn idle_and_trickling_connections_do_not_keep_a_scrape_out() {
    let server = MockServer::start();
    let env = Env::new();
    env.authorized_profile("p", &server, &[]);
    let port = free_port();
    let _agent = Agent::start(&env, &["--metrics", &port.to_string()]);
    scrape(port);
    // Another local user: 130 connections that send nothing, 16 that trickle a header.
    let mut idle: Vec<std::net::TcpStream> = (0..130)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    for _ in 0..16 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ");
            idle.push(s);
        }
    }
    assert!(idle.len() >= 140, "only {} connections", idle.len());
    let started = std::time::Instant::now();
    let text = scrape(port);
    let took = started.elapsed();
    eprintln!("a scrape behind 146 idle connections took {took:?}");
    assert!(text.contains("tokdeck_agent_info"), "{text}");
    assert!(took < std::time::Duration::from_secs(6), "{took:?}");
    drop(idle);
}
