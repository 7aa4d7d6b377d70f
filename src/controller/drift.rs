//! The drift scan: one account-wide read of IAM per interval (a few paged
//! `GetAccountAuthorizationDetails` calls) instead of several reads per object. An entity
//! whose reported state changed since the previous pass wakes the resource that manages
//! it, whose reconcile then reads and repairs it in detail.
//!
//! What the authorization details do not show — access keys and login profiles — is left
//! to the per-object resync (`--resync-interval`): the credential report would show keys
//! too, but real IAM regenerates it at most every four hours, so a key deleted out of band
//! would be noticed no sooner than with an hourly resync, and less predictably.
//!
//! The operator's own writes are not drift. Every IAM call the operator makes updates
//! [`Known`]: what it last read or wrote of each user, group and policy. An entity whose
//! reported state equals what the operator knows is not woken, even if it changed since
//! the previous pass (the operator changed it, and saw the result). The comparison is with
//! the content, not with times: an out-of-band change made after the operator's last
//! read or write of that entity — during its reconcile, right after it, at any time before
//! the pass — makes the reported state differ from what the operator knows, and wakes
//! it. A change of which the operator knows nothing (after a restart, or after a failed
//! write whose effect is unknown) falls back to the comparison with the previous pass.
//! And a change undone out of band before the pass (the pass equals the previous one but
//! not what the operator just wrote) is drift too.

use crate::iam::AccountSnapshot;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Entities new, changed or gone between two passes.
#[derive(Debug, Default, PartialEq)]
pub struct Changed {
    pub users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    /// Policy ARNs.
    pub policies: BTreeSet<String>,
    /// Role names, lower-cased.
    pub roles: BTreeSet<String>,
}

impl Changed {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.groups.is_empty()
            && self.policies.is_empty()
            && self.roles.is_empty()
    }
}

/// What changed between two passes. User and group names are reported lower-cased: IAM
/// names are case-insensitive, so `Carol` in IAM is the entity of a resource naming `carol`.
pub fn changed(before: &AccountSnapshot, after: &AccountSnapshot) -> Changed {
    fn diff(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeSet<String> {
        a.keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect()
    }
    let lower = |names: BTreeSet<String>| names.into_iter().map(|n| n.to_lowercase()).collect();
    Changed {
        users: lower(diff(&before.users, &after.users)),
        groups: lower(diff(&before.groups, &after.groups)),
        policies: diff(&before.policies, &after.policies),
        roles: lower(diff(&before.roles, &after.roles)),
    }
}

/// The same hash the IAM port computes for the drift scan (`iam::aws`), over the same
/// shapes, so that what the operator knows can be compared with what a pass reports.
fn fingerprint(state: impl std::hash::Hash) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    state.hash(&mut h);
    h.finish()
}

fn strs(set: &BTreeSet<String>) -> Vec<&str> {
    set.iter().map(String::as_str).collect()
}

/// Inline policies by name, with their documents once read or written.
type Inline = BTreeMap<String, Option<String>>;

fn inline(policies: &Inline) -> Option<Vec<(Option<&str>, Option<&str>)>> {
    policies
        .iter()
        .map(|(name, doc)| doc.as_deref().map(|d| (Some(name.as_str()), Some(d))))
        .collect()
}

/// What the operator last read or wrote of one user; `None`: not known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KnownUser {
    pub path: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub boundary: Option<Option<String>>,
    pub groups: Option<BTreeSet<String>>,
    pub attached: Option<BTreeSet<String>>,
    pub inline: Option<Inline>,
}

impl KnownUser {
    /// A user just created: what the request set, and nothing attached yet.
    pub fn created(path: &str, tags: &BTreeMap<String, String>, boundary: Option<&str>) -> Self {
        Self {
            path: Some(path.to_string()),
            tags: Some(tags.clone()),
            boundary: Some(boundary.map(str::to_string)),
            groups: Some(BTreeSet::new()),
            attached: Some(BTreeSet::new()),
            inline: Some(BTreeMap::new()),
        }
    }

    /// The fingerprint a pass would report for this state, if every part is known.
    pub fn fingerprint(&self) -> Option<u64> {
        let tags = self.tags.as_ref()?;
        Some(fingerprint((
            Some(self.path.as_deref()?),
            strs(self.groups.as_ref()?),
            strs(self.attached.as_ref()?),
            inline(self.inline.as_ref()?)?,
            self.boundary.as_ref()?.as_deref(),
            tags.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        )))
    }
}

