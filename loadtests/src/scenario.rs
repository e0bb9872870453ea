//! Load scenarios as data: `fixtures/scenarios.toml` names each scenario's
//! users, ramp, hold, tokens, subscriptions, publish rate and thresholds;
//! the command line can override any of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The scenario file shipped with the repository.
pub const DEFAULT_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/scenarios.toml");

/// Values a scenario may set; unset ones come from `[defaults]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFields {
    /// What the scenario is for.
    pub description: Option<String>,
    /// WebSocket users.
    pub users: Option<usize>,
    /// Users started per second.
    pub ramp_rate: Option<f64>,
    /// How long the publisher runs once every user is subscribed.
    #[serde(default, with = "opt_duration")]
    pub hold: Option<Duration>,
    /// How long deliveries may trail the last publish.
    #[serde(default, with = "opt_duration")]
    pub drain: Option<Duration>,
    /// Start of publishing whose latencies are not measured (still counted).
    #[serde(default, with = "opt_duration")]
    pub warmup: Option<Duration>,
    /// Simulated tokens.
    pub tokens: Option<usize>,
    /// Token channels each user subscribes to.
    pub subscriptions: Option<usize>,
    /// Price events per second across all tokens.
    pub publish_rate: Option<f64>,
    /// The publisher's scheduler interval (batch, volume and market events).
    #[serde(default, with = "opt_duration")]
    pub tick: Option<Duration>,
    /// Our rules (latency, loss, …).
    pub thresholds: Option<Vec<String>>,
    /// Goose's rules on the connect and subscribe requests.
    pub goose_thresholds: Option<Vec<String>>,
    /// Load processes (default 1).
    pub processes: Option<usize>,
    /// Gateways (default 1).
    pub gateways: Option<usize>,
    /// NATS servers: 1, or a cluster of this many nodes (default 1).
    pub nats_nodes: Option<usize>,
    /// When, into the publish phase, a NATS node is stopped (a cluster
    /// only).
    #[serde(default, with = "opt_duration")]
    pub stop_nats_node_after: Option<Duration>,
    /// Give every gateway a second NATS connection (a cluster only).
    pub nats_second_connection: Option<bool>,
    /// Users offer permessage-deflate; gateways the run starts compress.
    pub compression: Option<bool>,
    /// Stop the node that leads the last-prices stream rather than one that
    /// does not (default false).
    pub stop_nats_leader: Option<bool>,
}

/// The progressive run: several scenarios in turn.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Progressive {
    /// What it is for.
    pub description: Option<String>,
    /// Scenario names, in order.
    pub scenarios: Vec<String>,
    /// Pause between two scenarios.
    #[serde(with = "humantime_serde_compat")]
    pub cooldown: Duration,
}

/// A stepped run (`[step.<name>]`): one scenario run again and again at
/// rising publish rates, each on a fresh stack, to find the highest rate at
/// which its own thresholds still hold (the fan-out ceiling).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What the series measures, for `odin-load list`.
    pub description: Option<String>,
    /// The scenario each step runs, with its `publish_rate` replaced.
    pub scenario: String,
    /// Price events per second of each step, rising.
    pub rates: Vec<f64>,
    /// The rules a step must hold to count as sustained; they replace the
    /// scenario's own thresholds.
    pub thresholds: Vec<String>,
    /// Pause between two steps.
    #[serde(with = "humantime_serde_compat")]
    pub cooldown: Duration,
    /// Whether to stop at the first step that does not pass (a search for
    /// the ceiling) or to run every rate (a table for a benchmark).
    #[serde(default)]
    pub run_every_rate: bool,
    /// Also run the bare forwarder (`odin-forwarder`) at the first rate,
    /// right after odin-server's first step, and compare their CPU per
    /// delivery (issue #8: within 15 %). Embedded runs of odin-server only.
    #[serde(default)]
    pub compare_forwarder: bool,
    /// How many odin-server/forwarder pairs the comparison alternates (the
    /// first odin-server run is the first step); it compares medians.
    #[serde(default = "one")]
    pub compare_pairs: usize,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Values every scenario starts from.
    #[serde(default)]
    pub defaults: ScenarioFields,
    /// Scenarios by name.
    #[serde(default)]
    pub scenario: BTreeMap<String, ScenarioFields>,
    /// The progressive run, if defined.
    pub progressive: Option<Progressive>,
    /// Stepped runs by name.
    #[serde(default)]
    pub step: BTreeMap<String, Step>,
}

