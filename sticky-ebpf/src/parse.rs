//! Bounds-checked header access and the classification of a frame: Ethernet -> IPv4 -> TCP, or
//! Ethernet -> IPv6 -> at most 4 extension headers -> TCP.
//!
//! Every header read goes through [`header`], which checks the header ends before `data_end`: the
//! verifier rejects any packet access it cannot prove in bounds. What this path does not handle ends
//! in an [`Action`] that passes it to the stack untouched, with a reason; what is malformed, in one
//! that drops it, with a reason.

use aya_ebpf::programs::{TcContext, XdpContext};
use aya_log_ebpf::debug;
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
};
use sticky_common::{Counter, FlowKeyOf, Ip6, flow::IPPROTO_TCP};

use crate::{action::Action, stats::count};

/// The longest header stack we parse: Ethernet, IPv6 with [`MAX_EXT_LEN`] bytes of extension
/// headers, TCP with 40 bytes of options (longer than IPv4 with 40 bytes of options, TCP with 40).
pub const MAX_HEADERS_LEN: usize = EthHdr::LEN + Ipv6Hdr::LEN + MAX_EXT_LEN + 60;

/// How many IPv6 extension headers the parser walks before it gives up (`PassIpv6ExtHeader`).
/// Bounded for the verifier; real TCP traffic carries none, or a hop-by-hop header, rarely more.
const MAX_EXT_HEADERS: usize = 4;
/// How many bytes of IPv6 extension headers the parser walks at most (`PassIpv6ExtHeader` beyond):
/// bounds every packet offset for the verifier and keeps the pulled header stack small.
const MAX_EXT_LEN: usize = 256;

/// IPv6 next-header values the parser knows.
mod nexthdr {
    /// Hop-by-hop options (walked).
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing header (walked when no segments are left: the destination is final).
    pub const ROUTING: u8 = 43;
    /// Fragment header (passed: `PassIpv6Fragment`).
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating security payload (passed: the TCP header is encrypted).
    pub const ESP: u8 = 50;
    /// Authentication header (passed: a rewrite would break its integrity check).
    pub const AH: u8 = 51;
    /// Destination options (walked).
    pub const DEST_OPTS: u8 = 60;
    /// Mobility header (passed).
    pub const MOBILITY: u8 = 135;
    /// Host identity protocol (passed).
    pub const HIP: u8 = 139;
    /// Shim6 (passed).
    pub const SHIM6: u8 = 140;
    /// Reserved for experiments (RFC 3692), passed.
    pub const EXPERIMENT1: u8 = 253;
    /// Reserved for experiments (RFC 3692), passed.
    pub const EXPERIMENT2: u8 = 254;
}

/// Offset of the IPv4 header (after an untagged Ethernet header).
pub const IP_OFF: usize = EthHdr::LEN;
/// Offset of the TCP header of IPv4: the L4 path only takes IPv4 headers without options.
pub const TCP_OFF: usize = IP_OFF + Ipv4Hdr::LEN;
/// End of the fixed IPv6 header: where extension headers (or TCP) start.
pub const IP6_END: usize = IP_OFF + Ipv6Hdr::LEN;

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

/// A TCP segment the L4 path handles: its 5-tuple as on the wire, its flags, and where its TCP
/// header starts. `A` is the address type: `u32` ([`Tcp4`]) or [`Ip6`] ([`Tcp6`]).
#[derive(Clone, Copy)]
pub struct TcpSeg<A> {
    /// Addresses and ports in network byte order.
    pub key: FlowKeyOf<A>,
    /// The TCP flags byte ([`tcp_flags`]).
    pub flags: u8,
    /// Offset of the TCP header in the frame ([`TCP_OFF`] for IPv4; after the extension headers for IPv6).
    pub tcp_off: usize,
}

