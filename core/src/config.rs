//! The collector's configuration: TOML text in, a checked `Config` out.
//!
//! Parsing is pure (the file is read by the runtime). Unknown keys are
//! refused, so a typo is an error and not a silently ignored setting. Every
//! error names the key it is about, as a dotted path
//! (`shards.cores[1]`, `listeners[0].address`), so an operator knows what to
//! fix. Facts about the machine (how many CPUs are online) come in as
//! arguments to `Config::check_machine`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::wire::state::Limits;
use crate::wire::{Decapsulation, ListenerOptions, TimestampSource};

/// The whole file. Every section has defaults, so an empty file is valid;
/// `listeners = []` written out is an empty list (refused by `check`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub shards: ShardsConfig,
    pub listeners: Vec<ListenerConfig>,
    pub balancer: BalancerConfig,
    pub decoder: DecoderConfig,
    pub sink: SinkConfig,
    pub store: StoreConfig,
    pub http: HttpConfig,
    pub run: RunConfig,
    pub log: LogConfig,
    pub haproxy: HaproxyConfig,
    pub console: ConsoleConfig,
    pub metadata: MetadataConfig,
    pub networks: NetworksConfig,
    pub enrichment: EnrichmentConfig,
    pub bmp: BmpConfig,
    pub kafka: FlowsKafkaConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: ShardsConfig::default(),
            listeners: default_listeners(),
            balancer: BalancerConfig::default(),
            decoder: DecoderConfig::default(),
            sink: SinkConfig::default(),
            store: StoreConfig::default(),
            http: HttpConfig::default(),
            run: RunConfig::default(),
            log: LogConfig::default(),
            haproxy: HaproxyConfig::default(),
            console: ConsoleConfig::default(),
            metadata: MetadataConfig::default(),
            networks: NetworksConfig::default(),
            enrichment: EnrichmentConfig::default(),
            bmp: BmpConfig::default(),
            kafka: FlowsKafkaConfig::default(),
        }
    }
}

/// What a flow whose exporter or interface the shard does not know yet
/// becomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    /// Stored with what is known: the exporter's address as its name, an
    /// empty interface.
    #[default]
    Store,
    /// Dropped and counted (`weir_metadata_flows_dropped_total`).
    Drop,
}

/// A metadata provider, as `metadata.providers` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataProvider {
    /// `metadata.exporters`.
    Static,
    /// `metadata.snmp`.
    Snmp,
}

/// Exporter and interface metadata (enrichment, part 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    pub on_missing: OnMissing,
    /// Lookups a shard could not answer, waiting for the control plane
    /// (one per exporter or interface; a full queue drops the request,
    /// counted, and the next flow asks again). 0: 4096.
    pub request_queue_slots: usize,
    /// The providers, in the order they are asked: the first that covers
    /// an exporter (or interface) answers for it.
    pub providers: Vec<MetadataProvider>,
    /// Exporters by subnet, with their attributes and interfaces (the
    /// static provider); the most specific subnet wins.
    pub exporters: Vec<StaticExporter>,
    /// Remote sources of static entries: JSON or CSV over HTTP, fetched on
    /// an interval; `exporters` win over them for the same subnet.
    pub sources: Vec<MetadataSource>,
    pub snmp: SnmpConfig,
    /// Rules in Akvorado's expression language, run in order on each
    /// exporter (`Exporter.IP`, `Exporter.Name`; `ClassifySite(...)`,
    /// `Reject()`...) and each interface (`Interface.Index`, `.Name`,
    /// `.Description`, `.Speed`; `ClassifyProvider(...)`,
    /// `ClassifyExternal()`, `SetName(...)`...). See README, "Classifiers".
    pub exporter_classifiers: Vec<String>,
    pub interface_classifiers: Vec<String>,
    /// Interfaces kept, over every exporter (the cache's bound; past it a
    /// new interface is stored empty, counted).
    pub cache_entries_max: usize,
    /// An exporter or interface no flow used for this long is forgotten.
    pub cache_expiry_s: u64,
    /// A polled answer older than this is polled again in the background
    /// (the old one answers meanwhile, and stays if the poll fails).
    pub cache_refresh_s: u64,
    /// How often expiry and refresh are checked.
    pub cache_check_interval_s: u64,
    /// Polled answers are saved here every `cache_save_interval_s` and at
    /// stop, and loaded at start. None: not kept.
    pub cache_file: Option<std::path::PathBuf>,
    pub cache_save_interval_s: u64,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            on_missing: OnMissing::Store,
            request_queue_slots: 0,
            providers: vec![MetadataProvider::Static],
            exporters: Vec::new(),
            sources: Vec::new(),
            snmp: SnmpConfig::default(),
            exporter_classifiers: Vec::new(),
            interface_classifiers: Vec::new(),
            cache_entries_max: 262_144,
            cache_expiry_s: 3600,
            cache_refresh_s: 1800,
            cache_check_interval_s: 60,
            cache_file: None,
            cache_save_interval_s: 300,
        }
    }
}

/// One `[[metadata.sources]]` entry: a document of static entries fetched
/// over HTTP (crate docs: `weir_core::enrich::sources`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataSource {
    /// Names the source in metrics and logs: `a-z`, `0-9`, `_`, `-`.
    pub name: String,
    /// `http://` or `https://`.
    pub url: String,
    /// `json` or `csv`.
    pub format: String,
    /// JSON: where the list is (dot-separated keys; empty: the top).
    pub path: String,
    /// Source field (a dot path) → ours (`subnet`, `name`, `site`, ...).
    pub rename: std::collections::BTreeMap<String, String>,
    /// Sent with each request (`Authorization = "Token ..."`).
    pub headers: std::collections::BTreeMap<String, String>,
    pub interval_s: u64,
    pub timeout_ms: u64,
}

impl Default for MetadataSource {
    fn default() -> Self {
        MetadataSource {
            name: String::new(),
            url: String::new(),
            format: "json".into(),
            path: String::new(),
            rename: Default::default(),
            headers: Default::default(),
            interval_s: 300,
            timeout_ms: 10_000,
        }
    }
}

impl MetadataSource {
    /// `fields`: what `rename` may name.
    fn check(&self, key: &dyn Fn(&str) -> String, fields: &[&str]) -> Result<(), ConfigError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(ConfigError::new(key("name"), "1 to 64 of a-z, 0-9, _ and -"));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) || self.url.len() < 10 {
            return Err(ConfigError::new(key("url"), format!("{:?}: an http:// or https:// URL", self.url)));
        }
        if !["json", "csv"].contains(&self.format.as_str()) {
            return Err(ConfigError::new(key("format"), format!("{:?}: json or csv", self.format)));
        }
        if let Some((_, to)) = self.rename.iter().find(|(_, to)| !fields.contains(&to.as_str())) {
            return Err(ConfigError::new(key("rename"), format!("{to:?} is not one of {}", fields.join(", "))));
        }
        if !(1..=86_400).contains(&self.interval_s) {
            return Err(ConfigError::new(key("interval_s"), "1 to 86400"));
        }
        if !(10..=600_000).contains(&self.timeout_ms) {
            return Err(ConfigError::new(key("timeout_ms"), "10 to 600000"));
        }
        Ok(())
    }
}

/// The SNMP provider: sysName, and ifName, ifDescr, ifAlias and
/// ifHighSpeed of each interface flows name, polled by a few control
/// threads, several interfaces of an exporter per request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnmpConfig {
    /// Exporters polled, by subnet (the most specific wins), with how; an
    /// exporter no entry covers is left to the next provider.
    pub credentials: Vec<SnmpCredentials>,
    /// One request's wait for its answer.
    pub timeout_ms: u64,
    /// Requests sent again after a timeout.
    pub retries: u32,
    /// Requests in flight at once (one per exporter at a time), each on a
    /// poller thread.
    pub pollers: usize,
    /// Interfaces one request asks about (4 objects each, and sysName).
    pub interfaces_per_request: usize,
    /// Failed polls in a row after which an exporter is left alone for
    /// `breaker_backoff_min_ms`, doubled at each new failure up to
    /// `breaker_backoff_max_ms` (the breaker opens, counted).
    pub breaker_errors: u32,
    pub breaker_backoff_min_ms: u64,
    pub breaker_backoff_max_ms: u64,
}

impl Default for SnmpConfig {
    fn default() -> Self {
        SnmpConfig {
            credentials: vec![SnmpCredentials {
                subnet: "::/0".into(),
                communities: vec!["public".into()],
                ..SnmpCredentials::default()
            }],
            timeout_ms: 1000,
            retries: 1,
            pollers: 4,
            interfaces_per_request: 8,
            breaker_errors: 3,
            breaker_backoff_min_ms: 30_000,
            breaker_backoff_max_ms: 600_000,
        }
    }
}

/// How the exporters of a subnet are polled: SNMPv2c with `communities`
/// (all tried, answers merged), or SNMPv3 when `user_name` is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnmpCredentials {
    pub subnet: String,
    pub communities: Vec<String>,
    /// 0: 161.
    pub port: u16,
    /// The address polled instead of the exporter's (an agent on a
    /// loopback, a management address); empty: the exporter's.
    pub agent: String,
    pub user_name: String,
    /// `none`, `md5`, `sha` (`sha1`), `sha224`, `sha256`, `sha384`, `sha512`.
    pub authentication_protocol: String,
    pub authentication_passphrase: String,
    /// `none`, `des`, `aes` (`aes128`), `aes192`, `aes256`, `aes192c`,
    /// `aes256c` (`-c`: Cisco's key extension).
    pub privacy_protocol: String,
    pub privacy_passphrase: String,
    pub context_name: String,
}

impl SnmpCredentials {
    /// SNMPv3 (a user) rather than v2c.
    pub fn is_v3(&self) -> bool {
        !self.user_name.is_empty()
    }

    /// The port, 0 resolved.
    pub fn port(&self) -> u16 {
        if self.port == 0 {
            161
        } else {
            self.port
        }
    }

    /// The authentication protocol named, normalised (`sha` → `sha1`,
    /// `""` → `none`); None if unknown.
    pub fn authentication(&self) -> Option<&'static str> {
        match self.authentication_protocol.to_ascii_lowercase().replace('-', "").as_str() {
            "" | "none" => Some("none"),
            "md5" => Some("md5"),
            "sha" | "sha1" => Some("sha1"),
            "sha224" => Some("sha224"),
            "sha256" => Some("sha256"),
            "sha384" => Some("sha384"),
            "sha512" => Some("sha512"),
            _ => None,
        }
    }

    /// The privacy protocol named, normalised (`aes` → `aes128`,
    /// `aes256-c` → `aes256c`); None if unknown.
    pub fn privacy(&self) -> Option<&'static str> {
        match self.privacy_protocol.to_ascii_lowercase().replace('-', "").as_str() {
            "" | "none" => Some("none"),
            "des" => Some("des"),
            "aes" | "aes128" => Some("aes128"),
            "aes192" => Some("aes192"),
            "aes256" => Some("aes256"),
            "aes192c" => Some("aes192c"),
            "aes256c" => Some("aes256c"),
            _ => None,
        }
    }

    fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if parse_cidr(&self.subnet).is_none() {
            return Err(ConfigError::new(key("subnet"), format!("{:?} is not an address or subnet", self.subnet)));
        }
        if !self.agent.is_empty() && self.agent.parse::<std::net::IpAddr>().is_err() {
            return Err(ConfigError::new(key("agent"), format!("{:?} is not an address", self.agent)));
        }
        if !self.is_v3() {
            if self.communities.is_empty() || self.communities.iter().any(|c| c.is_empty()) {
                return Err(ConfigError::new(
                    key("communities"),
                    "SNMPv2c needs at least one community, none empty (or set user_name for SNMPv3)",
                ));
            }
            let v3_only = [&self.authentication_protocol, &self.privacy_protocol, &self.context_name];
            if v3_only.iter().any(|s| !s.is_empty()) {
                return Err(ConfigError::new(key("user_name"), "SNMPv3 settings without a user_name"));
            }
            return Ok(());
        }
        if !self.communities.is_empty() {
            return Err(ConfigError::new(key("communities"), "communities are SNMPv2c's: not with user_name (SNMPv3)"));
        }
        let Some(auth) = self.authentication() else {
            return Err(ConfigError::new(
                key("authentication_protocol"),
                format!("{:?}: none, md5, sha, sha224, sha256, sha384 or sha512", self.authentication_protocol),
            ));
        };
        let Some(privacy) = self.privacy() else {
            return Err(ConfigError::new(
                key("privacy_protocol"),
                format!("{:?}: none, des, aes, aes192, aes256, aes192c or aes256c", self.privacy_protocol),
            ));
        };
        // RFC 3414: passphrases are at least 8 characters.
        if auth != "none" && self.authentication_passphrase.len() < 8 {
            return Err(ConfigError::new(key("authentication_passphrase"), "at least 8 characters"));
        }
        if privacy != "none" {
            if auth == "none" {
                return Err(ConfigError::new(key("privacy_protocol"), "privacy needs an authentication_protocol"));
            }
            if self.privacy_passphrase.len() < 8 {
                return Err(ConfigError::new(key("privacy_passphrase"), "at least 8 characters"));
            }
        }
        Ok(())
    }
}

