//! The CLI verbs that talk to a daemon (`append`, `read`, `tail`), `serve` with a config file
//! and its startup banner, `hash-token`, and a clean SIGTERM stop, all through the real binary.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_logbook");

fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

/// Starts `logbook serve` and returns it with its log lines (standard error) up to and
/// including the startup line ("logbook listening").
fn serve(extra: &[&str]) -> (Child, Vec<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut log = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("a log line");
        let started = line.contains("logbook listening");
        log.push(line);
        if started {
            break;
        }
    }
    assert!(log.last().is_some_and(|l| l.contains("logbook listening")), "serve logged {log:?}");
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, log, dir)
}

fn run(args: &[&str]) -> Output {
    let mut child = Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "logbook {args:?} did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("utf8")
}

fn stop(mut child: Child) {
    // Our own child's pid, not yet reaped; kill(1) keeps `unsafe` out of the tests.
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "serve exit status on SIGINT: {status:?}");
            return;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn append_read_tail_through_the_cli() {
    let addr = free_addr();
    let (server, banner, _dir) = serve(&["--listen", &addr]);
    let started = banner.last().unwrap();
    assert!(started.contains(&format!("listen={addr}")), "{banner:?}");
    assert!(!started.contains('\u{1b}'), "no colour codes when the log is not a terminal: {started}");

    let out = stdout(&run(&[
        "append",
        "--connect",
        &addr,
        "order-1",
        "CREATED",
        r#"{"a":1}"#,
        "--expected",
        "none",
        "--json",
    ]));
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(json, serde_json::json!({"stream": "order-1", "version": 1, "position": 1}));
    let out = stdout(&run(&["append", "--connect", &addr, "order-1", "PAID", "{}", "--meta", r#"{"actor":"bob"}"#]));
    assert_eq!(out.trim(), "order-1 version 2 position 2");
    let conflict = run(&["append", "--connect", &addr, "order-1", "X", "{}", "--expected", "none"]);
    assert!(!conflict.status.success());
    assert!(String::from_utf8_lossy(&conflict.stderr).contains("WRONGVERSION expected none actual 2"));

    let out = stdout(&run(&["read", "--connect", &addr, "order-1", "--json"]));
    let events: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["data"], serde_json::json!({"a": 1}));
    assert_eq!(events[1]["meta"], serde_json::json!({"actor": "bob"}));
    assert_eq!(events[1]["type"], "PAID");
    let out = stdout(&run(&["read", "--connect", &addr, "order-1", "--rev", "--count", "1"]));
    assert!(out.contains("order-1@2 PAID"), "{out}");

    let out = stdout(&run(&["tail", "--connect", &addr, "--from-position", "1", "--count", "2", "--json"]));
    let positions: Vec<u64> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2]);

    // tail without --from follows new events only: append until it has printed one
    // (it may connect after the first append).
    let mut tail = Command::new(BIN)
        .args(["tail", "--connect", &addr, "--count", "1", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tail");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tail.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "tail printed nothing");
        stdout(&run(&["append", "--connect", &addr, "cart-1", "NEW", "{}"]));
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = tail.wait_with_output().expect("tail output");
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one json line");
    assert!(line["position"].as_u64().unwrap() >= 3, "{line}");
    assert_eq!(line["stream"], "cart-1");

    // stats --connect: the daemon's INFO, as JSON with integer figures.
    let info: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["stats", "--connect", &addr, "--json"]))).unwrap();
    assert!(info["events"].as_u64().unwrap() >= 3, "{info}");

    stop(server);
}

