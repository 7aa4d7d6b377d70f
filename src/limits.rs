//! IAM's limits that admission cannot see, checked before IAM is called.
//!
//! The CRDs refuse at admission what an object alone shows (names, paths, tags, durations,
//! Secret names). What they cannot measure — the size of a policy document in IAM's
//! counting, the total of a user's or group's inline policies — is checked here, and so is
//! everything the schema checks for objects admitted before the schema had the rule. Every
//! function is pure and returns `Err` with a message that names the limit and what to change,
//! ready for a `Stalled` condition.

use crate::api::{
    AccessKeySpec, IAM_MAX_TAGS, IamUser, MAX_SPEC_TAGS, OWNER_TAG, RESERVED_TAG_PREFIX,
    TAG_KEY_MAX, TAG_VALUE_MAX, Tags,
};
use serde_json::Value;
use std::time::Duration;

/// Characters of one managed policy's document.
pub const MANAGED_POLICY_MAX_CHARS: usize = 6_144;
/// Characters of all of a user's inline policy documents together.
pub const USER_INLINE_POLICIES_MAX_CHARS: usize = 2_048;
/// Characters of all of a group's inline policy documents together.
pub const GROUP_INLINE_POLICIES_MAX_CHARS: usize = 5_120;
/// Characters of all of a role's inline policy documents together.
pub const ROLE_INLINE_POLICIES_MAX_CHARS: usize = 10_240;

/// Shortest `rotateAfter`.
pub const MIN_ROTATE_AFTER: Duration = Duration::from_secs(3600);
/// Longest `gracePeriod` (30 days).
pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(720 * 3600);
/// `gracePeriod` when the spec leaves it unset.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// The kind of IAM identity whose inline policies are counted together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InlineOwner {
    User,
    Group,
    Role,
}

impl InlineOwner {
    /// IAM's limit for the inline policies of one identity of this kind, together.
    pub fn limit(self) -> usize {
        match self {
            InlineOwner::User => USER_INLINE_POLICIES_MAX_CHARS,
            InlineOwner::Group => GROUP_INLINE_POLICIES_MAX_CHARS,
            InlineOwner::Role => ROLE_INLINE_POLICIES_MAX_CHARS,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            InlineOwner::User => "user",
            InlineOwner::Group => "group",
            InlineOwner::Role => "role",
        }
    }
}

/// The size of a policy document as IAM counts it: the characters of its compact JSON
/// rendering (the text the operator sends), so whitespace outside strings never counts and
/// whitespace inside strings does.
pub fn policy_size(doc: &Value) -> usize {
    crate::document::render(doc).chars().count()
}

/// A managed policy's document fits IAM's 6,144 characters and its character set.
pub fn check_managed_policy(doc: &Value) -> Result<(), String> {
    check_characters(doc, "the policy document")?;
    let size = policy_size(doc);
    if size > MANAGED_POLICY_MAX_CHARS {
        return Err(format!(
            "the policy document is {} characters; IAM allows at most {} for a managed policy \
             (whitespace outside strings not counted): shorten it or split it into several \
             IamPolicies",
            thousands(size),
            thousands(MANAGED_POLICY_MAX_CHARS)
        ));
    }
    Ok(())
}

/// The inline policies of one user, group or role (name, document) fit IAM's limit for
/// all of them together.
pub fn check_inline_policies<'a>(
    owner: InlineOwner,
    policies: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Result<(), String> {
    let mut total = 0;
    let mut sizes = Vec::new();
    for (name, doc) in policies {
        check_characters(doc, &format!("inline policy {name}"))?;
        let size = policy_size(doc);
        total += size;
        sizes.push(format!("{name}: {}", thousands(size)));
    }
    let limit = owner.limit();
    if total > limit {
        return Err(format!(
            "the inline policies of this {noun} total {} characters ({}); IAM allows at most {} \
             for all of a {noun}'s inline policies together (whitespace outside strings not \
             counted): move statements into an IamPolicy and attach it under spec.policies",
            thousands(total),
            sizes.join(", "),
            thousands(limit),
            noun = owner.noun(),
        ));
    }
    Ok(())
}

/// IAM accepts only tab, line feed, carriage return and U+0020-U+00FF in a document's text
/// (`policyDocumentType`).
fn check_characters(doc: &Value, what: &str) -> Result<(), String> {
    let text = crate::document::render(doc);
    match text
        .chars()
        .find(|c| !matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}'))
    {
        Some(c) => Err(format!(
            "{what} contains the character {c:?} (U+{:04X}); IAM accepts only tab, line feed, \
             carriage return and U+0020 to U+00FF in a policy document: remove or replace it",
            c as u32
        )),
        None => Ok(()),
    }
}