impl SnmpConfig {
    fn check(&self) -> Result<(), ConfigError> {
        for (i, c) in self.credentials.iter().enumerate() {
            c.check(&|k: &str| format!("metadata.snmp.credentials[{i}].{k}"))?;
        }
        let ranges: [(&str, u64, u64, u64); 6] = [
            ("timeout_ms", self.timeout_ms, 10, 60_000),
            ("retries", self.retries.into(), 0, 10),
            ("pollers", self.pollers as u64, 1, 256),
            ("interfaces_per_request", self.interfaces_per_request as u64, 1, 64),
            ("breaker_errors", self.breaker_errors.into(), 1, 1000),
            ("breaker_backoff_min_ms", self.breaker_backoff_min_ms, 10, 86_400_000),
        ];
        for (name, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(ConfigError::new(format!("metadata.snmp.{name}"), format!("{low} to {high}")));
            }
        }
        if self.breaker_backoff_max_ms < self.breaker_backoff_min_ms || self.breaker_backoff_max_ms > 86_400_000 {
            return Err(ConfigError::new("metadata.snmp.breaker_backoff_max_ms", "breaker_backoff_min_ms to 86400000"));
        }
        Ok(())
    }
}

/// The fields of a `[[metadata.exporters]]` entry (what a remote source's
/// `rename` may name).
pub const STATIC_EXPORTER_FIELDS: [&str; 10] = [
    "subnet",
    "name",
    "group",
    "role",
    "site",
    "region",
    "tenant",
    "interfaces",
    "default_interface",
    "skip_missing_interfaces",
];

/// One `[[metadata.exporters]]` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticExporter {
    /// `192.0.2.1`, `192.0.2.0/24`, `2001:db8::/32`.
    pub subnet: String,
    /// Empty: the exporter's address.
    pub name: String,
    pub group: String,
    pub role: String,
    pub site: String,
    pub region: String,
    pub tenant: String,
    /// Interfaces by ifIndex (TOML keys are strings: `"17" = {...}`).
    pub interfaces: std::collections::BTreeMap<String, StaticInterface>,
    /// The interface of an ifIndex not listed; none: an empty interface.
    pub default_interface: Option<StaticInterface>,
    /// An ifIndex not listed is left to the next provider (none: it stays
    /// empty) rather than given `default_interface`.
    pub skip_missing_interfaces: bool,
}

/// An interface's attributes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticInterface {
    pub name: String,
    pub description: String,
    /// Mbps.
    pub speed: u32,
    pub provider: String,
    pub connectivity: String,
    /// `external`, `internal` or `undefined` (empty).
    pub boundary: String,
}

impl MetadataConfig {
    /// Request queue slots, 0 resolved.
    pub fn request_slots(&self) -> usize {
        if self.request_queue_slots == 0 {
            4096
        } else {
            self.request_queue_slots
        }
    }

    /// Whether `provider` is asked.
    pub fn uses(&self, provider: MetadataProvider) -> bool {
        self.providers.contains(&provider)
    }

    fn check(&self) -> Result<(), ConfigError> {
        for (i, p) in self.providers.iter().enumerate() {
            if self.providers[..i].contains(p) {
                return Err(ConfigError::new("metadata.providers", format!("{p:?} named twice")));
            }
        }
        if self.uses(MetadataProvider::Snmp) {
            self.snmp.check()?;
        }
        for (i, source) in self.sources.iter().enumerate() {
            source.check(&|k: &str| format!("metadata.sources[{i}].{k}"), &STATIC_EXPORTER_FIELDS)?;
            if self.sources[..i].iter().any(|s| s.name == source.name) {
                return Err(ConfigError::new(format!("metadata.sources[{i}].name"), "named twice"));
            }
        }
        if let Err(e) =
            crate::enrich::classify::Classifiers::new(&self.exporter_classifiers, &self.interface_classifiers)
        {
            let key = format!("metadata.{}_classifiers[{}]", e.kind.label(), e.index);
            return Err(ConfigError::new(key, e.message));
        }
        let ranges: [(&str, u64, u64, u64); 5] = [
            ("cache_entries_max", self.cache_entries_max as u64, 1, 16 << 20),
            ("cache_expiry_s", self.cache_expiry_s, 60, 30 * 86_400),
            ("cache_refresh_s", self.cache_refresh_s, 1, 30 * 86_400),
            ("cache_check_interval_s", self.cache_check_interval_s, 1, 3600),
            ("cache_save_interval_s", self.cache_save_interval_s, 1, 86_400),
        ];
        for (name, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(ConfigError::new(format!("metadata.{name}"), format!("{low} to {high}")));
            }
        }
        if self.cache_refresh_s >= self.cache_expiry_s {
            return Err(ConfigError::new(
                "metadata.cache_refresh_s",
                "below cache_expiry_s (an entry in use is refreshed before it could expire)",
            ));
        }
        if self.request_queue_slots > 1 << 20 {
            return Err(ConfigError::new("metadata.request_queue_slots", "at most 1048576 (0: 4096)"));
        }
        for (i, e) in self.exporters.iter().enumerate() {
            e.check().map_err(|e| ConfigError::new(format!("metadata.exporters[{i}].{}", e.key), e.message))?;
        }
        Ok(())
    }
}

impl StaticExporter {
    /// Checks the entry (from the config or a remote source); the error's
    /// key is relative to the entry (`subnet`, `interfaces.17.boundary`).
    pub fn check(&self) -> Result<(), ConfigError> {
        if parse_cidr(&self.subnet).is_none() {
            return Err(ConfigError::new("subnet", format!("{:?} is not an address or subnet", self.subnet)));
        }
        for (index, interface) in &self.interfaces {
            if index.parse::<u32>().map_or(true, |n| n == 0) {
                return Err(ConfigError::new("interfaces", format!("{index:?} is not an ifIndex (1 to 4294967295)")));
            }
            interface.check(&format!("interfaces.{index}.boundary"))?;
        }
        if let Some(d) = &self.default_interface {
            d.check("default_interface.boundary")?;
        }
        Ok(())
    }
}

impl StaticInterface {
    fn check(&self, key: &str) -> Result<(), ConfigError> {
        match crate::enrich::metadata::Boundary::parse(&self.boundary) {
            Some(_) => Ok(()),
            None => Err(ConfigError::new(key, format!("{:?}: external, internal or undefined", self.boundary))),
        }
    }
}

/// Core placement and the sizes of every per-shard buffer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardsConfig {
    /// CPUs that each run one pinned shard. Empty: every online CPU except
    /// `control_core` (all of them on a one-CPU machine).
    pub cores: Vec<usize>,
    /// The CPU of the control-plane threads (metrics, sink writer, signals).
    pub control_core: usize,
    /// Datagrams taken from a socket by one receive call.
    pub receive_batch_datagrams: usize,
    /// When datagrams arrive fast enough that half a receive batch builds
    /// up within this many µs, a shard that emptied a socket waits this long
    /// before receiving again, instead of sleeping until the next datagram:
    /// full batches, one wake-up per wait rather than per datagram. Slower
    /// traffic is taken as it comes. Adds at most this to a flow's latency.
    /// 0: off.
    pub receive_coalesce_us: u64,
    /// Largest datagram accepted; longer ones are cut and counted as dropped.
    pub datagram_bytes_max: usize,
    /// Receive buffer asked of the kernel for every socket. Sized for bursts:
    /// ten times the steady rate for one second should fit.
    pub socket_receive_buffer_bytes: usize,
    /// Slots of each shard's inbox of decoder-state updates (templates,
    /// sampling rates) sent by the other shards; a full inbox is a counted drop.
    pub state_updates_ring_slots: usize,
    /// How often an idle shard wakes to apply state updates, expire pending
    /// data and flush its sink.
    pub housekeeping_interval_ms: u64,
}

impl Default for ShardsConfig {
    fn default() -> Self {
        ShardsConfig {
            cores: Vec::new(),
            control_core: 0,
            receive_batch_datagrams: 64,
            receive_coalesce_us: 1000,
            datagram_bytes_max: 9216,
            socket_receive_buffer_bytes: 32 << 20,
            state_updates_ring_slots: 1024,
            housekeeping_interval_ms: 50,
        }
    }
}

/// One UDP address every shard listens on. The format of each datagram is
/// detected from its version field, so one port can take every format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `[::]:P` listens on IPv6 and, through mapped addresses, IPv4.
    pub address: SocketAddr,
    /// Report the packet inside this tunnel for sampled packets (sFlow
    /// headers, IPFIX dataLinkFrameSection); others give no flow.
    #[serde(default)]
    pub decapsulation: Decapsulation,
    /// Where TimeReceived comes from: the kernel, the export header, the
    /// flow's start.
    #[serde(default)]
    pub timestamp_source: TimestampSource,
}

impl ListenerConfig {
    /// How the decoder reads this listener's datagrams.
    pub fn options(&self) -> ListenerOptions {
        ListenerOptions { decapsulation: self.decapsulation, timestamp_source: self.timestamp_source }
    }
}

/// Defaults: NetFlow (2055), IPFIX (4739) and sFlow (6343), IPv4 and IPv6.
pub fn default_listeners() -> Vec<ListenerConfig> {
    [2055, 4739, 6343]
        .map(|port| ListenerConfig {
            address: SocketAddr::from(([0u16; 8], port)),
            decapsulation: Decapsulation::None,
            timestamp_source: TimestampSource::Kernel,
        })
        .to_vec()
}

/// How the kernel spreads datagrams over the shards' sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BalancerMode {
    /// The eBPF program: round robin per datagram, so one busy exporter
    /// uses every shard. Falls back to `kernel` when it cannot be loaded.
    #[default]
    Ebpf,
    /// The kernel's hash of the 5-tuple: one exporter stays on one shard.
    Kernel,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BalancerConfig {
    pub mode: BalancerMode,
}

/// Decoder state bounds (see `wire::state::Limits`) and where the state is
/// kept between runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecoderConfig {
    pub templates_per_exporter_max: usize,
    pub exporters_max: usize,
    pub samplers_per_exporter_max: usize,
    pub fields_per_template_max: usize,
    pub pending_sets_max: usize,
    pub pending_bytes_max: usize,
    pub pending_age_max_ms: u64,
    /// Templates and sampling rates are saved here at shutdown (and every
    /// `state_save_interval_s`) and loaded at start. None: not kept.
    pub state_file: Option<PathBuf>,
    pub state_save_interval_s: u64,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        let l = Limits::default();
        DecoderConfig {
            templates_per_exporter_max: l.templates_per_exporter_max,
            exporters_max: l.exporters_max,
            samplers_per_exporter_max: l.samplers_per_exporter_max,
            fields_per_template_max: l.fields_per_template_max,
            pending_sets_max: l.pending_sets_max,
            pending_bytes_max: l.pending_bytes_max,
            pending_age_max_ms: l.pending_age_max_ms,
            state_file: None,
            state_save_interval_s: 60,
        }
    }
}

impl DecoderConfig {
    /// The decoder's limits, with the runtime's random hash seed.
    pub fn limits(&self, hash_seed: u64) -> Limits {
        Limits {
            templates_per_exporter_max: self.templates_per_exporter_max,
            exporters_max: self.exporters_max,
            samplers_per_exporter_max: self.samplers_per_exporter_max,
            fields_per_template_max: self.fields_per_template_max,
            pending_sets_max: self.pending_sets_max,
            pending_bytes_max: self.pending_bytes_max,
            pending_age_max_ms: self.pending_age_max_ms,
            hash_seed,
        }
    }
}

