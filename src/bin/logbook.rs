//! The `logbook` command line. Each verb is one enum variant plus one function; add a verb by
//! adding both (and a match arm in `main`). Only `serve`, `demo`, `bench` and `import --create` create a store;
//! every other verb opens one with `open_store` (or checks with `require_store`), which fails
//! with `Failure::NoStore` (exit 3) on a directory holding none.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use logbook::{ExpectedVersion, NewEvent};
use logbook_server::client::{AllFilter, Client, Event};
use logbook_server::{self as server, Config, Server};

#[derive(Parser)]
#[command(name = "logbook", version, about = "An append-only event store: embedded library, daemon and CLI")]
struct Cli {
    /// How log lines (on standard error) are written: `text` (colours only on a terminal) or
    /// `json` (one object per line, for a log collector). RUST_LOG sets the level (default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs go to standard error: as text, coloured only when it is a terminal (a file or a
/// journal gets no escape codes), or as JSON lines. A line that cannot be written (the log's
/// disk is full) is lost: the subscriber's own report of that would go to standard error
/// too, through a print that panics when the write fails, and a daemon must not stop
/// because its log did.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: the store over TCP, speaking RESP3 (any Redis client works).
    #[command(
        after_help = "Examples:\n  logbook serve\n  logbook serve --data /var/lib/logbook --config packaging/logbook.toml --metrics 127.0.0.1:9187\n  logbook serve --http 127.0.0.1:7879   # the web console at http://127.0.0.1:7879/\n  logbook serve --log-format json 2>>logbook.log"
    )]
    Serve(ServeArgs),
    /// Append one event through a running daemon.
    #[command(
        after_help = "Examples:\n  logbook append order-6f1c CART_CREATED '{\"customer_id\":\"c-17\"}' --expected none\n  logbook append order-6f1c ITEM_ADDED '{\"sku\":\"p-9\"}' --expected 1 --json\n  logbook append --connect 10.0.0.5:7878 --tenant shop --token \"$TOKEN\" order-1 CART_CREATED '{}'"
    )]
    Append(AppendArgs),
    /// Read a stream's events through a running daemon.
    #[command(
        after_help = "Examples:\n  logbook read order-6f1c\n  logbook read order-6f1c --from-version 3 --count 10 --json\n  logbook read order-6f1c --rev --count 1\n  logbook read order-6f1c --archive --data ./data"
    )]
    Read(ReadArgs),
    /// Follow the global log through a running daemon, printing events as they arrive.
    #[command(
        after_help = "Examples:\n  logbook tail\n  logbook tail --from-position 1 --prefix order- --type PAYMENT_CONFIRMED --json\n  logbook tail --count 100"
    )]
    Tail(TailArgs),
    /// Check every frame of every segment and every index file; exit non-zero on corruption.
    #[command(
        after_help = "Examples:\n  logbook verify --data ./data\n  logbook verify --data ./data --snapshots --json"
    )]
    Verify(VerifyArgs),
    /// Cut a damaged store back to its last good event before the first damage, when `open`
    /// refuses it and there is no backup: says which positions it gives up and keeps a copy of
    /// everything it cuts in <data>/repair-<time>/. The daemon must be stopped.
    #[command(after_help = "Examples:\n  logbook repair --data ./data")]
    Repair(RepairArgs),
    /// What a store holds: events, streams, segments, bytes, per category and type, oldest/newest.
    #[command(
        after_help = "Examples:\n  logbook stats --data ./data\n  logbook stats --connect 127.0.0.1:7878 --json"
    )]
    Stats(StatsArgs),
    /// Copy events into Parquet files (the cold tier's format) for DuckDB, pandas or Spark;
    /// deletes nothing.
    #[command(
        after_help = "Examples:\n  logbook export --data ./data --since 30d --out ./export\n  logbook export --since 2026-11-01 --until 2026-11-15T12:00:00Z --json"
    )]
    Export(ExportArgs),
    /// Apply the retention policy now: archive expired events to <data>/archive (Parquet),
    /// drop deleted streams' events, rewrite and merge sealed segments. Cold-tier files of the
    /// first layout are rewritten into the current one first (--migrate-archive: only that).
    #[command(
        after_help = "Examples:\n  logbook compact --data ./data --config packaging/logbook.toml\n  logbook compact --data ./data --json\n  logbook compact --data ./data --migrate-archive\n  logbook compact --connect 127.0.0.1:7878 --tenant admin --token \"$TOKEN\"   # the daemon's own policy"
    )]
    Compact(CompactArgs),
    /// Compress the sealed segments (LZ4 in 64 KiB blocks, random access kept through the
    /// index): they take about 0.4x the events' own bytes on order traffic; reads decompress a
    /// block through the block cache. The active segment is compressed once sealed, by a later run.
    #[command(
        after_help = "Examples:\n  logbook compress --data ./data\n  logbook compact --data ./data --compress --json"
    )]
    Compress(CompressArgs),
    /// Copy a store, live or not, to a new directory (a consistent backup; restore = move it
    /// into place while the store is stopped). Refuses a store `open` would refuse, naming the
    /// damage; the copy carries the store's MANIFEST (and CLEAN, when stopped).
    #[command(
        after_help = "Examples:\n  logbook backup --data ./data --out ./backup-2026-11-26\n  logbook backup --connect 127.0.0.1:7878 --name nightly-2026-11-26   # into the daemon's backup_dir"
    )]
    Backup(BackupArgs),
    /// List streams in name order with their versions, a page at a time (deleted streams left out).
    #[command(
        after_help = "Examples:\n  logbook streams --data ./data --prefix order- --count 20\n  logbook streams --connect 127.0.0.1:7878 --after order-6f1c --json"
    )]
    Streams(StreamsArgs),
    /// Delete a stream (a tombstone): hidden from reads at once, removed from disk by compaction
    /// once the segments holding its events are sealed.
    /// Deletion is permanent, as a KurrentDB tombstone: the name can never be appended to again,
    /// even when it had no events yet (`--expected exists` refuses a stream that does not exist).
    #[command(
        after_help = "Examples:\n  logbook delete-stream cart-17 --data ./data\n  logbook delete-stream cart-17 --expected 4 --json\n  logbook delete-stream cart-17 --connect 127.0.0.1:7878 --tenant shop --token \"$TOKEN\""
    )]
    DeleteStream(DeleteStreamArgs),
    /// The e-commerce order lifecycle: an order's timeline, the cart-to-order funnel.
    #[command(subcommand, after_help = "Examples:\n  logbook order timeline 6f1c\n  logbook order funnel --since 30d")]
    Order(OrderCommand),
    /// Generate a month of realistic order traffic (timestamps over the last 30 days) into a
    /// data directory, then show two timelines, the funnel and the funnel by day.
    #[command(after_help = "Examples:\n  logbook demo\n  logbook demo --orders 2000 --seed 7 --data ./demo-data")]
    Demo(DemoArgs),
    /// Measure append, read or replay throughput beside this machine's fdatasync rate and
    /// write bandwidth, measured in the same run.
    #[command(
        after_help = "Examples:\n  logbook bench append --writers 1,16,64\n  logbook bench append --batch 64 --multi-stream --writers 1 --duration 10\n  logbook bench read --connect 127.0.0.1:7878 --json"
    )]
    Bench(BenchArgs),
    /// Import the PostgreSQL `order_events` table (COPY ... TO STDOUT WITH CSV HEADER): each
    /// order's rows, by created_at, to order-<order_id> as one atomic append, the row id as
    /// event id (a rerun imports nothing twice), created_at as the event's own time.
    #[command(
        after_help = "Examples:\n  psql -c \"COPY order_events TO STDOUT WITH CSV HEADER\" shop > order_events.csv\n  logbook import --csv order_events.csv --data ./data --create\n  logbook import --csv order_events.csv --data ./data --tenant acme --json"
    )]
    Import(ImportArgs),
    /// Print the SHA-256 hex of a token, for the `token_sha256` fields of the config file.
    #[command(
        after_help = "Example (keep the token for the client, put the hash in the config):\n  TOKEN=$(openssl rand -hex 32); echo \"$TOKEN\"; logbook hash-token \"$TOKEN\""
    )]
    HashToken {
        /// The token to hash.
        token: String,
        /// Print `{"token_sha256": ...}`.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  logbook completions bash > ~/.local/share/bash-completion/completions/logbook"
    )]
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(after_help = "Example:\n  logbook man > logbook.1 && man ./logbook.1")]
    Man,
}

