//! IamAccountSettings end to end: the real control plane, the operator binary, the IAM
//! emulator. The account's alias and password policy are applied, repaired after changes
//! made outside the operator, and drive the console Secret's sign-in URL and the
//! generated passwords; the status reports the account's posture.
//!
//! One test: the kind is cluster-scoped and the account is the emulator's, so the steps
//! share one object, one emulator and one operator.

mod support;

use k8s_openapi::api::core::v1::Secret;
use std::time::Duration;
use support::cluster::{ControlPlane, Operator, kubectl_with_operator, tail};
use support::emulator::Emulator;
use support::eventually;

const ACCOUNT: &str = "123456789012";

fn settings(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamAccountSettings\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    )
}

fn object(cp: &ControlPlane, name: &str) -> serde_json::Value {
    let out = cp.kubectl_ok(&["get", "iamaccountsettings", name, "-o", "json"]);
    serde_json::from_str(&out).unwrap()
}

fn condition(obj: &serde_json::Value, type_: &str) -> Option<serde_json::Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

async fn alias(aws: &aws_sdk_iam::Client) -> Vec<String> {
    aws.list_account_aliases()
        .send()
        .await
        .unwrap()
        .account_aliases()
        .to_vec()
}

async fn minimum_length(aws: &aws_sdk_iam::Client) -> Option<i32> {
    match aws.get_account_password_policy().send().await {
        Ok(out) => out
            .password_policy()
            .and_then(|p| p.minimum_password_length()),
        Err(e) if support::code(&e).as_deref() == Some("NoSuchEntity") => None,
        Err(e) => panic!("GetAccountPasswordPolicy: {e:?}"),
    }
}