/// A fully resolved scenario, ready to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Scenario {
    /// Its name in the file (`quick`, `medium`, …).
    pub name: String,
    /// What it is for.
    pub description: String,
    /// WebSocket users.
    pub users: usize,
    /// Users started per second.
    pub ramp_rate: f64,
    /// How long the publisher runs.
    #[serde(with = "humantime_serde_compat")]
    #[schemars(with = "String")]
    pub hold: Duration,
    /// How long deliveries may trail the last publish.
    #[serde(with = "humantime_serde_compat")]
    #[schemars(with = "String")]
    pub drain: Duration,
    /// Start of publishing whose latencies are not measured (still counted).
    #[serde(with = "humantime_serde_compat")]
    #[schemars(with = "String")]
    pub warmup: Duration,
    /// Simulated tokens.
    pub tokens: usize,
    /// Token channels per user.
    pub subscriptions: usize,
    /// Price events per second across all tokens.
    pub publish_rate: f64,
    /// The publisher's scheduler interval.
    #[serde(with = "humantime_serde_compat")]
    #[schemars(with = "String")]
    pub tick: Duration,
    /// Our rules.
    pub thresholds: Vec<String>,
    /// Goose's rules.
    pub goose_thresholds: Vec<String>,
    /// Load processes the users are split over (each holds at most
    /// [`MAX_USERS_PER_PROCESS`] sockets under the file limit).
    #[serde(default = "one")]
    pub processes: usize,
    /// `odin-server` gateways started for the run, sharing one WebSocket port
    /// (`--reuse-port`); embedded runs only.
    #[serde(default = "one")]
    pub gateways: usize,
    /// NATS servers of an embedded run: one, or a cluster of this many nodes
    /// with the gateways spread over them (gateway `g` prefers node
    /// `g % nats_nodes`) and the publisher on the last node.
    #[serde(default = "one")]
    pub nats_nodes: usize,
    /// Into the publish phase, stop a NATS node (a cluster only; the first
    /// that does not lead the last-prices stream, or the leader with
    /// `stop_nats_leader`; never the publisher's): its gateways reconnect
    /// to another node and no user may lose its connection. What was
    /// published while they were away never reaches their users live and is
    /// reported as loss; the last prices of that gap come back from the
    /// stream, or from the publisher when the store missed them.
    #[serde(default, with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub stop_nats_node_after: Option<Duration>,
    /// Give every gateway a second NATS connection (`--nats-second-url`),
    /// preferring the node after its first connection's: a gateway whose
    /// node is lost then misses nothing (a cluster only).
    #[serde(default)]
    pub nats_second_connection: bool,
    /// Users offer permessage-deflate (RFC 7692), and the gateways the run
    /// starts run with `--compression`.
    #[serde(default)]
    pub compression: bool,
    /// Stop the node that leads the last-prices stream instead of the first
    /// that does not: the hard case, where JetStream stores nothing until
    /// the other nodes have elected a leader (with `stop_nats_node_after`).
    #[serde(default)]
    pub stop_nats_leader: bool,
    /// Index of this process's first user among all users of the run: users
    /// are numbered across processes so that channels spread evenly.
    #[serde(default)]
    pub first_user: usize,
}

/// The most users one load process (or connections one gateway) holds: the
/// 20,000-file limit less room for the process's own files.
pub const MAX_USERS_PER_PROCESS: usize = 18_000;

fn one() -> usize {
    1
}

impl ScenarioFile {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario file {}", path.display()))?;
        let file: ScenarioFile = toml::from_str(&text)
            .with_context(|| format!("scenario file {} is not valid", path.display()))?;
        for name in file.scenario.keys() {
            file.resolve(name)?;
        }
        if let Some(p) = &file.progressive {
            for name in &p.scenarios {
                if !file.scenario.contains_key(name) {
                    bail!("[progressive] names unknown scenario {name:?}");
                }
            }
        }
        for (name, step) in &file.step {
            step.scenarios(name, &file, None)?;
        }
        Ok(file)
    }

    /// The scenario `name` with defaults filled in.
    pub fn resolve(&self, name: &str) -> anyhow::Result<Scenario> {
        let s = self.scenario.get(name).with_context(|| {
            let known: Vec<_> = self.scenario.keys().map(String::as_str).collect();
            format!("no scenario {name:?}; known: {}", known.join(", "))
        })?;
        merge(name, &self.defaults, s)
    }

    /// The stepped run called `name`, if there is one.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.step.get(name)
    }

    /// Scenario names in file order of their keys.
    pub fn names(&self) -> Vec<&str> {
        self.scenario.keys().map(String::as_str).collect()
    }
}

