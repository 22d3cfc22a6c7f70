//! `filemanager serve` with no configuration, as a subprocess: key files are created (0600),
//! reused on the next start, and a wrong key is refused with a clear message.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{client, expect};

/// Variables that would configure the binary; removed so it runs on defaults.
pub const CONFIG_VARS: [&str; 20] = [
    "FM_STALE_UPLOAD_SECS",
    "APP_BUCKET",
    "S3_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "S3_CACHE_BUCKET",
    "STORAGE_ENCRYPTION_KEY",
    "STORAGE_ENCRYPTION_KEYS_OLD",
    "FM_LISTEN",
    "FM_DATA_DIR",
    "FM_PUBLIC_URL",
    "FM_API_KEYS",
    "FM_JWT_SECRET",
    "FM_DOMAINS",
    "FM_MAX_UPLOAD_BYTES",
    "FM_CORS_ORIGINS",
    "FM_PRESIGN_SECRET",
    "FM_LOG",
    "RUST_LOG",
];

fn serve(cwd: &Path, extra_env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_filemanager"));
    for v in CONFIG_VARS {
        cmd.env_remove(v);
    }
    cmd.env("FM_LISTEN", "127.0.0.1:0")
        .envs(extra_env.iter().copied())
        .current_dir(cwd)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().unwrap()
}

/// Reads the log until the listening line; returns the base URL and the log so far.
async fn wait_listening(child: &mut Child) -> (String, String) {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut log = String::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            log.push_str(&line);
            log.push('\n');
            if let Some(rest) = line.split("listening on ").nth(1) {
                return Some(rest.split_whitespace().next().unwrap().to_owned());
            }
        }
        None
    })
    .await
    .expect("serve did not start in time");
    let base = found.unwrap_or_else(|| panic!("serve exited: {log}"));
    // Keep draining the log so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (base, log)
}

async fn terminate(child: &mut Child) {
    let pid = child.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("serve stops on SIGTERM")
        .unwrap();
    assert!(exit.success(), "graceful exit: {exit}");
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_creates_then_reuses_keys_and_refuses_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // First start: ./data with generated keys.
    let mut child = serve(dir.path(), &[]);
    let (base, log) = wait_listening(&mut child).await;
    let files = ["encryption.key", "api.key", "presign.key", "key-check"];
    for f in files {
        let p = data.join(f);
        assert!(p.exists(), "{f} created");
        assert_eq!(mode(&p), 0o600, "{f} is private");
    }
    let api_key = std::fs::read_to_string(data.join("api.key"))
        .unwrap()
        .trim()
        .to_owned();
    let enc_key = std::fs::read_to_string(data.join("encryption.key")).unwrap();
    assert!(log.contains("api.key"), "says where the API key is: {log}");
    assert!(!log.contains(&api_key), "never prints the API key");
    assert!(
        !log.contains(enc_key.trim()),
        "never prints the encryption key"
    );
    let c = client();
    let resp = c
        .put(format!("{base}/v1/files/blog/app/hello.txt"))
        .bearer_auth(&api_key)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(expect(resp, StatusCode::CREATED).await["encrypted"], true);
    assert!(
        data.join("files/blog/app").is_dir(),
        "files live under the data dir"
    );
    terminate(&mut child).await;

    // Second start: the same keys, and the file still reads.
    let mut child = serve(dir.path(), &[]);
    let (base, log) = wait_listening(&mut child).await;
    assert!(!log.contains("created"), "nothing new created: {log}");
    assert_eq!(
        std::fs::read_to_string(data.join("encryption.key")).unwrap(),
        enc_key
    );
    let resp = c
        .request(Method::GET, format!("{base}/v1/files/blog/app/hello.txt"))
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello");
    terminate(&mut child).await;

    // Third start with another key: refused, with a clear message and no secret in it.
    let wrong = "ab".repeat(32);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_filemanager"));
    for v in CONFIG_VARS {
        cmd.env_remove(v);
    }
    let out = cmd
        .env("FM_LISTEN", "127.0.0.1:0")
        .env("STORAGE_ENCRYPTION_KEY", &wrong)
        .current_dir(dir.path())
        .arg("serve")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read the files"), "{stderr}");
    assert!(stderr.contains("STORAGE_ENCRYPTION_KEYS_OLD"), "{stderr}");
    assert!(!stderr.contains(&wrong), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

/// Files under `dir` whose names are object_store staging names (`…#N`).
fn staging_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.rsplit_once('#'))
                .is_some_and(|(_, n)| n.bytes().all(|b| b.is_ascii_digit()))
            {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_upload_leaves_no_file_and_restart_sweeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("data/files");
    let env = [("FM_API_KEYS", "k"), ("FM_STALE_UPLOAD_SECS", "0")];
    let mut child = serve(dir.path(), &env);
    let (base, _) = wait_listening(&mut child).await;

    // A 24 MiB body sent slowly: by the time a staging file exists, the upload is mid-way.
    let body = futures::stream::iter(0..96).then(|_| async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; 256 * 1024]))
    });
    let upload = tokio::spawn(
        client()
            .put(format!("{base}/v1/files/blog/app/big.bin"))
            .bearer_auth("k")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    let mut waited = 0;
    while staging_files(&files).is_empty() {
        assert!(waited < 600, "no staging file appeared");
        tokio::time::sleep(Duration::from_millis(25)).await;
        waited += 1;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert!(
        upload.await.unwrap().is_err(),
        "the client sees the connection die"
    );
    assert!(
        !files.join("blog/app/big.bin\\").exists(),
        "no file under the final name"
    );
    assert!(
        !staging_files(&files).is_empty(),
        "the crash left its staging file"
    );

    let mut child = serve(dir.path(), &env);
    let (base, _) = wait_listening(&mut child).await;
    let mut waited = 0;
    while !staging_files(&files).is_empty() {
        assert!(waited < 400, "the staging file was not swept");
        tokio::time::sleep(Duration::from_millis(25)).await;
        waited += 1;
    }
    let resp = client()
        .get(format!("{base}/v1/files/blog/app/big.bin"))
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    terminate(&mut child).await;
}
