//! The login signature, pinned against independent implementations: a hand-written RLP encoder,
//! tiny-keccak for keccak256, and libsecp256k1 (the `secp256k1` crate) for the RFC 6979 signature.

use prover::login::{message_hash, rlp_encode, sign_login, verify_login, LoginError};
use prover::wire::LoginMessage;
use secp256k1::{Message, Secp256k1, SecretKey};
use tiny_keccak::{Hasher, Keccak};

const KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

fn message() -> LoginMessage {
    LoginMessage {
        challenge: "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3MDAwMDAwMDAsInJhbmRvbSI6IkFBQUEifQ.c2lnbmF0dXJl"
            .into(),
        prover_version: "v0.1.0-pnode".into(),
        prover_name: "worker-0".into(),
        prover_provider_type: 1,
        prover_types: vec![1, 2],
        vks: vec!["q83vEjRWeJA=".into(), "AAECAwQFBgc=".into()],
    }
}

/// RLP written from the spec: a byte string, or a list of already-encoded items.
fn rlp_bytes(b: &[u8]) -> Vec<u8> {
    match b.len() {
        1 if b[0] < 0x80 => b.to_vec(),
        n if n <= 55 => [vec![0x80 + n as u8], b.to_vec()].concat(),
        n => {
            let len = (n as u64)
                .to_be_bytes()
                .into_iter()
                .skip_while(|x| *x == 0)
                .collect::<Vec<u8>>();
            [vec![0xb7 + len.len() as u8], len, b.to_vec()].concat()
        }
    }
}

fn rlp_list(items: &[Vec<u8>]) -> Vec<u8> {
    let payload = items.concat();
    match payload.len() {
        n if n <= 55 => [vec![0xc0 + n as u8], payload].concat(),
        n => {
            let len = (n as u64)
                .to_be_bytes()
                .into_iter()
                .skip_while(|x| *x == 0)
                .collect::<Vec<u8>>();
            [vec![0xf7 + len.len() as u8], len, payload].concat()
        }
    }
}

fn keccak(data: &[u8]) -> [u8; 32] {
    let mut k = Keccak::v256();
    k.update(data);
    let mut out = [0u8; 32];
    k.finalize(&mut out);
    out
}

#[test]
fn rlp_matches_go_encoding() {
    let m = message();
    let uint = |v: u8| if v == 0 { vec![0x80] } else { rlp_bytes(&[v]) };
    let expected = rlp_list(&[
        rlp_bytes(m.challenge.as_bytes()),
        rlp_bytes(m.prover_version.as_bytes()),
        rlp_bytes(m.prover_name.as_bytes()),
        uint(m.prover_provider_type),
        rlp_bytes(&m.prover_types), // []uint8 is a byte string in Go's rlp
        rlp_list(
            &m.vks
                .iter()
                .map(|v| rlp_bytes(v.as_bytes()))
                .collect::<Vec<_>>(),
        ),
    ]);
    assert_eq!(rlp_encode(&m), expected);
    // A tiny message, byte for byte: prover_types [1] is the single byte 0x01, provider type 0 is 0x80.
    let tiny = LoginMessage {
        challenge: "c".into(),
        prover_version: "v".into(),
        prover_name: "n".into(),
        prover_provider_type: 0,
        prover_types: vec![1],
        vks: vec![],
    };
    // c6: list of 6 bytes; 63 "c", 76 "v", 6e "n"; 80: integer 0; 01: byte string [1]; c0: empty list.
    assert_eq!(hex::encode(rlp_encode(&tiny)), "c663766e8001c0");
    assert_eq!(message_hash(&m), keccak(&expected));
}

#[test]
fn signature_is_pinned_to_libsecp256k1() {
    let m = message();
    let key = prover::login::key_from_hex(KEY).unwrap();
    let request = sign_login(&key, m.clone()).unwrap();

    let secp = Secp256k1::new();
    let sk = SecretKey::from_slice(&hex::decode(KEY).unwrap()).unwrap();
    let hash = keccak(&rlp_encode(&m));
    let (recid, compact) = secp
        .sign_ecdsa_recoverable(&Message::from_digest(hash), &sk)
        .serialize_compact();
    let expected = format!("0x{}{:02x}", hex::encode(compact), recid.to_i32());
    assert_eq!(request.signature, expected);
    assert_eq!(
        request.public_key,
        hex::encode(sk.public_key(&secp).serialize())
    );
    assert_eq!(request.public_key.len(), 66);
    verify_login(&request).expect("own signature verifies");
}

#[test]
fn tampered_logins_are_rejected() {
    let key = prover::login::key_from_hex(KEY).unwrap();
    let request = sign_login(&key, message()).unwrap();

    let mut r = request.clone();
    r.message.prover_types = vec![1];
    assert_eq!(verify_login(&r), Err(LoginError::Mismatch));

    let other = prover::login::key_from_hex(&"11".repeat(32)).unwrap();
    let mut r = request.clone();
    r.public_key = prover::login::public_key_hex(&other);
    assert_eq!(verify_login(&r), Err(LoginError::Mismatch));

    let mut r = request.clone();
    r.signature = r.signature.trim_start_matches("0x").to_string();
    assert!(matches!(
        verify_login(&r),
        Err(LoginError::SignatureFormat(_))
    ));
    let mut r = request.clone();
    r.signature.replace_range(r.signature.len() - 2.., "1b"); // v = 27 (Ethereum style) is refused
    assert!(matches!(
        verify_login(&r),
        Err(LoginError::SignatureFormat(_))
    ));
    let mut r = request;
    r.public_key = "02".to_string() + &"00".repeat(32);
    assert!(matches!(verify_login(&r), Err(LoginError::PublicKey(_))));
    assert!(matches!(
        prover::login::key_from_hex("zz"),
        Err(LoginError::Key(_))
    ));
}

#[test]
fn cli_prints_the_same_request() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("worker-0.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    for key_args in [
        ["--key-hex", KEY],
        ["--key-file", key_file.to_str().unwrap()],
    ] {
        sign_login_cli(&key_args);
    }
    // Neither, or both: refused by the argument parser.
    for key_args in [
        &[][..],
        &["--key-hex", KEY, "--key-file", key_file.to_str().unwrap()][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_prover"))
            .arg("sign-login")
            .args(key_args)
            .args([
                "--challenge",
                "c",
                "--prover-name",
                "n",
                "--prover-version",
                "v",
            ])
            .args(["--prover-types", "1"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--key-hex") && err.contains("--key-file"),
            "{err}"
        );
    }
}

fn sign_login_cli(key_args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prover"))
        .arg("sign-login")
        .args(key_args)
        .args(["--challenge", &message().challenge])
        .args([
            "--prover-name",
            "worker-0",
            "--prover-version",
            "v0.1.0-pnode",
            "--prover-types",
            "1,2",
        ])
        .args(["--vks", "q83vEjRWeJA=,AAECAwQFBgc=", "--provider-type", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: prover::wire::LoginRequest = serde_json::from_slice(&out.stdout).unwrap();
    let key = prover::login::key_from_hex(KEY).unwrap();
    assert_eq!(printed, sign_login(&key, message()).unwrap());
}
