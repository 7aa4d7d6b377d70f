//! The CRDs checked in under `crds/` are exactly what the types generate.

use iam_operator::crds::render_all;

#[test]
fn checked_in_crds_match_the_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["crds", "charts/iam-operator/crds"] {
        for (file, yaml) in render_all().unwrap() {
            let on_disk = std::fs::read_to_string(root.join(dir).join(file)).unwrap_or_default();
            assert!(
                on_disk == yaml,
                "{dir}/{file} is out of date: run `cargo run --bin crdgen -- crds charts/iam-operator/crds`"
            );
        }
    }
}

#[test]
fn every_schema_property_has_a_description() {
    fn walk(path: &str, v: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (k, p) in props {
                let here = format!("{path}.{k}");
                // metadata and apiVersion/kind are Kubernetes' own fields.
                let own = !matches!(k.as_str(), "metadata" | "apiVersion" | "kind")
                    && !here.contains(".conditions");
                if own && p.get("description").is_none() {
                    missing.push(here.clone());
                }
                walk(&here, p, missing);
            }
        }
        if let Some(items) = v.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for (file, yaml) in render_all().unwrap() {
        let crd: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        for version in crd["spec"]["versions"].as_array().unwrap() {
            walk(file, &version["schema"]["openAPIV3Schema"], &mut missing);
        }
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}
