//! Encode + decode throughput of whole frames through `FrameCodec`: a 100-byte-value
//! insert request and a 10-column row response. Throughput is reported in frames per
//! second (criterion's "elements").
#![allow(clippy::unwrap_used)] // tests and benches may unwrap (workspace lint)

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sibyl_protocol::message::types::{Cell, ColumnWrite, ResponseMeta, Sibling};
use sibyl_protocol::{FrameCodec, Opcode, Request, Response, RowInsert, DEFAULT_MAX_FRAME_LEN};
use tokio_util::codec::{Decoder, Encoder};

fn insert_100_bytes() -> Request {
    Request::Insert {
        insert: RowInsert {
            write_id: None,
            table: "users".into(),
            key: Bytes::from_static(b"user:000042"),
            ttl_secs: None,
            timestamp_micros: None,
            columns: vec![ColumnWrite {
                name: Bytes::from_static(b"profile"),
                value: Bytes::from(vec![b'x'; 100]),
                context: Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 9]),
            }],
        },
        consistency: None,
    }
}

fn row_10_columns() -> Response {
    Response::Row {
        cells: (0..10)
            .map(|i| Cell {
                name: Bytes::from(format!("column-{i:02}")),
                siblings: vec![Sibling {
                    value: Some(Bytes::from(vec![b'v'; 32])),
                    timestamp_micros: 1_700_000_000_000_000 + i,
                    ttl_secs: None,
                }],
                context: Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 9]),
            })
            .collect(),
        next_page: None,
        meta: ResponseMeta {
            replicas: vec!["10.0.0.1:7400".into(), "10.0.0.2:7400".into()],
            read_repair: false,
            stand_ins: Vec::new(),
        },
    }
}

fn bench_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));

    let insert = insert_100_bytes();
    let mut codec = FrameCodec::with_max_frame_len(DEFAULT_MAX_FRAME_LEN);
    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("insert_100B_encode_decode", |b| {
        b.iter(|| {
            let frame = black_box(&insert).to_frame(7).unwrap();
            codec.encode(frame, &mut buf).unwrap();
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            black_box(Request::from_frame(&frame).unwrap())
        })
    });

    let row = row_10_columns();
    group.bench_function("row_10_columns_encode_decode", |b| {
        b.iter(|| {
            let frame = black_box(&row).to_frame(7, Opcode::Get).unwrap();
            codec.encode(frame, &mut buf).unwrap();
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            black_box(Response::from_frame(&frame).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
