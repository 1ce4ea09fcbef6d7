//! Crafted Ethernet frames for `BPF_PROG_TEST_RUN` tests, with correct IPv4 and TCP checksums
//! (etherparse computes them), and the parsed view of a program's output frame.

use std::net::{SocketAddrV4, SocketAddrV6};

use etherparse::{
    EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, Ipv4Options, Ipv6FlowLabel, Ipv6Header, TcpHeader,
    UdpHeader,
};

/// Source MAC of crafted frames.
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Destination MAC of crafted frames.
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Builds one IPv4 TCP frame: `Tcp4::new(src, dst).syn().build()`.
#[derive(Clone, Debug)]
pub struct Tcp4 {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    tcp: TcpHeader,
    payload: Vec<u8>,
    ip_options: Vec<u8>,
    more_fragments: bool,
    fragment_offset: u16,
}

impl Tcp4 {
    /// A bare segment (no flags) from `src` to `dst`.
    #[must_use]
    pub fn new(src: SocketAddrV4, dst: SocketAddrV4) -> Self {
        Self {
            src,
            dst,
            tcp: TcpHeader::new(src.port(), dst.port(), 1000, 64240),
            payload: Vec::new(),
            ip_options: Vec::new(),
            more_fragments: false,
            fragment_offset: 0,
        }
    }

    /// Sets SYN.
    #[must_use]
    pub fn syn(mut self) -> Self {
        self.tcp.syn = true;
        self
    }

    /// Sets ACK with acknowledgment number `ack`.
    #[must_use]
    pub fn ack(mut self, ack: u32) -> Self {
        self.tcp.ack = true;
        self.tcp.acknowledgment_number = ack;
        self
    }

    /// Sets FIN.
    #[must_use]
    pub fn fin(mut self) -> Self {
        self.tcp.fin = true;
        self
    }

    /// Sets RST.
    #[must_use]
    pub fn rst(mut self) -> Self {
        self.tcp.rst = true;
        self
    }

    /// Sets the payload.
    #[must_use]
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// Adds IPv4 options: a multiple of 4 bytes, at most 40.
    ///
    /// # Panics
    /// `options` is not a multiple of 4 bytes, or longer than 40.
    #[must_use]
    pub fn ip_options(mut self, options: &[u8]) -> Self {
        assert!(
            options.len().is_multiple_of(4) && options.len() <= 40,
            "IPv4 options are 0..=40 bytes in 4-byte words"
        );
        self.ip_options = options.to_vec();
        self
    }

    /// Marks the packet as a fragment: More-Fragments set, offset in 8-byte units.
    #[must_use]
    pub fn fragment(mut self, more_fragments: bool, offset_units: u16) -> Self {
        self.more_fragments = more_fragments;
        self.fragment_offset = offset_units;
        self
    }

    /// The frame's bytes.
    ///
    /// # Panics
    /// The payload is too large for one IPv4 packet.
    #[must_use]
    pub fn build(&self) -> Vec<u8> {
        let mut tcp = self.tcp.clone();
        let mut ip = Ipv4Header::new(
            u16::try_from(tcp.header_len() + self.payload.len()).expect("payload fits"),
            64,
            IpNumber::TCP,
            self.src.ip().octets(),
            self.dst.ip().octets(),
        )
        .expect("payload fits");
        ip.options = Ipv4Options::try_from(self.ip_options.as_slice()).expect("options are valid");
        ip.set_payload_len(tcp.header_len() + self.payload.len()).expect("payload fits");
        ip.more_fragments = self.more_fragments;
        ip.dont_fragment = !self.more_fragments && self.fragment_offset == 0;
        ip.fragment_offset = IpFragOffset::try_new(self.fragment_offset).expect("offset fits 13 bits");
        ip.header_checksum = ip.calc_header_checksum();
        tcp.checksum = tcp.calc_checksum_ipv4(&ip, &self.payload).expect("payload fits");
        let mut frame = eth(EtherType::IPV4);
        frame.extend_from_slice(&ip.to_bytes());
        frame.extend_from_slice(&tcp.to_bytes());
        frame.extend_from_slice(&self.payload);
        frame
    }
}

/// An IPv4 UDP frame.
///
/// # Panics
/// The payload is too large.
#[must_use]
pub fn udp4(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let ip = {
        let mut ip = Ipv4Header::new(
            u16::try_from(UdpHeader::LEN + payload.len()).expect("payload fits"),
            64,
            IpNumber::UDP,
            src.ip().octets(),
            dst.ip().octets(),
        )
        .expect("payload fits");
        ip.header_checksum = ip.calc_header_checksum();
        ip
    };
    let udp = UdpHeader::with_ipv4_checksum(src.port(), dst.port(), &ip, payload).expect("payload fits");
    let mut frame = eth(EtherType::IPV4);
    frame.extend_from_slice(&ip.to_bytes());
    frame.extend_from_slice(&udp.to_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An IPv6 TCP SYN frame (from `2001:db8::1` to `2001:db8::2`, the IPv6 documentation range).
#[must_use]
pub fn tcp6_syn() -> Vec<u8> {
    let mut tcp = TcpHeader::new(40000, 80, 1000, 64240);
    tcp.syn = true;
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::default(),
        payload_length: tcp.header_len_u16(),
        next_header: IpNumber::TCP,
        hop_limit: 64,
        source: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        destination: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    };
    let mut frame = eth(EtherType::IPV6);
    frame.extend_from_slice(&ip.to_bytes());
    frame.extend_from_slice(&tcp.to_bytes());
    frame
}

/// An ARP request frame (who-has 192.0.2.1 tell 192.0.2.2).
#[must_use]
pub fn arp_request() -> Vec<u8> {
    let mut frame = eth(EtherType::ARP);
    frame.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&SRC_MAC);
    frame.extend_from_slice(&[192, 0, 2, 2]);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&[192, 0, 2, 1]);
    frame
}

