//! Charge point ids of a fleet, made from a template such as `SITE-{n:04}`: literal text with
//! one `{n}` placeholder for the charge point's number (1 to N), optionally zero-padded to a
//! width (`{n:04}`); `{{` and `}}` are literal braces.

use std::fmt;

/// A parsed id template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTemplate {
    prefix: String,
    suffix: String,
    /// Zero-padded to at least this many digits.
    width: usize,
}

/// What is wrong with an id template; `column` counts characters from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("id template '{template}', column {column}: {problem}")]
pub struct TemplateError {
    pub template: String,
    pub column: usize,
    pub problem: String,
}

/// The default when neither `--id` nor `--id-template` is given.
pub const DEFAULT: &str = "CHARGECTL-EMU-{n}";

impl IdTemplate {
    /// Parses `text`; it must hold exactly one `{n}` or `{n:0W}` (W from 1 to 20).
    pub fn parse(text: &str) -> Result<IdTemplate, TemplateError> {
        let err = |column: usize, problem: String| TemplateError {
            template: text.to_string(),
            column,
            problem,
        };
        let chars: Vec<char> = text.chars().collect();
        let mut prefix = String::new();
        let mut suffix = String::new();
        let mut width = None;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let out = if width.is_some() {
                &mut suffix
            } else {
                &mut prefix
            };
            match c {
                '{' if chars.get(i + 1) == Some(&'{') => {
                    out.push('{');
                    i += 2;
                }
                '}' if chars.get(i + 1) == Some(&'}') => {
                    out.push('}');
                    i += 2;
                }
                '}' => return Err(err(i + 1, "a lone '}' (write '}}' for a brace)".into())),
                '{' => {
                    let Some(close) = chars[i..].iter().position(|&c| c == '}') else {
                        return Err(err(i + 1, "'{' is never closed".into()));
                    };
                    let inner: String = chars[i + 1..i + close].iter().collect();
                    if width.is_some() {
                        return Err(err(
                            i + 1,
                            format!(
                                "a second placeholder {{{inner}}}: the template takes one {{n}}"
                            ),
                        ));
                    }
                    width = Some(parse_placeholder(&inner).map_err(|p| err(i + 1, p))?);
                    i += close + 1;
                }
                c if c.is_control() || c == '/' || c.is_whitespace() => {
                    return Err(err(
                        i + 1,
                        format!(
                            "{c:?} cannot be part of a charge point id (it ends up in the URL path)"
                        ),
                    ));
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        let Some(width) = width else {
            return Err(err(
                chars.len() + 1,
                "no {n} placeholder: every charge point needs its own id (such as SITE-{n:04})"
                    .into(),
            ));
        };
        Ok(IdTemplate {
            prefix,
            suffix,
            width,
        })
    }

    /// The id of charge point number `n`.
    pub fn id(&self, n: u64) -> String {
        format!(
            "{}{:0width$}{}",
            self.prefix,
            n,
            self.suffix,
            width = self.width
        )
    }

    /// The number `id` was made from, if it is one of this template's ids.
    pub fn number(&self, id: &str) -> Option<u64> {
        let digits = id.strip_prefix(&self.prefix)?.strip_suffix(&self.suffix)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        (self.id(n) == id).then_some(n)
    }
}

impl fmt::Display for IdTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let esc = |s: &str| s.replace('{', "{{").replace('}', "}}");
        if self.width > 1 {
            write!(
                f,
                "{}{{n:0{}}}{}",
                esc(&self.prefix),
                self.width,
                esc(&self.suffix)
            )
        } else {
            write!(f, "{}{{n}}{}", esc(&self.prefix), esc(&self.suffix))
        }
    }
}

fn parse_placeholder(inner: &str) -> Result<usize, String> {
    let (name, spec) = match inner.split_once(':') {
        Some((n, s)) => (n, Some(s)),
        None => (inner, None),
    };
    if name != "n" {
        return Err(format!(
            "unknown placeholder {{{inner}}}: only {{n}} (the charge point's number) exists"
        ));
    }
    let Some(spec) = spec else {
        return Ok(1);
    };
    let width = spec
        .strip_prefix('0')
        .filter(|w| !w.is_empty())
        .and_then(|w| w.parse::<usize>().ok())
        .filter(|w| (1..=20).contains(w))
        .ok_or_else(|| {
            format!("{{n:{spec}}}: the width is written 0W with W from 1 to 20, such as {{n:04}}")
        })?;
    Ok(width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_made_and_read_back() {
        let t = IdTemplate::parse("SITE-{n:04}").unwrap();
        assert_eq!(t.id(7), "SITE-0007");
        assert_eq!(t.id(12345), "SITE-12345");
        assert_eq!(t.number("SITE-0007"), Some(7));
        assert_eq!(t.number("SITE-7"), None, "not this template's spelling");
        assert_eq!(t.number("OTHER-0007"), None);
        assert_eq!(t.to_string(), "SITE-{n:04}");
        let t = IdTemplate::parse("{{A}}-{n}-x").unwrap();
        assert_eq!(t.id(3), "{A}-3-x");
        assert_eq!(t.number("{A}-3-x"), Some(3));
        assert_eq!(IdTemplate::parse(DEFAULT).unwrap().id(2), "CHARGECTL-EMU-2");
    }

    #[test]
    fn bad_templates_name_the_column_and_the_problem() {
        for (text, column, says) in [
            ("SITE", 5, "no {n} placeholder"),
            ("SITE-{m}", 6, "unknown placeholder {m}"),
            ("S-{n}-{n}", 7, "a second placeholder"),
            ("S-{n:4}", 3, "the width is written 0W"),
            ("S-{n:0}", 3, "the width is written 0W"),
            ("S-{n", 3, "never closed"),
            ("S-}{n}", 3, "lone '}'"),
            ("S/{n}", 2, "URL path"),
            ("S {n}", 2, "URL path"),
        ] {
            let e = IdTemplate::parse(text).unwrap_err();
            assert_eq!(e.column, column, "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
            assert!(e.to_string().contains(text), "{e}");
        }
    }
}
