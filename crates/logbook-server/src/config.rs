//! Server configuration: where to listen, the data directory, limits and tenants.
//!
//! Everything has a default; a TOML file (`logbook serve --config FILE`) overrides any of it
//! and command-line flags override the file. See docs/protocol.md for the file format.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use logbook_protocol::{CommandLimits, Limits as RespLimits};

/// Default address of `logbook serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// Default data directory of `logbook serve`.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// Bounds on what one connection (and all of them together) may use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest bulk string a client may send (APPEND data, APPENDMANY JSON).
    pub max_bulk_bytes: usize,
    /// Most events in one APPENDMANY.
    pub max_events_per_append: usize,
    /// Most open client connections; one more gets `-ERR max connections` and is closed.
    pub max_connections: usize,
    /// Most request bytes buffered per connection (pipelined commands not yet executed).
    /// At least `max_bulk_bytes` + 64 KiB, so the largest allowed command fits.
    pub max_pipeline_bytes: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout_secs: u64,
    /// A request must arrive completely within this long of its first byte (so a client that
    /// trickles bytes cannot hold a connection and its buffer forever).
    pub request_timeout_secs: u64,
    /// Most arguments in one command.
    pub max_args: usize,
    /// Largest COUNT of READ / READALL.
    pub max_count: u64,
    /// READ / READALL stop adding events once the reply holds this many bytes (at least one
    /// event is always returned), so one reply cannot hold COUNT x 4 MiB in memory.
    pub max_reply_bytes: usize,
    /// Reply bytes a connection may have waiting to be written before the server stops
    /// taking its requests (and reading its socket) until the client reads: backpressure.
    pub max_pending_reply_bytes: usize,
    /// Reply bytes all connections together may hold. A READ / READALL reply gets at most
    /// what is left of it (at least one event), so clients that do not read cannot make the
    /// daemon hold more than this.
    pub max_reply_bytes_total: usize,
    /// Connections that have not authenticated yet (when tenants are configured). They do
    /// not count against `max_connections`; when they are all taken, the oldest one is
    /// closed to make room, so a flood of silent sockets cannot lock tenants out.
    pub max_unauthenticated_connections: usize,
    /// A connection must authenticate within this long of connecting (when tenants are
    /// configured), or it gets `-ERR AUTH not received` and is closed.
    pub auth_timeout_secs: u64,
    /// A failed AUTH's reply is held this long, doubled for each further failure from the
    /// same client address, up to `auth_failure_delay_max_ms`.
    pub auth_failure_delay_ms: u64,
    pub auth_failure_delay_max_ms: u64,
    /// A connection is closed after this many failed AUTHs.
    pub max_auth_failures_per_connection: u32,
    /// An address's failed AUTHs are forgotten this long after its last one.
    pub auth_failure_window_secs: u64,
    /// Live tails of the console (`GET /api/tail`, server-sent events) open at once; they do
    /// not count against the HTTP listener's other connections. One more gets 503.
    pub max_tail_connections: usize,
    /// A live tail that has sent no event for this long is ended (the browser's EventSource
    /// reconnects and resumes after the last event it got).
    pub tail_idle_timeout_secs: u64,
    /// Most consumer groups in the store (all tenants together).
    pub max_groups: usize,
    /// Most consumers per group; a new one takes the place of the longest idle consumer
    /// holding no pending events, or is refused.
    pub max_group_consumers: usize,
    /// Most pending (delivered, unacknowledged) events per group; when full, GROUP READ
    /// delivers only redeliveries.
    pub max_group_pending: usize,
    /// Most consumer groups one tenant may create (its share of `max_groups`).
    pub max_groups_per_tenant: usize,
    /// Most pending events of all groups together (each ~100 bytes); when reached, GROUP
    /// READ of every group delivers only redeliveries.
    pub max_group_pending_total: usize,
    /// Most positions in one GROUP ACK.
    pub max_ack_positions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_bytes: 4 * 1024 * 1024,
            max_events_per_append: 10_000,
            max_connections: 1024,
            max_pipeline_bytes: 16 * 1024 * 1024,
            idle_timeout_secs: 300,
            request_timeout_secs: 30,
            max_args: 1024,
            max_count: 100_000,
            max_reply_bytes: 4 * 1024 * 1024,
            max_pending_reply_bytes: 1024 * 1024,
            max_reply_bytes_total: 32 * 1024 * 1024,
            max_unauthenticated_connections: 64,
            auth_timeout_secs: 10,
            auth_failure_delay_ms: 100,
            auth_failure_delay_max_ms: 5000,
            max_auth_failures_per_connection: 3,
            auth_failure_window_secs: 600,
            max_tail_connections: 16,
            tail_idle_timeout_secs: 60,
            max_groups: 1000,
            max_group_consumers: 1000,
            max_group_pending: 100_000,
            max_groups_per_tenant: 100,
            max_group_pending_total: 1_000_000,
            max_ack_positions: 1000,
        }
    }
}

