//! The container image `scripts/build-image.sh` assembles without a container runtime:
//! its OCI layout, its config, its root filesystem, and the operator run from that root
//! filesystem alone.
//!
//! The image is built from this test build's binary (no release build in the suite).
//! `IAM_OPERATOR_IMAGE_BINARY=PATH` checks the image of another binary instead, e.g. the
//! static release build the script makes by default.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::cluster::exit_of_unreachable;

const NONROOT: u32 = 65532;

/// Names that would give a shell or a package manager to whoever gets into the container.
const FORBIDDEN: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox", "toybox",
    "apt", "apt-get", "dpkg", "apk", "rpm", "yum", "dnf", "microdnf",
];

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> PathBuf {
    std::env::var_os("IAM_OPERATOR_IMAGE_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_iam-operator")))
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn build_image(out: &Path) -> Duration {
    let _ = std::fs::remove_dir_all(out);
    let start = Instant::now();
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("scripts/build-image.sh"))
        .arg(binary())
        .env("IMAGE_OUT", out)
        .env("IMAGE_TAG", "iam-operator:test")
        .env("SOURCE_DATE_EPOCH", "1700000000");
    run_ok(&mut cmd);
    start.elapsed()
}

/// One entry of a layer, as `tar -tv --numeric-owner` lists it.
#[derive(Debug, Clone)]
struct Entry {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    path: String,
}

struct Image {
    out: PathBuf,
    index: Value,
    manifest: Value,
    config: Value,
    /// Blob path of each layer, in order.
    layers: Vec<PathBuf>,
    /// Path (without leading '/') -> entry, later layers overriding earlier ones.
    entries: BTreeMap<String, Entry>,
    rootfs: PathBuf,
    /// The shared objects `ldd` resolves for the binary (empty when static), and its loader.
    libraries: Vec<PathBuf>,
    loader: Option<PathBuf>,
}

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn blob(layout: &Path, descriptor: &Value) -> PathBuf {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    layout.join("blobs/sha256").join(hex)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `-rwxr-xr-x` -> ('-', 0o755); setuid/setgid/sticky letters included.
fn parse_mode(s: &str) -> (char, u32) {
    let b = s.as_bytes();
    let mut mode = 0;
    for (i, bit) in [0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1]
        .into_iter()
        .enumerate()
    {
        let c = b[i + 1];
        if c != b'-' && c != b'S' && c != b'T' {
            mode |= bit;
        }
    }
    match b[3] {
        b's' | b'S' => mode |= 0o4000,
        _ => {}
    }
    match b[6] {
        b's' | b'S' => mode |= 0o2000,
        _ => {}
    }
    match b[9] {
        b't' | b'T' => mode |= 0o1000,
        _ => {}
    }
    (b[0] as char, mode)
}

fn list_layer(layer: &Path) -> Vec<Entry> {
    let out = run_ok(
        Command::new("tar")
            .args(["-tvzf"])
            .arg(layer)
            .arg("--numeric-owner")
            .env("TZ", "UTC"),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            // perms uid/gid size date time name (no spaces in this image's names)
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(f.len() >= 6, "unexpected tar listing line: {line}");
            let (kind, mode) = parse_mode(f[0]);
            let (uid, gid) = f[1].split_once('/').unwrap();
            let name = f[5].trim_end_matches('/').trim_start_matches("./");
            Entry {
                kind,
                mode,
                uid: uid.parse().unwrap(),
                gid: gid.parse().unwrap(),
                path: name.to_string(),
            }
        })
        .collect()
}

