//! Validation errors and the API's error body.

use serde::{Deserialize, Serialize};

/// One problem with one field of an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Dotted path of the offending field, e.g. `groups[0].replicas`.
    pub field: String,
    /// Stable machine-readable code, e.g. `required`, `invalid_name`, `out_of_range`.
    pub code: String,
    /// What is wrong and what to do, lowercase.
    pub message: String,
}

/// Every problem found while validating one input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}", self.summary())]
pub struct ValidationErrors {
    /// The problems, in the order they were found.
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem with `field`.
    pub fn add(&mut self, field: impl Into<String>, code: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            code: code.to_string(),
            message: message.into(),
        });
    }

    /// Adds every error of `other`, prefixing its fields with `prefix.`.
    pub fn nest(&mut self, prefix: &str, other: ValidationErrors) {
        for e in other.errors {
            let field = if e.field.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{}", e.field)
            };
            self.errors.push(FieldError { field, ..e });
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(())` when empty, else `Err(self)`.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    fn summary(&self) -> String {
        match self.errors.as_slice() {
            [] => "no errors".to_string(),
            [one] => format!("{}: {}", one.field, one.message),
            [first, rest @ ..] => format!(
                "{}: {} (and {} more)",
                first.field,
                first.message,
                rest.len()
            ),
        }
    }
}

/// The JSON body of every API error: a stable code, a message a person can act
/// on, the offending field (when one is at fault) and, for validation errors,
/// every offending field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable code, e.g. `validation_failed`, `not_found`, `conflict`, `unauthorized`, `forbidden`.
    pub code: String,
    /// What failed and what to do.
    pub message: String,
    /// The first offending field, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// All offending fields for validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

impl ApiError {
    /// An error with a code and message only.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
            field: None,
            details: Vec::new(),
        }
    }

    /// Sets the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(v: ValidationErrors) -> Self {
        ApiError {
            code: "validation_failed".to_string(),
            message: v.to_string(),
            field: v.errors.first().map(|e| e.field.clone()),
            details: v.errors,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) if !self.message.starts_with(field.as_str()) => {
                write!(f, "{} ({}): {}", self.code, field, self.message)
            }
            _ => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_error_and_nests_fields() {
        let mut inner = ValidationErrors::new();
        inner.add("replicas", "out_of_range", "must be at most 10000");
        inner.add("name", "invalid_name", "bad");
        let mut outer = ValidationErrors::new();
        outer.nest("groups[1]", inner);
        let api: ApiError = outer.clone().into();
        assert_eq!(api.code, "validation_failed");
        assert_eq!(api.field.as_deref(), Some("groups[1].replicas"));
        assert_eq!(api.details.len(), 2);
        assert!(outer.to_string().contains("and 1 more"));
    }
}
