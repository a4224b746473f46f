//! Builds the web console (`console/`, TypeScript + Vite) and embeds its files in the binary:
//! writes `console_assets.rs` into OUT_DIR, a table of every built file with its bytes.
//!
//! The console is built here, not only by the Makefile, so that a plain `cargo build` (or
//! clippy, or `cargo test`) on a fresh clone embeds the current console. It needs Node 20+ and
//! npm; `KEYGATE_CONSOLE_DIST=/path/to/dist` embeds a console built elsewhere instead (the
//! Dockerfile builds it in a Node stage).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What cargo watches, relative to `console/`: a change to any of these rebuilds the console.
/// The build generates `openapi/schema.ts` (never watched: it is written during the build) from
/// the API's document, `control/openapi.json`.
const CONSOLE_INPUTS: [&str; 9] = [
    "public",
    "src",
    "index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
    "openapi/package.json",
    "../control/openapi.json",
];

fn main() {
    if let Err(message) = embed_console() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn embed_console() -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=KEYGATE_CONSOLE_DIST");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let dist = match std::env::var_os("KEYGATE_CONSOLE_DIST") {
        Some(prebuilt) => PathBuf::from(prebuilt),
        None => {
            let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?;
            let console = Path::new(&manifest_dir).join("../console");
            for input in CONSOLE_INPUTS {
                println!("cargo:rerun-if-changed={}", console.join(input).display());
            }
            let dist = out_dir.join("console-dist");
            build_console(&console, &dist)?;
            dist
        }
    };
    if !dist.join("index.html").is_file() {
        return Err(format!(
            "the web console is not built: {} has no index.html. Build it with `make console` \
             (needs Node 20+ and npm) or point KEYGATE_CONSOLE_DIST at a built console",
            dist.display()
        ));
    }
    let mut files = Vec::new();
    collect_files(&dist, &dist, &mut files)?;
    files.sort();
    let table = asset_table(&dist, &files)?;
    std::fs::write(out_dir.join("console_assets.rs"), table).map_err(|e| e.to_string())
}

/// `npm ci` when the installed packages are missing or older than the lockfile, then the
/// generated API types, the type check and the production build into `dist`.
fn build_console(console: &Path, dist: &Path) -> Result<(), String> {
    let installed = console.join("node_modules/.package-lock.json");
    let lockfile = console.join("package-lock.json");
    if is_older(&installed, &lockfile) {
        run_npm(console, &["ci", "--no-audit", "--no-fund"])?;
    }
    let out_dir = dist.to_str().ok_or("OUT_DIR is not UTF-8")?;
    run_npm(
        console,
        &["run", "build", "--", "--outDir", out_dir, "--emptyOutDir"],
    )
}

fn is_older(path: &Path, than: &Path) -> bool {
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok()
    };
    match (modified(path), modified(than)) {
        (Some(path), Some(than)) => path < than,
        _ => true,
    }
}

fn run_npm(console: &Path, args: &[&str]) -> Result<(), String> {
    let status = Command::new("npm")
        .args(args)
        .current_dir(console)
        .status()
        .map_err(|error| {
            format!(
                "keygate-control embeds the web console, which is built with npm (Node 20+), \
                 and `npm` could not be run: {error}. Install Node.js 20+ with npm, or set \
                 KEYGATE_CONSOLE_DIST to a console built elsewhere"
            )
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "building the web console failed: `npm {}` in {} exited with {status}",
            args.join(" "),
            console.display()
        ))
    }
}

fn collect_files(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            collect_files(root, &path, files)?;
        } else {
            let relative = path.strip_prefix(root).map_err(|e| e.to_string())?;
            files.push(relative.to_path_buf());
        }
    }
    Ok(())
}

fn asset_table(dist: &Path, files: &[PathBuf]) -> Result<String, String> {
    let mut table = String::from("pub static ASSETS: &[Asset] = &[\n");
    for relative in files {
        let name = relative
            .to_str()
            .ok_or_else(|| format!("{}: not a UTF-8 file name", relative.display()))?;
        let absolute = dist.join(relative);
        let absolute = absolute
            .canonicalize()
            .map_err(|e| format!("{}: {e}", absolute.display()))?;
        writeln!(
            table,
            "    Asset {{ path: {name:?}, bytes: include_bytes!({:?}) }},",
            absolute.display().to_string()
        )
        .map_err(|e| e.to_string())?;
    }
    table.push_str("];\n");
    Ok(table)
}
