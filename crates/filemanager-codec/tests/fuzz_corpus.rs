//! Replays the checked-in fuzz corpus through the exact functions the
//! cargo-fuzz targets call, so CI covers it on stable. `FMC_REGENERATE=1`
//! rewrites the seed corpus (small valid objects and their headers).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use filemanager_codec::fuzzing::{FUZZ_STORAGE_KEY, decode_stream, fuzz_key_ring, parse_header};
use filemanager_codec::{HEADER_LEN, StreamEncoder, decode_all};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn files(target: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(corpus_dir(target))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn write_seed_corpus() {
    let ring = fuzz_key_ring();
    for (name, params) in combos(256) {
        let name = name.replace('+', "_");
        for (len, known) in [(0, true), (1, false), (300, true), (700, false)] {
            let data = plaintext(len, len as u64);
            let mut enc = StreamEncoder::new_with_salt(
                params,
                Some(&ring),
                FUZZ_STORAGE_KEY,
                known.then_some(len as u64),
                [len as u8; 32],
            )
            .unwrap();
            let mut out = Vec::new();
            enc.push(&data, &mut out).unwrap();
            enc.finish(&mut out).unwrap();
            let file = format!("{name}_{len}");
            std::fs::write(corpus_dir("decode_stream").join(&file), &out).unwrap();
            std::fs::write(corpus_dir("parse_header").join(&file), &out[..HEADER_LEN]).unwrap();
        }
    }
}

#[test]
fn replay_corpus() {
    if regenerate() {
        write_seed_corpus();
    }
    let objects = files("decode_stream");
    let headers = files("parse_header");
    assert!(
        objects.len() >= 6 && headers.len() >= 6,
        "seed corpus missing"
    );
    let ring = fuzz_key_ring();
    for path in objects {
        let data = std::fs::read(&path).unwrap();
        decode_stream(&data);
        // Seeds are valid objects; crash reproducers added later need not be.
        let name = path.file_name().unwrap().to_string_lossy();
        if !name.starts_with("crash") && !name.starts_with("regress") {
            decode_all(Some(&ring), FUZZ_STORAGE_KEY, &data)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // Mutations the fuzzer would try first must not panic either.
        for i in (0..data.len()).step_by(7) {
            let mut m = data.clone();
            m[i] ^= 0x5A;
            decode_stream(&m);
            decode_stream(&data[..i]);
        }
    }
    for path in headers {
        let data = std::fs::read(&path).unwrap();
        parse_header(&data);
        for i in 0..data.len() {
            let mut m = data.clone();
            m[i] ^= 0x81;
            parse_header(&m);
        }
    }
}
