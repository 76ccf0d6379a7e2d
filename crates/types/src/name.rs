//! Names of jdos objects: lowercase DNS labels, so that they can appear in
//! store keys, Docker names and DNS records (`<group>.<app>.<env>.<zone>`).

use crate::ValidationErrors;

/// Longest name accepted (a DNS label).
pub const MAX_NAME_LEN: usize = 63;

/// Checks that `value` is a DNS label: 1–63 of `[a-z0-9-]`, starting with a
/// letter or digit and not ending with `-`. Records a problem under `field`.
pub fn check_name(errs: &mut ValidationErrors, field: &str, value: &str) {
    if value.is_empty() {
        errs.add(field, "required", "must not be empty");
        return;
    }
    if value.len() > MAX_NAME_LEN {
        errs.add(
            field,
            "too_long",
            format!(
                "must be at most {MAX_NAME_LEN} characters, got {}",
                value.len()
            ),
        );
        return;
    }
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let first = value.as_bytes()[0];
    if !ok_chars || first == b'-' || value.ends_with('-') {
        errs.add(
            field,
            "invalid_name",
            format!(
                "{value:?} is not a valid name: use lowercase letters, digits and '-', starting and ending with a letter or digit"
            ),
        );
    }
}

/// True when `value` passes [`check_name`].
pub fn is_valid_name(value: &str) -> bool {
    let mut e = ValidationErrors::new();
    check_name(&mut e, "", value);
    e.is_empty()
}

/// Checks a label key/value pair: keys like names but may contain `.` and `/`
/// (e.g. `jdos.io/zone`), values up to 63 printable characters without spaces.
pub fn check_label(errs: &mut ValidationErrors, field: &str, key: &str, value: &str) {
    let key_ok = !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if !key_ok {
        errs.add(
            format!("{field}.{key}"),
            "invalid_label",
            format!("label key {key:?} must be 1-128 of [A-Za-z0-9-_./]"),
        );
    }
    let value_ok = value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !value_ok {
        errs.add(
            format!("{field}.{key}"),
            "invalid_label",
            format!("label value {value:?} must be 0-63 of [A-Za-z0-9-_.]"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "web", "langfang-1", "0abc"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "Web", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
