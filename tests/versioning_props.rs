//! Property tests of `sibyl::versioning`: the DVV set algebra (sync is commutative,
//! associative and idempotent; dominance is a partial order), the no-lost-write property of
//! causal writes through the node-facing API, the merge policies' associativity with
//! corrupt and engine-tombstone versions mixed in, and decoders fed random bytes.
//!
//! Proptest prints the failing input and its seed, and persists it under
//! `proptest-regressions/` so a failure replays.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use sibyl::versioning::{
    decode_causal_cell, encode_causal_cell, prepare_causal_write, Actor, CausalMerge, Context, Dot,
    Dvv, LwwCell, LwwMerge, ManualClock, Sibling, VersionVector,
};
use sibyl_storage::{Entry, MergePolicy};

const KEY: &[u8] = b"k";

fn actor_strategy() -> impl Strategy<Value = Actor> {
    (0u64..3, 1u32..3).prop_map(|(n, e)| Actor::new(n, e))
}

/// The sibling at `(actor, dot)`; `variant` lets two sets disagree about a dot's value, as
/// only corruption could make them, to check the join stays a lattice anyway.
fn sibling_for(actor: Actor, dot: u64, variant: u8) -> Sibling {
    let value = if (actor.node + dot).is_multiple_of(4) {
        None
    } else {
        Some(vec![
            actor.node as u8,
            actor.epoch as u8,
            dot as u8,
            variant,
        ])
    };
    Sibling {
        value,
        timestamp_micros: dot as i64,
        expires_at_secs: dot.is_multiple_of(3).then_some(dot * 10),
        // Some versions carry a write id (so the cell codec and the join see them).
        write_id: dot.is_multiple_of(2).then_some(u128::from(dot) << 70 | 5),
    }
}

/// Arbitrary valid DVV sets over a small universe, so that different sets share actors
/// and dots; some remember superseded write ids from the same universe as the versions'
/// (each with one of two expiries), so dropping every copy of a write is checked too.
fn dvv_strategy() -> impl Strategy<Value = Dvv> {
    (
        plain_dvv_strategy(),
        prop::collection::vec((1u64..8, 0u64..2), 0..3),
    )
        .prop_map(|(mut d, superseded)| {
            for (dot, expiry) in superseded {
                d.supersede(&[u128::from(dot) << 70 | 5], 1_000 + expiry);
            }
            d
        })
}

fn plain_dvv_strategy() -> impl Strategy<Value = Dvv> {
    prop::collection::btree_map(actor_strategy(), (1u64..8, any::<u8>(), 0u8..4), 0..5).prop_map(
        |m| {
            let entries = m
                .into_iter()
                .map(|(a, (counter, mask, variants))| {
                    let dots = (1..=counter)
                        .filter(|c| mask & (1u8 << (c - 1)) != 0)
                        .map(|c| (c, sibling_for(a, c, (variants >> (c % 2)) & 1)))
                        .collect();
                    (a, counter, dots)
                })
                .collect();
            Dvv::from_entries(entries).expect("valid by construction")
        },
    )
}

