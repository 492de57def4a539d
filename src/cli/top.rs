//! `sluice top`: a terminal view of a running sluice's components.
//!
//! Split in three so the view is testable without a terminal: [`fetch`] polls
//! `GET /components`, [`Rates::between`] turns two snapshots into per-second figures,
//! and [`render`] draws a snapshot and its rates into any ratatui frame (a `TestBackend`
//! in tests). [`run`] is only the terminal loop around them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Args;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::top_columns::{self as columns, ComponentRates, latency};
use crate::telemetry::snapshot::Snapshot;

/// Rates by component id; empty after the first poll.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rates {
    pub by_id: HashMap<String, ComponentRates>,
    /// The time between the two polls.
    pub(crate) over: Duration,
}

impl Rates {
    /// Rates from `previous` to `current`, `elapsed` apart. A counter that went down
    /// (the component was rebuilt with another type) counts from zero.
    pub fn between(previous: &Snapshot, current: &Snapshot, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return Self::default();
        }
        let before: HashMap<&str, _> = previous
            .components
            .iter()
            .map(|c| (c.id.as_str(), c))
            .collect();
        let per_sec = |now: u64, then: u64| {
            let delta = if now >= then { now - then } else { now };
            delta as f64 / secs
        };
        let by_id = current
            .components
            .iter()
            .filter_map(|c| {
                let p = before.get(c.id.as_str())?;
                Some((
                    c.id.clone(),
                    ComponentRates {
                        received: per_sec(c.received, p.received),
                        sent: per_sec(c.sent, p.sent),
                        errors: per_sec(c.errors, p.errors),
                        discarded: per_sec(c.discarded, p.discarded),
                        bytes: per_sec(
                            c.received_bytes + c.sent_bytes,
                            p.received_bytes + p.sent_bytes,
                        ),
                    },
                ))
            })
            .collect();
        Self {
            by_id,
            over: elapsed,
        }
    }
}

/// `backfill ID [=====>    ] done/total rows pct%`, the bar `width` cells wide.
pub(crate) fn backfill_line(id: &str, done: u64, total: u64, width: usize) -> String {
    let fraction = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    let filled = (fraction * width as f64).round() as usize;
    let mut bar = "=".repeat(filled);
    if filled < width {
        bar.push('>');
        bar.push_str(&" ".repeat(width - filled - 1));
    }
    format!(
        "backfill {id} [{bar}] {done}/{total} rows {:>3}%",
        (fraction * 100.0).floor() as u64
    )
}