#[derive(Args)]
struct ServeArgs {
    /// Data directory [default: ./data, or `data` from the config file].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7878, or `listen` from the config file].
    #[arg(long)]
    listen: Option<String>,
    /// TOML config file: tenants, admin token, limits (see docs/protocol.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve Prometheus text metrics over HTTP on this address (metrics and health only).
    #[arg(long)]
    metrics: Option<String>,
    /// Serve the web console and its JSON API on this address (with /metrics, /healthz and
    /// /readyz too) [default: `http` from the config file, or off].
    #[arg(long)]
    http: Option<String>,
}

/// How to reach and authenticate with a daemon.
#[derive(Args)]
struct ConnectArgs {
    /// Daemon address.
    #[arg(long, default_value = server::DEFAULT_LISTEN)]
    connect: String,
    /// Tenant to authenticate as (with --token, or LOGBOOK_TOKEN).
    #[arg(long)]
    tenant: Option<String>,
    /// Token of the tenant.
    #[arg(long, env = "LOGBOOK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON (one object per line) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AppendArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    /// Stream name.
    stream: String,
    /// Event type.
    event_type: String,
    /// Event data (JSON in practice).
    data: String,
    /// Expected version: any, none, exists or a number.
    #[arg(long, default_value = "any")]
    expected: String,
    /// Event id (UUID) for idempotent retries.
    #[arg(long)]
    id: Option<uuid::Uuid>,
    /// Metadata (a JSON object).
    #[arg(long)]
    meta: Option<String>,
}

#[derive(Args)]
struct ReadArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    /// Stream name.
    stream: String,
    /// First version to read (default: 1, or the last with --rev).
    #[arg(long = "from-version", alias = "from", value_name = "VERSION")]
    from: Option<u64>,
    /// Most events to read.
    #[arg(long)]
    count: Option<u64>,
    /// Newest first.
    #[arg(long)]
    rev: bool,
    /// Read the stream's archived events from `<--data>/archive` instead of the daemon.
    #[arg(long)]
    archive: bool,
    /// Data directory, with --archive.
    #[arg(long, default_value = "./data", requires = "archive")]
    data: PathBuf,
}

#[derive(Args)]
struct ExportArgs {
    /// Data directory (the store must not be open elsewhere).
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// Only events at or after this instant: an RFC 3339 date or time, or a period back from
    /// now (30d, 12h, 90m).
    #[arg(long)]
    since: Option<String>,
    /// Only events before this instant (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Archive directory to write (tenant=<t>/date=<d>/*.parquet and _manifest.json).
    #[arg(long, default_value = "./export")]
    out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `--connect` for the verbs that otherwise open a store: ask a running daemon instead.
#[derive(Args)]
struct RemoteArgs {
    /// Ask the daemon at this address instead of opening --data (the admin's commands need
    /// `--tenant admin`, unless the daemon runs without auth).
    #[arg(long)]
    connect: Option<String>,
    /// Tenant to authenticate as, with --connect (and --token or LOGBOOK_TOKEN).
    #[arg(long, requires = "connect")]
    tenant: Option<String>,
    #[arg(long, env = "LOGBOOK_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl RemoteArgs {
    /// A connected (and authenticated) client when --connect is given.
    fn client(&self) -> Result<Option<Client>, Failure> {
        let Some(addr) = &self.connect else { return Ok(None) };
        let conn =
            ConnectArgs { connect: addr.clone(), tenant: self.tenant.clone(), token: self.token.clone(), json: false };
        Ok(Some(connect(&conn)?))
    }
}

#[derive(Args)]
struct StreamsArgs {
    /// Data directory (the store must not be open elsewhere; or --connect).
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    #[command(flatten)]
    remote: RemoteArgs,
    /// Only streams whose name starts with this.
    #[arg(long)]
    prefix: Option<String>,
    /// Start after this name (the last one of the previous page).
    #[arg(long)]
    after: Option<String>,
    /// Most streams to list.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Print one JSON object per stream.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CompactArgs {
    /// Data directory (the store must not be open elsewhere: stop the daemon, or let its
    /// `compact_interval` do this).
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// TOML file with a [retention] table (the daemon's config works); without it the default
    /// policy applies: no rules, the default legal holds, so only deleted streams are removed.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Then compress the sealed segments (as `logbook compress`): compaction writes plain ones.
    #[arg(long)]
    compress: bool,
    /// Only rewrite the cold tier's files of the first layout (a `tenant` column) into the
    /// current one, which every compaction also does first; the hot tier is left as it is.
    #[arg(long, conflicts_with_all = ["config", "compress"])]
    migrate_archive: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Args)]
struct CompressArgs {
    /// Data directory (the store must not be open elsewhere: stop the daemon first).
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// The codec: lz4 (none refuses: nothing to do).
    #[arg(long, default_value = "lz4")]
    codec: logbook::Compression,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BackupArgs {
    /// Data directory to copy (it may be in use by a daemon).
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// Where to put the copy (must not exist, or be empty).
    #[arg(long, required_unless_present = "name")]
    out: Option<PathBuf>,
    /// With --connect: the copy's name in the daemon's backup_dir (one directory name).
    #[arg(long, requires = "connect", conflicts_with = "out")]
    name: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DeleteStreamArgs {
    /// Data directory (the store must not be open elsewhere).
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// The stream to delete.
    stream: String,
    /// Only if the stream is at this version: any, none, exists or a number.
    #[arg(long, default_value = "any")]
    expected: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Args)]
struct TailArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    /// First global position to print (default: only events appended from now on).
    #[arg(long = "from-position", alias = "from", value_name = "POSITION")]
    from: Option<u64>,
    /// Only streams whose name starts with this.
    #[arg(long)]
    prefix: Option<String>,
    /// Only these event types (repeatable).
    #[arg(long = "type")]
    types: Vec<String>,
    /// Stop after this many events.
    #[arg(long, alias = "limit")]
    count: Option<u64>,
}

