//! Every way of damaging an object must be reported, as an integrity error
//! unless the damage hits a field that is necessarily interpreted first
//! (version → UnsupportedVersion, key id → UnknownKey).

mod common;

use common::*;
use filemanager_codec::{
    ChunkDecoder, Encoder, Error, HEADER_LEN, Index, KeyRing, MasterKey, Params, StreamDecoder,
    StreamEncoder, decode_all, encode_all, needs_rekey,
};

const CS: u32 = 256;

/// A multi-chunk object (5 chunks of varying stored size) per combination.
fn objects() -> Vec<(&'static str, Params, Vec<u8>, Vec<u8>)> {
    let ring = ring();
    combos(CS)
        .into_iter()
        .enumerate()
        .map(|(i, (name, params))| {
            let data = plaintext(1100, 40 + i as u64);
            // Alternate announced / unannounced size to cover both headers.
            let size = (i % 2 == 0).then_some(data.len() as u64);
            let mut enc = StreamEncoder::new(params, Some(&ring), KEY, size).unwrap();
            let mut stored = Vec::new();
            enc.push(&data, &mut stored).unwrap();
            enc.finish(&mut stored).unwrap();
            (name, params, data, stored)
        })
        .collect()
}

fn index_of(stored: &[u8]) -> Index {
    let cd = ChunkDecoder::new(stored, Some(&ring()), KEY).unwrap();
    cd.read_index(stored, stored.len() as u64).unwrap()
}

fn chunk(stored: &[u8], index: &Index, i: u64) -> Vec<u8> {
    let r = index.chunk_stored_range(i).unwrap();
    stored[r.start as usize..r.end as usize].to_vec()
}

/// Rebuilds an object from its header, a list of chunks and its trailer.
fn assemble(stored: &[u8], index: &Index, chunks: &[Vec<u8>]) -> Vec<u8> {
    let trailer_at = index
        .chunk_stored_range(index.chunk_count() - 1)
        .unwrap()
        .end as usize;
    let mut out = stored[..HEADER_LEN].to_vec();
    for c in chunks {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&stored[trailer_at..]);
    out
}

fn is_integrity<T: std::fmt::Debug>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::Integrity(_)))
}

/// Both whole-stream paths and the full-range seek path reject `bad`.
fn assert_rejected(bad: &[u8], what: &str) {
    let ring = ring();
    let r = decode_all(Some(&ring), KEY, bad);
    assert!(is_integrity(&r), "{what}: stream gave {r:?}");
    let mut rng = Rng(bad.len() as u64);
    let r = decode_split(bad, Some(&ring), KEY, || 1 + rng.below(50));
    assert!(is_integrity(&r), "{what}: split stream gave {r:?}");
    let r = decode_split_in_place(bad, Some(&ring), KEY, || 1 + rng.below(200_000));
    assert!(is_integrity(&r), "{what}: in-place stream gave {r:?}");
    let r = decode_split_in_place(bad, Some(&ring), KEY, || bad.len());
    assert!(is_integrity(&r), "{what}: in-place whole buffer gave {r:?}");
    if bad.len() >= HEADER_LEN {
        let size = bad.len() as u64;
        let r = ChunkDecoder::new(bad, Some(&ring), KEY).and_then(|mut cd| {
            let index = cd.read_index(bad, size)?;
            let plan = index.plan(0..index.plaintext_size())?;
            let s = plan.stored_range.clone();
            cd.decode_range(&index, &plan, &bad[s.start as usize..s.end as usize])
        });
        assert!(is_integrity(&r), "{what}: range path gave {r:?}");
    }
}

