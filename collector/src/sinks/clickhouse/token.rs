//! Insert deduplication tokens: one per INSERT, derived only from what identifies the data,
//! so a retry of the same batch carries the same token and ClickHouse stores it once.
//!
//! - a batch sent in one INSERT: `<probe>:<seq>`, or `<probe>@<epoch>:<seq>` for a
//!   sequence epoch other than 0 (a probe's sequences are `(probe, epoch)`; epoch 0 keeps
//!   the form of the builds before epochs)
//! - part `k` of a batch split in `n > 1` INSERTs: the above followed by `:<k>`
//! - a health report: `<probe>:health:<ts_ns>` (another table; never numeric in field 2)
//!
//! `<probe>` is the probe id with `%`, `:` and `@` percent-encoded, so the fields are
//! unambiguous: probe `a:1` batch 2 (`a%3A1:2`) can never collide with probe `a` batch 1
//! part 2 (`a:1:2`). Ids without those characters appear unchanged.

use std::borrow::Cow;

/// The probe id with `%`, `:` and `@` percent-encoded.
fn probe(id: &str) -> Cow<'_, str> {
    if !id.contains(['%', ':', '@']) {
        return Cow::Borrowed(id);
    }
    Cow::Owned(
        id.replace('%', "%25")
            .replace(':', "%3A")
            .replace('@', "%40"),
    )
}

/// Token of batch `seq` of the probe sequence `(probe_id, epoch)`, or of its part `part`
/// when it is split.
pub(crate) fn batch(probe_id: &str, epoch: u64, seq: u64, part: Option<usize>) -> String {
    let sequence = match epoch {
        0 => probe(probe_id).into_owned(),
        e => format!("{}@{e}", probe(probe_id)),
    };
    match part {
        None => format!("{sequence}:{seq}"),
        Some(k) => format!("{sequence}:{seq}:{k}"),
    }
}

/// Token of a group of spooled batches stored in one INSERT: `%grp%<spool id>%<segment>%<offset>`
/// (where the group starts in the collector's spool), part `k` when split. A probe token
/// never starts with `%` (it is percent-encoded), so the two kinds cannot collide.
pub(crate) fn group(spool_id: &str, segment: u64, offset: u64, part: Option<usize>) -> String {
    match part {
        None => format!("%grp%{spool_id}%{segment}%{offset}"),
        Some(k) => format!("%grp%{spool_id}%{segment}%{offset}%{k}"),
    }
}

/// Token of the health report `probe_id` took at `ts_ns`.
pub(crate) fn health(probe_id: &str, ts_ns: u64) -> String {
    format!("{}:health:{ts_ns}", probe(probe_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_give_the_documented_form() {
        assert_eq!(batch("edge-hk-1", 0, 42, None), "edge-hk-1:42");
        assert_eq!(batch("edge-hk-1", 0, 42, Some(3)), "edge-hk-1:42:3");
        assert_eq!(batch("edge-hk-1", 9, 42, None), "edge-hk-1@9:42");
        assert_eq!(batch("edge-hk-1", 9, 42, Some(3)), "edge-hk-1@9:42:3");
        assert_eq!(health("edge-hk-1", 7), "edge-hk-1:health:7");
    }

    #[test]
    fn group_tokens_cannot_be_probe_tokens() {
        let g = group("8f2c", 3, 4096, None);
        assert_eq!(g, "%grp%8f2c%3%4096");
        assert!(!batch("%grp", 0, 3, None).starts_with("%grp%"));
        assert_ne!(group("8f2c", 3, 4096, Some(1)), g);
    }

    #[test]
    fn separators_in_ids_cannot_collide() {
        assert_ne!(batch("a:1", 0, 2, None), batch("a", 0, 1, Some(2)));
        assert_eq!(batch("a:1", 0, 2, None), "a%3A1:2");
        assert_ne!(batch("a%3A1", 0, 2, None), batch("a:1", 0, 2, None));
        // Two sequences of one probe never share a token; an `@` in an id is escaped.
        assert_ne!(batch("a", 5, 2, None), batch("a", 0, 2, None));
        assert_ne!(batch("a@5", 0, 2, None), batch("a", 5, 2, None));
    }
}