#[test]
fn serve_with_a_tenant_config() {
    let addr = free_addr();
    let hash = stdout(&run(&["hash-token", "s3cret"]));
    assert_eq!(hash.trim().len(), 64);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("logbook.toml");
    std::fs::write(
        &config,
        format!("[limits]\nmax_connections = 16\n\n[[tenant]]\nname = \"acme\"\ntoken_sha256 = \"{}\"\n", hash.trim()),
    )
    .unwrap();
    let (server, banner, _data) = serve(&["--listen", &addr, "--config", config.to_str().unwrap()]);
    assert!(banner.last().unwrap().contains(r#"auth="tenants""#), "{banner:?}");
    let denied = run(&["append", "--connect", &addr, "order-1", "CREATED", "{}"]);
    assert!(String::from_utf8_lossy(&denied.stderr).contains("NOAUTH"), "{denied:?}");
    let out = stdout(&run(&[
        "append",
        "--connect",
        &addr,
        "--tenant",
        "acme",
        "--token",
        "s3cret",
        "order-1",
        "CREATED",
        "{}",
    ]));
    assert_eq!(out.trim(), "order-1 version 1 position 1");
    let wrong = run(&["read", "--connect", &addr, "--tenant", "acme", "--token", "nope", "order-1"]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("NOPERM"));
    stop(server);
}

#[test]
fn serve_refuses_a_public_address_without_tenants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing"), "{out:?}");
}

/// The demo's closing hint is literally runnable: the binary's own path when it was run
/// directly (on the PATH: `logbook`), `cargo run --release --` when cargo ran it; and redis-cli
/// with the daemon's port (a bare `redis-cli` reaches Redis on 6379).
#[test]
fn the_demo_hint_names_the_way_the_program_was_run() {
    for (under_cargo, expected) in [
        (false, format!("next: {BIN} serve --data ")),
        (true, "next: cargo run --release -- serve --data ".to_string()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut command = Command::new(BIN);
        command.args(["demo", "--orders", "20", "--data", data.to_str().unwrap()]);
        if under_cargo {
            command.env("CARGO", "/usr/bin/cargo");
        } else {
            command.env_remove("CARGO");
        }
        let out = command.output().expect("demo runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let hint = text.lines().find(|l| l.starts_with("next:")).unwrap_or_else(|| panic!("no hint in {text}"));
        assert!(hint.starts_with(&expected), "{hint}");
        assert!(hint.contains("redis-cli -p 7878 -3 TIMELINE <order-id>"), "{hint}");
    }
}

/// The README's compaction line works as written: `packaging/logbook.toml` exists and
/// `compact --config` accepts it.
#[test]
fn the_readme_compact_line_runs_with_the_sample_config() {
    let readme = include_str!("../README.md");
    let line = readme.lines().find(|l| l.contains("logbook compact --data")).expect("README shows compact");
    assert!(line.contains("--config packaging/logbook.toml"), "{line}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let demo = Command::new(BIN).args(["demo", "--orders", "20", "--data", data.to_str().unwrap()]).output().unwrap();
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/logbook.toml");
    let out =
        Command::new(BIN).args(["compact", "--data", data.to_str().unwrap(), "--config", config]).output().unwrap();
    assert!(out.status.success(), "compact --config packaging/logbook.toml: {}", String::from_utf8_lossy(&out.stderr));
}

/// `logbook completions <shell>` and `logbook man` come from the same clap definition as the
/// verbs: every verb is in them, and bash accepts the script.
#[test]
fn completions_and_man_page_cover_every_verb() {
    let verbs = ["serve", "append", "read", "tail", "verify", "export", "compact", "streams", "order", "demo", "bench"];
    for (shell, marker) in [("bash", "_logbook()"), ("zsh", "#compdef logbook"), ("fish", "complete -c logbook")] {
        let out = Command::new(BIN).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "completions {shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: no {marker}");
        for verb in verbs {
            assert!(script.contains(verb), "{shell} completion lacks {verb}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("logbook.bash");
            std::fs::write(&path, &script).unwrap();
            if let Ok(check) = Command::new("bash").arg("-n").arg(&path).output() {
                assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
            }
        }
    }
    let man = Command::new(BIN).arg("man").output().unwrap();
    assert!(man.status.success());
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(page.contains(".TH logbook 1"), "not a man page: {}", &page[..page.len().min(200)]);
    for verb in verbs {
        assert!(page.contains(verb), "man page lacks {verb}");
    }
}

/// `--log-format json`: the startup and the clean stop are log events a collector can parse
/// (one JSON object per line), not bare printed lines.
#[test]
fn serve_logs_its_start_and_clean_stop_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let child = Command::new(BIN)
        .args(["serve", "--log-format", "json", "--listen", &addr, "--data"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit on SIGTERM: {:?}", out.status);
    let events: Vec<serde_json::Value> = String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let message = |e: &serde_json::Value| e["fields"]["message"].as_str().unwrap_or_default().to_string();
    let started = events.iter().find(|e| message(e) == "logbook listening").expect("a startup event");
    assert_eq!(started["fields"]["listen"], serde_json::json!(addr));
    assert_eq!(started["level"], "INFO");
    assert!(started["timestamp"].is_string(), "{started}");
    assert!(events.iter().any(|e| message(e) == "logbook stopped cleanly"), "{events:?}");
}

/// One vocabulary across verbs: an example in every verb's help, `--json` on the verbs that
/// print, `--connect` on the verbs a daemon answers, `--data` on the verbs that open a store,
/// `--count` for "how many" and `--from-version` / `--from-position` for where to start.
#[test]
fn every_verb_has_an_example_and_the_same_flags_for_the_same_things() {
    let help = |verb: &[&str]| {
        let mut args = verb.to_vec();
        args.push("--help");
        stdout(&run(&args))
    };
    let verbs: &[&[&str]] = &[
        &["serve"],
        &["append"],
        &["read"],
        &["tail"],
        &["verify"],
        &["repair"],
        &["stats"],
        &["export"],
        &["compact"],
        &["compress"],
        &["backup"],
        &["delete-stream"],
        &["streams"],
        &["order"],
        &["order", "timeline"],
        &["order", "funnel"],
        &["demo"],
        &["bench"],
        &["import"],
        &["hash-token"],
        &["completions"],
        &["man"],
    ];
    for verb in verbs {
        assert!(help(verb).contains("Example"), "logbook {} --help has no example", verb.join(" "));
    }
    // What these print is not a report: logs (serve: --log-format json), a group of verbs, a
    // script or a man page.
    let without_json: &[&[&str]] = &[&["serve"], &["order"], &["completions"], &["man"]];
    for verb in verbs.iter().filter(|v| !without_json.contains(v)) {
        assert!(help(verb).contains("--json"), "logbook {} has no --json", verb.join(" "));
    }
    for verb in [
        &["append"][..],
        &["read"],
        &["tail"],
        &["order", "timeline"],
        &["stats"],
        &["streams"],
        &["delete-stream"],
        &["compact"],
        &["backup"],
    ] {
        assert!(help(verb).contains("--connect"), "logbook {} has no --connect", verb.join(" "));
    }
    for verb in [
        &["verify"][..],
        &["repair"],
        &["stats"],
        &["export"],
        &["compact"],
        &["backup"],
        &["streams"],
        &["delete-stream"],
        &["order", "funnel"],
    ] {
        assert!(help(verb).contains("--data"), "logbook {} has no --data", verb.join(" "));
    }
    assert!(help(&["read"]).contains("--from-version") && help(&["read"]).contains("--count"));
    let tail = help(&["tail"]);
    assert!(tail.contains("--from-position") && tail.contains("--count") && !tail.contains("--limit"), "{tail}");
}

/// `streams`, `delete-stream`, `compact` and `backup` through a running daemon (`--connect`:
/// STREAMS, DELETE, COMPACT, BACKUP), then `streams` on the stopped daemon's data directory.
#[test]
fn admin_verbs_through_a_daemon() {
    let addr = free_addr();
    let config_dir = tempfile::tempdir().unwrap();
    let backups = config_dir.path().join("backups");
    let config = config_dir.path().join("logbook.toml");
    std::fs::write(&config, format!("backup_dir = {:?}\n", backups.display().to_string())).unwrap();
    let (server, _, dir) = serve(&["--listen", &addr, "--config", config.to_str().unwrap()]);
    for stream in ["order-2", "order-1", "cart-1", "order-1"] {
        stdout(&run(&["append", "--connect", &addr, stream, "T", "{}"]));
    }
    let listed = stdout(&run(&["streams", "--connect", &addr]));
    assert_eq!(listed, "cart-1\t1\norder-1\t2\norder-2\t1\n");
    let page = stdout(&run(&["streams", "--connect", &addr, "--prefix", "order-", "--after", "order-1", "--json"]));
    let page: serde_json::Value = serde_json::from_str(page.trim()).unwrap();
    assert_eq!(page, serde_json::json!({"stream": "order-2", "version": 1}));

    let wrong = run(&["delete-stream", "--connect", &addr, "cart-1", "--expected", "5"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("WRONGVERSION expected 5 actual 1"));
    let deleted: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["delete-stream", "--connect", &addr, "cart-1", "--json"]))).unwrap();
    assert_eq!(deleted, serde_json::json!({"stream": "cart-1", "tombstone_position": 5}));
    assert_eq!(stdout(&run(&["streams", "--connect", &addr, "--count", "1"])), "order-1\t2\n");

    let compacted: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["compact", "--connect", &addr, "--json"]))).unwrap();
    assert!(compacted["segments_before"].is_u64() && compacted["purged"].is_u64(), "{compacted}");
    let refused = run(&["compact", "--connect", &addr, "--compress"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("the daemon's own retention policy"));

    let copied: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["backup", "--connect", &addr, "--name", "b1", "--json"]))).unwrap();
    assert!(copied["bytes"].as_u64().unwrap() > 0, "{copied}");
    assert_eq!(copied["path"], "b1", "the reply's path, relative to backup_dir: {copied}");
    assert!(logbook::verify_dir(&backups.join("b1")).unwrap().is_healthy());
    let again = run(&["backup", "--connect", &addr, "--name", "b1"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("backup 'b1' already exists"));
    let no_name = run(&["backup", "--connect", &addr]);
    assert!(!no_name.status.success());
    stop(server);

    let data = dir.path().join("data");
    let offline = stdout(&run(&["streams", "--data", data.to_str().unwrap(), "--prefix", "order-"]));
    assert_eq!(offline, "order-1\t2\norder-2\t1\n");
}

