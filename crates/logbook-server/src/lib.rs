//! The daemon: the store over TCP, speaking RESP2/RESP3 so any Redis client is a client.
//!
//! Concurrency model: a few event loops (one per core, `event_loop`) each drive many
//! connections (bounded by `limits.max_connections`) over the store API; commands that wait
//! run on helper threads. A connection parses every complete command in its buffer, runs them
//! in order, and writes all replies at once. Consecutive pipelined appends are all submitted to
//! the store's writer queue before any is awaited, so they share one group commit and get
//! positions in send order. Appends from different connections share group commits through the
//! store's writer. See docs/protocol.md.
//!
//! Layout: `config` (settings and limits), `auth` (tenants, tokens, namespaces),
//! `event_loop` (the loops), `connection` (one connection on a loop), `connection_core` (the same without sockets),
//! `pipeline` (pipelined appends), `commands` (one file per command family behind one
//! dispatcher), `extension` (commands crates above this one add, such as the order
//! lifecycle's TIMELINE), `metrics` (counters, Prometheus), `http` (the HTTP side: metrics,
//! health, the web console), `http_api` (the console's JSON API and live tail), `console`
//! (console pages crates above this one add, such as the order timeline), `client` (a small
//! blocking client), `webhook` (outbound webhooks: one consumer group and
//! one worker thread each).

mod auth;
pub mod client;
mod config;
mod console;
mod extension;

mod admission;
mod auth_guard;
mod commands;
mod connection;
pub(crate) mod connection_core;
mod event_loop;
mod helpers;
mod http;
mod http_api;
mod metrics;
mod pipeline;
mod webhook;

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use logbook::Store;

pub use auth::{hash_token_hex, Auth, Identity, ADMIN_NAME};
pub use config::{
    require_loopback, AdminConfig, Config, Limits, StoreConfig, TenantConfig, DEFAULT_DATA_DIR, DEFAULT_LISTEN,
};
#[doc(hidden)]
pub use connection_core::fuzz_connection_core;
pub use console::{
    ApiError, ApiLimits, ApiQuery, ConsoleExtension, ConsolePage, MAX_QUERY_PARAMS, MAX_QUERY_VALUE_BYTES,
};
pub use extension::{error_reply, stored_stream_name, CommandExtension, Extensions};
#[cfg(feature = "testing")]
pub use pipeline::testing;
pub use webhook::{
    signature as webhook_signature, validate_webhooks, WebhookConfig, DEAD_LETTER_STREAM_PREFIX, DEAD_LETTER_TYPE,
    EVENT_ID_HEADER, FROM_END, FROM_START, MAX_WEBHOOKS, MAX_WEBHOOK_ATTEMPTS, MAX_WEBHOOK_NAME_BYTES,
    MAX_WEBHOOK_TYPES, MAX_WEBHOOK_WAIT_MS, SIGNATURE_HEADER, WEBHOOK_GROUP_PREFIX,
};

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] logbook::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let context = context.into();
    move |source| ServerError::Io { context, source }
}

/// How long shutdown waits for connections to finish their in-flight commands and write their
/// replies; then the store is closed cleanly and what is left is dropped. Well under the 30 s a
/// service manager gives a stop (packaging's `TimeoutStopSec`): a client that reads none of its
/// replies must not turn every stop into a kill and a crash recovery.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Counters shown by INFO and the metrics endpoint.
#[derive(Debug, Default)]
pub(crate) struct ServerStats {
    pub connections_total: AtomicU64,
    pub connections_rejected: AtomicU64,
    /// Unauthenticated connections closed to make room for newer ones.
    pub unauthenticated_evicted: AtomicU64,
    pub commands: AtomicU64,
    pub error_replies: AtomicU64,
    /// How long each append (APPEND, APPENDMANY, APPENDBATCH) took from being handed to the
    /// store to its result, µs.
    pub append_micros: logbook::Log2Counts,
    pub protocol_errors: AtomicU64,
    /// Runs of appends whose replies the writer wrote (`pipeline::AnsweredByWriter`).
    pub runs_answered_by_writer: AtomicU64,
    /// Of those, runs whose replies the socket did not take at once (a client not reading),
    /// left for the event loop to write.
    pub runs_left_to_connection: AtomicU64,
    /// Runs of appends that found the writer's queue full (`Options::max_queued_appends`) and
    /// waited on their connection for room while the event loop served the others.
    pub runs_waiting_for_the_queue: AtomicU64,
    /// Replies a helper thread wrote to the socket itself (`connection::start_helper`).
    pub replies_written_by_helpers: AtomicU64,
    /// Console API requests holding a place in the store-work queue (queued or running).
    pub console_api_requests: AtomicU64,
}

