//! `odin-load`: run a load scenario (or the progressive series) and exit
//! 0 when every threshold passes, 1 when one fails, 2 when the run could not
//! give a verdict, 3 on a setup error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use odin_loadtests::render::{self, terminal};
use odin_loadtests::report::{Outcome, RunReport};
use odin_loadtests::run::{RunOptions, SetupError};
use odin_loadtests::scenario::{Scenario, ScenarioFile};
use odin_loadtests::stack::{ServerKind, Target};
use odin_loadtests::steps::{ForwarderComparison, StepsReport};
use odin_loadtests::{baseline, merge};

/// Exit code of a setup error (bad flags, a stack that would not start).
const SETUP_ERROR: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "odin-load",
    version,
    about = "Odin's load tests: WebSocket users, end-to-end latency, loss accounting, thresholds and reports.",
    after_help = "Exit codes: 0 every threshold passed; 1 a threshold failed; 2 the run was invalid \
                  (no verdict: the load generator saturated or could not open its connections); 3 setup error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario of the scenario file, or `progressive`.
    Run(Box<RunArgs>),
    /// The release gate: a candidate's binaries against a baseline's, in
    /// alternating pairs of runs of one scenario (see LOAD_TESTING.md,
    /// "Gating a release"). Exit 0 pass, 1 regression, 2 invalid, 3 setup error.
    Gate(GateArgs),
    /// The soak: churn connections, subscriptions and token ids against an
    /// embedded server for `--duration` (10 minutes) and check its memory and
    /// descriptors stay flat (see LOAD_TESTING.md, "Soak"). Exit 0 pass, 1 fail,
    /// 3 setup error.
    Soak(odin_loadtests::soak::SoakArgs),
    /// Merge the report.json files of several load processes into one verdict.
    Merge {
        /// The reports to merge.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Where the merged report goes.
        #[arg(long, default_value = "runs/merged")]
        out: PathBuf,
    },
    /// One load process of a run over several (started by `run`; see
    /// LOAD_TESTING.md, "Beyond one process"): its users, a control line
    /// protocol on stdin/stdout, and a report.json for the coordinator.
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Print the JSON Schema of report.json.
    Schema,
    /// List the scenarios of the scenario file.
    List {
        /// The scenario file.
        #[arg(long, default_value = odin_loadtests::scenario::DEFAULT_FILE)]
        scenario_file: PathBuf,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Scenario name (`quick`, `medium`, `stress`, …), `progressive`, or a
    /// stepped run (`ceiling`, `fanout`).
    #[arg(default_value = "quick")]
    scenario: String,
    /// The scenario file.
    #[arg(long, default_value = odin_loadtests::scenario::DEFAULT_FILE)]
    scenario_file: PathBuf,
    /// Override: WebSocket users.
    #[arg(long)]
    users: Option<usize>,
    /// Override: users started per second.
    #[arg(long)]
    ramp_rate: Option<f64>,
    /// Override: how long the publisher runs (e.g. `30s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    hold: Option<Duration>,
    /// Override: how long deliveries may trail the last publish.
    #[arg(long, value_parser = humantime::parse_duration)]
    drain: Option<Duration>,
    /// Override: start of publishing whose latencies are not measured.
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Override: simulated tokens.
    #[arg(long)]
    tokens: Option<usize>,
    /// Override: token channels per user.
    #[arg(long)]
    subscriptions: Option<usize>,
    /// Override: price events per second across all tokens.
    #[arg(long)]
    publish_rate: Option<f64>,
    /// Override: load processes the users are split over.
    #[arg(long)]
    processes: Option<usize>,
    /// Override: gateways sharing one port (embedded runs).
    #[arg(long)]
    gateways: Option<usize>,
    /// Override: NATS nodes of the embedded cluster (1 is a single server).
    #[arg(long)]
    nats_nodes: Option<usize>,
    /// Override: stop a NATS node (the first that does not lead the
    /// last-prices stream, or the leader with `--stop-nats-leader`) this
    /// far into publishing (e.g. `8s`; needs at least 3 nodes).
    #[arg(long, value_parser = humantime::parse_duration)]
    stop_nats_node_after: Option<Duration>,
    /// Override: give every gateway a second NATS connection, to the node
    /// after its first one's (needs at least 2 nodes).
    #[arg(long)]
    nats_second_connection: bool,
    /// Override: the node stopped is the one that leads the last-prices
    /// stream (with `--stop-nats-node-after`).
    #[arg(long)]
    stop_nats_leader: bool,
    /// Override, for a stepped run: its rates (e.g. `100,200,400`).
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<f64>>,
    /// Override: the publisher's scheduler interval (e.g. `5s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    tick: Option<Duration>,
    /// Add a threshold rule (e.g. `latency-p99<5ms`); repeatable.
    #[arg(long = "threshold")]
    thresholds: Vec<String>,
    /// Add a Goose threshold rule (e.g. `p95<100ms for WS connect`); repeatable.
    #[arg(long = "goose-threshold")]
    goose_thresholds: Vec<String>,
    /// Test a running server at this WebSocket URL instead of an embedded one.
    #[arg(long, requires_all = ["nats_url"])]
    url: Option<String>,
    /// Its HTTP address (host:port) for `/stats`, with `--url`.
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// The NATS the publisher publishes to, with `--url`.
    #[arg(long)]
    nats_url: Option<String>,
    /// The running server's JWT secret, with `--url`.
    #[arg(long, env = "ODIN_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// What an embedded run starts: `odin` (odin-server) or `forwarder`
    /// (odin-forwarder, the bare forwarder the fan-out benchmark compares
    /// odin-server with: no auth, no de-dup, no /stats).
    #[arg(long, value_enum, default_value_t = ServerKind::Odin)]
    server: ServerKind,
    /// Extra flag for the embedded server (odin-server, or odin-forwarder
    /// with `--server forwarder`); repeatable (`--server-arg=--max-queue-bytes=65536`).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Folder for this run's files (default `runs/<time>-<scenario>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compare with an earlier run's report.json.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// How much worse than the baseline p99 and throughput may be, in percent.
    #[arg(long, default_value_t = 10.0)]
    baseline_tolerance: f64,
    /// How long a user may take to connect and subscribe.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Generator scheduling lag (p99) beyond which the run is invalid.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    max_generator_lag: Duration,
    /// No live progress line.
    #[arg(long)]
    no_progress: bool,
    /// Extra Goose flags, after `--`.
    #[arg(last = true)]
    goose_args: Vec<String>,
}

