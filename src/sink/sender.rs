//! The sending stage: reads batches from the queue in order, delivers each
//! to the sink, and acknowledges it once the endpoint has taken it, or once
//! the events it refused for good are kept as dead letters.
//!
//! What an answer means:
//!
//! | answer | what herald does |
//! |---|---|
//! | 2xx | delivered: ack |
//! | 408, 429, 5xx but 501, timeout, connection error | retry the same batch with capped exponential backoff and full jitter, or after `Retry-After` (seconds or an HTTP date, at most [`RETRY_AFTER_MAX`]) |
//! | 422 naming items (`exception_detail[].loc = ["body", i, …]`) | dead-letter those items with the reason, resend the rest at once |
//! | 422 naming none | bisect: resend each half on its own until the bad event is alone, then dead-letter it |
//! | 401, 403, 404 | a wrong key or URL must not drop data: an error at most once a minute, retry at the backoff cap, forever |
//! | another 4xx (or 501) | retry once; if it comes again, dead-letter the batch |
//!
//! Retries never give up: the queue holds the events, and a stop (grace
//! expired) leaves them queued for the next run. The rate limit is applied
//! before every attempt.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::dead_letter::{DeadLetter, DeadLetters};
use super::rate::RateLimit;
use super::retry::Backoff;
use super::{SendError, Sink};
use crate::config::SinkConfig;
use crate::metrics::Stats;
use crate::queue::{QueueError, Reader, Record};

/// The longest `Retry-After` herald honours; a longer one is cut to this,
/// so a misconfigured proxy cannot park the agent for days.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);
/// How often a wrong key or URL is logged as an error.
const AUTH_ERROR_EVERY: Duration = Duration::from_secs(60);

/// What an attempt's outcome asks for.
#[derive(Debug, PartialEq)]
enum Verdict {
    Delivered,
    /// Try the same events again after this (or after the backoff).
    Retry(Option<Duration>),
    /// The endpoint refuses our credentials or does not know the URL.
    Unauthorized,
    /// Nobody reads what herald writes (stdout closed): sending cannot
    /// ever succeed, so the agent stops.
    Gone,
    /// These items (index, reason) are invalid; the rest may go.
    BadItems(Vec<(usize, String)>),
    /// Something in the batch is invalid, the endpoint did not say what.
    BadUnknown(String),
    /// Refused, and not for a reason a retry is known to cure.
    Refused(String),
}

fn judge(result: Result<(), SendError>, events: usize) -> Verdict {
    let (status, body, retry_after) = match result {
        Ok(()) => return Verdict::Delivered,
        Err(SendError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return Verdict::Gone;
        }
        Err(SendError::Transport(_) | SendError::Io(_)) => return Verdict::Retry(None),
        Err(SendError::Status {
            status,
            body,
            retry_after,
        }) => (status, body, retry_after),
    };
    match status {
        408 | 429 => Verdict::Retry(retry_after),
        500..=599 if status != 501 => Verdict::Retry(retry_after),
        401 | 403 | 404 => Verdict::Unauthorized,
        422 => {
            let items = bad_items(&body, events);
            if items.is_empty() {
                Verdict::BadUnknown(format!("422: {body}"))
            } else {
                Verdict::BadItems(items)
            }
        }
        _ => Verdict::Refused(format!("{status}: {body}")),
    }
}

