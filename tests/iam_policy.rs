//! The delegated form of the operator's IAM policy (`docs/operator-iam-policy-delegated.json`)
//! against the IAM emulator with AWS authentication and authorization enforced (moto's
//! `INITIAL_NO_AUTH_ACTION_COUNT`), and the operator itself holding it.
//!
//! What moto 5.2.5 evaluates of an identity policy (`moto/iam/access_control.py`): it
//! authorizes every IAM call on users, groups and policies against the resource `"*"` (only
//! role calls get the role's ARN), and it passes no request context to the conditions, so
//! every `Condition` of any operator counts as satisfied. Explicit `Deny` does win over
//! `Allow`, across statements and across the principal's policies. Hence, for each part of
//! the delegated policy (each row is asserted by a test below; "AWS" is what IAM's
//! documented evaluation gives, which the emulator cannot confirm):
//!
//! | part of the policy | AWS | emulator | enforced by the emulator? |
//! |---|---|---|---|
//! | explicit `Deny iam:DeleteUserPermissionsBoundary` on `*`, even with `IAMFullAccess` | AccessDenied | AccessDenied | **yes** |
//! | `Deny` attaching `AdministratorAccess` (`ArnLike iam:PolicyARN`) on `*`, even with `IAMFullAccess` | AccessDenied | AccessDenied | **yes**, but only because the condition is not evaluated (next row) |
//! | … attaching any other policy (`ReadOnlyAccess`) | allowed | AccessDenied | over-enforced: the `Deny` hits every attach |
//! | `CreateUser` without `iam:PermissionsBoundary` = the boundary (`StringEquals`) | AccessDenied | allowed | **no**: condition not evaluated |
//! | `PutUserPermissionsBoundary` with another boundary | AccessDenied | allowed | **no**: condition not evaluated |
//! | `PutUserPolicy` on a user without the boundary (`StringEquals`) | AccessDenied | allowed | **no**: condition not evaluated |
//! | `Deny CreatePolicyVersion` on the boundary policy's ARN | AccessDenied | allowed (with an `Allow` on `*`) | **no**: a `Deny` scoped to an ARN never matches `*` |
//! | `Allow` scoped to `user/k8s/*`: `CreateUser` under `/k8s/` | allowed | AccessDenied | **no**: a scoped `Allow` never matches `*` |
//! | … `CreateUser` outside `/k8s/` | AccessDenied | AccessDenied (for the wrong reason) / allowed once widened to `*` | **no** |
//! | the boundary caps the user it is set on | AccessDenied | allowed | **no**: moto ignores permissions boundaries |
//! | roles: `Deny iam:DeleteRolePermissionsBoundary` on `*`, even with `IAMFullAccess` | AccessDenied | AccessDenied | **yes** |
//! | role calls naming an existing role under `role/k8s/*` (`TagRole`, `UpdateAssumeRolePolicy`, `PutRolePolicy`, `DeleteRolePolicy`) | allowed | allowed | **yes**: moto authorizes a call naming an existing role against the role's ARN |
//! | … the same calls on a role under `/other/` | AccessDenied | AccessDenied | **yes** |
//! | `sts:AssumeRole` on a role under `/k8s/` trusting the operator / under `/other/` | allowed / AccessDenied | allowed / AccessDenied | **yes**: the emulator authorizes AssumeRole against the role's ARN and evaluates its trust |
//! | `GetRole` on `role/*` (any role, by name) | allowed | allowed | **yes** |
//! | `CreateRole` under `/k8s/` with the boundary | allowed | AccessDenied | **no**: the role does not exist yet, so moto authorizes against `*` |
//! | `CreateRole`/`PutRolePermissionsBoundary`/`AttachRolePolicy`/`PutRolePolicy` without the boundary (`StringEquals`) | AccessDenied | allowed | **no**: condition not evaluated |
//! | `Deny` attaching `AdministratorAccess` to a role | AccessDenied | AccessDenied (every attach to a role) | over-enforced, as for users |
//! | `AddRoleToInstanceProfile` on `instance-profile/k8s/*` (+ `iam:PassRole` on `role/k8s/*`) | allowed | AccessDenied | **no**: moto authorizes it against the role's ARN and never checks `iam:PassRole` |
//!
//! Not enforced by the emulator: the `iam:PermissionsBoundary` and `iam:PolicyARN`
//! conditions, the `Deny` on the boundary policy's ARN, the path-prefix scoping of users,
//! groups, policies, instance profiles and of `CreateRole`, `iam:PassRole`, and the
//! boundary itself; verify them against AWS with the IAM policy simulator (`aws iam simulate-principal-policy` with `--context-entries` for
//! `iam:PermissionsBoundary` and `iam:PolicyARN`). To run the operator under the emulator
//! the tests use the policy's "emulator form": every `Allow` widened to `Resource: "*"`
//! (as `tests/credentials.rs` does for the general policy) and the conditioned `Deny`
//! dropped (it would refuse every attach); the checks above show what that leaves out.