impl Limits {
    /// The RESP parser's bounds derived from these limits.
    pub fn resp(&self) -> RespLimits {
        RespLimits {
            max_bulk_bytes: self.max_bulk_bytes,
            max_array_len: self.max_args,
            // Requests are flat arrays; a little slack for clients that nest harmlessly.
            max_nesting_depth: 2,
            max_inline_bytes: 64 * 1024,
        }
    }

    /// The command parser's bounds derived from these limits.
    pub fn commands(&self) -> CommandLimits {
        CommandLimits {
            max_events_per_append: self.max_events_per_append,
            max_count: self.max_count,
            max_ack_positions: self.max_ack_positions,
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The connection core's limits (see `server::connection_core`).
    pub(crate) fn core(&self) -> super::connection_core::CoreLimits {
        super::connection_core::CoreLimits {
            resp: self.resp(),
            commands: self.commands(),
            extensions: Vec::new(),
            max_request_bytes: self.max_pipeline_bytes,
            max_pending_reply_bytes: self.max_pending_reply_bytes,
            heavy_request_bytes: usize::MAX,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            idle_timeout: self.idle_timeout(),
            auth_timeout: Duration::from_secs(self.auth_timeout_secs),
        }
    }

    /// The store's limits on consumer groups.
    pub fn groups(&self) -> logbook::GroupLimits {
        logbook::GroupLimits {
            max_groups: self.max_groups,
            max_consumers: self.max_group_consumers,
            max_pending: self.max_group_pending,
            max_pending_total: self.max_group_pending_total,
            ..logbook::GroupLimits::default()
        }
    }

    /// How failed AUTHs are slowed (see `server::auth_guard`).
    pub(crate) fn auth_guard(&self) -> super::auth_guard::AuthGuardLimits {
        super::auth_guard::AuthGuardLimits {
            delay_base: Duration::from_millis(self.auth_failure_delay_ms),
            delay_max: Duration::from_millis(self.auth_failure_delay_max_ms),
            max_failures_per_connection: self.max_auth_failures_per_connection,
            window: Duration::from_secs(self.auth_failure_window_secs),
        }
    }

    /// Rejects settings that cannot work together.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_bulk_bytes", self.max_bulk_bytes as u64),
            ("max_events_per_append", self.max_events_per_append as u64),
            ("max_connections", self.max_connections as u64),
            ("max_pipeline_bytes", self.max_pipeline_bytes as u64),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            ("max_args", self.max_args as u64),
            ("max_count", self.max_count),
            ("max_reply_bytes", self.max_reply_bytes as u64),
            ("max_pending_reply_bytes", self.max_pending_reply_bytes as u64),
            ("max_reply_bytes_total", self.max_reply_bytes_total as u64),
            ("max_unauthenticated_connections", self.max_unauthenticated_connections as u64),
            ("auth_timeout_secs", self.auth_timeout_secs),
            ("max_auth_failures_per_connection", u64::from(self.max_auth_failures_per_connection)),
            ("max_tail_connections", self.max_tail_connections as u64),
            ("tail_idle_timeout_secs", self.tail_idle_timeout_secs),
            ("max_groups", self.max_groups as u64),
            ("max_group_consumers", self.max_group_consumers as u64),
            ("max_group_pending", self.max_group_pending as u64),
            ("max_groups_per_tenant", self.max_groups_per_tenant as u64),
            ("max_group_pending_total", self.max_group_pending_total as u64),
            ("max_ack_positions", self.max_ack_positions as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("limits.{name} must be at least 1"));
        }
        if self.max_pipeline_bytes < self.max_bulk_bytes.saturating_add(64 * 1024) {
            return Err(format!(
                "limits.max_pipeline_bytes ({}) must be at least max_bulk_bytes + 65536 ({})",
                self.max_pipeline_bytes,
                self.max_bulk_bytes.saturating_add(64 * 1024)
            ));
        }
        if self.max_events_per_append > 1_000_000 {
            return Err("limits.max_events_per_append must be at most 1000000".into());
        }
        Ok(())
    }
}

