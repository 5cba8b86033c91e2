//! A strict parser of the Prometheus text exposition format (version 0.0.4): what a
//! node's METRICS answer and its `/metrics` endpoint hold. `sibyl-admin metrics` reads
//! the node's text with it, and the tests check with it that the text is well formed.
//!
//! Strict means it refuses what Prometheus would refuse or silently misread: a line that
//! is neither a comment nor a sample, a bad metric or label name, a bad escape, a
//! duplicate label, a value that is not a float, a `TYPE` after its family's samples or
//! twice, samples of one family split by another, the same series twice, a counter below
//! zero, and a histogram whose buckets are not cumulative, lack `+Inf`, or disagree with
//! its `_count`.
//!
//! Grammar (per line, `\n`-terminated; blank lines are ignored):
//! ```text
//! line    = "# HELP " name " " escaped-text
//!         | "# TYPE " name " " ("counter" | "gauge" | "histogram" | "summary" | "untyped")
//!         | "#" any                                   ; another comment
//!         | name [ "{" [ label *( "," label ) [ "," ] ] "}" ] " " value [ " " timestamp ]
//! name    = [a-zA-Z_:] *[a-zA-Z0-9_:]
//! label   = [a-zA-Z_] *[a-zA-Z0-9_] "=" '"' *( char | "\\" | "\"" | "\n" ) '"'
//! value   = a float, or "+Inf" | "-Inf" | "NaN"
//! ```

use std::collections::{BTreeMap, HashSet};

/// Labels as written: (name, value) pairs.
type Labels = Vec<(String, String)>;

/// The type a `# TYPE` line declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (reset on restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// `_bucket{le=...}`, `_sum` and `_count` series.
    Histogram,
    /// Quantiles, `_sum` and `_count` series.
    Summary,
    /// No type declared.
    Untyped,
}

impl MetricKind {
    fn parse(s: &str) -> Option<MetricKind> {
        Some(match s {
            "counter" => MetricKind::Counter,
            "gauge" => MetricKind::Gauge,
            "histogram" => MetricKind::Histogram,
            "summary" => MetricKind::Summary,
            "untyped" => MetricKind::Untyped,
            _ => return None,
        })
    }

    /// The word of the `TYPE` line.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
            MetricKind::Untyped => "untyped",
        }
    }

    /// The sample-name suffixes a family of this kind may use.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            MetricKind::Histogram => &["_bucket", "_sum", "_count"],
            MetricKind::Summary => &["", "_sum", "_count"],
            _ => &[""],
        }
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (the family name plus a suffix such as `_bucket`).
    pub name: String,
    /// Its labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A metric family: its `HELP`, `TYPE` and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// The family name.
    pub name: String,
    /// Its help text (unescaped), empty when none was given.
    pub help: String,
    /// Its type.
    pub kind: MetricKind,
    /// Its samples, in the order written.
    pub samples: Vec<Sample>,
}

/// A parsed exposition: its families in the order written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exposition {
    /// The families.
    pub families: Vec<MetricFamily>,
}

impl Exposition {
    /// The family `name`.
    pub fn family(&self, name: &str) -> Option<&MetricFamily> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The value of the sample `name` whose labels include every pair of `labels`
    /// (the first such sample).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .map(|s| s.value)
    }

    /// The sum of the samples named `name` whose labels include every pair of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .map(|s| s.value)
            .sum()
    }
}

/// Why a text is not a valid exposition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpositionError {
    /// A line could not be read.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A family's samples are inconsistent (histogram buckets, counts).
    #[error("family {family}: {reason}")]
    Family {
        /// The family.
        family: String,
        /// What is wrong.
        reason: String,
    },
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'));
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        // Rust also reads "inf", "infinity" and "nan" spelled otherwise: refuse them.
        _ if s
            .chars()
            .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E') =>
        {
            None
        }
        _ => s.parse().ok(),
    }
}

/// Reads `{...}` at the start of `rest`; returns the labels and what follows the `}`.
fn parse_labels(rest: &str) -> Result<(Labels, &str), String> {
    let mut labels: Labels = Vec::new();
    let mut s = rest.strip_prefix('{').ok_or("expected '{'")?;
    loop {
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = s.find('=').ok_or("a label without '='")?;
        let (name, after) = s.split_at(eq);
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        if labels.iter().any(|(k, _)| k == name) {
            return Err(format!("label {name:?} twice"));
        }
        let mut chars = after
            .strip_prefix("=\"")
            .ok_or_else(|| format!("label {name:?}: value not quoted"))?
            .char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {name:?}: unterminated value")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err(format!("label {name:?}: bad escape")),
                },
                Some((_, '\n')) => return Err(format!("label {name:?}: raw newline")),
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        let quoted = &after[2..];
        s = &quoted[end + 1..];
        if let Some(after_comma) = s.strip_prefix(',') {
            s = after_comma;
        } else if !s.starts_with('}') {
            return Err(format!("after label {name:?}: expected ',' or '}}'"));
        }
    }
}