#[test]
fn truncation_anywhere() {
    for (name, _, data, stored) in objects() {
        let index = index_of(&stored);
        for cut in 0..stored.len() {
            let r = decode_all(Some(&ring()), KEY, &stored[..cut]);
            assert!(is_integrity(&r), "{name} cut at {cut}: {r:?}");
        }
        // Cut exactly at chunk boundaries (incl. trailer and footer dropped):
        // verified plaintext may have been streamed, but finish() fails.
        for i in 0..index.chunk_count() {
            let cut = index.chunk_stored_range(i).unwrap().end as usize;
            let mut dec = StreamDecoder::new(Some(&ring()), KEY);
            let mut out = Vec::new();
            dec.push(&stored[..cut], &mut out).unwrap();
            let plain_end = index.chunk_plaintext_range(i).unwrap().end as usize;
            assert_eq!(out, &data[..plain_end]);
            assert!(is_integrity(&dec.finish()), "{name} boundary {i}");
            assert_rejected(&stored[..cut], "cut at chunk boundary");
        }
        assert_rejected(&stored[..stored.len() - 1], "footer cut");
    }
}

#[test]
fn reorder_duplicate_drop() {
    for (name, _, _, stored) in objects() {
        let index = index_of(&stored);
        let n = index.chunk_count();
        assert!(n >= 4, "{name}");
        let chunks: Vec<Vec<u8>> = (0..n).map(|i| chunk(&stored, &index, i)).collect();
        assert_eq!(assemble(&stored, &index, &chunks), stored);

        let mut swapped = chunks.clone();
        swapped.swap(0, 1);
        assert_rejected(&assemble(&stored, &index, &swapped), "swap 0/1");
        let mut swapped = chunks.clone();
        swapped.swap(1, 2);
        assert_rejected(&assemble(&stored, &index, &swapped), "swap 1/2");

        let mut dup = chunks.clone();
        dup.insert(1, chunks[0].clone());
        assert_rejected(&assemble(&stored, &index, &dup), "duplicate first");
        let mut dup = chunks.clone();
        dup.push(chunks[chunks.len() - 1].clone());
        assert_rejected(&assemble(&stored, &index, &dup), "duplicate last");

        let mut dropped = chunks.clone();
        dropped.pop();
        assert_rejected(&assemble(&stored, &index, &dropped), "final chunk missing");
        let mut dropped = chunks.clone();
        dropped.remove(1);
        assert_rejected(&assemble(&stored, &index, &dropped), "middle chunk missing");

        // No chunk at all, and chunks without their trailer.
        assert_rejected(&assemble(&stored, &index, &[]), "no chunks");
        assert_rejected(&stored[..stored.len() - 40], "no footer");
    }
}

#[test]
fn trailing_garbage() {
    for (_, _, _, stored) in objects() {
        for extra in [
            &[0u8][..],
            &[0xFF; 40],
            &stored[stored.len() - 40..],
            &stored,
        ] {
            let mut bad = stored.clone();
            bad.extend_from_slice(extra);
            assert_rejected(&bad, "trailing garbage");
        }
    }
}

#[test]
fn bit_flips_everywhere() {
    let ring = ring();
    for (name, params, _, stored) in objects() {
        let index = index_of(&stored);
        let trailer_at = index
            .chunk_stored_range(index.chunk_count() - 1)
            .unwrap()
            .end as usize;
        let first_chunk_end = index.chunk_stored_range(0).unwrap().end as usize;
        // Every bit of the header, first chunk and trailer; every 7th bit
        // elsewhere.
        for byte in 0..stored.len() {
            let dense = byte < first_chunk_end || byte >= trailer_at;
            for bit in 0..8 {
                if !dense && (byte * 8 + bit) % 7 != 0 {
                    continue;
                }
                let mut bad = stored.clone();
                bad[byte] ^= 1 << bit;
                let r = decode_all(Some(&ring), KEY, &bad);
                let ok = match byte {
                    4 => matches!(r, Err(Error::UnsupportedVersion(_))),
                    8..16 if params.encrypt => matches!(r, Err(Error::UnknownKey { .. })),
                    5 if bit == 1 && !params.encrypt => {
                        matches!(r, Err(Error::UnknownKey { .. }))
                    }
                    _ => is_integrity(&r),
                };
                assert!(ok, "{name}: flip byte {byte} bit {bit}: {r:?}");
                if byte >= HEADER_LEN && byte < trailer_at {
                    assert_rejected(&bad, "chunk bit flip");
                }
                if byte >= trailer_at {
                    // Seek path reads the trailer first: any flip there fails.
                    let cd = ChunkDecoder::new(&bad, Some(&ring), KEY).unwrap();
                    let r = cd.read_index(&bad, bad.len() as u64);
                    assert!(is_integrity(&r), "{name}: trailer flip {byte}.{bit}: {r:?}");
                }
            }
        }
    }
}

