//! A role's trust policy: built from the spec's intents, or a raw document checked against
//! the tenancy rules. Pure functions: the pipeline hands in what they need.
//!
//! A tenant's role may be assumed only by identities of its own namespace (its
//! ServiceAccounts, through the cluster's OIDC provider or EKS Pod Identity), by AWS
//! principals its tenancy policy allows, and — for session credentials — by the operator.
//! A raw document is checked statement by statement and fails closed: a principal type,
//! action, key or condition the checker does not understand is refused with a message.

use crate::api::{AwsPrincipalTrust, RoleTrust};
use crate::settings::Globs;
use serde_json::{Map, Value, json};

/// IAM's policy language version.
const VERSION: &str = "2012-10-17";
/// The EKS Pod Identity service principal.
pub const POD_IDENTITY_SERVICE: &str = "pods.eks.amazonaws.com";
/// Session tag EKS Pod Identity sets to the pod's namespace.
const NAMESPACE_TAG: &str = "aws:RequestTag/kubernetes-namespace";
/// Session tag EKS Pod Identity sets to the pod's ServiceAccount.
const SERVICE_ACCOUNT_TAG: &str = "aws:RequestTag/kubernetes-service-account";
/// Other session tags EKS Pod Identity sets; conditions on them only narrow.
const CLUSTER_TAGS: [&str; 2] = [
    "aws:RequestTag/eks-cluster-arn",
    "aws:RequestTag/eks-cluster-name",
];

/// What the trust policy depends on besides the spec.
#[derive(Debug, Clone)]
pub struct TrustRules<'a> {
    /// The role's namespace.
    pub namespace: &'a str,
    /// The IAM partition, for account ids given as principals.
    pub partition: &'a str,
    /// `--oidc-provider-arn`.
    pub oidc_provider_arn: Option<&'a str>,
    /// The identity that calls `sts:AssumeRole` for session credentials, when the spec asks
    /// for them (the operator, or the role it acts as for the namespace).
    pub session_principal: Option<&'a str>,
    /// The tenancy policy's `allowedTrustPrincipals`.
    pub allowed: &'a Globs,
    /// Where the rules come from, for messages.
    pub source: &'a str,
}

/// The issuer of an OIDC provider ARN: what follows `oidc-provider/`
/// (`oidc.eks.<region>.amazonaws.com/id/<id>`), the prefix of its condition keys.
pub fn issuer(provider_arn: &str) -> Option<&str> {
    provider_arn
        .split_once(":oidc-provider/")
        .map(|(_, issuer)| issuer)
        .filter(|i| !i.is_empty())
}

/// An account id as its root ARN; an ARN as is.
pub fn principal_arn(principal: &str, partition: &str) -> String {
    if principal.len() == 12 && principal.chars().all(|c| c.is_ascii_digit()) {
        format!("arn:{partition}:iam::{principal}:root")
    } else {
        principal.to_string()
    }
}

/// The principal a trust policy names for the identity `sts:GetCallerIdentity` reports:
/// an assumed-role session `arn:aws:sts::<acct>:assumed-role/<name>/<session>` is the role
/// `arn:aws:iam::<acct>:role/<name>`; any other ARN (a user) is itself. The session ARN
/// does not carry the role's path: start-up reads the role (`iam:GetRole`) for its real ARN,
/// and `--operator-principal-arn` overrides both (IAM refuses a trust policy naming a role
/// that does not exist).
pub fn principal_of_caller(caller: &str) -> String {
    let parts: Vec<&str> = caller.splitn(6, ':').collect();
    if let [_, partition, "sts", _, account, resource] = parts.as_slice()
        && let Some(rest) = resource.strip_prefix("assumed-role/")
        && let Some((role, _session)) = rest.split_once('/')
    {
        return format!("arn:{partition}:iam::{account}:role/{role}");
    }
    caller.to_string()
}

/// The subject of a ServiceAccount's web identity token.
fn subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

