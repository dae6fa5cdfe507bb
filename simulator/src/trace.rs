//! Trace replay input: timed add/remove events as JSON Lines or CSV.
//!
//! JSONL, one object per line:
//! `{"t": "90s", "op": "add", "id": "shop/web", "ports": [{"protocol": "TCP", "port": 443}]}`
//! (optional `tenant`, `sharing` (else the tenant's rule in the scenario),
//! `allow_migration`; `t` in ms, whole or not, or with a unit) and
//! `{"t": "2h", "op": "remove", "id": "shop/web"}`.
//!
//! CSV (RFC 4180: quoted fields, `""` for a quote inside one, a byte-order mark allowed)
//! with a header naming its columns in any order: `t`, `op`, `id` (required), `ports`,
//! `tenant`, `sharing`, `allow_migration`; ports as `443/TCP;0/UDP` (0 = any port). An
//! unknown column is an error.
//!
//! Times are from 0 to 100 years; events must be in time order. A file whose first line
//! (after blank lines and `#` comments) starts with `{` is JSON Lines, otherwise CSV.

use std::collections::HashSet;

use serde::Deserialize;
use sharedlb_allocator::{Claim, ClaimId, PortRequest, Protocol, Sharing, TenantId};

use crate::error::{InputError, Notation, words_in};
use crate::scenario::{Dur, MAX_DURATION_MS, parse_sharing};

/// One event of a trace.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceEvent {
    /// A claim appears at `t` ms.
    Add {
        /// Time in ms.
        t: u64,
        /// The claim, without a sharing rule of its own.
        claim: Claim,
        /// The sharing rule the line names; `None`: its tenant's in the scenario (as a
        /// generated claim of that tenant gets), else the allocator's default.
        sharing: Option<Sharing>,
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

/// A trace time: a number of ms, or text with a unit (`90s`, `2h`).
struct TraceTime(u64);

impl<'de> Deserialize<'de> for TraceTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TraceTime, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = TraceTime;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a time such as 90000 (ms), \"90s\", \"15m\" or \"2h\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<TraceTime, E> {
                check_ms(v).map(TraceTime).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<TraceTime, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("a time cannot be negative"))?;
                self.visit_u64(v)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<TraceTime, E> {
                ms_of_number(v).map(TraceTime).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TraceTime, E> {
                parse_time(v).map(TraceTime).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

fn too_late() -> String {
    format!("later than 100 years ({MAX_DURATION_MS} ms), the latest time accepted")
}

/// A bare number with a fraction (`600000.0`, as spreadsheets and data frames write whole
/// numbers): ms, to the nearest ms, like a whole number.
fn ms_of_number(v: f64) -> Result<u64, String> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!(
            "{v} is no time: a time is a number of ms >= 0, or has a unit"
        ));
    }
    if v > MAX_DURATION_MS as f64 {
        return Err(format!("{v} ms is {}", too_late()));
    }
    Ok(v.round() as u64)
}

fn check_ms(ms: u64) -> Result<u64, String> {
    if ms > MAX_DURATION_MS {
        Err(format!("{ms} ms is {}", too_late()))
    } else {
        Ok(ms)
    }
}

/// A port of a JSON trace: `{"protocol": "TCP", "port": 443}`, port 0 or absent = any.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a port such as {\"protocol\": \"TCP\", \"port\": 443} (port 0: any port)"
)]
struct JsonPort {
    protocol: String,
    #[serde(default)]
    port: i64,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an event such as {\"t\": \"90s\", \"op\": \"add\", \"id\": \"shop/web\", \"ports\": [{\"protocol\": \"TCP\", \"port\": 443}]}"
)]
struct JsonEvent {
    t: TraceTime,
    op: String,
    id: String,
    #[serde(default)]
    ports: Vec<JsonPort>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    sharing: Option<String>,
    #[serde(default)]
    allow_migration: bool,
}

