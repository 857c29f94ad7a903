//! Subscriptions under load (reliability.md, test 11): a subscriber started from position 1
//! while writers run sees every event exactly once, in order, and never one that was not yet
//! published (durable, with the default sync mode).

use std::time::{Duration, Instant};

use logbook::{Direction, ExpectedVersion, Filter, NewEvent, Options, Store};

const WRITERS: usize = 4;
const PER_WRITER: usize = 150;

#[test]
fn subscription_from_the_start_sees_every_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { segment_bytes: 8192, ..Options::default() }).unwrap();
    // Some history before the subscriber starts, the rest while it runs.
    for i in 0..20 {
        store.append("order-pre", ExpectedVersion::Any, vec![NewEvent::new("PRE", vec![i as u8])]).unwrap();
    }
    let total = 20 + WRITERS * PER_WRITER;
    let subscriber = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut sub = store.subscribe_all(1, Filter::all());
            let mut seen = Vec::with_capacity(total);
            let deadline = Instant::now() + Duration::from_secs(60);
            while seen.len() < total && Instant::now() < deadline {
                if let Some(event) = sub.next_timeout(Duration::from_millis(200)).unwrap() {
                    assert!(event.position() <= store.head_position(), "delivered before it was published");
                    seen.push((event.position(), event.stream().to_string(), event.version()));
                }
            }
            // Nothing more arrives after the last event.
            assert!(sub.next_timeout(Duration::from_millis(50)).unwrap().is_none());
            seen
        })
    };
    let stream_sub = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut sub = store.subscribe_stream("order-w1", 1);
            let mut versions = Vec::new();
            while versions.len() < PER_WRITER {
                let event = sub.next_timeout(Duration::from_secs(30)).unwrap().expect("stream event in time");
                versions.push(event.version());
            }
            versions
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..PER_WRITER {
                    let event = NewEvent::new("LIVE", format!("{w}:{i}").into_bytes());
                    store.append(&format!("order-w{w}"), ExpectedVersion::Any, vec![event]).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let seen = subscriber.join().unwrap();
    assert_eq!(seen.len(), total);
    let positions: Vec<u64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(positions, (1..=total as u64).collect::<Vec<_>>(), "every position once, in order");
    let all = store.read_all(1, total, &Filter::all()).unwrap();
    let from_log: Vec<_> = all.iter().map(|e| (e.position(), e.stream().to_string(), e.version())).collect();
    assert_eq!(seen, from_log);
    assert_eq!(stream_sub.join().unwrap(), (1..=PER_WRITER as u64).collect::<Vec<_>>());
    assert_eq!(store.read_stream("order-w1", 1, 1000, Direction::Forward).unwrap().len(), PER_WRITER);
}

#[test]
fn filtered_subscription_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut sub = store.subscribe_all(1, Filter::category("order").with_types(["PAID"]));
    assert!(sub.next_timeout(Duration::from_millis(20)).unwrap().is_none());
    store.append("cart-1", ExpectedVersion::Any, vec![NewEvent::new("PAID", b"{}".to_vec())]).unwrap();
    store.append("order-1", ExpectedVersion::Any, vec![NewEvent::new("PLACED", b"{}".to_vec())]).unwrap();
    store.append("order-1", ExpectedVersion::Any, vec![NewEvent::new("PAID", b"{}".to_vec())]).unwrap();
    let event = sub.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!((event.stream(), event.event_type(), event.position()), ("order-1", "PAID", 3));
    assert!(sub.next_timeout(Duration::from_millis(20)).unwrap().is_none());
    store.clone().close().unwrap();
    assert!(matches!(sub.next_timeout(Duration::from_secs(5)), Err(logbook::Error::Shutdown)));
}