/// Where decoded flows go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// The ClickHouse store configured in `[store]`.
    #[default]
    Store,
    /// Count flows and drop them (benchmarks).
    Count,
    /// One JSON object per flow, the keys of `weir decode`.
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    pub kind: SinkKind,
    /// `json` output: a file (appended to, reopened on SIGHUP) or `-` for stdout.
    pub path: PathBuf,
    /// A shard hands its JSON lines to the writer thread in buffers of this size.
    pub buffer_bytes: usize,
    /// Buffers in flight between the shards and the writer; when all are
    /// full the shards wait (backpressure, then kernel drops, counted).
    pub buffers_max: usize,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig { kind: SinkKind::Store, path: PathBuf::from("-"), buffer_bytes: 256 << 10, buffers_max: 64 }
    }
}

/// Which ClickHouse the flows go to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// chDB's libchdb.so inside the weir process (`[store.embedded]`).
    #[default]
    Embedded,
    /// A ClickHouse server over HTTP (`[store.remote]`).
    Remote,
}

/// Batch buffers per shard when `store.batches_max` is 0: 16 of 16 384
/// rows cover a quarter of a second at 1 M flows/s, for the moments the
/// writer is not taking batches (it takes them while an insert runs).
/// One shard lost 0–6 % at 1 M flows/s with 8 or 16, as with 8 of 65 536
/// rows, when its own core was full (perf/RESULTS.md, "Batches taken
/// during inserts").
pub const BATCHES_PER_SHARD: usize = 16;

/// `store.consolidation_interval_ms` when unset, with the `flows` table:
/// its rows show within a second, and the sums within 10 s.
pub const CONSOLIDATION_INTERVAL_TABLE_MS: u64 = 10_000;
/// ... and with segment files, whose rows show only once their minute's
/// file is closed: a minute's sums, one hand-over a minute, took the
/// consolidated tables' merges from about 100 ns per flow to nearly none
/// at 1 M flows/s (perf/RESULTS.md, "A minute between hand-overs of sums").
pub const CONSOLIDATION_INTERVAL_SEGMENTS_MS: u64 = 60_000;

impl StoreConfig {
    /// How often a shard hands its sums over: `consolidation_interval_ms`,
    /// or its default for `raw`.
    pub fn consolidation_interval(&self) -> std::time::Duration {
        let default = match self.raw {
            RawStore::Table => CONSOLIDATION_INTERVAL_TABLE_MS,
            RawStore::Segments => CONSOLIDATION_INTERVAL_SEGMENTS_MS,
        };
        std::time::Duration::from_millis(self.consolidation_interval_ms.unwrap_or(default))
    }

    /// Batch buffers for `shards` shards.
    pub fn batches(&self, shards: usize) -> usize {
        match self.batches_max {
            0 => BATCHES_PER_SHARD * shards.max(1),
            n => n,
        }
    }
}

/// Where raw flows go (`store.raw`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawStore {
    /// The `flows` MergeTree table (compressed, merged, queried fastest).
    #[default]
    Table,
    /// Native segment files, one per minute, queried in place through the
    /// `flows_segments` view (embedded store only): no insert, no merge,
    /// about 3× the flows per CPU-second and 6–8× the disk of the table.
    Segments,
}

/// How segment files are written (`store.segments_compression`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentsCompression {
    /// Native blocks as the shards wrote them (`.native`).
    #[default]
    None,
    /// One zstd frame (level 1) per batch, compressed by its shard
    /// (`.native.zst`): a tenth of the bytes on generated flows, for about
    /// 130 ns of the shard's CPU per flow.
    Zstd,
}

/// The store: schema choices, batch limits, retries and the spool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// Database holding `flows`, `flows_1m`, `flows_5m`, `flows_1h` and the helper tables.
    pub database: String,
    /// Optional columns to store (`SrcMAC`, `SrcVlan`, `MPLSLabels`...);
    /// adding one later alters the live tables and keeps their data.
    pub optional_columns: Vec<String>,
    /// A shard hands its batch to the store writer at this many rows...
    pub batch_rows_max: usize,
    /// ...or when its oldest row is this old, whichever comes first.
    pub flush_interval_ms: u64,
    /// The writer starts an insert at most this often (0: as soon as a
    /// batch arrives), gathering the batches that arrive meanwhile into one
    /// insert (up to `insert_rows_max`); a backlog is inserted without waiting. Fewer,
    /// larger inserts make fewer parts for ClickHouse to merge.
    pub insert_interval_ms: u64,
    /// One insert holds at most this many rows and bytes of blocks (at most
    /// 1 000 000 rows and 256 MiB: below ClickHouse's insert block, so that
    /// an insert is one part, all or nothing, and a retry cannot repeat rows).
    pub insert_rows_max: u64,
    pub insert_bytes_max: u64,
    /// Batches in flight between the shards and the store writer; when all
    /// are taken the shards wait (backpressure). 0: `BATCHES_PER_SHARD` per
    /// shard. Each holds a batch's raw block once used (about 2.7 MiB at
    /// 16 384 rows; its zstd frame only, with compressed segments), so
    /// this bounds that part of the memory.
    pub batches_max: usize,
    /// Keys (minute and consolidated dimensions) a shard sums at most
    /// between two hand-overs of its sums; a full map hands them over early
    /// (counted). Each key takes 16 bytes of slots allocated at start and
    /// 112 bytes once used, in each of the shard's two maps (minutes, and
    /// the 5-minute and hour buckets folded at a hand-over). The default,
    /// 262 144 (64 MiB per shard when full), holds the keys of 1 M flows/s
    /// of `weir-flowgen --pool 16384` over the 10 s interval; 65 536 made
    /// 30 early hand-overs there, 15× the consolidated rows and 0.6× the
    /// flows per CPU-second (perf/RESULTS.md, "2026-12-03 (night)").
    pub consolidation_keys_max: usize,
    /// A shard hands its sums over when the first was added this long ago
    /// (or when the map is full, or at shutdown), independently of the raw
    /// batches: the longer, the more flows share a key, the fewer rows the
    /// consolidated tables take; their rows lag by up to this much. Unset:
    /// `consolidation_interval`'s default for `raw`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consolidation_interval_ms: Option<u64>,
    /// Bytes of batches the writer holds in memory while the store is down;
    /// beyond this, batches go to the spool.
    pub memory_bytes_max: u64,
    /// Where raw flows go: the `flows` table, or per-minute segment files.
    pub raw: RawStore,
    /// Directory of the segment files (`raw = "segments"`).
    pub segments_dir: PathBuf,
    /// Segment files older than this are deleted.
    pub segments_hours: u32,
    /// Whether segment files are compressed (each shard compresses its
    /// batches' blocks, one zstd frame each).
    pub segments_compression: SegmentsCompression,
    /// Directory of the on-disk spool (replayed in order, also after a restart).
    pub spool_dir: PathBuf,
    /// Spool size bound; a batch that does not fit is dropped and counted.
    pub spool_bytes_max: u64,
    /// First retry delay after a failed insert; doubles up to the max.
    pub retry_backoff_min_ms: u64,
    pub retry_backoff_max_ms: u64,
    /// Time to live of each table, in hours.
    pub ttl_raw_hours: u32,
    pub ttl_1m_hours: u32,
    pub ttl_5m_hours: u32,
    pub ttl_1h_hours: u32,
    /// Expire whole parts only (ClickHouse's `ttl_only_drop_parts`): rows
    /// are kept up to one partition longer (a day; a month in flows_1h), and
    /// no merge rewrites the rows that stay (see `schema::SchemaSettings`).
    pub ttl_only_drop_parts: bool,
    /// The largest part the raw table's merges make, in bytes (ClickHouse's
    /// `max_bytes_to_merge_at_max_space_in_pool` on `flows`); 0: the
    /// engine's own (150 GiB). Fewer merge levels for more parts.
    pub raw_part_bytes_max: u64,
    /// Parts of the consolidated tables smaller than this, in bytes, are
    /// compact: one file for all columns (ClickHouse's
    /// `min_bytes_for_wide_part` on `flows_1m`/`5m`/`1h`); 0 (the default):
    /// the engine's own (10 MiB). A SummingMergeTree merge writes every
    /// column at once, with a buffer per column's file in a wide part:
    /// compact parts merge in about a ninth of the memory, and the console
    /// reads them 1.2–1.35× slower (perf/RESULTS.md, 2026-12-04).
    pub consolidated_wide_part_bytes: u64,
    pub embedded: EmbeddedStoreConfig,
    pub remote: RemoteStoreConfig,
    /// The `http_requests` table, from `[haproxy]` with `store = true`
    /// (set by the collector from that section, not read from `[store]`).
    #[serde(skip)]
    pub http: Option<crate::httplog::HttpTable>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Embedded,
            database: "weir".into(),
            optional_columns: Vec::new(),
            batch_rows_max: 16_384,
            flush_interval_ms: 1000,
            insert_interval_ms: 1000,
            insert_rows_max: 1_000_000,
            insert_bytes_max: 128 << 20,
            batches_max: 0,
            consolidation_keys_max: 262_144,
            consolidation_interval_ms: None,
            memory_bytes_max: 256 << 20,
            raw: RawStore::Table,
            segments_dir: PathBuf::from("/var/lib/weir/segments"),
            segments_hours: 6,
            segments_compression: SegmentsCompression::None,
            spool_dir: PathBuf::from("/var/lib/weir/spool"),
            spool_bytes_max: 4 << 30,
            retry_backoff_min_ms: 100,
            retry_backoff_max_ms: 10_000,
            ttl_raw_hours: 168,
            ttl_1m_hours: 360,
            ttl_5m_hours: 2160,
            ttl_1h_hours: 8760,
            ttl_only_drop_parts: true,
            raw_part_bytes_max: 4 << 30,
            consolidated_wide_part_bytes: 0,
            embedded: EmbeddedStoreConfig::default(),
            remote: RemoteStoreConfig::default(),
            http: None,
        }
    }
}

