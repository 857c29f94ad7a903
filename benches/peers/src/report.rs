//! What a run measured and the table it prints: each column's median per system over the
//! rounds, the best peer's, and logbook's ratio to it taken round by round (the figures of one
//! round ran in the same minutes; across rounds the machine's neighbours change).

use std::fmt::Write as _;
use std::time::Duration;

use crate::engines::System;

/// The columns of issue 14.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    A,
    B,
    C,
    D,
    E,
    Disk,
}

impl Column {
    pub const ALL: [Column; 6] = [Column::A, Column::B, Column::C, Column::D, Column::E, Column::Disk];

    pub fn name(self) -> &'static str {
        match self {
            Column::A => "a",
            Column::B => "b",
            Column::C => "c",
            Column::D => "d",
            Column::E => "e",
            Column::Disk => "disk",
        }
    }

    pub fn parse(name: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Durable commits of one column.
#[derive(Debug, Clone)]
pub struct Writes {
    /// fdatasync rate of a 4 KiB write into a preallocated file, probed just before.
    pub ceiling: f64,
    pub events: usize,
    pub commits: usize,
    pub seconds: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Writes {
    pub fn new(ceiling: f64, events: usize, seconds: f64, mut latencies: Vec<Duration>) -> Writes {
        latencies.sort_unstable();
        Writes {
            ceiling,
            events,
            commits: latencies.len(),
            seconds,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
        }
    }
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.seconds
    }
    pub fn commits_per_sec(&self) -> f64 {
        self.commits as f64 / self.seconds
    }
    /// Commits per second over the ceiling probed just before (events per second for
    /// concurrent writers, whose commits share syncs).
    pub fn over_ceiling(&self, per_event: bool) -> f64 {
        (if per_event { self.events_per_sec() } else { self.commits_per_sec() }) / self.ceiling
    }
}

/// Stream reads of column d.
#[derive(Debug, Clone)]
pub struct Reads {
    pub per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Reads {
    pub fn new(seconds: f64, mut latencies: Vec<Duration>) -> Reads {
        latencies.sort_unstable();
        Reads {
            per_sec: latencies.len() as f64 / seconds,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
        }
    }
}

/// One system's figures in one round; `None` where the column was not run.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub a: Option<Writes>,
    pub b: Option<Writes>,
    pub c: Option<Writes>,
    /// `Some(None)`: not applicable to the system.
    pub d: Option<Option<Reads>>,
    /// Events per second.
    pub e: Option<f64>,
    /// Allocated bytes per event.
    pub disk: Option<f64>,
}

impl Figures {
    /// The round's figures on one line.
    pub fn line(&self) -> String {
        let mut s = String::new();
        let writes = |s: &mut String, name: &str, w: &Option<Writes>| {
            if let Some(w) = w {
                let _ = write!(
                    s,
                    "{name} {} ev/s, {} commits/s, p50 {} p99 {} (ceiling {}/s) | ",
                    human(w.events_per_sec()),
                    human(w.commits_per_sec()),
                    micros(w.p50),
                    micros(w.p99),
                    human(w.ceiling)
                );
            }
        };
        writes(&mut s, "a", &self.a);
        writes(&mut s, "b", &self.b);
        writes(&mut s, "c", &self.c);
        match &self.d {
            Some(Some(r)) => {
                let _ = write!(s, "d {} reads/s, p50 {} p99 {} | ", human(r.per_sec), micros(r.p50), micros(r.p99));
            }
            Some(None) => s.push_str("d n/a | "),
            None => {}
        }
        if let Some(e) = self.e {
            let _ = write!(s, "e {} ev/s | ", human(e));
        }
        if let Some(disk) = self.disk {
            let _ = write!(s, "disk {disk:.1} B/event | ");
        }
        s.trim_end_matches(" | ").to_string()
    }
}

/// Takes one figure from a round's figures of one system.
type Pick = fn(&Figures) -> Option<f64>;

/// A row of the table: how to take its figure from a round's figures, and whether more is better.
struct Row {
    label: &'static str,
    column: Column,
    higher_is_better: bool,
    figure: Pick,
    format: fn(f64) -> String,
}

fn rows() -> Vec<Row> {
    let rate = |x: f64| human(x);
    let us = |x: f64| format!("{x:.1} µs");
    vec![
        Row {
            label: "a: 1 writer, 1 event/commit (ev/s)",
            column: Column::A,
            higher_is_better: true,
            figure: |f| f.a.as_ref().map(Writes::events_per_sec),
            format: rate,
        },
        Row {
            label: "b: 1 writer, 64 events/commit (ev/s)",
            column: Column::B,
            higher_is_better: true,
            figure: |f| f.b.as_ref().map(Writes::events_per_sec),
            format: rate,
        },
        Row {
            label: "c: 16 writers, 1 event/commit (ev/s)",
            column: Column::C,
            higher_is_better: true,
            figure: |f| f.c.as_ref().map(Writes::events_per_sec),
            format: rate,
        },
        Row {
            label: "d: read one stream (reads/s)",
            column: Column::D,
            higher_is_better: true,
            figure: |f| f.d.as_ref()?.as_ref().map(|r| r.per_sec),
            format: rate,
        },
        Row {
            label: "d: p50",
            column: Column::D,
            higher_is_better: false,
            figure: |f| f.d.as_ref()?.as_ref().map(|r| r.p50.as_secs_f64() * 1e6),
            format: us,
        },
        Row {
            label: "d: p99",
            column: Column::D,
            higher_is_better: false,
            figure: |f| f.d.as_ref()?.as_ref().map(|r| r.p99.as_secs_f64() * 1e6),
            format: us,
        },
        Row {
            label: "e: replay in global order (ev/s)",
            column: Column::E,
            higher_is_better: true,
            figure: |f| f.e,
            format: rate,
        },
        Row {
            label: "disk: allocated B/event",
            column: Column::Disk,
            higher_is_better: false,
            figure: |f| f.disk,
            format: |x| format!("{x:.1}"),
        },
    ]
}

/// The table of a run: medians over the rounds per system, the best peer's median, and logbook's
/// ratio to the round's best peer (median and range over the rounds).
pub fn table(rounds: &[Vec<(System, Figures)>], systems: &[System], columns: &[Column]) -> String {
    let peers: Vec<System> = systems.iter().copied().filter(|s| *s != System::Logbook).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "medians of {} round(s); ratio = logbook / the round's best peer, median (min–max) over the rounds \
         (above 1 is better for rates, below 1 for latencies and bytes)",
        rounds.len()
    );
    let _ = write!(out, "\n| column |");
    for s in systems {
        let _ = write!(out, " {} |", s.name());
    }
    let _ = writeln!(out, " best peer | logbook / best peer |");
    let _ = writeln!(out, "|---|{}---|---|", "---:|".repeat(systems.len()));
    for row in rows().into_iter().filter(|r| columns.contains(&r.column)) {
        let _ = write!(out, "| {} |", row.label);
        for &system in systems {
            let values: Vec<f64> = rounds.iter().filter_map(|r| of(r, system)).filter_map(row.figure).collect();
            let cell = match median(&values) {
                Some(m) => (row.format)(m),
                None => "n/a".to_string(),
            };
            let _ = write!(out, " {cell} |");
        }
        // The best peer of each round, and logbook's ratio to it.
        let mut best_values = Vec::new();
        let mut best_names = Vec::new();
        let mut ratios = Vec::new();
        for round in rounds {
            let best = peers.iter().filter_map(|&p| Some((p, of(round, p).and_then(row.figure)?))).reduce(|x, y| {
                if (y.1 > x.1) == row.higher_is_better {
                    y
                } else {
                    x
                }
            });
            if let Some((peer, value)) = best {
                best_values.push(value);
                if !best_names.contains(&peer.name()) {
                    best_names.push(peer.name());
                }
                if let Some(l) = of(round, System::Logbook).and_then(row.figure) {
                    ratios.push(l / value);
                }
            }
        }
        let best = match median(&best_values) {
            Some(m) => format!("{} ({})", (row.format)(m), best_names.join(", ")),
            None => "n/a".to_string(),
        };
        let ratio = match median(&ratios) {
            Some(m) => {
                let (lo, hi) = ratios.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
                format!("**{m:.2}×** ({lo:.2}–{hi:.2})")
            }
            None => "n/a".to_string(),
        };
        let _ = writeln!(out, " {best} | {ratio} |");
    }
    // The ceiling of each durable column, probed in turns beside the systems, and each system's
    // commits over it.
    let picks: [(&str, Column, Pick, Pick); 3] = [
        (
            "a: commits/s ÷ ceiling",
            Column::A,
            |f| Some(f.a.as_ref()?.ceiling),
            |f| f.a.as_ref().map(|w| w.over_ceiling(false)),
        ),
        (
            "b: commits/s ÷ ceiling",
            Column::B,
            |f| Some(f.b.as_ref()?.ceiling),
            |f| f.b.as_ref().map(|w| w.over_ceiling(false)),
        ),
        (
            "c: events/s ÷ ceiling",
            Column::C,
            |f| Some(f.c.as_ref()?.ceiling),
            |f| f.c.as_ref().map(|w| w.over_ceiling(true)),
        ),
    ];
    let picks: Vec<_> = picks.into_iter().filter(|p| columns.contains(&p.1)).collect();
    if picks.is_empty() {
        return out;
    }
    let _ = write!(
        out,
        "\nceiling: fdatasync of a 4 KiB write into a preallocated file, in turns beside the systems \
         (median over the rounds of each column's rate)\n\n| column | ceiling |"
    );
    for s in systems {
        let _ = write!(out, " {} |", s.name());
    }
    let _ = writeln!(out, "\n|---|---:|{}", "---:|".repeat(systems.len()));
    for (label, _, ceiling, pick) in picks {
        let ceilings: Vec<f64> = rounds.iter().filter_map(|r| r.first()).filter_map(|(_, f)| ceiling(f)).collect();
        let _ = write!(out, "| {label} | {}/s |", human(median(&ceilings).unwrap_or(0.0)));
        for &system in systems {
            let values: Vec<f64> = rounds.iter().filter_map(|r| of(r, system)).filter_map(pick).collect();
            let _ = write!(out, " {} |", median(&values).map_or("n/a".to_string(), |m| format!("{m:.2}")));
        }
        out.push('\n');
    }
    out
}

