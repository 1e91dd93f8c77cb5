//! Identity before trust: may a `NAME.lock` record be believed, and who
//! listens on a port.
//!
//! A record names a pid, and a pid is only a number: once its process dies
//! the kernel gives it to the next one, and the original npm tool leaves
//! records without a start time in the same home. A record is believed
//! (adopted, used, stopped) only when [`verdict`] finds it
//! [`Verdict::Ours`]: its pid is alive, is this user's, has the start time
//! written with it (`processStart`), and it or a member of its process
//! group (a daemon started here leads a group of its own; `npx` leaves the
//! listening to its `node`) holds the record's port. Anything else is
//! stale: the record may be removed under the start guard, its process is
//! never signalled, and a port holder is only ever described
//! ([`describe_holder`]). The rules are one pure function ([`judge`]) over
//! facts read by [`observe`], so they are tested without processes.
//!
//! [`listener`] says who owns the socket listening on a port, so that
//! nothing is sent to a listener of another user.
//!
//! Platforms: Linux (`/proc`) and macOS (`libproc`, `lsof`) tell all of
//! this (on macOS another user's listener is told as such but not named).
//! Elsewhere (Windows, the other BSDs) nothing can be told: a record is
//! believed while its pid is alive, as before this rule, and every
//! listener counts as this user's ([`Listener::Unknown`]).

use crate::daemon::record::DaemonRecord;
use crate::process;
use crate::process::socket::ListenerOwner;

/// Whether this platform can read start times, owners and port holders.
pub const CAN_TELL: bool = cfg!(any(target_os = "linux", target_os = "macos"));

/// What is known of a record's process and port now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// [`CAN_TELL`], as a fact (so the rules are tested for both).
    pub can_tell: bool,
    /// The pid exists and is not a zombie.
    pub alive: bool,
    /// Its start time now ([`process::start_time`]).
    pub start_time: Option<u64>,
    /// Its effective uid.
    pub owner: Option<u32>,
    /// This process's effective uid.
    pub me: Option<u32>,
    /// The pid listening on the record's port, if one can be seen.
    pub holder: Option<u32>,
    /// That holder's process group.
    pub holder_group: Option<u32>,
}

/// What a record is worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Proven: the process it was written for, holding its port.
    Ours,
    /// The process it was written for (its start time matches, it is this
    /// user's), but it holds no listener on the record's port: still
    /// starting, or stuck. It may be waited for, never signalled.
    NotListening,
    /// Not believed, for this reason.
    Stale(Distrust),
}

/// Why a record is not believed. Each reads after "the record ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Distrust {
    #[error("names pid {pid}, which is never a daemon started here (pid 0 or 1 is the system's)")]
    ReservedPid { pid: u32 },
    #[error(
        "has no \"processStart\" (the original mcp-manager's format), so its pid {pid} cannot be told from a reused one"
    )]
    NoStartTime { pid: u32 },
    #[error("names pid {pid}, which has exited")]
    Gone { pid: u32 },
    #[error("names pid {pid}, whose start time cannot be read")]
    Unreadable { pid: u32 },
    #[error("names pid {pid}, which is now another program (another start time)")]
    PidReused { pid: u32 },
    #[error("names pid {pid}, a process of another user (uid {uid})")]
    OtherUser { pid: u32, uid: u32 },
    #[error(
        "names pid {pid}, but port {port} is held by pid {holder}, which is neither it nor in its process group"
    )]
    PortHeldByOther { pid: u32, port: u16, holder: u32 },
}

/// The rules, on facts: see the module documentation.
pub fn judge(record: &DaemonRecord, facts: &Observed) -> Verdict {
    let pid = record.pid;
    let stale = Verdict::Stale;
    if pid <= 1 {
        return stale(Distrust::ReservedPid { pid });
    }
    if !facts.can_tell {
        // Nothing more can be known here: today's rule, a live pid.
        return if facts.alive {
            Verdict::Ours
        } else {
            stale(Distrust::Gone { pid })
        };
    }
    let Some(recorded) = record.process_start else {
        return stale(Distrust::NoStartTime { pid });
    };
    if !facts.alive {
        return stale(Distrust::Gone { pid });
    }
    match facts.start_time {
        None => return stale(Distrust::Unreadable { pid }),
        Some(now) if now != recorded => return stale(Distrust::PidReused { pid }),
        Some(_) => {}
    }
    match (facts.owner, facts.me) {
        (Some(owner), Some(me)) if owner == me => {}
        (Some(uid), _) => return stale(Distrust::OtherUser { pid, uid }),
        (None, _) => return stale(Distrust::Unreadable { pid }),
    }
    match facts.holder {
        Some(holder) if holder == pid || facts.holder_group == Some(pid) => Verdict::Ours,
        Some(holder) => stale(Distrust::PortHeldByOther {
            pid,
            port: record.port,
            holder,
        }),
        None => Verdict::NotListening,
    }
}

