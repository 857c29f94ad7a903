//! Consumer groups over the wire, through the `redis` crate: each GROUP subcommand and each of
//! its errors, the limits, tenant isolation, READALL leaving `$` system streams out, and a
//! kill -9 of the real daemon in the middle of three consumers reading and acknowledging.

mod server_support;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logbook_server::client::{Client, GroupSpec};
use logbook_server::{Config, Limits};
use redis::Value as R;
use server_support::*;

fn append(con: &mut redis::Connection, stream: &str, ty: &str) -> i64 {
    let reply: Vec<i64> = redis::cmd("APPEND").arg(stream).arg(ty).arg("{}").query(con).unwrap();
    reply[1]
}

fn group(con: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<R> {
    let mut cmd = redis::cmd("GROUP");
    for a in args {
        cmd.arg(*a);
    }
    cmd.query(con)
}

fn positions(reply: R) -> Vec<i64> {
    events(reply).iter().map(|e| field_int(e, "position")).collect()
}

/// GROUP INFO as (key, value) pairs.
fn info(con: &mut redis::Connection, name: &str) -> Vec<(String, R)> {
    fields(&group(con, &["INFO", name]).unwrap())
}

fn info_int(info: &[(String, R)], key: &str) -> i64 {
    match info.iter().find(|(k, _)| k == key) {
        Some((_, R::Int(n))) => *n,
        other => panic!("{key}: {other:?}"),
    }
}

#[test]
fn each_command_works_in_resp2_and_resp3() {
    let server = TestServer::start();
    for (round, mut con) in [server.redis(), server.redis3()].into_iter().enumerate() {
        let g = format!("g{round}");
        let mut all = Vec::new();
        for i in 0..4 {
            all.push(append(&mut con, &format!("order-{round}-{i}"), if i % 2 == 0 { "A" } else { "B" }));
        }
        append(&mut con, &format!("cart-{round}"), "A");
        let ok = group(&mut con, &["CREATE", &g, "FROM", &all[0].to_string(), "PREFIX", "order-", "ACKWAIT", "60000"]);
        assert_eq!(ok.unwrap(), R::Okay);
        // Each event goes to one consumer; the events are READALL's maps.
        let first = group(&mut con, &["READ", &g, "c1", "COUNT", "3"]).unwrap();
        assert_eq!(field_str(&events(first.clone())[0], "stream"), format!("order-{round}-0"));
        assert_eq!(positions(first), all[..3]);
        assert_eq!(positions(group(&mut con, &["READ", &g, "c2", "COUNT", "10"]).unwrap()), all[3..]);
        assert_eq!(positions(group(&mut con, &["READ", &g, "c3"]).unwrap()), Vec::<i64>::new());
        // ACK out of order: the integer is how many were newly acknowledged.
        let acked = group(&mut con, &["ACK", &g, &all[2].to_string(), &all[0].to_string()]).unwrap();
        assert_eq!(acked, R::Int(2));
        assert_eq!(group(&mut con, &["ACK", &g, &all[2].to_string()]).unwrap(), R::Int(0));
        let info = info(&mut con, &g);
        assert_eq!(info_int(&info, "checkpoint"), all[0]);
        assert_eq!(info_int(&info, "pending"), 2);
        assert_eq!(info_int(&info, "delivered"), 4);
        assert_eq!(info_int(&info, "redelivered"), 0);
        assert_eq!(info_int(&info, "failures"), 0);
        assert_eq!(info_int(&info, "ackwait"), 60000);
        assert_eq!(info_int(&info, "from"), all[0]);
        // Everything was delivered: no lag, whatever the acks appended since.
        assert_eq!(info_int(&info, "lag"), 0);
        let consumers = match &info.iter().find(|(k, _)| k == "consumers").unwrap().1 {
            R::Array(items) => {
                items.iter().map(|c| (field_str(c, "name"), field_int(c, "pending"))).collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(consumers, [("c1".to_string(), 1), ("c2".to_string(), 1), ("c3".to_string(), 0)]);
        assert_eq!(group(&mut con, &["DELETE", &g]).unwrap(), R::Okay);
        assert!(error_text(group(&mut con, &["INFO", &g])).contains(&format!("no group '{g}'")));
    }
}

#[test]
fn each_error_names_what_was_wrong() {
    let server = TestServer::start();
    let mut con = server.redis();
    append(&mut con, "s", "A");
    group(&mut con, &["CREATE", "g"]).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["CREATE", "g"], "ERR group 'g' already exists"),
        (&["CREATE", "$x"], "ERR group name '$x' starts with '$'"),
        (&["CREATE", "h", "ACKWAIT", "0"], "ERR ACKWAIT must be between 1 and 86400000"),
        (&["CREATE", "h", "FROM", "0"], "ERR FROM must be a position of at least 1"),
        (&["CREATE", "h", "FROM", "x"], "ERR FROM wants a non-negative integer"),
        (&["CREATE", "h", "FROM", "1", "FROM", "2"], "ERR FROM given more than once"),
        (&["CREATE", "h", "COLOR", "red"], "ERR unknown GROUP CREATE option 'COLOR'"),
        (&["CREATE", "h", "TYPE"], "ERR TYPE needs a value"),
        (&["CREATE"], "ERR wrong number of arguments for 'GROUP' command"),
        (&["PAUSE", "g"], "ERR unknown GROUP subcommand 'PAUSE'"),
        (&["READ", "g"], "ERR wrong number of arguments"),
        (&["READ", "nope", "c"], "ERR no group 'nope'"),
        (&["READ", "g", "c", "COUNT", "0"], "ERR COUNT must be between 1 and 100000"),
        (&["READ", "g", "c", "BLOCK", "-1"], "ERR BLOCK wants a non-negative integer"),
        (&["ACK", "g"], "ERR wrong number of arguments"),
        (&["ACK", "g", "0"], "ERR GROUP ACK position must be at least 1"),
        (&["ACK", "g", "abc"], "ERR GROUP ACK position wants a non-negative integer"),
        (&["ACK", "g", "999"], "ERR position 999 is outside 1..="),
        (&["ACK", "nope", "1"], "ERR no group 'nope'"),
        (&["INFO", "nope"], "ERR no group 'nope'"),
        (&["INFO", "g", "extra"], "ERR wrong number of arguments"),
        (&["DELETE", "nope"], "ERR no group 'nope'"),
        (&["DELETE", "a b"], "ERR group name must not contain whitespace"),
    ];
    for (args, expected) in cases {
        let text = error_text(group(&mut con, args));
        assert!(text.starts_with(expected), "GROUP {args:?}: {text}");
        assert!(!text.contains(&server.dir.path().display().to_string()), "{text}");
    }
    // Nothing was changed by the refused commands.
    assert_eq!(group(&mut con, &["READ", "g", "c"]).map(positions).unwrap(), [1]);
    // An ACK of a position never delivered to the group is ignored (as XACK does).
    let never = append(&mut con, "s", "A");
    assert_eq!(group(&mut con, &["ACK", "g", &never.to_string()]).unwrap(), R::Int(0));
    // Before AUTH (with tenants), every subcommand is NOAUTH.
    let tenants = TestServer::with_tenants();
    let mut anon = tenants.redis();
    assert_eq!(code_of(group(&mut anon, &["INFO", "g"])), "NOAUTH");
}

#[test]
fn limits_are_enforced() {
    let limits = Limits {
        max_groups: 2,
        max_group_consumers: 2,
        max_group_pending: 3,
        max_ack_positions: 4,
        max_count: 50,
        ..Limits::default()
    };
    let server = TestServer::start_with(Config { limits, ..Config::default() });
    let mut con = server.redis();
    for _ in 0..6 {
        append(&mut con, "s", "A");
    }
    group(&mut con, &["CREATE", "g1"]).unwrap();
    group(&mut con, &["CREATE", "g2"]).unwrap();
    assert!(error_text(group(&mut con, &["CREATE", "g3"])).contains("2 groups exist, limit 2"));
    assert!(error_text(group(&mut con, &["READ", "g1", "c", "COUNT", "51"])).contains("COUNT must be between 1 and 50"));
    // Pending is full at 3: a fourth is not delivered until one is acknowledged.
    assert_eq!(positions(group(&mut con, &["READ", "g1", "a", "COUNT", "10"]).unwrap()), [1, 2, 3]);
    assert_eq!(positions(group(&mut con, &["READ", "g1", "b", "COUNT", "10"]).unwrap()), Vec::<i64>::new());
    assert_eq!(code_of(group(&mut con, &["ACK", "g1", "1", "2", "3", "4", "5"])), "TOOBIG");
    assert_eq!(group(&mut con, &["ACK", "g1", "1"]).unwrap(), R::Int(1));
    assert_eq!(positions(group(&mut con, &["READ", "g1", "b", "COUNT", "10"]).unwrap()), [4]);
    // Two consumers holding pending events: a third is refused.
    let text = error_text(group(&mut con, &["READ", "g1", "c"]));
    assert!(text.contains("2 consumers, each with pending events, limit 2"), "{text}");
}

#[test]
fn an_unacknowledged_event_is_delivered_again_after_ackwait() {
    let server = TestServer::start();
    let mut con = server.redis();
    let p = append(&mut con, "s", "A");
    group(&mut con, &["CREATE", "g", "ACKWAIT", "20"]).unwrap();
    assert_eq!(positions(group(&mut con, &["READ", "g", "c1"]).unwrap()), [p]);
    // BLOCK waits for the expiry; the event goes to whichever consumer reads.
    assert_eq!(positions(group(&mut con, &["READ", "g", "c2", "BLOCK", "10000"]).unwrap()), [p]);
    let info = info(&mut con, "g");
    assert_eq!((info_int(&info, "delivered"), info_int(&info, "redelivered")), (2, 1));
    assert_eq!(group(&mut con, &["ACK", "g", &p.to_string()]).unwrap(), R::Int(1));
    // Acknowledged: a read that blocks briefly gets nothing.
    assert_eq!(positions(group(&mut con, &["READ", "g", "c1", "BLOCK", "50"]).unwrap()), Vec::<i64>::new());
}

#[test]
fn read_blocks_until_an_event_arrives() {
    let server = TestServer::start();
    let mut con = server.redis();
    group(&mut con, &["CREATE", "g"]).unwrap();
    let url = server.url();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        append(&mut connect(&url), "s", "A")
    });
    let got = positions(group(&mut con, &["READ", "g", "c", "BLOCK", "0"]).unwrap());
    assert_eq!(got, [writer.join().unwrap()]);
}

