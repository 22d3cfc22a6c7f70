//! Round trips through every encoder and decoder path, for every encoded
//! combination, at the sizes where chunking edge cases live.

mod common;

use common::*;
use filemanager_codec::{
    ChunkDecoder, DEFAULT_CHUNK_SIZE, Encoder, HEADER_LEN, Params, StreamEncoder, decode_all,
    encode_all,
};
use proptest::prelude::*;

const K64: usize = 64 * 1024;

fn check_object(params: Params, data: &[u8], seed: u64) {
    let ring = ring();
    let stored = encode_all(params, Some(&ring), KEY, data).unwrap();
    assert_eq!(decode_all(Some(&ring), KEY, &stored).unwrap(), data);

    let mut rng = Rng(seed);
    let got = decode_split(&stored, Some(&ring), KEY, || 1 + rng.below(100_000)).unwrap();
    assert_eq!(got, data);
    let got = decode_split(&stored, Some(&ring), KEY, || 1 + rng.below(7)).unwrap();
    assert_eq!(got, data, "tiny slices");
    // In place, in slices around the chunk size (most chunks whole in one buffer, some cut)
    // and in tiny ones (every chunk cut, so everything is spilled).
    let chunk = params.chunk_size as usize;
    let got =
        decode_split_in_place(&stored, Some(&ring), KEY, || 1 + rng.below(3 * chunk + 64)).unwrap();
    assert_eq!(got, data, "in place");
    let got = decode_split_in_place(&stored, Some(&ring), KEY, || 1 + rng.below(7)).unwrap();
    assert_eq!(got, data, "in place, tiny slices");
    let got = decode_split_in_place(&stored, Some(&ring), KEY, || stored.len()).unwrap();
    assert_eq!(got, data, "in place, one buffer");

    if let Some(exact) = params.exact_stored_size(data.len() as u64) {
        assert_eq!(exact, stored.len() as u64);
    }

    let len = data.len() as u64;
    let cs = u64::from(params.chunk_size);
    let mut ranges = vec![
        0..len,
        0..0,
        len..len,
        0..len.min(1),
        len.saturating_sub(1)..len,
    ];
    for b in [cs - 1, cs, cs + 1, 2 * cs, 3 * cs + 5] {
        if b <= len {
            ranges.push(b.saturating_sub(3)..b);
            ranges.push(b..len);
        }
    }
    for _ in 0..8 {
        let a = rng.next() % (len + 1);
        let b = a + rng.next() % (len - a + 1);
        ranges.push(a..b);
    }
    for r in ranges {
        let got = read_range(&stored, Some(&ring), KEY, r.clone()).unwrap();
        assert_eq!(got, &data[r.start as usize..r.end as usize], "range {r:?}");
    }
}

#[test]
fn edge_sizes_all_combos() {
    for (name, params) in combos(DEFAULT_CHUNK_SIZE) {
        for (i, len) in [0, 1, K64 - 1, K64, K64 + 1, 2 * K64, 3 * 1024 * 1024 + 17]
            .into_iter()
            .enumerate()
        {
            eprintln!("{name} {len}");
            check_object(params, &plaintext(len, i as u64), i as u64);
        }
    }
}

#[test]
fn random_sizes_small_chunks() {
    let mut rng = Rng(99);
    for (_, params) in combos(256) {
        for i in 0..20 {
            let len = rng.below(5000);
            check_object(params, &plaintext(len, 1000 + i), i);
        }
    }
}

#[test]
fn compressible_data_shrinks_and_random_data_does_not_grow() {
    let ring = ring();
    let text = b"the same line again and again\n".repeat(10_000);
    let random = plaintext(300_000, 5)
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ (i as u8).wrapping_mul(31))
        .collect::<Vec<_>>();
    let p = Params {
        compress: Some(3),
        ..Params::default()
    };
    let small = encode_all(p, Some(&ring), KEY, &text).unwrap();
    assert!(small.len() < text.len() / 10);
    let big = encode_all(p, Some(&ring), KEY, &random).unwrap();
    let raw_bound = Params::default()
        .exact_stored_size(random.len() as u64)
        .unwrap();
    assert!(big.len() as u64 <= raw_bound);
}

