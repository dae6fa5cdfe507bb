//! Input errors: bad scenarios, traces and Service lists, each naming the place and the
//! problem in the user's words. The CLI exits with code 2 on them.

use std::fmt;

/// A problem with user input: file, line (when known), field (when known), message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The file (or `<built-in default>`, `--param`, ...).
    pub origin: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field, when known.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl InputError {
    /// An error at a place.
    pub fn new(origin: &str, line: Option<usize>, field: &str, message: &str) -> InputError {
        InputError {
            origin: origin.to_owned(),
            line,
            field: field.to_owned(),
            message: message.to_owned(),
        }
    }

    /// From a TOML parse error: its line, the field at that place, the message in words.
    pub fn toml(origin: &str, src: &str, e: &toml::de::Error) -> InputError {
        // A field missing from the top level comes with an empty span at the start: no
        // line or key says where (the first key would be named, or a comment).
        if e.span().is_some_and(|s| s.is_empty() && s.start == 0)
            && e.message().starts_with("missing field")
        {
            return InputError::new(origin, None, "", &words(e.message()));
        }
        let at = e.span().map(|s| s.start.min(src.len()));
        let line = at.map(|a| src[..a].matches('\n').count() + 1);
        let mut field = at.map(|a| key_path_at(src, a)).unwrap_or_default();
        if field.chars().count() > 120 {
            // A path nested past reading (`a.b.b.b...`): its start says where.
            field = field.chars().take(117).collect::<String>() + "...";
        }
        let message = words(e.message());
        // serde names the field in some messages already ("missing field `kind`").
        InputError::new(origin, line, &field, &message)
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}

/// The notation an input is written in, for naming its kinds of value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notation {
    /// Scenarios.
    Toml,
    /// Traces (JSON lines) and `kubectl -o json` Service lists.
    Json,
    /// `kubectl -o yaml` Service lists.
    Yaml,
}

/// [`words`] for an input in `notation`: what TOML calls a table is an object in JSON and
/// a mapping in YAML, and a list is an array in JSON.
pub fn words_in(msg: &str, notation: Notation) -> String {
    let out = words(msg);
    match notation {
        Notation::Toml => out,
        Notation::Json => out
            .replace("expected a table", "expected an object")
            .replace("expected a list", "expected an array"),
        Notation::Yaml => out.replace("expected a table", "expected a mapping"),
    }
}

