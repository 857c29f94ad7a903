//! The web console as a person sees it: the daemon with the console over a month of demo
//! orders, each page loaded in headless Chromium (Debian's `chromium` and `chromium-driver`,
//! driven by Python selenium: tests/console/browser_check.py), and what the pages show compared
//! with the API and the store.
//!
//! Without chromium, chromedriver or a Python with selenium, the test prints why and passes
//! (a plain `cargo test` on a machine without a browser); `.ci/run` installs them and sets
//! `LOGBOOK_CONSOLE_BROWSER=required`, which turns the skip into a failure. The Python is
//! `LOGBOOK_CONSOLE_PYTHON` (default `python3`). With `LOGBOOK_CONSOLE_SCREENSHOTS=<dir>` the
//! pages are also saved there at 1280×800 and 390×844 (scripts/console-screenshots).

mod server_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use logbook_server::{hash_token_hex, AdminConfig, Config, Server, TenantConfig};
use serde_json::Value as Json;
use server_support::{http_get, ACME_TOKEN, ADMIN_TOKEN, GLOBEX_TOKEN};

/// The first of `names` found on the PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

/// Chromium, chromedriver and a Python with selenium, or why not.
fn browser() -> Result<(PathBuf, PathBuf, String), String> {
    let chromium = on_path(&["chromium", "chromium-browser"]).ok_or("no chromium on the PATH")?;
    let driver = on_path(&["chromedriver"]).ok_or("no chromedriver on the PATH (Debian: chromium-driver)")?;
    let python = std::env::var("LOGBOOK_CONSOLE_PYTHON").unwrap_or_else(|_| "python3".into());
    let selenium = Command::new(&python).args(["-c", "import selenium"]).output();
    match selenium {
        Ok(out) if out.status.success() => Ok((chromium, driver, python)),
        _ => Err(format!("{python} cannot import selenium (set LOGBOOK_CONSOLE_PYTHON to a Python that can)")),
    }
}

fn demo(data: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .args(["demo", "--orders", "40", "--seed", "17", "--data"])
        .arg(data)
        .output()
        .expect("run logbook demo");
    assert!(out.status.success(), "demo: {}", String::from_utf8_lossy(&out.stderr));
}

fn order_cmd(con: &mut redis::Connection, id: &str, command: &str, json: &str) {
    let _: redis::Value = redis::cmd("ORDER").arg(id).arg(command).arg(json).query(con).expect(command);
}