/// Draws the header (address, pipeline state, latency, backfills) and one row per
/// component.
pub fn render(frame: &mut Frame, address: &str, snapshot: &Snapshot, rates: &Rates) {
    let backfills: Vec<Line> = snapshot
        .components
        .iter()
        .filter_map(|c| {
            let b = c.backfill?;
            Some(Line::from(backfill_line(&c.id, b.done, b.total, 30)))
        })
        .collect();
    let [header, table_area, footer] = Layout::vertical([
        Constraint::Length(2 + backfills.len() as u16),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let l = &snapshot.latency;
    let mut header_text = vec![
        Line::from(format!(
            "sluice top — {address} — pipeline {}",
            if snapshot.running {
                "running"
            } else {
                "not running"
            }
        )),
        Line::from(if l.count == 0 {
            "end-to-end latency: no events settled yet".to_owned()
        } else {
            format!(
                "end-to-end latency p50 {}  p99 {}  ({} events)",
                latency(l.p50_seconds),
                latency(l.p99_seconds),
                l.count
            )
        }),
    ];
    header_text.extend(backfills);
    frame.render_widget(Paragraph::new(header_text), header);

    let level = columns::level_for(table_area.width);
    let shown: Vec<&columns::Column> = columns::ALL.iter().filter(|c| c.shown_at(level)).collect();
    let head = Row::new(shown.iter().map(|c| Cell::from(c.header)))
        .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = snapshot.components.iter().map(|c| {
        let r = rates.by_id.get(&c.id);
        Row::new(shown.iter().map(|col| Cell::from((col.cell)(c, r))))
    });
    let widths: Vec<Constraint> = shown
        .iter()
        .map(|c| Constraint::Length(c.width(&snapshot.components, table_area.width)))
        .collect();
    let table = Table::new(rows, widths)
        .header(head)
        .block(Block::bordered().title(" components "));
    frame.render_widget(table, table_area);

    let footer_text = if rates.over.is_zero() {
        "q/Esc: quit — rates after the next refresh".to_owned()
    } else {
        format!(
            "q/Esc: quit — rates over the last {:.1}s",
            rates.over.as_secs_f64()
        )
    };
    frame.render_widget(Paragraph::new(footer_text), footer);
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach sluice's API at {address}: {source}")]
    Unreachable {
        address: String,
        source: reqwest::Error,
    },
    #[error("{address} answered {status}")]
    Status {
        address: String,
        status: reqwest::StatusCode,
    },
    #[error("unexpected answer from {address}: {source}")]
    Body {
        address: String,
        source: reqwest::Error,
    },
}

/// Polls `GET /components` of the API at `address` (`host:port`).
pub async fn fetch(
    client: &reqwest::Client,
    address: &str,
    token: Option<&str>,
) -> Result<Snapshot, FetchError> {
    let mut request = client.get(format!("http://{address}/components"));
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|source| FetchError::Unreachable {
            address: address.to_owned(),
            source,
        })?;
    if !response.status().is_success() {
        return Err(FetchError::Status {
            address: address.to_owned(),
            status: response.status(),
        });
    }
    response.json().await.map_err(|source| FetchError::Body {
        address: address.to_owned(),
        source,
    })
}

/// The terminal loop: polls every `interval`, redraws, quits on `q`, Esc or Ctrl-C.
pub(crate) fn run(address: &str, interval: Duration, token: Option<&str>) -> anyhow::Result<()> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(interval.max(Duration::from_secs(1)))
        .build()?;
    // Fail before taking over the terminal when the API is not there.
    let mut previous = runtime.block_on(fetch(&client, address, token))?;
    let mut previous_at = Instant::now();
    let mut rates = Rates::default();
    let mut shown = previous.clone();
    let mut terminal = ratatui::try_init()?;
    let result = (|| -> anyhow::Result<()> {
        loop {
            terminal.draw(|f| render(f, address, &shown, &rates))?;
            let deadline = previous_at + interval;
            while let Some(wait) = deadline.checked_duration_since(Instant::now()) {
                if event::poll(wait)?
                    && let Event::Key(key) = event::read()?
                    && key.kind == KeyEventKind::Press
                {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                        return Ok(());
                    }
                }
            }
            let current = runtime.block_on(fetch(&client, address, token))?;
            let now = Instant::now();
            rates = Rates::between(&previous, &current, now - previous_at);
            shown = current.clone();
            previous = current;
            previous_at = now;
        }
    })();
    ratatui::restore();
    result
}

#[derive(Args)]
pub(crate) struct TopArgs {
    /// The API of the running sluice.
    #[arg(long, default_value = "127.0.0.1:8686")]
    pub(crate) api_address: String,
    /// Time between refreshes.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) interval: Duration,
    /// The API's bearer token (`api.auth_token`), if the API asks for one.
    #[arg(long, env = "SLUICE_API__AUTH_TOKEN")]
    pub(crate) token: Option<String>,
}

