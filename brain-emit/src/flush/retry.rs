//! The drain loop of one flush: send until the queue is empty, back off on retryable
//! failures (exponential, jitter, `Retry-After`), release the lease while sleeping so the
//! next hook or timer can take over, and leave a retry schedule for background flushers
//! when giving up.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::http::Sender;
use super::{FlushError, FlushMode, FlushOutcome, FlushReport, LEASE_TTL_MS, Stop};
use crate::spool::{Spool, now_ms};

/// Most delivery attempts of a background or foreground flush before it gives up.
const MAX_ATTEMPTS: usize = 4;

/// Most times one flush re-takes the lease for events queued while it was draining; a
/// bound so a flusher always ends even if hooks keep enqueuing.
const MAX_ROUNDS: u32 = 100;

/// Longest single back-off sleep, in ms; a longer `Retry-After` is recorded as the schedule
/// for the next flusher instead of slept through.
const MAX_SLEEP_MS: u64 = 60_000;

/// How long hooks wait before starting another flusher after a configuration error, in ms.
const CONFIG_ERROR_PAUSE_MS: i64 = 5 * 60 * 1000;

/// Drains the spool through `sender`, whose lease this flusher holds; the report says how
/// it ended, with the rows still queued.
pub(super) fn deliver(
    spool: &mut Spool,
    sender: &Sender<'_>,
    mode: FlushMode,
) -> Result<FlushReport, FlushError> {
    let token = sender.token;
    let mut report = FlushReport::new(FlushOutcome::Drained);
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_millis(MAX_SLEEP_MS))
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(MAX_ATTEMPTS - 1)
        .build();

    let mut rounds = 0;
    loop {
        match sender.drain(spool, &mut report) {
            Ok(()) => {
                spool.release_lease(token)?;
                // A hook that enqueued while we held the lease did not start a flusher:
                // pick its events up unless someone else already has.
                rounds += 1;
                if rounds < MAX_ROUNDS
                    && spool.depth()? > 0
                    && spool.acquire_lease(token, LEASE_TTL_MS)?
                {
                    continue;
                }
                report.outcome = FlushOutcome::Drained;
                break;
            }
            Err(Stop::Spool(e)) => {
                let _ = spool.release_lease(token);
                return Err(e.into());
            }
            Err(Stop::LostLease) => {
                report.outcome = FlushOutcome::LeaseBusy;
                break;
            }
            Err(Stop::Config(reason)) => {
                spool.record_failure(&reason, true, Some(now_ms() + CONFIG_ERROR_PAUSE_MS))?;
                spool.release_lease(token)?;
                report.outcome = FlushOutcome::ConfigError(reason);
                break;
            }
            Err(Stop::Retryable {
                reason,
                retry_after,
            }) => {
                let next = if mode == FlushMode::Wait {
                    None
                } else {
                    backoff.next()
                };
                let Some(delay) = next else {
                    // Out of attempts: leave a schedule so hooks do not start a flusher per
                    // event while the server is away.
                    let pause = retry_after
                        .unwrap_or(Duration::from_secs(30))
                        .min(Duration::from_secs(300));
                    spool.record_failure(&reason, false, Some(now_ms() + ms(pause)))?;
                    spool.release_lease(token)?;
                    report.outcome = FlushOutcome::Unavailable(reason);
                    break;
                };
                let delay = retry_after.map_or(delay, |ra| ra.max(delay));
                let sleep = delay.min(Duration::from_millis(MAX_SLEEP_MS));
                spool.record_failure(&reason, false, Some(now_ms() + ms(delay)))?;
                // Release while sleeping: the next hook or timer may take over.
                spool.release_lease(token)?;
                if delay > sleep {
                    report.outcome = FlushOutcome::Unavailable(reason);
                    break;
                }
                std::thread::sleep(sleep);
                if !spool.acquire_lease(token, LEASE_TTL_MS)? {
                    report.outcome = FlushOutcome::LeaseBusy;
                    break;
                }
            }
        }
    }
    report.remaining = spool.depth()?;
    Ok(report)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
