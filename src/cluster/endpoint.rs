//! Versioned endpoint state: what gossip knows about one node (scuttlebutt's per-node map).
//!
//! Each node owns its state and is the only writer of it (the one exception is
//! `removenode`, which publishes a state for a dead node under a higher generation). Every
//! change takes a fresh version from the owner's counter, so `(generation, max_version)`
//! summarises a state in a digest, and a peer asks for "everything after version v".
//!
//! Invariants: within one generation versions only grow; a higher generation (a restart)
//! replaces the whole state; the heartbeat is kept apart from the application states
//! because it changes every round and most deltas carry nothing else.
//!
//! Plain values; the gossiper owns them (single-threaded state machine).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::ring::{NodeId, Token};

/// Lifecycle of a node in the ring (Cassandra's STATUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeStatus {
    /// Announced, tokens not yet owned (pending).
    Joining,
    /// Owns its tokens.
    Normal,
    /// Still owns its tokens while handing its ranges off.
    Leaving,
    /// Left the ring (decommissioned); owns nothing.
    Left,
    /// Removed by an operator (`removenode`) while dead; owns nothing.
    Removed,
    /// Owns its tokens while it moves to new ones ([`AppState::MovingTo`]): it pulls the
    /// ranges the new tokens gain and pushes those the old ones lose, then announces
    /// `normal` with the new tokens (`sibyl-admin rebalance`).
    Moving,
}

impl NodeStatus {
    /// True while the node's tokens count on the ring.
    pub fn owns_tokens(&self) -> bool {
        matches!(
            self,
            NodeStatus::Normal | NodeStatus::Leaving | NodeStatus::Moving
        )
    }

    /// True once the node has gone for good (never gossiped to again).
    pub fn is_departed(&self) -> bool {
        matches!(self, NodeStatus::Left | NodeStatus::Removed)
    }

    /// Lower-case name for logs: `joining`, `normal`, ...
    pub fn name(&self) -> &'static str {
        match self {
            NodeStatus::Joining => "joining",
            NodeStatus::Normal => "normal",
            NodeStatus::Leaving => "leaving",
            NodeStatus::Left => "left",
            NodeStatus::Removed => "removed",
            NodeStatus::Moving => "moving",
        }
    }
}

/// One application state value (Cassandra's ApplicationState + VersionedValue payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppState {
    /// Ring status.
    Status(NodeStatus),
    /// Tokens the node claims.
    Tokens(Arc<[Token]>),
    /// Address of the peer (node-to-node) port.
    PeerAddress(SocketAddr),
    /// Address of the client port.
    ClientAddress(SocketAddr),
    /// Declared datacenter.
    Datacenter(Arc<str>),
    /// Declared rack.
    Rack(Arc<str>),
    /// Hash of the node's schema (tables); a mismatch triggers a schema pull.
    SchemaVersion(u64),
    /// Bytes of data the node holds.
    Load(u64),
    /// The dead node whose tokens this node takes over (`--replace`): while this node is
    /// joining, the future ring has it in that node's place; once it is normal, the
    /// replaced node owns nothing.
    Replacing(NodeId),
    /// The tokens a `moving` node moves to: while it is moving, the future ring has it
    /// there. Ignored in any other status.
    MovingTo(Arc<[Token]>),
}

/// Number of distinct [`AppState`] kinds.
pub const APP_STATE_KINDS: usize = 10;

impl AppState {
    /// Index of this state's kind, `0..APP_STATE_KINDS` (also its wire key).
    pub fn kind(&self) -> usize {
        match self {
            AppState::Status(_) => 0,
            AppState::Tokens(_) => 1,
            AppState::PeerAddress(_) => 2,
            AppState::ClientAddress(_) => 3,
            AppState::Datacenter(_) => 4,
            AppState::Rack(_) => 5,
            AppState::SchemaVersion(_) => 6,
            AppState::Load(_) => 7,
            AppState::Replacing(_) => 8,
            AppState::MovingTo(_) => 9,
        }
    }
}

/// A value with the version its owner gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Owner's version counter when the value was set.
    pub version: u64,
}

/// Heartbeat: a counter bumped once per gossip round, with its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// Rounds since the generation started.
    pub value: u64,
    /// Version of the heartbeat entry.
    pub version: u64,
}

/// Everything gossip knows about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointState {
    /// Start generation (a restart takes a higher one).
    pub generation: u64,
    /// Heartbeat (liveness signal). Set it through [`EndpointState::set_heartbeat`].
    heartbeat: Heartbeat,
    states: [Option<Versioned<AppState>>; APP_STATE_KINDS],
    /// Highest version of any entry (cached: digests are built every round).
    max_version: u64,
}

