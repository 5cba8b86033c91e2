//! Tests of the table as a whole: builder -> file -> reader and iterator
//! ([`round_trip`]), corrupt, truncated and foreign files ([`corruption`]), and the model
//! test against a `BTreeMap` ([`model`]). Shared fixtures live here.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod corruption;
mod model;
mod round_trip;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{SsTable, SsTableBuilder, SsTableIter, SsTableOptions};
use crate::fault::Faults;
use crate::types::{Entry, SeqNo};

pub(super) type Model = BTreeMap<Vec<u8>, (SeqNo, Entry)>;

pub(super) fn write_table(
    path: &Path,
    model: &Model,
    opts: SsTableOptions,
) -> crate::sstable::SsTableInfo {
    let mut b = SsTableBuilder::create(path, opts, Arc::new(Faults::default())).unwrap();
    for (k, (s, e)) in model {
        b.add(k, *s, e.as_ref()).unwrap();
    }
    assert_eq!(b.entries(), model.len() as u64);
    b.finish().unwrap()
}

pub(super) fn key(i: u32) -> Vec<u8> {
    format!("key{:08}", i * 2).into_bytes()
}

/// Keys key00000000, key00000002, ... (even numbers, so odd ones fall between), with
/// values of varied length and a tombstone every 7th key.
pub(super) fn sample(n: u32) -> Model {
    (0..n)
        .map(|i| {
            let e = if i % 7 == 3 {
                Entry::Tombstone
            } else {
                Entry::Value(vec![b'a' + (i % 26) as u8; (i % 50) as usize])
            };
            (key(i), (u64::from(i) + 100, e))
        })
        .collect()
}

pub(super) fn small_blocks() -> SsTableOptions {
    SsTableOptions {
        block_size: 512,
        restart_interval: 4,
        bloom_bits_per_key: 10,
    }
}

pub(super) fn build(
    n: u32,
    opts: SsTableOptions,
) -> (tempfile::TempDir, PathBuf, Model, Arc<SsTable>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let model = sample(n);
    write_table(&path, &model, opts);
    let t = SsTable::open(&path).unwrap();
    (dir, path, model, t)
}

pub(super) fn current(it: &SsTableIter) -> Option<(Vec<u8>, SeqNo, Entry)> {
    it.valid()
        .then(|| (it.key().to_vec(), it.seqno(), it.entry().to_owned()))
}

pub(super) fn model_at(model: &Model, i: Option<usize>) -> Option<(Vec<u8>, SeqNo, Entry)> {
    let (k, (s, e)) = model.iter().nth(i?)?;
    Some((k.clone(), *s, e.clone()))
}
