//! The dotted version vector set (DVV set): the value of one causal cell.
//!
//! Almeida, Baquero, Gonçalves, Preguiça, Fonte, "Scalable and Accurate Causality Tracking
//! for Eventually Consistent Stores" (DAIS 2014), as in Riak 2.0's `dvvset`. A [`Dvv`] is a
//! list of entries sorted by [`Actor`]; an entry holds a counter `n` (every event of that
//! actor up to `n` has been seen) and the siblings that actor wrote which are still current,
//! each tagged with its dot `(actor, c)`, `c <= n`.
//!
//! Operations:
//! - [`Dvv::sync`] joins two replicas' sets: per actor the higher counter, and a sibling
//!   survives if the other side has not seen its dot (`c > n_other`) or still holds it.
//!   Sync is commutative, associative and idempotent (the property tests check it).
//! - [`Dvv::join`] is the causal context of the set, a [`VersionVector`].
//! - [`Dvv::update`] is the coordinator's write: siblings whose dots the client's context
//!   covers are discarded and the new value gets the dot `(actor, n + 1)` where `n` is the
//!   highest counter of `actor` known to the stored set or the context.
//!
//! Deviation from Riak: dots are explicit per sibling rather than implied by the position
//! in a list. A TTL can expire a sibling in the middle of an actor's list; explicit dots let
//! it be dropped without renumbering the others. Where both apply the join is the same.
//! Riak's anonymous values (a client value not yet given a dot) are not needed: a value
//! enters a set only through `update`, which dots it at once.
//!
//! Invariants (checked by the decoder, kept by every operation): entries strictly ascending
//! by actor; counter >= 1; an entry's dots strictly ascending and in `1..=counter`.

use std::cmp::Ordering;

use super::actor::Actor;
use super::format::MAX_SUPERSEDED;
use super::vv::VersionVector;

/// One version of a cell's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sibling {
    /// The value; `None` is a causal tombstone (a delete).
    pub value: Option<Vec<u8>>,
    /// When the coordinator accepted the write, microseconds since the Unix epoch. Shown to
    /// clients; not used for ordering in causal tables.
    pub timestamp_micros: i64,
    /// The second (since the Unix epoch) from which the value is expired, if it has a TTL.
    pub expires_at_secs: Option<u64>,
    /// The client's id of the write that made this version (`None`: none was given).
    /// Versions with one id are one write and its retries: a coordinator holding one
    /// does not mint another, and reads show one of them.
    pub write_id: Option<u128>,
}

impl Sibling {
    /// A live value.
    pub fn value(value: Vec<u8>, timestamp_micros: i64) -> Self {
        Sibling {
            value: Some(value),
            timestamp_micros,
            expires_at_secs: None,
            write_id: None,
        }
    }

    /// A causal tombstone.
    pub fn tombstone(timestamp_micros: i64) -> Self {
        Sibling {
            value: None,
            timestamp_micros,
            expires_at_secs: None,
            write_id: None,
        }
    }

    /// The same sibling with an expiry.
    pub fn with_expiry(mut self, expires_at_secs: u64) -> Self {
        self.expires_at_secs = Some(expires_at_secs);
        self
    }

    /// The same sibling made by the write `write_id`.
    pub fn with_write_id(mut self, write_id: Option<u128>) -> Self {
        self.write_id = write_id;
        self
    }

    /// True for a causal tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// True when the sibling has expired at `now_secs`.
    pub fn is_expired(&self, now_secs: u64) -> bool {
        self.expires_at_secs.is_some_and(|t| now_secs >= t)
    }
}

/// A dot: the unique name of one write, `(actor, counter)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dot {
    /// Who minted it.
    pub actor: Actor,
    /// The actor's event counter for this cell.
    pub counter: u64,
}

/// One entry of [`Dvv::from_entries`]: `(actor, counter, [(dot counter, sibling)])`.
pub type DvvEntryParts = (Actor, u64, Vec<(u64, Sibling)>);

