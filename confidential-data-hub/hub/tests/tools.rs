//! The command-line tools against the real daemons: `cdh-tool` drives every CDH method of a
//! running `confidential-data-hub`, `aa-client` every method of a running
//! `attestation-agent` (sample attester, test KBS for tokens).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use common::*;
use ocicrypt_rs::keywrap::keyprovider::{AnnotationPacket, WrapType};
use testkit::kbs::{KbsConfig, TestKbs};

const KEK: [u8; 32] = [0x42; 32];
const OPTS: &[u8] = br#"{"symkey":"c3ltbWV0cmljIGtleSBvZiAzMiBieXRlcyEhISEhISE=","digest":"sha256:00","cipheroptions":{"nonce":"AAAAAAAAAAAAAAAAAAAAAA=="}}"#;

fn stdout_line(out: &[u8]) -> String {
    String::from_utf8(out.to_vec())
        .unwrap()
        .trim_end()
        .to_string()
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Runs `cdh-tool` expecting failure; returns its stderr.
fn tool_fails(args: &[&str]) -> String {
    let out = run(CDH_TOOL, args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
    assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdh_tool_drives_every_cdh_method() {
    let guest = Guest::new();
    let keys = guest.path("keys");
    run_ok(
        SECRET,
        &[
            "keygen",
            "--kid",
            "tool-key",
            "--output-dir",
            path_str(&keys),
        ],
    );
    std::fs::copy(
        keys.join("public.jwk"),
        guest.sealed_secret_dir().join("tool-key"),
    )
    .unwrap();
    guest.set_resources(&[
        ("default/key/1", &KEK),
        ("default/app/secret", b"\x00tool secret\xff"),
    ]);
    let cdh = guest.start_cdh("");
    let socket = guest.cdh_addr();
    let base = ["--socket", socket.as_str(), "--timeout", "10"];
    let with =
        |rest: &[&str]| -> Vec<String> { base.iter().chain(rest).map(|s| s.to_string()).collect() };
    let run_tool = |rest: &[&str]| {
        let args = with(rest);
        run_ok(
            CDH_TOOL,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };

    // GetResource
    let out = run_tool(&[
        "get-resource",
        "--resource-uri",
        "kbs:///default/app/secret",
    ]);
    assert_eq!(stdout_line(&out), STANDARD.encode(b"\x00tool secret\xff"));
    let out = run_tool(&["--raw", "get-resource", "-r", "kbs:///default/app/secret"]);
    assert_eq!(out, b"\x00tool secret\xff");

    // UnsealSecret
    let sealed = run_ok(
        SECRET,
        &[
            "seal",
            "--signing-kid",
            "tool-key",
            "--signing-jwk-path",
            path_str(&keys.join("private.jwk")),
            "vault",
            "--resource-uri",
            "kbs:///default/app/secret",
            "--provider",
            "kbs",
        ],
    );
    std::fs::write(guest.path("sealed"), &sealed).unwrap();
    let out = run_tool(&[
        "unseal-secret",
        "--secret-path",
        path_str(&guest.path("sealed")),
    ]);
    assert_eq!(stdout_line(&out), STANDARD.encode(b"\x00tool secret\xff"));

    // UnWrapKey, from a packet and from a whole keyprovider request
    let packet = AnnotationPacket::seal("kbs:///default/key/1", &KEK, OPTS, WrapType::A256Gcm)
        .unwrap()
        .to_json()
        .unwrap();
    std::fs::write(guest.path("packet.json"), &packet).unwrap();
    let out = run_tool(&[
        "unwrap-key",
        "--annotation-path",
        path_str(&guest.path("packet.json")),
    ]);
    assert_eq!(STANDARD.decode(stdout_line(&out)).unwrap(), OPTS);
    std::fs::write(
        guest.path("request.json"),
        confidential_data_hub::unwrap_request_for_packet(&packet),
    )
    .unwrap();
    let out = run_tool(&[
        "--raw",
        "unwrap-key",
        "--request",
        "--annotation-path",
        path_str(&guest.path("request.json")),
    ]);
    let answer = String::from_utf8(out).unwrap();
    assert!(
        answer.starts_with(r#"{"keyunwrapresults":{"optsdata":[123,34,115"#),
        "{answer}"
    );

    // PullImage's answer comes through (tests/pull_image.rs pulls real images with it)
    let stderr = tool_fails(
        &with(&[
            "pull-image",
            "--image-url",
            "registry.example/app:1",
            "--bundle-path",
            "relative/bundle",
        ])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    assert!(
        stderr.contains("PullImage failed with INVALID_ARGUMENT"),
        "{stderr}"
    );
    assert!(stderr.contains("not an absolute path"), "{stderr}");
    // SecureMount: a device id that names nothing, an option the hub does not know
    let secure_mount = |volume: &str, options: &[&str], mount_point: &str| {
        let mut args = vec!["secure-mount", "--volume-type", volume];
        for option in options {
            args.extend(["--option", option]);
        }
        args.extend(["--flag", "ro", "--mount-point", mount_point]);
        with(&args)
    };
    let mount_point = guest.path("volumes/data");
    let mount_point = path_str(&mount_point);
    let stderr = tool_fails(&as_strs(&secure_mount(
        "block-device",
        &[
            "deviceId=4095:1048575",
            "sourceType=empty",
            "encryptionType=luks2",
        ],
        mount_point,
    )));
    assert!(
        stderr.contains("SecureMount failed with NOT_FOUND: [CDH] [ERROR]: deviceId 4095:1048575 names no block device"),
        "{stderr}"
    );
    let stderr = tool_fails(&as_strs(&secure_mount(
        "block-device",
        &[
            "deviceId=7:0",
            "sourceType=empty",
            "encryptionType=luks2",
            "keys=kbs:///default/key/1",
        ],
        mount_point,
    )));
    assert!(
        stderr.contains(
            "SecureMount failed with INVALID_ARGUMENT: [CDH] [ERROR]: unknown option `keys`"
        ),
        "{stderr}"
    );
    // a real loop device: mounted where the kernel has device-mapper, else refused
    // before anything is written
    if testkit::loopdev::is_root() {
        let disk = testkit::loopdev::LoopDevice::new(guest.dir.path(), 16).unwrap();
        let device_id = format!("deviceId={}", disk.id().unwrap());
        let args = secure_mount(
            "block-device",
            &[
                &device_id,
                "sourceType=empty",
                "encryptionType=luks2",
                "key=kbs:///default/key/1",
            ],
            mount_point,
        );
        if testkit::loopdev::kernel_has_device_mapper() {
            let out = run_ok(CDH_TOOL, &as_strs(&args));
            assert_eq!(stdout_line(&out), format!("mounted at {mount_point}"));
            let mapped = std::fs::read_link(mount_point).unwrap();
            assert!(mapped.starts_with("/dev/mapper"), "{mapped:?}");
            let name = mapped.file_name().unwrap().to_str().unwrap().to_string();
            run_ok("cryptsetup", &["close", &name]);
        } else {
            let stderr = tool_fails(&as_strs(&args));
            assert!(
                stderr.contains("SecureMount failed with FAILED_PRECONDITION: [CDH] [ERROR]: device-mapper is not available (/proc/misc lists no device-mapper)"),
                "{stderr}"
            );
            assert!(!guest.path("volumes").exists());
        }
    }

    // errors carry the hub's code and message
    let stderr = tool_fails(
        &with(&["get-resource", "-r", "kbs:///default/app/none"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(stderr.contains("GetResource failed with NOT_FOUND: [CDH] [ERROR]: getting resource failed: resource kbs:///default/app/none not found"), "{stderr}");
    std::fs::write(guest.path("bad-sealed"), "sealed.a.b").unwrap();
    let stderr = tool_fails(
        &with(&["unseal-secret", "-s", path_str(&guest.path("bad-sealed"))])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(
        stderr.contains("UnsealSecret failed with INVALID_ARGUMENT"),
        "{stderr}"
    );
    let stderr = tool_fails(&[
        "--socket",
        "unix:///nonexistent/cdh.sock",
        "get-resource",
        "-r",
        "kbs:///a/b/c",
    ]);
    assert!(
        stderr.contains("cannot connect to unix:///nonexistent/cdh.sock"),
        "{stderr}"
    );
    // a usage error is exit code 2, before anything is sent
    let out = run(
        CDH_TOOL,
        &with(&[
            "secure-mount",
            "--volume-type",
            "x",
            "--option",
            "novalue",
            "--mount-point",
            "/m",
        ])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not KEY=VALUE"),
        "{out:?}"
    );

    assert!(cdh.stop().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aa_client_drives_every_aa_method() {
    let kbs = TestKbs::start(KbsConfig::default()).await.unwrap();
    let guest = Guest::new();
    let aa_sock = guest.aa_sock();
    let aa = guest.start_aa(&format!("[token_configs.kbs]\nurl = \"{}\"\n", kbs.url()));
    let socket = format!("unix://{}", aa_sock.display());
    let client = |rest: &[&str]| {
        let mut args = vec!["--socket", socket.as_str()];
        args.extend_from_slice(rest);
        run(AA_CLIENT, &args)
    };
    let ok = |rest: &[&str]| {
        let out = client(rest);
        assert!(out.status.success(), "{rest:?}: {out:?}");
        out.stdout
    };

    assert_eq!(stdout_line(&ok(&["get-tee-type"])), "sample");

    let evidence: serde_json::Value =
        serde_json::from_slice(&ok(&["get-evidence", "--runtime-data", "hello"])).unwrap();
    assert_eq!(
        evidence["report_data"],
        STANDARD.encode("hello"),
        "{evidence}"
    );

    // the sample platform has no additional devices
    assert!(ok(&["get-additional-evidence", "--runtime-data", "hello"]).is_empty());
    assert!(ok(&["get-additional-tees"]).is_empty());

    let token: serde_json::Value =
        serde_json::from_slice(&ok(&["get-token", "--token-type", "kbs"])).unwrap();
    assert!(
        token["token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        "{token}"
    );
    assert_eq!(kbs.counters().auth, 1);

    // the eventlog is not enabled in this configuration: AA says so, it is not an error
    let result = ok(&[
        "extend-runtime-measurement",
        "--domain",
        "github.com/confidential-containers",
        "--operation",
        "PullImage",
        "--content",
        "{}",
    ]);
    let result = stdout_line(&result);
    assert!(
        ["OK", "NOT_ENABLED", "NOT_SUPPORTED"].contains(&result.as_str()),
        "{result}"
    );

    // the sample platform cannot bind initdata: AA's code and message come through
    let out = client(&["bind-init-data", "--digest", "00112233"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("BindInitData failed with FAILED_PRECONDITION"),
        "{stderr}"
    );
    let out = client(&["bind-init-data", "--digest", "xyz"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--digest must be hex"));

    let out = client(&["get-token", "--token-type", "nonsense"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("GetToken failed with"),
        "{out:?}"
    );

    assert!(aa.stop().unwrap().success());
}

/// Each tool's `--help` introduces that tool, not the hub.
#[test]
fn every_tool_says_what_it_is() {
    for (bin, says) in [
        (AA_CLIENT, "method of the attestation agent"),
        (CDH_TOOL, "method of the confidential data hub"),
        (SECRET, "sealed secrets"),
        (CDH, "Confidential Data Hub"),
    ] {
        let out = run(bin, &["--help"]);
        assert!(out.status.success(), "{bin}: {out:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        let first = help.lines().next().unwrap_or_default();
        assert!(first.contains(says), "{bin}: {first}");
        if bin != CDH {
            assert!(
                !first.starts_with("Confidential Data Hub"),
                "{bin}: {first}"
            );
        }
    }
}