/// An IPv4 TCP segment.
pub type Tcp4 = TcpSeg<u32>;
/// An IPv6 TCP segment.
pub type Tcp6 = TcpSeg<Ip6>;

/// The network layer of a frame, from its ethertype.
#[derive(Clone, Copy)]
pub enum L3 {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl<A> TcpSeg<A> {
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

/// Classification, step 1: counts the frame as seen and reads its ethertype: IPv4 or IPv6, or
/// the final action for anything else, which the entry point counts.
#[inline(always)]
pub fn l3<F: Frame>(frame: &F) -> Result<L3, Action> {
    count(Counter::Seen);
    let eth: *const EthHdr = header(frame, 0).ok_or(Action::Drop(Counter::DropTruncated))?;
    // SAFETY: `header` checked that the whole EthHdr lies inside the frame.
    let ether_type = unsafe { (*eth).ether_type };
    if ether_type == EtherType::Ipv6 as u16 {
        return Ok(L3::V6);
    }
    if ether_type != EtherType::Ipv4 as u16 {
        return Err(Action::Pass(Counter::PassNotIp));
    }
    Ok(L3::V4)
}

/// Classification, step 2 for IPv4: a TCP segment for the L4 path (counted as `TcpV4`, a class),
/// or the final action for anything else.
#[inline(always)]
pub fn tcp4<F: Frame>(frame: &F) -> Result<Tcp4, Action> {
    let parsed = parse_tcp4(frame);
    counted(frame, parsed.is_ok(), Counter::TcpV4, parsed.as_ref().err());
    parsed
}

/// Classification, step 2 for IPv6 (`TcpV6`).
#[inline(always)]
pub fn tcp6<F: Frame>(frame: &F) -> Result<Tcp6, Action> {
    let parsed = parse_tcp6(frame);
    counted(frame, parsed.is_ok(), Counter::TcpV6, parsed.as_ref().err());
    parsed
}

/// Counts the class of a parsed segment.
#[inline(always)]
fn counted<F: Frame>(_frame: &F, ok: bool, class: Counter, _err: Option<&Action>) {
    if ok {
        count(class);
    }
}

/// Logs a frame the parser dropped as malformed (rare by construction: one ring-buffer record
/// each, filtered by `AYA_LOG_LEVEL`). Called by the entry points, not inside the L4 call: the
/// logger's frame must not add to the IPv6 path's stack depth.
#[inline(always)]
pub fn log_malformed<F: Frame>(frame: &F, action: Action) {
    if let Action::Drop(reason @ (Counter::DropTruncated | Counter::DropBadIpHeader | Counter::DropBadTcpHeader)) =
        action
    {
        debug!(frame, "dropped malformed frame: reason {}", reason.index());
    }
}

/// IPv4 -> TCP.
#[inline(always)]
fn parse_tcp4<F: Frame>(frame: &F) -> Result<Tcp4, Action> {
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
    Ok(Tcp4 { key: FlowKeyOf::tcp(src_addr, dst_addr, src_port, dst_port), flags, tcp_off: TCP_OFF })
}

/// An IPv6 address from the packet, as words: a plain 16-byte copy (byte loads and stores, as the
/// packet gives no alignment), not `Ip6::from_octets`, whose shifts keep 16 bytes in registers and
/// spill them over the verifier's 512-byte stack frame.
#[inline(always)]
fn addr6(bytes: &[u8; 16]) -> Ip6 {
    let mut words = [0u32; 4];
    // SAFETY: both are 16 bytes, valid, and do not overlap (one is on the stack).
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), words.as_mut_ptr().cast::<u8>(), 16) };
    Ip6(words)
}

