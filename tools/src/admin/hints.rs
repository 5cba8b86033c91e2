//! The `hints` report rendered from the protocol's [`HintOwner`]s: per node the asked
//! node holds hints for, what waits for delivery and what was dropped. Returns a
//! `String` (no I/O).

use std::fmt::Write as _;

use sibyl_protocol::HintOwner;

use crate::text::human_size;

/// One line per owner; a closing line with the totals.
pub fn render_hints(owners: &[HintOwner], now_micros: i64) -> String {
    if owners.is_empty() {
        return "no hints pending or dropped on this node".to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:>8} {:>10} {:>12}  dropped (window/ttl, size, corrupt, rejected)",
        "owner", "pending", "bytes", "oldest"
    );
    let (mut pending, mut dropped) = (0u64, 0u64);
    for o in owners {
        let oldest = if o.pending == 0 || o.oldest_micros == 0 {
            "-".to_owned()
        } else {
            format!(
                "{:.0} s ago",
                (now_micros.saturating_sub(o.oldest_micros)) as f64 / 1e6
            )
        };
        let _ = writeln!(
            out,
            "{:<18} {:>8} {:>10} {:>12}  {}, {}, {}, {}",
            o.owner,
            o.pending,
            human_size(o.pending_bytes),
            oldest,
            o.dropped_window,
            o.dropped_size,
            o.dropped_corrupt,
            o.dropped_rejected
        );
        pending += o.pending;
        dropped += o.dropped_window + o.dropped_size + o.dropped_corrupt + o.dropped_rejected;
    }
    let _ = write!(out, "total: {pending} pending, {dropped} dropped");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_report_shows_each_owner_and_the_totals() {
        let owners = vec![
            HintOwner {
                owner: "00000000000000ab".into(),
                pending: 3,
                pending_bytes: 2048,
                oldest_micros: 1_000_000,
                dropped_window: 2,
                ..HintOwner::default()
            },
            HintOwner {
                owner: "00000000000000cd".into(),
                dropped_size: 1,
                ..HintOwner::default()
            },
        ];
        let text = render_hints(&owners, 11_000_000);
        assert!(text.contains("00000000000000ab"), "{text}");
        assert!(text.contains("10 s ago"), "{text}");
        assert!(text.contains("2, 0, 0, 0"), "{text}");
        assert!(text.contains("total: 3 pending, 3 dropped"), "{text}");
        assert_eq!(
            render_hints(&[], 0),
            "no hints pending or dropped on this node"
        );
    }
}
