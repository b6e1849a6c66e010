//! `manage`: the shipped jobs and the whole command line (§7), as an
//! application's own `manage` is (§22) — with no job of its own added.

fn main() {
    manage::Suite::new().main()
}
