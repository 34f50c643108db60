//! Docker's default network: every container's veth plugged into one
//! bridge (a virtual switch, `minidocker0`), which holds the gateway
//! address. Containers on it reach each other and the host; with IP
//! forwarding and a masquerade rule they reach what the host reaches,
//! their packets leaving with the host's address as the source (NAT).
//!
//! ```text
//!   container A eth0 172.29.0.2 ─ mdkA ┐
//!                                      ├─ minidocker0 172.29.0.1 ─ host routing ─ eth0 (NAT)
//!   container B eth0 172.29.0.3 ─ mdkB ┘
//! ```
//!
//! The same by hand, once: `ip link add minidocker0 type bridge; ip addr
//! add 172.29.0.1/16 dev minidocker0; ip link set minidocker0 up; sysctl
//! net.ipv4.ip_forward=1; nft ...masquerade` (see `NAT_RULES`); then per
//! container: `ip link add mdkR type veth peer name eth0 netns C; ip link
//! set mdkR master minidocker0 up`, and inside, chapter 07's
//! configure_inside with the bridge's address as the gateway.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::unistd::Pid;

use crate::net::{Cidr, Plan};
use crate::netlink::{is_errno, Netlink};
use crate::state::Store;

pub const BRIDGE: &str = "minidocker0";
const SUBNET: Cidr = Cidr { address: Ipv4Addr::new(172, 29, 0, 0), prefix_len: 16 };
const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 29, 0, 1);
/// Host ends are `mdk` + the runtime's PID: unique while it runs, and at
/// most 15 characters, the kernel's limit (IFNAMSIZ).
pub const HOST_END_PREFIX: &str = "mdk";

/// One nftables table of our own, so removing it removes exactly what we
/// added and nothing of the host's firewall.
const NAT_TABLE: &str = "mini_docker";
const NAT_RULES: &str = "table ip mini_docker {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 172.29.0.0/16 oifname != \"minidocker0\" masquerade
    }
}
";

/// `--network`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Network {
    /// A veth on the minidocker0 bridge, an address, NAT to the outside
    Bridge,
    /// Only a loopback interface
    None,
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(if *self == Network::Bridge { "bridge" } else { "none" })
    }
}

/// With the store locked (the caller saves the address in the container's
/// record before unlocking): makes sure the bridge is there and picks an
/// address no live container has.
pub fn plan(store: &Store) -> Result<Plan> {
    ensure_bridge()?;
    let taken: Vec<Ipv4Addr> = store.all().iter().filter(|r| r.is_active()).filter_map(|r| r.ip).collect();
    let first = u32::from(GATEWAY) + 1;
    let last = u32::from(SUBNET.address) | !(u32::MAX << (32 - SUBNET.prefix_len));
    let Some(address) = (first..last).map(Ipv4Addr::from).find(|a| !taken.contains(a)) else {
        bail!("no free address left in {}/{}: stop some containers", SUBNET.address, SUBNET.prefix_len);
    };
    Ok(Plan {
        host_interface: format!("{HOST_END_PREFIX}{}", std::process::id()),
        host_address: GATEWAY,
        container: Cidr { address, prefix_len: SUBNET.prefix_len },
    })
}

/// The bridge, its address, forwarding and NAT: made by the first
/// container that needs them, then left for the next (like docker0).
fn ensure_bridge() -> Result<()> {
    if std::path::Path::new("/sys/class/net").join(BRIDGE).exists() {
        return Ok(());
    }
    let mut netlink = Netlink::open()?;
    netlink.create_bridge(BRIDGE, random_mac()?)?;
    let made = add_gateway(&mut netlink).and_then(|()| enable_forwarding()).and_then(|()| add_nat_rules());
    if let Err(err) = made {
        // Leave nothing half made: the next run starts over.
        let _ = netlink.delete_link(BRIDGE);
        return Err(err);
    }
    Ok(())
}

/// A random MAC address, unicast and locally administered (bits 0 and 1
/// of the first byte), as docker gives docker0.
fn random_mac() -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut mac)).context("reading /dev/urandom")?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

