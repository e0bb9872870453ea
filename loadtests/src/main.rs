//! `odin-load`: run a load scenario (or the progressive series) and exit
//! 0 when every threshold passes, 1 when one fails, 2 when the run could not
//! give a verdict, 3 on a setup error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use odin_loadtests::options::{RunOptions, SetupError};
use odin_loadtests::plan::{Overrides, RemoteArgs, Series, TargetArgs};
use odin_loadtests::render::{self, terminal};
use odin_loadtests::scenario::{Scenario, ScenarioFile};
use odin_loadtests::series::{SeriesOptions, run_series};
use odin_loadtests::stack::Target;
use odin_loadtests::worker::message::FromWorker;
use odin_loadtests::worker::{WorkerLink, bus};
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
    /// One load process of a run over several: joins the run `--run` over
    /// NATS from any host (`odin-load run … --remote-workers N`), or runs as
    /// a local coordinator's child on its pipes (see LOAD_TESTING.md,
    /// "Beyond one process" and "Workers on other hosts").
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
    #[command(flatten)]
    overrides: Overrides,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    remote: RemoteArgs,
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
    /// Join a run over NATS: the NATS its coordinator waits on, as this
    /// host reaches it (e.g. `nats://10.0.0.5:4222`).
    #[arg(long, requires = "run", conflicts_with = "scenario_json")]
    nats: Option<String>,
    /// The run to join (the id the coordinator printed, or its `--run-id`).
    #[arg(long, requires = "nats")]
    run: Option<String>,
    /// How long to keep asking to join before giving up.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    join_timeout: Duration,
    /// A coordinator's child: this worker's share of the scenario, as JSON.
    #[arg(long, requires_all = ["url", "nats_url", "out"])]
    scenario_json: Option<PathBuf>,
    /// Where its report goes (default with `--nats`: a folder under the
    /// temporary directory).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A coordinator's child: the gateways' WebSocket URL.
    #[arg(long)]
    url: Option<String>,
    /// A coordinator's child: the run's NATS (for the report).
    #[arg(long)]
    nats_url: Option<String>,
    /// A coordinator's child: the gateways' JWT secret.
    #[arg(long, env = "ODIN_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// The local addresses its users connect from, in turn (comma-separated).
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<std::net::IpAddr>,
    /// A coordinator's child: how long a user may take to connect and subscribe.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// A coordinator's child: generator scheduling lag (p99) beyond which
    /// the run is invalid.
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

/// Runs one worker's share, writes its report into its folder and sends it
/// to the coordinator.
async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let (link, scenario, opts) = match (&args.nats, &args.scenario_json) {
        (Some(nats), None) => joined_worker(&args, nats).await?,
        (None, Some(path)) => local_worker(&args, path)?,
        _ => anyhow::bail!(
            "odin-load worker needs --nats and --run (to join a run) or --scenario-json \
             (started by a coordinator)"
        ),
    };
    match odin_loadtests::run::run(&scenario, &opts).await {
        Ok(report) => {
            render::write_run_folder(&report, &opts.out_dir)?;
            let code = ExitCode::from(report.outcome.exit_code() as u8);
            link.send(&FromWorker::Report(Box::new(report))).await?;
            Ok(code)
        }
        Err(SetupError(e)) => {
            let error = format!("{e:#}");
            if let Err(unsent) = link.send(&FromWorker::Failed { error }).await {
                eprintln!("odin-load: cannot tell the coordinator: {unsent:#}");
            }
            Err(e)
        }
    }
}

