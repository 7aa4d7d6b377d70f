//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas can run and
//! only one reconciles, with client-go's semantics:
//!
//! - **Expiry is judged on the local monotonic clock.** A candidate never compares another
//!   holder's `renewTime` with its own wall clock. It remembers the lease record it last saw
//!   (holder, `renewTime`, `resourceVersion`) and when it first saw it; only when that record
//!   has stayed unchanged for a whole lease duration does the candidate take the lease.
//! - **The leader renews with a safety margin.** Every renewal attempt has its own timeout,
//!   and the leader gives up once it has not renewed within the renew deadline, which is
//!   shorter than the lease duration.
//! - **Writes are compare-and-swap** on the Lease's `resourceVersion`.
//!
//! [`LeaseGuard`] is the write fence built on this: it holds only while less than the renew
//! deadline has passed since the start of the last successful renewal. A candidate takes
//! over no sooner than a lease duration after it saw that renewal's record, which it can only
//! see after the renewal started, so the old leader's guard has lapsed by then, with the
//! difference between lease duration and renew deadline to spare. The clock is
//! `CLOCK_MONOTONIC`, which keeps counting while a process is stopped (SIGSTOP) or starved:
//! a leader that wakes up after such a pause finds its guard lapsed before it does anything.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Identity and timing of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a candidate waits, after it last saw the lease change, before it takes the
    /// lease from another holder.
    pub lease_duration: Duration,
    /// How long the leader acts without a successful renewal; shorter than the lease
    /// duration.
    pub renew_deadline: Duration,
    /// Time between attempts to take or renew the lease; shorter than the renew deadline.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Checks the timing the safety of the election rests on. The messages name the
    /// binary's flags.
    pub fn validate(&self) -> Result<(), String> {
        let (lease, renew, retry) = (self.lease_duration, self.renew_deadline, self.retry_period);
        if lease.is_zero() || renew.is_zero() || retry.is_zero() {
            return Err(format!(
                "leader election timings must be positive (lease duration {lease:?}, renew deadline {renew:?}, retry period {retry:?})"
            ));
        }
        if renew >= lease {
            return Err(format!(
                "--leader-election-renew-deadline ({renew:?}) must be shorter than --leader-election-lease-duration ({lease:?}), or a stalled leader could still act when another replica takes over"
            ));
        }
        if retry >= renew {
            return Err(format!(
                "--leader-election-retry-period ({retry:?}) must be shorter than --leader-election-renew-deadline ({renew:?}), or the leader gives up before it retries a failed renewal"
            ));
        }
        Ok(())
    }

    /// The timeout of one attempt to take or renew the lease: half the renew deadline, so a
    /// hung API call leaves room for another attempt before the deadline.
    pub fn attempt_timeout(&self) -> Duration {
        self.renew_deadline / 2
    }

    /// `leaseDurationSeconds` as written to the Lease: whole seconds, rounded up.
    fn lease_duration_seconds(&self) -> i32 {
        let secs = self
            .lease_duration
            .as_secs()
            .saturating_add(u64::from(self.lease_duration.subsec_nanos() > 0));
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }
}

/// Whether this replica may still act as the leader; cheap to check before every write.
///
/// Holds while the monotonic clock is before the start of the last successful renewal plus
/// the renew deadline. Clones share the same state.
#[derive(Clone, Debug)]
pub struct LeaseGuard {
    state: Arc<GuardState>,
}

#[derive(Debug)]
struct GuardState {
    origin: Instant,
    /// Nanoseconds after `origin` until which the guard holds; 0 when it does not.
    until: AtomicU64,
}

impl Default for LeaseGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl LeaseGuard {
    /// A guard that does not hold.
    pub fn new() -> Self {
        Self {
            state: Arc::new(GuardState {
                origin: Instant::now(),
                until: AtomicU64::new(0),
            }),
        }
    }

    /// Whether this replica still holds the lease now.
    pub fn holds(&self) -> bool {
        self.holds_at(Instant::now())
    }

    /// Whether this replica holds the lease at `now`.
    pub fn holds_at(&self, now: Instant) -> bool {
        let until = self.state.until.load(Ordering::Acquire);
        until > 0 && self.nanos(now) < until
    }

    /// Records a successful renewal whose attempt started at `started`: the guard holds
    /// until `started + renew_deadline` (never moved back by a renewal that started earlier).
    pub fn renewed(&self, started: Instant, renew_deadline: Duration) {
        let until = self
            .nanos(started)
            .saturating_add(nanos(renew_deadline))
            .max(1);
        self.state.until.fetch_max(until, Ordering::AcqRel);
    }

    /// Stops holding at once (lease lost or released).
    pub fn revoke(&self) {
        self.state.until.store(0, Ordering::Release);
    }

