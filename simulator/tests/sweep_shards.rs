//! A sweep split into shards (as a Kubernetes Indexed Job runs it,
//! `simulator/deploy/sweep-job.yaml`) and merged gives exactly the unsharded sweep: the
//! `sharedlb-sim` binary run as N + 2 processes.

use std::path::{Path, PathBuf};
use std::process::Command;

const SHARDS: usize = 3;

fn sim(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_sharedlb-sim"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sharedlb-sim {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("sharedlb-sweep-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The rows of a JSON Lines file, parsed, in (point, run) order.
fn rows(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    rows.sort_by_key(|r| (r["point"].as_u64().unwrap(), r["run"].as_u64().unwrap()));
    rows
}

#[test]
fn shards_merged_equal_the_unsharded_sweep() {
    let dir = tmpdir();
    // The built-in scenario, two simulated days: a sweep of 12 runs takes about a second.
    let scenario = dir.join("short.toml");
    let src = include_str!("../scenarios/default.toml")
        .replace("duration = \"30d\"", "duration = \"2d\"")
        .replace("warmup = \"3d\"", "warmup = \"6h\"");
    assert!(
        src.contains("duration = \"2d\""),
        "the default scenario changed"
    );
    std::fs::write(&scenario, src).unwrap();
    let scenario = scenario.to_str().unwrap();
    let sweep = |shard: &str, out: &Path| {
        sim(&[
            "sweep",
            scenario,
            "--param",
            "workload.arrival.rate_per_hour=2,4,8",
            "--param",
            "allocator.policy=best-fit,first-fit",
            "--seeds",
            "2",
            "--shard",
            shard,
            "--out",
            out.to_str().unwrap(),
        ])
    };

    let whole_dir = dir.join("whole");
    sweep("0/1", &whole_dir);
    let whole = whole_dir.join("shard-0-of-1.jsonl");

    let shard_dir = dir.join("shards");
    let mut shard_files = Vec::new();
    for i in 0..SHARDS {
        sweep(&format!("{i}/{SHARDS}"), &shard_dir);
        let f = shard_dir.join(format!("shard-{i}-of-{SHARDS}.jsonl"));
        let points: Vec<u64> = rows(&f)
            .iter()
            .map(|r| r["point"].as_u64().unwrap())
            .collect();
        assert!(!points.is_empty(), "shard {i} is empty");
        assert!(
            points.iter().all(|p| *p as usize % SHARDS == i),
            "shard {i} ran points {points:?}"
        );
        shard_files.push(f.to_str().unwrap().to_owned());
    }

    let merged = dir.join("merged.jsonl");
    let mut args = vec!["merge"];
    args.extend(shard_files.iter().map(String::as_str));
    args.extend(["--out", merged.to_str().unwrap()]);
    let table = sim(&args);
    assert_eq!(table.lines().count(), 6, "one line per grid point: {table}");

    let (merged_rows, whole_rows) = (rows(&merged), rows(&whole));
    assert_eq!(whole_rows.len(), 12);
    assert_eq!(merged_rows, whole_rows);
    // Byte for byte too: the merge re-serialises what it parsed, so floats must survive a
    // round trip through JSON (serde_json's `float_roundtrip`).
    assert_eq!(
        std::fs::read_to_string(&merged).unwrap(),
        std::fs::read_to_string(&whole).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