#[derive(Debug, Args)]
struct GateArgs {
    /// The gate of the gate file.
    #[arg(default_value = "release")]
    gate: String,
    /// Folder holding the baseline's odin-server and odin-publisher.
    #[arg(long)]
    baseline_bins: PathBuf,
    /// Folder holding the candidate's.
    #[arg(long)]
    candidate_bins: PathBuf,
    /// The gate file.
    #[arg(long, default_value = odin_loadtests::gate::spec::DEFAULT_FILE)]
    gate_file: PathBuf,
    /// The scenario file its scenario is in.
    #[arg(long, default_value = odin_loadtests::scenario::DEFAULT_FILE)]
    scenario_file: PathBuf,
    /// Override: pairs always run.
    #[arg(long)]
    pairs: Option<usize>,
    /// Override: pairs at most.
    #[arg(long)]
    max_pairs: Option<usize>,
    /// Folder for the gate's files (default `runs/<time>-gate-<name>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Extra flags for every run (scenario overrides such as `--hold 5s`),
    /// after `--`.
    #[arg(last = true)]
    run_args: Vec<String>,
}

#[derive(Debug, Args)]
struct WorkerArgs {
    /// This worker's share of the scenario, as JSON.
    #[arg(long)]
    scenario_json: PathBuf,
    /// Where its report goes.
    #[arg(long)]
    out: PathBuf,
    /// The gateways' WebSocket URL.
    #[arg(long)]
    url: String,
    /// The run's NATS (for the report).
    #[arg(long)]
    nats_url: String,
    /// The gateways' JWT secret.
    #[arg(long, env = "ODIN_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// The local addresses its users connect from, in turn (comma-separated).
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<std::net::IpAddr>,
    /// How long a user may take to connect and subscribe.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Generator scheduling lag (p99) beyond which the run is invalid.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    max_generator_lag: Duration,
}

