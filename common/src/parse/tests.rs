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
    let p = parse_ethernet(&f[..]).unwrap();
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
    let p = parse_ethernet(&f[..]).unwrap();
    assert_eq!(p.key.vlan, 100);
    assert_eq!((p.key.sport, p.key.dport), (53, 12345));
}

#[test]
fn non_first_fragment_has_no_ports() {
    let mut f = eth(0x0800);
    f.extend(ipv4(17, 28, 185, &[0, 53, 0x30, 0x39, 0, 8, 0, 0]));
    let p = parse_ethernet(&f[..]).unwrap();
    assert_eq!((p.key.sport, p.key.dport, p.ip_bytes), (0, 0, 28));
}

#[test]
fn ip_bytes_come_from_header_not_frame() {
    // Snaplen-truncated capture: header says 1500, only 20+4 bytes present.
    let mut f = eth(0x0800);
    f.extend(ipv4(6, 1500, 0, &[0x04, 0xd2, 0, 80]));
    let p = parse_ethernet(&f[..]).unwrap();
    assert_eq!(p.ip_bytes, 1500);
    assert_eq!((p.key.sport, p.key.dport), (1234, 80));
    assert_eq!(p.warn, Some(Counter::WarnTruncatedL4));
}

#[test]
fn errors_by_reason() {
    assert_eq!(parse_ethernet(&[0u8; 10][..]), Err(ParseError::TruncatedL2));
    assert_eq!(parse_ethernet(&eth(0x0806)[..]), Err(ParseError::NonIp));
    let mut f = eth(0x0800);
    f.extend_from_slice(&[0x45, 0, 0]);
    assert_eq!(parse_ethernet(&f[..]), Err(ParseError::TruncatedIp));
    let mut f = eth(0x0800);
    let mut h = ipv4(6, 40, 0, &tcp(1, 2, 0));
    h[0] = 0x43; // IHL 3
    f.extend(h);
    assert_eq!(parse_ethernet(&f[..]), Err(ParseError::BadIpHeader));
    let mut f = eth(0x0800);
    f.extend(ipv4(6, 10, 0, &tcp(1, 2, 0))); // total length < header
    assert_eq!(parse_ethernet(&f[..]), Err(ParseError::BadIpHeader));
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
    let p = parse_ethernet(&f[..]).unwrap();
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
    let p = parse_ethernet(&f[..]).unwrap();
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
    let p = parse_ethernet(&f[..]).unwrap();
    assert_eq!(p.key.proto, 60);
    assert_eq!(p.warn, Some(Counter::WarnIpv6ExtLimit));
}

#[test]
fn icmp_type_code_and_no_ports() {
    let mut f = eth(0x0800);
    f.extend(ipv4(1, 28, 0, &[8, 0, 0, 0, 0, 1, 0, 1]));
    let p = parse_ethernet(&f[..]).unwrap();
    assert_eq!((p.key.sport, p.key.dport, p.icmp), (0, 0, 0x0800));
}

#[test]
fn other_link_types() {
    let ip = ipv4(17, 28, 0, &[0, 1, 0, 2, 0, 8, 0, 0]);
    let p = parse_frame(&ip[..], LinkType::RawIp).unwrap();
    assert_eq!(p.key.dport, 2);
    let mut sll = vec![0u8; 14];
    sll.extend_from_slice(&[0x08, 0x00]);
    sll.extend_from_slice(&ip);
    assert_eq!(
        parse_frame(&sll[..], LinkType::LinuxSll).unwrap().key.dport,
        2
    );
    let mut hdlc = vec![0x0f, 0x00, 0x08, 0x00];
    hdlc.extend_from_slice(&ip);
    assert_eq!(
        parse_frame(&hdlc[..], LinkType::CiscoHdlc)
            .unwrap()
            .key
            .dport,
        2
    );
    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend_from_slice(&ip);
    assert_eq!(parse_frame(&null[..], LinkType::Null).unwrap().key.dport, 2);
}

#[test]
fn mpls_and_pppoe() {
    let ip = ipv4(6, 40, 0, &tcp(5, 6, 0x10));
    let mut f = eth(0x8847);
    f.extend_from_slice(&[0, 0, 0x10, 64, 0, 0, 0x21, 64]);
    f.extend_from_slice(&ip);
    assert_eq!(parse_ethernet(&f[..]).unwrap().key.dport, 6);
    let mut f = eth(0x8864);
    f.extend_from_slice(&[0x11, 0, 0, 1, 0, 42, 0x00, 0x21]);
    f.extend_from_slice(&ip);
    assert_eq!(parse_ethernet(&f[..]).unwrap().tcp_flags, 0x10);
}

#[test]
fn never_panics_on_any_prefix() {
    let mut f = eth(0x8100);
    f.extend_from_slice(&[0, 5, 0x86, 0xdd]);
    let mut pl = vec![0, 0, 0, 0, 0, 0, 0, 0];
    pl.extend_from_slice(&tcp(1, 2, 0x12));
    f.extend(ipv6(0, &pl));
    for n in 0..=f.len() {
        let _ = parse_ethernet(&f[..n]);
        for lt in [
            LinkType::RawIp,
            LinkType::LinuxSll,
            LinkType::LinuxSll2,
            LinkType::Null,
            LinkType::CiscoHdlc,
        ] {
            let _ = parse_frame(&f[..n], lt);
        }
    }
    assert_eq!(parse_ethernet(&f[..]).unwrap().key.vlan, 5);
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
                parse_ethernet(p),
                parse_ethernet_general(p),
                "frame {:02x?}",
                p
            );
        }
    }
    assert!(fast > 100, "the fast path took only {fast} frames");
}
