//! [`Workload`]: the request stream of one connection (or one pipelined task): which op
//! comes next, which key, which value, as protocol [`Request`]s.
//!
//! Keys are `key:` followed by a 12-digit zero-padded number drawn uniformly from
//! `[0, keyspace)` (the shape `redis-benchmark -r` uses), so runs against both stores touch
//! comparable key sets. Every put writes one column, [`VALUE_COLUMN`], with a value of the
//! configured size (printable bytes drawn once per workload). A `mixed` workload draws a
//! get with probability `ratio`. Deterministic for a given seed. Owned by one task.
//!
//! Token-aware runs give each connection a [`KeyRoute`]: the connection goes to one ring
//! member and draws only keys that member owns (uniform draws, kept when the key's token
//! falls in the member's ranges), so every request reaches a replica of its key, as a
//! token-aware client's would. Each member's keys stay uniform within its ranges.

use std::sync::Arc;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sibyl_protocol::client::ClientRing;
use sibyl_protocol::{ColumnWrite, Consistency, Request, RowInsert, Selector};

/// The column every put writes.
pub const VALUE_COLUMN: &[u8] = b"v";

/// The kind of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// An insert of one column.
    Put,
    /// A whole-row read.
    Get,
}

impl OpKind {
    /// `put` or `get`.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
        }
    }
}

/// Which ops a run issues.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpMix {
    /// Only puts.
    Put,
    /// Only gets.
    Get,
    /// Gets with probability `read_ratio`, puts otherwise.
    Mixed {
        /// Fraction of requests that are gets, in `[0, 1]`.
        read_ratio: f64,
    },
}

/// What a workload needs to know.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Table name.
    pub table: String,
    /// Op mix.
    pub mix: OpMix,
    /// Keys are drawn from `[0, keyspace)`.
    pub keyspace: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// Per-request consistency (`None` = the table's default).
    pub consistency: Option<Consistency>,
}

/// The keys one connection draws: those whose token `ring` gives to member `member`.
#[derive(Debug, Clone)]
pub struct KeyRoute {
    /// The ring fetched before the run.
    pub ring: Arc<ClientRing>,
    /// Index into `ring.members()` of the member this connection talks to.
    pub member: usize,
}

/// Draws tried for a key of the route's member before taking the last one drawn (a member
/// owning almost nothing must not stall the run; its connection then sends a few requests
/// that the node forwards).
const ROUTE_DRAWS: usize = 1024;

/// A deterministic request generator.
#[derive(Debug)]
pub struct Workload {
    spec: WorkloadSpec,
    rng: StdRng,
    value: Bytes,
    column: Bytes,
    route: Option<KeyRoute>,
}

