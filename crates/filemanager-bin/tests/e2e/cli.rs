//! The CLI, run as a subprocess on a temporary data directory (local disk).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use filemanager::{FileManager, PresignConfig, StorageConfig};
use serde_json::Value;

use crate::zero_config::CONFIG_VARS;

fn fm(data: &Path, args: &[&str]) -> Output {
    fm_stdin(data, args, None)
}

fn fm_stdin(data: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_filemanager"));
    for v in CONFIG_VARS {
        cmd.env_remove(v);
    }
    cmd.env("FM_DATA_DIR", data)
        .env("FM_PUBLIC_URL", "https://files.example.test")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

#[test]
fn put_get_ls_stat_rm_url() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let src = dir.path().join("photo.jpg");
    let content = crate::common::bytes(2 << 20, 9);
    std::fs::write(&src, &content).unwrap();

    let put = fm(
        &data,
        &[
            "--json",
            "put",
            src.to_str().unwrap(),
            "blog/app/posts/1/photo.jpg",
            "--meta",
            "alt=cover",
        ],
    );
    let f = json(&put);
    assert_eq!(f["success"], true);
    assert_eq!(f["size"], 2 << 20);
    assert_eq!(f["content_type"], "image/jpeg", "guessed from the name");
    assert_eq!(f["encrypted"], true);
    assert_eq!(f["metadata"]["alt"], "cover");
    assert!(
        String::from_utf8_lossy(&put.stderr).contains("encryption.key"),
        "first use says where the key is"
    );

    // Text output is one line; stdin works as a source.
    let out = fm_stdin(
        &data,
        &[
            "put",
            "-",
            "blog/user/42/notes.txt",
            "--content-type",
            "text/plain",
        ],
        Some(b"from stdin"),
    );
    assert!(ok(&out).starts_with("stored blog/user/42/notes.txt (10 bytes"));
    assert!(
        out.stderr.is_empty(),
        "quiet when nothing is new: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dest = dir.path().join("out.jpg");
    let got = json(&fm(
        &data,
        &[
            "--json",
            "get",
            "blog/app/posts/1/photo.jpg",
            dest.to_str().unwrap(),
        ],
    ));
    assert_eq!(got["key"], "blog/app/posts/1/photo.jpg");
    assert!(std::fs::read(&dest).unwrap() == content);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files left");
    let out = fm(&data, &["get", "blog/user/42/notes.txt", "-"]);
    assert_eq!(ok(&out), "from stdin");

    let ls = json(&fm(&data, &["--json", "ls", "blog/app"]));
    assert_eq!(ls["count"], 1);
    assert_eq!(ls["files"][0]["filename"], "posts/1/photo.jpg");
    let text = ok(&fm(&data, &["ls", "blog/user/42"]));
    assert!(text.trim_end().ends_with("notes.txt"), "{text}");

    let st = json(&fm(&data, &["--json", "stat", "blog/user/42/notes.txt"]));
    assert_eq!(st["size"], 10);
    assert_eq!(st["content_type"], "text/plain");

    let url = ok(&fm(
        &data,
        &["url", "blog/user/42/notes.txt", "--expires-in", "60"],
    ));
    let url = url.trim();
    assert!(
        url.starts_with("https://files.example.test/v1/files/blog/user/42/notes.txt?"),
        "{url}"
    );
    // The URL verifies under the data directory's presign secret.
    let secret = std::fs::read_to_string(data.join("presign.key")).unwrap();
    let verifier = FileManager::builder(StorageConfig::Memory)
        .presign(Some(PresignConfig {
            base_url: "https://files.example.test".into(),
            secret: zeroize::Zeroizing::new(secret.trim().as_bytes().to_vec()),
        }))
        .build()
        .unwrap();
    let rest = url.strip_prefix("https://files.example.test").unwrap();
    let (path, query) = rest.split_once('?').unwrap();
    let grant = verifier
        .verify_presigned("GET", path, query)
        .unwrap()
        .unwrap();
    assert_eq!(grant.location.key(), "blog/user/42/notes.txt");
    let up = json(&fm(
        &data,
        &[
            "--json",
            "url",
            "blog/app/x.txt",
            "--upload",
            "--content-type",
            "text/plain",
            "--max-size",
            "10",
        ],
    ));
    assert_eq!(up["method"], "PUT");
    assert_eq!(up["headers"]["Content-Type"], "text/plain");

    let rm = json(&fm(&data, &["--json", "rm", "blog/user/42/notes.txt"]));
    assert_eq!(
        rm,
        serde_json::json!({"success": true, "key": "blog/user/42/notes.txt"})
    );

    let rekey = json(&fm(&data, &["--json", "rekey"]));
    assert_eq!(rekey["failed"], serde_json::json!([]));
}

#[test]
fn errors_are_one_line_with_an_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cases: [(&[&str], i32, &str); 5] = [
        (&["stat", "blog/app/missing.txt"], 3, "not found"),
        (&["get", "blog/app/missing.txt"], 3, "not found"),
        (&["rm", "blog/app/missing.txt"], 3, "not found"),
        (&["stat", "blog/app/../x"], 2, "invalid"),
        (&["ls", "blog"], 2, "invalid"),
    ];
    for (args, code, text) in cases {
        let out = fm(&data, args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.trim().lines().last().unwrap_or_default().to_owned();
        assert!(
            last.starts_with("filemanager: error: ") && last.contains(text),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    let out = fm(
        &data,
        &[
            "put",
            dir.path().join("nope").to_str().unwrap(),
            "blog/app/x",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("x").exists());
    let out = fm(&data, &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "usage errors");
}
