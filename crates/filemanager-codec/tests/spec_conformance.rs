//! An independent implementation of docs/format.md built from plain `ring`
//! and `zstd` calls, checked against the test vectors; plus hand-crafted
//! decompression bombs, which need the spec's keyless tag to get past
//! verification.

mod common;

use common::*;
use filemanager_codec::{Error, KeyRing, MasterKey, decode_all};
use ring::{aead, digest, hkdf, hmac};

/// Writes objects the way format.md says, without the crate's encoder.
struct SpecWriter {
    header: Vec<u8>,
    key: Option<aead::LessSafeKey>,
}

impl SpecWriter {
    fn new(
        master: Option<&[u8; 32]>,
        compressed: bool,
        salt: &[u8; 32],
        storage_key: &str,
        chunk_size: u32,
        size: Option<u64>,
    ) -> Self {
        let mut flags = 0u8;
        if compressed {
            flags |= 1;
        }
        if master.is_some() {
            flags |= 2;
        }
        if size.is_some() {
            flags |= 4;
        }
        let mut header = vec![0x89, b'F', b'M', b'C', 1, flags, 0, 0];
        let key_id = master.map_or([0u8; 8], |m| {
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, m), b"filemanager key id");
            tag.as_ref()[..8].try_into().unwrap()
        });
        header.extend_from_slice(&key_id);
        header.extend_from_slice(salt);
        header.extend_from_slice(&chunk_size.to_be_bytes());
        header.extend_from_slice(&size.unwrap_or(0).to_be_bytes());
        assert_eq!(header.len(), 60);
        let key = master.map(|m| {
            let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(m);
            let info = [&[1u8][..], storage_key.as_bytes()];
            let okm = prk.expand(&info, &aead::AES_256_GCM).unwrap();
            aead::LessSafeKey::new(okm.into())
        });
        Self { header, key }
    }

    fn seal(&self, counter: u64, kind: u8, aad: &[u8], body: &mut Vec<u8>) {
        let mut nonce = [0u8; 12];
        nonce[3..11].copy_from_slice(&counter.to_be_bytes());
        nonce[11] = kind;
        let tag: Vec<u8> = match &self.key {
            Some(key) => key
                .seal_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(aad),
                    body,
                )
                .unwrap()
                .as_ref()
                .to_vec(),
            None => {
                let mut ctx = digest::Context::new(&digest::SHA256);
                for part in [&b"FMC1-SHA256-TAG"[..], &nonce, aad, body] {
                    ctx.update(part);
                }
                ctx.finish().as_ref()[..16].to_vec()
            }
        };
        body.extend_from_slice(&tag);
    }

    /// One stored chunk with an explicit body and flags.
    fn chunk(&self, counter: u64, compressed: bool, last: bool, body: &[u8]) -> Vec<u8> {
        let mut prefix = vec![u8::from(compressed) | (u8::from(last) << 1)];
        prefix.extend_from_slice(&(body.len() as u32).to_be_bytes());
        let aad = [&self.header[..], &prefix].concat();
        let mut sealed = body.to_vec();
        self.seal(counter, u8::from(last), &aad, &mut sealed);
        [prefix, sealed].concat()
    }

    fn trailer(&self, lens: &[u32], plaintext_size: u64) -> Vec<u8> {
        let index: Vec<u8> = lens.iter().flat_map(|l| l.to_be_bytes()).collect();
        let mut footer = (lens.len() as u64).to_be_bytes().to_vec();
        footer.extend_from_slice(&plaintext_size.to_be_bytes());
        let tail = [1, 0, 0, 0, 0x89, b'F', b'M', b'E'];
        let aad = [&self.header[..], &index, &footer, &tail].concat();
        let mut tag = Vec::new();
        self.seal(0, 2, &aad, &mut tag);
        [index, footer, tag, tail.to_vec()].concat()
    }

    /// A whole object, chunks compressed at `level` when that shrinks them.
    fn object(&self, plaintext: &[u8], chunk_size: usize, level: Option<i32>) -> Vec<u8> {
        let mut pieces: Vec<&[u8]> = plaintext.chunks(chunk_size).collect();
        if pieces.is_empty() {
            pieces.push(&[]);
        }
        let mut out = self.header.clone();
        let mut lens = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let frame = level
                .filter(|_| !p.is_empty())
                .map(|l| zstd::bulk::compress(p, l).unwrap())
                .filter(|f| f.len() < p.len());
            let body = frame.as_deref().unwrap_or(p);
            lens.push(body.len() as u32);
            out.extend(self.chunk(i as u64, frame.is_some(), i + 1 == pieces.len(), body));
        }
        out.extend(self.trailer(&lens, plaintext.len() as u64));
        out
    }
}

