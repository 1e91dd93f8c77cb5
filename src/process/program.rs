//! Finding a program the way the OS would, to tell "not installed" apart
//! from "failed" before spawning anything.

use std::path::{Path, PathBuf};

/// `program` as the OS would find it: a path as given, else the first
/// match on `PATH` (with `PATHEXT` on Windows).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.components().count() > 1 {
        return path.is_file().then(|| path.to_owned());
    }
    let extensions: Vec<String> = if cfg!(windows) {
        std::env::var("PATHEXT")
            .unwrap_or_else(|_| ".EXE;.CMD;.BAT;.COM".into())
            .split(';')
            .map(str::to_owned)
            .chain(std::iter::once(String::new()))
            .collect()
    } else {
        vec![String::new()]
    };
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs).find_map(|dir| {
        extensions.iter().find_map(|ext| {
            let candidate = dir.join(format!("{program}{ext}"));
            candidate.is_file().then_some(candidate)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path() {
        #[cfg(unix)]
        assert!(find_program("sh").is_some());
        assert!(find_program("surely-no-such-program-here").is_none());
        assert!(find_program("/surely/not/here").is_none());
    }
}
