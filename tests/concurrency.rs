//! Concurrency (reliability.md, test 10): 16 threads append to shared streams with exact
//! expected versions. Every success has a unique, contiguous version; every failure is a
//! version conflict; nothing acknowledged is lost. Group commit: with a 1 ms fsync, 16 writers
//! of single events share fsyncs, fewer than half as many as appends.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use logbook::storage::{OpKind, SimFileSystem};
use logbook::{Direction, Error, ExpectedVersion, Filter, NewEvent, Options, Store};

const THREADS: usize = 16;
const ATTEMPTS: usize = 40;
const STREAMS: usize = 3;

#[test]
fn sixteen_writers_with_exact_expected_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { segment_bytes: 8192, ..Options::default() }).unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, barrier) = (store.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let (mut wins, mut conflicts) = (Vec::new(), 0usize);
                for i in 0..ATTEMPTS {
                    let stream = format!("order-{}", (t + i) % STREAMS);
                    let seen = store.stream_version(&stream);
                    let id = uuid::Uuid::new_v4();
                    let event = NewEvent::new("E", format!("{t}:{i}").into_bytes()).with_id(id);
                    match store.append(&stream, ExpectedVersion::Exact(seen), vec![event]) {
                        Ok(r) => {
                            assert_eq!(r.first_version, seen + 1);
                            wins.push((stream, r.first_version, r.first_position, id));
                        }
                        Err(Error::WrongExpectedVersion { expected, actual, .. }) => {
                            assert_eq!(expected, ExpectedVersion::Exact(seen));
                            assert!(actual > seen, "a conflict means someone else got there first");
                            conflicts += 1;
                        }
                        Err(other) => panic!("unexpected error: {other}"),
                    }
                }
                (wins, conflicts)
            })
        })
        .collect();
    let mut wins = Vec::new();
    let mut conflicts = 0;
    for handle in handles {
        let (w, c) = handle.join().unwrap();
        wins.extend(w);
        conflicts += c;
    }
    assert_eq!(wins.len() + conflicts, THREADS * ATTEMPTS);
    let mut by_stream: HashMap<String, Vec<(u64, u64, uuid::Uuid)>> = HashMap::new();
    for (stream, version, position, id) in &wins {
        by_stream.entry(stream.clone()).or_default().push((*version, *position, *id));
    }
    let mut positions: Vec<u64> = wins.iter().map(|w| w.2).collect();
    positions.sort_unstable();
    assert_eq!(positions, (1..=wins.len() as u64).collect::<Vec<_>>(), "positions unique and gapless");
    for (stream, mut acked) in by_stream {
        acked.sort_unstable();
        let versions: Vec<u64> = acked.iter().map(|a| a.0).collect();
        assert_eq!(versions, (1..=acked.len() as u64).collect::<Vec<_>>(), "{stream}: versions unique and contiguous");
        let stored = store.read_stream(&stream, 1, 10_000, Direction::Forward).unwrap();
        let stored: Vec<(u64, u64, uuid::Uuid)> = stored.iter().map(|e| (e.version(), e.position(), e.id())).collect();
        assert_eq!(stored, acked, "{stream}: every acknowledged event is stored as acknowledged");
    }
    assert_eq!(store.read_all(1, 100_000, &Filter::all()).unwrap().len(), wins.len());
    store.close().unwrap();
}

/// Group commit: 16 threads append single events (each to its own stream, with exact expected
/// versions, so every append succeeds) through a disk whose fsync takes 1 ms. Appends that
/// arrive while the writer syncs must share the next fsync: fewer fsyncs than half the
/// appends. One fsync per append (no group commit) fails this.
#[test]
fn sixteen_writers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimFileSystem::new();
    sim.set_sync_delay(Duration::from_millis(1));
    let options = Options { segment_bytes: 1 << 20, fs: Arc::new(sim.clone()), ..Options::default() };
    let store = Store::open(dir.path(), options).unwrap();
    let (stats_before, syncs_before) = (store.stats(), sim.count(OpKind::Sync));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, barrier) = (store.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..ATTEMPTS as u64 {
                    let event = NewEvent::new("E", format!("{t}:{i}").into_bytes());
                    let r = store.append(&format!("writer-{t}"), ExpectedVersion::Exact(i), vec![event]).unwrap();
                    assert_eq!(r.first_version, i + 1);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let (stats, syncs) = (store.stats(), sim.count(OpKind::Sync) - syncs_before);
    let appends = stats.appends - stats_before.appends;
    let fsyncs = stats.fsyncs - stats_before.fsyncs;
    assert_eq!(appends, (THREADS * ATTEMPTS) as u64);
    assert_eq!(syncs, fsyncs, "every fsync the store counts is one the disk saw, and no other");
    assert!(fsyncs * 2 < appends, "group commit: {fsyncs} fsyncs for {appends} appends");
    for t in 0..THREADS {
        assert_eq!(store.stream_version(&format!("writer-{t}")), ATTEMPTS as u64);
    }
    store.close().unwrap();
}

#[test]
fn concurrent_batches_stay_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { segment_bytes: 4096, ..Options::default() }).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let size = 1 + (t + i) % 5;
                    let events =
                        (0..size).map(|j| NewEvent::new("B", format!("{t}:{i}:{j}:{size}").into_bytes())).collect();
                    store.append(&format!("cart-{t}"), ExpectedVersion::Any, events).unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    store.close().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let all = store.read_all(1, 100_000, &Filter::all()).unwrap();
    // Each batch's events are adjacent in $all, in order, and complete.
    let mut i = 0;
    while i < all.len() {
        let data = String::from_utf8(all[i].data().to_vec()).unwrap();
        let parts: Vec<&str> = data.split(':').collect();
        let size: usize = parts[3].parse().unwrap();
        assert_eq!(parts[2], "0", "batch starts with its first event");
        for j in 0..size {
            let expect = format!("{}:{}:{j}:{size}", parts[0], parts[1]);
            assert_eq!(all[i + j].data(), expect.as_bytes());
            assert_eq!(all[i + j].position(), all[i].position() + j as u64);
        }
        i += size;
    }
}