/// Whether `c` belongs to IAM's tag character class `[\p{L}\p{Z}\p{N}_.:/=+\-@]`.
///
/// `\p{N}` is exactly `char::is_numeric`, and `\p{Z}` exactly the whitespace that is not a
/// control character. `\p{L}` is approximated by `char::is_alphabetic`, which also admits the
/// few combining marks Unicode calls alphabetic (e.g. U+0903); the CRD holds the exact
/// pattern, so only objects admitted before it can differ there.
fn tag_char(c: char) -> bool {
    c.is_alphabetic()
        || c.is_numeric()
        || (c.is_whitespace() && !c.is_control())
        || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
}

/// A policy's `spec.tags` obey the rules the CRD states: at most 49 tags (IAM's 50 less
/// the owner tag), keys of 1-128 and values of at most 256 tag characters, no key starting
/// with `aws:` and none that is the owner tag's.
pub fn check_policy_tags(tags: &Tags) -> Result<(), String> {
    check_tags(tags)
}

/// A user's `spec.tags`: the rules of [`check_policy_tags`], and no two keys that differ
/// only in case (IAM compares a user's tag keys without regard to case).
pub fn check_user_tags(tags: &Tags) -> Result<(), String> {
    check_tags(tags)?;
    let mut seen: std::collections::BTreeMap<String, &str> = Default::default();
    for key in tags.keys() {
        if let Some(other) = seen.insert(key.to_lowercase(), key) {
            return Err(format!(
                "tag keys {other:?} and {key:?} differ only in case, and IAM treats a user's tag \
                 keys without regard to case: keep only one of them"
            ));
        }
    }
    Ok(())
}

fn check_tags(tags: &Tags) -> Result<(), String> {
    if tags.len() > MAX_SPEC_TAGS {
        return Err(format!(
            "spec.tags has {} tags; IAM allows {IAM_MAX_TAGS} and the operator needs one for its \
             own {OWNER_TAG} tag, so at most {MAX_SPEC_TAGS}: remove {}",
            tags.len(),
            tags.len() - MAX_SPEC_TAGS
        ));
    }
    for (key, value) in tags {
        let key_len = key.chars().count();
        if key_len == 0 || key_len > TAG_KEY_MAX {
            return Err(format!(
                "tag key {key:?} is {key_len} characters; IAM allows 1 to {TAG_KEY_MAX}: \
                 shorten or rename it"
            ));
        }
        if let Some(c) = key.chars().find(|c| !tag_char(*c)) {
            return Err(format!(
                "tag key {key:?} contains {c:?}; IAM allows only Unicode letters, digits, spaces \
                 and _ . : / = + - @ in tag keys: rename it"
            ));
        }
        if key
            .get(..RESERVED_TAG_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_TAG_PREFIX))
        {
            return Err(format!(
                "tag key {key:?} starts with {RESERVED_TAG_PREFIX}, which AWS reserves (in any \
                 case): rename it"
            ));
        }
        if key.eq_ignore_ascii_case(OWNER_TAG) {
            return Err(format!(
                "{OWNER_TAG} is the tag the operator sets itself to record ownership: remove it \
                 from spec.tags"
            ));
        }
        check_tag_value(key, value)?;
    }
    Ok(())
}

/// The operator's own owner tag value (`<cluster>/<namespace>/<name>`) is a valid IAM tag
/// value; a long cluster name, namespace and name together can exceed 256 characters.
pub fn check_owner_tag_value(value: &str) -> Result<(), String> {
    check_tag_value(OWNER_TAG, value).map_err(|e| {
        format!("{e} (the owner tag value is <cluster>/<namespace>/<name>: shorten --cluster-name or the object's name)")
    })
}

fn check_tag_value(key: &str, value: &str) -> Result<(), String> {
    let len = value.chars().count();
    if len > TAG_VALUE_MAX {
        return Err(format!(
            "the value of tag {key:?} is {len} characters; IAM allows at most {TAG_VALUE_MAX}: \
             shorten it"
        ));
    }
    if let Some(c) = value.chars().find(|c| !tag_char(*c)) {
        return Err(format!(
            "the value of tag {key:?} contains {c:?}; IAM allows only Unicode letters, digits, \
             spaces and _ . : / = + - @ in tag values: change it"
        ));
    }
    Ok(())
}

