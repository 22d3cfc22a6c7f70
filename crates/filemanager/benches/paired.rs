//! Pair 6, interleaved: FileManager upload and download (no codec, cache off) against raw
//! `object_store` on the same local disk, 4 KiB and 64 MiB files, side by side.
//!
//! Criterion (`benches/overhead.rs`) runs all samples of one side, then all of the other, so
//! drift of a shared machine lands on one side only. Here every round runs a batch of each
//! side, A B C then C B A in alternate rounds, and the report takes the median of the per-round
//! ratios, as for the HTTP pairs in `bench/run.sh`. The third side, `raw_sized`, is raw
//! `object_store` with a file as long as the one FileManager stores (its record envelope comes
//! first on local disk), so the report can tell the format's cost from the code's.
//!
//! Run: `cargo bench -p filemanager --bench paired`. Each batch is one JSON line, labelled
//! `lib-{op}-{size}/{side}/{round}`, with every operation's time in seconds (`secs`), in the
//! format of `bench/driver`; `FM_PAIRED_OUT=FILE` appends them to FILE instead of stdout.
//! `FM_PAIRED_ROUNDS` (default 9) sets the rounds; `FM_PAIRED_ONLY=upload-4KiB` (for one)
//! runs only the cases whose `{op}-{size}` contains it (for profiling).

mod support;

use std::io::Write;
use std::time::Instant;

use bytes::Bytes;
use filemanager::{Location, StorageLevel};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use support::Sides;

#[derive(Clone, Copy)]
enum Op {
    Upload,
    Download,
}

#[derive(Clone, Copy)]
enum Side {
    Raw,
    Fm,
    /// Raw `object_store` with a file as long as the one FileManager stores (its record
    /// envelope, then the bytes): what the format costs, apart from the code.
    RawSized,
}

/// What one case works on: the location and bytes of each side.
struct Case {
    loc: Location,
    path: Path,
    data: Bytes,
    sized_path: Path,
    sized_data: Bytes,
}

impl Sides {
    async fn once(&self, op: Op, side: Side, case: &Case) {
        let loc = &case.loc;
        let (path, data) = match side {
            Side::RawSized => (&case.sized_path, &case.sized_data),
            Side::Raw | Side::Fm => (&case.path, &case.data),
        };
        match (op, side) {
            (Op::Upload, Side::Raw | Side::RawSized) => {
                self.raw.put(path, data.clone().into()).await.unwrap();
            }
            (Op::Upload, Side::Fm) => {
                self.fm
                    .upload(loc, data.clone(), &self.plain)
                    .await
                    .unwrap();
            }
            (Op::Download, Side::Raw | Side::RawSized) => {
                let got = self.raw.get(path).await.unwrap().bytes().await.unwrap();
                assert_eq!(got.len(), data.len());
            }
            (Op::Download, Side::Fm) => {
                let got = self.fm.download_bytes(loc, &self.no_cache).await.unwrap();
                assert_eq!(got.len(), data.len());
            }
        }
    }
}

fn main() {
    let rounds: usize = std::env::var("FM_PAIRED_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let only = std::env::var("FM_PAIRED_ONLY").unwrap_or_default();
    let mut out: Box<dyn Write> = match std::env::var("FM_PAIRED_OUT") {
        Ok(path) if !path.is_empty() => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
        ),
        _ => Box::new(std::io::stdout()),
    };
    // `cargo bench` passes `--bench`; nothing else is understood.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let setup = support::sides(dir.path());

    // (size label, bytes, operations per batch)
    for (label, size, batch) in [("4KiB", 4 * 1024, 2000), ("64MiB", 64 * 1024 * 1024, 4)] {
        let data = Bytes::from(vec![0x5au8; size]);
        let loc = Location::new("bench", StorageLevel::App, None, label).unwrap();
        // FileManager's stored file, for the length of the `RawSized` side's.
        rt.block_on(setup.fm.upload(&loc, data.clone(), &setup.plain))
            .unwrap();
        // On local disk the key's file name carries a suffix: find it by the name's start.
        let stored_dir = dir.path().join("fm/bench/app");
        let stored = std::fs::read_dir(&stored_dir)
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.file_name().to_string_lossy().starts_with(label))
            .map(|e| e.metadata().unwrap().len())
            .expect("FileManager stored the file");
        let case = Case {
            loc,
            path: Path::from(format!("bench/app/{label}")),
            data,
            sized_path: Path::from(format!("bench/app/{label}-sized")),
            sized_data: Bytes::from(vec![0x5au8; stored as usize]),
        };
        for (op, op_name) in [(Op::Upload, "upload"), (Op::Download, "download")] {
            if !format!("{op_name}-{label}").contains(&only) {
                continue;
            }
            rt.block_on(async {
                // Both files exist, and both sides are warm, before the first timed batch.
                for side in [Side::Raw, Side::Fm, Side::RawSized] {
                    setup.once(Op::Upload, side, &case).await;
                    for _ in 0..batch.min(20) {
                        setup.once(op, side, &case).await;
                    }
                }
                for round in 1..=rounds {
                    let order = if round % 2 == 1 {
                        [Side::Fm, Side::Raw, Side::RawSized]
                    } else {
                        [Side::RawSized, Side::Raw, Side::Fm]
                    };
                    for side in order {
                        let mut secs = Vec::with_capacity(batch);
                        for _ in 0..batch {
                            let t = Instant::now();
                            setup.once(op, side, &case).await;
                            secs.push(t.elapsed().as_secs_f64());
                        }
                        let side_name = match side {
                            Side::Raw => "raw",
                            Side::Fm => "fm",
                            Side::RawSized => "raw_sized",
                        };
                        let secs: Vec<String> = secs.iter().map(|s| format!("{s:.9}")).collect();
                        writeln!(
                            out,
                            "{{\"label\":\"lib-{op_name}-{label}/{side_name}/{round}\",\"kind\":\"lib\",\"count\":{batch},\"bytes\":{size},\"secs\":[{}]}}",
                            secs.join(",")
                        )
                        .unwrap();
                    }
                }
            });
        }
    }
}
