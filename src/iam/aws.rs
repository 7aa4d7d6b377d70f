//! [`Iam`] over `aws-sdk-iam`: the only module that imports the SDK.

use super::*;
use aws_sdk_iam::Client;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::{StatusType, Tag};
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;

/// IAM through the AWS SDK, configured from the standard AWS chain
/// (`AWS_ENDPOINT_URL_IAM` points it at an emulator).
pub struct AwsIam {
    iam: Client,
    sts: aws_sdk_sts::Client,
    account: OnceCell<(String, String)>,
}

/// An IAM client, as the rest of the operator sees it.
type SharedIam = std::sync::Arc<dyn super::Iam>;
/// What every client is wrapped in (the leader's write fence).
type Wrap = Box<dyn Fn(SharedIam) -> SharedIam + Send + Sync>;

/// Tenants' roles, assumed through STS with the operator's own credentials. Each role's
/// client is built once; the SDK's identity cache keeps its session credentials and renews
/// them before they expire.
pub struct AssumedRoles {
    config: aws_config::SdkConfig,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    wrap: Wrap,
    /// One client per (role, external id).
    cache: tokio::sync::Mutex<std::collections::HashMap<(String, Option<String>), SharedIam>>,
}

impl AssumedRoles {
    pub fn new(
        config: aws_config::SdkConfig,
        metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
        wrap: impl Fn(std::sync::Arc<dyn super::Iam>) -> std::sync::Arc<dyn super::Iam>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        // STS needs a clock and a sleep (for retries); a configuration built by hand may
        // lack them, which the SDK would only notice by panicking.
        let mut builder = config.to_builder();
        if config.time_source().is_none() {
            builder = builder.time_source(aws_smithy_async::time::SystemTimeSource::new());
        }
        if config.sleep_impl().is_none()
            && let Some(sleep) = aws_smithy_async::rt::sleep::default_async_sleep()
        {
            builder = builder.sleep_impl(sleep);
        }
        Self {
            config: builder.build(),
            metrics,
            wrap: Box::new(wrap),
            cache: Default::default(),
        }
    }
}

#[async_trait]
impl super::Identities for AssumedRoles {
    async fn assume(
        &self,
        role_arn: &str,
        external_id: Option<&str>,
    ) -> std::sync::Arc<dyn super::Iam> {
        let key = (role_arn.to_string(), external_id.map(str::to_string));
        let mut cache = self.cache.lock().await;
        if let Some(iam) = cache.get(&key) {
            return iam.clone();
        }
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name("iam-operator")
            .configure(&self.config);
        if let Some(id) = external_id {
            provider = provider.external_id(id);
        }
        // One identity cache for the IAM and STS clients: otherwise each client caches the
        // role's credentials on its own, and the role is assumed once per client.
        let config = self
            .config
            .to_builder()
            .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
                provider.build().await,
            ))
            .identity_cache(aws_config::identity::IdentityCache::lazy().build())
            .build();
        let iam: std::sync::Arc<dyn super::Iam> = match &self.metrics {
            Some(m) => std::sync::Arc::new(AwsIam::with_metrics(&config, m.clone())),
            None => std::sync::Arc::new(AwsIam::new(&config)),
        };
        let iam = (self.wrap)(iam);
        cache.insert(key, iam.clone());
        iam
    }
}

/// Error codes by which AWS says "slow down" (the SDK's own list of throttling codes, plus
/// S3's `SlowDown` that some IAM-compatible endpoints answer with).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

fn is_throttling(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

/// Codes meaning the operator's identity may not make the call (or was not recognised).
fn is_access_denied(code: &str) -> bool {
    matches!(
        code,
        "AccessDenied"
            | "AccessDeniedException"
            | "UnauthorizedOperation"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
    )
}

/// The outcome label of one IAM request attempt, from its HTTP status (`None`: no response
/// at all) and IAM's error code. Throttling is its own outcome, so that a sustained rate
/// limit can be told from other failures; the set is fixed, whatever codes IAM invents.
fn call_outcome(status: Option<u16>, code: Option<&str>) -> &'static str {
    match (status, code) {
        (None, _) => "transport_error",
        (Some(s), _) if s < 300 => "success",
        (Some(429), _) => "throttled",
        (_, Some(c)) if is_throttling(c) => "throttled",
        (_, Some("NoSuchEntity")) => "not_found",
        (_, Some(c)) if is_access_denied(c) => "access_denied",
        // 503 without a code is how S3-style endpoints say SlowDown.
        (Some(503), None) => "throttled",
        (Some(s), _) if s >= 500 => "server_error",
        _ => "client_error",
    }
}

/// IAM's error code in a query-protocol error body (`<Error><Code>...</Code>`).
fn error_code(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    let code = text[start..start + len].trim();
    // Only a plausible code (letters and digits), never free text, becomes a decision.
    (!code.is_empty() && code.len() <= 64 && code.chars().all(|c| c.is_ascii_alphanumeric()))
        .then_some(code)
}

/// Counts every IAM request attempt (retries included: each one costs rate limit) by
/// operation and outcome.
struct CountCalls(std::sync::Arc<crate::metrics::Metrics>);

impl std::fmt::Debug for CountCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CountCalls")
    }
}

