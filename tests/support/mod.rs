//! Shared test helpers: the IAM emulator and an [`Engine`] pointed at it.
#![allow(dead_code)]

pub mod cluster;
pub mod emulator;
pub mod invariants;
pub mod read;

use async_trait::async_trait;
use iam_operator::controller::Engine;
use iam_operator::error::{Error, Result};
use iam_operator::iam::AwsIam;
use iam_operator::k8s::{Dependencies, Journal, SecretStore, Selection, StoredSecret, Usage};
use iam_operator::metrics::Metrics;
use iam_operator::settings::Settings;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Dependencies a test declares directly: (namespace, name) → ARN or group name.
#[derive(Default)]
pub struct FakeDeps {
    pub policies: Mutex<HashMap<(String, String), String>>,
    pub groups: Mutex<HashMap<(String, String), String>>,
    /// IAM group id → `namespace/name` of the IamGroup whose status records it.
    pub group_claims: Mutex<HashMap<String, String>>,
    /// The tenancy selection of every namespace (default: the flags).
    pub tenancy: Mutex<Option<Selection>>,
    /// What the other IamUsers of a namespace hold (for quotas).
    pub usage: Mutex<Usage>,
}

impl FakeDeps {
    pub fn policy(&self, ns: &str, name: &str, arn: &str) {
        self.policies
            .lock()
            .unwrap()
            .insert((ns.into(), name.into()), arn.into());
    }
    pub fn group(&self, ns: &str, name: &str, iam_name: &str) {
        self.groups
            .lock()
            .unwrap()
            .insert((ns.into(), name.into()), iam_name.into());
    }
}

#[async_trait]
impl Dependencies for FakeDeps {
    async fn policy_arn(&self, ns: &str, name: &str) -> Result<String> {
        self.policies
            .lock()
            .unwrap()
            .get(&(ns.into(), name.into()))
            .cloned()
            .ok_or_else(|| Error::DependencyNotReady(format!("waiting for IamPolicy {name}")))
    }
    async fn group_name(&self, ns: &str, name: &str) -> Result<String> {
        self.groups
            .lock()
            .unwrap()
            .get(&(ns.into(), name.into()))
            .cloned()
            .ok_or_else(|| Error::DependencyNotReady(format!("waiting for IamGroup {name}")))
    }
    async fn usage(&self, _namespace: &str, _except: &str) -> Result<Usage> {
        Ok(*self.usage.lock().unwrap())
    }
    async fn tenancy(&self, _namespace: &str) -> Result<Selection> {
        Ok(self
            .tenancy
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(Selection::Flags))
    }
    async fn group_claimed_by(&self, id: &str, ns: &str, name: &str) -> Result<Option<String>> {
        let claims = self.group_claims.lock().unwrap();
        Ok(claims
            .get(id)
            .filter(|o| **o != format!("{ns}/{name}"))
            .cloned())
    }
}

/// A status journal in memory: every recorded status, in order. `fail_next` makes the next
/// record fail as a resourceVersion conflict would.
pub struct MemoryJournal<S> {
    pub recorded: Mutex<Vec<S>>,
    pub fail_next: std::sync::atomic::AtomicBool,
}

impl<S> Default for MemoryJournal<S> {
    fn default() -> Self {
        Self {
            recorded: Mutex::new(Vec::new()),
            fail_next: Default::default(),
        }
    }
}

impl<S: Clone> MemoryJournal<S> {
    pub fn last(&self) -> Option<S> {
        self.recorded.lock().unwrap().last().cloned()
    }
}

#[async_trait]
impl<S: Clone + Send + Sync> Journal<S> for MemoryJournal<S> {
    async fn record(&self, status: &S) -> Result<()> {
        if self
            .fail_next
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Error::Iam(iam_operator::iam::IamError::Conflict(
                "the object has been modified".into(),
            )));
        }
        self.recorded.lock().unwrap().push(status.clone());
        Ok(())
    }
}

/// The Secrets of one IamUser, in memory.
#[derive(Default)]
pub struct MemorySecrets {
    pub secrets: Mutex<BTreeMap<String, StoredSecret>>,
    /// Names of Secrets that exist but belong to someone else.
    pub foreign: Mutex<Vec<String>>,
    /// Whether the namespace is being deleted.
    pub terminating: std::sync::atomic::AtomicBool,
}

impl MemorySecrets {
    pub fn value(&self, name: &str, key: &str) -> Option<String> {
        let secrets = self.secrets.lock().unwrap();
        secrets.get(name)?.data.get(key).map(str::to_string)
    }
    pub fn remove(&self, name: &str) {
        self.secrets.lock().unwrap().remove(name);
    }
}