proptest! {
    #[test]
    fn dvv_sync_is_commutative(a in dvv_strategy(), b in dvv_strategy()) {
        prop_assert_eq!(a.sync(&b), b.sync(&a));
    }

    #[test]
    fn dvv_sync_is_associative(a in dvv_strategy(), b in dvv_strategy(), c in dvv_strategy()) {
        prop_assert_eq!(a.sync(&b).sync(&c), a.sync(&b.sync(&c)));
    }

    #[test]
    fn dvv_sync_is_idempotent(a in dvv_strategy(), b in dvv_strategy()) {
        prop_assert_eq!(a.sync(&a), a.clone());
        let ab = a.sync(&b);
        prop_assert_eq!(ab.sync(&b), ab.clone());
        prop_assert_eq!(a.sync(&Dvv::new()), a);
    }

    #[test]
    fn dvv_sync_descends_both_inputs(a in dvv_strategy(), b in dvv_strategy()) {
        let ab = a.sync(&b);
        prop_assert!(ab.descends(&a) && ab.descends(&b));
        prop_assert_eq!(ab.join(), a.join().merge(&b.join()));
    }

    #[test]
    fn dvv_dominance_is_reflexive(a in dvv_strategy()) {
        prop_assert!(a.descends(&a));
        prop_assert!(!a.dominates(&a));
    }

    #[test]
    fn dvv_dominance_is_antisymmetric(a in dvv_strategy(), b in dvv_strategy()) {
        if a.descends(&b) && b.descends(&a) {
            prop_assert_eq!(a.join(), b.join());
        }
        prop_assert!(!(a.dominates(&b) && b.dominates(&a)));
        // Chains built by sync must also be antisymmetric.
        let ab = a.sync(&b);
        if a.descends(&ab) {
            prop_assert_eq!(a.join(), ab.join());
        }
    }

    #[test]
    fn dvv_dominance_is_transitive(
        a in dvv_strategy(), b in dvv_strategy(), c in dvv_strategy(), x in dvv_strategy()
    ) {
        if a.descends(&b) && b.descends(&c) {
            prop_assert!(a.descends(&c));
        }
        // A chain that always exists: c <= c+b <= c+b+x, also after an update.
        let cb = c.sync(&b);
        let cbx = cb.sync(&x).update(&VersionVector::new(), sibling_for(Actor::new(9, 1), 1, 0),
            Actor::new(9, 1));
        prop_assert!(cbx.descends(&cb) && cb.descends(&c));
        prop_assert!(cbx.descends(&c) && cbx.dominates(&c));
    }

    #[test]
    fn dvv_update_dominates_and_discards_covered(
        a in dvv_strategy(), ctx_src in dvv_strategy(), actor in actor_strategy()
    ) {
        let ctx = ctx_src.join();
        let dot = a.next_dot(&ctx, actor);
        let u = a.update(&ctx, sibling_for(actor, 200, 9), actor);
        prop_assert!(u.dominates(&a));
        prop_assert!(u.join().descends(&ctx));
        for (d, _) in u.siblings() {
            // Every surviving old sibling was not covered by the context.
            prop_assert!(d == dot || d.counter > ctx.get(&d.actor));
        }
        prop_assert_eq!(u.siblings().filter(|(d, _)| *d == dot).count(), 1);
    }

    #[test]
    fn causal_cell_round_trips(a in dvv_strategy()) {
        prop_assert_eq!(decode_causal_cell(&encode_causal_cell(&a)).expect("decodes"), a);
    }

    #[test]
    fn dvv_expiry_keeps_context_and_drops_only_expired(a in dvv_strategy(), now in 0u64..100) {
        let live = a.without_expired(now);
        prop_assert_eq!(live.join(), a.join());
        prop_assert!(!live.has_expired(now));
        let kept = a.siblings().filter(|(_, s)| !s.is_expired(now)).count();
        prop_assert_eq!(live.sibling_count(), kept);
        // Syncing with an unexpired replica does not bring expired values back.
        prop_assert!(!live.sync(&a).has_expired(now));
    }
}

/// One step of the no-lost-write simulation.
#[derive(Debug, Clone)]
enum Op {
    /// A client reads a replica and keeps its context.
    Read { client: usize, replica: usize },
    /// A client writes through a coordinator, with its last context or blind.
    Write {
        client: usize,
        coordinator: usize,
        with_context: bool,
        delete: bool,
    },
    /// Anti-entropy / replication: `to` merges `from`'s cell (engine merge, given order).
    Sync {
        from: usize,
        to: usize,
        from_is_newer: bool,
    },
}

const REPLICAS: usize = 3;
const CLIENTS: usize = 3;

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..CLIENTS, 0..REPLICAS).prop_map(|(client, replica)| Op::Read { client, replica }),
        (
            0..CLIENTS,
            0..REPLICAS,
            any::<bool>(),
            prop::bool::weighted(0.2)
        )
            .prop_map(|(client, coordinator, with_context, delete)| Op::Write {
                client,
                coordinator,
                with_context,
                delete,
            }),
        (0..REPLICAS, 0..REPLICAS, any::<bool>()).prop_map(|(from, to, from_is_newer)| Op::Sync {
            from,
            to,
            from_is_newer,
        }),
    ]
}

