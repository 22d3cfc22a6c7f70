//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::ops::Range;

use filemanager_codec::{
    ChunkDecoder, Error, FOOTER_LEN, Footer, HEADER_LEN, KeyRing, MasterKey, Params, Piece, Result,
    StreamDecoder,
};

pub const KEY: &str = "blog/user/42/a.jpg";

pub fn ring() -> KeyRing {
    KeyRing::new(MasterKey::from_bytes([7; 32]))
}

/// The three encoded combinations: (name, params).
pub fn combos(chunk_size: u32) -> [(&'static str, Params); 3] {
    [
        (
            "compress",
            Params {
                compress: Some(3),
                encrypt: false,
                chunk_size,
            },
        ),
        (
            "encrypt",
            Params {
                compress: None,
                encrypt: true,
                chunk_size,
            },
        ),
        (
            "encrypt+compress",
            Params {
                compress: Some(1),
                encrypt: true,
                chunk_size,
            },
        ),
    ]
}

/// Small deterministic PRNG (splitmix64) so tests need no extra crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Plaintext that mixes compressible text runs and random runs, so that
/// compressed objects contain both compressed and raw chunks.
pub fn plaintext(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len);
    let words: &[&[u8]] = &[b"file ", b"manager ", b"chunk ", b"zstd ", b"GCM\n"];
    while out.len() < len {
        let target = out.len() + 1 + rng.below(3000);
        let text = rng.next().is_multiple_of(2);
        while out.len() < target {
            if text {
                out.extend_from_slice(words[rng.below(words.len())]);
            } else {
                out.push(rng.next() as u8);
            }
        }
    }
    out.truncate(len);
    out
}

/// Decodes with the stream decoder, pushing slices of sizes from `sizes`.
pub fn decode_split(
    stored: &[u8],
    ring: Option<&KeyRing>,
    key: &str,
    mut sizes: impl FnMut() -> usize,
) -> Result<Vec<u8>> {
    let mut dec = StreamDecoder::new(ring, key);
    let mut out = Vec::new();
    let mut rest = stored;
    while !rest.is_empty() {
        let n = sizes().clamp(1, rest.len());
        dec.push(&rest[..n], &mut out)?;
        rest = &rest[n..];
    }
    dec.finish()?;
    Ok(out)
}

/// Decodes with [`StreamDecoder::push_in_place`], pushing copies of slices of sizes from
/// `sizes` (each copy is the caller's buffer, decrypted in place), and reassembles the
/// plaintext from the pieces it reports. Also checks that in-place pieces lie inside their
/// buffer and spilled ones inside the spill, in order and without overlap.
pub fn decode_split_in_place(
    stored: &[u8],
    ring: Option<&KeyRing>,
    key: &str,
    mut sizes: impl FnMut() -> usize,
) -> Result<Vec<u8>> {
    let mut dec = StreamDecoder::new(ring, key);
    let mut out = Vec::new();
    let mut rest = stored;
    while !rest.is_empty() {
        let n = sizes().clamp(1, rest.len());
        let mut buf = rest[..n].to_vec();
        let (mut spill, mut pieces) = (Vec::new(), Vec::new());
        dec.push_in_place(&mut buf, &mut spill, &mut pieces)?;
        let (mut in_buf, mut in_spill) = (0, 0);
        for piece in pieces {
            match piece {
                Piece::InPlace(r) => {
                    assert!(r.start >= in_buf && r.start < r.end && r.end <= buf.len());
                    in_buf = r.end;
                    out.extend_from_slice(&buf[r]);
                }
                Piece::Spilled(r) => {
                    assert!(r.start == in_spill && r.start < r.end && r.end <= spill.len());
                    in_spill = r.end;
                    out.extend_from_slice(&spill[r]);
                }
            }
        }
        assert_eq!(in_spill, spill.len(), "every spilled byte is reported");
        rest = &rest[n..];
    }
    dec.finish()?;
    Ok(out)
}

/// Reads a plaintext range the way the library does: header, footer, tail,
/// index, then only the planned stored bytes.
pub fn read_range(
    stored: &[u8],
    ring: Option<&KeyRing>,
    key: &str,
    range: Range<u64>,
) -> Result<Vec<u8>> {
    let size = stored.len() as u64;
    let mut cd = ChunkDecoder::new(&stored[..HEADER_LEN.min(stored.len())], ring, key)?;
    let footer = Footer::parse(&stored[stored.len() - FOOTER_LEN.min(stored.len())..])?;
    let need = footer.trailer_len().min(size) as usize;
    let index = cd.read_index(&stored[stored.len() - need..], size)?;
    let plan = index.plan(range)?;
    let bytes = stored
        .get(plan.stored_range.start as usize..plan.stored_range.end as usize)
        .ok_or(Error::Integrity("test: short object"))?;
    cd.decode_range(&index, &plan, bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// One test vector (format.md §9).
#[derive(Debug, Clone)]
pub struct Vector {
    pub name: String,
    pub master_key: [u8; 32],
    pub salt: [u8; 32],
    pub storage_key: String,
    pub encrypt: bool,
    pub compress: Option<i32>,
    pub chunk_size: u32,
    pub size_in_header: bool,
    pub plaintext: Vec<u8>,
    pub encoded: Vec<u8>,
}

impl Vector {
    pub fn params(&self) -> Params {
        Params {
            compress: self.compress,
            encrypt: self.encrypt,
            chunk_size: self.chunk_size,
        }
    }

    pub fn ring(&self) -> KeyRing {
        KeyRing::new(MasterKey::from_bytes(self.master_key))
    }

    pub fn to_text(&self) -> String {
        format!(
            "# filemanager-codec test vector (docs/format.md section 9)\n\
             name = {}\nmaster_key = {}\nsalt = {}\nstorage_key = {}\nencrypt = {}\n\
             compress = {}\nchunk_size = {}\nsize_in_header = {}\nplaintext = {}\nencoded = {}\n",
            self.name,
            hex(&self.master_key),
            hex(&self.salt),
            self.storage_key,
            self.encrypt,
            self.compress.map_or("none".to_owned(), |l| l.to_string()),
            self.chunk_size,
            self.size_in_header,
            hex(&self.plaintext),
            hex(&self.encoded),
        )
    }

    pub fn parse(text: &str) -> Vector {
        let mut map = std::collections::HashMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (k, v) = line.split_once('=').expect("name = value");
            map.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        let get = |k: &str| map.get(k).unwrap_or_else(|| panic!("missing {k}")).clone();
        Vector {
            name: get("name"),
            master_key: unhex(&get("master_key")).try_into().unwrap(),
            salt: unhex(&get("salt")).try_into().unwrap(),
            storage_key: get("storage_key"),
            encrypt: get("encrypt").parse().unwrap(),
            compress: match get("compress").as_str() {
                "none" => None,
                l => Some(l.parse().unwrap()),
            },
            chunk_size: get("chunk_size").parse().unwrap(),
            size_in_header: get("size_in_header").parse().unwrap(),
            plaintext: unhex(&get("plaintext")),
            encoded: unhex(&get("encoded")),
        }
    }

    pub fn dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
    }

    /// All checked-in vectors, sorted by file name.
    pub fn load_all() -> Vec<Vector> {
        let mut files: Vec<_> = std::fs::read_dir(Self::dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| Vector::parse(&std::fs::read_to_string(p).unwrap()))
            .collect()
    }
}

pub fn regenerate() -> bool {
    std::env::var_os("FMC_REGENERATE").is_some_and(|v| v == "1")
}