/// One aim of issue 14: logbook's figure against a peer's (or the round's best peer's).
struct Aim {
    text: &'static str,
    column: Column,
    /// `None`: the best of the peers in each round.
    peer: Option<System>,
    /// The ratio logbook / peer must be at least this (rates) or at most (latencies).
    bound: f64,
    higher_is_better: bool,
    figure: Pick,
}

/// The aims, judged round by round: met when the median ratio and every round's meet
/// the bound, met at the median when only the median does.
pub fn aims(rounds: &[Vec<(System, Figures)>], systems: &[System], columns: &[Column]) -> String {
    let aims = [
        Aim {
            text: "b ≥ 1.0× okaywal",
            column: Column::B,
            peer: Some(System::Okaywal),
            bound: 1.0,
            higher_is_better: true,
            figure: |f| f.b.as_ref().map(Writes::events_per_sec),
        },
        Aim {
            text: "c ≥ 1.6× the best peer",
            column: Column::C,
            peer: None,
            bound: 1.6,
            higher_is_better: true,
            figure: |f| f.c.as_ref().map(Writes::events_per_sec),
        },
        Aim {
            text: "d p99 ≤ redb's",
            column: Column::D,
            peer: Some(System::Redb),
            bound: 1.0,
            higher_is_better: false,
            figure: |f| f.d.as_ref()?.as_ref().map(|r| r.p99.as_secs_f64()),
        },
        Aim {
            text: "e ≥ 2× okaywal",
            column: Column::E,
            peer: Some(System::Okaywal),
            bound: 2.0,
            higher_is_better: true,
            figure: |f| f.e,
        },
    ];
    let mut out = String::from("aims of issue 14 (logbook / peer, round by round):\n");
    for aim in aims.iter().filter(|a| columns.contains(&a.column)) {
        let peers: Vec<System> = match aim.peer {
            Some(p) => vec![p],
            None => systems.iter().copied().filter(|s| *s != System::Logbook).collect(),
        };
        let ratios: Vec<f64> = rounds
            .iter()
            .filter_map(|round| {
                let logbook = of(round, System::Logbook).and_then(aim.figure)?;
                let best = peers.iter().filter_map(|&p| of(round, p).and_then(aim.figure)).reduce(|x, y| {
                    if (y > x) == aim.higher_is_better {
                        y
                    } else {
                        x
                    }
                })?;
                Some(logbook / best)
            })
            .collect();
        let meets = |r: f64| if aim.higher_is_better { r >= aim.bound } else { r <= aim.bound };
        let verdict = match median(&ratios) {
            None => "not measurable in this run".to_string(),
            Some(m) => {
                let each = ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ");
                let judged = match (meets(m), ratios.iter().all(|&r| meets(r))) {
                    (true, true) => "met",
                    (true, false) => "met at the median, not in every round",
                    (false, _) => "NOT met",
                };
                format!("{each} → median {m:.2}: {judged}")
            }
        };
        let _ = writeln!(out, "  {}: {verdict}", aim.text);
    }
    out
}