#[derive(Args)]
struct RepairArgs {
    /// Data directory.
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct VerifyArgs {
    /// Data directory.
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// Also rebuild every snapshotted order by full replay and compare it with its snapshot
    /// (opens the store: the daemon must not be running on this directory).
    #[arg(long)]
    snapshots: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StatsArgs {
    /// Data directory (the store must not be open elsewhere; or --connect for the daemon's INFO).
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    #[command(flatten)]
    remote: RemoteArgs,
    /// Print JSON (integer keys events, streams, segments, bytes, ...).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum OrderCommand {
    /// The readable audit trail of one order, oldest first (times in UTC).
    #[command(
        after_help = "Examples:\n  logbook order timeline 6f1c\n  logbook order timeline order-6f1c --json\n  logbook order timeline 6f1c --connect 127.0.0.1:7878"
    )]
    Timeline(TimelineArgs),
    /// Cart-to-order conversion per retailer, drop-off per funnel stage, event types, activity.
    #[command(
        after_help = "Examples:\n  logbook order funnel --since 30d\n  logbook order funnel --since 2026-11-01 --retailer acme --json\n  logbook order funnel --tenant shop_berlin --since 7d   # one tenant's orders"
    )]
    Funnel(FunnelArgs),
}

#[derive(Args)]
struct TimelineArgs {
    /// Order id, its stream name (order-<id>), or a prefix of the id that only one order has.
    order_id: String,
    /// Data directory of a store that is not open elsewhere (default ./data; or --connect for
    /// the daemon's TIMELINE).
    #[arg(long, conflicts_with = "connect")]
    data: Option<PathBuf>,
    #[command(flatten)]
    remote: RemoteArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FunnelArgs {
    /// Data directory (the store must not be open elsewhere).
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// Only events at or after this instant: an RFC 3339 date or time, or a period back from
    /// now (30d, 12h, 90m).
    #[arg(long)]
    since: Option<String>,
    /// Only this retailer.
    #[arg(long)]
    retailer: Option<String>,
    /// Only this tenant's orders (its namespace); without it, every order in the store: those
    /// outside any namespace and every tenant's.
    #[arg(long)]
    tenant: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// Orders to generate.
    #[arg(long, default_value_t = 500)]
    orders: usize,
    /// Data directory (the one `logbook serve` uses by default).
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// Seed of the generator: the same seed gives the same orders (at the same times of day
    /// relative to now).
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Print one JSON object: the summary, the two timelines and the report.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ImportArgs {
    /// The CSV file (`-` reads standard input).
    #[arg(long)]
    csv: PathBuf,
    /// Data directory (the store must not be open elsewhere: stop the daemon first).
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// Create the store when the directory holds none (otherwise that is an error, as for
    /// every verb but serve, demo, bench and import --create).
    #[arg(long)]
    create: bool,
    /// Import into this tenant's namespace (the streams its daemon connections see).
    #[arg(long)]
    tenant: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchModeArg {
    Append,
    Read,
    Replay,
    Mixed,
    /// Bytes on disk after loading the realistic order workload (`--events`, `--streams`,
    /// `--batch` events per atomic multi-stream append); with `--compress`, a second store's
    /// sealed segments are compressed and read and replay are compared (`--rounds`, `--duration`
    /// seconds of stream reads per round and store).
    Disk,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum WorkloadArg {
    /// Lifecycle event types with JSON data padded to --payload-bytes (the earlier figures).
    Filler,
    /// design.md's order events: varied JSON payloads (107–173 B) and metadata (~110 B).
    Orders,
}

#[derive(Args)]
struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    mode: BenchModeArg,
    /// Data directory for an embedded store, created by bench: one that already holds a store is
    /// refused [default: a fresh temporary directory].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Events to append (append, mixed) or to fill the store with first (read, replay).
    #[arg(long, default_value_t = 20_000)]
    events: u64,
    /// Event data size (order events are JSON padded to this size).
    #[arg(long, default_value_t = 471)]
    payload_bytes: usize,
    /// Events per append.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Appending (or reading) threads; a comma-separated list runs a sweep.
    #[arg(long, default_value = "1", value_delimiter = ',')]
    writers: Vec<usize>,
    /// Order streams the events are spread over.
    #[arg(long, default_value_t = 2_000)]
    streams: usize,
    /// always, never, or every=<ms>.
    #[arg(long, default_value = "always")]
    sync: String,
    /// Stop each run after this many seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Print one JSON object per run.
    #[arg(long)]
    json: bool,
    /// Run against a daemon at this address instead of an embedded store.
    #[arg(long)]
    connect: Option<String>,
    /// With --connect: commands per round trip on each connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// With --connect: tenant to authenticate as (with --token or LOGBOOK_TOKEN).
    #[arg(long)]
    tenant: Option<String>,
    /// With --connect: the tenant's token.
    #[arg(long, env = "LOGBOOK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Append each batch's events to their own order streams, as one atomic multi-stream
    /// append (`Store::append_batch`), instead of all to one stream. Embedded runs only.
    #[arg(long)]
    multi_stream: bool,
    /// Run the measurement beside this many threads spinning in a busy loop (a loaded machine).
    #[arg(long, default_value_t = 0)]
    busy_cores: usize,
    /// Draw throughput and p99 latency against writers (for a --writers sweep) into this SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Which events to append (disk always uses orders).
    #[arg(long, value_enum, default_value = "filler")]
    workload: WorkloadArg,
    /// Segment size of the store.
    #[arg(long, default_value_t = logbook::Options::default().segment_bytes)]
    segment_bytes: u64,
    /// disk: compress the sealed segments of a second store and compare.
    #[arg(long)]
    compress: bool,
    /// disk, with --compress: rounds of read and replay, alternating between the stores.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// A reader that stops reading our output (`logbook read … | head`) ends the program quietly,
/// with the exit status a shell gives a process ended by SIGPIPE (128 + 13), as with other
/// command-line tools. Rust ignores SIGPIPE, so `println!` panics on the broken pipe instead;
/// restoring the signal would take `unsafe`, so the panic hook recognises it.
fn exit_quietly_on_broken_pipe() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // `println!`'s panic says "failed printing to stdout: Broken pipe"; clap_complete's
        // names the error kind, BrokenPipe.
        if message.contains("Broken pipe") || message.contains("BrokenPipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Append(args) => append(args),
        Command::Read(args) => read(args),
        Command::Tail(args) => tail(args),
        Command::Verify(args) => verify(args),
        Command::Repair(args) => repair(args),
        Command::Stats(args) => stats(args),
        Command::Compact(args) => compact(args),
        Command::Compress(args) => compress(args),
        Command::DeleteStream(args) => delete_stream(args),
        Command::Backup(args) => backup(args),
        Command::Streams(args) => streams(args),
        Command::Export(args) => export(args),
        Command::Order(OrderCommand::Timeline(args)) => order_timeline(args),
        Command::Order(OrderCommand::Funnel(args)) => order_funnel(args),
        Command::Demo(args) => demo(args),
        Command::Bench(args) => bench(args),
        Command::Import(args) => import(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "logbook", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(|e| Failure::from(format!("writing the man page: {e}"))),
        Command::HashToken { token, json } => {
            let hex = server::hash_token_hex(token.as_bytes());
            if json {
                println!("{}", serde_json::json!({ "token_sha256": hex }));
            } else {
                println!("{hex}");
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::NoStore(dir)) => {
            eprintln!(
                "logbook: no logbook store at {} (a typo in --data? only serve, demo, bench and import --create make a store)",
                dir.display()
            );
            ExitCode::from(NO_STORE_EXIT)
        }
        Err(Failure::Other(message)) => {
            eprintln!("logbook: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Exit status when the data directory holds no logbook store (docs/operations.md): apart
/// from 1 (any other failure) and 2 (clap's usage errors), so a script can tell a wrong path
/// from a damaged store.
const NO_STORE_EXIT: u8 = 3;

/// Why a verb failed.
enum Failure {
    /// The data directory holds no logbook store: nothing was created (exit 3).
    NoStore(PathBuf),
    /// Anything else, as a message (exit 1).
    Other(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Other(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::Other(message.to_string())
    }
}

/// For verbs that read a store's files without opening it (verify, backup, read --archive):
/// only `serve`, `demo` and `bench` create a store, so a directory without one is an error.
fn require_store(data: &std::path::Path) -> Result<(), Failure> {
    if logbook::holds_store(data) {
        Ok(())
    } else {
        Err(Failure::NoStore(data.to_path_buf()))
    }
}

fn serve(args: ServeArgs) -> Result<(), Failure> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(data) = args.data {
        config.data = data;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(metrics) = args.metrics {
        config.metrics = Some(metrics);
    }
    if let Some(http) = args.http {
        config.http = Some(http);
    }
    // The order lifecycle's part of the daemon: its TIMELINE and ORDER commands, its console
    // pages (Order, Funnel), and its legal holds
    // when the config's [retention] names none.
    config.extensions = logbook_order::server_extensions();
    config.default_legal_holds = logbook_order::default_legal_holds();
    let auth = config.auth_required();
    server::tune_allocator();
    let server = Server::start(config.clone()).map_err(|e| e.to_string())?;
    let addr = server.local_addr();
    let metrics = server.metrics_addr().map(|m| format!("http://{m}/metrics"));
    let console = server.http_addr().map(|h| format!("http://{h}/"));
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %addr,
        data = %config.data.display(),
        metrics = metrics.as_deref().unwrap_or("off"),
        console = console.as_deref().unwrap_or("off"),
        auth = if auth { "tenants" } else { "open (loopback only)" },
        "logbook listening"
    );
    // A hint for a person at a terminal; logs (above) are for everyone else.
    if std::io::stdout().is_terminal() {
        let after_auth = if auth { "   # after AUTH <tenant> <token>" } else { "" };
        println!("try: {} APPEND order-1 CART_CREATED '{{\"customer\":\"c-1\"}}'{after_auth}", redis_cli(addr));
        if let Some(console) = &console {
            println!("console: {console}");
        }
    }
    server::shutdown_on_signals(server.shutdown_handle()).map_err(|e| e.to_string())?;
    server.wait().map_err(|e| e.to_string())?;
    tracing::info!("logbook stopped cleanly");
    Ok(())
}

fn connect(conn: &ConnectArgs) -> Result<Client, String> {
    let mut client = Client::connect(&conn.connect).map_err(|e| format!("cannot connect to {}: {e}", conn.connect))?;
    match (&conn.tenant, &conn.token) {
        (Some(tenant), Some(token)) => client.auth(tenant, token).map_err(|e| e.to_string())?,
        (Some(_), None) => return Err("--tenant needs --token (or LOGBOOK_TOKEN)".into()),
        _ => {}
    }
    Ok(client)
}

fn append(args: AppendArgs) -> Result<(), Failure> {
    let expected = args.expected.parse::<ExpectedVersion>().map_err(|e| format!("--expected {e}"))?;
    let mut client = connect(&args.conn)?;
    let mut event = NewEvent::new(args.event_type, args.data.into_bytes());
    event.id = args.id;
    if let Some(meta) = args.meta {
        event.metadata = meta.into_bytes();
    }
    let (version, position) = client.append_event(&args.stream, &event, expected).map_err(|e| e.to_string())?;
    if args.conn.json {
        println!("{}", serde_json::json!({ "stream": args.stream, "version": version, "position": position }));
    } else {
        println!("{} version {version} position {position}", args.stream);
    }
    Ok(())
}

fn print_event(event: &Event, json: bool) {
    if json {
        println!("{}", event.to_json());
    } else {
        println!(
            "{:>8} {} {}@{} {} {}",
            event.position,
            event.time,
            event.stream,
            event.version,
            event.event_type,
            String::from_utf8_lossy(&event.data)
        );
    }
}

fn read(args: ReadArgs) -> Result<(), Failure> {
    if args.archive {
        return read_archive(&args);
    }
    let mut client = connect(&args.conn)?;
    let events = client.read(&args.stream, args.from, args.count, args.rev).map_err(|e| e.to_string())?;
    for event in &events {
        print_event(event, args.conn.json);
    }
    Ok(())
}

fn tail(args: TailArgs) -> Result<(), Failure> {
    let mut client = connect(&args.conn)?;
    let from = match args.from {
        Some(from) => from,
        None => client.head().map_err(|e| e.to_string())? + 1,
    };
    let filter = AllFilter { prefix: args.prefix, types: args.types };
    let limit = args.count.unwrap_or(u64::MAX);
    if limit == 0 {
        return Ok(());
    }
    for (printed, event) in (1..).zip(client.tail(from, filter)) {
        print_event(&event.map_err(|e| e.to_string())?, args.conn.json);
        if printed >= limit {
            break;
        }
    }
    Ok(())
}

fn repair(args: RepairArgs) -> Result<(), Failure> {
    require_store(&args.data)?;
    let report = logbook::repair_dir(&args.data).map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        return report.reopen_error.map_or(Ok(()), |reopen| Err(reopen.into()));
    }
    if report.damage.is_empty() && report.gave_up.is_none() && report.gave_up_from.is_none() {
        println!("{}: no damage found; nothing changed (head {})", args.data.display(), report.head);
        return Ok(());
    }
    for (file, offset, reason) in &report.damage {
        println!("damage: {} at byte {offset}: {reason}", file.display());
    }
    // Why what came after is not known (the report gives it whenever `gave_up_from` is set).
    let why = report.gave_up_from_why.as_deref().unwrap_or_default();
    match (report.gave_up, report.gave_up_from) {
        (Some((first, last)), None) => println!(
            "gave up positions {first}..={last} ({} events); the store now ends at position {}",
            last - first + 1,
            report.head
        ),
        (Some((first, last)), Some(_)) => println!(
            "gave up positions {first}..={last} ({} events, counted from the files and the records), and any after them: {}; the \
             store now ends at position {}",
            last - first + 1,
            why,
            report.head
        ),
        (None, Some(from)) => {
            println!("gave up every position from {from} on: {}; the store now ends at position {}", why, report.head)
        }
        (None, None) => println!("gave up no event; the store ends at position {}", report.head),
    }
    if let Some(kept) = &report.kept_in {
        println!("what was taken away is kept in {}", kept.display());
    }
    if let Some(reopen) = &report.reopen_error {
        return Err(reopen.clone().into());
    }
    Ok(())
}

fn verify(args: VerifyArgs) -> Result<(), Failure> {
    require_store(&args.data)?;
    let bar = progress_bar(0, false);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} segments eta {eta}") {
        bar.set_style(style);
    }
    let mut report = logbook::verify_dir_with_progress(&args.data, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    logbook_archive::verify_data_dir(&args.data, &mut report);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        println!(
            "{}: {} segments, {} events, positions {}..={}",
            args.data.display(),
            report.segments,
            report.events,
            report.first_position,
            report.last_position
        );
        if args.data.join(logbook::ARCHIVE_DIR).is_dir() {
            println!("archive: {} files, {} rows", report.archive_files, report.archive_events);
        }
        for finding in &report.findings {
            println!(
                "{:?}: {} at byte {}: {}",
                finding.severity,
                finding.file.display(),
                finding.offset,
                finding.reason
            );
        }
        if report.findings.is_empty() {
            println!("ok: no damage found");
        }
    }
    if !report.is_healthy() {
        return Err("corruption found (nothing was changed; see docs/operations.md)".into());
    }
    if args.snapshots {
        let store = open_store(&args.data)?;
        let snapshots = logbook_order::verify_snapshots(&store).map_err(|e| e.to_string())?;
        println!("snapshots: {} checked, {} mismatched", snapshots.checked, snapshots.mismatches.len());
        for mismatch in &snapshots.mismatches {
            println!("mismatch: {mismatch:?}");
        }
        store.close().map_err(|e| e.to_string())?;
        if !snapshots.is_ok() {
            return Err("a snapshot disagrees with a full replay of its stream".into());
        }
    }
    Ok(())
}

fn stats(args: StatsArgs) -> Result<(), Failure> {
    if let Some(mut client) = args.remote.client()? {
        let info = client.info().map_err(|e| e.to_string())?;
        if args.json {
            // INFO's `key:value` lines as one object; integers stay integers.
            let fields: serde_json::Map<String, serde_json::Value> = info
                .lines()
                .filter_map(|line| line.trim_end().split_once(':'))
                .map(|(key, value)| {
                    let value =
                        value.parse::<i64>().map_or_else(|_| serde_json::json!(value), |n| serde_json::json!(n));
                    (key.to_string(), value)
                })
                .collect();
            println!("{}", serde_json::Value::Object(fields));
        } else {
            print!("{info}");
        }
        return Ok(());
    }
    let store = open_store(&args.data)?;
    let report = logbook_archive::collect_stats(&store).map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        print!("{}", report.to_text());
    }
    close_store(store)
}

/// Opens an existing store; never creates one (that is for `serve`, `demo` and `bench`).
fn open_store(data: &std::path::Path) -> Result<logbook::Store, Failure> {
    let options = logbook::Options { create_if_missing: false, ..logbook::Options::default() };
    logbook_archive::open_store(data, options).map_err(|e| match e {
        logbook::Error::NoStore(dir) => Failure::NoStore(dir),
        logbook::Error::Locked(_) => format!(
            "{e} (is `logbook serve` running on it? Stop it first, or ask it: append, read, tail, \
             order timeline, stats, streams, delete-stream, compact and backup take --connect)"
        )
        .into(),
        e => e.to_string().into(),
    })
}

fn close_store(store: logbook::Store) -> Result<(), Failure> {
    store.close().map_err(|e| Failure::Other(e.to_string()))
}

fn order_timeline(args: TimelineArgs) -> Result<(), Failure> {
    if let Some(mut client) = args.remote.client()? {
        let reply = client.call(&[b"TIMELINE", args.order_id.as_bytes()]).map_err(|e| e.to_string())?;
        let lines: Vec<String> = match reply {
            logbook_protocol::Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    logbook_protocol::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect(),
            other => return Err(format!("unexpected TIMELINE reply: {other:?}").into()),
        };
        // The daemon replies the lines of the text form: heading, status, dates and events.
        if args.json {
            println!("{}", serde_json::json!({ "order_id": args.order_id, "lines": lines }));
        } else {
            lines.iter().for_each(|l| println!("{l}"));
        }
        return Ok(());
    }
    let store = open_store(args.data.as_deref().unwrap_or(std::path::Path::new("./data")))?;
    let timeline = match logbook_order::timeline::timeline(&store, &args.order_id) {
        Ok(timeline) => timeline,
        Err(err) => {
            close_store(store)?;
            return Err(err.to_string().into());
        }
    };
    if args.json {
        println!("{}", timeline.to_json());
    } else {
        print!("{}", timeline.to_text());
    }
    close_store(store)
}

/// `30d`, `12h`, `90m` as microseconds.
///
/// Not `humantime::parse_duration`: a period may be negative (`--until=-1d` is a day ahead of
/// now), which humantime rejects, and humantime would accept units (`y` of 365.25 days, months,
/// `s`, `ms`, sums like `1d 2h`) that these flags never took. Nor `logbook::parse_duration`:
/// that one takes `s`, `w` and 366-day `y`, and `--since` says it wants `<n>d`, `<n>h` or `<n>m`.
fn parse_period(text: &str) -> Result<i64, String> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| format!("--since wants <n>d, <n>h or <n>m, got '{text}'"))?;
    let unit_us = match unit {
        "d" => 86_400_000_000,
        "h" => 3_600_000_000,
        "m" => 60_000_000,
        _ => return Err(format!("--since wants <n>d, <n>h or <n>m, got '{text}'")),
    };
    n.checked_mul(unit_us).ok_or_else(|| format!("--since {text} is too long"))
}

fn order_funnel(args: FunnelArgs) -> Result<(), Failure> {
    let mut query = logbook_order::analytics::Query::all();
    query.scope = match &args.tenant {
        Some(tenant) => {
            let namespace = logbook::Namespace::new(tenant).map_err(|e| format!("--tenant: {e}"))?;
            logbook_order::analytics::Scope::Namespace(namespace.prefix().to_string())
        }
        None => logbook_order::analytics::Scope::Everywhere,
    };
    if let Some(since) = &args.since {
        query.since_us = Some(parse_instant(since, "--since")?);
    }
    if let Some(retailer) = &args.retailer {
        query = query.for_retailer(retailer);
    }
    let store = open_store(&args.data)?;
    let report = logbook_order::analytics::report(&store, &query).map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        print!("{}", report.to_text());
    }
    close_store(store)
}

fn demo(args: DemoArgs) -> Result<(), Failure> {
    // A month of traffic up to now: the generator moves the store's clock to each command's time.
    let clock = logbook_order::demo::DemoClock::ending_at(logbook::time::now_us());
    // Demo traffic is not precious: sync once at the end instead of per command.
    let options =
        logbook::Options { sync: logbook::SyncMode::Never, clock: clock.clock(), ..logbook::Options::default() };
    let store = logbook_archive::open_store(&args.data, options).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let summary = logbook_order::demo::generate(&store, args.orders, args.seed, &clock).map_err(|e| e.to_string())?;
    store.sync().map_err(|e| e.to_string())?;
    if args.json {
        let mut timelines = Vec::new();
        for example in [&summary.happy_example, &summary.troubled_example].into_iter().flatten() {
            let timeline = logbook_order::timeline::timeline(&store, example).map_err(|e| e.to_string())?;
            timelines.push(serde_json::from_str::<serde_json::Value>(&timeline.to_json()).map_err(|e| e.to_string())?);
        }
        let report = logbook_order::analytics::report(&store, &logbook_order::analytics::Query::all())
            .map_err(|e| e.to_string())?;
        store.close().map_err(|e| e.to_string())?;
        let json = serde_json::json!({ "summary": summary, "timelines": timelines, "report": report });
        println!("{json}");
        return Ok(());
    }
    println!(
        "generated {} orders ({} events, {} commands) into {} in {:.2?}",
        summary.orders,
        summary.events,
        summary.commands,
        args.data.display(),
        started.elapsed()
    );
    println!("final states: {:?}", summary.by_status);
    for example in [&summary.happy_example, &summary.troubled_example].into_iter().flatten() {
        println!();
        let timeline = logbook_order::timeline::timeline(&store, example).map_err(|e| e.to_string())?;
        print!("{}", timeline.to_text());
    }
    println!();
    let report =
        logbook_order::analytics::report(&store, &logbook_order::analytics::Query::all()).map_err(|e| e.to_string())?;
    print!("{}", report.to_text());
    store.close().map_err(|e| e.to_string())?;
    println!();
    println!(
        "next: {} serve --data {}   (then: {} TIMELINE <order-id>)",
        invocation(),
        args.data.display(),
        redis_cli(SocketAddr::from(([127, 0, 0, 1], 7878)))
    );
    Ok(())
}

/// How this program was started, for hints: `cargo run --release --` under cargo, else the
/// path it was run by (`logbook` when it is on the PATH).
fn invocation() -> String {
    if std::env::var_os("CARGO").is_some() {
        return "cargo run --release --".into();
    }
    std::env::args().next().unwrap_or_else(|| "logbook".into())
}

/// The redis-cli command line that reaches the daemon at `addr`, in RESP3 (events print as maps).
fn redis_cli(addr: SocketAddr) -> String {
    if addr.ip().is_loopback() {
        format!("redis-cli -p {} -3", addr.port())
    } else {
        format!("redis-cli -h {} -p {} -3", addr.ip(), addr.port())
    }
}

fn bench(args: BenchArgs) -> Result<(), Failure> {
    use logbook_cli::bench::{run_embedded, BenchConfig, BenchMode};
    // bench appends its own events to the store it opens: never to one that was there before.
    if args.connect.is_none() {
        if let Some(dir) = args.data.as_deref().filter(|dir| logbook::holds_store(dir)) {
            return Err(format!(
                "{} already holds a logbook store, and bench would add its benchmark events to it: give --data an \
                 empty or new directory",
                dir.display()
            )
            .into());
        }
    }
    let sync = args.sync.parse::<logbook::SyncMode>().map_err(|e| format!("--sync {e}"))?;
    let mode = match args.mode {
        BenchModeArg::Append => BenchMode::Append,
        BenchModeArg::Read => BenchMode::Read,
        BenchModeArg::Replay => BenchMode::Replay,
        BenchModeArg::Mixed => BenchMode::Mixed,
        BenchModeArg::Disk => return bench_disk(&args),
    };
    let mut reports = Vec::new();
    for writers in args.writers.iter().copied() {
        let temp = tempfile_dir(args.data.as_deref())?;
        let config = BenchConfig {
            mode,
            events: args.events,
            payload_bytes: args.payload_bytes,
            batch: args.batch.max(1),
            multi_stream: args.multi_stream,
            writers: writers.max(1),
            streams: args.streams.max(1),
            duration: std::time::Duration::from_secs(args.duration),
            busy_cores: args.busy_cores,
            workload: match args.workload {
                WorkloadArg::Filler => logbook_cli::bench::Workload::Filler,
                WorkloadArg::Orders => logbook_cli::bench::Workload::Orders,
            },
        };
        let bar = progress_bar(args.events, args.json);
        let progress = |done: u64, _total: u64| bar.set_position(done.max(bar.position()));
        let report = match &args.connect {
            Some(_) if args.multi_stream => {
                return Err("--multi-stream measures the embedded store; drop --connect".to_string().into());
            }
            Some(addr) => {
                let auth = args.tenant.clone().zip(args.token.clone());
                let target = logbook_cli::bench::DaemonTarget::new(addr.clone(), auth, args.pipeline);
                logbook_cli::bench::run_daemon(&target, &temp.path, &config, &progress)?
            }
            None => {
                let options =
                    logbook::Options { sync, segment_bytes: args.segment_bytes, ..logbook::Options::default() };
                run_embedded(&temp.path, options, &config, &progress).map_err(|e| e.to_string())?
            }
        };
        bar.finish_and_clear();
        if args.json {
            println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
        } else {
            print_bench(&report);
        }
        reports.push(report);
    }
    if let Some(path) = &args.plot {
        plot_sweep(path, &reports)?;
        if !args.json {
            println!("plot: {}", path.display());
        }
    }
    Ok(())
}

/// `bench disk`: two stores in fresh directories (under --data when given, kept there).
fn bench_disk(args: &BenchArgs) -> Result<(), Failure> {
    let root = tempfile_dir(args.data.as_deref())?;
    let (plain, compressed) = (root.path.join("plain"), root.path.join("compressed"));
    let config = logbook_cli::disk::DiskConfig {
        streams: args.streams.max(1),
        events: args.events,
        batch: args.batch.max(1),
        segment_bytes: args.segment_bytes,
        read_seconds: args.duration as f64,
        rounds: args.rounds,
        compress: args.compress,
    };
    let report = logbook_cli::disk::run_disk(&plain, &compressed, &config)?;
    if args.json {
        println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    } else {
        logbook_cli::disk::print_disk(&report);
    }
    Ok(())
}

/// Two charts side by side: events/s and p99 latency against the number of writers.
fn plot_sweep(path: &std::path::Path, reports: &[logbook_cli::bench::BenchReport]) -> Result<(), String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    let points = |f: &dyn Fn(&logbook_cli::bench::BenchReport) -> f64| -> Vec<(f64, f64)> {
        reports.iter().map(|r| (r.config.writers as f64, f(r))).collect()
    };
    let throughput = points(&|r| r.events_per_sec);
    let p99 = points(&|r| r.latency_us_p99);
    let max_x = throughput.iter().map(|p| p.0).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(550);
    for (area, series, title, unit) in
        [(left, &throughput, "throughput", "events/s"), (right, &p99, "latency p99", "µs")]
    {
        let max_y = series.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&area)
            .caption(format!("{title} vs writers"), ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..max_x * 1.05, 0f64..max_y)
            .map_err(|e| err(&e))?;
        chart.configure_mesh().x_desc("writers").y_desc(unit).draw().map_err(|e| err(&e))?;
        chart.draw_series(LineSeries::new(series.iter().copied(), &BLUE)).map_err(|e| err(&e))?;
        chart.draw_series(series.iter().map(|&(x, y)| Circle::new((x, y), 4, BLUE.filled()))).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// A bench directory: the one given (kept), or a fresh temporary one (removed afterwards).
struct BenchDir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

fn tempfile_dir(data: Option<&std::path::Path>) -> Result<BenchDir, String> {
    match data {
        // bench creates the store (and the directory, where it first measures the disk).
        Some(path) => {
            std::fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
            Ok(BenchDir { path: path.to_path_buf(), _temp: None })
        }
        None => {
            let temp = tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
            Ok(BenchDir { path: temp.path().to_path_buf(), _temp: Some(temp) })
        }
    }
}

fn progress_bar(total: u64, hidden: bool) -> indicatif::ProgressBar {
    if hidden || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}") {
        bar.set_style(style);
    }
    bar
}

