//! The iam-operator binary: flags, logging, AWS and Kubernetes clients, controllers.

use clap::{Parser, ValueEnum};
use iam_operator::api::{DeletionPolicy, IamPolicy};
use iam_operator::controller::Engine;
use iam_operator::iam::{AssumedRoles, AwsIam, FencedIam, Iam};
use iam_operator::k8s::KubeDependencies;
use iam_operator::leader::{Elector, LeaseConfig};
use iam_operator::metrics::{Metrics, serve};
use iam_operator::runtime::client::REQUEST_TIMEOUT;
use iam_operator::runtime::{Context, run};
use iam_operator::settings::{Globs, Settings};
use kube::api::{Api, ListParams};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DeletionPolicyArg {
    Delete,
    Retain,
}

/// Manages AWS IAM policies, groups, users and their credentials from Kubernetes resources.
#[derive(Parser, Debug)]
#[command(version, about, args_override_self = true)]
struct Args {
    /// Name of this cluster, part of the owner tag on every IAM entity the operator creates.
    #[arg(long, env = "IAM_OPERATOR_CLUSTER_NAME", default_value = "default")]
    cluster_name: String,
    /// Namespace to watch (repeatable, or comma-separated in the env var). Default: all.
    #[arg(long, env = "IAM_OPERATOR_WATCH_NAMESPACE", value_delimiter = ',')]
    watch_namespace: Vec<String>,
    /// Every managed IAM entity must sit under this path.
    #[arg(long, env = "IAM_OPERATOR_IAM_PATH_PREFIX", default_value = "/")]
    iam_path_prefix: String,
    /// ARN of a permissions boundary forced onto every user.
    #[arg(long, env = "IAM_OPERATOR_REQUIRED_PERMISSIONS_BOUNDARY")]
    required_permissions_boundary: Option<String>,
    /// Glob of policy ARNs that may never be attached (repeatable, comma-separated in env).
    #[arg(long, env = "IAM_OPERATOR_DENY_POLICY_ARN", value_delimiter = ',')]
    deny_policy_arn: Vec<String>,
    /// Let namespaces that no IamTenancyPolicy selects adopt existing users and policies
    /// that an administrator tagged `iam.kubeop.dev/adoptable-by=<cluster>/<namespace>`.
    #[arg(long, env = "IAM_OPERATOR_ALLOW_ADOPTION")]
    allow_adoption: bool,
    /// ARN of the cluster's IAM OIDC provider
    /// (`arn:aws:iam::<account>:oidc-provider/<issuer>`): IamRoles' `trust.serviceAccounts`
    /// (IRSA) federate through it. Unset: such roles are refused.
    #[arg(long, env = "IAM_OPERATOR_OIDC_PROVIDER_ARN")]
    oidc_provider_arn: Option<String>,
    /// The operator's own IAM principal, which IamRoles with `sessionCredentials` trust.
    /// Default: the identity `sts:GetCallerIdentity` reports at start-up (an assumed role's
    /// session as its role's ARN, path included, read with `iam:GetRole`).
    #[arg(long, env = "IAM_OPERATOR_OPERATOR_PRINCIPAL_ARN")]
    operator_principal_arn: Option<String>,
    /// Deletion policy of resources that do not set spec.deletionPolicy.
    #[arg(
        long,
        env = "IAM_OPERATOR_DEFAULT_DELETION_POLICY",
        value_enum,
        default_value = "delete"
    )]
    default_deletion_policy: DeletionPolicyArg,
    /// How often every object is re-checked against IAM in detail, access keys and login
    /// profiles included (e.g. 30m, 1h).
    #[arg(long, env = "IAM_OPERATOR_RESYNC_INTERVAL", default_value = "1h")]
    resync_interval: kube::core::Duration,
    /// How often the whole account is read in a few bulk calls to find users, groups and
    /// policies changed out of band, which are then reconciled at once; 0s turns it off.
    #[arg(long, env = "IAM_OPERATOR_DRIFT_SCAN_INTERVAL", default_value = "5m")]
    drift_scan_interval: kube::core::Duration,
    /// Reconciles run at once per kind.
    #[arg(
        long,
        env = "IAM_OPERATOR_MAX_CONCURRENT_RECONCILES",
        default_value_t = 4
    )]
    max_concurrent_reconciles: u16,
    /// Address of the /metrics endpoint.
    #[arg(
        long,
        env = "IAM_OPERATOR_METRICS_BIND_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    metrics_bind_address: std::net::SocketAddr,
    /// Address of /healthz and /readyz.
    #[arg(
        long,
        env = "IAM_OPERATOR_HEALTH_PROBE_BIND_ADDRESS",
        default_value = "0.0.0.0:8081"
    )]
    health_probe_bind_address: std::net::SocketAddr,
    /// Run only while holding the leader Lease, so several replicas can be deployed.
    #[arg(long, env = "IAM_OPERATOR_LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    /// Namespace of the leader Lease (the pod's namespace in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "IAM_OPERATOR_LEADER_ELECTION_ID",
        default_value = "iam-operator"
    )]
    leader_election_id: String,
    /// How long another replica waits, after it last saw the leader renew, before it takes
    /// the lease.
    #[arg(
        long,
        env = "IAM_OPERATOR_LEADER_ELECTION_LEASE_DURATION",
        default_value = "15s"
    )]
    leader_election_lease_duration: kube::core::Duration,
    /// How long the leader goes on without a successful renewal before it stops writing to
    /// IAM and exits; shorter than the lease duration.
    #[arg(
        long,
        env = "IAM_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE",
        default_value = "10s"
    )]
    leader_election_renew_deadline: kube::core::Duration,
    /// Time between attempts to take or renew the lease; shorter than the renew deadline.
    #[arg(
        long,
        env = "IAM_OPERATOR_LEADER_ELECTION_RETRY_PERIOD",
        default_value = "2s"
    )]
    leader_election_retry_period: kube::core::Duration,
    /// Attempts per IAM request (the first included), spaced by the AWS SDK's adaptive
    /// retry: exponential backoff with jitter, plus a client-side rate limiter that slows
    /// every request down when IAM answers `Throttling`. `CreateAccessKey` is always
    /// attempted once (the credential protocol recovers a lost response itself).
    #[arg(
        long,
        env = "IAM_OPERATOR_IAM_MAX_ATTEMPTS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=20)
    )]
    iam_max_attempts: u32,
    /// Log format.
    #[arg(
        long,
        env = "IAM_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print YAML manifests for IAM users, groups and customer-managed policies that already
    /// exist, ready to be adopted (read-only against IAM).
    Import(ImportArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ImportKind {
    #[value(alias = "user")]
    Users,
    #[value(alias = "group")]
    Groups,
    #[value(alias = "policy")]
    Policies,
    All,
}

#[derive(clap::Args, Debug)]
struct ImportArgs {
    /// What to import.
    #[arg(value_enum)]
    kind: ImportKind,
    /// IAM names to import (policy names for policies).
    names: Vec<String>,
    /// Namespace of the printed objects.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Import the entities whose IAM path starts with this prefix.
    #[arg(long, conflicts_with = "names")]
    path_prefix: Option<String>,
    /// Import every entity of the kind.
    #[arg(long, conflicts_with_all = ["names", "path_prefix"])]
    all: bool,
    /// Cluster name of the operator that will adopt them (the consent tag's value is
    /// `<cluster>/<namespace>`).
    #[arg(long, env = "IAM_OPERATOR_CLUSTER_NAME", default_value = "default")]
    cluster_name: String,
    /// spec.deletionPolicy of the printed objects.
    #[arg(long, value_enum, default_value = "retain")]
    deletion_policy: DeletionPolicyArg,
    /// Print the `aws iam tag-*` commands by which an administrator consents to the
    /// adoption, instead of the manifests.
    #[arg(long)]
    print_consent: bool,
    /// With `user NAME`: print a new IamUser of this name with NAME's groups, policies and
    /// boundary instead (no adoption).
    #[arg(long = "as", value_name = "NEW_NAME")]
    as_user: Option<String>,
}

/// `iam-operator import`: reads the account (Get/List calls only, through
/// `import::AccountReader`) and prints manifests to stdout.
async fn import(args: ImportArgs) -> Result<(), String> {
    use iam_operator::import::{self, AccountReader, Kind, Options, Selection};
    let selection = if args.all {
        Selection::All
    } else if let Some(p) = &args.path_prefix {
        Selection::PathPrefix(p.clone())
    } else if !args.names.is_empty() {
        Selection::Names(args.names.clone())
    } else {
        return Err("name the entities to import, or pass --path-prefix or --all".into());
    };
    let opts = Options {
        kind: match args.kind {
            ImportKind::Users => Kind::Users,
            ImportKind::Groups => Kind::Groups,
            ImportKind::Policies => Kind::Policies,
            ImportKind::All => Kind::All,
        },
        selection,
        namespace: args.namespace.clone(),
        cluster_name: args.cluster_name.clone(),
        deletion_policy: match args.deletion_policy {
            DeletionPolicyArg::Delete => DeletionPolicy::Delete,
            DeletionPolicyArg::Retain => DeletionPolicy::Retain,
        },
    };
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let reader: &dyn AccountReader = &AwsIam::new(&aws);
    let account = reader
        .account_details()
        .await
        .map_err(|e| format!("cannot read the IAM account: {e}"))?;
    let (rendered, adopting) = match &args.as_user {
        Some(new_name) => {
            let ([source], Kind::Users) = (args.names.as_slice(), opts.kind) else {
                return Err("--as copies one user: `import user NAME --as NEW_NAME`".into());
            };
            (
                import::render_copy(&account, source, new_name, &opts)?,
                false,
            )
        }
        None => (import::render(&account, &opts)?, true),
    };
    if args.print_consent {
        for line in &rendered.consent {
            println!("{line}");
        }
        return Ok(());
    }
    print!("{}", import::to_yaml(&rendered, &opts, adopting)?);
    Ok(())
}

/// Logs go to stdout: text, coloured only when stdout is a terminal (never in a file, a
/// pipe or a container log, and not when `NO_COLOR` is set), or one JSON object per line
/// with `timestamp`, `level`, `message`, `target` and the reconcile's span fields
/// (`kind`, `namespace`, `name`) at the top level of `span`.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            // `message` and the event's fields at the top level, as log pipelines expect.
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            builder
                .with_ansi(std::io::stdout().is_terminal() && !no_color)
                .init()
        }
    }
}