impl Step {
    /// The scenario of every step, named `<step>-<rate>`, with `rates`
    /// replacing the file's own when given.
    pub fn scenarios(
        &self,
        name: &str,
        file: &ScenarioFile,
        rates: Option<&[f64]>,
    ) -> anyhow::Result<Vec<Scenario>> {
        let rates = rates.unwrap_or(&self.rates);
        if rates.is_empty() {
            bail!("step {name:?} has no rates");
        }
        if rates.windows(2).any(|w| w[0] >= w[1]) {
            bail!("step {name:?}: rates must rise strictly, got {rates:?}");
        }
        let base = file
            .resolve(&self.scenario)
            .with_context(|| format!("step {name:?} names scenario {:?}", self.scenario))?;
        rates
            .iter()
            .map(|&rate| {
                let mut s = base.clone();
                s.name = format!("{name}-{rate}");
                s.description = format!(
                    "step of {name}: scenario {} at {rate} price events/s",
                    self.scenario
                );
                s.publish_rate = rate;
                s.thresholds = self.thresholds.clone();
                s.validate()?;
                Ok(s)
            })
            .collect()
    }
}

/// `over` on top of `base`, every field required in the result.
fn merge(name: &str, base: &ScenarioFields, over: &ScenarioFields) -> anyhow::Result<Scenario> {
    macro_rules! pick {
        ($field:ident) => {
            over.$field
                .clone()
                .or_else(|| base.$field.clone())
                .with_context(|| {
                    format!(
                        "scenario {name:?} has no {} (and [defaults] neither)",
                        stringify!($field)
                    )
                })?
        };
    }
    let scenario = Scenario {
        name: name.to_owned(),
        description: over.description.clone().unwrap_or_default(),
        users: pick!(users),
        ramp_rate: pick!(ramp_rate),
        hold: pick!(hold),
        drain: pick!(drain),
        warmup: pick!(warmup),
        tokens: pick!(tokens),
        subscriptions: pick!(subscriptions),
        publish_rate: pick!(publish_rate),
        tick: pick!(tick),
        thresholds: pick!(thresholds),
        goose_thresholds: over
            .goose_thresholds
            .clone()
            .or_else(|| base.goose_thresholds.clone())
            .unwrap_or_default(),
        processes: over.processes.or(base.processes).unwrap_or(1),
        gateways: over.gateways.or(base.gateways).unwrap_or(1),
        nats_nodes: over.nats_nodes.or(base.nats_nodes).unwrap_or(1),
        stop_nats_node_after: over.stop_nats_node_after.or(base.stop_nats_node_after),
        nats_second_connection: over
            .nats_second_connection
            .or(base.nats_second_connection)
            .unwrap_or(false),
        compression: over.compression.or(base.compression).unwrap_or(false),
        stop_nats_leader: over
            .stop_nats_leader
            .or(base.stop_nats_leader)
            .unwrap_or(false),
        first_user: 0,
    };
    scenario.validate()?;
    Ok(scenario)
}

impl Scenario {
    /// Refuses values that cannot make a meaningful run.
    pub fn validate(&self) -> anyhow::Result<()> {
        let n = &self.name;
        if self.users == 0 {
            bail!("scenario {n}: users must be at least 1");
        }
        if !(self.ramp_rate.is_finite() && self.ramp_rate > 0.0) {
            bail!("scenario {n}: ramp_rate must be a positive number");
        }
        if !(self.publish_rate.is_finite() && self.publish_rate > 0.0) {
            bail!("scenario {n}: publish_rate must be a positive number");
        }
        if self.tokens == 0 {
            bail!("scenario {n}: tokens must be at least 1");
        }
        if self.subscriptions == 0 || self.subscriptions > self.tokens {
            bail!(
                "scenario {n}: subscriptions must be between 1 and tokens ({})",
                self.tokens
            );
        }
        if self.hold.is_zero() {
            bail!("scenario {n}: hold must be longer than zero");
        }
        if self.warmup >= self.hold {
            bail!("scenario {n}: warmup must be shorter than hold");
        }
        if self.processes == 0 || self.gateways == 0 {
            bail!("scenario {n}: processes and gateways must be at least 1");
        }
        for (count, what) in [(self.processes, "processes"), (self.gateways, "gateways")] {
            if self.users.div_ceil(count) > MAX_USERS_PER_PROCESS {
                bail!(
                    "scenario {n}: {} users need at least {} {what} ({MAX_USERS_PER_PROCESS} users each at most)",
                    self.users,
                    self.users.div_ceil(MAX_USERS_PER_PROCESS),
                );
            }
        }
        if self.nats_nodes == 0 {
            bail!("scenario {n}: nats_nodes must be at least 1");
        }
        if self.nats_second_connection && self.nats_nodes < 2 {
            bail!("scenario {n}: nats_second_connection needs a cluster of at least 2 nats_nodes");
        }
        if let Some(after) = self.stop_nats_node_after {
            if self.nats_nodes < 3 {
                bail!(
                    "scenario {n}: stop_nats_node_after needs a cluster of at least 3 nats_nodes \
                     (the others keep the last-prices stream's quorum)"
                );
            }
            if after >= self.hold {
                bail!("scenario {n}: stop_nats_node_after must be shorter than hold");
            }
        } else if self.stop_nats_leader {
            bail!("scenario {n}: stop_nats_leader needs stop_nats_node_after");
        }
        for rule in &self.thresholds {
            crate::thresholds::Rule::parse(rule)
                .with_context(|| format!("scenario {n}: threshold {rule:?}"))?;
        }
        Ok(())
    }

