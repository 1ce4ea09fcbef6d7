//! Bounds-checked header access and the classification of a frame: Ethernet -> IPv4 -> TCP.
//!
//! Every header read goes through [`header`], which checks the header ends before `data_end`: the
//! verifier rejects any packet access it cannot prove in bounds. What this path does not handle is
//! passed to the stack untouched with a reason; what is malformed is dropped with a reason.

use aya_ebpf::programs::{TcContext, XdpContext};
use aya_log_ebpf::debug;
use network_types::{
    eth::{EthHdr, EtherType},
    ip::Ipv4Hdr,
    tcp::TcpHdr,
};
use sticky_common::Counter;

use crate::stats::count;

/// The longest header stack we parse: Ethernet, IPv4 with 40 bytes of options, TCP with 40 bytes of options.
pub const MAX_HEADERS_LEN: usize = EthHdr::LEN + 60 + 60;

/// IPv4 protocol number of TCP.
const IPPROTO_TCP: u8 = 6;
/// IPv4 `frags` field, host order: the More-Fragments flag and the fragment offset.
const IP_MF_AND_OFFSET: u16 = 0x3fff;

/// What a program does with a frame, and the counter that records it.
#[derive(Clone, Copy)]
pub enum Verdict {
    /// An IPv4 TCP segment with sane headers: the L4 path's traffic.
    Tcp,
    /// Not ours: hand it to the stack untouched.
    Pass(Counter),
    /// Malformed: drop it.
    Drop(Counter),
}

impl Verdict {
    const fn counter(self) -> Counter {
        match self {
            Self::Tcp => Counter::TcpV4,
            Self::Pass(c) | Self::Drop(c) => c,
        }
    }
}

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

/// Counts the frame as seen, classifies it, counts the verdict's reason and returns the verdict.
#[inline(always)]
pub fn classify<F: Frame>(frame: &F) -> Verdict {
    count(Counter::Seen);
    let verdict = match parse_tcp4(frame) {
        Ok(()) => Verdict::Tcp,
        Err(verdict) => verdict,
    };
    let counter = verdict.counter();
    count(counter);
    if let Verdict::Drop(_) = verdict {
        // Rare by construction (malformed frames): one ring-buffer record each, filtered by AYA_LOG_LEVEL.
        debug!(frame, "dropped malformed frame: reason {}", counter.index());
    }
    verdict
}

/// Walks Ethernet -> IPv4 -> TCP; `Err` carries the pass or drop verdict for anything else.
#[inline(always)]
fn parse_tcp4<F: Frame>(frame: &F) -> Result<(), Verdict> {
    let eth: *const EthHdr = header(frame, 0).ok_or(Verdict::Drop(Counter::DropTruncated))?;
    // SAFETY: `header` checked that the whole EthHdr lies inside the frame.
    let ether_type = unsafe { (*eth).ether_type };
    if ether_type == EtherType::Ipv6 as u16 {
        return Err(Verdict::Pass(Counter::PassIpv6));
    }
    if ether_type != EtherType::Ipv4 as u16 {
        return Err(Verdict::Pass(Counter::PassNotIp));
    }

    let ip: *const Ipv4Hdr = header(frame, EthHdr::LEN).ok_or(Verdict::Drop(Counter::DropTruncated))?;
    // SAFETY: `header` checked that the whole fixed Ipv4Hdr lies inside the frame.
    let (vihl, tot_len, frags, proto) =
        unsafe { ((*ip).vihl, u16::from_be_bytes((*ip).tot_len), u16::from_be_bytes((*ip).frags), (*ip).proto) };
    let ip_header_len = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ip_header_len < Ipv4Hdr::LEN || usize::from(tot_len) < ip_header_len {
        return Err(Verdict::Drop(Counter::DropBadIpHeader));
    }
    if frags & IP_MF_AND_OFFSET != 0 {
        return Err(Verdict::Pass(Counter::PassFragment));
    }
    if proto != IPPROTO_TCP {
        return Err(Verdict::Pass(Counter::PassNotTcp));
    }
    if ip_header_len != Ipv4Hdr::LEN {
        return Err(Verdict::Pass(Counter::PassIpOptions));
    }

    let tcp_off = EthHdr::LEN + Ipv4Hdr::LEN;
    let tcp: *const TcpHdr = header(frame, tcp_off).ok_or(Verdict::Drop(Counter::DropTruncated))?;
    // SAFETY: `header` checked that the whole fixed TcpHdr lies inside the frame.
    let tcp_header_len = usize::from(unsafe { (*tcp).doff() }) * 4;
    if tcp_header_len < TcpHdr::LEN || Ipv4Hdr::LEN + tcp_header_len > usize::from(tot_len) {
        return Err(Verdict::Drop(Counter::DropBadTcpHeader));
    }
    Ok(())
}
