//! The web cockpit in a real browser: runs `cockpit/tests/browser.mjs` (playwright-core
//! driving Debian's Chromium) against this build's `citybrain up` on the demo city.
//!
//! Needs Node.js, the cockpit's npm packages and Chromium; `scripts/test` installs them and
//! builds the cockpit before `cargo test`. Without them this test fails and says so: a
//! browser test that skips itself would pass without testing anything.

use std::path::Path;
use std::process::Command;

#[test]
fn the_cockpit_works_in_a_real_browser() {
    // Read at run time: a compile-time path can name an old checkout (shared target dir).
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets it");
    let root = Path::new(&manifest).join("../..");
    let cockpit = root.join("cockpit");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing = [
        (
            cockpit.join("node_modules/playwright-core").exists(),
            "the cockpit's npm packages (cockpit/build installs them)",
        ),
        (
            Path::new(&chromium).exists(),
            "Chromium (apt-get install chromium)",
        ),
    ];
    for (present, what) in missing {
        assert!(
            present,
            "missing {what}; scripts/test installs everything the tests need"
        );
    }
    // The signals page's server co-simulates a SUMO grid: made here, named to the script.
    let venv = citybrain_sumo::scenario::venv();
    assert!(
        venv.join("bin/sumo").exists(),
        "SUMO is not installed at {}: run scripts/test (or scripts/install-sumo)",
        venv.display()
    );
    let grid = tempfile::tempdir().unwrap();
    let (net, routes) = citybrain_sumo::scenario::grid(&venv, grid.path(), 3600).unwrap();
    let output = Command::new("node")
        .arg(cockpit.join("tests/browser.mjs"))
        .env("CITYBRAIN_SIGNALS_NET", &net)
        .env("CITYBRAIN_SIGNALS_ROUTES", &routes)
        .env("CITYBRAIN_SUMO", venv.join("bin/sumo"))
        .env("CITYBRAIN_BIN", env!("CARGO_BIN_EXE_citybrain"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs (install Node.js >= 20; scripts/test checks)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "browser tests failed:\n{stdout}");
}
