//! What one `odin-load run` will do, decided before anything starts: the
//! scenarios it goes through ([`Series`]: one scenario, `progressive`, or a
//! stepped run), the command line's overrides applied to each
//! ([`Overrides`]), and what it points the load at ([`TargetArgs`]).
//!
//! Pure: it reads the scenario file and the flags, and starts nothing.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::options::RemoteWorkers;
use crate::scenario::{Scenario, ScenarioFile};
use crate::stack::{ServerKind, Target};
use crate::thresholds::Rule;

/// The flags that change a scenario of the file for this run.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Override: WebSocket users.
    #[arg(long)]
    pub users: Option<usize>,
    /// Override: users started per second.
    #[arg(long)]
    pub ramp_rate: Option<f64>,
    /// Override: how long the publisher runs (e.g. `30s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub hold: Option<Duration>,
    /// Override: how long deliveries may trail the last publish.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub drain: Option<Duration>,
    /// Override: start of publishing whose latencies are not measured.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,
    /// Override: simulated tokens.
    #[arg(long)]
    pub tokens: Option<usize>,
    /// Override: token channels per user.
    #[arg(long)]
    pub subscriptions: Option<usize>,
    /// Override: price events per second across all tokens.
    #[arg(long)]
    pub publish_rate: Option<f64>,
    /// Override: the publisher's scheduler interval (e.g. `5s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub tick: Option<Duration>,
    /// Override: load processes the users are split over.
    #[arg(long)]
    pub processes: Option<usize>,
    /// Override: gateways sharing one port (embedded runs).
    #[arg(long)]
    pub gateways: Option<usize>,
    /// Override: NATS nodes of the embedded cluster (1 is a single server).
    #[arg(long)]
    pub nats_nodes: Option<usize>,
    /// Override: stop a NATS node (the first that does not lead the
    /// last-prices stream, or the leader with `--stop-nats-leader`) this
    /// far into publishing (e.g. `8s`; needs at least 3 nodes).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub stop_nats_node_after: Option<Duration>,
    /// Override: give every gateway a second NATS connection, to the node
    /// after its first one's (needs at least 2 nodes).
    #[arg(long)]
    pub nats_second_connection: bool,
    /// Override: the users offer permessage-deflate, and the gateways the
    /// run starts have `--compression`.
    #[arg(long)]
    pub compression: bool,
    /// Override: the node stopped is the one that leads the last-prices
    /// stream (with `--stop-nats-node-after`).
    #[arg(long)]
    pub stop_nats_leader: bool,
    /// Override, for a stepped run: its rates (e.g. `100,200,400`).
    #[arg(long, value_delimiter = ',')]
    pub rates: Option<Vec<f64>>,
    /// Add a threshold rule (e.g. `latency-p99<5ms`); repeatable. A rule on
    /// a metric the scenario already limits replaces the scenario's rules on
    /// that metric (`--threshold latency-p99<50ms` loosens quick's 10 ms).
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    /// Add a Goose threshold rule (e.g. `p95<100ms for WS connect`); repeatable.
    #[arg(long = "goose-threshold")]
    pub goose_thresholds: Vec<String>,
}

impl Overrides {
    /// `s` with every override given applied, validated again.
    pub fn apply(&self, mut s: Scenario) -> anyhow::Result<Scenario> {
        macro_rules! replace {
            ($($field:ident),*) => {
                $(if let Some(v) = &self.$field {
                    s.$field = v.clone();
                })*
            };
        }
        replace!(
            users,
            ramp_rate,
            hold,
            drain,
            warmup,
            tokens,
            subscriptions,
            publish_rate,
            tick,
            processes,
            gateways,
            nats_nodes
        );
        if self.stop_nats_node_after.is_some() {
            s.stop_nats_node_after = self.stop_nats_node_after;
        }
        s.nats_second_connection |= self.nats_second_connection;
        s.compression |= self.compression;
        s.stop_nats_leader |= self.stop_nats_leader;
        s.thresholds = with_overrides(&s.thresholds, &self.thresholds)?;
        s.goose_thresholds
            .extend(self.goose_thresholds.iter().cloned());
        s.validate()?;
        Ok(s)
    }
}