/// A digest: a summary of one endpoint state (scuttlebutt's `(node, max version)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipDigest {
    /// The node summarised.
    pub node: NodeId,
    /// Its generation.
    pub generation: u64,
    /// Its highest version.
    pub max_version: u64,
}

/// The part of one endpoint state a peer lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointDelta {
    /// The node the state is about.
    pub node: NodeId,
    /// Generation the versions belong to.
    pub generation: u64,
    /// Heartbeat, when newer than what the peer has.
    pub heartbeat: Option<Heartbeat>,
    /// Application states newer than what the peer has.
    pub states: Vec<Versioned<AppState>>,
}

/// What applying a delta changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyOutcome {
    /// The heartbeat advanced (or a new generation started): a liveness signal.
    pub heartbeat_advanced: bool,
    /// A new generation replaced the state (the node restarted).
    pub restarted: bool,
    /// Bit `k` is set when the application state of kind `k` changed.
    pub changed_kinds: u16,
}

impl ApplyOutcome {
    /// True when any application state changed.
    pub fn states_changed(&self) -> bool {
        self.changed_kinds != 0
    }

    /// True when the state of `kind` (see [`AppState::kind`]) changed.
    pub fn changed(&self, kind: usize) -> bool {
        self.changed_kinds & (1 << kind) != 0
    }
}

impl EndpointState {
    /// An empty state for `generation`.
    pub fn new(generation: u64) -> EndpointState {
        EndpointState {
            generation,
            heartbeat: Heartbeat::default(),
            states: Default::default(),
            max_version: 0,
        }
    }

    /// Highest version in the state (heartbeat included).
    pub fn max_version(&self) -> u64 {
        self.max_version
    }

    /// Highest version of the application states (the heartbeat left out): it changes
    /// exactly when one of them does, so the cluster view is rebuilt only then.
    pub fn states_version(&self) -> u64 {
        self.states().map(|v| v.version).max().unwrap_or(0)
    }

