//! `--replay FILE.jsonl`: publishes a recording again as a [`Source`].
//!
//! Each event keeps its body but gets a fresh `timestamp` and `nonce` (so the
//! server does not de-duplicate a replay away, and latencies are measured
//! from now); a recorded duplicate is re-sent with the fresh nonce of the
//! event it duplicated. The subject is rebuilt from the event under the
//! current prefix, so a recording made under one prefix plays under another.
//! Lines are read as they are due, so recordings of any size stream.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use async_nats::Subject;
use odin_protocol::{Event, Nonce, Subjects, TokenId};

use crate::error::Error;
use crate::outgoing::Outgoing;
use crate::record::RecordLine;
use crate::source::Source;
use crate::stamp::Stamper;

/// How many recent events a duplicate line may refer back to.
const RECENT: usize = 1024;

/// A recording being replayed.
#[derive(Debug)]
pub struct Replay {
    path: PathBuf,
    lines: std::io::Lines<BufReader<File>>,
    /// 1-based number of the line in `next`.
    line_no: u64,
    /// The next line, read ahead so its due time is known.
    next: Option<RecordLine>,
    speed: f64,
    subjects: Subjects,
    tokens: HashMap<TokenId, u32>,
    token_ids: Vec<TokenId>,
    /// Recently sent events by their recorded nonce, for duplicate lines.
    recent: VecDeque<(Nonce, Outgoing)>,
    /// A line that failed to read after the last step: reported by the next
    /// step, so every good line before it still goes out.
    broken: Option<Error>,
    /// Due time of the last step, when the broken line is "due".
    last_due: f64,
}

impl Replay {
    /// Opens `path` and reads its first line; fails on a missing, unreadable
    /// or empty file, or a first line that is not a recorded event.
    pub fn open(path: &Path, speed: f64, subjects: Subjects) -> Result<Self, Error> {
        let file = File::open(path).map_err(|source| Error::ReplayIo {
            path: path.to_owned(),
            source,
        })?;
        let mut replay = Self {
            path: path.to_owned(),
            lines: BufReader::new(file).lines(),
            line_no: 0,
            next: None,
            speed,
            subjects,
            tokens: HashMap::new(),
            token_ids: Vec::new(),
            recent: VecDeque::with_capacity(RECENT),
            broken: None,
            last_due: 0.0,
        };
        replay.read_next()?;
        if replay.next.is_none() {
            return Err(Error::ReplayLine {
                path: path.to_owned(),
                line: 1,
                reason: "the recording is empty".to_owned(),
            });
        }
        Ok(replay)
    }

    fn read_next(&mut self) -> Result<(), Error> {
        self.next = None;
        for line in self.lines.by_ref() {
            self.line_no += 1;
            let line = line.map_err(|source| Error::ReplayIo {
                path: self.path.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: RecordLine =
                serde_json::from_str(&line).map_err(|e| Error::ReplayLine {
                    path: self.path.clone(),
                    line: self.line_no,
                    reason: e.to_string(),
                })?;
            if !(parsed.at_ms.is_finite() && parsed.at_ms >= 0.0) {
                return Err(Error::ReplayLine {
                    path: self.path.clone(),
                    line: self.line_no,
                    reason: format!("atMs must be a non-negative number (got {})", parsed.at_ms),
                });
            }
            self.next = Some(parsed);
            break;
        }
        Ok(())
    }

    fn token_index(&mut self, id: &TokenId) -> u32 {
        if let Some(&i) = self.tokens.get(id) {
            return i;
        }
        let i = self.token_ids.len() as u32;
        self.tokens.insert(id.clone(), i);
        self.token_ids.push(id.clone());
        i
    }
}

/// Gives `event` a new timestamp and nonce.
fn restamp(event: &mut Event, timestamp: f64, nonce: Nonce) {
    let (t, n) = match event {
        Event::PriceUpdate(e) => (&mut e.timestamp, &mut e.nonce),
        Event::VolumeUpdate(e) => (&mut e.timestamp, &mut e.nonce),
        Event::TradeExecuted(e) => (&mut e.timestamp, &mut e.nonce),
        Event::BatchUpdate(e) => (&mut e.timestamp, &mut e.nonce),
        Event::MarketStats(e) => (&mut e.timestamp, &mut e.nonce),
    };
    *t = timestamp;
    *n = nonce;
}

impl Source for Replay {
    fn next_due(&self) -> Option<f64> {
        if self.broken.is_some() {
            return Some(self.last_due);
        }
        self.next
            .as_ref()
            .map(|line| line.at_ms / 1000.0 / self.speed)
    }

    fn step<S: Stamper>(&mut self, stamper: &mut S, out: &mut Vec<Outgoing>) -> Result<(), Error> {
        if let Some(e) = self.broken.take() {
            return Err(e);
        }
        let Some(due) = self.next_due() else {
            return Ok(());
        };
        self.last_due = due;
        let Some(mut line) = self.next.take() else {
            return Ok(());
        };
        let recorded_nonce = line.event.nonce().clone();
        let earlier = line
            .duplicate
            .then(|| self.recent.iter().rev().find(|(n, _)| *n == recorded_nonce))
            .flatten();
        match earlier {
            Some((_, message)) => out.push(message.to_duplicate()),
            None => {
                if line.duplicate {
                    tracing::debug!(
                        line = self.line_no,
                        "duplicate of an event not seen recently; sent as a new event"
                    );
                }
                let token = line
                    .event
                    .token_id()
                    .cloned()
                    .map(|id| self.token_index(&id));
                let (timestamp, nonce) = stamper.stamp();
                restamp(&mut line.event, timestamp, nonce);
                let subject = Subject::from(line.event.subject(&self.subjects));
                let message = Outgoing::new(&line.event, token, subject, stamper.scheduled());
                if self.recent.len() == RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back((recorded_nonce, message.clone()));
                out.push(message);
            }
        }
        if let Err(e) = self.read_next() {
            self.broken = Some(e);
        }
        Ok(())
    }

    fn skip_before(&mut self, t: f64) -> Result<u64, Error> {
        if let Some(e) = self.broken.take() {
            return Err(e);
        }
        let mut skipped = 0;
        while let Some(due) = self.next_due() {
            if due >= t {
                break;
            }
            let line = self.next.as_ref().expect("due implies a line");
            skipped += u64::from(
                matches!(
                    &line.event,
                    Event::PriceUpdate(e) if e.source == odin_protocol::message::PriceSource::Trade
                ) && !line.duplicate,
            );
            self.read_next()?;
        }
        Ok(skipped)
    }

    fn token_ids(&self) -> Vec<TokenId> {
        self.token_ids.clone()
    }
}