impl StoreConfig {
    /// The schema choices, for `schema::Schema::new`.
    pub fn schema_settings(&self) -> crate::schema::SchemaSettings {
        crate::schema::SchemaSettings {
            database: self.database.clone(),
            optional_columns: self.optional_columns.clone(),
            ttl_raw_hours: self.ttl_raw_hours,
            ttl_1m_hours: self.ttl_1m_hours,
            ttl_5m_hours: self.ttl_5m_hours,
            ttl_1h_hours: self.ttl_1h_hours,
            ttl_only_drop_parts: self.ttl_only_drop_parts,
            raw_part_bytes_max: self.raw_part_bytes_max,
            consolidated_wide_part_bytes: self.consolidated_wide_part_bytes,
            http: self.http.clone(),
            cluster: (self.kind == StoreKind::Remote && !self.remote.cluster.is_empty())
                .then(|| self.remote.cluster.clone()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedStoreConfig {
    /// chDB's data directory (one process at a time may open it).
    pub path: PathBuf,
    /// libchdb.so: a file name is searched like any shared library
    /// (`scripts/setup` installs it in /usr/local/lib), a path is used as is.
    pub library: PathBuf,
    /// The engine's server settings (names as in ClickHouse's
    /// `system.server_settings`, integer values), each replacing the one of
    /// the same name in [`EMBEDDED_SERVER_SETTINGS`]. Checked at connect:
    /// a name the engine does not know, or a value it does not apply, stops
    /// the store with an error naming it.
    pub server_settings: std::collections::BTreeMap<String, u64>,
}

/// The embedded engine's bounds for a small appliance, where the engine's
/// own defaults are sized for a database server (5 GiB per mark and index
/// cache, 10 000 threads). Caches fill only as queries read parts, so these
/// bound what the console and `weir query` can pin, not the insert path.
pub const EMBEDDED_SERVER_SETTINGS: [(&str, u64); 9] = [
    ("mark_cache_size", 128 << 20),
    ("primary_index_cache_size", 64 << 20),
    ("index_mark_cache_size", 16 << 20),
    ("index_uncompressed_cache_size", 16 << 20),
    ("uncompressed_cache_size", 0),
    ("compiled_expression_cache_size", 32 << 20),
    ("query_condition_cache_size", 16 << 20),
    ("max_thread_pool_size", 256),
    ("max_io_thread_pool_size", 16),
];

impl EmbeddedStoreConfig {
    /// The settings the engine starts with: the appliance bounds, then the
    /// configured ones over them, by name.
    pub fn effective_server_settings(&self) -> Vec<(String, u64)> {
        let mut all: std::collections::BTreeMap<String, u64> =
            EMBEDDED_SERVER_SETTINGS.iter().map(|&(n, v)| (n.to_string(), v)).collect();
        all.extend(self.server_settings.iter().map(|(n, v)| (n.clone(), *v)));
        all.into_iter().collect()
    }
}

impl Default for EmbeddedStoreConfig {
    fn default() -> Self {
        EmbeddedStoreConfig {
            path: PathBuf::from("/var/lib/weir/chdb"),
            library: PathBuf::from("libchdb.so"),
            server_settings: Default::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteStoreConfig {
    /// The server's HTTP interface.
    pub url: String,
    pub user: String,
    pub password: String,
    /// LZ4-compress batches on the wire (ClickHouse's native block format).
    pub compression: bool,
    /// One insert or query gives up after this long (then it is retried).
    pub timeout_ms: u64,
    /// A ClickHouse cluster (its `remote_servers` name; `url` one of its
    /// nodes): tables made `ON CLUSTER`, replicated, read through
    /// `Distributed` tables, written into the `_local` tables of `url`'s
    /// shard (`weir_core::cluster`). Empty: one server.
    pub cluster: String,
    /// Other nodes, tried in order when `url` cannot be reached (refused,
    /// unreachable); `url` is tried first again after a minute. With a
    /// cluster, a replica of `url`'s shard first (an insert retried there
    /// is dropped as a duplicate), then other shards' nodes.
    pub failover: Vec<String>,
}

impl Default for RemoteStoreConfig {
    fn default() -> Self {
        RemoteStoreConfig {
            url: "http://127.0.0.1:8123".into(),
            user: "default".into(),
            password: String::new(),
            compression: true,
            timeout_ms: 10_000,
            cluster: String::new(),
            failover: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `/metrics` (Prometheus text format). None: no HTTP server.
    pub listen: Option<SocketAddr>,
    /// The profiling endpoints (`/debug/pprof/profile`, `/debug/memory`).
    pub debug: bool,
    /// Let `POST /query` (and `weir query`) run statements that change the
    /// store. Off: they run read-only (`readonly = 1` on a ClickHouse
    /// server; chDB's parser must find one read-only statement).
    pub query_writes: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: Some(SocketAddr::from(([127, 0, 0, 1], 9108))), debug: true, query_writes: false }
    }
}

/// The console's REST API (`/api/v0/console/...`): graphs, top talkers,
/// filters, over the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    pub enabled: bool,
    /// Its own address; unset: served on `http.listen`.
    pub listen: Option<SocketAddr>,
    /// The most top rows a graph may ask for (its `limit`).
    pub dimensions_limit: u64,
    /// How far back a graph may start, in days.
    pub range_max_days: u32,
    /// Bounds on each console query, enforced by the engine.
    pub query_timeout_s: u64,
    pub query_memory_bytes_max: u64,
    pub query_result_rows_max: u64,
    /// What the visualize page starts with (`/configuration`).
    pub default_visualize_options: VisualizeDefaults,
    /// The home page's top widgets (`/widget/top/{name}`).
    pub homepage_top_widgets: Vec<String>,
    /// The home page graph (`/widget/graph`): its range and its filter
    /// (the filter language, not SQL).
    pub homepage_graph_time_range_s: u64,
    pub homepage_graph_filter: String,
    /// Answers kept for their endpoint's time to live (widgets 5 s to
    /// 5 min, completions 1 min, graphs `cache_ttl_s`), at most this many bytes.
    pub cache_bytes_max: u64,
    /// How long a graph's answer is kept (0: not at all); 10 s at most while
    /// its range ends in the last two minutes.
    pub cache_ttl_s: u64,
    /// The SQLite file of saved filters (created if missing).
    pub database: PathBuf,
    /// Filters every user sees, resynced into the database at each start.
    pub saved_filters: Vec<SavedFilterConfig>,
    pub auth: ConsoleAuthConfig,
}

/// A built-in saved filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedFilterConfig {
    pub description: String,
    pub content: String,
}

/// Who is asking: a trusted reverse proxy names the user in headers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleAuthConfig {
    /// Peers whose user headers are believed (CIDRs); others get the default user.
    pub trusted_proxies: Vec<String>,
    /// Header names.
    pub login_header: String,
    pub name_header: String,
    pub email_header: String,
    pub logout_url_header: String,
    pub avatar_url_header: String,
    /// Who a request without a (believed) login is; an empty login: 401.
    pub default_login: String,
    pub default_name: String,
    /// Logout and avatar URLs when the proxy sends none.
    pub logout_url: String,
    pub avatar_url: String,
}

impl Default for ConsoleAuthConfig {
    fn default() -> Self {
        ConsoleAuthConfig {
            trusted_proxies: vec!["127.0.0.0/8".into(), "::1/128".into()],
            login_header: "Remote-User".into(),
            name_header: "Remote-Name".into(),
            email_header: "Remote-Email".into(),
            logout_url_header: "X-Logout-URL".into(),
            avatar_url_header: "X-Avatar-URL".into(),
            default_login: "__default".into(),
            default_name: "Default User".into(),
            logout_url: String::new(),
            avatar_url: String::new(),
        }
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            listen: None,
            dimensions_limit: 50,
            range_max_days: 400,
            query_timeout_s: 30,
            query_memory_bytes_max: 2 << 30,
            query_result_rows_max: 1_000_000,
            default_visualize_options: VisualizeDefaults::default(),
            homepage_top_widgets: ["src-as", "dst-as", "protocol", "etype", "exporter"].map(String::from).to_vec(),
            homepage_graph_time_range_s: 86_400,
            homepage_graph_filter: String::new(),
            cache_bytes_max: 64 << 20,
            cache_ttl_s: 3 * 3600,
            database: PathBuf::from("/var/lib/weir/console.sqlite"),
            saved_filters: Vec::new(),
            auth: ConsoleAuthConfig::default(),
        }
    }
}

/// The visualize page's defaults (Akvorado's `default-visualize-options`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisualizeDefaults {
    /// stacked, stacked100, lines, grid, heatmap or sankey.
    pub graph_type: String,
    /// Natural-language times the front end reads ("6 hours ago", "now").
    pub start: String,
    pub end: String,
    pub filter: String,
    pub dimensions: Vec<String>,
    pub limit: u64,
    /// avg, max or last.
    pub limit_type: String,
    pub bidirectional: bool,
    pub previous_period: bool,
}

impl Default for VisualizeDefaults {
    fn default() -> Self {
        VisualizeDefaults {
            graph_type: "stacked".into(),
            start: "6 hours ago".into(),
            end: "now".into(),
            filter: String::new(),
            dimensions: vec!["SrcAS".into()],
            limit: 10,
            limit_type: "avg".into(),
            bidirectional: false,
            previous_period: false,
        }
    }
}

/// The home page's top widgets.
/// `src-country` and `dst-country` answer once the store holds countries (GeoIP enrichment);
/// `http-host` (the `Host` header) and `http-status` once it holds HAProxy's requests (`[haproxy] store`).
pub const TOP_WIDGETS: [&str; 11] = [
    "src-as",
    "dst-as",
    "exporter",
    "protocol",
    "etype",
    "src-port",
    "dst-port",
    "src-country",
    "dst-country",
    "http-host",
    "http-status",
];

impl ConsoleConfig {
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(10..=1000).contains(&self.dimensions_limit) {
            return Err(ConfigError::new("console.dimensions_limit", "10..1000"));
        }
        positive("console.range_max_days", self.range_max_days as u64, 36_500)?;
        positive("console.query_timeout_s", self.query_timeout_s, 3600)?;
        positive("console.query_memory_bytes_max", self.query_memory_bytes_max, 1 << 40)?;
        positive("console.query_result_rows_max", self.query_result_rows_max, 1 << 32)?;
        if self.cache_bytes_max > 1 << 34 {
            return Err(ConfigError::new("console.cache_bytes_max", "at most 16 GiB"));
        }
        if self.cache_ttl_s > 7 * 86_400 {
            return Err(ConfigError::new("console.cache_ttl_s", "at most 604800 (a week)"));
        }
        positive("console.homepage_graph_time_range_s", self.homepage_graph_time_range_s, 366 * 86_400)?;
        if self.homepage_graph_time_range_s < 60 {
            return Err(ConfigError::new("console.homepage_graph_time_range_s", "at least 60"));
        }
        for (i, w) in self.homepage_top_widgets.iter().enumerate() {
            if !TOP_WIDGETS.contains(&w.as_str()) {
                let why = format!("{w:?} is not one of {}", TOP_WIDGETS.join(", "));
                return Err(ConfigError::new(format!("console.homepage_top_widgets[{i}]"), why));
            }
        }
        if self.database.as_os_str().is_empty() {
            return Err(ConfigError::new("console.database", "empty"));
        }
        for (i, p) in self.auth.trusted_proxies.iter().enumerate() {
            if parse_cidr(p).is_none() {
                let why = format!("{p:?} is not an address or CIDR (192.0.2.0/24, 2001:db8::/32)");
                return Err(ConfigError::new(format!("console.auth.trusted_proxies[{i}]"), why));
            }
        }
        let a = &self.auth;
        for (key, name) in [
            ("login_header", &a.login_header),
            ("name_header", &a.name_header),
            ("email_header", &a.email_header),
            ("logout_url_header", &a.logout_url_header),
            ("avatar_url_header", &a.avatar_url_header),
        ] {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(ConfigError::new(format!("console.auth.{key}"), "a header name: letters, digits, - and _"));
            }
        }
        let d = &self.default_visualize_options;
        let types = ["stacked", "stacked100", "lines", "grid", "heatmap", "sankey"];
        if !types.contains(&d.graph_type.as_str()) {
            let why = format!("one of {}", types.join(", "));
            return Err(ConfigError::new("console.default_visualize_options.graph_type", why));
        }
        if !["avg", "max", "last"].contains(&d.limit_type.as_str()) {
            return Err(ConfigError::new("console.default_visualize_options.limit_type", "avg, max or last"));
        }
        if d.limit == 0 || d.limit > self.dimensions_limit {
            return Err(ConfigError::new("console.default_visualize_options.limit", "1..dimensions_limit"));
        }
        Ok(())
    }
}

/// An address or a CIDR (`192.0.2.0/24`, `2001:db8::/32`) as the first
/// address and the prefix length, IPv4 mapped into IPv6.
pub fn parse_cidr(text: &str) -> Option<(std::net::Ipv6Addr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (text, None),
    };
    let (ip, len) = match addr.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => (v4.to_ipv6_mapped(), 96 + len.unwrap_or(32).min(33)),
        std::net::IpAddr::V6(v6) => (v6, len.unwrap_or(128)),
    };
    if len > 128 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
    Some((std::net::Ipv6Addr::from(u128::from(ip) & mask), len))
}

/// HAProxy's access logs: a unix datagram socket in, Kafka out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaproxyConfig {
    pub enabled: bool,
    /// The unix datagram socket HAProxy's `log` line names. Weir creates it
    /// (replacing a stale socket, never another kind of file).
    pub socket: PathBuf,
    /// Permissions of the socket file, octal.
    pub socket_mode: String,
    /// Owner and group of the socket file (a name or a number); unset: Weir's.
    pub socket_owner: Option<String>,
    pub socket_group: Option<String>,
    /// SO_RCVBUF of the socket: how many lines wait while Kafka is slow.
    pub receive_buffer_bytes: usize,
    /// Longest line taken whole (HAProxy's `len`); longer ones are dead-lettered.
    pub line_bytes_max: usize,
    /// Lines per receive call.
    pub batch_lines: usize,
    /// CPU of the log shard; unset: `shards.control_core`.
    pub core: Option<usize>,
    /// The SD-ID of the structured-data element (`log-format-sd`) that
    /// fields with `sd` read.
    pub structured_data_id: String,
    /// The field whose text is the Kafka message key; unset: no key.
    pub key: Option<String>,
    /// The `int` field holding HAProxy's request counter (`%rt`): gaps in
    /// it, per host and process, are counted as lost lines.
    pub request_counter: Option<String>,
    /// How long a number missing from the request counter may wait for its
    /// line (HAProxy logs a request when it ends, so lines come out of
    /// order) before it counts as lost.
    pub request_counter_wait_s: u64,
    /// What bytes that are not UTF-8 become in a field: `replace` (U+FFFD)
    /// or `escape` (`\xHH` per byte). The line is produced either way.
    pub invalid_utf8: crate::accesslog::InvalidUtf8,
    pub fields: Vec<HaproxyField>,
    /// Also store each parsed request in the store's `http_requests`
    /// table (`weir_core::httplog`), beside the flows; Kafka delivery is
    /// unchanged and does not wait for the store.
    pub store: bool,
    /// Rows of `http_requests` older than this are deleted.
    pub store_ttl_hours: u32,
    /// The log shard hands its rows to the store writer after this many...
    pub store_batch_rows_max: usize,
    /// ...or once its first row is this old.
    pub store_flush_interval_ms: u64,
    /// The rollups (`http_requests_1m`, `_5m`, `_1h`): summed by these
    /// columns of `http_requests`...
    pub store_dimensions: Vec<String>,
    /// ...and by `status_class`, this int field / 100 ("": none);
    pub store_status: String,
    /// the int field summed as `bytes`, and the one bucketed as the
    /// latency ("": none).
    pub store_bytes: String,
    pub store_latency: String,
    /// Rollup rows older than these are deleted.
    pub store_ttl_1m_hours: u32,
    pub store_ttl_5m_hours: u32,
    pub store_ttl_1h_hours: u32,
    /// Keys the log shard sums at most before its sums go early.
    pub store_consolidation_keys_max: usize,
    pub kafka: KafkaConfig,
}

