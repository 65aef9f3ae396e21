//! Files pantau carries inside its binary (the rules, the notification templates) that a
//! deployment may replace with a folder of its own, found the same way for each.

use std::path::{Path, PathBuf};

/// The folder to read: the one given; else `default` (relative to the working
/// directory) when it exists; else none, and the copies built into the binary serve.
pub fn folder_to_read(given: Option<&Path>, default: &str) -> Option<PathBuf> {
    match given {
        Some(dir) => Some(dir.to_path_buf()),
        None => Some(PathBuf::from(default)).filter(|d| d.is_dir()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_folder_wins_then_the_default_one_when_it_exists_then_none() {
        let tmp = tempfile::tempdir().unwrap();
        let given = tmp.path().join("mine");
        assert_eq!(folder_to_read(Some(&given), "x"), Some(given));
        let default = tmp.path().display().to_string();
        assert_eq!(
            folder_to_read(None, &default),
            Some(tmp.path().to_path_buf())
        );
        let absent = tmp.path().join("absent").display().to_string();
        assert_eq!(folder_to_read(None, &absent), None);
    }
}
