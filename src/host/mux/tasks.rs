//! Which session owns which of the child's tasks (2025-11-25, SEP-1686), and
//! which session a URL-mode elicitation belongs to.
//!
//! The child keys tasks and URL elicitations by ids of its own and sees one
//! client (the host), so it cannot keep sessions apart: the host does. A
//! task is owned by the session its `CreateTaskResult` was routed to (or
//! whose task-augmented request was answered with related-task `_meta`
//! naming it; a notification or server request is routed by the ledger,
//! never fills it: it names no session); it is forgotten at its `ttl`,
//! once its result was read or it was cancelled, when its session ends, and
//! when the child ends (its tasks end with it). The ledger is bounded: at
//! most [`MAX_TASKS_PER_SESSION`] per session and [`MAX_TASKS`] in all, the
//! oldest evicted first (an evicted task is unknown to its session from
//! then on: refused, never leaked). The clock is the caller's (`now`), so
//! the ledger is pure state.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SessionId;

/// Most tasks one session may own at once; past it, its oldest is forgotten.
pub const MAX_TASKS_PER_SESSION: usize = 1024;
/// Most tasks the ledger holds at once; past it, the oldest is forgotten.
pub const MAX_TASKS: usize = 16 * 1024;
/// Most URL-mode elicitations awaiting completion; past it, the oldest is forgotten.
pub const MAX_ELICITATIONS: usize = 4096;
/// Most `tasks/list` cursors kept; past it, the oldest is forgotten.
pub const MAX_CURSORS: usize = 1024;

/// Task id → owning session, bounded (see the module doc).
#[derive(Default)]
pub struct Tasks {
    by_id: HashMap<String, Entry>,
    /// Insertion order: sequence number → task id.
    order: BTreeMap<u64, String>,
    /// When each entry expires, by its sequence number.
    expiries: BTreeSet<(Instant, u64)>,
    /// Each session's entries, by sequence number.
    per_session: HashMap<SessionId, BTreeSet<u64>>,
    next_seq: u64,
}

struct Entry {
    session: SessionId,
    seq: u64,
    expires: Option<Instant>,
}

impl Tasks {
    /// `session` owns `task_id`, for `ttl` from `now` (none: until read,
    /// cancelled or evicted). A task owned already keeps its owner: false
    /// if that is another session.
    pub fn own(
        &mut self,
        session: &SessionId,
        task_id: &str,
        ttl: Option<Duration>,
        now: Instant,
    ) -> bool {
        self.expire(now);
        if let Some(entry) = self.by_id.get(task_id) {
            return entry.session == *session;
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let expires = ttl.and_then(|t| now.checked_add(t));
        if let Some(at) = expires {
            self.expiries.insert((at, seq));
        }
        self.order.insert(seq, task_id.to_owned());
        let mine = self.per_session.entry(Arc::clone(session)).or_default();
        mine.insert(seq);
        let oldest_of_session = (mine.len() > MAX_TASKS_PER_SESSION)
            .then(|| mine.first().copied())
            .flatten();
        let entry = Entry {
            session: Arc::clone(session),
            seq,
            expires,
        };
        self.by_id.insert(task_id.to_owned(), entry);
        if let Some(oldest) = oldest_of_session {
            self.remove_seq(oldest);
        }
        while self.by_id.len() > MAX_TASKS {
            let Some((&oldest, _)) = self.order.first_key_value() else {
                break;
            };
            self.remove_seq(oldest);
        }
        true
    }

    /// The session owning `task_id`, if it is known (and not expired).
    pub fn owner(&mut self, task_id: &str, now: Instant) -> Option<SessionId> {
        self.expire(now);
        self.by_id.get(task_id).map(|e| Arc::clone(&e.session))
    }

    /// Does `session` own `task_id`?
    pub fn owns(&mut self, session: &SessionId, task_id: &str, now: Instant) -> bool {
        self.owner(task_id, now).is_some_and(|o| o == *session)
    }

    /// The task is done with: its result was read, or it was cancelled.
    pub fn forget(&mut self, task_id: &str) {
        if let Some(seq) = self.by_id.get(task_id).map(|e| e.seq) {
            self.remove_seq(seq);
        }
    }

    /// The session ended: its tasks are forgotten.
    pub fn close_session(&mut self, session: &SessionId) {
        for seq in self.per_session.remove(session).unwrap_or_default() {
            self.remove_seq(seq);
        }
    }

    /// The child ended: its tasks are gone.
    pub fn clear(&mut self) {
        *self = Tasks {
            next_seq: self.next_seq,
            ..Tasks::default()
        };
    }

    /// How many tasks are known.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Forgets the entries whose ttl has passed.
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, seq)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.remove_seq(seq);
        }
    }

    fn remove_seq(&mut self, seq: u64) {
        let Some(task_id) = self.order.remove(&seq) else {
            return;
        };
        let Some(entry) = self.by_id.remove(&task_id) else {
            return;
        };
        if let Some(at) = entry.expires {
            self.expiries.remove(&(at, seq));
        }
        if let Some(mine) = self.per_session.get_mut(&entry.session) {
            mine.remove(&seq);
            if mine.is_empty() {
                self.per_session.remove(&entry.session);
            }
        }
    }
}