/// One tenant: a name (its namespace) and the SHA-256 of its token, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    pub token_sha256: String,
}

/// Store settings (`[store]` in the file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Preallocated size of a segment, bytes.
    pub segment_bytes: u64,
    /// `always` (fdatasync before every acknowledgement), `never`, or `every=<ms>`.
    pub sync: String,
    /// Check every frame of sealed segments on every open, not only after a crash.
    pub verify_on_open_always: bool,
    /// How often, at most, the writer records in `MANIFEST` how far the active segment is
    /// synced, milliseconds (0: after every fdatasync, three more fsyncs per commit). After a
    /// crash, losing what was recorded is refused as corruption; only appends synced since the
    /// last record can go unseen to a disk that loses synced writes.
    pub synced_record_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let defaults = logbook::Options::default();
        StoreConfig {
            segment_bytes: defaults.segment_bytes,
            sync: "always".into(),
            verify_on_open_always: false,
            synced_record_ms: u64::try_from(defaults.synced_record_every.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl StoreConfig {
    /// The store options these settings describe.
    pub fn options(&self) -> Result<logbook::Options, String> {
        let sync: logbook::SyncMode = self.sync.parse().map_err(|e| format!("store.sync {e}"))?;
        let verify_on_open =
            if self.verify_on_open_always { logbook::VerifyOnOpen::Always } else { logbook::VerifyOnOpen::AfterCrash };
        Ok(logbook::Options {
            segment_bytes: self.segment_bytes,
            sync,
            verify_on_open,
            synced_record_every: std::time::Duration::from_millis(self.synced_record_ms),
            ..logbook::Options::default()
        })
    }
}

/// The admin credential: `AUTH admin <token>` sees every tenant's streams by full name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub token_sha256: String,
}

/// The whole configuration (the TOML file's shape).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory of the store.
    pub data: PathBuf,
    /// Address of the RESP listener.
    pub listen: String,
    /// Address of the Prometheus text endpoint; none by default.
    pub metrics: Option<String>,
    /// Address of the HTTP side with the web console and its JSON API (and the metrics and
    /// health endpoints too); none by default.
    pub http: Option<String>,
    pub limits: Limits,
    pub store: StoreConfig,
    pub admin: Option<AdminConfig>,
    #[serde(rename = "tenant")]
    pub tenants: Vec<TenantConfig>,
    /// Retention rules, legal holds, archiving and the background compaction interval.
    pub retention: Option<logbook::RetentionConfig>,
    /// Where `BACKUP <name>` writes (`<backup_dir>/<name>`); none by default, and then BACKUP
    /// is refused: the daemon writes nowhere its config did not name.
    pub backup_dir: Option<PathBuf>,
    /// Outbound webhooks (`[[webhooks]]`): each POSTs matching events, signed, to a URL.
    pub webhooks: Vec<crate::WebhookConfig>,
    /// The legal holds that apply when `[retention]` names none. Set by the program that
    /// starts the daemon: the `logbook` binary passes the order lifecycle's
    /// (`logbook_order::default_legal_holds()`, payments and refunds for 7 years). None by
    /// default: a daemon started from this crate alone holds nothing unless told.
    #[serde(skip)]
    pub default_legal_holds: Vec<logbook::LegalHold>,
    /// Commands added by crates above the daemon (set by the program that starts it; the
    /// `logbook` binary adds the order lifecycle's TIMELINE).
    #[serde(skip)]
    pub extensions: crate::Extensions,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN.to_string(),
            metrics: None,
            http: None,
            limits: Limits::default(),
            store: StoreConfig::default(),
            admin: None,
            tenants: Vec::new(),
            retention: None,
            backup_dir: None,
            webhooks: Vec::new(),
            default_legal_holds: Vec::new(),
            extensions: crate::Extensions::default(),
        }
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Config::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// True when the daemon requires AUTH (tenants or an admin are configured).
    pub fn auth_required(&self) -> bool {
        self.admin.is_some() || !self.tenants.is_empty()
    }

    /// The retention policy of the `[retention]` table (the default policy without one).
    pub fn retention_policy(&self) -> Result<logbook::RetentionPolicy, String> {
        match &self.retention {
            Some(table) => {
                logbook::RetentionPolicy::from_config(table, &self.default_legal_holds).map_err(|e| e.to_string())
            }
            None => {
                Ok(logbook::RetentionPolicy { legal_holds: self.default_legal_holds.clone(), ..Default::default() })
            }
        }
    }

    /// Checks limits and that an open daemon (no auth) only listens on loopback.
    pub fn validate(&self) -> Result<(), String> {
        self.limits.validate()?;
        self.store.options()?;
        self.retention_policy()?;
        crate::webhook::validate_webhooks(&self.webhooks)?;
        if !self.auth_required() {
            require_loopback(&self.listen, "listen")?;
            if let Some(metrics) = &self.metrics {
                require_loopback(metrics, "metrics")?;
            }
            if let Some(http) = &self.http {
                require_loopback(http, "http")?;
            }
        }
        Ok(())
    }
}