/// `try_submit_append` and `try_submit_append_batch` never wait for room in the writer's
/// queue: with a queue of one and a disk that takes half a second per fsync, submitting goes
/// on until the queue is full, and the append comes back unchanged. Every queued append is
/// applied in order, and the one handed back applies after them when submitted again.
#[test]
fn try_submit_hands_an_append_back_when_the_writers_queue_is_full() {
    use logbook::{AppendPart, TrySubmit};
    type Wait = Box<dyn FnOnce() -> logbook::Result<u64>>;
    let dir = tempfile::tempdir().unwrap();
    let sim = SimFileSystem::new();
    let options = Options { max_queued_appends: 1, fs: Arc::new(sim.clone()), ..Options::default() };
    let store = Store::open(dir.path(), options).unwrap();
    sim.set_sync_delay(Duration::from_millis(500));
    let part = |i: usize| {
        AppendPart::new(
            "order-1",
            ExpectedVersion::Exact(i as u64),
            vec![NewEvent::new("E", i.to_string().into_bytes())],
        )
    };
    let mut queued: Vec<Wait> = Vec::new();
    // Appends and one-part batches in turn: both ways hand the append back.
    let back: Vec<AppendPart> = loop {
        let i = queued.len();
        assert!(i < 8, "a queue of one took {i} appends while the writer synced");
        if i.is_multiple_of(2) {
            match store.try_submit_append(part(i)).unwrap() {
                TrySubmit::Queued(p) => queued.push(Box::new(move || p.wait().map(|r| r.first_version))),
                TrySubmit::QueueFull(back) => break vec![back],
            }
        } else {
            match store.try_submit_append_batch(vec![part(i)]).unwrap() {
                TrySubmit::Queued(p) => queued.push(Box::new(move || p.wait().map(|r| r[0].first_version))),
                TrySubmit::QueueFull(back) => break back,
            }
        }
    };
    let n = queued.len();
    assert!(n >= 1, "an empty queue of one refused an append");
    assert_eq!(back, vec![part(n)], "the append comes back unchanged");
    sim.set_sync_delay(Duration::ZERO);
    for (i, wait) in queued.into_iter().enumerate() {
        assert_eq!(wait().unwrap(), i as u64 + 1);
    }
    let again = back.into_iter().next().unwrap();
    let last = match store.try_submit_append(again).unwrap() {
        TrySubmit::Queued(pending) => pending.wait().unwrap(),
        TrySubmit::QueueFull(_) => panic!("the queue is empty once every append is answered"),
    };
    assert_eq!(last.first_version, n as u64 + 1);
    store.close().unwrap();
}

/// A lone appender commits its large appends on its own thread (no hand-over to the writer
/// thread and back) and its small ones through the queue; both are as durable and as ordered
/// as any: they are all there, in order, after a reopen.
#[test]
fn a_lone_appenders_large_appends_are_committed_on_its_own_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { segment_bytes: 1 << 20, ..Options::default() }).unwrap();
    // 20 KiB of data: above the 16 KiB from which a lone append is committed where it is made.
    let large = |i: u64| NewEvent::new("E", format!("{i:020480}").into_bytes());
    for i in 0..50u64 {
        let r = store.append("order-1", ExpectedVersion::Exact(i), vec![large(i)]).unwrap();
        assert_eq!(r.first_version, i + 1);
    }
    let parts = |n: u64| {
        vec![
            logbook::AppendPart::new("order-1", ExpectedVersion::Exact(n), vec![large(n)]),
            logbook::AppendPart::new("order-2", ExpectedVersion::Any, vec![NewEvent::new("B", b"2".to_vec())]),
        ]
    };
    for n in 50..60u64 {
        store.append_batch(parts(n)).unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.groups, 60);
    // The writer thread takes the writer now and then for its timed work (recording how far
    // the log is synced); an append that finds it busy is queued as before.
    assert!(stats.groups_on_appender_thread >= 50, "{stats:?}");
    for i in 60..70u64 {
        store
            .append("order-1", ExpectedVersion::Exact(i), vec![NewEvent::new("E", i.to_string().into_bytes())])
            .unwrap();
    }
    let small = store.stats();
    assert_eq!(small.groups_on_appender_thread, stats.groups_on_appender_thread, "small appends are queued");
    assert!(store.segment_count() > 1, "the appends rolled over a segment on the way");
    store.close().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let events = store.read_stream("order-1", 1, 100, Direction::Forward).unwrap();
    let data: Vec<u64> = events.iter().map(|e| std::str::from_utf8(e.data()).unwrap().parse().unwrap()).collect();
    assert_eq!(data, (0..70).collect::<Vec<_>>());
    assert_eq!(store.stream_version("order-2"), 10);
}