impl TrustRules<'_> {
    fn check_aws_principal(&self, arn: &str, field: &str) -> Result<(), String> {
        if self.allowed.matching(arn).is_some() {
            return Ok(());
        }
        Err(format!(
            "{field}: AWS principal {arn} is not in allowedTrustPrincipals of {}; remove it, or ask the platform team to allow it there",
            self.source
        ))
    }

    fn oidc(&self, field: &str) -> Result<(&str, &str), String> {
        let arn = self.oidc_provider_arn.ok_or_else(|| {
            format!(
                "{field} needs the cluster's OIDC provider, but the operator runs without --oidc-provider-arn; ask the platform team to set it (Helm value oidcProviderArn), or use trust.podIdentity"
            )
        })?;
        let issuer = issuer(arn).ok_or_else(|| {
            format!("the operator's --oidc-provider-arn {arn} is not an OIDC provider ARN (arn:aws:iam::<account>:oidc-provider/<issuer>); ask the platform team to fix it")
        })?;
        Ok((arn, issuer))
    }
}

/// A trust policy of what the rules allow, and what they refuse.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub document: Value,
    /// One message per refused part, naming the field and the fix.
    pub refused: Vec<String>,
}

/// Trusts no one: what a role's trust becomes when the rules refuse every part of it.
pub fn nobody() -> Value {
    json!({"Version": VERSION, "Statement": [{
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "sts:AssumeRole"
    }]})
}

/// The trust policy document for `trust` (with the session statement when
/// `rules.session_principal` is set), or a refusal naming the field and the fix.
pub fn build(trust: &RoleTrust, rules: &TrustRules<'_>) -> Result<Value, String> {
    let built = build_allowed(trust, rules);
    match built.refused.as_slice() {
        [] => Ok(built.document),
        all => Err(all.join("; ")),
    }
}

/// The trust policy of the parts the rules allow (fail closed: a refused intent's
/// statement is left out, a refused raw document entirely; with nothing left, no one is
/// trusted), and the refusals.
pub fn build_allowed(trust: &RoleTrust, rules: &TrustRules<'_>) -> Built {
    let mut refused = Vec::new();
    let mut statements = match &trust.document {
        Some(document) => match check(document, rules).and_then(|()| statements_of(document)) {
            Ok(statements) => statements,
            Err(e) => {
                refused.push(e);
                Vec::new()
            }
        },
        None => from_intents(trust, rules, &mut refused),
    };
    if let Some(operator) = rules.session_principal {
        statements.push(json!({
            "Effect": "Allow",
            "Principal": {"AWS": operator},
            "Action": "sts:AssumeRole"
        }));
    }
    let document = if statements.is_empty() {
        if refused.is_empty() {
            refused.push(
                "trust names no one who may assume the role: set serviceAccounts, podIdentity, awsPrincipals or a document"
                    .into(),
            );
        }
        nobody()
    } else {
        json!({"Version": VERSION, "Statement": statements})
    };
    Built { document, refused }
}

fn from_intents(
    trust: &RoleTrust,
    rules: &TrustRules<'_>,
    refused: &mut Vec<String>,
) -> Vec<Value> {
    let mut statements = Vec::new();
    if !trust.service_accounts.is_empty() {
        match rules.oidc("trust.serviceAccounts") {
            Ok((provider, issuer)) => {
                let subjects: Vec<String> = trust
                    .service_accounts
                    .iter()
                    .map(|sa| subject(rules.namespace, &sa.name))
                    .collect();
                statements.push(json!({
                    "Effect": "Allow",
                    "Principal": {"Federated": provider},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {
                        format!("{issuer}:sub"): subjects,
                        format!("{issuer}:aud"): "sts.amazonaws.com",
                    }}
                }));
            }
            Err(e) => refused.push(e),
        }
    }
    if let Some(pods) = &trust.pod_identity {
        // Always the namespace: a tenant's role never trusts pods of other namespaces.
        let mut equals = Map::new();
        equals.insert(NAMESPACE_TAG.into(), json!(rules.namespace));
        if !pods.service_accounts.is_empty() {
            let names: Vec<&str> = pods
                .service_accounts
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            equals.insert(SERVICE_ACCOUNT_TAG.into(), json!(names));
        }
        statements.push(json!({
            "Effect": "Allow",
            "Principal": {"Service": POD_IDENTITY_SERVICE},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": equals}
        }));
    }
    for (i, p) in trust.aws_principals.iter().enumerate() {
        match aws_statement(p, rules, &format!("trust.awsPrincipals[{i}].principal")) {
            Ok(statement) => statements.push(statement),
            Err(e) => refused.push(e),
        }
    }
    statements
}