/// `rotateAfter` is at least an hour and longer than `gracePeriod`, which is at most 720h.
pub fn check_access_key_timing(spec: &AccessKeySpec) -> Result<(), String> {
    let grace = match &spec.grace_period {
        Some(text) => {
            let grace = parse_duration("gracePeriod", text)?;
            if grace > MAX_GRACE_PERIOD {
                return Err(format!(
                    "gracePeriod {text} is longer than the limit of 720h (30 days): shorten it"
                ));
            }
            grace
        }
        None => DEFAULT_GRACE_PERIOD,
    };
    if let Some(text) = &spec.rotate_after {
        let rotate = parse_duration("rotateAfter", text)?;
        if rotate < MIN_ROTATE_AFTER {
            return Err(format!(
                "rotateAfter {text} is shorter than the minimum of 1h: a shorter period replaces \
                 the key before its consumers can use it; raise it"
            ));
        }
        if rotate <= grace {
            return Err(format!(
                "rotateAfter {text} is not longer than gracePeriod ({}), so each rotation would \
                 cut the previous key's grace short: raise rotateAfter or lower gracePeriod",
                spec.grace_period.as_deref().unwrap_or("24h, the default")
            ));
        }
    }
    Ok(())
}

/// Parses a Go duration such as `24h`, `90m` or `1h30m`; the message names the field.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, String> {
    go_duration(text).ok_or_else(|| {
        format!("{field} {text:?} is not a duration like 24h, 90m or 1h30m: write it that way")
    })
}

/// Parses a Go duration as the CRD's pattern admits it (`([0-9]+(\.[0-9]+)?UNIT)+`, units
/// `ns us µs ms s m h`); `None` for anything else or anything beyond `u64` nanoseconds.
fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut nanos: u128 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_end);
        if int.is_empty() {
            return None;
        }
        let (frac, after) = match after.strip_prefix('.') {
            Some(f) => {
                let end = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
                if end == 0 {
                    return None;
                }
                f.split_at(end)
            }
            None => ("", after),
        };
        let (unit, after) = [
            ("ns", 1u128),
            ("us", 1_000),
            ("µs", 1_000),
            ("ms", 1_000_000),
            ("s", 1_000_000_000),
            ("m", 60_000_000_000),
            ("h", 3_600_000_000_000),
        ]
        .iter()
        .find_map(|(u, n)| after.strip_prefix(u).map(|a| (*n, a)))?;
        let whole: u128 = int.parse().ok()?;
        nanos = nanos.checked_add(whole.checked_mul(unit)?)?;
        let mut scale = unit;
        for d in frac.chars() {
            scale /= 10;
            nanos = nanos.checked_add(u128::from(d.to_digit(10)?) * scale)?;
        }
        rest = after;
    }
    u64::try_from(nanos).ok().map(Duration::from_nanos)
}

/// The access-key Secret and the console Secret of a user have different names.
pub fn check_secret_names(user: &IamUser) -> Result<(), String> {
    let name = user.metadata.name.as_deref().unwrap_or_default();
    let key = user
        .spec
        .access_key
        .as_ref()
        .and_then(|a| a.secret_name.clone())
        .unwrap_or_else(|| format!("{name}-aws-credentials"));
    let console = user
        .spec
        .console
        .as_ref()
        .and_then(|c| c.secret_name.clone())
        .unwrap_or_else(|| format!("{name}-console"));
    if key == console {
        return Err(format!(
            "the access-key Secret and the console Secret are both named {key}, so their writers \
             would overwrite each other: change spec.accessKey.secretName or \
             spec.console.secretName"
        ));
    }
    Ok(())
}

