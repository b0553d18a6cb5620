//! Files a test finds on disk.

use std::path::Path;

/// How many files in `dir` have the extension `ext`.
pub fn count_with_extension(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .count()
}
