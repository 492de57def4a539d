//! The process's own metrics, under Prometheus's standard names (`process_*`), read
//! from `/proc/self`: what a scraper expects of any exporter. On a system without
//! `/proc` they are left out.

use std::fmt::Write;

/// Appends the `process_*` metrics to a Prometheus exposition.
pub(super) fn render(out: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some(fields) = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>())
    else {
        return;
    };
    // `man 5 proc`: utime is field 14, stime 15, starttime 22, vsize 23, rss 24; the
    // slice starts at field 3.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100);
    let page = u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096);
    let mut metric = |name: &str, value: f64| {
        super::catalog::family(out, name);
        let _ = writeln!(out, "{name} {value}");
    };
    if let (Some(user), Some(system)) = (field(14), field(15)) {
        metric(
            "process_cpu_seconds_total",
            (user + system) as f64 / ticks as f64,
        );
    }
    if let Some(rss) = field(24) {
        metric("process_resident_memory_bytes", (rss * page) as f64);
    }
    if let Some(vsize) = field(23) {
        metric("process_virtual_memory_bytes", vsize as f64);
    }
    if let (Some(start), Some(boot)) = (field(22), boot_time()) {
        metric(
            "process_start_time_seconds",
            boot as f64 + start as f64 / ticks as f64,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metric("process_open_fds", fds.count() as f64);
    }
    if let Some(max) = max_fds() {
        metric("process_max_fds", max as f64);
    }
}

/// When the machine booted (`btime` of `/proc/stat`), in Unix seconds.
fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit on open files (`Max open files` of `/proc/self/limits`).
fn max_fds() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_metrics_read_this_process() {
        let mut out = String::new();
        super::render(&mut out);
        let value = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{name} in {out}"))
        };
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let started = value("process_start_time_seconds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
        assert!(value("process_cpu_seconds_total") >= 0.0);
    }
}