fn eth(ether_type: EtherType) -> Vec<u8> {
    let header = Ethernet2Header { source: SRC_MAC, destination: DST_MAC, ether_type };
    header.to_bytes().to_vec()
}

/// Builds one IPv6 TCP frame, optionally with extension headers between the IPv6 and TCP headers:
/// `Tcp6::new(src, dst).ext(0, 8, 0).syn().build()`.
#[derive(Clone, Debug)]
pub struct Tcp6 {
    src: SocketAddrV6,
    dst: SocketAddrV6,
    tcp: TcpHeader,
    payload: Vec<u8>,
    /// (next-header value of this extension header, its length in bytes, routing segments left).
    exts: Vec<(u8, usize, u8)>,
}

impl Tcp6 {
    /// A bare segment (no flags) from `src` to `dst`.
    #[must_use]
    pub fn new(src: SocketAddrV6, dst: SocketAddrV6) -> Self {
        Self {
            src,
            dst,
            tcp: TcpHeader::new(src.port(), dst.port(), 1000, 64240),
            payload: Vec::new(),
            exts: Vec::new(),
        }
    }

    /// Sets SYN.
    #[must_use]
    pub fn syn(mut self) -> Self {
        self.tcp.syn = true;
        self
    }

    /// Sets ACK with acknowledgment number `ack`.
    #[must_use]
    pub fn ack(mut self, ack: u32) -> Self {
        self.tcp.ack = true;
        self.tcp.acknowledgment_number = ack;
        self
    }

    /// Sets RST.
    #[must_use]
    pub fn rst(mut self) -> Self {
        self.tcp.rst = true;
        self
    }

    /// Sets the payload.
    #[must_use]
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// Appends an extension header of type `kind` (0 hop-by-hop, 43 routing, 44 fragment, 60
    /// destination options, ...) of `len` bytes (a multiple of 8, at least 8); for a routing header,
    /// `segments_left` goes into its 4th byte. Padding is PadN/zero, which the parser never reads.
    ///
    /// # Panics
    /// `len` is not a multiple of 8 in 8..=2048.
    #[must_use]
    pub fn ext(mut self, kind: u8, len: usize, segments_left: u8) -> Self {
        assert!(len.is_multiple_of(8) && (8..=2048).contains(&len), "extension headers are 8..=2048 bytes in 8s");
        self.exts.push((kind, len, segments_left));
        self
    }

    /// The frame's bytes, with a valid TCP checksum (the pseudo-header uses the IPv6 header's
    /// addresses: no routing header here has segments left to change the final destination).
    ///
    /// # Panics
    /// The payload is too large.
    #[must_use]
    pub fn build(&self) -> Vec<u8> {
        let mut tcp = self.tcp.clone();
        let ext_len: usize = self.exts.iter().map(|e| e.1).sum();
        let mut ip = Ipv6Header {
            traffic_class: 0,
            flow_label: Ipv6FlowLabel::default(),
            payload_length: u16::try_from(ext_len + tcp.header_len() + self.payload.len()).expect("payload fits"),
            next_header: IpNumber::TCP,
            hop_limit: 64,
            source: self.src.ip().octets(),
            destination: self.dst.ip().octets(),
        };
        tcp.checksum = tcp.calc_checksum_ipv6(&ip, &self.payload).expect("payload fits");
        if let Some(first) = self.exts.first() {
            ip.next_header = IpNumber(first.0);
        }
        let mut frame = eth(EtherType::IPV6);
        frame.extend_from_slice(&ip.to_bytes());
        for (i, &(kind, len, segments_left)) in self.exts.iter().enumerate() {
            let next = self.exts.get(i + 1).map_or(6, |e| e.0);
            let mut h = vec![0u8; len];
            h[0] = next;
            h[1] = u8::try_from(len / 8 - 1).expect("at most 2048 bytes");
            if kind == 43 {
                h[3] = segments_left;
            } else if kind != 44 {
                // PadN over the rest: option type 1, length.
                h[2] = 1;
                h[3] = u8::try_from(len - 4).unwrap_or(u8::MAX);
            }
            frame.extend_from_slice(&h);
        }
        frame.extend_from_slice(&tcp.to_bytes());
        frame.extend_from_slice(&self.payload);
        frame
    }
}

/// An IPv6 UDP frame.
///
/// # Panics
/// The payload is too large.
#[must_use]
pub fn udp6(src: SocketAddrV6, dst: SocketAddrV6, payload: &[u8]) -> Vec<u8> {
    let udp = UdpHeader::with_ipv6_checksum(
        src.port(),
        dst.port(),
        &Ipv6Header {
            traffic_class: 0,
            flow_label: Ipv6FlowLabel::default(),
            payload_length: u16::try_from(8 + payload.len()).expect("payload fits"),
            next_header: IpNumber::UDP,
            hop_limit: 64,
            source: src.ip().octets(),
            destination: dst.ip().octets(),
        },
        payload,
    )
    .expect("payload fits");
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::default(),
        payload_length: u16::try_from(8 + payload.len()).expect("payload fits"),
        next_header: IpNumber::UDP,
        hop_limit: 64,
        source: src.ip().octets(),
        destination: dst.ip().octets(),
    };
    let mut frame = eth(EtherType::IPV6);
    frame.extend_from_slice(&ip.to_bytes());
    frame.extend_from_slice(&udp.to_bytes());
    frame.extend_from_slice(payload);
    frame
}