/// A flag's duration as a positive `std::time::Duration`.
fn positive(value: kube::core::Duration, flag: &str) -> Result<std::time::Duration, String> {
    let duration = std::time::Duration::from(value);
    if value.is_negative() || duration.is_zero() {
        return Err(format!("{flag} must be a positive duration, got {value}"));
    }
    Ok(duration)
}

/// An error and its causes in one line ("client error: connect: connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

async fn start(mut args: Args) -> Result<(), String> {
    // One controller per namespace: a namespace named twice would be reconciled twice.
    args.watch_namespace.retain(|ns| !ns.is_empty());
    args.watch_namespace.sort();
    args.watch_namespace.dedup();
    let settings = Settings {
        cluster_name: args.cluster_name,
        iam_path_prefix: args.iam_path_prefix,
        required_permissions_boundary: args.required_permissions_boundary,
        deny_policy_arns: Globs::new(&args.deny_policy_arn)
            .map_err(|e| format!("invalid --deny-policy-arn: {e}"))?,
        default_deletion_policy: match args.default_deletion_policy {
            DeletionPolicyArg::Delete => DeletionPolicy::Delete,
            DeletionPolicyArg::Retain => DeletionPolicy::Retain,
        },
        resync_interval: args.resync_interval.into(),
        allow_adoption: args.allow_adoption,
        oidc_provider_arn: args.oidc_provider_arn,
        operator_principal_arn: args.operator_principal_arn,
    };
    if let Some(arn) = &settings.oidc_provider_arn
        && iam_operator::controller::role::trust::issuer(arn).is_none()
    {
        return Err(format!(
            "--oidc-provider-arn {arn} is not an OIDC provider ARN (arn:aws:iam::<account>:oidc-provider/<issuer>)"
        ));
    }
    if !settings.iam_path_prefix.starts_with('/') || !settings.iam_path_prefix.ends_with('/') {
        return Err("--iam-path-prefix must start and end with '/'".into());
    }
    let lease_config = LeaseConfig {
        namespace: args.leader_election_namespace.clone(),
        name: args.leader_election_id.clone(),
        identity: format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "iam-operator".into()),
            std::process::id()
        ),
        lease_duration: positive(
            args.leader_election_lease_duration,
            "--leader-election-lease-duration",
        )?,
        renew_deadline: positive(
            args.leader_election_renew_deadline,
            "--leader-election-renew-deadline",
        )?,
        retry_period: positive(
            args.leader_election_retry_period,
            "--leader-election-retry-period",
        )?,
    };
    lease_config.validate()?;

    let config = kube::Config::infer()
        .await
        .map_err(|e| format!("cannot configure the Kubernetes client: {}", chain(&e)))?;
    let url = config.cluster_url.clone();
    // Requests other than watches fail after 30 s instead of hanging on a connection that
    // stopped answering (see `runtime::client`).
    let client = iam_operator::runtime::client::client(config, REQUEST_TIMEOUT)
        .map_err(|e| format!("cannot configure the Kubernetes client: {}", chain(&e)))?;
    // Fail fast, with the fix in the message, when the cluster or the CRDs are missing.
    let probe: Api<IamPolicy> = match args.watch_namespace.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if let Err(e) = probe.list(&ListParams::default().limit(1)).await {
        return Err(match e {
            kube::Error::Api(s) if s.code == 404 => {
                "the iam.kubeop.dev CRDs are not installed: run `kubectl apply -f crds/`".into()
            }
            other => format!(
                "cannot reach the Kubernetes API at {url}: {}",
                chain(&other)
            ),
        });
    }

    let metrics = Arc::new(Metrics::default());
    for addr in [args.metrics_bind_address, args.health_probe_bind_address] {
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(addr, m).await {
                tracing::error!(%addr, error = %e, "cannot serve metrics/health");
            }
        });
    }
    let elector = args
        .leader_elect
        .then(|| Elector::new(client.clone(), lease_config));
    // Adaptive retry: IAM's request rate is account-wide, so a throttled operator must
    // slow down as a whole, not only retry the request that was refused; the SDK's
    // client-side rate limiter (shared by every IAM client in this process) backs off
    // multiplicatively on `Throttling` and grows back slowly. Five attempts (not the SDK's
    // default three) carry a call through a burst of throttling or a 20 % fault rate with
    // backoffs of about 1 + 2 + 4 + 8 s at most, before the reconcile itself fails and is
    // requeued: a failed reconcile costs its earlier calls again, a retried attempt only
    // itself.
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(
            aws_config::retry::RetryConfig::adaptive().with_max_attempts(args.iam_max_attempts),
        )
        .load()
        .await;
    // A replica that lost the lease writes nothing more to IAM, even before it exits: every
    // IAM client, the tenants' assumed roles included, is fenced by the lease.
    let guard = elector.as_ref().map(|e| e.guard());
    let fence = move |iam: Arc<dyn Iam>| -> Arc<dyn Iam> {
        match &guard {
            Some(guard) => Arc::new(FencedIam::new(iam, guard.clone())),
            None => iam,
        }
    };
    let iam = fence(Arc::new(AwsIam::with_metrics(&aws, metrics.clone())));
    let mut settings = settings;
    // Resolved once: the identity that will call sts:AssumeRole for session credentials.
    // Without it such roles are refused (their message names the flag); other kinds go on.
    if settings.operator_principal_arn.is_none() {
        match iam.caller_arn().await {
            Ok(caller) => {
                let mut principal =
                    iam_operator::controller::role::trust::principal_of_caller(&caller);
                // An assumed role's session ARN lacks the role's path, which a trust policy
                // must carry: IAM itself says what the role's ARN is.
                if caller.contains(":assumed-role/")
                    && let Some(name) = principal.rsplit('/').next()
                {
                    match iam.get_role(name).await {
                        Ok(role) => principal = role.arn,
                        Err(e) => {
                            tracing::warn!(error = %e, role = name, "cannot read the operator's own role for its path; assuming /")
                        }
                    }
                }
                tracing::info!(%principal, "operator principal for session credentials");
                settings.operator_principal_arn = Some(principal);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot resolve the operator's own principal; IamRoles with sessionCredentials are refused until --operator-principal-arn is set")
            }
        }
    }
    let engine = Engine {
        iam,
        identities: Some(Arc::new(AssumedRoles::new(
            aws.clone(),
            Some(metrics.clone()),
            fence,
        ))),
        settings,
        deps: Arc::new(KubeDependencies {
            client: client.clone(),
            namespaces: args.watch_namespace.clone(),
        }),
        metrics: metrics.clone(),
    };
    let ctx = Arc::new(Context::new(engine, client));
    // Ready once initialised (cluster reachable, CRDs installed, clients built) and, where
    // this replica runs the controllers, once their watches have listed everything (`run`
    // says so). A standby replica is ready while it waits for the lease: it would
    // otherwise block every rollout of a Deployment with more than one replica.
    let controllers = run(
        ctx,
        &args.watch_namespace,
        args.max_concurrent_reconciles,
        args.drift_scan_interval.into(),
    );
    match &elector {
        None => {
            tracing::info!("iam-operator started");
            metrics.set_leader(true);
            controllers.await;
        }
        Some(elector) => {
            tracing::info!("waiting to become the leader");
            metrics.set_ready(true);
            elector.acquire().await;
            tracing::info!("iam-operator started as the leader");
            metrics.set_ready(false);
            metrics.set_leader(true);
            tokio::select! {
                _ = controllers => elector.release().await,
                _ = elector.hold() => return Err("lost the leader lease; exiting so another replica leads".into()),
            }
        }
    }
    metrics.set_leader(false);
    tracing::info!("iam-operator stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    // Pick the TLS provider explicitly; it fails only if one is already installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut args = Args::parse();
    // Without a subcommand: run the operator (what the chart and image run).
    if let Some(Command::Import(import_args)) = args.command.take() {
        // No logging: stdout carries the manifests.
        return match import(import_args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("iam-operator import: {msg}");
                ExitCode::FAILURE
            }
        };
    }
    init_logging(args.log_format);
    match start(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            tracing::error!("{msg}");
            eprintln!("iam-operator: {msg}");
            ExitCode::FAILURE
        }
    }
}
