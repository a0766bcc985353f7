//! The `scope` parameter (RFC 6749 §3.3): space-delimited, case-sensitive tokens.

use super::OAuthError;

/// Whether `s` is a valid scope token: `%x21 / %x23-5B / %x5D-7E`, at least one character.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Splits a scope parameter, refusing malformed tokens and requests over the limits. Duplicates collapse.
pub fn parse(param: &str, count_max: usize, len_max: usize) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for token in param.split(' ').filter(|t| !t.is_empty()) {
        if token.len() > len_max {
            return Err(OAuthError::InvalidScope(format!(
                "a scope is longer than {len_max} characters"
            )));
        }
        if !is_scope_token(token) {
            return Err(OAuthError::InvalidScope(
                "a scope contains a character RFC 6749 does not allow".into(),
            ));
        }
        if !out.iter().any(|s| s == token) {
            out.push(token.to_owned());
        }
        if out.len() > count_max {
            return Err(OAuthError::InvalidScope(format!(
                "more than {count_max} scopes requested"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_split_checked_and_bounded() {
        assert_eq!(parse("a  b a", 5, 10).unwrap(), vec!["a", "b"]);
        assert!(parse("a\"b", 5, 10).is_err());
        assert!(parse("a b c", 2, 10).is_err());
        assert!(parse("abcdef", 2, 3).is_err());
        assert!(parse("", 2, 3).unwrap().is_empty());
    }
}
