//! Entry points of the cargo-fuzz targets in `fuzz/`.
//!
//! They live in the library, not the fuzz crate, so that the ordinary test
//! `tests/fuzz_corpus.rs` replays the checked-in corpus through exactly the
//! code the fuzzer runs, on stable Rust. They panic only on a bug (a failed
//! internal consistency check), never on bad input.

use crate::decoder::{StreamDecoder, decode_all};
use crate::header::{Header, header_key_id};
use crate::key::{KeyRing, MasterKey};
use crate::seek::ChunkDecoder;

/// Storage key the fuzz corpus objects are encoded under.
pub const FUZZ_STORAGE_KEY: &str = "fuzz/object";

/// Largest chunk size the fuzz entry points decode: a crafted compress-only
/// object may legitimately expand every chunk to its chunk size, and the
/// fuzzer's memory limit must not mistake that for a bug.
const FUZZ_MAX_CHUNK_SIZE: u32 = 64 * 1024;

/// The fixed key ring the fuzz corpus objects are encrypted with.
pub fn fuzz_key_ring() -> KeyRing {
    KeyRing::new(MasterKey::from_bytes([0x42; 32]))
}

/// Parses `data` as a header; a parsed header must serialize back to the
/// same bytes.
pub fn parse_header(data: &[u8]) {
    if let Ok((header, len)) = Header::parse(data) {
        assert_eq!(&header.to_bytes()[..], &data[..len], "header round trip");
        assert_eq!(header_key_id(data).ok(), Some(header.key_id));
        let _ = ChunkDecoder::new(data, Some(&fuzz_key_ring()), FUZZ_STORAGE_KEY);
    }
}

/// Decodes `data` as a stored object through the whole-stream decoder (in
/// one piece and in data-dependent slices) and through the index/range path;
/// all must agree.
pub fn decode_stream(data: &[u8]) {
    if let Ok((h, _)) = Header::parse(data)
        && h.chunk_size > FUZZ_MAX_CHUNK_SIZE
    {
        return;
    }
    let ring = fuzz_key_ring();
    let whole = decode_all(Some(&ring), FUZZ_STORAGE_KEY, data);

    let mut dec = StreamDecoder::new(Some(&ring), FUZZ_STORAGE_KEY);
    let mut split = Vec::new();
    let mut rest = data;
    let mut step = 1 + data.len() % 61;
    let mut ok = true;
    while !rest.is_empty() && ok {
        let n = step.min(rest.len());
        ok = dec.push(&rest[..n], &mut split).is_ok();
        rest = &rest[n..];
        step = step * 7 % 113 + 1;
    }
    let split_ok = ok && dec.finish().is_ok();
    assert_eq!(whole.is_ok(), split_ok, "slicing changed the verdict");
    if let Ok(plain) = &whole {
        assert_eq!(plain, &split, "slicing changed the plaintext");
    }

    let Ok(mut cd) = ChunkDecoder::new(data, Some(&ring), FUZZ_STORAGE_KEY) else {
        return;
    };
    let Ok(index) = cd.read_index(data, data.len() as u64) else {
        return;
    };
    let size = index.plaintext_size();
    for range in [0..size, size / 3..size / 2, size / 2..size, 0..size.min(1)] {
        let plan = index.plan(range.clone()).expect("in-bounds range");
        let stored = &data[plan.stored_range.start as usize..plan.stored_range.end as usize];
        let Ok(part) = cd.decode_range(&index, &plan, stored) else {
            continue;
        };
        assert_eq!(part.len() as u64, range.end - range.start, "range length");
        if let Ok(plain) = &whole {
            assert_eq!(
                part,
                plain[range.start as usize..range.end as usize],
                "range content"
            );
        } else if plan.chunks == (0..index.chunk_count()) {
            // Every chunk and the trailer verified: the stream decoder must
            // agree. (An empty range verifies no chunk at all.)
            panic!("range path accepted an object the stream decoder rejected");
        }
    }
}
