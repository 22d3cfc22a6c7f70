//! The file commands: `put`, `get`, `ls`, `rm`, `stat`, `url`, `rekey`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use filemanager::{
    Body, DownloadOptions, FileInfo, FileManager, ListOptions, ListResult, Location, PresignUpload,
    Scope, StorageLevel, UploadOptions,
};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::Command;
use super::progress;
use crate::config::{self, CommonArgs, DataDir};

/// Runs one of the file commands.
pub async fn run(common: &CommonArgs, json: bool, cmd: Command) -> anyhow::Result<()> {
    let data_dir = DataDir::open(&common.data_dir)?;
    let storage = config::storage(&data_dir)?;
    let built = config::build(
        common,
        &data_dir,
        storage,
        config::base_url(common, &common.listen),
        None,
        None,
    )?;
    // Only news (a key file just created) is worth interrupting a script's stderr for.
    for note in built.notes.iter().filter(|n| n.starts_with("created")) {
        eprintln!("filemanager: {note}");
    }
    let fm = built.fm;
    match cmd {
        Command::Put {
            source,
            location,
            content_type,
            meta,
            compress,
            no_encrypt,
            no_cache,
        } => {
            let loc = Location::from_key(&location)?;
            let opts = UploadOptions {
                content_type: content_type
                    .or_else(|| {
                        guess_content_type(&source)
                            .or_else(|| guess_content_type(Path::new(&location)))
                    })
                    .unwrap_or_else(|| filemanager::meta::DEFAULT_CONTENT_TYPE.to_owned()),
                metadata: parse_meta(&meta)?,
                compress,
                encrypt: !no_encrypt,
                cache_content: !no_cache,
                ..UploadOptions::default()
            };
            let result = put(&fm, &source, &loc, &opts).await?;
            print(json, &result, || {
                format!(
                    "stored {} ({} bytes{}{})",
                    result.file.key,
                    result.file.size,
                    if result.file.encrypted {
                        ", encrypted"
                    } else {
                        ""
                    },
                    if result.file.compressed {
                        ", compressed"
                    } else {
                        ""
                    },
                )
            })
        }
        Command::Get { location, dest } => {
            let loc = Location::from_key(&location)?;
            let (info, written) = get(&fm, &loc, dest).await?;
            match written {
                Some(path) => print(json, &info, || {
                    format!(
                        "wrote {} ({} bytes) to {}",
                        info.key,
                        info.size,
                        path.display()
                    )
                }),
                None => Ok(()),
            }
        }
        Command::Ls {
            scope,
            prefix,
            max_keys,
            cursor,
            all,
        } => {
            let scope = parse_scope(&scope)?;
            let result = list(&fm, &scope, prefix, max_keys, cursor, all).await?;
            print(json, &result, || {
                let mut out: Vec<String> = result
                    .files
                    .iter()
                    .map(|f| {
                        format!(
                            "{:>12}  {}  {}",
                            f.size,
                            f.last_modified.format("%Y-%m-%dT%H:%M:%SZ"),
                            f.filename
                        )
                    })
                    .collect();
                if let Some(c) = &result.next_cursor {
                    out.push(format!("(more: --cursor {c})"));
                }
                out.join("\n")
            })
        }
        Command::Rm { location } => {
            let result = fm.delete(&Location::from_key(&location)?).await?;
            print(json, &result, || format!("deleted {}", result.key))
        }
        Command::Stat { location } => {
            let loc = Location::from_key(&location)?;
            let info = fm
                .metadata(&loc, false)
                .await?
                .ok_or_else(|| filemanager::Error::FileNotFound { key: loc.key() })?;
            print(json, &info, || describe(&info))
        }
        Command::Url {
            location,
            upload,
            expires_in,
            content_type,
            max_size,
            compress,
            no_encrypt,
        } => {
            let loc = Location::from_key(&location)?;
            let url = if upload {
                fm.presign_upload(
                    &loc,
                    &PresignUpload {
                        content_type,
                        expires_in,
                        max_size,
                        compress,
                        encrypt: !no_encrypt,
                    },
                )?
            } else {
                fm.presign_download(&loc, expires_in)?
            };
            print(json, &url, || url.url.clone())
        }
        Command::Rekey { prefix } => {
            let report = fm.rekey(&prefix).await?;
            print(json, &report, || {
                let mut s = format!(
                    "scanned {}, re-encrypted {}, changed meanwhile {}, failed {}",
                    report.scanned,
                    report.rekeyed,
                    report.skipped_changed,
                    report.failed.len()
                );
                for (key, why) in &report.failed {
                    s.push_str(&format!("\nfailed: {key}: {why}"));
                }
                s
            })?;
            if !report.failed.is_empty() {
                bail!("{} files could not be re-encrypted", report.failed.len());
            }
            if prefix.is_empty() {
                // Everything is under the primary key now: older keys are no longer required.
                let keys = data_dir.encryption_keys(&mut Vec::new())?;
                data_dir.reset_key_ids(&keys)?;
            }
            Ok(())
        }
        Command::Serve(_) => unreachable!("serve is dispatched before"),
    }
}

/// Prints `value` as JSON, or the text `human` makes.
fn print<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        let text = human();
        if !text.is_empty() {
            println!("{text}");
        }
    }
    Ok(())
}

