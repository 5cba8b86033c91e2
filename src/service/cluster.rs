//! The service's side of cluster membership: the node's [`ClusterHandle`] (the published
//! view, and the commands for the operator's `removenode` and status changes), the
//! topology answer built from its [`ClusterView`] with each node's gossiped load, and the
//! [`SchemaSource`] gossip uses to spread tables (see [`super::schema_sync`]) and users
//! (entries `user:NAME` of the same export, merged by [`crate::auth::UserStore`]).
//!
//! # Invariants
//! - Schema import runs under the service's DDL mutex, like local DDL, so engine tables,
//!   the schema cache and the stamps change together.
//! - Nothing here waits for the runtime while holding the DDL mutex (the runtime may be
//!   waiting for it inside `import`); announcements to the handle never wait.
//!
//! # Threading
//! `import`, `export` and `schema_version` run on the blocking pool for the gossip task;
//! the rest on request handlers. All of it is blocking but short (engine DDL at most).

use std::sync::Arc;

use sibyl_protocol::{NodeInfo, NodeState, Topology};

use super::schema::{self, TableSchema};
use super::schema_sync::{
    decode_export, export_with, save_stamps, version_of, ExportEntry, Stamps,
};
use super::{lock, Service};
use crate::auth::store::EXPORT_PREFIX;
use crate::cluster::{ClusterHandle, ClusterView, NodeStatus, NodeView, SchemaSource};
use crate::ring::Token;

/// The protocol's state of a node.
fn node_state(status: Option<NodeStatus>) -> NodeState {
    match status {
        None | Some(NodeStatus::Joining) => NodeState::Joining,
        Some(NodeStatus::Normal) => NodeState::Normal,
        Some(NodeStatus::Leaving) => NodeState::Leaving,
        Some(NodeStatus::Left) | Some(NodeStatus::Removed) => NodeState::Left,
        Some(NodeStatus::Moving) => NodeState::Moving,
    }
}

/// A token as the topology carries it: murmur3 sign-extended, md5 as is (2^127, the one
/// md5 token above `i128::MAX`, saturates).
pub fn token_value(t: &Token) -> i128 {
    match *t {
        Token::Murmur3(v) => i128::from(v),
        Token::Md5(v) => i128::try_from(v).unwrap_or(i128::MAX),
    }
}

fn node_info(n: &NodeView) -> NodeInfo {
    let mut tokens: Vec<i128> = n.tokens.iter().map(token_value).collect();
    tokens.sort_unstable();
    NodeInfo {
        id: n.id.to_string(),
        // Empty until the node's client address reaches this node: the peer address
        // accepts no clients, so it is never offered in its place (wire spec 5.6).
        address: n.client_address.map(|a| a.to_string()).unwrap_or_default(),
        datacenter: n.location.datacenter.to_string(),
        rack: n.location.rack.to_string(),
        state: node_state(n.status),
        up: n.alive,
        tokens,
        load_bytes: n.load,
    }
}

/// The topology answer for a membership snapshot: every known node.
pub fn topology_from_view(view: &ClusterView) -> Topology {
    Topology {
        partitioner: view.partitioner.name().to_owned(),
        nodes: view.nodes.values().map(node_info).collect(),
    }
}

impl Service {
    /// The node's membership handle (given at open).
    pub fn cluster(&self) -> Option<&Arc<ClusterHandle>> {
        self.cluster.as_ref()
    }

    /// The topology from the live view, when a cluster is attached.
    pub(super) fn cluster_topology(&self) -> Option<Topology> {
        let view = self.cluster.as_ref()?.view()?;
        Some(topology_from_view(&view))
    }