fn print_bench(r: &logbook_cli::bench::BenchReport) {
    let c = &r.config;
    println!(
        "{:?}: {} writers, batch {}, {} B payloads, {} streams, {} busy cores",
        c.mode, c.writers, c.batch, c.payload_bytes, c.streams, c.busy_cores
    );
    println!(
        "  machine: fdatasync {:.0}/s, sequential write {:.0} MB/s (measured in this run)",
        r.limits.fdatasync_per_sec,
        r.limits.write_bytes_per_sec / 1e6
    );
    println!("  {:<22} {:>14} {:>24}", "metric", "value", "as a fraction of its limit");
    println!("  {:<22} {:>14.0} {:>24}", "events/s", r.events_per_sec, "");
    println!("  {:<22} {:>14.0} {:>23.2}x", "operations/s", r.operations_per_sec, r.ops_over_fdatasync);
    println!("  {:<22} {:>14.1} {:>23.2}x", "MB/s", r.mb_per_sec, r.bytes_over_bandwidth);
    println!("  {:<22} {:>14.1} {:>24}", "latency p50 (µs)", r.latency_us_p50, "");
    println!("  {:<22} {:>14.1} {:>24}", "latency p99 (µs)", r.latency_us_p99, "");
    println!("  {:<22} {:>14.1} {:>24}", "latency p99.9 (µs)", r.latency_us_p999, "");
    println!("  {:<22} {:>14} {:>24}", "fsyncs", r.fsyncs, format!("{} ops in {:.2} s", r.operations, r.seconds));
    if let Some(ns) = r.cpu_ns_per_event {
        println!("  {:<22} {:>14.1} {:>24}", "CPU ns/event", ns, "(this thread, user + system)");
    }
}

