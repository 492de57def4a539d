//! The SMTP side: the transport (TLS, credentials), the send loop that groups events
//! into messages, and what a server's reply means for them.

use std::sync::Arc;

use indexmap::IndexMap;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::time::Instant;

use super::message::{self, Composer, Envelope, Part};
use super::{EmailConfig, Mode, TlsMode};
use crate::component::{BuildError, ComponentError, SinkContext, delivered};
use crate::delivery::{DeadLetter, Failure};
use crate::event::Event;
use crate::net::{Backoff, Pause};

pub(super) type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Events waiting for digests, across all recipients: past this the oldest digests go
/// out early (they have left the sink's buffer, so nothing else bounds them).
pub(super) const MAX_HELD_EVENTS: usize = 10_000;

fn tls_parameters(config: &EmailConfig) -> Result<TlsParameters, BuildError> {
    crate::net::install_crypto_provider();
    let mut builder = TlsParameters::builder(config.host.clone());
    if let Some(path) = &config.ca_file {
        let certs =
            crate::net::client_tls::pem_certificates(path, "ca_file").map_err(BuildError)?;
        for cert in certs {
            let cert = Certificate::from_der(cert.to_vec())
                .map_err(|e| BuildError(format!("`ca_file` {}: {e}", path.display())))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build_rustls()
        .map_err(|e| BuildError(format!("TLS for `{}`: {e}", config.host)))
}

pub(super) fn transport(config: &EmailConfig) -> Result<Transport, BuildError> {
    let tls = match config.tls {
        TlsMode::Starttls => Tls::Required(tls_parameters(config)?),
        TlsMode::Tls => Tls::Wrapper(tls_parameters(config)?),
        TlsMode::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
        .port(config.port())
        .tls(tls)
        .timeout(Some(config.timeout));
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder
            .credentials(Credentials::new(user.clone(), password.clone()))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    Ok(builder.build())
}

/// `validate --check-sinks`: connect, secure the connection, greet, log in if configured.
pub(super) async fn probe(config: &EmailConfig) -> crate::net::probe::Checked {
    config.check_options().map_err(|e| e.0)?;
    let transport = transport(config).map_err(|e| e.0)?;
    let tested = tokio::time::timeout(config.timeout, transport.test_connection())
        .await
        .map_err(|_| {
            format!(
                "SMTP server {}:{} did not answer within {:?}",
                config.host,
                config.port(),
                config.timeout
            )
        })?;
    match tested {
        Ok(true) => Ok(format!(
            "SMTP server {}:{} answered",
            config.host,
            config.port()
        )),
        Ok(false) => Err(format!(
            "SMTP server {}:{} did not answer NOOP",
            config.host,
            config.port()
        )),
        Err(e) => Err(describe(&e)),
    }
}

/// What waiting will not fix: a 5xx reply; a client-side refusal (the server offers no
/// STARTTLS, or no login mechanism sluice speaks); any TLS failure (an untrusted
/// certificate, or TLS spoken to a plain-text port).
fn is_permanent(e: &lettre::transport::smtp::Error) -> bool {
    if e.is_permanent() || e.is_client() || e.is_tls() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        source = err.source();
    }
    crate::net::is_certificate_error(e)
}

/// An SMTP error as one line, with what it means.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    crate::redact::redact(&crate::net::error_chain(e)).into_owned()
}

enum Sent {
    Delivered(usize),
    Failed(Failure),
    Stopped,
}

/// Sends one message, retrying what SMTP says may succeed later.
async fn send(
    transport: &Transport,
    envelope: &Envelope,
    parts: &[Part],
    config: &EmailConfig,
    cx: &SinkContext,
) -> Sent {
    let message = match message::build(envelope, parts) {
        Ok(m) => m,
        Err(error) => {
            return Sent::Failed(Failure {
                error,
                status: None,
                attempts: 0,
                body: None,
            });
        }
    };
    let bytes = message.formatted().len();
    let stop = cx.input.stop_token();
    let mut backoff = Backoff::new(config.failure_handling);
    let mut attempts = 0;
    loop {
        attempts += 1;
        // lettre bounds the connect only: a server that stops answering mid-dialogue
        // would hold the sink for good without this.
        let (reason, code) =
            match tokio::time::timeout(config.timeout, transport.send(message.clone())).await {
                Ok(Ok(_)) => return Sent::Delivered(bytes),
                Ok(Err(error)) => {
                    let code = error
                        .status()
                        .and_then(|c| c.to_string().parse::<u16>().ok());
                    let reason = describe(&error);
                    if is_permanent(&error) {
                        return Sent::Failed(Failure {
                            error: reason.clone(),
                            status: code,
                            attempts,
                            body: Some(reason),
                        });
                    }
                    (reason, code)
                }
                Err(_) => (
                    format!(
                        "the SMTP server did not finish the delivery within {:?} (`timeout`)",
                        config.timeout
                    ),
                    None,
                ),
            };
        let pause = backoff.pause(None, &*cx.clock, Some(&stop), |wait| {
            tracing::warn!(component_id = %cx.id, error = %reason, wait = ?wait, "SMTP send failed; retrying");
        });
        match pause.await {
            Pause::Retry => {}
            Pause::Exhausted => {
                return Sent::Failed(Failure::gave_up(
                    attempts,
                    &reason,
                    code,
                    Some(reason.clone()),
                ));
            }
            Pause::Stopped => return Sent::Stopped,
        }
    }
}

/// Events waiting for one message.
struct Group {
    envelope: Envelope,
    parts: Vec<Part>,
    events: Vec<Event>,
    since: Instant,
}

pub(super) async fn run(
    config: EmailConfig,
    composer: Composer,
    transport: Transport,
    mut cx: SinkContext,
) -> Result<(), ComponentError> {
    let dead_letter = DeadLetter::new(
        Arc::clone(&cx.id),
        cx.outputs.first().cloned(),
        Arc::clone(&cx.metrics),
    );
    let stop = cx.input.stop_token();
    let digest = config.mode == Mode::Digest;
    let mut groups: IndexMap<String, Group> = IndexMap::new();
    let mut input_open = true;
    let mut shutting_down = false;
    loop {
        let now = Instant::now();
        let flush_all = !digest || !input_open || shutting_down;
        // Each due group, and whether all of it goes (else only its full digests).
        let mut due: Vec<(String, bool)> = groups
            .iter()
            .filter(|(_, g)| {
                flush_all
                    || g.events.len() >= config.batch.max_events
                    || g.since + config.batch.timeout <= now
            })
            .map(|(k, g)| {
                (
                    k.clone(),
                    flush_all || g.since + config.batch.timeout <= now,
                )
            })
            .collect();
        // Held events have left the sink's buffer, so they are bounded here: past the
        // limit the oldest digests go out early.
        let mut held: usize = groups.values().map(|g| g.events.len()).sum();
        for (key, group) in &groups {
            if held <= MAX_HELD_EVENTS {
                break;
            }
            held -= group.events.len();
            match due.iter_mut().find(|(k, _)| k == key) {
                Some((_, all)) => *all = true,
                None => due.push((key.clone(), true)),
            }
        }
        for (key, all) in due {
            let Some(group) = groups.shift_remove(&key) else {
                continue;
            };
            // Per event: each event is its own message, in order; a digest carries at
            // most `batch.max_events`.
            let size = if digest { config.batch.max_events } else { 1 };
            let mut messages: Vec<(Vec<Part>, Vec<Event>)> = Vec::new();
            for (part, event) in group.parts.into_iter().zip(group.events) {
                match messages.last_mut() {
                    Some((parts, events)) if parts.len() < size => {
                        parts.push(part);
                        events.push(event);
                    }
                    _ => messages.push((vec![part], vec![event])),
                }
            }
            // Due only for being full: a partial remainder keeps waiting for its timer.
            if digest
                && !all
                && messages.last().is_some_and(|(parts, _)| parts.len() < size)
                && let Some((parts, events)) = messages.pop()
            {
                groups.insert(
                    key.clone(),
                    Group {
                        envelope: group.envelope.clone(),
                        parts,
                        events,
                        since: group.since,
                    },
                );
            }
            let mut messages = messages.into_iter();
            while let Some((parts, events)) = messages.next() {
                match send(&transport, &group.envelope, &parts, &config, &cx).await {
                    Sent::Delivered(bytes) => {
                        cx.metrics.add_sent_bytes(bytes);
                        delivered(&cx.metrics, events);
                    }
                    Sent::Failed(failure) => dead_letter.send(events, &failure).await,
                    Sent::Stopped => {
                        // Replaced by a reload: what is not sent goes to the replacement.
                        let mut rest = events;
                        rest.extend(messages.flat_map(|(_, e)| e));
                        rest.extend(groups.drain(..).flat_map(|(_, g)| g.events));
                        cx.input.hand_back(rest);
                        return Ok(());
                    }
                }
            }
        }
        if !input_open && groups.is_empty() {
            return Ok(());
        }
        let deadline = groups
            .values()
            .map(|g| g.since + config.batch.timeout)
            .min();
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                let rest: Vec<Event> = groups.drain(..).flat_map(|(_, g)| g.events).collect();
                if !rest.is_empty() {
                    cx.input.hand_back(rest);
                }
                return Ok(());
            }
            batch = cx.input.recv(), if input_open => match batch {
                Some(batch) => {
                    cx.metrics.add_received(batch.len());
                    for event in batch {
                        let composed = composer
                            .envelope(&event)
                            .and_then(|envelope| Ok((envelope, composer.part(&event)?)));
                        match composed {
                            Ok((envelope, part)) => {
                                let group = groups.entry(envelope.key()).or_insert_with(|| Group {
                                    envelope,
                                    parts: Vec::new(),
                                    events: Vec::new(),
                                    since: Instant::now(),
                                });
                                group.parts.push(part);
                                group.events.push(event);
                            }
                            Err(error) => {
                                let failure = Failure { error, status: None, attempts: 0, body: None };
                                dead_letter.send(vec![event], &failure).await;
                            }
                        }
                    }
                }
                None => {
                    if !stop.is_cancelled() {
                        input_open = false;
                    }
                }
            },
            () = sleep_until(deadline), if deadline.is_some() && digest => {}
            () = cx.shutdown.cancelled(), if digest && !shutting_down => shutting_down = true,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
