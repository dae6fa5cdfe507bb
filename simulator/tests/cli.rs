//! End-to-end tests: the `sharedlb-sim` binary run as a process.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{bin, examples, run, stderr, stdout, tmpdir};

/// A short version of the default scenario, written to a file.
fn short_default(dir: &Path) -> PathBuf {
    let src = include_str!("../scenarios/default.toml")
        .replace("duration = \"30d\"", "duration = \"6d\"");
    let p = dir.join("short.toml");
    std::fs::write(&p, src).unwrap();
    p
}

#[test]
fn no_arguments_runs_the_default_scenario() {
    let o = bin().output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("multi-tenant platform"), "{out}");
    for p in [
        "dedicated (n=3)",
        "seed (n=3)",
        "best-fit (n=3)",
        "conflict-aware (n=3)",
    ] {
        assert!(out.contains(p), "{p} missing: {out}");
    }
    assert!(
        out.contains("savings") && out.contains("USD/month"),
        "{out}"
    );
    assert!(out.contains("against one LB per Service"), "{out}");
    // The table fits 100 columns.
    for line in out.lines() {
        assert!(line.chars().count() <= 100, "too wide: {line}");
    }
    // No progress bar when stdout/stderr are not terminals.
    assert!(!stderr(&o).contains('%'), "{}", stderr(&o));
}

