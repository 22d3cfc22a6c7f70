//! The conformance suite: one list of FileManager behaviours, run against every backend
//! (memory, local disk, Garage S3).
//!
//! Each behaviour is an `async fn(&Ctx)` in [`behaviours`]; the `suite!` macro at the bottom
//! turns every behaviour into a test per backend. Tests on S3 share one bucket, so each test
//! works in a domain of its own.
//!
//! The S3 tests need a running S3 server, configured by the seed's variables (`APP_BUCKET`,
//! `S3_URL`, …). `scripts/test.sh` starts Garage and sets them. Without them the S3 tests fail
//! with a message saying so, rather than being skipped silently; set `FM_SKIP_S3=1` to skip them
//! knowingly.

mod common;

use common::*;

mod behaviours {
    use super::*;
    use bytes::Bytes;
    use filemanager::*;
    use futures::StreamExt;

    pub async fn put_get_round_trip(cx: &Ctx) {
        let data = pseudo_random(1, 1000);
        let res = cx.upload_app("a/b/c.bin", data.clone()).await.unwrap();
        assert!(res.success);
        assert_eq!(res.file.key, format!("{}/app/a/b/c.bin", cx.domain));
        assert_eq!(res.file.size, 1000);
        assert_eq!(cx.download_app("a/b/c.bin").await.unwrap(), data);
    }

    pub async fn overwrite_replaces_content_and_metadata(cx: &Ctx) {
        cx.upload_with(
            "f.txt",
            Bytes::from_static(b"first version"),
            cx.opts().metadata("v", "1"),
        )
        .await
        .unwrap();
        let res = cx
            .upload_with(
                "f.txt",
                Bytes::from_static(b"second"),
                cx.opts().content_type("text/plain").metadata("v", "2"),
            )
            .await
            .unwrap();
        assert_eq!(res.file.size, 6);
        assert_eq!(cx.download_app("f.txt").await.unwrap(), "second");
        let meta = cx.meta_app("f.txt").await.unwrap().unwrap();
        assert_eq!(meta.content_type, "text/plain");
        assert_eq!(meta.metadata.get("v").map(String::as_str), Some("2"));
        assert_eq!(meta.size, 6);
    }

    pub async fn delete_removes_the_file(cx: &Ctx) {
        cx.upload_app("gone.txt", Bytes::from_static(b"x"))
            .await
            .unwrap();
        let del = cx.fm.delete(&cx.app("gone.txt")).await.unwrap();
        assert!(del.success);
        assert_eq!(del.key, format!("{}/app/gone.txt", cx.domain));
        assert_not_found(cx.download_app("gone.txt").await);
        assert!(cx.meta_app("gone.txt").await.unwrap().is_none());
        assert_not_found(cx.fm.delete(&cx.app("gone.txt")).await);
        assert_eq!(cx.list_app("", 1000, None).await.unwrap().count, 0);
    }

    pub async fn missing_files_are_file_not_found(cx: &Ctx) {
        assert_not_found(cx.download_app("nope").await);
        assert_not_found(cx.fm.delete(&cx.app("nope")).await);
        assert!(cx.meta_app("nope").await.unwrap().is_none());
        let ranged = cx
            .fm
            .download(
                &cx.app("nope"),
                &DownloadOptions {
                    range: Some(ByteRange::From(0)),
                    ..Default::default()
                },
            )
            .await;
        assert_not_found(ranged);
    }

    pub async fn metadata_round_trips(cx: &Ctx) {
        let opts = cx
            .opts()
            .content_type("image/jpeg")
            .metadata("Alt", "cover image")
            .metadata("x-id", "42");
        let up = cx
            .upload_with("img.jpg", pseudo_random(2, 5000), opts)
            .await
            .unwrap();
        let meta = cx.meta_app("img.jpg").await.unwrap().unwrap();
        assert_eq!(meta.content_type, "image/jpeg");
        assert_eq!(meta.metadata.len(), 2);
        assert_eq!(meta.metadata["alt"], "cover image");
        assert_eq!(meta.metadata["x-id"], "42");
        assert_eq!(meta.size, 5000);
        assert_eq!(meta.compressed, cx.base.compress);
        assert_eq!(meta.encrypted, cx.base.encrypt);
        assert_eq!(meta.level, StorageLevel::App);
        assert_eq!(meta.filename, "img.jpg");
        assert_eq!(meta.stored_size, up.file.stored_size);
        assert_eq!(meta.etag, up.file.etag);
        assert!(meta.etag.as_deref().is_some_and(|e| e.starts_with('"')));
        if !cx.base.compress && !cx.base.encrypt {
            assert_eq!(meta.stored_size, 5000);
        }
        let dl = cx
            .fm
            .download(&cx.app("img.jpg"), &Default::default())
            .await
            .unwrap();
        assert_eq!(*dl.info, meta);
    }

