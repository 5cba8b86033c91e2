//! Damaged, truncated and foreign files: typed errors, never a panic or wrong data.

use std::path::Path;

use rand::{Rng, RngCore, SeedableRng};

use super::*;
use crate::error::Error;
use crate::sstable::format::{FOOTER_LEN, HANDLE_LEN, HEADER_LEN};
use crate::types::EntryRef;

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x04;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn sstable_bit_flip_in_data_block_fails_get_with_checksum_mismatch() {
    let (_d, path, _model, _t) = build(2000, small_blocks());
    drop(_t);
    flip(&path, HEADER_LEN + 40);
    let t = SsTable::open(&path).unwrap();
    match t.get(&key(0)) {
        Err(Error::ChecksumMismatch {
            path: p, offset, ..
        }) => {
            assert_eq!(p, path);
            assert_eq!(offset, HEADER_LEN as u64);
        }
        other => panic!("expected checksum mismatch, got {other:?}"),
    }
    // Other blocks still read.
    assert!(t.get(&key(1999)).unwrap().is_some());
}

#[test]
fn sstable_bit_flip_in_data_block_fails_iteration_with_checksum_mismatch() {
    let (_d, path, _model, _t) = build(2000, small_blocks());
    drop(_t);
    flip(&path, HEADER_LEN + 40);
    let t = SsTable::open(&path).unwrap();
    let mut it = t.iter();
    assert!(matches!(
        it.seek_to_first(),
        Err(Error::ChecksumMismatch { .. })
    ));
    assert!(!it.valid());
    // Walking backwards from the end reaches the bad block and fails there.
    it.seek_to_last().unwrap();
    let err = loop {
        match it.prev() {
            Ok(()) => assert!(it.valid(), "iteration ended without reaching the bad block"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err:?}");
}

#[test]
fn sstable_bit_flip_in_index_fails_open() {
    let (_d, path, _model, _t) = build(500, small_blocks());
    drop(_t);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    let bytes = std::fs::read(&path).unwrap();
    let footer = crate::sstable::format::Footer::decode(&bytes[len - FOOTER_LEN..]).unwrap();
    flip(&path, footer.index.offset as usize + 3);
    assert!(
        matches!(SsTable::open(&path), Err(Error::ChecksumMismatch { offset, .. }) if offset == footer.index.offset)
    );
}

#[test]
fn sstable_truncated_file_fails_open_with_typed_error() {
    let (_d, path, _model, _t) = build(500, small_blocks());
    drop(_t);
    let bytes = std::fs::read(&path).unwrap();
    for cut in [
        0,
        5,
        HEADER_LEN,
        FOOTER_LEN + HEADER_LEN - 1,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match SsTable::open(&path) {
            Err(Error::Corruption { path: p, .. }) => assert_eq!(p, path),
            other => panic!("cut at {cut}: expected corruption, got {other:?}"),
        }
    }
}

#[test]
fn sstable_bad_magic_fails_open_with_corruption() {
    let (_d, path, _model, _t) = build(10, small_blocks());
    drop(_t);
    flip(&path, 0);
    assert!(matches!(
        SsTable::open(&path),
        Err(Error::Corruption { offset: 0, .. })
    ));
}

#[test]
fn sstable_unknown_version_fails_open() {
    let (_d, path, _model, _t) = build(10, small_blocks());
    drop(_t);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    flip(&path, len - FOOTER_LEN + 3 * HANDLE_LEN + 4);
    assert!(matches!(
        SsTable::open(&path),
        Err(Error::UnsupportedVersion { version: 5, .. })
    ));
}

#[test]
fn sstable_random_garbage_never_panics_open() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.sst");
    for _ in 0..300 {
        let len = rng.gen_range(0..400);
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        // Half the time, make it look like a table at both ends.
        if rng.gen_bool(0.5) && len >= FOOTER_LEN + HEADER_LEN {
            b[..8].copy_from_slice(&crate::sstable::format::MAGIC);
            b[len - 8..].copy_from_slice(&crate::sstable::format::MAGIC);
        }
        std::fs::write(&path, &b).unwrap();
        assert!(SsTable::open(&path).is_err(), "seed {seed}: garbage opened");
    }
}

/// Damages random bytes of a valid table and reads everything: errors are fine, panics
/// are not. Half the time the damaged block's crc is recomputed, so that the decoders'
/// own bounds checks (not the crc) must catch the damage.
#[test]
fn sstable_damaged_tables_never_panic_readers() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let model = sample(300);
    write_table(&path, &model, small_blocks());
    let good = std::fs::read(&path).unwrap();
    let footer = crate::sstable::format::Footer::decode(&good[good.len() - FOOTER_LEN..]).unwrap();
    let mut blocks: Vec<(usize, usize)> = {
        let t = SsTable::open(&path).unwrap();
        (0..t.num_blocks())
            .map(|i| t.data_block_range(i).unwrap())
            .collect()
    };
    for h in [footer.bloom, footer.index, footer.properties] {
        blocks.push((h.offset as usize, h.size as usize));
    }
    let mut opened = 0;
    for _ in 0..400 {
        let mut b = good.clone();
        let (start, size) = blocks[rng.gen_range(0..blocks.len())];
        if size == 0 {
            continue;
        }
        for _ in 0..rng.gen_range(1..4) {
            let at = start + rng.gen_range(0..size);
            b[at] = rng.gen();
        }
        if rng.gen_bool(0.5) {
            let crc = crc32fast::hash(&b[start..start + size]);
            b[start + size..start + size + 4].copy_from_slice(&crc.to_le_bytes());
        }
        std::fs::write(&path, &b).unwrap();
        let Ok(t) = SsTable::open(&path) else {
            continue;
        };
        opened += 1;
        for k in model.keys().step_by(7) {
            let _ = t.get(k);
        }
        let mut it = t.iter();
        let _ = it.seek_to_first();
        let mut steps = 0;
        while it.valid() && it.next().is_ok() {
            steps += 1;
            assert!(
                steps <= 10 * model.len(),
                "seed {seed}: forward scan does not end"
            );
        }
        let _ = it.seek_to_last();
        while it.valid() && it.prev().is_ok() {
            steps += 1;
            assert!(
                steps <= 20 * model.len(),
                "seed {seed}: backward scan does not end"
            );
        }
        let _ = it.seek(b"key00000301");
        let _ = it.seek_for_prev(b"key00000301");
    }
    assert!(
        opened > 0,
        "seed {seed}: no damaged table opened; test exercised nothing"
    );
}

