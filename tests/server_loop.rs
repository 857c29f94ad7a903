//! The event loops never wait: a command that can take long (an extension's, a long read)
//! runs on a helper thread, and every other client of the loop is served meanwhile.

mod server_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logbook::{Namespace, Store};
use logbook_protocol::{CommandDoc, Value};
use logbook_server::{CommandExtension, Config, Extensions};
use server_support::*;

/// `HOLD`: replies `+held` once the test lets it go (it waits up to 30 s).
struct Hold {
    started: AtomicBool,
    released: Mutex<bool>,
    release: std::sync::Condvar,
}

impl CommandExtension for Hold {
    fn name(&self) -> &'static str {
        "HOLD"
    }

    fn doc(&self) -> CommandDoc {
        CommandDoc {
            name: "HOLD",
            summary: "Waits until the test releases it",
            group: "test",
            since: "0.1.0",
            arguments: &[],
        }
    }

    fn call(&self, _store: &Store, _namespace: Option<&Namespace>, _args: Vec<Vec<u8>>) -> Value {
        self.started.store(true, Ordering::Release);
        let released = self.released.lock().unwrap();
        let (released, _) = self.release.wait_timeout_while(released, Duration::from_secs(30), |r| !*r).unwrap();
        Value::SimpleString(if *released { "held" } else { "timed out" }.into())
    }
}

fn helper_threads(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("clients").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("helper_threads:"))
        .expect("helper_threads in INFO clients")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_slow_extension_command_does_not_hold_up_the_other_clients() {
    let hold =
        Arc::new(Hold { started: AtomicBool::new(false), released: Mutex::new(false), release: Default::default() });
    let extensions = Extensions::new().with(Arc::clone(&hold) as Arc<dyn CommandExtension>).unwrap();
    let server = TestServer::start_with_extensions(Config::default(), extensions);

    let url = server.url();
    let held = std::thread::spawn(move || {
        let mut con = connect(&url);
        redis::cmd("HOLD").query::<String>(&mut con).unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hold.started.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline, "HOLD never started");
        std::thread::sleep(Duration::from_millis(1));
    }

    // While HOLD waits, other clients (on the same loop: 2 cores run one) are answered.
    let mut other = server.redis();
    other.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let pong: String = redis::cmd("PING").query(&mut other).expect("PING answered while HOLD waits");
    assert_eq!(pong, "PONG");
    let appended: Vec<i64> =
        redis::cmd("APPEND").arg("order-1").arg("ORDER_PLACED").arg("{}").query(&mut other).expect("APPEND answered");
    assert_eq!(appended[0], 1);
    assert_eq!(helper_threads(&mut other), 1, "HOLD runs on a helper thread");

    *hold.released.lock().unwrap() = true;
    hold.release.notify_all();
    assert_eq!(held.join().unwrap(), "held");
}

#[test]
fn long_reads_run_on_a_helper_and_short_ones_on_the_loop() {
    let server = TestServer::start();
    let mut con = server.redis();
    let events: Vec<String> = (0..200).map(|i| format!("{{\"type\":\"ITEM_ADDED\",\"data\":{{\"n\":{i}}}}}")).collect();
    let _: redis::Value =
        redis::cmd("APPENDMANY").arg("order-long").arg(format!("[{}]", events.join(","))).query(&mut con).unwrap();
    let _: redis::Value =
        redis::cmd("APPEND").arg("order-short").arg("ORDER_PLACED").arg("{}").query(&mut con).unwrap();

    // Short: a stream of one event, a READALL of COUNT 10, VERSION.
    assert_eq!(events_of(redis::cmd("READ").arg("order-short").query(&mut con).unwrap()), 1);
    assert_eq!(events_of(redis::cmd("READALL").arg("COUNT").arg(10).query(&mut con).unwrap()), 10);
    assert_eq!(events_of(redis::cmd("READ").arg("order-long").arg("COUNT").arg(100).query(&mut con).unwrap()), 100);
    assert_eq!(helper_threads(&mut con), 0, "short reads run on the loop");

    // Long: all 200 events of a stream, a READALL over 201 positions.
    assert_eq!(events_of(redis::cmd("READ").arg("order-long").query(&mut con).unwrap()), 200);
    assert_eq!(helper_threads(&mut con), 1, "a READ of 200 events ran on a helper");
    assert_eq!(events_of(redis::cmd("READALL").query(&mut con).unwrap()), 201);
    assert_eq!(helper_threads(&mut con), 1, "the idle helper was used again");
}

fn events_of(value: redis::Value) -> usize {
    events(value).len()
}

#[test]
fn batches_pipelined_among_appends_are_applied_and_answered_in_order() {
    let server = TestServer::start();
    let mut con = server.redis();
    let batch = |expected: &str| {
        format!(
            r#"[{{"stream":"order-7","expected":{expected},"events":[{{"type":"PAYMENT_CONFIRMED","data":{{}}}}]}},{{"stream":"stock-9","events":[{{"type":"STOCK_RESERVED","data":{{"qty":1}}}}]}}]"#
        )
    };
    let mut pipe = redis::pipe();
    pipe.cmd("APPEND").arg("order-7").arg("ORDER_PLACED").arg("{}").arg("EXPECTED").arg("none");
    pipe.cmd("APPENDBATCH").arg(batch("1")); // sees the APPEND before it
    pipe.cmd("APPENDBATCH").arg(batch("1")); // refused: order-7 is at 2 now; nothing written
    pipe.cmd("APPEND").arg("order-7").arg("ORDER_SHIPPED").arg("{}").arg("EXPECTED").arg(2);
    pipe.cmd("PING");
    pipe.cmd("QUIT");
    let mut raw = server.raw();
    let replies = String::from_utf8(send_raw(&mut raw, &pipe.get_packed_pipeline())).unwrap();
    assert_eq!(
        replies,
        "*2\r\n:1\r\n:1\r\n\
         *2\r\n*3\r\n:2\r\n:2\r\n:2\r\n*3\r\n:1\r\n:1\r\n:3\r\n\
         -WRONGVERSION 0 expected 1 actual 2\r\n\
         *2\r\n:3\r\n:4\r\n\
         +PONG\r\n\
         +OK\r\n"
    );
    let version: i64 = redis::cmd("VERSION").arg("stock-9").query(&mut con).unwrap();
    assert_eq!(version, 1, "the refused batch wrote nothing");
}

