//! Issue #11: every input refused in the user's words (exit 2, the place and the
//! problem), no panic, no hang; CSV traces; plan's inputs and outputs; the README's
//! ranges and glossary. Each test runs the real binary.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Output;

use common::{examples, manifest, run, stderr, stdout, tmpdir};

/// Exit 2, no panic, no Rust type names, and every needle in stderr.
fn refused(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit 2 expected; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for word in [
        "untagged",
        "DurationRepr",
        "RawPortRequest",
        "TimeRepr",
        "struct ",
        "enum ",
        "u32",
        "u64",
        "f64",
    ] {
        assert!(
            !err.contains(word),
            "stderr names an internal type ({word}): {err}"
        );
    }
    for n in needles {
        assert!(err.contains(n), "stderr {err:?} lacks {n:?}");
    }
}

const BASE: &str = "duration = \"1d\"\n[workload]\narrival = { rate_per_hour = 1.0 }\nlifetime = { kind = \"fixed\", value = \"1h\" }\n";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn the_issues_inputs_are_refused_at_once_with_field_and_line() {
    let d = tmpdir("issue");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "listeners.toml",
            format!("{BASE}max_listeners = 4294967295\n"),
            vec!["listeners.toml:5", "workload.max_listeners", "1 to 1000"],
        ),
        (
            "rate.toml",
            BASE.replace("1.0", "1e300"),
            vec![
                "rate.toml:3",
                "workload.arrival.rate_per_hour",
                "0 to 1000000",
            ],
        ),
        (
            "burst.toml",
            BASE.replace(
                "1.0 }",
                "1.0, bursts = { every = \"1h\", size = 1000000000 } }",
            ),
            vec![
                "burst.toml:3",
                "workload.arrival.bursts.size",
                "0 to 1000000",
            ],
        ),
        (
            "failures.toml",
            format!("{BASE}[[profiles]]\nname = \"aws-nlb\"\nfailures_per_day = 1e9\n"),
            vec!["failures.toml:7", "profiles[0].failures_per_day", "0 to 24"],
        ),
        (
            "duration.toml",
            BASE.replace("\"1d\"", "9e11"),
            vec!["duration.toml:1", "duration", "100 years"],
        ),
        (
            "price.toml",
            format!("{BASE}[[profiles]]\nname = \"aws-nlb\"\nhourly_price = 1e308\n"),
            vec!["price.toml:7", "profiles[0].hourly_price", "0 to 1000000"],
        ),
        (
            "converted.toml",
            format!(
                "{BASE}[currency]\nreport = \"USD\"\nrates = {{ EUR = 10000 }}\n[[profiles]]\nname = \"hetzner-lb11\"\nhourly_price = 1000\n"
            ),
            vec![
                "converted.toml:10",
                "profiles[0].hourly_price",
                "10000000 USD",
            ],
        ),
        (
            "nan.toml",
            BASE.replace("1.0", "nan"),
            vec!["nan.toml:3", "workload.arrival.rate_per_hour"],
        ),
        // Within every range, but a run too large to finish.
        (
            "work.toml",
            BASE.replace("\"1d\"", "\"3650d\"")
                .replace("1.0", "1000000")
                .replace("\"1h\"", "\"1s\""),
            vec!["work.toml:3", "workload.arrival.rate_per_hour", "arrivals"],
        ),
        (
            "live.toml",
            BASE.replace("1.0", "1000000").replace("\"1h\"", "\"30d\""),
            vec!["live.toml:4", "workload.lifetime", "listeners"],
        ),
        (
            "consolidation.toml",
            format!("{BASE}[consolidation]\nevery = \"1ms\"\nmax_moves = 5\n"),
            vec!["consolidation.toml:6", "consolidation.every", "at least 1s"],
        ),
        (
            "mix.toml",
            BASE.replace(
                "{ kind = \"fixed\", value = \"1h\" }",
                "{ kind = \"pareto\", scale = \"1h\", shape = 0 }",
            ),
            vec!["mix.toml:4", "workload.lifetime.shape", "0.1 to 100"],
        ),
        // Ports one per line, as the shipped examples write them: the element is named
        // and the range is a port's, not a 16-bit number's.
        (
            "ports.toml",
            format!(
                "{BASE}popular_ports = [\n  {{ port = 443 }},\n  # and\n  {{ port = 70000 }},\n]\n"
            ),
            vec![
                "ports.toml:8",
                "workload.popular_ports[1].port",
                "port 70000 is out of range (1 to 65535",
            ],
        ),
        (
            "port0.toml",
            format!("{BASE}popular_ports = [\n  {{ port = 0 }},\n]\n"),
            vec![
                "port0.toml:6",
                "workload.popular_ports[0].port",
                "any_fraction",
            ],
        ),
    ];
    for (name, text, needles) in cases {
        let f = write(&d, name, &text);
        refused(&run(&["run", &f, "--quiet"]), &needles);
    }
}