impl aws_sdk_iam::config::Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "CountCalls"
    }

    fn read_after_attempt(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef<'_>,
        _components: &aws_sdk_iam::config::RuntimeComponents,
        cfg: &mut aws_sdk_iam::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map_or("unknown", |m| m.name());
        // The response, when there was one; the orchestrator has read an error's body
        // into memory by now (to deserialise it), so its code is at hand.
        let response = context.response();
        let status = response.map(|r| r.status().as_u16());
        let code = response
            .filter(|r| r.status().as_u16() >= 300)
            .and_then(|r| r.body().bytes())
            .and_then(error_code);
        let outcome = match context.output_or_error() {
            Some(Ok(_)) => "success",
            _ => match call_outcome(status, code) {
                // An error with a 2xx response: unreadable, not a success.
                "success" => "client_error",
                other => other,
            },
        };
        self.0.iam_call(operation, outcome);
        Ok(())
    }
}

impl AwsIam {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            iam: Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            account: OnceCell::new(),
        }
    }

    /// Like [`AwsIam::new`], counting IAM calls in `metrics`.
    pub fn with_metrics(
        config: &aws_config::SdkConfig,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        let iam_config = aws_sdk_iam::config::Builder::from(config)
            .interceptor(CountCalls(metrics))
            .build();
        Self {
            iam: Client::from_conf(iam_config),
            ..Self::new(config)
        }
    }
}

// Whole-account reads: inherent, not on the `Iam` port, so that a caller given only these
// reads cannot write.
impl AwsIam {
    /// Users, groups and customer-managed policies of the whole account from
    /// `GetAccountAuthorizationDetails`, each policy's tags from `GetPolicy` (that call does
    /// not report them). Only Get/List calls.
    pub async fn account_details(&self) -> IamResult<super::AccountDetails> {
        use aws_sdk_iam::types::EntityType;
        let pages = self
            .iam
            .get_account_authorization_details()
            .set_filter(Some(vec![
                EntityType::User,
                EntityType::Group,
                EntityType::LocalManagedPolicy,
            ]))
            .max_items(1000)
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(map_err)?;
        let inline_of = |list: &[aws_sdk_iam::types::PolicyDetail]| -> Vec<(String, String)> {
            list.iter()
                .map(|p| {
                    (
                        p.policy_name().unwrap_or_default().to_string(),
                        decode_document(p.policy_document().unwrap_or_default()),
                    )
                })
                .collect()
        };
        let attached_of = |list: &[aws_sdk_iam::types::AttachedPolicy]| -> Vec<String> {
            list.iter()
                .filter_map(|p| p.policy_arn().map(str::to_string))
                .collect()
        };
        let mut details = super::AccountDetails::default();
        for page in &pages {
            for u in page.user_detail_list() {
                details.users.push(super::UserDetails {
                    name: u.user_name().unwrap_or_default().to_string(),
                    path: u.path().unwrap_or("/").to_string(),
                    tags: tag_map(u.tags()),
                    permissions_boundary: u
                        .permissions_boundary()
                        .and_then(|b| b.permissions_boundary_arn())
                        .map(str::to_string),
                    groups: u.group_list().to_vec(),
                    attached: attached_of(u.attached_managed_policies()),
                    inline: inline_of(u.user_policy_list()),
                });
            }
            for g in page.group_detail_list() {
                details.groups.push(super::GroupDetails {
                    name: g.group_name().unwrap_or_default().to_string(),
                    path: g.path().unwrap_or("/").to_string(),
                    attached: attached_of(g.attached_managed_policies()),
                    inline: inline_of(g.group_policy_list()),
                });
            }
            for p in page.policies() {
                let document = p
                    .policy_version_list()
                    .iter()
                    .find(|v| v.is_default_version())
                    .and_then(|v| v.document())
                    .map(decode_document)
                    .unwrap_or_default();
                details.policies.push(super::ManagedPolicyDetails {
                    arn: p.arn().unwrap_or_default().to_string(),
                    name: p.policy_name().unwrap_or_default().to_string(),
                    path: p.path().unwrap_or("/").to_string(),
                    description: p.description().map(str::to_string),
                    document,
                    tags: BTreeMap::new(),
                });
            }
        }
        for p in &mut details.policies {
            p.tags = self.get_policy(&p.arn).await?.tags;
        }
        Ok(details)
    }
}

/// Maps an SDK failure to the domain enum by IAM's error code. The message is IAM's own
/// text, which never carries secret material.
fn map_err<E, R>(err: SdkError<E, R>) -> IamError
where
    E: ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    let message = err
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| match &err {
            SdkError::TimeoutError(_) => "request timed out".to_string(),
            SdkError::DispatchFailure(_) => "could not reach IAM".to_string(),
            SdkError::ResponseError(_) => "unreadable response from IAM".to_string(),
            SdkError::ConstructionFailure(_) => "could not build the request".to_string(),
            _ => "IAM request failed".to_string(),
        });
    match err.code() {
        Some("NoSuchEntity") => IamError::NotFound(message),
        Some("EntityAlreadyExists") => IamError::AlreadyExists(message),
        Some("DeleteConflict") => IamError::Conflict(message),
        Some("LimitExceeded") => IamError::LimitExceeded(message),
        Some("MalformedPolicyDocument") => IamError::MalformedPolicy(message),
        Some(code) if is_access_denied(code) => IamError::AccessDenied(message),
        Some(code) if is_throttling(code) => IamError::Throttled(message),
        Some(
            "InvalidInput" | "ValidationError" | "PasswordPolicyViolation" | "PolicyNotAttachable",
        ) => IamError::Invalid(message),
        _ => IamError::Transient(message),
    }
}

fn ts(t: &aws_sdk_iam::primitives::DateTime) -> Timestamp {
    Timestamp::from_second(t.secs()).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

fn to_tags(tags: &BTreeMap<String, String>) -> IamResult<Vec<Tag>> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| IamError::Invalid(e.to_string()))
        })
        .collect()
}

