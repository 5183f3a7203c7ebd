//! Reading one node's or layer's parameters, whether the Engine wrote them as strings
//! (`"units":"128"`) or the plain form as JSON numbers, with range checks and clear messages.

use serde_json::{Map, Value};

use super::error::{GraphError, Site};

/// One node's or layer's parameters and where they came from.
pub(crate) struct Params<'a> {
    pub(crate) at: &'a Site,
    pub(crate) map: &'a Map<String, Value>,
}

impl Params<'_> {
    /// The raw text of `key`: a string as is, a number or bool as written, else an error.
    fn text(&self, key: &str) -> Result<Option<String>, GraphError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(GraphError::param(
                self.at,
                key,
                "must be a string or a number",
            )),
        }
    }

    /// `key` as a string, if present.
    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, GraphError> {
        self.text(key)
    }

    /// `key` as an integer in `min..=max`, else `default` (which is not range-checked).
    pub(crate) fn int(
        &self,
        key: &str,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, GraphError> {
        match self.text(key)? {
            None => Ok(default),
            Some(text) => {
                let value: usize = text.parse().map_err(|_| {
                    GraphError::param(self.at, key, format!("`{text}` is not an integer"))
                })?;
                if value < min || value > max {
                    return Err(GraphError::param(
                        self.at,
                        key,
                        format!("{value} is out of range (allowed {min} to {max})"),
                    ));
                }
                Ok(value)
            }
        }
    }

    /// `key` as a finite number accepted by `ok` (described by `range` in the message), else
    /// `default`.
    pub(crate) fn float(
        &self,
        key: &str,
        default: Option<f64>,
        range: &str,
        ok: impl Fn(f64) -> bool,
    ) -> Result<Option<f64>, GraphError> {
        match self.text(key)? {
            None => Ok(default),
            Some(text) => {
                let value: f64 = text.parse().map_err(|_| {
                    GraphError::param(self.at, key, format!("`{text}` is not a number"))
                })?;
                if !value.is_finite() || !ok(value) {
                    return Err(GraphError::param(
                        self.at,
                        key,
                        format!("{text} is out of range (allowed {range})"),
                    ));
                }
                Ok(Some(value))
            }
        }
    }

    /// Refuses keys outside `allowed` (the plain form's typo guard; the Engine writes extras).
    pub(crate) fn only(&self, allowed: &[&str]) -> Result<(), GraphError> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(key) => Err(GraphError::param(
                self.at,
                key,
                format!("unknown key (this layer takes: {})", allowed.join(", ")),
            )),
        }
    }
}