async fn put(
    fm: &FileManager,
    source: &Path,
    loc: &Location,
    opts: &UploadOptions,
) -> anyhow::Result<filemanager::UploadResult> {
    let (reader, len): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>) =
        if source == Path::new("-") {
            (Box::new(tokio::io::stdin()), None)
        } else {
            let f = tokio::fs::File::open(source)
                .await
                .with_context(|| format!("cannot open {}", source.display()))?;
            let len = f.metadata().await?.len();
            (Box::new(f), Some(len))
        };
    let bar = progress::bar(len, "upload");
    let counter = bar.clone();
    let stream = ReaderStream::with_capacity(reader, 256 * 1024)
        .inspect_ok(move |chunk| counter.inc(chunk.len() as u64));
    let mut body = Body::from_stream(stream);
    if let Some(len) = len {
        body = body.with_len(len);
    }
    let result = fm.upload(loc, body, opts).await;
    bar.finish_and_clear();
    Ok(result?)
}

/// Downloads `loc` to `dest` (or stdout). Returns the file's description and the path
/// written, if any.
async fn get(
    fm: &FileManager,
    loc: &Location,
    dest: Option<PathBuf>,
) -> anyhow::Result<(FileInfo, Option<PathBuf>)> {
    let dl = fm.download(loc, &DownloadOptions::default()).await?;
    let info = Arc::unwrap_or_clone(dl.info);
    let bar = progress::bar(Some(info.size), "download");
    let mut body = dl.body;
    let basename = loc
        .filename()
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or("download")
        .to_owned();
    let dest = dest.unwrap_or_else(|| PathBuf::from(&basename));
    if dest == Path::new("-") {
        let mut out = tokio::io::stdout();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            bar.inc(chunk.len() as u64);
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        bar.finish_and_clear();
        return Ok((info, None));
    }
    let dest = if dest.is_dir() {
        dest.join(&basename)
    } else {
        dest
    };
    // Write next to the destination and rename at the end, so the file never exists
    // half-written (and a failed download leaves an earlier file of that name intact).
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| basename.clone());
    let tmp = dir.join(format!(
        ".{name}.{}.{}.partial",
        std::process::id(),
        config::random_hex(4)?
    ));
    let result = async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            bar.inc(chunk.len() as u64);
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, &dest)
            .await
            .with_context(|| format!("cannot write {}", dest.display()))?;
        anyhow::Ok(())
    }
    .await;
    bar.finish_and_clear();
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    Ok((info, Some(dest)))
}

async fn list(
    fm: &FileManager,
    scope: &Scope,
    prefix: String,
    max_keys: usize,
    cursor: Option<String>,
    all: bool,
) -> anyhow::Result<ListResult> {
    let mut opts = ListOptions {
        prefix,
        max_keys,
        cursor,
        use_cache: false,
        ..ListOptions::default()
    };
    let mut result = fm.list(scope, &opts).await?;
    while all && result.truncated {
        opts.cursor = result.next_cursor.clone();
        let next = fm.list(scope, &opts).await?;
        result.files.extend(next.files);
        result.truncated = next.truncated;
        result.next_cursor = next.next_cursor;
    }
    result.count = result.files.len();
    Ok(result)
}

/// `{domain}/app` or `{domain}/user/{user_id}` (a trailing `/` is fine).
fn parse_scope(s: &str) -> filemanager::Result<Scope> {
    let parts: Vec<&str> = s.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [domain, "app"] => Scope::parse(domain, StorageLevel::App, None),
        [domain, "user", user] => Scope::parse(domain, StorageLevel::User, Some(user)),
        _ => Err(filemanager::Error::InvalidLocation {
            field: "scope",
            reason: "expected {domain}/app or {domain}/user/{user_id}".into(),
        }),
    }
}

fn parse_meta(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    anyhow::Error::from(filemanager::Error::InvalidInput {
                        field: "metadata",
                        reason: format!("{p:?} is not name=value"),
                    })
                })
        })
        .collect()
}

fn describe(info: &FileInfo) -> String {
    let mut lines = vec![
        format!("key:           {}", info.key),
        format!("size:          {}", info.size),
        format!("stored_size:   {}", info.stored_size),
        format!("content_type:  {}", info.content_type),
        format!("etag:          {}", info.etag.as_deref().unwrap_or("-")),
        format!("last_modified: {}", info.last_modified.to_rfc3339()),
        format!("compressed:    {}", info.compressed),
        format!("encrypted:     {}", info.encrypted),
    ];
    for (k, v) in &info.metadata {
        lines.push(format!("meta.{k}: {v}"));
    }
    lines.join("\n")
}

/// A content type from a file name's extension, for the common web types.
fn guess_content_type(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    let ct = match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "txt" => "text/plain",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "text/javascript",
        "csv" => "text/csv",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "zip" => "application/zip",
        _ => return None,
    };
    Some(ct.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_metadata() {
        assert_eq!(parse_scope("blog/app").unwrap().key_prefix(), "blog/app/");
        assert_eq!(
            parse_scope("blog/user/42/").unwrap().key_prefix(),
            "blog/user/42/"
        );
        assert!(parse_scope("blog").is_err());
        assert_eq!(parse_meta(&["alt=a=b".into()]).unwrap()["alt"], "a=b");
        assert!(parse_meta(&["alt".into()]).is_err());
        assert_eq!(
            guess_content_type(Path::new("a/B.JPG")).as_deref(),
            Some("image/jpeg")
        );
    }
}