/// State shared by every thread of one server.
pub(crate) struct Shared {
    pub store: Store,
    pub config: Config,
    pub auth: Auth,
    pub stats: ServerStats,
    /// Failed AUTHs per client address.
    pub auth_guard: auth_guard::AuthGuard,
    /// Reply bytes held by all connections (`limits.max_reply_bytes_total`).
    reply_budget: Arc<connection_core::ReplyBudget>,
    pub started: Instant,
    pub shutting_down: AtomicBool,
    /// Open connections by id (a clone of each socket, to end its reads at shutdown).
    connections: Mutex<Registry>,
    connections_changed: Condvar,
    next_connection_id: AtomicU64,
    /// Each configured webhook's counters, in config order.
    pub webhook_counters: Vec<Arc<webhook::WebhookCounters>>,
    /// The event loops' mailboxes; connection `id` goes to loop `id % loops.len()`.
    loops: Vec<Arc<event_loop::Mailbox>>,
    /// Set once nothing is accepted any more: a loop without connections then ends.
    pub loops_may_stop: AtomicBool,
    /// Threads for the commands no loop may wait for (see `helpers`).
    pub helpers: Arc<helpers::Helpers>,
}

impl Shared {
    pub fn connection_count(&self) -> usize {
        self.connections.lock().sockets.len()
    }

    /// Connections that have not authenticated (yet).
    pub fn unauthenticated_count(&self) -> usize {
        self.connections.lock().admission.unauthenticated()
    }

    /// Connection `id` authenticated: false when it must close (`max_connections` reached).
    pub fn authenticated(&self, id: u64) -> bool {
        self.connections.lock().admission.authenticate(id)
    }

    /// The limits of one connection's core, with the extension commands it routes.
    pub fn core_limits(&self) -> connection_core::CoreLimits {
        connection_core::CoreLimits {
            extensions: self.config.extensions.names(),
            heavy_request_bytes: connection::HEAVY_REQUEST_BYTES,
            ..self.config.limits.core()
        }
    }

    pub fn reply_budget(&self) -> Arc<connection_core::ReplyBudget> {
        Arc::clone(&self.reply_budget)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// The open connections: their sockets and which pool each is in.
struct Registry {
    sockets: HashMap<u64, TcpStream>,
    admission: admission::Admission,
}

/// Removes a connection from the registry when it ends, however it ends.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        tracing::debug!(connection = self.id, "connection closed");
        let mut registry = self.shared.connections.lock();
        registry.sockets.remove(&self.id);
        registry.admission.remove(self.id);
        drop(registry);
        self.shared.connections_changed.notify_all();
    }
}

/// A running server. Dropping it without [`Server::shutdown`] leaves its threads running
/// until the process exits.
pub struct Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    /// The console's listener (`--http`), if any.
    http_addr: Option<SocketAddr>,
    acceptor: Option<JoinHandle<()>>,
    metrics: Option<JoinHandle<()>>,
    http: Option<JoinHandle<()>>,
    /// Background compaction, when the config asks for it.
    compactor: Option<JoinHandle<()>>,
    /// One delivery thread per webhook.
    webhooks: Vec<JoinHandle<()>>,
    /// The event loops that serve the connections.
    loops: Vec<JoinHandle<()>>,
}

/// Triggers a server's shutdown from another thread (e.g. a signal handler thread).
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    wake: Vec<SocketAddr>,
}

impl ShutdownHandle {
    /// Stops accepting; [`Server::shutdown`] (or [`Server::wait`]) does the rest.
    pub fn trigger(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        // Wake the blocked accept() calls; they see the flag and return.
        for addr in &self.wake {
            let _ = TcpStream::connect_timeout(addr, Duration::from_secs(1));
        }
    }
}

