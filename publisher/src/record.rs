//! `--record FILE.jsonl`: every published message, one JSON object a line.
//!
//! ```json
//! {"atMs":1250.0,"subject":"odin.token.BTC.price","event":{"type":"price_update",…}}
//! {"atMs":1250.0,"subject":"odin.token.BTC.price","duplicate":true,"event":{…}}
//! ```
//!
//! `atMs` is the schedule time of the message in milliseconds since the
//! start of the run, so a replay reproduces the original pacing exactly;
//! `duplicate` marks a deliberate re-publication of the line before it with
//! the same nonce (`--dup-ratio`). The event is the published body, byte for
//! byte. Files are meant to be read by people and tools too.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use odin_protocol::Event;
use serde::Deserialize;

use crate::error::Error;
use crate::outgoing::Outgoing;

/// One line of a recording, as read back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordLine {
    /// Schedule time, ms since the start of the recorded run.
    pub at_ms: f64,
    /// The subject it was published on (under the recording run's prefix).
    pub subject: String,
    /// A re-publication of an earlier event with the same nonce.
    #[serde(default)]
    pub duplicate: bool,
    /// The published event.
    pub event: Event,
}

/// Writes a recording.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Recorder {
    /// Creates (or truncates) the recording at `path`.
    pub fn create(path: &Path) -> Result<Self, Error> {
        let file = File::create(path).map_err(|source| Error::Record {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 20, file),
        })
    }

    /// Appends `message`, published at schedule time `at` seconds.
    pub fn write(&mut self, at: f64, message: &Outgoing) -> Result<(), Error> {
        self.write_line(at, message)
            .map_err(|source| Error::Record {
                path: self.path.clone(),
                source,
            })
    }

    fn write_line(&mut self, at: f64, message: &Outgoing) -> std::io::Result<()> {
        // The subject is built from validated parts (no quote or backslash)
        // and the payload is already JSON, so the line is assembled as text
        // instead of re-encoding the event.
        let at_ms = crate::rounding::round_dp(at * 1000.0, 3);
        write!(
            self.out,
            "{{\"atMs\":{},\"subject\":\"{}\",",
            serde_json::Number::from_f64(at_ms).unwrap_or(0.into()),
            message.subject
        )?;
        if message.duplicate {
            self.out.write_all(b"\"duplicate\":true,")?;
        }
        self.out.write_all(b"\"event\":")?;
        self.out.write_all(&message.payload)?;
        self.out.write_all(b"}\n")
    }

    /// Flushes the file to disk.
    pub fn finish(mut self) -> Result<(), Error> {
        self.out
            .flush()
            .and_then(|()| self.out.get_ref().sync_data())
            .map_err(|source| Error::Record {
                path: self.path.clone(),
                source,
            })
    }
}
