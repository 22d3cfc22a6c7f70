//! The large-file tier on a real bucket (Garage): files too large for the cache are copied to
//! local disk once, served from there whole and in ranges, never from a copy of another
//! version, and no partial or damaged copy is ever used.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use filemanager::*;
use futures::StreamExt;

/// Larger than the cache's default item limit (1 MiB), so the memory and L2 tiers refuse it.
const SIZE: usize = 3 * 1024 * 1024 + 12_345;

struct World {
    fm: FileManager,
    /// The same bucket without any cache: changes made here are invisible to `fm`'s caches.
    plain: FileManager,
    large_dir: PathBuf,
    domain: String,
    _dir: tempfile::TempDir,
}

fn world_with(max_bytes: u64) -> Option<World> {
    let s3 = s3_config()?;
    let dir = tempfile::tempdir().unwrap();
    let large_dir = dir.path().join("large");
    let fm = FileManager::builder(StorageConfig::S3(s3.clone()))
        .keys(test_keys())
        .cache(Some(CacheSetup::with_disk(dir.path().join("cache"))))
        .large_files(Some(LargeFileSetup::new(&large_dir, max_bytes)))
        .build()
        .unwrap();
    let plain = FileManager::builder(StorageConfig::S3(s3))
        .keys(test_keys())
        .build()
        .unwrap();
    Some(World {
        fm,
        plain,
        large_dir,
        domain: unique_domain(),
        _dir: dir,
    })
}

fn world() -> Option<World> {
    world_with(256 << 20)
}

impl World {
    fn at(&self, name: &str) -> Location {
        Location::new(&self.domain, StorageLevel::App, None, name).unwrap()
    }

    fn stats(&self) -> LargeFileStats {
        self.fm.large_file_stats().expect("the tier is on")
    }

    /// Waits until `n` copies were made in all (a copy is committed on a task of its own,
    /// just after the download that made it hands on its last bytes).
    async fn filled(&self, n: u64) {
        eventually(&format!("{n} copies made"), || self.stats().fills >= n).await;
        assert_eq!(self.stats().fills, n);
    }

    async fn put(&self, loc: &Location, body: &[u8], encrypt: bool, compress: bool) {
        self.fm
            .upload(
                loc,
                body.to_vec(),
                &UploadOptions::default().encrypt(encrypt).compress(compress),
            )
            .await
            .unwrap();
    }

