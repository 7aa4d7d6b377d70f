//! Prints the CustomResourceDefinitions as YAML; `crdgen DIR...` writes one file per kind
//! into each directory: the top-level `crds/` (for `kubectl apply -f crds/`) and the Helm
//! chart's `charts/iam-operator/files/crds/`, which `templates/crds.yaml` renders as
//! templates (so `helm upgrade` delivers schema changes; see docs/install.md).

use iam_operator::crds;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    for (file, yaml) in crds::render_all()? {
        if dirs.is_empty() {
            print!("---\n{yaml}");
        }
        for dir in &dirs {
            std::fs::create_dir_all(dir)?;
            std::fs::write(std::path::Path::new(dir).join(file), &yaml)?;
        }
    }
    Ok(())
}