/// The scenario's threshold rules with the flags' rules: a flag's rule
/// replaces the scenario's rules on the same metric, or adds to them.
fn with_overrides(scenario: &[String], flags: &[String]) -> anyhow::Result<Vec<String>> {
    let metric = |text: &String| Rule::parse(text).map(|rule| rule.metric);
    let replaced = flags
        .iter()
        .map(metric)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut rules = Vec::with_capacity(scenario.len() + flags.len());
    for rule in scenario {
        if !replaced.contains(&metric(rule)?) {
            rules.push(rule.clone());
        }
    }
    rules.extend(flags.iter().cloned());
    Ok(rules)
}

/// The scenarios one `run` goes through, in order.
#[derive(Debug, Clone)]
pub struct Series {
    /// Every run of the series.
    pub scenarios: Vec<Scenario>,
    /// Pause between two of them.
    pub cooldown: Duration,
    /// A stepped run: print the step table and judge by its ceiling.
    pub stepped: bool,
    /// Stop after the first step that does not pass.
    pub stop_at_first_miss: bool,
    /// After the first step, run the bare forwarder at its rate and compare.
    pub compare_forwarder: bool,
    /// odin-server/forwarder pairs the comparison alternates.
    pub compare_pairs: usize,
    /// The scenario a stepped run's steps run (empty for other runs).
    pub base: String,
}