    pub async fn list_filters_by_string_prefix(cx: &Ctx) {
        for name in [
            "posts/1/a.jpg",
            "posts/10.txt",
            "posts/2/b.jpg",
            "pages/x",
            "p",
        ] {
            cx.upload_app(name, Bytes::from_static(b"12345"))
                .await
                .unwrap();
        }
        let names = |r: ListResult| r.files.into_iter().map(|f| f.filename).collect::<Vec<_>>();
        assert_eq!(
            names(cx.list_app("posts/1", 1000, None).await.unwrap()),
            ["posts/1/a.jpg", "posts/10.txt"]
        );
        assert_eq!(
            names(cx.list_app("posts/1/", 1000, None).await.unwrap()),
            ["posts/1/a.jpg"]
        );
        assert_eq!(
            names(cx.list_app("p", 1000, None).await.unwrap()),
            [
                "p",
                "pages/x",
                "posts/1/a.jpg",
                "posts/10.txt",
                "posts/2/b.jpg"
            ]
        );
        assert!(
            cx.list_app("zzz", 1000, None)
                .await
                .unwrap()
                .files
                .is_empty()
        );
        let all = cx.list_app("", 1000, None).await.unwrap();
        assert_eq!(all.count, 5);
        assert!(!all.truncated && all.next_cursor.is_none());
        for f in &all.files {
            assert_eq!(f.size, 5, "listing size is the file's own length");
            assert_eq!(f.key, format!("{}/app/{}", cx.domain, f.filename));
        }
    }

