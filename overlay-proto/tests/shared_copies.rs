//! The repository carries its own copies of the specs and vectors it is built against
//! (`docs/spec/`, `overlay-proto/tests/vectors/`), so a fresh clone tests with nothing beside it.
//! Where the wider system's `../shared/` folder exists beside the checkout (as in CI), every
//! copy must equal its source byte for byte; where it does not, the test says so and checks
//! only that the in-repo copies are present.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// (path under `../shared/`, path under the repository root)
const COPIES: &[(&str, &str)] = &[
    ("spec/OAP1.md", "docs/spec/OAP1.md"),
    ("spec/CAPABILITY.md", "docs/spec/CAPABILITY.md"),
    ("spec/OVERLAY.md", "docs/spec/OVERLAY.md"),
    (
        "vectors/oap1_frames.json",
        "overlay-proto/tests/vectors/oap1_frames.json",
    ),
    (
        "vectors/capability_tokens.json",
        "overlay-proto/tests/vectors/capability_tokens.json",
    ),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn in_repo_copies_exist_and_match_shared_when_present() {
    let root = repo_root();
    let shared = root.join("../shared");
    let have_shared = shared.is_dir();
    if !have_shared {
        println!("note: no ../shared beside the checkout; only the in-repo copies are checked");
    }
    for (from, to) in COPIES {
        let ours = std::fs::read(root.join(to))
            .unwrap_or_else(|e| panic!("in-repo copy {to} is missing: {e}"));
        assert!(!ours.is_empty(), "in-repo copy {to} is empty");
        if have_shared {
            let theirs = std::fs::read(shared.join(from))
                .unwrap_or_else(|e| panic!("../shared/{from} is missing: {e}"));
            assert!(
                ours == theirs,
                "{to} differs from ../shared/{from}: copy it again (cp ../shared/{from} {to})"
            );
        }
    }
}