/// A worker started by a local coordinator: its share on the command line.
fn local_worker(
    args: &WorkerArgs,
    path: &std::path::Path,
) -> anyhow::Result<(WorkerLink, Scenario, RunOptions)> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let scenario: Scenario = serde_json::from_slice(&text).context("not a scenario")?;
    let opts = RunOptions {
        target: Target::External {
            ws_url: args.url.clone().context("--scenario-json needs --url")?,
            http_addr: None,
            nats_url: args
                .nats_url
                .clone()
                .context("--scenario-json needs --nats-url")?,
            jwt_secret: args
                .jwt_secret
                .clone()
                .context("--scenario-json needs --jwt-secret (or ODIN_JWT_SECRET)")?,
            // Worker processes load plain gateways; wss:// is for one
            // process against one `--url` for now.
            ca_file: None,
        },
        out_dir: args.out.clone().context("--scenario-json needs --out")?,
        connect_timeout: args.connect_timeout,
        max_generator_lag: args.max_generator_lag,
        goose_args: Vec::new(),
        progress: false,
        source_ips: args.source_ips.clone(),
        worker: Some(WorkerLink::Pipes),
        remote: None,
    };
    Ok((WorkerLink::Pipes, scenario, opts))
}

/// A worker that joins run `--run` on the NATS at `nats` and takes its
/// share from the coordinator.
async fn joined_worker(
    args: &WorkerArgs,
    nats: &str,
) -> anyhow::Result<(WorkerLink, Scenario, RunOptions)> {
    let run = args.run.as_deref().context("--nats needs --run")?;
    let subjects = bus::Subjects::of(run)?;
    let deadline = tokio::time::Instant::now() + args.join_timeout;
    let client = bus::connect(nats, deadline).await?;
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("process {}", std::process::id()));
    eprintln!("odin-load: worker on {host}: joining run {run} on {nats}");
    let (nats_link, share) = bus::join(client, &subjects, &host, deadline)
        .await
        .with_context(|| format!("cannot join run {run} on {nats}"))?;
    eprintln!(
        "odin-load: worker {} of run {run}: {} users (from user {}) on {}",
        share.index, share.scenario.users, share.scenario.first_user, share.ws_url
    );
    let link = WorkerLink::Nats(Box::new(nats_link));
    let out_dir = args.out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("odin-load-{run}-worker-{}", share.index))
    });
    let opts = RunOptions {
        target: Target::External {
            ws_url: share.ws_url,
            http_addr: None,
            nats_url: nats.to_owned(),
            jwt_secret: share.jwt_secret,
            // Remote workers load plain gateways; wss:// is for one
            // process against one `--url` for now.
            ca_file: None,
        },
        out_dir,
        connect_timeout: share.connect_timeout,
        max_generator_lag: share.max_generator_lag,
        goose_args: Vec::new(),
        progress: false,
        source_ips: args.source_ips.clone(),
        worker: Some(link.clone()),
        remote: None,
    };
    Ok((link, share.scenario, opts))
}

fn setup_error(e: anyhow::Error) -> ExitCode {
    eprintln!("odin-load: setup error: {e:#}");
    ExitCode::from(SETUP_ERROR)
}

async fn run(args: RunArgs) -> ExitCode {
    let plan = || -> anyhow::Result<_> {
        let file = ScenarioFile::load(&args.scenario_file)?;
        let series = Series::plan(&file, &args.scenario, &args.overrides)?;
        let target = args.target.target()?;
        let remote = args.remote.remote(&args.target, &series)?;
        let baseline = args.baseline.as_deref().map(baseline::load).transpose()?;
        Ok((series, target, remote, baseline))
    };
    let (series, target, remote, baseline) = match plan() {
        Ok(planned) => planned,
        Err(e) => return setup_error(e),
    };
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let opts = SeriesOptions {
        name: args.scenario.clone(),
        out_dir: args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(format!("{stamp}-{}", args.scenario))),
        connect_timeout: args.connect_timeout,
        max_generator_lag: args.max_generator_lag,
        goose_args: args.goose_args,
        progress: !args.no_progress,
        baseline,
        baseline_tolerance: args.baseline_tolerance,
        remote,
    };
    match run_series(&series, &target, &opts).await {
        Ok(code) => ExitCode::from(code),
        Err(SetupError(e)) => setup_error(e),
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
