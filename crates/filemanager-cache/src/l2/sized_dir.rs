//! The bookkeeping of a directory of cache files bounded in bytes, shared by [`DiskL2`] and
//! FileManager's large-file tier: an index of file sizes in use order, and the start-up scan
//! that rebuilds it.
//!
//! [`DiskL2`]: super::DiskL2

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;
use std::time::UNIX_EPOCH;

/// File names with their sizes, oldest (first inserted, or least recently touched) first,
/// and their total.
#[derive(Debug, Default)]
pub struct SizedIndex {
    /// name -> (size, order)
    files: HashMap<String, (u64, u64)>,
    /// order -> name, oldest first
    order: BTreeMap<u64, String>,
    total: u64,
    next: u64,
}

impl SizedIndex {
    /// Adds `name` (replacing any entry of that name) as the newest.
    pub fn insert(&mut self, name: &str, size: u64) {
        self.remove(name);
        let order = self.next;
        self.next += 1;
        self.files.insert(name.to_owned(), (size, order));
        self.order.insert(order, name.to_owned());
        self.total += size;
    }

    /// Removes `name`; whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.files.remove(name) {
            Some((size, order)) => {
                self.order.remove(&order);
                self.total = self.total.saturating_sub(size);
                true
            }
            None => false,
        }
    }

    /// Makes `name`, if present, the newest.
    pub fn touch(&mut self, name: &str) {
        if let Some(&(size, _)) = self.files.get(name) {
            self.insert(name, size);
        }
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// The names present, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// How many names are present.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The sum of the sizes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.files.clear();
        self.order.clear();
        self.total = 0;
    }

    /// Takes the oldest entries (never `keep`) off the index until the total is within
    /// `max_bytes`, and returns their names for the caller to delete.
    pub fn over_bound(&mut self, max_bytes: u64, keep: &str) -> Vec<String> {
        let mut victims = Vec::new();
        while self.total > max_bytes {
            let Some(victim) = self.order.values().find(|n| n.as_str() != keep).cloned() else {
                break;
            };
            self.remove(&victim);
            victims.push(victim);
        }
        victims
    }
}

/// Scans `dir` (creating it if needed): removes the files `is_temp` names (left by writes a
/// crash interrupted) and returns `(name, size)` of the regular files `is_entry` names, oldest
/// modification first. Entries that cannot be read are skipped, not fatal.
pub fn scan(
    dir: &Path,
    is_entry: impl Fn(&str) -> bool,
    is_temp: impl Fn(&str) -> bool,
) -> io::Result<Vec<(String, u64)>> {
    std::fs::create_dir_all(dir)?;
    let mut found = Vec::new();
    for item in std::fs::read_dir(dir)? {
        // One unreadable directory entry must not lose the others.
        let Ok(item) = item else { continue };
        let file_name = item.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        if is_temp(name) {
            let _ = std::fs::remove_file(item.path());
            continue;
        }
        if !is_entry(name) {
            continue;
        }
        let Ok(meta) = item.metadata() else { continue };
        if meta.is_file() {
            let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
            found.push((mtime, name.to_owned(), meta.len()));
        }
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|(_, name, size)| (name, size))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_go_first_and_touch_renews() {
        let mut idx = SizedIndex::default();
        for (n, s) in [("a", 4), ("b", 4), ("c", 4)] {
            idx.insert(n, s);
        }
        idx.touch("a");
        assert_eq!(idx.total(), 12);
        assert_eq!(idx.over_bound(8, "b"), vec!["c".to_owned()]);
        assert_eq!(idx.over_bound(4, ""), vec!["b".to_owned()]);
        assert!(idx.contains("a") && idx.len() == 1);
        idx.clear();
        assert!(idx.is_empty() && idx.total() == 0);
    }

    #[test]
    fn scan_sorts_by_age_and_removes_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["old", "new", "x.tmp", "other"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let old = std::fs::File::options()
            .write(true)
            .open(dir.path().join("old"))
            .unwrap();
        old.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(1))
            .unwrap();
        let found = scan(
            dir.path(),
            |n| n == "old" || n == "new",
            |n| n.ends_with(".tmp"),
        )
        .unwrap();
        assert_eq!(found, vec![("old".into(), 3), ("new".into(), 3)]);
        assert!(!dir.path().join("x.tmp").exists());
        assert!(dir.path().join("other").exists());
    }
}
