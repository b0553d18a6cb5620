use super::*;

fn eth(et: u16) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&et.to_be_bytes());
    f
}

fn ipv4(proto: u8, total_len: u16, frag: u16, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![
        0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    h[2..4].copy_from_slice(&total_len.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(l4);
    h
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    t
}

#[test]
fn ipv4_tcp_over_ethernet() {
    let mut f = eth(0x0800);
    f.extend(ipv4(6, 40, 0, &tcp(1234, 80, 0x02)));
    let p = parse_ethernet(&f[..], Tunnels::Outer).unwrap();
    assert_eq!(p.key.family, 4);
    assert_eq!(&p.key.src[10..], &[0xff, 0xff, 10, 0, 0, 1]);
    assert_eq!((p.key.sport, p.key.dport, p.key.proto), (1234, 80, 6));
    assert_eq!((p.ip_bytes, p.tcp_flags, p.hdr_len), (40, 0x02, 40));
    assert_eq!(p.key.vlan, NO_VLAN);
    assert_eq!(p.warn, None);
}

#[test]
fn qinq_records_outer_vlan() {
    let mut f = eth(0x88a8);
    f.extend_from_slice(&[0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x08, 0x00]);
    f.extend(ipv4(17, 28, 0, &[0, 53, 0x30, 0x39, 0, 8, 0, 0]));
    let p = parse_ethernet(&f[..], Tunnels::Outer).unwrap();
    assert_eq!(p.key.vlan, 100);
    assert_eq!((p.key.sport, p.key.dport), (53, 12345));
}

#[test]
fn non_first_fragment_has_no_ports() {
    let mut f = eth(0x0800);
    f.extend(ipv4(17, 28, 185, &[0, 53, 0x30, 0x39, 0, 8, 0, 0]));
    let p = parse_ethernet(&f[..], Tunnels::Outer).unwrap();
    assert_eq!((p.key.sport, p.key.dport, p.ip_bytes), (0, 0, 28));
}

#[test]
fn ip_bytes_come_from_header_not_frame() {
    // Snaplen-truncated capture: header says 1500, only 20+4 bytes present.
    let mut f = eth(0x0800);
    f.extend(ipv4(6, 1500, 0, &[0x04, 0xd2, 0, 80]));
    let p = parse_ethernet(&f[..], Tunnels::Outer).unwrap();
    assert_eq!(p.ip_bytes, 1500);
    assert_eq!((p.key.sport, p.key.dport), (1234, 80));
    assert_eq!(p.warn, Some(Counter::WarnTruncatedL4));
}

#[test]
fn errors_by_reason() {
    assert_eq!(
        parse_ethernet(&[0u8; 10][..], Tunnels::Outer),
        Err(ParseError::TruncatedL2)
    );
    assert_eq!(
        parse_ethernet(&eth(0x0806)[..], Tunnels::Outer),
        Err(ParseError::NonIp)
    );
    let mut f = eth(0x0800);
    f.extend_from_slice(&[0x45, 0, 0]);
    assert_eq!(
        parse_ethernet(&f[..], Tunnels::Outer),
        Err(ParseError::TruncatedIp)
    );
    let mut f = eth(0x0800);
    let mut h = ipv4(6, 40, 0, &tcp(1, 2, 0));
    h[0] = 0x43; // IHL 3
    f.extend(h);
    assert_eq!(
        parse_ethernet(&f[..], Tunnels::Outer),
        Err(ParseError::BadIpHeader)
    );
    let mut f = eth(0x0800);
    f.extend(ipv4(6, 10, 0, &tcp(1, 2, 0))); // total length < header
    assert_eq!(
        parse_ethernet(&f[..], Tunnels::Outer),
        Err(ParseError::BadIpHeader)
    );
}

fn ipv6(nh: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(nh);
    h.push(64);
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h.extend_from_slice(payload);
    h
}

#[test]
fn ipv6_walks_extension_headers() {
    // Hop-by-hop (8 bytes) -> fragment (first) -> UDP.
    let mut pl = vec![44, 0, 0, 0, 0, 0, 0, 0];
    pl.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 7]);
    pl.extend_from_slice(&[0x01, 0xbb, 0x00, 0x35, 0, 8, 0, 0]);
    let mut f = eth(0x86dd);
    f.extend(ipv6(0, &pl));
    let p = parse_ethernet(&f[..], Tunnels::Outer).unwrap();
    assert_eq!((p.key.proto, p.key.sport, p.key.dport), (17, 443, 53));
    assert_eq!(p.ip_bytes, 40 + 24);
    assert_eq!(p.hdr_len, 40 + 16 + 8);
}

