//! Shared test helpers: the IAM emulator and an [`Engine`] pointed at it.
#![allow(dead_code)]

pub mod emulator;

use async_trait::async_trait;
use iam_operator::controller::{Dependencies, Engine};
use iam_operator::error::{Error, Result};
use iam_operator::iam::AwsIam;
use iam_operator::settings::Settings;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Dependencies a test declares directly: (namespace, name) → ARN or group name.
#[derive(Default)]
pub struct FakeDeps {
    pub policies: Mutex<HashMap<(String, String), String>>,
    pub groups: Mutex<HashMap<(String, String), String>>,
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
        };
        Self {
            aws: aws_sdk_iam::Client::new(&config),
            emulator,
            engine,
            deps,
        }
    }
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
