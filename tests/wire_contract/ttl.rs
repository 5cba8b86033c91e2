//! Section 5.5: TTL granularity, rounding, and "no TTL".

use super::*;

#[test]
fn contract_ttl_cell_lives_at_least_its_ttl_wherever_in_the_second_it_is_written() {
    for ttl in [1u32, 5] {
        // Early, middle and late in a second, and exactly on one.
        for offset in [0i64, 130_000, 500_000, 920_000, 999_999] {
            let f = fixture();
            f.create("t", rf1(ConflictMode::Causal));
            let written = T0_MICROS + offset;
            f.clock.set_micros(written);
            f.insert("t", "c", "v", Bytes::new(), Some(ttl));
            let ttl_micros = i64::from(ttl) * 1_000_000;
            // Readable up to the last microsecond of its TTL...
            f.clock.set_micros(written + ttl_micros - 1);
            assert!(
                f.get("t", "c").is_some(),
                "ttl {ttl} written at +{offset} µs expired before {ttl} s"
            );
            // ...and gone within one more second.
            f.clock.set_micros(written + ttl_micros + 1_000_000);
            assert!(
                f.get("t", "c").is_none(),
                "ttl {ttl} written at +{offset} µs outlived {ttl} + 1 s"
            );
        }
    }
}

#[test]
fn contract_lww_ttl_cell_lives_at_least_its_ttl() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Lww));
    let written = T0_MICROS + 920_000;
    f.clock.set_micros(written);
    f.insert("t", "c", "v", Bytes::new(), Some(1));
    f.clock.set_micros(written + 999_999);
    assert!(f.get("t", "c").is_some());
    f.clock.set_micros(written + 2_000_000);
    assert!(f.get("t", "c").is_none());
}

#[test]
fn contract_read_ttl_is_the_seconds_left_rounded_up() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    f.clock.set_micros(T0_MICROS + 500_000);
    f.insert("t", "c", "v", Bytes::new(), Some(5));
    // Expires at T0 + 6 s (rounded up): 5.5 s left reads as 6.
    let left = |f: &Fixture| f.get("t", "c").unwrap().siblings[0].ttl_secs;
    assert_eq!(left(&f), Some(6));
    f.clock.set_micros(T0_MICROS + 5_999_999);
    assert_eq!(left(&f), Some(1), "a live version reads at least 1");
}

#[test]
fn contract_ttl_0_on_a_default_ttl_table_never_expires() {
    let f = fixture();
    f.create(
        "t",
        TableOptions {
            default_ttl_secs: Some(10),
            ..rf1(ConflictMode::Causal)
        },
    );
    f.insert("t", "forever", "v", Bytes::new(), Some(0));
    f.insert("t", "default", "v", Bytes::new(), None);
    assert_eq!(f.get("t", "forever").unwrap().siblings[0].ttl_secs, None);
    assert_eq!(
        f.get("t", "default").unwrap().siblings[0].ttl_secs,
        Some(10)
    );
    f.clock.advance_secs(365 * 24 * 3600);
    assert!(f.get("t", "forever").is_some(), "ttl 0 expired");
    assert!(
        f.get("t", "default").is_none(),
        "the default TTL did not apply"
    );
}

#[test]
fn contract_default_ttl_0_means_no_default() {
    let f = fixture();
    f.create(
        "t",
        TableOptions {
            default_ttl_secs: Some(0),
            ..rf1(ConflictMode::Lww)
        },
    );
    f.insert("t", "c", "v", Bytes::new(), None);
    f.clock.advance_secs(365 * 24 * 3600);
    let cell = f
        .get("t", "c")
        .expect("a default TTL of 0 expired the cell");
    assert_eq!(cell.siblings[0].ttl_secs, None);
}
