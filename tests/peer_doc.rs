//! Checks that `doc/peer-messages.md` tells the truth: every worked hex example equals
//! the encoder's output for the message it describes, and the tables list every family,
//! frame kind, error code and handshake status with its number.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use sibyl::cluster::{codec, Envelope, GossipDigest, GossipSyn, PeerMessage};
use sibyl::net::frame::{ErrorCode, Frame, FrameKind};
use sibyl::net::handshake::{HandshakeStatus, Hello, Lane, Welcome, PEER_PROTOCOL_VERSION};
use sibyl::net::Family;
use sibyl::replica::{RawCell, ReplicaErrorCode, ReplicaRequest, ReplicaResponse};
use sibyl::ring::{NodeId, Partitioner};

#[path = "../protocol/tests/support/doc_examples.rs"]
mod doc_examples;
use doc_examples::{doc_example, hex};

const DOC: &str = include_str!("../doc/peer-messages.md");

fn syn_envelope() -> Envelope {
    Envelope {
        from: NodeId(7),
        from_addr: "127.0.0.1:7401".parse().expect("addr"),
        message: PeerMessage::GossipSyn(GossipSyn {
            cluster_name: Arc::from("c"),
            partitioner: Partitioner::Murmur3,
            digests: vec![GossipDigest {
                node: NodeId(7),
                generation: 1,
                max_version: 3,
            }],
        }),
    }
}

/// The bytes each of the doc's examples shows, by example name.
fn examples() -> BTreeMap<&'static str, Vec<u8>> {
    let mut m = BTreeMap::new();
    m.insert(
        "hello",
        Hello {
            version: PEER_PROTOCOL_VERSION,
            lane: Lane::Small,
            node: NodeId(7),
            listen: "127.0.0.1:7401".parse().expect("addr"),
            cluster: "c".into(),
        }
        .encode(),
    );
    m.insert(
        "welcome-accepted",
        Welcome {
            version: PEER_PROTOCOL_VERSION,
            status: HandshakeStatus::Accepted,
            node: NodeId(9),
            cluster: "c".into(),
            reason: String::new(),
        }
        .encode(),
    );
    m.insert(
        "welcome-other-cluster",
        Welcome {
            version: PEER_PROTOCOL_VERSION,
            status: HandshakeStatus::OtherCluster,
            node: NodeId(9),
            cluster: "d".into(),
            reason: "other".into(),
        }
        .encode(),
    );
    m.insert("gossip-syn", codec::encode(&syn_envelope()));
    m.insert(
        "schema-pull",
        codec::encode(&Envelope {
            from: NodeId(7),
            from_addr: "127.0.0.1:7401".parse().expect("addr"),
            message: PeerMessage::SchemaPull { version: 5 },
        }),
    );
    m.insert(
        "gossip-frame",
        Frame::new(
            Family::Gossip,
            FrameKind::OneWay,
            0,
            Bytes::from(codec::encode(&syn_envelope())),
        )
        .expect("frame")
        .to_vec(),
    );
    m.insert(
        "request-frame",
        Frame::new(
            Family::Replica,
            FrameKind::Request,
            1,
            Bytes::from_static(b"abc"),
        )
        .expect("frame")
        .to_vec(),
    );
    m.insert(
        "response-frame",
        Frame::new(
            Family::Replica,
            FrameKind::Response,
            1,
            Bytes::from_static(b"ok"),
        )
        .expect("frame")
        .to_vec(),
    );
    m.insert(
        "overloaded-frame",
        Frame::error(Family::Replica, 2, ErrorCode::Overloaded, "busy").to_vec(),
    );
    let cell = RawCell {
        table: "t".into(),
        key: vec![0xab, 0xcd],
        value: vec![0x01],
    };
    m.insert(
        "replica-apply",
        ReplicaRequest::Apply { cells: vec![cell] }
            .encode()
            .to_vec(),
    );
    m.insert(
        "replica-applied",
        ReplicaResponse::Applied { count: 1 }.encode().to_vec(),
    );
    m.insert(
        "replica-read",
        ReplicaRequest::Read {
            table: "t".into(),
            keys: vec![vec![0xab, 0xcd]],
        }
        .encode()
        .to_vec(),
    );
    m.insert(
        "replica-digests",
        ReplicaResponse::Digests {
            digests: vec![None, Some([0x11; 16])],
        }
        .encode()
        .to_vec(),
    );
    m.insert(
        "replica-error",
        ReplicaResponse::Error {
            code: ReplicaErrorCode::UnknownTable,
            message: "unknown table \"t\"".into(),
        }
        .encode()
        .to_vec(),
    );
    m
}

#[test]
fn peer_doc_examples_match_the_encoders() {
    for (name, expected) in examples() {
        let Some(in_doc) = doc_example(DOC, name) else {
            panic!(
                "doc lacks example {name}; the encoder says:\n{}",
                hex(&expected)
            );
        };
        assert_eq!(
            in_doc,
            expected,
            "example {name} differs; the encoder says:\n{}",
            hex(&expected)
        );
    }
}

#[test]
fn peer_doc_examples_decode_back() {
    let frame = doc_example(DOC, "gossip-frame").expect("example");
    let decoded = Frame::decode(&frame).expect("a valid frame");
    assert_eq!(codec::decode(&decoded.body), Ok(syn_envelope()));
}

#[test]
fn peer_doc_tables_list_every_code() {
    let has = |row: String| {
        assert!(
            DOC.lines().any(|l| l.starts_with(&row)),
            "no table row {row}"
        );
    };
    for f in Family::ALL {
        let lane = match f.lane() {
            Lane::Small => "small",
            Lane::Bulk => "bulk",
        };
        has(format!(
            "| `{:#04x}` | {} | {lane} |",
            f.code(),
            format!("{f:?}").to_lowercase()
        ));
    }
    for k in [
        FrameKind::Request,
        FrameKind::Response,
        FrameKind::OneWay,
        FrameKind::Error,
    ] {
        has(format!("| `{}` | {k:?} |", k.code()));
    }
    for c in [
        ErrorCode::Overloaded,
        ErrorCode::NoHandler,
        ErrorCode::Handler,
    ] {
        has(format!("| `{}` | {c:?} |", c.code()));
    }
    for s in [
        HandshakeStatus::Accepted,
        HandshakeStatus::OtherCluster,
        HandshakeStatus::OtherVersion,
        HandshakeStatus::Malformed,
    ] {
        has(format!("| `{}` | {s:?} |", s.code()));
    }
}

#[test]
#[ignore = "prints the examples' hex for editing the doc"]
fn peer_doc_print_examples() {
    for (name, bytes) in examples() {
        println!("{name}:\n{}\n", hex(&bytes));
    }
}
