//! One NATS server, whichever backend runs it: [`NatsServer`] starts it,
//! hands out its URLs, stops, restarts, pauses and resumes it, and cleans up
//! on drop.

use super::options::{Backend, NatsOptions};
use super::{binary, container, monitor, select};

/// A running (or stopped) NATS server that is killed and cleaned up on drop.
///
/// `stop` keeps the ports and the JetStream store so that `restart` brings
/// the same server back where clients expect it.
pub struct NatsServer {
    pub(crate) inner: Inner,
}

pub(crate) enum Inner {
    Binary(binary::BinaryServer),
    /// Boxed: the container handle is large and rarely used.
    Container(Box<container::ContainerServer>),
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("backend", &self.backend())
            .field("url", &self.url())
            .field("monitor_url", &self.monitor_url())
            .finish()
    }
}

impl NatsServer {
    /// A plain server on the backend chosen by the environment.
    pub async fn start() -> anyhow::Result<NatsServer> {
        Self::start_with(NatsOptions::default()).await
    }

    /// A server started as `opts` asks.
    pub async fn start_with(opts: NatsOptions) -> anyhow::Result<NatsServer> {
        let choice = match opts.backend {
            Some(choice) => choice,
            None => select::choice_from_env()?,
        };
        let inner = match select::resolve_backend(choice, opts.binary.clone())? {
            select::Resolved::Binary(bin) => {
                Inner::Binary(binary::BinaryServer::start(bin, binary::Spec::single(&opts)).await?)
            }
            select::Resolved::Container => Inner::Container(Box::new(
                container::ContainerServer::start(&opts, None).await?,
            )),
        };
        let server = NatsServer { inner };
        crate::test_log::nats(server.backend(), 1);
        tracing::debug!(url = %server.url(), backend = %server.backend(), "nats server ready");
        Ok(server)
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host(), self.port())
    }

    /// The client port; stays the same across `stop`/`restart`.
    pub fn port(&self) -> u16 {
        match &self.inner {
            Inner::Binary(b) => b.ports().client,
            Inner::Container(c) => c.port(),
        }
    }

    /// The monitoring endpoint (`/healthz`, `/varz`, `/connz`, `/routez`),
    /// `http://127.0.0.1:PORT`.
    pub fn monitor_url(&self) -> Option<String> {
        let port = match &self.inner {
            Inner::Binary(b) => b.ports().monitor,
            Inner::Container(c) => c.monitor_port(),
        };
        Some(format!("http://{}:{port}", self.host()))
    }

    /// GETs a monitoring endpoint (e.g. `"/varz"`) and parses its JSON.
    pub async fn monitor_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let base = self
            .monitor_url()
            .ok_or_else(|| anyhow::anyhow!("this server has no monitoring port"))?;
        monitor::get_json(&base, path).await
    }

    /// Kills the server (no goodbye to clients), keeping its ports and store
    /// so [`NatsServer::restart`] can bring it back. Idempotent.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        match &mut self.inner {
            Inner::Binary(b) => b.stop(),
            Inner::Container(c) => c.stop().await,
        }
    }

    /// Starts the server again on the same ports (stopping it first if it is
    /// running) and waits until it is ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        match &mut self.inner {
            Inner::Binary(b) => b.restart().await,
            Inner::Container(c) => c.restart().await,
        }
    }

    /// Freezes the server (SIGSTOP, or `docker pause`): connections stay
    /// open but nothing is answered, the way a stalled broker looks.
    pub fn pause(&self) -> anyhow::Result<()> {
        match &self.inner {
            Inner::Binary(b) => b.signal("STOP"),
            Inner::Container(c) => c.docker_cli("pause"),
        }
    }

    /// Undoes [`NatsServer::pause`].
    pub fn resume(&self) -> anyhow::Result<()> {
        match &self.inner {
            Inner::Binary(b) => b.signal("CONT"),
            Inner::Container(c) => c.docker_cli("unpause"),
        }
    }

    /// Whether the server process (or container) is meant to be up: `false`
    /// between `stop` and `restart`.
    pub fn is_running(&self) -> bool {
        match &self.inner {
            Inner::Binary(b) => b.is_running(),
            Inner::Container(c) => c.is_running(),
        }
    }

    /// The backend running this server.
    pub fn backend(&self) -> Backend {
        match &self.inner {
            Inner::Binary(_) => Backend::Binary,
            Inner::Container(_) => Backend::Container,
        }
    }

    /// The process id of a binary server while it runs (for tests that
    /// signal it themselves); `None` for containers.
    pub fn pid(&self) -> Option<u32> {
        match &self.inner {
            Inner::Binary(b) => b.pid(),
            Inner::Container(_) => None,
        }
    }

    /// The temporary directory holding a binary server's log (`nats.log`),
    /// ports file and JetStream store; removed on drop. `None` for
    /// containers.
    pub fn dir(&self) -> Option<&std::path::Path> {
        match &self.inner {
            Inner::Binary(b) => Some(b.dir()),
            Inner::Container(_) => None,
        }
    }

    /// The last `lines` lines of the server's log, for test failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        match &self.inner {
            Inner::Binary(b) => b.log_tail(lines),
            Inner::Container(_) => String::from("(container logs: use `docker logs`)"),
        }
    }

    /// The container's id on the container backend (to cut it off a
    /// network, partition it or slow its link: [`crate::host`]); `None` on
    /// the binary backend, which has no host of its own.
    pub fn container_id(&self) -> Option<&str> {
        match &self.inner {
            Inner::Binary(_) => None,
            Inner::Container(c) => Some(c.id()),
        }
    }

    fn host(&self) -> &str {
        match &self.inner {
            Inner::Binary(_) => binary::HOST,
            Inner::Container(c) => c.host(),
        }
    }
}
