//! The coordinator client against a recording fake of the HTTP API: login, "no work", re-login
//! once on an expired token, refusal classification, unreachable coordinator, failover between
//! several replicas' URLs.

use crate::fake;

use std::time::Duration;

use fake::{Fake, Reply};
use prover::daemon::client::{ClientError, CoordinatorClient, LoginInfo, SubmitOutcome};
use prover::wire::{errcode, LoginRequest, SubmitProofRequest, Task};

fn info() -> LoginInfo {
    LoginInfo {
        key: prover::login::key_from_hex(&"11".repeat(32)).unwrap(),
        prover_name: "test-0".into(),
        prover_version: "v1.2.3".into(),
        provider_type: 1,
        prover_types: vec![1, 2],
        vks: vec!["vk-chunk".into(), "vk-batch".into()],
    }
}

fn client(base: &str) -> CoordinatorClient {
    CoordinatorClient::new(base, Duration::from_secs(5), info()).unwrap()
}

fn task() -> Task {
    Task {
        uuid: "u1".into(),
        task_id: "t1".into(),
        task_type: 1,
        task_data: "{}".into(),
        hard_fork_name: prover::wire::HARD_FORK_NAME.into(),
    }
}

fn submission() -> SubmitProofRequest {
    SubmitProofRequest {
        uuid: "u1".into(),
        task_id: "t1".into(),
        task_type: 1,
        status: 0,
        proof: "{}".into(),
        failure_type: 0,
        failure_msg: String::new(),
    }
}

#[tokio::test]
async fn logs_in_with_a_signed_message_then_no_work_is_none() {
    let fake = Fake::start().await;
    let c = client(&fake.base_url());
    assert_eq!(c.get_task().await.unwrap(), None);
    assert_eq!(fake.routes(), ["challenge", "login", "get_task"]);
    let calls = fake.calls();
    let login: LoginRequest = serde_json::from_value(calls[1].body.clone()).unwrap();
    assert_eq!(login.message.prover_name, "test-0");
    assert_eq!(login.message.prover_version, "v1.2.3");
    assert_eq!(login.message.prover_types, vec![1, 2]);
    assert_eq!(login.message.vks, vec!["vk-chunk", "vk-batch"]);
    prover::login::verify_login(&login).unwrap();
    assert_eq!(calls[1].answered, 0, "the fake accepted the signature");
    assert_eq!(calls[2].body["task_types"], serde_json::json!([1, 2]));
    assert!(calls[2]
        .auth
        .as_deref()
        .unwrap()
        .starts_with("Bearer login-"));
    // The token is reused: no second login.
    assert_eq!(c.get_task().await.unwrap(), None);
    assert_eq!(
        fake.routes(),
        ["challenge", "login", "get_task", "get_task"]
    );
}

#[tokio::test]
async fn an_expired_token_triggers_one_relogin_and_a_retry() {
    let fake = Fake::start().await;
    let c = client(&fake.base_url());
    assert_eq!(c.get_task().await.unwrap(), None);
    fake.expire_tokens();
    fake.script("get_task", [Reply::task(&task())]);
    assert_eq!(c.get_task().await.unwrap(), Some(task()));
    assert_eq!(
        fake.routes(),
        [
            "challenge",
            "login",
            "get_task",
            "get_task",
            "challenge",
            "login",
            "get_task"
        ]
    );
    assert_eq!(fake.calls()[3].answered, errcode::JWT_EXPIRED as i64);
}

#[tokio::test]
async fn relogin_happens_only_once_per_call() {
    let fake = Fake::start().await;
    let c = client(&fake.base_url());
    fake.script(
        "get_task",
        [
            Reply::err(errcode::JWT_EXPIRED, "expired"),
            Reply::err(errcode::JWT_EXPIRED, "expired again"),
        ],
    );
    let err = c.get_task().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { errcode: 50001, .. }),
        "{err}"
    );
    assert_eq!(
        fake.routes(),
        [
            "challenge",
            "login",
            "get_task",
            "challenge",
            "login",
            "get_task"
        ]
    );
}