/// Fails unless every address `addr` resolves to is a loopback address.
pub fn require_loopback(addr: &str, what: &str) -> Result<(), String> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| format!("{what} address '{addr}': {e}"))?.collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "refusing to listen on {what} address '{addr}' without authentication: configure tenants \
             (--config FILE) or use a loopback address such as 127.0.0.1"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod store_config_tests {
    use super::*;

    #[test]
    fn store_table_sets_the_store_options() {
        let config =
            Config::from_toml("[store]\nsegment_bytes = 1048576\nsync = \"every=5\"\nverify_on_open_always = true\nsynced_record_ms = 0\n")
                .unwrap();
        let options = config.store.options().unwrap();
        assert_eq!(options.segment_bytes, 1_048_576);
        assert_eq!(options.sync, logbook::SyncMode::Every(Duration::from_millis(5)));
        assert_eq!(options.verify_on_open, logbook::VerifyOnOpen::Always);
        assert_eq!(options.synced_record_every, Duration::ZERO);
        assert_eq!(Config::default().store.options().unwrap().synced_record_every, Duration::from_secs(1));
        assert_eq!(Config::default().store.options().unwrap().sync, logbook::SyncMode::Always);
        let bad = Config::from_toml("[store]\nsync = \"sometimes\"\n").unwrap();
        assert!(bad.validate().unwrap_err().contains("store.sync wants always, never or every=<ms>"));
        assert!(Config::from_toml("[store]\nsink = \"always\"\n").is_err(), "unknown keys are refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let config = Config::default();
        assert!(config.validate().is_ok());
        assert!(!config.auth_required());
    }

    #[test]
    fn open_daemon_refuses_public_addresses() {
        let config = Config { listen: "0.0.0.0:7878".into(), ..Config::default() };
        assert!(config.validate().unwrap_err().contains("refusing"));
        let config = Config { metrics: Some("0.0.0.0:9000".into()), ..Config::default() };
        assert!(config.validate().is_err());
        let config = Config { http: Some("0.0.0.0:7879".into()), ..Config::default() };
        assert!(config.validate().unwrap_err().contains("refusing to listen on http address"));
        assert!(Config { http: Some("127.0.0.1:7879".into()), ..Config::default() }.validate().is_ok());
    }

    #[test]
    fn toml_round_trip() {
        let config = Config::from_toml(
            r#"
            listen = "0.0.0.0:7000"
            data = "/tmp/x"
            http = "0.0.0.0:7879"
            [limits]
            max_connections = 5
            [admin]
            token_sha256 = "00"
            [[tenant]]
            name = "acme"
            token_sha256 = "11"
            "#,
        )
        .unwrap();
        assert_eq!(config.limits.max_connections, 5);
        assert_eq!(config.limits.max_bulk_bytes, 4 * 1024 * 1024);
        assert_eq!(config.tenants[0].name, "acme");
        assert_eq!(config.http.as_deref(), Some("0.0.0.0:7879"));
        assert!(config.validate().is_ok(), "auth configured, so a public address is allowed");
        assert!(Config::from_toml("bogus = 1").is_err());
    }

    #[test]
    fn retention_table_sets_the_policy_and_bad_rules_fail_validation() {
        let config = Config::from_toml(
            "[retention]\ncompact_interval = \"30m\"\n[[retention.rules]]\ncategory = \"order\"\nmax_age = \"90d\"\n",
        )
        .unwrap();
        let hold = logbook::LegalHold { event_type: "PAYMENT_CONFIRMED".into(), hold_us: logbook::YEAR_US };
        let config = Config { default_legal_holds: vec![hold.clone()], ..config };
        let policy = config.retention_policy().unwrap();
        assert_eq!(policy.compact_interval, Some(std::time::Duration::from_secs(1800)));
        assert_eq!(policy.rules.len(), 1);
        assert_eq!(policy.legal_holds, [hold], "the holds of the program that starts the daemon");
        assert!(config.validate().is_ok());
        assert!(Config::default().retention_policy().unwrap().compact_interval.is_none());
        let bad = Config::from_toml("[[retention.rules]]\ncategory = \"order\"\n").unwrap();
        let err = bad.validate().unwrap_err();
        assert!(err.contains("neither max_age nor max_count"), "{err}");
    }

    #[test]
    fn pipeline_must_fit_a_bulk() {
        let limits = Limits { max_pipeline_bytes: 4 * 1024 * 1024, ..Limits::default() };
        assert!(limits.validate().is_err());
    }

    /// The commented sample config in `packaging/` (the one the README uses) parses, passes
    /// validation, states the defaults it claims to, and names every limit and store setting:
    /// a setting added without its line in the sample fails here.
    #[test]
    fn the_sample_config_names_every_setting_with_its_default() {
        let text = include_str!("../../../packaging/logbook.toml");
        let config = Config::from_toml(text).expect("the sample parses");
        config.validate().expect("the sample is valid");
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.store, StoreConfig::default());
        assert_eq!((config.data.to_str(), config.listen.as_str()), (Some(DEFAULT_DATA_DIR), DEFAULT_LISTEN));
        let sample: toml::Table = toml::from_str(text).unwrap();
        for (table, defaults) in [
            ("limits", toml::Table::try_from(Limits::default()).unwrap()),
            ("store", toml::Table::try_from(StoreConfig::default()).unwrap()),
        ] {
            let written = sample[table].as_table().unwrap();
            let missing: Vec<&String> = defaults.keys().filter(|k| !written.contains_key(*k)).collect();
            assert!(missing.is_empty(), "packaging/logbook.toml lacks [{table}] {missing:?}");
        }
        assert!(config.retention_policy().unwrap().rules.is_empty(), "the sample expires nothing by default");
        // Its commented examples are valid once uncommented.
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let example = Config::from_toml(&uncommented).expect("the uncommented sample parses");
        example.validate().expect("the uncommented sample is valid");
        assert_eq!(example.tenants[0].name, "shop_berlin");
        assert_eq!(example.retention_policy().unwrap().rules.len(), 2);
        // The webhook example names every setting, each at its default where it has one.
        let example_hook = &example.webhooks[0];
        assert_eq!(example.webhooks.len(), 1);
        let defaults = crate::WebhookConfig::new("", "", "");
        assert_eq!(example_hook.from, defaults.from);
        assert_eq!(
            (
                example_hook.timeout_ms,
                example_hook.max_attempts,
                example_hook.backoff_initial_ms,
                example_hook.backoff_max_ms
            ),
            (defaults.timeout_ms, defaults.max_attempts, defaults.backoff_initial_ms, defaults.backoff_max_ms)
        );
        let written: toml::Table = toml::from_str(&uncommented).unwrap();
        let written = written["webhooks"].as_array().unwrap()[0].as_table().unwrap();
        let all = toml::Table::try_from(crate::WebhookConfig { prefix: Some("p".into()), ..defaults }).unwrap();
        let missing: Vec<&String> = all.keys().filter(|k| !written.contains_key(*k)).collect();
        assert!(missing.is_empty(), "packaging/logbook.toml's webhook example lacks {missing:?}");
        assert!(config.webhooks.is_empty(), "the sample sends nothing by default");
    }

    #[test]
    fn webhooks_are_read_from_the_file_and_checked_at_load() {
        let text = "[[webhooks]]\nname = \"search\"\nurl = \"http://127.0.0.1:9/x\"\nsecret = \"k\"\ntypes = [\"A\"]\n";
        let config = Config::from_toml(text).unwrap();
        config.validate().unwrap();
        let hook = &config.webhooks[0];
        assert_eq!(
            (hook.name.as_str(), hook.types.as_slice(), hook.prefix.as_deref()),
            ("search", &["A".to_string()][..], None)
        );
        assert_eq!((hook.timeout_ms, hook.max_attempts), (5_000, 10), "defaults");
        let https = Config::from_toml(&text.replace("http://", "https://")).unwrap();
        let err = https.validate().unwrap_err();
        assert!(err.starts_with("webhooks[0] ('search'): url") && err.contains("https is not supported"), "{err}");
        let err = Config::from_toml(&text.replace("secret = \"k\"\n", "")).unwrap_err();
        assert!(err.contains("missing field `secret`"), "{err}");
        let err = Config::from_toml(&format!("{text}retries = 3\n")).unwrap_err();
        assert!(err.contains("unknown field `retries`"), "{err}");
    }
}
