//! Capture backends. All of them produce [`tidegate_common::FlowKey`]-keyed observations
//! with the same semantics (the shared parser in `tidegate-common`).

pub mod afpacket;
pub mod ebpf;
pub mod pcap;

/// Which IP header keys a tunnelled packet's flow (`[probe] tunnels`, `--tunnels`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TunnelMode {
    /// The outermost: a tunnel is one flow between its endpoints (what the line carries).
    #[default]
    Outer,
    /// The one inside GRE, VXLAN, GTP-U or IP-in-IP: one flow per inner 5-tuple, with
    /// the tunnel's kind and id in the key and its endpoints as attributes; bytes are the
    /// inner packets'.
    Inner,
}

impl TunnelMode {
    /// The shared parser's setting.
    pub const fn parser(self) -> tidegate_common::Tunnels {
        match self {
            TunnelMode::Outer => tidegate_common::Tunnels::Outer,
            TunnelMode::Inner => tidegate_common::Tunnels::Inner,
        }
    }
}