mod support;

use iam_operator::api::{IamRole, IamUser};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};
use std::future::Future;
use std::time::Duration;
use support::cluster::{ControlPlane, Operator};
use support::emulator::Emulator;

const TIMEOUT: Duration = Duration::from_secs(180);
const ACCOUNT: &str = "123456789012";
/// `${PathPrefix}` of the policy: the operator's `--iam-path-prefix /k8s/` without its
/// leading slash.
const PATH_PREFIX: &str = "k8s/";
/// `${BoundaryArn}`: the boundary the administrator created, here under the prefix, so that
/// only the `NoBoundaryPolicyEdit` Deny keeps the operator from changing it.
const BOUNDARY: &str = "arn:aws:iam::123456789012:policy/k8s/tenant-boundary";
const ADMIN_ACCESS: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
const IAM_FULL_ACCESS: &str = "arn:aws:iam::aws:policy/IAMFullAccess";
const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
/// The cluster's OIDC provider, for the trust of ServiceAccounts.
const OIDC_PROVIDER: &str =
    "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/DELEGATED";

/// Polls `f` until it returns `Some`, failing the test with `what` after `TIMEOUT`.
async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    support::eventually(what, TIMEOUT, f).await
}

fn sdk_config_with(url: &str, creds: &(String, String)) -> aws_config::SdkConfig {
    support::sdk_config(url)
        .into_builder()
        .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
            aws_sdk_iam::config::Credentials::new(&creds.0, &creds.1, None, None, "tests"),
        ))
        .build()
}

/// "ok", or the IAM error code of a failed call.
fn outcome<T, E>(
    result: Result<T, aws_sdk_iam::error::SdkError<E, aws_sdk_iam::config::http::HttpResponse>>,
) -> String
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::fmt::Debug,
{
    match result {
        Ok(_) => "ok".into(),
        Err(e) => support::code(&e).unwrap_or_else(|| format!("{e:?}")),
    }
}

/// The delegated policy with its placeholders filled for this account, prefix and boundary.
fn delegated() -> serde_json::Value {
    let text = std::fs::read_to_string(
        support::emulator::repo_root().join("docs/operator-iam-policy-delegated.json"),
    )
    .unwrap();
    let filled = text
        .replace("${Account}", ACCOUNT)
        .replace("${PathPrefix}", PATH_PREFIX)
        .replace("${BoundaryArn}", BOUNDARY);
    assert!(
        !filled.contains("${"),
        "an unknown placeholder is left: {filled}"
    );
    serde_json::from_str(&filled).unwrap()
}

fn statements(policy: &mut serde_json::Value) -> &mut Vec<serde_json::Value> {
    policy["Statement"].as_array_mut().unwrap()
}

/// Every `Allow` on `Resource: "*"` (moto authorizes against `*`), each `Deny` as it is.
fn allows_widened(mut policy: serde_json::Value) -> serde_json::Value {
    for s in statements(&mut policy) {
        if s["Effect"] == "Allow" {
            s["Resource"] = "*".into();
        }
    }
    policy
}

/// What the emulator can run the operator with: the `Allow`s widened, and the conditioned
/// `Deny`s dropped (moto takes their condition as met, so they would deny every call).
fn emulator_form(policy: serde_json::Value) -> serde_json::Value {
    let mut policy = allows_widened(policy);
    statements(&mut policy).retain(|s| s["Effect"] == "Allow" || s.get("Condition").is_none());
    policy
}

/// An emulator enforcing AWS authentication and authorization, with an administrator and
/// the boundary policy.
struct World {
    emu: Emulator,
    /// Signs as `admin` (AdministratorAccess).
    admin: aws_sdk_iam::Client,
}