impl Default for HaproxyConfig {
    fn default() -> Self {
        HaproxyConfig {
            enabled: false,
            socket: "/run/weir/haproxy-log.sock".into(),
            socket_mode: "0660".into(),
            socket_owner: None,
            socket_group: None,
            receive_buffer_bytes: 8 << 20,
            line_bytes_max: 8192,
            batch_lines: 64,
            core: None,
            structured_data_id: "weir@1".into(),
            key: None,
            request_counter: Some("request_counter".into()),
            request_counter_wait_s: 60,
            invalid_utf8: Default::default(),
            fields: default_haproxy_fields(),
            store: false,
            store_ttl_hours: 30 * 24,
            store_batch_rows_max: 16_384,
            store_flush_interval_ms: 1000,
            store_dimensions: ["host", "frontend", "backend", "server", "request_method", "cache"]
                .map(String::from)
                .to_vec(),
            store_status: "status".into(),
            store_bytes: "bytes_read".into(),
            store_latency: "ta_ms".into(),
            store_ttl_1m_hours: 15 * 24,
            store_ttl_5m_hours: 90 * 24,
            store_ttl_1h_hours: 365 * 24,
            store_consolidation_keys_max: 65_536,
            kafka: KafkaConfig::default(),
        }
    }
}

/// One field of the JSON message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyField {
    /// The JSON key.
    pub name: String,
    /// Read from this parameter of the structured-data element...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sd: Option<String>,
    /// ...or from this token (0-based) of the message part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// string, int, ip, clf_time, epoch_seconds, request or headers.
    #[serde(rename = "type")]
    pub kind: crate::accesslog::Kind,
    /// A line without it goes to the dead-letter topic.
    #[serde(default)]
    pub required: bool,
    /// For `headers`: the captured headers' names, in capture order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// For `string`, `request` and `headers`: `haproxy_hex` undoes
    /// HAProxy's `#XX` escapes, `none` keeps the text. Unset: `haproxy_hex`
    /// for `request` and `headers`, `none` for `string`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<crate::accesslog::Decode>,
}

fn default_haproxy_fields() -> Vec<HaproxyField> {
    use crate::accesslog::Kind;
    let sd = |name: &str, param: &str, kind: Kind, required: bool| HaproxyField {
        name: name.into(),
        sd: Some(param.into()),
        position: None,
        kind,
        required,
        headers: Vec::new(),
        decode: None,
    };
    let mut request_headers = sd("request_headers", "hr", Kind::Headers, false);
    request_headers.headers = vec!["host".into(), "user-agent".into(), "x-request-id".into()];
    let mut response_headers = sd("response_headers", "hs", Kind::Headers, false);
    response_headers.headers = vec!["content-type".into(), "x-cache".into()];
    vec![
        sd("client_ip", "ci", Kind::Ip, true),
        sd("client_port", "cp", Kind::Int, false),
        sd("accept_ms", "t", Kind::EpochSeconds, false),
        sd("frontend", "ft", Kind::String, false),
        sd("backend", "b", Kind::String, false),
        sd("server", "s", Kind::String, false),
        sd("tr_ms", "TR", Kind::Int, false),
        sd("tw_ms", "Tw", Kind::Int, false),
        sd("tc_ms", "Tc", Kind::Int, false),
        sd("tresp_ms", "Tr", Kind::Int, false),
        sd("ta_ms", "Ta", Kind::Int, false),
        sd("status", "ST", Kind::Int, true),
        sd("bytes_read", "B", Kind::Int, false),
        sd("termination_state", "tsc", Kind::String, false),
        sd("request_counter", "rt", Kind::Int, false),
        sd("cache", "cache", Kind::String, false),
        request_headers,
        response_headers,
        HaproxyField {
            name: "request".into(),
            sd: None,
            position: Some(0),
            kind: Kind::Request,
            required: true,
            headers: Vec::new(),
            decode: None,
        },
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// librdkafka's name for it (`compression.codec`).
    pub fn codec(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// The Kafka producer of the HAProxy input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port,host:port` (bootstrap.servers).
    pub brokers: String,
    /// One JSON object per request.
    pub topic: String,
    /// Lines that could not be parsed, with the reason.
    pub dead_letter_topic: String,
    pub compression: Compression,
    /// `all`, `1` or `0`.
    pub acks: String,
    /// No duplicates or reordering on retries (needs acks = all).
    pub idempotence: bool,
    /// Messages the local queue holds before reading pauses.
    pub queue_messages_max: usize,
    /// Bytes the local queue holds before reading pauses.
    pub queue_bytes_max: usize,
    pub linger_ms: u64,
    /// How long one message is retried before it counts as a delivery error.
    pub delivery_timeout_ms: u64,
    /// With the local queue full, reading pauses for up to this long (the
    /// socket buffer fills meanwhile) before a message is dropped, counted.
    pub backpressure_wait_ms: u64,
    /// More librdkafka properties (security.protocol, sasl.*, ssl.*, ...).
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "haproxy-logs".into(),
            dead_letter_topic: "haproxy-logs-dead-letter".into(),
            compression: Compression::Lz4,
            acks: "all".into(),
            idempotence: true,
            queue_messages_max: 100_000,
            queue_bytes_max: 256 << 20,
            linger_ms: 5,
            delivery_timeout_ms: 300_000,
            backpressure_wait_ms: 1000,
            options: Default::default(),
        }
    }
}

impl HaproxyConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let key = |k: &str| format!("haproxy.{k}");
        if self.socket.as_os_str().is_empty() {
            return Err(ConfigError::new(key("socket"), "empty"));
        }
        // sun_path holds 108 bytes with the terminating NUL.
        if self.socket.as_os_str().len() > 107 {
            return Err(ConfigError::new(key("socket"), "longer than a unix socket path can be (107 bytes)"));
        }
        if u32::from_str_radix(&self.socket_mode, 8).map_or(true, |m| m > 0o777) {
            return Err(ConfigError::new(key("socket_mode"), "octal permissions, such as \"0660\""));
        }
        positive(&key("receive_buffer_bytes"), self.receive_buffer_bytes as u64, 1 << 31)?;
        positive(&key("line_bytes_max"), self.line_bytes_max as u64, 65_535)?;
        positive(&key("batch_lines"), self.batch_lines as u64, 1024)?;
        positive(&key("request_counter_wait_s"), self.request_counter_wait_s, 86_400)?;
        if self.structured_data_id.is_empty() || self.structured_data_id.contains([' ', '=', ']', '"']) {
            return Err(ConfigError::new(key("structured_data_id"), "an SD-ID: no space, =, ] or \""));
        }
        for (i, f) in self.fields.iter().enumerate() {
            let at = |k: &str| format!("haproxy.fields[{i}].{k}");
            if f.name.is_empty() || self.fields[..i].iter().any(|o| o.name == f.name) {
                return Err(ConfigError::new(at("name"), "empty or used twice"));
            }
            if ["time_ms", "host", "program", "pid", "facility", "severity"].contains(&f.name.as_str()) {
                return Err(ConfigError::new(at("name"), "taken by the syslog header's fields"));
            }
            if f.sd.is_some() == f.position.is_some() {
                return Err(ConfigError::new(at("sd"), "give exactly one of `sd` and `position`"));
            }
            if f.position.is_some_and(|p| p >= 64) {
                return Err(ConfigError::new(at("position"), "at most 63"));
            }
            let headers = f.kind == crate::accesslog::Kind::Headers;
            if headers == f.headers.is_empty() {
                return Err(ConfigError::new(at("headers"), "the header names, for (and only for) type = \"headers\""));
            }
            if f.decode.is_some() && !f.kind.decodes() {
                return Err(ConfigError::new(at("decode"), "only for type = \"string\", \"request\" or \"headers\""));
            }
        }
        let int_field =
            |name: &str| self.fields.iter().find(|f| f.name == name).map(|f| f.kind == crate::accesslog::Kind::Int);
        if let Some(name) = &self.key {
            if int_field(name).is_none() {
                return Err(ConfigError::new(key("key"), format!("no field is named {name:?}")));
            }
        }
        if let Some(name) = &self.request_counter {
            if int_field(name) != Some(true) {
                return Err(ConfigError::new(
                    key("request_counter"),
                    format!("no field of type int is named {name:?}"),
                ));
            }
        }
        if self.store {
            positive(&key("store_ttl_hours"), self.store_ttl_hours.into(), 24 * 365 * 100)?;
            positive(&key("store_batch_rows_max"), self.store_batch_rows_max as u64, 1 << 20)?;
            positive(&key("store_flush_interval_ms"), self.store_flush_interval_ms, 600_000)?;
            for (name, hours) in [
                ("store_ttl_1m_hours", self.store_ttl_1m_hours),
                ("store_ttl_5m_hours", self.store_ttl_5m_hours),
                ("store_ttl_1h_hours", self.store_ttl_1h_hours),
            ] {
                positive(&key(name), hours.into(), 24 * 365 * 100)?;
            }
            positive(&key("store_consolidation_keys_max"), self.store_consolidation_keys_max as u64, 1 << 24)?;
            let table = self.try_http_table().map_err(|e| ConfigError::new(key("store_dimensions"), e))?;
            if let Some(name) = table.duplicate_column() {
                return Err(ConfigError::new(
                    key("fields"),
                    format!("two http_requests columns would be named {name:?} (a request's or headers' columns take the field's name and a suffix)"),
                ));
            }
        }
        let k = &self.kafka;
        let at = |s: &str| format!("haproxy.kafka.{s}");
        for (name, value) in [("brokers", &k.brokers), ("topic", &k.topic), ("dead_letter_topic", &k.dead_letter_topic)]
        {
            if value.trim().is_empty() {
                return Err(ConfigError::new(at(name), "empty"));
            }
        }
        if k.topic == k.dead_letter_topic {
            return Err(ConfigError::new(at("dead_letter_topic"), "the same as `topic`"));
        }
        if !["all", "1", "0"].contains(&k.acks.as_str()) {
            return Err(ConfigError::new(at("acks"), "\"all\", \"1\" or \"0\""));
        }
        if k.idempotence && k.acks != "all" {
            return Err(ConfigError::new(at("idempotence"), "needs acks = \"all\""));
        }
        positive(&at("queue_messages_max"), k.queue_messages_max as u64, 10_000_000)?;
        positive(&at("queue_bytes_max"), k.queue_bytes_max as u64, 1 << 31)?;
        positive(&at("delivery_timeout_ms"), k.delivery_timeout_ms, 86_400_000)?;
        if k.linger_ms > 60_000 || k.backpressure_wait_ms > 600_000 {
            return Err(ConfigError::new(at("linger_ms"), "linger_ms ≤ 60000 and backpressure_wait_ms ≤ 600000"));
        }
        Ok(())
    }

    /// The `http_requests` table of the fields, with its rollups
    /// (`store`; after `check`).
    pub fn http_table(&self) -> crate::httplog::HttpTable {
        self.try_http_table()
            .unwrap_or_else(|_| crate::httplog::HttpTable::new(self.format().fields(), self.store_ttl_hours))
    }

    fn try_http_table(&self) -> Result<crate::httplog::HttpTable, String> {
        let names = crate::httplog::RollupNames {
            dims: &self.store_dimensions,
            status: &self.store_status,
            bytes: &self.store_bytes,
            latency: &self.store_latency,
            ttl_hours: [self.store_ttl_1m_hours, self.store_ttl_5m_hours, self.store_ttl_1h_hours],
            keys_max: self.store_consolidation_keys_max,
        };
        crate::httplog::HttpTable::with_rollup(self.format().fields(), self.store_ttl_hours, Some(&names))
    }

    /// The parser's format, from the fields (after `check`).
    pub fn format(&self) -> crate::accesslog::Format {
        use crate::accesslog::{Field, Source};
        let fields = self
            .fields
            .iter()
            .map(|f| Field {
                name: f.name.clone(),
                source: match (&f.sd, f.position) {
                    (Some(p), _) => Source::Sd(p.clone()),
                    (None, p) => Source::Message(p.unwrap_or(0)),
                },
                kind: f.kind,
                required: f.required,
                headers: f.headers.clone(),
                decode: f.decode.unwrap_or(f.kind.default_decode()),
            })
            .collect();
        crate::accesslog::Format::new(
            &self.structured_data_id,
            fields,
            self.request_counter.as_deref(),
            self.key.as_deref(),
        )
        .with_invalid_utf8(self.invalid_utf8)
    }
}