/// The address to connect to in order to reach a listener bound to `addr`.
fn wake_address(addr: SocketAddr) -> SocketAddr {
    let mut wake = addr;
    if addr.ip().is_unspecified() {
        wake.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    wake
}

impl Server {
    /// Opens the store in `config.data` (resolving its cold tier's pending jobs) and starts
    /// serving.
    pub fn start(config: Config) -> Result<Server, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        let mut options = config.store.options().map_err(ServerError::Config)?;
        options.groups = config.limits.groups();
        let store = logbook_archive::open_store(&config.data, options)?;
        Server::start_with_store(store, config)
    }

    /// Serves an already open store (the server closes it at shutdown).
    pub fn start_with_store(store: Store, config: Config) -> Result<Server, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        let auth = Auth::from_config(&config).map_err(ServerError::Config)?;
        webhook::prepare_groups(&store, &config.webhooks)?;
        let listener =
            TcpListener::bind(&config.listen).map_err(io_error(format!("binding listen address {}", config.listen)))?;
        let addr = listener.local_addr().map_err(io_error("reading the listen address"))?;
        let metrics_listener = match &config.metrics {
            Some(metrics) => {
                Some(TcpListener::bind(metrics).map_err(io_error(format!("binding metrics address {metrics}")))?)
            }
            None => None,
        };
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(l.local_addr().map_err(io_error("reading the metrics address"))?),
            None => None,
        };
        let http_listener = match &config.http {
            Some(http) => Some(TcpListener::bind(http).map_err(io_error(format!("binding http address {http}")))?),
            None => None,
        };
        let http_addr = match &http_listener {
            Some(l) => Some(l.local_addr().map_err(io_error("reading the http address"))?),
            None => None,
        };
        let auth_required = auth.required();
        let (max_connections, max_unauthenticated) =
            (config.limits.max_connections, config.limits.max_unauthenticated_connections);
        let auth_guard = auth_guard::AuthGuard::new(config.limits.auth_guard());
        let reply_budget = Arc::new(connection_core::ReplyBudget::new(config.limits.max_reply_bytes_total));
        let webhook_counters =
            config.webhooks.iter().map(|w| Arc::new(webhook::WebhookCounters::new(&w.name))).collect();
        let seeds = (0..event_loop::loop_count())
            .map(|_| event_loop::LoopSeed::new())
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io_error("creating the event loops"))?;
        let shared = Arc::new(Shared {
            store,
            config,
            auth,
            stats: ServerStats::default(),
            reply_budget,
            auth_guard,
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
            connections: Mutex::new(Registry {
                sockets: HashMap::new(),
                admission: admission::Admission::new(auth_required, max_connections, max_unauthenticated),
            }),
            connections_changed: Condvar::new(),
            next_connection_id: AtomicU64::new(1),
            webhook_counters,
            loops: seeds.iter().map(|seed| Arc::clone(&seed.mailbox)).collect(),
            loops_may_stop: AtomicBool::new(false),
            helpers: helpers::Helpers::new(),
        });
        let loops = seeds
            .into_iter()
            .enumerate()
            .map(|(index, seed)| seed.start(&shared, index))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io_error("starting the event loops"))?;
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("logbook-accept".into())
                .spawn(move || accept_loop(&shared, &listener))
                .map_err(io_error("starting the acceptor thread"))?
        };
        let metrics = match metrics_listener {
            Some(listener) => {
                let shared = Arc::clone(&shared);
                Some(
                    std::thread::Builder::new()
                        .name("logbook-metrics".into())
                        .spawn(move || http::serve(&shared, listener, http::Role::Metrics))
                        .map_err(io_error("starting the metrics thread"))?,
                )
            }
            None => None,
        };
        let http = match http_listener {
            Some(listener) => {
                let shared = Arc::clone(&shared);
                Some(
                    std::thread::Builder::new()
                        .name("logbook-http".into())
                        .spawn(move || http::serve(&shared, listener, http::Role::Console))
                        .map_err(io_error("starting the http thread"))?,
                )
            }
            None => None,
        };
        let compactor = start_compactor(&shared)?;
        let webhooks = webhook::start_workers(&shared)?;
        Ok(Server {
            shared,
            addr,
            metrics_addr,
            http_addr,
            acceptor: Some(acceptor),
            metrics,
            http,
            compactor,
            webhooks,
            loops,
        })
    }

    /// Where the RESP listener is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the metrics endpoint is bound, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Where the console (`--http`) is bound, if anywhere.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// A handle that can start the shutdown from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        let mut wake = vec![wake_address(self.addr)];
        wake.extend(self.metrics_addr.map(wake_address));
        wake.extend(self.http_addr.map(wake_address));
        ShutdownHandle { shared: Arc::clone(&self.shared), wake }
    }

    /// Stops accepting, lets every connection finish the commands it has read (in-flight
    /// appends complete and are answered), then closes the store (final sync, clean marker,
    /// lock released).
    pub fn shutdown(self) -> Result<(), ServerError> {
        self.shutdown_handle().trigger();
        self.wait()
    }

    /// Waits for a shutdown triggered through a [`ShutdownHandle`], then finishes it.
    pub fn wait(mut self) -> Result<(), ServerError> {
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        if let Some(metrics) = self.metrics.take() {
            let _ = metrics.join();
        }
        if let Some(http) = self.http.take() {
            let _ = http.join();
        }
        self.shared.shutting_down.store(true, Ordering::Release);
        // Nothing is accepted any more: a loop ends once its connections are gone.
        self.shared.loops_may_stop.store(true, Ordering::Release);
        for mailbox in &self.shared.loops {
            mailbox.wake();
        }
        if let Some(compactor) = self.compactor.take() {
            // A compaction in progress finishes its current unit's steps first.
            let _ = compactor.join();
        }
        // A worker in a delivery or a backoff sees the flag within `webhook::STOP_CHECK`.
        for worker in self.webhooks.drain(..) {
            let _ = worker.join();
        }
        {
            let mut connections = self.shared.connections.lock();
            // End each connection's reads; its loop finishes its current requests, then sees EOF.
            for stream in connections.sockets.values() {
                let _ = stream.shutdown(Shutdown::Read);
            }
            let deadline = Instant::now() + SHUTDOWN_GRACE;
            while !connections.sockets.is_empty() {
                if self.shared.connections_changed.wait_until(&mut connections, deadline).timed_out() {
                    tracing::warn!(
                        open = connections.sockets.len(),
                        "connections still open at shutdown; closing the store"
                    );
                    break;
                }
            }
            if connections.sockets.is_empty() {
                drop(connections);
                for event_loop in self.loops.drain(..) {
                    let _ = event_loop.join();
                }
            }
        }
        self.shared.store.clone().close()?;
        Ok(())
    }
}

