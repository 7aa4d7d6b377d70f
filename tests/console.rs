//! A chosen first console password (`spec.console.initialPasswordSecretRef`) end to end:
//! the real control plane, the operator binary as its own process, the IAM emulator.
//!
//! What IAM holds is proven the way a person would: signed with the user's own access key,
//! `ChangePassword` succeeds only with the current password as `OldPassword` (the emulator
//! checks it as IAM does, and the tests show a wrong one refused). Each test has its own
//! namespace, emulator and operator, run with a resync of 1 h: an object waiting on a
//! Secret is re-checked by the operator itself only after 60 s, a stalled one after 10
//! minutes, so convergence within [`WOKEN_WITHIN`] of a Secret change is the Secret watch.

mod support;

use iam_operator::api::IamUser;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::cluster::{ControlPlane, Operator};
use support::emulator::Emulator;

/// How long a new user may take to become Ready.
const SETTLE: Duration = Duration::from_secs(120);
/// How soon after a Secret change a watch must have delivered: far below the 60 s after
/// which the operator re-checks a waiting object by itself.
const WOKEN_WITHIN: Duration = Duration::from_secs(20);
const RESET: &str = "iam.kubeop.dev/reset-console-password";

/// One test's world.
struct Case {
    cp: &'static ControlPlane,
    ns: String,
    emu: Emulator,
    iam: aws_sdk_iam::Client,
    op: Operator,
    users: Api<IamUser>,
    secrets: Api<Secret>,
}

impl Case {
    async fn start(prefix: &str) -> Self {
        let cp = ControlPlane::shared();
        let emu = Emulator::start();
        let iam = aws_sdk_iam::Client::new(&support::sdk_config(&emu.url));
        let ns = cp.namespace(prefix);
        let op = Operator::start(
            cp,
            &emu.url,
            &["--watch-namespace", &ns, "--resync-interval", "1h"],
            &[("RUST_LOG", "debug")],
        );
        let client = cp.client().await;
        Case {
            cp,
            users: Api::namespaced(client.clone(), &ns),
            secrets: Api::namespaced(client, &ns),
            ns,
            emu,
            iam,
            op,
        }
    }

    /// A user with console access whose first password is `key` of Secret `secret`, and
    /// an access key (to sign `ChangePassword` as the user).
    fn create_user(&self, name: &str, secret: &str, key: &str) {
        let manifest = format!(
            "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamUser\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  accessKey: {{enabled: true}}\n  console:\n    enabled: true\n    initialPasswordSecretRef: {{name: {secret}, key: {key}}}\n",
            ns = self.ns
        );
        let out = self.cp.apply(&manifest);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\n{manifest}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Creates or replaces the person's Secret holding a chosen password.
    async fn put_secret(&self, name: &str, key: &str, value: &str) {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            string_data: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
            ..Default::default()
        };
        if self.secrets.get_opt(name).await.unwrap().is_some() {
            let patch = serde_json::json!({"stringData": {key: value}});
            self.secrets
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        } else {
            self.secrets
                .create(&PostParams::default(), &secret)
                .await
                .unwrap();
        }
    }

    async fn value(&self, secret: &str, key: &str) -> Option<String> {
        let data = self.secrets.get_opt(secret).await.unwrap()?.data?;
        data.get(key)
            .map(|v| String::from_utf8(v.0.clone()).unwrap())
    }

