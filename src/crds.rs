//! Rendering of the CustomResourceDefinitions checked in under `crds/`.

use crate::api::{IamGroup, IamPolicy, IamUser};
use kube::CustomResourceExt;

/// File name and YAML of every CRD, in a stable order.
pub fn render_all() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    Ok(vec![
        (
            "iampolicies.yaml",
            serde_yaml::to_string(&IamPolicy::crd())?,
        ),
        ("iamgroups.yaml", serde_yaml::to_string(&IamGroup::crd())?),
        ("iamusers.yaml", serde_yaml::to_string(&IamUser::crd())?),
    ])
}