async fn console_secret(client: &kube::Client, ns: &str, name: &str) -> Option<(String, String)> {
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), ns);
    let data = api.get_opt(name).await.unwrap()?.data?;
    let text = |k: &str| data.get(k).map(|v| String::from_utf8(v.0.clone()).unwrap());
    Some((text("password")?, text("consoleUrl")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_settings_are_applied_repaired_and_drive_console_users() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    let ns = cp.namespace("account");
    // A short resync: out-of-band changes are repaired at the next one.
    let op = Operator::start(
        cp,
        &emulator.url,
        &["--watch-namespace", &ns, "--resync-interval", "3s"],
        &[],
    );
    let client = cp.client().await;

    // Applied: alias, password policy, sign-in URL, posture.
    cp.apply_ok(&settings(
            "default",
            "  accountAlias: acme-dev\n  passwordPolicy:\n    minimumPasswordLength: 12\n    requireSymbols: true\n    allowUsersToChangePassword: true\n",
        ),
    );
    let out = kubectl_with_operator(
        cp,
        &op,
        &[
            "wait",
            "--for=condition=Ready",
            "iamaccountsettings/default",
            "--timeout=120s",
        ],
    );
    assert!(
        out.status.success(),
        "not Ready: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&op.logs(), 40)
    );
    assert_eq!(alias(&aws).await, vec!["acme-dev".to_string()]);
    let policy = aws.get_account_password_policy().send().await.unwrap();
    let policy = policy.password_policy().unwrap();
    assert_eq!(policy.minimum_password_length(), Some(12));
    assert!(policy.require_symbols());
    assert!(policy.allow_users_to_change_password());
    assert!(!policy.require_numbers());
    let obj = object(cp, "default");
    assert_eq!(
        obj["status"]["signInUrl"],
        "https://acme-dev.signin.aws.amazon.com/console"
    );
    assert_eq!(obj["status"]["accountId"], ACCOUNT);
    assert_eq!(obj["status"]["posture"]["rootMfaEnabled"], false);
    assert_eq!(obj["status"]["posture"]["rootAccessKeysPresent"], false);
    // The printer columns: Alias, Root-MFA, Ready.
    let row = cp.kubectl_ok(&["get", "iamaccountsettings", "default", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[..4],
        ["default", "acme-dev", "false", "True"],
        "{row}"
    );

    // Changed out of band: repaired at the next resync.
    aws.create_account_alias()
        .account_alias("intruder")
        .send()
        .await
        .unwrap();
    aws.update_account_password_policy()
        .minimum_password_length(6)
        .send()
        .await
        .unwrap();
    assert_eq!(alias(&aws).await, vec!["intruder".to_string()]);
    eventually(
        "the alias and password policy repaired",
        Duration::from_secs(60),
        || async {
            (alias(&aws).await == vec!["acme-dev".to_string()]
                && minimum_length(&aws).await == Some(12))
            .then_some(())
        },
    )
    .await;
    let policy = aws.get_account_password_policy().send().await.unwrap();
    assert!(policy.password_policy().unwrap().require_symbols());

    // A console user: its Secret carries the alias's sign-in URL; its password follows
    // the policy (12 is below the generator's floor of 24).
    cp.apply_ok(&format!(
            "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamUser\nmetadata: {{name: carol, namespace: {ns}}}\nspec:\n  userName: {ns}-carol\n  console:\n    enabled: true\n"
        ),
    );
    let (password, url) = eventually("carol's console Secret", Duration::from_secs(120), || {
        console_secret(&client, &ns, "carol-console")
    })
    .await;
    assert_eq!(url, "https://acme-dev.signin.aws.amazon.com/console");
    assert_eq!(password.len(), 24);

    // Posture: the user counts, without MFA.
    eventually(
        "the posture counts carol",
        Duration::from_secs(60),
        || async {
            let obj = object(cp, "default");
            (obj["status"]["posture"]["users"] == 1
                && obj["status"]["posture"]["usersWithoutMfa"] == 1)
                .then_some(())
        },
    )
    .await;

    // A changed policy changes the generated passwords: minimum 40, then a reset.
    cp.apply_ok(&settings(
            "default",
            "  accountAlias: acme-dev\n  passwordPolicy:\n    minimumPasswordLength: 40\n    requireSymbols: true\n    allowUsersToChangePassword: true\n",
        ),
    );
    eventually(
        "minimum length 40 in IAM",
        Duration::from_secs(60),
        || async { (minimum_length(&aws).await == Some(40)).then_some(()) },
    )
    .await;
    cp.kubectl_ok(&[
        "annotate",
        "iamuser",
        "carol",
        "-n",
        &ns,
        "iam.kubeop.dev/reset-console-password=1",
    ]);
    let password = eventually(
        "a new password of 40 characters",
        Duration::from_secs(120),
        || async {
            let (password, _) = console_secret(&client, &ns, "carol-console").await?;
            (password.len() != 24).then_some(password)
        },
    )
    .await;
    assert_eq!(password.len(), 40);

    // A second object for the same account is refused, and changes nothing.
    cp.apply_ok(&settings("second", "  accountAlias: someone-else\n"));
    let stalled = eventually(
        "the second object Stalled",
        Duration::from_secs(60),
        || async { condition(&object(cp, "second"), "Stalled").filter(|c| c["status"] == "True") },
    )
    .await;
    assert_eq!(stalled["reason"], "NameConflict");
    assert!(
        stalled["message"]
            .as_str()
            .unwrap()
            .contains("IamAccountSettings default already manages account"),
        "{stalled}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(alias(&aws).await, vec!["acme-dev".to_string()]);
    cp.kubectl_ok(&["delete", "iamaccountsettings", "second"]);

    // Removing passwordPolicy deletes the account's policy; the alias stays.
    cp.apply_ok(&settings("default", "  accountAlias: acme-dev\n"));
    eventually(
        "the password policy deleted",
        Duration::from_secs(60),
        || async { minimum_length(&aws).await.is_none().then_some(()) },
    )
    .await;
    assert_eq!(alias(&aws).await, vec!["acme-dev".to_string()]);

    cp.kubectl_ok(&["delete", "iamaccountsettings", "default"]);
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
