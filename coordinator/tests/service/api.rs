//! The HTTP API over loopback with a real redb file: login, bad input of every documented kind,
//! invalid-proof blocking, admin routes, health and metrics.

use crate::common;

use common::{config, start, Client};
use coordinator::auth::{ChallengeClaims, LoginClaims, Tokens};
use coordinator::{now_ms, TaskState};
use prover_core::wire::errcode;

fn claims(public_key: &str, exp: u64) -> LoginClaims {
    LoginClaims {
        public_key: public_key.into(),
        prover_name: "p".into(),
        prover_version: "0.1.0".into(),
        prover_types: vec![1],
        task_types: vec![1],
        exp,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_success_and_every_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.min_prover_version = "0.1.0".into();
    let secret = cfg.auth.secret.clone();
    let c = start(cfg).await;
    let mut p = Client::new(&c, "alice", 1);

    // Success, and the token works.
    p.login().await;
    assert_eq!(p.get_task_env(&[1]).await.errcode, errcode::NO_TASK);

    // A replayed challenge.
    let ch = p.challenge().await;
    let req = p.login_request(&ch, "0.1.0");
    assert_eq!(p.send_login(&ch, &req).await.errcode, 0);
    let again = p.send_login(&ch, &req).await;
    assert_eq!(again.errcode, errcode::JWT);
    assert!(again.errmsg.contains("already used"), "{}", again.errmsg);

    // The Authorization header must carry the message's challenge.
    let ch = p.challenge().await;
    let other = p.challenge().await;
    let req = p.login_request(&ch, "0.1.0");
    let env = p.send_login(&other, &req).await;
    assert_eq!(env.errcode, errcode::JWT);
    assert!(env.errmsg.contains("Authorization"), "{}", env.errmsg);

    // A wrong signature: signed by another key, claiming alice's public key.
    let mallory = Client::new(&c, "alice", 2);
    let mut forged = mallory.login_request(&ch, "0.1.0");
    forged.public_key = p.public_key();
    let env = p.send_login(&ch, &forged).await;
    assert_eq!(env.errcode, errcode::INVALID_PARAMETER);
    assert!(env.errmsg.contains("signature"), "{}", env.errmsg);
    // The refused attempt did not burn the challenge.
    assert_eq!(p.send_login(&ch, &req).await.errcode, 0);

    // A challenge signed with another secret, and an expired one.
    let foreign = Tokens::new("another-secret-entirely-0123456789")
        .issue(&ChallengeClaims {
            random: "x".into(),
            exp: now_ms() / 1000 + 600,
        })
        .expect("token");
    let env = p
        .send_login(&foreign, &p.login_request(&foreign, "0.1.0"))
        .await;
    assert_eq!(env.errcode, errcode::JWT);
    let expired = Tokens::new(&secret)
        .issue(&ChallengeClaims {
            random: "y".into(),
            exp: now_ms() / 1000 - 10,
        })
        .expect("token");
    let env = p
        .send_login(&expired, &p.login_request(&expired, "0.1.0"))
        .await;
    assert_eq!(env.errcode, errcode::JWT_EXPIRED, "{}", env.errmsg);

    // Version below the minimum; a higher one with a suffix passes.
    let ch = p.challenge().await;
    let env = p.send_login(&ch, &p.login_request(&ch, "0.0.9")).await;
    assert_eq!(env.errcode, errcode::INVALID_PARAMETER);
    assert!(
        env.errmsg
            .contains("incompatible prover version. please upgrade"),
        "{}",
        env.errmsg
    );
    let ch = p.challenge().await;
    assert_eq!(
        p.send_login(&ch, &p.login_request(&ch, "v0.2.0-rc1"))
            .await
            .errcode,
        0
    );

    // A vk the coordinator does not accept, and a chunk prover without the chunk vk.
    for vks in [vec!["AAAA".to_string()], vec![]] {
        let mut q = Client::new(&c, "bob", 3);
        q.vks = vks;
        let ch = q.challenge().await;
        let env = q.send_login(&ch, &q.login_request(&ch, "0.1.0")).await;
        assert_eq!(env.errcode, errcode::INVALID_PARAMETER);
        assert!(env.errmsg.contains("incompatible vk"), "{}", env.errmsg);
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_errcode_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.max_body_bytes = 16 * 1024;
    cfg.max_invalid_proofs = 2;
    let secret = cfg.auth.secret.clone();
    let c = start(cfg).await;
    let ids = c.enqueue_random(4, 7).await.expect("enqueue");
    assert_eq!(ids, ["chunk-0", "chunk-1"]);
    let mut a = Client::new(&c, "alice", 1);
    let mut b = Client::new(&c, "bob", 2);
    a.login().await;
    b.login().await;
    let token = a.token.clone();

    // Malformed JSON and missing fields on every POST route (login: with a valid challenge token,
    // since no body is read before the token is checked).
    let challenge = a.challenge().await;
    for path in ["login", "get_task", "submit_proof"] {
        let path = format!("/coordinator/v1/{path}");
        let bearer = if path.ends_with("login") {
            Some(challenge.as_str())
        } else {
            Some(token.as_str())
        };
        let env = a.post_raw(&path, bearer, b"{not json".to_vec()).await;
        assert_eq!(env.errcode, errcode::INVALID_PARAMETER, "{path}");
        assert!(
            env.errmsg.contains("invalid request JSON"),
            "{}",
            env.errmsg
        );
        let env = a.post_raw(&path, bearer, b"{}".to_vec()).await;
        assert_eq!(env.errcode, errcode::INVALID_PARAMETER, "{path}");
        assert!(env.errmsg.contains("missing field"), "{}", env.errmsg);
    }
    // Oversized body (get_task takes at most 64 KiB): still an envelope.
    let env = a
        .post_raw(
            "/coordinator/v1/get_task",
            Some(&token),
            vec![b' '; 64 * 1024 + 1],
        )
        .await;
    assert_eq!(env.errcode, errcode::INVALID_PARAMETER);
    assert!(env.errmsg.contains("too large"), "{}", env.errmsg);

    // Missing, forged, expired and wrong-kind tokens.
    let body = br#"{"task_types":[1]}"#.to_vec();
    let env = a
        .post_raw("/coordinator/v1/get_task", None, body.clone())
        .await;
    assert_eq!(env.errcode, errcode::JWT);
    let forged = Tokens::new("another-secret-entirely-0123456789")
        .issue(&claims(&a.public_key(), now_ms() / 1000 + 600))
        .expect("token");
    let env = a
        .post_raw("/coordinator/v1/get_task", Some(&forged), body.clone())
        .await;
    assert_eq!(env.errcode, errcode::JWT);
    let expired = Tokens::new(&secret)
        .issue(&claims(&a.public_key(), now_ms() / 1000 - 5))
        .expect("token");
    let env = a
        .post_raw("/coordinator/v1/get_task", Some(&expired), body.clone())
        .await;
    assert_eq!(env.errcode, errcode::JWT_EXPIRED);
    let challenge = a.challenge().await;
    let env = a
        .post_raw("/coordinator/v1/get_task", Some(&challenge), body.clone())
        .await;
    assert_eq!(env.errcode, errcode::JWT);

    // Submissions: unknown uuid, someone else's task, garbage proof, second submission.
    let ta = a.get_task().await.expect("task for alice");
    let tb = b.get_task().await.expect("task for bob");
    let mut wrong = ta.clone();
    wrong.uuid = "no-such-uuid".into();
    let env = a.submit_proof_text(&wrong, "{}".into()).await;
    assert_eq!(env.errcode, errcode::PROOF_FAILURE);
    assert!(env.errmsg.contains("no assignment"), "{}", env.errmsg);
    let env = a.submit_proof_text(&tb, "{}".into()).await;
    assert_eq!(env.errcode, errcode::PROOF_FAILURE);
    assert!(env.errmsg.contains("another prover"), "{}", env.errmsg);
    let garbage = serde_json::json!({
        "version": 1, "task_id": ta.task_id,
        "spec": {"circuit": "chunk", "config": {"k": 13, "tree_depth": 4, "max_txs": 2}},
        "vk_digest": c.accepted_vks().chunk,
        "instances": ["0x0000000000000000000000000000000000000000000000000000000000000001",
                      "0x0000000000000000000000000000000000000000000000000000000000000002",
                      "0x0000000000000000000000000000000000000000000000000000000000000003"],
        "proof": "AAECAwQFBgc=",
        "meta": {"engine": "reference", "backend": "cpu", "prove_ms": 1}
    });
    let env = a.submit_proof_text(&ta, garbage.to_string()).await;
    assert_eq!(env.errcode, errcode::PROOF_FAILURE);
    assert!(env.errmsg.contains("invalid proof"), "{}", env.errmsg);
    let env = a.submit_proof_text(&ta, garbage.to_string()).await;
    assert_eq!(env.errcode, errcode::PROOF_FAILURE);
    assert!(
        env.errmsg.contains("cannot submit proof twice"),
        "{}",
        env.errmsg
    );

    // Bob's task: not JSON at all as the proof; that is his first invalid proof.
    let env = b.submit_proof_text(&tb, "garbage".into()).await;
    assert_eq!(env.errcode, errcode::PROOF_FAILURE);
    assert!(
        env.errmsg.contains("malformed proof JSON"),
        "{}",
        env.errmsg
    );

    // Alice's second invalid proof blocks her (cap 2). She failed on chunk-0 and bob is
    // available, so she gets chunk-1, which bob failed on.
    let ta2 = a.get_task().await.expect("another task for alice");
    assert_eq!(ta2.task_id, tb.task_id);
    let env = a.submit_proof_text(&ta2, garbage.to_string()).await;
    assert_eq!(env.errcode, errcode::PROOF_FAILURE);
    assert!(env.errmsg.contains("blocked"), "{}", env.errmsg);
    let env = a.get_task_env(&[1]).await;
    assert_eq!(env.errcode, errcode::GET_TASK_FAILURE);
    assert!(env.errmsg.contains("blocked"), "{}", env.errmsg);
    let status = c.status().await.expect("status");
    assert_eq!(status.blocked, vec![a.public_key()]);
    assert_eq!(status.count("chunk", TaskState::Pending), 2);

    // Admin routes: refused without the token; unblock with it.
    let admin = c.config().admin_token.clone();
    let unblock =
        serde_json::to_vec(&serde_json::json!({"public_key": a.public_key()})).expect("json");
    let env = a
        .post_raw("/admin/v1/unblock", Some("wrong"), unblock.clone())
        .await;
    assert_eq!(env.errcode, errcode::JWT);
    let env = a.post_raw("/admin/v1/unblock", Some(&admin), unblock).await;
    assert_eq!(env.errcode, 0, "{}", env.errmsg);
    assert_eq!(env.data, Some(serde_json::json!({"was_blocked": true})));
    // Unblocked: no longer refused. Alice has no verified proof and failed both pending tasks,
    // so neither comes back to her (the unproven-key rule); "no task", not "blocked".
    let env = a.get_task_env(&[1]).await;
    assert_eq!(env.errcode, errcode::NO_TASK, "{}", env.errmsg);
    c.block(&b.public_key()).await.expect("block");
    assert_eq!(
        b.get_task_env(&[1]).await.errcode,
        errcode::GET_TASK_FAILURE
    );
    // Admin enqueue: a transfer from a missing account is refused with the reason; random ones work.
    let env = a
        .post_raw(
            "/admin/v1/enqueue",
            Some(&admin),
            br#"{"transfers":[{"from":15,"to":1,"amount":1,"nonce":0}]}"#.to_vec(),
        )
        .await;
    assert_eq!(env.errcode, errcode::INVALID_PARAMETER);
    assert!(
        env.errmsg.contains("account 15 does not exist"),
        "{}",
        env.errmsg
    );
    let env = a
        .post_raw(
            "/admin/v1/enqueue",
            Some(&admin),
            br#"{"random":3,"seed":1}"#.to_vec(),
        )
        .await;
    assert_eq!(env.errcode, 0, "{}", env.errmsg);
    assert_eq!(
        env.data,
        Some(serde_json::json!({"task_ids": ["chunk-2", "chunk-3"]}))
    );

    // Still serving: health, challenge, metrics, unknown routes.
    let health = a.get_json("/health").await;
    assert_eq!(health["errcode"], 0);
    assert_eq!(health["data"]["tasks"], 4);
    a.challenge().await;
    let metrics = a.get_text("/metrics").await;
    assert!(
        metrics.contains("coordinator_tasks{type=\"chunk\",state=\"pending\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("coordinator_submissions_total{result=\"invalid\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("coordinator_verify_seconds"), "{metrics}");
    let env = a.post_raw("/nope", None, vec![]).await;
    assert_eq!(env.errcode, errcode::INVALID_PARAMETER);
    // Every routed request is timed by endpoint; an unrouted path adds no label.
    let metrics = a.get_text("/metrics").await;
    let timed = |endpoint: &str| -> u64 {
        let prefix = format!("coordinator_request_seconds_count{{endpoint=\"{endpoint}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix}in {metrics}"))
            .parse()
            .expect("a count")
    };
    assert!(timed("/coordinator/v1/submit_proof") >= 3, "{metrics}");
    assert!(timed("/coordinator/v1/get_task") >= 1, "{metrics}");
    assert_eq!(timed("/metrics"), 1, "the first /metrics call is timed");
    assert!(!metrics.contains("/nope"), "{metrics}");
    c.shutdown().await;
}

#[test]
fn the_example_config_parses_and_refuses_its_placeholders() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("coordinator.json");
    let mut cfg = coordinator::CoordinatorConfig::from_file(&path).expect("example config");
    // As shipped it must not start: its secrets are placeholders.
    let e = cfg
        .validate()
        .expect_err("placeholder secret refused")
        .to_string();
    assert!(
        e.contains("auth.secret") && e.contains("openssl rand -hex 32"),
        "{e}"
    );
    cfg.auth.secret = coordinator::random_secret();
    let e = cfg
        .validate()
        .expect_err("placeholder admin token refused")
        .to_string();
    assert!(
        e.contains("admin_token") && e.contains("placeholder"),
        "{e}"
    );
    cfg.admin_token = "short-token".into();
    let e = cfg
        .validate()
        .expect_err("short admin token refused")
        .to_string();
    assert!(e.contains("at least 16 characters"), "{e}");
    cfg.admin_token = String::new();
    cfg.validate().expect("no admin API is fine");
    cfg.admin_token = coordinator::random_secret();
    cfg.validate().expect("valid with real secrets");
    cfg.min_prover_version = "1.99999999999999999999999".into();
    let e = cfg
        .validate()
        .expect_err("overflowing version refused")
        .to_string();
    assert!(e.contains("min_prover_version"), "{e}");
    cfg.min_prover_version = "0.1.0".into();
    assert_eq!(cfg.database_pool_size, 8, "the default pool");
    for bad in [0, coordinator::config::MAX_POOL_SIZE + 1] {
        cfg.database_pool_size = bad;
        let e = cfg.validate().expect_err("pool size refused").to_string();
        assert!(e.contains(&format!("database_pool_size {bad}")), "{e}");
    }
    cfg.database_pool_size = 1;
    cfg.validate().expect("one connection is enough");
    assert_eq!(cfg.chunk_timeout_sec, 180);
    assert!(cfg.batch_enabled().is_some());
    let err =
        serde_json::from_str::<coordinator::CoordinatorConfig>(r#"{"listen": "x", "bogus": 1}"#)
            .expect_err("unknown key refused");
    assert!(err.to_string().contains("unknown field"), "{err}");
}
