//! Shared write transactions for the redb backend: many callers, one transaction, one commit.
//!
//! redb has one writer at a time and a durable commit costs an fsync (and redb's own commit
//! work: checksums, the page allocator), so with one transaction per request every `get_task` and
//! `submit_proof` queued behind every other one's commit. Here concurrent callers share one
//! transaction: each runs its own closure in it, in turn, on its own thread (one at a time, so the
//! closures see each other's writes exactly as if they had run one after the other); the caller
//! that finishes its turn while nobody waits for one (or when the batch holds [`MAX_MEMBERS`])
//! commits the transaction durably for all of them. Callers that arrive during a commit form the
//! next batch.
//!
//! - Nothing is answered before it is on disk: a caller returns only after the commit of its
//!   batch finished, and a failed commit fails every caller in it.
//! - A closure that fails leaves its partial writes in the shared transaction, so the whole
//!   transaction is rolled back: that caller gets its error, and the others of the batch run
//!   their closures again in the next one. A [`super::Backend::write`] closure may be run more than
//!   once and has no effect outside the transaction (the PostgreSQL backend re-runs them after
//!   serialization failures too), so this is invisible to them.
//! - A closure that panics rolls the batch back the same way before the panic goes on.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::R;
use crate::CoordinatorError;

/// Most callers one transaction serves: bounds the wait of the first of them.
pub const MAX_MEMBERS: usize = 32;

/// How a batch ended, for the callers waiting on it.
#[derive(Clone, Debug)]
enum Ended {
    Committed,
    CommitFailed(String),
    /// Rolled back because a member failed: run again.
    RolledBack,
}

struct State<T> {
    /// The open batch's transaction while no caller runs in it (`None`: no batch is open).
    txn: Option<T>,
    /// Number of the open batch (or of the next one).
    batch: u64,
    /// A caller holds the turn: runs its closure, opens or commits the transaction.
    turn: bool,
    /// Callers waiting for the turn.
    waiting: usize,
    /// Callers whose closure succeeded in the open batch and who wait for its end.
    members: usize,
    /// Ended batches with members still to read how: (how, members left to read it).
    ended: HashMap<u64, (Ended, usize)>,
    /// Durable commits made (what the tests check batching by).
    #[cfg(test)]
    commits: u64,
}

/// See the module documentation. `T` is the transaction.
pub struct Batcher<T> {
    state: Mutex<State<T>>,
    /// The turn was given up (one waiter is woken: one can take it).
    turn_free: Condvar,
    /// A batch with members ended.
    ended: Condvar,
}

impl<T> Default for Batcher<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                txn: None,
                batch: 0,
                turn: false,
                waiting: 0,
                members: 0,
                ended: HashMap::new(),
                #[cfg(test)]
                commits: 0,
            }),
            turn_free: Condvar::new(),
            ended: Condvar::new(),
        }
    }
}

/// Ends the batch of a closure that panicked (the transaction is dropped with the stack: a
/// rollback), so that the turn is not held for ever.
struct PanicGuard<'a, T> {
    batcher: &'a Batcher<T>,
    armed: bool,
}

impl<T> Drop for PanicGuard<'_, T> {
    fn drop(&mut self) {
        if self.armed {
            let mut s = self.batcher.lock();
            self.batcher.end(&mut s, Ended::RolledBack);
        }
    }
}