/// One actor's entry of a [`Dvv`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DvvEntry {
    pub(crate) actor: Actor,
    pub(crate) counter: u64,
    /// `(dot counter, sibling)`, strictly ascending by dot counter, each `<= counter`.
    pub(crate) dots: Vec<(u64, Sibling)>,
}

/// A dotted version vector set. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Dvv {
    pub(crate) entries: Vec<DvvEntry>,
    /// `(write id, expires_at_secs)` of writes a later write superseded, ascending by id,
    /// at most [`MAX_SUPERSEDED`]: a sibling with such an id is dropped on sync.
    pub(crate) superseded: Vec<(u128, u64)>,
}

impl Dvv {
    /// The empty set: no history, no values.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set that has seen `vv` and holds no values (Riak's `new(VV, [])`).
    pub fn from_context(vv: &VersionVector) -> Self {
        Dvv {
            entries: vv
                .entries()
                .iter()
                .map(|&(actor, counter)| DvvEntry {
                    actor,
                    counter,
                    dots: Vec::new(),
                })
                .collect(),
            superseded: Vec::new(),
        }
    }

    /// Builds a set from `(actor, counter, [(dot counter, sibling)])` entries, checking the
    /// invariants: actors strictly ascending, `counter >= 1`, dots strictly ascending and in
    /// `1..=counter`. Used by tests and tools; the node gets sets from cells and updates.
    pub fn from_entries(entries: Vec<DvvEntryParts>) -> Result<Dvv, &'static str> {
        let mut out: Vec<DvvEntry> = Vec::with_capacity(entries.len());
        for (actor, counter, dots) in entries {
            if out.last().is_some_and(|e| e.actor >= actor) {
                return Err("actors not strictly ascending");
            }
            if counter == 0 {
                return Err("zero counter");
            }
            if dots.iter().any(|(c, _)| *c == 0 || *c > counter) {
                return Err("dot out of range");
            }
            if dots.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Err("dots not strictly ascending");
            }
            out.push(DvvEntry {
                actor,
                counter,
                dots,
            });
        }
        Ok(Dvv {
            entries: out,
            superseded: Vec::new(),
        })
    }

    /// The versions a reader is shown: every sibling in dot order, except that of
    /// several with one write id (a write and its retries, minted by different
    /// coordinators) only the first is shown. The context still covers them all, so a
    /// write with it supersedes every copy.
    pub fn shown_values(&self) -> Vec<&Sibling> {
        let mut seen: Vec<u128> = Vec::new();
        self.values()
            .into_iter()
            .filter(|s| match s.write_id {
                None => true,
                Some(id) if seen.contains(&id) => false,
                Some(id) => {
                    seen.push(id);
                    true
                }
            })
            .collect()
    }

    /// Whether a version made by the write `write_id` is here.
    pub fn holds_write(&self, write_id: u128) -> bool {
        self.entries
            .iter()
            .flat_map(|e| e.dots.iter())
            .any(|(_, s)| s.write_id == Some(write_id))
    }

    /// The causal context: actor -> highest counter seen.
    pub fn join(&self) -> VersionVector {
        VersionVector::from_sorted_unchecked(
            self.entries.iter().map(|e| (e.actor, e.counter)).collect(),
        )
    }

    /// The siblings, ordered by dot (actor, then counter).
    pub fn values(&self) -> Vec<&Sibling> {
        self.siblings().map(|(_, s)| s).collect()
    }

    /// The siblings with their dots, ordered by dot.
    pub fn siblings(&self) -> impl Iterator<Item = (Dot, &Sibling)> + '_ {
        self.entries.iter().flat_map(|e| {
            e.dots.iter().map(move |(c, s)| {
                (
                    Dot {
                        actor: e.actor,
                        counter: *c,
                    },
                    s,
                )
            })
        })
    }

    /// Number of siblings (values and tombstones).
    pub fn sibling_count(&self) -> usize {
        self.entries.iter().map(|e| e.dots.len()).sum()
    }

    /// True when no sibling holds a value: only causal tombstones, or nothing at all.
    pub fn is_all_tombstones(&self) -> bool {
        self.siblings().all(|(_, s)| s.is_tombstone())
    }

    /// True when `self` has seen everything `other` has (its join descends `other`'s).
    /// Reflexive, transitive, and antisymmetric up to equal joins.
    pub fn descends(&self, other: &Dvv) -> bool {
        self.join().descends(&other.join())
    }

    /// True when `self` has seen strictly more than `other`.
    pub fn dominates(&self, other: &Dvv) -> bool {
        self.join().dominates(&other.join())
    }

    /// True when `other` has seen strictly more than `self` (Riak's `less`).
    pub fn less(&self, other: &Dvv) -> bool {
        other.dominates(self)
    }

    /// The counter of `actor` (0 when absent).
    pub fn counter(&self, actor: &Actor) -> u64 {
        self.entries
            .binary_search_by(|e| e.actor.cmp(actor))
            .ok()
            .and_then(|i| self.entries.get(i))
            .map_or(0, |e| e.counter)
    }

    /// The dot the next [`Dvv::update`] at `actor` with context `ctx` would mint.
    pub fn next_dot(&self, ctx: &VersionVector, actor: Actor) -> Dot {
        let n = self.counter(&actor).max(ctx.get(&actor));
        Dot {
            actor,
            counter: n.saturating_add(1),
        }
    }

    /// Joins two sets (see the module documentation).
    pub fn sync(&self, other: &Dvv) -> Dvv {
        let mut out = Vec::with_capacity(self.entries.len().max(other.entries.len()));
        let (mut i, mut j) = (0, 0);
        loop {
            match (self.entries.get(i), other.entries.get(j)) {
                (Some(x), Some(y)) => match x.actor.cmp(&y.actor) {
                    Ordering::Less => {
                        out.push(x.clone());
                        i += 1;
                    }
                    Ordering::Greater => {
                        out.push(y.clone());
                        j += 1;
                    }
                    Ordering::Equal => {
                        out.push(sync_entry(x, y));
                        i += 1;
                        j += 1;
                    }
                },
                (Some(x), None) => {
                    out.push(x.clone());
                    i += 1;
                }
                (None, Some(y)) => {
                    out.push(y.clone());
                    j += 1;
                }
                (None, None) => break,
            }
        }
        let mut out = Dvv {
            entries: out,
            superseded: union_superseded(&self.superseded, &other.superseded),
        };
        out.drop_superseded();
        out.superseded = keep_latest(std::mem::take(&mut out.superseded));
        out
    }

    /// Remembers that the writes `ids` were superseded, until `expires_at_secs`, and
    /// drops their versions (every copy: a retried write minted by several coordinators
    /// has several dots but one id).
    pub fn supersede(&mut self, ids: &[u128], expires_at_secs: u64) {
        if ids.is_empty() {
            return;
        }
        let mut sorted: Vec<(u128, u64)> = ids.iter().map(|id| (*id, expires_at_secs)).collect();
        sorted.sort_unstable();
        sorted.dedup_by_key(|(id, _)| *id);
        self.superseded = union_superseded(&self.superseded, &sorted);
        self.drop_superseded();
        self.superseded = keep_latest(std::mem::take(&mut self.superseded));
    }

    /// Whether the write `write_id` was superseded (and is remembered as such).
    pub fn superseded(&self, write_id: u128) -> bool {
        self.superseded
            .binary_search_by_key(&write_id, |(id, _)| *id)
            .is_ok()
    }

    /// The remembered superseded write ids with their expiry, ascending by id.
    pub fn superseded_ids(&self) -> &[(u128, u64)] {
        &self.superseded
    }

    fn drop_superseded(&mut self) {
        if self.superseded.is_empty() {
            return;
        }
        let gone = |s: &Sibling| {
            s.write_id.is_some_and(|id| {
                self.superseded
                    .binary_search_by_key(&id, |(i, _)| *i)
                    .is_ok()
            })
        };
        let mut entries = std::mem::take(&mut self.entries);
        for e in &mut entries {
            e.dots.retain(|(_, s)| !gone(s));
        }
        self.entries = entries;
    }

    /// The coordinator's write: discards the siblings `ctx` covers and adds `value` with a
    /// new dot at `actor` (see [`Dvv::next_dot`]). The result also remembers `ctx`, so that
    /// syncing it with a replica that still holds a sibling the client saw drops that
    /// sibling there too.
    pub fn update(&self, ctx: &VersionVector, value: Sibling, actor: Actor) -> Dvv {
        self.update_above(ctx, value, actor, 0)
    }

    /// [`Dvv::update`] minting a dot counter of at least `floor`: the replica passes a
    /// per-node clock so an actor's counters increase across every cell it writes (see
    /// [`super::row_tombstone`] for why). Counters may then skip values within a cell,
    /// which the DVV rules allow: a counter says every event of its actor *on this cell*
    /// up to it was seen, and the skipped values name no event on this cell.
    pub fn update_above(
        &self,
        ctx: &VersionVector,
        value: Sibling,
        actor: Actor,
        floor: u64,
    ) -> Dvv {
        let mut dot = self.next_dot(ctx, actor);
        dot.counter = dot.counter.max(floor);
        let mut out = self.sync(&Dvv::from_context(ctx));
        match out.entries.binary_search_by(|e| e.actor.cmp(&actor)) {
            Ok(i) => {
                if let Some(e) = out.entries.get_mut(i) {
                    e.counter = dot.counter;
                    e.dots.push((dot.counter, value));
                }
            }
            Err(i) => out.entries.insert(
                i,
                DvvEntry {
                    actor,
                    counter: dot.counter,
                    dots: vec![(dot.counter, value)],
                },
            ),
        }
        out
    }

    /// The same set without the siblings expired at `now_secs`. Counters are kept, so the
    /// expiry propagates through sync like a delete.
    pub fn without_expired(&self, now_secs: u64) -> Dvv {
        Dvv {
            entries: self
                .entries
                .iter()
                .map(|e| DvvEntry {
                    actor: e.actor,
                    counter: e.counter,
                    dots: e
                        .dots
                        .iter()
                        .filter(|(_, s)| !s.is_expired(now_secs))
                        .cloned()
                        .collect(),
                })
                .collect(),
            superseded: self
                .superseded
                .iter()
                .filter(|(_, t)| *t > now_secs)
                .copied()
                .collect(),
        }
    }

    /// True when some sibling, or some remembered superseded id, has expired at
    /// `now_secs`.
    pub fn has_expired(&self, now_secs: u64) -> bool {
        self.siblings().any(|(_, s)| s.is_expired(now_secs))
            || self.superseded.iter().any(|(_, t)| *t <= now_secs)
    }
}

