//! `logbook import --csv`: the PostgreSQL `order_events` table of the design into order
//! streams. With PostgreSQL installed (`initdb` on the PATH or in /usr/lib/postgresql/*/bin), a
//! throw-away cluster loads the design's schema and `COPY ... WITH CSV HEADER` exports it;
//! every test also runs on CSV written as COPY writes it (quoting rules: fields with a comma,
//! quote, CR or LF are quoted, quotes doubled; NULL is an empty unquoted field).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use logbook::{Direction, Options, Store};

const BIN: &str = env!("CARGO_BIN_EXE_logbook");
const HEADER: &str =
    "id,order_id,retailer_id,customer_id,event_type,payload,actor,actor_id,created_at,ip_address,user_agent";

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("RUST_LOG", "warn").output().expect("spawn logbook")
}

fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn failure(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Orders 1 and 2 as COPY writes them: rows out of time order, a tie, NULLs, a payload with
/// quotes, commas and a newline, offsets other than UTC.
fn generated_csv() -> String {
    let o1 = "6f1c0000-0000-4000-8000-000000000001";
    let o2 = "77aa0000-0000-4000-8000-000000000002";
    let r = "aaaa0000-0000-4000-8000-00000000000a";
    let c = "cccc0000-0000-4000-8000-00000000000c";
    let id = |n: u32| format!("00000000-0000-4000-8000-{n:012}");
    [
        HEADER.to_string(),
        format!(r#"{},{o1},{r},{c},ITEM_ADDED,"{{""product_id"": ""p-9"", ""quantity"": 2}}",customer,{c},2026-03-01 10:03:45.5+00,10.0.0.1,"Mozilla/5.0 (X11, Linux)""#, id(2)),
        format!(r#"{},{o1},{r},{c},CART_CREATED,{{}},customer,{c},2026-03-01 11:03:21.123456+01,10.0.0.1,curl"#, id(1)),
        format!("{},{o2},{r},,CART_CREATED,\"{{\"\"note\"\": \"\"a, \\\"\"b\\\"\"\\nc\"\"}}\",system,,2026-03-02 08:00:00+00,,\"line one\nline two\"", id(3)),
        format!(r#"{},{o1},{r},{c},PAYMENT_CONFIRMED,"{{""gateway"": ""stripe""}}",system,,2026-03-01 10:04:18+00,,"#, id(4)),
        format!(r#"{},{o1},{r},{c},ORDER_PLACED,{{}},system,,2026-03-01 10:04:18+00,,"#, id(5)),
        format!(r#"{},{o2},{r},,ITEM_ADDED,{{}},admin,retailer_123,2026-03-02 03:30:00-04:30,,"#, id(6)),
    ]
    .join("\n")
        + "\n"
}

fn open(data: &Path) -> Store {
    Store::open(data, Options::default()).unwrap()
}

fn stream(store: &Store, name: &str) -> Vec<(String, i64, String)> {
    store
        .read_stream(name, 1, 100, Direction::Forward)
        .unwrap()
        .iter()
        .map(|e| (e.event_type().to_string(), e.timestamp_us(), e.id().to_string()))
        .collect()
}

#[test]
fn a_copy_csv_imports_each_order_in_time_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("order_events.csv");
    std::fs::write(&csv, generated_csv()).unwrap();
    let data = dir.path().join("data");
    let (csv, data_s) = (csv.to_str().unwrap(), data.to_str().unwrap());

    // Not a store, and no --create: exit 3, nothing created.
    let out = run(&["import", "--csv", csv, "--data", data_s]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!data.exists());

    let summary = ok_json(&["import", "--csv", csv, "--data", data_s, "--create", "--json"]);
    assert_eq!(summary["rows"], 6, "{summary}");
    assert_eq!(summary["orders"], 2);
    assert_eq!(summary["orders_imported"], 2);
    assert_eq!(summary["events_appended"], 6);
    assert_eq!(summary["orders_already_present"], 0);

    // A rerun imports nothing twice.
    let again = ok_json(&["import", "--csv", csv, "--data", data_s, "--json"]);
    assert_eq!((again["events_appended"].as_u64(), again["orders_already_present"].as_u64()), (Some(0), Some(2)));
    assert_eq!(again["rows_skipped"], 6);

    let store = open(&data);
    let at = |t: &str| logbook::time::parse_rfc3339(t).unwrap();
    let one = stream(&store, "order-6f1c0000-0000-4000-8000-000000000001");
    let types: Vec<&str> = one.iter().map(|e| e.0.as_str()).collect();
    // 11:03:21+01 is 10:03:21 UTC, before the 10:03:45 item; the two 10:04:18 rows keep the
    // file's order.
    assert_eq!(types, ["CART_CREATED", "ITEM_ADDED", "PAYMENT_CONFIRMED", "ORDER_PLACED"]);
    assert_eq!(one[0].1, at("2026-03-01T10:03:21.123456Z"));
    assert_eq!(one[1].1, at("2026-03-01T10:03:45.5Z"));
    assert_eq!(one[0].2, "00000000-0000-4000-8000-000000000001", "the row id is the event id");
    let two = store.read_stream("order-77aa0000-0000-4000-8000-000000000002", 1, 10, Direction::Forward).unwrap();
    assert_eq!(two[0].timestamp_us(), at("2026-03-02T08:00:00Z"));
    assert_eq!(two[0].data(), br#"{"note": "a, \"b\"\nc"}"#);
    let meta: serde_json::Value = serde_json::from_slice(two[0].metadata()).unwrap();
    let want = serde_json::json!({"actor": "system", "retailer_id": "aaaa0000-0000-4000-8000-00000000000a",
        "user_agent": "line one\nline two"});
    assert_eq!(meta, want, "NULL columns are left out");
    let meta: serde_json::Value = serde_json::from_slice(two[1].metadata()).unwrap();
    assert_eq!(meta["actor_id"], "retailer_123");
    assert_eq!(two[1].timestamp_us(), at("2026-03-02T08:00:00Z"), "03:30-04:30 is 08:00 UTC");
    store.close().unwrap();

    // The timeline shows the original times.
    let timeline = run(&["order", "timeline", "6f1c", "--data", data_s]);
    let text = String::from_utf8_lossy(&timeline.stdout);
    assert!(timeline.status.success(), "{}", String::from_utf8_lossy(&timeline.stderr));
    assert!(text.contains("2026-03-01") && text.contains("10:03:21") && text.contains("10:04:18"), "{text}");
    assert!(text.contains("(admin:retailer_123)") || !text.contains("77aa"), "{text}");
}

#[test]
fn bad_rows_name_their_line_and_nothing_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let good = generated_csv();
    let row = "00000000-0000-4000-8000-000000000099,o-9,r,,CART_CREATED,{},customer,,2026-03-01 10:00:00+00,,";
    let cases: Vec<(String, &str)> = vec![
        (format!("{good}{}\n", row.replace(",o-9,", ",,")), "line 9: order_id is empty"),
        (format!("{good}{}\n", row.replace("2026-03-01 10:00:00+00", "yesterday")), "line 9: created_at 'yesterday'"),
        (format!("{good}{}\n", row.replace(",{},", ",{oops,")), "line 9: payload is not JSON"),
        (format!("{good}{}\n", row.replace(",,2026", ",2026")), "line 9: 10 columns, want 11"),
        (format!("{good}{}\n", row.replace("-000000000099,", "-000000000001,")), "also on line 3"),
        (
            format!("{good}{}\n", row.replace("00000000-0000-4000-8000-000000000099", "17")),
            "line 9: id '17' is not a UUID",
        ),
        (good.replace("user_agent", "agent"), "line 1: unknown column 'agent'"),
        (String::new(), "the file is empty"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let csv = dir.path().join(format!("bad-{i}.csv"));
        std::fs::write(&csv, text).unwrap();
        let err = failure(&["import", "--csv", csv.to_str().unwrap(), "--data", data_s, "--create"]);
        assert!(err.contains(want) && err.contains("nothing was imported"), "case {i}: want {want:?} in {err}");
    }
    let store = open(&data);
    assert_eq!(store.stream_count(), 0, "the good rows before the bad one were not imported either");
    store.close().unwrap();
}

#[test]
fn an_order_that_gained_rows_gets_the_new_ones_and_foreign_events_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let first = dir.path().join("first.csv");
    std::fs::write(&first, generated_csv()).unwrap();
    ok_json(&["import", "--csv", first.to_str().unwrap(), "--data", data_s, "--create", "--json"]);
    // A later export: order 1 gained a row.
    let more = dir.path().join("more.csv");
    let o1 = "6f1c0000-0000-4000-8000-000000000001";
    let extra = format!("00000000-0000-4000-8000-000000000007,{o1},r,,SHIPPED,{{}},admin,,2026-03-01 10:42:00+00,,\n");
    std::fs::write(&more, generated_csv() + &extra).unwrap();
    let summary = ok_json(&["import", "--csv", more.to_str().unwrap(), "--data", data_s, "--json"]);
    assert_eq!(summary["orders_extended"], 1, "{summary}");
    assert_eq!((summary["events_appended"].as_u64(), summary["rows_skipped"].as_u64()), (Some(1), Some(6)));
    assert_eq!(summary["orders_already_present"], 1);
    let store = open(&data);
    let types: Vec<String> = stream(&store, &format!("order-{o1}")).into_iter().map(|e| e.0).collect();
    assert_eq!(types.last().map(String::as_str), Some("SHIPPED"));
    assert_eq!(types.len(), 5);
    // A stream holding events that are not the file's rows: refused, naming the order.
    let o3 = "99990000-0000-4000-8000-000000000003";
    store
        .append(
            &format!("order-{o3}"),
            logbook::ExpectedVersion::Any,
            vec![logbook::NewEvent::new("X", b"{}".to_vec())],
        )
        .unwrap();
    store.close().unwrap();
    let third = dir.path().join("third.csv");
    let row =
        format!("00000000-0000-4000-8000-000000000008,{o3},r,,CART_CREATED,{{}},customer,,2026-03-01 10:00:00+00,,\n");
    std::fs::write(&third, generated_csv() + &row).unwrap();
    let err = failure(&["import", "--csv", third.to_str().unwrap(), "--data", data_s]);
    assert!(err.contains(&format!("order {o3}")) && err.contains("line 9") && err.contains("already holds 1"), "{err}");
    // The earlier orders were there already (order 1 with one event more than this file has).
    assert!(err.contains("0 orders imported before it, 2 already present"), "{err}");
}

#[test]
fn a_tenant_import_goes_to_the_tenants_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("order_events.csv");
    std::fs::write(&csv, generated_csv()).unwrap();
    let data = dir.path().join("data");
    let summary = ok_json(&[
        "import",
        "--csv",
        csv.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--create",
        "--tenant",
        "acme",
        "--json",
    ]);
    assert_eq!((summary["events_appended"].as_u64(), summary["tenant"].as_str()), (Some(6), Some("acme")));
    let store = open(&data);
    let ns = logbook::Namespace::new("acme").unwrap();
    assert_eq!(store.stream_version(&ns.stored_name("order-6f1c0000-0000-4000-8000-000000000001")), 4);
    assert_eq!(store.stream_version("order-6f1c0000-0000-4000-8000-000000000001"), 0);
    store.close().unwrap();
    let err = failure(&["import", "--csv", csv.to_str().unwrap(), "--data", data.to_str().unwrap(), "--tenant", "a:b"]);
    assert!(err.contains("--tenant"), "{err}");
}

/// A throw-away PostgreSQL cluster in a temporary directory, listening on a Unix socket only;
/// stopped when dropped. Run as the `postgres` user when the test runs as root (initdb refuses root).
struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
    _temp: tempfile::TempDir,
}

impl Postgres {
    fn find_bin() -> Option<PathBuf> {
        let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .collect();
        candidates.sort();
        candidates.into_iter().rev().find(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn start() -> Option<Postgres> {
        let bin = Self::find_bin()?;
        let uid = Command::new("id").arg("-u").output().ok()?;
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let temp = tempfile::Builder::new().prefix("pg").tempdir_in("/tmp").ok()?;
        let dir = temp.path().to_path_buf();
        if as_postgres {
            let ids = Command::new("id").args(["-u", "postgres"]).output().ok()?;
            let uid: u32 = String::from_utf8_lossy(&ids.stdout).trim().parse().ok()?;
            std::os::unix::fs::chown(&dir, Some(uid), None).ok()?;
        }
        let pg = Postgres { bin, dir, as_postgres, _temp: temp };
        let data = pg.dir.join("cluster");
        let init =
            pg.command("initdb").args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"]).arg(&data).output().ok()?;
        if !init.status.success() {
            eprintln!("initdb failed, skipping: {}", String::from_utf8_lossy(&init.stderr));
            return None;
        }
        let options = format!("-k {} -c listen_addresses='' -c fsync=off", pg.dir.display());
        // -l: the server's output goes to a file, not to pipes this test would wait on.
        let log = pg.dir.join("log");
        let started = pg
            .command("pg_ctl")
            .args(["-w", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "start"])
            .output()
            .ok()?;
        if !started.status.success() {
            eprintln!("pg_ctl start failed, skipping: {}", String::from_utf8_lossy(&started.stderr));
            return None;
        }
        Some(pg)
    }

    fn psql(&self, sql: &str) -> Vec<u8> {
        let out = self
            .command("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args(["-U", "postgres", "-d", "postgres", "-At", "-c", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D"])
            .arg(self.dir.join("cluster"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

#[test]
fn the_designs_table_exported_by_postgresql_imports_with_its_times() {
    let Some(pg) = Postgres::start() else {
        eprintln!("PostgreSQL (initdb, pg_ctl) not found: this test ran on the generated CSV only");
        return;
    };
    // The design's schema (seed 000), with the table it references.
    pg.psql(
        "CREATE TABLE orders (id UUID PRIMARY KEY);
         CREATE TABLE order_events (
           id UUID DEFAULT gen_random_uuid() PRIMARY KEY,
           order_id UUID NOT NULL REFERENCES orders(id),
           retailer_id UUID NOT NULL,
           customer_id UUID,
           event_type TEXT NOT NULL,
           payload JSONB NOT NULL DEFAULT '{}',
           actor TEXT NOT NULL,
           actor_id UUID,
           created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
           ip_address TEXT,
           user_agent TEXT);
         CREATE INDEX idx_order_events_order_id ON order_events(order_id, created_at);
         INSERT INTO orders SELECT gen_random_uuid() FROM generate_series(1, 40);
         INSERT INTO order_events (order_id, retailer_id, customer_id, event_type, payload, actor, actor_id,
                                   created_at, ip_address, user_agent)
         SELECT o.id, '00000000-0000-0000-0000-0000000000aa', CASE WHEN s % 3 = 0 THEN NULL ELSE gen_random_uuid() END,
                (ARRAY['CART_CREATED','ITEM_ADDED','CHECKOUT_STARTED','PAYMENT_CONFIRMED','ORDER_PLACED'])[s],
                jsonb_build_object('step', s, 'note', 'a \"quoted\", comma, and' || chr(10) || 'newline', 'euro', '€'),
                CASE WHEN s < 4 THEN 'customer' ELSE 'system' END, NULL,
                TIMESTAMPTZ '2026-03-01 10:00:00+00' + (random() * interval '20 days') + s * interval '1 minute'
                  + (CASE WHEN s = 5 THEN interval '0' ELSE interval '0.123456 seconds' END),
                CASE WHEN s < 4 THEN '10.0.0.' || s END, CASE WHEN s = 2 THEN 'Mozilla/5.0 (X11; Linux)' END
         FROM orders o CROSS JOIN generate_series(1, 5) s;",
    );
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("order_events.csv");
    // Exported in a time zone with a half-hour offset: created_at comes out as ...+05:30.
    std::fs::write(&csv, pg.psql("SET TIME ZONE 'Asia/Kolkata'; COPY order_events TO STDOUT WITH CSV HEADER")).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with(HEADER) && text.contains("+05:30"), "{}", &text[..text.len().min(400)]);

    let data = dir.path().join("data");
    let (csv_s, data_s) = (csv.to_str().unwrap(), data.to_str().unwrap());
    let summary = ok_json(&["import", "--csv", csv_s, "--data", data_s, "--create", "--json"]);
    assert_eq!((summary["rows"].as_u64(), summary["orders_imported"].as_u64()), (Some(200), Some(40)), "{summary}");
    let again = ok_json(&["import", "--csv", csv_s, "--data", data_s, "--json"]);
    assert_eq!((again["events_appended"].as_u64(), again["orders_already_present"].as_u64()), (Some(0), Some(40)));

    // Every event: the row's id, its created_at to the microsecond, its payload as JSON.
    let rows = pg.psql(
        "SELECT id, order_id, (extract(epoch FROM created_at) * 1000000)::bigint, payload::text
         FROM order_events ORDER BY order_id, created_at",
    );
    let store = open(&data);
    let mut seen = 0;
    for line in String::from_utf8(rows).unwrap().split('\n').filter(|l| l.contains('|')) {
        // payload holds a newline: only the first line of each row has the columns before it.
        let cols: Vec<&str> = line.splitn(4, '|').collect();
        if cols.len() < 4 || uuid::Uuid::parse_str(cols[0]).is_err() {
            continue;
        }
        let events = store.read_stream(&format!("order-{}", cols[1]), 1, 10, Direction::Forward).unwrap();
        let event = events.iter().find(|e| e.id().to_string() == cols[0]).expect("every row imported");
        assert_eq!(event.timestamp_us(), cols[2].parse::<i64>().unwrap(), "row {}", cols[0]);
        let data: serde_json::Value = serde_json::from_slice(event.data()).unwrap();
        assert_eq!(data["euro"], "€");
        assert!(events.windows(2).all(|w| w[0].timestamp_us() <= w[1].timestamp_us()));
        seen += 1;
    }
    assert_eq!(seen, 200);
    let order = store.streams_with_prefix("order-", 1).remove(0);
    let first = store.read_stream(&order, 1, 1, Direction::Forward).unwrap().remove(0);
    store.close().unwrap();
    let timeline = run(&["order", "timeline", &order, "--data", data_s]);
    let text = String::from_utf8_lossy(&timeline.stdout);
    assert!(text.contains(&logbook::time::hms(first.timestamp_us())), "{text}");
}

/// `admin` is the daemon's admin identity, not a tenant: importing under it would write
/// streams no tenant can see, so it is refused before anything is written.
#[test]
fn import_refuses_the_admin_name_as_a_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("order_events.csv");
    std::fs::write(
        &csv,
        "id,order_id,retailer_id,customer_id,event_type,payload,actor,actor_id,created_at,ip_address,user_agent\n\
         6f1c0000-0000-4000-8000-000000000001,o-1,r,c,CART_CREATED,{},customer,c,2026-03-01 10:03:21+00,,\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logbook"))
        .args([
            "import",
            "--csv",
            csv.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--create",
            "--tenant",
            "admin",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the admin identity, not a tenant"), "{out:?}");
}

#[test]
fn a_new_row_older_than_the_stored_ones_is_refused_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let first = dir.path().join("first.csv");
    std::fs::write(&first, generated_csv()).unwrap();
    ok_json(&["import", "--csv", first.to_str().unwrap(), "--data", data_s, "--create", "--json"]);
    // Order 1's stored rows run from 10:03:21 to 10:04:18 UTC; a new row at 09:00 cannot go
    // after them (per stream, event times never go back).
    let o1 = "6f1c0000-0000-4000-8000-000000000001";
    let older = format!("00000000-0000-4000-8000-000000000007,{o1},r,,NOTE,{{}},admin,,2026-03-01 09:00:00+00,,\n");
    let more = dir.path().join("more.csv");
    std::fs::write(&more, generated_csv() + &older).unwrap();
    let err = failure(&["import", "--csv", more.to_str().unwrap(), "--data", data_s]);
    assert!(
        err.contains("line 9: row 00000000-0000-4000-8000-000000000007 (2026-03-01T09:00:00.000000Z) is older than")
            && err.contains("the last event stored for the order (2026-03-01T10:04:18.000000Z)"),
        "{err}"
    );
}

#[test]
fn an_unclosed_quote_and_control_characters_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let row = "00000000-0000-4000-8000-000000000099,o-9,r,,CART_CREATED,\"{},customer,,2026-03-01 10:00:00+00,,\nx,y\n";
    let csv = dir.path().join("quote.csv");
    std::fs::write(&csv, format!("{HEADER}\n{row}")).unwrap();
    let err = failure(&["import", "--csv", csv.to_str().unwrap(), "--data", data_s, "--create"]);
    assert!(
        err.contains("line 2: a quoted field opened on this line is not closed before the end of the file"),
        "{err}"
    );
    let nul = "00000000-0000-4000-8000-000000000001\0,o-9,r,,CART_CREATED,{},customer,,2026-03-01 10:00:00+00,,\n";
    std::fs::write(&csv, format!("{HEADER}\n{nul}")).unwrap();
    let err = failure(&["import", "--csv", csv.to_str().unwrap(), "--data", data_s, "--create"]);
    assert!(
        err.contains(r"id '00000000-0000-4000-8000-000000000001\0' is not a UUID") && !err.contains('\0'),
        "{err:?}"
    );
}

#[test]
fn the_funnel_counts_every_tenants_orders_or_one_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("order_events.csv");
    std::fs::write(&csv, generated_csv()).unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    ok_json(&["import", "--csv", csv.to_str().unwrap(), "--data", data_s, "--create", "--tenant", "acme", "--json"]);
    let events = |extra: &[&str]| {
        let mut args = vec!["order", "funnel", "--data", data_s, "--json"];
        args.extend_from_slice(extra);
        ok_json(&args)["events"].as_u64().unwrap()
    };
    // The operator's funnel counts the tenant's imported orders; one tenant's, only its own.
    assert_eq!(events(&[]), 6);
    assert_eq!(events(&["--tenant", "acme"]), 6);
    assert_eq!(events(&["--tenant", "globex"]), 0);
    let bad = failure(&["order", "funnel", "--data", data_s, "--tenant", "a:b"]);
    assert!(bad.contains("--tenant"), "{bad}");
}