    /// Polls `f` every 200 ms until it yields a value; fails after `timeout` with `what`
    /// and the user objects (the operator's log is printed when the test fails).
    async fn within<T, F, Fut>(&self, what: &str, timeout: Duration, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            if Instant::now() > deadline {
                let state = self
                    .cp
                    .kubectl(&["get", "iamuser", "-n", &self.ns, "-o", "yaml"]);
                panic!(
                    "not within {timeout:?}: {what} (operator exited: {})\n--- users ---\n{}",
                    self.op.exited(),
                    String::from_utf8_lossy(&state.stdout)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The user once its condition `type_` has `status` for the current generation.
    async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        timeout: Duration,
    ) -> (IamUser, Condition) {
        self.within(
            &format!("IamUser {name} {type_}={status}"),
            timeout,
            || async {
                let user = self.users.get_opt(name).await.unwrap()?;
                let c = condition(&user, type_)?;
                (c.status == status
                    && Some(c.observed_generation) == Some(user.metadata.generation))
                .then_some((user, c))
            },
        )
        .await
    }

    /// Ready, with the reset annotation's value (if any) answered.
    async fn wait_settled(&self, name: &str, timeout: Duration) -> IamUser {
        self.within(
            &format!("IamUser {name} Ready and settled"),
            timeout,
            || async {
                let user = self.users.get_opt(name).await.unwrap()?;
                let ready = condition(&user, "Ready").is_some_and(|c| {
                    c.status == "True"
                        && Some(c.observed_generation) == Some(user.metadata.generation)
                });
                let token = user
                    .status
                    .as_ref()
                    .and_then(|s| s.console.as_ref())
                    .and_then(|c| c.reset_token.clone());
                let wanted = user
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(RESET))
                    .cloned();
                (ready && token == wanted).then_some(user)
            },
        )
        .await
    }

    async fn annotate(&self, name: &str, key: &str, value: &str) {
        let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
        self.users
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// `PasswordResetRequired` of the user's login profile, `None` without one.
    async fn login_profile(&self, user: &str) -> Option<bool> {
        match self.iam.get_login_profile().user_name(user).send().await {
            Ok(out) => Some(out.login_profile().unwrap().password_reset_required()),
            Err(e) if support::code(&e).as_deref() == Some("NoSuchEntity") => None,
            Err(e) => panic!("GetLoginProfile: {e:?}"),
        }
    }

    /// `ChangePassword` signed with the user's published access key: `Ok` when IAM had
    /// `old`, else the error code.
    async fn change_password(&self, name: &str, old: &str, new: &str) -> Result<(), String> {
        let id = self
            .value(&format!("{name}-aws-credentials"), "AWS_ACCESS_KEY_ID")
            .await;
        let secret = self
            .value(&format!("{name}-aws-credentials"), "AWS_SECRET_ACCESS_KEY")
            .await;
        let (id, secret) = (id.expect("the user's key"), secret.expect("the user's key"));
        let config = support::sdk_config(&self.emu.url)
            .into_builder()
            .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
                aws_sdk_iam::config::Credentials::new(id, secret, None, None, "tests"),
            ))
            .build();
        aws_sdk_iam::Client::new(&config)
            .change_password()
            .old_password(old)
            .new_password(new)
            .send()
            .await
            .map(drop)
            .map_err(|e| support::code(&e).unwrap_or_else(|| format!("{e:?}")))
    }

    /// Everything a password must never reach: the operator's log, the namespace's events
    /// (both APIs) and the users' status.
    fn observable(&self) -> Vec<(&'static str, String)> {
        let status = self.cp.kubectl_ok(&[
            "get",
            "iamuser",
            "-n",
            &self.ns,
            "-o",
            "jsonpath={.items[*].status}",
        ]);
        vec![
            ("the operator's log", self.op.logs()),
            (
                "an Event",
                self.cp
                    .kubectl_ok(&["get", "events", "-n", &self.ns, "-o", "yaml"]),
            ),
            (
                "an Event (events.k8s.io)",
                self.cp.kubectl_ok(&[
                    "get",
                    "events.v1.events.k8s.io",
                    "-n",
                    &self.ns,
                    "-o",
                    "yaml",
                ]),
            ),
            ("status", status),
        ]
    }

    /// Fails if any of `passwords` (or its base64) is anywhere a password must not be.
    fn assert_never_shown(&self, passwords: &[&str]) {
        let seen = self.observable();
        assert!(
            seen[0].1.len() > 1000,
            "debug logs expected: {} bytes",
            seen[0].1.len()
        );
        assert!(
            seen[3].1.contains("conditions"),
            "status expected: {}",
            seen[3].1
        );
        for password in passwords {
            for needle in [password.to_string(), base64(password)] {
                for (place, text) in &seen {
                    assert!(!text.contains(&needle), "a chosen password is in {place}");
                }
            }
        }
    }
}

type Condition = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

fn condition(user: &IamUser, type_: &str) -> Option<Condition> {
    user.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// `s` in base64, as a Secret's `data` carries it.
fn base64(s: &str) -> String {
    let encoded = serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec())).unwrap();
    encoded.as_str().unwrap().to_string()
}

