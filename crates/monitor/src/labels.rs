//! Series identity (metric name + sorted labels), label selectors and the postings index.

use std::collections::HashMap;
use std::fmt;

/// Label name under which the metric name is stored (Prometheus convention).
pub const METRIC_NAME: &str = "__name__";

/// Dense id of a series inside one [`crate::Tsdb`]; stable across reopen of the same directory.
pub type SeriesId = u32;

/// A series identity: metric name plus labels, kept sorted by label name, names unique.
///
/// Typical labels: `app`, `env`, `group`, `container`, `host`, `department`, `datacenter`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Labels(Vec<(String, String)>);

/// Why a label set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelsError {
    /// The metric name is empty.
    #[error("metric name must not be empty")]
    EmptyMetric,
    /// A label name is empty or not `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("invalid label name {0:?}: use [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidName(String),
    /// The same label name appears twice.
    #[error("duplicate label name {0:?}")]
    Duplicate(String),
    /// A name or value is longer than 65,535 bytes (the on-disk limit).
    #[error("label {0:?} is longer than 65535 bytes")]
    TooLong(String),
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Labels {
    /// Builds a label set for `metric` with the given labels (any order; sorted here).
    /// Labels with an empty value are dropped, as in Prometheus.
    pub fn new<K, V>(
        metric: &str,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, LabelsError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        if metric.is_empty() {
            return Err(LabelsError::EmptyMetric);
        }
        let mut v: Vec<(String, String)> = vec![(METRIC_NAME.to_string(), metric.to_string())];
        for (k, val) in labels {
            let (k, val) = (k.into(), val.into());
            if !valid_name(&k) || k == METRIC_NAME {
                return Err(LabelsError::InvalidName(k));
            }
            if !val.is_empty() {
                v.push((k, val));
            }
        }
        Self::from_pairs(v)
    }

    /// Builds a label set from raw pairs that already include [`METRIC_NAME`].
    pub fn from_pairs(mut v: Vec<(String, String)>) -> Result<Self, LabelsError> {
        v.sort();
        for w in v.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(LabelsError::Duplicate(w[0].0.clone()));
            }
        }
        for (k, val) in &v {
            if k.len() > u16::MAX as usize || val.len() > u16::MAX as usize {
                return Err(LabelsError::TooLong(k.clone()));
            }
        }
        match v.iter().find(|(k, _)| k == METRIC_NAME) {
            Some((_, m)) if !m.is_empty() => Ok(Self(v)),
            _ => Err(LabelsError::EmptyMetric),
        }
    }

    /// The metric name.
    pub fn metric(&self) -> &str {
        self.get(METRIC_NAME).unwrap_or_default()
    }

    /// Value of label `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// All pairs, sorted by name (the metric name included).
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{", self.metric())?;
        let mut first = true;
        for (k, v) in self.0.iter().filter(|(k, _)| k != METRIC_NAME) {
            if !first {
                write!(f, ",")?;
            }
            first = false;
            write!(f, "{k}={v:?}")?;
        }
        write!(f, "}}")
    }
}

/// One condition on a label.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Matcher {
    /// The label equals the value (answered from postings).
    Eq(String, String),
    /// The label equals one of the values (union of postings).
    OneOf(String, Vec<String>),
    /// The label is absent or differs from the value.
    NotEq(String, String),
}

/// A conjunction of matchers. Selecting by metric is `Matcher::Eq("__name__", ..)`;
/// [`Selector::metric`] builds that.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Selector {
    /// All must hold.
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// Series of metric `name`.
    pub fn metric(name: &str) -> Self {
        Self {
            matchers: vec![Matcher::Eq(METRIC_NAME.into(), name.into())],
        }
    }

    /// Adds `label = value`.
    pub fn eq(mut self, label: &str, value: &str) -> Self {
        self.matchers.push(Matcher::Eq(label.into(), value.into()));
        self
    }

    /// Adds `label ∈ values`.
    pub fn one_of(mut self, label: &str, values: &[&str]) -> Self {
        self.matchers.push(Matcher::OneOf(
            label.into(),
            values.iter().map(|v| v.to_string()).collect(),
        ));
        self
    }

    /// Adds `label != value`.
    pub fn not_eq(mut self, label: &str, value: &str) -> Self {
        self.matchers
            .push(Matcher::NotEq(label.into(), value.into()));
        self
    }

    /// True if `labels` satisfies every matcher.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| match m {
            Matcher::Eq(k, v) => labels.get(k) == Some(v.as_str()),
            Matcher::OneOf(k, vs) => labels.get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Matcher::NotEq(k, v) => labels.get(k) != Some(v.as_str()),
        })
    }
}

/// Labels → series id, and inverted postings (label name, value) → sorted series ids.
#[derive(Debug, Default)]
pub struct Index {
    by_id: Vec<Labels>,
    ids: HashMap<Labels, SeriesId>,
    postings: HashMap<String, HashMap<String, Vec<SeriesId>>>,
}

impl Index {
    /// Number of series.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no series exists.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Id of `labels`, if known.
    pub fn get(&self, labels: &Labels) -> Option<SeriesId> {
        self.ids.get(labels).copied()
    }