/// `--since` takes a date or a period on every verb that has it; a bad one names the flag.
#[test]
fn since_takes_dates_and_periods_alike() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let demo: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["demo", "--orders", "20", "--data", data, "--json"])))
            .expect("demo --json prints one JSON object");
    assert_eq!(demo["summary"]["orders"], 20, "{demo}");
    assert!(!demo["timelines"].as_array().unwrap().is_empty(), "{demo}");
    for since in ["30d", "2020-01-01", "2020-01-01T00:00:00Z"] {
        let funnel = run(&["order", "funnel", "--since", since, "--data", data, "--json"]);
        assert!(funnel.status.success(), "funnel --since {since}: {}", String::from_utf8_lossy(&funnel.stderr));
    }
    let bad = run(&["order", "funnel", "--since", "last tuesday", "--data", data]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since wants an RFC 3339 date"), "{bad:?}");
}

/// Every redis-cli command line the README and docs show names logbook's port: a bare
/// `redis-cli` reaches Redis on 6379 (a new user's first failure).
#[test]
fn every_redis_cli_line_in_the_docs_names_the_port() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs");
    let mut files = vec![(String::from("README.md"), include_str!("../README.md").to_string())];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
        }
    }
    for (file, text) in files {
        for line in text.lines() {
            // A command: `redis-cli` followed by an argument (flag or command name).
            for (at, _) in line.match_indices("redis-cli ") {
                let rest = &line[at + "redis-cli ".len()..];
                let is_command = rest.starts_with('-') || rest.starts_with(|c: char| c.is_ascii_uppercase());
                if is_command {
                    assert!(rest.starts_with("-p ") || rest.starts_with("-h "), "{file}: bare redis-cli: {line}");
                }
            }
        }
    }
    assert!(include_str!("../README.md").contains("redis-cli -p 7878 -3"), "the README shows RESP3 mode");
}