/// `system`'s figures in `round`.
fn of(round: &[(System, Figures)], system: System) -> Option<&Figures> {
    round.iter().find(|(s, _)| *s == system).map(|(_, f)| f)
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64 * p).round() as usize).min(sorted.len() - 1)]
}

/// 1234 → "1,234"; 123456 → "123.5 k"; 12345678 → "12.35 M".
pub fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e5 {
        format!("{:.1} k", x / 1e3)
    } else if x >= 1e4 {
        format!("{:.2} k", x / 1e3)
    } else {
        let n = x.round() as u64;
        if n >= 1000 {
            format!("{},{:03}", n / 1000, n % 1000)
        } else {
            format!("{x:.0}")
        }
    }
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// The time now, UTC, to the second.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// The 1, 5 and 15-minute load averages (`/proc/loadavg`), or "unknown".
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_numbers_read_as_intended() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(human(1234.4), "1,234");
        assert_eq!(human(123_456.0), "123.5 k");
        assert_eq!(human(12_345_678.0), "12.35 M");
    }

    #[test]
    fn the_table_takes_the_best_peer_per_round() {
        let figures = |a: f64, disk: f64| Figures {
            a: Some(Writes { events: a as usize, commits: a as usize, ..Writes::new(1000.0, 0, 1.0, vec![]) }),
            d: Some(None),
            disk: Some(disk),
            ..Figures::default()
        };
        let round = vec![
            (System::Logbook, figures(900.0, 300.0)),
            (System::Fjall, figures(300.0, 200.0)),
            (System::Redb, figures(450.0, 600.0)),
        ];
        let systems = [System::Logbook, System::Fjall, System::Redb];
        let t = table(&[round], &systems, &[Column::A, Column::D, Column::Disk]);
        assert!(t.contains("| a: 1 writer, 1 event/commit (ev/s) | 900 | 300 | 450 | 450 (redb) | **2.00×**"), "{t}");
        assert!(t.contains("| disk: allocated B/event | 300.0 | 200.0 | 600.0 | 200.0 (fjall) | **1.50×**"), "{t}");
        assert!(t.contains("| d: p99 | n/a | n/a | n/a | n/a | n/a |"), "{t}");
        assert!(t.contains("| a: commits/s ÷ ceiling | 1,000/s | 0.90 | 0.30 | 0.45 |"), "{t}");
    }

    #[test]
    fn aims_are_judged_round_by_round() {
        let round = |logbook_e: f64| {
            vec![
                (System::Logbook, Figures { e: Some(logbook_e), ..Figures::default() }),
                (System::Okaywal, Figures { e: Some(1.0), ..Figures::default() }),
            ]
        };
        let systems = [System::Logbook, System::Okaywal];
        let all = aims(&[round(3.0), round(2.5), round(1.5)], &systems, &[Column::E, Column::D]);
        assert!(
            all.contains("e ≥ 2× okaywal: 3.00, 2.50, 1.50 → median 2.50: met at the median, not in every round"),
            "{all}"
        );
        assert!(all.contains("d p99 ≤ redb's: not measurable in this run"), "{all}");
        assert!(aims(&[round(1.9)], &systems, &[Column::E]).contains("NOT met"));
    }
}