/// IAM returns policy documents URL-encoded.
fn decode_document(doc: &str) -> String {
    urlencoding::decode(doc)
        .map(|d| d.into_owned())
        .unwrap_or_else(|_| doc.to_string())
}

fn policy_info(p: &aws_sdk_iam::types::Policy) -> PolicyInfo {
    PolicyInfo {
        arn: p.arn().unwrap_or_default().to_string(),
        id: p.policy_id().unwrap_or_default().to_string(),
        name: p.policy_name().unwrap_or_default().to_string(),
        path: p.path().unwrap_or("/").to_string(),
        default_version_id: p.default_version_id().unwrap_or_default().to_string(),
        tags: tag_map(p.tags()),
    }
}

fn user_info(u: &aws_sdk_iam::types::User) -> UserInfo {
    UserInfo {
        arn: u.arn().to_string(),
        id: u.user_id().to_string(),
        name: u.user_name().to_string(),
        path: u.path().to_string(),
        tags: tag_map(u.tags()),
        permissions_boundary: u
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string),
    }
}

fn role_info(r: &aws_sdk_iam::types::Role) -> RoleInfo {
    RoleInfo {
        arn: r.arn().to_string(),
        id: r.role_id().to_string(),
        name: r.role_name().to_string(),
        path: r.path().to_string(),
        tags: tag_map(r.tags()),
        permissions_boundary: r
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string),
        description: r.description().map(str::to_string),
        max_session_duration: r.max_session_duration(),
        trust_policy: r
            .assume_role_policy_document()
            .map(decode_document)
            .unwrap_or_default(),
    }
}

fn instance_profile_info(p: &aws_sdk_iam::types::InstanceProfile) -> InstanceProfileInfo {
    InstanceProfileInfo {
        arn: p.arn().to_string(),
        name: p.instance_profile_name().to_string(),
        path: p.path().to_string(),
        roles: p
            .roles()
            .iter()
            .map(|r| r.role_name().to_string())
            .collect(),
    }
}

fn not_found(what: &str) -> IamError {
    IamError::NotFound(format!("{what} not in IAM response"))
}

#[async_trait]
impl Iam for AwsIam {
    async fn account(&self) -> IamResult<(String, String)> {
        self.account
            .get_or_try_init(|| async {
                let out = self
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(map_err)?;
                let arn = out.arn().unwrap_or_default();
                let partition = arn.split(':').nth(1).unwrap_or("aws").to_string();
                let account = out
                    .account()
                    .ok_or_else(|| not_found("account"))?
                    .to_string();
                Ok((account, partition))
            })
            .await
            .cloned()
    }

    async fn account_alias(&self) -> IamResult<Option<String>> {
        let out = self
            .iam
            .list_account_aliases()
            .send()
            .await
            .map_err(map_err)?;
        Ok(out.account_aliases().first().cloned())
    }

    async fn password_policy(&self) -> IamResult<Option<PasswordPolicy>> {
        Ok(self
            .account_password_policy()
            .await?
            .as_ref()
            .map(PasswordPolicy::from))
    }

    async fn account_password_policy(&self) -> IamResult<Option<AccountPasswordPolicySpec>> {
        let out = optional(
            self.iam
                .get_account_password_policy()
                .send()
                .await
                .map_err(map_err),
        )?;
        Ok(out.and_then(|o| {
            o.password_policy().map(|p| AccountPasswordPolicySpec {
                minimum_password_length: p.minimum_password_length(),
                require_symbols: p.require_symbols(),
                require_numbers: p.require_numbers(),
                require_uppercase_characters: p.require_uppercase_characters(),
                require_lowercase_characters: p.require_lowercase_characters(),
                allow_users_to_change_password: p.allow_users_to_change_password(),
                // IAM reports 0 for "never expires" / "no reuse prevention".
                max_password_age: p.max_password_age().filter(|d| *d > 0),
                password_reuse_prevention: p.password_reuse_prevention().filter(|n| *n > 0),
                hard_expiry: p.hard_expiry().unwrap_or(false),
            })
        }))
    }