fn aws_statement(
    p: &AwsPrincipalTrust,
    rules: &TrustRules<'_>,
    field: &str,
) -> Result<Value, String> {
    let arn = principal_arn(&p.principal, rules.partition);
    rules.check_aws_principal(&arn, field)?;
    let mut statement = json!({
        "Effect": "Allow",
        "Principal": {"AWS": arn},
        "Action": "sts:AssumeRole"
    });
    let mut condition = Map::new();
    if let Some(id) = &p.external_id {
        condition.insert("StringEquals".into(), json!({"sts:ExternalId": id}));
    }
    if p.require_mfa == Some(true) {
        condition.insert("Bool".into(), json!({"aws:MultiFactorAuthPresent": "true"}));
    }
    if !condition.is_empty() {
        statement["Condition"] = Value::Object(condition);
    }
    Ok(statement)
}

/// The statements of a document (IAM accepts one statement as an object).
fn statements_of(document: &Value) -> Result<Vec<Value>, String> {
    match document.get("Statement") {
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(one @ Value::Object(_)) => Ok(vec![one.clone()]),
        _ => Err("trust.document has no Statement list: write {\"Version\": \"2012-10-17\", \"Statement\": [...]}".into()),
    }
}

/// A string or a list of strings, as IAM allows for principals, actions and values.
fn strings<'v>(value: &'v Value, what: &str) -> Result<Vec<&'v str>, String> {
    match value {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| format!("{what} must be strings, found {v}"))
            })
            .collect(),
        other => Err(format!(
            "{what} must be a string or a list of strings, found {other}"
        )),
    }
}

/// Checks a raw trust document against the rules; the first refusal, naming the statement.
pub fn check(document: &Value, rules: &TrustRules<'_>) -> Result<(), String> {
    let map = document
        .as_object()
        .ok_or("trust.document must be an object with Version and Statement")?;
    for key in map.keys() {
        if !matches!(key.as_str(), "Version" | "Statement" | "Id") {
            return Err(format!(
                "trust.document has an unknown key {key:?}: only Version, Id and Statement are understood"
            ));
        }
    }
    for (i, statement) in statements_of(document)?.iter().enumerate() {
        check_statement(statement, rules)
            .map_err(|e| format!("trust.document Statement[{i}]: {e}"))?;
    }
    Ok(())
}

