//! Session credentials of an IamRole, end to end on the real control plane and the IAM
//! emulator with AWS authentication and trust policies enforced. The first test calls
//! `credentials::session` directly (as the IamRole controller does) with the clock in its
//! hands, to go through refresh and expiry; the second goes through a real IamRole and the
//! operator binary. In both, a workload in another process (boto3) signs with what the
//! Secret holds.

mod support;

use iam_operator::api::{IamRole, IamRoleSpec, RoleTrust, SessionCredentialsSpec};
use iam_operator::controller::credentials::session::{self, SessionOutcome, SessionStep, Why};
use iam_operator::iam::{AwsIam, IamError};
use iam_operator::k8s::{KubeSecrets, OwnWrites};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use std::sync::{Arc, Mutex};
use support::cluster::ControlPlane;
use support::invariants::{ACCOUNT, authenticated_emulator, signed_config};

const OPERATOR: &str = "iam-operator";
const ROLE: &str = "app-session";
const UNTRUSTED: &str = "untrusted";

fn operator_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT}:user/{OPERATOR}")
}

fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

fn trust_of(principal: &str) -> String {
    serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]})
    .to_string()
}

fn data(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8(v.0.clone()).unwrap())
}

/// A workload in another process and another SDK (boto3) calling
/// `sts:GetCallerIdentity` with `env`: the ARN it is seen as, or its error.
fn workload(url: &str, env: &[(&str, &str)]) -> Result<String, String> {
    let mut cmd = std::process::Command::new(support::emulator::python());
    cmd.args([
        "-c",
        "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])",
    ])
    .env_clear()
    .env("HOME", std::env::temp_dir())
    .env("AWS_ENDPOINT_URL", url)
    .env("AWS_DEFAULT_REGION", "us-east-1")
    .env("AWS_CONFIG_FILE", "/dev/null");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The Secret consumed the two ways a Pod does: mounted as files (the `credentials` INI
/// file) and as environment (`envFrom`). Both must be seen as the same ARN.
fn consume(url: &str, secret: &Secret) -> Result<String, String> {
    let mounted = tempfile::tempdir().unwrap();
    for (name, value) in secret.data.as_ref().unwrap() {
        std::fs::write(mounted.path().join(name), &value.0).unwrap();
    }
    let file = mounted.path().join("credentials");
    let from_file = workload(
        url,
        &[("AWS_SHARED_CREDENTIALS_FILE", &file.to_string_lossy())],
    )?;
    let env: Vec<(String, String)> = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ]
    .iter()
    .map(|k| (k.to_string(), data(secret, k).unwrap_or_default()))
    .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let from_env = workload(url, &env)?;
    assert_eq!(from_file, from_env, "file and environment disagree");
    Ok(from_file)
}

/// Captures everything the code under test logs (`tracing`), to check that no secret
/// material reaches a log.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

async fn create_role_object(
    api: &Api<IamRole>,
    name: &str,
    role_name: &str,
    duration: &str,
) -> IamRole {
    let obj = IamRole::new(
        name,
        IamRoleSpec {
            role_name: Some(role_name.into()),
            path: "/".into(),
            description: None,
            max_session_duration: Some("2h".into()),
            tags: Default::default(),
            permissions_boundary: None,
            policies: vec![],
            inline_policies: vec![],
            trust: RoleTrust {
                service_accounts: vec![],
                annotate_service_accounts: None,
                pod_identity: None,
                aws_principals: vec![],
                document: Some(serde_json::from_str(&trust_of(&operator_arn())).unwrap()),
            },
            instance_profile: None,
            session_credentials: Some(SessionCredentialsSpec {
                secret_name: None,
                duration: Some(duration.into()),
            }),
            deletion_policy: None,
        },
    );
    api.create(&PostParams::default(), &obj).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_credentials_are_published_refreshed_and_removed_when_expired() {
    let logs = Captured::default();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish(),
    );

    // IAM: an admin (the test), the operator's own user (allowed sts:AssumeRole only), a
    // role whose trust allows the operator, and one whose trust does not.
    let (emu, admin) = authenticated_emulator(1).await;
    let iam = aws_sdk_iam::Client::new(&signed_config(&emu.url, &admin[0]));
    iam.create_user().user_name(OPERATOR).send().await.unwrap();
    iam.put_user_policy()
        .user_name(OPERATOR)
        .policy_name("assume-roles")
        .policy_document(
            serde_json::json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name(OPERATOR)
        .send()
        .await
        .unwrap();
    let key = key.access_key().unwrap();
    let operator_creds = (
        key.access_key_id().to_string(),
        key.secret_access_key().to_string(),
    );
    for (name, principal) in [
        (ROLE, operator_arn()),
        (
            UNTRUSTED,
            format!("arn:aws:iam::{ACCOUNT}:user/someone-else"),
        ),
    ] {
        iam.create_role()
            .role_name(name)
            .assume_role_policy_document(trust_of(&principal))
            .max_session_duration(7200)
            .send()
            .await
            .unwrap();
    }
    // The operator's IAM port, signing as the operator.
    let port = AwsIam::new(&signed_config(&emu.url, &operator_creds));

    // Kubernetes: IamRole objects the Secrets belong to.
    let cp = ControlPlane::shared();
    let ns = cp.namespace("session");
    let client = cp.client().await;
    let roles: Api<IamRole> = Api::namespaced(client.clone(), &ns);
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let obj = create_role_object(&roles, "app", ROLE, "30m").await;
    let secrets = KubeSecrets::for_owner(client.clone(), &obj, Arc::new(OwnWrites::default()));
    let arn = role_arn(ROLE);
    let (port_ref, secrets_ref, arn_ref) = (&port, &secrets, arn.as_str());
    let step = move |obj: &'static IamRole, now: Timestamp| SessionStep {
        iam: port_ref,
        secrets: secrets_ref,
        obj,
        role_arn: arn_ref,
        now,
    };
    let obj: &'static IamRole = Box::leak(Box::new(obj));
    let assumed = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{ns}.app");
    let mut status = None;
    let mut seen_secrets: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();

    // 1. Nothing published: credentials are issued and published.
    let t0 = Timestamp::now();
    let out: SessionOutcome = session::reconcile(&step(obj, t0), &mut status)
        .await
        .unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.issued, Some(Why::NothingPublished));
    let st = status.clone().expect("status.sessionCredentials");
    let secret = secrets_api.get("app-aws-session").await.unwrap();
    let first_id = data(&secret, "AWS_ACCESS_KEY_ID").unwrap();
    assert!(first_id.starts_with("ASIA"), "{first_id}");
    assert_eq!(st.access_key_id.as_deref(), Some(&*first_id));
    assert_eq!(st.secret_name.as_deref(), Some("app-aws-session"));
    let (issued, expires, refresh) = (
        st.issued_at.clone().unwrap().0,
        st.expires_at.clone().unwrap().0,
        st.refresh_at.clone().unwrap().0,
    );
    assert_eq!(
        expires.duration_since(issued),
        SignedDuration::from_mins(30)
    );
    assert_eq!(
        refresh.duration_since(issued),
        SignedDuration::from_mins(15)
    );
    assert!(
        expires.duration_since(t0).abs() < SignedDuration::from_mins(31)
            && expires > t0 + SignedDuration::from_mins(29),
        "STS's expiry {expires} is not now + 30m"
    );
    assert_eq!(out.requeue_at, Some(refresh));
    assert_eq!(
        data(&secret, "AWS_SESSION_EXPIRATION").unwrap(),
        expires.to_string(),
        "the expiry in RFC 3339"
    );
    let ini = data(&secret, "credentials").unwrap();
    assert!(ini.contains("aws_session_token = "), "{ini}");
    // Owned by the IamRole, labelled like the user Secrets.
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        (
            "IamRole",
            "app",
            obj.metadata.uid.as_deref().unwrap_or_default()
        )
    );
    assert_eq!(
        secret.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
        "iam-operator"
    );
    seen_secrets.push(data(&secret, "AWS_SECRET_ACCESS_KEY").unwrap());
    seen_secrets.push(data(&secret, "AWS_SESSION_TOKEN").unwrap());
    // A workload signs with them and is the assumed role.
    assert_eq!(consume(&emu.url, &secret).as_deref(), Ok(&*assumed));
    // The session token is what makes them work: without it they are refused.
    let without_token = workload(
        &emu.url,
        &[
            ("AWS_ACCESS_KEY_ID", &first_id),
            (
                "AWS_SECRET_ACCESS_KEY",
                &data(&secret, "AWS_SECRET_ACCESS_KEY").unwrap(),
            ),
        ],
    );
    assert!(
        without_token
            .as_ref()
            .is_err_and(|e| e.contains("InvalidClientTokenId")),
        "{without_token:?}"
    );

    // 2. Before the refresh time: kept, nothing issued, requeued at the refresh time.
    let version = secret.metadata.resource_version.clone();
    let just_before = refresh - SignedDuration::from_secs(1);
    let out = session::reconcile(&step(obj, just_before), &mut status)
        .await
        .unwrap();
    assert!(out.issued.is_none() && out.error.is_none());
    assert_eq!(out.requeue_at, Some(refresh));
    let secret = secrets_api.get("app-aws-session").await.unwrap();
    assert_eq!(
        secret.metadata.resource_version, version,
        "Secret untouched"
    );

    // 3. At the refresh time: new credentials are published, and they work.
    let out = session::reconcile(&step(obj, refresh), &mut status)
        .await
        .unwrap();
    assert_eq!(out.issued, Some(Why::RefreshDue), "{:?}", out.error);
    let secret = secrets_api.get("app-aws-session").await.unwrap();
    let second_id = data(&secret, "AWS_ACCESS_KEY_ID").unwrap();
    assert_ne!(second_id, first_id, "new credentials");
    assert_eq!(
        status.as_ref().unwrap().access_key_id.as_deref(),
        Some(&*second_id)
    );
    seen_secrets.push(data(&secret, "AWS_SECRET_ACCESS_KEY").unwrap());
    seen_secrets.push(data(&secret, "AWS_SESSION_TOKEN").unwrap());
    assert_eq!(consume(&emu.url, &secret).as_deref(), Ok(&*assumed));

    // 4. The Secret edited: published again.
    let mut edited = secret.clone();
    edited.metadata.managed_fields = None;
    edited.data.as_mut().unwrap().insert(
        "AWS_ACCESS_KEY_ID".into(),
        k8s_openapi::ByteString(b"ASIAEDITED".to_vec()),
    );
    secrets_api
        .replace("app-aws-session", &PostParams::default(), &edited)
        .await
        .unwrap();
    let out = session::reconcile(&step(obj, Timestamp::now()), &mut status)
        .await
        .unwrap();
    assert_eq!(out.issued, Some(Why::SecretChanged), "{:?}", out.error);
    let secret = secrets_api.get("app-aws-session").await.unwrap();
    seen_secrets.push(data(&secret, "AWS_SECRET_ACCESS_KEY").unwrap());
    seen_secrets.push(data(&secret, "AWS_SESSION_TOKEN").unwrap());
    assert_eq!(consume(&emu.url, &secret).as_deref(), Ok(&*assumed));

    // 5. The trust no longer allows the operator. Before expiry: the credentials stay, the
    //    error says what to fix, and the step asks to come back before they expire.
    iam.update_assume_role_policy()
        .role_name(ROLE)
        .policy_document(trust_of(&format!(
            "arn:aws:iam::{ACCOUNT}:user/someone-else"
        )))
        .send()
        .await
        .unwrap();
    let published = status.clone().unwrap();
    let expires = published.expires_at.clone().unwrap().0;
    let refresh = published.refresh_at.clone().unwrap().0;
    let out = session::reconcile(&step(obj, refresh), &mut status)
        .await
        .unwrap();
    let error = out.error.expect("STS refused");
    let message = error.to_string();
    errors.push(message.clone());
    assert!(
        matches!(
            &error,
            iam_operator::error::Error::Iam(IamError::AccessDenied(_))
        ),
        "{error:?}"
    );
    assert!(
        message.contains(&format!(
            "The trust policy of {arn} must allow the operator's principal"
        )) && message.contains(&operator_arn())
            && message.contains("stay valid until"),
        "{message}"
    );
    assert_eq!(out.requeue_at, Some(expires), "back before they expire");
    assert_eq!(status.as_ref(), Some(&published), "status unchanged");
    let secret = secrets_api.get("app-aws-session").await.unwrap();
    assert_eq!(consume(&emu.url, &secret).as_deref(), Ok(&*assumed));

    // 6. Still refused at expiry: the credentials are removed from the Secret.
    let out = session::reconcile(&step(obj, expires), &mut status)
        .await
        .unwrap();
    let message = out.error.expect("STS refused").to_string();
    errors.push(message.clone());
    assert!(
        message.contains("expired at")
            && message.contains("were removed from Secret app-aws-session"),
        "{message}"
    );
    let secret = secrets_api.get("app-aws-session").await.unwrap();
    for key in session::SESSION_SECRET_DATA {
        assert_eq!(data(&secret, key), None, "{key} left in the Secret");
    }
    let st = status.clone().unwrap();
    assert_eq!(st.access_key_id, None);
    assert_eq!(st.secret_name.as_deref(), Some("app-aws-session"));

    // 7. The trust allows the operator again: published at once.
    iam.update_assume_role_policy()
        .role_name(ROLE)
        .policy_document(trust_of(&operator_arn()))
        .send()
        .await
        .unwrap();
    let out = session::reconcile(&step(obj, Timestamp::now()), &mut status)
        .await
        .unwrap();
    assert_eq!(out.issued, Some(Why::NothingPublished), "{:?}", out.error);
    let secret = secrets_api.get("app-aws-session").await.unwrap();
    seen_secrets.push(data(&secret, "AWS_SECRET_ACCESS_KEY").unwrap());
    seen_secrets.push(data(&secret, "AWS_SESSION_TOKEN").unwrap());
    assert_eq!(consume(&emu.url, &secret).as_deref(), Ok(&*assumed));
    // Expired (as STS sees it): the emulator refuses them, as STS would.
    let id = data(&secret, "AWS_ACCESS_KEY_ID").unwrap();
    let aged = reqwest::Client::new()
        .post(format!("{}/_emulator/age-session", emu.url))
        .json(&serde_json::json!({"accessKeyId": id, "seconds": 1800}))
        .send()
        .await
        .unwrap();
    assert!(aged.status().is_success());
    let refused = consume(&emu.url, &secret);
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("ExpiredToken")),
        "{refused:?}"
    );

    // 7b. Status lost after a publish (its write failed) while STS refuses: the expiry is
    //     read from the Secret; credentials are kept until then, and removed after.
    let untrust = |principal: String| {
        let iam = iam.clone();
        async move {
            iam.update_assume_role_policy()
                .role_name(ROLE)
                .policy_document(trust_of(&principal))
                .send()
                .await
                .unwrap();
        }
    };
    untrust(format!("arn:aws:iam::{ACCOUNT}:user/someone-else")).await;
    let secret_expiry: Timestamp = data(&secret, "AWS_SESSION_EXPIRATION")
        .unwrap()
        .parse()
        .unwrap();
    let mut lost = None;
    let out = session::reconcile(&step(obj, Timestamp::now()), &mut lost)
        .await
        .unwrap();
    let message = out.error.expect("STS refused").to_string();
    assert!(message.contains("stay valid until"), "{message}");
    assert_eq!(out.requeue_at, Some(secret_expiry));
    let kept = secrets_api.get("app-aws-session").await.unwrap();
    assert_eq!(data(&kept, "AWS_ACCESS_KEY_ID"), Some(id.clone()));
    let out = session::reconcile(&step(obj, secret_expiry), &mut lost)
        .await
        .unwrap();
    let message = out.error.expect("STS refused").to_string();
    assert!(message.contains("were removed from Secret"), "{message}");
    let cleared = secrets_api.get("app-aws-session").await.unwrap();
    assert_eq!(data(&cleared, "AWS_ACCESS_KEY_ID"), None);
    untrust(operator_arn()).await;

    // 8. A role whose trust never allowed the operator: an error saying what to fix, no
    //    Secret.
    let other = create_role_object(&roles, "denied", UNTRUSTED, "15m").await;
    let other: &'static IamRole = Box::leak(Box::new(other));
    let other_secrets =
        KubeSecrets::for_owner(client.clone(), other, Arc::new(OwnWrites::default()));
    let untrusted_arn = role_arn(UNTRUSTED);
    let mut other_status = None;
    let out = session::reconcile(
        &SessionStep {
            iam: &port,
            secrets: &other_secrets,
            obj: other,
            role_arn: &untrusted_arn,
            now: Timestamp::now(),
        },
        &mut other_status,
    )
    .await
    .unwrap();
    let message = out.error.expect("refused").to_string();
    errors.push(message.clone());
    assert_eq!(
        message,
        format!(
            "access denied: User: {} is not authorized to perform: sts:AssumeRole on resource: {untrusted_arn}. The trust policy of {untrusted_arn} must allow the operator's principal (the caller named here) to call sts:AssumeRole, and the operator's identity policy must allow sts:AssumeRole on it; no session credentials are published",
            operator_arn()
        )
    );
    assert!(other_status.is_none());
    assert!(
        secrets_api
            .get_opt("denied-aws-session")
            .await
            .unwrap()
            .is_none()
    );

    // 9. Removal: Delete removes the Secret; Retain keeps it without its owner.
    session::remove(&secrets, obj, status.as_ref(), true)
        .await
        .unwrap();
    let kept = secrets_api.get("app-aws-session").await.unwrap();
    assert!(
        kept.metadata
            .owner_references
            .as_ref()
            .is_none_or(|r| r.is_empty()),
        "retained Secret still owned"
    );
    let obj2 = create_role_object(&roles, "app2", ROLE, "15m").await;
    let obj2: &'static IamRole = Box::leak(Box::new(obj2));
    let secrets2 = KubeSecrets::for_owner(client.clone(), obj2, Arc::new(OwnWrites::default()));
    let mut status2 = None;
    let out = session::reconcile(
        &SessionStep {
            iam: &port,
            secrets: &secrets2,
            obj: obj2,
            role_arn: &arn,
            now: Timestamp::now(),
        },
        &mut status2,
    )
    .await
    .unwrap();
    assert_eq!(out.issued, Some(Why::NothingPublished), "{:?}", out.error);
    let secret = secrets_api.get("app2-aws-session").await.unwrap();
    seen_secrets.push(data(&secret, "AWS_SECRET_ACCESS_KEY").unwrap());
    seen_secrets.push(data(&secret, "AWS_SESSION_TOKEN").unwrap());
    session::remove(&secrets2, obj2, status2.as_ref(), false)
        .await
        .unwrap();
    assert!(
        secrets_api
            .get_opt("app2-aws-session")
            .await
            .unwrap()
            .is_none()
    );

    // No secret or token in any status, error message or log line.
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("published session credentials"),
        "the capture sees the step's logs: {logged}"
    );
    let shown = [
        serde_json::to_string(&status).unwrap(),
        serde_json::to_string(&status2).unwrap(),
        errors.join("\n"),
        logged,
    ]
    .join("\n");
    assert_eq!(seen_secrets.len(), 10, "five sessions published");
    for value in &seen_secrets {
        assert!(value.len() >= 16, "a real secret or token: {value:?}");
        assert!(
            !shown.contains(value.as_str()),
            "secret material shown: {shown}"
        );
    }
}