    /// The heartbeat.
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat
    }

    /// Sets the heartbeat (owner side).
    pub fn set_heartbeat(&mut self, heartbeat: Heartbeat) {
        self.heartbeat = heartbeat;
        self.max_version = self.max_version.max(heartbeat.version);
    }

    /// The digest of this state for `node`.
    pub fn digest(&self, node: NodeId) -> GossipDigest {
        GossipDigest {
            node,
            generation: self.generation,
            max_version: self.max_version(),
        }
    }

    /// Sets an application state at `version` (owner side).
    pub fn set(&mut self, state: AppState, version: u64) {
        if let Some(slot) = self.states.get_mut(state.kind()) {
            *slot = Some(Versioned {
                value: state,
                version,
            });
            self.max_version = self.max_version.max(version);
        }
    }

    /// The application states present.
    pub fn states(&self) -> impl Iterator<Item = &Versioned<AppState>> {
        self.states.iter().flatten()
    }

    /// The delta a peer that has seen up to `after` (in this generation) lacks.
    pub fn delta_after(&self, node: NodeId, after: u64) -> EndpointDelta {
        EndpointDelta {
            node,
            generation: self.generation,
            heartbeat: (self.heartbeat.version > after).then_some(self.heartbeat),
            states: self
                .states()
                .filter(|v| v.version > after)
                .cloned()
                .collect(),
        }
    }

    /// Builds a state from a delta that carries a whole state (a new node or generation).
    pub fn from_delta(delta: &EndpointDelta) -> EndpointState {
        let mut s = EndpointState::new(delta.generation);
        s.apply(delta);
        s
    }

    /// Merges a delta of the same generation: newer entries win. A delta for another
    /// generation is ignored here (the caller decides about restarts).
    pub fn apply(&mut self, delta: &EndpointDelta) -> ApplyOutcome {
        let mut out = ApplyOutcome::default();
        if delta.generation != self.generation {
            return out;
        }
        if let Some(hb) = delta.heartbeat {
            if hb.version > self.heartbeat.version {
                out.heartbeat_advanced =
                    hb.value > self.heartbeat.value || self.heartbeat.version == 0;
                self.set_heartbeat(hb);
            }
        }
        for v in &delta.states {
            if let Some(slot) = self.states.get_mut(v.value.kind()) {
                let newer = slot.as_ref().is_none_or(|old| v.version > old.version);
                if newer {
                    let same = slot.as_ref().is_some_and(|old| old.value == v.value);
                    *slot = Some(v.clone());
                    self.max_version = self.max_version.max(v.version);
                    if !same {
                        out.changed_kinds |= 1 << v.value.kind();
                    }
                }
            }
        }
        out
    }

    /// Ring status, if announced.
    pub fn status(&self) -> Option<NodeStatus> {
        match self.states.first()?.as_ref()?.value {
            AppState::Status(s) => Some(s),
            _ => None,
        }
    }

    /// Tokens, if announced.
    pub fn tokens(&self) -> Option<&Arc<[Token]>> {
        match &self.states.get(1)?.as_ref()?.value {
            AppState::Tokens(t) => Some(t),
            _ => None,
        }
    }

    /// Peer address, if announced.
    pub fn peer_address(&self) -> Option<SocketAddr> {
        match self.states.get(2)?.as_ref()?.value {
            AppState::PeerAddress(a) => Some(a),
            _ => None,
        }
    }

    /// Client address, if announced.
    pub fn client_address(&self) -> Option<SocketAddr> {
        match self.states.get(3)?.as_ref()?.value {
            AppState::ClientAddress(a) => Some(a),
            _ => None,
        }
    }

    /// Datacenter, if announced.
    pub fn datacenter(&self) -> Option<&Arc<str>> {
        match &self.states.get(4)?.as_ref()?.value {
            AppState::Datacenter(d) => Some(d),
            _ => None,
        }
    }

    /// Rack, if announced.
    pub fn rack(&self) -> Option<&Arc<str>> {
        match &self.states.get(5)?.as_ref()?.value {
            AppState::Rack(r) => Some(r),
            _ => None,
        }
    }

    /// Schema version, if announced.
    pub fn schema_version(&self) -> Option<u64> {
        match self.states.get(6)?.as_ref()?.value {
            AppState::SchemaVersion(v) => Some(v),
            _ => None,
        }
    }

    /// Load in bytes, if announced.
    pub fn load(&self) -> Option<u64> {
        match self.states.get(7)?.as_ref()?.value {
            AppState::Load(v) => Some(v),
            _ => None,
        }
    }

    /// The node this one replaces, if announced.
    pub fn replacing(&self) -> Option<NodeId> {
        match self.states.get(8)?.as_ref()?.value {
            AppState::Replacing(n) => Some(n),
            _ => None,
        }
    }

    /// The tokens the node moves to, if announced (meaningful while it is `moving`).
    pub fn moving_to(&self) -> Option<&Arc<[Token]>> {
        match &self.states.get(9)?.as_ref()?.value {
            AppState::MovingTo(t) => Some(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EndpointState {
        let mut s = EndpointState::new(7);
        s.set(AppState::Status(NodeStatus::Normal), 1);
        s.set(AppState::Load(10), 2);
        s.set_heartbeat(Heartbeat {
            value: 3,
            version: 5,
        });
        s
    }

    #[test]
    fn endpoint_max_version_includes_heartbeat() {
        assert_eq!(sample().max_version(), 5);
    }

    #[test]
    fn endpoint_delta_after_carries_only_newer_entries() {
        let s = sample();
        let d = s.delta_after(NodeId(1), 1);
        assert_eq!(d.states.len(), 1);
        assert_eq!(d.states[0].value, AppState::Load(10));
        assert!(d.heartbeat.is_some());
        let d = s.delta_after(NodeId(1), 5);
        assert!(d.states.is_empty() && d.heartbeat.is_none());
    }

    #[test]
    fn endpoint_apply_keeps_newer_versions() {
        let mut a = sample();
        let mut b = sample();
        b.set(AppState::Load(99), 6);
        b.set_heartbeat(Heartbeat {
            value: 4,
            version: 7,
        });
        let out = a.apply(&b.delta_after(NodeId(1), 5));
        assert!(out.heartbeat_advanced && out.states_changed());
        assert!(out.changed(AppState::Load(0).kind()));
        assert_eq!(a.load(), Some(99));
        // Re-applying an older delta changes nothing.
        let out = a.apply(&sample().delta_after(NodeId(1), 0));
        assert_eq!(out, ApplyOutcome::default());
        assert_eq!(a.load(), Some(99));
    }

    #[test]
    fn endpoint_apply_ignores_other_generation() {
        let mut a = sample();
        let mut d = sample().delta_after(NodeId(1), 0);
        d.generation = 8;
        assert_eq!(a.apply(&d), ApplyOutcome::default());
    }

    #[test]
    fn endpoint_from_full_delta_reproduces_state() {
        let s = sample();
        assert_eq!(EndpointState::from_delta(&s.delta_after(NodeId(1), 0)), s);
    }
}
