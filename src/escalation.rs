//! Privilege-escalation screening of tenant policy documents.
//!
//! The operator acts with IAM administrator power on behalf of tenants, so a tenant must not
//! be able to write a policy that lets its principals widen their own (or anyone's)
//! permissions. [`screen`] reads a policy document and reports every statement that grants a
//! screened action (by default [`DEFAULT_ESCALATION_ACTIONS`]) on a resource broad enough to
//! reach IAM; [`describe`] turns the findings into one line for a `Stalled` condition. Both are
//! pure.
//!
//! The rules follow IAM's policy evaluation, erring towards a finding when in doubt:
//!
//! - Only `Allow` statements grant. A statement whose `Effect` is `Deny` (in any case) is
//!   skipped; any other or missing `Effect` is screened as if it were `Allow`.
//! - `Statement` may be one object or a list; `Action`, `NotAction`, `Resource` and
//!   `NotResource` may each be a string or a list of strings.
//! - Actions are IAM wildcard patterns (`*` any run of characters, `?` one character),
//!   compared case-insensitively. A granted pattern hits a screened pattern when some action
//!   name matches both (`iam:Put*` hits `iam:PutUserPolicy`, `iam:C*` hits `iam:Create*`,
//!   `*` hits everything).
//! - `NotAction` in an `Allow` grants every action except those listed. It hits a screened
//!   pattern unless one listed pattern contains the whole screened pattern
//!   (`NotAction: ["iam:*", "sts:*"]` excludes every default; `["s3:*"]` excludes none).
//!   Containment is decided per listed pattern, so an exclusion split over several patterns
//!   (`iam:CreateA*` plus `iam:CreateB*` …) does not count: the screen may over-report, never
//!   under-report.
//! - Resources. A resource pattern *reaches IAM* unless it provably names no IAM or STS ARN:
//!   its `arn` prefix and partition are free of wildcards (IAM lets a `*` that ends a segment
//!   run on across colons, so `arn:*:s3:::*` is not provably S3) and, with them fixed, no
//!   string matches both it and `arn:<partition>:iam:*` or `arn:<partition>:sts:*`.
//!   `arn:aws:s3:::bucket/*` and `arn:aws:lambda:eu-west-1:123456789012:function:f` do not
//!   reach IAM; `*`, `arn:aws:*`, `arn:*:s3:::b`, `arn:aws:iam::*:*`, `arn:*:iam::*:user/*`
//!   do. A plain word without a colon or wildcard names no ARN. Policy variables such as
//!   `${aws:username}` count as `*`, since they vary with the caller.
//!   - Actions that change identities, credentials or permissions (`iam:Put*`,
//!     `iam:CreateAccessKey`, …) escalate on *any* resource that reaches IAM, even one
//!     concrete ARN: `iam:PutUserPolicy` on a single named user lets that user, if it is the
//!     caller, write itself any policy and so step around this screen.
//!   - Actions that *use* a role ([`ROLE_USE_ACTIONS`]: `iam:PassRole` and the
//!     `sts:AssumeRole*` family) are a normal need on a named role, so a concrete ARN with no
//!     wildcard and no policy variable is accepted for them; any wildcard that reaches IAM
//!     (`role/app-*`, `*`) is not.
//!   - `NotResource` applies to everything except what it lists and always counts as broad.
//!     A statement with neither `Resource` nor `NotResource`, or with both, counts as broad.
//! - `Condition` is ignored: a condition narrows when a statement applies but is often
//!   satisfiable by the caller (tags it sets, the source it calls from), so a conditional
//!   grant still counts.
//! - Malformed parts that could hide a grant (a non-string action, a `NotAction` or
//!   `Resource` list holding a non-string, a statement that is not an object, a `Statement`
//!   that is neither an object nor a list) are findings too: the screen fails closed. A
//!   document with no `Statement` (or `null`) has no findings.
//!
//! The screen looks at IAM and STS only; escalation through other services (for example
//! rewriting the code of a Lambda function that runs with a stronger role) depends on roles
//! the operator cannot see, and is left to the account's own guardrails.

use serde_json::Value;

/// Action patterns that let a principal widen its own or others' permissions. `iam:*` and
/// `*` need no entry: they overlap these patterns and are found by the matching.
pub const DEFAULT_ESCALATION_ACTIONS: &[&str] = &[
    // New identities, policies, policy versions, access keys, login profiles, service
    // credentials, virtual MFA devices.
    "iam:Create*",
    // Inline policies and permissions boundaries on users, groups and roles.
    "iam:Put*",
    // Managed policies on users, groups and roles.
    "iam:Attach*",
    // Trust policies, login profiles, access-key status, names and paths.
    "iam:Update*",
    // Removing a policy or a boundary widens whatever it restricted (a Deny, a boundary).
    "iam:Delete*Policy*",
    "iam:Delete*PermissionsBoundary",
    "iam:Detach*",
    // Group membership carries the group's policies, and its Denies.
    "iam:AddUserToGroup",
    "iam:RemoveUserFromGroup",
    // Rolling a managed policy back or forth to a broader version.
    "iam:SetDefaultPolicyVersion",
    // Credentials for another user: keys, console password, CodeCommit and SSH access.
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:Upload*",
    "iam:ResetServiceSpecificCredential",
    // Who may assume a role.
    "iam:UpdateAssumeRolePolicy",
    // Tags drive attribute-based access control and the operator's ownership marks.
    "iam:Tag*",
    "iam:Untag*",
    // Handing a role to a service, or becoming it.
    "iam:PassRole",
    "sts:AssumeRole",
    "sts:AssumeRoleWithWebIdentity",
    "sts:AssumeRoleWithSAML",
    "sts:AssumeRoot",
];

