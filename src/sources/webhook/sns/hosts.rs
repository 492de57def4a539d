//! Which hosts a signing certificate or a `SubscribeURL` may be on.

/// `*` matches exactly one DNS label, so `sns.*.amazonaws.com` cannot match
/// `sns.evil.com.amazonaws.com.attacker.net`.
pub(super) fn host_matches(pattern: &str, host: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let h: Vec<&str> = host.split('.').collect();
    p.len() == h.len()
        && p.iter()
            .zip(&h)
            .all(|(p, h)| *p == "*" && !h.is_empty() || p.eq_ignore_ascii_case(h))
}

/// `host`, `host:port` (HTTPS), or `scheme://host[:port]`.
pub(super) fn url_allowed(url: &reqwest::Url, allowed: &[String]) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    allowed.iter().any(|entry| {
        let (scheme, rest) = entry.split_once("://").unwrap_or(("https", entry));
        let (h, port) = match rest.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, p.parse::<u16>().ok()),
            _ => (rest, None),
        };
        url.scheme() == scheme
            && host_matches(h, host)
            && port.is_none_or(|p| url.port_or_known_default() == Some(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match_one_label_per_star() {
        assert!(host_matches(
            "sns.*.amazonaws.com",
            "sns.us-east-2.amazonaws.com"
        ));
        assert!(!host_matches("sns.*.amazonaws.com", "sns.amazonaws.com"));
        assert!(!host_matches(
            "sns.*.amazonaws.com",
            "sns.a.b.amazonaws.com"
        ));
        assert!(!host_matches(
            "sns.*.amazonaws.com",
            "sns.us-east-2.amazonaws.com.evil.net"
        ));
        let url = |s: &str| reqwest::Url::parse(s).expect("url");
        let allowed = vec![
            "sns.*.amazonaws.com".to_owned(),
            "http://127.0.0.1:8080".to_owned(),
        ];
        assert!(url_allowed(
            &url("https://sns.eu-west-1.amazonaws.com/?Action=x"),
            &allowed
        ));
        assert!(!url_allowed(
            &url("http://sns.eu-west-1.amazonaws.com/"),
            &allowed
        ));
        assert!(url_allowed(&url("http://127.0.0.1:8080/confirm"), &allowed));
        assert!(!url_allowed(
            &url("http://127.0.0.1:8081/confirm"),
            &allowed
        ));
    }
}
