//! MFA and self-service for console users, end to end: the real control plane, the operator
//! binary, the IAM emulator. `spec.console.mfa.required` attaches the operator's own
//! policy (AWS's documented "manage your own credentials, nothing else without MFA"),
//! `selfService` the same without the MFA requirement; the status lists the MFA devices the
//! person enrolled; the policy is restored when changed out of band and never taken over
//! from someone else.

mod support;

use iam_operator::api::IamUser;
use iam_operator::controller::self_management;
use std::time::Duration;
use support::cluster::{ControlPlane, Operator, kubectl_with_operator, tail};
use support::emulator::Emulator;
use support::eventually;
use support::read::user_policies;

const ACCOUNT: &str = "123456789012";

fn user_manifest(ns: &str, name: &str, path: &str, console: &str) -> String {
    format!(
        "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamUser\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  userName: {ns}-{name}\n  path: {path}\n  console:\n    enabled: true\n{console}"
    )
}

fn object(cp: &ControlPlane, ns: &str, name: &str) -> serde_json::Value {
    let out = cp.kubectl_ok(&["get", "iamuser", name, "-n", ns, "-o", "json"]);
    serde_json::from_str(&out).unwrap()
}

fn ready(obj: &serde_json::Value) -> Option<(String, String, String)> {
    let c = obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?;
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    Some((s("status"), s("reason"), s("message")))
}

fn wait_ready(cp: &ControlPlane, op: &Operator, ns: &str, name: &str) {
    let out = kubectl_with_operator(
        cp,
        op,
        &[
            "wait",
            "--for=condition=Ready",
            &format!("iamuser/{name}"),
            "-n",
            ns,
            "--timeout=120s",
        ],
    );
    assert!(
        out.status.success(),
        "{name} not Ready: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&op.logs(), 40)
    );
}

/// The ARN of the operator's policy for a user at `path`, as the operator names it.
fn policy_arn(path: &str, mfa: bool, access_keys: bool) -> String {
    let console = if mfa {
        "    mfa: {required: true}\n"
    } else {
        "    selfService: true\n"
    };
    let obj: IamUser = serde_yaml::from_str(&user_manifest("ns", "u", path, console)).unwrap();
    let wanted = self_management::desired(&obj, access_keys, (ACCOUNT, "aws")).unwrap();
    assert_eq!(wanted.path, path);
    wanted.arn
}

