//! Embeds the built web cockpit (`cockpit/dist`, made by `cockpit/build`) in the binary, so
//! `citybrain up` needs nothing else at run time. Without a build the server still runs and
//! its `/` page says how to build the cockpit.

use std::path::{Path, PathBuf};

fn files(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, base, out);
        } else if let Ok(relative) = path.strip_prefix(base) {
            let name = relative.to_string_lossy().replace('\\', "/");
            out.push((name, path));
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let cockpit = manifest.join("../../cockpit");
    let dist = cockpit.join("dist");
    // Watch the build output when there is one; otherwise the folder the build will create
    // it in (so building the cockpit later is noticed without a rebuild on every run).
    if dist.is_dir() {
        println!("cargo:rerun-if-changed={}", dist.display());
    } else if cockpit.is_dir() {
        println!("cargo:rerun-if-changed={}", cockpit.display());
    }
    let mut found = Vec::new();
    files(&dist, &dist, &mut found);
    found.sort();
    let mut code = String::from("/// The cockpit's built files: path below `dist/`, contents.\n");
    code.push_str("pub static FILES: &[(&str, &[u8])] = &[\n");
    for (name, path) in &found {
        let absolute = path.canonicalize().expect("a listed file exists");
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            absolute.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("cockpit_files.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
