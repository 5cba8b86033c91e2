//! Unit tests of the gossip state machine, with messages passed by hand.

use super::*;
use crate::cluster::gossip_types::GossipConfig;
use crate::ring::{NodeLocation, Partitioner};

fn addr(i: u64) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8], 7401))
}

fn local(i: u64, generation: u64) -> LocalNode {
    LocalNode {
        id: NodeId(i),
        generation,
        peer_address: addr(i),
        client_address: None,
        location: NodeLocation::default(),
        tokens: vec![Token::Murmur3(i as i64 * 100)],
        status: NodeStatus::Normal,
        schema_version: 0,
        load: 0,
    }
}

fn gossiper(i: u64, seeds: &[u64]) -> Gossiper {
    let config = GossipConfig::new("test", seeds.iter().map(|s| addr(*s)).collect());
    Gossiper::new(config, local(i, 1), i, 0)
}

/// Delivers `out` to whichever of `nodes` it is addressed to, until quiet.
fn exchange(nodes: &mut [&mut Gossiper], out: Vec<Outgoing>, now: u64) {
    let mut queue = out;
    while let Some(o) = queue.pop() {
        if let Some(n) = nodes.iter_mut().find(|n| n.address() == o.to) {
            queue.extend(n.on_message(o.envelope, now));
        }
    }
}

#[test]
fn gossiper_first_round_goes_to_seed() {
    let mut a = gossiper(1, &[2]);
    let out = a.tick(0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, addr(2));
    assert!(matches!(out[0].envelope.message, PeerMessage::GossipSyn(_)));
}

#[test]
fn gossiper_one_exchange_shares_both_states() {
    let mut a = gossiper(1, &[2]);
    let mut b = gossiper(2, &[]);
    let out = a.tick(0);
    exchange(&mut [&mut a, &mut b], out, 1);
    assert_eq!(a.known_count(), 2);
    assert_eq!(b.known_count(), 2);
    assert_eq!(
        b.endpoint(NodeId(1))
            .and_then(|s| s.tokens())
            .map(|t| t.to_vec()),
        Some(vec![Token::Murmur3(100)])
    );
}

#[test]
fn gossiper_marks_up_only_after_heartbeat_advances() {
    let mut a = gossiper(1, &[2]);
    let mut b = gossiper(2, &[]);
    let out = a.tick(0);
    exchange(&mut [&mut a, &mut b], out, 1);
    assert!(!b.is_alive(NodeId(1)), "first sight is not proof of life");
    let out = a.tick(1000);
    exchange(&mut [&mut a, &mut b], out, 1001);
    assert!(b.is_alive(NodeId(1)));
    assert!(b
        .drain_events()
        .contains(&GossipEvent::Up { node: NodeId(1) }));
}

#[test]
fn gossiper_convicts_silent_peer() {
    let mut a = gossiper(1, &[2]);
    let mut b = gossiper(2, &[]);
    for t in 0..10u64 {
        let out = a.tick(t * 1000);
        exchange(&mut [&mut a, &mut b], out, t * 1000 + 1);
    }
    assert!(b.is_alive(NodeId(1)));
    b.tick(9_500);
    assert!(b.is_alive(NodeId(1)));
    b.tick(30_000);
    assert!(!b.is_alive(NodeId(1)));
    assert!(b.drain_events().iter().any(|e| matches!(
        e,
        GossipEvent::Down {
            node: NodeId(1),
            ..
        }
    )));
}

#[test]
fn gossiper_rejects_other_partitioner() {
    let mut a = gossiper(1, &[2]);
    let mut config = GossipConfig::new("test", vec![]);
    config.partitioner = Partitioner::Md5;
    let mut b = Gossiper::new(config, local(2, 1), 2, 0);
    let out = a.tick(0);
    exchange(&mut [&mut a, &mut b], out, 1);
    assert_eq!(b.known_count(), 1, "b learnt nothing from a");
    assert!(a.drain_events().iter().any(|e| matches!(
        e,
        GossipEvent::Rejected {
            partitioner: Partitioner::Md5,
            ..
        }
    )));
}