#[test]
fn damaged_chunk_only_fails_ranges_that_need_it() {
    for (name, _, data, stored) in objects() {
        let index = index_of(&stored);
        let r2 = index.chunk_stored_range(2).unwrap();
        let mut bad = stored.clone();
        bad[r2.start as usize + 10] ^= 0x40;
        let p2 = index.chunk_plaintext_range(2).unwrap();
        let before = read_range(&bad, Some(&ring()), KEY, 0..p2.start).unwrap();
        assert_eq!(before, &data[..p2.start as usize], "{name}");
        let r = read_range(&bad, Some(&ring()), KEY, p2.start..p2.start + 1);
        assert!(is_integrity(&r), "{name}: {r:?}");
    }
}

#[test]
fn splicing_between_objects_fails() {
    let ring = ring();
    for (_, params) in combos(CS) {
        let data = plaintext(800, 1);
        let a = encode_all(params, Some(&ring), KEY, &data).unwrap();
        let b = encode_all(params, Some(&ring), KEY, &data).unwrap();
        let (ia, ib) = (index_of(&a), index_of(&b));
        // b's chunk 1 into a; b's trailer onto a's chunks; b's header on a.
        let mut chunks: Vec<Vec<u8>> = (0..ia.chunk_count()).map(|i| chunk(&a, &ia, i)).collect();
        chunks[1] = chunk(&b, &ib, 1);
        assert_rejected(&assemble(&a, &ia, &chunks), "foreign chunk");
        let a_trailer = ia.chunk_stored_range(ia.chunk_count() - 1).unwrap().end as usize;
        let b_trailer = ib.chunk_stored_range(ib.chunk_count() - 1).unwrap().end as usize;
        let mut mixed = a[..a_trailer].to_vec();
        mixed.extend_from_slice(&b[b_trailer..]);
        if mixed.len() == a.len() {
            assert_rejected(&mixed, "foreign trailer");
        }
        let mut mixed = b[..HEADER_LEN].to_vec();
        mixed.extend_from_slice(&a[HEADER_LEN..]);
        assert_rejected(&mixed, "foreign header");
    }
}

