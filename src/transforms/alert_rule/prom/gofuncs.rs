//! The functions Prometheus gives rule templates that need no query, as Go and
//! Prometheus define them: `humanize`, `humanize1024`, `humanizeDuration`,
//! `humanizePercentage`, `printf`, `toUpper`, `toLower`, `title`, `index`,
//! `reReplaceAll`, the comparisons `eq ne lt le gt ge`, and `and`, `or`, `not`.

use super::gofmt::{Val, float_g, printf};

/// Calls template function `f`.
pub(super) fn call(f: &str, args: Vec<Val>) -> Result<Val, String> {
    let one = |args: &[Val]| -> Result<f64, String> {
        match args {
            [v] => v.number(),
            _ => Err(format!("{f} takes one argument")),
        }
    };
    let two = |args: &[Val]| -> Result<(Val, Val), String> {
        match args {
            [a, b] => Ok((a.clone(), b.clone())),
            _ => Err(format!("{f} takes two arguments")),
        }
    };
    Ok(match f {
        "humanize" => Val::Str(super::gofmt::humanize(one(&args)?)),
        "humanize1024" => Val::Str(super::gofmt::humanize1024(one(&args)?)),
        "humanizeDuration" => Val::Str(super::gofmt::humanize_duration(one(&args)?)),
        "humanizePercentage" => Val::Str(format!("{}%", float_g(one(&args)? * 100.0, Some(4)))),
        "printf" => {
            let (format, rest) = args.split_first().ok_or("printf takes a format")?;
            Val::Str(printf(&format.text(), rest))
        }
        "toUpper" | "toLower" | "title" => {
            let [v] = args.as_slice() else {
                return Err(format!("{f} takes one argument"));
            };
            let s = v.text();
            Val::Str(match f {
                "toUpper" => super::gocase::to_upper(&s),
                "toLower" => super::gocase::to_lower(&s),
                _ => super::gocase::title(&s),
            })
        }
        "index" => {
            let (m, k) = two(&args)?;
            match m {
                Val::Map(m) => Val::Str(m.get(&k.text()).cloned().unwrap_or_default()),
                _ => return Err("index takes a map".into()),
            }
        }
        "reReplaceAll" => {
            let [pattern, replacement, text] = args.as_slice() else {
                return Err("reReplaceAll takes a pattern, a replacement and a text".into());
            };
            let re =
                regex::RegexBuilder::new(&crate::matchers::go_regex::translate(&pattern.text()))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("reReplaceAll: {e}"))?;
            Val::Str(
                re.replace_all(&text.text(), replacement.text().as_str())
                    .into_owned(),
            )
        }
        // As Go's: `eq a b c` holds when `a` equals any of the others.
        "eq" if args.len() > 2 => {
            let (first, rest) = args.split_first().ok_or("eq takes arguments")?;
            let mut any = false;
            for other in rest {
                any |= call("eq", vec![first.clone(), other.clone()])? == Val::Bool(true);
            }
            Val::Bool(any)
        }
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            let (a, b) = two(&args)?;
            // Go compares values of one basic kind only: `gt $value 10` (a float and
            // an int) is an error in Prometheus, and so here.
            let ord = match (&a, &b) {
                (Val::Str(x), Val::Str(y)) => x.partial_cmp(y),
                (Val::Int(x), Val::Int(y)) => x.partial_cmp(y),
                (Val::Num(x), Val::Num(y)) => x.partial_cmp(y),
                (Val::Bool(x), Val::Bool(y)) if matches!(f, "eq" | "ne") => x.partial_cmp(y),
                (Val::Map(_), _) | (_, Val::Map(_)) | (Val::Bool(_), Val::Bool(_)) => {
                    return Err(format!("error calling {f}: invalid type for comparison"));
                }
                _ => {
                    return Err(format!(
                        "error calling {f}: incompatible types for comparison"
                    ));
                }
            };
            Val::Bool(match f {
                "eq" => ord == Some(std::cmp::Ordering::Equal),
                "ne" => ord != Some(std::cmp::Ordering::Equal),
                "lt" => ord == Some(std::cmp::Ordering::Less),
                "le" => matches!(
                    ord,
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                ),
                "gt" => ord == Some(std::cmp::Ordering::Greater),
                _ => matches!(
                    ord,
                    Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
                ),
            })
        }
        "and" => args
            .iter()
            .find(|v| !v.truthy())
            .or(args.last())
            .cloned()
            .ok_or("and takes arguments")?,
        "or" => args
            .iter()
            .find(|v| v.truthy())
            .or(args.last())
            .cloned()
            .ok_or("or takes arguments")?,
        "not" => match args.as_slice() {
            [v] => Val::Bool(!v.truthy()),
            _ => return Err("not takes one argument".into()),
        },
        other => return Err(format!("unknown function {other}")),
    })
}
