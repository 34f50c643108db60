//! A small synchronous rtnetlink client: one request, one acknowledgement.
//! It is what `ip link`, `ip addr` and `ip route` do underneath
//! (rtnetlink(7), netlink(7)). Each function names the `ip` command it
//! replaces.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{bail, Context, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// A routing-netlink socket in the network namespace of its creator.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    pub fn open() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
        socket.bind_auto().context("binding the netlink socket")?;
        socket.connect(&SocketAddr::new(0, 0)).context("connecting the netlink socket")?;
        Ok(Netlink { socket, sequence: 0 })
    }

    /// `ip link add HOST type veth peer name PEER netns PID`: both ends at
    /// once, the peer created directly in the namespace of process PID, so
    /// its name never exists on the host to clash.
    pub fn create_veth_pair(&mut self, host: &str, peer: &str, peer_netns_pid: u32) -> Result<()> {
        // STUDENT 07: build a LinkMessage named `host` whose LinkInfo is Kind(InfoKind::Veth) and Data(InfoData::Veth(InfoVeth::Peer(peer_message))), where the peer message carries IfName(peer) and NetNsPid(peer_netns_pid); send it with NLM_F_CREATE | NLM_F_EXCL.
        let mut peer_message = LinkMessage::default();
        peer_message.attributes = vec![LinkAttribute::IfName(peer.into()), LinkAttribute::NetNsPid(peer_netns_pid)];
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(host.into()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
            ]),
        ];
        self.request(RouteNetlinkMessage::NewLink(message), NLM_F_CREATE | NLM_F_EXCL)
            .with_context(|| format!("creating the veth pair {host} <-> {peer}"))
        // STUDENT END
    }

    /// `ip link set NAME up`.
    pub fn set_up(&mut self, name: &str) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        message.attributes = vec![LinkAttribute::IfName(name.into())];
        self.request(RouteNetlinkMessage::SetLink(message), 0).with_context(|| format!("setting {name} up"))
    }

    /// `ip addr add ADDRESS/PREFIX dev NAME`.
    pub fn add_address(&mut self, name: &str, address: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix_len;
        message.header.index = self.index_of(name)?;
        message.attributes = vec![AddressAttribute::Local(IpAddr::V4(address)), AddressAttribute::Address(IpAddr::V4(address))];
        self.request(RouteNetlinkMessage::NewAddress(message), NLM_F_CREATE | NLM_F_EXCL)
            .with_context(|| format!("adding {address}/{prefix_len} to {name}"))
    }

    /// `ip route add default via GATEWAY dev NAME`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr, name: &str) -> Result<()> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(gateway)), RouteAttribute::Oif(self.index_of(name)?)];
        self.request(RouteNetlinkMessage::NewRoute(message), NLM_F_CREATE | NLM_F_EXCL)
            .with_context(|| format!("adding a default route via {gateway}"))
    }

    /// `ip link add NAME address MAC type bridge`: a virtual switch. With
    /// no MAC of its own a bridge takes its ports' lowest one, which changes
    /// as containers come and go, and the containers' ARP caches go stale.
    /// Already there is fine (another runtime may have made it).
    pub fn create_bridge(&mut self, name: &str, mac: [u8; 6]) -> Result<()> {
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        match self.request(RouteNetlinkMessage::NewLink(message), NLM_F_CREATE | NLM_F_EXCL) {
            Err(err) if is_errno(&err, libc::EEXIST) => Ok(()),
            result => result.with_context(|| format!("creating the bridge {name}")),
        }
    }

    /// `ip link set NAME address MAC`.
    pub fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> Result<()> {
        let mut message = LinkMessage::default();
        message.attributes = vec![LinkAttribute::IfName(name.into()), LinkAttribute::Address(mac.to_vec())];
        self.request(RouteNetlinkMessage::SetLink(message), 0).with_context(|| format!("setting the MAC address of {name}"))
    }

    /// `ip link set NAME master BRIDGE`: plugs an interface into a bridge.
    pub fn attach_to_bridge(&mut self, name: &str, bridge: &str) -> Result<()> {
        let mut message = LinkMessage::default();
        message.attributes = vec![LinkAttribute::IfName(name.into()), LinkAttribute::Controller(self.index_of(bridge)?)];
        self.request(RouteNetlinkMessage::SetLink(message), 0).with_context(|| format!("attaching {name} to {bridge}"))
    }

    /// `ip link delete NAME`. Gone already is fine.
    pub fn delete_link(&mut self, name: &str) -> Result<()> {
        let mut message = LinkMessage::default();
        message.attributes = vec![LinkAttribute::IfName(name.into())];
        match self.request(RouteNetlinkMessage::DelLink(message), 0) {
            Err(err) if is_errno(&err, libc::ENODEV) => Ok(()),
            result => result.with_context(|| format!("deleting {name}")),
        }
    }

    /// The interface index of NAME (`ip link show NAME`).
    fn index_of(&mut self, name: &str) -> Result<u32> {
        let mut message = LinkMessage::default();
        message.attributes = vec![LinkAttribute::IfName(name.into())];
        match self.exchange(RouteNetlinkMessage::GetLink(message), 0)? {
            Some(RouteNetlinkMessage::NewLink(link)) => Ok(link.header.index),
            _ => bail!("no interface named {name}"),
        }
    }

    /// Sends a request that expects only an acknowledgement.
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16) -> Result<()> {
        self.exchange(message, flags | NLM_F_ACK).map(drop)
    }

    /// Sends one request and reads until its answer: a message, an
    /// acknowledgement (None) or an error (the errno the kernel returned).
    fn exchange(&mut self, message: RouteNetlinkMessage, flags: u16) -> Result<Option<RouteNetlinkMessage>> {
        self.sequence += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buffer = vec![0; packet.buffer_len()];
        packet.serialize(&mut buffer);
        self.socket.send(&buffer, 0).context("sending to netlink")?;
        let mut reply = vec![0; 16 * 1024];
        loop {
            let size = self.socket.recv(&mut &mut reply[..], 0).context("reading from netlink")?;
            let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[..size]).context("parsing netlink's answer")?;
            if answer.header.sequence_number != self.sequence {
                continue;
            }
            return match answer.payload {
                NetlinkPayload::Error(error) if error.code.is_some() => Err(error.to_io().into()),
                NetlinkPayload::Error(_) => Ok(None),
                NetlinkPayload::InnerMessage(inner) => Ok(Some(inner)),
                _ => Ok(None),
            };
        }
    }
}

/// Whether `err` is, underneath its context, the kernel's errno `code`.
pub fn is_errno(err: &anyhow::Error, code: i32) -> bool {
    err.chain().any(|cause| cause.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error) == Some(code))
}