    /// The answer to DESCRIBE_CLUSTER for a cluster named `cluster_name`: this node's
    /// schema version and, from the published view, every node's (just this node before
    /// gossip publishes one).
    pub fn describe_cluster(&self, cluster_name: &str) -> sibyl_protocol::ClusterDescription {
        let schema_version = crate::cluster::SchemaSource::schema_version(self);
        let view = self.cluster.as_ref().and_then(|c| c.view());
        let nodes = match &view {
            Some(v) => v
                .nodes
                .values()
                .map(|n| sibyl_protocol::NodeSchema {
                    id: n.id.to_string(),
                    address: n.client_address.map(|a| a.to_string()).unwrap_or_default(),
                    schema_version: n.schema_version,
                })
                .collect(),
            None => vec![sibyl_protocol::NodeSchema {
                id: super::node_id(self.actor),
                address: self.opts.node_address.clone(),
                schema_version: Some(schema_version),
            }],
        };
        sibyl_protocol::ClusterDescription {
            cluster_name: cluster_name.to_owned(),
            partitioner: self.opts.partitioner.name().to_owned(),
            schema_version,
            nodes,
        }
    }

    /// Tells gossip the schema changed. Call without holding the DDL mutex.
    pub(super) fn announce_schema_change(&self) {
        if let Some(link) = self.cluster.as_ref() {
            link.schema_changed();
        }
    }

    /// Bytes of data the node holds (SSTables plus memtables, all tables).
    pub fn load_bytes(&self) -> u64 {
        let names = self.engine.tables();
        names
            .iter()
            .filter_map(|t| self.engine.stats(t).ok())
            .map(|s| s.sstable_bytes.saturating_add(s.memtable_bytes))
            .fold(0u64, u64::saturating_add)
    }

    fn export_locked(&self, stamps: &Stamps) -> Vec<u8> {
        let tables = self.read_tables();
        export_with(
            stamps,
            |name| tables.get(name).map(|s| TableSchema::clone(s)),
            self.users.export_entries(),
        )
    }

    pub(super) fn version_locked(&self, stamps: &Stamps) -> u64 {
        let empty = stamps.is_empty() && self.users.is_empty();
        version_of(&self.export_locked(stamps), empty)
    }

    pub(super) fn persist_stamps(&self, stamps: &Stamps) {
        if let Err(e) = save_stamps(&self.opts.data_dir, stamps) {
            tracing::error!(error = %e, "cannot save the schema stamps; a restart may see an older schema");
        }
    }

    /// The local entry of `name` in export form.
    fn local_entry(&self, stamps: &Stamps, name: &str) -> Option<ExportEntry> {
        let stamp = *stamps.get(name)?;
        let metadata = if stamp.dropped {
            Vec::new()
        } else {
            self.read_tables().get(name)?.encode_metadata()
        };
        Some(ExportEntry {
            name: name.to_owned(),
            stamp,
            metadata,
        })
    }

    /// Applies one winning remote entry to the engine; false when it could not be.
    fn apply_remote(&self, local: Option<&ExportEntry>, remote: &ExportEntry) -> bool {
        let name = &remote.name;
        let local_live = local.is_some_and(|l| !l.stamp.dropped);
        if remote.stamp.dropped {
            if local_live {
                if let Err(e) = self.drop_engine_table(name) {
                    tracing::warn!(table = %name, error = %e.message, "cannot drop a table dropped elsewhere");
                    return false;
                }
                tracing::info!(table = %name, "table dropped (schema from a peer)");
            }
            return true;
        }
        let schema = match TableSchema::decode_metadata(name, &remote.metadata) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(table = %name, error = %e, "peer sent unreadable table options");
                return false;
            }
        };
        if let Err(e) = schema::validate(name, &schema.options) {
            tracing::warn!(table = %name, error = %e, "peer sent invalid table options");
            return false;
        }
        if local_live && local.is_some_and(|l| l.metadata == remote.metadata) {
            return true;
        }
        if local_live {
            tracing::warn!(
                table = %name,
                "a newer create of this table with other options won (last writer wins): \
                 re-creating it empty"
            );
            if let Err(e) = self.drop_engine_table(name) {
                tracing::warn!(table = %name, error = %e.message, "cannot replace a table");
                return false;
            }
        }
        match self.create_engine_table(schema) {
            Ok(()) => {
                tracing::info!(table = %name, "table created (schema from a peer)");
                true
            }
            Err(e) => {
                tracing::warn!(table = %name, error = %e.message, "cannot create a table created elsewhere");
                false
            }
        }
    }
}