/// The facts about `record` now. The port holder is looked for (a scan of
/// `/proc` on Linux) only when every other rule passed.
pub fn observe(record: &DaemonRecord) -> Observed {
    let pid = record.pid;
    let mut facts = Observed {
        can_tell: CAN_TELL,
        alive: process::is_alive(pid),
        start_time: process::start_time(pid),
        owner: process::info::owner_uid(pid),
        me: process::current_uid(),
        holder: None,
        holder_group: None,
    };
    if judge(record, &facts) == Verdict::NotListening {
        facts.holder = process::port_holder(record.port);
        facts.holder_group = facts.holder.and_then(process::info::process_group);
    }
    facts
}

/// [`judge`] of what [`observe`] sees now.
pub fn verdict(record: &DaemonRecord) -> Verdict {
    judge(record, &observe(record))
}

/// Who owns the socket listening on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listener {
    /// Nothing listens there (as far as the platform tells).
    Nobody,
    /// This user's.
    Mine,
    /// Another user's: `holder` names it for a message. `uid` is `None`
    /// where the platform hides it (macOS: a listener found among no
    /// process this user may inspect).
    Stranger { uid: Option<u32>, holder: String },
    /// The platform cannot tell (not Linux or macOS): treated as this
    /// user's.
    Unknown,
}

/// Who listens on 127.0.0.1:`port` (or a wildcard address).
///
/// Linux reads `/proc/net/tcp{,6}`. macOS looks through the processes for
/// the listening socket (`libproc`): found in one, that process's owner
/// decides; found in none of those this user may look into while the port
/// answers a connect (nothing is sent on it), it is another user's, whose
/// name macOS hides. Elsewhere: [`Listener::Unknown`].
pub fn listener(port: u16) -> Listener {
    let me = process::current_uid();
    match process::socket::listener_owner(port) {
        ListenerOwner::CannotTell => Listener::Unknown,
        ListenerOwner::Nobody => Listener::Nobody,
        ListenerOwner::Owned { uid, .. } if Some(uid) == me => Listener::Mine,
        ListenerOwner::Owned {
            uid,
            pid: Some(pid),
        } => Listener::Stranger {
            uid: Some(uid),
            holder: format!("{} of uid {uid}", process::describe(pid)),
        },
        ListenerOwner::Owned { uid, pid: None } => Listener::Stranger {
            uid: Some(uid),
            holder: describe_holder(port),
        },
        ListenerOwner::Hidden => Listener::Stranger {
            uid: None,
            holder: HIDDEN_HOLDER.to_owned(),
        },
    }
}

/// The holder of a port found in none of this user's processes (macOS).
const HIDDEN_HOLDER: &str =
    "a program that is not among this user's processes (macOS does not name another user's)";

