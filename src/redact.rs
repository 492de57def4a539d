//! Keeping secrets out of everything sluice prints: logs, configuration errors, dead
//! letters and API answers.
//!
//! Two mechanisms, applied together by [`redact`], the one function every such path calls:
//! - **Known secrets.** While a pipeline file (or the settings) is read, the value of every
//!   option whose name says it is a secret ([`is_secret_key`]: `token`, `password`,
//!   `webhook_url`, `routing_key`, …) is [`register`]ed; any later occurrence of that exact
//!   text is replaced. This catches a secret wherever a library chose to quote it.
//! - **URL structure.** Credentials that ride inside URLs are removed from any URL found in
//!   the text, parseable or not: userinfo (`user:pass@`), query values, fragments, and the
//!   secret path of well-known webhook hosts (Slack, Teams, Discord, PagerDuty v1).
//!
//! Invariant: redaction only ever removes text; it never adds a secret. It runs on error
//! paths, not per event, so its cost does not matter for throughput.

use std::borrow::Cow;
use std::sync::{LazyLock, RwLock};

/// What a removed secret is replaced with.
pub(crate) const REDACTED: &str = "[redacted]";

/// Shorter values are not registered: replacing every `abc` in every message would make
/// errors unreadable, and a secret that short protects nothing anyway.
const MIN_SECRET_CHARS: usize = 4;

/// A secret URL's path is registered on its own from this length: Slack's, Teams',
/// Discord's secret paths are far longer; `/` or `/hook` protect nothing.
const MIN_SECRET_PATH_CHARS: usize = 16;

/// Registered values are kept for the life of the process (a reloaded-away secret may
/// still show up in the errors of a draining sink); this bounds what many reloads with
/// rotating secrets can accumulate.
const MAX_SECRETS: usize = 4096;

/// Registered secrets, longest first so a secret containing another is replaced whole.
static SECRETS: LazyLock<RwLock<Vec<String>>> = LazyLock::new(|| RwLock::new(Vec::new()));

/// Option names (last path segment, lowercase, `-` read as `_`) whose value is a secret.
const SECRET_NAMES: &[&str] = &[
    "webhook_url",
    "routing_key",
    "integration_key",
    "api_key",
    "apikey",
    "access_key",
    "secret_key",
    "private_key",
    "client_secret",
    "bearer",
    "authorization",
    "credentials",
    "shared_key",
    "auth_key",
    "cookie",
    "set_cookie",
];

/// Name endings that mark a secret (`auth_token`, `sasl.password`, `hmac_secret`, …).
const SECRET_SUFFIXES: &[&str] = &["password", "passwd", "secret", "token", "tokens"];

/// Whether an option (or header) named `key` holds a secret. Only the last segment of a
/// dotted path counts, so `sasl.password` is a secret and `token_url` is not.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    // librdkafka's: a private key in PEM, and configs that embed a client secret.
    if lower.ends_with("key.pem")
        || lower.ends_with("oauthbearer.config")
        || lower.ends_with("jaas.config")
    {
        return true;
    }
    let last = key.rsplit('.').next().unwrap_or(key);
    let name = last.to_ascii_lowercase().replace('-', "_");
    SECRET_NAMES
        .iter()
        .any(|n| name == *n || name.ends_with(&format!("_{n}")))
        || SECRET_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Remembers `value` as a secret: from now on [`redact`] removes it from any text.
/// Values shorter than four characters are ignored.
pub(crate) fn register(value: &str) {
    // A secret URL's credentials may be quoted without the URL (a webhook's `sig=`
    // echoed in an error body): each is a secret of its own.
    if let Ok(url) = reqwest::Url::parse(value.trim())
        && url.has_host()
    {
        for (k, v) in url.query_pairs() {
            let k = k.to_ascii_lowercase();
            if matches!(k.as_str(), "sig" | "signature" | "code" | "key") || is_secret_key(&k) {
                register_one(&v);
            }
        }
        if let Some(password) = url.password() {
            register_one(password);
        }
        // A server's error page may echo the request path without the host (`500 oops
        // /services/T0/B0/XXXX`), and a secret URL's path is where its secret is.
        let path = url.path();
        if path.len() >= MIN_SECRET_PATH_CHARS {
            register_one(path);
        }
    }
    register_one(value);
}

