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

/// Review 26: appends that fill the writer's queue do not stop the event loop. A client
/// pipelines more appends than the queue holds (8 here) while the disk takes 2 s per fsync; the
/// loop used to wait in the queue for room, so another client's PING waited for about a dozen
/// fsyncs. Now the run waits for room on its own connection and the loop serves the others:
/// the PING is answered before the first fsync ends (the pipelining client has no reply yet).
#[test]
fn appends_that_fill_the_writers_queue_do_not_hold_up_the_other_clients() {
    use logbook::{Options, SimFileSystem};
    use std::io::{Read, Write};
    const APPENDS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let sim = SimFileSystem::new();
    let options = Options { max_queued_appends: 8, fs: Arc::new(sim.clone()), ..Options::default() };
    let store = Store::open(dir.path(), options).unwrap();
    sim.set_sync_delay(Duration::from_secs(2));
    let config = Config { data: dir.path().to_path_buf(), listen: "127.0.0.1:0".into(), ..Config::default() };
    let server = logbook_server::Server::start_with_store(store, config).unwrap();
    let addr = server.local_addr();

    let mut flooder = std::net::TcpStream::connect(addr).unwrap();
    let mut pipe = redis::pipe();
    for i in 0..APPENDS {
        pipe.cmd("APPEND").arg("order-1").arg("ORDER_PLACED").arg(format!("{{\"n\":{i}}}"));
    }
    flooder.write_all(&pipe.get_packed_pipeline()).unwrap();
    // The queue fills: the loop has a run waiting for room.
    let mut prober = connect(&format!("redis://{addr}/"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while info_stat(&mut prober, "runs_waiting_for_the_queue") == 0 {
        assert!(Instant::now() < deadline, "the appends never filled the writer's queue");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    raw.write_all(b"PING\r\n").unwrap();
    let mut pong = [0u8; 7];
    raw.read_exact(&mut pong).expect("PING answered while the writer's queue is full");
    assert_eq!(&pong, b"+PONG\r\n");
    flooder.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let early = flooder.peek(&mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the PING came after the first fsync ({early:?}): it waited for the writer"
    );

    // Every append is answered, in order, once the disk is fast again.
    sim.set_sync_delay(Duration::ZERO);
    flooder.set_nonblocking(false).unwrap();
    flooder.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut replies = Vec::new();
    let expected: String = (1..=APPENDS).map(|v| format!("*2\r\n:{v}\r\n:{v}\r\n")).collect();
    while replies.len() < expected.len() {
        let mut chunk = [0u8; 4096];
        let n = flooder.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed after {} bytes", replies.len());
        replies.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(String::from_utf8(replies).unwrap(), expected);
    server.shutdown().unwrap();
}

/// Review 27: a connection whose appends wait for room in the writer's queue is not starved by
/// connections that keep the queue full. 24 clients (connected first) pipeline 200 appends at
/// a time and send the next 200 as soon as the replies are in, so the queue of 32 stays full;
/// a client connected after them appends one event at a time. Its appends wait their turn in
/// line behind the runs that waited before them. Before the line, the flooders' new runs took
/// every slot the writer freed and the lone client got almost nothing until the flood ended
/// (this test failed in 2 of 4 runs then: the starvation depends on timing, and once it sets
/// in it lasts).
#[test]
fn a_connection_waiting_for_the_writers_queue_gets_its_turn() {
    use logbook::Options;
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::AtomicUsize;
    const FLOODERS: usize = 24;
    const PER_RUN: usize = 200;
    const VICTIM_APPENDS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let options = Options { max_queued_appends: 32, ..Options::default() };
    let store = Store::open(dir.path(), options).unwrap();
    let config = Config { data: dir.path().to_path_buf(), listen: "127.0.0.1:0".into(), ..Config::default() };
    let server = logbook_server::Server::start_with_store(store, config).unwrap();
    let addr = server.local_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let flooded = Arc::new(AtomicUsize::new(0));
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|f| {
            let socket = std::net::TcpStream::connect(addr).unwrap();
            let (stop, flooded) = (Arc::clone(&stop), Arc::clone(&flooded));
            std::thread::spawn(move || {
                let mut pipe = redis::pipe();
                for _ in 0..PER_RUN {
                    pipe.cmd("APPEND").arg(format!("flood-{f}")).arg("ORDER_PLACED").arg("{}");
                }
                let bytes = pipe.get_packed_pipeline();
                let mut reader = BufReader::new(socket.try_clone().unwrap());
                let mut writer = socket;
                let mut line = String::new();
                while !stop.load(Ordering::Relaxed) {
                    writer.write_all(&bytes).unwrap();
                    for _ in 0..PER_RUN {
                        // `*2` then two integers per reply.
                        for _ in 0..3 {
                            line.clear();
                            reader.read_line(&mut line).unwrap();
                        }
                        assert!(!line.starts_with('-'), "flooder {f} got {line}");
                    }
                    flooded.fetch_add(PER_RUN, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // The flood is on: runs wait for the queue.
    let mut prober = connect(&format!("redis://{addr}/"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while info_stat(&mut prober, "runs_waiting_for_the_queue") < FLOODERS as u64 {
        assert!(Instant::now() < deadline, "the flooders never filled the writer's queue");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut victim = connect(&format!("redis://{addr}/"));
    let flooded_before = flooded.load(Ordering::Relaxed);
    let mut answered = 0;
    let until = Instant::now() + Duration::from_secs(15);
    while answered < VICTIM_APPENDS && Instant::now() < until {
        let _: redis::Value =
            redis::cmd("APPEND").arg("order-victim").arg("ORDER_PLACED").arg("{}").query(&mut victim).unwrap();
        answered += 1;
    }
    let flooded_meanwhile = flooded.load(Ordering::Relaxed) - flooded_before;
    eprintln!("victim: {answered} answered, {flooded_meanwhile} flooded meanwhile, {:?} left", until - Instant::now());
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.join().unwrap();
    }
    assert_eq!(
        answered, VICTIM_APPENDS,
        "the lone client's appends were starved ({flooded_meanwhile} flooded meanwhile)"
    );
    // Its turn came after at most the runs ahead of it, each time: not after the whole flood.
    assert!(
        flooded_meanwhile <= VICTIM_APPENDS * (FLOODERS + 1) * PER_RUN,
        "{flooded_meanwhile} flooded appends went before the lone client's {VICTIM_APPENDS}"
    );
    server.shutdown().unwrap();
}

/// A client that sends many appends in one write (more than one read of the loop takes) and
/// reads no reply until they are stored: every one is stored and answered in order. Whatever
/// the loop reads while a run is out, it must come back for input still in the socket when the
/// run settles, without a new edge from the client (a build that read nothing while a run was
/// out, and was not woken for such input, stored 840 of the 2,000 and stopped).
#[test]
fn appends_sent_in_one_write_are_all_taken_while_the_client_reads_nothing() {
    use std::io::{Read, Write};
    const APPENDS: usize = 2000;
    let server = TestServer::start();
    let mut client = server.raw();
    let mut pipe = redis::pipe();
    for _ in 0..APPENDS {
        pipe.cmd("APPEND").arg("order-1").arg("ORDER_PLACED").arg("x".repeat(100));
    }
    client.write_all(&pipe.get_packed_pipeline()).unwrap();
    let mut prober = server.redis();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let version: u64 = redis::cmd("VERSION").arg("order-1").query(&mut prober).unwrap();
        if version == APPENDS as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "{version} of {APPENDS} appends stored: the rest sat in the socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let expected: String = (1..=APPENDS).map(|v| format!("*2\r\n:{v}\r\n:{v}\r\n")).collect();
    let mut replies = vec![0u8; expected.len()];
    client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    client.read_exact(&mut replies).unwrap();
    assert_eq!(String::from_utf8(replies).unwrap(), expected);
}