#[async_trait]
impl SecretStore for MemorySecrets {
    async fn get(&self, name: &str) -> Result<Option<StoredSecret>> {
        if self.foreign.lock().unwrap().iter().any(|f| f == name) {
            return Err(Error::SecretConflict(format!("Secret {name} is not ours")));
        }
        Ok(self.secrets.lock().unwrap().get(name).cloned())
    }
    async fn put(&self, name: &str, secret: &StoredSecret, dry_run: bool) -> Result<()> {
        if self.foreign.lock().unwrap().iter().any(|f| f == name) {
            return Err(Error::SecretConflict(format!("Secret {name} is not ours")));
        }
        if !dry_run {
            self.secrets
                .lock()
                .unwrap()
                .insert(name.into(), secret.clone());
        }
        Ok(())
    }
    async fn delete(&self, name: &str) -> Result<()> {
        self.secrets.lock().unwrap().remove(name);
        Ok(())
    }
    async fn orphan(&self, _name: &str) -> Result<()> {
        Ok(())
    }
    async fn namespace_terminating(&self) -> Result<bool> {
        Ok(self.terminating.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// An SDK configuration for the emulator with the emulator's test credentials.
pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
            aws_sdk_iam::config::Credentials::new("testing", "testing", None, None, "tests"),
        ))
        .build()
}

/// A test world: a fresh emulator, an engine over it, and the fake dependencies.
pub struct World {
    pub emulator: emulator::Emulator,
    pub engine: Engine,
    pub deps: Arc<FakeDeps>,
    /// A raw SDK client for out-of-band changes and for reading IAM back.
    pub aws: aws_sdk_iam::Client,
    /// Where the reconciles of this world journal their intents.
    pub groups_journal: Arc<MemoryJournal<iam_operator::api::IamGroupStatus>>,
    pub users_journal: Arc<MemoryJournal<iam_operator::api::IamUserStatus>>,
    /// The credential Secrets of this world's users.
    pub secrets: Arc<MemorySecrets>,
}

impl World {
    pub async fn start() -> Self {
        Self::with_settings(Settings::default()).await
    }

    pub async fn with_settings(settings: Settings) -> Self {
        let emulator = emulator::Emulator::start();
        let config = sdk_config(&emulator.url);
        let deps = Arc::new(FakeDeps::default());
        let engine = Engine {
            iam: Arc::new(AwsIam::new(&config)),
            settings,
            deps: deps.clone(),
            metrics: Arc::new(Metrics::default()),
            identities: Some(Arc::new(iam_operator::iam::AssumedRoles::new(
                config.clone(),
                None,
                |iam| iam,
            ))),
        };
        Self {
            aws: aws_sdk_iam::Client::new(&config),
            emulator,
            engine,
            deps,
            groups_journal: Default::default(),
            users_journal: Default::default(),
            secrets: Default::default(),
        }
    }
}

/// Runs one IamUser reconcile with this world's ports and stores the status on the object,
/// as the runtime would.
pub async fn reconcile_user(
    w: &World,
    u: &mut iam_operator::api::IamUser,
) -> Result<iam_operator::controller::Synced> {
    let mut status = u.status.clone().unwrap_or_default();
    let r = iam_operator::controller::user::reconcile(
        &w.engine,
        u,
        &mut status,
        w.users_journal.as_ref(),
        w.secrets.as_ref(),
    )
    .await;
    u.status = Some(status);
    r
}

/// A namespaced object with the given name, as the API server would hand it over.
pub fn meta(ns: &str, name: &str) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        generation: Some(1),
        ..Default::default()
    }
}

/// A policy document allowing `actions` on everything.
pub fn allow(actions: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
}

/// The IAM actions in `calls` that are not reads (`Get*`/`List*`).
pub fn writes(calls: &std::collections::BTreeMap<String, u64>) -> Vec<String> {
    calls
        .keys()
        .filter(|k| !k.starts_with("Get") && !k.starts_with("List"))
        .cloned()
        .collect()
}

/// The standard IAM error code of a raw SDK failure, e.g. `NoSuchEntity`.
pub fn code<E, R>(err: &aws_sdk_iam::error::SdkError<E, R>) -> Option<String>
where
    E: aws_sdk_iam::error::ProvideErrorMetadata,
{
    use aws_sdk_iam::error::ProvideErrorMetadata;
    err.code().map(str::to_string)
}

impl World {
    /// Makes every namespace of this world governed by an IamTenancyPolicy with `spec`.
    pub fn tenancy(&self, spec: serde_json::Value) {
        let spec = serde_json::from_value(spec).unwrap();
        *self.deps.tenancy.lock().unwrap() =
            Some(Selection::Policy("tenancy".into(), Box::new(spec)));
    }
}

/// Changing IAM out of band with the raw SDK client (reading it back: [`read`]).
impl World {
    /// Creates a customer-managed policy out of band; returns its ARN.
    pub async fn create_policy(&self, name: &str, document: serde_json::Value) -> String {
        self.aws
            .create_policy()
            .policy_name(name)
            .policy_document(document.to_string())
            .send()
            .await
            .unwrap()
            .policy()
            .unwrap()
            .arn()
            .unwrap()
            .to_string()
    }
}

/// Polls `check` every 200 ms until it returns `Some`, failing the test with `what` after
/// `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
