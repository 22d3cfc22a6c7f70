//! Cleaning up after a crash: staging files of uploads that never finished.
//!
//! An upload to local disk is written under a staging name (`{file}#{n}`) and renamed into
//! place when complete. A process killed mid-upload (`kill -9`, power loss) leaves the staging
//! file behind: never visible as a file, but using disk. The service sweeps them at start.
//! Only files older than a threshold are removed, so an upload in flight in another process
//! sharing the directory (a CLI command) is not cut short.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// Removes staging files under `root` last modified more than `older_than` ago; returns how
/// many were removed. Unreadable directories are skipped.
pub(crate) fn sweep(root: &Path, older_than: Duration) -> usize {
    let cutoff = SystemTime::now().checked_sub(older_than);
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_staging_name(name) {
                continue;
            }
            let old_enough = match (cutoff, entry.metadata().and_then(|m| m.modified())) {
                (Some(cutoff), Ok(modified)) => modified <= cutoff,
                (None, _) => true,
                (_, Err(_)) => false,
            };
            if old_enough && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// object_store's staging names: the final name, `#`, and a number. Final names end in the
/// local-file suffix (a backslash), so they can never look like this.
fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_old_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("blog/app");
        std::fs::create_dir_all(&sub).unwrap();
        let old = sub.join("a.jpg\\#1");
        let fresh = sub.join("b.jpg\\#2");
        let file = sub.join("c#1\\");
        for p in [&old, &fresh, &file] {
            std::fs::write(p, b"x").unwrap();
        }
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        assert_eq!(sweep(dir.path(), Duration::from_secs(600)), 1);
        assert!(!old.exists() && fresh.exists() && file.exists());
        assert_eq!(sweep(dir.path(), Duration::ZERO), 1);
        assert!(!fresh.exists() && file.exists());
    }
}