/// Makes the emulator wait `ms` before it handles the next request of `action`.
async fn delay_next(emu: &Emulator, action: &str, ms: u64) {
    reqwest::Client::new()
        .post(format!("{}/_emulator/faults", emu.url))
        .json(&serde_json::json!({"action": action, "delay_ms": ms, "count": 1}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

/// The chosen password is the one IAM has, must be reset at first sign-in, and is what the
/// console Secret holds. Edits of the chosen Secret change nothing; a reset by annotation
/// sets its new value. No password ever reaches the log, events or status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_password_is_what_iam_has_and_a_reset_takes_the_new_value() {
    let c = Case::start("pw-chosen").await;
    let first = "Chosen-first-Passw0rd";
    c.put_secret("alice-first", "password", first).await;
    c.create_user("alice", "alice-first", "password");
    c.wait_settled("alice", SETTLE).await;

    // The console Secret: the chosen password, as a generated one would be published.
    assert_eq!(
        c.value("alice-console", "password").await.as_deref(),
        Some(first)
    );
    assert_eq!(
        c.value("alice-console", "username").await.as_deref(),
        Some("alice")
    );
    assert_eq!(
        c.value("alice-console", "consoleUrl").await.as_deref(),
        Some("https://123456789012.signin.aws.amazon.com/console")
    );
    // IAM has exactly that password, to be reset at first sign-in.
    assert_eq!(c.login_profile("alice").await, Some(true));
    assert_eq!(
        c.change_password("alice", "Not-the-Passw0rd", "Own-choice-Passw0rd-1")
            .await,
        Err("AccessDenied".to_string()),
        "the emulator must refuse a wrong old password"
    );
    c.change_password("alice", first, "Own-choice-Passw0rd-1")
        .await
        .expect("IAM should have the chosen password");
    assert_eq!(
        c.login_profile("alice").await,
        Some(false),
        "reset done by the person"
    );

    // A new value in the chosen Secret changes nothing by itself (it wakes the user, which
    // finds nothing to do)...
    let second = "Chosen-second-Passw0rd";
    c.put_secret("alice-first", "password", second).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        c.value("alice-console", "password").await.as_deref(),
        Some(first)
    );
    assert_eq!(
        c.change_password("alice", second, "Own-choice-Passw0rd-2")
            .await,
        Err("AccessDenied".to_string()),
        "an edit of the chosen Secret alone must not change the password"
    );
    // ... until a reset is requested: then IAM gets the new value, reset required again.
    c.annotate("alice", RESET, "1").await;
    c.wait_settled("alice", SETTLE).await;
    assert_eq!(
        c.value("alice-console", "password").await.as_deref(),
        Some(second)
    );
    assert_eq!(c.login_profile("alice").await, Some(true));
    c.change_password("alice", second, "Own-choice-Passw0rd-3")
        .await
        .expect("IAM should have the new chosen password");

    c.assert_never_shown(&[first, second]);
    c.cp.kubectl_ok(&["delete", "namespace", &c.ns, "--wait=false"]);
}

/// A chosen password that does not meet the account password policy stalls the user before
/// anything is written, with a message naming the Secret, the key and each unmet
/// requirement (never the password); fixing the value in the Secret is enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_against_the_account_policy_stalls_until_the_secret_is_fixed() {
    let c = Case::start("pw-policy").await;
    c.iam
        .update_account_password_policy()
        .minimum_password_length(20)
        .require_symbols(true)
        .require_uppercase_characters(true)
        .send()
        .await
        .unwrap();
    let weak = "weak-passw0rd-15c";
    c.put_secret("bob-first", "pw", weak).await;
    c.create_user("bob", "bob-first", "pw");
    let (_, stalled) = c.wait_condition("bob", "Stalled", "True", SETTLE).await;
    let ns = &c.ns;
    assert_eq!(stalled.reason, "InvalidSpec");
    assert_eq!(
        stalled.message,
        format!(
            "the chosen console password in Secret {ns}/bob-first key pw does not meet the account password policy: it is shorter than the minimum of 20 characters; it needs an uppercase letter (A-Z); change the value in Secret {ns}/bob-first key pw"
        )
    );
    // Nothing was issued: no login profile, no console Secret. The rest of the user is
    // there (its access key: credentials do not wait on each other).
    assert_eq!(c.login_profile("bob").await, None);
    assert_eq!(c.value("bob-console", "password").await, None);
    assert!(
        c.value("bob-aws-credentials", "AWS_ACCESS_KEY_ID")
            .await
            .is_some()
    );
    c.assert_never_shown(&[weak]);

    // Fixed in the Secret (a first password needs no annotation): the Secret watch wakes
    // the user long before the 10 minutes after which a stalled one is retried.
    let good = "Strong-enough-Passw0rd!";
    c.put_secret("bob-first", "pw", good).await;
    let fixed = Instant::now();
    c.wait_settled("bob", WOKEN_WITHIN).await;
    eprintln!("bob Ready {:?} after the Secret was fixed", fixed.elapsed());
    assert_eq!(
        c.value("bob-console", "password").await.as_deref(),
        Some(good)
    );
    assert_eq!(c.login_profile("bob").await, Some(true));
    c.change_password("bob", good, "Own-choice-Passw0rd-1!")
        .await
        .expect("IAM should have the fixed password");
    c.assert_never_shown(&[weak, good]);
    c.cp.kubectl_ok(&["delete", "namespace", &c.ns, "--wait=false"]);
}