async fn default_document(aws: &aws_sdk_iam::Client, arn: &str) -> serde_json::Value {
    let policy = aws.get_policy().policy_arn(arn).send().await.unwrap();
    let version = policy.policy().unwrap().default_version_id().unwrap();
    let out = aws
        .get_policy_version()
        .policy_arn(arn)
        .version_id(version)
        .send()
        .await
        .unwrap();
    let text = out.policy_version().unwrap().document().unwrap();
    let text = urlencoding::decode(text).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn sids(doc: &serde_json::Value) -> Vec<String> {
    doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Sid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_required_attaches_the_documented_policy_and_status_shows_the_devices() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    let ns = cp.namespace("mfa");
    // A short resync: the person's enrolment (which no watch or scan reports) shows at the
    // next one.
    let op = Operator::start(
        cp,
        &emulator.url,
        &["--watch-namespace", &ns, "--resync-interval", "3s"],
        &[],
    );
    let user = format!("{ns}-alice");
    let mfa_arn = policy_arn("/people/", true, true);
    let self_service_arn = policy_arn("/people/", false, true);

    cp.apply_ok(&user_manifest(
        &ns,
        "alice",
        "/people/",
        "    mfa: {required: true}\n",
    ));
    wait_ready(cp, &op, &ns, "alice");
    assert!(
        user_policies(&aws, &user).await.contains(&mfa_arn),
        "the MFA policy is not attached: {:?}",
        user_policies(&aws, &user).await
    );
    let doc = default_document(&aws, &mfa_arn).await;
    let deny = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "DenyAllExceptListedIfNoMFA")
        .expect("the deny-without-MFA statement");
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(
        deny["Condition"],
        serde_json::json!({"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}})
    );
    let own = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "AllowManageOwnUserMFA")
        .unwrap();
    assert_eq!(
        own["Resource"],
        "arn:aws:iam::*:user/people/${aws:username}"
    );
    let tags = support::read::policy_tags(&aws, &mfa_arn).await;
    assert_eq!(
        tags.get("iam.kubeop.dev/owner").map(String::as_str),
        Some("default/-/self-management")
    );
    let obj = object(cp, &ns, "alice");
    assert_eq!(obj["status"]["console"]["selfManagementPolicy"], mfa_arn);
    assert_eq!(obj["status"]["console"]["mfaActive"], false);
    let row = cp.kubectl_ok(&["get", "iamuser", "alice", "-n", &ns, "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[cols.len() - 2], "false", "MFA column: {row}");

    // The person enrols a virtual MFA device (in IAM, as the console does): the status lists
    // its serial number and the MFA column turns true.
    let serial = aws
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(format!("{user}-phone"))
        .send()
        .await
        .unwrap()
        .virtual_mfa_device()
        .unwrap()
        .serial_number()
        .to_string();
    aws.enable_mfa_device()
        .user_name(&user)
        .serial_number(&serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .unwrap();
    eventually(
        "the MFA device in status",
        Duration::from_secs(60),
        || async {
            let obj = object(cp, &ns, "alice");
            let console = &obj["status"]["console"];
            (console["mfaActive"] == true && console["mfaDevices"][0]["serialNumber"] == serial)
                .then_some(())
        },
    )
    .await;
    let row = cp.kubectl_ok(&["get", "iamuser", "alice", "-n", &ns, "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[cols.len() - 2], "true", "MFA column: {row}");
    let printed = serde_json::to_string(&object(cp, &ns, "alice")["status"]).unwrap();
    assert!(!printed.to_lowercase().contains("seed"), "{printed}");

    // selfService instead of MFA: the plain policy replaces the MFA one.
    cp.apply_ok(&user_manifest(
        &ns,
        "alice",
        "/people/",
        "    selfService: true\n",
    ));
    eventually(
        "the self-service policy in place of the MFA one",
        Duration::from_secs(60),
        || async {
            let attached = user_policies(&aws, &user).await;
            (attached.contains(&self_service_arn) && !attached.contains(&mfa_arn)).then_some(())
        },
    )
    .await;
    let doc = default_document(&aws, &self_service_arn).await;
    assert!(!sids(&doc).contains(&"DenyAllExceptListedIfNoMFA".to_string()));
    assert!(sids(&doc).contains(&"AllowManageOwnAccessKeys".to_string()));

    // Neither: no operator policy stays attached.
    cp.apply_ok(&user_manifest(&ns, "alice", "/people/", ""));
    eventually(
        "the operator's policies detached",
        Duration::from_secs(60),
        || async {
            let attached = user_policies(&aws, &user).await;
            (!attached.contains(&self_service_arn) && !attached.contains(&mfa_arn)).then_some(())
        },
    )
    .await;
    wait_ready(cp, &op, &ns, "alice");
    assert!(
        object(cp, &ns, "alice")["status"]["console"]["selfManagementPolicy"].is_null(),
        "the status still names a policy"
    );
    // Used by no one, the operator's policies are deleted.
    for arn in [&mfa_arn, &self_service_arn] {
        assert!(
            !support::read::policy_exists(&aws, arn).await,
            "{arn} left behind"
        );
    }

    // Deleting the user deactivates and deletes the person's MFA device.
    cp.kubectl_ok(&["delete", "iamuser", "alice", "-n", &ns, "--timeout=120s"]);
    let devices = aws.list_virtual_mfa_devices().send().await.unwrap();
    assert!(
        !devices
            .virtual_mfa_devices()
            .iter()
            .any(|d| d.serial_number() == serial),
        "the virtual MFA device outlived its user"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_is_never_taken_over_and_is_restored_when_changed_out_of_band() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    let ns = cp.namespace("mfa-drift");
    // An hour's resync: only the drift scan can bring the restoration within the test.
    let op = Operator::start(
        cp,
        &emulator.url,
        &[
            "--watch-namespace",
            &ns,
            "--resync-interval",
            "1h",
            "--drift-scan-interval",
            "2s",
        ],
        &[],
    );
    let user = format!("{ns}-bob");
    let arn = policy_arn("/ops/", true, true);
    let name = arn.rsplit('/').next().unwrap().to_string();

    // Someone made a policy of that name first, granting everything: it is not the
    // operator's, so it is neither attached nor changed.
    let everything = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    aws.create_policy()
        .policy_name(&name)
        .path("/ops/")
        .policy_document(everything.to_string())
        .send()
        .await
        .unwrap();
    cp.apply_ok(&user_manifest(
        &ns,
        "bob",
        "/ops/",
        "    mfa: {required: true}\n",
    ));
    let (_, reason, message) = eventually("bob refused", Duration::from_secs(60), || async {
        ready(&object(cp, &ns, "bob")).filter(|(s, r, _)| s == "False" && r == "NameConflict")
    })
    .await;
    assert_eq!(reason, "NameConflict");
    assert!(message.contains(&arn), "{message}");
    assert!(
        message.contains("not written by this operator"),
        "{message}"
    );
    assert!(!user_policies(&aws, &user).await.contains(&arn));
    assert_eq!(default_document(&aws, &arn).await, everything);

    // Removed: the operator writes its own and attaches it.
    aws.delete_policy().policy_arn(&arn).send().await.unwrap();
    wait_ready(cp, &op, &ns, "bob");
    assert!(user_policies(&aws, &user).await.contains(&arn));
    let written = default_document(&aws, &arn).await;
    assert!(sids(&written).contains(&"DenyAllExceptListedIfNoMFA".to_string()));

    // Changed out of band to grant everything: the drift scan wakes bob, whose reconcile
    // puts the documented policy back.
    aws.create_policy_version()
        .policy_arn(&arn)
        .policy_document(everything.to_string())
        .set_as_default(true)
        .send()
        .await
        .unwrap();
    assert_eq!(default_document(&aws, &arn).await, everything);
    eventually("the policy restored", Duration::from_secs(60), || async {
        let now = default_document(&aws, &arn).await;
        (now == written).then_some(())
    })
    .await;
    // The event is published when the reconcile that restored it completes.
    eventually(
        "the Restored IAM policy event",
        Duration::from_secs(30),
        || async {
            let events = cp.kubectl_ok(&[
                "get",
                "events",
                "-n",
                &ns,
                "--field-selector",
                "involvedObject.name=bob",
                "-o",
                "jsonpath={.items[*].message}",
            ]);
            events.contains("Restored IAM policy").then_some(())
        },
    )
    .await;

    // Its last user deleted, the policy goes too (with its extra version).
    cp.kubectl_ok(&["delete", "iamuser", "bob", "-n", &ns, "--timeout=120s"]);
    assert!(!support::read::user_exists(&aws, &user).await);
    assert!(
        !support::read::policy_exists(&aws, &arn).await,
        "{arn} left behind"
    );
}

/// The code the person's authenticator app shows now, for a virtual device's seed.
fn totp(seed: &str) -> String {
    let out = std::process::Command::new(support::emulator::python())
        .args([
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import strict_mfa; print(strict_mfa.totp(sys.argv[2]))",
        ])
        .arg(support::emulator::repo_root().join("tools/iam-emulator"))
        .arg(seed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn is_denied<E, R>(r: &Result<impl std::fmt::Debug, aws_sdk_iam::error::SdkError<E, R>>) -> bool
where
    E: aws_sdk_iam::error::ProvideErrorMetadata,
{
    matches!(r, Err(e) if support::code(e).as_deref() == Some("AccessDenied"))
}

/// Under AWS authentication and IAM's evaluation of `aws:MultiFactorAuthPresent` (the
/// emulator's): a user whose spec requires MFA, with a read-only policy and an access key,
/// can do nothing but enrol a device until it signs in with MFA; then its policy applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_that_requires_mfa_can_only_enrol_until_signed_in_with_mfa() {
    use support::invariants::{authenticated_emulator, signed_config};
    let cp = ControlPlane::shared();
    let (emulator, admin) = authenticated_emulator(1).await;
    let aws = aws_sdk_iam::Client::new(&signed_config(&emulator.url, &admin[0]));
    let ns = cp.namespace("mfa-auth");
    let op = Operator::start(
        cp,
        &emulator.url,
        &["--watch-namespace", &ns, "--resync-interval", "3s"],
        &[
            ("AWS_ACCESS_KEY_ID", &admin[0].0),
            ("AWS_SECRET_ACCESS_KEY", &admin[0].1),
        ],
    );
    let user = format!("{ns}-carol");
    let read_only = "  policies:\n  - arn: arn:aws:iam::aws:policy/IAMReadOnlyAccess\n  accessKey:\n    enabled: true\n";
    cp.apply_ok(&format!(
        "{}{read_only}",
        user_manifest(&ns, "carol", "/people/", "    mfa: {required: true}\n")
    ));
    wait_ready(cp, &op, &ns, "carol");
    let client = cp.client().await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, &ns);
    let secret = secrets.get("carol-aws-credentials").await.unwrap();
    let value = |k: &str| String::from_utf8(secret.data.as_ref().unwrap()[k].0.clone()).unwrap();
    let key = (value("AWS_ACCESS_KEY_ID"), value("AWS_SECRET_ACCESS_KEY"));
    let carol = aws_sdk_iam::Client::new(&signed_config(&emulator.url, &key));

    // Without MFA: the read-only policy does not apply; enrolling a device does.
    let listed = carol.list_users().send().await;
    assert!(is_denied(&listed), "ListUsers without MFA: {listed:?}");
    let other = carol
        .list_access_keys()
        .user_name(support::invariants::ADMIN)
        .send()
        .await;
    assert!(is_denied(&other), "another user's keys: {other:?}");
    // The first sign-in's password change (IAMUserChangePassword is not attached: the
    // operator's policy grants it, also before MFA).
    let console = secrets.get("carol-console").await.unwrap();
    let first = String::from_utf8(console.data.as_ref().unwrap()["password"].0.clone()).unwrap();
    assert!(
        !user_policies(&aws, &user)
            .await
            .iter()
            .any(|p| p.ends_with("IAMUserChangePassword"))
    );
    carol
        .change_password()
        .old_password(first)
        .new_password("Chosen-by-carol-1")
        .send()
        .await
        .unwrap();
    let device = carol
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(&user)
        .send()
        .await
        .unwrap();
    let device = device.virtual_mfa_device().unwrap();
    let serial = device.serial_number().to_string();
    let seed = String::from_utf8(device.base32_string_seed().unwrap().as_ref().to_vec()).unwrap();
    let code = totp(&seed);
    carol
        .enable_mfa_device()
        .user_name(&user)
        .serial_number(&serial)
        .authentication_code1(&code)
        .authentication_code2(&code)
        .send()
        .await
        .unwrap();

    // Signed in with MFA (GetSessionToken with the app's code): the policy applies.
    let sts = aws_sdk_sts::Client::new(&signed_config(&emulator.url, &key));
    let session = sts
        .get_session_token()
        .serial_number(&serial)
        .token_code(totp(&seed))
        .send()
        .await
        .unwrap();
    let c = session.credentials().unwrap();
    let with_mfa = support::sdk_config(&emulator.url)
        .into_builder()
        .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
            aws_sdk_iam::config::Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_string()),
                None,
                "mfa-session",
            ),
        ))
        .build();
    let listed = aws_sdk_iam::Client::new(&with_mfa)
        .list_users()
        .send()
        .await;
    assert!(listed.is_ok(), "ListUsers with MFA: {listed:?}");

    // The operator reports the enrolled device.
    eventually(
        "carol's MFA device in status",
        Duration::from_secs(60),
        || async {
            let obj = object(cp, &ns, "carol");
            (obj["status"]["console"]["mfaDevices"][0]["serialNumber"] == serial).then_some(())
        },
    )
    .await;

    // MFA no longer required: the deny is detached and the long-term key works again,
    // so it was the operator's policy that blocked it.
    cp.apply_ok(&format!(
        "{}{read_only}",
        user_manifest(&ns, "carol", "/people/", "")
    ));
    eventually(
        "ListUsers without MFA once MFA is not required",
        Duration::from_secs(60),
        || async { carol.list_users().send().await.ok().map(drop) },
    )
    .await;
}