pub(crate) fn top(args: &TopArgs) -> u8 {
    crate::net::install_crypto_provider();
    if args.interval.is_zero() {
        eprintln!("error: --interval must be more than 0");
        return 2;
    }
    match run(&args.api_address, args.interval, args.token.as_deref()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::snapshot::{BackfillFill, BufferFill, ComponentSnapshot, LatencySummary};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn component(id: &str, kind: &str, received: u64, sent: u64) -> ComponentSnapshot {
        ComponentSnapshot {
            id: id.into(),
            kind: kind.into(),
            type_name: "x".into(),
            state: "running".into(),
            error: None,
            received,
            sent,
            errors: 0,
            discarded: 0,
            received_bytes: 0,
            sent_bytes: 0,
            buffer: Some(BufferFill {
                events: 250,
                capacity: 1000,
            }),
            latency: LatencySummary {
                count: 10,
                p50_seconds: 0.0004,
                p99_seconds: 1.5,
                ..Default::default()
            },
            backfill: None,
        }
    }

    fn snap(components: Vec<ComponentSnapshot>) -> Snapshot {
        Snapshot {
            running: true,
            components,
            latency: LatencySummary {
                count: 3,
                p50_seconds: 0.0021,
                p99_seconds: 0.5,
                ..Default::default()
            },
        }
    }

    #[test]
    fn rates_are_deltas_over_elapsed_and_survive_resets() {
        let a = snap(vec![component("t", "transform", 100, 90)]);
        let b = snap(vec![
            component("t", "transform", 300, 40),
            component("new", "sink", 5, 5),
        ]);
        let r = Rates::between(&a, &b, Duration::from_secs(2));
        assert_eq!(r.by_id["t"].received, 100.0);
        // 90 → 40: rebuilt; counts from zero.
        assert_eq!(r.by_id["t"].sent, 20.0);
        assert!(!r.by_id.contains_key("new"));
    }

    #[test]
    fn renders_rows_rates_buffer_and_latency() {
        let a = snap(vec![component("parse", "transform", 0, 0)]);
        let mut history = component("history", "source", 0, 1200);
        history.backfill = Some(BackfillFill {
            done: 1200,
            total: 4800,
        });
        let b = snap(vec![component("parse", "transform", 1500, 1500), history]);
        let rates = Rates::between(&a, &b, Duration::from_secs(1));
        let mut terminal = Terminal::new(TestBackend::new(120, 12)).expect("terminal");
        terminal
            .draw(|f| render(f, "127.0.0.1:8686", &b, &rates))
            .expect("draw");
        let text: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(text.contains("parse"), "{text}");
        assert!(text.contains("1500"), "{text}");
        assert!(text.contains("250/1000  25%"), "{text}");
        assert!(text.contains("p50 2.1ms  p99 500ms"), "{text}");
        assert!(text.contains("400µs"), "per-component p50: {text}");
        assert!(text.contains("1.50s"), "per-component p99: {text}");
        assert!(
            text.contains("backfill history [========>                     ] 1200/4800 rows  25%"),
            "{text}"
        );
    }

    fn screen(width: u16, snapshot: &Snapshot, rates: &Rates) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, 12)).expect("terminal");
        terminal
            .draw(|f| render(f, "127.0.0.1:8686", snapshot, rates))
            .expect("draw");
        let buffer = terminal.backend().buffer();
        (0..12)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_owned())
                    .collect::<String>()
            })
            .collect()
    }

    #[test]
    fn eighty_columns_show_discards_and_bytes_without_cutting_a_header() {
        let mut throttle = component("throttle", "transform", 0, 0);
        let mut hook = component("hook", "source", 0, 0);
        let mut pd = component("pagerduty", "sink", 0, 0);
        let a = snap(vec![throttle.clone(), hook.clone(), pd.clone()]);
        (throttle.received, throttle.sent, throttle.discarded) = (200, 50, 150);
        (hook.sent, hook.received_bytes) = (200, 64 * 1024);
        (pd.received, pd.sent, pd.sent_bytes) = (50, 50, 1500);
        throttle.state = "degraded".into();
        let b = snap(vec![throttle, hook, pd]);
        let rates = Rates::between(&a, &b, Duration::from_secs(1));
        let lines = screen(80, &b, &rates);
        let header = &lines[3];
        for h in [
            "ID", "TYPE", "STATE", "IN/s", "OUT/s", "DISC/s", "ERR/s", "BYTES/s", "AGE p99", "BUF",
        ] {
            assert!(header.contains(h), "{h} in {header}");
        }
        let row = |id: &str| lines.iter().find(|l| l.contains(id)).expect(id).clone();
        let t = row("throttle");
        // In 200/s, out 50/s, discarded 150/s; the state is whole.
        assert!(t.contains("degraded"), "{t}");
        let figures: Vec<&str> = t.split_whitespace().collect();
        assert!(
            figures.windows(3).any(|w| w == ["200", "50.0", "150"]),
            "{t}"
        );
        assert!(row("hook").contains("64.0KiB"), "{}", row("hook"));
        assert!(row("pagerduty").contains("1.5KiB"), "{}", row("pagerduty"));
        // Wide terminals get the kind, totals and the full buffer.
        let wide = screen(140, &b, &rates);
        assert!(
            wide[3].contains("KIND") && wide[3].contains("BUFFER"),
            "{}",
            wide[3]
        );
    }

    #[test]
    fn backfill_line_is_full_when_done_and_safe_on_zero() {
        assert_eq!(
            backfill_line("h", 0, 0, 4),
            "backfill h [====] 0/0 rows 100%"
        );
        assert_eq!(
            backfill_line("h", 5, 4, 4),
            "backfill h [====] 5/4 rows 100%"
        );
        assert_eq!(
            backfill_line("h", 1, 4, 4),
            "backfill h [=>  ] 1/4 rows  25%"
        );
    }
}