impl World {
    async fn start() -> Self {
        let emu = Emulator::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "3")]);
        let anon = aws_sdk_iam::Client::new(&support::sdk_config(&emu.url));
        anon.create_user().user_name("admin").send().await.unwrap(); // free request 1
        anon.attach_user_policy() // free request 2
            .user_name("admin")
            .policy_arn(ADMIN_ACCESS)
            .send()
            .await
            .unwrap();
        let key = anon // free request 3
            .create_access_key()
            .user_name("admin")
            .send()
            .await
            .unwrap();
        let key = key.access_key().unwrap();
        let creds = (
            key.access_key_id().to_string(),
            key.secret_access_key().to_string(),
        );
        let err = anon.list_users().send().await.unwrap_err();
        assert_eq!(
            support::code(&err).as_deref(),
            Some("InvalidClientTokenId"),
            "authentication is enforced from now on"
        );
        let admin = aws_sdk_iam::Client::new(&sdk_config_with(&emu.url, &creds));
        let boundary = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": ["s3:GetObject", "iam:ChangePassword", "iam:GetAccountPasswordPolicy"],
                "Resource": "*"
            }]
        });
        let out = admin
            .create_policy()
            .policy_name("tenant-boundary")
            .path("/k8s/")
            .policy_document(boundary.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(out.policy().unwrap().arn(), Some(BOUNDARY));
        World { emu, admin }
    }

    /// A new IAM user whose only permissions are `document` and the `managed` policies; its
    /// key pair. The document is a customer-managed policy, as the operator's role would get
    /// it: the delegated policy is over the 2,048 characters IAM allows a user's inline
    /// policies. Sent compact: moto's signature check trips over newlines.
    async fn principal(
        &self,
        name: &str,
        document: &serde_json::Value,
        managed: &[&str],
    ) -> (String, String) {
        self.admin
            .create_user()
            .user_name(name)
            .send()
            .await
            .unwrap();
        let out = self
            .admin
            .create_policy()
            .policy_name(format!("{name}-policy"))
            .policy_document(document.to_string())
            .send()
            .await
            .unwrap();
        let own = out.policy().unwrap().arn().unwrap().to_string();
        self.admin
            .attach_user_policy()
            .user_name(name)
            .policy_arn(&own)
            .send()
            .await
            .unwrap();
        for arn in managed {
            self.admin
                .attach_user_policy()
                .user_name(name)
                .policy_arn(*arn)
                .send()
                .await
                .unwrap();
        }
        let out = self
            .admin
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .unwrap();
        let key = out.access_key().unwrap();
        (
            key.access_key_id().to_string(),
            key.secret_access_key().to_string(),
        )
    }

    async fn client(
        &self,
        name: &str,
        document: &serde_json::Value,
        managed: &[&str],
    ) -> aws_sdk_iam::Client {
        let creds = self.principal(name, document, managed).await;
        aws_sdk_iam::Client::new(&sdk_config_with(&self.emu.url, &creds))
    }

    /// A user under the prefix, created by the administrator with the boundary.
    async fn bounded_user(&self, name: &str) {
        self.admin
            .create_user()
            .user_name(name)
            .path("/k8s/")
            .permissions_boundary(BOUNDARY)
            .send()
            .await
            .unwrap();
    }

    /// A role under `path`, created by the administrator with the boundary, trusting the
    /// user `trusted` of this account.
    async fn bounded_role(&self, name: &str, path: &str, trusted: &str) -> String {
        let trust = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/{trusted}")},
                "Action": "sts:AssumeRole"
            }]
        });
        let out = self
            .admin
            .create_role()
            .role_name(name)
            .path(path)
            .assume_role_policy_document(trust.to_string())
            .permissions_boundary(BOUNDARY)
            .send()
            .await
            .unwrap();
        out.role().unwrap().arn().to_string()
    }

    async fn role_boundary_of(&self, name: &str) -> Option<String> {
        let out = self.admin.get_role().role_name(name).send().await.unwrap();
        out.role()
            .and_then(|r| r.permissions_boundary())
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string)
    }

    async fn boundary_of(&self, name: &str) -> Option<String> {
        let out = self.admin.get_user().user_name(name).send().await.unwrap();
        out.user()
            .and_then(|u| u.permissions_boundary())
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string)
    }
}

