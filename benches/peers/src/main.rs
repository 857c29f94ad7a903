//! Issue 14's columns for logbook beside its embedded peers, in one run: fjall, okaywal and redb
//! on the same generated order events, each system in turn in a fresh directory on the same file
//! system, with the machine's fdatasync ceiling measured in the same run. Figures are to be read
//! as ratios within a run: the absolute ones move with the machine's neighbours.
//!
//! A round runs one column at a time; within a column the systems' stores are open side by side
//! and the systems take turns, five each (the first system changes from round to round), with
//! the ceiling probe taking its turn beside them in the durable columns: a disk whose speed
//! drifts from second to second is shared out alike.
//!
//! Columns: a, 1 writer, 1 event per durable commit; b, 1 writer, 64 events of several streams
//! per durable commit (this is the load that d, e and disk use); c, 16 writers, 1 event per
//! durable commit each, concurrently; d, read one order stream (random order ids) after one
//! warming pass over every stream; e, replay every event in global order; disk, allocated bytes
//! per event after the load, the store closed. See `engines.rs` for how each system is driven.

mod engines;
mod events;
mod report;
// The root package's generator of order lifecycles, shared as a file (this package does not
// depend on the root package); `append_in_batches` and `PAYLOAD_BYTES` are the root's own.
#[allow(dead_code)]
#[path = "../../../src/workload.rs"]
mod workload;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engines::{Engine, Result, System};
use events::Events;
use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;
use report::{Column, Figures, Reads, Writes};