#[tokio::test]
async fn submissions_are_classified() {
    let fake = Fake::start().await;
    let c = client(&fake.base_url());
    fake.script(
        "submit_proof",
        [
            Reply::ok(serde_json::Value::Null),
            Reply::err(errcode::PROOF_FAILURE, "cannot submit proof twice"),
            Reply::err(errcode::INTERNAL, "database is locked"),
            Reply::Http(503),
        ],
    );
    assert_eq!(
        c.submit_proof(&submission()).await.unwrap(),
        SubmitOutcome::Accepted
    );
    assert_eq!(
        c.submit_proof(&submission()).await.unwrap(),
        SubmitOutcome::Refused {
            errcode: errcode::PROOF_FAILURE,
            errmsg: "cannot submit proof twice".into()
        }
    );
    let err = c.submit_proof(&submission()).await.unwrap_err();
    assert!(err.is_transient(), "500 is retried: {err}");
    let err = c.submit_proof(&submission()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Http { status: 503, .. }),
        "{err}"
    );
    assert!(err.is_transient());
    let sent: SubmitProofRequest =
        serde_json::from_value(fake.calls().last().unwrap().body.clone()).unwrap();
    assert_eq!(sent, submission());
}

#[tokio::test]
async fn other_get_task_errors_are_refusals_not_transient() {
    let fake = Fake::start().await;
    let c = client(&fake.base_url());
    fake.script(
        "get_task",
        [Reply::err(errcode::GET_TASK_FAILURE, "prover is blocked")],
    );
    let err = c.get_task().await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("prover is blocked"), "{err}");
}

