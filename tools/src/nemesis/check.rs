//! The checker: a run's history against what the nodes hold after the heal.
//!
//! An operation that failed (an error or a timeout) may or may not have been applied, so
//! only acknowledged ones are owed. Rules, per key, for every read of the final state
//! (each node, at ONE and at ALL):
//! - **set**: every acknowledged add is present (else *lost*);
//! - **delete**: every acknowledged add that no delete was attempted for is present (else
//!   *lost*); every element whose delete was acknowledged is absent (else *resurrected*);
//! - **register**: every acknowledged value is present, or some attempted write's context
//!   saw it (it may have been superseded); else *lost*;
//! - everywhere: a value present that no client ever tried to write is *never written*.
//!
//! Findings are counted once per distinct (workload, key, value), however many reads saw
//! them; a few examples name the reads.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::nemesis::history::{Event, Op, Workload};

/// One read of a key's final state.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Who was read and how (`node 2 at ONE`).
    pub source: String,
    /// The key's workload.
    pub workload: Workload,
    /// Partition key.
    pub key: String,
    /// Live values by column.
    pub columns: BTreeMap<String, Vec<String>>,
}

/// The column the register workload writes.
pub const REGISTER_COLUMN: &str = "v";

/// One kind of finding.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// Distinct (workload, key, value), each with the reads that showed it.
    pub items: BTreeMap<(&'static str, String, String), Vec<String>>,
}

impl Findings {
    fn add(&mut self, w: Workload, key: &str, value: &str, source: &str) {
        self.items
            .entry((w.name(), key.to_owned(), value.to_owned()))
            .or_default()
            .push(source.to_owned());
    }

    /// How many.
    pub fn count(&self) -> usize {
        self.items.len()
    }

    /// The first `n`, each with the reads that showed it.
    pub fn examples(&self, n: usize) -> Vec<String> {
        self.items
            .iter()
            .take(n)
            .map(|((w, key, value), sources)| format!("{w} {key} {value} ({})", sources.join(", ")))
            .collect()
    }
}

/// What the checker found.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Acknowledged writes (adds and deletes), per workload.
    pub acknowledged: BTreeMap<&'static str, u64>,
    /// Writes that failed (outcome unknown), per workload.
    pub unknown: BTreeMap<&'static str, u64>,
    /// Acknowledged writes missing.
    pub lost: Findings,
    /// Values present that nobody wrote.
    pub never_written: Findings,
    /// Acknowledged deletes undone.
    pub resurrected: Findings,
}

impl Verdict {
    /// True when nothing was lost, invented or resurrected.
    pub fn is_clean(&self) -> bool {
        self.lost.count() == 0 && self.never_written.count() == 0 && self.resurrected.count() == 0
    }
}

#[derive(Default)]
struct KeyHistory {
    attempted: HashSet<String>,
    acked: HashSet<String>,
    delete_attempted: HashSet<String>,
    delete_acked: HashSet<String>,
    /// Register: values some attempted write's context saw.
    seen_by_writes: HashSet<String>,
}