fn merge_opt(p: &CausalMerge, older: Option<&Vec<u8>>, newer: Option<&Vec<u8>>) -> Option<Vec<u8>> {
    match (older, newer) {
        (Some(o), Some(n)) => match p.merge(
            KEY,
            Entry::Value(o.clone()).as_ref(),
            Entry::Value(n.clone()).as_ref(),
        ) {
            Entry::Value(v) => Some(v),
            Entry::Tombstone => None,
        },
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Every acknowledged write that no later write's context saw is still a sibling once
    /// the replicas have synced; every write some context saw is gone.
    #[test]
    fn causal_writes_no_acknowledged_concurrent_write_is_dropped(
        ops in prop::collection::vec(op_strategy(), 1..80)
    ) {
        let policy = CausalMerge::new(Arc::new(ManualClock::new(0)));
        let actors: Vec<Actor> = (0..REPLICAS as u64).map(|n| Actor::new(100 + n, 1)).collect();
        let mut replicas: Vec<Option<Vec<u8>>> = vec![None; REPLICAS];
        let mut contexts: Vec<Option<Vec<u8>>> = vec![None; CLIENTS];
        // (dot, context the write carried), indexed by write id (= sibling timestamp).
        let mut writes: Vec<(Dot, VersionVector)> = Vec::new();
        for op in ops {
            match op {
                Op::Read { client, replica } => {
                    let got = replicas[replica].as_ref()
                        .and_then(|c| policy.read(KEY, Entry::Value(c.clone())));
                    contexts[client] = got.map(|c| {
                        Context::of(&decode_causal_cell(&c).expect("valid cell")).encode()
                    });
                }
                Op::Write { client, coordinator, with_context, delete } => {
                    let ctx = match (&contexts[client], with_context) {
                        (Some(bytes), true) => Some(Context::decode(bytes).expect("valid context")),
                        _ => None,
                    };
                    let id = writes.len() as i64;
                    let sibling = Sibling {
                        value: (!delete).then(|| id.to_le_bytes().to_vec()),
                        timestamp_micros: id,
                        expires_at_secs: None,
                        write_id: None,
                    };
                    let existing = replicas[coordinator].as_deref();
                    let stored = existing.map_or_else(Dvv::new, |c| decode_causal_cell(c).expect("valid"));
                    let vv = ctx.as_ref().map(|c| c.vv().clone()).unwrap_or_default();
                    let dot = stored.next_dot(&vv, actors[coordinator]);
                    let cell = prepare_causal_write(existing, ctx.as_ref(), sibling,
                        actors[coordinator], usize::MAX, 0).expect("no limit");
                    replicas[coordinator] = Some(cell);
                    writes.push((dot, vv));
                }
                Op::Sync { from, to, from_is_newer } => {
                    let (f, t) = (replicas[from].clone(), replicas[to].clone());
                    replicas[to] = if from_is_newer {
                        merge_opt(&policy, t.as_ref(), f.as_ref())
                    } else {
                        merge_opt(&policy, f.as_ref(), t.as_ref())
                    };
                }
            }
        }
        let all = replicas.iter().fold(None, |acc, r| merge_opt(&policy, acc.as_ref(), r.as_ref()));
        let present: BTreeSet<i64> = all
            .map(|c| decode_causal_cell(&c).expect("valid"))
            .map(|d| d.siblings().map(|(_, s)| s.timestamp_micros).collect())
            .unwrap_or_default();
        let expected: BTreeSet<i64> = writes
            .iter()
            .enumerate()
            .filter(|(_, (dot, _))| {
                !writes.iter().any(|(_, ctx)| ctx.get(&dot.actor) >= dot.counter)
            })
            .map(|(id, _)| id as i64)
            .collect();
        prop_assert_eq!(present, expected);
        // Dots are unique: no two acknowledged writes share one.
        let dots: BTreeSet<Dot> = writes.iter().map(|(d, _)| *d).collect();
        prop_assert_eq!(dots.len(), writes.len());
    }
}

/// A version as the engine may hold it: a good cell, garbage, or an engine tombstone.
fn causal_entry_strategy() -> impl Strategy<Value = Entry> {
    prop_oneof![
        6 => dvv_strategy().prop_map(|d| Entry::Value(encode_causal_cell(&d))),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Entry::Value),
        1 => Just(Entry::Tombstone),
    ]
}

fn lww_entry_strategy() -> impl Strategy<Value = Entry> {
    let cell = (
        prop::option::of(prop::collection::vec(0u8..3, 0..3)),
        0i64..4,
        prop::option::of(0u64..3),
    )
        .prop_map(|(value, ts, exp)| {
            Entry::Value(
                LwwCell {
                    value,
                    timestamp_micros: ts,
                    expires_at_secs: exp,
                }
                .encode(),
            )
        });
    prop_oneof![
        6 => cell,
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Entry::Value),
        1 => Just(Entry::Tombstone),
    ]
}

