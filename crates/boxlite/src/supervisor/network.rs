//! The box's network in its supervisor: the `netstack` stack on one end of a socket pair
//! (the VM process inherits the other), its policy from the box's options, and the report
//! `inspect` reads (`network.json`: address, published ports, denials).

use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::engine::GuestNet;
use crate::error::{Error, Result};
use crate::network::{
    DENIAL_LOG, NETWORK_FILE, NetworkInfo, NetworkMode, NetworkOptions, PublishedPort,
};

/// A running box network.
pub(crate) struct BoxNetwork {
    running: netstack::Running,
    denials: netstack::DenialCounter,
    info: NetworkInfo,
    dir: PathBuf,
}

/// What starting the network hands the VM: its end of the frame stream and the guest's
/// settings.
pub(crate) struct VmSide {
    /// The VM process's end of the socket pair.
    pub stream: UnixStream,
    /// What the agent configures eth0 with.
    pub guest: GuestNet,
}

impl BoxNetwork {
    /// Starts the stack for `options` (none when the box has no network): the published
    /// ports are bound before this returns, so a port in use fails the start.
    pub(crate) fn start(
        options: &NetworkOptions,
        dns_upstream: &[SocketAddr],
        dir: &Path,
    ) -> Result<Option<(BoxNetwork, VmSide)>> {
        forget(dir);
        if options.mode == NetworkMode::Off {
            return Ok(None);
        }
        let denial_log = dir.join(DENIAL_LOG);
        let policy = options.policy(Some(denial_log.clone()))?;
        let denials = policy.denials();
        let host_alias = policy.host_reachable().then_some(netstack::addr::GATEWAY);
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| Error::io("creating", "the network channel", e))?;
        let mut config = netstack::Config {
            dns_upstream: dns_upstream.to_vec(),
            ..netstack::Config::default()
        };
        for port in &options.publish {
            config.publish.push(netstack::Publish {
                protocol: port.protocol.into(),
                host: port.host(),
                guest_port: port.guest_port,
            });
        }
        let running = netstack::Stack::start(ours, config, Box::new(policy)).map_err(|e| {
            let cause = std::error::Error::source(&e)
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            let hint = match e {
                netstack::Error::Publish { .. } => {
                    " (publish another host port, or 0 for any free one)"
                }
                _ => "",
            };
            Error::InvalidInput(format!("starting the box's network: {e}{cause}{hint}"))
        })?;
        let ports = running
            .published()
            .iter()
            .map(|p| PublishedPort {
                host: p.host,
                guest_port: p.guest_port,
                protocol: p.protocol.into(),
            })
            .collect();
        let info = NetworkInfo {
            address: Some(IpAddr::V4(netstack::addr::GUEST)),
            ports,
            denied: 0,
            denial_log,
        };
        let guest = GuestNet {
            address: netstack::addr::GUEST,
            prefix: netstack::addr::PREFIX_LEN,
            gateway: netstack::addr::GATEWAY,
            mtu: netstack::addr::MTU as u16,
            dns: vec![IpAddr::V4(netstack::addr::DNS)],
            host_alias,
        };
        let network = BoxNetwork {
            running,
            denials,
            info,
            dir: dir.to_path_buf(),
        };
        network.write()?;
        Ok(Some((
            network,
            VmSide {
                stream: theirs,
                guest,
            },
        )))
    }

    /// Rewrites the report when the denial count moved since the last one.
    pub(crate) fn report(&mut self) {
        let denied = self.denials.get();
        if denied != self.info.denied {
            self.info.denied = denied;
            let _ = self.write();
        }
    }

    /// Stops the stack (its host sockets close) and forgets the report.
    pub(crate) fn stop(self) {
        self.running.stop();
        forget(&self.dir);
    }

    /// Writes `network.json` whole (a temporary file, renamed over the last).
    fn write(&self) -> Result<()> {
        let path = self.dir.join(NETWORK_FILE);
        let tmp = self.dir.join(format!("{NETWORK_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(&self.info)
            .map_err(|e| Error::InvalidInput(format!("encoding the network report: {e}")))?;
        std::fs::write(&tmp, json).map_err(|e| Error::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming", &path, e))
    }
}

/// Forgets an earlier boot's report.
fn forget(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(NETWORK_FILE));
}