/// Where log lines go: standard error, as text or JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `human` (one line per event) or `json` (one object per line).
    pub format: LogFormat,
    /// The least severe level written: `error`, `warn`, `info`, `debug`
    /// or `trace`.
    pub level: LogLevel,
    /// Per shard and kind of data-plane error (a failed receive, a run of
    /// undecodable datagrams), at most this many lines a minute; the rest
    /// are summed into the next line. The counters in `/metrics` count
    /// every one.
    pub data_plane_lines_per_minute: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Human, level: LogLevel::Info, data_plane_lines_per_minute: 6 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Process lifecycle: graceful restart and shutdown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Holds the pid of the running collector. A new `weir run` with the same
    /// file takes the sockets over and then asks the old one to drain and exit.
    pub pid_file: Option<PathBuf>,
    /// How long shutdown waits for sockets to drain and sinks to flush.
    pub drain_timeout_ms: u64,
    /// A shard or the store writer that shows no progress for this long
    /// (see `/health/live`) makes Weir stop pinging systemd's watchdog, so
    /// systemd restarts it.
    pub stall_timeout_s: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { pid_file: None, drain_timeout_ms: 5000, stall_timeout_s: 60 }
    }
}

/// A configuration error, naming the key it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key (`shards.cores[1]`); empty when the text is
    /// not TOML at all.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { key: key.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and checks TOML text. Machine facts are checked separately
    /// (`check_machine`), so a file can be checked on another box.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Ok(Self::load(text, &[], RENAMED)?.0)
    }

    /// Parses a file's text with environment overrides and renamed keys:
    /// returns the config and the warnings to log (each renamed key used).
    ///
    /// - `env`: (name, value) pairs; those named `WEIR_SECTION__KEY`
    ///   (`__` between levels: `WEIR_STORE__REMOTE__URL`) set that key,
    ///   the value read as a TOML value (`64`, `true`, `[0, 1]`) or else as
    ///   a string. Other names are ignored.
    /// - `renamed`: keys that moved; a file using the old name still works,
    ///   with a warning, and naming both is an error.
    pub fn load(
        text: &str,
        env: &[(String, String)],
        renamed: &[Renamed],
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let mut warnings = Vec::new();
        for r in renamed {
            if let Some(value) = take_path(&mut table, r.old) {
                if get_path(&table, r.new).is_some() {
                    let message = format!("renamed to {}, and both are set: keep {}", r.new, r.new);
                    return Err(ConfigError::new(r.old, message));
                }
                set_path(&mut table, r.new, value).map_err(|m| ConfigError::new(r.new, m))?;
                warnings.push(format!("{} is deprecated: it is now {} (since {}); rename it", r.old, r.new, r.since));
            }
        }
        let overrides: Vec<(&str, String, &str)> =
            env.iter().filter_map(|(n, v)| Some((n.as_str(), override_path(n)?, v.as_str()))).collect();
        let config = if warnings.is_empty() && overrides.is_empty() {
            // The text as it is: errors name the key and its line.
            toml::from_str(text).map_err(|e| toml_error(text, &e))?
        } else {
            for (name, path, value) in &overrides {
                let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .unwrap_or_else(|| toml::Value::String(value.to_string()));
                set_path(&mut table, path, parsed).map_err(|m| ConfigError::new(*name, m))?;
            }
            Config::deserialize(table).map_err(|e| {
                let names: Vec<&str> = overrides.iter().map(|(n, ..)| *n).collect();
                let context = if names.is_empty() { "renamed keys applied".to_string() } else { names.join(", ") };
                ConfigError::new("", format!("{} (with {context})", e.message().trim()))
            })?
        };
        config.check()?;
        Ok((config, warnings))
    }

    /// The checks that need no machine facts.
    pub fn check(&self) -> Result<(), ConfigError> {
        let s = &self.shards;
        for (i, core) in s.cores.iter().enumerate() {
            if s.cores[..i].contains(core) {
                return Err(ConfigError::new(format!("shards.cores[{i}]"), format!("core {core} is listed twice")));
            }
        }
        positive("shards.receive_batch_datagrams", s.receive_batch_datagrams as u64, 1024)?;
        positive("shards.datagram_bytes_max", s.datagram_bytes_max as u64, 65_535)?;
        positive("shards.socket_receive_buffer_bytes", s.socket_receive_buffer_bytes as u64, 1 << 31)?;
        positive("shards.state_updates_ring_slots", s.state_updates_ring_slots as u64, 1 << 20)?;
        positive("shards.housekeeping_interval_ms", s.housekeeping_interval_ms, 10_000)?;
        if s.receive_coalesce_us > 10_000 {
            return Err(ConfigError::new("shards.receive_coalesce_us", "at most 10000 (10 ms)"));
        }
        if s.datagram_bytes_max < 512 {
            return Err(ConfigError::new("shards.datagram_bytes_max", "must be at least 512 (RFC 7011 §10.3.3)"));
        }
        if self.listeners.is_empty() && !self.haproxy.enabled {
            return Err(ConfigError::new("listeners", "at least one listener is needed (or haproxy.enabled)"));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if self.listeners[..i].iter().any(|o| o.address == l.address) {
                return Err(ConfigError::new(format!("listeners[{i}].address"), "listed twice"));
            }
            if l.address.port() == 0 {
                return Err(ConfigError::new(format!("listeners[{i}].address"), "needs a port"));
            }
        }
        self.console.check()?;
        positive("decoder.state_save_interval_s", self.decoder.state_save_interval_s, 86_400)?;
        positive("sink.buffer_bytes", self.sink.buffer_bytes as u64, 1 << 30)?;
        positive("sink.buffers_max", self.sink.buffers_max as u64, 1 << 16)?;
        if self.sink.path.as_os_str().is_empty() {
            return Err(ConfigError::new("sink.path", "empty: use `-` for standard output"));
        }
        positive("run.drain_timeout_ms", self.run.drain_timeout_ms, 600_000)?;
        positive("run.stall_timeout_s", self.run.stall_timeout_s, 86_400)?;
        positive("log.data_plane_lines_per_minute", self.log.data_plane_lines_per_minute.into(), 6000)?;
        self.haproxy.check()?;
        self.metadata.check()?;
        self.networks.check()?;
        self.enrichment.check()?;
        self.bmp.check()?;
        self.kafka.check()?;
        if self.haproxy.enabled && self.haproxy.store && self.sink.kind != SinkKind::Store {
            return Err(ConfigError::new(
                "haproxy.store",
                "needs sink.kind = \"store\" (the requests go to its store)",
            ));
        }
        self.store.check()
    }

    /// Checks the cores against the machine and returns the shard cores
    /// (resolving the empty list to every online CPU but the control core).
    pub fn check_machine(&self, online_cpus: usize) -> Result<Vec<usize>, ConfigError> {
        let s = &self.shards;
        let range = format!("this machine has CPUs 0-{}", online_cpus.saturating_sub(1));
        if s.control_core >= online_cpus {
            return Err(ConfigError::new(
                "shards.control_core",
                format!("CPU {} is not online: {range}", s.control_core),
            ));
        }
        for (i, core) in s.cores.iter().enumerate() {
            if *core >= online_cpus {
                return Err(ConfigError::new(
                    format!("shards.cores[{i}]"),
                    format!("CPU {core} is not online: {range}"),
                ));
            }
        }
        if let Some(core) = self.haproxy.core.filter(|c| self.haproxy.enabled && *c >= online_cpus) {
            return Err(ConfigError::new("haproxy.core", format!("CPU {core} is not online: {range}")));
        }
        // A cache host running only the HAProxy input needs no flow shard.
        if self.listeners.is_empty() {
            return Ok(Vec::new());
        }
        if !s.cores.is_empty() {
            return Ok(s.cores.clone());
        }
        let cores: Vec<usize> = (0..online_cpus).filter(|c| *c != s.control_core).collect();
        Ok(if cores.is_empty() { vec![s.control_core] } else { cores })
    }
}

impl Config {
    /// What SIGHUP can apply to a running collector: the socket receive
    /// buffer size and reopening the JSON sink's file. Everything else is
    /// listed here, by key, as needing a restart (a graceful one loses
    /// nothing; see the README).
    pub fn keys_needing_restart(&self, new: &Config) -> Vec<&'static str> {
        // The live key compared as equal, so only the others can differ.
        let shards_live =
            ShardsConfig { socket_receive_buffer_bytes: self.shards.socket_receive_buffer_bytes, ..new.shards.clone() };
        let changed = [
            ("shards", self.shards != shards_live),
            ("listeners", self.listeners != new.listeners),
            ("balancer", self.balancer != new.balancer),
            ("decoder", self.decoder != new.decoder),
            ("sink", self.sink != new.sink),
            ("store", self.store != new.store),
            ("http", self.http != new.http),
            ("run", self.run != new.run),
            ("log", self.log != new.log),
            ("haproxy", self.haproxy != new.haproxy),
            ("console", self.console != new.console),
            ("metadata", self.metadata != new.metadata),
            ("networks", self.networks != new.networks),
            ("enrichment", self.enrichment != new.enrichment),
        ];
        changed.into_iter().filter(|(_, differs)| *differs).map(|(key, _)| key).collect()
    }
}

impl StoreConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let db_ok = !self.database.is_empty()
            && self.database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !self.database.starts_with(|c: char| c.is_ascii_digit());
        if !db_ok {
            return Err(ConfigError::new("store.database", "letters, digits and `_`, not starting with a digit"));
        }
        if let Some((i, message)) = crate::schema::unknown_optional_columns(&self.optional_columns) {
            return Err(ConfigError::new(format!("store.optional_columns[{i}]"), message));
        }
        positive("store.batch_rows_max", self.batch_rows_max as u64, 1 << 24)?;
        positive("store.flush_interval_ms", self.flush_interval_ms, 600_000)?;
        if self.insert_interval_ms > 600_000 {
            return Err(ConfigError::new("store.insert_interval_ms", "at most 600000 (10 minutes)"));
        }
        positive("store.insert_rows_max", self.insert_rows_max, 1_000_000)?;
        positive("store.insert_bytes_max", self.insert_bytes_max, 256 << 20)?;
        if self.batches_max > 1 << 16 {
            return Err(ConfigError::new("store.batches_max", "at most 65536 (0: 16 per shard)"));
        }
        positive("store.consolidation_keys_max", self.consolidation_keys_max as u64, 1 << 24)?;
        if let Some(ms) = self.consolidation_interval_ms {
            positive("store.consolidation_interval_ms", ms, 600_000)?;
        }
        positive("store.memory_bytes_max", self.memory_bytes_max, 1 << 40)?;
        positive("store.spool_bytes_max", self.spool_bytes_max, 1 << 50)?;
        positive("store.retry_backoff_min_ms", self.retry_backoff_min_ms, 600_000)?;
        positive("store.retry_backoff_max_ms", self.retry_backoff_max_ms, 3_600_000)?;
        if self.retry_backoff_max_ms < self.retry_backoff_min_ms {
            return Err(ConfigError::new("store.retry_backoff_max_ms", "smaller than store.retry_backoff_min_ms"));
        }
        for (key, hours) in [
            ("store.ttl_raw_hours", self.ttl_raw_hours),
            ("store.ttl_1m_hours", self.ttl_1m_hours),
            ("store.ttl_5m_hours", self.ttl_5m_hours),
            ("store.ttl_1h_hours", self.ttl_1h_hours),
        ] {
            positive(key, hours as u64, 24 * 365 * 100)?;
        }
        if self.spool_dir.as_os_str().is_empty() {
            return Err(ConfigError::new("store.spool_dir", "empty"));
        }
        if self.raw == RawStore::Segments {
            if self.kind != StoreKind::Embedded {
                let why = "\"segments\" needs store.kind = \"embedded\" (the engine reads the files in place)";
                return Err(ConfigError::new("store.raw", why));
            }
            if self.segments_dir.as_os_str().is_empty() {
                return Err(ConfigError::new("store.segments_dir", "empty"));
            }
            positive("store.segments_hours", self.segments_hours as u64, 24 * 365)?;
        }
        for name in self.embedded.server_settings.keys() {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                let key = format!("store.embedded.server_settings.{name}");
                return Err(ConfigError::new(key, "a setting name is lower-case letters, digits and `_`"));
            }
        }
        if self.kind == StoreKind::Remote
            && !self.remote.url.starts_with("http://")
            && !self.remote.url.starts_with("https://")
        {
            return Err(ConfigError::new("store.remote.url", "must start with http:// or https://"));
        }
        for (i, url) in self.remote.failover.iter().enumerate() {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(ConfigError::new(
                    format!("store.remote.failover[{i}]"),
                    "must start with http:// or https://",
                ));
            }
        }
        let cluster = &self.remote.cluster;
        if !cluster.is_empty() {
            if cluster.starts_with(|c: char| c.is_ascii_digit())
                || !cluster.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(ConfigError::new(
                    "store.remote.cluster",
                    "letters, digits and `_`, not starting with a digit",
                ));
            }
            if self.kind != StoreKind::Remote {
                return Err(ConfigError::new("store.remote.cluster", "needs store.kind = \"remote\""));
            }
        }
        positive("store.remote.timeout_ms", self.remote.timeout_ms, 3_600_000)
    }
}