fn main() -> ExitCode {
    // First: it may replace this process with one whose environment holds
    // the one-certificate store.
    odin_loadtests::trust::reexec_with_minimal_trust_store();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { SETUP_ERROR } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return setup_error(anyhow::Error::from(e)),
    };
    match cli.command {
        Command::Run(args) => runtime.block_on(run(*args)),
        Command::Gate(args) => match gate(args) {
            Ok(code) => code,
            Err(e) => setup_error(e),
        },
        Command::Worker(args) => match runtime.block_on(worker(args)) {
            Ok(code) => code,
            Err(e) => setup_error(e),
        },
        Command::Soak(args) => runtime.block_on(odin_loadtests::soak::run(args)),
        Command::Merge { reports, out } => match merge_reports(&reports, &out) {
            Ok(code) => code,
            Err(e) => setup_error(e),
        },
        Command::Schema => {
            print!("{}", odin_loadtests::report::json_schema());
            ExitCode::SUCCESS
        }
        Command::List { scenario_file } => match ScenarioFile::load(&scenario_file) {
            Ok(file) => {
                for name in file.names() {
                    let s = file.resolve(name).expect("validated on load");
                    println!("{name:<12} {:>6} users  {}", s.users, s.description);
                }
                if let Some(p) = &file.progressive {
                    println!("{:<12} {}", "progressive", p.scenarios.join(" → "));
                }
                for (name, step) in &file.step {
                    let rates: Vec<String> = step.rates.iter().map(f64::to_string).collect();
                    let forwarder = if step.compare_forwarder {
                        " (and the bare forwarder at the first)"
                    } else {
                        ""
                    };
                    println!(
                        "{name:<12} {} at {} price events/s{forwarder}: {}",
                        step.scenario,
                        rates.join(", "),
                        step.description.as_deref().unwrap_or("")
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => setup_error(e),
        },
    }
}

/// Runs a gate and prints its table; the exit code is its verdict's.
fn gate(args: GateArgs) -> anyhow::Result<ExitCode> {
    use odin_loadtests::gate::{self, GateFile, GateOptions};
    let mut spec = GateFile::load(&args.gate_file)?.resolve(&args.gate)?;
    ScenarioFile::load(&args.scenario_file)?.resolve(&spec.scenario)?;
    if let Some(p) = args.pairs {
        spec.pairs = p;
        spec.max_pairs = spec.max_pairs.max(p);
    }
    if let Some(p) = args.max_pairs {
        spec.max_pairs = p;
    }
    if spec.pairs < 3 || spec.max_pairs < spec.pairs {
        anyhow::bail!("--pairs must be at least 3 and --max-pairs at least --pairs");
    }
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let out_dir = args
        .out
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{stamp}-gate-{}", spec.name)));
    let opts = GateOptions {
        scenario_file: args.scenario_file,
        baseline_bins: args.baseline_bins,
        candidate_bins: args.candidate_bins,
        out_dir: out_dir.clone(),
        load_exe: std::env::current_exe().context("cannot find odin-load's own executable")?,
        run_args: args.run_args,
    };
    eprintln!(
        "gate {}: {} against {}, scenario {}, {}-{} pairs, into {}",
        spec.name,
        opts.candidate_bins.display(),
        opts.baseline_bins.display(),
        spec.scenario,
        spec.pairs,
        spec.max_pairs,
        out_dir.display()
    );
    let report = gate::run(&spec, &opts)?;
    gate::render::write_files(&report, &out_dir)?;
    println!("\n{}", gate::render::markdown(&report));
    println!("  files: {}/gate.md, gate.json", out_dir.display());
    Ok(ExitCode::from(report.verdict.exit_code()))
}

/// Runs one worker's share and writes its report for the coordinator.
async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read(&args.scenario_json)
        .with_context(|| format!("cannot read {}", args.scenario_json.display()))?;
    let scenario: Scenario = serde_json::from_slice(&text).context("not a scenario")?;
    let opts = RunOptions {
        target: Target::External {
            ws_url: args.url,
            http_addr: None,
            nats_url: args.nats_url,
            jwt_secret: args.jwt_secret,
        },
        out_dir: args.out.clone(),
        connect_timeout: args.connect_timeout,
        max_generator_lag: args.max_generator_lag,
        goose_args: Vec::new(),
        progress: false,
        source_ips: args.source_ips,
        worker: true,
    };
    let report = odin_loadtests::run::run(&scenario, &opts)
        .await
        .map_err(|SetupError(e)| e)?;
    render::write_run_folder(&report, &args.out)?;
    Ok(ExitCode::from(report.outcome.exit_code() as u8))
}

fn setup_error(e: anyhow::Error) -> ExitCode {
    eprintln!("odin-load: setup error: {e:#}");
    ExitCode::from(SETUP_ERROR)
}

async fn run(args: RunArgs) -> ExitCode {
    let file = match ScenarioFile::load(&args.scenario_file) {
        Ok(f) => f,
        Err(e) => return setup_error(e),
    };
    let series = match series(&file, &args) {
        Ok(s) => s,
        Err(e) => return setup_error(e),
    };
    let cooldown = series.cooldown;
    let scenarios = series.scenarios;
    let target = match target(&args) {
        Ok(t) => t,
        Err(e) => return setup_error(e),
    };
    let baseline = match args.baseline.as_deref().map(baseline::load).transpose() {
        Ok(b) => b,
        Err(e) => return setup_error(e),
    };
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let series_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{stamp}-{}", args.scenario)));

    let mut reports: Vec<RunReport> = Vec::new();
    let mut comparison: Option<ForwarderComparison> = None;
    for (i, scenario) in scenarios.iter().enumerate() {
        if i > 0 {
            eprintln!("cooling down for {}", humantime::format_duration(cooldown));
            tokio::time::sleep(cooldown).await;
        }
        // A stepped run's folder holds its own report.json: every step
        // goes into a sub-folder, even a single one.
        let out_dir = if scenarios.len() > 1 || series.stepped {
            series_dir.join(&scenario.name)
        } else {
            series_dir.clone()
        };
        let report = match run_one(scenario, &target, &out_dir, &args, baseline.as_ref()).await {
            Ok(r) => r,
            Err(code) => return code,
        };
        let passed = report.outcome == Outcome::Pass;
        reports.push(report);
        if i == 0 && series.compare_forwarder {
            let pairs = series.compare_pairs;
            match compare_with_forwarder(&reports[0], pairs, &target, &series_dir, cooldown, &args)
                .await
            {
                Ok(c) => comparison = c,
                Err(code) => return code,
            }
        }
        if series.stop_at_first_miss && !passed && i + 1 < scenarios.len() {
            eprintln!(
                "odin-load: {} did not hold its thresholds; the steps above it are skipped \
                 (run_every_rate = true runs them all)",
                scenarios[i].name
            );
            break;
        }
    }
    if series.stepped {
        let table = render::steps::render(&args.scenario, &reports, comparison.as_ref());
        println!("\n{table}");
        if let Err(e) = std::fs::write(series_dir.join("steps.md"), &table) {
            return setup_error(anyhow::anyhow!("cannot write steps.md: {e}"));
        }
        let steps = StepsReport::new(&args.scenario, &series.base, &reports, comparison);
        let json = serde_json::to_string_pretty(&steps).expect("a steps report serialises");
        if let Err(e) = std::fs::write(series_dir.join("report.json"), json) {
            return setup_error(anyhow::anyhow!("cannot write report.json: {e}"));
        }
        println!(
            "  table: {}/steps.md (and report.json)",
            series_dir.display()
        );
        // A stepped run measures; it fails only when not even its first
        // step held (or could be judged).
        return match render::steps::ceiling(&reports) {
            Some(_) => ExitCode::SUCCESS,
            None => ExitCode::from(reports[0].outcome.exit_code().max(1) as u8),
        };
    }
    if reports.len() > 1 {
        println!("\n{}", render::series::markdown(&reports));
        if let Err(e) = render::series::write_files(&reports, &series_dir) {
            return setup_error(e);
        }
        println!(
            "  series: {}/series.md, index.html, junit.xml",
            series_dir.display()
        );
    }
    // The worst outcome decides: invalid (2) over fail (1) over pass (0).
    let code = reports
        .iter()
        .map(|r| r.outcome.exit_code())
        .max()
        .unwrap_or(0);
    ExitCode::from(code as u8)
}

/// Runs one scenario against `target` into `out_dir`, compares it with the
/// baseline when it is the same scenario, writes its folder and prints its
/// summary; `Err` is the exit code of a setup error.
async fn run_one(
    scenario: &Scenario,
    target: &Target,
    out_dir: &std::path::Path,
    args: &RunArgs,
    baseline: Option<&RunReport>,
) -> Result<RunReport, ExitCode> {
    let opts = RunOptions {
        target: target.clone(),
        out_dir: out_dir.to_path_buf(),
        connect_timeout: args.connect_timeout,
        max_generator_lag: args.max_generator_lag,
        goose_args: args.goose_args.clone(),
        progress: !args.no_progress,
        source_ips: Vec::new(),
        worker: false,
    };
    let against = match target {
        Target::Embedded { server, .. } => server.binary(),
        Target::External { .. } => "a running server",
    };
    eprintln!(
        "odin-load: {} — {} users, {} of {} tokens, {} price events/s, hold {}, against {against}",
        scenario.name,
        scenario.users,
        scenario.subscriptions,
        scenario.tokens,
        scenario.publish_rate,
        humantime::format_duration(scenario.hold)
    );
    let several = scenario.processes > 1 || scenario.gateways > 1 || scenario.nats_nodes > 1;
    let result = if several {
        odin_loadtests::fleet::run(scenario, &opts).await
    } else {
        odin_loadtests::run::run(scenario, &opts).await
    };
    let mut report = match result {
        Ok(r) => r,
        Err(SetupError(e)) => return Err(setup_error(e)),
    };
    if let Some(b) = baseline
        && b.scenario.name == scenario.name
    {
        baseline::compare(&mut report, b, args.baseline_tolerance);
    }
    if let Err(e) = render::write_run_folder(&report, out_dir) {
        return Err(setup_error(e));
    }
    print!("{}", terminal::render(&report));
    println!(
        "  reports: {}/report.html (and report.json, report.md, goose-report.html)",
        out_dir.display()
    );
    Ok(report)
}

/// The bare forwarder under `odin`'s scenario, right after it (a cool-down
/// between), for the comparison of issue #8; then `pairs − 1` more
/// odin-server and forwarder runs, alternating. `Ok(None)` when there is
/// nothing to compare with: odin-server is not what the steps ran.
async fn compare_with_forwarder(
    odin: &RunReport,
    pairs: usize,
    target: &Target,
    series_dir: &std::path::Path,
    cooldown: Duration,
    args: &RunArgs,
) -> Result<Option<ForwarderComparison>, ExitCode> {
    let Target::Embedded {
        server: ServerKind::Odin,
        server_args,
    } = target
    else {
        eprintln!(
            "odin-load: compare_forwarder skipped: it compares an embedded odin-server \
             with the bare forwarder, and this run is neither"
        );
        return Ok(None);
    };
    // odin-server's flags mean nothing to the forwarder.
    let forwarder_target = Target::Embedded {
        server: ServerKind::Forwarder,
        server_args: Vec::new(),
    };
    let odin_target = Target::Embedded {
        server: ServerKind::Odin,
        server_args: server_args.clone(),
    };
    let base = odin.scenario.name.clone();
    let mut odin_runs = vec![odin.clone()];
    let mut forwarder_runs = Vec::with_capacity(pairs);
    for pair in 1..=pairs {
        let suffix = if pair == 1 {
            String::new()
        } else {
            format!("-{pair}")
        };
        if pair > 1 {
            let mut scenario = odin.scenario.clone();
            scenario.name = format!("{base}-odin{suffix}");
            scenario.description = format!("odin-server again under {base}'s load, pair {pair}");
            tokio::time::sleep(cooldown).await;
            let dir = series_dir.join(&scenario.name);
            odin_runs.push(run_one(&scenario, &odin_target, &dir, args, None).await?);
        }
        eprintln!(
            "odin-load: the bare forwarder at {} price events/s next (pair {pair} of {pairs}), \
             for the comparison; cooling down for {}",
            odin.scenario.publish_rate,
            humantime::format_duration(cooldown)
        );
        tokio::time::sleep(cooldown).await;
        let mut scenario = odin.scenario.clone();
        scenario.name = format!("{base}-forwarder{suffix}");
        scenario.description =
            format!("the bare forwarder under {base}'s load, for the comparison");
        let dir = series_dir.join(&scenario.name);
        forwarder_runs.push(run_one(&scenario, &forwarder_target, &dir, args, None).await?);
    }
    Ok(Some(ForwarderComparison::new(&odin_runs, &forwarder_runs)))
}

/// The scenarios one `run` goes through, in order.
struct Series {
    scenarios: Vec<Scenario>,
    cooldown: Duration,
    /// A stepped run: print the step table and judge by its ceiling.
    stepped: bool,
    /// Stop after the first step that does not pass.
    stop_at_first_miss: bool,
    /// After the first step, run the bare forwarder at its rate and compare.
    compare_forwarder: bool,
    /// odin-server/forwarder pairs the comparison alternates.
    compare_pairs: usize,
    /// The scenario a stepped run's steps run (empty for other runs).
    base: String,
}

/// Resolves the run's name: `progressive`, a stepped run, or one scenario;
/// the command line's overrides apply to each.
fn series(file: &ScenarioFile, args: &RunArgs) -> anyhow::Result<Series> {
    let name = args.scenario.as_str();
    if let Some(step) = file.step(name) {
        let scenarios = step
            .scenarios(name, file, args.rates.as_deref())?
            .into_iter()
            .map(|s| {
                let rate = s.publish_rate;
                // The step's rate wins over --publish-rate.
                apply_overrides(s, args).map(|mut s| {
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
    if args.rates.is_some() {
        anyhow::bail!("--rates is for stepped runs, and {name:?} is none");
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
        .map(|n| file.resolve(n).and_then(|s| apply_overrides(s, args)))
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

fn apply_overrides(mut s: Scenario, a: &RunArgs) -> anyhow::Result<Scenario> {
    if let Some(v) = a.users {
        s.users = v;
    }
    if let Some(v) = a.ramp_rate {
        s.ramp_rate = v;
    }
    if let Some(v) = a.hold {
        s.hold = v;
    }
    if let Some(v) = a.drain {
        s.drain = v;
    }
    if let Some(v) = a.warmup {
        s.warmup = v;
    }
    if let Some(v) = a.tokens {
        s.tokens = v;
    }
    if let Some(v) = a.subscriptions {
        s.subscriptions = v;
    }
    if let Some(v) = a.publish_rate {
        s.publish_rate = v;
    }
    if let Some(v) = a.tick {
        s.tick = v;
    }
    if let Some(v) = a.processes {
        s.processes = v;
    }
    if let Some(v) = a.gateways {
        s.gateways = v;
    }
    if let Some(v) = a.nats_nodes {
        s.nats_nodes = v;
    }
    if a.stop_nats_node_after.is_some() {
        s.stop_nats_node_after = a.stop_nats_node_after;
    }
    if a.nats_second_connection {
        s.nats_second_connection = true;
    }
    if a.stop_nats_leader {
        s.stop_nats_leader = true;
    }
    s.thresholds.extend(a.thresholds.iter().cloned());
    s.goose_thresholds
        .extend(a.goose_thresholds.iter().cloned());
    s.validate()?;
    Ok(s)
}

fn target(a: &RunArgs) -> anyhow::Result<Target> {
    match &a.url {
        None => Ok(Target::Embedded {
            server: a.server,
            server_args: a.server_args.clone(),
        }),
        Some(_) if a.server == ServerKind::Forwarder => {
            anyhow::bail!(
                "--server forwarder starts the forwarder itself: it is for embedded runs, not --url"
            )
        }
        Some(url) => Ok(Target::External {
            ws_url: url.clone(),
            http_addr: a.http_addr,
            nats_url: a.nats_url.clone().context("--url needs --nats-url")?,
            jwt_secret: a.jwt_secret.clone().context(
                "--url needs --jwt-secret (or ODIN_JWT_SECRET) to sign the users' tokens",
            )?,
        }),
    }
}

fn merge_reports(paths: &[PathBuf], out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let reports = paths
        .iter()
        .map(|p| baseline::load(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = merge::merge(reports)?;
    render::write_run_folder(&merged, out)?;
    print!("{}", terminal::render(&merged));
    Ok(ExitCode::from(merged.outcome.exit_code() as u8))
}
