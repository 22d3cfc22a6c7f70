//! Single-core throughput of the codec on 64 MiB in 64 KiB chunks, with a
//! plain memcpy of the same data as the reference ceiling.
//!
//! Run: `cargo bench -p filemanager-codec`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use filemanager_codec::{Encoder, KeyRing, MasterKey, Params, StreamDecoder, encode_all};

const SIZE: usize = 64 << 20;
const CHUNK: u32 = 64 << 10;
const KEY: &str = "bench/object.bin";

/// Half text-like runs, half random runs: roughly what a file store holds
/// (zstd gets about 2:1 on it, and must work through the random parts).
fn sample_data() -> Vec<u8> {
    let mut state = 0x1234_5678_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let words: [&[u8]; 6] = [
        b"file ",
        b"manager ",
        b"store ",
        b"chunk ",
        b"domain ",
        b"\n",
    ];
    let mut out = Vec::with_capacity(SIZE);
    while out.len() < SIZE {
        let target = out.len() + 1 + (next() % 8192) as usize;
        let text = next() % 2 == 0;
        while out.len() < target {
            if text {
                out.extend_from_slice(words[(next() % 6) as usize]);
            } else {
                out.extend_from_slice(&next().to_le_bytes());
            }
        }
    }
    out.truncate(SIZE);
    out
}

fn encode_chunked(params: Params, ring: &KeyRing, data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut enc = Encoder::new(params, Some(ring), KEY, Some(data.len() as u64)).unwrap();
    out.extend_from_slice(enc.header_bytes());
    let n = data.len().div_ceil(CHUNK as usize);
    for (i, c) in data.chunks(CHUNK as usize).enumerate() {
        enc.encode_chunk_into(c, i + 1 == n, out).unwrap();
    }
    enc.finish_into(out).unwrap();
}

fn decode_streamed(ring: &KeyRing, stored: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut dec = StreamDecoder::new(Some(ring), KEY);
    // Slices deliberately not aligned to stored chunks, like network reads.
    for piece in stored.chunks(CHUNK as usize) {
        dec.push(piece, out).unwrap();
    }
    dec.finish().unwrap();
}

fn bench(c: &mut Criterion) {
    let ring = KeyRing::new(MasterKey::from_bytes([7; 32]));
    let data = sample_data();
    let encrypt = Params {
        compress: None,
        encrypt: true,
        chunk_size: CHUNK,
    };
    let zstd1 = Params {
        compress: Some(1),
        encrypt: false,
        chunk_size: CHUNK,
    };
    let encrypted = encode_all(encrypt, Some(&ring), KEY, &data).unwrap();
    let compressed = encode_all(zstd1, Some(&ring), KEY, &data).unwrap();
    eprintln!(
        "zstd level 1 ratio on the sample: {:.2}",
        data.len() as f64 / compressed.len() as f64
    );

    let mut g = c.benchmark_group("64MiB");
    g.throughput(Throughput::Bytes(SIZE as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut out = Vec::with_capacity(SIZE + SIZE / 100);

    g.bench_function("memcpy", |b| {
        let mut dst = vec![0u8; SIZE];
        b.iter(|| {
            dst.copy_from_slice(black_box(&data));
            black_box(&dst);
        })
    });
    g.bench_function("encrypt", |b| {
        b.iter(|| encode_chunked(encrypt, &ring, black_box(&data), &mut out))
    });
    g.bench_function("decrypt", |b| {
        b.iter(|| decode_streamed(&ring, black_box(&encrypted), &mut out))
    });
    g.bench_function("zstd1_encode", |b| {
        b.iter(|| encode_chunked(zstd1, &ring, black_box(&data), &mut out))
    });
    g.bench_function("zstd1_decode", |b| {
        b.iter(|| decode_streamed(&ring, black_box(&compressed), &mut out))
    });
    g.finish();
}

// Written out instead of `criterion_main!`, whose generated items carry no
// docs and would trip the workspace's `missing_docs` lint.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