/// The items a 422 names, from Prefect's `exception_detail[].loc`, each
/// with its reasons; only indexes inside the batch count.
fn bad_items(body: &str, events: usize) -> Vec<(usize, String)> {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    let mut items: Vec<(usize, String)> = Vec::new();
    for detail in value["exception_detail"].as_array().into_iter().flatten() {
        let loc = detail["loc"].as_array();
        let Some(index) = loc
            .filter(|loc| loc.first().and_then(Value::as_str) == Some("body"))
            .and_then(|loc| loc.get(1))
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| *i < events)
        else {
            continue;
        };
        let field: Vec<String> = loc
            .into_iter()
            .flatten()
            .skip(2)
            .map(|part| match part {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let reason = format!(
            "{}: {}",
            if field.is_empty() {
                "event".to_owned()
            } else {
                field.join(".")
            },
            detail["msg"].as_str().unwrap_or("invalid")
        );
        match items.iter_mut().find(|(i, _)| *i == index) {
            Some((_, reasons)) => {
                reasons.push_str("; ");
                reasons.push_str(&reason);
            }
            None => items.push((index, reason)),
        }
    }
    items.sort_by_key(|(i, _)| *i);
    items
}

/// The sending stage's state.
pub struct Sender {
    reader: Reader,
    delivery: Delivery,
    /// Sinks a reload built: taken between batches.
    swaps: Option<tokio::sync::mpsc::UnboundedReceiver<(Sink, SinkConfig)>>,
}

/// Everything that delivers a batch, apart from the reader, so that the
/// next batch can be read while one is being delivered.
struct Delivery {
    sink: Sink,
    config: SinkConfig,
    dead_letters: DeadLetters,
    stats: Arc<Stats>,
    rate: RateLimit,
    backoff: Backoff,
    last_auth_error: Option<Instant>,
    /// Cancelled when sending can never succeed again, to stop the agent.
    fatal: CancellationToken,
}

/// The stage was told to stop while a batch was unfinished; it stays
/// queued.
struct Stopped;

impl Sender {
    /// A sender from `reader` to `sink`.
    pub fn new(
        sink: Sink,
        config: SinkConfig,
        reader: Reader,
        dead_letters: DeadLetters,
        stats: Arc<Stats>,
        fatal: CancellationToken,
    ) -> Self {
        Sender {
            reader,
            swaps: None,
            delivery: Delivery {
                rate: RateLimit::new(config.max_events_per_second, config.burst),
                backoff: Backoff::new(config.retry_initial, config.retry_max),
                sink,
                config,
                dead_letters,
                stats,
                last_auth_error: None,
                fatal,
            },
        }
    }

    /// Takes the sinks sent on the returned channel (a reload's) between
    /// two batches: the next batch goes to the new one, with its retry,
    /// rate and batch settings.
    pub fn swappable(&mut self) -> tokio::sync::mpsc::UnboundedSender<(Sink, SinkConfig)> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.swaps = Some(rx);
        tx
    }

    /// Sends until the queue is closed and drained, or `stop` fires, then
    /// writes the last acks.
    pub async fn run(mut self, stop: CancellationToken) {
        self.send_until_done(&stop).await;
        if let Err(e) = self.reader.flush().await {
            error!(stage = "sending", error = %e, "QueueLedgerWriteFailed: the last acked events may be sent again at the next start");
        }
    }

    /// Delivers batch after batch. While one is being delivered, the next
    /// is read (one cancel-safe read, given up if it is still waiting for
    /// records when the delivery ends), so reading the queue overlaps the
    /// round trip to the endpoint.
    async fn send_until_done(&mut self, stop: &CancellationToken) {
        let Sender {
            reader,
            delivery,
            swaps,
        } = self;
        let mut next: Option<Vec<Record>> = None;
        loop {
            let gathered = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                batch = async {
                    match next.take() {
                        Some(batch) => top_up(reader, &delivery.config, batch).await,
                        None => gather(reader, &delivery.config).await,
                    }
                } => batch,
            };
            let batch = match gathered {
                Ok(batch) if batch.is_empty() => return,
                Ok(batch) => batch,
                Err(e) => {
                    let delay = delivery.backoff.next_delay();
                    error!(stage = "sending", error = %e, retry_in = ?delay, "QueueReadFailed");
                    if delivery.pause(delay, stop).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            while let Some((sink, config)) = swaps.as_mut().and_then(|s| s.try_recv().ok()) {
                info!(sink = %sink.describe(), "SinkSwapped");
                delivery.rate = RateLimit::new(config.max_events_per_second, config.burst);
                delivery.backoff = Backoff::new(config.retry_initial, config.retry_max);
                delivery.sink = sink;
                delivery.config = config;
            }
            let last = batch.last().map_or(0, |r| r.seq);
            let array = reader.body_of(&batch);
            let (max_events, max_bytes) = (
                delivery.config.batch_max_events,
                delivery.config.batch_max_bytes,
            );
            let (delivered, ahead) = {
                let deliver = delivery.deliver(batch, array, stop);
                let read_ahead = reader.next_batch(max_events, max_bytes);
                tokio::pin!(deliver, read_ahead);
                let mut ahead = None;
                loop {
                    tokio::select! {
                        biased;
                        delivered = &mut deliver => break (delivered, ahead),
                        read = &mut read_ahead, if ahead.is_none() => ahead = Some(read),
                    }
                }
            };
            if delivered.is_err() {
                return;
            }
            // An empty batch means closed and drained: the loop ends then.
            // A failed read is tried again (and reported) by the next gather.
            if let Some(Ok(batch)) = ahead {
                next = Some(batch);
            }
            if let Err(e) = reader.ack(last).await {
                error!(stage = "sending", seq = last, error = %e, "QueueAckFailed: these events may be sent again after a restart");
            }
        }
    }
}

impl Delivery {
    /// Delivers one batch, or dead-letters what the endpoint refuses for
    /// good; returns once nothing of it is left to send.
    async fn deliver(
        &mut self,
        batch: Vec<Record>,
        mut array: Option<Bytes>,
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        let whole = batch.len();
        let mut parts: VecDeque<Vec<Record>> = VecDeque::from([batch]);
        while let Some(mut part) = parts.pop_front() {
            let mut refused_once = false;
            while !part.is_empty() {
                tokio::select! {
                    () = stop.cancelled() => return Err(Stopped),
                    () = self.rate.acquire(part.len()) => {}
                }
                let payloads: Vec<&[u8]> = part.iter().map(|r| r.payload.as_ref()).collect();
                // The batch joined by the reader is good while the whole
                // batch is sent; a part of it is joined by the sink.
                if part.len() != whole {
                    array = None;
                }
                let sent = tokio::select! {
                    biased;
                    () = stop.cancelled() => return Err(Stopped),
                    sent = self.sink.send(&payloads, array.clone()) => sent,
                };
                let failure = match &sent {
                    Ok(()) => None,
                    Err(e) => Some(e.to_string()),
                };
                match judge(sent, part.len()) {
                    Verdict::Delivered => {
                        self.backoff.reset();
                        Stats::set(&self.stats.retry_attempt, 0);
                        Stats::add(&self.stats.events_sent, part.len() as u64);
                        part.clear();
                    }
                    Verdict::Retry(after) => {
                        Stats::add(&self.stats.batches_failed, 1);
                        Stats::set(
                            &self.stats.retry_attempt,
                            u64::from(self.backoff.attempts()) + 1,
                        );
                        let delay = after
                            .map(|a| a.min(RETRY_AFTER_MAX))
                            .unwrap_or_else(|| self.backoff.next_delay());
                        error!(stage = "sending", events = part.len(), attempt = self.backoff.attempts(), error = failure.as_deref().unwrap_or(""), retry_in = ?delay, "BatchSendFailed: will retry");
                        self.pause(delay, stop).await?;
                    }
                    Verdict::Gone => {
                        error!(
                            stage = "sending",
                            events = part.len(),
                            "SinkGone: stdout is closed; stopping (the events stay queued)"
                        );
                        self.fatal.cancel();
                        return Err(Stopped);
                    }
                    Verdict::Unauthorized => {
                        Stats::add(&self.stats.batches_failed, 1);
                        Stats::add(&self.stats.retry_attempt, 1);
                        let now = Instant::now();
                        if self
                            .last_auth_error
                            .is_none_or(|at| now.duration_since(at) >= AUTH_ERROR_EVERY)
                        {
                            self.last_auth_error = Some(now);
                            error!(stage = "sending", events = part.len(), error = failure.as_deref().unwrap_or(""), retry_every = ?self.config.retry_max, "EndpointRefusedCredentials: check the API key, auth string and URL; events stay queued");
                        }
                        self.pause(self.config.retry_max, stop).await?;
                    }
                    Verdict::BadItems(items) => {
                        let mut keep = Vec::with_capacity(part.len() - items.len());
                        let mut bad = Vec::with_capacity(items.len());
                        let mut items = items.into_iter().peekable();
                        for (i, record) in part.into_iter().enumerate() {
                            match items.next_if(|(index, _)| *index == i) {
                                Some((_, reason)) => bad.push((record, reason)),
                                None => keep.push(record),
                            }
                        }
                        self.dead_letter(&bad, Some(422), stop).await?;
                        part = keep;
                    }
                    Verdict::BadUnknown(reason) if part.len() == 1 => {
                        let record = part.remove(0);
                        self.dead_letter(&[(record, reason)], Some(422), stop)
                            .await?;
                    }
                    Verdict::BadUnknown(_) => {
                        // Halve and deliver each half on its own, in order.
                        let second = part.split_off(part.len() / 2);
                        parts.push_front(second);
                        parts.push_front(std::mem::take(&mut part));
                    }
                    Verdict::Refused(reason) if refused_once => {
                        let status = reason.split(':').next().and_then(|s| s.parse().ok());
                        let bad: Vec<(Record, String)> =
                            part.drain(..).map(|r| (r, reason.clone())).collect();
                        self.dead_letter(&bad, status, stop).await?;
                    }
                    Verdict::Refused(reason) => {
                        refused_once = true;
                        Stats::add(&self.stats.batches_failed, 1);
                        let delay = self.backoff.next_delay();
                        warn!(stage = "sending", events = part.len(), error = %reason, retry_in = ?delay, "BatchRefused: retrying once before dead-lettering it");
                        self.pause(delay, stop).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Keeps refused events as dead letters, retrying a failed write: they
    /// are acknowledged only once kept.
    async fn dead_letter(
        &mut self,
        bad: &[(Record, String)],
        status: Option<u16>,
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        let entries: Vec<DeadLetter<'_>> = bad
            .iter()
            .map(|(record, reason)| DeadLetter {
                status,
                reason: reason.clone(),
                seq: record.seq,
                event: record.payload.as_ref(),
            })
            .collect();
        loop {
            match self.dead_letters.write(&entries) {
                Ok(()) => break,
                Err(e) => {
                    let delay = self.backoff.next_delay();
                    error!(stage = "sending", events = entries.len(), error = %e, retry_in = ?delay, "DeadLetterWriteFailed: the rejected events stay queued");
                    self.pause(delay, stop).await?;
                }
            }
        }
        Stats::add(&self.stats.dead_lettered, entries.len() as u64);
        for entry in &entries {
            error!(stage = "sending", seq = entry.seq, status = ?entry.status, reason = %entry.reason, "EventRejected: kept as a dead letter");
        }
        Ok(())
    }

    async fn pause(&self, delay: Duration, stop: &CancellationToken) -> Result<(), Stopped> {
        tokio::select! {
            () = stop.cancelled() => Err(Stopped),
            () = tokio::time::sleep(delay) => Ok(()),
        }
    }
}

/// One batch: what is queued now, topped up for at most `batch_timeout`
/// when it is not full. Empty only when the queue is closed and drained.
async fn gather(reader: &mut Reader, config: &SinkConfig) -> Result<Vec<Record>, QueueError> {
    let batch = reader
        .next_batch(config.batch_max_events, config.batch_max_bytes)
        .await?;
    top_up(reader, config, batch).await
}

/// Tops `batch` up with what is queued for at most `batch_timeout` while
/// it is not full. An empty batch stays empty (the queue is closed and
/// drained).
async fn top_up(
    reader: &mut Reader,
    config: &SinkConfig,
    mut batch: Vec<Record>,
) -> Result<Vec<Record>, QueueError> {
    let mut bytes: usize = batch.iter().map(|r| r.payload.len()).sum();
    let deadline = Instant::now() + config.batch_timeout;
    while !batch.is_empty()
        && batch.len() < config.batch_max_events
        && bytes < config.batch_max_bytes
    {
        let more = tokio::select! {
            more = reader.next_batch(config.batch_max_events - batch.len(), config.batch_max_bytes - bytes) => more?,
            () = tokio::time::sleep_until(deadline) => break,
        };
        if more.is_empty() {
            break;
        }
        bytes += more.iter().map(|r| r.payload.len()).sum::<usize>();
        batch.extend(more);
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, body: &str) -> Result<(), SendError> {
        Err(SendError::Status {
            status,
            body: body.to_owned(),
            retry_after: None,
        })
    }

    #[test]
    fn answers_are_judged_as_documented() {
        assert_eq!(judge(Ok(()), 1), Verdict::Delivered);
        for code in [408, 429, 500, 502, 503, 504] {
            assert_eq!(judge(status(code, ""), 1), Verdict::Retry(None), "{code}");
        }
        for code in [401, 403, 404] {
            assert_eq!(judge(status(code, ""), 1), Verdict::Unauthorized, "{code}");
        }
        assert!(matches!(judge(status(501, ""), 1), Verdict::Refused(_)));
        assert!(matches!(judge(status(400, ""), 1), Verdict::Refused(_)));
        assert!(matches!(judge(status(413, ""), 1), Verdict::Refused(_)));
        assert!(matches!(
            judge(status(422, "not json"), 3),
            Verdict::BadUnknown(_)
        ));
        assert_eq!(
            judge(Err(SendError::Transport("reset".into())), 1),
            Verdict::Retry(None)
        );
        let with_after = Err(SendError::Status {
            status: 429,
            body: String::new(),
            retry_after: Some(Duration::from_secs(2)),
        });
        assert_eq!(
            judge(with_after, 1),
            Verdict::Retry(Some(Duration::from_secs(2)))
        );
    }

    #[test]
    fn a_422_names_its_items() {
        let body = r#"{"exception_message":"Invalid request received.","exception_detail":[
            {"type":"missing","loc":["body",2,"resource"],"msg":"Field required"},
            {"type":"x","loc":["body",2,"occurred"],"msg":"bad date"},
            {"type":"x","loc":["body",0,"related",1,"prefect.resource.role"],"msg":"Field required"},
            {"type":"x","loc":["body",9,"event"],"msg":"out of range index"},
            {"type":"x","loc":["query","x"],"msg":"not an item"}]}"#;
        assert_eq!(
            judge(status(422, body), 3),
            Verdict::BadItems(vec![
                (0, "related.1.prefect.resource.role: Field required".into()),
                (2, "resource: Field required; occurred: bad date".into()),
            ])
        );
    }
}