/// Checks `observed` against `events` (see the module docs).
pub fn check(events: &[Event], observed: &[Observed]) -> Verdict {
    let mut verdict = Verdict::default();
    let mut keys: HashMap<(Workload, &str), KeyHistory> = HashMap::new();
    for e in events {
        let h = keys.entry((e.workload, e.key.as_str())).or_default();
        match e.op {
            Op::Add => {
                h.attempted.insert(e.value.clone());
                h.seen_by_writes.extend(e.seen.iter().cloned());
                if e.ok {
                    h.acked.insert(e.value.clone());
                }
            }
            Op::Delete => {
                h.delete_attempted.insert(e.value.clone());
                if e.ok {
                    h.delete_acked.insert(e.value.clone());
                }
            }
            Op::Read => continue,
        }
        let counter = if e.ok {
            &mut verdict.acknowledged
        } else {
            &mut verdict.unknown
        };
        *counter.entry(e.workload.name()).or_default() += 1;
    }
    let empty = KeyHistory::default();
    for o in observed {
        let h = keys.get(&(o.workload, o.key.as_str())).unwrap_or(&empty);
        let present: HashSet<&str> = match o.workload {
            Workload::Register => o
                .columns
                .get(REGISTER_COLUMN)
                .map(|vs| vs.iter().map(String::as_str).collect())
                .unwrap_or_default(),
            Workload::Set | Workload::Delete => o
                .columns
                .iter()
                .filter(|(_, vs)| !vs.is_empty())
                .map(|(c, _)| c.as_str())
                .collect(),
        };
        for value in &present {
            if !h.attempted.contains(*value) {
                verdict
                    .never_written
                    .add(o.workload, &o.key, value, &o.source);
            }
        }
        for value in &h.acked {
            let owed = match o.workload {
                Workload::Set => true,
                Workload::Delete => !h.delete_attempted.contains(value),
                Workload::Register => !h.seen_by_writes.contains(value),
            };
            if owed && !present.contains(value.as_str()) {
                verdict.lost.add(o.workload, &o.key, value, &o.source);
            }
        }
        if o.workload == Workload::Delete {
            for value in &h.delete_acked {
                if present.contains(value.as_str()) {
                    verdict
                        .resurrected
                        .add(o.workload, &o.key, value, &o.source);
                }
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(workload: Workload, op: Op, key: &str, value: &str, ok: bool, seen: &[&str]) -> Event {
        Event {
            client: 0,
            workload,
            op,
            key: key.into(),
            value: value.into(),
            seen: seen.iter().map(|s| (*s).to_owned()).collect(),
            context: String::new(),
            node: "n".into(),
            start_ms: 0,
            end_ms: 1,
            ok,
            error: (!ok).then(|| "timeout".into()),
        }
    }

    fn seen(workload: Workload, key: &str, columns: &[(&str, &[&str])]) -> Observed {
        Observed {
            source: "node 0 at ONE".into(),
            workload,
            key: key.into(),
            columns: columns
                .iter()
                .map(|(c, vs)| {
                    (
                        (*c).to_owned(),
                        vs.iter().map(|v| (*v).to_owned()).collect(),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn check_set_acked_missing_is_lost_unknown_missing_is_not() {
        let events = [
            ev(Workload::Set, Op::Add, "k", "a", true, &[]),
            ev(Workload::Set, Op::Add, "k", "b", true, &[]),
            ev(Workload::Set, Op::Add, "k", "c", false, &[]),
        ];
        let v = check(&events, &[seen(Workload::Set, "k", &[("a", &["1"])])]);
        assert_eq!(v.lost.count(), 1);
        assert!(v.lost.items.contains_key(&("set", "k".into(), "b".into())));
        assert_eq!(v.acknowledged.get("set"), Some(&2));
        assert_eq!(v.unknown.get("set"), Some(&1));
        assert!(!v.is_clean());
    }

    #[test]
    fn check_value_nobody_wrote_is_never_written() {
        let events = [ev(Workload::Set, Op::Add, "k", "a", true, &[])];
        let v = check(
            &events,
            &[seen(Workload::Set, "k", &[("a", &["1"]), ("zz", &["1"])])],
        );
        assert_eq!(v.never_written.count(), 1);
        assert_eq!(v.lost.count(), 0);
    }

    #[test]
    fn check_delete_acked_then_present_is_resurrected() {
        let events = [
            ev(Workload::Delete, Op::Add, "d", "x", true, &[]),
            ev(Workload::Delete, Op::Delete, "d", "x", true, &[]),
            ev(Workload::Delete, Op::Add, "d", "y", true, &[]),
            ev(Workload::Delete, Op::Delete, "d", "y", false, &[]),
        ];
        // y's delete failed: present or absent are both fine.
        let v = check(&events, &[seen(Workload::Delete, "d", &[("x", &["1"])])]);
        assert_eq!(v.resurrected.count(), 1);
        assert_eq!(v.lost.count(), 0);
        let v = check(&events, &[seen(Workload::Delete, "d", &[("y", &["1"])])]);
        assert!(v.is_clean(), "{v:?}");
    }

    #[test]
    fn check_register_superseded_value_is_not_lost() {
        let events = [
            ev(Workload::Register, Op::Add, "r", "v1", true, &[]),
            ev(Workload::Register, Op::Add, "r", "v2", true, &["v1"]),
            ev(Workload::Register, Op::Add, "r", "v3", true, &[]),
        ];
        let v = check(
            &events,
            &[seen(Workload::Register, "r", &[("v", &["v2", "v3"])])],
        );
        assert!(v.is_clean(), "{v:?}");
        // v3 was seen by no write: it must be there.
        let v = check(&events, &[seen(Workload::Register, "r", &[("v", &["v2"])])]);
        assert!(v
            .lost
            .items
            .contains_key(&("register", "r".into(), "v3".into())));
    }

    #[test]
    fn check_a_loss_seen_on_many_nodes_counts_once() {
        let events = [ev(Workload::Set, Op::Add, "k", "a", true, &[])];
        let obs: Vec<Observed> = (0..5).map(|_| seen(Workload::Set, "k", &[])).collect();
        assert_eq!(check(&events, &obs).lost.count(), 1);
    }
}
