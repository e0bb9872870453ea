//! The hot path counted in instructions, checked against a committed
//! baseline: wall-clock figures on a busy two-core machine move by tens of
//! percent from run to run, instruction counts under callgrind by a fraction
//! of one, so a 5 % regression shows.
//!
//! ```text
//! cargo bench --workspace --bench instructions              # check
//! cargo bench --workspace --bench instructions -- --update  # new baseline
//! ```
//!
//! (`--workspace`, not `-p odin-server`: the dependencies then resolve with
//! the features the release build gives them and are not compiled again.)
//!
//! One binary, two modes:
//!
//! - **Outer** (the default): runs this binary again under
//!   `valgrind --tool=callgrind` for each workload at two sizes, and divides
//!   the difference of the total instructions by the difference of the work
//!   done, so start-up, set-up and tear-down cancel out. Prints
//!   instructions per delivery and per handshake beside the baseline
//!   (`server/benches/instructions.json`) and exits non-zero when one is
//!   above baseline × (1 + the file's tolerance).
//! - **Inner** (`--measure …`): runs one workload once, single-threaded, on a
//!   current-thread runtime; everything that depends on the size is in the
//!   measured path, everything else is made the same at both sizes (the
//!   messages for the larger size are built in both runs).
//!
//! The workloads use the server's own code:
//!
//! - `deliveries`: ready-made NATS messages (price, volume and trade updates
//!   of one token, with `Nats-Msg-Id`, as the publisher sends them) go
//!   through [`ingest::ingest_one`] (validate, de-duplicate, measure,
//!   [`Router::deliver`] into the subscribers' outboxes) in bursts, then
//!   [`Router::wake_all`]; one task per subscriber waits on its outbox as the
//!   writer does, takes the batch and encodes it with [`wire::write_frames`]
//!   into a sink that takes every byte (a socket's copy is the kernel's, which
//!   callgrind does not count either). The writer's loop itself (its `select!`
//!   over heartbeat, expiry and shutdown, and the socket) is not run: it needs
//!   a TCP socket and the whole server state. Figures are per delivery (one
//!   event to one subscriber), at one event per wake-up and at bursts of 16.
//! - `handshakes`: one WebSocket upgrade over an in-memory duplex: the
//!   client's request with a JWT in `?token=`, tungstenite's server handshake
//!   with the listener's configuration, and in its callback what the
//!   listener's `admit` does with the token ([`token_from_request`],
//!   [`Authenticator::verify`], HS256). Not counted: the TCP accept, the
//!   connection slot and what `connection::serve` does after the upgrade
//!   (greeting, writer task), which need the whole server state (its NATS
//!   client included).
//!
//! Instruction counts depend on the compiler and the dependencies' versions:
//! after updating either, or after an intended change to the hot path,
//! rewrite the baseline with `--update` (`make bench-instructions-update`).
//!
//! `workloads.rs` is the inner mode, `callgrind.rs` the outer.

mod callgrind;
mod workloads;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(about = "Instruction counts of odin-server's hot path under callgrind")]
struct Args {
    /// Inner mode: run this workload once (what the outer mode runs under
    /// callgrind).
    #[arg(long, value_enum)]
    measure: Option<Workload>,
    /// `deliveries`: events ingested (at most 400).
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// `deliveries`: subscribers of the token.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// `deliveries`: events ingested before the writers are woken.
    #[arg(long, default_value_t = 1)]
    burst: usize,
    /// `handshakes`: upgrades performed.
    #[arg(long, default_value_t = 50)]
    count: usize,
    /// Outer mode: write the measured figures to the baseline file instead
    /// of checking them.
    #[arg(long)]
    update: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    Deliveries,
    Handshakes,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.measure {
        Some(Workload::Deliveries) => {
            workloads::deliveries(args.events, args.subscribers, args.burst)
        }
        Some(Workload::Handshakes) => workloads::handshakes(args.count),
        None => callgrind::outer(args.update),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("instructions: {e:#}");
            ExitCode::FAILURE
        }
    }
}
