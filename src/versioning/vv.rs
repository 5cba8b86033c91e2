//! Version vectors: actor -> counter, meaning "every event of that actor up to the counter
//! has been seen". A [`super::Dvv`]'s join and a client [`super::Context`] are version
//! vectors.
//!
//! Invariant: entries strictly ascending by actor, no zero counters (an absent actor means
//! counter 0), so equal vectors have equal representations.

use std::cmp::Ordering;

use super::actor::Actor;

/// A version vector: sorted `(actor, counter)` pairs with counters >= 1.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionVector {
    entries: Vec<(Actor, u64)>,
}

impl VersionVector {
    /// The empty vector (has seen nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a vector from pairs in any order; duplicates keep the highest counter, zero
    /// counters are dropped.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Actor, u64)>) -> Self {
        let mut entries: Vec<(Actor, u64)> = pairs.into_iter().filter(|(_, n)| *n > 0).collect();
        entries.sort_unstable();
        // After sorting, the last of equal actors has the highest counter.
        let mut out: Vec<(Actor, u64)> = Vec::with_capacity(entries.len());
        for (a, n) in entries {
            match out.last_mut() {
                Some((last, m)) if *last == a => *m = n,
                _ => out.push((a, n)),
            }
        }
        VersionVector { entries: out }
    }

    /// Builds from entries already strictly sorted by actor with counters >= 1 (checked by
    /// the caller, e.g. a decoder).
    pub(crate) fn from_sorted_unchecked(entries: Vec<(Actor, u64)>) -> Self {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        debug_assert!(entries.iter().all(|(_, n)| *n > 0));
        VersionVector { entries }
    }

    /// The counter of `actor` (0 when absent).
    pub fn get(&self, actor: &Actor) -> u64 {
        match self.entries.binary_search_by(|(a, _)| a.cmp(actor)) {
            Ok(i) => self.entries.get(i).map_or(0, |(_, n)| *n),
            Err(_) => 0,
        }
    }

    /// The entries, ascending by actor.
    pub fn entries(&self) -> &[(Actor, u64)] {
        &self.entries
    }

    /// Number of actors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the vector has seen nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `self` has seen everything `other` has (pointwise >=).
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.entries.iter().all(|(a, n)| self.get(a) >= *n)
    }

    /// True when `self` descends `other` and differs from it (strictly newer).
    pub fn dominates(&self, other: &VersionVector) -> bool {
        self != other && self.descends(other)
    }

    /// The causal order: `Some(Less)` when `other` strictly dominates, `Some(Equal)` when
    /// equal, `None` when concurrent.
    pub fn causal_cmp(&self, other: &VersionVector) -> Option<Ordering> {
        match (self.descends(other), other.descends(self)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Greater),
            (false, true) => Some(Ordering::Less),
            (false, false) => None,
        }
    }

    /// Pointwise maximum.
    pub fn merge(&self, other: &VersionVector) -> VersionVector {
        let mut out = Vec::with_capacity(self.entries.len().max(other.entries.len()));
        let (mut i, mut j) = (0, 0);
        loop {
            match (self.entries.get(i), other.entries.get(j)) {
                (Some(&(a, n)), Some(&(b, m))) => match a.cmp(&b) {
                    Ordering::Less => {
                        out.push((a, n));
                        i += 1;
                    }
                    Ordering::Greater => {
                        out.push((b, m));
                        j += 1;
                    }
                    Ordering::Equal => {
                        out.push((a, n.max(m)));
                        i += 1;
                        j += 1;
                    }
                },
                (Some(&e), None) => {
                    out.push(e);
                    i += 1;
                }
                (None, Some(&e)) => {
                    out.push(e);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        VersionVector { entries: out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u64) -> Actor {
        Actor::new(n, 1)
    }

    #[test]
    fn version_vector_from_pairs_normalises() {
        let v = VersionVector::from_pairs([(a(2), 3), (a(1), 0), (a(2), 5), (a(0), 1)]);
        assert_eq!(v.entries(), &[(a(0), 1), (a(2), 5)]);
        assert_eq!(v.get(&a(1)), 0);
    }

    #[test]
    fn version_vector_causal_cmp_detects_concurrency() {
        let x = VersionVector::from_pairs([(a(1), 2), (a(2), 1)]);
        let y = VersionVector::from_pairs([(a(1), 1), (a(2), 2)]);
        let z = x.merge(&y);
        assert_eq!(x.causal_cmp(&y), None);
        assert_eq!(z.causal_cmp(&x), Some(Ordering::Greater));
        assert_eq!(x.causal_cmp(&z), Some(Ordering::Less));
        assert_eq!(z.causal_cmp(&z), Some(Ordering::Equal));
        assert!(z.dominates(&x) && !z.dominates(&z));
    }
}