#[test]
fn same_scenario_and_seed_write_identical_files() {
    let d = tmpdir("determinism");
    let scenario = short_default(&d);
    let s = scenario.to_str().unwrap();
    for out in ["a", "b"] {
        let o = run(&[
            "run",
            s,
            "--seed",
            "9",
            "--quiet",
            "--out",
            d.join(out).to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    for f in ["summary.json", "timeseries.csv", "report.html"] {
        let a = std::fs::read(d.join("a").join(f)).unwrap();
        let b = std::fs::read(d.join("b").join(f)).unwrap();
        assert!(!a.is_empty(), "{f} is empty");
        assert_eq!(a, b, "{f} differs between identical runs");
    }
    let o = run(&[
        "run",
        s,
        "--seed",
        "10",
        "--quiet",
        "--out",
        d.join("c").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert_ne!(
        std::fs::read(d.join("a/summary.json")).unwrap(),
        std::fs::read(d.join("c/summary.json")).unwrap()
    );
    let html = std::fs::read_to_string(d.join("a/report.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("lower bound"),
        "report has SVG charts"
    );
    let csv = std::fs::read_to_string(d.join("a/timeseries.csv")).unwrap();
    assert!(csv.starts_with("t_hours,lbs_ready"));
    assert!(csv.lines().count() > 50);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("a/summary.json")).unwrap()).unwrap();
    assert_eq!(json["seed"], 9);
    assert!(json["lbs_mean"].as_f64().unwrap() > 0.0);
}

#[test]
fn json_format_prints_the_summary() {
    let d = tmpdir("json");
    let o = run(&[
        "run",
        short_default(&d).to_str().unwrap(),
        "--format",
        "json",
        "--policy",
        "seed:5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["policy"], "seed:5");
}

#[test]
fn compare_prints_policies_side_by_side() {
    let d = tmpdir("compare");
    let o = run(&[
        "compare",
        short_default(&d).to_str().unwrap(),
        "--policies",
        "dedicated,best-fit",
        "--seeds",
        "3",
        "--out",
        d.join("out").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("dedicated (n=3)") && out.contains("best-fit (n=3)"),
        "{out}"
    );
    assert!(out.contains('±'), "confidence intervals shown: {out}");
    let all: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(d.join("out/summary.json")).unwrap()).unwrap();
    assert_eq!(all.len(), 6);
    let mean = |p: &str| {
        all.iter()
            .filter(|s| s["policy"] == p)
            .map(|s| s["lbs_mean"].as_f64().unwrap())
            .sum::<f64>()
            / 3.0
    };
    assert!(
        mean("best-fit") < mean("dedicated") / 2.0,
        "sharing needs far fewer LBs"
    );
    assert!(d.join("out/timeseries-best-fit.csv").exists());
}

#[test]
fn plan_from_a_service_list() {
    let o = run(&[
        "plan",
        "--services",
        examples().join("services.json").to_str().unwrap(),
        "--profile",
        "aws-nlb",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("8 Services of type LoadBalancer"), "{out}");
    assert!(
        out.contains("today (one LB per Service):     8 LBs"),
        "{out}"
    );
    // Two tenants, and shop/web and infra/web2 both want 443 but are in different tenants: 2 LBs.
    assert!(
        out.contains("shared:                         2 LBs"),
        "{out}"
    );
}

#[test]
fn replay_a_trace() {
    let o = run(&[
        "replay",
        examples().join("trace.jsonl").to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["arrivals"], 6);
    assert_eq!(v["departures"], 2);
    // shop/web and shop/web-canary both want 443/TCP: two LBs at the peak.
    assert_eq!(v["lbs_max"], 3, "{v}");
}

#[test]
fn sweep_in_shards_and_merge() {
    let d = tmpdir("sweep");
    let scenario = short_default(&d);
    for shard in ["0/2", "1/2"] {
        let o = run(&[
            "sweep",
            scenario.to_str().unwrap(),
            "--param",
            "workload.arrival.rate_per_hour=2,4,8",
            "--param",
            "allocator.policy=best-fit,seed",
            "--shard",
            shard,
            "--out",
            d.join("out").to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let merged = d.join("merged.jsonl");
    let o = run(&[
        "merge",
        d.join("out/shard-0-of-2.jsonl").to_str().unwrap(),
        d.join("out/shard-1-of-2.jsonl").to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = std::fs::read_to_string(&merged).unwrap();
    assert_eq!(lines.lines().count(), 6, "3 rates × 2 policies");
    let out = stdout(&o);
    assert!(
        out.contains("rate_per_hour=8") && out.contains("allocator.policy=\"seed\""),
        "{out}"
    );
    let shard = |i: usize| d.join(format!("out/shard-{i}-of-2.jsonl"));
    let path = |p: &Path| p.to_str().unwrap().to_owned();

    // A shard missing: refused, naming the points it lacks; --partial merges the rest.
    let o = run(&["merge", &path(&shard(0))]);
    assert_input_error(
        &o,
        &[
            "3 of the sweep's 6 runs are missing",
            "#1, #3, #5",
            "--partial",
        ],
    );
    let o = run(&["merge", "--partial", &path(&shard(0))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().filter(|l| l.starts_with('#')).count(), 3);
    assert!(stderr(&o).contains("3 of the sweep's 6 runs are missing"));

    // A shard left from a sweep of another scenario: refused, not merged in its place.
    let other = d.join("other.toml");
    let text = std::fs::read_to_string(&scenario).unwrap();
    std::fs::write(
        &other,
        text.replace("duration = \"6d\"", "duration = \"5d\""),
    )
    .unwrap();
    let o = run(&[
        "sweep",
        other.to_str().unwrap(),
        "--param",
        "workload.arrival.rate_per_hour=2,4,8",
        "--param",
        "allocator.policy=best-fit,seed",
        "--shard",
        "1/2",
        "--out",
        d.join("old").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let old = d.join("old/shard-1-of-2.jsonl");
    let o = run(&["merge", &path(&shard(0)), &path(&old)]);
    assert_input_error(&o, &["shard-1-of-2.jsonl:1", "another sweep"]);

    // A shard given twice is one; a run whose figures were edited is refused.
    let o = run(&[
        "merge",
        &path(&shard(0)),
        &path(&shard(0)),
        &path(&shard(1)),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let edited = d.join("edited.jsonl");
    let first = std::fs::read_to_string(shard(1)).unwrap();
    let first = first.lines().next().unwrap();
    let mut v: serde_json::Value = serde_json::from_str(first).unwrap();
    v["summary"]["lbs_max"] = serde_json::json!(999);
    std::fs::write(&edited, format!("{v}\n")).unwrap();
    let o = run(&["merge", &path(&shard(0)), &path(&shard(1)), &path(&edited)]);
    assert_input_error(&o, &["edited.jsonl:1", "differs"]);
}

fn assert_input_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "exit code 2 expected; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr {err:?} lacks {n:?}");
    }
}

#[test]
fn bad_input_exits_2_naming_place_and_problem() {
    let d = tmpdir("errors");
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let base = "duration = \"1d\"\n[workload]\narrival = { rate_per_hour = 1.0 }\nlifetime = { kind = \"fixed\", value = \"1h\" }\n";

    let f = write("malformed.toml", "duration = \"1d\"\n[workload\n");
    assert_input_error(&run(&["run", &f]), &["malformed.toml:2"]);

    let f = write("unknown.toml", &format!("{base}colour = \"blue\"\n"));
    assert_input_error(&run(&["run", &f]), &["unknown.toml:5", "colour"]);

    let f = write(
        "negative.toml",
        &base.replace("rate_per_hour = 1.0", "rate_per_hour = -3.0"),
    );
    assert_input_error(
        &run(&["run", &f]),
        &[
            "negative.toml:3",
            "workload.arrival.rate_per_hour",
            "must be",
        ],
    );

    let f = write(
        "policy.toml",
        &format!("{base}[allocator]\npolicy = \"fastest\"\n"),
    );
    assert_input_error(&run(&["run", &f]), &["policy.toml:6", "fastest"]);

    let f = write(
        "profile.toml",
        &format!("{base}[[profiles]]\nname = \"oracle-lb\"\n"),
    );
    assert_input_error(
        &run(&["run", &f]),
        &["profile.toml:6", "profiles[0].name", "oracle-lb"],
    );

    assert_input_error(&run(&["run", "--policy", "nope"]), &["--policy", "nope"]);
    assert_input_error(
        &run(&["run", "/nonexistent/file.toml"]),
        &["/nonexistent/file.toml"],
    );

    let f = write("empty.jsonl", "\n# nothing\n");
    assert_input_error(&run(&["replay", &f]), &["empty.jsonl", "no events"]);

    let f = write(
        "bad.jsonl",
        "{\"t\": 0, \"op\": \"add\", \"id\": \"a/b\", \"ports\": [{\"protocol\": \"TCP\", \"port\": 70000}]}\n",
    );
    assert_input_error(&run(&["replay", &f]), &["bad.jsonl:1"]);

    let f = write(
        "order.csv",
        "t,op,id,ports\n10s,add,a/b,443/TCP\n5s,remove,a/b\n",
    );
    assert_input_error(&run(&["replay", &f]), &["order.csv:3", "time order"]);

    let f = write("notsvc.json", "{\"kind\": \"Pod\", \"items\": []}");
    assert_input_error(&run(&["plan", "--services", &f]), &["notsvc.json", "kind"]);

    let f = write("garbage.json", "[1, 2,");
    assert_input_error(
        &run(&["plan", "--services", &f]),
        &["garbage.json", "not a Service list"],
    );

    assert_input_error(
        &run(&[
            "sweep",
            "default",
            "--param",
            "nonsense",
            "--out",
            d.to_str().unwrap(),
        ]),
        &["--param"],
    );
    assert_input_error(
        &run(&[
            "sweep",
            "default",
            "--param",
            "workload.arrival.rate_per_hour=-1",
            "--out",
            d.to_str().unwrap(),
        ]),
        &["rate_per_hour", "must be"],
    );
}

#[test]
fn output_that_cannot_be_written_is_an_error_and_a_closed_pipe_an_end() {
    // A full disk: a machine error (exit 1) said in words, not a panic.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = bin().args(["glossary"]).stdout(full).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("writing the output") && !err.contains("panicked"),
        "{err}"
    );
    // A reader gone before the first line (`| head -0`): the run ends quietly.
    let closed = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    for args in [&["glossary"][..], &["run", "--quiet", "--format", "json"]] {
        let o = bin().args(args).stdout(closed()).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
    // ... but what the command writes besides, and its exit code, are not lost with it.
    let d = tmpdir("closed");
    let out = d.join("out");
    let o = bin()
        .args(["run", "--quiet", "--out", out.to_str().unwrap()])
        .stdout(closed())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.join("summary.json").exists() && out.join("report.html").exists());
    let services = examples().join("services.yaml");
    let o = bin()
        .args(["plan", "--services", services.to_str().unwrap()])
        .args(["--profile", "aws-clb", "--strict"])
        .stdout(closed())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "--strict still fails: {}",
        stderr(&o)
    );
    // Errors told on a stderr nobody can read: the exit code still says what happened.
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let o = bin()
        .args(["run", "no-such.toml"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
