//! Scope templates: static names, and dynamic scopes whose concrete part names one resource.
//!
//! `account.list.*` matches `account.list.05542` (value `05542`); `account.{id}.read` matches
//! `account.05542.read`. A static scope matches only itself. An exact static match wins over templates;
//! among templates the first configured wins.

/// A parsed scope name from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    Static(String),
    /// `prefix*`: the value is everything after the prefix.
    Prefix(String),
    /// `before{name}after`: the value is what stands between.
    Placeholder {
        before: String,
        after: String,
    },
}

impl Template {
    /// Parses a configured scope name; `Err` explains a malformed template.
    pub fn parse(name: &str) -> Result<Template, String> {
        if let Some(prefix) = name.strip_suffix('*') {
            if prefix.contains(['*', '{', '}']) {
                return Err(format!("{name:?}: a template has one wildcard, at the end"));
            }
            return Ok(Template::Prefix(prefix.to_owned()));
        }
        match (name.find('{'), name.find('}')) {
            (None, None) if !name.contains('*') => Ok(Template::Static(name.to_owned())),
            (Some(open), Some(close)) if open < close => {
                let (before, after) = (&name[..open], &name[close + 1..]);
                if after.contains(['{', '}', '*']) || before.contains('*') || close == open + 1 {
                    return Err(format!(
                        "{name:?}: a template has one named placeholder such as {{id}}"
                    ));
                }
                Ok(Template::Placeholder {
                    before: before.to_owned(),
                    after: after.to_owned(),
                })
            }
            _ => Err(format!("{name:?} is neither a scope name nor a template")),
        }
    }

    /// The concrete value when `scope` matches: `Some(None)` for a static match.
    pub fn matches<'s>(&self, scope: &'s str) -> Option<Option<&'s str>> {
        let valid = |v: &str| !v.is_empty() && !v.contains(' ');
        match self {
            Template::Static(s) => (s == scope).then_some(None),
            Template::Prefix(p) => scope.strip_prefix(p.as_str()).filter(|v| valid(v)).map(Some),
            Template::Placeholder { before, after } => scope
                .strip_prefix(before.as_str())
                .and_then(|rest| rest.strip_suffix(after.as_str()))
                .filter(|v| valid(v) && !v.contains('.'))
                .map(Some),
        }
    }
}

/// Finds the template `scope` matches among `templates`: index and concrete value.
pub fn find<'s>(templates: &[Template], scope: &'s str) -> Option<(usize, Option<&'s str>)> {
    templates
        .iter()
        .position(|t| matches!(t, Template::Static(s) if s == scope))
        .map(|i| (i, None))
        .or_else(|| {
            templates
                .iter()
                .enumerate()
                .find_map(|(i, t)| t.matches(scope).map(|v| (i, v)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_scopes_yield_their_concrete_value() {
        let t = [
            Template::parse("account.list.*").unwrap(),
            Template::parse("account.{id}.read").unwrap(),
            Template::parse("account.list.all").unwrap(),
        ];
        assert_eq!(find(&t, "account.list.05542"), Some((0, Some("05542"))));
        assert_eq!(find(&t, "account.77.read"), Some((1, Some("77"))));
        assert_eq!(
            find(&t, "account.list.all"),
            Some((2, None)),
            "a static name wins over a template"
        );
        assert_eq!(find(&t, "account.list."), None);
        assert_eq!(find(&t, "account.a.b.read"), None);
        assert_eq!(find(&t, "other"), None);
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in ["a*b*", "a.{}.b", "a.{id.b", "a.{x}.{y}", "*a*"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
