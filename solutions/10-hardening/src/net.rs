//! Layer 07, the network namespace: interfaces, addresses, routes, ports
//! and /proc/net of its own (network_namespaces(7)), joined to the host by
//! a veth pair (veth(4)): two interfaces that are the ends of one cable.
//!
//! The same thing with iproute2, for a container whose runtime has PID R
//! and whose child has host PID C:
//!
//! ```text
//! ip link add ctlabR type veth peer name eth0 netns C    # parent
//! ip addr add 10.200.A.B/30 dev ctlabR && ip link set ctlabR up
//! ip link set lo up && ip link set eth0 up               # child, inside
//! ip addr add 10.200.A.B+1/30 dev eth0
//! ip route add default via 10.200.A.B
//! ```
//!
//! Nothing deletes the pair: when the container's last process exits, its
//! network namespace goes, taking eth0 and so its peer on the host with it.

use std::net::Ipv4Addr;

use anyhow::{bail, Result};
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::netlink::Netlink;

/// The container's end, inside its namespace.
const CONTAINER_INTERFACE: &str = "eth0";
/// Default subnets are /30s carved out of 10.200.0.0/16.
const DEFAULT_BASE: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 0);

/// The clone(2) flag that gives the child its own network stack.
pub fn clone_flag() -> CloneFlags {
    // STUDENT 07: return the CloneFlags bit for a new network namespace (see clone(2), "CLONE_NEWNET").
    CloneFlags::CLONE_NEWNET
    // STUDENT END
}

/// An IPv4 address with its prefix length, as `--ip` takes it.
#[derive(Clone, Copy, Debug)]
pub struct Cidr {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
}

/// clap's check of `--ip ADDR/PREFIX`: a host address in a subnet with room
/// for a second one (the host end), so /1 to /30.
pub fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let (address, prefix) = text.split_once('/').ok_or("write it as ADDRESS/PREFIX, e.g. 10.10.0.2/24")?;
    let address: Ipv4Addr = address.parse().map_err(|_| format!("{address:?} is not an IPv4 address"))?;
    let prefix_len: u8 = prefix.parse().map_err(|_| format!("{prefix:?} is not a prefix length"))?;
    if !(1..=30).contains(&prefix_len) {
        return Err("the prefix must be 1 to 30, so the subnet holds the host end too".into());
    }
    let cidr = Cidr { address, prefix_len };
    if address == cidr.network() || address == cidr.broadcast() {
        return Err(format!("{address} is the subnet's network or broadcast address; pick a host address"));
    }
    Ok(cidr)
}

impl Cidr {
    fn mask(self) -> u32 {
        u32::MAX << (32 - self.prefix_len)
    }

    fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & self.mask())
    }

    fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) | !self.mask())
    }
}

/// Who gets which name and address.
#[derive(Clone, Debug)]
pub struct Plan {
    pub host_interface: String,
    pub host_address: Ipv4Addr,
    pub container: Cidr,
}

impl Plan {
    /// The container gets `ip` (or a /30 picked by the runtime's PID, so
    /// containers started together differ) and the host end the subnet's
    /// first other address. The host end is named after the runtime's PID:
    /// unique while it runs.
    pub fn new(ip: Option<Cidr>) -> Plan {
        let runtime = std::process::id();
        let container = ip.unwrap_or_else(|| {
            let block = u32::from(DEFAULT_BASE) + (runtime % 16384) * 4;
            Cidr { address: Ipv4Addr::from(block + 2), prefix_len: 30 }
        });
        let first = u32::from(container.network()) + 1;
        let host = if first == u32::from(container.address) { first + 1 } else { first };
        Plan { host_interface: format!("ctlab{runtime}"), host_address: Ipv4Addr::from(host), container }
    }
}

/// A veth pair needs CAP_NET_ADMIN in the host's network namespace, which
/// no user namespace can give: say so before doing anything.
pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("a network namespace wired to the host needs root: the veth's host end takes CAP_NET_ADMIN in the host's namespace; run it with sudo (rootless containers use slirp4netns or pasta instead)");
    }
    Ok(())
}

/// In the parent, while the child waits: creates the pair with its peer
/// already in the child's namespace, and sets up the host end.
pub fn connect_to_host(child: Pid, plan: &Plan) -> Result<()> {
    // STUDENT 07: open a Netlink, create_veth_pair(host_interface, CONTAINER_INTERFACE, child's PID), then give the host end host_address with the container's prefix length and set it up.
    let mut netlink = Netlink::open()?;
    netlink.create_veth_pair(&plan.host_interface, CONTAINER_INTERFACE, child.as_raw() as u32)?;
    netlink.add_address(&plan.host_interface, plan.host_address, plan.container.prefix_len)?;
    netlink.set_up(&plan.host_interface)
    // STUDENT END
}

/// In the child, inside its network namespace: loopback up, the address on
/// eth0, and the host end as the default gateway.
pub fn configure_inside(plan: &Plan) -> Result<()> {
    // STUDENT 07: with a Netlink opened here (so inside the new namespace), set "lo" up, add the container address to eth0, set eth0 up, and add a default route via the host end.
    let mut netlink = Netlink::open()?;
    netlink.set_up("lo")?;
    netlink.add_address(CONTAINER_INTERFACE, plan.container.address, plan.container.prefix_len)?;
    netlink.set_up(CONTAINER_INTERFACE)?;
    netlink.add_default_route(plan.host_address, CONTAINER_INTERFACE)
    // STUDENT END
}
