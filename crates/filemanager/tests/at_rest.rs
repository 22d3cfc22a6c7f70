//! Encryption at rest, seen from outside: what an attacker with access to the storage can and
//! cannot do, and what a misconfigured instance does.

mod common;

use bytes::Bytes;
use common::*;
use filemanager::*;
use object_store::ObjectStoreExt;
use proptest::prelude::*;

fn local(root: &std::path::Path, keys: KeyConfig) -> FileManager {
    FileManager::builder(StorageConfig::Local {
        root: root.to_path_buf(),
    })
    .keys(keys)
    .build()
    .unwrap()
}

/// The file holding `key` on local disk (see docs/storage.md: keys end in a backslash).
fn disk_path(root: &std::path::Path, key: &str) -> std::path::PathBuf {
    root.join(format!("{key}\\"))
}

fn assert_integrity<T: std::fmt::Debug>(r: Result<T>) {
    match r {
        Err(Error::Integrity { .. }) => {}
        other => panic!("expected an integrity error, got {other:?}"),
    }
}

fn loc(name: &str) -> Location {
    Location::new("vault", StorageLevel::User, Some("alice"), name).unwrap()
}

#[tokio::test]
async fn encrypted_bytes_on_disk_do_not_contain_the_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let fm = local(dir.path(), test_keys());
    let secret = b"the quick brown fox jumps over the lazy dog ".repeat(100);
    for compress in [false, true] {
        let opts = UploadOptions::default().compress(compress);
        fm.upload(&loc("s.txt"), secret.clone(), &opts)
            .await
            .unwrap();
        let raw = std::fs::read(disk_path(dir.path(), &loc("s.txt").key())).unwrap();
        assert!(
            !raw.windows(20).any(|w| w == &secret[..20]),
            "plaintext visible on disk"
        );
    }
}

#[tokio::test]
async fn ciphertext_moved_to_another_key_fails_integrity() {
    let dir = tempfile::tempdir().unwrap();
    let fm = local(dir.path(), test_keys());
    for compress in [false, true] {
        fm.upload(
            &loc("mine.pdf"),
            pseudo_random(1, 100_000),
            &UploadOptions::default().compress(compress),
        )
        .await
        .unwrap();
        // Another user's space, and another name in the same space.
        for target in [
            Location::new("vault", StorageLevel::User, Some("mallory"), "mine.pdf").unwrap(),
            loc("copy.pdf"),
        ] {
            let to = disk_path(dir.path(), &target.key());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(disk_path(dir.path(), &loc("mine.pdf").key()), &to).unwrap();
            assert_integrity(fm.download_bytes(&target, &Default::default()).await);
            let ranged = DownloadOptions {
                range: Some(ByteRange::FromTo(70_000, 70_010)),
                ..Default::default()
            };
            assert_integrity(fm.download_bytes(&target, &ranged).await);
        }
    }
}

/// A change made to stored bytes behind FileManager's back.
type Mutation = Box<dyn Fn(&mut Vec<u8>)>;

#[tokio::test]
async fn tampered_or_truncated_files_fail_integrity_and_never_return_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let fm = local(dir.path(), test_keys());
    let data = pseudo_random(2, 300_000);
    for (compress, encrypt) in [(false, true), (true, false), (true, true)] {
        let opts = UploadOptions::default().compress(compress).encrypt(encrypt);
        let path = disk_path(dir.path(), &loc("t.bin").key());
        let mutations: Vec<Mutation> = vec![
            Box::new(|b| {
                let n = b.len();
                b.truncate(n - 1)
            }),
            Box::new(|b| {
                let n = b.len();
                b.truncate(n / 2)
            }),
            Box::new(|b| b.extend_from_slice(b"trailing")),
            Box::new(|b| {
                let n = b.len();
                b[n / 2] ^= 1
            }),
            Box::new(|b| {
                let n = b.len();
                b[n - 10] ^= 0x80
            }),
        ];
        for mutate in &mutations {
            fm.upload(&loc("t.bin"), data.clone(), &opts).await.unwrap();
            let mut raw = std::fs::read(&path).unwrap();
            mutate(&mut raw);
            std::fs::write(&path, &raw).unwrap();
            match fm.download_bytes(&loc("t.bin"), &Default::default()).await {
                Err(Error::Integrity { .. }) | Err(Error::FileDownloadError { .. }) => {}
                other => panic!("tampered file served: {:?}", other.map(|b| b.len())),
            }
        }
    }
}