/// A new version of the boundary that would widen it.
const EVERYTHING: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// The policy as shipped (placeholders filled): moto checks every IAM call against the
/// resource `*`, which no statement scoped to `user/k8s/*` matches, so the operator may do
/// nothing there, inside the prefix or not; only the statements on `*` work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_shipped_the_emulator_matches_no_scoped_statement() {
    let w = World::start().await;
    let iam = w.client("operator", &delegated(), &[]).await;
    w.bounded_user("k8s-dev").await;

    // AWS: allowed (the resource is user/k8s/dev and the boundary is the required one).
    let inside = iam
        .create_user()
        .user_name("dev")
        .path("/k8s/")
        .permissions_boundary(BOUNDARY)
        .send()
        .await;
    assert_eq!(
        outcome(inside),
        "AccessDenied",
        "a scoped Allow never matches in moto"
    );
    // AWS: AccessDenied (user/other/dev is outside the prefix); moto: the same, for the
    // reason above.
    let outside = iam
        .create_user()
        .user_name("dev")
        .path("/other/")
        .permissions_boundary(BOUNDARY)
        .send()
        .await;
    assert_eq!(outcome(outside), "AccessDenied");
    // GetUser is granted on user/*, which does not match `*` either.
    assert_eq!(
        outcome(iam.get_user().user_name("k8s-dev").send().await),
        "AccessDenied"
    );
    // The statements on `*` are matched.
    assert_eq!(
        outcome(iam.get_account_authorization_details().send().await),
        "ok"
    );
    assert_eq!(
        outcome(
            iam.delete_user_permissions_boundary()
                .user_name("k8s-dev")
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(w.boundary_of("k8s-dev").await.as_deref(), Some(BOUNDARY));
}

/// With every `Allow` widened to `*` (what the operator runs with here), the conditions are
/// not evaluated: the `StringEquals iam:PermissionsBoundary` guards let everything through,
/// and the `ArnLike iam:PolicyARN` Deny refuses every attach. The Deny scoped to the
/// boundary's ARN never applies; the Deny on `*` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_are_not_evaluated_by_the_emulator() {
    let w = World::start().await;
    let iam = w
        .client("operator", &allows_widened(delegated()), &[])
        .await;

    // Enforced: the explicit Deny on `*`.
    w.bounded_user("bounded").await;
    assert_eq!(
        outcome(
            iam.delete_user_permissions_boundary()
                .user_name("bounded")
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(w.boundary_of("bounded").await.as_deref(), Some(BOUNDARY));

    // With the boundary: allowed, as in AWS.
    let with = iam
        .create_user()
        .user_name("with-boundary")
        .path("/k8s/")
        .permissions_boundary(BOUNDARY)
        .send()
        .await;
    assert_eq!(outcome(with), "ok");
    // Not enforced: without it AWS answers AccessDenied (StringEquals on a missing key).
    let without = iam
        .create_user()
        .user_name("without-boundary")
        .path("/k8s/")
        .send()
        .await;
    assert_eq!(
        outcome(without),
        "ok",
        "moto does not evaluate StringEquals here"
    );
    // Not enforced: another boundary.
    let other = iam
        .put_user_permissions_boundary()
        .user_name("with-boundary")
        .permissions_boundary("arn:aws:iam::aws:policy/PowerUserAccess")
        .send()
        .await;
    assert_eq!(
        outcome(other),
        "ok",
        "moto does not evaluate StringEquals here"
    );
    // Not enforced: a grant to a user without the boundary.
    let grant = iam
        .put_user_policy()
        .user_name("without-boundary")
        .policy_name("grant")
        .policy_document(EVERYTHING)
        .send()
        .await;
    assert_eq!(
        outcome(grant),
        "ok",
        "moto does not evaluate StringEquals here"
    );
    // Not enforced: a user outside the prefix (the Allow is on `*` here).
    let outside = iam
        .create_user()
        .user_name("outside")
        .path("/other/")
        .permissions_boundary(BOUNDARY)
        .send()
        .await;
    assert_eq!(outcome(outside), "ok");

    // Enforced, but only because the ArnLike condition is taken as met:
    let admin = iam
        .attach_user_policy()
        .user_name("with-boundary")
        .policy_arn(ADMIN_ACCESS)
        .send()
        .await;
    assert_eq!(outcome(admin), "AccessDenied");
    // … so a harmless attach, which AWS allows, is refused too.
    let harmless = iam
        .attach_user_policy()
        .user_name("bounded")
        .policy_arn(READ_ONLY)
        .send()
        .await;
    assert_eq!(
        outcome(harmless),
        "AccessDenied",
        "moto does not evaluate ArnLike"
    );

    // Not enforced: the Deny on the boundary's ARN (AWS: AccessDenied).
    let widen = iam
        .create_policy_version()
        .policy_arn(BOUNDARY)
        .policy_document(EVERYTHING)
        .send()
        .await;
    assert_eq!(
        outcome(widen),
        "ok",
        "a Deny scoped to an ARN never matches in moto"
    );
}

/// The Deny statements against a principal that also holds IAMFullAccess: an explicit Deny
/// on `*` wins in the emulator as in AWS; the Deny scoped to the boundary's ARN does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_deny_wins_over_another_policys_allow() {
    let w = World::start().await;
    let iam = w.client("operator", &delegated(), &[IAM_FULL_ACCESS]).await;
    w.bounded_user("bounded").await;

    assert_eq!(
        outcome(
            iam.delete_user_permissions_boundary()
                .user_name("bounded")
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(w.boundary_of("bounded").await.as_deref(), Some(BOUNDARY));
    for (group, arn) in [("admins", ADMIN_ACCESS), ("iam-admins", IAM_FULL_ACCESS)] {
        let attach = iam
            .attach_user_policy()
            .user_name("bounded")
            .policy_arn(arn)
            .send()
            .await;
        assert_eq!(outcome(attach), "AccessDenied", "{arn}");
        let create = iam
            .create_group()
            .group_name(group)
            .path("/k8s/")
            .send()
            .await;
        assert_eq!(outcome(create), "ok", "IAMFullAccess allows it");
        let attach = iam
            .attach_group_policy()
            .group_name(group)
            .policy_arn(arn)
            .send()
            .await;
        assert_eq!(outcome(attach), "AccessDenied", "{arn}");
    }
    // The same Deny keeps a role's boundary.
    w.bounded_role("bounded-role", "/k8s/", "operator").await;
    assert_eq!(
        outcome(
            iam.delete_role_permissions_boundary()
                .role_name("bounded-role")
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(
        w.role_boundary_of("bounded-role").await.as_deref(),
        Some(BOUNDARY)
    );
    let attach = iam
        .attach_role_policy()
        .role_name("bounded-role")
        .policy_arn(ADMIN_ACCESS)
        .send()
        .await;
    assert_eq!(outcome(attach), "AccessDenied");
    // Not enforced (AWS: AccessDenied whatever else is allowed).
    let widen = iam
        .create_policy_version()
        .policy_arn(BOUNDARY)
        .policy_document(EVERYTHING)
        .set_as_default(true)
        .send()
        .await;
    assert_eq!(
        outcome(widen),
        "ok",
        "a Deny scoped to an ARN never matches in moto"
    );
}

/// The role statements as shipped: moto authorizes a call naming an existing role against
/// that role's ARN (and `sts:AssumeRole` against the role it names), so the scoping to
/// `role/k8s/*` is enforced there, unlike that of users; `CreateRole` (no role yet: `*`)
/// and `AddRoleToInstanceProfile` (authorized against the role, not the profile) are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_statements_are_scoped_to_the_prefix() {
    let w = World::start().await;
    let creds = w.principal("operator", &delegated(), &[]).await;
    let iam = aws_sdk_iam::Client::new(&sdk_config_with(&w.emu.url, &creds));
    let sts = aws_sdk_sts::Client::new(&sdk_config_with(&w.emu.url, &creds));
    let inside = w.bounded_role("inside", "/k8s/", "operator").await;
    let outside = w.bounded_role("outside", "/other/", "operator").await;
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/operator")},
            "Action": "sts:AssumeRole"
        }]
    })
    .to_string();

    for (role, expected) in [("inside", "ok"), ("outside", "AccessDenied")] {
        let tag = iam
            .tag_role()
            .role_name(role)
            .tags(
                aws_sdk_iam::types::Tag::builder()
                    .key("team")
                    .value("a")
                    .build()
                    .unwrap(),
            )
            .send()
            .await;
        assert_eq!(outcome(tag), expected, "TagRole {role}");
        let update = iam
            .update_assume_role_policy()
            .role_name(role)
            .policy_document(&trust)
            .send()
            .await;
        assert_eq!(outcome(update), expected, "UpdateAssumeRolePolicy {role}");
        // AWS: allowed on `inside` as it carries the boundary (condition not evaluated here).
        let put = iam
            .put_role_policy()
            .role_name(role)
            .policy_name("own")
            .policy_document(EVERYTHING)
            .send()
            .await;
        assert_eq!(outcome(put), expected, "PutRolePolicy {role}");
        let listed = iam.list_role_policies().role_name(role).send().await;
        assert_eq!(outcome(listed), expected, "ListRolePolicies {role}");
        let delete = iam
            .delete_role_policy()
            .role_name(role)
            .policy_name("own")
            .send()
            .await;
        assert_eq!(outcome(delete), expected, "DeleteRolePolicy {role}");
        if expected != "ok" {
            let delete = iam.delete_role().role_name(role).send().await;
            assert_eq!(outcome(delete), expected, "DeleteRole {role}");
        }
        // Any role may be looked up by name (adoption and name-conflict checks).
        assert_eq!(
            outcome(iam.get_role().role_name(role).send().await),
            "ok",
            "GetRole {role}"
        );
    }
    // Session credentials: only roles under the prefix (both trust the operator).
    for (arn, expected) in [(&inside, "ok"), (&outside, "AccessDenied")] {
        let assumed = sts
            .assume_role()
            .role_arn(arn)
            .role_session_name("operator")
            .send()
            .await;
        let got = match assumed {
            Ok(_) => "ok".to_string(),
            Err(e) => e
                .as_service_error()
                .and_then(|e| aws_sdk_sts::error::ProvideErrorMetadata::code(e))
                .unwrap_or("?")
                .to_string(),
        };
        assert_eq!(got, expected, "AssumeRole {arn}");
    }
    // Enforced: the boundary stays on the role.
    assert_eq!(
        outcome(
            iam.delete_role_permissions_boundary()
                .role_name("inside")
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(
        w.role_boundary_of("inside").await.as_deref(),
        Some(BOUNDARY)
    );
    // Over-enforced: the conditioned Deny refuses every attach to a role.
    let attach = iam
        .attach_role_policy()
        .role_name("inside")
        .policy_arn(READ_ONLY)
        .send()
        .await;
    assert_eq!(
        outcome(attach),
        "AccessDenied",
        "moto does not evaluate ArnLike"
    );
    // Not enforced: AWS allows this CreateRole (under the prefix, with the boundary).
    let create = iam
        .create_role()
        .role_name("new")
        .path("/k8s/")
        .assume_role_policy_document(&trust)
        .permissions_boundary(BOUNDARY)
        .send()
        .await;
    assert_eq!(
        outcome(create),
        "AccessDenied",
        "moto authorizes a new role against *"
    );
    // Not enforced: AWS allows adding a prefix role to a prefix profile.
    w.admin
        .create_instance_profile()
        .instance_profile_name("inside")
        .path("/k8s/")
        .send()
        .await
        .unwrap();
    let add = iam
        .add_role_to_instance_profile()
        .instance_profile_name("inside")
        .role_name("inside")
        .send()
        .await;
    assert_eq!(
        outcome(add),
        "AccessDenied",
        "moto authorizes it against the role's ARN"
    );
}

/// The whole scheme rests on IAM capping each user by its boundary; moto does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_ignores_permissions_boundaries() {
    let w = World::start().await;
    let list_users = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}]
    });
    let iam = w.client("capped", &list_users, &[]).await;
    w.admin
        .put_user_permissions_boundary()
        .user_name("capped")
        .permissions_boundary(BOUNDARY)
        .send()
        .await
        .unwrap();
    assert_eq!(w.boundary_of("capped").await.as_deref(), Some(BOUNDARY));
    // AWS: AccessDenied (the boundary allows no iam:ListUsers).
    assert_eq!(outcome(iam.list_users().send().await), "ok");
    // The emulator does refuse what no policy allows.
    assert_eq!(outcome(iam.list_groups().send().await), "AccessDenied");
}

