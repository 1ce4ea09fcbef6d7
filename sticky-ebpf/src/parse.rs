//! Bounds-checked header access and the classification of a frame: Ethernet -> IPv4 -> TCP.
//!
//! Every header read goes through [`header`], which checks the header ends before `data_end`: the
//! verifier rejects any packet access it cannot prove in bounds. What this path does not handle ends
//! in an [`Action`] that passes it to the stack untouched, with a reason; what is malformed, in one
//! that drops it, with a reason.

use aya_ebpf::programs::{TcContext, XdpContext};
use aya_log_ebpf::debug;
use network_types::{
    eth::{EthHdr, EtherType},
    ip::Ipv4Hdr,
    tcp::TcpHdr,
};
use sticky_common::{Counter, FlowKey, flow::IPPROTO_TCP};

use crate::{action::Action, stats::count};

/// The longest header stack we parse: Ethernet, IPv4 with 40 bytes of options, TCP with 40 bytes of options.
pub const MAX_HEADERS_LEN: usize = EthHdr::LEN + 60 + 60;

/// Offset of the IPv4 header (after an untagged Ethernet header).
pub const IP_OFF: usize = EthHdr::LEN;
/// Offset of the TCP header: the L4 path only takes IPv4 headers without options.
pub const TCP_OFF: usize = IP_OFF + Ipv4Hdr::LEN;

/// TCP flag bits (byte 13 of the TCP header).
pub mod tcp_flags {
    /// FIN: the sender has no more data.
    pub const FIN: u8 = 0x01;
    /// SYN: synchronise sequence numbers (connection start).
    pub const SYN: u8 = 0x02;
    /// RST: reset the connection.
    pub const RST: u8 = 0x04;
    /// ACK: the acknowledgment number is valid.
    pub const ACK: u8 = 0x10;
}

/// An IPv4 TCP segment the L4 path handles: its 5-tuple as on the wire, and its flags.
#[derive(Clone, Copy)]
pub struct Tcp4 {
    /// Addresses and ports in network byte order.
    pub key: FlowKey,
    /// The TCP flags byte ([`tcp_flags`]).
    pub flags: u8,
}

impl Tcp4 {
    /// SYN without ACK: a client opening a connection.
    #[inline(always)]
    pub fn is_syn(&self) -> bool {
        self.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
    }
    /// ACK without SYN or RST: the handshake's last step, or any later segment.
    #[inline(always)]
    pub fn is_plain_ack(&self) -> bool {
        self.flags & (tcp_flags::SYN | tcp_flags::RST | tcp_flags::ACK) == tcp_flags::ACK
    }
    /// FIN set.
    #[inline(always)]
    pub fn is_fin(&self) -> bool {
        self.flags & tcp_flags::FIN != 0
    }
    /// RST set.
    #[inline(always)]
    pub fn is_rst(&self) -> bool {
        self.flags & tcp_flags::RST != 0
    }
}
/// IPv4 `frags` field, host order: the More-Fragments flag and the fragment offset.
const IP_MF_AND_OFFSET: u16 = 0x3fff;

/// A program context with direct packet access.
pub trait Frame: aya_ebpf::EbpfContext {
    /// Address of the first byte of the frame.
    fn start(&self) -> usize;
    /// Address one past the last byte the program may read.
    fn end(&self) -> usize;
}

impl Frame for TcContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }
}

impl Frame for XdpContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }
}

/// A pointer to a `T` at `offset` bytes into the frame, or `None` if the frame ends before the `T` does.
#[inline(always)]
fn header<F: Frame, T>(frame: &F, offset: usize) -> Option<*const T> {
    let start = frame.start() + offset;
    if start + size_of::<T>() > frame.end() {
        return None;
    }
    Some(start as *const T)
}

/// Counts the frame as seen and classifies it: an IPv4 TCP segment for the L4 path (counted as
/// `TcpV4`, a class), or the final action for anything else, which the entry point counts.
#[inline(always)]
pub fn classify<F: Frame>(frame: &F) -> Result<Tcp4, Action> {
    count(Counter::Seen);
    let parsed = parse_tcp4(frame);
    match parsed {
        Ok(_) => count(Counter::TcpV4),
        // Rare by construction (malformed frames): one ring-buffer record each, filtered by AYA_LOG_LEVEL.
        Err(Action::Drop(reason)) => debug!(frame, "dropped malformed frame: reason {}", reason.index()),
        Err(_) => {}
    }
    parsed
}

/// Walks Ethernet -> IPv4 -> TCP; `Err` carries the pass or drop action for anything else.
#[inline(always)]
fn parse_tcp4<F: Frame>(frame: &F) -> Result<Tcp4, Action> {
    let eth: *const EthHdr = header(frame, 0).ok_or(Action::Drop(Counter::DropTruncated))?;
    // SAFETY: `header` checked that the whole EthHdr lies inside the frame.
    let ether_type = unsafe { (*eth).ether_type };
    if ether_type == EtherType::Ipv6 as u16 {
        return Err(Action::Pass(Counter::PassIpv6));
    }
    if ether_type != EtherType::Ipv4 as u16 {
        return Err(Action::Pass(Counter::PassNotIp));
    }

    let ip: *const Ipv4Hdr = header(frame, EthHdr::LEN).ok_or(Action::Drop(Counter::DropTruncated))?;
    // SAFETY: `header` checked that the whole fixed Ipv4Hdr lies inside the frame.
    let (vihl, tot_len, frags, proto, src_addr, dst_addr) = unsafe {
        (
            (*ip).vihl,
            u16::from_be_bytes((*ip).tot_len),
            u16::from_be_bytes((*ip).frags),
            (*ip).proto,
            u32::from_ne_bytes((*ip).src_addr),
            u32::from_ne_bytes((*ip).dst_addr),
        )
    };
    let ip_header_len = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ip_header_len < Ipv4Hdr::LEN || usize::from(tot_len) < ip_header_len {
        return Err(Action::Drop(Counter::DropBadIpHeader));
    }
    if frags & IP_MF_AND_OFFSET != 0 {
        return Err(Action::Pass(Counter::PassFragment));
    }
    if proto != IPPROTO_TCP {
        return Err(Action::Pass(Counter::PassNotTcp));
    }
    if ip_header_len != Ipv4Hdr::LEN {
        return Err(Action::Pass(Counter::PassIpOptions));
    }

    let tcp: *const TcpHdr = header(frame, TCP_OFF).ok_or(Action::Drop(Counter::DropTruncated))?;
    // SAFETY: `header` checked that the whole fixed TcpHdr lies inside the frame.
    let (tcp_header_len, src_port, dst_port, flags) = unsafe {
        (
            usize::from((*tcp).doff()) * 4,
            u16::from_ne_bytes((*tcp).source),
            u16::from_ne_bytes((*tcp).dest),
            *(tcp as *const u8).add(13),
        )
    };
    if tcp_header_len < TcpHdr::LEN || Ipv4Hdr::LEN + tcp_header_len > usize::from(tot_len) {
        return Err(Action::Drop(Counter::DropBadTcpHeader));
    }
    Ok(Tcp4 { key: FlowKey::tcp(src_addr, dst_addr, src_port, dst_port), flags })
}
