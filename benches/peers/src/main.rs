//! Issue 14's columns for logbook beside its embedded peers, in one run: fjall, okaywal and redb
//! on the same generated order events, each system in turn in a fresh directory on the same file
//! system, with the machine's fdatasync ceiling measured in the same run. Figures are to be read
//! as ratios within a run: the absolute ones move with the machine's neighbours.
//!
//! Columns: a, 1 writer, 1 event per durable commit; b, 1 writer, 64 events of several streams
//! per durable commit (this is the load that d, e and disk use); c, 16 writers, 1 event per
//! durable commit each, concurrently; d, read one order stream (random order ids) after one
//! warming pass over every stream; e, replay every event in global order; disk, allocated bytes
//! per event after the load, the store closed. See `engines.rs` for how each system is driven.

mod bench;
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
        let mut figures = Vec::new();
        for k in 0..args.systems.len() {
            let system = args.systems[(round + k) % args.systems.len()];
            let f = run_system(system, &events, args, &base.join(format!("{}-{round}", system.name())))?;
            println!("round {}: {:<8} {}", round + 1, system.name(), f.line());
            figures.push((system, f));
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

/// Every selected column for one system, each phase in a fresh directory under `dir`.
fn run_system(system: System, events: &Events, args: &Args, dir: &Path) -> Result<Figures> {
    std::fs::create_dir_all(dir)?;
    let mut f = Figures { ceiling: engines::fdatasync_ceiling(dir, Duration::from_secs(1))?, ..Figures::default() };
    let n = events.events.len();
    let wants = |c: Column| args.columns.contains(&c);
    if wants(Column::A) {
        let path = dir.join("a");
        let engine = system.open(&path)?;
        f.a = Some(commits(&*engine, events, 1, 1, Some(args.seconds))?);
        engine.close()?;
        std::fs::remove_dir_all(&path)?;
    }
    if wants(Column::C) {
        let path = dir.join("c");
        let engine = system.open(&path)?;
        f.c = Some(commits(&*engine, events, WRITERS_C, 1, Some(args.seconds))?);
        engine.close()?;
        std::fs::remove_dir_all(&path)?;
    }
    if [Column::B, Column::D, Column::E, Column::Disk].into_iter().any(wants) {
        let path = dir.join("load");
        let engine = system.open(&path)?;
        let load = commits(&*engine, events, 1, BATCH_B, None)?;
        if load.events != n {
            return Err(format!("{}: the load committed {} of {n} events", system.name(), load.events).into());
        }
        engine.close()?;
        f.b = wants(Column::B).then_some(load);
        f.disk = wants(Column::Disk).then_some(engines::allocated_bytes(&path)? as f64 / n as f64);
        if wants(Column::D) || wants(Column::E) {
            let mut engine = system.open(&path)?;
            if wants(Column::D) {
                f.d = Some(reads(&*engine, events, args.seconds)?);
            }
            if wants(Column::E) {
                f.e = Some(replays(&mut *engine, n)?);
            }
            engine.close()?;
        }
        std::fs::remove_dir_all(&path)?;
    }
    std::fs::remove_dir_all(dir)?;
    Ok(f)
}

/// `writers` threads commit the events in order, `batch` per commit, until every event is
/// committed or `duration` has passed.
fn commits(
    engine: &dyn Engine,
    events: &Events,
    writers: usize,
    batch: usize,
    duration: Option<Duration>,
) -> Result<Writes> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let n = events.events.len();
    let start = Instant::now();
    let deadline = duration.map(|d| start + d);
    let results: Vec<Result<(usize, Vec<Duration>)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers)
            .map(|_| {
                scope.spawn(|| {
                    let (mut done, mut latencies) = (0, Vec::new());
                    loop {
                        let i = next.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                        if i >= n || deadline.is_some_and(|d| Instant::now() >= d) {
                            return Ok((done, latencies));
                        }
                        let end = (i + batch).min(n);
                        let t = Instant::now();
                        engine.commit(events, i..end)?;
                        latencies.push(t.elapsed());
                        done += end - i;
                    }
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap_or_else(|_| Err("a writer panicked".into()))).collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let (mut done, mut latencies) = (0, Vec::new());
    for result in results {
        let (d, l) = result?;
        done += d;
        latencies.extend(l);
    }
    Ok(Writes::new(done, seconds, latencies))
}

/// One warming read of every stream (each checked to hold all its events), then reads of
/// random streams for `duration`.
fn reads(engine: &dyn Engine, events: &Events, duration: Duration) -> Result<Option<Reads>> {
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
    let mut rng = SplitMix64::seed_from_u64(0x0D0D);
    let mut latencies = Vec::new();
    let mut bytes = 0usize;
    let start = Instant::now();
    while start.elapsed() < duration {
        let stream = (rng.next_u64() % events.streams.len() as u64) as usize;
        let t = Instant::now();
        let read = engine.read_stream(events, stream)?;
        latencies.push(t.elapsed());
        bytes += read.map_or(0, |(_, b)| b);
    }
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    Ok(Some(Reads::new(seconds, latencies)))
}

/// Replays of every event in global order, repeated for at least a second: events per second.
fn replays(engine: &mut dyn Engine, n: usize) -> Result<f64> {
    let (mut total, mut bytes) = (0usize, 0usize);
    let start = Instant::now();
    while total == 0 || start.elapsed() < Duration::from_secs(1) {
        let (count, b) = engine.replay()?;
        if count != n {
            return Err(format!("a replay read {count} of {n} events").into());
        }
        total += count;
        bytes += b;
    }
    std::hint::black_box(bytes);
    Ok(total as f64 / start.elapsed().as_secs_f64())
}