/// Screened actions that use a role rather than change one: acceptable on a concrete role
/// ARN (no wildcard, no policy variable), never on a wildcard that reaches IAM.
pub const ROLE_USE_ACTIONS: &[&str] = &[
    "iam:PassRole",
    "sts:AssumeRole",
    "sts:AssumeRoleWithWebIdentity",
    "sts:AssumeRoleWithSAML",
];

/// How many findings [`describe`] names before summarising the rest as a count.
pub const DESCRIBE_MAX_FINDINGS: usize = 3;

/// Longest action, resource or Sid text quoted in a finding; longer text is cut with `…`.
const QUOTE_MAX_CHARS: usize = 60;

/// The services whose ARNs the screened actions act on.
const IAM_SERVICES: &[&str] = &["iam", "sts"];

/// [`DEFAULT_ESCALATION_ACTIONS`] as owned strings, ready for [`screen`].
pub fn default_screened() -> Vec<String> {
    DEFAULT_ESCALATION_ACTIONS
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// One finding: the statement, what it grants on what, and why that escalates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Index of the statement in `Statement` (0 when `Statement` is a single object).
    pub statement: usize,
    /// The statement's `Sid`, if it has one.
    pub sid: Option<String>,
    /// The granted action pattern as written (`iam:*`), `every action except …` for a
    /// `NotAction`, or the offending value for a malformed part.
    pub action: String,
    /// The resource that keeps the grant broad (`*`, `every resource except …`); `None` when
    /// the finding is about a malformed part rather than a grant.
    pub resource: Option<String>,
    /// A short sentence: why this escalates and what to change.
    pub reason: String,
}

/// Screens `doc` against `screened` action patterns (IAM wildcards, case-insensitive), for
/// example [`default_screened`]. Findings come in statement order; a granted action pattern
/// is reported once per statement, against the first screened pattern it escalates.
pub fn screen(doc: &Value, screened: &[String]) -> Vec<Finding> {
    let screened: Vec<Screened> = screened.iter().map(|s| Screened::new(s)).collect();
    let mut out = Vec::new();
    let map = match doc {
        Value::Null => return out,
        Value::Object(map) => map,
        other => {
            out.push(malformed(
                0,
                None,
                other,
                format!(
                    "the policy document is {}, not an object; write {{\"Version\": \
                     \"2012-10-17\", \"Statement\": [...]}}",
                    kind(other)
                ),
            ));
            return out;
        }
    };
    match map.get("Statement") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (index, statement) in list.iter().enumerate() {
                screen_statement(index, statement, &screened, &mut out);
            }
        }
        Some(statement @ Value::Object(_)) => screen_statement(0, statement, &screened, &mut out),
        Some(other) => out.push(malformed(
            0,
            None,
            other,
            format!(
                "Statement is {}, not an object or a list of objects; write each statement \
                 as an object",
                kind(other)
            ),
        )),
    }
    out
}

/// One line for a `Stalled` condition: `what` (e.g. `inline policy app`) and the first
/// [`DESCRIBE_MAX_FINDINGS`] findings with what to change, the rest as a count.
pub fn describe(what: &str, findings: &[Finding]) -> String {
    let Some((first, rest)) = findings.split_first() else {
        return format!("{what} grants no screened action");
    };
    let mut parts = vec![format!("{what} {}", describe_one(first))];
    for finding in rest.iter().take(DESCRIBE_MAX_FINDINGS.saturating_sub(1)) {
        parts.push(describe_one(finding));
    }
    let mut line = parts.join("; ");
    let more = findings.len().saturating_sub(parts.len());
    if more > 0 {
        let noun = if more == 1 { "finding" } else { "findings" };
        line.push_str(&format!("; and {more} more {noun}"));
    }
    line
}

fn describe_one(finding: &Finding) -> String {
    let sid = match &finding.sid {
        Some(sid) => format!(" (Sid {})", quote(sid)),
        None => String::new(),
    };
    match &finding.resource {
        Some(resource) => format!(
            "statement {}{sid} grants {} on {}: {}",
            finding.statement, finding.action, resource, finding.reason
        ),
        None => format!("statement {}{sid}: {}", finding.statement, finding.reason),
    }
}

// ---------------------------------------------------------------------------------------
// Statements

/// A screened pattern, parsed once, with whether it only uses a role.
struct Screened {
    text: String,
    pattern: Vec<Tok>,
    role_use: bool,
}

impl Screened {
    fn new(text: &str) -> Screened {
        let pattern = parse(text);
        let role_use = is_role_use(&pattern);
        Screened {
            text: text.to_owned(),
            pattern,
            role_use,
        }
    }
}

fn is_role_use(pattern: &[Tok]) -> bool {
    ROLE_USE_ACTIONS
        .iter()
        .any(|u| contains(&parse(u), pattern))
}

/// What a statement applies to.
enum Scope {
    /// `Resource`: each entry a pattern, or a non-string value (broad).
    Listed(Vec<Result<String, String>>),
    /// `NotResource`, rendered.
    AllExcept(String),
    /// Neither or both of `Resource` and `NotResource`.
    Unclear(&'static str),
}

impl Scope {
    fn of(map: &serde_json::Map<String, Value>) -> Scope {
        match (map.get("Resource"), map.get("NotResource")) {
            (Some(resource), None) => Scope::Listed(
                as_list(resource)
                    .into_iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| render(v)))
                    .collect(),
            ),
            (None, Some(not)) => Scope::AllExcept(format!(
                "every resource except {}",
                quote(&join_rendered(not))
            )),
            (None, None) => Scope::Unclear("no Resource"),
            (Some(_), Some(_)) => Scope::Unclear("both Resource and NotResource"),
        }
    }

    /// The first resource that keeps a grant broad, or `None` when every resource is narrow
    /// enough. `role_use`: concrete ARNs are acceptable.
    fn broad(&self, role_use: bool) -> Option<String> {
        match self {
            Scope::AllExcept(text) => Some(text.clone()),
            Scope::Unclear(text) => Some((*text).to_owned()),
            Scope::Listed(resources) => resources.iter().find_map(|r| match r {
                Err(rendered) => Some(quote(rendered)),
                Ok(resource) => resource_is_broad(resource, role_use).then(|| quote(resource)),
            }),
        }
    }
}