#[test]
fn readall_leaves_system_streams_out() {
    let server = TestServer::start();
    let mut con = server.redis();
    append(&mut con, "s", "A");
    group(&mut con, &["CREATE", "g"]).unwrap();
    let _: i64 = redis::cmd("DELETE").arg("s").query(&mut con).unwrap();
    let b = append(&mut con, "t", "A");
    // The group's `$group-g` events and the `$deleted` tombstone exist, but READALL shows
    // neither (nor the deleted stream's event).
    assert_eq!(positions(redis::cmd("READALL").query(&mut con).unwrap()), [b]);
    assert_eq!(positions(redis::cmd("READALL").arg("BLOCK").arg("50").query(&mut con).unwrap()), [b]);
    let from = (b + 1).to_string();
    group(&mut con, &["READ", "g", "c"]).unwrap();
    group(&mut con, &["ACK", "g", &b.to_string()]).unwrap();
    // Only the group's bookkeeping after `b`: BLOCK times out with nothing.
    let reply = redis::cmd("READALL").arg("FROM").arg(&from).arg("BLOCK").arg("50").query(&mut con).unwrap();
    assert_eq!(positions(reply), Vec::<i64>::new());
}

#[test]
fn tenants_are_isolated_in_every_group_command() {
    let server = TestServer::with_tenants();
    let mut acme = connect(&server.url_auth("acme", ACME_TOKEN, false));
    let mut globex = connect(&server.url_auth("globex", GLOBEX_TOKEN, true));
    let mut admin = connect(&server.url_auth("admin", ADMIN_TOKEN, false));
    let a1 = append(&mut acme, "order-1", "A");
    let g1 = append(&mut globex, "order-1", "A");
    let a2 = append(&mut acme, "cart-1", "A");
    // The same group name in two tenants: two groups.
    group(&mut acme, &["CREATE", "g"]).unwrap();
    group(&mut globex, &["CREATE", "g", "PREFIX", "order-"]).unwrap();
    let got = events(group(&mut acme, &["READ", "g", "c", "COUNT", "10"]).unwrap());
    assert_eq!(got.iter().map(|e| field_int(e, "position")).collect::<Vec<_>>(), [a1, a2]);
    assert_eq!(field_str(&got[0], "stream"), "order-1", "names come back without the tenant's prefix");
    assert_eq!(positions(group(&mut globex, &["READ", "g", "c", "COUNT", "10"]).unwrap()), [g1]);
    // globex cannot acknowledge acme's delivery, even by position: its group never delivered it.
    assert_eq!(group(&mut globex, &["ACK", "g", &a1.to_string()]).unwrap(), R::Int(0));
    assert_eq!(info_int(&info(&mut acme, "g"), "pending"), 2);
    // A group only acme has is unknown to globex for every subcommand.
    group(&mut acme, &["CREATE", "only-acme"]).unwrap();
    for args in
        [&["READ", "only-acme", "c"][..], &["ACK", "only-acme", "1"], &["INFO", "only-acme"], &["DELETE", "only-acme"]]
    {
        let text = error_text(group(&mut globex, args));
        assert_eq!(text, "ERR no group 'only-acme'", "{args:?}");
    }
    let acme_info = info(&mut acme, "only-acme");
    assert!(acme_info.iter().any(|(k, v)| k == "name" && *v == R::BulkString(b"only-acme".to_vec())));
    assert!(acme_info.iter().any(|(k, v)| k == "prefix" && *v == R::BulkString(Vec::new())));
    // The admin sees the stored names; `$` names stay the server's.
    assert_eq!(info_int(&info(&mut admin, "acme:g"), "pending"), 2);
    assert!(error_text(group(&mut admin, &["INFO", "$group-x"])).contains("reserved"));
    // A tenant's PREFIX is inside its namespace: acme's "globex:" prefix matches nothing of globex.
    group(&mut acme, &["CREATE", "sneaky", "PREFIX", "globex:"]).unwrap();
    assert_eq!(positions(group(&mut acme, &["READ", "sneaky", "c", "COUNT", "10"]).unwrap()), Vec::<i64>::new());
    group(&mut globex, &["DELETE", "g"]).unwrap();
    assert_eq!(info_int(&info(&mut acme, "g"), "pending"), 2, "globex's DELETE left acme's group alone");
}