/// A deserializer's message in the user's words (TOML's): no Rust type names.
pub fn words(msg: &str) -> String {
    const PLAIN: &[(&str, &str)] = &[
        ("expected u64", "expected a whole number >= 0"),
        ("expected usize", "expected a whole number >= 0"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a sequence", "expected a list [ ... ]"),
        ("expected a map", "expected a table { ... }"),
        ("expected a boolean", "expected true or false"),
        ("floating point `", "number `"),
        (
            "expected struct Quota",
            "expected a table such as { max_listeners = 100, max_claims = 50, max_dedicated_lbs = 5 }",
        ),
        (
            "expected struct Budget",
            "expected a table such as { max_lbs = 400, max_cost_per_hour = 20.0 }",
        ),
        (
            "expected struct TenantConfig",
            "expected a table such as { weight = 2 }",
        ),
    ];
    let mut out = msg.trim().to_owned();
    for (from, to) in PLAIN {
        out = out.replace(from, to);
    }
    // Whatever type names are left: `struct Foo`, `enum Foo`, `untagged enum Foo`.
    for (kind, said) in [
        ("expected struct ", "expected a table"),
        (
            "expected internally tagged enum ",
            "expected a table with a `kind`",
        ),
        ("any variant of untagged enum ", "any of the accepted forms"),
        ("expected enum ", "expected one of the accepted words"),
    ] {
        while let Some(i) = out.find(kind) {
            let rest = &out[i + kind.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out = format!("{}{said}{}", &out[..i], &rest[end..]);
        }
    }
    out
}

/// Walks a TOML text line by line, knowing the table each line is in; arrays of tables
/// are numbered from 0 (`profiles[1]`).
#[derive(Default)]
pub(crate) struct TomlWalk {
    header: String,
    counts: std::collections::HashMap<String, usize>,
}

impl TomlWalk {
    /// Takes one line; returns the table's path when the line is a table header.
    pub(crate) fn header(&mut self, raw: &str) -> Option<String> {
        let line = strip_comment(raw).trim();
        if let Some(h) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let name = clean_key(h);
            let n = self.counts.entry(name.clone()).or_insert(0);
            self.header = format!("{name}[{n}]");
            *n += 1;
            return Some(self.header.clone());
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = clean_key(h);
            // A sub-table of the latest element of an array of tables.
            let parent = self
                .counts
                .iter()
                .filter(|(k, _)| name.starts_with(&format!("{k}.")))
                .max_by_key(|(k, _)| k.len());
            self.header = match parent {
                Some((k, n)) => format!("{k}[{}]{}", n - 1, &name[k.len()..]),
                None => name,
            };
            return Some(self.header.clone());
        }
        None
    }

    /// The key paths set on a (non-header) line, in order, inline tables included; and
    /// the path of the last key whose value is still open at the end of `text`.
    pub(crate) fn keys(&self, text: &str) -> (Vec<String>, Option<String>) {
        // The inline tables and arrays the end of `text` is in: a table by its key (none
        // for an array's element), an array by its key and the element being read.
        enum Frame {
            Table(String),
            Array(String, usize),
        }
        let mut stack: Vec<Frame> = Vec::new();
        let mut key = String::new();
        let mut last: Option<String> = None;
        let mut in_str: Option<char> = None;
        let mut all = Vec::new();
        let path = |stack: &[Frame], k: Option<&str>| {
            let mut p = self.header.clone();
            let mut push = |part: &str| {
                if !p.is_empty() && !part.starts_with('[') {
                    p.push('.');
                }
                p.push_str(part);
            };
            for f in stack {
                match f {
                    Frame::Table(k) if k.is_empty() => {}
                    Frame::Table(k) => push(k),
                    Frame::Array(k, i) => {
                        if !k.is_empty() {
                            push(k);
                        }
                        push(&format!("[{i}]"));
                    }
                }
            }
            if let Some(k) = k {
                push(k);
            }
            p
        };
        let mut comment = false;
        for c in text.chars() {
            if comment {
                comment = c != '\n';
                continue;
            }
            if let Some(q) = in_str {
                if c == q {
                    in_str = None;
                }
                continue;
            }
            match c {
                '"' | '\'' => in_str = Some(c),
                '#' => comment = true,
                '=' => {
                    let k = clean_key(&key);
                    all.push(path(&stack, Some(&k)));
                    last = Some(k);
                    key.clear();
                }
                '{' => {
                    stack.push(Frame::Table(last.take().unwrap_or_default()));
                    key.clear();
                }
                '[' => {
                    stack.push(Frame::Array(last.take().unwrap_or_default(), 0));
                    key.clear();
                }
                '}' | ']' => {
                    stack.pop();
                    last = None;
                    key.clear();
                }
                ',' => {
                    if let Some(Frame::Array(_, i)) = stack.last_mut() {
                        *i += 1;
                    }
                    last = None;
                    key.clear();
                }
                _ => key.push(c),
            }
        }
        // A value being read: its key's path. Else, inside an inline table or array (at
        // a key, say an unknown one): the path of what it is in.
        let open = match last {
            Some(k) => Some(path(&stack, Some(&k))),
            None if !stack.is_empty() => Some(path(&stack, None)),
            None => None,
        };
        (all, open)
    }
}

/// The dotted path of the key whose value starts at byte `at` of a TOML text: the table
/// header above it, then the keys of the inline tables it sits in, then its own key.
pub fn key_path_at(src: &str, at: usize) -> String {
    let at = floor_char_boundary(src, at);
    let before = &src[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut walk = TomlWalk::default();
    // Where the statement holding `at` starts: an array or inline table left open on an
    // earlier line (`popular_ports = [` with one element per line) goes on on this one.
    let (mut statement, mut depth) = (0, 0usize);
    let mut offset = 0;
    for raw in before[..line_start].split_inclusive('\n') {
        if depth == 0 {
            statement = offset;
            walk.header(raw);
        }
        depth = depth.saturating_add_signed(nesting_change(raw));
        offset += raw.len();
    }
    let text = &src[if depth > 0 { statement } else { line_start }..at];
    let (all, open) = walk.keys(text);
    if let Some(p) = open.or_else(|| all.last().cloned()) {
        return p;
    }
    // An error at a table header (a field missing from the table): the table's path.
    let line = src[line_start..].lines().next().unwrap_or("");
    if let Some(h) = walk.header(line) {
        return h;
    }
    // An error at a key itself (`colour = ...`, an unknown key): that key.
    let k = clean_key(line.split('=').next().unwrap_or(""));
    match (walk.header.is_empty(), k.is_empty()) {
        (_, true) => walk.header,
        (true, false) => k,
        (false, false) => format!("{}.{k}", walk.header),
    }
}

/// How many more arrays and inline tables a line opens than it closes (strings and the
/// comment skipped).
fn nesting_change(line: &str) -> isize {
    let (mut change, mut in_str) = (0, None);
    for c in line.chars() {
        match (in_str, c) {
            (Some(q), c) if c == q => in_str = None,
            (None, '"' | '\'') => in_str = Some(c),
            (None, '#') => break,
            (None, '[' | '{') => change += 1,
            (None, ']' | '}') => change -= 1,
            _ => {}
        }
    }
    change
}

fn clean_key(k: &str) -> String {
    k.split('.')
        .map(|p| p.trim().trim_matches(|c| c == '"' || c == '\''))
        .collect::<Vec<_>>()
        .join(".")
}

fn strip_comment(line: &str) -> &str {
    // Good enough for headers: `[x] # note`.
    line.split(" #").next().unwrap_or(line)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_name_their_own_kinds_of_value() {
        let msg = "invalid type: integer `1`, expected struct Service";
        assert_eq!(
            words_in(msg, Notation::Json),
            "invalid type: integer `1`, expected an object"
        );
        assert_eq!(
            words_in(msg, Notation::Yaml),
            "invalid type: integer `1`, expected a mapping"
        );
        assert_eq!(
            words_in("invalid type: map, expected a sequence", Notation::Json),
            "invalid type: map, expected an array [ ... ]"
        );
        assert_eq!(
            words_in(msg, Notation::Toml),
            "invalid type: integer `1`, expected a table"
        );
    }

    #[test]
    fn type_names_become_words() {
        assert_eq!(
            words("invalid type: integer `5`, expected struct Bursts"),
            "invalid type: integer `5`, expected a table"
        );
        assert_eq!(
            words("data did not match any variant of untagged enum TimeRepr"),
            "data did not match any of the accepted forms"
        );
        assert!(!words("invalid value: integer `-1`, expected u32").contains("u32"));
    }

    #[test]
    fn key_paths() {
        let src = "a = 1\n[workload]\narrival = { rate_per_hour = 1e300, bursts = { size = x } }\n[[profiles]]\nname = 'a'\n[[profiles]]\nname = 'b'\n";
        let at = |needle: &str| src.find(needle).unwrap();
        assert_eq!(
            key_path_at(src, at("1e300")),
            "workload.arrival.rate_per_hour"
        );
        assert_eq!(key_path_at(src, at("x }")), "workload.arrival.bursts.size");
        assert_eq!(key_path_at(src, at("'b'")), "profiles[1].name");
        assert_eq!(key_path_at(src, at("1\n")), "a");
        // serde reports a missing field at the table's header: the path is the table's,
        // not the header line and the next key run together.
        assert_eq!(key_path_at(src, at("[workload]")), "workload");
        assert_eq!(
            key_path_at(src, src.rfind("[[profiles]]").unwrap()),
            "profiles[1]"
        );
        // Inline arrays count their elements: a value, and an unknown key in a table
        // element (the error is at the key: the element is named, serde names the key).
        let src = "[workload]\npopular_ports = [{ port = 443 }, { port = 70000, colour = 1 }]\nx = [1, 2, z]\n";
        let at = |needle: &str| src.find(needle).unwrap();
        assert_eq!(
            key_path_at(src, at("70000")),
            "workload.popular_ports[1].port"
        );
        assert_eq!(key_path_at(src, at("colour")), "workload.popular_ports[1]");
        assert_eq!(key_path_at(src, at("z]")), "workload.x[2]");
        // An array written one element per line, a comment among them; the table header
        // counted before it, a table header after it not.
        let src = "[[profiles]]\nname = 'a'\n[workload]\npopular_ports = [ # the usual\n  { port = 443 }, { port = 53 },\n  # and one more\n  { port = 70000 },\n]\nmax_listeners = x\n";
        let at = |needle: &str| src.find(needle).unwrap();
        assert_eq!(
            key_path_at(src, at("70000")),
            "workload.popular_ports[2].port"
        );
        assert_eq!(key_path_at(src, at("x\n")), "workload.max_listeners");
    }
}
