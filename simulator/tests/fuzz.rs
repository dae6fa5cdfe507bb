//! Fuzzing in the normal test run: the kept corpus (`simulator/fuzz/corpus/inputs`, found
//! by the cargo-fuzz target) is replayed, and a mutation fuzzer built on proptest mutates
//! the shipped examples. Every input must come back: no panic, no hang, no runaway memory.
//!
//! `PROPTEST_CASES=1000000 cargo test --release -p sharedlb-simulator --test fuzz` runs a
//! long campaign; the default is a short one.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use sharedlb_simulator::fuzz::{self, Kind};

fn dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The inputs every mutation starts from: the shipped examples, by kind.
fn seeds() -> Vec<(Kind, String)> {
    let mut out = Vec::new();
    for d in ["examples", "scenarios"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir(d))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let kind = match f.extension().and_then(|e| e.to_str()) {
                Some("toml") => Kind::Scenario,
                Some("jsonl" | "csv") => Kind::Trace,
                Some("json" | "yaml") => Kind::Services,
                _ => continue,
            };
            out.push((kind, std::fs::read_to_string(&f).unwrap()));
        }
    }
    out
}

#[test]
fn the_kept_corpus_replays() {
    let corpus = dir("fuzz/corpus/inputs");
    let mut n = 0;
    for e in std::fs::read_dir(&corpus).unwrap() {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        // A panic names the file through the test's output.
        eprintln!("{}", path.display());
        fuzz::case(&data);
        n += 1;
    }
    assert!(n >= 10, "the corpus at {} has {n} inputs", corpus.display());
}

#[test]
fn every_shipped_example_is_accepted() {
    for (kind, text) in seeds() {
        assert!(
            fuzz::input(kind, &text),
            "{kind:?} example refused:\n{text}"
        );
    }
}

/// Values that break parsers and arithmetic.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "0.5",
    "1e300",
    "-1e300",
    "1e-300",
    "nan",
    "inf",
    "-inf",
    "4294967295",
    "4294967296",
    "65535",
    "65536",
    "9223372036854775807",
    "18446744073709551615",
    "\"0s\"",
    "\"1ms\"",
    "\"36525d\"",
    "\"36526d\"",
    "\"9e11\"",
    "\"1w\"",
    "[]",
    "{}",
    "true",
    "\"\"",
];

/// Fragments that change the shape of a file.
const FRAGMENTS: &[&str] = &[
    "\n[[profiles]]\nname = \"aws-nlb\"\n",
    "\n[[tenants]]\nname = \"x\"\n",
    "\n[consolidation]\nevery = \"1s\"\nmax_moves = 100000\n",
    "bursts = { every = \"1s\", size = 1000000 }",
    "{ kind = \"mix\", short_fraction = 0.5, short = { kind = \"pareto\", scale = \"1ms\", shape = 0.1 }, long = { kind = \"fixed\", value = \"0s\" } }",
    "\n{\"t\": 18446744073709551615, \"op\": \"add\", \"id\": \"a/b\", \"ports\": [{\"protocol\": \"UDP\"}]}\n",
    "\n\"t\",\"op\",\"id\"\n",
    "\u{feff}",
    "\"",
    ",",
    "\n",
    "{\"metadata\": {\"name\": \"x\", \"annotations\": {\"metallb.universe.tf/allow-shared-ip\": \"k\"}}, \"spec\": {\"type\": \"LoadBalancer\", \"ports\": [{\"port\": 0}]}},",
    "&a [1]\n*a\n",
];

#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the n-th number in the text with a value.
    Number(usize, usize),
    /// Insert a fragment at a position (a fraction of the length).
    Insert(f64, usize),
    /// Delete a span.
    Delete(f64, usize),
    /// Overwrite a byte.
    Byte(f64, u8),
    /// Repeat a span.
    Repeat(f64, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (0..200usize, 0..NUMBERS.len()).prop_map(|(n, v)| Mutation::Number(n, v)),
        2 => (0.0..1.0f64, 0..FRAGMENTS.len()).prop_map(|(p, f)| Mutation::Insert(p, f)),
        1 => (0.0..1.0f64, 1..40usize).prop_map(|(p, n)| Mutation::Delete(p, n)),
        1 => (0.0..1.0f64, any::<u8>()).prop_map(|(p, b)| Mutation::Byte(p, b)),
        1 => (0.0..1.0f64, 1..200usize, 2..50usize).prop_map(|(p, n, k)| Mutation::Repeat(p, n, k)),
    ]
}

fn at(text: &str, p: f64) -> usize {
    let mut i = ((text.len() as f64) * p) as usize;
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &mut String, mutation: &Mutation) {
    match *mutation {
        Mutation::Number(nth, value) => {
            let spans: Vec<(usize, usize)> = number_spans(text);
            if let Some(&(start, end)) = spans.get(nth % spans.len().max(1)) {
                text.replace_range(start..end, NUMBERS[value]);
            }
        }
        Mutation::Insert(place, fragment) => {
            let i = at(text, place);
            text.insert_str(i, FRAGMENTS[fragment]);
        }
        Mutation::Delete(place, len) => {
            let (start, end) = span(text, place, len);
            text.replace_range(start..end, "");
        }
        Mutation::Byte(place, byte) => {
            let i = at(text, place);
            text.insert(i, char::from(byte));
        }
        Mutation::Repeat(place, len, times) => {
            let (start, end) = span(text, place, len);
            let repeated = text[start..end].repeat(times);
            text.insert_str(end, &repeated);
        }
    }
}

/// A span of about `len` bytes at a place, on character boundaries.
fn span(text: &str, place: f64, len: usize) -> (usize, usize) {
    let start = at(text, place);
    let mut end = (start + len).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (start, end)
}

/// Spans of numbers and quoted durations: the values a mutation swaps.
fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let a = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            out.push((a, i));
        } else {
            i += 1;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_inputs_never_panic_or_hang(
        seed in any::<prop::sample::Index>(),
        kind_swap in 0..8u8,
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        let (kind, text) = &seeds[seed.index(seeds.len())];
        let mut text = text.clone();
        for m in &muts {
            apply(&mut text, m);
        }
        // Now and then, feed a file to the wrong parser.
        let kind = if kind_swap == 0 { Kind::ALL[muts.len() % 3] } else { *kind };
        fuzz::input(kind, &text);
    }
}