#[test]
fn all_encoders_agree_byte_for_byte() {
    let ring = ring();
    let salt = [0x5A; 32];
    for (_, params) in combos(1000) {
        for len in [0, 999, 1000, 1001, 4321] {
            let data = plaintext(len, len as u64);
            for size in [None, Some(len as u64)] {
                let mut manual =
                    Encoder::new_with_salt(params, Some(&ring), KEY, size, salt).unwrap();
                let mut a = manual.header_bytes().to_vec();
                let chunks: Vec<&[u8]> = data.chunks(1000).collect();
                if chunks.is_empty() {
                    a.extend(manual.encode_chunk(&[], true).unwrap());
                }
                for (i, c) in chunks.iter().enumerate() {
                    a.extend(manual.encode_chunk(c, i + 1 == chunks.len()).unwrap());
                }
                a.extend(manual.finish().unwrap());

                let mut streaming =
                    StreamEncoder::new_with_salt(params, Some(&ring), KEY, size, salt).unwrap();
                let mut b = Vec::new();
                let mut rng = Rng(len as u64);
                let mut rest = &data[..];
                while !rest.is_empty() {
                    let n = (1 + rng.below(2500)).min(rest.len());
                    streaming.push(&rest[..n], &mut b).unwrap();
                    rest = &rest[n..];
                }
                let summary = streaming.finish(&mut b).unwrap();
                assert_eq!(a, b);
                assert_eq!(summary.stored_size, b.len() as u64);
                assert_eq!(summary.plaintext_size, len as u64);
                assert_eq!(summary.chunk_count, (len as u64).div_ceil(1000).max(1));
            }
        }
    }
}

#[test]
fn extra_empty_last_chunk_is_valid() {
    let ring = ring();
    for (_, params) in combos(256) {
        let data = plaintext(512, 3);
        let mut enc = Encoder::new(params, Some(&ring), KEY, None).unwrap();
        let mut stored = enc.header_bytes().to_vec();
        stored.extend(enc.encode_chunk(&data[..256], false).unwrap());
        stored.extend(enc.encode_chunk(&data[256..], false).unwrap());
        stored.extend(enc.encode_chunk(&[], true).unwrap());
        stored.extend(enc.finish().unwrap());
        let summary = {
            let mut dec = filemanager_codec::StreamDecoder::new(Some(&ring), KEY);
            let mut out = Vec::new();
            dec.push(&stored, &mut out).unwrap();
            assert_eq!(out, data);
            dec.finish().unwrap()
        };
        assert_eq!(summary.chunk_count, 3);
        for r in [0..512, 255..512, 511..512, 512..512] {
            let got = read_range(&stored, Some(&ring), KEY, r.clone()).unwrap();
            assert_eq!(got, &data[r.start as usize..r.end as usize]);
        }
    }
}

#[test]
fn single_chunks_and_streamed_ranges() {
    let ring = ring();
    for (_, params) in combos(300) {
        let data = plaintext(2000, 11);
        let stored = encode_all(params, Some(&ring), KEY, &data).unwrap();
        let mut cd = ChunkDecoder::new(&stored[..HEADER_LEN], Some(&ring), KEY).unwrap();
        let index = cd.read_index(&stored, stored.len() as u64).unwrap();
        assert_eq!(index.plaintext_size(), 2000);
        assert_eq!(index.chunk_count(), 7);
        for i in 0..index.chunk_count() {
            let s = index.chunk_stored_range(i).unwrap();
            let p = index.chunk_plaintext_range(i).unwrap();
            let got = cd
                .decode_chunk(&index, i, &stored[s.start as usize..s.end as usize])
                .unwrap();
            assert_eq!(got, &data[p.start as usize..p.end as usize]);
        }
        let plan = index.plan(250..1700).unwrap();
        let mut rd = cd.range_decoder(&index, &plan).unwrap();
        let mut out = Vec::new();
        for piece in
            stored[plan.stored_range.start as usize..plan.stored_range.end as usize].chunks(33)
        {
            rd.push(piece, &mut out).unwrap();
        }
        rd.finish().unwrap();
        assert_eq!(out, &data[250..1700]);
        assert!(index.plan(0..2001).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any range of any object equals the same slice of the plaintext, for
    /// every combination, through both the one-shot and streamed range paths
    /// and the stream decoder at random slice boundaries.
    #[test]
    fn any_range_matches(
        len in 0usize..4000,
        seed in any::<u64>(),
        combo in 0usize..3,
        chunk_size in prop::sample::select(vec![256u32, 300, 1024]),
        a in any::<u64>(),
        b in any::<u64>(),
        known_size in any::<bool>(),
    ) {
        let ring = ring();
        let params = combos(chunk_size)[combo].1;
        let data = plaintext(len, seed);
        let size = known_size.then_some(len as u64);
        let mut enc = StreamEncoder::new(params, Some(&ring), KEY, size).unwrap();
        let mut stored = Vec::new();
        enc.push(&data, &mut stored).unwrap();
        enc.finish(&mut stored).unwrap();

        let (a, b) = (a % (len as u64 + 1), b % (len as u64 + 1));
        let r = a.min(b)..a.max(b);
        let got = read_range(&stored, Some(&ring), KEY, r.clone()).unwrap();
        prop_assert_eq!(&got[..], &data[r.start as usize..r.end as usize]);

        let mut rng = Rng(seed);
        let whole = decode_split(&stored, Some(&ring), KEY, || 1 + rng.below(700)).unwrap();
        prop_assert_eq!(whole, data);
    }
}