/// IAM's own refusal (the policy changed between the operator's check and its
/// CreateLoginProfile) gives the same kind of message, leaves no console Secret and no
/// login profile behind, and fixing the Secret is again enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_changed_in_between_is_reported_like_the_operators_own_check() {
    let c = Case::start("pw-race").await;
    let chosen = "Chosen-Passw0rd-22-chars";
    c.put_secret("erin-first", "password", chosen).await;
    // CreateLoginProfile waits 5 s before IAM handles it; meanwhile the policy changes.
    delay_next(&c.emu, "CreateLoginProfile", 5000).await;
    c.create_user("erin", "erin-first", "password");
    c.within("CreateLoginProfile under way", SETTLE, || async {
        c.emu
            .calls()
            .await
            .contains_key("CreateLoginProfile")
            .then_some(())
    })
    .await;
    c.iam
        .update_account_password_policy()
        .minimum_password_length(30)
        .send()
        .await
        .unwrap();
    let (_, stalled) = c.wait_condition("erin", "Stalled", "True", SETTLE).await;
    let ns = &c.ns;
    assert_eq!(stalled.reason, "InvalidSpec");
    assert_eq!(
        stalled.message,
        format!(
            "the chosen console password in Secret {ns}/erin-first key password does not meet the account password policy: it is shorter than the minimum of 30 characters; change the value in Secret {ns}/erin-first key password"
        )
    );
    // The console Secret written before the attempt is gone again: IAM never had it.
    assert_eq!(c.login_profile("erin").await, None);
    assert_eq!(c.value("erin-console", "password").await, None);
    c.assert_never_shown(&[chosen]);

    let long = "Chosen-Passw0rd-that-is-30-chars";
    c.put_secret("erin-first", "password", long).await;
    c.wait_settled("erin", WOKEN_WITHIN).await;
    assert_eq!(
        c.value("erin-console", "password").await.as_deref(),
        Some(long)
    );
    c.change_password("erin", long, "Own-choice-Passw0rd-which-is-30!")
        .await
        .expect("IAM should have the fixed password");
    c.assert_never_shown(&[chosen, long]);
    c.cp.kubectl_ok(&["delete", "namespace", &c.ns, "--wait=false"]);
}

/// A user naming a Secret that does not exist waits, says which Secret and key to create,
/// and issues nothing; creating the Secret wakes it through the Secret watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_waits_and_its_creation_wakes_the_user() {
    let c = Case::start("pw-missing").await;
    c.create_user("carol", "carol-first", "password");
    let (_, waiting) = c
        .wait_condition("carol", "Reconciling", "True", SETTLE)
        .await;
    let seen_waiting = Instant::now();
    let ns = &c.ns;
    assert_eq!(waiting.reason, "DependencyNotReady");
    assert_eq!(
        waiting.message,
        format!(
            "waiting for the chosen console password: Secret {ns}/carol-first does not exist; create it with the password under key password"
        )
    );
    let (user, ready) = c.wait_condition("carol", "Ready", "False", SETTLE).await;
    assert_eq!(ready.reason, "DependencyNotReady");
    assert!(
        condition(&user, "Stalled").is_none(),
        "waiting is not stalled"
    );
    assert_eq!(c.login_profile("carol").await, None);
    assert_eq!(c.value("carol-console", "password").await, None);

    // A Secret without the key: still waiting, now for the key.
    c.put_secret("carol-first", "other", "x").await;
    c.within("the message naming the missing key", WOKEN_WITHIN, || async {
        let user = c.users.get_opt("carol").await.unwrap()?;
        let r = condition(&user, "Ready")?;
        (r.message
            == format!(
                "waiting for the chosen console password: Secret {ns}/carol-first has no key password; add the password under that key"
            ))
        .then_some(())
    })
    .await;
    assert_eq!(c.login_profile("carol").await, None);

    let chosen = "Chosen-Passw0rd-for-carol";
    c.put_secret("carol-first", "password", chosen).await;
    let created = Instant::now();
    c.wait_settled("carol", WOKEN_WITHIN).await;
    let since_waiting = seen_waiting.elapsed();
    eprintln!(
        "carol Ready {:?} after the Secret got its key, {since_waiting:?} after it waited",
        created.elapsed()
    );
    assert!(
        since_waiting < Duration::from_secs(55),
        "Ready {since_waiting:?} after waiting: the operator's 60 s re-check could explain it"
    );
    assert_eq!(
        c.value("carol-console", "password").await.as_deref(),
        Some(chosen)
    );
    assert_eq!(c.login_profile("carol").await, Some(true));
    c.change_password("carol", chosen, "Own-choice-Passw0rd-1")
        .await
        .expect("IAM should have the chosen password");

    // Deleting the chosen Secret afterwards changes nothing: the password is in IAM and in
    // the console Secret.
    c.secrets
        .delete("carol-first", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.wait_settled("carol", SETTLE).await;
    assert_eq!(
        c.value("carol-console", "password").await.as_deref(),
        Some(chosen)
    );
    c.assert_never_shown(&[chosen]);
    c.cp.kubectl_ok(&["delete", "namespace", &c.ns, "--wait=false"]);
}