/// What the operator last read or wrote of one group (memberships are the users' part).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KnownGroup {
    pub path: Option<String>,
    pub attached: Option<BTreeSet<String>>,
    pub inline: Option<Inline>,
}

impl KnownGroup {
    pub fn created(path: &str) -> Self {
        Self {
            path: Some(path.to_string()),
            attached: Some(BTreeSet::new()),
            inline: Some(BTreeMap::new()),
        }
    }

    pub fn fingerprint(&self) -> Option<u64> {
        Some(fingerprint((
            Some(self.path.as_deref()?),
            strs(self.attached.as_ref()?),
            inline(self.inline.as_ref()?)?,
        )))
    }
}

/// What the operator last read or wrote of one customer-managed policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KnownPolicy {
    pub default_version: Option<String>,
    /// The document of `default_version`.
    pub document: Option<String>,
}

impl KnownPolicy {
    pub fn fingerprint(&self) -> Option<u64> {
        Some(fingerprint((
            Some(self.default_version.as_deref()?),
            Some(self.document.as_deref()?),
        )))
    }
}

/// What the operator last read or wrote of one role: what the authorization details
/// report of it (description and session length are not among them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KnownRole {
    pub path: Option<String>,
    /// The trust policy, as JSON text.
    pub trust: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub boundary: Option<Option<String>>,
    pub attached: Option<BTreeSet<String>>,
    pub inline: Option<Inline>,
    /// Names of the instance profiles the role is in.
    pub profiles: Option<BTreeSet<String>>,
}

impl KnownRole {
    /// A role just created: what the request set, and nothing attached yet.
    pub fn created(
        path: &str,
        trust: &str,
        tags: &BTreeMap<String, String>,
        boundary: Option<&str>,
    ) -> Self {
        Self {
            path: Some(path.to_string()),
            trust: Some(trust.to_string()),
            tags: Some(tags.clone()),
            boundary: Some(boundary.map(str::to_string)),
            attached: Some(BTreeSet::new()),
            inline: Some(BTreeMap::new()),
            profiles: Some(BTreeSet::new()),
        }
    }

    /// The fingerprint a pass would report for this state (`iam::aws`), if every part is
    /// known.
    pub fn fingerprint(&self) -> Option<u64> {
        let tags = self.tags.as_ref()?;
        Some(fingerprint((
            Some(self.path.as_deref()?),
            Some(self.trust.as_deref()?),
            strs(self.attached.as_ref()?),
            inline(self.inline.as_ref()?)?,
            self.boundary.as_ref()?.as_deref(),
            tags.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
            strs(self.profiles.as_ref()?),
        )))
    }
}

/// One entity's state as the operator knows it (`None`: the operator deleted it, or read
/// that it does not exist), and when the operator last changed it in IAM.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<T> {
    pub state: Option<T>,
    pub written: Option<Instant>,
}

/// What the operator knows of IAM, from its own reads and writes. Users and groups by
/// lower-cased name (IAM names are case-insensitive), policies by ARN. An entity is left
/// out when nothing is known of it, or when a write to it failed (it may or may not have
/// taken effect).
#[derive(Debug, Default)]
pub struct Known {
    pub users: BTreeMap<String, Entry<KnownUser>>,
    pub groups: BTreeMap<String, Entry<KnownGroup>>,
    pub policies: BTreeMap<String, Entry<KnownPolicy>>,
    /// By lower-cased role name.
    pub roles: BTreeMap<String, Entry<KnownRole>>,
}

fn entry<'a, T>(map: &'a mut BTreeMap<String, Entry<T>>, key: &str) -> &'a mut Entry<T> {
    map.entry(key.to_string()).or_insert(Entry {
        state: None,
        written: None,
    })
}

/// The entity's known state, which exists (something is read of it or written to it).
fn present<T: Default>(e: &mut Entry<T>) -> &mut T {
    e.state.get_or_insert_with(T::default)
}