fn add_gateway(netlink: &mut Netlink) -> Result<()> {
    match netlink.add_address(BRIDGE, GATEWAY, SUBNET.prefix_len) {
        Err(err) if is_errno(&err, libc::EEXIST) => {}
        result => result?,
    }
    netlink.set_up(BRIDGE)
}

/// Without it the host drops packets that are not addressed to itself
/// instead of routing them on.
fn enable_forwarding() -> Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").context("enabling IP forwarding (net.ipv4.ip_forward=1)")
}

/// `nft -f -` with NAT_RULES. One of two places mini-docker runs a program
/// (prune's `nft delete table` is the other): nftables' netlink messages
/// are a language of their own, and this runs once per bridge, not once
/// per container.
fn add_nat_rules() -> Result<()> {
    let script = format!("add table ip {NAT_TABLE}\nflush table ip {NAT_TABLE}\n{NAT_RULES}");
    let spawned = Command::new("nft").args(["-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn();
    let mut nft = match spawned {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            bail!("bridge networking needs nft for its NAT rule: install nftables (apt install nftables), or use --network none")
        }
        Err(err) => return Err(err).context("running nft"),
    };
    if let Some(mut stdin) = nft.stdin.take() {
        stdin.write_all(script.as_bytes()).context("writing to nft")?;
    }
    let out = nft.wait_with_output().context("running nft")?;
    if !out.status.success() {
        bail!("nft refused the NAT rule: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// In the parent, while the child waits: its veth, plugged into the bridge.
pub fn connect(child: Pid, plan: &Plan) -> Result<()> {
    // STUDENT 09: with a Netlink: create the veth pair (plan.host_interface, "eth0" in the child's namespace), attach the host end to BRIDGE, and set it up.
    let mut netlink = Netlink::open()?;
    netlink.create_veth_pair(&plan.host_interface, "eth0", child.as_raw() as u32)?;
    netlink.attach_to_bridge(&plan.host_interface, BRIDGE)?;
    netlink.set_up(&plan.host_interface)
    // STUDENT END
}

/// In the child, for --network bridge: chapter 07's set-up, with eth0's
/// MAC made from its address (02:42 and the four bytes, as docker does). A
/// later container that gets the same address then has the same MAC, and
/// the host's ARP cache, which still holds the old one, stays right.
pub fn configure_inside(plan: &Plan) -> Result<()> {
    let [a, b, c, d] = plan.container.address.octets();
    Netlink::open()?.set_mac("eth0", [0x02, 0x42, a, b, c, d])?;
    crate::net::configure_inside(plan)
}

/// In the child, for --network none: a network namespace with only `lo`.
pub fn loopback_only() -> Result<()> {
    Netlink::open()?.set_up("lo")
}

/// For `prune`, when no container is left: the bridge and the NAT table.
/// IP forwarding stays on, as docker leaves it: other software may rely on it.
pub fn remove_network() -> Result<()> {
    if std::path::Path::new("/sys/class/net").join(BRIDGE).exists() {
        Netlink::open()?.delete_link(BRIDGE)?;
    }
    // Absent already (or no nft at all) is fine: there is nothing to remove.
    let _ = Command::new("nft").args(["delete", "table", "ip", NAT_TABLE]).stderr(Stdio::null()).status();
    Ok(())
}

/// For `prune`: a host end left behind (normally it dies with the container).
pub fn remove_host_end(name: &str) -> Result<()> {
    if std::path::Path::new("/sys/class/net").join(name).exists() {
        Netlink::open()?.delete_link(name)?;
    }
    Ok(())
}

/// Bridge networking touches the host's interfaces and firewall: root only.
pub fn require_root(network: Network) -> Result<()> {
    if network == Network::Bridge && !nix::unistd::geteuid().is_root() {
        bail!("--network bridge needs root (it adds a veth and a bridge on the host); run with sudo, or use --network none to run rootless");
    }
    Ok(())
}