#[test]
fn the_rust_client_speaks_every_subcommand() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr).unwrap();
    let p = client.append("order-1", "A", b"{}", logbook::ExpectedVersion::Any).unwrap().1;
    let spec =
        GroupSpec { prefix: Some("order-".into()), types: vec!["A".into()], ack_wait_ms: Some(5000), from: None };
    client.group_create("g", &spec).unwrap();
    let got = client.group_read("g", "c", 10, Some(10)).unwrap();
    assert_eq!(got.iter().map(|e| e.position).collect::<Vec<_>>(), [p]);
    assert_eq!(client.group_ack("g", &[p]).unwrap(), 1);
    let status = client.group_info("g").unwrap();
    assert_eq!(
        (status.prefix.as_str(), status.types.as_slice(), status.ack_wait_ms),
        ("order-", &["A".to_string()][..], 5000)
    );
    assert_eq!((status.pending, status.delivered, status.consumers.len()), (0, 1, 1));
    assert!(status.checkpoint >= p);
    client.group_delete("g").unwrap();
    let err = client.group_info("g").unwrap_err();
    assert_eq!(err.code(), Some("ERR"));
}

// ---------------------------------------------------------------------------
// kill -9 in the middle of three consumers

fn try_connect(addr: SocketAddr) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
    let con = client.get_connection_with_timeout(Duration::from_secs(5)).ok()?;
    con.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    Some(con)
}