    fn nanos(&self, at: Instant) -> u64 {
        // +1 so that a renewal at the origin itself is distinguishable from "not held".
        nanos(at.saturating_duration_since(self.state.origin)).saturating_add(1)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What identifies one version of a lease as another replica sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// None when nobody holds the lease (never held, or released).
    pub holder: Option<String>,
    pub renew_time: Option<Timestamp>,
    pub resource_version: Option<String>,
    /// The holder's own lease duration, as it wrote it.
    pub lease_duration: Option<Duration>,
}

impl LeaseRecord {
    pub fn of(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        Self {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            renew_time: spec
                .and_then(|s| s.renew_time.as_ref())
                .map(|MicroTime(t)| *t),
            resource_version: lease.metadata.resource_version.clone(),
            lease_duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        }
    }
}

/// The lease record last seen, and when (on this process's monotonic clock) it was first
/// seen in that state.
#[derive(Clone, Debug, Default)]
pub struct Observer {
    last: Option<(LeaseRecord, Instant)>,
}

impl Observer {
    /// Notes the record read at `now`; the clock restarts whenever the record changed.
    pub fn observe(&mut self, record: LeaseRecord, now: Instant) {
        match &self.last {
            Some((seen, _)) if *seen == record => {}
            _ => self.last = Some((record, now)),
        }
    }

