//! Trace replay input: timed add/remove events as JSON Lines or CSV.
//!
//! JSONL, one object per line:
//! `{"t": "90s", "op": "add", "id": "shop/web", "ports": [{"protocol": "TCP", "port": 443}]}`
//! (optional `tenant`, `sharing`, `allow_migration`; `t` in ms or with a unit) and
//! `{"t": "2h", "op": "remove", "id": "shop/web"}`.
//!
//! CSV with a header `t,op,id,ports[,tenant]`, ports as `443/TCP;0/UDP` (0 = any port).

use std::collections::HashSet;

use serde::Deserialize;
use sharedlb_allocator::{Claim, ClaimId, PortRequest, Protocol, TenantId};

use crate::error::InputError;
use crate::scenario::{Dur, parse_sharing};

/// One event of a trace.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceEvent {
    /// A claim appears at `t` ms.
    Add {
        /// Time in ms.
        t: u64,
        /// The claim.
        claim: Claim,
    },
    /// A claim goes at `t` ms.
    Remove {
        /// Time in ms.
        t: u64,
        /// Its id.
        id: ClaimId,
    },
}

impl TraceEvent {
    /// When it happens, in ms.
    pub fn time(&self) -> u64 {
        match self {
            TraceEvent::Add { t, .. } | TraceEvent::Remove { t, .. } => *t,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TimeRepr {
    Ms(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent {
    t: TimeRepr,
    op: String,
    id: String,
    #[serde(default)]
    ports: Vec<PortRequest>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    sharing: Option<String>,
    #[serde(default)]
    allow_migration: bool,
}

/// Parses a trace; `origin` names the file in errors. CSV when the first line starts
/// with `t,`, JSON Lines otherwise.
pub fn parse_trace(src: &str, origin: &str) -> Result<Vec<TraceEvent>, InputError> {
    let csv = src
        .lines()
        .next()
        .is_some_and(|l| l.trim_start().starts_with("t,"));
    let mut out = Vec::new();
    let mut live: HashSet<ClaimId> = HashSet::new();
    let mut last = 0;
    for (i, line) in src.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (csv && n == 1) {
            continue;
        }
        let err = |field: &str, m: &str| InputError::new(origin, Some(n), field, m);
        let ev = if csv {
            csv_event(line, &err)?
        } else {
            json_event(line, &err)?
        };
        if ev.time() < last {
            return Err(err("t", "events must be in time order"));
        }
        last = ev.time();
        match &ev {
            TraceEvent::Add { claim, .. } => {
                if !live.insert(claim.id().clone()) {
                    return Err(err("id", &format!("claim {} is added twice", claim.id())));
                }
            }
            TraceEvent::Remove { id, .. } => {
                if !live.remove(id) {
                    return Err(err(
                        "id",
                        &format!("claim {id} is removed but was not added"),
                    ));
                }
            }
        }
        out.push(ev);
    }
    if out.is_empty() {
        return Err(InputError::new(origin, None, "", "the trace has no events"));
    }
    Ok(out)
}

fn parse_time(t: &TimeRepr) -> Result<u64, String> {
    match t {
        TimeRepr::Ms(ms) => Ok(*ms),
        TimeRepr::Text(s) => s
            .parse::<u64>()
            .map_or_else(|_| Dur::parse(s).map(Dur::ms), Ok),
    }
}

fn make_claim(
    id: &str,
    ports: Vec<PortRequest>,
    tenant: Option<&str>,
    sharing: Option<&str>,
    migrate: bool,
    err: &dyn Fn(&str, &str) -> InputError,
) -> Result<Claim, InputError> {
    let mut c = Claim::new(id, ports).map_err(|e| err("ports", &e.to_string()))?;
    if let Some(t) = tenant {
        c = c.with_tenant(TenantId::new(t).map_err(|e| err("tenant", &e.to_string()))?);
    }
    if let Some(s) = sharing {
        c = c.with_sharing(parse_sharing(s).map_err(|m| err("sharing", &m))?);
    }
    Ok(c.with_migration(migrate))
}

fn json_event(
    line: &str,
    err: &dyn Fn(&str, &str) -> InputError,
) -> Result<TraceEvent, InputError> {
    let e: JsonEvent = serde_json::from_str(line).map_err(|e| err("", &e.to_string()))?;
    let t = parse_time(&e.t).map_err(|m| err("t", &m))?;
    match e.op.as_str() {
        "add" => Ok(TraceEvent::Add {
            t,
            claim: make_claim(
                &e.id,
                e.ports,
                e.tenant.as_deref(),
                e.sharing.as_deref(),
                e.allow_migration,
                err,
            )?,
        }),
        "remove" => Ok(TraceEvent::Remove {
            t,
            id: ClaimId::new(e.id).map_err(|x| err("id", &x.to_string()))?,
        }),
        other => Err(err("op", &format!("unknown op {other:?} (add or remove)"))),
    }
}

fn csv_event(line: &str, err: &dyn Fn(&str, &str) -> InputError) -> Result<TraceEvent, InputError> {
    let cols: Vec<&str> = line.split(',').map(str::trim).collect();
    if cols.len() < 3 {
        return Err(err("", "expected t,op,id,ports[,tenant]"));
    }
    let t = parse_time(&TimeRepr::Text(cols[0].to_owned())).map_err(|m| err("t", &m))?;
    match cols[1] {
        "add" => {
            let ports = cols
                .get(3)
                .copied()
                .unwrap_or("")
                .split(';')
                .filter(|p| !p.is_empty())
                .map(|p| parse_port(p).map_err(|m| err("ports", &m)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(TraceEvent::Add {
                t,
                claim: make_claim(
                    cols[2],
                    ports,
                    cols.get(4).copied().filter(|s| !s.is_empty()),
                    None,
                    false,
                    err,
                )?,
            })
        }
        "remove" => Ok(TraceEvent::Remove {
            t,
            id: ClaimId::new(cols[2]).map_err(|x| err("id", &x.to_string()))?,
        }),
        other => Err(err("op", &format!("unknown op {other:?} (add or remove)"))),
    }
}

/// Parses `443/TCP` (or `0/UDP` for any port; protocol defaults to TCP).
pub fn parse_port(s: &str) -> Result<PortRequest, String> {
    let (num, proto) = s.split_once('/').unwrap_or((s, "TCP"));
    let proto: Protocol = proto
        .parse()
        .map_err(|e: sharedlb_allocator::Error| e.to_string())?;
    let n: u32 = num
        .trim()
        .parse()
        .map_err(|_| format!("{num:?} is not a port number"))?;
    PortRequest::from_number(proto, n).map_err(|e| e.to_string())
}
