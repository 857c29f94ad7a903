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