/// `ldd BINARY`: the shared objects it resolves to and its loader, none when static.
fn ldd(binary: &Path) -> (Vec<PathBuf>, Option<PathBuf>) {
    let out = Command::new("ldd").arg(binary).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let mut libs = Vec::new();
    let mut loader = None;
    for line in text.lines().map(str::trim) {
        assert!(!line.contains("not found"), "ldd: {line}");
        if let Some((_, rest)) = line.split_once("=> ") {
            if rest.starts_with('/') {
                libs.push(PathBuf::from(rest.split_whitespace().next().unwrap()));
            }
        } else if line.starts_with('/') {
            loader = Some(PathBuf::from(line.split_whitespace().next().unwrap()));
        }
    }
    (libs, loader)
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("image-test");
        let took = build_image(&out);
        eprintln!("scripts/build-image.sh took {:.1}s", took.as_secs_f64());
        let layout = out.join("oci");
        let index = read_json(&layout.join("index.json"));
        let manifest = read_json(&blob(&layout, &index["manifests"][0]));
        let config = read_json(&blob(&layout, &manifest["config"]));
        let layers: Vec<PathBuf> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| blob(&layout, l))
            .collect();
        let mut entries = BTreeMap::new();
        for layer in &layers {
            for e in list_layer(layer) {
                entries.insert(e.path.clone(), e);
            }
        }
        // The root filesystem, as a runtime unpacks it: layers in order.
        let rootfs = out.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        for layer in &layers {
            run_ok(
                Command::new("tar")
                    .arg("-xzf")
                    .arg(layer)
                    .arg("-C")
                    .arg(&rootfs),
            );
        }
        let (libraries, loader) = ldd(&binary());
        Image {
            out,
            index,
            manifest,
            config,
            layers,
            entries,
            rootfs,
            libraries,
            loader,
        }
    })
}

fn in_image(path: &Path) -> String {
    path.to_str().unwrap().trim_start_matches('/').to_string()
}