impl<T> Batcher<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every update of the state is complete before the lock is released; a panic elsewhere
        // leaves it consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, cv: &Condvar, s: MutexGuard<'a, State<T>>) -> MutexGuard<'a, State<T>> {
        cv.wait(s).unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives up the turn.
    fn release(&self, s: &mut State<T>) {
        s.turn = false;
        self.turn_free.notify_one();
    }

    /// Ends the open batch (its members learn `how`) and gives up the turn.
    fn end(&self, s: &mut State<T>, how: Ended) {
        if s.members > 0 {
            s.ended.insert(s.batch, (how, s.members));
            self.ended.notify_all();
        }
        s.members = 0;
        s.batch += 1;
        self.release(s);
    }

    /// Runs `f` in the shared transaction and returns once that transaction is durably
    /// committed (`Ok`), or with the error of `f`, of `open` or of the commit. `open` begins a
    /// transaction when no batch is open; `commit` commits one durably.
    pub fn run(
        &self,
        open: impl Fn() -> R<T>,
        commit: impl Fn(T) -> R<()>,
        f: &mut dyn FnMut(&T) -> R<()>,
    ) -> R<()> {
        let mut s = self.lock();
        loop {
            s.waiting += 1;
            while s.turn {
                s = self.wait(&self.turn_free, s);
            }
            s.waiting -= 1;
            s.turn = true;
            let batch = s.batch;
            let open_txn = s.txn.take();
            drop(s);

            let txn = match open_txn {
                Some(t) => t,
                // No batch is open, so there are no members to tell.
                None => match open() {
                    Ok(t) => t,
                    Err(e) => {
                        let mut s = self.lock();
                        self.end(&mut s, Ended::RolledBack);
                        return Err(e);
                    }
                },
            };
            let mut guard = PanicGuard {
                batcher: self,
                armed: true,
            };
            let result = f(&txn);
            guard.armed = false;
            if let Err(e) = result {
                drop(txn); // the rollback, before the next caller opens a transaction
                let mut s = self.lock();
                self.end(&mut s, Ended::RolledBack);
                return Err(e);
            }

            s = self.lock();
            s.members += 1;
            if s.waiting == 0 || s.members >= MAX_MEMBERS {
                // This caller commits for the batch (it keeps the turn meanwhile).
                s.members -= 1;
                drop(s);
                let done = commit(txn);
                let mut s = self.lock();
                #[cfg(test)]
                {
                    s.commits += 1;
                }
                let how = match &done {
                    Ok(()) => Ended::Committed,
                    Err(e) => Ended::CommitFailed(e.to_string()),
                };
                self.end(&mut s, how);
                return done;
            }
            s.txn = Some(txn);
            self.release(&mut s);
            let how = loop {
                if let Some((how, left)) = s.ended.get_mut(&batch) {
                    let how = how.clone();
                    *left -= 1;
                    if *left == 0 {
                        s.ended.remove(&batch);
                    }
                    break how;
                }
                s = self.wait(&self.ended, s);
            };
            match how {
                Ended::Committed => return Ok(()),
                Ended::CommitFailed(reason) => {
                    return Err(CoordinatorError::store("commit", reason));
                }
                Ended::RolledBack => continue,
            }
        }
    }

    /// Durable commits made so far.
    #[cfg(test)]
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};

    /// A transaction of the tests: the values its closures wrote; "disk" holds what was
    /// committed, a commit at a time.
    type Log = Mutex<Vec<u32>>;

    #[derive(Default)]
    struct Disk {
        commits: Mutex<Vec<Vec<u32>>>,
        fail_next_commit: Mutex<bool>,
    }

    impl Disk {
        fn open(&self) -> R<Log> {
            Ok(Mutex::new(Vec::new()))
        }
        fn commit(&self, t: Log) -> R<()> {
            if std::mem::take(&mut *self.fail_next_commit.lock().unwrap()) {
                return Err(CoordinatorError::store("commit", "disk full"));
            }
            self.commits.lock().unwrap().push(t.into_inner().unwrap());
            Ok(())
        }
        fn all(&self) -> Vec<u32> {
            let mut v: Vec<u32> = self.commits.lock().unwrap().concat();
            v.sort();
            v
        }
    }

    fn write(b: &Batcher<Log>, d: &Disk, v: u32) -> R<()> {
        b.run(|| d.open(), |t| d.commit(t), &mut |t: &Log| {
            t.lock().unwrap().push(v);
            Ok(())
        })
    }

    type Shared = (Arc<Batcher<Log>>, Arc<Disk>);

    /// A caller that writes `v` and, on its first run, holds the turn until the returned sender
    /// is used; returns once it holds the turn.
    fn holder((b, d): &Shared, v: u32) -> (std::thread::JoinHandle<R<()>>, mpsc::Sender<()>) {
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (b, d) = (b.clone(), d.clone());
        let mut hold = Some((entered_tx, release_rx));
        let h = std::thread::spawn(move || {
            b.run(|| d.open(), |t| d.commit(t), &mut |t: &Log| {
                if let Some((entered, release)) = hold.take() {
                    entered.send(()).unwrap();
                    release.recv().unwrap();
                }
                t.lock().unwrap().push(v);
                Ok(())
            })
        });
        entered_rx.recv().unwrap();
        (h, release_tx)
    }

    fn shared() -> Shared {
        (Arc::new(Batcher::default()), Arc::new(Disk::default()))
    }

    #[test]
    fn a_lone_caller_commits_its_own_transaction() {
        let (b, d) = (Batcher::default(), Disk::default());
        for v in 0..3 {
            write(&b, &d, v).unwrap();
        }
        assert_eq!(b.commits(), 3);
        assert_eq!(*d.commits.lock().unwrap(), vec![vec![0], vec![1], vec![2]]);
    }

    /// Callers that arrive while one holds the turn join its transaction; one commit covers
    /// them all, and each returns only after it.
    #[test]
    fn callers_waiting_for_the_turn_share_one_commit() {
        let sh = shared();
        let (b, d) = sh.clone();
        let (first, release_tx) = holder(&sh, 100);
        let others: Vec<_> = (0..8)
            .map(|v| {
                let (b, d) = (b.clone(), d.clone());
                std::thread::spawn(move || write(&b, &d, v))
            })
            .collect();
        while b.lock().waiting < 8 {
            std::thread::yield_now();
        }
        assert!(d.commits.lock().unwrap().is_empty());
        release_tx.send(()).unwrap();
        first.join().unwrap().unwrap();
        for h in others {
            h.join().unwrap().unwrap();
        }
        assert_eq!(b.commits(), 1, "one commit for the nine callers");
        assert_eq!(d.all(), vec![0, 1, 2, 3, 4, 5, 6, 7, 100]);
    }

    /// A member that fails rolls the batch back: it gets its error, the members before it run
    /// again and are committed, and nothing of the failed one reaches the disk.
    #[test]
    fn a_failing_member_rolls_back_and_the_others_run_again() {
        let sh = shared();
        let (b, d) = sh.clone();
        let runs = Arc::new(AtomicUsize::new(0));
        // The first holds the turn (on its first run) until a succeeding and a failing caller
        // wait behind it.
        let (first, release_tx) = holder(&sh, 1);
        let failing = {
            let (b, d) = (b.clone(), d.clone());
            std::thread::spawn(move || {
                b.run(|| d.open(), |t| d.commit(t), &mut |t: &Log| {
                    t.lock().unwrap().push(666);
                    Err(CoordinatorError::store("write", "refused"))
                })
            })
        };
        let counted = {
            let (b, d, runs) = (b.clone(), d.clone(), runs.clone());
            std::thread::spawn(move || {
                b.run(|| d.open(), |t| d.commit(t), &mut |t: &Log| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    t.lock().unwrap().push(2);
                    Ok(())
                })
            })
        };
        while b.lock().waiting < 2 {
            std::thread::yield_now();
        }
        release_tx.send(()).unwrap();
        first.join().unwrap().unwrap();
        let err = failing.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        counted.join().unwrap().unwrap();
        assert_eq!(d.all(), vec![1, 2]);
        assert!(runs.load(Ordering::SeqCst) >= 1);
        assert!(b.lock().ended.is_empty(), "every ending was read");
    }

    /// A failed commit fails every caller of its batch, and the next batch works.
    #[test]
    fn a_failed_commit_fails_every_member() {
        let sh = shared();
        let (b, d) = sh.clone();
        let (first, release_tx) = holder(&sh, 1);
        let others: Vec<_> = (0..3)
            .map(|v| {
                let (b, d) = (b.clone(), d.clone());
                std::thread::spawn(move || write(&b, &d, 10 + v))
            })
            .collect();
        while b.lock().waiting < 3 {
            std::thread::yield_now();
        }
        *d.fail_next_commit.lock().unwrap() = true;
        release_tx.send(()).unwrap();
        let mut failed = usize::from(first.join().unwrap().is_err());
        for h in others {
            failed += usize::from(h.join().unwrap().is_err());
        }
        assert_eq!(failed, 4, "the four callers of the failed commit all fail");
        assert!(d.all().is_empty());
        write(&b, &d, 5).unwrap();
        assert_eq!(d.all(), vec![5]);
    }

    /// A closure that panics does not leave the turn held: later callers proceed.
    #[test]
    fn a_panicking_closure_releases_the_turn() {
        let b = Arc::new(Batcher::default());
        let d = Arc::new(Disk::default());
        let h = {
            let (b, d) = (b.clone(), d.clone());
            std::thread::spawn(move || {
                b.run(|| d.open(), |t| d.commit(t), &mut |_: &Log| {
                    panic!("planted")
                })
            })
        };
        assert!(h.join().is_err());
        write(&b, &d, 3).unwrap();
        assert_eq!(d.all(), vec![3]);
    }

    /// Many concurrent callers: every value committed exactly once, fewer commits than calls.
    #[test]
    fn concurrent_callers_are_all_committed_once() {
        let b = Arc::new(Batcher::default());
        let d = Arc::new(Disk::default());
        let threads: Vec<_> = (0..16u32)
            .map(|t| {
                let (b, d) = (b.clone(), d.clone());
                std::thread::spawn(move || {
                    for i in 0..50 {
                        write(&b, &d, t * 1000 + i).unwrap();
                    }
                })
            })
            .collect();
        for h in threads {
            h.join().unwrap();
        }
        let want: Vec<u32> = (0..16u32)
            .flat_map(|t| (0..50).map(move |i| t * 1000 + i))
            .collect();
        let mut want = want;
        want.sort();
        assert_eq!(d.all(), want);
        assert!(b.commits() <= 800);
        assert!(b.lock().ended.is_empty());
    }
}