/// Joins the entries of one actor: the higher counter, and each side's siblings that the
/// other side has not seen or still holds. A dot held by both sides should carry the same
/// sibling (dots are unique); if corruption made them differ, the greater one is kept so
/// that the join stays commutative.
/// The union of two superseded lists (ascending by id; an id in both keeps the later
/// expiry). Siblings are filtered by the whole union before [`keep_latest`] cuts it.
fn union_superseded(a: &[(u128, u64)], b: &[(u128, u64)]) -> Vec<(u128, u64)> {
    if b.is_empty() {
        return a.to_vec();
    }
    if a.is_empty() {
        return b.to_vec();
    }
    let mut all: Vec<(u128, u64)> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    // Sorted by (id, expiry): the last of each id has the latest expiry.
    let mut out: Vec<(u128, u64)> = Vec::with_capacity(all.len());
    for (id, t) in all {
        match out.last_mut() {
            Some(last) if last.0 == id => last.1 = last.1.max(t),
            _ => out.push((id, t)),
        }
    }
    out
}

/// `list` cut to the [`MAX_SUPERSEDED`] entries latest to expire (ties: higher id kept),
/// ascending by id.
fn keep_latest(list: Vec<(u128, u64)>) -> Vec<(u128, u64)> {
    if list.len() <= MAX_SUPERSEDED {
        return list;
    }
    let mut by_expiry = list;
    by_expiry.sort_unstable_by_key(|x| std::cmp::Reverse((x.1, x.0)));
    by_expiry.truncate(MAX_SUPERSEDED);
    by_expiry.sort_unstable();
    by_expiry
}