/// `read --archive`: the stream's archived events, from the Parquet files, in version order.
fn read_archive(args: &ReadArgs) -> Result<(), Failure> {
    require_store(&args.data)?;
    let root = args.data.join(logbook::ARCHIVE_DIR);
    if !root.exists() {
        // Nothing to read, and not an error; but an empty answer alone reads like "no such stream".
        eprintln!(
            "logbook: {} has no cold tier: nothing was archived (compaction moves expired events there when \
             retention archives them)",
            args.data.display()
        );
        return Ok(());
    }
    let archive = logbook_archive::Archive::open(&root, logbook::std_fs()).map_err(|e| e.to_string())?;
    // A manifest older than the log would read as "nothing archived".
    logbook_archive::check_jobs_known(&archive, &args.data.join(logbook::SEGMENTS_DIR)).map_err(|e| e.to_string())?;
    let mut events = archive.read_stream(&args.stream).map_err(|e| e.to_string())?;
    events.retain(|e| e.version >= args.from.unwrap_or(0));
    if args.rev {
        events.reverse();
    }
    for e in events.into_iter().take(args.count.map_or(usize::MAX, |n| n as usize)) {
        let event = Event {
            id: uuid::Uuid::from_bytes(e.id),
            stream: e.stream,
            version: e.version,
            position: e.position,
            event_type: e.event_type,
            time: logbook::time::rfc3339(e.timestamp_us),
            data: e.data,
            meta: e.metadata,
        };
        print_event(&event, args.conn.json);
    }
    Ok(())
}