#[test]
fn ipv6_non_first_fragment() {
    let mut pl = vec![17, 0, 0x05, 0x00, 0, 0, 0, 7];
    pl.extend_from_slice(&[1, 2, 3, 4]);
    let mut f = eth(0x86dd);
    f.extend(ipv6(44, &pl));
    let p = parse_ethernet(&f[..], Tunnels::Outer).unwrap();
    assert_eq!((p.key.proto, p.key.sport, p.key.dport), (17, 0, 0));
}

#[test]
fn ipv6_extension_chain_limit() {
    let mut pl = Vec::new();
    for _ in 0..MAX_IPV6_EXT + 1 {
        pl.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
    }
    let mut f = eth(0x86dd);
    f.extend(ipv6(60, &pl));
    let p = parse_ethernet(&f[..], Tunnels::Outer).unwrap();
    assert_eq!(p.key.proto, 60);
    assert_eq!(p.warn, Some(Counter::WarnIpv6ExtLimit));
}

#[test]
fn icmp_type_code_and_no_ports() {
    let mut f = eth(0x0800);
    f.extend(ipv4(1, 28, 0, &[8, 0, 0, 0, 0, 1, 0, 1]));
    let p = parse_ethernet(&f[..], Tunnels::Outer).unwrap();
    assert_eq!((p.key.sport, p.key.dport, p.icmp), (0, 0, 0x0800));
}

#[test]
fn other_link_types() {
    let ip = ipv4(17, 28, 0, &[0, 1, 0, 2, 0, 8, 0, 0]);
    let p = parse_frame(&ip[..], LinkType::RawIp, Tunnels::Outer).unwrap();
    assert_eq!(p.key.dport, 2);
    let mut sll = vec![0u8; 14];
    sll.extend_from_slice(&[0x08, 0x00]);
    sll.extend_from_slice(&ip);
    assert_eq!(
        parse_frame(&sll[..], LinkType::LinuxSll, Tunnels::Outer)
            .unwrap()
            .key
            .dport,
        2
    );
    let mut hdlc = vec![0x0f, 0x00, 0x08, 0x00];
    hdlc.extend_from_slice(&ip);
    assert_eq!(
        parse_frame(&hdlc[..], LinkType::CiscoHdlc, Tunnels::Outer)
            .unwrap()
            .key
            .dport,
        2
    );
    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend_from_slice(&ip);
    assert_eq!(
        parse_frame(&null[..], LinkType::Null, Tunnels::Outer)
            .unwrap()
            .key
            .dport,
        2
    );
}

#[test]
fn mpls_and_pppoe() {
    let ip = ipv4(6, 40, 0, &tcp(5, 6, 0x10));
    let mut f = eth(0x8847);
    f.extend_from_slice(&[0, 0, 0x10, 64, 0, 0, 0x21, 64]);
    f.extend_from_slice(&ip);
    assert_eq!(parse_ethernet(&f[..], Tunnels::Outer).unwrap().key.dport, 6);
    let mut f = eth(0x8864);
    f.extend_from_slice(&[0x11, 0, 0, 1, 0, 42, 0x00, 0x21]);
    f.extend_from_slice(&ip);
    assert_eq!(
        parse_ethernet(&f[..], Tunnels::Outer).unwrap().tcp_flags,
        0x10
    );
}

#[test]
fn never_panics_on_any_prefix() {
    let mut f = eth(0x8100);
    f.extend_from_slice(&[0, 5, 0x86, 0xdd]);
    let mut pl = vec![0, 0, 0, 0, 0, 0, 0, 0];
    pl.extend_from_slice(&tcp(1, 2, 0x12));
    f.extend(ipv6(0, &pl));
    for n in 0..=f.len() {
        let _ = parse_ethernet(&f[..n], Tunnels::Outer);
        for lt in [
            LinkType::RawIp,
            LinkType::LinuxSll,
            LinkType::LinuxSll2,
            LinkType::Null,
            LinkType::CiscoHdlc,
        ] {
            let _ = parse_frame(&f[..n], lt, Tunnels::Outer);
        }
    }
    assert_eq!(parse_ethernet(&f[..], Tunnels::Outer).unwrap().key.vlan, 5);
}

