//! The redb task stack: what is committed survives reopening the file (a crash), attempts are
//! counted before proving and capped, submissions are kept until explicitly removed.

use prover::daemon::stack::{Attempt, StackError, TaskStack};
use prover::wire::{failure_type, proof_status, SubmitProofRequest, Task};

fn task(id: &str) -> Task {
    Task {
        uuid: format!("uuid-{id}"),
        task_id: id.into(),
        task_type: 1,
        task_data: "{}".into(),
        hard_fork_name: prover::wire::HARD_FORK_NAME.into(),
    }
}

fn proof_for(t: &Task) -> SubmitProofRequest {
    SubmitProofRequest {
        uuid: t.uuid.clone(),
        task_id: t.task_id.clone(),
        task_type: t.task_type,
        status: proof_status::OK,
        proof: r#"{"proof":"bytes"}"#.into(),
        failure_type: failure_type::UNDEFINED,
        failure_msg: String::new(),
    }
}

#[test]
fn task_and_attempts_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/stack.redb");
    let t = task("t1");
    {
        let stack = TaskStack::open(&path).unwrap();
        assert!(stack.is_empty().unwrap());
        let e = stack.put_task("w0", &t).unwrap();
        assert_eq!(e.attempts, 0);
        assert_eq!(
            stack.begin_attempt("w0", "t1", 3).unwrap(),
            Attempt::Start(1)
        );
        // The process dies here, while proving.
    }
    let stack = TaskStack::open(&path).unwrap();
    let e = stack.get("w0").unwrap().expect("task survived");
    assert_eq!(e.task, t);
    assert_eq!(e.attempts, 1, "the attempt was committed before proving");
    assert!(e.submission.is_none());
    assert_eq!(
        stack.begin_attempt("w0", "t1", 3).unwrap(),
        Attempt::Start(2)
    );
    drop(stack);
    let stack = TaskStack::open(&path).unwrap();
    assert_eq!(stack.get("w0").unwrap().unwrap().attempts, 2);
}

#[test]
fn attempts_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let stack = TaskStack::open(&dir.path().join("s.redb")).unwrap();
    stack.put_task("w0", &task("t")).unwrap();
    for n in 1..=3 {
        assert_eq!(
            stack.begin_attempt("w0", "t", 3).unwrap(),
            Attempt::Start(n)
        );
    }
    for _ in 0..2 {
        assert_eq!(
            stack.begin_attempt("w0", "t", 3).unwrap(),
            Attempt::Exhausted { attempts: 3 }
        );
    }
    assert_eq!(stack.get("w0").unwrap().unwrap().attempts, 3);
    // A lower cap after a restart with another configuration still refuses.
    assert_eq!(
        stack.begin_attempt("w0", "t", 2).unwrap(),
        Attempt::Exhausted { attempts: 3 }
    );
}

#[test]
fn the_coordinator_resending_the_held_task_keeps_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let stack = TaskStack::open(&dir.path().join("s.redb")).unwrap();
    let t = task("t");
    stack.put_task("w0", &t).unwrap();
    stack.begin_attempt("w0", "t", 3).unwrap();
    assert_eq!(stack.put_task("w0", &t).unwrap().attempts, 1);
    let err = stack.put_task("w0", &task("other")).unwrap_err();
    assert!(matches!(err, StackError::Occupied { .. }), "{err}");
    assert_eq!(stack.get("w0").unwrap().unwrap().task, t);
}

#[test]
fn submissions_survive_reopening_and_are_deleted_only_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let t = task("t");
    {
        let stack = TaskStack::open(&path).unwrap();
        stack.put_task("w0", &t).unwrap();
        stack.begin_attempt("w0", "t", 3).unwrap();
        stack.put_submission("w0", &proof_for(&t)).unwrap();
    }
    let stack = TaskStack::open(&path).unwrap();
    let e = stack.get("w0").unwrap().unwrap();
    assert_eq!(e.submission, Some(proof_for(&t)));
    // Removing another task id is a no-op.
    assert!(!stack.remove("w0", "not-t").unwrap());
    assert!(stack.get("w0").unwrap().is_some());
    assert!(stack.remove("w0", "t").unwrap());
    assert!(stack.get("w0").unwrap().is_none());
    drop(stack);
    assert!(TaskStack::open(&path).unwrap().is_empty().unwrap());
}

#[test]
fn entries_are_keyed_by_worker() {
    let dir = tempfile::tempdir().unwrap();
    let stack = TaskStack::open(&dir.path().join("s.redb")).unwrap();
    stack.put_task("w0", &task("a")).unwrap();
    stack.put_task("w1", &task("b")).unwrap();
    stack.begin_attempt("w1", "b", 3).unwrap();
    assert_eq!(stack.len().unwrap(), 2);
    assert_eq!(stack.get("w0").unwrap().unwrap().attempts, 0);
    assert_eq!(stack.get("w1").unwrap().unwrap().attempts, 1);
    // A worker cannot touch another worker's task.
    let err = stack.begin_attempt("w0", "b", 3).unwrap_err();
    assert!(matches!(err, StackError::Missing { .. }), "{err}");
    let err = stack
        .put_submission("w0", &proof_for(&task("b")))
        .unwrap_err();
    assert!(matches!(err, StackError::Missing { .. }), "{err}");
    let entries = stack.entries().unwrap();
    let keys: Vec<_> = entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["w0", "w1"]);
}

#[test]
fn a_second_process_cannot_open_the_same_stack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let _first = TaskStack::open(&path).unwrap();
    let err = TaskStack::open(&path).unwrap_err();
    assert!(err.to_string().contains("s.redb"), "{err}");
}

/// A truncated or overwritten stack file is a one-line error naming the file and saying to move
/// it aside, not a panic.
#[test]
fn a_damaged_stack_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stack.redb");
    {
        let stack = TaskStack::open(&path).unwrap();
        stack.put_task("w0", &task("t1")).unwrap();
    }
    let full = std::fs::read(&path).unwrap();
    let garbage: Vec<u8> = (0..full.len()).map(|i| (i * 131 % 251) as u8).collect();
    for (what, bytes) in [
        ("truncated", full[..full.len() / 3].to_vec()),
        ("overwritten", garbage),
        ("header only", full[..64].to_vec()),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let err = TaskStack::open(&path).expect_err(what);
        let msg = err.to_string();
        assert!(matches!(err, StackError::Damaged { .. }), "{what}: {msg}");
        assert!(
            msg.contains(path.to_str().unwrap()) && msg.contains("move it aside"),
            "{what}: {msg}"
        );
        assert!(!msg.contains('\n'), "{what}: one line: {msg}");
    }
}