#[test]
fn vectors_match_the_written_spec() {
    let vectors = Vector::load_all();
    assert!(vectors.len() >= 4);
    for v in vectors {
        let w = SpecWriter::new(
            v.encrypt.then_some(&v.master_key),
            v.compress.is_some(),
            &v.salt,
            &v.storage_key,
            v.chunk_size,
            v.size_in_header.then_some(v.plaintext.len() as u64),
        );
        let built = w.object(&v.plaintext, v.chunk_size as usize, v.compress);
        assert!(built == v.encoded, "{}: spec and vector disagree", v.name);
    }
}

#[test]
fn key_id_and_passphrase_are_as_documented() {
    let key = MasterKey::from_bytes([0x11; 32]);
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &[0x11; 32]),
        b"filemanager key id",
    );
    assert_eq!(key.key_id().0, tag.as_ref()[..8]);
    assert_eq!(key.key_id().to_string(), hex(&tag.as_ref()[..8]));
}

fn bomb_object(frame: &[u8], declared_size: u64) -> Vec<u8> {
    let w = SpecWriter::new(None, true, &[9; 32], KEY, 256, None);
    let mut out = w.header.clone();
    out.extend(w.chunk(0, true, true, frame));
    out.extend(w.trailer(&[frame.len() as u32], declared_size));
    out
}

#[test]
fn decompression_bombs_are_refused() {
    // Sanity: the hand-built writer makes objects the decoder accepts.
    let ok_frame = zstd::bulk::compress(&[b'a'; 200], 3).unwrap();
    let ok = bomb_object(&ok_frame, 200);
    assert_eq!(decode_all(None, KEY, &ok).unwrap(), [b'a'; 200]);

    let zeros = vec![0u8; 4 << 20];
    // With and without the content size in the frame header.
    let sized = zstd::bulk::compress(&zeros, 3).unwrap();
    let unsized_ = zstd::stream::encode_all(&zeros[..], 3).unwrap();
    for frame in [sized, unsized_] {
        assert!(
            frame.len() <= 256,
            "frame must fit a chunk: {}",
            frame.len()
        );
        for declared in [0, 256] {
            let bomb = bomb_object(&frame, declared);
            let r = decode_all(None, KEY, &bomb);
            assert!(matches!(r, Err(Error::Integrity(_))), "{r:?}");
            let r = read_range(&bomb, None, KEY, 0..declared);
            if declared > 0 {
                assert!(matches!(r, Err(Error::Integrity(_))), "{r:?}");
            }
        }
    }

    // A non-last chunk must expand to exactly the chunk size.
    let w = SpecWriter::new(None, true, &[9; 32], KEY, 256, None);
    let short = zstd::bulk::compress(&[b'z'; 255], 3).unwrap();
    let mut obj = w.header.clone();
    obj.extend(w.chunk(0, true, false, &short));
    obj.extend(w.chunk(1, false, true, b"x"));
    obj.extend(w.trailer(&[short.len() as u32, 1], 257));
    let r = decode_all(None, KEY, &obj);
    assert!(matches!(r, Err(Error::Integrity(_))), "{r:?}");
}

#[test]
fn encrypted_spec_objects_decode() {
    let master = [0x33; 32];
    let ring = KeyRing::new(MasterKey::from_bytes(master));
    let data = plaintext(3000, 77);
    for level in [None, Some(5)] {
        let w = SpecWriter::new(Some(&master), level.is_some(), &[1; 32], KEY, 512, None);
        let obj = w.object(&data, 512, level);
        assert_eq!(decode_all(Some(&ring), KEY, &obj).unwrap(), data);
        assert_eq!(
            read_range(&obj, Some(&ring), KEY, 700..2100).unwrap(),
            &data[700..2100]
        );
    }
}