/// What the consumers saw: every delivery (position, consumer) in order, and every position
/// whose ACK was answered.
#[derive(Default)]
struct Seen {
    deliveries: Vec<(i64, usize)>,
    /// Positions sent in an ACK (answered or not).
    sent: BTreeSet<i64>,
    acked: BTreeSet<i64>,
}

/// Reads and acknowledges until the connection breaks or `stop`: each batch is acknowledged
/// back to front in two ACKs, and every third batch keeps its first event back until the next
/// batch, so ACKs arrive out of order.
fn consume(addr: SocketAddr, consumer: usize, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let Some(mut con) = try_connect(addr) else { return };
    let name = format!("c{consumer}");
    let mut held_back: Vec<i64> = Vec::new();
    let mut batch = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let reply = redis::cmd("GROUP")
            .arg("READ")
            .arg("g")
            .arg(&name)
            .arg("COUNT")
            .arg(7)
            .arg("BLOCK")
            .arg(100)
            .query(&mut con);
        let Ok(reply) = reply else { return };
        let got = positions(reply);
        seen.lock().unwrap().deliveries.extend(got.iter().map(|p| (*p, consumer)));
        let mut to_ack: Vec<i64> = got.iter().rev().copied().collect();
        if batch.is_multiple_of(3) && !to_ack.is_empty() {
            let keep = to_ack.pop().unwrap();
            to_ack.append(&mut held_back);
            held_back.push(keep);
        } else {
            to_ack.append(&mut held_back);
        }
        batch += 1;
        let half = to_ack.len() / 2;
        for part in [&to_ack[..half], &to_ack[half..]] {
            if part.is_empty() {
                continue;
            }
            let mut cmd = redis::cmd("GROUP");
            cmd.arg("ACK").arg("g");
            for p in part {
                cmd.arg(*p);
            }
            seen.lock().unwrap().sent.extend(part.iter().copied());
            match cmd.query::<i64>(&mut con) {
                Ok(_) => seen.lock().unwrap().acked.extend(part.iter().copied()),
                Err(_) => return,
            }
        }
    }
}