impl Known {
    /// Updates what is known of user `name` with `f`.
    pub fn user(&mut self, name: &str, f: impl FnOnce(&mut KnownUser)) {
        f(present(entry(&mut self.users, &name.to_lowercase())))
    }
    pub fn group(&mut self, name: &str, f: impl FnOnce(&mut KnownGroup)) {
        f(present(entry(&mut self.groups, &name.to_lowercase())))
    }
    pub fn policy(&mut self, arn: &str, f: impl FnOnce(&mut KnownPolicy)) {
        f(present(entry(&mut self.policies, arn)))
    }
    /// The operator changed it (call after the write succeeded, and after `user`/...).
    pub fn wrote_user(&mut self, name: &str, at: Instant) {
        entry(&mut self.users, &name.to_lowercase()).written = Some(at);
    }
    pub fn wrote_group(&mut self, name: &str, at: Instant) {
        entry(&mut self.groups, &name.to_lowercase()).written = Some(at);
    }
    pub fn wrote_policy(&mut self, arn: &str, at: Instant) {
        entry(&mut self.policies, arn).written = Some(at);
    }
    /// The operator deleted it, or read that it does not exist.
    pub fn user_gone(&mut self, name: &str, at: Option<Instant>) {
        let e = entry(&mut self.users, &name.to_lowercase());
        e.state = None;
        e.written = at.or(e.written);
    }
    pub fn group_gone(&mut self, name: &str, at: Option<Instant>) {
        let e = entry(&mut self.groups, &name.to_lowercase());
        e.state = None;
        e.written = at.or(e.written);
    }
    pub fn policy_gone(&mut self, arn: &str, at: Option<Instant>) {
        let e = entry(&mut self.policies, arn);
        e.state = None;
        e.written = at.or(e.written);
    }
    pub fn role(&mut self, name: &str, f: impl FnOnce(&mut KnownRole)) {
        f(present(entry(&mut self.roles, &name.to_lowercase())))
    }
    pub fn wrote_role(&mut self, name: &str, at: Instant) {
        entry(&mut self.roles, &name.to_lowercase()).written = Some(at);
    }
    pub fn role_gone(&mut self, name: &str, at: Option<Instant>) {
        let e = entry(&mut self.roles, &name.to_lowercase());
        e.state = None;
        e.written = at.or(e.written);
    }
    pub fn forget_role(&mut self, name: &str) {
        self.roles.remove(&name.to_lowercase());
    }
    /// A write whose effect is unknown (it failed): nothing is known of the entity.
    pub fn forget_user(&mut self, name: &str) {
        self.users.remove(&name.to_lowercase());
    }
    pub fn forget_group(&mut self, name: &str) {
        self.groups.remove(&name.to_lowercase());
    }
    pub fn forget_policy(&mut self, arn: &str) {
        self.policies.remove(arn);
    }
}

/// Whether a pass's report of one entity is drift. `before`/`after`: the previous and this
/// pass's fingerprints (`None`: not reported); `known`: what the operator knows, if
/// anything; `previous_pass`: when the previous pass started.
///
/// - The report equals what the operator last read or wrote: not drift, whoever made the
///   change (the operator saw that state, so a reconcile acts on it or already has).
/// - Otherwise it is drift if it changed since the previous pass, or if the operator wrote
///   the entity since the previous pass started (that pass may predate the write, so an
///   out-of-band change undoing it leaves the two passes equal).
/// - Written by the operator since this pass started (`this_pass`): this pass may not show
///   the write, so it is judged by the next pass (for which it is written since the
///   previous pass), against the then known state.
fn drift<T>(
    before: Option<u64>,
    after: Option<u64>,
    known: Option<&Entry<T>>,
    fingerprint: impl Fn(&T) -> Option<u64>,
    (previous_pass, this_pass): (Instant, Instant),
) -> Option<Why> {
    let written_at = known.and_then(|e| e.written);
    if written_at.is_some_and(|w| w >= this_pass) {
        return None;
    }
    let expected = known.map(|e| match &e.state {
        Some(t) => fingerprint(t).map(Some),
        None => Some(None),
    });
    if let Some(Some(expected)) = expected
        && expected == after
    {
        return None;
    }
    let written = written_at.is_some_and(|w| w >= previous_pass);
    if before == after && !written {
        return None;
    }
    Some(match expected {
        None => Why::Unknown,
        Some(None) => Why::Incomplete,
        Some(Some(_)) if before != after => Why::Changed,
        Some(Some(_)) => Why::Undone,
    })
}

/// Why a pass found an entity drifted, for the log (so that a pass that wakes more than an
/// out-of-band change explains itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// Nothing known of it (never read or written since the start, or a write failed and
    /// its effect is unknown), and it changed since the previous pass.
    Unknown,
    /// Part of its state unknown (e.g. an inline document never read), and it changed since
    /// the previous pass or the operator wrote it since then.
    Incomplete,
    /// Differs from what the operator last read or wrote, and changed since the previous pass.
    Changed,
    /// Differs from what the operator wrote since the previous pass, which it equals: an
    /// out-of-band change undid the operator's write.
    Undone,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Unknown => "unknown to the operator, changed since the previous pass",
            Why::Incomplete => {
                "partly unknown to the operator, changed or written since the previous pass"
            }
            Why::Changed => "differs from what the operator last read or wrote",
            Why::Undone => "a write of the operator undone out of band",
        }
    }
}

