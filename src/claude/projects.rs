//! The one rule matching a project directory to its key in the `projects`
//! map of `~/.claude.json`.
//!
//! Claude Code keys a project by its absolute path as it writes it: on
//! Windows with `/` separators. The directory a user names may be relative,
//! hold `.` or a trailing separator, or pass through a symlink; so the keys
//! tried are, in order, the absolute path (lexically normalised, without a
//! `\\?\` prefix), then the canonical path (symlinks resolved), each on
//! Windows also with `/`. `doctor` and `import` both look projects up
//! through [`ProjectKeys`].

use std::path::{Path, PathBuf};

/// `dir` as an absolute path without `.` or a trailing separator.
pub fn absolute(dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    absolute.components().collect()
}

/// The keys Claude Code may have used for one project directory, the most
/// likely first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectKeys(Vec<String>);

impl ProjectKeys {
    /// The keys for the project at `dir` (made absolute first).
    pub fn of(dir: &Path) -> ProjectKeys {
        let dir = absolute(dir);
        let mut keys: Vec<String> = Vec::new();
        let mut add = |path: &Path| {
            let text = path.to_string_lossy();
            let text = text.strip_prefix(r"\\?\").unwrap_or(&text).to_owned();
            let mut variants = vec![text.clone()];
            if cfg!(windows) {
                variants.push(text.replace('\\', "/"));
            }
            for variant in variants {
                if !keys.contains(&variant) {
                    keys.push(variant);
                }
            }
        };
        add(&dir);
        if let Ok(real) = dir.canonicalize() {
            add(&real);
        }
        ProjectKeys(keys)
    }

    /// Every key, in the order they are tried.
    pub fn all(&self) -> &[String] {
        &self.0
    }

    /// The first key `lookup` finds, with what it found.
    pub fn find<T>(&self, mut lookup: impl FnMut(&str) -> Option<T>) -> Option<(&str, T)> {
        self.0
            .iter()
            .find_map(|key| lookup(key).map(|found| (key.as_str(), found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relative directory, `.` and a trailing separator all give the
    /// absolute path Claude Code writes, first.
    #[test]
    fn the_absolute_path_comes_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().canonicalize().expect("canonical");
        let keys = ProjectKeys::of(&real.join(".").join(""));
        assert_eq!(keys.all()[0], real.to_string_lossy());
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            ProjectKeys::of(Path::new(".")).all()[0],
            absolute(&cwd).to_string_lossy()
        );
    }

    /// A project reached through a symlink is found under its real path.
    #[cfg(unix)]
    #[test]
    fn a_symlinked_directory_is_found_by_its_real_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().canonicalize().expect("canonical").join("real");
        std::fs::create_dir(&real).expect("mkdir");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let keys = ProjectKeys::of(&link);
        let wanted = real.to_string_lossy().into_owned();
        let found = keys.find(|key| (key == wanted).then_some(1));
        assert_eq!(found, Some((wanted.as_str(), 1)));
        assert_eq!(keys.find(|_| None::<()>), None);
    }

    /// A unix path holding `\` is not taken for a Windows one.
    #[cfg(unix)]
    #[test]
    fn backslashes_are_kept_on_unix() {
        let keys = ProjectKeys::of(Path::new(r"/no/such\dir"));
        assert_eq!(keys.all(), [r"/no/such\dir".to_owned()]);
    }
}