const USAGE: &str = "usage: logbook-peers [--events N] [--streams S] [--rounds R] [--only a,b,c,d,e,disk]
                     [--systems logbook,fjall,okaywal,redb] [--seconds T] [--dir DIR]

  --events N    events of the orders workload (default 172033)
  --streams S   order streams they are drawn from (default 20000)
  --rounds R    rounds; each runs every system in turn, starting one later each round (default 1)
  --only LIST   columns to measure (default all: a,b,c,d,e,disk)
  --systems L   systems to run (default logbook,fjall,okaywal,redb)
  --seconds T   duration of columns a, c and d per system (default 5); b loads every event
  --dir DIR     where the fresh directories are made (default the system's temporary directory)";

/// Writers of column c.
const WRITERS_C: usize = 16;
/// Events per commit of column b.
const BATCH_B: usize = 64;

struct Args {
    events: usize,
    streams: usize,
    rounds: usize,
    columns: Vec<Column>,
    systems: Vec<System>,
    seconds: Duration,
    dir: PathBuf,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut args = Args {
        events: 172_033,
        streams: 20_000,
        rounds: 1,
        columns: Column::ALL.to_vec(),
        systems: System::ALL.to_vec(),
        seconds: Duration::from_secs(5),
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_string());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| v.replace(['_', ','], "").parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--events" => args.events = number(&value)?.max(1),
            "--streams" => args.streams = number(&value)?.max(1),
            "--rounds" => args.rounds = number(&value)?.max(1),
            "--seconds" => args.seconds = Duration::from_secs_f64(value.parse().map_err(|e| format!("{flag}: {e}"))?),
            "--dir" => args.dir = PathBuf::from(value),
            "--only" => {
                args.columns = value
                    .split(',')
                    .map(|c| Column::parse(c.trim()).ok_or_else(|| format!("--only: no column {c:?}")))
                    .collect::<std::result::Result<_, _>>()?;
            }
            "--systems" => {
                args.systems = value
                    .split(',')
                    .map(|s| {
                        System::ALL
                            .into_iter()
                            .find(|x| x.name() == s.trim())
                            .ok_or_else(|| format!("--systems: {s:?}"))
                    })
                    .collect::<std::result::Result<_, _>>()?;
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("logbook-peers: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    let base = args.dir.join(format!("logbook-peers-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    let result = run_in(args, &base);
    let _ = std::fs::remove_dir_all(&base);
    result
}

fn run_in(args: &Args, base: &Path) -> Result<()> {
    let started = report::utc_now();
    let load_before = report::load_average();
    let generating = Instant::now();
    let events = Events::generate(args.events, args.streams);
    println!(
        "{} events of {} order streams (generated in {:.1} s): JSON line {:.1} B on average for the peers, \
         {:.1} B of the event's own bytes (16-byte id, type, stream, data, metadata) for logbook",
        events.events.len(),
        events.streams.len(),
        generating.elapsed().as_secs_f64(),
        events.mean_line_bytes(),
        events.mean_own_bytes()
    );
    println!(
        "systems: {}; columns: {}; {} round(s); a, c, d run {:.1} s each; directories under {}",
        args.systems.iter().map(|s| s.name()).collect::<Vec<_>>().join(", "),
        args.columns.iter().map(|c| c.name()).collect::<Vec<_>>().join(","),
        args.rounds,
        args.seconds.as_secs_f64(),
        base.display()
    );
    println!("start {started}, load average {load_before}");
    let mut rounds: Vec<Vec<(System, Figures)>> = Vec::new();
    for round in 0..args.rounds {
        let figures = run_round(args, &events, &base.join(format!("round-{}", round + 1)), round)?;
        for (system, f) in &figures {
            println!("round {}: {:<8} {}", round + 1, system.name(), f.line());
        }
        rounds.push(figures);
    }
    let load_after = report::load_average();
    println!();
    println!("{}", report::table(&rounds, &args.systems, &args.columns));
    println!("{}", report::aims(&rounds, &args.systems, &args.columns));
    println!("end {}, load average {load_after} (start {started}: {load_before})", report::utc_now());
    Ok(())
}

/// Turns each participant of a column takes (every system, and in a durable column the ceiling
/// probe): they alternate, so that a disk or CPU whose speed drifts from second to second (a
/// shared machine's do) is shared out alike among them.
const TURNS: usize = 5;

/// One round: each column in turn; within a column the systems' stores are open side by side
/// and the systems take turns (the first system changes from round to round). Each column runs
/// in fresh directories under `dir`; the stores loaded for b serve d, e and disk.
fn run_round(args: &Args, events: &Events, dir: &Path, round: usize) -> Result<Vec<(System, Figures)>> {
    let k = args.systems.len();
    let order: Vec<System> = (0..k).map(|i| args.systems[(round + i) % k]).collect();
    let mut figures: Vec<Figures> = vec![Figures::default(); k];
    let wants = |c: Column| args.columns.contains(&c);
    let n = events.events.len();
    let turn = args.seconds / TURNS as u32;
    std::fs::create_dir_all(dir)?;
    let paths =
        |what: &str| -> Vec<PathBuf> { order.iter().map(|s| dir.join(format!("{}-{what}", s.name()))).collect() };
    for (column, writers) in [(Column::A, 1), (Column::C, WRITERS_C)] {
        if !wants(column) {
            continue;
        }
        let paths = paths(column.name());
        let writes = durable_column(&order, &paths, events, writers, 1, Budget::Time(turn), dir)?;
        for (f, w) in figures.iter_mut().zip(writes) {
            match column {
                Column::A => f.a = Some(w),
                _ => f.c = Some(w),
            }
        }
        for path in paths {
            std::fs::remove_dir_all(path)?;
        }
    }
    let loads = paths("load");
    if [Column::B, Column::D, Column::E, Column::Disk].into_iter().any(wants) {
        let writes = durable_column(&order, &loads, events, 1, BATCH_B, Budget::Load(turn), dir)?;
        for ((f, w), path) in figures.iter_mut().zip(writes).zip(&loads) {
            f.b = wants(Column::B).then_some(w);
            f.disk = wants(Column::Disk).then_some(engines::allocated_bytes(path)? as f64 / n as f64);
        }
    }
    if wants(Column::D) || wants(Column::E) {
        let mut engines: Vec<Box<dyn Engine>> =
            order.iter().zip(&loads).map(|(s, p)| s.open(p)).collect::<Result<_>>()?;
        if wants(Column::D) {
            let mut readers: Vec<Option<Reader>> =
                engines.iter().map(|e| Reader::warm(&**e, events)).collect::<Result<_>>()?;
            for _ in 0..TURNS {
                for (engine, reader) in engines.iter().zip(&mut readers) {
                    if let Some(reader) = reader {
                        reader.read_for(&**engine, events, turn)?;
                    }
                }
            }
            for (f, reader) in figures.iter_mut().zip(readers) {
                f.d = Some(reader.map(Reader::finish));
            }
        }
        if wants(Column::E) {
            let mut totals = vec![(0usize, 0f64); k];
            for _ in 0..TURNS {
                for (engine, total) in engines.iter_mut().zip(&mut totals) {
                    let (count, seconds) = replays(&mut **engine, n, Duration::from_millis(200))?;
                    total.0 += count;
                    total.1 += seconds;
                }
            }
            for (f, (count, seconds)) in figures.iter_mut().zip(totals) {
                f.e = Some(count as f64 / seconds);
            }
        }
        for engine in engines {
            engine.close()?;
        }
    }
    std::fs::remove_dir_all(dir)?;
    // Reported in the order of `--systems`, whichever ran first.
    let mut out: Vec<(System, Figures)> = order.into_iter().zip(figures).collect();
    out.sort_by_key(|(s, _)| args.systems.iter().position(|x| x == s));
    Ok(out)
}

/// How long each turn of a durable column lasts.
enum Budget {
    /// Commit for this long (columns a and c), from where the last turn stopped.
    Time(Duration),
    /// The same, then (untimed) every event not yet committed: the load of column b, which d,
    /// e and disk read. Turns as long as a's, not shorter ones of a fixed share of the events:
    /// in turns of a fifth of the load (~0.1 s for logbook), the background work a store does
    /// after its commits (logbook's spare thread filling the segment ahead, an LSM's flushes)
    /// could land in the other systems' turns.
    Load(Duration),
}

/// What a system committed over its turns.
#[derive(Default)]
struct Tally {
    next: usize,
    events: usize,
    seconds: f64,
    latencies: Vec<Duration>,
}

/// One durable column for every system: their stores open side by side in `paths`; in each of
/// [`TURNS`] turns the ceiling probe (a file in `dir`) runs, then each system commits for its
/// turn (a system that has committed every event sits the rest out). Every store is closed at
/// the end (their directories are left for the caller).
fn durable_column(
    systems: &[System],
    paths: &[PathBuf],
    events: &Events,
    writers: usize,
    batch: usize,
    budget: Budget,
    dir: &Path,
) -> Result<Vec<Writes>> {
    let n = events.events.len();
    let engines: Vec<Box<dyn Engine>> = systems.iter().zip(paths).map(|(s, p)| s.open(p)).collect::<Result<_>>()?;
    let mut probe = engines::Probe::new(dir)?;
    let (Budget::Time(turn) | Budget::Load(turn)) = budget;
    let mut tallies: Vec<Tally> = systems.iter().map(|_| Tally::default()).collect();
    for _ in 0..TURNS {
        probe.run(turn)?;
        for (engine, tally) in engines.iter().zip(&mut tallies) {
            commits(&**engine, events, writers, batch, tally, n, Some(Instant::now() + turn))?;
        }
    }
    if let Budget::Load(_) = budget {
        for (engine, tally) in engines.iter().zip(&tallies) {
            let mut rest = Tally { next: tally.next, ..Tally::default() };
            commits(&**engine, events, writers, batch, &mut rest, n, None)?;
            if tally.events + rest.events != n {
                return Err(format!("the load committed {} of {n} events", tally.events + rest.events).into());
            }
        }
    }
    for engine in engines {
        engine.close()?;
    }
    let ceiling = probe.rate();
    Ok(tallies.into_iter().map(|t| Writes::new(ceiling, t.events, t.seconds, t.latencies)).collect())
}

/// `writers` threads commit the events from `tally.next` on, `batch` per commit, until event
/// `end` or `deadline`; the tally takes what they did.
fn commits(
    engine: &dyn Engine,
    events: &Events,
    writers: usize,
    batch: usize,
    tally: &mut Tally,
    end: usize,
    deadline: Option<Instant>,
) -> Result<()> {
    let next = std::sync::atomic::AtomicUsize::new(tally.next);
    let start = Instant::now();
    let results: Vec<Result<(usize, Vec<Duration>)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers)
            .map(|_| {
                scope.spawn(|| {
                    let (mut done, mut latencies) = (0, Vec::new());
                    loop {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            return Ok((done, latencies));
                        }
                        let i = next.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                        if i >= end {
                            return Ok((done, latencies));
                        }
                        let stop = (i + batch).min(end);
                        let t = Instant::now();
                        engine.commit(events, i..stop)?;
                        latencies.push(t.elapsed());
                        done += stop - i;
                    }
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap_or_else(|_| Err("a writer panicked".into()))).collect()
    });
    tally.seconds += start.elapsed().as_secs_f64();
    tally.next = next.into_inner().min(end);
    for result in results {
        let (done, latencies) = result?;
        tally.events += done;
        tally.latencies.extend(latencies);
    }
    Ok(())
}

/// Column d for one system: random order streams read in turns.
struct Reader {
    rng: SplitMix64,
    seconds: f64,
    latencies: Vec<Duration>,
    bytes: usize,
}

impl Reader {
    /// One warming read of every stream, each checked to hold all its events; `None` where
    /// the system cannot read a stream.
    fn warm(engine: &dyn Engine, events: &Events) -> Result<Option<Reader>> {
        let mut lengths = vec![0usize; events.streams.len()];
        for e in &events.events {
            lengths[e.stream] += 1;
        }
        for (stream, &length) in lengths.iter().enumerate() {
            match engine.read_stream(events, stream)? {
                None => return Ok(None),
                Some((read, _)) if read != length => {
                    return Err(format!("stream {} read {read} of its {length} events", events.streams[stream]).into())
                }
                Some(_) => {}
            }
        }
        Ok(Some(Reader { rng: SplitMix64::seed_from_u64(0x0D0D), seconds: 0.0, latencies: Vec::new(), bytes: 0 }))
    }

    /// Reads random streams for `duration`.
    fn read_for(&mut self, engine: &dyn Engine, events: &Events, duration: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < duration {
            let stream = (self.rng.next_u64() % events.streams.len() as u64) as usize;
            let t = Instant::now();
            let read = engine.read_stream(events, stream)?;
            self.latencies.push(t.elapsed());
            self.bytes += read.map_or(0, |(_, b)| b);
        }
        self.seconds += start.elapsed().as_secs_f64();
        Ok(())
    }

    fn finish(self) -> Reads {
        std::hint::black_box(self.bytes);
        Reads::new(self.seconds, self.latencies)
    }
}

/// Replays of every event in global order, repeated for at least `at_least` (and at least
/// once): the events read and the seconds taken.
fn replays(engine: &mut dyn Engine, n: usize, at_least: Duration) -> Result<(usize, f64)> {
    let (mut total, mut bytes) = (0usize, 0usize);
    let start = Instant::now();
    while total == 0 || start.elapsed() < at_least {
        let (count, b) = engine.replay()?;
        if count != n {
            return Err(format!("a replay read {count} of {n} events").into());
        }
        total += count;
        bytes += b;
    }
    std::hint::black_box(bytes);
    Ok((total, start.elapsed().as_secs_f64()))
}