#[test]
fn sigkill_mid_consumption_loses_no_acknowledgement_and_delivers_every_event() {
    const EVENTS: usize = 600;
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", server_support::daemon::free_port()).parse().unwrap();
    let mut child = server_support::daemon::spawn_on(dir.path(), addr);
    let mut con = try_connect(addr).unwrap();
    // A long ACKWAIT: before the kill nothing is redelivered, so any event that comes twice
    // came again because of the restart.
    group(&mut con, &["CREATE", "g", "ACKWAIT", "600000"]).unwrap();
    for i in 0..EVENTS / 2 {
        append(&mut con, &format!("order-{}", i % 13), "A");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let appended = Arc::new(AtomicUsize::new(EVENTS / 2));
    let writer = {
        let (stop, appended) = (Arc::clone(&stop), Arc::clone(&appended));
        std::thread::spawn(move || {
            let Some(mut con) = try_connect(addr) else { return };
            while !stop.load(Ordering::Relaxed) && appended.load(Ordering::Relaxed) < EVENTS {
                let i = appended.load(Ordering::Relaxed);
                let reply: redis::RedisResult<Vec<i64>> =
                    redis::cmd("APPEND").arg(format!("order-{}", i % 13)).arg("A").arg("{}").query(&mut con);
                if reply.is_err() {
                    return;
                }
                appended.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let consumers: Vec<_> = (0..3)
        .map(|c| {
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            std::thread::spawn(move || consume(addr, c, stop, seen))
        })
        .collect();
    // Kill once a good share is acknowledged, while the consumers are still at it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().acked.len() < EVENTS / 3 {
        assert!(Instant::now() < deadline, "consumers made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    for c in consumers {
        c.join().unwrap();
    }
    let (before, acked_before, sent_before) = {
        let seen = seen.lock().unwrap();
        (seen.deliveries.clone(), seen.acked.clone(), seen.sent.clone())
    };
    let consumers_used: BTreeSet<usize> = before.iter().map(|(_, c)| *c).collect();
    assert_eq!(consumers_used.len(), 3, "all three consumers got events");
    let mut count: HashMap<i64, usize> = HashMap::new();
    for (p, _) in &before {
        *count.entry(*p).or_default() += 1;
    }
    assert!(count.values().all(|n| *n == 1), "before the kill no event went to two consumers");

    // Restart and drain with three consumers again.
    let mut child = server_support::daemon::spawn_on(dir.path(), addr);
    let mut con = try_connect(addr).unwrap();
    let all_events = positions(redis::cmd("READALL").arg("COUNT").arg(100_000).query(&mut con).unwrap());
    assert!(all_events.len() >= EVENTS / 2);
    let after = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let consumers: Vec<_> = (0..3)
        .map(|c| {
            let (stop, after) = (Arc::clone(&stop), Arc::clone(&after));
            std::thread::spawn(move || consume(addr, c, stop, after))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = info(&mut con, "g");
        let last = *all_events.last().unwrap();
        if info_int(&info, "pending") == 0 && info_int(&info, "checkpoint") >= last {
            break;
        }
        assert!(Instant::now() < deadline, "the drain did not finish: {info:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for c in consumers {
        c.join().unwrap();
    }
    let after = after.lock().unwrap();
    // No acknowledged event came again.
    let again: Vec<i64> = after.deliveries.iter().map(|(p, _)| *p).filter(|p| acked_before.contains(p)).collect();
    assert!(again.is_empty(), "acknowledged before the kill, delivered after it: {again:?}");
    // Every event was delivered, before or after; each at most once after the restart.
    let delivered: BTreeSet<i64> = before.iter().chain(after.deliveries.iter()).map(|(p, _)| *p).collect();
    let missing: Vec<i64> = all_events.iter().copied().filter(|p| !delivered.contains(p)).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    let after_set: BTreeSet<i64> = after.deliveries.iter().map(|(p, _)| *p).collect();
    assert_eq!(after_set.len(), after.deliveries.len(), "an event went twice after the restart");
    // Everything unacknowledged before the kill came again, except positions of an ACK the
    // kill cut off (it may have been made durable without its answer getting out).
    let unacked: BTreeSet<i64> = all_events.iter().copied().filter(|p| !acked_before.contains(p)).collect();
    let not_again: Vec<i64> = unacked.difference(&after_set).copied().filter(|p| !sent_before.contains(p)).collect();
    assert!(not_again.is_empty(), "unacknowledged before the kill and never delivered again: {not_again:?}");
    let info = info(&mut con, "g");
    assert_eq!(info_int(&info, "pending"), 0);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_group_the_admin_names_in_a_tenants_namespace_delivers_only_that_tenants_events() {
    let server = TestServer::with_tenants();
    let mut acme = connect(&server.url_auth("acme", ACME_TOKEN, false));
    let mut globex = connect(&server.url_auth("globex", GLOBEX_TOKEN, true));
    let mut admin = connect(&server.url_auth("admin", ADMIN_TOKEN, false));
    let a1 = append(&mut acme, "order-1", "A");
    append(&mut globex, "order-1", "A");
    // Without PREFIX, and with one that names another tenant: both stay inside acme's.
    group(&mut admin, &["CREATE", "acme:all"]).unwrap();
    group(&mut admin, &["CREATE", "acme:other", "PREFIX", "globex:"]).unwrap();
    assert_eq!(positions(group(&mut acme, &["READ", "all", "c", "COUNT", "10"]).unwrap()), [a1]);
    assert_eq!(positions(group(&mut acme, &["READ", "other", "c", "COUNT", "10"]).unwrap()), Vec::<i64>::new());
    let prefix = info(&mut admin, "acme:all").into_iter().find(|(k, _)| k == "prefix").unwrap().1;
    assert_eq!(prefix, R::BulkString(b"acme:".to_vec()));
}

#[test]
fn events_a_reply_had_no_room_for_come_again_at_once() {
    let limits = Limits { max_reply_bytes: 16 * 1024, ..Limits::default() };
    let server = TestServer::start_with(Config { limits, ..Config::default() });
    let mut con = server.redis();
    let pad = "x".repeat(1000);
    let all: Vec<i64> = (0..40)
        .map(|_| {
            let reply: Vec<i64> =
                redis::cmd("APPEND").arg("s").arg("T").arg(format!(r#"{{"pad":"{pad}"}}"#)).query(&mut con).unwrap();
            reply[1]
        })
        .collect();
    group(&mut con, &["CREATE", "g"]).unwrap();
    // 40 events of ~1 KiB do not fit a 16 KiB reply: the rest are handed back, not left
    // pending until ACKWAIT (30 s) for a consumer that never got them.
    let first = positions(group(&mut con, &["READ", "g", "a", "COUNT", "40"]).unwrap());
    assert!(!first.is_empty() && first.len() < 40, "{}", first.len());
    let mut got = first.clone();
    while got.len() < 40 {
        let more = positions(group(&mut con, &["READ", "g", "b", "COUNT", "40"]).unwrap());
        assert!(!more.is_empty(), "the rest come at once, not after ACKWAIT");
        got.extend(more);
    }
    assert_eq!(got, all);
    let info = info(&mut con, "g");
    assert_eq!((info_int(&info, "delivered"), info_int(&info, "redelivered"), info_int(&info, "pending")), (40, 0, 40));
}

#[test]
fn one_tenant_cannot_take_every_group_from_the_others() {
    let limits = Limits { max_groups_per_tenant: 2, max_groups: 3, ..Limits::default() };
    let server = TestServer::start_with(Config { limits, ..tenants_config() });
    let mut acme = connect(&server.url_auth("acme", ACME_TOKEN, false));
    let mut globex = connect(&server.url_auth("globex", GLOBEX_TOKEN, true));
    group(&mut acme, &["CREATE", "a"]).unwrap();
    group(&mut acme, &["CREATE", "b"]).unwrap();
    assert_eq!(
        error_text(group(&mut acme, &["CREATE", "c"])),
        "ERR this tenant has 2 groups, limit 2 (max_groups_per_tenant)"
    );
    // globex still has room in the store's max_groups.
    group(&mut globex, &["CREATE", "a"]).unwrap();
    group(&mut acme, &["DELETE", "a"]).unwrap();
    group(&mut acme, &["CREATE", "c"]).unwrap();
}
