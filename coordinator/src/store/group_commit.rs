//! Group commit for the redb backend: many transactions, one fsync.
//!
//! A redb commit with [`redb::Durability::Immediate`] fsyncs the file (about 4 ms on the 2-core
//! dev VM), and redb has one writer at a time, so under load every `get_task` and
//! `submit_proof` queued behind every other one's fsync. Now each write transaction commits
//! without syncing ([`redb::Durability::None`]: visible to the next transactions at once,
//! persisted by the next durable commit), and the caller then waits in [`GroupSync::durable`]
//! for a durable commit that *began after its own commit returned*: that one persists it. One
//! such commit runs at a time; callers that arrive while it runs wait for it and then share the
//! next one, so under load one fsync covers every transaction committed during the previous one.
//!
//! Nothing is answered before it is on disk: a caller returns only after its covering durable
//! commit finished. A crash loses at most transactions nobody was answered for, and loses them
//! as a suffix (redb reopens at the last durable commit), so every answer sent was consistent
//! with what the file holds.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::CoordinatorError;

/// Failed durable commits remembered for the callers waiting on them.
const FAILURES_KEPT: usize = 64;

#[derive(Debug)]
struct State {
    /// Generation the next durable commit will have.
    next: u64,
    /// Generation of the last durable commit that finished.
    done: u64,
    /// A durable commit is running.
    running: bool,
    /// Generations whose durable commit failed, with the reason.
    failed: VecDeque<(u64, String)>,
    /// Durable commits run.
    syncs: u64,
    /// Callers waiting for a running commit to finish.
    waiting: usize,
}

/// See the module documentation.
#[derive(Debug)]
pub struct GroupSync {
    state: Mutex<State>,
    finished: Condvar,
}

impl Default for GroupSync {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                next: 1,
                done: 0,
                running: false,
                failed: VecDeque::new(),
                syncs: 0,
                waiting: 0,
            }),
            finished: Condvar::new(),
        }
    }
}

impl GroupSync {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is updated in single assignments; a panic elsewhere leaves it consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once a durable commit that began after this call was entered has finished.
    /// `sync` runs such a commit; it is called by at most one caller at a time, and only when
    /// no finished or running commit covers the caller.
    pub fn durable<E: std::fmt::Display>(
        &self,
        mut sync: impl FnMut() -> Result<(), E>,
    ) -> Result<(), CoordinatorError> {
        let mut s = self.lock();
        // A commit already running may have begun before ours returned: the next one covers us.
        let need = s.next;
        loop {
            if s.done >= need {
                return match s.failed.iter().find(|(g, _)| *g == need) {
                    Some((_, reason)) => Err(CoordinatorError::store("durable commit", reason)),
                    None => Ok(()),
                };
            }
            if s.running {
                s.waiting += 1;
                s = self
                    .finished
                    .wait(s)
                    .unwrap_or_else(PoisonError::into_inner);
                s.waiting -= 1;
                continue;
            }
            // Nothing runs, and nothing that ran covers us (done < need = next): run `need`.
            let generation = Self::start(&mut s);
            drop(s);
            let result = sync();
            self.finish(generation, &result);
            s = self.lock();
        }
    }

    /// When no durable commit runs: the turn to run one, for the caller's own transaction (a
    /// durable commit persists every commit before it); the caller then [`Self::finish`]es it.
    /// Saves the separate commit when there is nobody to share it with.
    pub fn lead(&self) -> Option<u64> {
        let mut s = self.lock();
        (!s.running).then(|| Self::start(&mut s))
    }

    fn start(s: &mut State) -> u64 {
        let generation = s.next;
        s.next += 1;
        s.running = true;
        generation
    }

    /// Ends durable commit `generation` (from [`Self::lead`]) with its result.
    pub fn finish<E: std::fmt::Display>(&self, generation: u64, result: &Result<(), E>) {
        let mut s = self.lock();
        s.running = false;
        s.done = generation;
        s.syncs += 1;
        if let Err(e) = result {
            if s.failed.len() == FAILURES_KEPT {
                s.failed.pop_front();
            }
            s.failed.push_back((generation, e.to_string()));
        }
        self.finished.notify_all();
    }

    /// Durable commits run so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;
    use std::sync::Arc;

    #[test]
    fn a_lone_caller_runs_its_own_durable_commit() {
        let g = GroupSync::default();
        let calls = AtomicU64::new(0);
        for _ in 0..3 {
            g.durable(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            })
            .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(g.syncs(), 3);
    }

    /// While one durable commit runs, every caller that arrives waits; when it finishes they all
    /// share the next one, whichever of them runs it.
    #[test]
    fn callers_arriving_during_a_durable_commit_share_the_next_one() {
        let g = Arc::new(GroupSync::default());
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let first = {
            let g = g.clone();
            std::thread::spawn(move || {
                g.durable(|| {
                    entered_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    Ok::<(), String>(())
                })
            })
        };
        entered_rx.recv().unwrap();
        // The first commit is running; 16 callers arrive and wait for it.
        let runs = Arc::new(AtomicU64::new(0));
        let callers: Vec<_> = (0..16)
            .map(|_| {
                let (g, runs) = (g.clone(), runs.clone());
                std::thread::spawn(move || {
                    g.durable(|| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok::<(), String>(())
                    })
                })
            })
            .collect();
        while g.waiting() < 16 {
            std::thread::yield_now();
        }
        release_tx.send(()).unwrap();
        first.join().unwrap().unwrap();
        for c in callers {
            c.join().unwrap().unwrap();
        }
        // One durable commit for all 16 (the first can't cover them: it began before they came).
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(g.syncs(), 2);
    }

    /// A caller arriving while a leader's own commit runs waits for it, then runs the next one:
    /// the leader's transaction began before the caller's commit returned, so it may not cover it.
    #[test]
    fn a_leader_holds_the_turn_until_it_finishes() {
        let g = Arc::new(GroupSync::default());
        let generation = g.lead().expect("nothing runs");
        assert!(g.lead().is_none(), "one durable commit at a time");
        let runs = Arc::new(AtomicU64::new(0));
        let caller = {
            let (g, runs) = (g.clone(), runs.clone());
            std::thread::spawn(move || {
                g.durable(|| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                })
            })
        };
        while g.waiting() < 1 {
            std::thread::yield_now();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        g.finish(generation, &Ok::<(), String>(()));
        caller.join().unwrap().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(g.syncs(), 2);
        assert!(g.lead().is_some());
    }

    #[test]
    fn a_failed_durable_commit_fails_the_callers_it_covered_and_not_later_ones() {
        let g = GroupSync::default();
        let err = g.durable(|| Err("disk full")).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        g.durable(|| Ok::<(), String>(())).unwrap();
    }
}