/// Parses a trace; `origin` names the file in errors.
pub fn parse_trace(src: &str, origin: &str) -> Result<Vec<TraceEvent>, InputError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    // Lines ended by a carriage return alone (as old Mac spreadsheets save CSV) are lines.
    let unified;
    let src = if src.contains('\r') {
        unified = src.replace("\r\n", "\n").replace('\r', "\n");
        unified.as_str()
    } else {
        src
    };
    let first = src
        .lines()
        .map(str::trim)
        .enumerate()
        .find(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    if let Some((n, l)) = first
        && l.starts_with('[')
    {
        return Err(InputError::new(
            origin,
            Some(n + 1),
            "",
            "a JSON array; a JSON Lines trace has one event object per line",
        ));
    }
    let json = first.is_some_and(|(_, l)| l.starts_with('{'));
    let events = if json {
        json_events(src, origin)?
    } else {
        csv_events(src, origin)?
    };
    let mut out = Vec::with_capacity(events.len());
    let mut live: HashSet<ClaimId> = HashSet::new();
    let mut last = 0;
    for (n, ev) in events {
        let err = |field: &str, m: &str| InputError::new(origin, Some(n), field, m);
        if ev.time() < last {
            return Err(err(
                "t",
                &format!(
                    "events must be in time order: {} comes after {}",
                    Dur(ev.time()),
                    Dur(last)
                ),
            ));
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

/// A time in a trace: a bare number is ms, whole or not (`90000`, `90000.0`), in a JSON
/// string or a CSV field as in a JSON number; text with a unit is read by its unit (`90s`,
/// `2h`).
fn parse_time(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return check_ms(ms);
    }
    // Digits, a sign, a point or an exponent only: `inf` and `NaN` are not times.
    if s.bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        && let Ok(v) = s.parse::<f64>()
    {
        return ms_of_number(v);
    }
    Dur::parse(s)
        .map(Dur::ms)
        .map_err(|m| m.replace("a number of seconds", "a number of ms"))
}

/// Parses `TCP`, `UDP`, `SCTP` (any case).
fn parse_protocol(s: &str) -> Result<Protocol, String> {
    s.trim()
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| format!("unknown protocol {s:?} (TCP, UDP or SCTP)"))
}

/// A port number and protocol: 1 to 65535, or 0 for any free port.
fn port_request(proto: Protocol, n: i64) -> Result<PortRequest, String> {
    let n = u32::try_from(n)
        .ok()
        .filter(|n| *n <= 65_535)
        .ok_or_else(|| format!("port {n} is out of range (1 to 65535, or 0 for any port)"))?;
    PortRequest::from_number(proto, n).map_err(|e| e.to_string())
}

fn make_claim(
    id: &str,
    ports: Vec<PortRequest>,
    tenant: Option<&str>,
    sharing: Option<&str>,
    migrate: bool,
    err: &dyn Fn(&str, &str) -> InputError,
) -> Result<(Claim, Option<Sharing>), InputError> {
    let id = ClaimId::new(id).map_err(|e| err("id", &e.to_string()))?;
    let mut c = Claim::with_ports(id, ports).map_err(|e| err("ports", &e.to_string()))?;
    if let Some(t) = tenant {
        c = c.with_tenant(TenantId::new(t).map_err(|e| err("tenant", &e.to_string()))?);
    }
    let sharing = sharing
        .map(|s| parse_sharing(s).map_err(|m| err("sharing", &m)))
        .transpose()?;
    Ok((c.with_migration(migrate), sharing))
}

fn event(
    t: u64,
    op: &str,
    id: &str,
    add: impl FnOnce() -> Result<(Claim, Option<Sharing>), InputError>,
    err: &dyn Fn(&str, &str) -> InputError,
) -> Result<TraceEvent, InputError> {
    match op.trim() {
        "add" => {
            let (claim, sharing) = add()?;
            Ok(TraceEvent::Add { t, claim, sharing })
        }
        "remove" => Ok(TraceEvent::Remove {
            t,
            id: ClaimId::new(id).map_err(|x| err("id", &x.to_string()))?,
        }),
        other => Err(err("op", &format!("unknown op {other:?} (add or remove)"))),
    }
}

fn json_events(src: &str, origin: &str) -> Result<Vec<(usize, TraceEvent)>, InputError> {
    let mut out = Vec::new();
    for (i, line) in src.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |field: &str, m: &str| InputError::new(origin, Some(n), field, m);
        let e: JsonEvent = serde_json::from_str(line).map_err(|e| {
            let msg = e.to_string();
            // One object per line: the column is what helps.
            let msg = msg.replace(" at line 1 column", " at column");
            err("", &words_in(&msg, Notation::Json))
        })?;
        let ev = event(
            e.t.0,
            &e.op,
            &e.id,
            || {
                let ports = e
                    .ports
                    .iter()
                    .map(|p| parse_protocol(&p.protocol).and_then(|pr| port_request(pr, p.port)))
                    .collect::<Result<Vec<_>, String>>()
                    .map_err(|m| err("ports", &m))?;
                make_claim(
                    &e.id,
                    ports,
                    e.tenant.as_deref(),
                    e.sharing.as_deref(),
                    e.allow_migration,
                    &err,
                )
            },
            &err,
        )?;
        out.push((n, ev));
    }
    Ok(out)
}

/// The columns a CSV trace may have.
pub const CSV_COLUMNS: &[&str] = &[
    "t",
    "op",
    "id",
    "ports",
    "tenant",
    "sharing",
    "allow_migration",
];