/// The holder of `port` for a message: `pid 1234 (python3 -m http.server)
/// of uid 1001`, `a process of uid 1001` (another user's pid is hidden
/// unless we are root), or `another program`.
pub fn describe_holder(port: u16) -> String {
    let uid = process::listener_uid(port);
    let pid = process::port_holder(port);
    let mine = process::current_uid();
    let of_uid = match uid {
        Some(uid) if Some(uid) != mine => format!(" of uid {uid}"),
        _ => String::new(),
    };
    match (pid, uid) {
        (Some(pid), _) => format!("{}{of_uid}", process::describe(pid)),
        (None, Some(uid)) if Some(uid) != mine => format!("a process of uid {uid}"),
        (None, _) => "another program".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TransportKind;

    const PID: u32 = 4242;
    const ME: u32 = 1000;

    fn record(process_start: Option<u64>) -> DaemonRecord {
        DaemonRecord {
            pid: PID,
            port: 3100,
            started_at: 1,
            transport: TransportKind::StreamableHttp,
            process_start,
        }
    }

    /// A live daemon of this user that holds its own port.
    fn ours() -> Observed {
        Observed {
            can_tell: true,
            alive: true,
            start_time: Some(77),
            owner: Some(ME),
            me: Some(ME),
            holder: Some(PID),
            holder_group: Some(PID),
        }
    }

    #[test]
    fn a_live_process_with_its_start_time_holding_the_port_is_ours() {
        assert_eq!(judge(&record(Some(77)), &ours()), Verdict::Ours);
        // npx: its node child, in the daemon's group, holds the port.
        let child_listens = Observed {
            holder: Some(PID + 1),
            ..ours()
        };
        assert_eq!(judge(&record(Some(77)), &child_listens), Verdict::Ours);
    }

    /// The original's format: never believed, whatever the pid is now.
    #[test]
    fn a_record_without_process_start_is_never_believed() {
        assert_eq!(
            judge(&record(None), &ours()),
            Verdict::Stale(Distrust::NoStartTime { pid: PID })
        );
    }

    #[test]
    fn pid_zero_and_one_are_never_believed() {
        for pid in [0, 1] {
            let record = DaemonRecord {
                pid,
                ..record(Some(77))
            };
            let facts = Observed {
                holder: Some(pid),
                ..ours()
            };
            assert_eq!(
                judge(&record, &facts),
                Verdict::Stale(Distrust::ReservedPid { pid })
            );
            let blind = Observed {
                can_tell: false,
                ..facts
            };
            assert_eq!(
                judge(&record, &blind),
                Verdict::Stale(Distrust::ReservedPid { pid })
            );
        }
    }

    #[test]
    fn a_reused_dead_or_foreign_pid_is_stale() {
        let r = record(Some(77));
        let cases = [
            (
                Observed {
                    alive: false,
                    ..ours()
                },
                Distrust::Gone { pid: PID },
            ),
            (
                Observed {
                    start_time: Some(78),
                    ..ours()
                },
                Distrust::PidReused { pid: PID },
            ),
            (
                Observed {
                    start_time: None,
                    ..ours()
                },
                Distrust::Unreadable { pid: PID },
            ),
            (
                Observed {
                    owner: Some(0),
                    ..ours()
                },
                Distrust::OtherUser { pid: PID, uid: 0 },
            ),
            (
                Observed {
                    holder: Some(9),
                    holder_group: Some(9),
                    ..ours()
                },
                Distrust::PortHeldByOther {
                    pid: PID,
                    port: 3100,
                    holder: 9,
                },
            ),
        ];
        for (facts, why) in cases {
            assert_eq!(judge(&r, &facts), Verdict::Stale(why), "{facts:?}");
        }
    }

    /// Its process, not (yet) listening: waited for, not believed.
    #[test]
    fn the_recorded_process_without_its_port_is_not_listening() {
        let facts = Observed {
            holder: None,
            holder_group: None,
            ..ours()
        };
        assert_eq!(judge(&record(Some(77)), &facts), Verdict::NotListening);
    }

    /// Where nothing can be told, a live pid is believed (today's rule).
    #[test]
    fn where_the_platform_cannot_tell_a_live_pid_is_believed() {
        let blind = Observed {
            can_tell: false,
            alive: true,
            ..Observed::default()
        };
        assert_eq!(judge(&record(None), &blind), Verdict::Ours);
        let dead = Observed {
            alive: false,
            ..blind
        };
        assert_eq!(
            judge(&record(None), &dead),
            Verdict::Stale(Distrust::Gone { pid: PID })
        );
    }

    /// This process, with its start time, holding a port: ours; the same
    /// record without `processStart`: stale.
    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_holding_a_port_is_believed() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = socket.local_addr().expect("addr").port();
        let me = std::process::id();
        let mine = DaemonRecord {
            pid: me,
            port,
            started_at: 1,
            transport: TransportKind::StreamableHttp,
            process_start: process::start_time(me),
        };
        // The test runner leads no group of its own, so only `holder == pid`.
        assert_eq!(verdict(&mine), Verdict::Ours);
        assert_eq!(listener(port), Listener::Mine);
        let original = DaemonRecord {
            process_start: None,
            ..mine.clone()
        };
        assert!(matches!(verdict(&original), Verdict::Stale(_)));
        drop(socket);
        assert_eq!(verdict(&mine), Verdict::NotListening);
        assert_eq!(listener(port), Listener::Nobody);
    }
}