    /// Labels of series `id`.
    pub fn labels(&self, id: SeriesId) -> Option<&Labels> {
        self.by_id.get(id as usize)
    }

    /// Id of `labels`, creating the series if new; the bool tells whether it was created.
    pub fn get_or_insert(&mut self, labels: &Labels) -> (SeriesId, bool) {
        if let Some(&id) = self.ids.get(labels) {
            return (id, false);
        }
        let id = self.by_id.len() as SeriesId;
        // Ids only grow, so pushing keeps every postings list sorted.
        for (k, v) in labels.pairs() {
            self.postings
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .push(id);
        }
        self.by_id.push(labels.clone());
        self.ids.insert(labels.clone(), id);
        (id, true)
    }

    /// Values seen for label `name`, sorted (for UIs and `jdos metrics` completion).
    pub fn label_values(&self, name: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .postings
            .get(name)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    fn postings_of(&self, m: &Matcher) -> Option<Vec<SeriesId>> {
        match m {
            Matcher::Eq(k, v) => Some(
                self.postings
                    .get(k)
                    .and_then(|p| p.get(v))
                    .cloned()
                    .unwrap_or_default(),
            ),
            Matcher::OneOf(k, vs) => {
                let mut out: Vec<SeriesId> = vs
                    .iter()
                    .filter_map(|v| self.postings.get(k).and_then(|p| p.get(v)))
                    .flatten()
                    .copied()
                    .collect();
                out.sort_unstable();
                out.dedup();
                Some(out)
            }
            Matcher::NotEq(..) => None,
        }
    }

    /// Series ids matching `sel`, ascending. Positive matchers intersect postings (smallest
    /// first); negative ones filter the result. A selector with no positive matcher scans all.
    pub fn select(&self, sel: &Selector) -> Vec<SeriesId> {
        let mut lists: Vec<Vec<SeriesId>> = sel
            .matchers
            .iter()
            .filter_map(|m| self.postings_of(m))
            .collect();
        lists.sort_by_key(Vec::len);
        let mut ids: Vec<SeriesId> = match lists.split_first() {
            None => (0..self.by_id.len() as SeriesId).collect(),
            Some((first, rest)) => {
                let mut acc = first.clone();
                for l in rest {
                    acc.retain(|id| l.binary_search(id).is_ok());
                }
                acc
            }
        };
        let negative: Vec<&Matcher> = sel
            .matchers
            .iter()
            .filter(|m| matches!(m, Matcher::NotEq(..)))
            .collect();
        if !negative.is_empty() {
            let neg = Selector {
                matchers: negative.into_iter().cloned().collect(),
            };
            ids.retain(|&id| neg.matches(&self.by_id[id as usize]));
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(metric: &str, pairs: &[(&str, &str)]) -> Labels {
        Labels::new(metric, pairs.iter().copied()).unwrap()
    }

    #[test]
    fn labels_are_sorted_and_validated() {
        let a = l("cpu", &[("group", "g1"), ("app", "shop")]);
        let b = l("cpu", &[("app", "shop"), ("group", "g1")]);
        assert_eq!(a, b);
        assert_eq!(a.get("app"), Some("shop"));
        assert_eq!(a.metric(), "cpu");
        assert_eq!(a.to_string(), r#"cpu{app="shop",group="g1"}"#);
        assert!(matches!(
            Labels::new("cpu", [("bad-name", "x")]),
            Err(LabelsError::InvalidName(_))
        ));
        assert!(matches!(
            Labels::new("cpu", [("a", "x"), ("a", "y")]),
            Err(LabelsError::Duplicate(_))
        ));
        assert_eq!(Labels::new("", [("a", "x")]), Err(LabelsError::EmptyMetric));
    }

    #[test]
    fn select_intersects_postings_and_applies_negatives() {
        let mut ix = Index::default();
        let s0 = l("cpu", &[("app", "shop"), ("group", "g1"), ("host", "h1")]);
        let s1 = l("cpu", &[("app", "shop"), ("group", "g2"), ("host", "h1")]);
        let s2 = l("mem", &[("app", "shop"), ("group", "g1"), ("host", "h2")]);
        let s3 = l("cpu", &[("app", "pay"), ("group", "g1"), ("host", "h2")]);
        for s in [&s0, &s1, &s2, &s3] {
            ix.get_or_insert(s);
        }
        assert_eq!(ix.get_or_insert(&s1), (1, false));
        assert_eq!(
            ix.select(&Selector::metric("cpu").eq("app", "shop")),
            vec![0, 1]
        );
        assert_eq!(
            ix.select(&Selector::metric("cpu").eq("group", "g1")),
            vec![0, 3]
        );
        assert_eq!(
            ix.select(&Selector::metric("cpu").not_eq("host", "h1")),
            vec![3]
        );
        assert_eq!(
            ix.select(&Selector::default().one_of("host", &["h2", "h9"])),
            vec![2, 3]
        );
        assert_eq!(
            ix.select(&Selector::default().not_eq("app", "shop")),
            vec![3]
        );
        assert!(ix.select(&Selector::metric("nope")).is_empty());
        assert_eq!(ix.label_values("group"), vec!["g1", "g2"]);
    }
}