/// The attributes a network gives the addresses it holds (`[networks]`):
/// a subnet in `networks.subnets`, an entry of a network source, or what
/// a GeoIP/ASN database says of a prefix. Empty strings and ASN 0 are
/// unset: a network inherits them from the closest network holding it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkInfo {
    pub name: String,
    pub role: String,
    pub site: String,
    pub region: String,
    pub tenant: String,
    /// Two letters (ISO 3166-1 alpha-2, as GeoIP databases give them).
    pub country: String,
    /// The first subdivision's code (ISO 3166-2 without the country).
    pub state: String,
    pub city: String,
    pub asn: u32,
}

/// The fields of a network (what a network source's `rename` may name,
/// besides `prefix`).
pub const NETWORK_FIELDS: [&str; 10] =
    ["prefix", "name", "role", "site", "region", "tenant", "country", "state", "city", "asn"];

impl NetworkInfo {
    pub fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let two_letters = self.country.len() == 2 && self.country.bytes().all(|b| b.is_ascii_alphabetic());
        if !self.country.is_empty() && !two_letters {
            return Err(ConfigError::new(key("country"), format!("{:?}: two letters (ISO 3166-1)", self.country)));
        }
        for (name, value) in [
            ("name", &self.name),
            ("role", &self.role),
            ("site", &self.site),
            ("region", &self.region),
            ("tenant", &self.tenant),
            ("state", &self.state),
            ("city", &self.city),
        ] {
            if value.len() > 256 {
                return Err(ConfigError::new(key(name), "at most 256 bytes"));
            }
        }
        Ok(())
    }
}

/// A network in `networks.subnets`: its attributes, or only its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NetworkEntry {
    Name(String),
    Attributes(NetworkInfo),
}

impl NetworkEntry {
    pub fn info(&self) -> NetworkInfo {
        match self {
            NetworkEntry::Name(name) => NetworkInfo { name: name.clone(), ..NetworkInfo::default() },
            NetworkEntry::Attributes(info) => info.clone(),
        }
    }
}

/// Network attributes by prefix (enrichment, part 2): subnets from the
/// config, remote sources and GeoIP/ASN databases, merged into one
/// longest-prefix table (`weir_core::enrich::networks`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworksConfig {
    /// Subnet → attributes (`"192.0.2.0/24" = { name = "paris", site =
    /// "par1" }`, or `"10.0.0.0/8" = "internal"` for a name). They win
    /// over sources and databases for the same prefix.
    pub subnets: std::collections::BTreeMap<String, NetworkEntry>,
    /// Remote documents of networks (JSON or CSV over HTTP, as
    /// `[[metadata.sources]]`; each entry a `prefix` and attributes). They
    /// win over the databases for the same prefix.
    pub sources: Vec<MetadataSource>,
    /// MaxMind-format location databases (GeoLite2/GeoIP2 City or
    /// Country, IPinfo): country, state and city per prefix.
    pub geo_databases: Vec<PathBuf>,
    /// MaxMind-format ASN databases (GeoLite2/GeoIP2 ASN, IPinfo): the
    /// prefix's AS number.
    pub asn_databases: Vec<PathBuf>,
    /// A database missing or unreadable at start is skipped (logged,
    /// counted) instead of stopping the start; it is read once it appears.
    pub databases_optional: bool,
    /// How often the database files are checked for a change (size or
    /// modification time); a changed file is read again.
    pub check_interval_s: u64,
    /// Prefixes the merged table may hold, at most: a rebuild with more
    /// is refused (counted, logged) and the table in use stays.
    pub prefixes_max: usize,
}

impl Default for NetworksConfig {
    fn default() -> Self {
        NetworksConfig {
            subnets: Default::default(),
            sources: Vec::new(),
            geo_databases: Vec::new(),
            asn_databases: Vec::new(),
            databases_optional: false,
            check_interval_s: 30,
            prefixes_max: 8_000_000,
        }
    }
}

impl NetworksConfig {
    /// Whether any network can be known (otherwise the shards skip the lookups).
    pub fn enabled(&self) -> bool {
        !self.subnets.is_empty()
            || !self.sources.is_empty()
            || !self.geo_databases.is_empty()
            || !self.asn_databases.is_empty()
    }

    fn check(&self) -> Result<(), ConfigError> {
        for (subnet, entry) in &self.subnets {
            let key = |k: &str| format!("networks.subnets.{subnet:?}.{k}");
            if parse_cidr(subnet).is_none() {
                return Err(ConfigError::new(
                    format!("networks.subnets.{subnet:?}"),
                    "not a subnet (192.0.2.0/24, 2001:db8::/32)",
                ));
            }
            entry.info().check(&key)?;
        }
        for (i, source) in self.sources.iter().enumerate() {
            source.check(&|k: &str| format!("networks.sources[{i}].{k}"), &NETWORK_FIELDS)?;
            if self.sources[..i].iter().any(|s| s.name == source.name) {
                return Err(ConfigError::new(format!("networks.sources[{i}].name"), "named twice"));
            }
        }
        positive("networks.check_interval_s", self.check_interval_s, 86_400)?;
        positive("networks.prefixes_max", self.prefixes_max as u64, 1 << 28)
    }
}

/// How `weir inlet` spreads datagrams over the topic's partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    /// Partition = the inlet shard's index (modulo the partitions): each
    /// shard appends to its own partition, no key.
    Shard,
    /// Keyed by exporter address (librdkafka's partitioner): an exporter's
    /// datagrams all go to one partition, so one outlet shard sees all of
    /// its templates.
    Exporter,
}

/// The flow pipeline's Kafka side: `weir inlet` produces one record per
/// datagram (`weir_core::rawflow`) to `<topic>-v1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowsKafkaConfig {
    /// `host:port,host:port` (bootstrap.servers).
    pub brokers: String,
    /// The topic's base name; records go to `<topic>-v1` (the record
    /// schema's version).
    pub topic: String,
    pub partitioning: Partitioning,
    pub compression: Compression,
    /// Messages each shard's producer queue holds before the shard waits.
    pub queue_messages_max: usize,
    /// Bytes each shard's producer queue holds before the shard waits.
    pub queue_bytes_max: usize,
    pub linger_ms: u64,
    /// With the producer queue full, the shard waits up to this long (its
    /// socket buffers fill meanwhile) before records go to the spill.
    pub backpressure_wait_ms: u64,
    /// Where a shard's records go, in order, while the brokers do not take
    /// them (one directory per shard); they are replayed, in order, before
    /// newer ones. Empty: no spill (records past the wait are dropped,
    /// counted).
    pub spill_dir: PathBuf,
    /// Bytes each shard's spill holds at most; past that, records are
    /// dropped, counted.
    pub spill_bytes_max: u64,
    /// More librdkafka properties (security.protocol, sasl.*, ssl.*, ...).
    pub options: std::collections::BTreeMap<String, String>,
    /// `weir outlet`'s consumers.
    pub outlet: OutletConfig,
    /// Enriched flows as protobuf for other consumers (`weir outlet`, and
    /// `weir run` with the store).
    pub enriched: EnrichedConfig,
}

/// The enriched output: every stored flow, enriched, produced as
/// protobuf to `<topic>-<schema hash>` (`weir_core::flowproto`), at most
/// once: a full producer queue drops records, counted; the store is never
/// held up for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichedConfig {
    /// The topic's base name; empty: no enriched output.
    pub topic: String,
    /// Created at start with this many partitions when the brokers do not
    /// have it; 0: never created (the brokers' own auto-creation, or an
    /// operator, makes it).
    pub create_partitions: u32,
    /// The replication factor of a topic created at start.
    pub create_replication: u16,
    pub compression: Compression,
    /// A Kafka record holds length-delimited messages up to about this
    /// many bytes (the last message may pass it).
    pub record_bytes_max: usize,
    /// Bytes each shard's producer queue holds; past that, records are
    /// dropped, counted.
    pub queue_bytes_max: usize,
    pub linger_ms: u64,
    /// More librdkafka producer properties.
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for EnrichedConfig {
    fn default() -> Self {
        EnrichedConfig {
            topic: String::new(),
            create_partitions: 0,
            create_replication: 1,
            compression: Compression::Lz4,
            record_bytes_max: 256 << 10,
            queue_bytes_max: 64 << 20,
            linger_ms: 50,
            options: Default::default(),
        }
    }
}

impl EnrichedConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let legal = |c: char| c.is_ascii_alphanumeric() || ".-_".contains(c);
        if self.topic.len() > 230 || !self.topic.chars().all(legal) {
            return Err(ConfigError::new("kafka.enriched.topic", "at most 230 of a-z, A-Z, 0-9, '.', '_', '-'"));
        }
        if self.create_partitions > 10_000 {
            return Err(ConfigError::new("kafka.enriched.create_partitions", "at most 10000"));
        }
        positive("kafka.enriched.create_replication", u64::from(self.create_replication), 100)?;
        positive("kafka.enriched.record_bytes_max", self.record_bytes_max as u64, 64 << 20)?;
        positive("kafka.enriched.queue_bytes_max", self.queue_bytes_max as u64, 1 << 31)?;
        if self.linger_ms > 60_000 {
            return Err(ConfigError::new("kafka.enriched.linger_ms", "at most 60000"));
        }
        if self.options.contains_key("bootstrap.servers") {
            return Err(ConfigError::new("kafka.enriched.options.bootstrap.servers", "set from kafka.brokers"));
        }
        Ok(())
    }
}

/// `weir outlet`: each shard is one consumer in `group`, reading
/// `<kafka.topic>-v1` and storing offsets only once the store took the rows
/// and the sums that cover them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutletConfig {
    /// The consumer group (group.id); outlets of one pipeline share it.
    pub group: String,
    /// A member that stops heartbeating for this long loses its partitions.
    pub session_timeout_ms: u64,
    /// Where a partition without a committed offset starts: `earliest`
    /// (everything the topic still holds) or `latest`.
    pub offset_reset: OffsetReset,
    /// Batches a shard hands to the store before the store acknowledges
    /// them; past that the shard pauses its partitions (keeps polling, so
    /// it stays in the group) until acknowledgements come.
    pub batches_in_flight_max: usize,
    /// How long a revocation waits for the store to take what the shard
    /// holds, at most, before the partitions go anyway (their offsets are
    /// then not stored: the next owner reads those records again).
    pub revoke_wait_ms: u64,
    /// Share templates and sampling rates with the other outlets through
    /// the compacted topic `<kafka.topic>-state-v1`.
    pub share_state: bool,
    /// The replication factor of the state topic, when an outlet creates it.
    pub state_replication: u16,
    /// More librdkafka consumer properties.
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for OutletConfig {
    fn default() -> Self {
        OutletConfig {
            group: "weir-outlet".into(),
            session_timeout_ms: 45_000,
            offset_reset: OffsetReset::Earliest,
            batches_in_flight_max: 16,
            revoke_wait_ms: 60_000,
            share_state: true,
            state_replication: 1,
            options: Default::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    Earliest,
    Latest,
}

impl OffsetReset {
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

impl OutletConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.group.trim().is_empty() || self.group.len() > 255 {
            return Err(ConfigError::new("kafka.outlet.group", "1 to 255 characters"));
        }
        if !(1_000..=3_600_000).contains(&self.session_timeout_ms) {
            return Err(ConfigError::new("kafka.outlet.session_timeout_ms", "1000 to 3600000"));
        }
        positive("kafka.outlet.batches_in_flight_max", self.batches_in_flight_max as u64, 1024)?;
        if self.revoke_wait_ms > 3_600_000 {
            return Err(ConfigError::new("kafka.outlet.revoke_wait_ms", "at most 3600000"));
        }
        positive("kafka.outlet.state_replication", u64::from(self.state_replication), 100)?;
        let weirs = [
            "bootstrap.servers",
            "group.id",
            "enable.auto.commit",
            "enable.auto.offset.store",
            "partition.assignment.strategy",
            "session.timeout.ms",
            "auto.offset.reset",
        ];
        for key in weirs {
            if self.options.contains_key(key) {
                return Err(ConfigError::new(
                    format!("kafka.outlet.options.{key}"),
                    "set by Weir (offsets stored after the store's acknowledgement)",
                ));
            }
        }
        Ok(())
    }
}

impl Default for FlowsKafkaConfig {
    fn default() -> Self {
        FlowsKafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "flows".into(),
            partitioning: Partitioning::Shard,
            compression: Compression::Lz4,
            queue_messages_max: 100_000,
            queue_bytes_max: 256 << 20,
            linger_ms: 5,
            backpressure_wait_ms: 100,
            spill_dir: PathBuf::from("/var/lib/weir/spill"),
            spill_bytes_max: 1 << 30,
            options: Default::default(),
            outlet: OutletConfig::default(),
            enriched: EnrichedConfig::default(),
        }
    }
}