/// The worked example of `storage/doc/sstable_format.md`, byte for byte: a format change
/// must show up here (and needs a new version and an updated spec).
#[test]
fn sstable_format_matches_documented_example() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let mut model = Model::new();
    model.insert(b"apple".to_vec(), (1, Entry::Value(b"red".to_vec())));
    model.insert(b"apricot".to_vec(), (2, Entry::Tombstone));
    model.insert(b"banana".to_vec(), (3, Entry::Value(b"yellow".to_vec())));
    let opts = SsTableOptions {
        block_size: 4096,
        restart_interval: 2,
        bloom_bits_per_key: 10,
    };
    write_table(&path, &model, opts);
    let hex = "
        53 69 62 79 6c 53 53 54 01 00 00 00 00 05 03 00
        01 61 70 70 6c 65 72 65 64 02 05 00 01 02 72 69
        63 6f 74 00 06 06 00 03 62 61 6e 61 6e 61 79 65
        6c 6c 6f 77 00 00 00 00 17 00 00 00 02 00 00 00
        4e ff 30 6a 82 84 18 44 d1 60 88 84 07 aa 0e 3d
        18 06 62 61 6e 61 6e 61 0c 34 01 00 00 00 94 cf
        eb 0d 03 01 01 01 03 05 61 70 70 6c 65 06 62 61
        6e 61 6e 61 e8 dd bf 34 44 00 00 00 00 00 00 00
        09 00 00 00 00 00 00 00 51 00 00 00 00 00 00 00
        0d 00 00 00 00 00 00 00 62 00 00 00 00 00 00 00
        12 00 00 00 00 00 00 00 87 99 4d 9e 01 00 00 00
        53 69 62 79 6c 53 53 54";
    let expect: Vec<u8> = hex
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    assert_eq!(std::fs::read(&path).unwrap(), expect);
    let t = SsTable::open(&path).unwrap();
    assert_eq!(t.get(b"apricot").unwrap(), Some((2, EntryRef::Tombstone)));
}