/// Review 26: a filtered READALL scans from FROM to the head whatever its COUNT, GROUP INFO
/// counts over the group's range, a long STREAMS lists many: none runs on the loop.
#[test]
fn scans_whose_length_count_does_not_bound_run_on_a_helper() {
    let server = TestServer::start();
    let mut con = server.redis();
    let events: Vec<String> = (0..200).map(|i| format!(r#"{{"type":"ITEM_ADDED","data":{{"n":{i}}}}}"#)).collect();
    let _: redis::Value =
        redis::cmd("APPENDMANY").arg("order-long").arg(format!("[{}]", events.join(","))).query(&mut con).unwrap();
    // Unfiltered with a small COUNT: on the loop.
    assert_eq!(events_of(redis::cmd("READALL").arg("COUNT").arg(5).query(&mut con).unwrap()), 5);
    assert_eq!(helper_threads(&mut con), 0);
    // A PREFIX that matches nothing, COUNT 1: the scan walks all 200 positions.
    let none = redis::cmd("READALL").arg("FROM").arg(1).arg("COUNT").arg(1).arg("PREFIX").arg("zzz").query(&mut con);
    assert_eq!(events_of(none.unwrap()), 0);
    assert_eq!(helper_threads(&mut con), 1, "the filtered scan ran on a helper");
}

/// Review 26: a request of more than 64 KiB (an APPENDMANY of 1,000 events) is parsed and run
/// on a helper thread, in order with the requests around it.
#[test]
fn a_request_over_64_kib_is_parsed_on_a_helper_in_order() {
    let server = TestServer::start();
    let mut con = server.redis();
    let events: Vec<String> = (0..1000)
        .map(|i| format!(r#"{{"type":"ITEM_ADDED","data":{{"n":{i},"note":"{}"}}}}"#, "x".repeat(60)))
        .collect();
    let big = format!("[{}]", events.join(","));
    assert!(big.len() > 64 * 1024);
    let mut pipe = redis::pipe();
    pipe.cmd("APPEND").arg("order-big").arg("CART_CREATED").arg("{}");
    pipe.cmd("APPENDMANY").arg("order-big").arg(&big).arg("EXPECTED").arg(1);
    pipe.cmd("APPEND").arg("order-big").arg("ORDER_PLACED").arg("{}").arg("EXPECTED").arg(1001);
    pipe.cmd("QUIT");
    let mut raw = server.raw();
    let replies = String::from_utf8(send_raw(&mut raw, &pipe.get_packed_pipeline())).unwrap();
    assert_eq!(replies, "*2\r\n:1\r\n:1\r\n*3\r\n:2\r\n:1001\r\n:1001\r\n*2\r\n:1002\r\n:1002\r\n+OK\r\n");
    assert_eq!(helper_threads(&mut con), 1, "the big APPENDMANY ran on a helper");
}

/// A pipeline far longer than one turn of the loop (32 requests) is answered whole and in
/// order: the connection yields between turns and is taken up again.
#[test]
fn a_long_pipeline_is_answered_whole_across_turns() {
    let server = TestServer::start();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("PING").arg(format!("p{i}"));
    }
    pipe.cmd("QUIT");
    let mut raw = server.raw();
    let replies = String::from_utf8(send_raw(&mut raw, &pipe.get_packed_pipeline())).unwrap();
    let expected: String =
        (0..1000).map(|i| format!("${}\r\np{i}\r\n", format!("p{i}").len())).collect::<String>() + "+OK\r\n";
    assert_eq!(replies, expected);
}

/// Review 26: a client that pipelines requests and reads none of its replies cannot hold a
/// shutdown past `SHUTDOWN_GRACE` (it held it for the idle timeout, 300 s, before).
#[test]
fn a_client_that_reads_nothing_does_not_hold_a_shutdown() {
    use std::io::Write;
    let mut server = TestServer::start();
    let mut con = server.redis();
    let _: redis::Value =
        redis::cmd("APPEND").arg("order-1").arg("ORDER_PLACED").arg("x".repeat(4000)).query(&mut con).unwrap();
    let mut stuck = server.raw();
    let mut pipe = redis::pipe();
    for _ in 0..2000 {
        pipe.cmd("READ").arg("order-1");
    }
    let bytes = pipe.get_packed_pipeline();
    stuck.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = stuck.write_all(&bytes); // may stop part-way once the server stops reading
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    server.shutdown();
    let took = started.elapsed();
    assert!(
        took < logbook_server::SHUTDOWN_GRACE + Duration::from_secs(5),
        "shutdown took {took:?} with a client that reads nothing"
    );
    drop(stuck);
}
