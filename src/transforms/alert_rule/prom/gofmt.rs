//! Numbers printed as Go prints them, so annotations read the same as Prometheus's:
//! `%v`/`%g` (shortest digits, exponent form from 1e+06 or below 1e-04), `printf`'s
//! common verbs, and Prometheus's `humanize` family.

use std::collections::BTreeMap;

/// A template's value while it is evaluated. Go keeps integer constants (`{{ 3 }}`)
/// apart from floats (`$value`, `{{ 1.5 }}`): they print, format and compare
/// differently, so sluice keeps them apart too.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Str(String),
    Int(i64),
    Num(f64),
    Bool(bool),
    Map(BTreeMap<String, String>),
}

impl Val {
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Self::Str(s) => !s.is_empty(),
            Self::Int(n) => *n != 0,
            Self::Num(n) => *n != 0.0,
            Self::Bool(b) => *b,
            Self::Map(m) => !m.is_empty(),
        }
    }

    /// What `%v` prints.
    pub(crate) fn text(&self) -> String {
        match self {
            Self::Str(s) => s.clone(),
            Self::Int(n) => n.to_string(),
            Self::Num(n) => float_g(*n, None),
            Self::Bool(b) => b.to_string(),
            Self::Map(m) => {
                let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", inner.join(" "))
            }
        }
    }

    /// Go's type name, as `printf` names it for a verb that does not fit.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Self::Str(_) => "string",
            Self::Int(_) => "int",
            Self::Num(_) => "float64",
            Self::Bool(_) => "bool",
            Self::Map(_) => "map[string]string",
        }
    }

    /// A number for Prometheus's `humanize` family, which also reads integers and
    /// numeric strings.
    pub(crate) fn number(&self) -> Result<f64, String> {
        match self {
            Self::Num(n) => Ok(*n),
            #[allow(clippy::cast_precision_loss)]
            Self::Int(n) => Ok(*n as f64),
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
        // A float has at most 767 significant decimal digits; more are zeros.
        Some(p) => format!("{:.*e}", p.clamp(1, EXACT_DIGITS) - 1, v),
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
    // Rust's precision stops at 65535; past the exact expansion Go prints zeros.
    let exact = precision.min(EXACT_DIGITS);
    let mut s = format!("{v:.exact$}");
    s.extend(std::iter::repeat_n('0', precision - exact));
    s
}

/// Digits past which a float's decimal expansion has only zeros (1074 fractional
/// digits for the smallest subnormal).
const EXACT_DIGITS: usize = 1100;

/// Go's `%e` with `precision` digits after the point.
fn float_e(v: f64, precision: usize) -> String {
    if !v.is_finite() {
        return float_g(v, None);
    }
    let exact = precision.min(EXACT_DIGITS);
    let s = format!("{v:.exact$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    format!(
        "{mantissa}{}e{}{:02}",
        "0".repeat(precision - exact),
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

/// The flags, width and precision of one `printf` verb.
#[derive(Default)]
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    sharp: bool,
    width: usize,
    precision: Option<usize>,
}

/// Go's `fmt.Sprintf` for the verbs annotations use (`%v %s %q %d %x %X %o %b %c %f
/// %e %g %t %%`) with flags, width and precision. A verb that does not fit its
/// argument's type prints as Go prints it (`%!d(float64=2.5)`), as do missing and
/// extra arguments.
pub(crate) fn printf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.left = true,
                '0' => spec.zero = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        // Go refuses a width or precision over 1e6 (`%!(BADWIDTH)`), then goes on.
        let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: u64 = 0;
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                n = n
                    .saturating_mul(10)
                    .saturating_add(u64::from(d) - u64::from('0'));
            }
            usize::try_from(n).ok().filter(|n| *n <= 1_000_000)
        };
        match number(&mut chars) {
            Some(w) => spec.width = w,
            None => out.push_str("%!(BADWIDTH)"),
        }
        if chars.next_if_eq(&'.').is_some() {
            match number(&mut chars) {
                Some(p) => spec.precision = Some(p),
                None => out.push_str("%!(BADPREC)"),
            }
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
        let Some(text) = formatted(verb, arg, &spec) else {
            out.push_str(&format!("%!{verb}({}={})", arg.type_name(), arg.text()));
            continue;
        };
        let pad = spec.width.saturating_sub(text.chars().count());
        // Go pads with zeros after the sign, except infinities and NaN.
        let finite = !matches!(arg, Val::Num(n) if !n.is_finite());
        if spec.left {
            out.push_str(&text);
            out.extend(std::iter::repeat_n(' ', pad));
        } else if spec.zero && finite && !matches!(verb, 'c' | 'q' | 'U') {
            let sign_len = usize::from(text.starts_with(['-', '+', ' ']));
            out.push_str(&text[..sign_len]);
            out.extend(std::iter::repeat_n('0', pad));
            out.push_str(&text[sign_len..]);
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&text);
        }
    }
    let extra: Vec<String> = args
        .map(|a| format!("{}={}", a.type_name(), a.text()))
        .collect();
    if !extra.is_empty() {
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

/// One verb applied to one argument, before padding; `None` when Go refuses the pair.
fn formatted(verb: char, arg: &Val, spec: &Spec) -> Option<String> {
    // Go's `+` and ` ` flags put a sign on what has none (`%+v` is not a sign).
    let signed = |text: String| -> String {
        if text.starts_with(['-', '+']) {
            text
        } else if spec.plus {
            format!("+{text}")
        } else if spec.space {
            format!(" {text}")
        } else {
            text
        }
    };
    Some(match (verb, arg) {
        ('v', Val::Str(s)) if spec.sharp => go_quote(s),
        ('v', Val::Num(n)) => float_g(*n, spec.precision.map(|p| p.max(1))),
        ('v', Val::Str(s)) | ('s', Val::Str(s)) => match spec.precision {
            Some(p) => s.chars().take(p).collect(),
            None => s.clone(),
        },
        ('v', v) => v.text(),
        ('d', Val::Int(n)) => signed(int_digits(*n, spec.precision)),
        ('s', Val::Map(_)) => arg.text(),
        ('t', Val::Bool(b)) => b.to_string(),
        ('q', Val::Str(s)) => go_quote(s),
        ('q', Val::Int(n)) => quote_rune(*n),
        ('c', Val::Int(n)) => rune(*n).to_string(),
        ('U', Val::Int(n)) => {
            let code = format!("U+{:04X}", n);
            if spec.sharp {
                format!("{code} '{}'", rune(*n))
            } else {
                code
            }
        }
        ('x' | 'X' | 'o' | 'O' | 'b', Val::Int(n)) => {
            let digits = match verb {
                'x' => format!("{:x}", n.unsigned_abs()),
                'X' => format!("{:X}", n.unsigned_abs()),
                'o' | 'O' => format!("{:o}", n.unsigned_abs()),
                _ => format!("{:b}", n.unsigned_abs()),
            };
            let prefix = match (spec.sharp, verb) {
                (_, 'O') => "0o",
                (true, 'x') => "0x",
                (true, 'X') => "0X",
                (true, 'o') => "0",
                (true, 'b') => "0b",
                _ => "",
            };
            signed(format!("{}{prefix}{digits}", if *n < 0 { "-" } else { "" }))
        }
        ('x' | 'X', Val::Str(s)) => {
            // `% x` spaces the bytes; `#` prefixes each spaced byte, or the whole.
            let prefix = if spec.sharp { "0x" } else { "" };
            let hex: Vec<String> = s.bytes().map(|b| format!("{b:02x}")).collect();
            let t = if spec.space {
                let each: Vec<String> = hex.iter().map(|h| format!("{prefix}{h}")).collect();
                each.join(" ")
            } else {
                format!("{prefix}{}", hex.concat())
            };
            if verb == 'X' { t.to_uppercase() } else { t }
        }
        ('f' | 'F', Val::Num(n)) => signed(float_f(*n, spec.precision.unwrap_or(6))),
        ('e' | 'E', Val::Num(n)) => {
            let t = signed(float_e(*n, spec.precision.unwrap_or(6)));
            if verb == 'E' { t.to_uppercase() } else { t }
        }
        ('g' | 'G', Val::Num(n)) => {
            let t = signed(float_g(*n, spec.precision));
            if verb == 'G' { t.to_uppercase() } else { t }
        }
        _ => return None,
    })
}

/// An integer's digits with Go's precision (`%.3d` of 7 is `007`).
fn int_digits(n: i64, precision: Option<usize>) -> String {
    let digits = n.unsigned_abs().to_string();
    let zeros = precision.unwrap_or(0).saturating_sub(digits.len());
    format!(
        "{}{}{digits}",
        if n < 0 { "-" } else { "" },
        "0".repeat(zeros)
    )
}

fn rune(n: i64) -> char {
    u32::try_from(n)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Go's `strconv.Quote`: printable characters as they are, the C escapes, and `\x`,
/// `\u` or `\U` for the rest.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        go_escape(c, '"', &mut out);
    }
    out.push('"');
    out
}

fn go_escape(c: char, quote: char, out: &mut String) {
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x80 && (c.is_ascii_control()) => {
            out.push_str(&format!("\\x{:02x}", c as u32));
        }
        c if go_printable(c) => out.push(c),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Go's `unicode.IsPrint`, near enough: letters, marks, numbers, punctuation, symbols
/// and the ASCII space; not controls, other spaces, or format characters.
fn go_printable(c: char) -> bool {
    c == ' '
        || !(c.is_control()
            || c.is_whitespace()
            || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

/// Go's `%q` of an integer: the rune it names, single-quoted.
fn quote_rune(n: i64) -> String {
    let mut out = String::from("'");
    go_escape(rune(n), '\'', &mut out);
    out.push('\'');
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
#[path = "tests/gofmt.rs"]
mod tests;
