//! The order verbs of the CLI against the real binary: `demo` fills a data directory through
//! the command path, then `order timeline`, `order funnel` and `verify --snapshots` read it.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_logbook");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run logbook")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("utf8")
}

#[test]
fn demo_then_timeline_funnel_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let out = stdout(&run(&["demo", "--orders", "120", "--data", data, "--seed", "7"]));
    assert!(out.contains("generated 120 orders"), "{out}");
    assert!(out.contains("cart-to-order conversion by retailer"), "{out}");
    // The demo prints two timelines; take the first order id it shows.
    let order_id = out
        .lines()
        .find_map(|l| l.strip_prefix("order ").and_then(|rest| rest.split_whitespace().next()))
        .expect("a timeline heading")
        .to_string();
    let timeline = stdout(&run(&["order", "timeline", &order_id, "--data", data]));
    assert!(timeline.contains("— CART_CREATED (customer)"), "{timeline}");
    assert!(timeline.contains("— DELIVERED"), "the happy example is delivered: {timeline}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["order", "timeline", &order_id, "--data", data, "--json"]))).unwrap();
    assert_eq!(json["order_id"], order_id.as_str());
    assert_eq!(json["entries"][0]["event_type"], "CART_CREATED");
    let funnel: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["order", "funnel", "--data", data, "--since", "1d", "--json"]))).unwrap();
    assert!(funnel.is_object(), "{funnel}");
    let text = serde_json::to_string(&funnel).unwrap();
    assert!(text.contains("CART_CREATED"), "{text}");
    let stats: serde_json::Value = serde_json::from_str(&stdout(&run(&["stats", "--data", data, "--json"]))).unwrap();
    for key in ["events", "streams", "segments", "bytes"] {
        assert!(stats[key].as_u64().is_some_and(|n| n > 0), "stats {key}: {stats}");
    }
    assert_eq!(stats["streams"], 120, "one stream per order");
    let verify = stdout(&run(&["verify", "--data", data, "--snapshots"]));
    assert!(verify.contains("ok: no damage found") && verify.contains("snapshots:"), "{verify}");
    // Bad input gets a clear error naming what was wrong.
    let bad = run(&["order", "funnel", "--data", data, "--since", "soon"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since wants"), "{:?}", bad);
    // The same seed again is refused before anything is written.
    let again = run(&["demo", "--orders", "5", "--data", data, "--seed", "7"]);
    assert!(!again.status.success(), "re-running a seed must fail");
}

/// Microseconds of an RFC 3339 UTC instant as the timeline's JSON writes it.
fn entry_time(entries: &[serde_json::Value], event_type: &str) -> i64 {
    let entry = entries.iter().find(|e| e["event_type"] == event_type).unwrap_or_else(|| panic!("no {event_type}"));
    entry["timestamp_us"].as_i64().unwrap()
}

#[test]
fn demo_traffic_spans_a_month_and_timelines_say_where_the_order_is() {
    const MINUTE: i64 = 60_000_000;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let before = logbook::time::now_us();
    let out = stdout(&run(&["demo", "--orders", "150", "--data", data, "--seed", "11"]));
    let happy = out
        .lines()
        .find_map(|l| l.strip_prefix("order ").and_then(|rest| rest.split_whitespace().next()))
        .expect("a timeline heading")
        .to_string();

    // A month of traffic: events on most of the last 30 days, none in the future.
    let funnel: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["order", "funnel", "--data", data, "--json"]))).unwrap();
    let days = funnel["per_day"].as_array().unwrap();
    assert!(days.len() >= 25, "events on {} days: {}", days.len(), funnel["per_day"]);
    for day in days {
        let start = day["start_us"].as_i64().unwrap();
        assert!(start >= before - 31 * DAY && start <= logbook::time::now_us(), "{day}");
    }
    assert!(out.contains("funnel by day (UTC)\nday "), "{out}");

    // The gaps a real order has: checkout minutes after the cart, shipping a day or two after
    // the payment, delivery days after shipping.
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["order", "timeline", &happy, "--data", data, "--json"]))).unwrap();
    let entries = json["entries"].as_array().unwrap();
    let gap = |from: &str, to: &str| entry_time(entries, to) - entry_time(entries, from);
    let cart_to_checkout = gap("CART_CREATED", "CHECKOUT_STARTED");
    assert!((MINUTE..HOUR).contains(&cart_to_checkout), "cart to checkout: {cart_to_checkout} us");
    let paid_to_shipped = gap("PAYMENT_CONFIRMED", "SHIPPED");
    assert!((12 * HOUR..3 * DAY).contains(&paid_to_shipped), "paid to shipped: {paid_to_shipped} us");
    let shipped_to_delivered = gap("SHIPPED", "DELIVERED");
    assert!((DAY..8 * DAY).contains(&shipped_to_delivered), "shipped to delivered: {shipped_to_delivered} us");

    // The text opens with where the order is; a new day gets a date line.
    let text = stdout(&run(&["order", "timeline", &happy, "--data", data]));
    let status = text.lines().nth(1).unwrap_or_default();
    for needle in ["DELIVERED", "items", "paid ", "tracking BD", "last change 20"] {
        assert!(status.contains(needle), "status line lacks {needle:?}: {status}\n{text}");
    }
    let date_lines = text.lines().filter(|l| l.len() == 10 && l.as_bytes()[4] == b'-').count();
    assert!(date_lines >= 2, "shipping and delivery are on different days:\n{text}");
}

#[test]
fn a_unique_id_prefix_finds_the_order_and_an_unknown_id_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let out = stdout(&run(&["demo", "--orders", "40", "--data", data, "--seed", "12"]));
    let happy = out
        .lines()
        .find_map(|l| l.strip_prefix("order ").and_then(|rest| rest.split_whitespace().next()))
        .expect("a timeline heading")
        .to_string();
    let text = stdout(&run(&["order", "timeline", &happy, "--data", data]));
    let short = stdout(&run(&["order", "timeline", &happy[..8], "--data", data]));
    assert_eq!(short, text, "8 characters of the id are enough among 40 orders");
    for unknown in ["nope-no-such-order", "order-ffffffff-0000"] {
        let out = run(&["order", "timeline", unknown, "--data", data]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{unknown}: exit 0 with {}", String::from_utf8_lossy(&out.stdout));
        assert!(stderr.contains("no such order") && stderr.contains(unknown.trim_start_matches("order-")), "{stderr}");
    }
}

#[test]
fn verify_exits_non_zero_on_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let store =
            logbook::Store::open(&data, logbook::Options { segment_bytes: 1024, ..Default::default() }).unwrap();
        for i in 0..40 {
            let event = logbook::NewEvent::new("E", format!("{{\"i\":{i}}}").into_bytes());
            store.append("order-x", logbook::ExpectedVersion::Any, vec![event]).unwrap();
        }
        store.close().unwrap();
    }
    let first = data.join("segments").join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[100] ^= 0xFF;
    std::fs::write(&first, bytes).unwrap();
    let out = run(&["verify", "--data", data.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Corruption") && text.contains("00000000000000000001.seg at byte 64"), "{text}");
}
