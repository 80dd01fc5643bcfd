//! Kubernetes label selectors, compiled once per BootConfig and matched against many nodes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::labels;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// An absent selector: matches no node, so nothing is booted by accident.
    Nothing,
    /// All requirements must hold; none at all (`{}`) matches every node.
    All(Vec<Requirement>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Operator,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("'{0}' is not a valid label key")]
    BadKey(String),
    #[error("'{value}' (for key '{key}') is not a valid label value")]
    BadValue { key: String, value: String },
    #[error("operator '{0}' is unknown (use In, NotIn, Exists or DoesNotExist)")]
    BadOperator(String),
    #[error("operator {op} on key '{key}' needs at least one value")]
    MissingValues { key: String, op: String },
    #[error("operator {op} on key '{key}' takes no values")]
    UnexpectedValues { key: String, op: String },
}

impl Selector {
    pub fn compile(selector: Option<&LabelSelector>) -> Result<Selector, SelectorError> {
        let Some(selector) = selector else {
            return Ok(Selector::Nothing);
        };
        let mut reqs = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            check_key(key)?;
            check_value(key, value)?;
            reqs.push(Requirement {
                key: key.clone(),
                op: Operator::In(vec![value.clone()]),
            });
        }
        for expr in selector.match_expressions.iter().flatten() {
            check_key(&expr.key)?;
            let values = expr.values.clone().unwrap_or_default();
            for v in &values {
                check_value(&expr.key, v)?;
            }
            let needs_values = |op: &str| {
                if values.is_empty() {
                    Err(SelectorError::MissingValues {
                        key: expr.key.clone(),
                        op: op.into(),
                    })
                } else {
                    Ok(())
                }
            };
            let no_values = |op: &str| {
                if values.is_empty() {
                    Ok(())
                } else {
                    Err(SelectorError::UnexpectedValues {
                        key: expr.key.clone(),
                        op: op.into(),
                    })
                }
            };
            let op = match expr.operator.as_str() {
                "In" => {
                    needs_values("In")?;
                    Operator::In(values)
                }
                "NotIn" => {
                    needs_values("NotIn")?;
                    Operator::NotIn(values)
                }
                "Exists" => {
                    no_values("Exists")?;
                    Operator::Exists
                }
                "DoesNotExist" => {
                    no_values("DoesNotExist")?;
                    Operator::DoesNotExist
                }
                other => return Err(SelectorError::BadOperator(labels::shown(other))),
            };
            reqs.push(Requirement {
                key: expr.key.clone(),
                op,
            });
        }
        Ok(Selector::All(reqs))
    }

    /// Does the node whose labels `get` looks up satisfy every requirement?
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        match self {
            Selector::Nothing => false,
            Selector::All(reqs) => reqs.iter().all(|r| {
                let value = get(&r.key);
                match &r.op {
                    Operator::In(values) => value.is_some_and(|v| values.iter().any(|w| w == v)),
                    Operator::NotIn(values) => value.is_none_or(|v| values.iter().all(|w| w != v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            }),
        }
    }

    /// True when some requirement names `key`: unknown nodes are matched only by selectors
    /// that name `nodeboot.io/known`, so a catch-all `{}` never boots a stranger.
    pub fn names_key(&self, key: &str) -> bool {
        match self {
            Selector::Nothing => false,
            Selector::All(reqs) => reqs.iter().any(|r| r.key == key),
        }
    }
}

fn check_key(key: &str) -> Result<(), SelectorError> {
    if labels::is_valid_key(key) {
        Ok(())
    } else {
        Err(SelectorError::BadKey(labels::shown(key)))
    }
}

fn check_value(key: &str, value: &str) -> Result<(), SelectorError> {
    if labels::is_valid_value(value) {
        Ok(())
    } else {
        Err(SelectorError::BadValue {
            key: labels::shown(key),
            value: labels::shown(value),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use proptest::prelude::*;

    use super::*;

    /// The reference model: Kubernetes selector semantics written as plainly as possible.
    fn reference(sel: &Option<LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
        let Some(sel) = sel else { return false };
        for (k, v) in sel.match_labels.iter().flatten() {
            if labels.get(k) != Some(v) {
                return false;
            }
        }
        for e in sel.match_expressions.iter().flatten() {
            let vals = e.values.clone().unwrap_or_default();
            let ok = match e.operator.as_str() {
                "In" => labels
                    .get(&e.key)
                    .map(|v| vals.contains(v))
                    .unwrap_or(false),
                "NotIn" => labels
                    .get(&e.key)
                    .map(|v| !vals.contains(v))
                    .unwrap_or(true),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => unreachable!(),
            };
            if !ok {
                return false;
            }
        }
        true
    }

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["role", "gpu", "cabinet", "example.com/rack"])
            .prop_map(String::from)
    }
    fn value() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c", ""]).prop_map(String::from)
    }

    fn requirement() -> impl Strategy<Value = LabelSelectorRequirement> {
        (key(), 0..4usize, prop::collection::vec(value(), 1..3)).prop_map(|(key, op, values)| {
            let (operator, values) = match op {
                0 => ("In", Some(values)),
                1 => ("NotIn", Some(values)),
                2 => ("Exists", None),
                _ => ("DoesNotExist", None),
            };
            LabelSelectorRequirement {
                key,
                operator: operator.into(),
                values,
            }
        })
    }

    fn selector() -> impl Strategy<Value = Option<LabelSelector>> {
        prop::option::weighted(
            0.9,
            (
                prop::option::of(prop::collection::btree_map(key(), value(), 0..3)),
                prop::option::of(prop::collection::vec(requirement(), 0..4)),
            )
                .prop_map(|(match_labels, match_expressions)| LabelSelector {
                    match_labels,
                    match_expressions,
                }),
        )
    }

    proptest! {
        #[test]
        fn compiled_selector_agrees_with_reference(
            sel in selector(),
            labels in prop::collection::btree_map(key(), value(), 0..4),
        ) {
            let compiled = Selector::compile(sel.as_ref()).expect("generated selectors are valid");
            let got = compiled.matches(|k| labels.get(k).map(String::as_str));
            prop_assert_eq!(got, reference(&sel, &labels));
        }
    }

    #[test]
    fn empty_matches_all_absent_matches_none() {
        let labels: BTreeMap<String, String> = BTreeMap::new();
        let all = Selector::compile(Some(&LabelSelector::default())).unwrap();
        assert!(all.matches(|k| labels.get(k).map(String::as_str)));
        let none = Selector::compile(None).unwrap();
        assert!(!none.matches(|k| labels.get(k).map(String::as_str)));
    }

    #[test]
    fn refuses_malformed_requirements() {
        let bad = |op: &str, values: Option<Vec<String>>| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "role".into(),
                operator: op.into(),
                values,
            }]),
            ..Default::default()
        };
        assert!(matches!(
            Selector::compile(Some(&bad("In", None))),
            Err(SelectorError::MissingValues { .. })
        ));
        assert!(matches!(
            Selector::compile(Some(&bad("Exists", Some(vec!["x".into()])))),
            Err(SelectorError::UnexpectedValues { .. })
        ));
        assert!(matches!(
            Selector::compile(Some(&bad("Equals", Some(vec!["x".into()])))),
            Err(SelectorError::BadOperator(_))
        ));
    }
}