/// An instant for --since/--until: RFC 3339, or a period back from now (`30d`).
fn parse_instant(text: &str, flag: &str) -> Result<i64, String> {
    if let Some(us) = logbook::time::parse_rfc3339(text) {
        return Ok(us);
    }
    parse_period(text)
        .map(|period| logbook::time::now_us().saturating_sub(period))
        .map_err(|_| format!("{flag} wants an RFC 3339 date or time, or <n>d, <n>h, <n>m; got '{text}'"))
}

/// The `[retention]` table of a TOML config file (other tables are ignored; without one, the
/// default policy); the order lifecycle's legal holds apply when it names none.
fn retention_policy_from_toml(text: &str) -> Result<logbook::RetentionPolicy, String> {
    #[derive(serde::Deserialize)]
    struct FileWithRetention {
        retention: Option<logbook::RetentionConfig>,
    }
    let file: FileWithRetention = toml::from_str(text).map_err(|e| format!("retention config: {e}"))?;
    let table = file.retention.unwrap_or_default();
    logbook::RetentionPolicy::from_config(&table, &logbook_order::default_legal_holds()).map_err(|e| e.to_string())
}

/// Opens an existing store whose `compress_sealed` uses `codec`.
fn open_compressing(data: &std::path::Path, codec: logbook::Compression) -> Result<logbook::Store, Failure> {
    require_store(data)?;
    let options = logbook::Options { create_if_missing: false, compression: codec, ..logbook::Options::default() };
    logbook_archive::open_store(data, options).map_err(|e| match e {
        logbook::Error::NoStore(dir) => Failure::NoStore(dir),
        logbook::Error::Locked(_) => format!("{e} (is `logbook serve` running on it? stop it first)").into(),
        e => Failure::Other(e.to_string()),
    })
}

