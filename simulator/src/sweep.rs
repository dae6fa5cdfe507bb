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
    let values = vals
        .split(',')
        .map(|v| parse_value(v.trim()))
        .collect::<Vec<_>>();
    if values.is_empty() || vals.trim().is_empty() {
        return Err(err("at least one value is needed"));
    }
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

/// Every combination of the axes' values, in a fixed order.
pub fn grid(axes: &[Axis]) -> Vec<Vec<(String, toml::Value)>> {
    let mut points: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for a in axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                a.values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((a.path.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    points
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

/// One result line of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    /// Index of the grid point.
    pub point: usize,
    /// Seed index.
    pub run: usize,
    /// The overrides, as `path=value`.
    pub params: Vec<String>,
    /// The run's summary.
    pub summary: Summary,
}