#[tokio::test]
async fn a_version_refusal_says_so_clearly() {
    let fake = Fake::start().await;
    let c = client(&fake.base_url());
    fake.script(
        "login",
        [Reply::err(
            errcode::JWT,
            "incompatible prover version. please upgrade",
        )],
    );
    let err = c.get_task().await.unwrap_err();
    assert!(matches!(err, ClientError::Login { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("incompatible prover version"), "{text}");
    assert!(text.contains("prover_version"), "{text}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn an_unreachable_coordinator_is_a_transient_error() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = client(&format!("http://{addr}"));
    let err = c.get_task().await.unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err}");
    assert!(err.is_transient());
    let err = c.submit_proof(&submission()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

fn failover_client(bases: &[String]) -> CoordinatorClient {
    CoordinatorClient::with_failover(bases, Duration::from_secs(5), info()).unwrap()
}

fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn an_unreachable_replica_fails_over_to_the_next_and_calls_stay_there() {
    let fake = Fake::start().await;
    let c = failover_client(&[dead_url(), fake.base_url()]);
    assert_eq!(c.get_task().await.unwrap(), None);
    assert_eq!(fake.routes(), ["challenge", "login", "get_task"]);
    assert!(c.current_url().starts_with(&fake.base_url()));
    // The next calls go straight to the live replica (no new login either).
    assert_eq!(
        c.submit_proof(&submission()).await.unwrap(),
        SubmitOutcome::Accepted
    );
    assert_eq!(
        fake.routes(),
        ["challenge", "login", "get_task", "submit_proof"]
    );
}

#[tokio::test]
async fn http_errors_and_internal_errors_move_on_and_the_token_is_renewed_where_refused() {
    let a = Fake::start().await;
    let b = Fake::start().await;
    let c = failover_client(&[a.base_url(), b.base_url()]);
    // A logs the client in, then fails its get_task with HTTP 503: B is asked. B does not know
    // A's token (these fakes share no secret), so the client logs in there and asks again.
    a.script("get_task", [Reply::Http(503)]);
    b.script("get_task", [Reply::task(&task())]);
    assert_eq!(c.get_task().await.unwrap(), Some(task()));
    assert_eq!(a.routes(), ["challenge", "login", "get_task"]);
    assert_eq!(
        b.routes(),
        ["get_task", "challenge", "login", "get_task"],
        "refused token at B, then a login at B"
    );
    // B answers errcode INTERNAL (its storage failed): the submission goes to A, which (restarted
    // with a new secret, say) no longer accepts any earlier token, so the client logs in again.
    a.expire_tokens();
    b.script(
        "submit_proof",
        [Reply::err(errcode::INTERNAL, "store down")],
    );
    assert_eq!(
        c.submit_proof(&submission()).await.unwrap(),
        SubmitOutcome::Accepted
    );
    assert_eq!(b.routes().last(), Some(&"submit_proof"));
    assert_eq!(
        &a.routes()[3..],
        ["submit_proof", "challenge", "login", "submit_proof"]
    );
    assert!(c.current_url().starts_with(&a.base_url()));
}

#[tokio::test]
async fn when_every_replica_fails_the_last_error_is_returned_after_one_round() {
    let a = Fake::start().await;
    let b = Fake::start().await;
    let c = failover_client(&[a.base_url(), b.base_url()]);
    a.script("get_task", [Reply::Http(502)]);
    b.script("get_task", [Reply::err(errcode::INTERNAL, "store down")]);
    // The last replica's INTERNAL is returned as that replica's refusal (transient).
    let err = c.get_task().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Refused { errcode: e, .. } if e == errcode::INTERNAL),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(a.routes().iter().filter(|r| **r == "get_task").count(), 1);
    assert_eq!(
        b.routes().iter().filter(|r| **r == "get_task").count(),
        2,
        "one refused token, one call"
    );
    // Two dead replicas: a transport error, after trying each once.
    let c = failover_client(&[dead_url(), dead_url()]);
    let err = c.submit_proof(&submission()).await.unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err}");
}

/// A get_task reply of `len` bytes: a valid envelope whose errmsg pads it out.
fn padded_reply(len: usize, chunked: bool) -> Reply {
    let head = br#"{"errcode":20004,"errmsg":""#;
    let tail = br#"","data":null}"#;
    let mut body = head.to_vec();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail);
    assert_eq!(body.len(), len);
    Reply::Raw {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        body,
        chunked,
    }
}

#[tokio::test]
async fn a_reply_over_the_limit_is_refused_whether_announced_or_streamed() {
    let fake = Fake::start().await;
    let c = client(&fake.base_url()).with_max_reply_bytes(100_000);
    // At the limit, announced and streamed: read and decoded (errcode 20004: no work).
    fake.script(
        "get_task",
        [
            padded_reply(100_000, false),
            padded_reply(100_000, true),
            padded_reply(100_001, false),
            padded_reply(300_000, true),
        ],
    );
    assert_eq!(c.get_task().await.unwrap(), None);
    assert_eq!(c.get_task().await.unwrap(), None);
    for what in ["announces 100001 bytes", "the reply is larger"] {
        let err = c.get_task().await.unwrap_err();
        assert!(matches!(err, ClientError::Decode { .. }), "{err}");
        assert!(err.is_transient(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(what) && text.contains("100000 bytes"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let fake = Fake::start().await;
    let elsewhere = Fake::start().await;
    let c = client(&fake.base_url());
    fake.script(
        "get_task",
        [Reply::Raw {
            status: 307,
            headers: vec![(
                "location",
                format!("{}/coordinator/v1/get_task", elsewhere.base_url()),
            )],
            body: vec![],
            chunked: false,
        }],
    );
    let err = c.get_task().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Http { status: 307, .. }),
        "{err}"
    );
    assert!(elsewhere.routes().is_empty(), "{:?}", elsewhere.routes());
}

#[tokio::test]
async fn a_coordinators_errmsg_is_cut_and_its_control_characters_escaped() {
    let fake = Fake::start().await;
    let c = client(&fake.base_url());
    let forged = "busy\n2026-12-05T00:00:00Z ERROR prover::daemon: FORGED \u{1b}[31m";
    let long = "é".repeat(10_000);
    fake.script(
        "get_task",
        [
            Reply::err(errcode::GET_TASK_FAILURE, forged),
            Reply::err(errcode::GET_TASK_FAILURE, &long),
        ],
    );
    let ClientError::Refused { errmsg, .. } = c.get_task().await.unwrap_err() else {
        panic!("not a refusal")
    };
    assert!(!errmsg.chars().any(char::is_control), "{errmsg:?}");
    assert!(
        errmsg.starts_with("busy\\n2026") && errmsg.contains("\\u{1b}[31m"),
        "{errmsg}"
    );
    let ClientError::Refused { errmsg, .. } = c.get_task().await.unwrap_err() else {
        panic!("not a refusal")
    };
    let kept = prover::daemon::client::MAX_ERRMSG_CHARS;
    assert!(errmsg.starts_with(&"é".repeat(kept)), "{errmsg}");
    assert!(
        errmsg.ends_with(&format!("({} more characters)", 10_000 - kept)),
        "{errmsg}"
    );
}