/// `6144` → `6,144`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A policy document whose compact rendering is exactly `size` characters.
    fn doc_of_size(size: usize) -> Value {
        let with = |pad: usize| {
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": format!("arn:aws:s3:::{}", "a".repeat(pad)),
                }],
            })
        };
        let base = policy_size(&with(0));
        assert!(size >= base, "smallest document is {base} characters");
        let doc = with(size - base);
        assert_eq!(policy_size(&doc), size);
        doc
    }

    #[test]
    fn size_counts_compact_characters_not_layout_whitespace() {
        let doc =
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Sid": "a b"}]});
        let pretty = serde_json::to_string_pretty(&doc).unwrap();
        let reparsed: Value = serde_json::from_str(&pretty).unwrap();
        assert_eq!(
            policy_size(&reparsed),
            r#"{"Statement":[{"Effect":"Allow","Sid":"a b"}],"Version":"2012-10-17"}"#.len()
        );
        // Characters, not bytes: é is one character in two bytes.
        assert_eq!(
            policy_size(&json!({"a": "é"})),
            r#"{"a":"é"}"#.chars().count()
        );
    }

    #[test]
    fn managed_policy_boundary_is_6144_characters() {
        assert!(check_managed_policy(&doc_of_size(6_144)).is_ok());
        let err = check_managed_policy(&doc_of_size(6_145)).unwrap_err();
        assert!(err.contains("6,145 characters"), "{err}");
        assert!(err.contains("at most 6,144 for a managed policy"), "{err}");
        let err = check_managed_policy(&doc_of_size(16_878)).unwrap_err();
        assert!(err.contains("16,878"), "{err}");
        let err = check_managed_policy(&doc_of_size(1_200_000)).unwrap_err();
        assert!(err.contains("1,200,000"), "{err}");
    }

    #[test]
    fn inline_aggregate_boundaries_per_identity() {
        for (owner, limit, noun) in [
            (InlineOwner::User, 2_048, "user"),
            (InlineOwner::Group, 5_120, "group"),
            (InlineOwner::Role, 10_240, "role"),
        ] {
            let a = doc_of_size(200);
            let at = doc_of_size(limit - 200);
            let over = doc_of_size(limit - 199);
            assert!(check_inline_policies(owner, [("a", &a), ("b", &at)]).is_ok());
            let err = check_inline_policies(owner, [("a", &a), ("b", &over)]).unwrap_err();
            assert!(
                err.contains(&format!("total {} characters", thousands(limit + 1))),
                "{err}"
            );
            assert!(
                err.contains(&format!("a: 200, b: {}", thousands(limit - 199))),
                "{err}"
            );
            assert!(
                err.contains(&format!(
                    "at most {} for all of a {noun}'s",
                    thousands(limit)
                )),
                "{err}"
            );
            // One document alone over the limit fails as well.
            assert!(check_inline_policies(owner, [("big", &doc_of_size(limit + 1))]).is_err());
            assert!(check_inline_policies(owner, std::iter::empty()).is_ok());
        }
    }

    #[test]
    fn documents_outside_latin1_are_refused() {
        assert!(check_managed_policy(&json!({"Sid": "ÿ"})).is_ok());
        let err = check_managed_policy(&json!({"Sid": "Ā"})).unwrap_err();
        assert!(err.contains("U+0100"), "{err}");
        let err =
            check_inline_policies(InlineOwner::User, [("p", &json!({"Sid": "中"}))]).unwrap_err();
        assert!(
            err.contains("inline policy p") && err.contains("U+4E2D"),
            "{err}"
        );
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tag_count_boundary_is_49() {
        let many = |n: usize| -> Tags { (0..n).map(|i| (format!("k{i}"), "v".into())).collect() };
        assert!(check_policy_tags(&many(49)).is_ok());
        assert!(check_user_tags(&many(49)).is_ok());
        let err = check_user_tags(&many(50)).unwrap_err();
        assert!(
            err.contains("50 tags") && err.contains("at most 49"),
            "{err}"
        );
        let err = check_policy_tags(&many(52)).unwrap_err();
        assert!(err.contains("remove 3"), "{err}");
    }

    #[test]
    fn tag_key_and_value_lengths() {
        let k128 = "k".repeat(128);
        let v256 = "v".repeat(256);
        assert!(check_policy_tags(&tags(&[(&k128, &v256), ("empty", "")])).is_ok());
        let err = check_policy_tags(&tags(&[(&"k".repeat(129), "v")])).unwrap_err();
        assert!(
            err.contains("129 characters") && err.contains("1 to 128"),
            "{err}"
        );
        assert!(check_policy_tags(&tags(&[("", "v")])).is_err());
        let err = check_policy_tags(&tags(&[("k", &"v".repeat(257))])).unwrap_err();
        assert!(
            err.contains("257 characters") && err.contains("at most 256"),
            "{err}"
        );
        // Characters, not bytes.
        assert!(check_policy_tags(&tags(&[(&"é".repeat(128), &"é".repeat(256))])).is_ok());
    }

    #[test]
    fn tag_characters_follow_iams_pattern() {
        let ok = tags(&[
            ("Cost Center_1.a:b/c=d+e-f@g", "Ünïcödé 中文 ٣ x\u{3000}y"),
            ("n", ""),
        ]);
        assert!(check_policy_tags(&ok).is_ok());
        for (k, v) in [
            ("a*b", "v"),
            ("a", "v!"),
            ("tab\there", "v"),
            ("k", "line\nbreak"),
            ("k", "a,b"),
        ] {
            assert!(check_policy_tags(&tags(&[(k, v)])).is_err(), "{k:?}={v:?}");
        }
    }

    #[test]
    fn reserved_and_owner_keys_are_refused() {
        for key in ["aws:cloudformation", "AWS:x", "Aws:"] {
            let err = check_policy_tags(&tags(&[(key, "v")])).unwrap_err();
            assert!(err.contains("reserves"), "{err}");
        }
        assert!(check_policy_tags(&tags(&[("aws", "v"), ("x-aws:y", "v")])).is_ok());
        for key in [OWNER_TAG, "IAM.kubeop.dev/Owner"] {
            let err = check_user_tags(&tags(&[(key, "c/ns/n")])).unwrap_err();
            assert!(err.contains("remove it from spec.tags"), "{err}");
        }
    }

    #[test]
    fn user_tag_keys_must_differ_in_more_than_case() {
        let both = tags(&[("Team", "a"), ("team", "b")]);
        assert!(check_policy_tags(&both).is_ok());
        let err = check_user_tags(&both).unwrap_err();
        assert!(err.contains("differ only in case"), "{err}");
    }

    #[test]
    fn owner_tag_value_boundary() {
        assert!(check_owner_tag_value(&format!("c/ns/{}", "n".repeat(251))).is_ok());
        let err = check_owner_tag_value(&format!("c/ns/{}", "n".repeat(252))).unwrap_err();
        assert!(
            err.contains("257 characters") && err.contains("--cluster-name"),
            "{err}"
        );
    }

    fn key_spec(rotate: Option<&str>, grace: Option<&str>) -> AccessKeySpec {
        AccessKeySpec {
            enabled: true,
            secret_name: None,
            rotate_after: rotate.map(Into::into),
            grace_period: grace.map(Into::into),
        }
    }

    #[test]
    fn rotation_boundaries() {
        let check = |r, g| check_access_key_timing(&key_spec(r, g));
        assert!(check(None, None).is_ok());
        assert!(check(None, Some("720h")).is_ok());
        let err = check(None, Some("720h1s")).unwrap_err();
        assert!(err.contains("720h"), "{err}");
        assert!(check(Some("1h"), Some("59m59s")).is_ok());
        let err = check(Some("59m59s"), Some("0s")).unwrap_err();
        assert!(err.contains("minimum of 1h"), "{err}");
        let err = check(Some("0s"), None).unwrap_err();
        assert!(err.contains("minimum of 1h"), "{err}");
        // Default grace is 24h: rotateAfter must exceed it.
        let err = check(Some("24h"), None).unwrap_err();
        assert!(err.contains("24h, the default"), "{err}");
        assert!(check(Some("24h1s"), None).is_ok());
        let err = check(Some("2h"), Some("2h")).unwrap_err();
        assert!(err.contains("not longer than gracePeriod (2h)"), "{err}");
        assert!(check(Some("2h"), Some("1h59m")).is_ok());
        assert!(check(Some("soon"), None).is_err());
        assert!(check(Some("99999999999999999999h"), None).is_err());
    }

    #[test]
    fn go_durations_parse_like_go() {
        let d = |s| go_duration(s).map(|d| d.as_nanos());
        assert_eq!(d("1h30m"), Some(5_400_000_000_000));
        assert_eq!(d("1.5h"), Some(5_400_000_000_000));
        assert_eq!(d("2160h"), Some(2160 * 3_600_000_000_000));
        assert_eq!(d("10µs"), Some(10_000));
        assert_eq!(d("10us5ns"), Some(10_005));
        assert_eq!(d("0s"), Some(0));
        for bad in ["", "1", "h", "1.h", "-1h", "1d", "1h ", "1.5"] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }

    fn user(name: &str, key: Option<&str>, console: Option<&str>) -> IamUser {
        let mut spec: crate::api::IamUserSpec = serde_json::from_value(json!({})).unwrap();
        spec.access_key = Some(AccessKeySpec {
            secret_name: key.map(Into::into),
            ..key_spec(None, None)
        });
        spec.console = Some(crate::api::ConsoleSpec {
            enabled: true,
            secret_name: console.map(Into::into),
            password_reset_required: None,
            initial_password_secret_ref: None,
        });
        IamUser::new(name, spec)
    }

    #[test]
    fn secret_names_must_differ() {
        assert!(check_secret_names(&user("u", None, None)).is_ok());
        assert!(check_secret_names(&user("u", Some("same"), Some("other"))).is_ok());
        let err = check_secret_names(&user("u", Some("same"), Some("same"))).unwrap_err();
        assert!(err.contains("both named same"), "{err}");
        assert!(check_secret_names(&user("u", None, Some("u-aws-credentials"))).is_err());
        assert!(check_secret_names(&user("u", Some("u-console"), None)).is_err());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(6_144), "6,144");
        assert_eq!(thousands(1_200_000), "1,200,000");
    }
}
