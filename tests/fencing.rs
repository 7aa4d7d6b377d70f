//! Status is the crash journal, so a reconcile must never act on, or write, a status older
//! than the last one written. Against the real API server and the IAM emulator: a status
//! write from an outdated copy is refused, and a reconcile handed an outdated copy (as a
//! lagging watch cache would) loses no intent, orphans nothing and reports no conflict.

mod support;

use iam_operator::api::{IamGroup, IamUser};
use iam_operator::controller::Engine;
use iam_operator::k8s::{Journal, KubeDependencies, StatusWriter};
use iam_operator::metrics::Metrics;
use iam_operator::runtime::Context;
use iam_operator::runtime::reconcile::reconcile;
use iam_operator::settings::Settings;
use kube::api::{Api, PostParams};
use std::sync::Arc;
use support::cluster::ControlPlane;
use support::emulator::Emulator;
use support::read;

async fn context(cp: &ControlPlane, emulator: &Emulator, ns: &str) -> Arc<Context> {
    let client = cp.client().await;
    let config = support::sdk_config(&emulator.url);
    let engine = Engine {
        iam: Arc::new(iam_operator::iam::AwsIam::new(&config)),
        settings: Settings::default(),
        deps: Arc::new(KubeDependencies {
            client: client.clone(),
            namespaces: vec![ns.to_string()],
        }),
        metrics: Arc::new(Metrics::default()),
        identities: None,
    };
    Arc::new(Context::new(engine, client))
}

fn manifest<K: serde::de::DeserializeOwned>(yaml: &str) -> K {
    serde_yaml::from_str(yaml).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_write_from_an_outdated_copy_is_refused() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("fence");
    let client = cp.client().await;
    let api: Api<IamGroup> = Api::namespaced(client.clone(), &ns);
    let created = api
        .create(
            &PostParams::default(),
            &manifest(&format!(
                "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamGroup\nmetadata: {{name: g, namespace: {ns}}}\nspec: {{}}\n"
            )),
        )
        .await
        .unwrap();
    let mut status = iam_operator::api::IamGroupStatus {
        group_id: Some("AGPAFIRST".into()),
        ..Default::default()
    };
    let writer = StatusWriter::new(client.clone(), &created);
    writer.record(&status).await.unwrap();
    // The same writer follows its own writes.
    status.arn = Some("arn:aws:iam::123456789012:group/g".into());
    writer.record(&status).await.unwrap();

    // A writer fenced at the copy read before those writes is refused.
    let stale = StatusWriter::new(client.clone(), &created);
    let err = stale
        .record(&iam_operator::api::IamGroupStatus::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("(409)"), "{err}");
    let now = api.get("g").await.unwrap();
    assert_eq!(
        now.status.unwrap().group_id.as_deref(),
        Some("AGPAFIRST"),
        "the newer status survives"
    );
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_handed_an_outdated_copy_loses_no_intent_and_orphans_nothing() {
    let cp = ControlPlane::shared();
    let emulator = Emulator::start();
    let aws = aws_sdk_iam::Client::new(&support::sdk_config(&emulator.url));
    let ns = cp.namespace("stale");
    let ctx = context(cp, &emulator, &ns).await;
    let client = cp.client().await;
    let groups: Api<IamGroup> = Api::namespaced(client.clone(), &ns);
    let users: Api<IamUser> = Api::namespaced(client.clone(), &ns);
    let group = format!("{ns}-devs");
    let user = format!("{ns}-ann");
    groups
        .create(
            &PostParams::default(),
            &manifest(&format!(
                "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamGroup\nmetadata: {{name: devs, namespace: {ns}}}\nspec: {{groupName: {group}}}\n"
            )),
        )
        .await
        .unwrap();
    users
        .create(
            &PostParams::default(),
            &manifest(&format!(
                "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamUser\nmetadata: {{name: ann, namespace: {ns}}}\nspec: {{userName: {user}, accessKey: {{enabled: true}}}}\n"
            )),
        )
        .await
        .unwrap();
    // The first reconcile only adds the finalizer (kube's helper); the copies a lagging
    // watch cache would still hand over are those: finalizer, no status yet.
    reconcile(Arc::new(groups.get("devs").await.unwrap()), ctx.clone())
        .await
        .unwrap();
    reconcile(Arc::new(users.get("ann").await.unwrap()), ctx.clone())
        .await
        .unwrap();
    let stale_group = Arc::new(groups.get("devs").await.unwrap());
    let stale_user = Arc::new(users.get("ann").await.unwrap());
    assert!(
        stale_group.status.is_none()
            && !stale_group.metadata.finalizers.as_ref().unwrap().is_empty()
    );
    reconcile(Arc::new(groups.get("devs").await.unwrap()), ctx.clone())
        .await
        .unwrap();
    reconcile(Arc::new(users.get("ann").await.unwrap()), ctx.clone())
        .await
        .unwrap();
    let group_id = groups.get("devs").await.unwrap().status.unwrap().group_id;
    assert!(group_id.is_some());
    let key = users
        .get("ann")
        .await
        .unwrap()
        .status
        .unwrap()
        .access_key
        .unwrap()
        .access_key_id
        .unwrap();

    // Reconciling from the outdated copies changes nothing and reports no conflict.
    emulator.reset_calls().await;
    reconcile(stale_group, ctx.clone()).await.unwrap();
    reconcile(stale_user, ctx.clone()).await.unwrap();
    let now = groups.get("devs").await.unwrap().status.unwrap();
    assert_eq!(now.group_id, group_id, "groupId kept");
    let ready = now.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True", "{ready:?}");
    let keys = read::access_keys(&aws, &user).await;
    assert_eq!(
        keys.keys().cloned().collect::<Vec<_>>(),
        vec![key.clone()],
        "no second key, nothing deleted"
    );
    let calls = emulator.calls().await;
    assert!(
        support::writes(&calls).is_empty(),
        "no IAM write from an outdated copy: {calls:?}"
    );
    assert!(
        calls.contains_key("ListAccessKeys"),
        "the reconciles did run: {calls:?}"
    );
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
