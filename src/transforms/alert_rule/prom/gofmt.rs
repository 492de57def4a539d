//! Numbers printed as Go prints them, so annotations read the same as Prometheus's:
//! `%v`/`%g` (shortest digits, exponent form from 1e+06 or below 1e-04), `printf`'s
//! common verbs, and Prometheus's `humanize` family.

use std::collections::BTreeMap;

/// A template's value while it is evaluated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Str(String),
    Num(f64),
    Bool(bool),
    Map(BTreeMap<String, String>),
}

impl Val {
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Self::Str(s) => !s.is_empty(),
            Self::Num(n) => *n != 0.0,
            Self::Bool(b) => *b,
            Self::Map(m) => !m.is_empty(),
        }
    }

    pub(crate) fn text(&self) -> String {
        match self {
            Self::Str(s) => s.clone(),
            Self::Num(n) => float_g(*n, None),
            Self::Bool(b) => b.to_string(),
            Self::Map(m) => {
                let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", inner.join(" "))
            }
        }
    }

    pub(crate) fn number(&self) -> Result<f64, String> {
        match self {
            Self::Num(n) => Ok(*n),
            Self::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("cannot use {s:?} as a number")),
            other => Err(format!("cannot use {} as a number", other.text())),
        }
    }
}

/// Go's `%g` with `precision` significant digits (`None`: as few as round-trip, which
/// is also what `%v` and `{{ $value }}` print).
pub(crate) fn float_g(v: f64, precision: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let sign = if v.is_sign_negative() { "-" } else { "" };
    let (digits, dp) = decimal(v.abs(), precision);
    let nd = digits.len() as i64;
    let eprec = match precision {
        None => 6,
        Some(p) => {
            let p = p.max(1) as i64;
            if p > nd && nd >= dp { nd } else { p }
        }
    };
    let exp = dp - 1;
    if exp < -4 || exp >= eprec {
        let mut out = format!("{sign}{}", &digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = if exp < 0 { '-' } else { '+' };
        out.push_str(&format!("e{e}{:02}", exp.abs()));
        return out;
    }
    fixed(sign, &digits, dp, (nd - dp).max(0) as usize)
}

/// The significant digits of `v` (no trailing zeros, "0" for zero) and the position
/// of the decimal point relative to them.
fn decimal(v: f64, precision: Option<usize>) -> (String, i64) {
    if v == 0.0 {
        return ("0".into(), 1);
    }
    let sci = match precision {
        None => format!("{v:e}"),
        Some(p) => format!("{:.*e}", p.max(1) - 1, v),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let mut digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (digits, exp.parse::<i64>().unwrap_or(0) + 1)
}

/// `digits` with the point at `dp`, and `frac` digits after it.
fn fixed(sign: &str, digits: &str, dp: i64, frac: usize) -> String {
    let digit = |i: i64| -> char {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.as_bytes().get(i))
            .map_or('0', |d| *d as char)
    };
    let mut out = String::from(sign);
    if dp > 0 {
        for i in 0..dp {
            out.push(digit(i));
        }
    } else {
        out.push('0');
    }
    if frac > 0 {
        out.push('.');
        for i in 0..frac as i64 {
            out.push(digit(dp + i));
        }
    }
    out
}

/// Go's `%.Nf`.
fn float_f(v: f64, precision: usize) -> String {
    if !v.is_finite() {
        return float_g(v, None);
    }
    format!("{v:.precision$}")
}

/// Go's `%e` with `precision` digits after the point.
fn float_e(v: f64, precision: usize) -> String {
    if !v.is_finite() {
        return float_g(v, None);
    }
    let s = format!("{v:.precision$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    format!(
        "{mantissa}e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

/// Go's `fmt.Sprintf` for the verbs annotations use: `%s %v %d %f %e %g %q %%`, with
/// a precision (`%.2f`) and a width (`%5.1f`, `%-8s`).
pub(crate) fn printf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        let mut zero = false;
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' | ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(d) = chars.next_if(char::is_ascii_digit) {
            width.push(d);
        }
        let mut precision: Option<usize> = None;
        if chars.next_if_eq(&'.').is_some() {
            let mut p = String::new();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                p.push(d);
            }
            precision = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let text = match (verb, arg) {
            ('d', Val::Num(n)) if n.fract() == 0.0 && n.is_finite() => format!("{}", *n as i64),
            ('d', Val::Num(n)) => format!("%!d(float64={})", float_g(*n, None)),
            ('f' | 'F', Val::Num(n)) => float_f(*n, precision.unwrap_or(6)),
            ('e', Val::Num(n)) => float_e(*n, precision.unwrap_or(6)),
            ('g', Val::Num(n)) => float_g(*n, precision),
            ('q', v) => format!("{:?}", v.text()),
            ('s' | 'v', v) => {
                let t = v.text();
                match (verb, precision) {
                    ('s', Some(p)) => t.chars().take(p).collect(),
                    _ => t,
                }
            }
            (verb, v) => format!("%!{verb}({})", v.text()),
        };
        let width: usize = width.parse().unwrap_or(0);
        let pad = width.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.extend(std::iter::repeat_n(' ', pad));
        } else if zero && matches!(arg, Val::Num(_)) {
            let (sign, digits) = text
                .strip_prefix('-')
                .map_or(("", text.as_str()), |d| ("-", d));
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', pad));
            out.push_str(digits);
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&text);
        }
    }
    if args.next().is_some() {
        out.push_str("%!(EXTRA)");
    }
    out
}

