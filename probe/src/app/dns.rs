//! The question of a DNS message (RFC 1035 §4.1): first name, its type, and the response
//! code when the message is an answer.

use tidegate_wire::record::DnsMeta;

/// Longest name kept (RFC 1035: 255 octets on the wire).
const NAME_MAX: usize = 255;
/// Compression pointers followed at most (a loop of pointers ends here).
const JUMPS_MAX: usize = 16;

/// The DNS metadata of `msg` (a whole DNS message, no TCP length prefix), or `None` when
/// it is not a well-formed message with a question.
pub fn parse_dns(msg: &[u8]) -> Option<DnsMeta> {
    if msg.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    let opcode = (flags >> 11) & 0xf;
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    // Standard queries (and notify/update, which carry a zone "question") only.
    if qdcount == 0 || qdcount > 32 || !matches!(opcode, 0 | 4 | 5) {
        return None;
    }
    let (name, end) = read_name(msg, 12)?;
    let qtype = u16::from_be_bytes(msg.get(end..end + 2)?.try_into().ok()?);
    let _qclass = msg.get(end + 2..end + 4)?;
    let response = flags & 0x8000 != 0;
    Some(DnsMeta {
        qname: name,
        qtype,
        rcode: response.then_some((flags & 0xf) as u8),
    })
}

/// Reads the name at `at`; returns it (dotted, without the root's trailing dot; "." for
/// the root) and the offset after it in the message.
fn read_name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut wire_len = 0usize;
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(at)? as usize;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    end.get_or_insert(at + 1);
                    break;
                }
                let label = msg.get(at + 1..at + 1 + len)?;
                wire_len += len + 1;
                if wire_len > NAME_MAX {
                    return None;
                }
                if !name.is_empty() {
                    name.push('.');
                }
                super::presentable(label, &mut name);
                at += 1 + len;
            }
            0xc0 => {
                let ptr = (u16::from_be_bytes([msg[at], *msg.get(at + 1)?]) & 0x3fff) as usize;
                end.get_or_insert(at + 2);
                jumps += 1;
                // Pointers point backwards; anything else (or a loop) is malformed.
                if jumps > JUMPS_MAX || ptr >= at {
                    return None;
                }
                at = ptr;
            }
            _ => return None,
        }
    }
    if name.is_empty() {
        name.push('.');
    }
    Some((name, end?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, flags: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34];
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.split('.').filter(|l| !l.is_empty()) {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m
    }

    #[test]
    fn queries_and_answers() {
        let q = parse_dns(&query("www.Example.com", 28, 0x0100)).unwrap();
        assert_eq!(
            (q.qname.as_str(), q.qtype, q.rcode),
            ("www.Example.com", 28, None)
        );
        let a = parse_dns(&query("nx.example.com", 1, 0x8183)).unwrap();
        assert_eq!((a.qtype, a.rcode), (1, Some(3)));
        assert_eq!(parse_dns(&query("", 2, 0x0100)).unwrap().qname, ".");
    }

    #[test]
    fn hostile_names_are_refused_or_escaped() {
        // Truncated anywhere: never a panic.
        let m = query("a.b.example.com", 1, 0x0100);
        for n in 0..m.len() {
            let _ = parse_dns(&m[..n]);
        }
        // A pointer loop and a forward pointer.
        let mut l = query("x", 1, 0x0100);
        l[12] = 0xc0;
        l[13] = 12;
        assert!(parse_dns(&l).is_none());
        // Control characters are escaped.
        let mut c = query("ab", 1, 0x0100);
        c[13] = b'\n';
        assert_eq!(parse_dns(&c).unwrap().qname, "\\010b");
        // A right-to-left override (found by fuzzing) and a zero-width space are
        // escaped too; readable UTF-8 stays.
        let rlo = query("pay\u{202e}gpj.exe", 1, 0x0100);
        assert_eq!(parse_dns(&rlo).unwrap().qname, "pay\\226\\128\\174gpj.exe");
        let zw = query("goo\u{200b}gle.com", 1, 0x0100);
        assert!(parse_dns(&zw).unwrap().qname.starts_with("goo\\226"));
        assert_eq!(
            parse_dns(&query("bücher.example", 1, 0x0100))
                .unwrap()
                .qname,
            "bücher.example"
        );
        // Over 255 octets.
        let long = vec!["a".repeat(63); 5].join(".");
        assert!(parse_dns(&query(&long, 1, 0x0100)).is_none());
        // Not a query: no question, or an unknown opcode.
        let mut z = query("x.y", 1, 0x0100);
        z[5] = 0;
        assert!(parse_dns(&z).is_none());
        assert!(parse_dns(&query("x.y", 1, 0x7800)).is_none());
    }
}