impl FlowsKafkaConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(ConfigError::new("kafka.brokers", "empty"));
        }
        let legal = |c: char| c.is_ascii_alphanumeric() || ".-_".contains(c);
        if self.topic.is_empty() || self.topic.len() > 240 || !self.topic.chars().all(legal) {
            return Err(ConfigError::new("kafka.topic", "1 to 240 of a-z, A-Z, 0-9, '.', '_', '-'"));
        }
        positive("kafka.queue_messages_max", self.queue_messages_max as u64, 10_000_000)?;
        positive("kafka.queue_bytes_max", self.queue_bytes_max as u64, 1 << 31)?;
        if self.linger_ms > 60_000 {
            return Err(ConfigError::new("kafka.linger_ms", "at most 60000"));
        }
        positive("kafka.backpressure_wait_ms", self.backpressure_wait_ms, 60_000)?;
        positive("kafka.spill_bytes_max", self.spill_bytes_max, 1 << 40)?;
        for key in ["bootstrap.servers", "enable.idempotence", "acks", "message.timeout.ms"] {
            if self.options.contains_key(key) {
                return Err(ConfigError::new(format!("kafka.options.{key}"), "set by Weir (at least once, in order)"));
            }
        }
        self.outlet.check()?;
        self.enriched.check()
    }
}

/// BGP routes over BMP (enrichment, part 3): routers connect to `listen`
/// and stream their routes; the shards look each flow's addresses up in
/// them (`weir_core::enrich::rib`) for the `routing` providers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BmpConfig {
    /// TCP address to listen on ("[::]:10179"); none: no BMP.
    pub listen: Option<String>,
    /// Subnets routers may connect from; others are closed at once (counted).
    pub allowed: Vec<String>,
    /// How long the routes of a peer that went down (Peer Down, or its
    /// session closed) are kept before they are removed.
    pub keep_s: u64,
    /// Sessions at once; more are closed at once (counted).
    pub connections_max: usize,
    /// Parsed messages waiting for the routing table, at most; past that
    /// the sessions' reads wait (TCP pushes back on the routers).
    pub queue: usize,
    /// How often, at most, a changed routing table is published to the
    /// shards (a full table takes a moment to flatten).
    pub publish_interval_ms: u64,
    /// Route distinguishers whose routes are kept (`65000:100`,
    /// `192.0.2.1:7`, `2:4200000000:1`, or the 8 bytes as a number; `0`:
    /// routes without RD); empty: all.
    pub rds: Vec<String>,
    /// Route targets an UPDATE must carry one of for its routes to be
    /// kept (written as RDs are; `0`: UPDATEs without RT); empty: all.
    pub rts: Vec<String>,
}

impl Default for BmpConfig {
    fn default() -> Self {
        BmpConfig {
            listen: None,
            allowed: vec!["0.0.0.0/0".into(), "::/0".into()],
            keep_s: 300,
            connections_max: 64,
            queue: 10_000,
            publish_interval_ms: 1000,
            rds: Vec::new(),
            rts: Vec::new(),
        }
    }
}

impl BmpConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if let Some(listen) = &self.listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError::new("bmp.listen", "not an address and port (\"[::]:10179\")"));
            }
        }
        for (i, subnet) in self.allowed.iter().enumerate() {
            if parse_cidr(subnet).is_none() {
                return Err(ConfigError::new(format!("bmp.allowed[{i}]"), "not a subnet (192.0.2.0/24, ::/0)"));
            }
        }
        for (name, list) in [("rds", &self.rds), ("rts", &self.rts)] {
            for (i, v) in list.iter().enumerate() {
                if crate::enrich::bmp::parse_rd(v).is_none() {
                    let why = "not a route distinguisher (65000:100, 192.0.2.1:7, 2:4200000000:1, 0)";
                    return Err(ConfigError::new(format!("bmp.{name}[{i}]"), why));
                }
            }
        }
        positive("bmp.keep_s", self.keep_s.max(1), 7 * 86_400)?;
        positive("bmp.connections_max", self.connections_max as u64, 4096)?;
        positive("bmp.queue", self.queue as u64, 1 << 20)?;
        positive("bmp.publish_interval_ms", self.publish_interval_ms, 3_600_000)
    }

    /// The RD and RT filters (checked: unreadable entries are left out).
    pub fn filters(&self) -> crate::enrich::bmp::Filters {
        let parse = |list: &[String]| list.iter().filter_map(|v| crate::enrich::bmp::parse_rd(v)).collect();
        crate::enrich::bmp::Filters { rds: parse(&self.rds), rts: parse(&self.rts) }
    }
}

/// Where a flow's AS numbers come from: the first provider with a
/// non-zero answer wins (Akvorado's `asn-providers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AsnProvider {
    /// The AS number the exporter put in the flow.
    Flow,
    /// The flow's, unless private (0, 23456, 64496-65551, 4200000000 and up).
    FlowExceptPrivate,
    /// The flow's, unless the flow's mask is 0 (a default route's AS).
    FlowExceptDefaultRoute,
    /// The BGP route's origin AS (BMP; none until routing is configured).
    Routing,
    RoutingExceptPrivate,
    /// The network's `asn` (config, sources, ASN database).
    Networks,
}

/// Where a flow's masks (and next hop) come from: the first non-zero wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetProvider {
    Flow,
    /// The BGP route (BMP; none until routing is configured).
    Routing,
}

/// A sampling rate for every exporter, or one per exporter subnet (the
/// most specific wins).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SamplingRates {
    All(u32),
    BySubnet(std::collections::BTreeMap<String, u32>),
}

impl SamplingRates {
    /// (subnet, rate) pairs: `::/0` for a single rate.
    pub fn entries(&self) -> Vec<(String, u32)> {
        match self {
            SamplingRates::All(rate) => vec![("::/0".into(), *rate)],
            SamplingRates::BySubnet(map) => map.iter().map(|(s, r)| (s.clone(), *r)).collect(),
        }
    }

    fn check(&self, key: &str) -> Result<(), ConfigError> {
        for (subnet, rate) in self.entries() {
            if parse_cidr(&subnet).is_none() {
                return Err(ConfigError::new(format!("{key}.{subnet:?}"), "not a subnet"));
            }
            if rate == 0 {
                return Err(ConfigError::new(format!("{key}.{subnet:?}"), "a rate is at least 1"));
            }
        }
        Ok(())
    }
}

/// How each flow is completed before it is stored: AS numbers and masks
/// from providers, sampling rates from defaults and overrides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichmentConfig {
    pub asn_providers: Vec<AsnProvider>,
    pub net_providers: Vec<NetProvider>,
    /// The rate of a flow that carries none (nor its exporter's options
    /// templates), by exporter subnet. A flow with no rate and no default
    /// is stored with rate 1 and counted
    /// (`weir_enrichment_sampling_rate_missing_total{exporter}`).
    pub default_sampling_rate: Option<SamplingRates>,
    /// The rate of every flow of the exporters in these subnets, whatever
    /// the flow says.
    pub override_sampling_rate: Option<SamplingRates>,
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        EnrichmentConfig {
            asn_providers: vec![AsnProvider::Flow, AsnProvider::Routing, AsnProvider::Networks],
            net_providers: vec![NetProvider::Flow, NetProvider::Routing],
            default_sampling_rate: None,
            override_sampling_rate: None,
        }
    }
}

impl EnrichmentConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if let Some(r) = &self.default_sampling_rate {
            r.check("enrichment.default_sampling_rate")?;
        }
        if let Some(r) = &self.override_sampling_rate {
            r.check("enrichment.override_sampling_rate")?;
        }
        for (i, p) in self.asn_providers.iter().enumerate() {
            if self.asn_providers[..i].contains(p) {
                return Err(ConfigError::new(format!("enrichment.asn_providers[{i}]"), "listed twice"));
            }
        }
        for (i, p) in self.net_providers.iter().enumerate() {
            if self.net_providers[..i].contains(p) {
                return Err(ConfigError::new(format!("enrichment.net_providers[{i}]"), "listed twice"));
            }
        }
        Ok(())
    }
}

fn positive(key: &str, value: u64, max: u64) -> Result<(), ConfigError> {
    if value == 0 || value > max {
        return Err(ConfigError::new(key, format!("{value} is out of range 1..={max}")));
    }
    Ok(())
}

/// A key that moved: files naming `old` keep working, with a warning.
#[derive(Clone, Copy, Debug)]
pub struct Renamed {
    /// Dotted paths, e.g. `shards.batch` and `shards.receive_batch_datagrams`.
    pub old: &'static str,
    pub new: &'static str,
    /// The release that renamed it.
    pub since: &'static str,
}

/// Every key renamed so far, oldest first (none yet: 0.1 is the first
/// release). A rename adds a line here; `config_tests.rs` checks the
/// mechanism on the fixture pair `config/tests/renamed-{before,after}.toml`.
pub const RENAMED: &[Renamed] = &[];

/// The dotted key an environment variable overrides, if it is one.
fn override_path(name: &str) -> Option<String> {
    let rest = name.strip_prefix("WEIR_")?;
    rest.contains("__").then(|| rest.split("__").map(|p| p.to_ascii_lowercase()).collect::<Vec<_>>().join("."))
}

fn get_path<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let (parents, key) = path.rsplit_once('.').map_or(("", path), |(p, k)| (p, k));
    let mut t = table;
    for part in parents.split('.').filter(|p| !p.is_empty()) {
        t = t.get(part)?.as_table()?;
    }
    t.get(key)
}

fn take_path(table: &mut toml::Table, path: &str) -> Option<toml::Value> {
    let (parents, key) = path.rsplit_once('.').map_or(("", path), |(p, k)| (p, k));
    let mut t = table;
    for part in parents.split('.').filter(|p| !p.is_empty()) {
        t = t.get_mut(part)?.as_table_mut()?;
    }
    t.remove(key)
}

fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) -> Result<(), String> {
    let (parents, key) = path.rsplit_once('.').map_or(("", path), |(p, k)| (p, k));
    let mut t = table;
    for part in parents.split('.').filter(|p| !p.is_empty()) {
        t = t
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("{part} is not a section"))?;
    }
    t.insert(key.to_string(), value);
    Ok(())
}

/// Turns a TOML error into one naming the key: the span points into the
/// text, and the key is read from the line it points at.
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let Some(span) = e.span() else { return ConfigError::new("", message) };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let section = text[..line_start]
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[').map(|s| s.trim_matches(|c| c == '[' || c == ']').trim().to_string()));
    let key = match line.split_once('=') {
        Some((k, _)) => k.trim().to_string(),
        None => line.trim().trim_matches(|c| c == '[' || c == ']').to_string(),
    };
    let key = match section {
        Some(s) if line.contains('=') && !s.is_empty() => format!("{s}.{key}"),
        _ => key,
    };
    ConfigError::new(key, format!("{message} (line {line_no})"))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