    async fn update_account_password_policy(
        &self,
        policy: &AccountPasswordPolicySpec,
    ) -> IamResult<()> {
        self.iam
            .update_account_password_policy()
            .set_minimum_password_length(policy.minimum_password_length)
            .require_symbols(policy.require_symbols)
            .require_numbers(policy.require_numbers)
            .require_uppercase_characters(policy.require_uppercase_characters)
            .require_lowercase_characters(policy.require_lowercase_characters)
            .allow_users_to_change_password(policy.allow_users_to_change_password)
            .set_max_password_age(policy.max_password_age)
            .set_password_reuse_prevention(policy.password_reuse_prevention)
            .hard_expiry(policy.hard_expiry)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn delete_account_password_policy(&self) -> IamResult<()> {
        self.iam
            .delete_account_password_policy()
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn create_account_alias(&self, alias: &str) -> IamResult<()> {
        self.iam
            .create_account_alias()
            .account_alias(alias)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn delete_account_alias(&self, alias: &str) -> IamResult<()> {
        self.iam
            .delete_account_alias()
            .account_alias(alias)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn account_summary(&self) -> IamResult<BTreeMap<String, i32>> {
        let out = self
            .iam
            .get_account_summary()
            .send()
            .await
            .map_err(map_err)?;
        Ok(out
            .summary_map()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.as_str().to_string(), *v))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn get_policy(&self, arn: &str) -> IamResult<PolicyInfo> {
        let out = self
            .iam
            .get_policy()
            .policy_arn(arn)
            .send()
            .await
            .map_err(map_err)?;
        let mut info = policy_info(out.policy().ok_or_else(|| not_found("policy"))?);
        if info.tags.is_empty() {
            // Not every IAM implementation returns tags from GetPolicy.
            let tags = self
                .iam
                .list_policy_tags()
                .policy_arn(arn)
                .send()
                .await
                .map_err(map_err)?;
            info.tags = tag_map(tags.tags());
        }
        Ok(info)
    }

    async fn create_policy(
        &self,
        name: &str,
        path: &str,
        description: Option<&str>,
        document: &str,
        tags: &BTreeMap<String, String>,
    ) -> IamResult<PolicyInfo> {
        let out = self
            .iam
            .create_policy()
            .policy_name(name)
            .path(path)
            .set_description(description.map(str::to_string))
            .policy_document(document)
            .set_tags(Some(to_tags(tags)?))
            .send()
            .await
            .map_err(map_err)?;
        let mut info = policy_info(out.policy().ok_or_else(|| not_found("policy"))?);
        info.tags = tags.clone();
        Ok(info)
    }

    async fn list_policy_versions(&self, arn: &str) -> IamResult<Vec<PolicyVersion>> {
        let versions = self
            .iam
            .list_policy_versions()
            .policy_arn(arn)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(map_err)?;
        Ok(versions
            .iter()
            .map(|v| PolicyVersion {
                version_id: v.version_id().unwrap_or_default().to_string(),
                is_default: v.is_default_version(),
                created: v.create_date().map(ts).unwrap_or(Timestamp::UNIX_EPOCH),
            })
            .collect())
    }

    async fn get_policy_version(&self, arn: &str, version_id: &str) -> IamResult<String> {
        let out = self
            .iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(version_id)
            .send()
            .await
            .map_err(map_err)?;
        out.policy_version()
            .and_then(|v| v.document())
            .map(decode_document)
            .ok_or_else(|| not_found("policy document"))
    }

    async fn create_policy_version(&self, arn: &str, document: &str) -> IamResult<String> {
        let out = self
            .iam
            .create_policy_version()
            .policy_arn(arn)
            .policy_document(document)
            .set_as_default(true)
            .send()
            .await
            .map_err(map_err)?;
        out.policy_version()
            .and_then(|v| v.version_id())
            .map(str::to_string)
            .ok_or_else(|| not_found("policy version"))
    }

    async fn delete_policy_version(&self, arn: &str, version_id: &str) -> IamResult<()> {
        self.iam
            .delete_policy_version()
            .policy_arn(arn)
            .version_id(version_id)
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn tag_policy(&self, arn: &str, tags: &BTreeMap<String, String>) -> IamResult<()> {
        self.iam
            .tag_policy()
            .policy_arn(arn)
            .set_tags(Some(to_tags(tags)?))
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn untag_policy(&self, arn: &str, keys: &[String]) -> IamResult<()> {
        self.iam
            .untag_policy()
            .policy_arn(arn)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn list_entities_for_policy(&self, arn: &str) -> IamResult<PolicyEntities> {
        let pages = self
            .iam
            .list_entities_for_policy()
            .policy_arn(arn)
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(map_err)?;
        let mut entities = PolicyEntities::default();
        for page in &pages {
            entities.users.extend(
                page.policy_users()
                    .iter()
                    .filter_map(|u| u.user_name().map(str::to_string)),
            );
            entities.groups.extend(
                page.policy_groups()
                    .iter()
                    .filter_map(|g| g.group_name().map(str::to_string)),
            );
            entities.roles.extend(
                page.policy_roles()
                    .iter()
                    .filter_map(|r| r.role_name().map(str::to_string)),
            );
        }
        Ok(entities)
    }

    async fn detach_role_policy(&self, role: &str, arn: &str) -> IamResult<()> {
        self.iam
            .detach_role_policy()
            .role_name(role)
            .policy_arn(arn)
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn delete_policy(&self, arn: &str) -> IamResult<()> {
        self.iam
            .delete_policy()
            .policy_arn(arn)
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn list_attached_policies(&self, principal: Principal<'_>) -> IamResult<Vec<String>> {
        let policies = match principal {
            Principal::User(name) => self
                .iam
                .list_attached_user_policies()
                .user_name(name)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(map_err)?,
            Principal::Group(name) => self
                .iam
                .list_attached_group_policies()
                .group_name(name)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(map_err)?,
            Principal::Role(name) => self
                .iam
                .list_attached_role_policies()
                .role_name(name)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(map_err)?,
        };
        Ok(policies
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect())
    }

    async fn attach_policy(&self, principal: Principal<'_>, arn: &str) -> IamResult<()> {
        match principal {
            Principal::User(name) => self
                .iam
                .attach_user_policy()
                .user_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map(drop)
                .map_err(map_err),
            Principal::Group(name) => self
                .iam
                .attach_group_policy()
                .group_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map(drop)
                .map_err(map_err),
            Principal::Role(name) => self
                .iam
                .attach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map(drop)
                .map_err(map_err),
        }
    }

    async fn detach_policy(&self, principal: Principal<'_>, arn: &str) -> IamResult<()> {
        match principal {
            Principal::User(name) => self
                .iam
                .detach_user_policy()
                .user_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map(drop)
                .map_err(map_err),
            Principal::Group(name) => self
                .iam
                .detach_group_policy()
                .group_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map(drop)
                .map_err(map_err),
            Principal::Role(name) => self.detach_role_policy(name, arn).await,
        }
    }

    async fn list_inline_policies(&self, principal: Principal<'_>) -> IamResult<Vec<String>> {
        match principal {
            Principal::User(name) => self
                .iam
                .list_user_policies()
                .user_name(name)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(map_err),
            Principal::Group(name) => self
                .iam
                .list_group_policies()
                .group_name(name)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(map_err),
            Principal::Role(name) => self
                .iam
                .list_role_policies()
                .role_name(name)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(map_err),
        }
    }

    async fn get_inline_policy(&self, principal: Principal<'_>, name: &str) -> IamResult<String> {
        let document = match principal {
            Principal::User(user) => self
                .iam
                .get_user_policy()
                .user_name(user)
                .policy_name(name)
                .send()
                .await
                .map_err(map_err)?
                .policy_document
                .clone(),
            Principal::Group(group) => self
                .iam
                .get_group_policy()
                .group_name(group)
                .policy_name(name)
                .send()
                .await
                .map_err(map_err)?
                .policy_document
                .clone(),
            Principal::Role(role) => self
                .iam
                .get_role_policy()
                .role_name(role)
                .policy_name(name)
                .send()
                .await
                .map_err(map_err)?
                .policy_document
                .clone(),
        };
        Ok(decode_document(&document))
    }

    async fn put_inline_policy(
        &self,
        principal: Principal<'_>,
        name: &str,
        document: &str,
    ) -> IamResult<()> {
        match principal {
            Principal::User(user) => self
                .iam
                .put_user_policy()
                .user_name(user)
                .policy_name(name)
                .policy_document(document)
                .send()
                .await
                .map(drop)
                .map_err(map_err),
            Principal::Group(group) => self
                .iam
                .put_group_policy()
                .group_name(group)
                .policy_name(name)
                .policy_document(document)
                .send()
                .await
                .map(drop)
                .map_err(map_err),
            Principal::Role(role) => self
                .iam
                .put_role_policy()
                .role_name(role)
                .policy_name(name)
                .policy_document(document)
                .send()
                .await
                .map(drop)
                .map_err(map_err),
        }
    }

    async fn delete_inline_policy(&self, principal: Principal<'_>, name: &str) -> IamResult<()> {
        match principal {
            Principal::User(user) => self
                .iam
                .delete_user_policy()
                .user_name(user)
                .policy_name(name)
                .send()
                .await
                .map(drop)
                .map_err(map_err),
            Principal::Group(group) => self
                .iam
                .delete_group_policy()
                .group_name(group)
                .policy_name(name)
                .send()
                .await
                .map(drop)
                .map_err(map_err),
            Principal::Role(role) => self
                .iam
                .delete_role_policy()
                .role_name(role)
                .policy_name(name)
                .send()
                .await
                .map(drop)
                .map_err(map_err),
        }
    }

    async fn get_group(&self, name: &str) -> IamResult<GroupInfo> {
        let pages = self
            .iam
            .get_group()
            .group_name(name)
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(map_err)?;
        let group = pages
            .first()
            .and_then(|p| p.group())
            .ok_or_else(|| not_found("group"))?;
        Ok(GroupInfo {
            arn: group.arn().to_string(),
            id: group.group_id().to_string(),
            name: group.group_name().to_string(),
            path: group.path().to_string(),
            created: ts(group.create_date()),
            members: pages
                .iter()
                .flat_map(|p| p.users().iter().map(|u| u.user_name().to_string()))
                .collect(),
        })
    }

    async fn create_group(&self, name: &str, path: &str) -> IamResult<GroupInfo> {
        let out = self
            .iam
            .create_group()
            .group_name(name)
            .path(path)
            .send()
            .await
            .map_err(map_err)?;
        let group = out.group().ok_or_else(|| not_found("group"))?;
        Ok(GroupInfo {
            arn: group.arn().to_string(),
            id: group.group_id().to_string(),
            name: group.group_name().to_string(),
            path: group.path().to_string(),
            created: ts(group.create_date()),
            members: Vec::new(),
        })
    }

    async fn delete_group(&self, name: &str) -> IamResult<()> {
        self.iam
            .delete_group()
            .group_name(name)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn get_user(&self, name: &str) -> IamResult<UserInfo> {
        let out = self
            .iam
            .get_user()
            .user_name(name)
            .send()
            .await
            .map_err(map_err)?;
        Ok(user_info(out.user().ok_or_else(|| not_found("user"))?))
    }

    async fn create_user(
        &self,
        name: &str,
        path: &str,
        tags: &BTreeMap<String, String>,
        permissions_boundary: Option<&str>,
    ) -> IamResult<UserInfo> {
        let out = self
            .iam
            .create_user()
            .user_name(name)
            .path(path)
            .set_tags(Some(to_tags(tags)?))
            .set_permissions_boundary(permissions_boundary.map(str::to_string))
            .send()
            .await
            .map_err(map_err)?;
        let mut info = user_info(out.user().ok_or_else(|| not_found("user"))?);
        info.tags = tags.clone();
        info.permissions_boundary = permissions_boundary.map(str::to_string);
        Ok(info)
    }

    async fn delete_user(&self, name: &str) -> IamResult<()> {
        self.iam
            .delete_user()
            .user_name(name)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn tag_user(&self, name: &str, tags: &BTreeMap<String, String>) -> IamResult<()> {
        self.iam
            .tag_user()
            .user_name(name)
            .set_tags(Some(to_tags(tags)?))
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn untag_user(&self, name: &str, keys: &[String]) -> IamResult<()> {
        self.iam
            .untag_user()
            .user_name(name)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn put_permissions_boundary(&self, user: &str, arn: &str) -> IamResult<()> {
        self.iam
            .put_user_permissions_boundary()
            .user_name(user)
            .permissions_boundary(arn)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn delete_permissions_boundary(&self, user: &str) -> IamResult<()> {
        self.iam
            .delete_user_permissions_boundary()
            .user_name(user)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn account_snapshot(&self) -> IamResult<AccountSnapshot> {
        use aws_sdk_iam::types::EntityType;
        let pages = self
            .iam
            .get_account_authorization_details()
            .set_filter(Some(vec![
                EntityType::User,
                EntityType::Group,
                EntityType::LocalManagedPolicy,
                EntityType::Role,
            ]))
            .max_items(1000)
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(map_err)?;
        let mut snapshot = AccountSnapshot::default();
        for page in &pages {
            for u in page.user_detail_list() {
                let fingerprint = fingerprint((
                    u.path(),
                    sorted(u.group_list().iter().map(String::as_str)),
                    attached(u.attached_managed_policies()),
                    inline(u.user_policy_list()),
                    u.permissions_boundary()
                        .and_then(|b| b.permissions_boundary_arn()),
                    sorted(u.tags().iter().map(|t| (t.key(), t.value()))),
                ));
                let name = u.user_name().unwrap_or_default().to_string();
                snapshot.users.insert(name, fingerprint);
            }
            for g in page.group_detail_list() {
                let fingerprint = fingerprint((
                    g.path(),
                    attached(g.attached_managed_policies()),
                    inline(g.group_policy_list()),
                ));
                let name = g.group_name().unwrap_or_default().to_string();
                snapshot.groups.insert(name, fingerprint);
            }
            for r in page.role_detail_list() {
                let fingerprint = fingerprint((
                    r.path(),
                    r.assume_role_policy_document().map(decode_document),
                    attached(r.attached_managed_policies()),
                    inline_decoded(r.role_policy_list()),
                    r.permissions_boundary()
                        .and_then(|b| b.permissions_boundary_arn()),
                    sorted(r.tags().iter().map(|t| (t.key(), t.value()))),
                    sorted(
                        r.instance_profile_list()
                            .iter()
                            .map(|p| p.instance_profile_name()),
                    ),
                ));
                let name = r.role_name().unwrap_or_default().to_string();
                snapshot.roles.insert(name, fingerprint);
            }
            for p in page.policies() {
                let default = p
                    .policy_version_list()
                    .iter()
                    .find(|v| v.is_default_version())
                    .and_then(|v| v.document());
                let fingerprint = fingerprint((p.default_version_id(), default));
                let arn = p.arn().unwrap_or_default().to_string();
                snapshot.policies.insert(arn, fingerprint);
            }
        }
        Ok(snapshot)
    }

    async fn list_groups_for_user(&self, user: &str) -> IamResult<Vec<String>> {
        let groups = self
            .iam
            .list_groups_for_user()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(map_err)?;
        Ok(groups.iter().map(|g| g.group_name().to_string()).collect())
    }

    async fn add_user_to_group(&self, user: &str, group: &str) -> IamResult<()> {
        self.iam
            .add_user_to_group()
            .user_name(user)
            .group_name(group)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn remove_user_from_group(&self, user: &str, group: &str) -> IamResult<()> {
        self.iam
            .remove_user_from_group()
            .user_name(user)
            .group_name(group)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn list_access_keys(&self, user: &str) -> IamResult<Vec<AccessKeyInfo>> {
        let keys = self
            .iam
            .list_access_keys()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(map_err)?;
        Ok(keys
            .iter()
            .map(|k| AccessKeyInfo {
                id: k.access_key_id().unwrap_or_default().to_string(),
                status: match k.status() {
                    Some(StatusType::Active) => KeyStatus::Active,
                    _ => KeyStatus::Inactive,
                },
                created: k.create_date().map(ts).unwrap_or(Timestamp::UNIX_EPOCH),
            })
            .collect())
    }

    async fn create_access_key(&self, user: &str) -> IamResult<NewAccessKey> {
        // One attempt only: a retry after a lost response would create a second key whose
        // secret nobody ever sees. A failed attempt leaves the intent pending instead, and
        // the next reconcile deletes whatever that attempt created before trying again.
        let out = self
            .iam
            .create_access_key()
            .user_name(user)
            .customize()
            // Adaptive, as every other call: it waits for the client-side rate limiter
            // like the rest, it just never retries.
            .config_override(aws_sdk_iam::config::Config::builder().retry_config(
                aws_sdk_iam::config::retry::RetryConfig::adaptive().with_max_attempts(1),
            ))
            .send()
            .await
            .map_err(map_err)?;
        let key = out.access_key().ok_or_else(|| not_found("access key"))?;
        Ok(NewAccessKey {
            id: key.access_key_id().to_string(),
            secret: SecretString::from(key.secret_access_key().to_string()),
            created: key.create_date().map(ts).unwrap_or_else(Timestamp::now),
        })
    }

    async fn update_access_key(&self, user: &str, id: &str, status: KeyStatus) -> IamResult<()> {
        let status = match status {
            KeyStatus::Active => StatusType::Active,
            KeyStatus::Inactive => StatusType::Inactive,
        };
        self.iam
            .update_access_key()
            .user_name(user)
            .access_key_id(id)
            .status(status)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn delete_access_key(&self, user: &str, id: &str) -> IamResult<()> {
        self.iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(id)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn has_login_profile(&self, user: &str) -> IamResult<bool> {
        let out = optional(
            self.iam
                .get_login_profile()
                .user_name(user)
                .send()
                .await
                .map_err(map_err),
        )?;
        Ok(out.is_some())
    }

    async fn create_login_profile(
        &self,
        user: &str,
        password: &SecretString,
        reset_required: bool,
    ) -> IamResult<()> {
        self.iam
            .create_login_profile()
            .user_name(user)
            .password(password.expose_secret())
            .password_reset_required(reset_required)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn update_login_profile(
        &self,
        user: &str,
        password: &SecretString,
        reset_required: bool,
    ) -> IamResult<()> {
        self.iam
            .update_login_profile()
            .user_name(user)
            .password(password.expose_secret())
            .password_reset_required(reset_required)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn delete_login_profile(&self, user: &str) -> IamResult<()> {
        self.iam
            .delete_login_profile()
            .user_name(user)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn list_mfa_devices(&self, user: &str) -> IamResult<Vec<MfaDevice>> {
        let devices = self
            .iam
            .list_mfa_devices()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(map_err)?;
        Ok(devices
            .iter()
            .map(|d| MfaDevice {
                serial_number: d.serial_number().to_string(),
                enabled_at: ts(d.enable_date()),
            })
            .collect())
    }

    async fn delete_other_credentials(&self, user: &str) -> IamResult<()> {
        let mfa = self
            .iam
            .list_mfa_devices()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(map_err)?;
        for device in &mfa {
            let serial = device.serial_number();
            gone(
                self.iam
                    .deactivate_mfa_device()
                    .user_name(user)
                    .serial_number(serial)
                    .send()
                    .await
                    .map(drop)
                    .map_err(map_err),
            )?;
            // Virtual devices outlive their user unless deleted; hardware ones cannot be.
            if serial.contains(":mfa/") {
                gone(
                    self.iam
                        .delete_virtual_mfa_device()
                        .serial_number(serial)
                        .send()
                        .await
                        .map(drop)
                        .map_err(map_err),
                )?;
            }
        }
        let certs = self
            .iam
            .list_signing_certificates()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(map_err)?;
        for cert in &certs {
            gone(
                self.iam
                    .delete_signing_certificate()
                    .user_name(user)
                    .certificate_id(cert.certificate_id())
                    .send()
                    .await
                    .map(drop)
                    .map_err(map_err),
            )?;
        }
        let ssh = self
            .iam
            .list_ssh_public_keys()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(map_err)?;
        for key in &ssh {
            gone(
                self.iam
                    .delete_ssh_public_key()
                    .user_name(user)
                    .ssh_public_key_id(key.ssh_public_key_id())
                    .send()
                    .await
                    .map(drop)
                    .map_err(map_err),
            )?;
        }
        let service = self
            .iam
            .list_service_specific_credentials()
            .user_name(user)
            .send()
            .await
            .map_err(map_err)?;
        for cred in service.service_specific_credentials() {
            gone(
                self.iam
                    .delete_service_specific_credential()
                    .user_name(user)
                    .service_specific_credential_id(cred.service_specific_credential_id())
                    .send()
                    .await
                    .map(drop)
                    .map_err(map_err),
            )?;
        }
        Ok(())
    }

    async fn caller_arn(&self) -> IamResult<String> {
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(map_err)?;
        out.arn()
            .map(str::to_string)
            .ok_or_else(|| not_found("caller ARN"))
    }

    async fn get_role(&self, name: &str) -> IamResult<RoleInfo> {
        let out = self
            .iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(map_err)?;
        Ok(role_info(out.role().ok_or_else(|| not_found("role"))?))
    }

    async fn create_role(&self, role: &NewRole<'_>) -> IamResult<RoleInfo> {
        let out = self
            .iam
            .create_role()
            .role_name(role.name)
            .path(role.path)
            .assume_role_policy_document(role.trust_policy)
            .set_description(role.description.map(str::to_string))
            .set_max_session_duration(role.max_session_duration)
            .set_tags(Some(to_tags(role.tags)?))
            .set_permissions_boundary(role.permissions_boundary.map(str::to_string))
            .send()
            .await
            .map_err(map_err)?;
        let mut info = role_info(out.role().ok_or_else(|| not_found("role"))?);
        // What the request set, whatever the answer echoes.
        info.tags = role.tags.clone();
        info.permissions_boundary = role.permissions_boundary.map(str::to_string);
        info.trust_policy = role.trust_policy.to_string();
        Ok(info)
    }

    async fn update_role(
        &self,
        name: &str,
        description: &str,
        max_session_duration: i32,
    ) -> IamResult<()> {
        self.iam
            .update_role()
            .role_name(name)
            .description(description)
            .max_session_duration(max_session_duration)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn update_assume_role_policy(&self, name: &str, document: &str) -> IamResult<()> {
        self.iam
            .update_assume_role_policy()
            .role_name(name)
            .policy_document(document)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn tag_role(&self, name: &str, tags: &BTreeMap<String, String>) -> IamResult<()> {
        self.iam
            .tag_role()
            .role_name(name)
            .set_tags(Some(to_tags(tags)?))
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn untag_role(&self, name: &str, keys: &[String]) -> IamResult<()> {
        self.iam
            .untag_role()
            .role_name(name)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn put_role_permissions_boundary(&self, role: &str, arn: &str) -> IamResult<()> {
        self.iam
            .put_role_permissions_boundary()
            .role_name(role)
            .permissions_boundary(arn)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn delete_role_permissions_boundary(&self, role: &str) -> IamResult<()> {
        self.iam
            .delete_role_permissions_boundary()
            .role_name(role)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn delete_role(&self, name: &str) -> IamResult<()> {
        self.iam
            .delete_role()
            .role_name(name)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn get_instance_profile(&self, name: &str) -> IamResult<InstanceProfileInfo> {
        let out = self
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(map_err)?;
        Ok(instance_profile_info(
            out.instance_profile()
                .ok_or_else(|| not_found("instance profile"))?,
        ))
    }

    async fn create_instance_profile(
        &self,
        name: &str,
        path: &str,
    ) -> IamResult<InstanceProfileInfo> {
        let out = self
            .iam
            .create_instance_profile()
            .instance_profile_name(name)
            .path(path)
            .send()
            .await
            .map_err(map_err)?;
        Ok(instance_profile_info(
            out.instance_profile()
                .ok_or_else(|| not_found("instance profile"))?,
        ))
    }

    async fn delete_instance_profile(&self, name: &str) -> IamResult<()> {
        self.iam
            .delete_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn add_role_to_instance_profile(&self, profile: &str, role: &str) -> IamResult<()> {
        self.iam
            .add_role_to_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn remove_role_from_instance_profile(&self, profile: &str, role: &str) -> IamResult<()> {
        self.iam
            .remove_role_from_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn list_instance_profiles_for_role(
        &self,
        role: &str,
    ) -> IamResult<Vec<InstanceProfileInfo>> {
        let profiles = self
            .iam
            .list_instance_profiles_for_role()
            .role_name(role)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(map_err)?;
        Ok(profiles.iter().map(instance_profile_info).collect())
    }

    // STS.
    async fn assume_role_session(
        &self,
        role_arn: &str,
        session_name: &str,
        duration: std::time::Duration,
    ) -> IamResult<SessionCredentials> {
        let seconds = i32::try_from(duration.as_secs()).map_err(|_| {
            IamError::Invalid(format!("session duration {duration:?} is out of range"))
        })?;
        let out = self
            .sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session_name)
            .duration_seconds(seconds)
            .send()
            .await
            .map_err(|e| assume_role_error(role_arn, map_err(e)))?;
        let creds = out.credentials().ok_or_else(|| not_found("Credentials"))?;
        Ok(SessionCredentials {
            access_key_id: creds.access_key_id().to_string(),
            secret_access_key: SecretString::from(creds.secret_access_key().to_string()),
            session_token: SecretString::from(creds.session_token().to_string()),
            expiration: ts(creds.expiration()),
        })
    }
}

/// STS's refusals of `AssumeRole`, with what to fix. STS's own message names the caller
/// (`User: arn:... is not authorized to perform: sts:AssumeRole on resource: ...`) and never
/// carries credentials.
fn assume_role_error(role_arn: &str, error: IamError) -> IamError {
    match error {
        IamError::AccessDenied(m) => IamError::AccessDenied(format!(
            "{m}. The trust policy of {role_arn} must allow the operator's principal (the caller named here) to call sts:AssumeRole, and the operator's identity policy must allow sts:AssumeRole on it"
        )),
        IamError::Invalid(m) => {
            IamError::Invalid(format!("STS refused a session of {role_arn}: {m}"))
        }
        other => other,
    }
}

/// A stable hash of an entity's reported state: equal within one process for equal state,
/// which is all the drift scan compares.
fn fingerprint(state: impl std::hash::Hash) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    state.hash(&mut h);
    h.finish()
}

fn sorted<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort();
    v
}

fn attached(policies: &[aws_sdk_iam::types::AttachedPolicy]) -> Vec<&str> {
    sorted(policies.iter().filter_map(|p| p.policy_arn()))
}

fn inline(policies: &[aws_sdk_iam::types::PolicyDetail]) -> Vec<(Option<&str>, Option<&str>)> {
    sorted(
        policies
            .iter()
            .map(|p| (p.policy_name(), p.policy_document())),
    )
}

/// Inline policies with their documents decoded (IAM sends them URL-encoded here), as the
/// operator knows them from `GetRolePolicy` and `PutRolePolicy`.
fn inline_decoded(
    policies: &[aws_sdk_iam::types::PolicyDetail],
) -> Vec<(Option<&str>, Option<String>)> {
    sorted(
        policies
            .iter()
            .map(|p| (p.policy_name(), p.policy_document().map(decode_document))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_its_own_outcome() {
        for (status, code) in [
            (400, Some("Throttling")),
            (400, Some("ThrottlingException")),
            (400, Some("RequestLimitExceeded")),
            (503, Some("SlowDown")),
            (503, None),
            (429, None),
            (429, Some("TooManyRequestsException")),
        ] {
            assert_eq!(
                call_outcome(Some(status), code),
                "throttled",
                "{status} {code:?}"
            );
        }
        assert_eq!(call_outcome(Some(200), None), "success");
        assert_eq!(call_outcome(Some(404), Some("NoSuchEntity")), "not_found");
        assert_eq!(
            call_outcome(Some(403), Some("AccessDenied")),
            "access_denied"
        );
        assert_eq!(
            call_outcome(Some(409), Some("LimitExceeded")),
            "client_error"
        );
        assert_eq!(
            call_outcome(Some(500), Some("ServiceFailure")),
            "server_error"
        );
        assert_eq!(call_outcome(None, None), "transport_error");
    }

    #[test]
    fn the_error_code_is_read_from_an_iam_error_body() {
        let body = br#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>x</RequestId></ErrorResponse>"#;
        assert_eq!(error_code(body), Some("Throttling"));
        assert_eq!(error_code(b"<Code>not a code</Code>"), None);
        assert_eq!(error_code(b"plain text"), None);
    }
}