/// The OCI layout is complete (every blob there, with the digest and size its descriptor
/// says), the docker tarball holds the same image, and a second build of the same binary
/// gives the same manifest digest.
#[test]
fn oci_layout_is_complete_and_reproducible() {
    let img = image();
    let layout = img.out.join("oci");
    assert_eq!(
        read_json(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let manifests = img.index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{}", img.index);
    assert_eq!(
        manifests[0]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        "test"
    );
    assert_eq!(
        img.manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let mut descriptors = vec![&manifests[0], &img.manifest["config"]];
    descriptors.extend(img.manifest["layers"].as_array().unwrap());
    for d in descriptors {
        let path = blob(&layout, d);
        let digest = d["digest"].as_str().unwrap();
        assert_eq!(format!("sha256:{}", sha256(&path)), digest, "blob {path:?}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            d["size"].as_u64().unwrap(),
            "size of {digest}"
        );
    }
    for l in img.manifest["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
    assert_eq!(
        img.config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        img.layers.len()
    );

    // The `docker load` tarball: same config, same layers.
    let listing = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(img.out.join("iam-operator.tar"))
            .arg("manifest.json"),
    );
    let docker: Value = serde_json::from_slice(&listing.stdout).unwrap();
    let config_digest = img.manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(docker[0]["Config"], config_digest, "{docker}");
    assert_eq!(docker[0]["RepoTags"][0], "iam-operator:test", "{docker}");
    assert_eq!(
        docker[0]["Layers"].as_array().unwrap().len(),
        img.layers.len()
    );

    // Same inputs, same image: fixed mtimes and owners, sorted entries.
    let again = img.out.with_file_name("image-test-again");
    let took = build_image(&again);
    eprintln!("second build took {:.1}s", took.as_secs_f64());
    let index2 = read_json(&again.join("oci/index.json"));
    assert_eq!(
        index2["manifests"][0]["digest"], manifests[0]["digest"],
        "two builds of the same binary gave different images"
    );
    let _ = std::fs::remove_dir_all(&again);
}

/// The config runs the binary directly as the unprivileged user 65532: no shell form,
/// no Cmd a shell would interpret, nothing inherited from a base image.
#[test]
fn config_runs_the_binary_as_nonroot_without_a_shell() {
    let img = image();
    let c = &img.config;
    assert_eq!(c["os"], "linux");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(c["architecture"], arch);
    let cfg = &c["config"];
    let user = cfg["User"].as_str().unwrap_or_default();
    assert_eq!(user, format!("{NONROOT}:{NONROOT}"));
    let (uid, gid) = user.split_once(':').unwrap();
    assert_ne!(uid.parse::<u32>().unwrap(), 0, "runs as root");
    assert_ne!(gid.parse::<u32>().unwrap(), 0, "runs in group root");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/iam-operator"]));
    assert!(
        cfg["Cmd"].is_null() || cfg["Cmd"].as_array().is_some_and(|a| a.is_empty()),
        "Cmd set: {}",
        cfg["Cmd"]
    );
    assert_eq!(
        cfg["Labels"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        cfg["Labels"]["org.opencontainers.image.title"],
        "iam-operator"
    );
    assert_eq!(
        cfg["Labels"]["org.opencontainers.image.licenses"],
        "Apache-2.0"
    );
    assert_eq!(
        c["created"], "2023-11-14T22:13:20Z",
        "SOURCE_DATE_EPOCH not used"
    );
}

/// The root filesystem holds the binary (root-owned, executable by 65532), exactly the
/// shared objects `ldd` lists when it is dynamic, the CA bundle the AWS SDK reads, the
/// nonroot user without a login shell, and no other executable: no shell, no package
/// manager, nothing setuid, nothing 65532 may write outside its home and /tmp.
#[test]
fn root_filesystem_holds_the_binary_its_libraries_and_no_shell() {
    let img = image();
    let e = &img.entries;

    let bin = e
        .get("iam-operator")
        .expect("/iam-operator is not in the image");
    assert_eq!(bin.kind, '-', "{bin:?}");
    assert_eq!((bin.uid, bin.gid), (0, 0), "{bin:?}");
    assert_eq!(
        bin.mode & 0o001,
        0o001,
        "not executable by others (65532): {bin:?}"
    );
    assert_eq!(bin.mode & 0o022, 0, "writable by others: {bin:?}");

    // Exactly what the binary loads, byte for byte the file `ldd` resolved.
    let mut expected_exec: BTreeSet<String> = BTreeSet::from(["iam-operator".to_string()]);
    for so in img.libraries.iter().chain(&img.loader) {
        let path = in_image(so);
        let entry = e
            .get(&path)
            .unwrap_or_else(|| panic!("{so:?} (from ldd) is not in the image"));
        assert_eq!(entry.kind, '-', "{entry:?}");
        assert_eq!(
            entry.mode & 0o005,
            0o005,
            "not readable by 65532: {entry:?}"
        );
        assert!(
            std::fs::read(img.rootfs.join(&path)).unwrap() == std::fs::read(so).unwrap(),
            "{so:?} in the image differs from the host's"
        );
        expected_exec.insert(path);
    }
    let executables: BTreeSet<String> = e
        .values()
        .filter(|x| x.kind == '-' && x.mode & 0o111 != 0)
        .map(|x| x.path.clone())
        .collect();
    assert_eq!(
        executables, expected_exec,
        "executable files other than the binary and its loader and libraries"
    );
    for x in e.values() {
        let name = x.path.rsplit('/').next().unwrap();
        assert!(!FORBIDDEN.contains(&name), "{} is in the image", x.path);
        assert!(
            x.kind == '-' || x.kind == 'd',
            "not a file or directory: {x:?}"
        );
        assert_eq!(x.mode & 0o6000, 0, "setuid/setgid: {x:?}");
        let writable = x.uid == NONROOT || x.gid == NONROOT || x.mode & 0o002 != 0;
        if writable {
            assert!(
                x.path == "home/nonroot" || (x.path == "tmp" && x.mode & 0o1000 != 0),
                "writable by 65532: {x:?}"
            );
        }
    }
    assert_eq!(
        e.get("home/nonroot").map(|h| (h.uid, h.gid, h.mode)),
        Some((NONROOT, NONROOT, 0o700))
    );

    let passwd = std::fs::read_to_string(img.rootfs.join("etc/passwd")).unwrap();
    let nonroot: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("nonroot:"))
        .expect("no nonroot user in /etc/passwd")
        .split(':')
        .collect();
    assert_eq!(&nonroot[2..4], &["65532", "65532"], "{passwd}");
    assert!(
        !e.contains_key(nonroot[6].trim_start_matches('/')),
        "nonroot's login shell {} is in the image",
        nonroot[6]
    );
    let group = std::fs::read_to_string(img.rootfs.join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l == "nonroot:x:65532:"), "{group}");

    // The AWS SDK and kube's platform verifier read the system roots (rustls-native-certs).
    let ca = e
        .get("etc/ssl/certs/ca-certificates.crt")
        .expect("no CA bundle in the image");
    assert_eq!(ca.mode & 0o004, 0o004, "CA bundle not readable by 65532");
    let bundle =
        std::fs::read_to_string(img.rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    let certs = bundle.matches("-----BEGIN CERTIFICATE-----").count();
    assert!(certs >= 50, "only {certs} certificates in the CA bundle");
    let nsswitch = std::fs::read_to_string(img.rootfs.join("etc/nsswitch.conf")).unwrap();
    assert!(
        nsswitch
            .lines()
            .any(|l| l.split_whitespace().eq(["hosts:", "files", "dns"])),
        "{nsswitch}"
    );
}

/// NAME found on this process's PATH: the commands below run with the image's PATH.
fn program(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed"))
}

/// The environment the image's config gives the process, and nothing from this one.
fn image_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear();
    for kv in image().config["config"]["Env"].as_array().unwrap() {
        let (k, v) = kv.as_str().unwrap().split_once('=').unwrap();
        cmd.env(k, v);
    }
    cmd
}

/// Runs the image's binary with only the image's files: through the image's own dynamic
/// loader and libraries (or directly if static); then chrooted into the unpacked root
/// filesystem as uid 65532, pointed at a cluster that is not there, so it gets as far as
/// calling the API (name resolution through the image's /etc/hosts included).
#[test]
fn operator_runs_from_the_image_root_filesystem() {
    let img = image();
    let rootfs = &img.rootfs;
    let exe = rootfs.join("iam-operator");

    let mut help = match &img.loader {
        Some(loader) => {
            let ld = rootfs.join(in_image(loader));
            let dirs: BTreeSet<PathBuf> = img
                .libraries
                .iter()
                .map(|l| rootfs.join(in_image(l.parent().unwrap())))
                .collect();
            let path = std::env::join_paths(&dirs).unwrap();
            // The loader resolves every library inside the root filesystem, none from the host.
            let list = run_ok(
                Command::new(&ld)
                    .arg("--inhibit-cache")
                    .arg("--library-path")
                    .arg(&path)
                    .arg("--list")
                    .arg(&exe),
            );
            let list = String::from_utf8_lossy(&list.stdout).to_string();
            let mut resolved = 0;
            for line in list.lines() {
                if let Some((_, to)) = line.split_once("=> ") {
                    let to = to.split_whitespace().next().unwrap();
                    assert!(
                        Path::new(to).starts_with(rootfs),
                        "{line}: not from the image\n{list}"
                    );
                    resolved += 1;
                }
            }
            // The libraries and the loader itself ("/lib64/ld-linux-x86-64.so.2 => ...").
            assert_eq!(resolved, img.libraries.len() + 1, "{list}");
            let mut cmd = Command::new(&ld);
            cmd.arg("--inhibit-cache")
                .arg("--library-path")
                .arg(&path)
                .arg(&exe);
            cmd
        }
        None => Command::new(&exe),
    };
    let out = run_ok(image_env(&mut help).arg("--help"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Usage: iam-operator"), "{text}");
    assert!(text.contains("--cluster-name"), "{text}");

    // Chrooted: the root filesystem is all it sees. The kubeconfig and /etc/hosts stand
    // in for what Kubernetes mounts into a container.
    std::fs::write(
        rootfs.join("tmp/kubeconfig"),
        r#"apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster: {server: "https://api.image-test.invalid:1", insecure-skip-tls-verify: true}
users:
  - name: nobody
    user: {token: not-a-real-token}
contexts:
  - name: nowhere
    context: {cluster: nowhere, user: nobody}
current-context: nowhere
"#,
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/hosts"),
        "127.0.0.1 localhost api.image-test.invalid\n",
    )
    .unwrap();
    let root = String::from_utf8(run_ok(Command::new("id").arg("-u")).stdout).unwrap();
    let mut cmd = if root.trim() == "0" {
        // A real chroot and a real uid 65532: file modes are checked as in a container.
        let mut c = Command::new(program("chroot"));
        c.arg(format!("--userspec={NONROOT}:{NONROOT}"))
            .arg(rootfs)
            .arg("/iam-operator");
        c
    } else {
        let mut c = Command::new(program("unshare"));
        c.args(["--user", "--map-user=65532", "--map-group=65532"])
            .arg(format!("--root={}", rootfs.display()))
            .arg("/iam-operator");
        c
    };
    image_env(&mut cmd)
        .args([
            "--metrics-bind-address",
            "127.0.0.1:0",
            "--health-probe-bind-address",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", "/tmp/kubeconfig")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let (status, stderr) = exit_of_unreachable(child);
    assert!(!status.success(), "exit status {status}; stderr: {stderr}");
    assert!(
        stderr.contains("cannot reach the Kubernetes API at https://api.image-test.invalid:1/"),
        "the operator did not get as far as calling the API: {stderr}"
    );
    assert!(
        stderr.contains("onnection refused"),
        "the API's name did not resolve to 127.0.0.1 through the image's /etc/hosts: {stderr}"
    );
}
