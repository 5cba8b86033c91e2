//! Replays the cargo-fuzz seed corpus (`fuzz/corpus/<target>/`) through the same harnesses
//! the fuzz targets call, on stable Rust. `fuzz_corpus_regenerate` (ignored) rewrites the
//! generated seeds from `tests/samples`.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap (workspace lint)

mod samples;

use std::fs;
use std::path::{Path, PathBuf};

use sibyl_protocol::fuzzing::{fuzz_frame, fuzz_message};
use sibyl_protocol::DEFAULT_MAX_FRAME_LEN;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target)
}

fn corpus_files(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(corpus_dir(target))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn fuzz_corpus_frame_seeds_replay_without_panic() {
    let files = corpus_files("frame");
    assert!(
        files.len() >= 30,
        "frame corpus has only {} files",
        files.len()
    );
    for (path, data) in files {
        eprintln!("replaying {}", path.display());
        fuzz_frame(&data);
    }
}

#[test]
fn fuzz_corpus_message_seeds_replay_without_panic() {
    let files = corpus_files("message");
    assert!(
        files.len() >= 30,
        "message corpus has only {} files",
        files.len()
    );
    for (path, data) in files {
        eprintln!("replaying {}", path.display());
        fuzz_message(&data);
    }
}

/// Frame seeds: every sample encoded, and mutations (truncated, flipped, concatenated).
fn frame_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut frames = Vec::new();
    for (name, req) in samples::requests() {
        frames.push((
            format!("req-{name}"),
            req.to_frame(7)
                .unwrap()
                .to_vec(DEFAULT_MAX_FRAME_LEN)
                .unwrap(),
        ));
    }
    for (name, op, resp) in samples::responses() {
        frames.push((
            format!("resp-{name}"),
            resp.to_frame(7, op)
                .unwrap()
                .to_vec(DEFAULT_MAX_FRAME_LEN)
                .unwrap(),
        ));
    }
    for (i, (name, bytes)) in frames.iter().enumerate() {
        seeds.push((name.clone(), bytes.clone()));
        if i % 3 == 0 {
            seeds.push((
                format!("{name}-truncated"),
                bytes[..bytes.len() / 2].to_vec(),
            ));
        }
        if i % 3 == 1 {
            let mut flipped = bytes.clone();
            let at = flipped.len() - 1;
            flipped[at] ^= 0x40;
            seeds.push((format!("{name}-flipped"), flipped));
        }
    }
    let mut two = frames[0].1.clone();
    two.extend_from_slice(&frames[1].1);
    seeds.push(("two-frames".into(), two));
    let mut huge = frames[1].1.clone();
    huge[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    seeds.push(("huge-length".into(), huge));
    seeds
}

/// Message seeds: `[opcode, flags, body]` for every sample, and truncated bodies.
fn message_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut push = |name: String, opcode: u8, flags: u8, body: &[u8]| {
        let mut data = vec![opcode, flags];
        data.extend_from_slice(body);
        seeds.push((name.clone(), data.clone()));
        if body.len() > 4 {
            data.truncate(2 + body.len() - 3);
            seeds.push((format!("{name}-truncated"), data));
        }
    };
    for (name, req) in samples::requests() {
        push(
            format!("req-{name}"),
            req.opcode().as_u8(),
            0,
            &req.encode_body().unwrap(),
        );
    }
    for (name, op, resp) in samples::responses() {
        let flags = u8::from(matches!(resp, sibyl_protocol::Response::Error(_)));
        push(
            format!("resp-{name}"),
            op.as_u8(),
            flags,
            &resp.encode_body().unwrap(),
        );
    }
    seeds
}

#[test]
#[ignore = "writes files: run explicitly to regenerate the seed corpus"]
fn fuzz_corpus_regenerate() {
    for (target, seeds) in [("frame", frame_seeds()), ("message", message_seeds())] {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds {
            fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        }
    }
}
