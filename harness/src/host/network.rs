//! A container cut off a Docker network while it runs (`docker network
//! disconnect`), and put back (`docker network connect`): its interface on
//! that network is gone, so packets to and from its peers there are lost
//! (no reset, no error on the far side: the connections only go quiet, as
//! with a pulled cable), while its other networks carry on.

use super::docker::docker;

/// A container cut off a network; [`NetworkCut::heal`] (or drop) puts it
/// back, under the same name (its peers find it again by name, at a
/// possibly new address).
#[derive(Debug)]
pub struct NetworkCut {
    container: String,
    network: String,
    /// Invariant: true until the container is connected again.
    cut: bool,
}

impl NetworkCut {
    /// Cuts `container` off `network` now.
    pub fn cut(container: &str, network: &str) -> anyhow::Result<NetworkCut> {
        docker(&["network", "disconnect", network, container])?;
        Ok(NetworkCut {
            container: container.to_owned(),
            network: network.to_owned(),
            cut: true,
        })
    }

    /// Connects the container to the network again.
    pub fn heal(mut self) -> anyhow::Result<()> {
        self.cut = false;
        docker(&["network", "connect", &self.network, &self.container])?;
        Ok(())
    }
}

impl Drop for NetworkCut {
    fn drop(&mut self) {
        if self.cut {
            // Best effort: the container may be gone already.
            let _ = docker(&["network", "connect", &self.network, &self.container]);
        }
    }
}