    pub async fn pagination_covers_every_file_once_in_key_order(cx: &Ctx) {
        let mut expected: Vec<String> = (0..23).map(|i| format!("d{}/f{:02}", i % 3, i)).collect();
        expected.push("d1".into());
        expected.push("d1-x/z".into());
        futures::stream::iter(expected.clone())
            .for_each_concurrent(8, |n| async move {
                cx.upload_app(&n, Bytes::from(n.clone().into_bytes()))
                    .await
                    .unwrap();
            })
            .await;
        expected.sort();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = cx.list_app("", 7, cursor.clone()).await.unwrap();
            assert!(page.count <= 7);
            assert_eq!(page.count, page.files.len());
            seen.extend(page.files.into_iter().map(|f| f.filename));
            if !page.truncated {
                assert!(page.next_cursor.is_none());
                break;
            }
            cursor = page.next_cursor;
            assert!(cursor.is_some());
        }
        assert_eq!(seen, expected);
    }

    pub async fn users_and_levels_are_isolated(cx: &Ctx) {
        let u1 = cx.fm.domain(&cx.domain).unwrap().user("1").unwrap();
        let u10 = cx.fm.domain(&cx.domain).unwrap().user("10").unwrap();
        u1.upload("a.txt", Bytes::from_static(b"one"), &cx.opts())
            .await
            .unwrap();
        u10.upload("a.txt", Bytes::from_static(b"ten"), &cx.opts())
            .await
            .unwrap();
        cx.upload_app("a.txt", Bytes::from_static(b"app"))
            .await
            .unwrap();
        let l1 = u1.list(&Default::default()).await.unwrap();
        assert_eq!(l1.count, 1);
        assert_eq!(l1.files[0].key, format!("{}/user/1/a.txt", cx.domain));
        assert_eq!(u1.download("a.txt").await.unwrap(), "one");
        assert_eq!(u10.download("a.txt").await.unwrap(), "ten");
        assert_eq!(cx.download_app("a.txt").await.unwrap(), "app");
        let app = cx.list_app("", 1000, None).await.unwrap();
        assert_eq!(app.count, 1, "APP listing must not show user files");
        // Another domain sees nothing of this one.
        let other = cx.fm.domain(&format!("{}-other", cx.domain)).unwrap();
        assert_eq!(other.list(&Default::default()).await.unwrap().count, 0);
        assert_not_found(other.download("a.txt").await);
        // A prefix cannot climb out of the scope.
        assert!(
            u1.list(&ListOptions {
                prefix: "../10/".into(),
                ..Default::default()
            })
            .await
            .is_err()
        );
    }

    pub async fn empty_file(cx: &Ctx) {
        let res = cx.upload_app("empty", Bytes::new()).await.unwrap();
        assert_eq!(res.file.size, 0);
        assert_eq!(cx.download_app("empty").await.unwrap().len(), 0);
        assert_eq!(cx.meta_app("empty").await.unwrap().unwrap().size, 0);
        let ranged = cx
            .fm
            .download(
                &cx.app("empty"),
                &DownloadOptions {
                    range: Some(ByteRange::From(0)),
                    ..Default::default()
                },
            )
            .await;
        assert!(matches!(
            ranged,
            Err(Error::RangeNotSatisfiable { size: 0 })
        ));
    }

    pub async fn boundary_sizes(cx: &Ctx) {
        for (i, size) in [1usize, 65535, 65536, 65537, 3 * 65536 + 17]
            .into_iter()
            .enumerate()
        {
            let data = pseudo_random(10 + i as u64, size);
            let name = format!("size-{size}");
            let up = cx.upload_app(&name, data.clone()).await.unwrap();
            assert_eq!(up.file.size, size as u64);
            assert_eq!(cx.download_app(&name).await.unwrap(), data, "size {size}");
            assert_eq!(cx.meta_app(&name).await.unwrap().unwrap().size, size as u64);
        }
    }

    pub async fn large_streamed_upload_uses_multipart(cx: &Ctx) {
        // 9 MiB + 3 bytes in uneven 100 000-byte pieces: more than one 8 MiB part.
        let size = 9 * 1024 * 1024 + 3;
        let data = pseudo_random(3, size);
        let body = Body::from_stream(chunked(data.clone(), 100_000));
        let up = cx.upload_with("big.bin", body, cx.opts()).await.unwrap();
        assert_eq!(up.file.size, size as u64);
        let dl = cx
            .fm
            .download(&cx.app("big.bin"), &Default::default())
            .await
            .unwrap();
        assert_eq!(dl.info.size, size as u64);
        let mut got = Vec::with_capacity(size);
        let mut body = dl.body;
        while let Some(chunk) = body.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert!(got == data, "large file differs after round trip");
        // A range across the part boundary.
        let r = cx
            .fm
            .download_bytes(
                &cx.app("big.bin"),
                &DownloadOptions {
                    range: Some(ByteRange::FromTo(8 * 1024 * 1024 - 10, 8 * 1024 * 1024 + 9)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(&r[..], &data[8 * 1024 * 1024 - 10..8 * 1024 * 1024 + 10]);
    }

    pub async fn unusual_filenames(cx: &Ctx) {
        let names = [
            "日本語/ファイル名.txt",
            "emoji 🎉/ünïcödé.md",
            "spaces and  double  spaces",
            "a%2Fb",
            "percent%25sign",
            "brace{s}^caret`tick[]",
            "hash#1",
            "...",
            "quote\"s 'and' <angles>",
            "plus+equals=amp&",
        ];
        for (i, n) in names.iter().enumerate() {
            cx.upload_app(n, Bytes::from(format!("content {i}")))
                .await
                .unwrap();
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(
                cx.download_app(n).await.unwrap(),
                format!("content {i}"),
                "{n}"
            );
        }
        let mut listed: Vec<String> = cx
            .list_app("", 1000, None)
            .await
            .unwrap()
            .files
            .into_iter()
            .map(|f| f.filename)
            .collect();
        let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(listed, expected);
        listed.clear();
    }

    pub async fn long_names(cx: &Ctx) {
        // A 255-byte directory segment and a 250-byte file name work everywhere.
        let name = format!("{}/{}", "d".repeat(255), "f".repeat(250));
        cx.upload_app(&name, Bytes::from_static(b"long"))
            .await
            .unwrap();
        assert_eq!(cx.download_app(&name).await.unwrap(), "long");
        assert_eq!(
            cx.list_app("", 1000, None).await.unwrap().files[0].filename,
            name
        );
        // A 255-byte file name: fine on S3 and in memory; local disk cannot hold it (its file
        // name would pass the file system's 255-byte limit) and says so.
        let longest = "g".repeat(255);
        let r = cx.upload_app(&longest, Bytes::from_static(b"x")).await;
        match cx.backend {
            Backend::Local => {
                let err = r.unwrap_err();
                assert!(
                    matches!(
                        err,
                        Error::InvalidLocation {
                            field: "filename",
                            ..
                        }
                    ),
                    "{err}"
                );
            }
            _ => {
                r.unwrap();
                assert_eq!(cx.download_app(&longest).await.unwrap(), "x");
            }
        }
    }

    pub async fn invalid_locations_never_reach_storage(cx: &Ctx) {
        for bad in [
            "",
            "/abs",
            "a/../b",
            "..",
            "a//b",
            "a\\b",
            "nul\0",
            "ctl\u{1b}x",
            "trail/",
        ] {
            let err = cx
                .upload_app(bad, Bytes::from_static(b"x"))
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::InvalidLocation { .. }),
                "{bad:?}: {err}"
            );
        }
        let err = cx
            .fm
            .upload_file(
                "Bad Domain",
                StorageLevel::App,
                "a",
                Bytes::new(),
                cx.opts(),
            )
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidLocation {
                field: "domain",
                ..
            }
        ));
        let err = cx
            .fm
            .upload_file(&cx.domain, StorageLevel::User, "a", Bytes::new(), cx.opts())
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidLocation {
                field: "user_id",
                ..
            }
        ));
        let err = cx
            .upload_with("m", Bytes::new(), cx.opts().metadata("bad name", "v"))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidInput {
                field: "metadata",
                ..
            }
        ));
        let err = cx
            .upload_with(
                "m",
                Bytes::new(),
                cx.opts().content_type("text/plain\r\nX-Evil: 1"),
            )
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidInput {
                field: "content_type",
                ..
            }
        ));
        for max in [0, 1001] {
            assert!(cx.list_app("", max, None).await.is_err());
        }
        assert_eq!(cx.list_app("", 1000, None).await.unwrap().count, 0);
    }

    pub async fn concurrent_writers_leave_one_complete_version(cx: &Ctx) {
        let versions: Vec<Vec<u8>> = (0..6)
            .map(|i| pseudo_random(100 + i, 200_000 + i as usize))
            .collect();
        futures::stream::iter(versions.clone())
            .for_each_concurrent(6, |v| async move {
                cx.upload_app("contended", v).await.unwrap();
            })
            .await;
        let got = cx.download_app("contended").await.unwrap();
        assert!(
            versions.iter().any(|v| v[..] == got[..]),
            "content is not one of the versions"
        );
        let meta = cx.meta_app("contended").await.unwrap().unwrap();
        assert_eq!(meta.size, got.len() as u64);
    }

    pub async fn multipart_upload_racing_a_newer_write_succeeds(cx: &Ctx) {
        // A streamed upload sends 10 MiB (its multipart upload has begun by the time the
        // stream is asked for more), then waits while a small write of the same file
        // completes, then finishes. Garage drops the older multipart upload when the newer
        // write completes; both writes must still succeed, and the file must hold one whole
        // version: the newer one where the backend orders by start (S3), the one that
        // completed last elsewhere.
        let big = pseudo_random(7, 11 * 1024 * 1024);
        let small = pseudo_random(8, 1000);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let head = chunked(big[..10 * 1024 * 1024].to_vec(), 256 * 1024);
        let pause = futures::stream::once(async move {
            let _ = started_tx.send(());
            let _ = go_rx.await;
            Ok(Bytes::new())
        });
        let tail = chunked(big[10 * 1024 * 1024..].to_vec(), 256 * 1024);
        let body = Body::from_stream(head.chain(pause).chain(tail));
        let racing = cx.upload_with("race", body, cx.opts());
        let newer = async {
            started_rx.await.expect("the big upload reached its pause");
            cx.upload_app("race", Bytes::from(small.clone()))
                .await
                .expect("the small write");
            go_tx.send(()).expect("the big upload waits");
        };
        let (big_result, ()) = tokio::join!(racing, newer);
        let done = big_result.expect("an upload superseded by a newer write still succeeds");
        assert_eq!(done.file.size, big.len() as u64);
        let got = cx.download_app("race").await.unwrap();
        match cx.backend {
            Backend::S3 => assert!(got[..] == small[..], "the newer write wins on S3"),
            _ => assert!(got[..] == big[..], "the write that completed last wins"),
        }
        let meta = cx.meta_app("race").await.unwrap().unwrap();
        assert_eq!(meta.size, got.len() as u64);
    }

    pub async fn failed_streaming_upload_stores_nothing(cx: &Ctx) {
        // Fails after 9 MiB, i.e. after a multipart upload has begun.
        let stream = chunked(pseudo_random(4, 9 * 1024 * 1024), 256 * 1024).chain(
            futures::stream::once(async {
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "client went away",
                ))
            }),
        );
        let err = cx
            .upload_with("broken", Body::from_stream(stream), cx.opts())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BodyFailed { .. }), "{err}");
        assert_eq!(err.code(), "invalid_request");
        // A small body failing before the end, too.
        let small = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(std::io::Error::other("boom")),
        ]);
        assert!(
            cx.upload_with("broken-small", Body::from_stream(small), cx.opts())
                .await
                .is_err()
        );
        assert_not_found(cx.download_app("broken").await);
        assert_not_found(cx.download_app("broken-small").await);
        assert_eq!(cx.list_app("", 1000, None).await.unwrap().count, 0);
        cx.assert_no_stray_files().await;
    }

    pub async fn cancelled_streaming_upload_stores_nothing(cx: &Ctx) {
        // Sends 9 MiB, then never ends; the upload is dropped by a timeout.
        let stream = chunked(pseudo_random(5, 9 * 1024 * 1024), 512 * 1024)
            .chain(futures::stream::pending());
        let upload = cx.upload_with("cancelled", Body::from_stream(stream), cx.opts());
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(3), upload).await;
        assert!(
            outcome.is_err(),
            "the upload should still be waiting for its body"
        );
        assert_not_found(cx.download_app("cancelled").await);
        assert_eq!(cx.list_app("", 1000, None).await.unwrap().count, 0);
        cx.assert_no_stray_files().await;
    }

    pub async fn size_limits_store_nothing(cx: &Ctx) {
        let mut opts = cx.opts();
        opts.max_size = Some(1000);
        let err = cx
            .upload_with("big", pseudo_random(6, 1001), opts.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::PayloadTooLarge { limit: 1000 }),
            "{err}"
        );
        let streamed = Body::from_stream(chunked(pseudo_random(6, 5000), 100));
        let err = cx
            .upload_with("big", streamed, opts.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::PayloadTooLarge { limit: 1000 }),
            "{err}"
        );
        // A declared length that the body does not match.
        let lying = Body::from_stream(chunked(pseudo_random(6, 500), 100)).with_len(400);
        assert!(cx.upload_with("lying", lying, cx.opts()).await.is_err());
        let short = Body::from_stream(chunked(pseudo_random(6, 300), 100)).with_len(400);
        assert!(cx.upload_with("short", short, cx.opts()).await.is_err());
        assert_not_found(cx.download_app("big").await);
        assert_eq!(cx.list_app("", 1000, None).await.unwrap().count, 0);
        let ok = cx
            .upload_with("exact", pseudo_random(6, 1000), opts)
            .await
            .unwrap();
        assert_eq!(ok.file.size, 1000);
        cx.assert_no_stray_files().await;
    }

    pub async fn ranged_downloads(cx: &Ctx) {
        let data = pseudo_random(7, 200_000);
        cx.upload_app("r.bin", data.clone()).await.unwrap();
        for (range, want) in [
            (ByteRange::FromTo(0, 0), 0..1),
            (ByteRange::FromTo(10, 99), 10..100),
            (ByteRange::FromTo(65530, 65545), 65530..65546),
            (ByteRange::From(199_990), 199_990..200_000),
            (ByteRange::Suffix(5), 199_995..200_000),
            (ByteRange::FromTo(150_000, 999_999), 150_000..200_000),
            (ByteRange::Suffix(300_000), 0..200_000),
        ] {
            let dl = cx
                .fm
                .download(
                    &cx.app("r.bin"),
                    &DownloadOptions {
                        range: Some(range),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(dl.range, Some(want.clone()));
            let got = collect(dl.body).await;
            assert_eq!(
                got,
                &data[want.start as usize..want.end as usize],
                "{range:?}"
            );
        }
        let err = cx
            .fm
            .download(
                &cx.app("r.bin"),
                &DownloadOptions {
                    range: Some(ByteRange::From(200_000)),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::RangeNotSatisfiable { size: 200_000 }));
    }

    pub async fn seed_api_and_scoped_handles(cx: &Ctx) {
        let d = &cx.domain;
        let up = cx
            .fm
            .upload_file(
                d,
                StorageLevel::User,
                "avatar.png",
                Bytes::from_static(b"png"),
                cx.opts().user_id("u-7").content_type("image/png"),
            )
            .await
            .unwrap();
        assert_eq!(up.file.key, format!("{d}/user/u-7/avatar.png"));
        assert_eq!(up.file.user_id.as_deref(), Some("u-7"));
        let got = cx
            .fm
            .download_file(
                d,
                StorageLevel::User,
                "avatar.png",
                DownloadOptions {
                    user_id: Some("u-7".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(got, "png");
        let meta = cx
            .fm
            .get_file_metadata(d, StorageLevel::User, "avatar.png", Some("u-7"), true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(meta.content_type, "image/png");
        let listed = cx
            .fm
            .list_files(
                d,
                StorageLevel::User,
                ListOptions {
                    user_id: Some("u-7".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(listed.count, 1);
        let handle = cx.fm.domain(d).unwrap().user("u-7").unwrap();
        assert_eq!(handle.download("avatar.png").await.unwrap(), "png");
        handle.delete("avatar.png").await.unwrap();
        assert!(
            cx.fm
                .get_file_metadata(d, StorageLevel::User, "avatar.png", Some("u-7"), true)
                .await
                .unwrap()
                .is_none()
        );
        // JSON shape of the results, as the HTTP contract shows them.
        let json = serde_json::to_value(&up).unwrap();
        assert_eq!(json["success"], true);
        assert_eq!(json["level"], "user");
        assert_eq!(json["filename"], "avatar.png");
        assert!(json["last_modified"].as_str().unwrap().ends_with('Z'));
    }

    pub async fn reader_uploads(cx: &Ctx) {
        let data = pseudo_random(8, 300_000);
        let reader = std::io::Cursor::new(data.clone());
        let up = cx
            .upload_with("from-reader", Body::from_reader(reader), cx.opts())
            .await
            .unwrap();
        assert_eq!(up.file.size, 300_000);
        assert_eq!(cx.download_app("from-reader").await.unwrap(), data);
    }
}

suite!(
    put_get_round_trip,
    overwrite_replaces_content_and_metadata,
    delete_removes_the_file,
    missing_files_are_file_not_found,
    metadata_round_trips,
    list_filters_by_string_prefix,
    pagination_covers_every_file_once_in_key_order,
    users_and_levels_are_isolated,
    empty_file,
    boundary_sizes,
    large_streamed_upload_uses_multipart,
    unusual_filenames,
    long_names,
    invalid_locations_never_reach_storage,
    concurrent_writers_leave_one_complete_version,
    multipart_upload_racing_a_newer_write_succeeds,
    failed_streaming_upload_stores_nothing,
    cancelled_streaming_upload_stores_nothing,
    size_limits_store_nothing,
    ranged_downloads,
    seed_api_and_scoped_handles,
    reader_uploads,
);