#[test]
fn moved_object_and_keys() {
    let data = plaintext(700, 9);
    let old = MasterKey::from_bytes([1; 32]);
    let new = MasterKey::from_bytes([2; 32]);
    let other = MasterKey::from_bytes([3; 32]);
    let old_ring = KeyRing::new(old.clone());
    let rotated = KeyRing::new(new.clone()).with_old(old.clone());
    for (name, params) in combos(CS) {
        let stored = encode_all(params, Some(&old_ring), KEY, &data).unwrap();

        // Moved to another storage key.
        let moved = decode_all(Some(&old_ring), "blog/user/43/a.jpg", &stored);
        let moved_range = read_range(&stored, Some(&old_ring), "blog/user/43/a.jpg", 0..10);
        if params.encrypt {
            assert!(is_integrity(&moved), "{name}: {moved:?}");
            assert!(is_integrity(&moved_range), "{name}: {moved_range:?}");
        } else {
            // Compress-only objects are not bound to a storage key (format.md §4).
            assert_eq!(moved.unwrap(), data);
        }

        // Old key still decodes after rotation; the object needs a rekey.
        assert_eq!(decode_all(Some(&rotated), KEY, &stored).unwrap(), data);
        assert_eq!(
            read_range(&stored, Some(&rotated), KEY, 5..600).unwrap(),
            &data[5..600]
        );
        let header = ChunkDecoder::new(&stored, Some(&rotated), KEY)
            .unwrap()
            .header()
            .clone();
        assert_eq!(needs_rekey(&header, &rotated), params.encrypt);
        assert_eq!(
            filemanager_codec::header_key_id(&stored).unwrap(),
            params.encrypt.then(|| old.key_id())
        );

        if !params.encrypt {
            assert_eq!(decode_all(None, KEY, &stored).unwrap(), data);
            continue;
        }
        // Unknown key id: distinct error naming the id.
        let wrong = KeyRing::new(other.clone());
        let r = decode_all(Some(&wrong), KEY, &stored);
        assert_eq!(
            r,
            Err(Error::UnknownKey {
                key_id: old.key_id()
            })
        );
        let r = read_range(&stored, Some(&wrong), KEY, 0..1);
        assert_eq!(
            r,
            Err(Error::UnknownKey {
                key_id: old.key_id()
            })
        );
        assert_eq!(decode_all(None, KEY, &stored), Err(Error::MissingKey));
        // Wrong key under the right id (header forged to name `other`).
        let mut forged = stored.clone();
        forged[8..16].copy_from_slice(&other.key_id().0);
        let r = decode_all(Some(&wrong), KEY, &forged);
        assert!(is_integrity(&r), "{r:?}");
        let r = read_range(&forged, Some(&wrong), KEY, 0..1);
        assert!(is_integrity(&r), "{r:?}");
    }
}

#[test]
fn encoder_misuse() {
    let ring = ring();
    let p = Params {
        chunk_size: CS,
        ..Params::default()
    };
    assert_eq!(
        Encoder::new(p, None, KEY, None).err(),
        Some(Error::MissingKey)
    );
    let plain = Params {
        encrypt: false,
        ..p
    };
    assert!(matches!(
        Encoder::new(plain, Some(&ring), KEY, None),
        Err(Error::InvalidParams(_))
    ));
    let mut enc = Encoder::new(p, Some(&ring), KEY, Some(300)).unwrap();
    let invalid =
        |r: Result<Vec<u8>, Error>| assert!(matches!(r, Err(Error::InvalidInput(_))), "{r:?}");
    invalid(enc.encode_chunk(&[0; 100], false));
    invalid(enc.encode_chunk(&[0; 257], true));
    invalid(enc.encode_chunk(&[0; 256], true)); // announced 300
    enc.encode_chunk(&[0; 256], false).unwrap();
    invalid(enc.encode_chunk(&[0; 256], true)); // would exceed 300
    let mut enc2 = Encoder::new(p, Some(&ring), KEY, None).unwrap();
    enc2.encode_chunk(&[1; 10], true).unwrap();
    invalid(enc2.encode_chunk(&[1; 10], true));
    enc2.finish().unwrap();
    invalid(enc.finish());

    let mut s = StreamEncoder::new(p, Some(&ring), KEY, Some(10)).unwrap();
    let mut out = Vec::new();
    s.push(&[0; 5], &mut out).unwrap();
    assert!(matches!(s.finish(&mut out), Err(Error::InvalidInput(_))));
}

#[test]
fn failed_decoder_stays_failed() {
    let (_, _, _, stored) = objects().remove(1);
    let mut bad = stored.clone();
    bad[HEADER_LEN + 8] ^= 1;
    let mut dec = StreamDecoder::new(Some(&ring()), KEY);
    let mut out = Vec::new();
    assert!(dec.push(&bad[..400], &mut out).is_err());
    assert!(out.is_empty());
    assert!(dec.push(&stored[400..], &mut out).is_err());
    assert!(is_integrity(&dec.finish()));
}
