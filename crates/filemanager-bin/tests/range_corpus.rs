//! Replays the `byte_range` fuzz corpus (crates/filemanager-bin/fuzz) on stable: the Range
//! parser never panics and every range it lets through resolves inside the file.

use axum::http::HeaderValue;
use filemanager_bin::http::range::{content_range, parse};

#[test]
fn range_corpus_replays_clean() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/byte_range");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("the corpus is checked in") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        seen += 1;
        let Ok(value) = HeaderValue::from_bytes(&data) else {
            continue;
        };
        let Some(range) = parse(Some(&value)) else {
            continue;
        };
        for size in [0u64, 1, 2, 10, 65_536, 1 << 40, u64::MAX] {
            if let Ok(r) = range.resolve(size) {
                assert!(
                    r.start < r.end && r.end <= size,
                    "{range:?} in {size}: {r:?}"
                );
                assert!(content_range(&r, size).starts_with("bytes "));
            }
        }
    }
    assert!(seen >= 10, "the corpus is missing");
}

#[test]
fn parser_examples() {
    let p = |s: &str| parse(Some(&HeaderValue::from_str(s).unwrap()));
    use filemanager::ByteRange::*;
    assert_eq!(p("bytes=0-99"), Some(FromTo(0, 99)));
    assert_eq!(p("bytes=5-"), Some(From(5)));
    assert_eq!(p("bytes=-5"), Some(Suffix(5)));
    for ignored in [
        "bytes=0-1,5-6",
        "items=0-5",
        "bytes=",
        "bytes=-",
        "bytes=+1-2",
        "bytes=0x10-20",
    ] {
        assert_eq!(p(ignored), None, "{ignored}");
    }
}