/// The IamUser once Ready for its current generation.
async fn user_ready(users: &Api<IamUser>, name: &str) -> IamUser {
    eventually(&format!("IamUser {name} Ready"), || async {
        users.get_opt(name).await.unwrap().filter(|u| {
            u.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Ready"
                        && c.status == "True"
                        && c.observed_generation == u.metadata.generation
                })
            })
        })
    })
    .await
}

/// The operator with `--iam-path-prefix /k8s/` and `--required-permissions-boundary`,
/// signing as a user that holds only the delegated policy (in its emulator form): a user
/// with an access key and console access becomes Ready, bounded, and is deleted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_with_the_delegated_policy() {
    let w = World::start().await;
    let policy = emulator_form(delegated());
    let creds = w.principal("operator", &policy, &[]).await;

    let cp = ControlPlane::shared();
    let ns = cp.namespace("iam-delegated");
    let client = cp.client().await;
    let users: Api<IamUser> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    let mut op = Operator::start(
        cp,
        &w.emu.url,
        &[
            "--watch-namespace",
            &ns,
            "--iam-path-prefix",
            "/k8s/",
            "--required-permissions-boundary",
            BOUNDARY,
        ],
        &[
            ("AWS_ACCESS_KEY_ID", &creds.0),
            ("AWS_SECRET_ACCESS_KEY", &creds.1),
            ("IAM_OPERATOR_OIDC_PROVIDER_ARN", OIDC_PROVIDER),
        ],
    );
    let out = cp.apply(&format!(
        "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamUser\nmetadata:\n  name: dev\n  namespace: {ns}\nspec:\n  path: /k8s/\n  accessKey:\n    enabled: true\n  console:\n    enabled: true\n"
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let user = user_ready(&users, "dev").await;
    let arn = user.status.as_ref().and_then(|s| s.arn.clone());
    assert_eq!(
        arn.as_deref(),
        Some("arn:aws:iam::123456789012:user/k8s/dev"),
        "{}",
        op.logs()
    );
    assert_eq!(w.boundary_of("dev").await.as_deref(), Some(BOUNDARY));
    let keys = w
        .admin
        .list_access_keys()
        .user_name("dev")
        .send()
        .await
        .unwrap();
    assert_eq!(keys.access_key_metadata().len(), 1);
    w.admin
        .get_login_profile()
        .user_name("dev")
        .send()
        .await
        .expect("a login profile");
    // A first console password must be changed: the operator attached IAMUserChangePassword
    // (the GrantOnlyToUsersWithTheBoundary statement).
    let attached = w
        .admin
        .list_attached_user_policies()
        .user_name("dev")
        .send()
        .await
        .unwrap();
    let attached: Vec<&str> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    assert_eq!(attached, ["arn:aws:iam::aws:policy/IAMUserChangePassword"]);
    for secret in ["dev-aws-credentials", "dev-console"] {
        assert!(secrets.get_opt(secret).await.unwrap().is_some(), "{secret}");
    }

    // A console user who must use MFA: the operator writes its self-management policy at
    // the user's path (inside the prefix) and attaches it.
    let out = cp.apply(&format!(
        "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamUser\nmetadata:\n  name: person\n  namespace: {ns}\nspec:\n  path: /k8s/people/\n  console:\n    enabled: true\n    mfa: {{required: true}}\n"
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let person = user_ready(&users, "person").await;
    let mfa_policy = person
        .status
        .and_then(|s| s.console)
        .and_then(|c| c.self_management_policy)
        .expect("the self-management policy in status");
    assert!(
        mfa_policy
            .starts_with("arn:aws:iam::123456789012:policy/k8s/people/iam-operator-mfa-required-"),
        "{mfa_policy}"
    );
    let attached = w
        .admin
        .list_attached_user_policies()
        .user_name("person")
        .send()
        .await
        .unwrap();
    assert!(
        attached
            .attached_policies()
            .iter()
            .any(|p| p.policy_arn() == Some(mfa_policy.as_str())),
        "{attached:?}"
    );

    // A role with policies, an inline policy, an instance profile and session credentials
    // (the operator adds its own principal to the trust to assume it).
    let roles: Api<IamRole> = Api::namespaced(cp.client().await, &ns);
    let out = cp.apply(&format!(
        r#"apiVersion: iam.kubeop.dev/v1alpha1
kind: IamRole
metadata: {{name: app, namespace: {ns}}}
spec:
  path: /k8s/
  trust: {{serviceAccounts: [{{name: app}}]}}
  policies: [{{arn: "{READ_ONLY}"}}]
  inlinePolicies:
    - name: own
      document: {{Version: "2012-10-17", Statement: [{{Effect: Allow, Action: "s3:ListBucket", Resource: "*"}}]}}
  instanceProfile: true
  sessionCredentials: {{duration: 15m}}
"#
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let role = eventually("IamRole app Ready", || async {
        roles.get_opt("app").await.unwrap().filter(|r| {
            r.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Ready"
                        && c.status == "True"
                        && c.observed_generation == r.metadata.generation
                })
            })
        })
    })
    .await;
    let status = role.status.clone().unwrap_or_default();
    let role_name = status
        .arn
        .as_deref()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or_default()
        .to_string();
    assert!(
        status
            .arn
            .as_deref()
            .is_some_and(|a| a.starts_with("arn:aws:iam::123456789012:role/k8s/")),
        "{status:?}\n{}",
        op.logs()
    );
    assert_eq!(
        w.role_boundary_of(&role_name).await.as_deref(),
        Some(BOUNDARY)
    );
    let attached = w
        .admin
        .list_attached_role_policies()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    let attached: Vec<&str> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    assert_eq!(attached, [READ_ONLY]);
    let inline = w
        .admin
        .list_role_policies()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    assert_eq!(inline.policy_names(), ["own"]);
    let profiles = w
        .admin
        .list_instance_profiles_for_role()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    assert_eq!(profiles.instance_profiles().len(), 1, "{profiles:?}");
    let session = status
        .session_credentials
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or_else(|| "app-aws-session".into());
    assert!(
        secrets.get_opt(&session).await.unwrap().is_some(),
        "{session}"
    );

    roles.delete("app", &DeleteParams::default()).await.unwrap();
    eventually("IamRole app deleted", || async {
        roles.get_opt("app").await.unwrap().is_none().then_some(())
    })
    .await;
    assert_eq!(
        outcome(w.admin.get_role().role_name(&role_name).send().await),
        "NoSuchEntity",
        "{}",
        op.logs()
    );
    let left = w.admin.list_instance_profiles().send().await.unwrap();
    assert!(left.instance_profiles().is_empty(), "{left:?}");

    users.delete("dev", &DeleteParams::default()).await.unwrap();
    eventually("IamUser dev deleted", || async {
        users.get_opt("dev").await.unwrap().is_none().then_some(())
    })
    .await;
    assert_eq!(
        outcome(w.admin.get_user().user_name("dev").send().await),
        "NoSuchEntity",
        "{}",
        op.logs()
    );
    let logs = op.logs();
    assert!(!logs.contains("AccessDenied"), "{logs}");
    op.stop();
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The Allow actions of a policy document.
fn allowed_actions(policy: &serde_json::Value) -> std::collections::BTreeSet<String> {
    let mut actions = std::collections::BTreeSet::new();
    for s in policy["Statement"].as_array().unwrap() {
        if s["Effect"] != "Allow" {
            continue;
        }
        match &s["Action"] {
            serde_json::Value::String(a) => {
                actions.insert(a.clone());
            }
            list => actions.extend(
                list.as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string()),
            ),
        }
    }
    actions
}

/// The delegated policy allows every action of the general one (which a test in
/// `tests/credentials.rs` shows is all the operator needs) but the boundary's removal,
/// which a forced boundary never calls for.
#[test]
fn the_delegated_policy_allows_what_the_general_one_does_but_boundary_removal() {
    let general: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            support::emulator::repo_root().join("docs/operator-iam-policy.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut expected = allowed_actions(&general);
    assert!(expected.remove("iam:DeleteUserPermissionsBoundary"));
    assert!(expected.remove("iam:DeleteRolePermissionsBoundary"));
    assert_eq!(allowed_actions(&delegated()), expected);
}

/// IAM counts a managed policy's characters without the whitespace outside strings (the
/// shipped file is indented past 6,144); the filled document must fit even with a long
/// path prefix and boundary ARN.
#[test]
fn the_delegated_policy_fits_a_managed_policy() {
    let text = std::fs::read_to_string(
        support::emulator::repo_root().join("docs/operator-iam-policy-delegated.json"),
    )
    .unwrap();
    let filled = text
        .replace("${Account}", ACCOUNT)
        .replace("${PathPrefix}", "platform/tenants/kubernetes/")
        .replace(
            "${BoundaryArn}",
            "arn:aws:iam::123456789012:policy/platform/tenants/kubernetes/tenant-permissions-boundary",
        );
    let doc: serde_json::Value = serde_json::from_str(&filled).unwrap();
    let size = iam_operator::limits::policy_size(&doc);
    assert!(
        iam_operator::limits::check_managed_policy(&doc).is_ok(),
        "{size} characters"
    );
}
