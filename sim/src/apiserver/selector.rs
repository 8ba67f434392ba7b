//! Label and field selectors in the API server's string syntax: `k=v`, `k==v`, `k!=v`, `k`,
//! `!k`, `k in (a,b)`, `k notin (a,b)`, comma-separated and ANDed.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Selector(Vec<Requirement>);

impl Selector {
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for term in split_terms(text) {
            let term = term.trim();
            if term.is_empty() {
                // `a=b,` and the empty selector are accepted by the API server.
                continue;
            }
            requirements.push(parse_term(term)?);
        }
        Ok(Selector(requirements))
    }

    /// Field selectors only support (in)equality; `value_of` returns "" for an absent field,
    /// as the API server compares absent fields with the empty string.
    pub(super) fn parse_fields(text: &str) -> Result<Self, String> {
        let selector = Self::parse(text)?;
        match selector
            .0
            .iter()
            .find(|r| !matches!(r, Requirement::Eq(..) | Requirement::NotEq(..)))
        {
            Some(r) => Err(format!("unsupported field selector requirement {r:?}")),
            None => Ok(selector),
        }
    }

    pub(super) fn matches(&self, value_of: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => value_of(k).as_deref() == Some(v.as_str()),
            Requirement::NotEq(k, v) => value_of(k).as_deref() != Some(v.as_str()),
            Requirement::In(k, vs) => value_of(k).is_some_and(|x| vs.contains(&x)),
            Requirement::NotIn(k, vs) => !value_of(k).is_some_and(|x| vs.contains(&x)),
            Requirement::Exists(k) => value_of(k).is_some(),
            Requirement::NotExists(k) => value_of(k).is_none(),
        })
    }

    pub(super) fn matches_labels(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.matches(|k| {
            labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(String::from)
        })
    }

    pub(super) fn matches_fields(&self, obj: &Value) -> bool {
        self.matches(|k| {
            let field = k.split('.').try_fold(obj, |v, key| v.as_object()?.get(key));
            Some(match field {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            })
        })
    }
}

/// Splits on commas outside parentheses (`in (a,b)` holds commas of its own).
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    if k.is_empty() || k.contains(|c: char| c.is_whitespace() || "()!=,".contains(c)) {
        return Err(format!("invalid selector key `{k}`"));
    }
    Ok(k.to_string())
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    if let Some(k) = term.strip_prefix('!') {
        return Ok(Requirement::NotExists(key(k)?));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEq(key(k)?, v.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Eq(key(k)?, v.trim().to_string()));
    }
    if let Some(open) = term.find('(') {
        let inner = term[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| format!("unbalanced parentheses in `{term}`"))?;
        let values: Vec<String> = inner
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
            .collect();
        let mut head = term[..open].split_whitespace();
        let (Some(k), Some(op), None) = (head.next(), head.next(), head.next()) else {
            return Err(format!("invalid set requirement `{term}`"));
        };
        return match op {
            "in" => Ok(Requirement::In(key(k)?, values)),
            "notin" => Ok(Requirement::NotIn(key(k)?, values)),
            _ => Err(format!("unknown set operator `{op}` in `{term}`")),
        };
    }
    Ok(Requirement::Exists(key(term)?))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labelled(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}})
    }

    #[test]
    fn label_selectors_cover_equality_existence_and_sets() {
        let obj = labelled(json!({"app": "ringcache", "tier": "cache"}));
        let yes = [
            "",
            "app=ringcache",
            "app==ringcache,tier=cache",
            "app!=other",
            "zone!=x",
            "app",
            "!zone",
            "tier in (cache, db)",
            "zone notin (a,b),app in (ringcache)",
        ];
        for s in yes {
            assert!(Selector::parse(s).unwrap().matches_labels(&obj), "{s}");
        }
        let no = [
            "app=other",
            "app=ringcache,tier=db",
            "app!=ringcache",
            "zone",
            "!app",
            "tier in (db)",
            "tier notin (cache)",
        ];
        for s in no {
            assert!(!Selector::parse(s).unwrap().matches_labels(&obj), "{s}");
        }
        assert!(Selector::parse("=x").is_err());
        assert!(Selector::parse("a in (b").is_err());
        assert!(Selector::parse("a b").is_err());
    }

    #[test]
    fn field_selectors_compare_absent_fields_with_the_empty_string() {
        let pod = json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}});
        let sel = |s: &str| Selector::parse_fields(s).unwrap();
        assert!(sel("metadata.name=p,status.phase=Running").matches_fields(&pod));
        assert!(sel("spec.nodeName=").matches_fields(&pod));
        assert!(!sel("status.phase!=Running").matches_fields(&pod));
        assert!(Selector::parse_fields("status.phase").is_err());
    }
}