/// Prometheus's `humanize`: SI prefixes, 4 significant digits.
pub(crate) fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return float_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", float_g(v, Some(4)))
}

/// Prometheus's `humanize1024`: binary prefixes, 4 significant digits.
pub(crate) fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return float_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", float_g(v, Some(4)))
}

/// Prometheus's `humanizeDuration`: seconds as `1d 2h 3m 4s`, or with SI prefixes
/// below a second.
pub(crate) fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return float_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", float_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let v = v.abs();
        let whole = v as i64;
        let (seconds, minutes) = (whole % 60, (whole / 60) % 60);
        let (hours, days) = ((whole / 3600) % 24, whole / 86_400);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", float_g(v, Some(4)))
        };
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", float_g(v, Some(4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_prints_them() {
        for (v, p, go) in [
            (1e6, None, "1e+06"),
            (123_456.0, None, "123456"),
            (1_234_567.0, None, "1.234567e+06"),
            (0.5, None, "0.5"),
            (0.000_01, None, "1e-05"),
            (0.0001, None, "0.0001"),
            (3.0, None, "3"),
            (-2.5, None, "-2.5"),
            (1000.0, Some(4), "1000"),
            (12345.0, Some(4), "1.234e+04"),
            (1.5, Some(4), "1.5"),
            (123.456, Some(4), "123.5"),
            (0.0, Some(4), "0"),
            (f64::NAN, None, "NaN"),
            (f64::INFINITY, Some(4), "+Inf"),
        ] {
            assert_eq!(float_g(v, p), go, "{v} {p:?}");
        }
    }

    #[test]
    fn printf_takes_the_common_verbs() {
        let n = |v: f64| Val::Num(v);
        assert_eq!(printf("%.1f%%", &[n(12.345)]), "12.3%");
        assert_eq!(printf("%d items", &[n(3.0)]), "3 items");
        assert_eq!(
            printf("%5.1f|%-4s|", &[n(2.25), Val::Str("ab".into())]),
            "  2.2|ab  |"
        );
        assert_eq!(printf("%s=%v", &[Val::Str("a".into()), n(0.5)]), "a=0.5");
        assert_eq!(printf("%e", &[n(1234.5)]), "1.234500e+03");
        assert_eq!(printf("%s", &[]), "%!s(MISSING)");
    }

    #[test]
    fn humanize_family_matches_prometheus() {
        assert_eq!(humanize(1_234_567.0), "1.235M");
        assert_eq!(humanize(999.0), "999");
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(0.25), "250m");
        assert_eq!(humanize1024(1_048_576.0), "1Mi");
        assert_eq!(humanize_duration(90_061.0), "1d 1h 1m 1s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.002), "2ms");
    }
}
