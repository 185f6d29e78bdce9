//! `shadowdiff import`: exit codes (0 something imported, 1 nothing could be, 2 usage or I/O
//! error), the summary of skips by reason, and no binary in what it prints. No server is
//! started: the candidate is a closed port, so each replay is a candidate error, which does not
//! change the exit code.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

const SEPARATOR: &str = "\n🐵🙈🙉\n";

fn run(args: &[&str], data: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .args(args)
        .args(["--candidate", "v2=http://127.0.0.1:9", "--data"])
        .arg(data)
        .output()
        .expect("run shadowdiff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A gzip file with one stored (uncompressed) deflate block per 64 KiB, as any gzip reader
/// reads it.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let blocks: Vec<&[u8]> = data.chunks(0xffff).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    if blocks.is_empty() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[test]
fn import_help_documents_the_exit_codes() {
    for args in [
        &["import", "--help"][..],
        &["import", "goreplay", "--help"],
        &["import", "envoy", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
            .args(args)
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(out.status.code(), Some(0));
        for said in [
            "Exit status: 0 when at least one exchange was imported",
            "1 when nothing could be imported",
            "2 on a usage error or a path that cannot be read",
        ] {
            assert!(help.contains(said), "{args:?} lacks `{said}`: {help}");
        }
    }
}

#[test]
fn import_of_a_missing_path_exits_2_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("recordings/requests_0.gor");
    let missing_text = missing.display().to_string();
    let (code, _, err) = run(&["import", "goreplay", &missing_text], dir.path());
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.matches(&missing_text).count(), 1, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    // A usage error is 2 as well (clap's).
    let (code, _, err) = run(&["import", "goreplay"], dir.path());
    assert_eq!(code, 2, "{err}");
}

#[test]
fn import_exits_1_when_nothing_could_be_imported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An empty file, an empty directory.
    let empty = dir.path().join("empty.gor");
    std::fs::write(&empty, "").unwrap();
    let empty_dir = dir.path().join("none");
    std::fs::create_dir(&empty_dir).unwrap();
    for path in [&empty, &empty_dir] {
        let (code, out, err) = run(&["import", "goreplay", path.to_str().unwrap()], &data);
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            err.contains("nothing imported") && err.contains("no records"),
            "{err}"
        );
    }
    // Every record skipped: a file cut inside its only record, a response without its request.
    let cut = dir.path().join("cut.gor");
    std::fs::write(
        &cut,
        format!(
            "2 a1 1593687438161511000 8093000\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok{SEPARATOR}\
             1 b2 1593687438200000000 0\nPOST /orders HTTP/1.1\r\nContent-Length: 20\r\n\r\n{{\"sku\": \"A"
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["import", "goreplay", cut.to_str().unwrap()], &data);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("skipped 2: truncated 1, no request 1"),
        "{err}"
    );
    // Envoy: a streamed trace of which only the response segments were read.
    let tap = dir.path().join("tap_7.json");
    std::fs::write(
        &tap,
        r#"{"http_streamed_trace_segment": {"trace_id": "7",
            "response_headers": {"headers": [{"key": ":status", "value": "200"}]}}}"#,
    )
    .unwrap();
    let (code, out, err) = run(&["import", "envoy", tap.to_str().unwrap()], &data);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("skipped 1: no request 1"), "{err}");
}

#[test]
fn import_exits_0_when_an_exchange_was_imported_and_counts_skips_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = dir.path().join("recordings");
    std::fs::create_dir(&recordings).unwrap();
    // requests_0.gor.gz: CRLF line ends (a Windows checkout), gzipped as GoReplay does for a
    // `.gz` name, cut inside its last record's separator.
    let lf = format!(
        "1 c3d6 1593687438153418000 0\nGET /api/v1/orders/7 HTTP/1.1\r\nHost: shop\r\n\r\n{SEPARATOR}\
         2 c3d6 1593687438161511000 8093000\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{{\"id\": 7}}{SEPARATOR}\
         2 ffff 1593687438161511000 8093000\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok{SEPARATOR}\
         1 d4e7 1593687438200000000 0\nGET /api/v1/orders/8 HTTP/1.1\r\nHost: shop\r\n\r\n\n🐵"
    );
    let crlf = lf.replace("\r\n", "\n").replace('\n', "\r\n");
    std::fs::write(recordings.join("requests_0.gor.gz"), gzip(crlf.as_bytes())).unwrap();
    // Binary that is not GoReplay at all: skipped, and not printed raw.
    let mut junk = b"\x7fELF\x02\x01\x01\0\x1b[2J\x1b]0;title\x07".to_vec();
    junk.extend((0..=255u8).cycle().take(4096));
    std::fs::write(recordings.join("junk.gor"), junk).unwrap();
    // Not a recording's name: not read.
    std::fs::write(recordings.join("notes.txt"), "x").unwrap();
    let (code, out, err) = run(
        &["import", "goreplay", recordings.to_str().unwrap()],
        &dir.path().join("data"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("imported 1 goreplay exchanges (3 records skipped)"),
        "{out}"
    );
    assert!(out.contains("candidate errors 1"), "{out}");
    assert!(
        out.contains("skipped 3: bad meta line 1, truncated 1, no request 1"),
        "{out}"
    );
    for text in [&out, &err] {
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "control characters printed: {text:?}"
        );
    }
    assert!(err.contains("junk.gor record 1: bad meta line"), "{err}");
}