/// An append its caller waits for never overtakes appends submitted before it, even when
/// nobody waits for those (their handles dropped, so the caller looks alone): it is only
/// committed on the caller's thread once nothing submitted earlier is queued or being
/// committed. Each round submits appends to a stream and drops their handles, then appends
/// with the version they lead to: overtaking any of them is a wrong expected version.
#[test]
fn an_append_waited_for_never_overtakes_appends_submitted_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut version = 0;
    for round in 0..40 {
        let stream = format!("order-{round}");
        for i in 0..200 {
            drop(store.submit_append(&stream, ExpectedVersion::Any, vec![NewEvent::new("E", vec![i as u8])]).unwrap());
        }
        // Large enough to be committed on this thread when it may.
        let last = NewEvent::new("LAST", vec![b'x'; 20 * 1024]);
        let r = store.append(&stream, ExpectedVersion::Exact(200), vec![last]);
        assert_eq!(r.map(|r| r.first_version).unwrap(), 201, "round {round}");
        version += 201;
    }
    assert_eq!(store.stats().events, version);
    store.close().unwrap();
}

/// An archive lookup that panics when asked about stream "boom" (an embedder's bug).
struct PanickingArchive;

impl logbook::ArchivedEvents for PanickingArchive {
    fn find(&self, stream: &str, _id: &[u8; 16]) -> logbook::Result<Option<logbook::ArchivedMatch>> {
        assert_ne!(stream, "boom", "the embedder's archive lookup panicked");
        Ok(None)
    }
    fn archiving(&self, _events: &[logbook::RecordedEvent]) {}
}

/// Waits for `pending` on another thread, at most 10 s: a wait that never ends fails the test.
fn wait_at_most(pending: logbook::PendingAppend) -> logbook::Result<logbook::AppendResult> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(pending.wait()));
    rx.recv_timeout(Duration::from_secs(10)).expect("an append staged before the writer panicked was never answered")
}

/// A panic while the writer handles a group (here in the embedder's archive lookup) stops the
/// writer for good, as a failed fsync does: the appends staged in that group before the panic
/// are refused, not left waiting; the append that panicked gets the failure too, also when a
/// lone appender was committing it on its own thread; every later append is refused.
#[test]
fn a_panic_while_handling_a_group_stops_the_writer_and_answers_everyone() {
    for on_appender_thread in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimFileSystem::new();
        let store = Store::open(dir.path(), Options { fs: Arc::new(sim.clone()), ..Options::default() }).unwrap();
        store.set_archived_events(Arc::new(PanickingArchive)).unwrap();
        let boom = || NewEvent::new("E", vec![b'b'; 20 * 1024]).with_id(uuid::Uuid::new_v4());
        if on_appender_thread {
            // Alone and 20 KiB: committed on this thread; the panic comes back as an error.
            let err = store.append("boom", ExpectedVersion::Any, vec![boom()]).unwrap_err();
            assert!(matches!(err, Error::WriterFailed(_)), "{err}");
            assert_eq!(store.stats().groups_on_appender_thread, 0, "nothing was committed");
        } else {
            // A slow fsync holds the writer thread on a first group while two more appends
            // queue: the next group stages the first, then panics on the second.
            sim.set_sync_delay(Duration::from_millis(200));
            let first = store.submit_append("ok", ExpectedVersion::Any, vec![NewEvent::new("E", b"1".to_vec())]);
            std::thread::sleep(Duration::from_millis(50));
            let staged = store.submit_append("ok", ExpectedVersion::Any, vec![NewEvent::new("E", b"2".to_vec())]);
            let panicking = store.submit_append("boom", ExpectedVersion::Any, vec![boom()]);
            assert_eq!(wait_at_most(first.unwrap()).unwrap().first_position, 1);
            let err = wait_at_most(staged.unwrap()).unwrap_err();
            assert!(matches!(err, Error::WriterFailed(_)), "{err}");
            assert!(matches!(wait_at_most(panicking.unwrap()), Err(Error::WriterFailed(_))));
        }
        let later = store.append("ok", ExpectedVersion::Any, vec![NewEvent::new("E", vec![b'x'; 20 * 1024])]);
        assert!(matches!(later, Err(Error::WriterFailed(_) | Error::Shutdown)), "{later:?}");
        let small = store.append("ok", ExpectedVersion::Any, vec![NewEvent::new("E", b"3".to_vec())]);
        assert!(matches!(small, Err(Error::WriterFailed(_) | Error::Shutdown)), "{small:?}");
    }
}
