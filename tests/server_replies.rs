//! Replies to appends that the writer thread writes (`pipeline::AnsweredByWriter`): a short run
//! of appends that ends what a client sent, while other appends are in flight in the store, is
//! not waited for by its connection's thread; the writer writes the replies right after the
//! fsync. These tests hold it to the rules a thread-per-request answer keeps: replies in
//! request order (a refused append in the middle of a run included), and nothing lost when the
//! client is not reading (the bytes the socket does not take go out once it reads).

mod server_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use server_support::{info_stat, TestServer};

/// One command as a RESP array of bulk strings.
/// The send cap is process-wide: the tests that set it take turns (each resets it at its end).
static CAPPED_SENDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

/// Reads one reply: an array of integers, or an error line.
fn read_reply(reader: &mut BufReader<TcpStream>) -> Result<Vec<i64>, String> {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a reply line");
    let line = line.trim_end();
    if let Some(error) = line.strip_prefix('-') {
        return Err(error.to_string());
    }
    let count: usize = line.strip_prefix('*').unwrap_or_else(|| panic!("an array, got {line:?}")).parse().unwrap();
    (0..count)
        .map(|_| {
            let mut item = String::new();
            reader.read_line(&mut item).expect("an item");
            Ok(item.trim_end().strip_prefix(':').expect("an integer").parse().unwrap())
        })
        .collect()
}

#[test]
fn concurrent_runs_with_a_refused_append_in_the_middle_get_their_replies_in_order() {
    let server = TestServer::start();
    let clients = 8;
    let rounds = 120;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let stream = format!("order-{c}");
                let mut socket = TcpStream::connect(addr).unwrap();
                socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut reader = BufReader::new(socket.try_clone().unwrap());
                for round in 0..rounds {
                    // Versions before this round: two appends per round.
                    let version = 2 * round;
                    let mut run = resp(&["APPEND", &stream, "T", "a", "EXPECTED", &version.to_string()]);
                    // Refused when it is staged, before the first append is durable: its reply
                    // is ready first, and must still come second.
                    run.extend(resp(&["APPEND", &stream, "T", "x", "EXPECTED", "0"]));
                    run.extend(resp(&["APPEND", &stream, "T", "b"]));
                    socket.write_all(&run).unwrap();
                    let first = read_reply(&mut reader).expect("the first append is taken");
                    assert_eq!(first[0], (version + 1) as i64, "client {c} round {round}: first reply first");
                    let refused = read_reply(&mut reader).expect_err("the second append is refused");
                    assert!(refused.starts_with("WRONGVERSION"), "client {c} round {round}: {refused}");
                    let third = read_reply(&mut reader).expect("the third append is taken");
                    assert_eq!(third[0], (version + 2) as i64, "client {c} round {round}: third reply third");
                    assert!(third[1] > first[1], "positions follow the request order");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let answered = info_stat(&mut server.redis(), "runs_answered_by_writer");
    assert!(answered > 0, "no run was answered by the writer: the test did not test it");
    eprintln!("{answered} of {} runs answered by the writer", clients * rounds);
}

#[test]
fn replies_the_socket_does_not_take_go_out_from_the_connections_thread() {
    // Every writer-side send writes at most 3 bytes, as if the socket were all but full: the
    // rest of each run's replies is left to the connection's thread, which is in a read the
    // waiting client will not end, and must wake to write them.
    let _capped = CAPPED_SENDS.lock().unwrap_or_else(|e| e.into_inner());
    logbook_server::testing::cap_writer_sends(3);
    let server = TestServer::start();
    let clients = 4;
    let rounds = 60;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut con = server_support::connect(&format!("redis://{addr}/"));
                for round in 0..rounds {
                    let reply: Vec<i64> = redis::cmd("APPEND")
                        .arg(format!("left-{c}"))
                        .arg("T")
                        .arg("x")
                        .arg("EXPECTED")
                        .arg(round)
                        .query(&mut con)
                        .unwrap_or_else(|e| panic!("client {c} round {round}: {e}"));
                    assert_eq!(reply[0], round + 1);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let left = info_stat(&mut server.redis(), "runs_left_to_connection");
    logbook_server::testing::cap_writer_sends(usize::MAX);
    assert!(left > 0, "no run's replies were left to the connection: the test did not test it");
    eprintln!("{left} runs left to the connection");
}

/// A helper thread writes the reply of the command it ran to the socket itself when nothing
/// of the connection waited before it; what the socket does not take (here every send after
/// its first 3 bytes, as if the socket were full) the loop writes, before any later reply.
/// Pipelined PINGs around order commands (run on helpers) come back whole and in order.
#[test]
fn a_helpers_reply_the_socket_does_not_take_goes_out_before_later_replies() {
    let _capped = CAPPED_SENDS.lock().unwrap_or_else(|e| e.into_inner());
    logbook_server::testing::cap_writer_sends(3);
    let server = TestServer::start();
    let before = info_stat(&mut server.redis(), "replies_written_by_helpers");
    let mut socket = server.raw();
    let mut pipeline = Vec::new();
    for i in 0..20 {
        pipeline.extend(resp(&["PING", &format!("before-{i}")]));
        let order = format!("o-{i}");
        let cart = r#"{"retailer_id":"r-1","customer_id":"c-1","currency":"EUR"}"#;
        pipeline.extend(resp(&["ORDER", &order, "CREATE_CART", cart]));
        pipeline.extend(resp(&["PING", &format!("after-{i}")]));
    }
    socket.write_all(&pipeline).unwrap();
    let mut reader = BufReader::new(socket.try_clone().unwrap());
    let mut line = String::new();
    for i in 0..20 {
        for expected in [format!("before-{i}"), String::new(), format!("after-{i}")] {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if expected.is_empty() {
                // The order command's reply: a status line that is not an error.
                assert!(!line.starts_with('-'), "order {i}: {line}");
                skip_value(&mut reader, &line);
            } else {
                assert_eq!(line, format!("${}\r\n", expected.len()), "reply order at {i}");
                line.clear();
                reader.read_line(&mut line).unwrap();
                assert_eq!(line.trim_end(), expected);
            }
        }
    }
    let written = info_stat(&mut server.redis(), "replies_written_by_helpers") - before;
    logbook_server::testing::cap_writer_sends(usize::MAX);
    assert!(written > 0, "no helper wrote a reply itself: the test did not test it");
}

/// Reads the rest of a RESP2 value whose first line is `first`.
fn skip_value(reader: &mut BufReader<TcpStream>, first: &str) {
    use std::io::Read;
    let n = || first[1..].trim_end().parse::<i64>().unwrap();
    match first.as_bytes()[0] {
        b'$' if n() >= 0 => {
            let mut bytes = vec![0u8; n() as usize + 2];
            reader.read_exact(&mut bytes).unwrap();
        }
        b'*' => {
            for _ in 0..n().max(0) {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                skip_value(reader, &line);
            }
        }
        _ => {}
    }
}
