//! Noticing that config.json changed: a `notify` watcher on the directory
//! that holds it (editors replace a file by renaming a temporary over it,
//! which a watch on the file itself would lose), filtered to that one name
//! and to writes (every proxy reads the file at start: reads are not
//! changes), and SIGHUP.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// A live watch; dropping it stops it.
pub struct ConfigWatch {
    _watcher: RecommendedWatcher,
}

/// Watches the directory of `file`; each change to `file` (written,
/// created, renamed over, removed) sends one `()` on `changed`, dropped
/// when one is already waiting (a reload reads the file as it is then).
///
/// # Errors
/// The platform's watcher cannot be set up (out of inotify watches, say):
/// reloads then come from `mcp-manager reload`, SIGHUP and an `/ensure`
/// of an unknown name only.
pub fn config_file(file: &Path, changed: mpsc::Sender<()>) -> notify::Result<ConfigWatch> {
    let dir = file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = file.file_name().map(ToOwned::to_owned);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            // Events were lost (queue overflow): the file may have changed.
            let _ = changed.try_send(());
            return;
        };
        if is_change(&event.kind)
            && event
                .paths
                .iter()
                .any(|path| path.file_name() == name.as_deref())
        {
            let _ = changed.try_send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(ConfigWatch { _watcher: watcher })
}

/// A write, a new file, a rename or a removal; not a read.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Other => true,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn next(rx: &mut mpsc::Receiver<()>) -> bool {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .is_ok_and(|got| got.is_some())
    }

    async fn quiet(rx: &mut mpsc::Receiver<()>) -> bool {
        tokio::time::sleep(Duration::from_millis(300)).await;
        rx.try_recv().is_err()
    }

    /// Takes what one file operation still sends: a write is several events
    /// (truncate, data, close), delivered by the watcher's thread after the
    /// first has already been received.
    async fn settle(rx: &mut mpsc::Receiver<()>) {
        while tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_ok_and(|got| got.is_some())
        {}
    }

    /// Written in place, renamed over, removed: each is seen; a read, or a
    /// write to another file of the directory, is not.
    #[tokio::test]
    async fn changes_to_the_file_are_seen_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("mcp-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("config.json");
        std::fs::write(&file, "{}").expect("write");
        let (tx, mut rx) = mpsc::channel(1);
        let _watch = config_file(&file, tx).expect("watch");
        std::fs::write(&file, r#"{"mcpServers": {}}"#).expect("write");
        assert!(next(&mut rx).await, "an in-place write");
        settle(&mut rx).await;
        let _ = std::fs::read(&file).expect("read");
        std::fs::write(dir.join("web.log"), "a line").expect("log");
        assert!(quiet(&mut rx).await, "a read or another file is no change");
        let temp = dir.join(".config.json.swp");
        std::fs::write(&temp, "{}").expect("temp");
        std::fs::rename(&temp, &file).expect("rename");
        assert!(next(&mut rx).await, "a rename over it");
        settle(&mut rx).await;
        std::fs::remove_file(&file).expect("remove");
        assert!(next(&mut rx).await, "a removal");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
