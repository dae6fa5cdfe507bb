//! Parameter sweeps: overrides of dotted scenario fields, the grid they span, and shards
//! of it, so a large sweep can run as a Kubernetes Indexed Job or any batch system.

use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::metrics::Summary;

/// One `--param a.b.c=v1,v2,...` axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// Dotted field path.
    pub path: String,
    /// Values (TOML literals; bare words are taken as strings).
    pub values: Vec<toml::Value>,
}

/// Parses `a.b.c=v1,v2`.
pub fn parse_axis(s: &str) -> Result<Axis, InputError> {
    let err = |m: &str| InputError::new("--param", None, s, m);
    let (path, vals) = s
        .split_once('=')
        .ok_or_else(|| err("expected FIELD=V1,V2,..."))?;
    let path = path.trim();
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(err(
            "the field must be a dotted path such as workload.arrival.rate_per_hour",
        ));
    }
    if vals.split(',').any(|v| v.trim().is_empty()) {
        return Err(err(
            "every value must be given: FIELD=V1,V2,... with no empty value",
        ));
    }
    let values = vals
        .split(',')
        .map(|v| parse_value(v.trim()))
        .collect::<Vec<_>>();
    Ok(Axis {
        path: path.to_owned(),
        values,
    })
}

fn parse_value(v: &str) -> toml::Value {
    let doc = format!("x = {v}");
    toml::from_str::<toml::Table>(&doc)
        .ok()
        .and_then(|mut t| t.remove("x"))
        .unwrap_or_else(|| toml::Value::String(v.to_owned()))
}

/// Sets a dotted field in a TOML table, creating tables on the way.
pub fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) -> Result<(), InputError> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut cur = table;
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur.insert((*p).to_owned(), value);
            return Ok(());
        }
        let next = cur
            .entry((*p).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = next.as_table_mut().ok_or_else(|| {
            InputError::new("--param", None, path, &format!("{p} is not a table"))
        })?;
    }
    Ok(())
}

/// Most grid points a sweep may span.
pub const MAX_POINTS: u64 = 1_000_000;

/// Every combination of the axes' values, in a fixed order (the last axis varies
/// fastest), addressed by index so that a shard makes only its own points.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    axes: Vec<Axis>,
    len: u64,
}

impl Grid {
    /// The grid of `axes`; refused when it spans more than [`MAX_POINTS`] points.
    pub fn new(axes: Vec<Axis>) -> Result<Grid, InputError> {
        // A field swept twice: the later axis would overwrite the earlier at every point,
        // and the labels would name values that never ran.
        // So is a field inside a table swept as a whole (`a.b` and `a.b.c`).
        let within = |outer: &str, inner: &str| {
            inner == outer
                || inner
                    .strip_prefix(outer)
                    .is_some_and(|r| r.starts_with('.'))
        };
        for (i, a) in axes.iter().enumerate() {
            if let Some(b) = axes[..i]
                .iter()
                .find(|b| within(&b.path, &a.path) || within(&a.path, &b.path))
            {
                let message = if b.path == a.path {
                    "is given twice; give all its values in one --param FIELD=V1,V2,...".to_owned()
                } else {
                    format!("overlaps --param {}: one would overwrite the other", b.path)
                };
                return Err(InputError::new("--param", None, &a.path, &message));
            }
        }
        let len = axes.iter().try_fold(1u64, |n, a| {
            n.checked_mul(a.values.len() as u64)
                .filter(|&n| n <= MAX_POINTS)
        });
        let len = len.ok_or_else(|| {
            InputError::new(
                "--param",
                None,
                "",
                &format!("the grid spans more than {MAX_POINTS} points; split the sweep"),
            )
        })?;
        Ok(Grid { axes, len })
    }

    /// How many points.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has no point (never: an axis has at least one value).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Point `k` (0 ≤ k < len): one value per axis.
    pub fn point(&self, mut k: u64) -> Vec<(String, toml::Value)> {
        let mut out = Vec::with_capacity(self.axes.len());
        for a in self.axes.iter().rev() {
            let n = a.values.len() as u64;
            out.push((a.path.clone(), a.values[(k % n) as usize].clone()));
            k /= n;
        }
        out.reverse();
        out
    }
}

/// Parses `i/n` (0 ≤ i < n).
pub fn parse_shard(s: &str) -> Result<(usize, usize), InputError> {
    let err = || InputError::new("--shard", None, s, "expected i/n with 0 <= i < n");
    let (i, n) = s.split_once('/').ok_or_else(err)?;
    let (i, n): (usize, usize) = (i.parse().map_err(|_| err())?, n.parse().map_err(|_| err())?);
    if n == 0 || i >= n {
        return Err(err());
    }
    Ok((i, n))
}

/// Which sweep a result belongs to: `merge` refuses to mix sweeps (a shard left over
/// from an earlier scenario or grid would otherwise stand in for a current one) and
/// says which runs of the sweep are missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepId {
    /// A hash of the scenario file's text, the `--param` axes and `--seeds` (64-bit
    /// FNV-1a, hex): the same for every shard of one sweep, on any machine.
    pub fingerprint: String,
    /// Grid points of the whole sweep.
    pub points: usize,
    /// Runs (seeds) per point.
    pub runs: usize,
}

/// One result line of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    /// Index of the grid point.
    pub point: usize,
    /// Seed index.
    pub run: usize,
    /// The sweep it belongs to.
    pub sweep: SweepId,
    /// The overrides, as `path=value`.
    pub params: Vec<String>,
    /// The run's summary.
    pub summary: Summary,
}
