//! End-to-end, as a user runs it: the real control plane, kubectl, the operator binary as
//! its own process, and the IAM emulator.

mod support;

use support::cluster::ControlPlane;

#[test]
fn invalid_manifests_are_rejected_with_the_schemas_message() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("invalid");
    let policy = |name: &str, extra: &str| {
        format!(
            "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamPolicy\nmetadata: {{name: p, namespace: {ns}}}\nspec:\n  policyName: \"{name}\"\n  document: {{Version: '2012-10-17', Statement: []}}\n{extra}"
        )
    };
    let bad_name = cp.apply(&policy("has space", ""));
    assert!(!bad_name.status.success());
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("spec.policyName"));

    let bad_path = cp.apply(&policy("ok", "  path: no-slashes\n"));
    assert!(!bad_path.status.success());
    assert!(String::from_utf8_lossy(&bad_path.stderr).contains("spec.path"));

    assert!(cp.apply(&policy("first", "")).status.success());
    let renamed = cp.apply(&policy("second", ""));
    assert!(!renamed.status.success());
    assert!(String::from_utf8_lossy(&renamed.stderr).contains("policyName is immutable"));

    let both = format!(
        "apiVersion: iam.kubeop.dev/v1alpha1\nkind: IamGroup\nmetadata: {{name: g, namespace: {ns}}}\nspec:\n  policies:\n    - arn: arn:aws:iam::aws:policy/ReadOnlyAccess\n      policyRef: {{name: x}}\n"
    );
    let out = cp.apply(&both);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exactly one of policyRef or arn"));
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