    async fn get(&self, loc: &Location, range: Option<ByteRange>) -> (Vec<u8>, bool) {
        let dl = self
            .fm
            .download(
                loc,
                &DownloadOptions {
                    range,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let hit = dl.from_cache;
        (read_like_http(dl).await, hit)
    }
}

/// Reads a download the way an HTTP server sends it: up to its length, then no further (the
/// end of the stream is never asked for).
async fn read_like_http(mut dl: Download) -> Vec<u8> {
    let want = match &dl.range {
        Some(r) => r.end - r.start,
        None => dl.info.size,
    } as usize;
    let mut out = Vec::new();
    while out.len() < want {
        match dl.body.next().await {
            Some(chunk) => out.extend_from_slice(&chunk.unwrap()),
            None => break,
        }
    }
    out
}

/// The files in `dir`: (copies, temporary files).
fn files_in(dir: &Path) -> (Vec<PathBuf>, usize) {
    let mut copies = Vec::new();
    let mut tmp = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".tmp") {
            tmp += 1;
        } else {
            copies.push(p);
        }
    }
    (copies, tmp)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn a_large_file_is_copied_once_then_served_locally_whole_and_in_ranges() {
    for (name, compress, encrypt) in [
        ("plain", false, false),
        ("aes", false, true),
        ("zstd+aes", true, true),
    ] {
        let Some(w) = world() else { return };
        eprintln!("== codec {name}");
        let loc = w.at("videos/big.bin");
        let body = pseudo_random(7, SIZE);
        w.put(&loc, &body, encrypt, compress).await;

        let (got, hit) = w.get(&loc, None).await;
        assert!(got == body, "first download differs");
        assert!(!hit, "the first download reads the bucket");
        w.filled(1).await;
        let s = w.stats();
        assert_eq!((s.fills, s.hits, s.files), (1, 0, 1));

        // The copy is the stored form: an encrypted file stays encrypted on local disk.
        let (copies, tmp) = files_in(&w.large_dir);
        assert_eq!((copies.len(), tmp), (1, 0));
        let copy = std::fs::read(&copies[0]).unwrap();
        let meta = w.fm.metadata(&loc, false).await.unwrap().unwrap();
        assert_eq!(copy.len() as u64, meta.stored_size);
        let window = &body[SIZE / 2..SIZE / 2 + 64];
        assert_eq!(
            copy.windows(64).any(|w| w == window),
            !encrypt && !compress,
            "plaintext on local disk only for a plain file"
        );

        // Removed from the bucket behind the manager's back (its caches do not know): the
        // bytes still come, so they come from the local copy.
        w.plain.delete(&loc).await.unwrap();
        let (got, hit) = w.get(&loc, None).await;
        assert!(got == body && hit, "a whole download from the copy");
        for (range, want) in [
            (
                ByteRange::FromTo(1_000_000, 2_500_000),
                1_000_000..2_500_001,
            ),
            (ByteRange::From(SIZE as u64 - 10), SIZE - 10..SIZE),
            (ByteRange::Suffix(70_000), SIZE - 70_000..SIZE),
            (ByteRange::FromTo(0, 0), 0..1),
        ] {
            let (got, hit) = w.get(&loc, Some(range)).await;
            assert!(hit, "{range:?} from the copy");
            assert!(got == body[want.clone()], "{range:?} differs");
        }
        assert_eq!(w.stats().hits, 5);
    }
}

#[tokio::test]
async fn writes_and_deletes_remove_copies_and_never_serve_an_old_version() {
    let Some(w) = world() else { return };
    let loc = w.at("doc.bin");
    let first = pseudo_random(1, SIZE);
    let second = pseudo_random(2, SIZE);
    w.put(&loc, &first, true, false).await;
    assert!(w.get(&loc, None).await.0 == first);
    w.filled(1).await;
    assert_eq!(files_in(&w.large_dir).0.len(), 1);

    // An overwrite through this instance removes the copy at once; the next read is the
    // new version, from the bucket, and is copied in turn.
    w.put(&loc, &second, true, false).await;
    assert_eq!(files_in(&w.large_dir).0.len(), 0);
    let (got, hit) = w.get(&loc, None).await;
    assert!(got == second && !hit);
    w.filled(2).await;
    let (got, hit) = w.get(&loc, None).await;
    assert!(got == second && hit);

    // Another writer (no shared cache, no bus): once this instance's description of the
    // file is refreshed, the copy of the older version is not used.
    let third = pseudo_random(3, SIZE);
    w.plain
        .upload(&loc, third.clone(), &UploadOptions::default())
        .await
        .unwrap();
    let cache = w.fm.cache().unwrap();
    cache.invalidate(&loc.key()).await; // what the bus, or the metadata TTL, would do
    let (got, hit) = w.get(&loc, None).await;
    assert!(got == third && !hit, "a copy of another version was served");

    w.fm.delete(&loc).await.unwrap();
    assert_eq!(files_in(&w.large_dir).0.len(), 0);
    assert_not_found(w.fm.download(&loc, &Default::default()).await);
}

#[tokio::test]
async fn a_cut_or_bypassed_download_leaves_no_copy() {
    let Some(w) = world() else { return };
    let loc = w.at("cut.bin");
    let body = pseudo_random(4, SIZE);
    w.put(&loc, &body, true, true).await;

    // The client goes away after the first piece.
    let mut dl = w.fm.download(&loc, &Default::default()).await.unwrap();
    dl.body.next().await.unwrap().unwrap();
    drop(dl);
    // The download is decoded on a task of its own, which stops as soon as it notices.
    eventually("the cut copy is discarded", || {
        w.stats().fills_discarded == 1
    })
    .await;
    assert_eq!(files_in(&w.large_dir), (vec![], 0));
    assert_eq!(w.stats().fills, 0);

    // Going around the cache copies nothing either.
    let dl =
        w.fm.download(
            &loc,
            &DownloadOptions {
                bypass_cache: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(collect(dl.body).await == body);
    assert_eq!(files_in(&w.large_dir), (vec![], 0));

    // Nor does a file uploaded with `cache_content = false`.
    let private = w.at("private.bin");
    let opts = UploadOptions::default().cache_content(false);
    w.fm.upload(&private, body.clone(), &opts).await.unwrap();
    assert!(w.get(&private, None).await.0 == body);
    assert!(w.get(&private, None).await.0 == body);
    assert_eq!(files_in(&w.large_dir), (vec![], 0));
    assert_eq!(w.stats().fills, 0);
}

#[tokio::test]
async fn a_ranged_miss_copies_the_whole_file_in_the_background() {
    let Some(w) = world() else { return };
    let loc = w.at("seek.bin");
    let body = pseudo_random(5, SIZE);
    w.put(&loc, &body, true, false).await;
    let (got, hit) = w.get(&loc, Some(ByteRange::FromTo(100, 199))).await;
    assert!(got == body[100..200] && !hit);
    eventually("the background copy", || w.stats().fills == 1).await;
    let (got, hit) = w.get(&loc, Some(ByteRange::From(2_000_000))).await;
    assert!(got == body[2_000_000..] && hit);
}

#[tokio::test]
async fn a_damaged_copy_fails_one_read_and_is_removed() {
    let Some(w) = world() else { return };
    let loc = w.at("damaged.bin");
    let body = pseudo_random(6, SIZE);
    w.put(&loc, &body, true, false).await;
    assert!(w.get(&loc, None).await.0 == body);
    w.filled(1).await;
    let (copies, _) = files_in(&w.large_dir);
    let mut bytes = std::fs::read(&copies[0]).unwrap();
    bytes[SIZE / 2] ^= 0x40;
    std::fs::write(&copies[0], &bytes).unwrap();

    // The AES-GCM tag of the damaged chunk fails: the stream ends in an error, never in
    // wrong bytes, and the copy is gone.
    let dl = w.fm.download(&loc, &Default::default()).await.unwrap();
    assert!(dl.from_cache);
    let mut body_stream = dl.body;
    let mut ok = 0usize;
    let mut failed = false;
    while let Some(chunk) = body_stream.next().await {
        match chunk {
            Ok(b) => {
                assert!(
                    b[..] == body[ok..ok + b.len()],
                    "wrong bytes from a damaged copy"
                );
                ok += b.len();
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed && ok < SIZE);
    assert_eq!(w.stats().damaged, 1);
    assert_eq!(files_in(&w.large_dir).0.len(), 0);
    let (got, hit) = w.get(&loc, None).await;
    assert!(got == body && !hit, "the next read goes to the bucket");
}

#[tokio::test]
async fn a_write_during_a_copy_voids_it() {
    let Some(w) = world() else { return };
    let loc = w.at("racing.bin");
    let old = pseudo_random(8, SIZE);
    w.put(&loc, &old, true, false).await;
    let mut dl = w.fm.download(&loc, &Default::default()).await.unwrap();
    let mut got = dl.body.next().await.unwrap().unwrap().to_vec();
    // A newer version is written while the old one streams.
    w.put(&loc, &pseudo_random(9, SIZE), true, false).await;
    while let Some(chunk) = dl.body.next().await {
        match chunk {
            Ok(b) => got.extend_from_slice(&b),
            Err(e) => panic!("the old version stopped streaming: {e}"),
        }
    }
    assert!(got == old);
    // The old version was read whole, but a write came after the read began: no copy.
    eventually("the copy is discarded", || w.stats().fills_discarded == 1).await;
    let s = w.stats();
    assert_eq!((s.fills, s.fills_discarded, s.files), (0, 1, 0));
}

#[tokio::test]
async fn the_bound_holds_and_copies_outlive_a_restart() {
    let Some(w) = world_with(16 << 20) else {
        return;
    };
    let body = pseudo_random(10, SIZE);
    let locs: Vec<Location> = (0..6).map(|i| w.at(&format!("f{i}.bin"))).collect();
    for (i, loc) in locs.iter().enumerate() {
        w.put(loc, &body, true, false).await;
        assert!(w.get(loc, None).await.0 == body);
        w.filled(i as u64 + 1).await;
    }
    let stored =
        w.fm.metadata(&locs[0], false)
            .await
            .unwrap()
            .unwrap()
            .stored_size;
    let fit = (16 << 20) / stored;
    assert!(fit < 6, "the test needs more copies than fit");
    let s = w.stats();
    assert!(s.bytes <= 16 << 20, "{} bytes kept", s.bytes);
    assert_eq!((s.fills, s.files, s.evictions), (6, fit, 6 - fit));
    // The newest copies are kept; the oldest went first.
    let (_, hit) = w.get(&locs[5], None).await;
    assert!(hit);
    let (_, hit) = w.get(&locs[0], None).await;
    assert!(!hit);

    // A new instance over the same directory finds the copies.
    let again = FileManager::builder(StorageConfig::S3(s3_config().unwrap()))
        .keys(test_keys())
        .cache(Some(CacheSetup::with_disk(w._dir.path().join("cache2"))))
        .large_files(Some(LargeFileSetup::new(&w.large_dir, 16 << 20)))
        .build()
        .unwrap();
    let dl = again.download(&locs[5], &Default::default()).await.unwrap();
    assert!(dl.from_cache);
    assert!(collect(dl.body).await == body);
}