fn register_one(value: &str) {
    let value = value.trim();
    if value.chars().count() < MIN_SECRET_CHARS {
        return;
    }
    let Ok(mut secrets) = SECRETS.write() else {
        return;
    };
    if secrets.iter().any(|s| s == value) || secrets.len() >= MAX_SECRETS {
        return;
    }
    let at = secrets
        .iter()
        .position(|s| s.len() < value.len())
        .unwrap_or(secrets.len());
    secrets.insert(at, value.to_owned());
}

/// Whether an environment variable's name says its value is a secret
/// (`DB_PASSWORD`, `GITHUB_PAT`, `SLACK_TOKEN`, `API_KEY`): its value is registered
/// when a pipeline file takes it.
pub(crate) fn is_secret_variable(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "PASS",
        "PASSWORD",
        "PASSWD",
        "PWD",
        "SECRET",
        "TOKEN",
        "KEY",
        "PAT",
        "AUTH",
        "CREDENTIAL",
        "CREDENTIALS",
        "COOKIE",
        "APIKEY",
        "DSN",
    ];
    name.to_ascii_uppercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| WORDS.contains(&word))
}

/// `key=value` pairs that carry a secret in connection strings (libpq's `password=`,
/// OAuth configs' `secret=`), and `user:password@` without `://` (a URL missing its
/// slashes, or its scheme).
static INLINE_SECRETS: LazyLock<[(regex::Regex, &'static str); 2]> = LazyLock::new(|| {
    [
        (
            regex::Regex::new(
                r"(?i)\b(password|passwd|pwd|secret|client_secret|token|access_token|api_?key|access_key)(\s*=\s*)[^\s,;&'`]+",
            )
            .expect("constant regex"),
            "${1}${2}[redacted]",
        ),
        (
            regex::Regex::new(
                r#"(^|[\s"'`(=,])([A-Za-z][A-Za-z0-9+.-]*:/?)?([^\s/@:"'`]+):[^\s/@"'`]+@"#,
            )
            .expect("constant regex"),
            "${1}${2}${3}:[redacted]@",
        ),
    ]
});

/// `text` without any registered secret and without credentials inside URLs.
pub(crate) fn redact(text: &str) -> Cow<'_, str> {
    // Known secrets first: a pattern below may rewrite part of one (`token=Bearer x`
    // loses its `Bearer`), and then the whole would no longer be found.
    let mut out = Cow::Borrowed(text);
    if let Ok(secrets) = SECRETS.read() {
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
    }
    let mut out = match out {
        Cow::Borrowed(text) => redact_urls(text),
        Cow::Owned(text) => Cow::Owned(redact_urls(&text).into_owned()),
    };
    for (pattern, replacement) in INLINE_SECRETS.iter() {
        if pattern.is_match(&out) {
            out = Cow::Owned(pattern.replace_all(&out, *replacement).into_owned());
        }
    }
    out
}

/// Characters that end a URL inside free text (reqwest prints `for url (…)`, errors
/// quote with backticks).
fn ends_url(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '`' | '<' | '>' | '(' | ')' | '{' | '}' | '|'
        )
}