    /// How long starting every user takes.
    pub fn ramp_time(&self) -> Duration {
        Duration::from_secs_f64(self.users as f64 / self.ramp_rate)
    }

    /// The token channels user `index` subscribes to: `subscriptions`
    /// consecutive tokens starting at a user-dependent offset, so every
    /// token has about the same number of subscribers.
    pub fn channels_of(&self, index: usize, token_ids: &[String]) -> Vec<String> {
        let start = (index * self.subscriptions) % token_ids.len();
        (0..self.subscriptions)
            .map(|i| format!("token.{}", token_ids[(start + i) % token_ids.len()]))
            .collect()
    }
}

/// Durations as `"15s"`-style strings in TOML and JSON.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Optional durations as strings.
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_resolves_every_scenario() {
        let file = ScenarioFile::load(Path::new(DEFAULT_FILE)).unwrap();
        for name in ["quick", "medium", "stress"] {
            let s = file.resolve(name).unwrap();
            assert!(s.users > 0 && !s.thresholds.is_empty(), "{s:?}");
        }
        assert_eq!(file.resolve("quick").unwrap().users, 100);
        assert_eq!(file.resolve("stress").unwrap().users, 5000);
        assert!(file.resolve("nope").is_err());
    }

    #[test]
    fn steps_replace_the_rate_and_thresholds_of_their_scenario() {
        let file = ScenarioFile::load(Path::new(DEFAULT_FILE)).unwrap();
        let step = file
            .step("ceiling")
            .expect("the shipped file has a ceiling step");
        let steps = step
            .scenarios("ceiling", &file, Some(&[50.0, 75.0]))
            .unwrap();
        let base = file.resolve(&step.scenario).unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[1].name, "ceiling-75");
        assert_eq!(steps[1].publish_rate, 75.0);
        assert_eq!(steps[1].users, base.users);
        assert_eq!(steps[1].thresholds, step.thresholds);
        let falling = step.scenarios("ceiling", &file, Some(&[100.0, 50.0]));
        assert!(falling.unwrap_err().to_string().contains("rise"));
        assert!(step.scenarios("ceiling", &file, Some(&[])).is_err());
    }

    #[test]
    fn a_run_beyond_one_process_needs_enough_processes_and_gateways() {
        let file = ScenarioFile::load(Path::new(DEFAULT_FILE)).unwrap();
        let scale = file.resolve("scale").unwrap();
        assert_eq!(
            (scale.users, scale.processes, scale.gateways),
            (100_000, 6, 6)
        );
        for (processes, gateways, refused) in [(1, 6, "6 processes"), (6, 5, "6 gateways")] {
            let s = Scenario {
                processes,
                gateways,
                ..scale.clone()
            };
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(refused), "{e}");
        }
        assert!(file.resolve("quick").unwrap().processes == 1);
    }

    #[test]
    fn stopping_a_nats_node_needs_a_cluster_and_time_left() {
        let file = ScenarioFile::load(Path::new(DEFAULT_FILE)).unwrap();
        let failover = file.resolve("failover").unwrap();
        assert!(!failover.nats_second_connection);
        let lossless = file.resolve("failover-lossless").unwrap();
        assert!(lossless.nats_second_connection);
        assert!(lossless.thresholds.iter().any(|t| t == "loss<=0"));
        assert_eq!(failover.nats_nodes, 3);
        assert_eq!(failover.stop_nats_node_after, Some(Duration::from_secs(8)));
        for (nodes, after, refused) in [
            (1, 8, "at least 3 nats_nodes"),
            (2, 8, "at least 3 nats_nodes"),
            (3, 20, "shorter than hold"),
        ] {
            let s = Scenario {
                nats_nodes: nodes,
                stop_nats_node_after: Some(Duration::from_secs(after)),
                ..failover.clone()
            };
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(refused), "{e}");
        }
        assert_eq!(file.resolve("fleet").unwrap().nats_nodes, 1);
    }

    #[test]
    fn channels_spread_over_tokens() {
        let file = ScenarioFile::load(Path::new(DEFAULT_FILE)).unwrap();
        let s = file.resolve("quick").unwrap();
        let ids: Vec<String> = (0..s.tokens).map(|i| format!("T{i}")).collect();
        let c = s.channels_of(3, &ids);
        assert_eq!(c.len(), s.subscriptions);
        let mut unique = c.clone();
        unique.dedup();
        assert_eq!(unique.len(), c.len());
    }
}