#[test]
fn gossiper_restart_replaces_state() {
    let mut a = gossiper(1, &[2]);
    let mut b = gossiper(2, &[]);
    let out = a.tick(0);
    exchange(&mut [&mut a, &mut b], out, 1);
    let config = GossipConfig::new("test", vec![addr(2)]);
    let mut restarted = local(1, 2);
    restarted.tokens = vec![Token::Murmur3(555)];
    let mut a2 = Gossiper::new(config, restarted, 9, 5000);
    let out = a2.tick(5000);
    exchange(&mut [&mut a2, &mut b], out, 5001);
    let s = b.endpoint(NodeId(1)).unwrap();
    assert_eq!(s.generation, 2);
    assert_eq!(
        s.tokens().map(|t| t.to_vec()),
        Some(vec![Token::Murmur3(555)])
    );
    assert!(b.is_alive(NodeId(1)));
}

#[test]
fn gossiper_remove_node_refuses_live_and_self() {
    let mut a = gossiper(1, &[2]);
    let mut b = gossiper(2, &[]);
    for t in 0..3u64 {
        let out = a.tick(t * 1000);
        exchange(&mut [&mut a, &mut b], out, t * 1000 + 1);
    }
    assert_eq!(
        b.remove_node(NodeId(1)),
        Err(GossipError::NodeAlive { node: NodeId(1) })
    );
    assert_eq!(b.remove_node(NodeId(2)), Err(GossipError::RemoveSelf));
    assert_eq!(
        b.remove_node(NodeId(9)),
        Err(GossipError::UnknownNode { node: NodeId(9) })
    );
}

#[test]
fn gossiper_remove_node_takes_dead_node_off_the_ring() {
    let mut a = gossiper(1, &[2]);
    let mut b = gossiper(2, &[]);
    let out = a.tick(0);
    exchange(&mut [&mut a, &mut b], out, 1);
    assert_eq!(b.view().ring().tokens().len(), 2);
    b.remove_node(NodeId(1)).unwrap();
    let view = b.view();
    assert_eq!(
        view.node(NodeId(1)).unwrap().status,
        Some(NodeStatus::Removed)
    );
    assert_eq!(view.ring().tokens(), &[Token::Murmur3(200)]);
}

#[test]
fn gossiper_defends_its_generation_against_bogus_removal() {
    let mut a = gossiper(1, &[2]);
    let mut b = gossiper(2, &[]);
    let out = a.tick(0);
    exchange(&mut [&mut a, &mut b], out, 1);
    b.remove_node(NodeId(1)).unwrap();
    // a is in fact alive: the next exchanges carry the removal to a, which takes a
    // newer generation that b then accepts.
    for t in 1..4u64 {
        let out = a.tick(t * 1000);
        exchange(&mut [&mut a, &mut b], out, t * 1000 + 1);
    }
    let s = b.endpoint(NodeId(1)).unwrap();
    assert!(s.generation > 2);
    assert_eq!(s.status(), Some(NodeStatus::Normal));
}

#[test]
fn gossiper_reports_schema_mismatch_of_live_peer() {
    let mut a = gossiper(1, &[2]);
    let mut b = gossiper(2, &[]);
    for t in 0..2u64 {
        let out = a.tick(t * 1000);
        exchange(&mut [&mut a, &mut b], out, t * 1000 + 1);
    }
    b.drain_events();
    a.set_schema_version(42);
    let out = a.tick(2000);
    exchange(&mut [&mut a, &mut b], out, 2001);
    assert!(b.drain_events().iter().any(|e| matches!(
        e,
        GossipEvent::SchemaMismatch {
            node: NodeId(1),
            version: 42,
            ..
        }
    )));
}

#[test]
fn gossiper_shutdown_marks_sender_down() {
    let mut a = gossiper(1, &[2]);
    let mut b = gossiper(2, &[]);
    for t in 0..3u64 {
        let out = a.tick(t * 1000);
        exchange(&mut [&mut a, &mut b], out, t * 1000 + 1);
        let out = b.tick(t * 1000 + 500);
        exchange(&mut [&mut a, &mut b], out, t * 1000 + 501);
    }
    assert!(a.is_alive(NodeId(2)) && b.is_alive(NodeId(1)));
    let out = a.shutdown();
    exchange(&mut [&mut a, &mut b], out, 3500);
    assert!(!b.is_alive(NodeId(1)));
}