/// The seed of stream `index` of a run seeded with `seed` (distinct, reproducible).
pub fn stream_seed(seed: u64, index: u64) -> u64 {
    // splitmix64 of (seed, index): well-spread seeds for neighbouring indexes.
    let mut z = seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Workload {
    /// A workload drawing from `StdRng` seeded with `seed`.
    pub fn new(spec: WorkloadSpec, seed: u64) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed);
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let value: Vec<u8> = (0..spec.value_size)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
            .collect();
        Workload {
            spec,
            rng,
            value: Bytes::from(value),
            column: Bytes::from_static(VALUE_COLUMN),
            route: None,
        }
    }

    /// The same workload drawing only keys of `route` (see the module docs).
    pub fn routed(spec: WorkloadSpec, seed: u64, route: Option<KeyRoute>) -> Workload {
        Workload {
            route,
            ..Workload::new(spec, seed)
        }
    }

    /// The kind of the next request (advances the generator).
    pub fn next_kind(&mut self) -> OpKind {
        match self.spec.mix {
            OpMix::Put => OpKind::Put,
            OpMix::Get => OpKind::Get,
            OpMix::Mixed { read_ratio } => {
                if self.rng.gen_bool(read_ratio.clamp(0.0, 1.0)) {
                    OpKind::Get
                } else {
                    OpKind::Put
                }
            }
        }
    }

    /// The next key, `key:000000012345` (one its route's member owns, if routed).
    pub fn next_key(&mut self) -> Bytes {
        let mut key = self.draw_key();
        if let Some(route) = self.route.take() {
            for _ in 1..ROUTE_DRAWS {
                if route.ring.owner_index(route.ring.token_of(&key)) == Some(route.member) {
                    break;
                }
                key = self.draw_key();
            }
            self.route = Some(route);
        }
        key
    }

    fn draw_key(&mut self) -> Bytes {
        let n = self.rng.gen_range(0..self.spec.keyspace.max(1));
        Bytes::from(format!("key:{n:012}"))
    }

    /// The next request and its kind.
    pub fn next_request(&mut self) -> (OpKind, Request) {
        let kind = self.next_kind();
        let key = self.next_key();
        let request = match kind {
            OpKind::Put => Request::Insert {
                insert: RowInsert {
                    write_id: None,
                    table: self.spec.table.clone(),
                    key,
                    ttl_secs: None,
                    timestamp_micros: None,
                    columns: vec![ColumnWrite {
                        name: self.column.clone(),
                        value: self.value.clone(),
                        context: Bytes::new(),
                    }],
                },
                consistency: self.spec.consistency,
            },
            OpKind::Get => Request::Get {
                table: self.spec.table.clone(),
                key,
                selector: Selector::All,
                consistency: self.spec.consistency,
            },
        };
        (kind, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mix: OpMix) -> WorkloadSpec {
        WorkloadSpec {
            table: "t".into(),
            mix,
            keyspace: 1000,
            value_size: 100,
            consistency: None,
        }
    }

    #[test]
    fn workload_same_seed_same_requests() {
        let mut a = Workload::new(spec(OpMix::Mixed { read_ratio: 0.5 }), 7);
        let mut b = Workload::new(spec(OpMix::Mixed { read_ratio: 0.5 }), 7);
        for _ in 0..100 {
            assert_eq!(a.next_request(), b.next_request());
        }
    }

    #[test]
    fn workload_put_writes_value_of_size_with_key_in_space() {
        let mut w = Workload::new(spec(OpMix::Put), 1);
        for _ in 0..100 {
            let (kind, req) = w.next_request();
            assert_eq!(kind, OpKind::Put);
            let Request::Insert { insert, .. } = req else {
                panic!("not an insert")
            };
            assert_eq!(insert.columns[0].value.len(), 100);
            let key = std::str::from_utf8(&insert.key).unwrap();
            let n: u64 = key.strip_prefix("key:").unwrap().parse().unwrap();
            assert!(n < 1000);
            assert_eq!(key.len(), 16);
        }
    }

    #[test]
    fn workload_mixed_ratio_draws_both_kinds() {
        let mut w = Workload::new(spec(OpMix::Mixed { read_ratio: 0.5 }), 3);
        let gets = (0..1000).filter(|_| w.next_kind() == OpKind::Get).count();
        assert!((300..700).contains(&gets), "{gets}");
    }

    /// Three members with tokens spread over the murmur3 range.
    fn three_member_ring() -> Arc<ClientRing> {
        use sibyl_protocol::message::topology::{NodeInfo, NodeState, Topology};
        let step = i128::from(i64::MAX) / 3;
        let nodes = (0..3i128)
            .map(|i| NodeInfo {
                id: format!("n{i}"),
                address: format!("127.0.0.{}:7400", i + 1),
                datacenter: "dc1".into(),
                rack: "rack1".into(),
                state: NodeState::Normal,
                up: true,
                tokens: vec![-step + i * step, step / 2 + i * step],
                load_bytes: 0,
            })
            .collect();
        let topology = Topology {
            partitioner: "murmur3".into(),
            nodes,
        };
        Arc::new(ClientRing::from_topology(&topology).unwrap())
    }

    #[test]
    fn routed_workload_draws_only_keys_its_member_owns() {
        let ring = three_member_ring();
        for member in 0..3 {
            let route = KeyRoute {
                ring: Arc::clone(&ring),
                member,
            };
            let mut w = Workload::routed(spec(OpMix::Put), 11, Some(route));
            let mut distinct = std::collections::HashSet::new();
            for _ in 0..200 {
                let key = w.next_key();
                assert_eq!(ring.owner_index(ring.token_of(&key)), Some(member));
                distinct.insert(key);
            }
            // Still a spread of keys, not one key repeated.
            assert!(distinct.len() > 50, "{}", distinct.len());
        }
    }

    #[test]
    fn stream_seed_distinct_per_index() {
        let seeds: std::collections::HashSet<u64> = (0..1000).map(|i| stream_seed(42, i)).collect();
        assert_eq!(seeds.len(), 1000);
    }
}