fn resource_is_broad(resource: &str, role_use: bool) -> bool {
    let resource = without_variables(resource);
    if !reaches_iam(&resource) {
        return false;
    }
    let concrete = !resource.contains(['*', '?']);
    !(role_use && concrete)
}

/// Whether a resource pattern (policy variables already replaced) may match an IAM or STS
/// ARN. IAM lets a `*` that ends an ARN segment run on across colons, so the ARN's prefix
/// and partition must be free of wildcards before the service segment can be trusted;
/// with them fixed, the pattern reaches IAM when it shares a string with
/// `arn:<partition>:iam:*` or `arn:<partition>:sts:*`.
fn reaches_iam(resource: &str) -> bool {
    let mut segments = resource.splitn(3, ':');
    let (Some(prefix), Some(partition)) = (segments.next(), segments.next()) else {
        // No colon: `*`, or a plain word that names no ARN.
        return resource.contains(['*', '?']);
    };
    if prefix.contains(['*', '?']) || partition.contains(['*', '?']) {
        return true;
    }
    let pattern = parse(resource);
    IAM_SERVICES
        .iter()
        .any(|service| overlap(&parse(&format!("arn:{partition}:{service}:*")), &pattern))
}

/// Replaces each policy variable `${…}` with `*` (an unterminated one runs to the end).
fn without_variables(resource: &str) -> String {
    let mut out = String::with_capacity(resource.len());
    let mut rest = resource;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        out.push('*');
        match rest[start..].find('}') {
            Some(end) => rest = &rest[start + end + 1..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

fn screen_statement(
    index: usize,
    statement: &Value,
    screened: &[Screened],
    out: &mut Vec<Finding>,
) {
    let Value::Object(map) = statement else {
        out.push(malformed(
            index,
            None,
            statement,
            format!(
                "the statement is {}, not an object; write it as an object with Effect, \
                 Action and Resource",
                kind(statement)
            ),
        ));
        return;
    };
    let sid = map.get("Sid").and_then(Value::as_str).map(str::to_owned);
    if let Some(Value::String(effect)) = map.get("Effect")
        && effect.eq_ignore_ascii_case("deny")
    {
        return;
    }
    let scope = Scope::of(map);
    match (map.get("Action"), map.get("NotAction")) {
        (Some(actions), None) => {
            screen_actions(index, &sid, actions, &scope, screened, out);
        }
        (None, Some(not)) => screen_not_action(index, &sid, not, &scope, screened, out),
        (None, None) => out.push(malformed(
            index,
            sid,
            statement,
            "the statement has neither Action nor NotAction; list the allowed actions in \
             Action"
                .to_owned(),
        )),
        (Some(_), Some(_)) => out.push(malformed(
            index,
            sid,
            statement,
            "the statement has both Action and NotAction; keep only Action, listing the \
             allowed actions"
                .to_owned(),
        )),
    }
}

fn screen_actions(
    index: usize,
    sid: &Option<String>,
    actions: &Value,
    scope: &Scope,
    screened: &[Screened],
    out: &mut Vec<Finding>,
) {
    if !matches!(actions, Value::String(_) | Value::Array(_)) {
        out.push(malformed(
            index,
            sid.clone(),
            actions,
            format!(
                "Action is {}, not a string or a list of strings; list the allowed actions as \
                 strings",
                kind(actions)
            ),
        ));
        return;
    }
    let mut reported: Vec<String> = Vec::new();
    for action in as_list(actions) {
        let Some(granted) = action.as_str() else {
            out.push(malformed(
                index,
                sid.clone(),
                action,
                format!(
                    "Action holds {} {}, not a string; write every action as a string",
                    kind(action),
                    quote(&render(action))
                ),
            ));
            continue;
        };
        let folded = granted.to_lowercase();
        if reported.contains(&folded) {
            continue;
        }
        let pattern = parse(granted);
        let role_use = is_role_use(&pattern);
        let hit = screened.iter().find_map(|s| {
            if !overlap(&pattern, &s.pattern) {
                return None;
            }
            let role_use = role_use || s.role_use;
            scope
                .broad(role_use)
                .map(|resource| (s, role_use, resource))
        });
        if let Some((s, role_use, resource)) = hit {
            reported.push(folded);
            let reason = if granted.eq_ignore_ascii_case(&s.text) {
                format!(
                    "{} {}; {}",
                    quote(granted),
                    harm(role_use),
                    fix(role_use, scope)
                )
            } else {
                format!(
                    "{} matches the screened {}, which {}; {}",
                    quote(granted),
                    quote(&s.text),
                    harm(role_use),
                    fix(role_use, scope)
                )
            };
            out.push(Finding {
                statement: index,
                sid: sid.clone(),
                action: quote(granted),
                resource: Some(resource),
                reason,
            });
        }
    }
}

fn screen_not_action(
    index: usize,
    sid: &Option<String>,
    not: &Value,
    scope: &Scope,
    screened: &[Screened],
    out: &mut Vec<Finding>,
) {
    let mut excluded = Vec::new();
    for value in as_list(not) {
        match value.as_str() {
            Some(text) => excluded.push(parse(text)),
            None => {
                out.push(malformed(
                    index,
                    sid.clone(),
                    value,
                    format!(
                        "NotAction holds {} {}, not a string, so what it excludes is unclear; \
                         list the allowed actions in Action instead",
                        kind(value),
                        quote(&render(value))
                    ),
                ));
                return;
            }
        }
    }
    let hit = screened.iter().find_map(|s| {
        if excluded.iter().any(|n| contains(n, &s.pattern)) {
            return None;
        }
        scope.broad(s.role_use).map(|resource| (s, resource))
    });
    if let Some((s, resource)) = hit {
        out.push(Finding {
            statement: index,
            sid: sid.clone(),
            action: format!("every action except {}", quote(&join_rendered(not))),
            resource: Some(resource),
            reason: format!(
                "NotAction allows every action it does not list, including the screened {}, \
                 which {}; list the allowed actions in Action instead, or add iam:* and sts:* to \
                 NotAction",
                quote(&s.text),
                harm(s.role_use)
            ),
        });
    }
}

fn harm(role_use: bool) -> &'static str {
    if role_use {
        "can pass or assume any role the resource reaches"
    } else {
        "can change IAM identities, credentials or permissions"
    }
}

fn fix(role_use: bool, scope: &Scope) -> &'static str {
    match (role_use, scope) {
        (true, Scope::Listed(_)) => "name concrete role ARNs, without wildcards, in Resource",
        (true, _) => "give the statement a Resource naming concrete role ARNs",
        (false, _) => "remove it and list only the actions the workload needs",
    }
}

fn malformed(index: usize, sid: Option<String>, value: &Value, reason: String) -> Finding {
    Finding {
        statement: index,
        sid,
        action: quote(&render(value)),
        resource: None,
        reason,
    }
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn join_rendered(value: &Value) -> String {
    as_list(value)
        .into_iter()
        .map(render)
        .collect::<Vec<_>>()
        .join(", ")
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `text`, cut to [`QUOTE_MAX_CHARS`] characters with `…` when longer.
fn quote(text: &str) -> String {
    if text.chars().count() <= QUOTE_MAX_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(QUOTE_MAX_CHARS - 1).collect();
    cut.push('…');
    cut
}

// ---------------------------------------------------------------------------------------
// Wildcard patterns

/// One element of a wildcard pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    /// `*`: any run of characters, including none.
    Star,
    /// `?`: exactly one character.
    Any,
    /// A character, lower-cased.
    Lit(char),
}

/// Parses an IAM wildcard pattern, lower-cased, with every run of `*` and `?` in a canonical
/// order (all `?` first, then one `*` if the run had any): `*?*` and `?*` match the same
/// strings and parse the same.
fn parse(text: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = text.chars().flat_map(char::to_lowercase).peekable();
    while let Some(c) = chars.next() {
        if c != '*' && c != '?' {
            out.push(Tok::Lit(c));
            continue;
        }
        let (mut anys, mut star) = (0usize, false);
        let mut c = Some(c);
        while let Some(w @ ('*' | '?')) = c {
            if w == '*' {
                star = true;
            } else {
                anys += 1;
            }
            c = chars.next_if(|n| *n == '*' || *n == '?');
        }
        out.extend(std::iter::repeat_n(Tok::Any, anys));
        if star {
            out.push(Tok::Star);
        }
    }
    out
}

/// Whether some string matches both patterns.
fn overlap(a: &[Tok], b: &[Tok]) -> bool {
    let (n, m) = (a.len(), b.len());
    let width = m + 1;
    // ok[i * width + j]: a[i..] and b[j..] share a string.
    let mut ok = vec![false; (n + 1) * width];
    for i in (0..=n).rev() {
        for j in (0..=m).rev() {
            let value = match (a.get(i), b.get(j)) {
                (None, None) => true,
                // The star matches nothing, or swallows b's next element.
                (Some(Tok::Star), next) => {
                    ok[(i + 1) * width + j] || (next.is_some() && ok[i * width + j + 1])
                }
                (next, Some(Tok::Star)) => {
                    ok[i * width + j + 1] || (next.is_some() && ok[(i + 1) * width + j])
                }
                (Some(x), Some(y)) => one_char_overlap(*x, *y) && ok[(i + 1) * width + j + 1],
                _ => false,
            };
            ok[i * width + j] = value;
        }
    }
    ok[0]
}

fn one_char_overlap(x: Tok, y: Tok) -> bool {
    match (x, y) {
        (Tok::Lit(x), Tok::Lit(y)) => x == y,
        _ => true,
    }
}

/// Whether every string `inner` matches also matches `outer`. Decided syntactically:
/// `outer`'s `*` may cover any part of `inner`, its `?` one `?` or character, its characters
/// only themselves. Sound (never claims a containment that does not hold) but not complete:
/// a containment it misses only adds a finding, never hides one.
fn contains(outer: &[Tok], inner: &[Tok]) -> bool {
    let (n, m) = (outer.len(), inner.len());
    let width = m + 1;
    // ok[i * width + j]: outer[i..] covers inner[j..].
    let mut ok = vec![false; (n + 1) * width];
    for i in (0..=n).rev() {
        for j in (0..=m).rev() {
            let value = match (outer.get(i), inner.get(j)) {
                (None, None) => true,
                (Some(Tok::Star), next) => {
                    ok[(i + 1) * width + j] || (next.is_some() && ok[i * width + j + 1])
                }
                (Some(Tok::Any), Some(Tok::Any | Tok::Lit(_))) => ok[(i + 1) * width + j + 1],
                (Some(Tok::Lit(x)), Some(Tok::Lit(y))) => x == y && ok[(i + 1) * width + j + 1],
                _ => false,
            };
            ok[i * width + j] = value;
        }
    }
    ok[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> Vec<String> {
        default_screened()
    }

    fn allow(action: Value, resource: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": action, "Resource": resource}
        ]})
    }

    fn hits(doc: &Value) -> bool {
        !screen(doc, &defaults()).is_empty()
    }

    // ---- patterns -------------------------------------------------------------------

    /// Reference matcher: does `pattern` (IAM wildcards) match the concrete `text`?
    fn glob(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|k| glob(rest, &text[k..])),
            Some(('?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
            Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
        }
    }

    fn all_strings(alphabet: &[char], max_len: usize) -> Vec<Vec<char>> {
        let mut out = vec![Vec::new()];
        let mut layer = vec![Vec::new()];
        for _ in 0..max_len {
            let mut next = Vec::new();
            for s in &layer {
                for c in alphabet {
                    let mut t: Vec<char> = s.clone();
                    t.push(*c);
                    next.push(t);
                }
            }
            out.extend(next.iter().cloned());
            layer = next;
        }
        out
    }

    #[test]
    fn overlap_agrees_with_brute_force() {
        let patterns = all_strings(&['a', 'b', '*', '?'], 3);
        // A shared string, if any, is no longer than both patterns' characters together.
        let texts = all_strings(&['a', 'b'], 6);
        for p in &patterns {
            for q in &patterns {
                let expected = texts.iter().any(|t| glob(p, t) && glob(q, t));
                let (ps, qs): (String, String) = (p.iter().collect(), q.iter().collect());
                assert_eq!(
                    overlap(&parse(&ps), &parse(&qs)),
                    expected,
                    "overlap({ps:?}, {qs:?})"
                );
            }
        }
    }

    #[test]
    fn contains_is_sound_and_reflexive() {
        let patterns = all_strings(&['a', 'b', '*', '?'], 3);
        let texts = all_strings(&['a', 'b'], 6);
        for outer in &patterns {
            for inner in &patterns {
                let (os, is): (String, String) = (outer.iter().collect(), inner.iter().collect());
                if contains(&parse(&os), &parse(&is)) {
                    for t in texts.iter().filter(|t| glob(inner, t)) {
                        assert!(
                            glob(outer, t),
                            "{os:?} claimed to contain {is:?}, misses {t:?}"
                        );
                    }
                }
            }
            let os: String = outer.iter().collect();
            assert!(contains(&parse(&os), &parse(&os)), "{os:?} contains itself");
            assert!(contains(&parse("*"), &parse(&os)), "* contains {os:?}");
        }
    }

    #[test]
    fn pattern_table() {
        // (granted, screened, overlap)
        let cases = [
            ("iam:*", "iam:AttachUserPolicy", true),
            ("*", "iam:AttachUserPolicy", true),
            ("iam:Put*", "iam:PutUserPolicy", true),
            ("IAM:attachuserpolicy", "iam:AttachUserPolicy", true),
            ("iam:CreateAccessKey", "iam:Create*", true),
            ("iam:C*", "iam:Create*", true),
            ("iam:?reate*", "iam:CreateUser", true),
            ("iam:?reate*", "iam:Create*", true),
            ("iam:??eate*", "iam:C?eateUser", true),
            ("iam:Get*", "iam:Create*", false),
            ("s3:*", "iam:*", false),
            ("iam:*Policy", "iam:Put*", true),
            ("iam:*Policy", "iam:Delete*PermissionsBoundary", false),
            ("iam:Pass?ole", "iam:PassRole", true),
            ("iam:Pass?ole", "iam:PassRol", false),
            ("i*:P*", "iam:PassRole", true),
            ("sts:Assume*", "sts:AssumeRoleWithSAML", true),
            ("sts:GetCallerIdentity", "sts:AssumeRole", false),
        ];
        for (granted, screened, expected) in cases {
            assert_eq!(
                overlap(&parse(granted), &parse(screened)),
                expected,
                "{granted} vs {screened}"
            );
            assert_eq!(
                overlap(&parse(screened), &parse(granted)),
                expected,
                "symmetric: {screened} vs {granted}"
            );
        }
    }

    #[test]
    fn contains_table() {
        let cases = [
            ("iam:*", "iam:Delete*Policy*", true),
            ("iam:*", "iam:Create*", true),
            ("sts:*", "sts:AssumeRole", true),
            ("IAM:*", "iam:PassRole", true),
            ("s3:*", "iam:Create*", false),
            ("iam:Create*", "iam:*", false),
            ("iam:Create*", "iam:CreateUser", true),
            ("iam:*?", "iam:?*", true),
            ("*", "*", true),
            ("iam:Pass?ole", "iam:Pass*", false),
        ];
        for (outer, inner, expected) in cases {
            assert_eq!(
                contains(&parse(outer), &parse(inner)),
                expected,
                "{outer} contains {inner}"
            );
        }
    }

    #[test]
    fn parse_canonicalises_wildcard_runs() {
        assert_eq!(parse("a*?*b"), parse("a?*b"));
        assert_eq!(parse("A**"), vec![Tok::Lit('a'), Tok::Star]);
        assert_eq!(parse("?"), vec![Tok::Any]);
        assert_eq!(parse(""), Vec::<Tok>::new());
    }

    #[test]
    fn policy_variables_count_as_wildcards() {
        assert_eq!(
            without_variables("arn:aws:iam::*:user/${aws:username}"),
            "arn:aws:iam::*:user/*"
        );
        assert_eq!(without_variables("a${x}b${y"), "a*b*");
        assert_eq!(without_variables("plain"), "plain");
    }

    // ---- documents ------------------------------------------------------------------

    #[test]
    fn action_and_resource_table() {
        // (action, resource, escalates)
        let role = "arn:aws:iam::123456789012:role/app-role";
        let cases: Vec<(Value, Value, bool)> = vec![
            (json!("iam:*"), json!("*"), true),
            (json!("*"), json!("*"), true),
            (json!("iam:PassRole"), json!("*"), true),
            (json!("iam:PassRole"), json!(role), false),
            (
                json!("iam:PassRole"),
                json!("arn:aws:iam::123456789012:role/app-*"),
                true,
            ),
            (
                json!("iam:PassRole"),
                json!("arn:aws:iam::*:role/app-role"),
                true,
            ),
            (json!("sts:AssumeRole"), json!(role), false),
            (
                json!("sts:AssumeRole"),
                json!("arn:aws:iam::123456789012:role/*"),
                true,
            ),
            (json!("sts:AssumeRole"), json!("*"), true),
            (json!("s3:GetObject"), json!("*"), false),
            (json!(["s3:GetObject", "s3:PutObject"]), json!("*"), false),
            (json!("iam:Get*"), json!("*"), false),
            (json!("iam:List*"), json!("*"), false),
            (json!("sts:GetCallerIdentity"), json!("*"), false),
            (json!("iam:Put*"), json!("*"), true),
            (json!("iam:PutUserPolicy"), json!("*"), true),
            (json!("IAM:attachuserpolicy"), json!("*"), true),
            (json!("Iam:CreateAccessKey"), json!("*"), true),
            (json!("iam:?reate*"), json!("*"), true),
            (json!("iam:TagUser"), json!("*"), true),
            (json!("iam:UntagRole"), json!("*"), true),
            (json!("iam:DeleteRolePermissionsBoundary"), json!("*"), true),
            (json!("iam:DeletePolicyVersion"), json!("*"), true),
            (json!("iam:SetDefaultPolicyVersion"), json!("*"), true),
            (json!("iam:UpdateAssumeRolePolicy"), json!("*"), true),
            (json!("sts:AssumeRoleWithWebIdentity"), json!("*"), true),
            (json!("sts:AssumeRoleWithSAML"), json!("*"), true),
            (
                json!(["s3:GetObject", "iam:AddUserToGroup"]),
                json!("*"),
                true,
            ),
            // A changing action on one concrete IAM ARN still escalates.
            (
                json!("iam:PutUserPolicy"),
                json!("arn:aws:iam::123456789012:user/me"),
                true,
            ),
            (json!("iam:*"), json!(role), true),
            (json!("*"), json!(role), true),
            // Wildcard ARNs that reach IAM.
            (json!("iam:*"), json!("arn:aws:iam::*:*"), true),
            (json!("iam:*"), json!("arn:aws:iam::123456789012:*"), true),
            (json!("iam:*"), json!("arn:*:iam::*:user/*"), true),
            (json!("iam:*"), json!("arn:aws:*"), true),
            (json!("iam:*"), json!("arn:aws:?am::1:user/x"), true),
            (
                json!("iam:CreateAccessKey"),
                json!("arn:aws:iam::*:user/${aws:username}"),
                true,
            ),
            (
                json!("iam:PassRole"),
                json!("arn:aws:iam::1:role/${aws:PrincipalTag/team}"),
                true,
            ),
            // Resources that provably exclude IAM and STS.
            (json!("*"), json!("arn:aws:s3:::bucket/*"), false),
            (
                json!("*"),
                json!(["arn:aws:s3:::bucket", "arn:aws:s3:::bucket/*"]),
                false,
            ),
            (
                json!("iam:*"),
                json!("arn:aws:lambda:eu-west-1:123456789012:function:f"),
                false,
            ),
            (json!("*"), json!("arn:aws:dynamodb:*:*:table/t"), false),
            (json!("*"), json!("arn:aws-cn:s3*:::b"), false),
            (json!("*"), json!("not-an-arn"), false),
            // A wildcard before the service segment may run on across colons.
            (json!("*"), json!("arn:*:s3:::b"), true),
            (json!("*"), json!("*:aws:s3:::b"), true),
            (json!("*"), json!("arn:aws:s?s:::b"), true),
            (
                json!("sts:AssumeRole"),
                json!("arn:aws:sts::123456789012:*"),
                true,
            ),
            (json!("iam:*"), json!("ARN:AWS:IAM::1:*"), true),
            // One broad entry among narrow ones is enough.
            (json!("iam:*"), json!(["arn:aws:s3:::b", "*"]), true),
            (json!([]), json!("*"), false),
        ];
        for (action, resource, expected) in cases {
            let doc = allow(action.clone(), resource.clone());
            assert_eq!(hits(&doc), expected, "Action {action} on {resource}");
        }
    }

    #[test]
    fn iam_star_on_star_is_reported_with_its_statement() {
        let doc = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "ReadBucket", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
            {"Sid": "Admin", "Effect": "Allow", "Action": "iam:*", "Resource": "*"}
        ]});
        let findings = screen(&doc, &defaults());
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(f.statement, 1);
        assert_eq!(f.sid.as_deref(), Some("Admin"));
        assert_eq!(f.action, "iam:*");
        assert_eq!(f.resource.as_deref(), Some("*"));
        assert!(f.reason.contains("iam:Create*"), "{}", f.reason);
        assert!(f.reason.contains("remove it"), "{}", f.reason);
    }

    #[test]
    fn administrator_access_is_reported() {
        let doc = json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
        });
        let findings = screen(&doc, &defaults());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].action, "*");
    }

    #[test]
    fn statement_as_a_single_object() {
        let doc = json!({"Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}});
        let findings = screen(&doc, &defaults());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].statement, 0);
        assert_eq!(
            findings[0].reason,
            "iam:PassRole can pass or assume any role the resource reaches; name concrete role \
             ARNs, without wildcards, in Resource"
        );
    }

    #[test]
    fn deny_never_grants() {
        for effect in ["Deny", "deny"] {
            let doc = json!({"Statement": [
                {"Effect": effect, "Action": "iam:*", "Resource": "*"},
                {"Effect": effect, "NotAction": "s3:*", "NotResource": "arn:aws:s3:::b"}
            ]});
            assert!(screen(&doc, &defaults()).is_empty(), "{effect}");
        }
    }

    #[test]
    fn missing_or_odd_effect_is_screened_as_allow() {
        for effect in [json!(null), json!("Alow"), json!(1)] {
            let doc =
                json!({"Statement": [{"Effect": effect, "Action": "iam:*", "Resource": "*"}]});
            assert!(hits(&doc), "Effect {effect}");
        }
        let doc = json!({"Statement": [{"Action": "iam:*", "Resource": "*"}]});
        assert!(hits(&doc), "no Effect");
    }

    #[test]
    fn not_action_table() {
        // (NotAction, Resource, escalates)
        let cases: Vec<(Value, Value, bool)> = vec![
            (json!(["s3:*"]), json!("*"), true),
            (json!("s3:*"), json!("*"), true),
            (json!(["iam:*", "sts:*"]), json!("*"), false),
            (json!(["IAM:*", "STS:*"]), json!("*"), false),
            (json!(["iam:*"]), json!("*"), true),
            (json!(["sts:*"]), json!("*"), true),
            (json!(["iam:Create*", "iam:Put*"]), json!("*"), true),
            (json!("*"), json!("*"), false),
            (json!(["s3:*"]), json!("arn:aws:s3:::bucket/*"), false),
            (
                json!(["s3:*"]),
                json!("arn:aws:iam::123456789012:role/app-role"),
                true,
            ),
        ];
        for (not, resource, expected) in cases {
            let doc = json!({"Statement": [
                {"Effect": "Allow", "NotAction": not, "Resource": resource}
            ]});
            assert_eq!(hits(&doc), expected, "NotAction {not} on {resource}");
        }
    }

    #[test]
    fn not_action_finding_names_the_exception_and_the_fix() {
        let doc = json!({"Statement": [{"Effect": "Allow", "NotAction": ["s3:*", "ec2:*"], "Resource": "*"}]});
        let findings = screen(&doc, &defaults());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].action, "every action except s3:*, ec2:*");
        assert!(
            findings[0]
                .reason
                .contains("list the allowed actions in Action")
        );
    }

    #[test]
    fn not_action_with_only_some_screened_excluded_names_a_remaining_one() {
        let screened = vec!["iam:Create*".to_owned(), "sts:AssumeRole".to_owned()];
        let doc =
            json!({"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]});
        let findings = screen(&doc, &screened);
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].reason.contains("sts:AssumeRole"),
            "{}",
            findings[0].reason
        );
    }

    #[test]
    fn not_resource_is_broad() {
        let cases: Vec<(Value, bool)> = vec![
            (
                json!({"Effect": "Allow", "Action": "iam:PassRole", "NotResource": "arn:aws:iam::1:role/admin"}),
                true,
            ),
            (
                json!({"Effect": "Allow", "Action": "iam:*", "NotResource": ["arn:aws:s3:::b"]}),
                true,
            ),
            (
                json!({"Effect": "Allow", "NotAction": "s3:*", "NotResource": "*"}),
                true,
            ),
            (
                json!({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::b"}),
                false,
            ),
        ];
        for (statement, expected) in cases {
            let doc = json!({"Statement": [statement.clone()]});
            assert_eq!(hits(&doc), expected, "{statement}");
        }
        let doc = json!({"Statement": [
            {"Effect": "Allow", "Action": "iam:PassRole", "NotResource": "arn:aws:iam::1:role/admin"}
        ]});
        let findings = screen(&doc, &defaults());
        assert_eq!(
            findings[0].resource.as_deref(),
            Some("every resource except arn:aws:iam::1:role/admin")
        );
    }

    #[test]
    fn missing_or_doubled_resource_is_broad() {
        let doc = json!({"Statement": [{"Effect": "Allow", "Action": "iam:PassRole"}]});
        let findings = screen(&doc, &defaults());
        assert_eq!(findings[0].resource.as_deref(), Some("no Resource"));
        let doc = json!({"Statement": [{"Effect": "Allow", "Action": "iam:PassRole",
            "Resource": "arn:aws:iam::1:role/r", "NotResource": "arn:aws:iam::1:role/x"}]});
        let findings = screen(&doc, &defaults());
        assert_eq!(
            findings[0].resource.as_deref(),
            Some("both Resource and NotResource")
        );
        let doc = json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject"}]});
        assert!(screen(&doc, &defaults()).is_empty());
    }

    #[test]
    fn condition_does_not_excuse_a_grant() {
        let doc = json!({"Statement": [{
            "Effect": "Allow", "Action": "iam:AttachRolePolicy", "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestTag/team": "a"}}
        }]});
        assert!(hits(&doc));
    }

    #[test]
    fn mixed_case_keys_in_values_and_screened_patterns() {
        let screened = vec!["IAM:putuserPOLICY".to_owned()];
        let doc = allow(json!("iam:Put*"), json!("*"));
        let findings = screen(&doc, &screened);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].reason.contains("IAM:putuserPOLICY"));
        let doc = allow(json!("iAm:pUtUsErPoLiCy"), json!("*"));
        assert_eq!(screen(&doc, &screened).len(), 1);
    }

    #[test]
    fn screened_wildcards_are_hit_by_narrower_grants() {
        let screened = vec!["iam:?reate*".to_owned()];
        for action in ["iam:CreateAccessKey", "iam:C*", "*", "iam:*", "iam:?r*"] {
            assert_eq!(
                screen(&allow(json!(action), json!("*")), &screened).len(),
                1,
                "{action}"
            );
        }
        for action in ["iam:Get*", "iam:Cr", "s3:CreateBucket"] {
            assert!(
                screen(&allow(json!(action), json!("*")), &screened).is_empty(),
                "{action}"
            );
        }
    }

    #[test]
    fn one_finding_per_granted_pattern_in_a_statement() {
        let doc = allow(
            json!(["iam:*", "IAM:*", "iam:PassRole", "s3:*"]),
            json!("*"),
        );
        let findings = screen(&doc, &defaults());
        let actions: Vec<&str> = findings.iter().map(|f| f.action.as_str()).collect();
        assert_eq!(actions, ["iam:*", "iam:PassRole"]);
    }

    #[test]
    fn grant_covering_use_and_change_on_a_named_role_is_reported_for_the_change() {
        let doc = allow(json!("iam:P*"), json!("arn:aws:iam::1:role/app"));
        let findings = screen(&doc, &defaults());
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].reason.contains("iam:Put*"),
            "{}",
            findings[0].reason
        );
    }

    #[test]
    fn empty_screen_list_finds_nothing_but_malformed_parts() {
        assert!(screen(&allow(json!("*"), json!("*")), &[]).is_empty());
        assert_eq!(screen(&allow(json!([1]), json!("*")), &[]).len(), 1);
    }

    #[test]
    fn documents_without_statements() {
        for doc in [
            json!({}),
            json!(null),
            json!({"Version": "2012-10-17"}),
            json!({"Version": "2012-10-17", "Statement": []}),
            json!({"Version": "2012-10-17", "Statement": null}),
        ] {
            assert!(screen(&doc, &defaults()).is_empty(), "{doc}");
        }
    }

    #[test]
    fn malformed_parts_fail_closed() {
        let cases: Vec<(Value, &str)> = vec![
            (json!("iam:*"), "not an object"),
            (json!([1, 2]), "not an object"),
            (
                json!({"Statement": "Allow everything"}),
                "Statement is a string",
            ),
            (json!({"Statement": [42]}), "the statement is a number"),
            (
                allow(json!(["s3:GetObject", 7]), json!("arn:aws:s3:::b")),
                "Action holds a number 7",
            ),
            (
                allow(json!({"iam": "*"}), json!("*")),
                "Action is an object",
            ),
            (allow(json!(null), json!("*")), "Action is null"),
            (
                json!({"Statement": [{"Effect": "Allow", "NotAction": ["iam:*", {"x": 1}], "Resource": "*"}]}),
                "NotAction holds an object",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Resource": "*"}]}),
                "neither Action nor NotAction",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "s3:*", "NotAction": "iam:*", "Resource": "*"}]}),
                "both Action and NotAction",
            ),
        ];
        for (doc, expected) in cases {
            let findings = screen(&doc, &defaults());
            assert_eq!(findings.len(), 1, "{doc}: {findings:?}");
            assert!(findings[0].resource.is_none());
            assert!(
                findings[0].reason.contains(expected),
                "{doc}: {}",
                findings[0].reason
            );
        }
    }

    #[test]
    fn non_string_resource_is_broad() {
        let doc = allow(json!("iam:PassRole"), json!([{"arn": "x"}]));
        let findings = screen(&doc, &defaults());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].resource.as_deref(), Some(r#"{"arn":"x"}"#));
        assert!(!hits(&allow(json!("s3:GetObject"), json!(5))));
    }

    #[test]
    fn findings_keep_statement_order() {
        let doc = json!({"Statement": [
            {"Effect": "Allow", "Action": "iam:CreateUser", "Resource": "*"},
            {"Effect": "Deny", "Action": "*", "Resource": "*"},
            {"Sid": "Two", "Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}
        ]});
        let findings = screen(&doc, &defaults());
        let at: Vec<(usize, Option<&str>)> = findings
            .iter()
            .map(|f| (f.statement, f.sid.as_deref()))
            .collect();
        assert_eq!(at, [(0, None), (2, Some("Two"))]);
    }

    #[test]
    fn default_list_is_well_formed() {
        for action in DEFAULT_ESCALATION_ACTIONS.iter().chain(ROLE_USE_ACTIONS) {
            let (service, name) = action.split_once(':').unwrap();
            assert!(service == "iam" || service == "sts", "{action}");
            assert!(!name.is_empty(), "{action}");
        }
        // Every role-use action is also screened by default.
        for action in ROLE_USE_ACTIONS {
            assert!(DEFAULT_ESCALATION_ACTIONS.contains(action), "{action}");
        }
    }

    // ---- describe -------------------------------------------------------------------

    #[test]
    fn describe_names_the_policy_statement_grant_and_fix() {
        let doc = json!({"Statement": [{"Sid": "Admin", "Effect": "Allow", "Action": "iam:*", "Resource": "*"}]});
        let line = describe("inline policy app", &screen(&doc, &defaults()));
        assert!(
            line.starts_with("inline policy app statement 0 (Sid Admin) grants iam:* on *: "),
            "{line}"
        );
        assert!(line.contains("remove it"), "{line}");
        assert!(!line.contains("more"), "{line}");
    }

    #[test]
    fn describe_malformed_finding() {
        let findings = screen(&allow(json!([7]), json!("*")), &defaults());
        let line = describe("managed policy p", &findings);
        assert_eq!(
            line,
            "managed policy p statement 0: Action holds a number 7, not a string; write every \
             action as a string"
        );
    }

    #[test]
    fn describe_caps_findings_and_length() {
        let long = format!("iam:Create{}", "X".repeat(500));
        let statements: Vec<Value> = (0..50)
            .map(|i| json!({"Sid": format!("S{i}{}", "y".repeat(300)), "Effect": "Allow",
                "Action": [long.clone(), format!("iam:Put{i}")], "Resource": format!("*{}", "z".repeat(400))}))
            .collect();
        let findings = screen(&json!({"Statement": statements}), &defaults());
        assert_eq!(findings.len(), 100);
        let line = describe("inline policy big", &findings);
        assert!(line.ends_with("; and 97 more findings"), "{line}");
        assert_eq!(line.matches(" grants ").count(), DESCRIBE_MAX_FINDINGS);
        assert!(
            line.chars().count() < 1_500,
            "{} chars: {line}",
            line.chars().count()
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn describe_singular_and_empty() {
        let doc = allow(
            json!([
                "iam:PutUserPolicy",
                "iam:PutGroupPolicy",
                "iam:PutRolePolicy",
                "iam:TagUser"
            ]),
            json!("*"),
        );
        let line = describe("group g", &screen(&doc, &defaults()));
        assert!(line.ends_with("; and 1 more finding"), "{line}");
        assert_eq!(
            describe("group g", &[]),
            "group g grants no screened action"
        );
    }

    #[test]
    fn quote_cuts_long_text() {
        assert_eq!(quote("short"), "short");
        let cut = quote(&"é".repeat(100));
        assert_eq!(cut.chars().count(), QUOTE_MAX_CHARS);
        assert!(cut.ends_with('…'));
    }
}
