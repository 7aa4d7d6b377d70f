//! Rendering of the CustomResourceDefinitions checked in under `crds/`.

use crate::api::{IamAccountSettings, IamGroup, IamPolicy, IamRole, IamTenancyPolicy, IamUser};
use kube::CustomResourceExt;
use serde_yaml::Value;

/// File name and YAML of every CRD, in a stable order.
pub fn render_all() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    let render = |crd| -> Result<String, serde_yaml::Error> {
        let mut crd = serde_yaml::to_value(crd)?;
        unwrap_descriptions(&mut crd);
        serde_yaml::to_string(&crd)
    };
    Ok(vec![
        ("iampolicies.yaml", render(IamPolicy::crd())?),
        ("iamgroups.yaml", render(IamGroup::crd())?),
        ("iamusers.yaml", render(IamUser::crd())?),
        ("iamroles.yaml", render(IamRole::crd())?),
        ("iamtenancypolicies.yaml", render(IamTenancyPolicy::crd())?),
        (
            "iamaccountsettings.yaml",
            render(IamAccountSettings::crd())?,
        ),
    ])
}

/// Doc comments are wrapped at the source's line width; `kubectl explain` wraps by itself,
/// so a description keeps only its paragraph breaks.
fn unwrap_descriptions(v: &mut Value) {
    match v {
        Value::Mapping(map) => {
            for (k, child) in map.iter_mut() {
                match child {
                    Value::String(text) if k.as_str() == Some("description") => {
                        *text = text
                            .split("\n\n")
                            .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    _ => unwrap_descriptions(child),
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}