/// IPv6 -> extension headers -> TCP. Hop-by-hop, destination options and routing headers with no
/// segments left are skipped (at most [`MAX_EXT_HEADERS`], [`MAX_EXT_LEN`] bytes): they do not
/// change the 5-tuple. A fragment, a header that hides or protects the TCP header (ESP, AH) or one
/// whose layout is not the generic (next, length) pair is passed to the stack, counted by reason.
#[inline(always)]
fn parse_tcp6<F: Frame>(frame: &F) -> Result<Tcp6, Action> {
    let ip: *const Ipv6Hdr = header(frame, IP_OFF).ok_or(Action::Drop(Counter::DropTruncated))?;
    // SAFETY: `header` checked that the whole fixed Ipv6Hdr lies inside the frame.
    let (version, payload_len, mut next, src_addr, dst_addr) = unsafe {
        (
            (*ip).vcf[0] >> 4,
            usize::from(u16::from_be_bytes((*ip).payload_len)),
            (*ip).next_hdr,
            addr6(&(*ip).src_addr),
            addr6(&(*ip).dst_addr),
        )
    };
    if version != 6 {
        return Err(Action::Drop(Counter::DropBadIpHeader));
    }
    let mut ext_len = 0usize;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            IPPROTO_TCP => break,
            nexthdr::HOP_BY_HOP | nexthdr::ROUTING | nexthdr::DEST_OPTS => {
                // Generic layout: next header, length in 8-byte units after the first 8; the
                // routing header's 4th byte is its segments-left count.
                let ext: *const [u8; 4] =
                    header(frame, IP6_END + ext_len).ok_or(Action::Drop(Counter::DropTruncated))?;
                // SAFETY: `header` checked that the 4 bytes lie inside the frame.
                let (ext_next, units, segments_left) = unsafe { ((*ext)[0], (*ext)[1], (*ext)[3]) };
                if next == nexthdr::ROUTING && segments_left != 0 {
                    return Err(Action::Pass(Counter::PassIpv6ExtHeader));
                }
                ext_len += (usize::from(units) + 1) * 8;
                if ext_len > MAX_EXT_LEN {
                    return Err(Action::Pass(Counter::PassIpv6ExtHeader));
                }
                next = ext_next;
            }
            nexthdr::FRAGMENT => return Err(Action::Pass(Counter::PassIpv6Fragment)),
            nexthdr::ESP
            | nexthdr::AH
            | nexthdr::MOBILITY
            | nexthdr::HIP
            | nexthdr::SHIM6
            | nexthdr::EXPERIMENT1
            | nexthdr::EXPERIMENT2 => return Err(Action::Pass(Counter::PassIpv6ExtHeader)),
            // Any other value is an upper-layer protocol (UDP, ICMPv6, no next header, ...).
            _ => return Err(Action::Pass(Counter::PassNotTcp)),
        }
    }
    if next != IPPROTO_TCP {
        // Still an extension header after MAX_EXT_HEADERS of them.
        return Err(Action::Pass(Counter::PassIpv6ExtHeader));
    }
    // A payload length of 0 is a BIG TCP (GSO) packet whose length only the skb knows: not checked.
    if payload_len != 0 && payload_len < ext_len {
        return Err(Action::Drop(Counter::DropBadIpHeader));
    }

    let tcp_off = IP6_END + ext_len;
    let tcp: *const TcpHdr = header(frame, tcp_off).ok_or(Action::Drop(Counter::DropTruncated))?;
    // SAFETY: `header` checked that the whole fixed TcpHdr lies inside the frame.
    let (tcp_header_len, src_port, dst_port, flags) = unsafe {
        (
            usize::from((*tcp).doff()) * 4,
            u16::from_ne_bytes((*tcp).source),
            u16::from_ne_bytes((*tcp).dest),
            *(tcp as *const u8).add(13),
        )
    };
    if tcp_header_len < TcpHdr::LEN || (payload_len != 0 && ext_len + tcp_header_len > payload_len) {
        return Err(Action::Drop(Counter::DropBadTcpHeader));
    }
    Ok(Tcp6 { key: FlowKeyOf::tcp(src_addr, dst_addr, src_port, dst_port), flags, tcp_off })
}
