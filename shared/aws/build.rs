//! Checks that the dashboard's vendored chart library is installed before
//! `src/dashboard/assets.rs` embeds it (`include_bytes!` would fail less clearly).

use std::path::Path;

fn main() {
    let dashboard = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboard");
    for file in ["index.html", "app.js", "app.css", "package-lock.json"] {
        println!("cargo:rerun-if-changed={}", dashboard.join(file).display());
    }
    let vendored = ["uPlot.iife.min.js", "uPlot.min.css"]
        .map(|f| dashboard.join("node_modules/uplot/dist").join(f));
    for file in &vendored {
        println!("cargo:rerun-if-changed={}", file.display());
        if !file.is_file() {
            panic!(
                "\n\ncsvflow-aws: {} is missing.\nThe dashboard embeds uPlot from dashboard/node_modules: \
                 run `npm ci --prefix dashboard` (or scripts/tools) first.\n\n",
                file.display()
            );
        }
    }
}