fn fold_left(p: &dyn MergePolicy, v: &[Entry]) -> Option<Entry> {
    let (first, rest) = v.split_first()?;
    Some(rest.iter().fold(first.clone(), |acc, e| {
        p.merge(KEY, acc.as_ref(), e.as_ref())
    }))
}

fn fold_right(p: &dyn MergePolicy, v: &[Entry]) -> Option<Entry> {
    let (last, rest) = v.split_last()?;
    Some(rest.iter().rev().fold(last.clone(), |acc, e| {
        p.merge(KEY, e.as_ref(), acc.as_ref())
    }))
}

fn fold_split(p: &dyn MergePolicy, v: &[Entry], at: usize) -> Option<Entry> {
    let at = at % v.len().max(1);
    let (l, r) = v.split_at(at);
    match (fold_left(p, l), fold_left(p, r)) {
        (Some(a), Some(b)) => Some(p.merge(KEY, a.as_ref(), b.as_ref())),
        (a, b) => a.or(b),
    }
}

proptest! {
    #[test]
    fn causal_merge_policy_is_associative_with_garbage(
        v in prop::collection::vec(causal_entry_strategy(), 1..6), at in 0usize..6
    ) {
        let p = CausalMerge::new(Arc::new(ManualClock::new(0)));
        let left = fold_left(&p, &v);
        prop_assert_eq!(&left, &fold_right(&p, &v));
        prop_assert_eq!(&left, &fold_split(&p, &v, at));
    }

    #[test]
    fn lww_merge_policy_is_associative_and_commutative(
        v in prop::collection::vec(lww_entry_strategy(), 1..6), at in 0usize..6
    ) {
        let p = LwwMerge::new(Arc::new(ManualClock::new(0)));
        let left = fold_left(&p, &v);
        prop_assert_eq!(&left, &fold_right(&p, &v));
        prop_assert_eq!(&left, &fold_split(&p, &v, at));
        if v.len() == 2 {
            if let (Ok(a), Ok(b)) = (
                lww_cell(&v[0]), lww_cell(&v[1])
            ) {
                prop_assert_eq!(
                    p.merge(KEY, v[0].as_ref(), v[1].as_ref()),
                    p.merge(KEY, v[1].as_ref(), v[0].as_ref())
                );
                let winner = if a.wins_over(&b) { a } else { b };
                prop_assert_eq!(left, Some(Entry::Value(winner.encode())));
            }
        }
    }

    #[test]
    fn decoders_never_panic_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_causal_cell(&bytes);
        let _ = LwwCell::decode(&bytes);
        let _ = Context::decode(&bytes);
        let clock = Arc::new(ManualClock::new(0));
        let policies: [Box<dyn MergePolicy>; 2] =
            [Box::new(CausalMerge::new(clock.clone())), Box::new(LwwMerge::new(clock))];
        for p in &policies {
            let e = Entry::Value(bytes.clone());
            let _ = p.merge(KEY, e.as_ref(), e.as_ref());
            let _ = p.compact(KEY, e.clone(), true);
            let _ = p.read(KEY, e);
        }
    }

    #[test]
    fn causal_cell_decoder_never_panics_on_damaged_cells(
        a in dvv_strategy(), pos in any::<usize>(), byte in any::<u8>()
    ) {
        let mut bytes = encode_causal_cell(&a);
        let i = pos % bytes.len();
        bytes[i] = byte;
        // Either a typed error or a valid set (which then round-trips).
        if let Ok(d) = decode_causal_cell(&bytes) {
            prop_assert_eq!(decode_causal_cell(&encode_causal_cell(&d)).expect("valid"), d);
        }
    }

    #[test]
    fn context_damaged_or_forged_is_invalid(
        a in dvv_strategy(), pos in any::<usize>(), byte in any::<u8>()
    ) {
        let good = Context::of(&a).encode();
        let back = Context::decode(&good).expect("valid");
        prop_assert_eq!(back.vv(), &a.join());
        let mut bad = good.clone();
        let i = pos % bad.len();
        bad[i] = byte;
        if bad != good {
            // crc32 detects every single-byte change.
            prop_assert!(Context::decode(&bad).is_err());
        }
    }
}

fn lww_cell(e: &Entry) -> Result<LwwCell, ()> {
    match e {
        Entry::Value(v) => LwwCell::decode(v).map_err(|_| ()),
        Entry::Tombstone => Err(()),
    }
}