/// Through a real IamRole and the operator binary: the role Ready with its session
/// credentials published, a workload signing with them as the assumed role, a deleted
/// Secret published again, and the Secret deleted when `sessionCredentials` is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iam_role_with_session_credentials_publishes_them_through_the_operator() {
    use support::cluster::Operator;
    let (emu, admin) = authenticated_emulator(1).await;
    let iam = aws_sdk_iam::Client::new(&signed_config(&emu.url, &admin[0]));
    let cp = ControlPlane::shared();
    let ns = cp.namespace("session-op");
    let client = cp.client().await;
    let roles: Api<IamRole> = Api::namespaced(client.clone(), &ns);
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    // The operator signs as the admin user: its own principal goes into the trust.
    let op = Operator::start(
        cp,
        &emu.url,
        // A resync far away: what happens here is woken by watches (the Secret's included).
        &["--watch-namespace", &ns, "--resync-interval", "1h"],
        &[
            ("AWS_ACCESS_KEY_ID", &admin[0].0),
            ("AWS_SECRET_ACCESS_KEY", &admin[0].1),
        ],
    );
    let role_name = format!("{ns}-reporting");
    let manifest = |session: &str| {
        format!(
            r#"apiVersion: iam.kubeop.dev/v1alpha1
kind: IamRole
metadata: {{name: reporting, namespace: {ns}}}
spec:
  roleName: {role_name}
  maxSessionDuration: 2h
  trust:
    podIdentity: {{}}
{session}"#
        )
    };
    let applied = cp.apply(&manifest("  sessionCredentials: {duration: 90m}\n"));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let ready = |r: &IamRole| {
        r.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                && s.observed_generation == r.metadata.generation
        })
    };
    let role =
        support::eventually(
            "the IamRole Ready",
            std::time::Duration::from_secs(120),
            || async {
                roles.get("reporting").await.ok().filter(|r| {
                    ready(r) && r.status.as_ref().unwrap().session_credentials.is_some()
                })
            },
        )
        .await;
    let st = role.status.clone().unwrap().session_credentials.unwrap();
    assert_eq!(st.secret_name.as_deref(), Some("reporting-aws-session"));
    assert_eq!(
        st.expires_at
            .clone()
            .unwrap()
            .0
            .duration_since(st.issued_at.clone().unwrap().0),
        SignedDuration::from_mins(90)
    );
    let secret = secrets_api.get("reporting-aws-session").await.unwrap();
    assert_eq!(data(&secret, "AWS_ACCESS_KEY_ID"), st.access_key_id);
    let assumed = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{ns}.reporting");
    assert_eq!(consume(&emu.url, &secret).as_deref(), Ok(&*assumed));
    // The trust IAM holds names the operator's principal (the admin user) for AssumeRole.
    let trust = iam
        .get_role()
        .role_name(&role_name)
        .send()
        .await
        .unwrap()
        .role()
        .unwrap()
        .assume_role_policy_document()
        .unwrap()
        .to_string();
    let trust = urlencoding::decode(&trust).unwrap().into_owned();
    assert!(
        trust.contains(&format!("arn:aws:iam::{ACCOUNT}:user/admin")),
        "{trust}"
    );

    // A deleted Secret is published again (new credentials).
    secrets_api
        .delete("reporting-aws-session", &Default::default())
        .await
        .unwrap();
    let first = st.access_key_id.clone().unwrap();
    let again = support::eventually(
        "the Secret published again",
        std::time::Duration::from_secs(60),
        || async {
            secrets_api
                .get_opt("reporting-aws-session")
                .await
                .unwrap()
                .filter(|s| data(s, "AWS_ACCESS_KEY_ID").is_some_and(|id| id != first))
        },
    )
    .await;
    assert_eq!(consume(&emu.url, &again).as_deref(), Ok(&*assumed));

    // No secret or token in the IamRole, its events or the operator's log.
    let role = roles.get("reporting").await.unwrap();
    let events = cp.kubectl_ok(&["get", "events", "-n", &ns, "-o", "json"]);
    assert!(
        events.contains("SessionCredentialsPublished"),
        "an event says what happened: {events}"
    );
    let shown = format!(
        "{}\n{events}\n{}",
        serde_json::to_string(&role).unwrap(),
        op.logs()
    );
    for s in [&secret, &again] {
        for key in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
            let value = data(s, key).unwrap();
            assert!(!shown.contains(&value), "{key} shown");
        }
    }

    // sessionCredentials removed: the Secret is deleted, the role stays Ready.
    let applied = cp.apply(&manifest(""));
    assert!(applied.status.success());
    support::eventually(
        "the Secret deleted",
        std::time::Duration::from_secs(60),
        || async {
            secrets_api
                .get_opt("reporting-aws-session")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    let role = roles.get("reporting").await.unwrap();
    assert!(role.status.unwrap().session_credentials.is_none());
    drop(op);
}