fn csv_events(src: &str, origin: &str) -> Result<Vec<(usize, TraceEvent)>, InputError> {
    let mut records =
        csv_records(src).map_err(|(n, m)| InputError::new(origin, Some(n), "", &m))?;
    let Some((head_line, header)) = (!records.is_empty()).then(|| records.remove(0)) else {
        return Ok(Vec::new());
    };
    let herr = |field: &str, m: &str| InputError::new(origin, Some(head_line), field, m);
    let mut col: [Option<usize>; 7] = [None; 7];
    for (i, name) in header.iter().enumerate() {
        let name = name.trim();
        let Some(k) = CSV_COLUMNS
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
        else {
            return Err(herr(
                name,
                &format!(
                    "unknown column {name:?} (columns: {}; a CSV trace needs a header line)",
                    CSV_COLUMNS.join(", ")
                ),
            ));
        };
        if col[k].replace(i).is_some() {
            return Err(herr(name, "the column appears twice"));
        }
    }
    for (k, required) in CSV_COLUMNS.iter().enumerate().take(3) {
        if col[k].is_none() {
            return Err(herr(
                "",
                &format!("the header has no {required:?} column (t, op and id are required)"),
            ));
        }
    }
    let mut out = Vec::with_capacity(records.len());
    for (n, rec) in records {
        let err = |field: &str, m: &str| InputError::new(origin, Some(n), field, m);
        if rec.len() > header.len() {
            return Err(err(
                "",
                &format!(
                    "{} fields, but the header names {} columns",
                    rec.len(),
                    header.len()
                ),
            ));
        }
        let get = |k: usize| -> &str { col[k].and_then(|i| rec.get(i)).map_or("", |s| s.trim()) };
        let t = parse_time(get(0)).map_err(|m| err("t", &m))?;
        let ev = event(
            t,
            get(1),
            get(2),
            || {
                let ports = get(3)
                    .split(';')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| parse_port(p).map_err(|m| err("ports", &m)))
                    .collect::<Result<Vec<_>, _>>()?;
                let migrate = match get(6).to_ascii_lowercase().as_str() {
                    "" | "false" | "no" | "0" => false,
                    "true" | "yes" | "1" => true,
                    other => {
                        return Err(err(
                            "allow_migration",
                            &format!("{other:?} is not true or false"),
                        ));
                    }
                };
                let opt = |k: usize| Some(get(k)).filter(|s| !s.is_empty());
                make_claim(get(2), ports, opt(4), opt(5), migrate, &err)
            },
            &err,
        )?;
        out.push((n, ev));
    }
    Ok(out)
}

/// Splits CSV text into records (RFC 4180), each with the line it starts on. Blank lines
/// and lines starting with `#` between records are skipped.
/// A CSV record: the line it starts on and its fields.
type Record = (usize, Vec<String>);

fn csv_records(src: &str) -> Result<Vec<Record>, (usize, String)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = src.chars().peekable();
    while chars.peek().is_some() {
        let start = line;
        // Skip blank lines and comments.
        match chars.peek() {
            Some('\n') => {
                chars.next();
                line += 1;
                continue;
            }
            Some('\r') => {
                chars.next();
                continue;
            }
            Some('#') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
                continue;
            }
            _ => {}
        }
        let mut rec = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut was_quoted = false;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    return Err((start, "a quoted field is not closed".into()));
                }
                break;
            };
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        line += 1;
                        field.push(c);
                    }
                    _ => field.push(c),
                }
                continue;
            }
            match c {
                '"' if field.trim().is_empty() && !was_quoted => {
                    field.clear();
                    quoted = true;
                    was_quoted = true;
                }
                '"' => {
                    return Err((
                        line,
                        "a quote inside an unquoted field (quote the whole field and double \
                         the quote: \"a\"\"b\")"
                            .into(),
                    ));
                }
                ',' => {
                    rec.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '\n' => {
                    line += 1;
                    break;
                }
                '\r' => {}
                _ if was_quoted && !c.is_whitespace() => {
                    return Err((line, "text after a closing quote".into()));
                }
                _ => field.push(c),
            }
        }
        rec.push(field);
        out.push((start, rec));
    }
    Ok(out)
}

/// Parses `443/TCP` (or `0/UDP` for any port; protocol defaults to TCP).
pub fn parse_port(s: &str) -> Result<PortRequest, String> {
    let (num, proto) = s.split_once('/').unwrap_or((s, "TCP"));
    let proto = parse_protocol(proto)?;
    let n: i64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{num:?} is not a port number (write ports as 443/TCP;53/UDP)"))?;
    port_request(proto, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_handle_quotes_and_lines() {
        let r = csv_records("a,\"b,c\",\"d\"\"e\"\n\n# x\n\"multi\nline\",z\n").unwrap();
        assert_eq!(
            r,
            vec![
                (1, vec!["a".into(), "b,c".into(), "d\"e".into()]),
                (4, vec!["multi\nline".into(), "z".into()]),
            ]
        );
        assert!(csv_records("\"open").is_err());
        assert!(csv_records("a\"b").is_err());
    }
}