impl Series {
    /// Resolves `name`: a stepped run, `progressive`, or one scenario; the
    /// overrides apply to each (a step's own rate wins over
    /// `--publish-rate`).
    pub fn plan(file: &ScenarioFile, name: &str, overrides: &Overrides) -> anyhow::Result<Series> {
        if let Some(step) = file.step(name) {
            let scenarios = step
                .scenarios(name, file, overrides.rates.as_deref())?
                .into_iter()
                .map(|s| {
                    let rate = s.publish_rate;
                    overrides.apply(s).map(|mut s| {
                        s.publish_rate = rate;
                        s
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            return Ok(Series {
                scenarios,
                cooldown: step.cooldown,
                stepped: true,
                stop_at_first_miss: !step.run_every_rate,
                compare_forwarder: step.compare_forwarder,
                compare_pairs: step.compare_pairs.max(1),
                base: step.scenario.clone(),
            });
        }
        if overrides.rates.is_some() {
            bail!("--rates is for stepped runs, and {name:?} is none");
        }
        let (names, cooldown) = if name == "progressive" {
            let p = file
                .progressive
                .as_ref()
                .context("the scenario file has no [progressive]")?;
            (p.scenarios.clone(), p.cooldown)
        } else {
            (vec![name.to_owned()], Duration::ZERO)
        };
        let scenarios = names
            .iter()
            .map(|n| file.resolve(n).and_then(|s| overrides.apply(s)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Series {
            scenarios,
            cooldown,
            stepped: false,
            stop_at_first_miss: false,
            compare_forwarder: false,
            compare_pairs: 1,
            base: String::new(),
        })
    }
}

/// The flags that say what the load is pointed at.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Test a running server at this WebSocket URL instead of an embedded one;
    /// with `--remote-workers`, repeatable: the gateways as the workers
    /// reach them (worker `w` loads the `w % n`-th).
    #[arg(long, requires_all = ["nats_url"])]
    pub url: Vec<String>,
    /// Its HTTP address (host:port) for `/stats`, with `--url`.
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
    /// The NATS the publisher publishes to, with `--url`.
    #[arg(long)]
    pub nats_url: Option<String>,
    /// The running server's JWT secret, with `--url`.
    #[arg(long, env = "ODIN_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// With a `wss://` `--url`: a PEM file of what to trust for its
    /// certificate and its HTTPS `/stats` (a CA, or a self-signed
    /// certificate itself).
    #[arg(long, requires = "url")]
    pub ca_file: Option<std::path::PathBuf>,
    /// What an embedded run starts: `odin` (odin-server) or `forwarder`
    /// (odin-forwarder, the bare forwarder the fan-out benchmark compares
    /// odin-server with: no auth, no de-dup, no /stats).
    #[arg(long, value_enum, default_value_t = ServerKind::Odin)]
    pub server: ServerKind,
    /// Extra flag for the embedded server (odin-server, or odin-forwarder
    /// with `--server forwarder`); repeatable (`--server-arg=--max-queue-bytes=65536`).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
}

impl TargetArgs {
    /// The target these flags describe.
    pub fn target(&self) -> anyhow::Result<Target> {
        match self.url.first() {
            None => Ok(Target::Embedded {
                server: self.server,
                server_args: self.server_args.clone(),
            }),
            Some(_) if self.server == ServerKind::Forwarder => bail!(
                "--server forwarder starts the forwarder itself: it is for embedded runs, not --url"
            ),
            Some(url) => Ok(Target::External {
                ws_url: url.clone(),
                http_addr: self.http_addr,
                nats_url: self.nats_url.clone().context("--url needs --nats-url")?,
                jwt_secret: self.jwt_secret.clone().context(
                    "--url needs --jwt-secret (or ODIN_JWT_SECRET) to sign the users' tokens",
                )?,
                ca_file: self.ca_file.clone(),
            }),
        }
    }
}

/// The flags of a run whose load workers join over NATS.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// Wait for this many load workers joining over NATS (`odin-load worker
    /// --nats URL --run ID`, started on any host) and split the users over
    /// them, instead of starting local worker processes; needs `--url`.
    #[arg(long)]
    pub remote_workers: Option<usize>,
    /// The run's id, the workers' `--run` (default: a random one, printed).
    #[arg(long, requires = "remote_workers")]
    pub run_id: Option<String>,
    /// The NATS the workers join on, as this host reaches it (default:
    /// `--nats-url`).
    #[arg(long, requires = "remote_workers")]
    pub control_nats: Option<String>,
    /// How long to wait for every worker to join.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub join_timeout: Duration,
}

impl RemoteArgs {
    /// The remote workers these flags ask for, checked against the target's
    /// flags and the series.
    pub fn remote(
        &self,
        target: &TargetArgs,
        series: &Series,
    ) -> anyhow::Result<Option<RemoteWorkers>> {
        let Some(count) = self.remote_workers else {
            if target.url.len() > 1 {
                bail!("several --url are for --remote-workers (one gateway each worker)");
            }
            return Ok(None);
        };
        if count == 0 {
            bail!("--remote-workers must be at least 1");
        }
        if target.url.is_empty() {
            bail!(
                "--remote-workers needs --url (and --nats-url): workers on other hosts load \
                 gateways they can reach"
            );
        }
        if series.stepped || series.scenarios.len() != 1 {
            bail!("--remote-workers runs one scenario, not a series or a stepped run");
        }
        let run_id = match &self.run_id {
            Some(id) => id.clone(),
            None => format!("{:08x}", rand::random::<u32>()),
        };
        crate::worker::bus::Subjects::of(&run_id)?;
        Ok(Some(RemoteWorkers {
            count,
            run_id,
            control_nats: self.control_nats.clone(),
            join_timeout: self.join_timeout,
            ws_urls: target.url.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The flags as `odin-load run` parses them.
    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        overrides: Overrides,
        #[command(flatten)]
        target: TargetArgs,
    }

    fn flags(args: &[&str]) -> Flags {
        Flags::try_parse_from(std::iter::once("odin-load").chain(args.iter().copied()))
            .expect("the flags parse")
    }

    fn file() -> ScenarioFile {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios.toml");
        ScenarioFile::load(&path).expect("the scenario file loads")
    }

    #[test]
    fn no_flag_leaves_the_scenario_as_the_file_says() {
        let file = file();
        let series = Series::plan(&file, "quick", &Overrides::default()).unwrap();
        assert_eq!(series.scenarios, [file.resolve("quick").unwrap()]);
        assert!(!series.stepped);
        assert_eq!(series.cooldown, Duration::ZERO);
    }

    #[test]
    fn every_override_given_replaces_its_field_and_rules_are_added() {
        let f = flags(&[
            "--users",
            "7",
            "--ramp-rate",
            "3.5",
            "--hold",
            "4s",
            "--drain",
            "1s",
            "--warmup",
            "500ms",
            "--tokens",
            "9",
            "--subscriptions",
            "2",
            "--publish-rate",
            "123",
            "--tick",
            "2s",
            "--threshold",
            "duplicates<=0",
            "--threshold",
            "rss-growth<1MiB",
            "--goose-threshold",
            "error-rate<=1%",
            "--compression",
        ]);
        let file = file();
        let quick = file.resolve("quick").unwrap();
        let s = &Series::plan(&file, "quick", &f.overrides)
            .unwrap()
            .scenarios[0];
        assert_eq!(
            (s.users, s.ramp_rate, s.tokens, s.subscriptions),
            (7, 3.5, 9, 2)
        );
        assert_eq!(s.publish_rate, 123.0);
        assert_eq!(
            (s.hold, s.drain, s.warmup, s.tick),
            (
                Duration::from_secs(4),
                Duration::from_secs(1),
                Duration::from_millis(500),
                Duration::from_secs(2)
            )
        );
        // duplicates<=0 replaces quick's own rule on duplicates; the
        // rss-growth rule is new.
        assert_eq!(s.thresholds.len(), quick.thresholds.len() + 1);
        assert_eq!(
            s.thresholds[s.thresholds.len() - 2..],
            ["duplicates<=0", "rss-growth<1MiB"]
        );
        assert_eq!(
            s.thresholds
                .iter()
                .filter(|t| t.starts_with("duplicates"))
                .count(),
            1
        );
        assert_eq!(s.goose_thresholds.last().unwrap(), "error-rate<=1%");
        assert!(s.compression && !quick.compression);
        assert_eq!(s.name, "quick");
    }

    #[test]
    fn a_threshold_on_a_metric_the_scenario_limits_replaces_its_rule() {
        let file = file();
        let f = flags(&["--threshold", "latency-p99<50ms"]);
        let s = &Series::plan(&file, "quick", &f.overrides)
            .unwrap()
            .scenarios[0];
        let latency: Vec<_> = s
            .thresholds
            .iter()
            .filter(|t| t.starts_with("latency-p99"))
            .collect();
        assert_eq!(latency, ["latency-p99<50ms"]);
    }

    #[test]
    fn an_override_that_makes_the_scenario_invalid_is_refused() {
        let file = file();
        let f = flags(&["--subscriptions", "1000000"]);
        assert!(Series::plan(&file, "quick", &f.overrides).is_err());
        let f = flags(&["--threshold", "no-such-metric<1"]);
        assert!(Series::plan(&file, "quick", &f.overrides).is_err());
    }

    #[test]
    fn progressive_runs_its_scenarios_in_order_with_its_cooldown() {
        let file = file();
        let progressive = file
            .progressive
            .clone()
            .expect("the file has [progressive]");
        let f = flags(&["--hold", "3s"]);
        let series = Series::plan(&file, "progressive", &f.overrides).unwrap();
        let names: Vec<_> = series.scenarios.iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, progressive.scenarios);
        assert_eq!(series.cooldown, progressive.cooldown);
        assert!(
            series
                .scenarios
                .iter()
                .all(|s| s.hold == Duration::from_secs(3))
        );
    }

    #[test]
    fn a_step_keeps_its_own_rate_over_publish_rate_and_takes_rates_from_the_flag() {
        let file = file();
        let (name, step) = file.step.iter().next().expect("the file has a stepped run");
        let f = flags(&["--publish-rate", "1", "--rates", "10,20,30"]);
        let series = Series::plan(&file, name, &f.overrides).unwrap();
        let rates: Vec<_> = series.scenarios.iter().map(|s| s.publish_rate).collect();
        assert_eq!(rates, [10.0, 20.0, 30.0]);
        assert!(series.stepped);
        assert_eq!(series.stop_at_first_miss, !step.run_every_rate);
        assert_eq!(series.base, step.scenario);
        assert_eq!(series.scenarios[0].name, format!("{name}-10"));
    }

    #[test]
    fn rates_are_only_for_stepped_runs() {
        let f = flags(&["--rates", "10,20"]);
        let e = Series::plan(&file(), "quick", &f.overrides).unwrap_err();
        assert!(e.to_string().contains("--rates is for stepped runs"), "{e}");
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let e = Series::plan(&file(), "nope", &Overrides::default()).unwrap_err();
        assert!(format!("{e:#}").contains("quick"), "{e:#}");
    }

    #[test]
    fn the_target_is_embedded_unless_a_url_is_given() {
        let t = flags(&["--server", "forwarder", "--server-arg=--x"])
            .target
            .target()
            .unwrap();
        assert!(matches!(
            t,
            Target::Embedded { server: ServerKind::Forwarder, ref server_args } if server_args == &["--x"]
        ));
        let t = flags(&[
            "--url",
            "ws://h:1/ws",
            "--nats-url",
            "nats://h:2",
            "--jwt-secret",
            "s",
        ])
        .target
        .target()
        .unwrap();
        assert!(matches!(t, Target::External { ref nats_url, .. } if nats_url == "nats://h:2"));
    }

    /// `run` flags with the remote workers' among them.
    #[derive(Debug, Parser)]
    struct RunFlags {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    }

    fn remote(args: &[&str], scenario: &str) -> anyhow::Result<Option<RemoteWorkers>> {
        let f = RunFlags::try_parse_from(std::iter::once("odin-load").chain(args.iter().copied()))
            .expect("the flags parse");
        let series = Series::plan(&file(), scenario, &Overrides::default()).unwrap();
        f.remote.remote(&f.target, &series)
    }

    #[test]
    fn remote_workers_take_every_url_and_need_one() {
        let urls = [
            "--url",
            "ws://a:1/ws",
            "--url",
            "ws://b:1/ws",
            "--nats-url",
            "nats://h:2",
        ];
        let with = |extra: &[&'static str]| [&urls[..], extra].concat();
        let r = remote(&with(&["--remote-workers", "3", "--run-id", "r1"]), "quick")
            .unwrap()
            .expect("remote workers");
        assert_eq!((r.count, r.run_id.as_str()), (3, "r1"));
        assert_eq!(r.ws_urls, ["ws://a:1/ws", "ws://b:1/ws"]);
        let e = remote(&with(&[]), "quick").unwrap_err();
        assert!(e.to_string().contains("several --url"), "{e}");
        let e = remote(&["--remote-workers", "2"], "quick").unwrap_err();
        assert!(e.to_string().contains("needs --url"), "{e}");
        let e = remote(&with(&["--remote-workers", "2"]), "progressive").unwrap_err();
        assert!(e.to_string().contains("one scenario"), "{e}");
        let e = remote(
            &with(&["--remote-workers", "2", "--run-id", "a.b"]),
            "quick",
        )
        .unwrap_err();
        assert!(e.to_string().contains("run id"), "{e}");
    }

    #[test]
    fn a_url_needs_a_secret_and_is_not_for_the_forwarder() {
        let mut a = flags(&["--url", "ws://h:1/ws", "--nats-url", "nats://h:2"]).target;
        a.jwt_secret = None; // the environment may hold ODIN_JWT_SECRET
        assert!(a.target().unwrap_err().to_string().contains("--jwt-secret"));
        a.jwt_secret = Some("s".into());
        a.server = ServerKind::Forwarder;
        assert!(
            a.target()
                .unwrap_err()
                .to_string()
                .contains("embedded runs")
        );
    }
}