impl SchemaSource for Service {
    fn schema_version(&self) -> u64 {
        let stamps = lock(&self.ddl);
        self.version_locked(&stamps)
    }

    fn export(&self) -> Vec<u8> {
        let stamps = lock(&self.ddl);
        self.export_locked(&stamps)
    }

    fn import(&self, bytes: &[u8]) -> Result<u64, String> {
        let entries = decode_export(bytes).map_err(|e| e.to_string())?;
        let mut stamps = lock(&self.ddl);
        // Users travel in the same export (entries `user:NAME`); their table merges them.
        let (users, entries): (Vec<ExportEntry>, Vec<ExportEntry>) = entries
            .into_iter()
            .partition(|e| e.name.starts_with(EXPORT_PREFIX));
        if !users.is_empty() {
            if let Err(e) = self.users.merge(&users) {
                tracing::error!(error = %e, "cannot save users pushed by a peer");
            }
        }
        let mut changed = false;
        for remote in entries {
            let local = self.local_entry(&stamps, &remote.name);
            if local.as_ref().is_some_and(|l| !remote.wins_over(l)) {
                continue;
            }
            if self.apply_remote(local.as_ref(), &remote) {
                stamps.insert(remote.name.clone(), remote.stamp);
                changed = true;
            }
        }
        if changed {
            self.persist_stamps(&stamps);
        }
        Ok(self.version_locked(&stamps))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sibyl_protocol::{Request, Response};

    use super::*;
    use crate::cluster::ClusterView;
    use crate::ring::{NodeId, NodeLocation, Partitioner};
    use crate::service::ServiceOptions;
    use crate::versioning::ManualClock;

    struct Peer {
        _dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        svc: Service,
    }

    fn peer(secs: i64) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at_secs(secs));
        let svc = Service::open(ServiceOptions {
            memtable_size: 1 << 20,
            max_siblings: 10,
            max_value_len: 1024,
            ..ServiceOptions::new(dir.path().to_path_buf(), clock.clone())
        })
        .unwrap();
        Peer {
            _dir: dir,
            clock,
            svc,
        }
    }

    fn ddl(svc: &Service, req: Request) {
        let r = svc.handle(req);
        assert!(
            matches!(r, Response::SchemaChanged { applied: true, .. }),
            "{r:?}"
        );
    }

    fn create(svc: &Service, name: &str, rf: u16) {
        let options = sibyl_protocol::TableOptions {
            replication_factor: rf,
            ..sibyl_protocol::TableOptions::default()
        };
        ddl(
            svc,
            Request::CreateTable {
                name: name.into(),
                options,
                if_not_exists: false,
            },
        );
    }

    fn drop_table(svc: &Service, name: &str) {
        ddl(
            svc,
            Request::DropTable {
                name: name.into(),
                if_exists: false,
            },
        );
    }

    fn tables(p: &Peer) -> Vec<(String, u16)> {
        let t = p.svc.read_tables();
        let mut v: Vec<(String, u16)> = t
            .values()
            .map(|s| (s.name.clone(), s.options.replication_factor))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn schema_import_creates_tables_and_versions_converge() {
        let (a, b) = (peer(100), peer(100));
        assert_eq!(a.svc.schema_version(), 0);
        create(&a.svc, "users", 1);
        assert_ne!(a.svc.schema_version(), b.svc.schema_version());
        let v = b.svc.import(&a.svc.export()).unwrap();
        assert_eq!(tables(&b), vec![("users".into(), 1)]);
        assert_eq!(v, a.svc.schema_version());
        assert_eq!(b.svc.schema_version(), a.svc.schema_version());
    }

    #[test]
    fn schema_import_of_a_newer_drop_removes_the_table_and_an_older_create_does_not_revive_it() {
        let (a, b) = (peer(100), peer(100));
        create(&a.svc, "users", 1);
        let with_table = a.svc.export();
        b.svc.import(&with_table).unwrap();
        b.clock.advance_secs(5);
        drop_table(&b.svc, "users");
        a.svc.import(&b.svc.export()).unwrap();
        assert!(tables(&a).is_empty());
        // A peer that missed the drop pushes its older schema: the tombstone wins.
        a.svc.import(&with_table).unwrap();
        assert!(tables(&a).is_empty());
        assert_eq!(a.svc.schema_version(), b.svc.schema_version());
    }

    #[test]
    fn schema_import_newer_create_with_other_options_wins_on_both_sides() {
        let (a, b) = (peer(100), peer(200));
        create(&a.svc, "t", 1);
        create(&b.svc, "t", 2);
        a.svc.import(&b.svc.export()).unwrap();
        b.svc.import(&a.svc.export()).unwrap();
        assert_eq!(tables(&a), vec![("t".into(), 2)]);
        assert_eq!(tables(&b), vec![("t".into(), 2)]);
        assert_eq!(a.svc.schema_version(), b.svc.schema_version());
    }

    #[test]
    fn schema_stamps_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at_secs(100));
        let open = || {
            Service::open(ServiceOptions {
                memtable_size: 1 << 20,
                max_siblings: 10,
                max_value_len: 1024,
                ..ServiceOptions::new(dir.path().to_path_buf(), clock.clone())
            })
            .unwrap()
        };
        let svc = open();
        create(&svc, "kept", 1);
        create(&svc, "gone", 1);
        drop_table(&svc, "gone");
        let version = svc.schema_version();
        svc.close().unwrap();
        drop(svc);
        let reopened = open();
        assert_eq!(reopened.schema_version(), version);
    }

    #[test]
    fn schema_import_refuses_garbage() {
        let a = peer(100);
        assert!(a.svc.import(b"not a schema").is_err());
    }

    #[test]
    fn topology_from_view_lists_every_node_with_state_and_sorted_tokens() {
        let mut nodes = BTreeMap::new();
        for (id, status, alive) in [
            (1, Some(NodeStatus::Normal), true),
            (2, Some(NodeStatus::Removed), false),
            (3, None, true),
        ] {
            nodes.insert(
                NodeId(id),
                NodeView {
                    id: NodeId(id),
                    generation: 1,
                    status,
                    tokens: Arc::from(vec![Token::Murmur3(9), Token::Murmur3(-3)]),
                    location: NodeLocation::new("east", "r2"),
                    peer_address: Some("127.0.0.1:7401".parse().unwrap()),
                    client_address: (id == 1).then(|| "127.0.0.1:7400".parse().unwrap()),
                    schema_version: None,
                    load: id * 1000,
                    alive,
                    replacing: None,
                    moving_to: None,
                },
            );
        }
        let view = ClusterView::new(NodeId(1), Partitioner::Murmur3, nodes);
        let t = topology_from_view(&view);
        assert_eq!(t.partitioner, "murmur3");
        let states: Vec<(NodeState, bool)> = t.nodes.iter().map(|n| (n.state, n.up)).collect();
        assert_eq!(
            states,
            vec![
                (NodeState::Normal, true),
                (NodeState::Left, false),
                (NodeState::Joining, true)
            ]
        );
        assert_eq!(t.nodes[0].address, "127.0.0.1:7400");
        assert_eq!(t.nodes[1].address, "", "no client address known yet: empty");
        assert_eq!(t.nodes[0].tokens, vec![-3, 9]);
        assert_eq!(t.nodes[0].id, "0000000000000001");
        assert_eq!(t.nodes[0].datacenter, "east");
        let loads: Vec<u64> = t.nodes.iter().map(|n| n.load_bytes).collect();
        assert_eq!(loads, vec![1000, 2000, 3000]);
    }

    #[test]
    fn token_value_saturates_the_largest_md5_token() {
        assert_eq!(token_value(&Token::Murmur3(-1)), -1);
        assert_eq!(token_value(&Token::Md5(1 << 127)), i128::MAX);
        assert_eq!(token_value(&Token::Md5(5)), 5);
    }
}
