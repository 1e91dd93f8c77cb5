//! The open connections of one server, and the cap on them.
//!
//! Each connection is registered when it is accepted and knows whether it
//! is serving a request (from its head until the response body is done) or
//! waiting for one (just accepted, keep-alive idle, or sending its head
//! slowly). At the cap, the oldest waiting connection is closed to make
//! room: a client that connects and sends nothing never keeps out one that
//! asks. Only when every connection is serving is the new one closed at
//! once. Waiting connections also end by themselves: hyper's header read
//! timeout runs from the moment a connection waits.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::sync::lock;

/// The open connections of one server.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    /// By id: the oldest first.
    open: BTreeMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    busy: Arc<AtomicUsize>,
    close: CancellationToken,
}

/// One registered connection; dropping it unregisters it.
#[derive(Debug)]
pub struct Registration {
    id: u64,
    connections: Arc<Connections>,
    busy: Arc<AtomicUsize>,
    /// Cancelled when the connection must close to make room.
    pub close: CancellationToken,
}

/// Marks its connection as serving a request while it lives.
#[derive(Debug)]
pub struct Busy(Arc<AtomicUsize>);

impl Connections {
    /// A table of at most `max` connections (at least one).
    pub fn new(max: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max: max.max(1),
            table: Mutex::new(Table::default()),
        })
    }

    /// How many are open.
    pub fn len(&self) -> usize {
        lock(&self.table).open.len()
    }

    /// Registers a new connection, closing the oldest waiting one if the
    /// table is full. `None` if it is full of connections that all serve a
    /// request: the new one must be closed.
    pub fn register(self: &Arc<Self>) -> Option<Registration> {
        let mut table = lock(&self.table);
        if table.open.len() >= self.max && !table.evict_oldest_waiting() {
            return None;
        }
        table.next += 1;
        let id = table.next;
        let busy = Arc::new(AtomicUsize::new(0));
        let close = CancellationToken::new();
        let entry = Entry {
            busy: Arc::clone(&busy),
            close: close.clone(),
        };
        table.open.insert(id, entry);
        Some(Registration {
            id,
            connections: Arc::clone(self),
            busy,
            close,
        })
    }

    /// Closes the oldest waiting connection (when accepting fails for want
    /// of file descriptors, say). False if every connection is serving.
    pub fn evict_oldest_waiting(&self) -> bool {
        lock(&self.table).evict_oldest_waiting()
    }
}

impl Table {
    fn evict_oldest_waiting(&mut self) -> bool {
        let oldest = self
            .open
            .iter()
            .find(|(_, entry)| entry.busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id);
        let Some(entry) = oldest.and_then(|id| self.open.remove(&id)) else {
            return false;
        };
        entry.close.cancel();
        true
    }
}

impl Registration {
    /// A handle that marks the connection as serving, for its service.
    pub fn busy_marker(&self) -> BusyMarker {
        BusyMarker(Arc::clone(&self.busy))
    }
}

/// Marks a connection as serving a request.
#[derive(Debug, Clone)]
pub struct BusyMarker(Arc<AtomicUsize>);

impl BusyMarker {
    /// The connection starts serving a request; it serves until the
    /// returned guard is dropped (put it in the response body).
    pub fn busy(&self) -> Busy {
        self.0.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(&self.0))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.connections.table).open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At the cap, the oldest waiting connection makes room; a table of
    /// serving connections refuses the new one.
    #[test]
    fn the_oldest_waiting_connection_makes_room() {
        let connections = Connections::new(2);
        let first = connections.register().expect("room");
        let second = connections.register().expect("room");
        let _serving = second.busy_marker().busy();
        let third = connections.register().expect("the first makes room");
        assert!(first.close.is_cancelled(), "the oldest waiting one closes");
        assert!(!second.close.is_cancelled(), "a serving one stays");
        assert_eq!(connections.len(), 2);
        let _also_serving = third.busy_marker().busy();
        assert!(connections.register().is_none(), "all serve: refused");
        drop(third);
        assert_eq!(connections.len(), 1);
        assert!(connections.register().is_some());
        drop(first); // already evicted: dropping it changes nothing
        assert_eq!(connections.len(), 1);
    }
}