#[test]
fn traces_at_the_end_of_time_are_refused() {
    let d = tmpdir("trace-time");
    let f = write(
        &d,
        "late.jsonl",
        "{\"t\": 18446744073709551615, \"op\": \"add\", \"id\": \"a/b\", \"ports\": [{\"protocol\": \"TCP\", \"port\": 443}]}\n",
    );
    refused(&run(&["replay", &f]), &["late.jsonl:1", "100 years"]);
    let f = write(
        &d,
        "late.csv",
        "t,op,id,ports\n18446744073709551615,add,a/b,443/TCP\n",
    );
    refused(&run(&["replay", &f]), &["late.csv:2", "t:", "100 years"]);
    // 100 years exactly is fine and finishes.
    let f = write(
        &d,
        "edge.csv",
        "t,op,id,ports\n0,add,a/b,443/TCP\n36525d,remove,a/b\n",
    );
    let o = run(&["replay", &f, "--quiet", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_bare_trace_time_is_ms_whole_or_not() {
    // Three hours, written as whole ms, as ms with a fraction (how data frames write a
    // column of whole numbers), with a unit, and as JSON numbers and strings: one trace.
    let d = tmpdir("trace-ms");
    let csv =
        |t1: &str, t2: &str| format!("t,op,id,ports\n{t1},add,a/b,443/TCP\n{t2},remove,a/b\n");
    let json = |t1: &str, t2: &str| {
        format!(
            "{{\"t\": {t1}, \"op\": \"add\", \"id\": \"a/b\", \"ports\": [{{\"protocol\": \"TCP\", \"port\": 443}}]}}\n\
             {{\"t\": {t2}, \"op\": \"remove\", \"id\": \"a/b\"}}\n"
        )
    };
    let files = [
        ("whole.csv", csv("0", "10800000")),
        ("fraction.csv", csv("0.0", "10800000.0")),
        ("exponent.csv", csv("0", "1.08e7")),
        ("unit.csv", csv("0s", "3h")),
        ("number.jsonl", json("0", "10800000.0")),
        ("string.jsonl", json("\"0.0\"", "\"10800000.0\"")),
    ];
    for (name, text) in files {
        let f = write(&d, name, &text);
        let o = run(&["replay", &f, "--format", "json"]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["duration_h"], 3.0, "{name}: {v}");
    }
    for (name, t, needle) in [
        ("nan.csv", "NaN", "t:"),
        ("inf.csv", "inf", "t:"),
        ("negative.csv", "-1.5", "no time"),
    ] {
        let f = write(&d, name, &csv(t, "1"));
        refused(&run(&["replay", &f]), &[&format!("{name}:2"), needle]);
    }
}

#[test]
fn errors_use_words_not_type_names() {
    let d = tmpdir("words");
    let f = write(&d, "dur.toml", &BASE.replace("\"1d\"", "[1]"));
    refused(
        &run(&["run", &f]),
        &["dur.toml:1", "duration", "a duration such as"],
    );
    let f = write(
        &d,
        "bursts.toml",
        &BASE.replace("1.0 }", "1.0, bursts = 5 }"),
    );
    refused(
        &run(&["run", &f]),
        &[
            "bursts.toml:3",
            "workload.arrival.bursts",
            "a table such as",
        ],
    );
    let f = write(&d, "seed.toml", &format!("seed = -1\n{BASE}"));
    refused(&run(&["run", &f]), &["seed.toml:1", "seed", "whole number"]);
    let f = write(&d, "unit.toml", &BASE.replace("\"1d\"", "\"3 fortnights\""));
    refused(&run(&["run", &f]), &["unit.toml:1", "duration", "unit"]);
    let f = write(
        &d,
        "port.jsonl",
        "{\"t\": 0, \"op\": \"add\", \"id\": \"a/b\", \"ports\": [443]}\n",
    );
    refused(&run(&["replay", &f]), &["port.jsonl:1", "a port such as"]);
    let f = write(
        &d,
        "proto.jsonl",
        "{\"t\": 0, \"op\": \"add\", \"id\": \"a/b\", \"ports\": [{\"protocol\": \"QUIC\", \"port\": 1}]}\n",
    );
    refused(
        &run(&["replay", &f]),
        &["proto.jsonl:1", "ports", "QUIC", "TCP, UDP or SCTP"],
    );
    let f = write(
        &d,
        "t.jsonl",
        "{\"t\": [1], \"op\": \"remove\", \"id\": \"a/b\"}\n",
    );
    refused(&run(&["replay", &f]), &["t.jsonl:1", "a time such as"]);
}

#[test]
fn flags_are_named_in_their_errors() {
    let d = tmpdir("flags");
    refused(
        &run(&["compare", "default", "--policies", "best-fit,fastest"]),
        &["--policies", "fastest"],
    );
    refused(
        &run(&["run", "--profile", "oracle-lb"]),
        &["--profile", "oracle-lb"],
    );
    // A bad --param value names the flag and the field, not a line of the base file.
    let o = run(&[
        "sweep",
        "default",
        "--param",
        "workload.max_listeners=3,4294967295",
        "--out",
        d.to_str().unwrap(),
    ]);
    refused(
        &o,
        &[
            "--param workload.max_listeners=4294967295",
            "workload.max_listeners",
            "1 to 1000",
        ],
    );
    assert!(!stderr(&o).contains("default>:"), "{}", stderr(&o));
    let o = run(&[
        "sweep",
        "default",
        "--param",
        "workload.arrival.rate_per_hour=abc",
        "--out",
        d.to_str().unwrap(),
    ]);
    refused(
        &o,
        &[
            "--param",
            "workload.arrival.rate_per_hour",
            "expected a number",
        ],
    );
    refused(
        &run(&["plan", "--services", "x.json", "--tenant-by", "team"]),
        &["--tenant-by", "label:KEY"],
    );
    // --seeds 0 is refused by compare and sweep alike, naming the flag.
    for cmd in [
        vec!["compare", "default", "--seeds", "0"],
        vec![
            "sweep",
            "default",
            "--param",
            "seed=1",
            "--seeds",
            "0",
            "--out",
            d.to_str().unwrap(),
        ],
    ] {
        let o = run(&cmd);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--seeds"), "{}", stderr(&o));
    }
}

#[test]
fn a_duplicate_profile_names_its_line() {
    let d = tmpdir("dup");
    let f = write(
        &d,
        "dup.toml",
        &format!(
            "{BASE}[[profiles]]\nname = \"aws-nlb\"\n[[profiles]]\nname = \"hetzner-lb11\"\n[[profiles]]\nname = \"aws-nlb\"\n"
        ),
    );
    refused(
        &run(&["run", &f]),
        &["dup.toml:10", "profiles[2].name", "appears twice"],
    );
    let f = write(
        &d,
        "tenants.toml",
        &format!("{BASE}[[tenants]]\nname = \"a\"\n[[tenants]]\nname = \"b\"\nweight = 0\n"),
    );
    refused(&run(&["run", &f]), &["tenants.toml:9", "tenants[1].weight"]);
}

#[test]
fn csv_traces_by_header() {
    let d = tmpdir("csv");
    let jsonl = run(&[
        "replay",
        examples().join("trace.jsonl").to_str().unwrap(),
        "--format",
        "json",
    ]);
    let csv = run(&[
        "replay",
        examples().join("trace.csv").to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(csv.status.success(), "{}", stderr(&csv));
    let summary = |o: &Output| {
        let mut v: serde_json::Value = serde_json::from_str(&stdout(o)).unwrap();
        assert!(
            v["scenario"]
                .as_str()
                .unwrap()
                .starts_with("replay of trace.")
        );
        v["scenario"] = serde_json::Value::Null;
        v
    };
    assert_eq!(
        summary(&jsonl),
        summary(&csv),
        "the CSV example is the JSONL one"
    );
    // BOM, columns in another order, quoted fields, CRLF, allow_migration.
    let f = write(
        &d,
        "any-order.csv",
        "\u{feff}id,ports,op,\"t\",tenant,allow_migration\r\n\"shop/web\",\"443/TCP;80/TCP\",add,0s,,true\r\n\"shop/db\",5432/TCP,add,10s,\"ops\",no\r\nshop/web,,remove,1h,,\r\n",
    );
    let o = run(&["replay", &f, "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["arrivals"], 2);
    assert_eq!(v["departures"], 1);
    assert!(v["tenants"]["ops"].is_object(), "{v}");
    // The same lines ended by a carriage return alone (old Mac spreadsheets): the same
    // run, and an error names its line.
    let cr = std::fs::read_to_string(&f).unwrap().replace("\r\n", "\r");
    let f = write(&d, "cr.csv", &cr);
    let by_cr = run(&["replay", &f, "--format", "json"]);
    assert!(by_cr.status.success(), "{}", stderr(&by_cr));
    let read: serde_json::Value = serde_json::from_str(&stdout(&by_cr)).unwrap();
    assert_eq!(
        (&read["arrivals"], &read["departures"]),
        (&v["arrivals"], &v["departures"])
    );
    let f = write(
        &d,
        "cr-bad.csv",
        "t,op,id,ports\r0,add,a/b,443/TCP\r1s,remove,a/c,\r",
    );
    refused(&run(&["replay", &f]), &["cr-bad.csv:3", "not added"]);
    let f = write(
        &d,
        "unknown.csv",
        "t,op,id,ports,colour\n0,add,a/b,443/TCP,red\n",
    );
    refused(
        &run(&["replay", &f]),
        &["unknown.csv:1", "colour", "unknown column"],
    );
    let f = write(&d, "noid.csv", "t,op,ports\n0,add,443/TCP\n");
    refused(&run(&["replay", &f]), &["noid.csv:1", "\"id\""]);
    let f = write(&d, "open.csv", "t,op,id\n0,add,\"a/b\n");
    refused(&run(&["replay", &f]), &["open.csv:2", "quoted"]);
    let f = write(&d, "extra.csv", "t,op,id\n0,remove,a/b,x\n");
    refused(&run(&["replay", &f]), &["extra.csv:2", "4 fields"]);
}

#[test]
fn plan_reads_yaml_tenants_by_label_and_counts_existing_sharing() {
    let yaml = examples().join("services.yaml");
    let o = run(&[
        "plan",
        "--services",
        yaml.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["services"], 7);
    // shop/web + shop/web-http share by MetalLB key, infra/dns + dns-tcp by Cilium key.
    assert_eq!(v["sharing_today"], 4);
    assert_eq!(v["lbs_today"], 5, "{v}");
    // Objects, not tuples; money in cents.
    let lb = &v["lbs"][0];
    assert!(
        lb["lb"].is_string() && lb["services"][0]["service"].is_string(),
        "{v}"
    );
    assert!(
        lb["services"][0]["ports"][0]
            .as_str()
            .unwrap()
            .contains('/')
    );
    for k in ["monthly_cost_today", "monthly_cost_shared"] {
        let x = v[k].as_f64().unwrap();
        assert!(((x * 100.0).round() - x * 100.0).abs() < 1e-6, "{k} = {x}");
    }
    assert!((v["monthly_cost_today"].as_f64().unwrap() - 82.18).abs() < 1e-9);
    // Tenants by label: storefront and platform instead of namespaces.
    let o = run(&[
        "plan",
        "--services",
        yaml.to_str().unwrap(),
        "--tenant-by",
        "label:team",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let tenants: Vec<&str> = v["lbs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|lb| lb["services"].as_array().unwrap())
        .map(|s| s["tenant"].as_str().unwrap())
        .collect();
    assert!(
        tenants.contains(&"storefront") && tenants.contains(&"platform"),
        "{tenants:?}"
    );
    assert_eq!(v["tenant_fallbacks"], 1, "iot/vpn has no team label");
    let o = run(&["plan", "--services", yaml.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(
        out.contains("share an IP per key where their ports differ"),
        "{out}"
    );
    for line in out.lines() {
        assert!(line.chars().count() <= 100, "too wide: {line}");
    }
}

#[test]
fn today_a_sharing_key_shares_an_ip_only_where_ports_differ() {
    // As MetalLB and Cilium do: b/m1 and c/m2 share key k but both listen on 443/TCP, so
    // today they are two LBs. With x, y and z (pairwise clashing, a clique of three), that
    // is five LBs today, and sharing cannot do better: savings exactly 0.
    let d = tmpdir("sharing-key");
    let svc = |ns: &str, name: &str, ports: &[u16], key: Option<&str>| {
        let ports: Vec<String> = ports
            .iter()
            .map(|p| format!(r#"{{"port": {p}, "protocol": "TCP"}}"#))
            .collect();
        let ann = key.map_or_else(String::new, |k| {
            format!(r#""metallb.universe.tf/allow-shared-ip": "{k}""#)
        });
        format!(
            r#"{{"metadata": {{"name": "{name}", "namespace": "{ns}", "annotations": {{{ann}}}}}, "spec": {{"type": "LoadBalancer", "ports": [{}]}}}}"#,
            ports.join(", ")
        )
    };
    let items = [
        svc("a", "x", &[80, 443], None),
        svc("a", "y", &[443, 53], None),
        svc("a", "z", &[53, 80], None),
        svc("b", "m1", &[443], Some("k")),
        svc("c", "m2", &[443], Some("k")),
        svc("c", "m3", &[8443], Some("k")),
    ];
    let json = format!(r#"{{"kind": "List", "items": [{}]}}"#, items.join(", "));
    let f = write(&d, "svc.json", &json);
    let o = run(&["plan", "--services", &f, "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // m3 (8443) joins m1's IP; m2 (443, taken there) takes another.
    assert_eq!(v["lbs_today"], 5, "{v}");
    assert_eq!(v["lower_bound"], 5, "{v}");
    assert_eq!(v["lbs_shared"], 5, "{v}");
    assert_eq!(v["savings_fraction"], 0.0, "{v}");
}

#[test]
fn today_the_addresses_the_cluster_reports_say_which_services_share() {
    // Four Services of key edge: s1 [1001] and s2 [1002] on 10.0.0.1, s3 [1001, 1003]
    // on 10.0.0.2, s4 [1002, 1003] on 10.0.0.3: three IPs today, in any order of the
    // file. Without addresses, s1, s4, s2, s3 in that order would pack into two.
    let d = tmpdir("sharing-status");
    let svc = |name: &str, ports: &[u16], ip: Option<&str>| {
        let ports: Vec<String> = ports
            .iter()
            .map(|p| format!(r#"{{"port": {p}, "protocol": "TCP"}}"#))
            .collect();
        let status = ip.map_or_else(String::new, |ip| {
            format!(r#", "status": {{"loadBalancer": {{"ingress": [{{"ip": "{ip}"}}]}}}}"#)
        });
        format!(
            r#"{{"metadata": {{"name": "{name}", "namespace": "shop", "annotations": {{"metallb.universe.tf/allow-shared-ip": "edge"}}}}, "spec": {{"type": "LoadBalancer", "ports": [{}]}}{status}}}"#,
            ports.join(", ")
        )
    };
    let today = |order: &[(&str, &[u16], Option<&str>)]| {
        let items: Vec<String> = order.iter().map(|&(n, p, ip)| svc(n, p, ip)).collect();
        let json = format!(r#"{{"kind": "List", "items": [{}]}}"#, items.join(", "));
        let f = write(&d, "svc.json", &json);
        let o = run(&["plan", "--services", &f, "--format", "json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["lbs_today"].as_u64().unwrap()
    };
    let (a, b) = (Some("10.0.0.1"), Some("10.0.0.2"));
    let c = Some("10.0.0.3");
    let s1: (&str, &[u16], _) = ("s1", &[1001], a);
    let s2: (&str, &[u16], _) = ("s2", &[1002], a);
    let s3: (&str, &[u16], _) = ("s3", &[1001, 1003], b);
    let s4: (&str, &[u16], _) = ("s4", &[1002, 1003], c);
    assert_eq!(today(&[s1, s2, s3, s4]), 3);
    assert_eq!(today(&[s1, s4, s2, s3]), 3);
    let bare = |s: (&'static str, &'static [u16], Option<&'static str>)| (s.0, s.1, None);
    assert_eq!(today(&[bare(s1), bare(s4), bare(s2), bare(s3)]), 2);
}

/// A bare array of Services (`jq .items`), in JSON or YAML, is read as their List, and
/// a Service whose namespace is missing or empty is in `default`, as Kubernetes reads a
/// manifest.
#[test]
fn plan_reads_a_bare_array_and_an_empty_namespace_as_default() {
    let d = tmpdir("plan-bare");
    let plan = |name: &str, text: &str| {
        let f = write(&d, name, text);
        let o = run(&["plan", "--services", &f, "--format", "json"]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v
    };
    let json = plan(
        "bare.json",
        r#"[{"metadata": {"name": "a", "namespace": ""}, "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]}},
            {"metadata": {"name": "b"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]}},
            {"metadata": {"name": "c", "namespace": "x"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}]"#,
    );
    let yaml = plan(
        "bare.yaml",
        "# services\n- metadata: {name: a, namespace: ''}\n  spec: {type: LoadBalancer, ports: [{port: 443}]}\n- metadata: {name: b}\n  spec: {type: LoadBalancer, ports: [{port: 443}]}\n",
    );
    for v in [&json, &yaml] {
        assert_eq!(v["services"], 2, "{v}");
        // Both in `default`, both on 443: two LBs, and a's id is default/a, not /a.
        assert_eq!(v["lbs_shared"], 2, "{v}");
        assert!(v.to_string().contains("default/a"), "{v}");
    }
}

#[test]
fn plan_refuses_port_0_and_strict_exits_3() {
    let d = tmpdir("plan");
    let f = write(
        &d,
        "zero.json",
        r#"{"kind": "List", "items": [{"metadata": {"name": "a", "namespace": "x"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 0}]}}]}"#,
    );
    refused(
        &run(&["plan", "--services", &f]),
        &["items[0].spec.ports[0].port", "x/a", "1 to 65535"],
    );
    // JSON's and YAML's words for what TOML calls a table.
    let f = write(&d, "numbers.json", "[1, 2]");
    let out = run(&["plan", "--services", &f]);
    refused(&out, &["numbers.json:1", "expected an object"]);
    assert!(!stderr(&out).contains("table"), "{}", stderr(&out));
    let f = write(&d, "numbers.yaml", "- 1\n- 2\n");
    refused(
        &run(&["plan", "--services", &f]),
        &["numbers.yaml:", "expected a mapping"],
    );
    let f = write(&d, "bad.yaml", "kind: List\nitems:\n  - metadata: [oops\n");
    refused(
        &run(&["plan", "--services", &f]),
        &["bad.yaml:", "not a Service list"],
    );
    // 60 listeners do not fit an aws-nlb (50): unplaceable.
    let ports: Vec<String> = (1..=60).map(|p| format!("{{\"port\": {p}}}")).collect();
    let f = write(
        &d,
        "big.json",
        &format!(
            r#"{{"kind": "List", "items": [{{"metadata": {{"name": "big", "namespace": "x"}}, "spec": {{"type": "LoadBalancer", "ports": [{}]}}}}, {{"metadata": {{"name": "small", "namespace": "x"}}, "spec": {{"type": "LoadBalancer", "ports": [{{"port": 80}}]}}}}]}}"#,
            ports.join(",")
        ),
    );
    let o = run(&["plan", "--services", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: 1 of 2 Services cannot be placed"),
        "{}",
        stderr(&o)
    );
    let o = run(&["plan", "--services", &f, "--strict"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stdout(&o).contains("x/big"), "the plan is still printed");
}

#[test]
fn profiles_are_aligned() {
    let o = run(&["profiles"]);
    assert!(o.status.success());
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() > 3);
    // Each column starts at the same place on every line: the price column ends aligned.
    let col = |l: &str, word: &str| l.find(word).map(|i| i + word.len());
    let end = col(lines[0], "price").unwrap();
    for l in &lines[1..] {
        assert_eq!(col(l, "/month"), Some(end), "misaligned: {l}\n{out}");
        assert!(l.chars().count() <= 100, "too wide: {l}");
    }
}

#[test]
fn compare_tables_fit_100_columns_with_percentages_alike() {
    let d = tmpdir("compare");
    let src = include_str!("../scenarios/default.toml").replace("\"30d\"", "\"5d\"");
    let f = write(&d, "short.toml", &src);
    let o = run(&[
        "compare",
        &f,
        "--seeds",
        "3",
        "--policies",
        "best-fit,first-fit,seed,dedicated",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for line in out.lines() {
        assert!(
            line.chars().count() <= 100,
            "too wide ({}): {line}",
            line.chars().count()
        );
    }
    // Percentages carry one decimal and a % sign wherever they appear.
    for w in out.split_whitespace().filter(|w| w.ends_with('%')) {
        let n = w.trim_start_matches(['(', '-']).trim_end_matches('%');
        if !n.starts_with(|c: char| c.is_ascii_digit()) || n == "95" {
            continue; // "±95%", "95% intervals": the intervals' level, not a figure
        }
        // One decimal; more only where one would show 100.0% or 0.0% for what is not.
        assert!(
            n.split('.').nth(1).is_some_and(|d| d.len() == 1
                || (d.len() <= 3 && (n.starts_with("99.") || n.starts_with("0.0")))),
            "percentage {w} not like 12.3%: {out}"
        );
    }
    // Either a clear best or a tie, said in words.
    assert!(out.contains("best: ") || out.contains("tied with"), "{out}");
}

#[test]
fn readme_documents_every_range_and_the_glossary() {
    let readme = std::fs::read_to_string(manifest().join("../README.md")).unwrap();
    for (field, range) in sharedlb_simulator::scenario::RANGES {
        let row = format!("| {field} | {range} |");
        assert!(readme.contains(&row), "README lacks the row {row}");
    }
    for (term, text) in sharedlb_simulator::metrics::GLOSSARY {
        let entry = format!("- **{term}**: {text}");
        assert!(readme.contains(&entry), "README glossary lacks {entry}");
    }
}

#[test]
fn the_readme_examples_run_on_the_shipped_files() {
    let ex = |f: &str| examples().join(f).to_str().unwrap().to_owned();
    for args in [
        vec![
            "plan".to_owned(),
            "--services".into(),
            ex("services.json"),
            "--profile".into(),
            "aws-nlb".into(),
        ],
        vec![
            "plan".to_owned(),
            "--services".into(),
            ex("services.yaml"),
            "--tenant-by".into(),
            "label:team".into(),
        ],
        vec!["replay".to_owned(), ex("trace.jsonl")],
        vec!["replay".to_owned(), ex("trace.csv")],
        vec!["run".to_owned(), ex("small-team.toml"), "--quiet".into()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(
            !out.contains("NaN") && !out.contains("inf "),
            "{args:?}: {out}"
        );
        for line in out.lines() {
            assert!(line.chars().count() <= 100, "{args:?} too wide: {line}");
        }
    }
}

#[test]
fn report_charts_are_responsive_with_integer_counts_and_currency() {
    use sharedlb_simulator::report::{Axis, line_chart};
    let series = vec![
        (
            "best-fit".to_owned(),
            vec![(0.0, 0.0), (1.0, 1.0), (2.0, 3.0)],
        ),
        (
            "lower bound".to_owned(),
            vec![(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)],
        ),
    ];
    let html = line_chart("LBs", "hours", "LBs", Axis::Count, &series);
    // A wide and a narrow drawing, each scaled to the page by its viewBox.
    assert_eq!(html.matches("viewBox=").count(), 2, "{html}");
    assert!(html.contains("width=\"100%\""));
    // The legend is HTML after the drawings, never drawn over the data.
    let legend = html.find("class=\"legend\"").unwrap();
    assert!(legend > html.rfind("</svg>\n</div>").unwrap_or(0));
    assert!(html[legend..].contains("best-fit") && html[legend..].contains("lower bound"));
    // Count axes carry whole numbers only.
    for label in html.split("<text").skip(1) {
        let text = label
            .split('>')
            .nth(1)
            .unwrap_or("")
            .split('<')
            .next()
            .unwrap_or("");
        if let Ok(x) = text.trim().parse::<f64>() {
            assert!(x.fract().abs() < 1e-12, "tick {text} on a count axis");
        }
    }
    // The page: currency on the cost axis, the narrow drawing for phones.
    let d = tmpdir("report");
    let out = d.join("out");
    let o = run(&[
        "run",
        examples().join("small-team.toml").to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("EUR / h"), "the cost axis names the currency");
    assert!(page.contains("@media (max-width:700px)"));
    assert!(page.contains("<dt>served</dt>"), "glossary at the foot");
}

#[test]
fn best_only_when_the_intervals_do_not_overlap() {
    use sharedlb_simulator::report::verdict;
    let mut s =
        sharedlb_simulator::Scenario::from_file(&examples().join("small-team.toml")).unwrap();
    s.duration = sharedlb_simulator::scenario::Dur(2 * 86_400_000);
    s.warmup = sharedlb_simulator::scenario::Dur(0);
    let (template, _) = sharedlb_simulator::run(&s).unwrap();
    let group = |name: &str, costs: &[f64]| {
        let runs = costs
            .iter()
            .map(|&c| {
                let mut x = template.clone();
                x.policy = name.to_owned();
                x.served_fraction = Some(1.0);
                x.cost_per_month = c;
                x
            })
            .collect::<Vec<_>>();
        (name.to_owned(), runs)
    };
    let clear = verdict(&[
        group("best-fit", &[100.0, 101.0, 99.0]),
        group("first-fit", &[200.0, 201.0, 199.0]),
    ]);
    assert!(clear.contains("best: best-fit"), "{clear}");
    assert!(!clear.contains("tied"), "{clear}");
    let tie = verdict(&[
        group("best-fit", &[100.0, 110.0, 90.0]),
        group("first-fit", &[105.0, 115.0, 95.0]),
    ]);
    assert!(
        tie.contains("cheapest: best-fit, tied with first-fit") && !tie.contains("best:"),
        "{tie}"
    );
}

#[test]
fn flags_that_would_mislabel_or_fail_late_are_refused_first() {
    let d = tmpdir("flags");
    let f = write(&d, "base.toml", BASE);
    // A field swept twice: the labels would name values that never ran.
    let out = d.join("sweep");
    let o = run(&[
        "sweep",
        &f,
        "--param",
        "seed=1,2",
        "--param",
        "seed=3,4",
        "--out",
        out.to_str().unwrap(),
    ]);
    refused(&o, &["--param", "seed", "given twice"]);
    // A policy twice: two rows of the same runs, "tied" with itself.
    let o = run(&[
        "compare",
        &f,
        "--policies",
        "best-fit,seed,best-fit",
        "--seeds",
        "1",
    ]);
    refused(&o, &["--policies", "best-fit is given twice"]);
    // One range for the seed, in a file and as a flag.
    let big = write(
        &d,
        "seed.toml",
        &format!("seed = 9223372036854775808\n{BASE}"),
    );
    refused(
        &run(&["run", &big]),
        &["seed.toml:1", "seed", "0 to 9223372036854775807"],
    );
    refused(
        &run(&["run", &f, "--seed", "9223372036854775808"]),
        &["--seed"],
    );
    let o = run(&["run", &f, "--seed", "9223372036854775807", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // merge --out that cannot be written: refused before the inputs are read (these
    // do not exist), naming --out.
    for target in [
        d.to_str().unwrap().to_owned(),
        "/proc/nope/all.jsonl".to_owned(),
    ] {
        let o = run(&["merge", "missing.jsonl", "--out", &target]);
        refused(&o, &["--out"]);
    }
}

#[test]
fn work_that_would_run_for_hours_is_refused_before_it_starts() {
    let d = tmpdir("work");
    // 1000 tenants × ~1.4M claim events: every event brings each tenant's shares up to date.
    let tenants_of = |n: usize| {
        let mut s = String::new();
        for i in 0..n {
            let _ = writeln!(s, "[[tenants]]\nname = \"t{i}\"");
        }
        s
    };
    let tenants = tenants_of(1000);
    let busy = BASE
        .replace("\"1d\"", "\"3d\"")
        .replace("rate_per_hour = 1.0", "rate_per_hour = 10000.0");
    let f = write(&d, "tenants.toml", &format!("{busy}{tenants}"));
    refused(
        &run(&["run", &f]),
        &["tenants.toml", "tenants", "1000 tenants"],
    );
    // The same with 100 tenants is within bounds.
    let few = tenants_of(100);
    let f = write(
        &d,
        "few.toml",
        &format!("{}{few}", BASE.replace("\"1d\"", "\"1h\"")),
    );
    let o = run(&["run", &f, "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Consolidation every second over 11 days of ~1000 live claims: runs × claims.
    let cons = format!(
        "{}[consolidation]\nevery = \"1s\"\nmax_moves = 0\n",
        BASE.replace("\"1d\"", "\"11d\"")
            .replace("rate_per_hour = 1.0", "rate_per_hour = 1000.0")
    );
    let f = write(&d, "cons.toml", &cons);
    refused(
        &run(&["run", &f]),
        &["cons.toml", "consolidation.every", "claim looks"],
    );

    // A replay is checked over its trace's span, claims and tenants, not the scenario's.
    let every_second = write(
        &d,
        "every-second.toml",
        &format!("{BASE}[consolidation]\nevery = \"1s\"\nmax_moves = 10\n"),
    );
    let century = write(
        &d,
        "century.jsonl",
        "{\"t\": 0, \"op\": \"add\", \"id\": \"shop/web\", \"ports\": [{\"protocol\": \"TCP\", \"port\": 443}]}\n{\"t\": \"36525d\", \"op\": \"remove\", \"id\": \"shop/web\"}\n",
    );
    refused(
        &run(&["replay", &century, "--scenario", &every_second]),
        &["century.jsonl", "consolidation.every"],
    );
    let failing = write(
        &d,
        "failing.toml",
        &format!("{BASE}[[profiles]]\nname = \"aws-nlb\"\nfailures_per_day = 24\n"),
    );
    let mut long = String::new();
    for i in 0..1000 {
        let _ = writeln!(
            long,
            "{{\"t\": 0, \"op\": \"add\", \"id\": \"shop/s{i}\", \"ports\": [{{\"protocol\": \"TCP\", \"port\": 0}}]}}"
        );
    }
    long.push_str("{\"t\": \"36525d\", \"op\": \"remove\", \"id\": \"shop/s0\"}\n");
    let long = write(&d, "long.jsonl", &long);
    refused(
        &run(&["replay", &long, "--scenario", &failing]),
        &["long.jsonl", "failures_per_day"],
    );
    // Many tenants alone are not refused: what they cost (every event updates each) is.
    let mut many = String::from("t,op,id,ports\n");
    for i in 0..1001 {
        let _ = writeln!(many, "0,add,ns{i}/web,443/TCP");
    }
    let many = write(&d, "many.csv", &many);
    let o = run(&["replay", &many, "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn messages_name_the_place_in_the_users_words() {
    let d = tmpdir("words2");
    // A top-level field missing: no line, and neither a comment nor another key named.
    let f = write(
        &d,
        "nodur.toml",
        &format!("# my scenario\n{}", BASE.replace("duration = \"1d\"\n", "")),
    );
    let o = run(&["run", &f]);
    refused(&o, &["nodur.toml: missing field `duration`"]);
    assert!(!stderr(&o).contains("# my scenario"), "{}", stderr(&o));
    // Not-a-number and huge durations say so plainly.
    let f = write(&d, "nan.toml", &BASE.replace("\"1d\"", "nan"));
    refused(
        &run(&["run", &f]),
        &["nan.toml:1", "duration", "not a duration"],
    );
    let f = write(&d, "huge.toml", &BASE.replace("\"1d\"", "1e308"));
    let o = run(&["run", &f]);
    refused(&o, &["huge.toml:1", "1e308 s", "100 years"]);
    // A JSON array is not JSON Lines (it was read as CSV).
    let f = write(
        &d,
        "array.jsonl",
        "[{\"t\": 0, \"op\": \"add\", \"id\": \"a/b\"}]\n",
    );
    refused(
        &run(&["replay", &f]),
        &["array.jsonl:1", "one event object per line"],
    );
    // YAML nested past reason is refused before the parser spends minutes on it.
    let deep = format!("items: {}{}\n", "[".repeat(50_000), "]".repeat(50_000));
    let f = write(&d, "deep.yaml", &deep);
    refused(
        &run(&["plan", "--services", &f]),
        &["deep.yaml:1", "nested more than 256 deep"],
    );
}

#[test]
fn a_replay_is_sized_by_its_trace_and_merge_and_sweep_by_their_bounds() {
    let d = tmpdir("sized");
    // A scenario whose own workload is far past the bounds (a million arrivals an hour
    // for a century): refused to run, fine to replay a trace with (only its allocator,
    // profiles and tenants are used).
    let huge = write(
        &d,
        "huge.toml",
        &BASE
            .replace("\"1d\"", "\"36525d\"")
            .replace("rate_per_hour = 1.0", "rate_per_hour = 1000000.0"),
    );
    refused(&run(&["run", &huge]), &["huge.toml", "rate_per_hour"]);
    let trace = write(
        &d,
        "t.csv",
        "t,op,id,ports\n0,add,a/b,443/TCP\n1h,remove,a/b\n",
    );
    let o = run(&["replay", &trace, "--scenario", &huge, "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A result claiming a sweep of more points than any sweep makes: refused at once
    // (it would have the merge count missing runs for hours).
    let shards = d.join("shards");
    let o = run(&[
        "sweep",
        &write(&d, "small.toml", BASE),
        "--param",
        "seed=1,2",
        "--out",
        shards.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(shards.join("shard-0-of-1.jsonl")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    v["sweep"]["points"] = serde_json::json!(u64::MAX);
    let f = write(&d, "huge.jsonl", &format!("{v}\n"));
    refused(
        &run(&["merge", &f]),
        &["huge.jsonl:1", "at most 1000000 points"],
    );
    // A table swept as a whole and a field inside it: one would overwrite the other.
    let o = run(&[
        "sweep",
        &write(&d, "base.toml", BASE),
        "--param",
        "workload.arrival.rate_per_hour=2,16",
        "--param",
        "workload.arrival={rate_per_hour=4.0}",
        "--out",
        d.join("sw").to_str().unwrap(),
    ]);
    refused(&o, &["--param", "overlaps"]);
    // Seeds past the largest one could not be run again with --seed.
    let top = write(
        &d,
        "top.toml",
        &format!("seed = 9223372036854775807\n{BASE}"),
    );
    let o = run(&["compare", &top, "--policies", "best-fit", "--seeds", "2"]);
    refused(&o, &["--seeds", "largest seed"]);
    // kubectl YAML with '#' and apostrophes in plain values is no deep nesting.
    let mut yaml = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..300 {
        let _ = writeln!(
            yaml,
            "- apiVersion: v1\n  kind: Service\n  metadata: {{name: s{i}, namespace: a, annotations: {{build: job#{i}, owner: Bob's team}}}}\n  spec: {{type: LoadBalancer, ports: [{{port: {}, protocol: TCP}}]}}",
            1000 + i
        );
    }
    let f = write(&d, "svc.yaml", &yaml);
    let o = run(&["plan", "--services", &f]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("300 Services"), "{}", stdout(&o));
}
