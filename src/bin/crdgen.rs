//! Prints the CustomResourceDefinitions as YAML. `crdgen DIR` writes one file per kind.

use iam_operator::crds;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1);
    for (file, yaml) in crds::render_all()? {
        match &out {
            Some(dir) => std::fs::write(std::path::Path::new(dir).join(file), yaml)?,
            None => print!("---\n{yaml}"),
        }
    }
    Ok(())
}