fn compress(args: CompressArgs) -> Result<(), Failure> {
    let store = open_compressing(&args.data, args.codec)?;
    let report = logbook::compress_sealed(&store).map_err(|e| e.to_string())?;
    close_store(store)?;
    print_compressed(&report, args.json);
    Ok(())
}

fn print_compressed(report: &logbook::CompressReport, json: bool) {
    if json {
        let value = serde_json::json!({
            "segments": report.segments,
            "already_compressed": report.already,
            "events": report.events,
            "uncompressed_bytes": report.uncompressed_bytes,
            "compressed_bytes": report.compressed_bytes,
        });
        println!("{value}");
    } else {
        println!(
            "compressed {} sealed segment(s), {} events: {} -> {} bytes ({:.2}x); {} already compressed",
            report.segments,
            report.events,
            report.uncompressed_bytes,
            report.compressed_bytes,
            report.compressed_bytes as f64 / report.uncompressed_bytes.max(1) as f64,
            report.already
        );
    }
}

/// Prints the figures a daemon replied (COMPACT, BACKUP): `key: value` lines, or one object.
fn print_figures(figures: &[(String, u64)], json: bool) {
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            figures.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        figures.iter().for_each(|(k, v)| println!("{k}: {v}"));
    }
}

fn compact(args: CompactArgs) -> Result<(), Failure> {
    if let Some(mut client) = args.remote.client()? {
        if args.config.is_some() || args.compress || args.migrate_archive {
            return Err("--connect runs the daemon's own retention policy: drop --config, --compress and \
                        --migrate-archive"
                .into());
        }
        print_figures(&client.compact().map_err(|e| e.to_string())?, args.json);
        return Ok(());
    }
    if args.migrate_archive {
        let store = open_store(&args.data)?;
        let report = logbook_archive::migrate_cold_tier(&store).map_err(|e| e.to_string())?;
        store.close().map_err(|e| e.to_string())?;
        if args.json {
            println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
        } else {
            println!(
                "rewrote {} cold-tier file(s) of the first layout ({} rows) into the current layout; {} damaged \
                 file(s) left as they are (see logbook verify); {} leftover file(s) of an interrupted rewrite removed",
                report.files, report.rows, report.skipped, report.orphans_removed
            );
        }
        return Ok(());
    }
    let policy = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            retention_policy_from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => logbook_order::default_retention_policy(),
    };
    let store = match args.compress {
        true => open_compressing(&args.data, logbook::Compression::Lz4)?,
        false => open_store(&args.data)?,
    };
    let bar = progress_bar(0, false);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} segment steps eta {eta}") {
        bar.set_style(style);
    }
    let report = logbook_archive::compact(&store, &policy, store.now_us(), |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    } else {
        println!(
            "compacted {} of {} sealed segments into {} ({} now): {} events expired ({} archived in {} files), \
             {} of deleted streams removed, {} kept by legal hold; {} -> {} bytes",
            report.inputs,
            report.segments_before,
            report.rewritten,
            report.segments_after,
            report.expired,
            report.archived,
            report.archive_files,
            report.purged,
            report.held,
            report.bytes_before,
            report.bytes_after
        );
    }
    if args.compress {
        let compressed = logbook::compress_sealed(&store).map_err(|e| e.to_string())?;
        print_compressed(&compressed, args.json);
    }
    close_store(store)
}