/// Starts the background compaction thread when the config sets `compact_interval`.
fn start_compactor(shared: &Arc<Shared>) -> Result<Option<JoinHandle<()>>, ServerError> {
    let policy = shared.config.retention_policy().map_err(ServerError::Config)?;
    let Some(interval) = policy.compact_interval else { return Ok(None) };
    let shared = Arc::clone(shared);
    let handle = std::thread::Builder::new()
        .name("logbook-compact".into())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            while !shared.is_shutting_down() {
                if Instant::now() < next {
                    std::thread::sleep(COMPACTOR_TICK.min(next - Instant::now()));
                    continue;
                }
                let now = shared.store.now_us();
                match logbook_archive::compact(&shared.store, &policy, now, |_, _| {}) {
                    Ok(report) => tracing::info!(?report, "background compaction finished"),
                    Err(err) => tracing::error!(%err, "background compaction failed"),
                }
                next = Instant::now() + interval;
            }
        })
        .map_err(io_error("starting the compaction thread"))?;
    Ok(Some(handle))
}

/// How often the compaction thread checks for shutdown while it waits.
const COMPACTOR_TICK: Duration = Duration::from_millis(100);

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    for conn in listener.incoming() {
        if shared.is_shutting_down() {
            break;
        }
        match conn {
            Ok(stream) => admit(shared, stream),
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%err, "accept failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Registers and starts a connection, or turns it away when the server is full.
fn admit(shared: &Arc<Shared>, mut stream: TcpStream) {
    let id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
    let registered = {
        let mut registry = shared.connections.lock();
        match stream.try_clone() {
            Err(_) => false,
            Ok(clone) => match registry.admission.admit(id) {
                admission::Admit::Reject => false,
                admit => {
                    if let admission::Admit::AcceptEvicting(old) = admit {
                        // The oldest unauthenticated connection makes room; its thread sees
                        // the socket close and ends.
                        if let Some(socket) = registry.sockets.get(&old) {
                            let _ = socket.shutdown(Shutdown::Both);
                        }
                        shared.stats.unauthenticated_evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    registry.sockets.insert(id, clone);
                    true
                }
            },
        }
    };
    if !registered {
        tracing::debug!(peer = %peer_of(&stream), "connection refused: max_connections reached");
        shared.stats.connections_rejected.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
        let _ = stream.write_all(b"-ERR max connections reached, try again later\r\n");
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    shared.stats.connections_total.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(connection = id, peer = %peer_of(&stream), "connection accepted");
    let registration = Registration { shared: Arc::clone(shared), id };
    let index = usize::try_from(id).unwrap_or(0) % shared.loops.len();
    shared.loops[index].adopt(stream, id, registration);
}

/// The client's address for a log line (`unknown` when the socket no longer knows it).
fn peer_of(stream: &TcpStream) -> String {
    stream.peer_addr().map_or_else(|_| "unknown".to_string(), |addr| addr.to_string())
}

/// Makes glibc's allocator give large buffers (replies, request buffers) back to the OS when
/// they are freed: a fixed 256 KiB mmap threshold (glibc otherwise raises it to the largest
/// buffer freed so far, after which multi-MiB replies come from per-thread heaps that keep
/// their pages), and at most 4 heaps. Called by `logbook serve`; a no-op elsewhere. Part of the
/// memory ceiling in docs/protocol.md.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning parameters and takes glibc's arena
    // lock to do so, so any thread may call it at any time; no memory of ours is touched.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

/// Installs SIGINT/SIGTERM handlers that trigger `handle`; returns the watcher thread.
pub fn shutdown_on_signals(handle: ShutdownHandle) -> Result<JoinHandle<()>, ServerError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(io_error("installing signal handlers"))?;
    std::thread::Builder::new()
        .name("logbook-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(signal, "shutting down");
                handle.trigger();
            }
        })
        .map_err(io_error("starting the signal thread"))
}