#[test]
fn the_console_pages_in_headless_chromium() {
    let (chromium, driver, python) = match browser() {
        Ok(found) => found,
        Err(why) => {
            assert!(
                std::env::var("LOGBOOK_CONSOLE_BROWSER").as_deref() != Ok("required"),
                "LOGBOOK_CONSOLE_BROWSER=required but {why}"
            );
            eprintln!("skipped the console browser test: {why} (install chromium, chromium-driver and selenium)");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    demo(&data);
    let config = Config {
        data,
        listen: "127.0.0.1:0".into(),
        http: Some("127.0.0.1:0".into()),
        admin: Some(AdminConfig { token_sha256: hash_token_hex(ADMIN_TOKEN.as_bytes()) }),
        tenants: vec![
            TenantConfig { name: "acme".into(), token_sha256: hash_token_hex(ACME_TOKEN.as_bytes()) },
            TenantConfig { name: "globex".into(), token_sha256: hash_token_hex(GLOBEX_TOKEN.as_bytes()) },
        ],
        extensions: logbook_order::server_extensions(),
        ..Config::default()
    };
    let server = Server::start(config).expect("the daemon starts");
    let (resp, http) = (server.local_addr(), server.http_addr().unwrap());
    let mut acme = server_support::connect(&format!("redis://acme:{ACME_TOKEN}@{resp}/"));
    order_cmd(&mut acme, "acme7f3a", "CREATE_CART", r#"{"customer_id":"c-1","currency":"EUR"}"#);
    let mut globex = server_support::connect(&format!("redis://globex:{GLOBEX_TOKEN}@{resp}/"));
    order_cmd(&mut globex, "glob9b0c", "CREATE_CART", r#"{"customer_id":"c-2","currency":"EUR"}"#);
    order_cmd(
        &mut globex,
        "glob9b0c",
        "ADD_ITEM",
        r#"{"product_id":"p-1","quantity":1,"unit_price":{"amount":500,"currency":"EUR"}}"#,
    );

    // A demo order that went far (the page has milestones to show).
    let streams = http_get(http, "/api/streams?prefix=order-&count=100", Some(ADMIN_TOKEN)).json();
    let longest = streams["streams"].as_array().unwrap().iter().max_by_key(|s| s["version"].as_u64()).unwrap().clone();
    let order_id = longest["name"].as_str().unwrap().trim_start_matches("order-").to_string();
    let api_order = http_get(http, &format!("/api/order?id={order_id}"), Some(ADMIN_TOKEN)).json();
    let api_funnel = http_get(http, "/api/funnel?days=30", Some(ADMIN_TOKEN)).json();

    let screenshots = std::env::var("LOGBOOK_CONSOLE_SCREENSHOTS").ok();
    let check = serde_json::json!({
        "chromium": chromium, "chromedriver": driver, "url": format!("http://{http}"), "resp": resp.to_string(),
        "admin_token": ADMIN_TOKEN, "acme_token": ACME_TOKEN, "globex_token": GLOBEX_TOKEN,
        "order": order_id, "acme_order": "acme7f3a", "globex_order": "glob9b0c", "screenshots": screenshots,
    });
    let check_file = dir.path().join("check.json");
    std::fs::write(&check_file, check.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/browser_check.py");
    let out = Command::new(&python).arg(&script).arg(&check_file).output().expect("run the browser check");
    assert!(
        out.status.success(),
        "the browser check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Json = serde_json::from_slice(&out.stdout).expect("the browser check prints JSON");
    let text = |v: &Json| v.as_str().unwrap_or_default().to_string();

    // The order: its status header and its events, in the store's order.
    assert_eq!(text(&seen["who_admin"]), "admin");
    let page = &seen["order"];
    assert_eq!(text(&page["shown_id"]), order_id, "a prefix of the id found the order");
    assert_eq!(text(&page["state"]), text(&api_order["status"]["state"]));
    let status = text(&page["status"]);
    for field in ["STATE", "ITEMS", "AMOUNT PAID", "CARRIER", "TRACKING", "LAST CHANGE"] {
        assert!(status.to_uppercase().contains(field), "{field} in the status header: {status}");
    }
    if let Some(paid) = api_order["status"]["paid"].as_str() {
        assert!(status.contains(paid), "{paid} in {status}");
    }
    if let Some(tracking) = api_order["status"]["tracking"].as_str() {
        assert!(status.contains(tracking), "{tracking} in {status}");
    }
    let api_types: Vec<String> =
        api_order["entries"].as_array().unwrap().iter().map(|e| text(&e["event_type"])).collect();
    let shown_types: Vec<String> = page["types"].as_array().unwrap().iter().map(text).collect();
    assert_eq!(shown_types, api_types, "the timeline shows every event in order");
    assert_eq!(shown_types[0], "CART_CREATED");
    assert!(!page["days"].as_array().unwrap().is_empty(), "date headings");
    let steps: Vec<String> = page["steps"].as_array().unwrap().iter().map(text).collect();
    let api_steps: Vec<String> = api_order["steps"].as_array().unwrap().iter().map(|s| text(&s["text"])).collect();
    assert_eq!(steps, api_steps);
    assert!(steps.iter().any(|s| s.starts_with("paid ") && s.ends_with(" after checkout")), "{steps:?}");
    let first = &api_order["entries"][0];
    assert!(text(&page["first_data"]).contains(&text(&first["data"]["customer_id"])), "the event's data expands");
    assert!(text(&page["first_metadata"]).contains("\"actor\""), "and its metadata");

    // The funnel: a bar per stage, and the API's numbers beside it.
    let funnel = &seen["funnel"];
    assert_eq!(funnel["bars"], 7);
    let rows = funnel["stages"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    for (row, stage) in rows.iter().zip(api_funnel["funnel"]["stages"].as_array().unwrap()) {
        assert_eq!(text(&row[0]), text(&stage["stage"]));
        assert_eq!(text(&row[1]), stage["orders"].to_string(), "{row}");
    }
    let conversion = funnel["conversion"].as_array().unwrap();
    assert_eq!(conversion.len(), api_funnel["conversion"].as_array().unwrap().len());
    assert_eq!(funnel["conversion_bars"].as_u64(), Some(conversion.len() as u64));

    // The stream list, health and the live tail.
    let names: Vec<String> = seen["streams"].as_array().unwrap().iter().map(text).collect();
    assert!(names.len() >= 40 && names.iter().all(|n| n.starts_with("order-")), "{names:?}");
    let health = text(&seen["health"]).to_uppercase();
    for kpi in ["HEAD POSITION", "SEGMENTS", "SEGMENT BYTES", "ARCHIVE", "FSYNC RATE", "FSYNC LATENCY"] {
        assert!(health.contains(kpi), "{kpi} in {health}");
    }
    let tail = text(&seen["tail"]);
    assert!(tail.contains("console-tail-1") && tail.contains("TAIL_CHECKED"), "{tail}");
    assert!(text(&seen["tail_data"]).contains("<img src=x id=injected>"), "markup in data is shown as text");
    assert_eq!(seen["injected_elements"], 0, "markup in data never becomes an element");

    // A tenant: its own order, never another tenant's.
    assert_eq!(text(&seen["who_acme"]), "tenant acme");
    assert_eq!(text(&seen["acme_own_state"]), "CART_CREATED");
    assert!(text(&seen["acme_other_by_id"]).contains("no such order"), "{}", seen["acme_other_by_id"]);
    assert!(text(&seen["acme_other_by_prefix"]).contains("no such order"), "{}", seen["acme_other_by_prefix"]);
    assert_eq!(seen["acme_api_order"][0], 404);
    assert_eq!(seen["acme_api_stream"][1]["version"], 0, "{}", seen["acme_api_stream"]);
    let visible: Vec<String> =
        seen["acme_api_streams"][1]["streams"].as_array().unwrap().iter().map(|s| text(&s["name"])).collect();
    assert_eq!(visible, ["order-acme7f3a"], "only its own streams");
    assert_eq!(seen["acme_api_health"][0], 403);
    let acme_nav = text(&seen["acme_nav"]);
    assert!(acme_nav.contains("Order") && !acme_nav.contains("Health"), "a tenant's navigation: {acme_nav}");
    let acme_tail = text(&seen["acme_tail"]);
    assert!(acme_tail.contains("acme-visible"), "{acme_tail}");
    assert!(!acme_tail.contains("secret-globex") && !acme_tail.contains("GLOBEX_ONLY"), "{acme_tail}");

    // No page scrolls sideways, on a laptop or a phone.
    for (page, widths) in seen["scroll"].as_object().unwrap() {
        let (scroll, viewport) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
        assert!(scroll <= viewport, "{page}: scrollWidth {scroll} > viewport {viewport}");
        // The funnel's numbers fit their card, long retailer ids and all (no swipe inside it).
        if page.starts_with("funnel") {
            assert_eq!(widths[2].as_u64(), Some(0), "{page}: a table scrolls inside its card");
        }
    }
    assert!(seen["scroll"].as_object().unwrap().len() >= 8);
    drop((acme, globex));
    server.shutdown().unwrap();
}
