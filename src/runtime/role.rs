//! IamRole's wiring: the reconcile the runtime runs, and the ServiceAccount adapter that
//! sets and removes the `eks.amazonaws.com/role-arn` annotation.

use super::context::Context;
use super::reconcile::Managed;
use crate::api::{IamRole, IamRoleStatus, ROLE_ARN_ANNOTATION};
use crate::controller::Synced;
use crate::controller::role::{self, ServiceAccounts};
use crate::error::{Error, Result};
use crate::k8s::{Journal, KubeSecrets};
use crate::status::ObjectStatus;
use async_trait::async_trait;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

/// The field manager of the annotation alone, so that applying without it removes exactly
/// what the operator set and nothing another manager owns.
pub const SERVICE_ACCOUNT_FIELD_MANAGER: &str = "iam-operator-role-arn";

impl ObjectStatus for IamRoleStatus {
    fn conditions(&self) -> &Vec<Condition> {
        &self.conditions
    }
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
    fn observed_generation_mut(&mut self) -> &mut Option<i64> {
        &mut self.observed_generation
    }
}

/// The ServiceAccounts of one namespace, through the API server.
pub struct KubeServiceAccounts {
    api: Api<ServiceAccount>,
}

impl KubeServiceAccounts {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
        }
    }

    /// Server-side apply of the annotation (or of nothing, which removes it) under the
    /// annotation's own field manager. The resourceVersion read just before makes the
    /// apply fail rather than create a ServiceAccount deleted in between.
    async fn apply(&self, name: &str, role_arn: Option<&str>) -> Result<bool> {
        let Some(current) = self.api.get_opt(name).await.map_err(kube_error)? else {
            return Ok(false);
        };
        let has = current
            .annotations()
            .get(ROLE_ARN_ANNOTATION)
            .map(String::as_str);
        // Already as wanted: no write (each would wake the roles watching the account).
        if has == role_arn {
            return Ok(true);
        }
        let mut metadata = serde_json::json!({
            "name": name,
            "resourceVersion": current.resource_version(),
        });
        if let Some(arn) = role_arn {
            metadata["annotations"] = serde_json::json!({ROLE_ARN_ANNOTATION: arn});
        }
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata,
        });
        let params = PatchParams::apply(SERVICE_ACCOUNT_FIELD_MANAGER).force();
        match self.api.patch(name, &params, &Patch::Apply(&body)).await {
            Ok(_) => Ok(true),
            // Deleted or changed since it was read: the next reconcile looks again.
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(kube_error(e)),
        }
    }
}

fn kube_error(e: kube::Error) -> Error {
    Error::from(e)
}

#[async_trait]
impl ServiceAccounts for KubeServiceAccounts {
    async fn annotate(&self, name: &str, role_arn: &str) -> Result<bool> {
        self.apply(name, Some(role_arn)).await
    }
    async fn unannotate(&self, name: &str) -> Result<()> {
        self.apply(name, None).await.map(drop)
    }
}

#[async_trait]
impl Managed for IamRole {
    type Status = IamRoleStatus;
    fn current_status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    async fn reconcile(
        ctx: &Context,
        obj: &Self,
        status: &mut Self::Status,
        _journal: &dyn Journal<Self::Status>,
    ) -> Result<Synced> {
        let accounts =
            KubeServiceAccounts::new(ctx.client.clone(), &obj.namespace().unwrap_or_default());
        let secrets = KubeSecrets::for_owner(ctx.client.clone(), obj, ctx.own_writes.clone());
        role::reconcile(&ctx.engine, obj, status, &accounts, &secrets).await
    }
    async fn cleanup(ctx: &Context, obj: &Self) -> Result<()> {
        let accounts =
            KubeServiceAccounts::new(ctx.client.clone(), &obj.namespace().unwrap_or_default());
        let secrets = KubeSecrets::for_owner(ctx.client.clone(), obj, ctx.own_writes.clone());
        role::cleanup(&ctx.engine, obj, &accounts, &secrets).await
    }
    fn due(status: &Self::Status) -> Option<Timestamp> {
        let session = status.session_credentials.as_ref()?;
        session.expires_at.as_ref().map(|t| t.0)
    }
}
