//! The functions Prometheus gives rule templates that need no query, as Go and
//! Prometheus define them: `humanize`, `humanize1024`, `humanizeDuration`,
//! `humanizePercentage`, `printf`, `toUpper`, `toLower`, `title`, `index`,
//! `reReplaceAll`, the comparisons `eq ne lt le gt ge`, and `and`, `or`, `not` (whose
//! short-circuit form is in [`super::gotmpl`]).

use super::gofmt::{Val, float_g, printf};

/// Calls template function `f`; an error reads as Go's does after "error calling".
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
            let Some((Val::Str(format), rest)) = args.split_first() else {
                return Err("error calling printf: wrong type for value; expected string".into());
            };
            Val::Str(printf(format, rest))
        }
        "toUpper" | "toLower" | "title" => {
            let [v] = args.as_slice() else {
                return Err(format!("{f} takes one argument"));
            };
            let Val::Str(s) = v else {
                return Err(format!(
                    "error calling {f}: wrong type for value; expected string; got {}",
                    v.type_name()
                ));
            };
            Val::Str(match f {
                "toUpper" => super::gocase::to_upper(s),
                "toLower" => super::gocase::to_lower(s),
                _ => super::gocase::title(s),
            })
        }
        // Go's `index`: no key gives the item itself; a map takes a string key (a
        // missing one is ""), a string an integer index (a byte, as an int).
        "index" => {
            let (item, keys) = args.split_first().ok_or("index takes arguments")?;
            let mut item = item.clone();
            for key in keys {
                item = match (&item, key) {
                    (Val::Map(m), Val::Str(k)) => Val::Str(m.get(k).cloned().unwrap_or_default()),
                    (Val::Str(s), Val::Int(i)) => {
                        let byte = usize::try_from(*i).ok().and_then(|i| s.as_bytes().get(i));
                        match byte {
                            Some(b) => Val::Int(i64::from(*b)),
                            None => {
                                return Err(format!(
                                    "error calling index: index out of range: {i}"
                                ));
                            }
                        }
                    }
                    (Val::Map(_), k) => {
                        return Err(format!(
                            "error calling index: value has type {}; should be string",
                            k.type_name()
                        ));
                    }
                    (v, _) => {
                        return Err(format!(
                            "error calling index: can't index item of type {}",
                            v.type_name()
                        ));
                    }
                };
            }
            item
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
            // Go stops at the first equal one, before any later type error.
            let mut any = false;
            for other in rest {
                if call("eq", vec![first.clone(), other.clone()])? == Val::Bool(true) {
                    any = true;
                    break;
                }
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
            // Go builds `gt` as "not le" and `ge` as "not lt", so with NaN (no
            // order at all) both are true, where `lt` and `le` are false.
            let lt = ord == Some(std::cmp::Ordering::Less);
            let eq = ord == Some(std::cmp::Ordering::Equal);
            Val::Bool(match f {
                "eq" => eq,
                "ne" => !eq,
                "lt" => lt,
                "le" => lt || eq,
                "gt" => !(lt || eq),
                _ => !lt,
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