fn backup(args: BackupArgs) -> Result<(), Failure> {
    if let Some(mut client) = args.remote.client()? {
        let name = args.name.as_deref().ok_or("--connect needs --name (the copy's name in backup_dir)")?;
        let figures = client.backup(name).map_err(|e| e.to_string())?;
        if args.json {
            // The reply's `path` (relative to backup_dir) is the name; figures are numbers.
            let mut map: serde_json::Map<String, serde_json::Value> =
                figures.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
            map.insert("path".into(), serde_json::json!(name));
            println!("{}", serde_json::Value::Object(map));
        } else {
            println!("copied to <backup_dir>/{name} on the daemon's host");
            print_figures(&figures, false);
        }
        return Ok(());
    }
    let out = args.out.ok_or("--out is needed without --connect")?;
    require_store(&args.data)?;
    let report = logbook_archive::backup_dir(&args.data, &out).map_err(|e| e.to_string())?;
    if args.json {
        let json = serde_json::json!({
            "out": out, "segments": report.segments, "files": report.files,
            "bytes": report.bytes, "retries": report.retries,
        });
        println!("{json}");
        return Ok(());
    }
    println!(
        "copied {} segments ({} files, {} bytes) to {}{}",
        report.segments,
        report.files,
        report.bytes,
        out.display(),
        if report.retries > 0 { format!(" after {} retries", report.retries) } else { String::new() }
    );
    Ok(())
}

fn delete_stream(args: DeleteStreamArgs) -> Result<(), Failure> {
    let expected: logbook::ExpectedVersion = args.expected.parse().map_err(|e| format!("--expected: {e}"))?;
    let (position, store) = match args.remote.client()? {
        Some(mut client) => (client.delete_stream(&args.stream, expected).map_err(|e| e.to_string())?, None),
        None => {
            let store = open_store(&args.data)?;
            let result = store.delete_stream(&args.stream, expected).map_err(|e| e.to_string())?;
            (result.first_position, Some(store))
        }
    };
    if args.json {
        println!("{}", serde_json::json!({ "stream": args.stream, "tombstone_position": position }));
    } else {
        println!("deleted {} (tombstone at position {position})", args.stream);
    }
    store.map_or(Ok(()), close_store)
}

fn streams(args: StreamsArgs) -> Result<(), Failure> {
    let (prefix, after) = (args.prefix.as_deref(), args.after.as_deref());
    let listed = match args.remote.client()? {
        Some(mut client) => client.streams(prefix, after, args.count).map_err(|e| e.to_string())?,
        None => {
            let store = open_store(&args.data)?;
            let count = usize::try_from(args.count).unwrap_or(usize::MAX);
            let listed = store.list_streams(prefix.unwrap_or(""), after, count);
            close_store(store)?;
            listed
        }
    };
    for (name, version) in &listed {
        match args.json {
            true => println!("{}", serde_json::json!({ "stream": name, "version": version })),
            false => println!("{name}\t{version}"),
        }
    }
    Ok(())
}

fn export(args: ExportArgs) -> Result<(), Failure> {
    let since = args.since.as_deref().map(|t| parse_instant(t, "--since")).transpose()?;
    let until = args.until.as_deref().map(|t| parse_instant(t, "--until")).transpose()?;
    let store = open_store(&args.data)?;
    let bar = progress_bar(store.head_position(), false);
    let report = logbook_archive::export(&store, &args.out, since, until, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    } else {
        println!(
            "exported {} events into {} files ({} bytes) under {}",
            report.events,
            report.files,
            report.bytes,
            args.out.display()
        );
    }
    close_store(store)
}

/// `logbook import`: the whole file is read and checked first (a bad row names its line and
/// nothing is written), then each order is one atomic append (src/import.rs).
fn import(args: ImportArgs) -> Result<(), Failure> {
    use logbook_cli::import;
    let namespace = match &args.tenant {
        // `admin` is the daemon's admin identity, never a tenant: streams imported under it
        // would be seen by no tenant.
        Some(tenant) if tenant == server::ADMIN_NAME => {
            return Err(format!("--tenant: '{tenant}' is the admin identity, not a tenant; give a tenant's name").into())
        }
        Some(tenant) => Some(logbook::Namespace::new(tenant).map_err(|e| format!("--tenant: {e}"))?),
        None => None,
    };
    let (input, total): (Box<dyn std::io::Read>, u64) = if args.csv.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), 0)
    } else {
        let file = std::fs::File::open(&args.csv).map_err(|e| format!("--csv {}: {e}", args.csv.display()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(file), len)
    };
    let store = if args.create {
        let options = logbook::Options { create_if_missing: true, ..logbook::Options::default() };
        logbook_archive::open_store(&args.data, options).map_err(|e| match e {
            logbook::Error::Locked(_) => format!("{e} (is `logbook serve` running on it? Stop it first)"),
            e => e.to_string(),
        })?
    } else {
        open_store(&args.data)?
    };
    let bar = progress_bar(total, args.json || total == 0);
    if let Ok(style) = indicatif::ProgressStyle::with_template("reading {bar:40} {bytes}/{total_bytes} eta {eta}") {
        bar.set_style(style);
    }
    let limits = import::Limits::of(&store);
    let parsed = import::read_csv(std::io::BufReader::new(input), namespace.as_ref(), limits, |b| bar.set_position(b))
        .map_err(|e| format!("{}: {e} (nothing was imported)", args.csv.display()));
    bar.finish_and_clear();
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            close_store(store)?;
            return Err(e.into());
        }
    };
    let bar = progress_bar(parsed.rows, args.json);
    let summary = import::import(&store, parsed, |done| bar.set_position(done));
    bar.finish_and_clear();
    close_store(store)?;
    let summary = summary.map_err(|e| format!("{}: {e}", args.csv.display()))?;
    if args.json {
        let mut value = serde_json::to_value(&summary).map_err(|e| e.to_string())?;
        value["tenant"] = serde_json::json!(args.tenant);
        println!("{value}");
    } else {
        println!(
            "imported {} events: {} new orders, {} extended, from {} rows ({} orders already present, {} rows \
             skipped){}",
            summary.events_appended,
            summary.orders_imported,
            summary.orders_extended,
            summary.rows,
            summary.orders_already_present,
            summary.rows_skipped,
            args.tenant.as_deref().map(|t| format!(" into tenant {t}")).unwrap_or_default()
        );
    }
    Ok(())
}