fn sync_entry(x: &DvvEntry, y: &DvvEntry) -> DvvEntry {
    let mut dots = Vec::with_capacity(x.dots.len().max(y.dots.len()));
    let (mut i, mut j) = (0, 0);
    loop {
        match (x.dots.get(i), y.dots.get(j)) {
            (Some((cx, sx)), Some((cy, sy))) => match cx.cmp(cy) {
                Ordering::Less => {
                    if *cx > y.counter {
                        dots.push((*cx, sx.clone()));
                    }
                    i += 1;
                }
                Ordering::Greater => {
                    if *cy > x.counter {
                        dots.push((*cy, sy.clone()));
                    }
                    j += 1;
                }
                Ordering::Equal => {
                    dots.push((*cx, sx.max(sy).clone()));
                    i += 1;
                    j += 1;
                }
            },
            (Some((cx, sx)), None) => {
                if *cx > y.counter {
                    dots.push((*cx, sx.clone()));
                }
                i += 1;
            }
            (None, Some((cy, sy))) => {
                if *cy > x.counter {
                    dots.push((*cy, sy.clone()));
                }
                j += 1;
            }
            (None, None) => break,
        }
    }
    DvvEntry {
        actor: x.actor,
        counter: x.counter.max(y.counter),
        dots,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Actor = Actor::new(1, 1);
    const B: Actor = Actor::new(2, 1);

    fn v(s: &str) -> Sibling {
        Sibling::value(s.as_bytes().to_vec(), 0)
    }

    fn vals(d: &Dvv) -> Vec<String> {
        d.values()
            .iter()
            .map(|s| match &s.value {
                Some(b) => String::from_utf8_lossy(b).into_owned(),
                None => "<tomb>".to_owned(),
            })
            .collect()
    }

    #[test]
    fn dvv_update_without_context_makes_sibling() {
        let d = Dvv::new().update(&VersionVector::new(), v("a"), A);
        let d = d.update(&VersionVector::new(), v("b"), A);
        assert_eq!(vals(&d), ["a", "b"]);
        assert_eq!(d.join().get(&A), 2);
    }

    #[test]
    fn dvv_update_with_context_replaces_what_was_seen() {
        let d = Dvv::new().update(&VersionVector::new(), v("a"), A);
        let ctx = d.join();
        let d = d.update(&VersionVector::new(), v("b"), B); // concurrent, not seen
        let d = d.update(&ctx, v("c"), A);
        assert_eq!(vals(&d), ["c", "b"]);
    }

    #[test]
    fn dvv_update_records_context_for_other_replicas() {
        // Replica 1 has "a" by A; replica 2 got it by sync. A client reads replica 2 and
        // writes through B with that context; syncing back removes "a" from replica 1.
        let r1 = Dvv::new().update(&VersionVector::new(), v("a"), A);
        let r2 = Dvv::new().sync(&r1);
        let r2 = r2.update(&r2.join(), v("b"), B);
        let r1 = r1.sync(&r2);
        assert_eq!(vals(&r1), ["b"]);
    }

    #[test]
    fn dvv_update_context_ahead_of_store_mints_above_it() {
        let ctx = VersionVector::from_pairs([(A, 7)]);
        let d = Dvv::new().update(&ctx, v("x"), A);
        assert_eq!(d.siblings().next().map(|(dot, _)| dot.counter), Some(8));
    }

    #[test]
    fn dvv_concurrent_writes_survive_sync() {
        let base = Dvv::new().update(&VersionVector::new(), v("a"), A);
        let ctx = base.join();
        let x = base.update(&ctx, v("x"), A);
        let y = base.sync(&Dvv::new()).update(&ctx, v("y"), B);
        let m = x.sync(&y);
        assert_eq!(vals(&m), ["x", "y"]);
        let resolved = m.update(&m.join(), v("z"), B);
        assert_eq!(vals(&resolved), ["z"]);
        assert!(resolved.dominates(&m) && m.less(&resolved));
    }

    #[test]
    fn dvv_causal_tombstone_replaces_seen_values() {
        let d = Dvv::new().update(&VersionVector::new(), v("a"), A);
        let d = d.update(&d.join(), Sibling::tombstone(5), A);
        assert!(d.is_all_tombstones());
        assert_eq!(d.sibling_count(), 1);
        let older = Dvv::new().update(&VersionVector::new(), v("a"), A);
        assert!(d.sync(&older).is_all_tombstones());
    }

    #[test]
    fn dvv_expired_sibling_is_dropped_and_stays_dropped() {
        let d = Dvv::new().update(&VersionVector::new(), v("keep"), A);
        let d = d.update(&VersionVector::new(), v("ttl").with_expiry(100), A);
        let d = d.update(&VersionVector::new(), v("last"), A);
        assert!(d.has_expired(100) && !d.has_expired(99));
        let e = d.without_expired(100);
        assert_eq!(vals(&e), ["keep", "last"]);
        // A replica that has not expired it yet does not bring it back.
        assert_eq!(vals(&e.sync(&d)), ["keep", "last"]);
    }

    #[test]
    fn dvv_superseding_one_copy_of_a_write_drops_every_copy() {
        // A write (id 9) retried through a second coordinator: two copies, two dots.
        let copy_a = Dvv::new().update(&VersionVector::new(), v("x").with_write_id(Some(9)), A);
        let copy_b = Dvv::new().update(&VersionVector::new(), v("x").with_write_id(Some(9)), B);
        // A reader saw only copy B and deleted with its context.
        let mut deleted = copy_b.clone();
        deleted.supersede(&[9], 1_000);
        let deleted = deleted.update(&copy_b.join(), Sibling::tombstone(5), B);
        assert!(deleted.superseded(9));
        // Copy A arrives later, in either order: it does not come back.
        for merged in [deleted.sync(&copy_a), copy_a.sync(&deleted)] {
            assert!(merged.is_all_tombstones(), "{merged:?}");
            assert!(merged.superseded(9));
        }
        // Once the memory expires the cell forgets the id (and nothing else).
        let later = deleted.sync(&copy_a).without_expired(1_000);
        assert!(!later.superseded(9) && later.is_all_tombstones());
    }

    #[test]
    fn dvv_superseded_list_keeps_the_latest_to_expire() {
        let mut d = Dvv::new();
        let ids: Vec<u128> = (0..(MAX_SUPERSEDED as u128 + 10)).collect();
        for id in &ids {
            d.supersede(&[*id], 100 + *id as u64);
        }
        assert_eq!(d.superseded_ids().len(), MAX_SUPERSEDED);
        assert!(!d.superseded(0) && d.superseded(*ids.last().unwrap()));
        let mut e = Dvv::new();
        e.supersede(&[5], 10_000);
        let m = d.sync(&e);
        assert!(m.superseded(5) && m == e.sync(&d));
    }
}