/// At debug level the daemon logs connections (accepted, closed) and every error reply it
/// sends, so an operator can see who got refused and why.
#[test]
fn debug_logs_show_connections_and_error_replies() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let child = Command::new(BIN)
        .args(["serve", "--listen", &addr, "--data"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info,logbook_server=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut socket = loop {
        if let Ok(socket) = std::net::TcpStream::connect(&addr) {
            break socket;
        }
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::io::{Read, Write};
    socket.write_all(b"FROBNICATE\r\nQUIT\r\n").unwrap();
    let mut reply = Vec::new();
    socket.read_to_end(&mut reply).unwrap();
    assert!(String::from_utf8_lossy(&reply).starts_with("-ERR unknown command"), "{reply:?}");
    drop(socket);
    std::thread::sleep(Duration::from_millis(200));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    for needle in ["connection accepted", "error reply", "unknown command 'FROBNICATE'", "connection closed"] {
        assert!(log.contains(needle), "no '{needle}' in the debug log:\n{log}");
    }
}

/// A reader that stops reading (`| head`) ends the program quietly with status 141, as
/// SIGPIPE would: no panic and no backtrace on standard error.
#[test]
fn a_closed_pipe_ends_the_program_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // More than a pipe holds (64 KiB), so the write cannot finish before the reader is gone.
    let mut child = Command::new(BIN)
        .args(["demo", "--orders", "2000", "--json", "--data", data.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before reading anything
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{out:?}");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