#[test]
fn ipv4_fast_path_matches_general_path() {
    // Every prefix of untagged IPv4 frames with the fast path's edge cases: protocols it
    // takes and leaves, fragments, IHL, total lengths (0 = TSO), TCP data offsets.
    let mut frames = Vec::new();
    for proto in [6u8, 17, 1, 132, 47] {
        for frag in [0u16, 0x2000, 0x4000, 185] {
            for total in [0u16, 10, 20, 40, 60, 1500] {
                let l4 = if proto == 6 {
                    tcp(443, 51000, 0x18)
                } else {
                    vec![0x01, 0xbb, 0xc7, 0x38, 0, 8, 0, 0]
                };
                let mut f = eth(0x0800);
                f.extend(ipv4(proto, total, frag, &l4));
                frames.push(f.clone());
                // IPv4 options (IHL 6) and a bad version take the general path.
                let mut o = f.clone();
                o[14] = 0x46;
                o.splice(34..34, [1, 1, 1, 1]);
                frames.push(o);
                let mut v = f.clone();
                v[14] = 0x65;
                frames.push(v);
                // TCP data offset other than 5.
                if proto == 6 {
                    let mut d = f.clone();
                    d[46] = 0x80 | 0x01;
                    frames.push(d);
                }
            }
        }
    }
    let mut fast = 0;
    for f in &frames {
        for n in 0..=f.len() {
            let p = &f[..n];
            if parse_ethernet_ipv4_fast(p).is_some() {
                fast += 1;
            }
            assert_eq!(
                parse_ethernet(p, Tunnels::Outer),
                parse_ethernet_at(p, 0),
                "frame {:02x?}",
                p
            );
        }
    }
    assert!(fast > 100, "the fast path took only {fast} frames");
}

/// An inner IPv4/TCP packet from 192.168.0.1:1000 to 192.168.0.2:80 (total 40 bytes).
fn inner_v4_tcp() -> Vec<u8> {
    let mut p = ipv4(6, 40, 0, &tcp(1000, 80, 0x02));
    p[12..16].copy_from_slice(&[192, 168, 0, 1]);
    p[16..20].copy_from_slice(&[192, 168, 0, 2]);
    p
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn over_ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = eth(0x0800);
    f.extend(ipv4(proto, 20 + l4.len() as u16, 0, l4));
    f
}

fn vxlan(flags: u8, vni: u32, inner_frame: &[u8]) -> Vec<u8> {
    let mut v = vec![flags, 0, 0, 0];
    v.extend_from_slice(&(vni << 8).to_be_bytes());
    v.extend_from_slice(inner_frame);
    over_ipv4(17, &udp(50000, VXLAN_PORT, &v))
}

fn assert_inner_tcp(p: &Parsed, tunnel: Tunnel, id: u32) {
    assert_eq!(p.key.family, 4);
    assert_eq!(&p.key.src[12..], &[192, 168, 0, 1]);
    assert_eq!(&p.key.dst[12..], &[192, 168, 0, 2]);
    assert_eq!((p.key.proto, p.key.sport, p.key.dport), (6, 1000, 80));
    assert_eq!((p.key.tunnel, p.key.tunnel_id), (tunnel as u8, id));
    assert_eq!((p.ip_bytes, p.tcp_flags), (40, 0x02));
    assert_eq!(p.outer_l3_off, 14);
    assert_eq!(p.warn, None);
}

#[test]
fn vxlan_is_keyed_by_the_inner_packet_and_its_network_id() {
    let mut inner = eth(0x0800);
    inner.extend(inner_v4_tcp());
    let f = vxlan(0x08, 0x00ab_cdef, &inner);
    let p = parse_ethernet(&f[..], Tunnels::Inner).unwrap();
    assert_inner_tcp(&p, Tunnel::Vxlan, 0x00ab_cdef);
    // The payload of the inner packet is where the inner headers end.
    assert_eq!(p.l3_off as usize, 14 + 20 + 8 + 8 + 14);
    // The same frame keyed by its outer header.
    let o = parse_ethernet(&f[..], Tunnels::Outer).unwrap();
    assert_eq!(
        (o.key.proto, o.key.dport, o.key.tunnel),
        (17, VXLAN_PORT, 0)
    );
    // Two tenants with the same inner addresses stay two flows.
    let g = vxlan(0x08, 7, &inner);
    assert_ne!(parse_ethernet(&g[..], Tunnels::Inner).unwrap().key, p.key);
    // Without the I flag it is not VXLAN: keyed by the outer header.
    let h = vxlan(0x00, 7, &inner);
    let q = parse_ethernet(&h[..], Tunnels::Inner).unwrap();
    assert_eq!((q.key.proto, q.key.tunnel, q.warn), (17, 0, None));
}

#[test]
fn a_tunnel_whose_inside_is_not_ip_is_keyed_by_its_outer_header() {
    let mut arp = eth(0x0806);
    arp.extend_from_slice(&[0u8; 28]);
    let f = vxlan(0x08, 1, &arp);
    let p = parse_ethernet(&f[..], Tunnels::Inner).unwrap();
    assert_eq!(
        (p.key.proto, p.key.dport, p.key.tunnel),
        (17, VXLAN_PORT, 0)
    );
    assert_eq!(p.warn, Some(Counter::WarnTunnelUndecoded));
    assert_eq!(p.ip_bytes as usize, f.len() - 14);
}