    /// Whether another replica may take the lease at `now`: nobody holds it, or its record
    /// has not changed for a whole lease duration (this replica's, or the holder's if that is
    /// longer) since this replica first saw it.
    pub fn expired(&self, lease_duration: Duration, now: Instant) -> bool {
        match &self.last {
            None => false,
            Some((record, _)) if record.holder.is_none() => true,
            Some((record, since)) => {
                let duration = record
                    .lease_duration
                    .map_or(lease_duration, |d| d.max(lease_duration));
                now.saturating_duration_since(*since) >= duration
            }
        }
    }
}

/// Holds (or can take) the lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    guard: LeaseGuard,
    observer: Mutex<Observer>,
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            guard: LeaseGuard::new(),
            observer: Mutex::new(Observer::default()),
        }
    }

    /// The write fence: holds while this replica may act as the leader.
    pub fn guard(&self) -> LeaseGuard {
        self.guard.clone()
    }

    fn observe(&self, lease: &Lease, now: Instant) {
        if let Ok(mut observer) = self.observer.lock() {
            observer.observe(LeaseRecord::of(lease), now);
        }
    }

    fn expired(&self, now: Instant) -> bool {
        self.observer
            .lock()
            .is_ok_and(|o| o.expired(self.config.lease_duration, now))
    }

    fn spec(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let ours = previous
            .is_some_and(|p| p.holder_identity.as_deref() == Some(self.config.identity.as_str()));
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration_seconds()),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours || previous.is_none() {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..Default::default()
        }
    }

    /// One attempt to take or renew the lease, without a timeout of its own (see
    /// [`Elector::acquire`] and [`Elector::hold`]). `Ok(true)` when this replica holds it;
    /// then the guard holds for a renew deadline from the start of this attempt.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let started = Instant::now();
        let held: Option<Lease> = match self.api.get_opt(&self.config.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(None)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(created) => Some(created),
                    // Another replica created it first.
                    Err(kube::Error::Api(e)) if e.code == 409 => None,
                    Err(e) => return Err(e),
                }
            }
            Some(mut lease) => {
                self.observe(&lease, Instant::now());
                let current = lease.spec.clone().unwrap_or_default();
                let ours = current.holder_identity.as_deref() == Some(&self.config.identity);
                if !ours && !self.expired(Instant::now()) {
                    return Ok(false);
                }
                lease.spec = Some(self.spec(Some(&current)));
                // The resourceVersion in `lease` makes this a compare-and-swap. A conflict
                // is an error, not a loss: the next attempt reads who holds the lease now.
                Some(
                    self.api
                        .replace(&self.config.name, &PostParams::default(), &lease)
                        .await?,
                )
            }
        };
        Ok(match held {
            Some(lease) => {
                self.observe(&lease, Instant::now());
                self.guard.renewed(started, self.config.renew_deadline);
                true
            }
            None => false,
        })
    }

    /// One attempt with its own timeout.
    async fn attempt(&self) -> Result<bool, String> {
        let timeout = self.config.attempt_timeout();
        match tokio::time::timeout(timeout, self.try_acquire()).await {
            Ok(Ok(held)) => Ok(held),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&self) {
        loop {
            match self.attempt().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the lease every retry period until another replica holds it or no renewal
    /// succeeded within the renew deadline; then revokes the guard and returns, and the
    /// caller must stop.
    pub async fn hold(&self) {
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.attempt().await {
                Ok(true) => continue,
                Ok(false) => {
                    tracing::warn!("another replica holds the leader lease");
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "could not renew the leader lease"),
            }
            if !self.guard.holds() {
                tracing::warn!(
                    renew_deadline = ?self.config.renew_deadline,
                    "the leader lease was not renewed within the renew deadline"
                );
                break;
            }
        }
        self.guard.revoke();
    }

    /// Gives the lease up at shutdown so another replica takes over at once.
    pub async fn release(&self) {
        self.guard.revoke();
        let attempt = async {
            if let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await
                && let Some(spec) = lease.spec.as_mut()
                && spec.holder_identity.as_deref() == Some(&self.config.identity)
            {
                spec.holder_identity = None;
                spec.renew_time = None;
                let _ = self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await;
            }
        };
        let _ = tokio::time::timeout(self.config.attempt_timeout(), attempt).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    const S: Duration = Duration::from_secs(1);

    fn record(holder: Option<&str>, version: &str) -> LeaseRecord {
        LeaseRecord {
            holder: holder.map(str::to_string),
            renew_time: Some(Timestamp::UNIX_EPOCH),
            resource_version: Some(version.into()),
            lease_duration: Some(15 * S),
        }
    }

    fn config(lease: u64, renew: u64, retry: u64) -> LeaseConfig {
        LeaseConfig {
            namespace: "ns".into(),
            name: "lease".into(),
            identity: "me".into(),
            lease_duration: Duration::from_millis(lease),
            renew_deadline: Duration::from_millis(renew),
            retry_period: Duration::from_millis(retry),
        }
    }

    #[test]
    fn nothing_observed_is_never_expired() {
        assert!(!Observer::default().expired(15 * S, Instant::now()));
    }

    #[test]
    fn an_unchanged_record_expires_a_lease_duration_after_it_was_first_seen() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        o.observe(record(Some("a"), "1"), t0);
        o.observe(record(Some("a"), "1"), t0 + 10 * S);
        assert!(!o.expired(15 * S, t0 + 14 * S));
        assert!(o.expired(15 * S, t0 + 15 * S));
    }

    #[test]
    fn any_change_of_the_record_restarts_the_clock() {
        let t0 = Instant::now();
        let changes = [
            record(Some("a"), "2"),
            record(Some("b"), "1"),
            LeaseRecord {
                renew_time: Some(Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1)),
                ..record(Some("a"), "1")
            },
        ];
        for changed in changes {
            let mut o = Observer::default();
            o.observe(record(Some("a"), "1"), t0);
            o.observe(changed.clone(), t0 + 14 * S);
            assert!(!o.expired(15 * S, t0 + 20 * S), "{changed:?}");
            assert!(o.expired(15 * S, t0 + 29 * S), "{changed:?}");
        }
    }

    #[test]
    fn the_renew_time_is_never_compared_with_the_local_clock() {
        // A renewTime far in the past (a skewed or stopped clock elsewhere) does not make
        // the lease expired; only the time this replica has watched it unchanged does.
        let t0 = Instant::now();
        let mut o = Observer::default();
        let mut stale = record(Some("a"), "1");
        stale.renew_time = Some(Timestamp::UNIX_EPOCH);
        o.observe(stale, t0);
        assert!(!o.expired(15 * S, t0 + S));
    }

    #[test]
    fn the_longer_of_both_lease_durations_counts() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        o.observe(record(Some("a"), "1"), t0); // the holder wrote 15s
        assert!(!o.expired(5 * S, t0 + 10 * S));
        assert!(o.expired(5 * S, t0 + 15 * S));
        let mut short = record(Some("a"), "2");
        short.lease_duration = Some(S);
        o.observe(short, t0);
        assert!(!o.expired(5 * S, t0 + 4 * S));
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        o.observe(record(None, "3"), t0);
        assert!(o.expired(15 * S, t0));
    }

    #[test]
    fn the_guard_holds_for_the_renew_deadline_from_the_start_of_the_renewal() {
        let guard = LeaseGuard::new();
        let t0 = Instant::now();
        assert!(!guard.holds_at(t0));
        guard.renewed(t0, 10 * S);
        assert!(guard.holds_at(t0 + 9 * S));
        assert!(!guard.holds_at(t0 + 10 * S));
        // A renewal that started earlier and finished later does not shorten it.
        guard.renewed(t0 + 5 * S, 10 * S);
        guard.renewed(t0 + 2 * S, 10 * S);
        assert!(guard.holds_at(t0 + 14 * S));
        assert!(!guard.holds_at(t0 + 15 * S));
        let clone = guard.clone();
        guard.revoke();
        assert!(!clone.holds_at(t0 + S));
    }

    #[test]
    fn timings_must_leave_a_margin() {
        assert_eq!(config(15_000, 10_000, 2_000).validate(), Ok(()));
        let e = config(15_000, 15_000, 2_000).validate().unwrap_err();
        assert!(e.contains("--leader-election-renew-deadline (15s) must be shorter than --leader-election-lease-duration (15s)"), "{e}");
        let e = config(15_000, 10_000, 10_000).validate().unwrap_err();
        assert!(e.contains("--leader-election-retry-period (10s) must be shorter than --leader-election-renew-deadline (10s)"), "{e}");
        assert!(config(15_000, 10_000, 0).validate().is_err());
    }

    #[test]
    fn the_lease_duration_is_written_in_whole_seconds_rounded_up() {
        assert_eq!(config(15_000, 1, 1).lease_duration_seconds(), 15);
        assert_eq!(config(2_500, 1, 1).lease_duration_seconds(), 3);
        assert_eq!(config(200, 1, 1).lease_duration_seconds(), 1);
    }
}