/// Logs what a pass woke and why: one line per kind and reason, with up to 10 names.
fn log_woken(kind: &str, woken: &BTreeMap<String, Why>) {
    let mut by_why: BTreeMap<Why, Vec<&str>> = BTreeMap::new();
    for (name, why) in woken {
        by_why.entry(*why).or_default().push(name);
    }
    for (why, names) in by_why {
        let shown: Vec<&str> = names.iter().take(10).copied().collect();
        tracing::info!(
            kind,
            count = names.len(),
            why = why.as_str(),
            names = ?shown,
            "drift scan: woken"
        );
    }
}

/// What a pass reports as drift, given the previous pass, what the operator knows, and when
/// the previous pass and this one started. User and group names are reported lower-cased: IAM names are
/// case-insensitive, so `Carol` in IAM is the entity of a resource naming `carol`.
pub fn drifted(
    before: &AccountSnapshot,
    after: &AccountSnapshot,
    known: &Known,
    passes: (Instant, Instant),
) -> Changed {
    fn pass<T>(
        a: &BTreeMap<String, u64>,
        b: &BTreeMap<String, u64>,
        known: &BTreeMap<String, Entry<T>>,
        fingerprint: impl Fn(&T) -> Option<u64> + Copy,
        lower: bool,
        passes: (Instant, Instant),
    ) -> BTreeMap<String, Why> {
        let norm = |k: &String| if lower { k.to_lowercase() } else { k.clone() };
        // Fingerprints by normalised key (IAM keeps one entity per case-insensitive name).
        let a: BTreeMap<String, u64> = a.iter().map(|(k, v)| (norm(k), *v)).collect();
        let b: BTreeMap<String, u64> = b.iter().map(|(k, v)| (norm(k), *v)).collect();
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).chain(known.keys()).collect();
        keys.into_iter()
            .filter_map(|k| {
                drift(
                    a.get(k).copied(),
                    b.get(k).copied(),
                    known.get(k),
                    fingerprint,
                    passes,
                )
                .map(|why| (k.clone(), why))
            })
            .collect()
    }
    let users = pass(
        &before.users,
        &after.users,
        &known.users,
        KnownUser::fingerprint,
        true,
        passes,
    );
    let groups = pass(
        &before.groups,
        &after.groups,
        &known.groups,
        KnownGroup::fingerprint,
        true,
        passes,
    );
    let policies = pass(
        &before.policies,
        &after.policies,
        &known.policies,
        KnownPolicy::fingerprint,
        false,
        passes,
    );
    let roles = pass(
        &before.roles,
        &after.roles,
        &known.roles,
        KnownRole::fingerprint,
        true,
        passes,
    );
    // One line per pass, so that the passes can be counted and read in the log.
    tracing::info!(
        users = after.users.len(),
        groups = after.groups.len(),
        policies = after.policies.len(),
        roles = after.roles.len(),
        woken = users.len() + groups.len() + policies.len() + roles.len(),
        "drift scan: pass compared"
    );
    log_woken("user", &users);
    log_woken("group", &groups);
    log_woken("policy", &policies);
    log_woken("role", &roles);
    Changed {
        users: users.into_keys().collect(),
        groups: groups.into_keys().collect(),
        policies: policies.into_keys().collect(),
        roles: roles.into_keys().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(users: &[(&str, u64)], groups: &[(&str, u64)]) -> AccountSnapshot {
        let map = |v: &[(&str, u64)]| v.iter().map(|(k, f)| (k.to_string(), *f)).collect();
        AccountSnapshot {
            users: map(users),
            groups: map(groups),
            ..AccountSnapshot::default()
        }
    }

    #[test]
    fn changed_new_and_gone_entities_are_reported_unchanged_ones_not() {
        let before = snapshot(&[("alice", 1), ("bob", 2), ("gone", 3)], &[("devs", 7)]);
        let after = snapshot(&[("alice", 1), ("bob", 5), ("new", 4)], &[("devs", 7)]);
        let c = changed(&before, &after);
        assert_eq!(
            c.users,
            ["bob", "gone", "new"]
                .map(String::from)
                .into_iter()
                .collect()
        );
        assert!(c.groups.is_empty() && c.policies.is_empty());
        assert!(changed(&after, &after).is_empty());
        let c = changed(
            &snapshot(&[("Carol", 1)], &[]),
            &snapshot(&[("Carol", 2)], &[]),
        );
        assert!(
            c.users.contains("carol"),
            "names are matched case-insensitively"
        );
    }

    fn user(groups: &[&str], tags: &[(&str, &str)]) -> KnownUser {
        let tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut u = KnownUser::created("/", &tags, None);
        u.groups = Some(groups.iter().map(|g| g.to_string()).collect());
        u
    }

    fn fp(u: &KnownUser) -> u64 {
        u.fingerprint().unwrap()
    }

    /// Passes two seconds apart, and the instants of the first, of a write between them,
    /// and of the second.
    fn times() -> (Instant, Instant, Instant) {
        let first = Instant::now();
        let write = first + std::time::Duration::from_secs(1);
        (first, write, first + std::time::Duration::from_secs(2))
    }

    #[test]
    fn the_operators_own_writes_are_not_drift_but_changes_after_them_are() {
        let (first, write, second) = times();
        let mut known = Known::default();
        let mut after = AccountSnapshot::default();
        // 1000 users the operator created and put in a group between the two passes.
        for i in 0..1000 {
            let name = format!("u{i}");
            known.user(&name, |u| *u = user(&["devs"], &[("team", "bench")]));
            known.wrote_user(&name, write);
            after
                .users
                .insert(name.clone(), fp(&user(&["devs"], &[("team", "bench")])));
        }
        let before = AccountSnapshot::default();
        assert!(drifted(&before, &after, &known, (first, second)).is_empty());

        // Out of band, after the operator's last write and before the pass: a tag, a
        // group, and a user deleted; each differs from what the operator knows.
        after
            .users
            .insert("u1".into(), fp(&user(&["devs"], &[("team", "other")])));
        after.users.insert(
            "u2".into(),
            fp(&user(&["devs", "admins"], &[("team", "bench")])),
        );
        after.users.remove("u3");
        let c = drifted(&before, &after, &known, (first, second));
        assert_eq!(
            c.users,
            ["u1", "u2", "u3"].map(String::from).into_iter().collect()
        );

        // Undone out of band before the pass: the two passes agree, the operator's write
        // does not show.
        let before = after.clone();
        let mut known = Known::default();
        known.user("u4", |u| *u = user(&["devs"], &[("team", "new")]));
        known.wrote_user("u4", write);
        let c = drifted(&before, &after, &known, (first, second));
        assert_eq!(c.users, ["u4"].map(String::from).into_iter().collect());
    }

    #[test]
    fn a_write_after_the_pass_started_is_judged_by_the_next_pass() {
        let (first, _, second) = times();
        let late = second + std::time::Duration::from_millis(500);
        let third = second + std::time::Duration::from_secs(10);
        let old = user(&[], &[]);
        let new = user(&["devs"], &[]);
        let mut known = Known::default();
        known.user("u", |u| *u = new.clone());
        known.wrote_user("u", late);
        let mut s1 = AccountSnapshot::default();
        s1.users.insert("u".into(), fp(&old));
        // The second pass does not show the write yet, and an out-of-band tag.
        let mut s2 = s1.clone();
        s2.users.insert("u".into(), fp(&user(&[], &[("x", "y")])));
        assert!(drifted(&s1, &s2, &known, (first, second)).is_empty());
        // The third pass shows the write and the tag: drift, although it equals neither.
        let mut s3 = s2.clone();
        s3.users
            .insert("u".into(), fp(&user(&["devs"], &[("x", "y")])));
        let c = drifted(&s2, &s3, &known, (second, third));
        assert!(c.users.contains("u"));
        // Without the tag, the third pass shows just the write: not drift.
        s3.users.insert("u".into(), fp(&new));
        assert!(drifted(&s2, &s3, &known, (second, third)).is_empty());
    }

    #[test]
    fn the_operators_own_role_writes_are_not_drift_but_changes_after_them_are() {
        let (first, write, second) = times();
        let tags = BTreeMap::from([("team".to_string(), "a".to_string())]);
        let mut role = KnownRole::created("/", "{\"Statement\":[]}", &tags, None);
        role.attached = Some(["arn:p".to_string()].into_iter().collect());
        let mut known = Known::default();
        known.role("App", |r| *r = role.clone());
        known.wrote_role("App", write);
        let before = AccountSnapshot::default();
        let mut after = AccountSnapshot::default();
        after
            .roles
            .insert("App".into(), role.fingerprint().unwrap());
        assert!(drifted(&before, &after, &known, (first, second)).is_empty());
        // Detached out of band after the operator's write.
        let mut detached = role.clone();
        detached.attached = Some(BTreeSet::new());
        after
            .roles
            .insert("App".into(), detached.fingerprint().unwrap());
        let c = drifted(&before, &after, &known, (first, second));
        assert_eq!(c.roles, ["app"].map(String::from).into_iter().collect());
        // A part not known (the profiles never listed): the passes decide.
        let mut partial = role.clone();
        partial.profiles = None;
        assert!(partial.fingerprint().is_none());
    }

    #[test]
    fn roles_are_compared_between_passes_case_insensitively() {
        let (first, _, second) = times();
        let mut s1 = AccountSnapshot::default();
        s1.roles.insert("App".into(), 1);
        s1.roles.insert("same".into(), 2);
        let mut s2 = s1.clone();
        s2.roles.insert("App".into(), 3);
        s2.roles.insert("new".into(), 4);
        let c = drifted(&s1, &s2, &Known::default(), (first, second));
        assert_eq!(
            c.roles,
            ["app", "new"].map(String::from).into_iter().collect()
        );
        assert!(!c.is_empty() && c.users.is_empty());
        assert_eq!(changed(&s1, &s2).roles, c.roles);
        assert!(drifted(&s2, &s2, &Known::default(), (first, second)).is_empty());
    }

    #[test]
    fn a_pass_says_why_it_woke_an_entity() {
        let (first, write, second) = times();
        let fp_of = |u: &KnownUser| u.fingerprint();
        let state = user(&["devs"], &[]);
        let entry = |s: KnownUser, w: Option<Instant>| Entry {
            state: Some(s),
            written: w,
        };
        let passes = (first, second);
        // Nothing known, changed between the passes.
        assert_eq!(
            drift::<KnownUser>(Some(1), Some(2), None, fp_of, passes),
            Some(Why::Unknown)
        );
        // Known, but not every part of it.
        let mut partial = state.clone();
        partial.attached = None;
        assert_eq!(
            drift(Some(1), Some(2), Some(&entry(partial, None)), fp_of, passes),
            Some(Why::Incomplete)
        );
        // Known in full and different from what the pass reports, which changed.
        let known = entry(state.clone(), None);
        assert_eq!(
            drift(Some(1), Some(2), Some(&known), fp_of, passes),
            Some(Why::Changed)
        );
        // The operator's write undone: the passes agree, what it wrote differs.
        let written = entry(state.clone(), Some(write));
        assert_eq!(
            drift(Some(1), Some(1), Some(&written), fp_of, passes),
            Some(Why::Undone)
        );
        // Equal to what is known: not drift, whatever the previous pass said.
        assert_eq!(
            drift(Some(1), Some(fp(&state)), Some(&written), fp_of, passes),
            None
        );
    }

    #[test]
    fn without_knowledge_the_passes_are_compared() {
        let (first, write, second) = times();
        let mut s1 = AccountSnapshot::default();
        s1.users.insert("Carol".into(), 1);
        s1.groups.insert("devs".into(), 2);
        let mut s2 = s1.clone();
        s2.users.insert("Carol".into(), 3);
        let mut known = Known::default();
        let c = drifted(&s1, &s2, &known, (first, second));
        assert!(c.users.contains("carol") && c.groups.is_empty());
        // A known state that lacks a part (here the inline documents) decides nothing.
        known.user("carol", |u| {
            *u = user(&[], &[]);
            u.inline = Some([("p".to_string(), None)].into_iter().collect());
        });
        known.wrote_user("carol", write);
        assert!(
            drifted(&s1, &s2, &known, (first, second))
                .users
                .contains("carol")
        );
        // A failed write forgets the entity.
        known.forget_user("Carol");
        assert!(known.users.is_empty());
        // Deleted by the operator and gone from the pass: not drift; still listed: drift.
        known.user_gone("carol", Some(write));
        let mut s3 = s2.clone();
        s3.users.remove("Carol");
        assert!(drifted(&s2, &s3, &known, (first, second)).is_empty());
        assert!(
            drifted(&s1, &s2, &known, (first, second))
                .users
                .contains("carol")
        );
    }
}
