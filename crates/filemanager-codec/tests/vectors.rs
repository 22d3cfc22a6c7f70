//! Fixed test vectors: the encoder must reproduce them byte for byte and
//! both decoding paths must read them. `FMC_REGENERATE=1` rewrites them
//! (only after checking that the old ones still decode, see format.md §9).

mod common;

use common::*;
use filemanager_codec::{StreamEncoder, decode_all};

fn definitions() -> Vec<Vector> {
    let master_key: [u8; 32] = std::array::from_fn(|i| i as u8);
    let salt: [u8; 32] = std::array::from_fn(|i| 0xA0 + i as u8);
    let text = b"FileManager stores files for multi-domain web apps. ".repeat(12);
    // Chunk 0 and 2 compress, chunk 1 is noise and is stored raw.
    let mut mixed = text[..256].to_vec();
    let mut rng = Rng(2024);
    mixed.extend((0..256).map(|_| rng.next() as u8));
    mixed.extend_from_slice(&text[..188]);
    let v = |name: &str, encrypt, compress, chunk_size, size_in_header, plaintext: &[u8]| Vector {
        name: name.to_owned(),
        master_key,
        salt,
        storage_key: "blog/user/42/a.jpg".to_owned(),
        encrypt,
        compress,
        chunk_size,
        size_in_header,
        plaintext: plaintext.to_vec(),
        encoded: Vec::new(),
    };
    vec![
        v("encrypt", true, None, 256, true, &text[..600]),
        v("compress", false, Some(3), 256, false, &mixed),
        v("encrypt_compress", true, Some(3), 256, true, &mixed),
        v("encrypt_empty", true, None, 65536, true, b""),
        v(
            "encrypt_unknown_size_full_chunks",
            true,
            None,
            256,
            false,
            &text[..512],
        ),
    ]
}

fn encode(v: &Vector) -> Vec<u8> {
    let size = v.size_in_header.then_some(v.plaintext.len() as u64);
    let mut enc =
        StreamEncoder::new_with_salt(v.params(), Some(&v.ring()), &v.storage_key, size, v.salt)
            .unwrap();
    let mut out = Vec::new();
    enc.push(&v.plaintext, &mut out).unwrap();
    enc.finish(&mut out).unwrap();
    out
}

#[test]
fn vectors_encode_and_decode() {
    if regenerate() {
        for mut v in definitions() {
            v.encoded = encode(&v);
            std::fs::write(Vector::dir().join(format!("{}.txt", v.name)), v.to_text()).unwrap();
        }
    }
    let vectors = Vector::load_all();
    assert_eq!(vectors.len(), definitions().len(), "missing vector files");
    for v in vectors {
        let ring = v.ring();
        assert_eq!(
            decode_all(Some(&ring), &v.storage_key, &v.encoded).unwrap(),
            v.plaintext,
            "{}: decode",
            v.name
        );
        let len = v.plaintext.len() as u64;
        for r in [0..len, len / 3..len, 0..len / 2, len / 2..len / 2 + 1] {
            if r.end <= len {
                let got = read_range(&v.encoded, Some(&ring), &v.storage_key, r.clone()).unwrap();
                assert_eq!(
                    got,
                    &v.plaintext[r.start as usize..r.end as usize],
                    "{}",
                    v.name
                );
            }
        }
        assert!(
            encode(&v) == v.encoded,
            "{}: encoder output changed; bump FORMAT_VERSION if the format changed",
            v.name
        );
    }
}
