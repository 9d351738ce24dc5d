//! Finding and loading libonnxruntime, once per process.
//!
//! Order: an explicit path (option `ortLibraryPath`), then `LOCKSTEP_ORT_LIBRARY`, then the
//! library inside the `onnxruntime-node` npm package under each search root
//! (`node_modules/onnxruntime-node/bin/napi-v6/<os>/<arch>/`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::error::InferenceError;

/// The environment variable that overrides the library (e.g. a CUDA or TensorRT build).
pub const ENV_LIBRARY: &str = "LOCKSTEP_ORT_LIBRARY";

fn library_file_names() -> &'static [&'static str] {
    if cfg!(target_os = "windows") {
        &["onnxruntime.dll"]
    } else if cfg!(target_os = "macos") {
        &["libonnxruntime.1.30.0.dylib", "libonnxruntime.dylib"]
    } else {
        &["libonnxruntime.so.1", "libonnxruntime.so"]
    }
}

fn npm_dir() -> PathBuf {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        "windows" => "win32",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => other,
    };
    Path::new("node_modules/onnxruntime-node/bin/napi-v6").join(os).join(arch)
}

/// Candidate paths, in the order they are tried.
pub fn candidates(explicit: Option<&Path>, search_roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(ENV_LIBRARY) {
        out.push(PathBuf::from(p));
    }
    for root in search_roots {
        for ancestor in root.ancestors() {
            for name in library_file_names() {
                out.push(ancestor.join(npm_dir()).join(name));
            }
        }
    }
    out
}

/// The library this process loaded, or why loading failed (ONNX Runtime can be loaded once).
static LOADED: OnceLock<Result<(PathBuf, ort::environment::Environment), InferenceError>> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime (once) and returns the path it came from.
pub fn ensure_loaded(explicit: Option<&Path>, search_roots: &[PathBuf]) -> Result<PathBuf, InferenceError> {
    let _guard = INIT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(done) = LOADED.get() {
        return done.as_ref().map(|(p, _)| p.clone()).map_err(Clone::clone);
    }
    // An explicit choice (option or environment variable) is never silently replaced by another.
    let chosen = explicit.map(Path::to_path_buf).or_else(|| std::env::var_os(ENV_LIBRARY).map(PathBuf::from));
    if let Some(p) = chosen.filter(|p| !p.is_file()) {
        return Err(InferenceError::LibraryNotFound { tried: format!("{} (given explicitly, but it is not a file)", p.display()) });
    }
    let tried = candidates(explicit, search_roots);
    let Some(path) = tried.iter().find(|p| p.is_file()).cloned() else {
        let list: Vec<_> = tried.iter().take(6).map(|p| p.display().to_string()).collect();
        // Not cached: the user may install the package and try again in the same process.
        return Err(InferenceError::LibraryNotFound { tried: list.join(", ") });
    };
    let result = (|| {
        let load_err = |reason: String| InferenceError::LibraryLoad { path: path.display().to_string(), reason };
        let builder = ort::init_from(&path).map_err(|e| load_err(e.to_string()))?;
        // ONNX Runtime's own log goes to lockstep's (target `lockstep::inference`, so to the
        // embedder's sink: setLogger in JS), not straight to stderr: it printed a line for every
        // failed run there, an error the caller is handed anyway. Warnings and up only:
        // verbose and info records are made per node and per run.
        let env = builder.with_name("lockstep").with_logger(std::sync::Arc::new(forward_log)).build().map_err(|e| load_err(e.to_string()))?;
        env.set_log_level(ort::logging::LogLevel::Warning);
        Ok((path.clone(), env))
    })();
    let _ = LOADED.set(result);
    LOADED
        .get()
        .map(|r| r.as_ref().map(|(p, _)| p.clone()).map_err(Clone::clone))
        .unwrap_or_else(|| Err(InferenceError::LibraryNotFound { tried: String::new() }))
}

/// One ONNX Runtime log record, as a `tracing` event of `lockstep::inference`.
fn forward_log(level: ort::logging::LogLevel, category: &str, _id: &str, location: &str, message: &str) {
    use ort::logging::LogLevel as L;
    match level {
        L::Fatal | L::Error => tracing::error!(target: "lockstep::inference", category, location, "ONNX Runtime: {message}"),
        L::Warning => tracing::warn!(target: "lockstep::inference", category, location, "ONNX Runtime: {message}"),
        L::Info => tracing::debug!(target: "lockstep::inference", category, location, "ONNX Runtime: {message}"),
        L::Verbose => tracing::trace!(target: "lockstep::inference", category, location, "ONNX Runtime: {message}"),
    }
}

/// The process's ONNX Runtime environment, after `ensure_loaded` succeeded.
pub fn environment() -> Option<&'static ort::environment::Environment> {
    LOADED.get().and_then(|r| r.as_ref().ok()).map(|(_, e)| e)
}