#[tokio::test]
async fn the_wrong_key_cannot_read_and_old_keys_still_can() {
    let dir = tempfile::tempdir().unwrap();
    let first = local(dir.path(), test_keys());
    first
        .upload(
            &loc("k.txt"),
            Bytes::from_static(b"sealed"),
            &UploadOptions::default(),
        )
        .await
        .unwrap();
    let other_key = "ff".repeat(32);
    let stranger = local(dir.path(), KeyConfig::from_values(&other_key, &[]).unwrap());
    let err = stranger
        .download_bytes(&loc("k.txt"), &Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(!err.to_string().contains(&other_key));
    assert!(!err.to_string().contains(TEST_KEY));
    // Rotated: new primary, the first key kept as an old key.
    let rotated = local(
        dir.path(),
        KeyConfig::from_values(&other_key, &[TEST_KEY]).unwrap(),
    );
    assert_eq!(
        rotated
            .download_bytes(&loc("k.txt"), &Default::default())
            .await
            .unwrap(),
        "sealed"
    );
    assert_eq!(rotated.key_ids().len(), 2);
}

#[tokio::test]
async fn encryption_without_a_key_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fm = local(dir.path(), KeyConfig::None);
    let err = fm
        .upload(
            &loc("x"),
            Bytes::from_static(b"x"),
            &UploadOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config { ref variable, .. } if variable == "STORAGE_ENCRYPTION_KEY"),
        "{err}"
    );
    assert!(fm.metadata(&loc("x"), false).await.unwrap().is_none());
    // Plain uploads still work without a key.
    fm.upload(
        &loc("x"),
        Bytes::from_static(b"x"),
        &UploadOptions::default().encrypt(false),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_plain_upload_that_looks_like_an_encoded_object_is_served_as_is() {
    // The codec is chosen by the record we wrote, never by the bytes a client sent.
    let fm = FileManager::builder(StorageConfig::Memory)
        .keys(test_keys())
        .build()
        .unwrap();
    // A genuine compress-only object for this very key, which needs no key to decode.
    let params = codec::Params {
        compress: Some(3),
        encrypt: false,
        ..Default::default()
    };
    let encoded_lookalike =
        codec::encode_all(params, None, &loc("fake").key(), b"decoded would differ").unwrap();
    fm.upload(
        &loc("fake"),
        encoded_lookalike.clone(),
        &UploadOptions::default().encrypt(false),
    )
    .await
    .unwrap();
    let got = fm
        .download_bytes(&loc("fake"), &Default::default())
        .await
        .unwrap();
    assert_eq!(got, encoded_lookalike);
    let meta = fm.metadata(&loc("fake"), false).await.unwrap().unwrap();
    assert!(!meta.compressed && !meta.encrypted);
    assert_eq!(meta.size, encoded_lookalike.len() as u64);
}

#[tokio::test]
async fn on_s3_a_moved_ciphertext_fails_integrity() {
    let Some(cfg) = s3_config() else { return };
    let fm = FileManager::builder(StorageConfig::S3(cfg.clone()))
        .keys(test_keys())
        .build()
        .unwrap();
    let domain = unique_domain();
    let from = Location::new(&domain, StorageLevel::User, Some("1"), "doc").unwrap();
    let to = Location::new(&domain, StorageLevel::User, Some("2"), "doc").unwrap();
    fm.upload(&from, pseudo_random(4, 70_000), &UploadOptions::default())
        .await
        .unwrap();
    // Copy with the raw S3 API, as someone with bucket access could.
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&cfg.bucket)
        .with_region(&cfg.region)
        .with_endpoint(cfg.endpoint.clone().unwrap())
        .with_allow_http(true)
        .with_access_key_id(cfg.access_key_id.clone().unwrap())
        .with_secret_access_key(cfg.secret_access_key.clone().unwrap().as_str())
        .build()
        .unwrap();
    raw.copy(&from.key().as_str().into(), &to.key().as_str().into())
        .await
        .unwrap();
    assert_integrity(fm.download_bytes(&to, &Default::default()).await);
    assert_eq!(
        fm.download_bytes(&from, &Default::default())
            .await
            .unwrap()
            .len(),
        70_000
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_range_of_any_file_is_that_slice(
        size in 0usize..200_000,
        a in any::<u64>(),
        b in any::<u64>(),
        codec in 0usize..4,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let fm = FileManager::builder(StorageConfig::Memory).keys(test_keys()).build().unwrap();
            let (_, compress, encrypt) = CODECS[codec];
            let data = pseudo_random(size as u64, size);
            let l = loc("p");
            fm.upload(&l, data.clone(), &UploadOptions::default().compress(compress).encrypt(encrypt))
                .await
                .unwrap();
            let (start, end) = (a.min(b) % (size as u64 + 10), a.max(b) % (size as u64 + 10));
            let (start, end) = (start.min(end), start.max(end));
            let opts = DownloadOptions { range: Some(ByteRange::FromTo(start, end)), ..Default::default() };
            match fm.download_bytes(&l, &opts).await {
                Ok(got) => {
                    let stop = (end as usize + 1).min(size);
                    prop_assert_eq!(&got[..], &data[start as usize..stop]);
                }
                Err(Error::RangeNotSatisfiable { .. }) => prop_assert!(start as usize >= size),
                Err(e) => prop_assert!(false, "{}", e),
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn rekey_moves_every_old_file_to_the_primary_key() {
    let dir = tempfile::tempdir().unwrap();
    let old = local(dir.path(), test_keys());
    let files = [
        ("a", true, false),
        ("b/c", true, true),
        ("plain", false, false),
        ("zipped", false, true),
        ("big", true, false),
    ];
    for (name, encrypt, compress) in files {
        let size = if name == "big" {
            9 * 1024 * 1024
        } else {
            10_000
        };
        let opts = UploadOptions::default().encrypt(encrypt).compress(compress);
        old.upload(&loc(name), pseudo_random(size as u64, size), &opts)
            .await
            .unwrap();
    }
    let new_key = "ab".repeat(32);
    let rotating = local(
        dir.path(),
        KeyConfig::from_values(&new_key, &[TEST_KEY]).unwrap(),
    );
    let report = rotating.rekey("").await.unwrap();
    assert_eq!(report.scanned, 5);
    assert_eq!(report.rekeyed, 3, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let only_new = local(dir.path(), KeyConfig::from_values(&new_key, &[]).unwrap());
    for (name, encrypt, _) in files {
        let size = if name == "big" {
            9 * 1024 * 1024
        } else {
            10_000
        };
        let got = only_new
            .download_bytes(&loc(name), &Default::default())
            .await
            .unwrap();
        assert!(got == pseudo_random(size as u64, size), "{name}");
        let meta = only_new.metadata(&loc(name), false).await.unwrap().unwrap();
        assert_eq!(meta.encrypted, encrypt);
    }
    let again = rotating.rekey("").await.unwrap();
    assert_eq!((again.scanned, again.rekeyed), (5, 0));
}