/// URL-mode elicitation id → the session it was sent to, bounded by
/// [`MAX_ELICITATIONS`] (oldest forgotten first).
#[derive(Default)]
pub struct Elicitations {
    by_id: HashMap<String, (SessionId, u64)>,
    order: BTreeMap<u64, String>,
    next_seq: u64,
}

impl Elicitations {
    /// The elicitation `id` was sent to `session` (a later one with the same
    /// id replaces it).
    pub fn sent(&mut self, id: &str, session: &SessionId) {
        self.complete(id);
        self.next_seq += 1;
        self.order.insert(self.next_seq, id.to_owned());
        self.by_id
            .insert(id.to_owned(), (Arc::clone(session), self.next_seq));
        while self.by_id.len() > MAX_ELICITATIONS {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.by_id.remove(&oldest);
        }
    }

    /// The elicitation completed: the session it belongs to, forgotten now.
    pub fn complete(&mut self, id: &str) -> Option<SessionId> {
        let (session, seq) = self.by_id.remove(id)?;
        self.order.remove(&seq);
        Some(session)
    }

    /// The session ended: its elicitations are forgotten.
    pub fn close_session(&mut self, session: &SessionId) {
        let order = &mut self.order;
        self.by_id.retain(|_, (s, seq)| {
            let keep = s != session;
            if !keep {
                order.remove(seq);
            }
            keep
        });
    }

    /// The child ended: nothing it asked will complete.
    pub fn clear(&mut self) {
        self.by_id.clear();
        self.order.clear();
    }
}

/// `tasks/list` cursors handed to sessions in place of the child's (a
/// child's cursor may name another session's task: the reference server's
/// is the id of the last task on the page), bounded by [`MAX_CURSORS`].
#[derive(Default)]
pub struct Cursors {
    by_id: HashMap<String, (SessionId, String)>,
    order: VecDeque<String>,
    next: u64,
}

impl Cursors {
    /// A cursor of the host's for `session` standing for the child's `cursor`.
    pub fn hand_out(&mut self, session: &SessionId, cursor: String) -> String {
        self.next += 1;
        let id = format!("mcp-host-cursor-{}", self.next);
        self.by_id.insert(id.clone(), (Arc::clone(session), cursor));
        self.order.push_back(id.clone());
        while self.order.len() > MAX_CURSORS {
            if let Some(oldest) = self.order.pop_front() {
                self.by_id.remove(&oldest);
            }
        }
        id
    }

    /// The child's cursor behind a cursor handed to `session`.
    pub fn child_cursor(&self, session: &SessionId, cursor: &str) -> Option<String> {
        self.by_id
            .get(cursor)
            .filter(|(s, _)| s == session)
            .map(|(_, c)| c.clone())
    }

