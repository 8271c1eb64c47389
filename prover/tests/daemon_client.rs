//! The coordinator client against a recording fake of the HTTP API: login, "no work", re-login
//! once on an expired token, refusal classification, unreachable coordinator.

mod fake;

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
