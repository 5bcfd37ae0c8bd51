//! Pins the embedded interpreter: the binary records the directory of the
//! libpython it was linked against as its run path, so at run time it loads
//! that library and not another libpython of the same version elsewhere on
//! the system (Debian ships one beside pyenv's on our machines).
fn main() {
    let config = pyo3_build_config::get();
    if let Some(lib_dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