fn unescape_help(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                _ => return Err("bad escape in HELP".to_owned()),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Parses `text` (see the module documentation for what is refused).
pub fn parse(text: &str) -> Result<Exposition, ExpositionError> {
    let mut families: Vec<MetricFamily> = Vec::new();
    // Families whose samples are over (another family's started since).
    let mut closed: HashSet<String> = HashSet::new();
    let mut series: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(ExpositionError::Line {
            line: text.lines().count(),
            reason: "the last line is not terminated".into(),
        });
    }
    for (i, line) in text.lines().enumerate() {
        let err = |reason: String| ExpositionError::Line {
            line: i + 1,
            reason,
        };
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start_matches(' ').splitn(3, ' ');
            let (keyword, name, rest) = (words.next(), words.next(), words.next());
            match keyword {
                Some("HELP") | Some("TYPE") => {}
                _ => continue,
            }
            let name = name.ok_or_else(|| err("HELP or TYPE without a name".into()))?;
            if !is_name(name, true) {
                return Err(err(format!("bad metric name {name:?}")));
            }
            let family = match families.last_mut() {
                Some(f) if f.name == name => f,
                _ => {
                    if closed.contains(name) || families.iter().any(|f| f.name == name) {
                        return Err(err(format!("family {name} described twice")));
                    }
                    if let Some(last) = families.last() {
                        closed.insert(last.name.clone());
                    }
                    families.push(MetricFamily {
                        name: name.to_owned(),
                        help: String::new(),
                        kind: MetricKind::Untyped,
                        samples: Vec::new(),
                    });
                    families.last_mut().ok_or_else(|| err("no family".into()))?
                }
            };
            if keyword == Some("HELP") {
                family.help = unescape_help(rest.unwrap_or_default()).map_err(err)?;
            } else {
                let kind = rest
                    .and_then(MetricKind::parse)
                    .ok_or_else(|| err(format!("bad TYPE {:?}", rest.unwrap_or_default())))?;
                if !family.samples.is_empty() {
                    return Err(err(format!("TYPE of {name} after its samples")));
                }
                family.kind = kind;
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("expected a space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value_text = fields.next().unwrap_or_default();
        let value =
            parse_value(value_text).ok_or_else(|| err(format!("bad value {value_text:?}")))?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| err(format!("bad timestamp {ts:?}")))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields after the timestamp".into()));
        }
        // The sample belongs to the current family when its name is the family's with
        // one of the kind's suffixes; else it starts an untyped family of its own.
        let belongs = families.last().is_some_and(|f| {
            f.kind
                .suffixes()
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(f.name.as_str()))
        });
        if !belongs {
            if closed.contains(name) || families.iter().any(|f| f.name == name) {
                return Err(err(format!("samples of {name} are not together")));
            }
            if let Some(last) = families.last() {
                closed.insert(last.name.clone());
            }
            families.push(MetricFamily {
                name: name.to_owned(),
                help: String::new(),
                kind: MetricKind::Untyped,
                samples: Vec::new(),
            });
        }
        let family = families.last_mut().ok_or_else(|| err("no family".into()))?;
        if family.kind == MetricKind::Counter && (value.is_nan() || value < 0.0) {
            return Err(err(format!("counter {name} is {value}")));
        }
        if family.kind == MetricKind::Histogram && name.ends_with("_bucket") {
            let le = labels
                .iter()
                .find(|(k, _)| k == "le")
                .ok_or_else(|| err(format!("{name} without an le label")))?;
            parse_value(&le.1).ok_or_else(|| err(format!("bad le {:?}", le.1)))?;
        }
        let mut key = labels.clone();
        key.sort();
        if !series.insert((name.to_owned(), key)) {
            return Err(err(format!("series {name} with these labels twice")));
        }
        family.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for family in families.iter().filter(|f| f.kind == MetricKind::Histogram) {
        check_histogram(family)?;
    }
    Ok(Exposition { families })
}