#[test]
fn gre_with_a_key_checksum_and_sequence_number() {
    // C, K and S set; IPv4 inside.
    let mut g = vec![
        0xb0, 0, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0, 0, 0, 9,
    ];
    g.extend(inner_v4_tcp());
    let f = over_ipv4(47, &g);
    assert_inner_tcp(
        &parse_ethernet(&f[..], Tunnels::Inner).unwrap(),
        Tunnel::Gre,
        0x1234,
    );
    // Transparent Ethernet bridging, no key.
    let mut g = vec![0, 0, 0x65, 0x58];
    g.extend(eth(0x0800));
    g.extend(inner_v4_tcp());
    let f = over_ipv4(47, &g);
    assert_inner_tcp(
        &parse_ethernet(&f[..], Tunnels::Inner).unwrap(),
        Tunnel::Gre,
        0,
    );
}

#[test]
fn pptp_enhanced_gre_carries_ppp() {
    // Version 1, K and S set, payload length 42, call id 0x4242; PPP with
    // address/control, then a compressed protocol field for IPv4.
    let mut g = vec![0x30, 0x01, 0x88, 0x0b, 0, 42, 0x42, 0x42, 0, 0, 0, 1];
    g.extend_from_slice(&[0xff, 0x03, 0x21]);
    g.extend(inner_v4_tcp());
    let f = over_ipv4(47, &g);
    assert_inner_tcp(
        &parse_ethernet(&f[..], Tunnels::Inner).unwrap(),
        Tunnel::Gre,
        0x4242,
    );
}

#[test]
fn gtpu_steps_over_its_extension_headers() {
    // Version 1, PT, E set; G-PDU; TEID 0xdeadbeef; seq/N-PDU/next = 0x85 (PDU session
    // container), one 4-byte extension header, then no more.
    let mut g = vec![0x34, 0xff, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0x85];
    g.extend_from_slice(&[1, 0x10, 0x01, 0]);
    g.extend(inner_v4_tcp());
    let f = over_ipv4(17, &udp(GTPU_PORT, GTPU_PORT, &g));
    assert_inner_tcp(
        &parse_ethernet(&f[..], Tunnels::Inner).unwrap(),
        Tunnel::GtpU,
        0xdead_beef,
    );
    // An echo request (message type 1) is GTP signalling, not user data.
    let mut e = g.clone();
    e[1] = 1;
    let f = over_ipv4(17, &udp(GTPU_PORT, GTPU_PORT, &e));
    assert_eq!(
        parse_ethernet(&f[..], Tunnels::Inner).unwrap().key.tunnel,
        0
    );
}

#[test]
fn ip_in_ip_both_ways() {
    let f = over_ipv4(4, &inner_v4_tcp());
    assert_inner_tcp(
        &parse_ethernet(&f[..], Tunnels::Inner).unwrap(),
        Tunnel::IpInIp,
        0,
    );
    // IPv6 inside IPv4 (6in4), keyed by the inner IPv6 header.
    let f = over_ipv4(41, &ipv6(6, &tcp(1, 2, 0x10)));
    let p = parse_ethernet(&f[..], Tunnels::Inner).unwrap();
    assert_eq!((p.key.family, p.key.proto, p.key.dport), (6, 6, 2));
    assert_eq!(p.key.tunnel, Tunnel::IpInIp as u8);
}

#[test]
fn tunnels_never_panic_on_any_prefix_and_keep_the_outer_vlan() {
    let mut inner = eth(0x8100);
    inner.extend_from_slice(&[0, 9, 0x08, 0x00]);
    inner.extend(inner_v4_tcp());
    let mut f = eth(0x8100);
    f.extend_from_slice(&[0, 5, 0x08, 0x00]);
    f.extend_from_slice(&vxlan(0x08, 3, &inner)[14..]);
    let p = parse_ethernet(&f[..], Tunnels::Inner).unwrap();
    assert_eq!((p.key.vlan, p.key.tunnel_id, p.key.dport), (5, 3, 80));
    for n in 0..=f.len() {
        let _ = parse_ethernet(&f[..n], Tunnels::Inner);
    }
    let mut g = vec![0x34, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x85];
    g.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0x85, 0, 0, 0, 0x85]);
    let h = over_ipv4(17, &udp(GTPU_PORT, GTPU_PORT, &g));
    for n in 0..=h.len() {
        let _ = parse_ethernet(&h[..n], Tunnels::Inner);
    }
}
