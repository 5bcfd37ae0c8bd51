//! Links the Rust unit tests against the build machine's libpython.
//!
//! The crate is a Python extension module: maturin sets
//! PYO3_BUILD_EXTENSION_MODULE, PyO3 then links no libpython, and the
//! interpreter that imports the module (the user's, shared or static)
//! provides the Python symbols. Plain `cargo build`/`cargo test` (no such
//! variable) link the libpython of the `python3` PyO3 finds, because a test
//! executable cannot leave those symbols undefined; recording its directory
//! as the run path lets the tests start without LD_LIBRARY_PATH. Nothing
//! built this way is shipped.
fn main() {
    println!("cargo:rerun-if-env-changed=PYO3_BUILD_EXTENSION_MODULE");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    if std::env::var_os("PYO3_BUILD_EXTENSION_MODULE").is_some() {
        return;
    }
    let config = pyo3_build_config::get();
    if let Some(lib_dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
}