/// Buckets cumulative, `+Inf` present and equal to `_count`, per label set.
fn check_histogram(family: &MetricFamily) -> Result<(), ExpositionError> {
    let fail = |reason: String| ExpositionError::Family {
        family: family.name.clone(),
        reason,
    };
    let bucket_name = format!("{}_bucket", family.name);
    let count_name = format!("{}_count", family.name);
    let mut buckets: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<Labels, f64> = BTreeMap::new();
    for s in &family.samples {
        let mut key: Vec<(String, String)> = s
            .labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect();
        key.sort();
        if s.name == bucket_name {
            let le = s.label("le").and_then(parse_value).unwrap_or(f64::NAN);
            buckets.entry(key).or_default().push((le, s.value));
        } else if s.name == count_name {
            counts.insert(key, s.value);
        }
    }
    for (key, mut series) in buckets {
        series.sort_by(|a, b| a.0.total_cmp(&b.0));
        if series.windows(2).any(|w| w[1].1 < w[0].1) {
            return Err(fail(format!("buckets of {key:?} are not cumulative")));
        }
        let inf = series
            .last()
            .filter(|(le, _)| *le == f64::INFINITY)
            .map(|(_, v)| *v)
            .ok_or_else(|| fail(format!("{key:?} has no +Inf bucket")))?;
        match counts.get(&key) {
            Some(c) if *c == inf => {}
            Some(c) => return Err(fail(format!("{key:?}: +Inf bucket {inf} but count {c}"))),
            None => return Err(fail(format!("{key:?} has buckets but no _count"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# HELP sibyl_requests_total Client requests, by opcode
# TYPE sibyl_requests_total counter
sibyl_requests_total{op=\"GET\",consistency=\"one\"} 3
sibyl_requests_total{op=\"INSERT\",consistency=\"default\",} 4
# HELP lat Latency with a \\\\ and a \\n in its help
# TYPE lat histogram
lat_bucket{op=\"GET\",le=\"0.001\"} 1
lat_bucket{op=\"GET\",le=\"+Inf\"} 2
lat_sum{op=\"GET\"} 0.5
lat_count{op=\"GET\"} 2
# a free comment
untyped_thing{path=\"a \\\"quoted\\\" \\\\ name\"} -1.5e-3 1700000000000

# TYPE g gauge
g NaN
";

    #[test]
    fn exposition_parses_families_labels_and_escapes() {
        let e = parse(GOOD).unwrap();
        assert_eq!(e.families.len(), 4);
        let req = e.family("sibyl_requests_total").unwrap();
        assert_eq!(req.kind, MetricKind::Counter);
        assert_eq!(req.samples.len(), 2);
        assert_eq!(
            e.value("sibyl_requests_total", &[("op", "INSERT")]),
            Some(4.0)
        );
        assert_eq!(e.sum("sibyl_requests_total", &[]), 7.0);
        let lat = e.family("lat").unwrap();
        assert_eq!(lat.help, "Latency with a \\ and a \n in its help");
        assert_eq!(lat.samples.len(), 4);
        let u = e.family("untyped_thing").unwrap();
        assert_eq!(u.kind, MetricKind::Untyped);
        assert_eq!(u.samples[0].label("path"), Some("a \"quoted\" \\ name"));
        assert_eq!(u.samples[0].value, -1.5e-3);
        assert!(e.value("g", &[]).unwrap().is_nan());
    }

    fn refused(text: &str) -> String {
        match parse(text) {
            Ok(e) => panic!("accepted {text:?}: {e:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn exposition_refuses_malformed_lines() {
        assert!(refused("9bad 1\n").contains("bad metric name"));
        assert!(refused("m{a=\"1\",a=\"2\"} 1\n").contains("twice"));
        assert!(refused("m{a=1} 1\n").contains("not quoted"));
        assert!(refused("m{a=\"x\\q\"} 1\n").contains("bad escape"));
        assert!(refused("m{a=\"x} 1\n").contains("unterminated"));
        assert!(refused("m 1x\n").contains("bad value"));
        assert!(refused("m inf\n").contains("bad value"));
        assert!(refused("m 1 2 3\n").contains("trailing"));
        assert!(refused("m 1 12.5\n").contains("timestamp"));
        assert!(refused("m\n").contains("space"));
        assert!(refused("m 1").contains("not terminated"));
        assert!(refused("# TYPE m bogus\n").contains("bad TYPE"));
    }

    #[test]
    fn exposition_refuses_inconsistent_families() {
        assert!(refused("m 1\n# TYPE m counter\n").contains("after its samples"));
        assert!(
            refused("# TYPE m gauge\nm 1\n# TYPE n gauge\n# TYPE m gauge\n")
                .contains("described twice")
        );
        assert!(refused("# TYPE m counter\nm 1\nn 1\nm 2\n").contains("not together"));
        assert!(refused("# TYPE m counter\nm -1\n").contains("counter m is -1"));
        assert!(refused("m 1\nm 2\n").contains("twice"));
        let hist = |buckets: &str, count: &str| {
            format!("# TYPE h histogram\n{buckets}h_sum 1\nh_count {count}\n")
        };
        assert!(parse(&hist(
            "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n",
            "2"
        ))
        .is_ok());
        assert!(refused(&hist(
            "h_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\n",
            "2"
        ))
        .contains("not cumulative"));
        assert!(refused(&hist("h_bucket{le=\"1\"} 1\n", "1")).contains("no +Inf"));
        assert!(refused(&hist(
            "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n",
            "3"
        ))
        .contains("count 3"));
        assert!(refused("# TYPE h histogram\nh_bucket 1\n").contains("without an le"));
    }
}