    /// The session ended, or (`None`) the child did: its cursors are forgotten.
    pub fn forget(&mut self, session: Option<&SessionId>) {
        self.by_id
            .retain(|_, (s, _)| session.is_some_and(|gone| s != gone));
        let by_id = &self.by_id;
        self.order.retain(|id| by_id.contains_key(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str) -> SessionId {
        Arc::from(name)
    }

    #[test]
    fn a_task_keeps_its_first_owner_until_its_ttl() {
        let mut tasks = Tasks::default();
        let (a, b) = (s("a"), s("b"));
        let t0 = Instant::now();
        assert!(tasks.own(&a, "t", Some(Duration::from_secs(10)), t0));
        assert!(!tasks.own(&b, "t", None, t0), "b cannot take a's task");
        assert!(tasks.owns(&a, "t", t0 + Duration::from_secs(9)));
        assert!(!tasks.owns(&b, "t", t0 + Duration::from_secs(9)));
        assert_eq!(tasks.owner("t", t0 + Duration::from_secs(10)), None);
        assert_eq!(tasks.len(), 0, "expired entries are gone");
    }

    #[test]
    fn the_ledger_is_bounded_per_session_and_in_all_oldest_first() {
        let mut tasks = Tasks::default();
        let now = Instant::now();
        let a = s("a");
        for i in 0..=MAX_TASKS_PER_SESSION {
            tasks.own(&a, &format!("a{i}"), None, now);
        }
        assert_eq!(tasks.len(), MAX_TASKS_PER_SESSION);
        assert!(!tasks.owns(&a, "a0", now), "the oldest of a went");
        assert!(tasks.owns(&a, "a1", now));
        let sessions = MAX_TASKS / MAX_TASKS_PER_SESSION + 1;
        for n in 1..=sessions {
            let other = s(&format!("s{n}"));
            for i in 0..MAX_TASKS_PER_SESSION {
                tasks.own(&other, &format!("s{n}-{i}"), None, now);
            }
        }
        assert_eq!(tasks.len(), MAX_TASKS);
        assert!(!tasks.owns(&a, "a1", now), "the oldest overall went first");
        let last = s(&format!("s{sessions}"));
        assert!(tasks.owns(&last, &format!("s{sessions}-0"), now));
        tasks.close_session(&last);
        assert_eq!(tasks.len(), MAX_TASKS - MAX_TASKS_PER_SESSION);
        tasks.clear();
        assert_eq!(tasks.len(), 0);
    }

    #[test]
    fn a_url_elicitation_completes_once_for_its_session() {
        let mut elicitations = Elicitations::default();
        let (a, b) = (s("a"), s("b"));
        elicitations.sent("e1", &a);
        elicitations.sent("e2", &b);
        elicitations.close_session(&b);
        assert_eq!(elicitations.complete("e2"), None);
        assert_eq!(elicitations.complete("e1"), Some(a));
        assert_eq!(elicitations.complete("e1"), None, "completed twice");
        for i in 0..=MAX_ELICITATIONS {
            elicitations.sent(&format!("x{i}"), &b);
        }
        assert_eq!(elicitations.by_id.len(), MAX_ELICITATIONS);
        assert_eq!(elicitations.complete("x0"), None, "the oldest went");
    }

    #[test]
    fn a_cursor_serves_only_the_session_it_was_handed_to() {
        let mut cursors = Cursors::default();
        let (a, b) = (s("a"), s("b"));
        let mine = cursors.hand_out(&a, "child-task-id".into());
        assert_eq!(
            cursors.child_cursor(&a, &mine).as_deref(),
            Some("child-task-id")
        );
        assert_eq!(cursors.child_cursor(&b, &mine), None);
        assert_eq!(
            cursors.child_cursor(&a, "child-task-id"),
            None,
            "the child's own is unknown"
        );
        cursors.forget(Some(&a));
        assert_eq!(cursors.child_cursor(&a, &mine), None);
    }
}