/// Every `scheme://…` in `text` with [`redact_url`] applied.
fn redact_urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        // The scheme: letters, digits, `+`, `-`, `.` right before `://`.
        let scheme_start = rest[..sep]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(sep, |(i, _)| i);
        // A quoted URL ends at its closing quote, even when (being invalid) it holds
        // spaces; otherwise at the first character a URL cannot hold.
        let quote = rest[..scheme_start]
            .chars()
            .next_back()
            .filter(|c| matches!(c, '`' | '"' | '\''));
        let end = match quote.and_then(|q| rest[sep..].find(q)) {
            Some(i) => sep + i,
            None => rest[sep..]
                .char_indices()
                .find(|&(_, c)| ends_url(c))
                .map_or(rest.len(), |(i, _)| sep + i),
        };
        // Sentence punctuation after a URL is not part of it.
        let trimmed_end = rest[..end]
            .trim_end_matches(['.', ',', ';', ':', ']'])
            .len()
            .max(sep + 3);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&redact_url(&rest[scheme_start..trimmed_end]));
        out.push_str(&rest[trimmed_end..end]);
        rest = &rest[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// One URL with its credentials removed. Works on text that does not parse as a URL too
/// (a secret inside an invalid URL is still a secret).
pub(crate) fn redact_url(url: &str) -> String {
    let Some(sep) = url.find("://") else {
        return url.to_owned();
    };
    let (scheme, rest) = url.split_at(sep + 3);
    // `user:password@host`: the password may hold `/`, `#`, `?` and `@` (an invalid URL
    // from an unescaped `${VAR}`), so with a `:` before the last `@`, everything up to
    // that `@` is credentials. A path with an `@` and no `:` before it (Teams) is kept.
    if let Some(at) = rest.rfind('@').filter(|&at| rest[..at].contains(':')) {
        let tail = redact_url(&format!("{scheme}{}", &rest[at + 1..]));
        return format!("{scheme}{REDACTED}@{}", &tail[scheme.len()..]);
    }
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((b, _)) => (b, Some(REDACTED)),
        None => (rest, None),
    };
    let (before_query, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(redact_query(q))),
        None => (before_fragment, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let host_port = match authority.rfind('@') {
        Some(at) => {
            let mut a = String::from(REDACTED);
            a.push_str(&authority[at..]);
            a
        }
        None => authority.to_owned(),
    };
    let host = host_port
        .rsplit('@')
        .next()
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    out.push_str(&host_port);
    out.push_str(&redact_path(&host, path));
    if let Some(q) = query {
        out.push('?');
        out.push_str(&q);
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Query values go, names stay (`?token=[redacted]&format=[redacted]`).
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) => format!("{name}={REDACTED}"),
            None if pair.is_empty() => String::new(),
            None => REDACTED.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Webhook hosts whose URL path is the credential, and how many leading path segments
/// are kept (`/services` of Slack's `/services/T…/B…/secret`).
fn secret_path_segments_kept(host: &str) -> Option<usize> {
    let ends = |suffix: &str| host == suffix || host.ends_with(&format!(".{suffix}"));
    if ends("hooks.slack.com") || ends("webhook.office.com") || ends("outlook.office.com") {
        Some(1)
    } else if ends("discord.com") || ends("discordapp.com") {
        Some(2)
    } else if ends("events.pagerduty.com") || ends("events.eu.pagerduty.com") {
        // v1 integration URLs carry the key: /integration/<key>/enqueue
        Some(1)
    } else {
        None
    }
}

fn redact_path(host: &str, path: &str) -> String {
    let Some(kept) = secret_path_segments_kept(host) else {
        return path.to_owned();
    };
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    if segments.len() <= kept || segments[kept..].iter().all(|s| s.is_empty()) {
        return path.to_owned();
    }
    // PagerDuty's v2 endpoint (`/v2/enqueue`) holds no key: keep it readable.
    if segments.first() == Some(&"v2") {
        return path.to_owned();
    }
    let mut out = String::new();
    for s in &segments[..kept] {
        out.push('/');
        out.push_str(s);
    }
    out.push('/');
    out.push_str(REDACTED);
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_registered_secret_is_found_before_the_patterns_rewrite_it() {
        super::register("Bearer Reg-Secret-Token-77");
        let out = super::redact("upstream said token=Bearer Reg-Secret-Token-77 is not allowed");
        assert!(!out.contains("Reg-Secret-Token-77"), "{out}");
    }

    #[test]
    fn connection_strings_bare_userinfo_and_new_names_are_redacted() {
        for (text, kept) in [
            (
                "host=db user=app password=PGKV24 dbname=ev",
                "host=db user=app password=[redacted] dbname=ev",
            ),
            (
                "the url `https:/user:SECRETPW80@host/x`",
                "the url `https:/user:[redacted]@host/x`",
            ),
            (
                "`url` `user:SECRETPW71@host/x`: the scheme is `user`",
                "`url` `user:[redacted]@host/x`: the scheme is `user`",
            ),
            (
                "sasl.oauthbearer.config: principal=a secret=OAUTHCFG42",
                "sasl.oauthbearer.config: principal=a secret=[redacted]",
            ),
            ("at 10:30 on line 2: a@b", "at 10:30 on line 2: a@b"),
        ] {
            assert_eq!(redact(text), kept, "{text}");
        }
        for key in [
            "shared_key",
            "X-Auth-Key",
            "Cookie",
            "ssl.key.pem",
            "sasl.oauthbearer.config",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        assert!(!is_secret_key("dedup_key"));
        for name in [
            "DB_PASS",
            "GITHUB_PAT",
            "SLACK_TOKEN",
            "MY_SECRET",
            "API_KEY",
        ] {
            assert!(is_secret_variable(name), "{name}");
        }
        for name in ["PATH", "HOME", "ALERTS_ADDRESS", "KEYBOARD"] {
            assert!(!is_secret_variable(name), "{name}");
        }
    }
    use super::*;

    #[test]
    fn secret_names() {
        for name in [
            "webhook_url",
            "routing_key",
            "token",
            "auth_token",
            "bearer",
            "password",
            "sasl.password",
            "client_secret",
            "X-Api-Key",
            "Authorization",
            "hmac_secret",
            "tokens",
        ] {
            assert!(is_secret_key(name), "{name}");
        }
        for name in [
            "token_url",
            "url",
            "key",
            "partition_key",
            "client_secret_file",
            "address",
            "client_id",
        ] {
            assert!(!is_secret_key(name), "{name}");
        }
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/XYZsecret"),
            "https://hooks.slack.com/services/[redacted]"
        );
        assert_eq!(
            redact_url("https://acme.webhook.office.com/webhookb2/abc@def/IncomingWebhook/x/y"),
            "https://acme.webhook.office.com/webhookb2/[redacted]"
        );
        assert_eq!(
            redact_url("postgres://sluice:hunter2@db:5432/events"),
            "postgres://[redacted]@db:5432/events"
        );
        assert_eq!(
            redact_url("https://h.example/x?token=abc&format=json#frag"),
            "https://h.example/x?token=[redacted]&format=[redacted]#[redacted]"
        );
        assert_eq!(
            redact_url("https://events.pagerduty.com/v2/enqueue"),
            "https://events.pagerduty.com/v2/enqueue"
        );
        assert_eq!(
            redact_url("https://example.com/api/v1/alerts"),
            "https://example.com/api/v1/alerts"
        );
    }

    #[test]
    fn passwords_with_url_syntax_stay_hidden() {
        for password in [
            "pa/ssSECRETA",
            "p@ss:w/rd%SECRET",
            "pa#ssSECRET",
            "pa?ssSECRET",
        ] {
            let url = format!("http://bob:{password}@example.com:8080/x");
            let out = redact_url(&url);
            assert!(!out.contains("SECRET") && !out.contains("bob"), "{out}");
            assert!(
                out.starts_with("http://[redacted]@example.com:8080/x"),
                "{out}"
            );
            let text = format!("`url`: `{url}` is not a valid URL");
            assert!(!redact(&text).contains("SECRET"), "{text}");
        }
    }

    #[test]
    fn urls_inside_text_and_invalid_urls() {
        let text = "error sending request for url (https://hooks.slack.com/services/T/B/s3cr3t): connection refused";
        let out = redact(text);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(out.contains("connection refused"), "{out}");
        // Not a valid URL (space in the host), still redacted.
        let out = redact("`url` `https://us er:pa55word@bad host/x?key=k3y` is not a URL");
        assert!(!out.contains("pa55word") && !out.contains("k3y"), "{out}");
        assert_eq!(redact("no urls here"), "no urls here");
    }

    #[test]
    fn a_secret_urls_signature_is_a_secret_on_its_own() {
        register(
            "https://prod-1.example.logic.azure.com/workflows/w1/triggers/manual/paths/invoke?api-version=2016-06-01&sig=Sig0nlyHere123",
        );
        let said = redact(
            "HTTP 401: {\"error\": \"sig=Sig0nlyHere123 is invalid\", \"version\": \"2016-06-01\"}",
        );
        assert!(!said.contains("Sig0nlyHere123"), "{said}");
        assert!(said.contains("2016-06-01"), "not every query value: {said}");
    }

    #[test]
    fn a_secret_urls_path_echoed_without_its_host_is_removed() {
        register("http://127.0.0.1:47199/services/T000SECRET/B000SECRET/XXXXSLACKSECRETXXXX");
        let said = redact("HTTP 500: oops /services/T000SECRET/B000SECRET/XXXXSLACKSECRETXXXX");
        assert_eq!(said, "HTTP 500: oops [redacted]");
        register("https://hooks.example.com/a");
        assert_eq!(
            redact("GET /a failed"),
            "GET /a failed",
            "short paths are not secrets"
        );
        let said = redact("HTTP 500: oops /path?api_key=QUERYSECRET&page=2");
        assert_eq!(said, "HTTP 500: oops /path?api_key=[redacted]&page=2");
    }

    #[test]
    fn registered_secrets_are_removed_anywhere() {
        register("zq-registered-secret-1");
        register("ab");
        let out = redact("value zq-registered-secret-1, again zq-registered-secret-1; ab stays");
        assert_eq!(out, "value [redacted], again [redacted]; ab stays");
    }
}
