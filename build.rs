//! Embeds the plain `.sql` files of `migrations/` into the binary, in name
//! order, so that a deployed `manage` carries its own schema.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    // A position-independent executable is relocated at every start: about
    // 290 pages of relocated data copied on write, over a millisecond on a
    // small VM — most of what `manage --help` costs. manage is a local tool
    // and daemon that listens on no network, so the release binary is linked
    // at a fixed address instead (BENCHMARKS.md has the figures).
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let dir = Path::new("migrations");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::from(
        "/// (version, name, sql), in order.\npub static MIGRATIONS: &[(i32, &str, &str)] = &[\n",
    );
    for name in &names {
        let stem = name.trim_end_matches(".sql");
        let version: i32 = stem
            .split('_')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("migration {name} must start with a number"));
        let path = std::fs::canonicalize(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            out,
            "    ({version}, {stem:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .ok();
    }
    out.push_str("];\n");
    let target =
        Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("migrations.rs");
    std::fs::write(target, out).unwrap_or_else(|e| panic!("writing migrations.rs: {e}"));
}
