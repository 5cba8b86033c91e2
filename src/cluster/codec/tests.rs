//! Round-trip and hostile-input tests of the peer message codec.

use super::*;
use proptest::prelude::*;

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), p)),
    ]
}

fn arb_token() -> impl Strategy<Value = Token> {
    prop_oneof![
        any::<i64>().prop_map(Token::Murmur3),
        (0..=(1u128 << 127)).prop_map(Token::Md5),
    ]
}

fn arb_status() -> impl Strategy<Value = NodeStatus> {
    prop_oneof![
        Just(NodeStatus::Joining),
        Just(NodeStatus::Normal),
        Just(NodeStatus::Leaving),
        Just(NodeStatus::Left),
        Just(NodeStatus::Removed),
        Just(NodeStatus::Moving),
    ]
}

fn arb_state() -> impl Strategy<Value = AppState> {
    prop_oneof![
        arb_status().prop_map(AppState::Status),
        prop::collection::vec(arb_token(), 0..20).prop_map(|v| AppState::Tokens(Arc::from(v))),
        arb_addr().prop_map(AppState::PeerAddress),
        arb_addr().prop_map(AppState::ClientAddress),
        "[a-z0-9é]{0,12}".prop_map(|s| AppState::Datacenter(Arc::from(s.as_str()))),
        "[a-z0-9]{0,12}".prop_map(|s| AppState::Rack(Arc::from(s.as_str()))),
        any::<u64>().prop_map(AppState::SchemaVersion),
        any::<u64>().prop_map(AppState::Load),
        any::<u64>().prop_map(|n| AppState::Replacing(NodeId(n))),
        prop::collection::vec(arb_token(), 0..20).prop_map(|v| AppState::MovingTo(Arc::from(v))),
    ]
}

fn arb_digest() -> impl Strategy<Value = GossipDigest> {
    (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(n, g, v)| GossipDigest {
        node: NodeId(n),
        generation: g,
        max_version: v,
    })
}

fn arb_delta() -> impl Strategy<Value = EndpointDelta> {
    (
        any::<u64>(),
        any::<u64>(),
        prop::option::of((any::<u64>(), any::<u64>())),
        prop::collection::vec((any::<u64>(), arb_state()), 0..6),
    )
        .prop_map(|(n, g, hb, states)| EndpointDelta {
            node: NodeId(n),
            generation: g,
            heartbeat: hb.map(|(value, version)| Heartbeat { value, version }),
            states: states
                .into_iter()
                .map(|(version, value)| Versioned { value, version })
                .collect(),
        })
}

fn arb_partitioner() -> impl Strategy<Value = Partitioner> {
    prop_oneof![Just(Partitioner::Murmur3), Just(Partitioner::Md5)]
}

fn arb_message() -> impl Strategy<Value = PeerMessage> {
    prop_oneof![
        (
            "[a-zA-Z0-9 _-]{0,20}",
            arb_partitioner(),
            prop::collection::vec(arb_digest(), 0..10)
        )
            .prop_map(|(c, p, digests)| PeerMessage::GossipSyn(GossipSyn {
                cluster_name: Arc::from(c.as_str()),
                partitioner: p,
                digests,
            })),
        (
            prop::collection::vec(arb_delta(), 0..5),
            prop::collection::vec(arb_digest(), 0..5)
        )
            .prop_map(|(deltas, requests)| PeerMessage::GossipAck(GossipAck { deltas, requests })),
        prop::collection::vec(arb_delta(), 0..5)
            .prop_map(|deltas| PeerMessage::GossipAck2(GossipAck2 { deltas })),
        ("[a-z]{0,8}", arb_partitioner()).prop_map(|(c, p)| PeerMessage::GossipReject(
            GossipReject {
                cluster_name: Arc::from(c.as_str()),
                partitioner: p,
            }
        )),
        Just(PeerMessage::GossipShutdown),
        any::<u64>().prop_map(|version| PeerMessage::SchemaPull { version }),
        (any::<u64>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(version, b)| {
            PeerMessage::SchemaPush {
                version,
                schema: Arc::from(b),
            }
        }),
    ]
}

fn arb_envelope() -> impl Strategy<Value = Envelope> {
    (any::<u64>(), arb_addr(), arb_message()).prop_map(|(n, a, m)| Envelope {
        from: NodeId(n),
        from_addr: a,
        message: m,
    })
}

proptest! {
    #[test]
    fn codec_roundtrips_every_message(env in arb_envelope()) {
        let bytes = encode(&env);
        prop_assert_eq!(bytes.len(), encoded_len(&env));
        prop_assert_eq!(decode(&bytes), Ok(env));
    }

    #[test]
    fn codec_rejects_every_strict_prefix(env in arb_envelope()) {
        let bytes = encode(&env);
        for cut in 0..bytes.len() {
            prop_assert!(decode(&bytes[..cut]).is_err(), "prefix {} decoded", cut);
        }
    }

    #[test]
    fn codec_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn codec_never_panics_on_flipped_bytes(env in arb_envelope(), pos in any::<usize>(), bit in 0u8..8) {
        let mut bytes = encode(&env);
        if !bytes.is_empty() {
            let i = pos % bytes.len();
            bytes[i] ^= 1 << bit;
            let _ = decode(&bytes);
        }
    }
}

fn header() -> Vec<u8> {
    let mut b = vec![wire::FORMAT_VERSION];
    b.extend_from_slice(&7u64.to_be_bytes());
    b.push(family::V4);
    b.extend_from_slice(&[127, 0, 0, 1, 0x1c, 0xe9]);
    b
}

#[test]
fn codec_rejects_huge_count_before_allocating() {
    let mut b = header();
    b.push(kind::GOSSIP_ACK2);
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(decode(&b), Err(DecodeError::BadCount { .. })));
}

#[test]
fn codec_rejects_trailing_bytes() {
    let mut b = header();
    b.push(kind::GOSSIP_SHUTDOWN);
    b.push(0);
    assert_eq!(decode(&b), Err(DecodeError::TrailingBytes { count: 1 }));
}

#[test]
fn codec_rejects_unknown_version_and_kind() {
    let mut b = header();
    b.push(0x7f);
    assert!(matches!(decode(&b), Err(DecodeError::BadTag { .. })));
    b[0] = 9;
    assert_eq!(decode(&b), Err(DecodeError::BadVersion { version: 9 }));
}

#[test]
fn codec_rejects_oversized_message() {
    let b = vec![0u8; wire::MAX_MESSAGE_BYTES + 1];
    assert!(matches!(decode(&b), Err(DecodeError::TooLarge { .. })));
}

#[test]
fn codec_encodes_worked_example_from_spec() {
    // The example in doc/peer-messages.md: node 7 at 127.0.0.1:7401 sends a syn for
    // cluster "c", murmur3, with one digest (node 7, generation 1, version 3).
    let env = Envelope {
        from: NodeId(7),
        from_addr: "127.0.0.1:7401".parse().unwrap(),
        message: PeerMessage::GossipSyn(GossipSyn {
            cluster_name: Arc::from("c"),
            partitioner: Partitioner::Murmur3,
            digests: vec![GossipDigest {
                node: NodeId(7),
                generation: 1,
                max_version: 3,
            }],
        }),
    };
    let hex: String = encode(&env).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "01\
         0000000000000007\
         04 7f000001 1ce9\
         80\
         0001 63\
         01\
         00000001\
         0000000000000007 0000000000000001 0000000000000003"
            .replace([' ', '\n'], "")
    );
}