fn check_statement(statement: &Value, rules: &TrustRules<'_>) -> Result<(), String> {
    let map = statement
        .as_object()
        .ok_or("a statement must be an object")?;
    for key in map.keys() {
        if !matches!(
            key.as_str(),
            "Sid" | "Effect" | "Principal" | "Action" | "Condition"
        ) {
            return Err(format!(
                "{key} is not understood in a trust statement (only Sid, Effect, Principal, Action and Condition are): rewrite it without {key}"
            ));
        }
    }
    match map.get("Effect").and_then(Value::as_str) {
        // A Deny only narrows who may assume the role.
        Some("Deny") => return Ok(()),
        Some("Allow") => {}
        _ => return Err("Effect must be Allow or Deny".into()),
    }
    let principal = map
        .get("Principal")
        .and_then(Value::as_object)
        .ok_or("Principal must be an object naming Federated, Service or AWS principals (\"*\" is refused)")?;
    if principal.len() != 1 {
        return Err(
            "Principal must name exactly one kind (Federated, Service or AWS): split the statement"
                .into(),
        );
    }
    let actions = strings(map.get("Action").ok_or("Action is missing")?, "Action")?;
    let condition = match map.get("Condition") {
        None => Map::new(),
        Some(Value::Object(c)) => c.clone(),
        Some(_) => return Err("Condition must be an object".into()),
    };
    let (kind, values) = principal.iter().next().ok_or("Principal is empty")?;
    let values = strings(values, &format!("Principal.{kind}"))?;
    match kind.as_str() {
        "Federated" => check_federated(&values, &actions, &condition, rules),
        "Service" => check_service(&values, &actions, &condition, rules),
        "AWS" => {
            only_actions(
                &actions,
                &["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
            )?;
            for value in values {
                let arn = principal_arn(value, rules.partition);
                rules.check_aws_principal(&arn, "Principal.AWS")?;
            }
            Ok(())
        }
        other => Err(format!(
            "principal kind {other} is not allowed in a tenant's trust policy (only Federated through the cluster's OIDC provider, Service {POD_IDENTITY_SERVICE} and allowed AWS principals)"
        )),
    }
}

fn only_actions(actions: &[&str], allowed: &[&str]) -> Result<(), String> {
    match actions.iter().find(|a| !allowed.contains(a)) {
        Some(a) => Err(format!(
            "Action {a} is not allowed here (only {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

/// IRSA: only the configured provider, with `sub` conditions that reach nothing but this
/// namespace's ServiceAccounts.
fn check_federated(
    providers: &[&str],
    actions: &[&str],
    condition: &Map<String, Value>,
    rules: &TrustRules<'_>,
) -> Result<(), String> {
    let (provider, issuer) = rules.oidc("a Federated principal")?;
    if let Some(other) = providers.iter().find(|p| **p != provider) {
        return Err(format!(
            "Federated principal {other} is not the cluster's OIDC provider {provider}"
        ));
    }
    only_actions(actions, &["sts:AssumeRoleWithWebIdentity"])?;
    let sub = format!("{issuer}:sub");
    let aud = format!("{issuer}:aud");
    let prefix = format!("system:serviceaccount:{}:", rules.namespace);
    let mut restricted = false;
    for (operator, keys) in condition {
        let keys = keys
            .as_object()
            .ok_or_else(|| format!("Condition {operator} must be an object"))?;
        for (key, values) in keys {
            if *key == aud {
                continue;
            }
            if *key != sub {
                return Err(format!(
                    "condition key {key} is not understood for the OIDC provider (only {sub} and {aud})"
                ));
            }
            if !matches!(operator.as_str(), "StringEquals" | "StringLike") {
                return Err(format!(
                    "{sub} must be restricted with StringEquals or StringLike, not {operator}"
                ));
            }
            for value in strings(values, &sub)? {
                let rest = value.strip_prefix(&prefix);
                // Past the namespace only a ServiceAccount name: no further segment, and
                // with StringLike the wildcards stay within this namespace's names.
                if rest.is_none_or(|r| r.is_empty() || r.contains(':')) {
                    return Err(format!(
                        "{sub} value {value:?} reaches beyond namespace {}: use {prefix}<serviceaccount>",
                        rules.namespace
                    ));
                }
            }
            restricted = true;
        }
    }
    if !restricted {
        return Err(format!(
            "a Federated principal needs a StringEquals condition on {sub} naming ServiceAccounts of namespace {} ({prefix}<serviceaccount>)",
            rules.namespace
        ));
    }
    Ok(())
}

/// EKS Pod Identity: only with the namespace's session tag.
fn check_service(
    services: &[&str],
    actions: &[&str],
    condition: &Map<String, Value>,
    rules: &TrustRules<'_>,
) -> Result<(), String> {
    if let Some(other) = services.iter().find(|s| **s != POD_IDENTITY_SERVICE) {
        return Err(format!(
            "Service principal {other} is not allowed in a tenant's trust policy (only {POD_IDENTITY_SERVICE})"
        ));
    }
    only_actions(actions, &["sts:AssumeRole", "sts:TagSession"])?;
    let mut namespaced = false;
    for (operator, keys) in condition {
        let keys = keys
            .as_object()
            .ok_or_else(|| format!("Condition {operator} must be an object"))?;
        for (key, values) in keys {
            if key == NAMESPACE_TAG {
                let values = strings(values, key)?;
                if operator != "StringEquals" || values != [rules.namespace] {
                    return Err(format!(
                        "{NAMESPACE_TAG} must be StringEquals {:?}, this namespace",
                        rules.namespace
                    ));
                }
                namespaced = true;
            } else if key != SERVICE_ACCOUNT_TAG && !CLUSTER_TAGS.contains(&key.as_str()) {
                return Err(format!(
                    "condition key {key} is not understood for {POD_IDENTITY_SERVICE}"
                ));
            }
        }
    }
    if !namespaced {
        return Err(format!(
            "{POD_IDENTITY_SERVICE} needs the condition StringEquals {NAMESPACE_TAG} = {:?}",
            rules.namespace
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{LocalObjectRef, PodIdentityTrust};

    const OIDC: &str =
        "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC123";
    const ISSUER: &str = "oidc.eks.eu-west-1.amazonaws.com/id/ABC123";

    fn globs(patterns: &[&str]) -> Globs {
        Globs::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn rules(allowed: &Globs) -> TrustRules<'_> {
        TrustRules {
            namespace: "team-a",
            partition: "aws",
            oidc_provider_arn: Some(OIDC),
            session_principal: None,
            allowed,
            source: "IamTenancyPolicy t",
        }
    }

    fn sa(name: &str) -> LocalObjectRef {
        LocalObjectRef { name: name.into() }
    }

    fn trust(value: Value) -> RoleTrust {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn issuer_is_what_follows_oidc_provider() {
        assert_eq!(issuer(OIDC), Some(ISSUER));
        assert_eq!(issuer("arn:aws:iam::1:role/x"), None);
        assert_eq!(
            principal_arn("444455556666", "aws-cn"),
            "arn:aws-cn:iam::444455556666:root"
        );
    }

    #[test]
    fn the_callers_role_is_named_without_its_session() {
        assert_eq!(
            principal_of_caller("arn:aws:sts::111122223333:assumed-role/iam-operator/i-0abc"),
            "arn:aws:iam::111122223333:role/iam-operator"
        );
        assert_eq!(
            principal_of_caller("arn:aws-cn:sts::111122223333:assumed-role/op/s"),
            "arn:aws-cn:iam::111122223333:role/op"
        );
        assert_eq!(
            principal_of_caller("arn:aws:iam::111122223333:user/ops/operator"),
            "arn:aws:iam::111122223333:user/ops/operator"
        );
    }

    #[test]
    fn service_accounts_build_the_irsa_statement_exactly() {
        let allowed = Globs::default();
        let t = RoleTrust {
            service_accounts: vec![sa("app"), sa("worker")],
            ..trust(json!({}))
        };
        let doc = build(&t, &rules(&allowed)).unwrap();
        assert_eq!(
            doc,
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Federated": OIDC},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {
                        format!("{ISSUER}:sub"): ["system:serviceaccount:team-a:app", "system:serviceaccount:team-a:worker"],
                        format!("{ISSUER}:aud"): "sts.amazonaws.com"
                    }}
                }]
            })
        );
        // What the builder makes, the checker accepts.
        assert_eq!(check(&doc, &rules(&allowed)), Ok(()));
    }

    #[test]
    fn service_accounts_without_the_oidc_flag_are_refused() {
        let allowed = Globs::default();
        let mut r = rules(&allowed);
        r.oidc_provider_arn = None;
        let t = RoleTrust {
            service_accounts: vec![sa("app")],
            ..trust(json!({}))
        };
        let err = build(&t, &r).unwrap_err();
        assert!(err.contains("--oidc-provider-arn"), "{err}");
    }

    #[test]
    fn pod_identity_is_always_restricted_to_the_namespace() {
        let allowed = Globs::default();
        let t = RoleTrust {
            pod_identity: Some(PodIdentityTrust {
                service_accounts: vec![],
            }),
            ..trust(json!({}))
        };
        assert_eq!(
            build(&t, &rules(&allowed)).unwrap()["Statement"],
            json!([{
                "Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {"StringEquals": {"aws:RequestTag/kubernetes-namespace": "team-a"}}
            }])
        );
        let t = RoleTrust {
            pod_identity: Some(PodIdentityTrust {
                service_accounts: vec![sa("app")],
            }),
            ..trust(json!({}))
        };
        let doc = build(&t, &rules(&allowed)).unwrap();
        assert_eq!(
            doc["Statement"][0]["Condition"],
            json!({"StringEquals": {
                "aws:RequestTag/kubernetes-namespace": "team-a",
                "aws:RequestTag/kubernetes-service-account": ["app"]
            }})
        );
        assert_eq!(check(&doc, &rules(&allowed)), Ok(()));
    }

    #[test]
    fn aws_principals_must_be_allowed_and_carry_their_conditions() {
        let none = Globs::default();
        let t = trust(json!({"awsPrincipals": [
            {"principal": "arn:aws:iam::444455556666:role/ci-deploy", "externalId": "xyz", "requireMfa": true},
            {"principal": "444455556666"}
        ]}));
        let err = build(&t, &rules(&none)).unwrap_err();
        assert!(
            err.contains("trust.awsPrincipals[0].principal")
                && err.contains("allowedTrustPrincipals of IamTenancyPolicy t"),
            "{err}"
        );
        let some = globs(&["arn:aws:iam::444455556666:role/ci-*"]);
        let err = build(&t, &rules(&some)).unwrap_err();
        assert!(
            err.contains("trust.awsPrincipals[1].principal")
                && err.contains("arn:aws:iam::444455556666:root"),
            "{err}"
        );
        let both = globs(&[
            "arn:aws:iam::444455556666:role/ci-*",
            "arn:aws:iam::444455556666:root",
        ]);
        let doc = build(&t, &rules(&both)).unwrap();
        assert_eq!(
            doc["Statement"],
            json!([
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::444455556666:role/ci-deploy"},
                    "Action": "sts:AssumeRole",
                    "Condition": {
                        "StringEquals": {"sts:ExternalId": "xyz"},
                        "Bool": {"aws:MultiFactorAuthPresent": "true"}
                    }
                },
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
                    "Action": "sts:AssumeRole"
                }
            ])
        );
        assert_eq!(check(&doc, &rules(&both)), Ok(()));
    }

    #[test]
    fn refused_parts_are_left_out_and_nothing_left_trusts_no_one() {
        let allowed = globs(&["arn:aws:iam::444455556666:role/ci-*"]);
        let t = trust(json!({"awsPrincipals": [
            {"principal": "arn:aws:iam::444455556666:role/ci-deploy"},
            {"principal": "arn:aws:iam::999999999999:root"}
        ]}));
        let built = build_allowed(&t, &rules(&allowed));
        assert_eq!(
            built.document["Statement"],
            json!([{
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::444455556666:role/ci-deploy"},
                "Action": "sts:AssumeRole"
            }])
        );
        assert_eq!(built.refused.len(), 1);
        assert!(
            built.refused[0].contains("trust.awsPrincipals[1]"),
            "{:?}",
            built.refused
        );
        let none = Globs::default();
        let built = build_allowed(&t, &rules(&none));
        assert_eq!(built.document, nobody());
        assert_eq!(built.refused.len(), 2);
        let raw = trust(
            json!({"document": {"Statement": {"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}}}),
        );
        let built = build_allowed(&raw, &rules(&none));
        assert_eq!(built.document, nobody());
        assert_eq!(built.refused.len(), 1);
    }

    #[test]
    fn session_credentials_add_the_operators_statement() {
        let allowed = Globs::default();
        let mut r = rules(&allowed);
        r.session_principal = Some("arn:aws:iam::111122223333:role/iam-operator");
        let t = trust(json!({"podIdentity": {}}));
        let doc = build(&t, &r).unwrap();
        assert_eq!(
            doc["Statement"][1],
            json!({
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:role/iam-operator"},
                "Action": "sts:AssumeRole"
            })
        );
        // Also after a raw document.
        let raw = build(
            &trust(json!({"document": {"Version": "2012-10-17", "Statement": []}})),
            &r,
        )
        .unwrap();
        assert_eq!(raw["Statement"].as_array().unwrap().len(), 1);
    }

    fn irsa_doc(sub: Value, operator: &str) -> Value {
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": OIDC},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {operator: {format!("{ISSUER}:sub"): sub}}
        }]})
    }

    #[test]
    fn a_raw_document_cannot_reach_another_namespace() {
        let allowed = Globs::default();
        let r = rules(&allowed);
        assert_eq!(
            check(
                &irsa_doc(json!("system:serviceaccount:team-a:app"), "StringEquals"),
                &r
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &irsa_doc(json!("system:serviceaccount:team-a:*"), "StringLike"),
                &r
            ),
            Ok(())
        );
        for (sub, op) in [
            (json!("system:serviceaccount:team-b:app"), "StringEquals"),
            (
                json!([
                    "system:serviceaccount:team-a:app",
                    "system:serviceaccount:team-b:app"
                ]),
                "StringEquals",
            ),
            (json!("system:serviceaccount:team-*"), "StringLike"),
            (json!("system:serviceaccount:*"), "StringLike"),
            (json!("*"), "StringLike"),
            (json!("system:serviceaccount:team-a:"), "StringEquals"),
        ] {
            let err = check(&irsa_doc(sub.clone(), op), &r).unwrap_err();
            assert!(
                err.contains("reaches beyond namespace team-a"),
                "{sub}: {err}"
            );
        }
        // Negated or unknown operators on sub, and no sub at all, are refused.
        let err = check(
            &irsa_doc(json!("system:serviceaccount:team-b:app"), "StringNotEquals"),
            &r,
        )
        .unwrap_err();
        assert!(err.contains("StringEquals or StringLike"), "{err}");
        let no_sub = json!({"Statement": {"Effect": "Allow", "Principal": {"Federated": OIDC}, "Action": "sts:AssumeRoleWithWebIdentity"}});
        assert!(
            check(&no_sub, &r)
                .unwrap_err()
                .contains("needs a StringEquals")
        );
        // Another provider.
        let other = json!({"Statement": {"Effect": "Allow", "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/x"}, "Action": "sts:AssumeRoleWithWebIdentity", "Condition": {"StringEquals": {format!("{ISSUER}:sub"): "system:serviceaccount:team-a:app"}}}});
        assert!(
            check(&other, &r)
                .unwrap_err()
                .contains("not the cluster's OIDC provider")
        );
    }

    #[test]
    fn a_raw_document_fails_closed() {
        let allowed = globs(&["arn:aws:iam::444455556666:role/ci-*"]);
        let r = rules(&allowed);
        let cases = [
            (
                json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}]}),
                "Principal must be an object",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}),
                "not in allowedTrustPrincipals",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"}, "Action": "sts:AssumeRole"}]}),
                "not in allowedTrustPrincipals",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": "x"}, "Action": "sts:AssumeRole"}]}),
                "NotPrincipal is not understood",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
                "Service principal ec2.amazonaws.com",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": ["sts:AssumeRole", "sts:TagSession"]}]}),
                "needs the condition",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"aws:RequestTag/kubernetes-namespace": "team-b"}}}]}),
                "this namespace",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:*", "Condition": {"StringEquals": {"aws:RequestTag/kubernetes-namespace": "team-a"}}}]}),
                "Action sts:* is not allowed",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Principal": {"SAML": "arn:aws:iam::1:saml-provider/x"}, "Action": "sts:AssumeRoleWithSAML"}]}),
                "principal kind SAML",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::444455556666:role/ci-a", "Service": "pods.eks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
                "exactly one kind",
            ),
            (json!({"Policy": 1, "Statement": []}), "unknown key"),
            (
                json!({"Statement": [{"Effect": "Maybe", "Principal": {"AWS": "x"}, "Action": "sts:AssumeRole"}]}),
                "Effect must be",
            ),
        ];
        for (doc, expected) in cases {
            let err = check(&doc, &r).unwrap_err();
            assert!(err.contains(expected), "{doc}: {err}");
        }
        let ok = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::444455556666:role/ci-a"]}, "Action": ["sts:AssumeRole", "sts:TagSession"], "Condition": {"StringEquals": {"sts:ExternalId": "x"}}},
            {"Effect": "Deny", "Principal": "*", "Action": "*"}
        ]});
        assert_eq!(check(&ok, &r), Ok(()));
    }
}
