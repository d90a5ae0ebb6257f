//! Bake libtorch's directory into the binary's RUNPATH so `avscene` runs without
//! LD_LIBRARY_PATH (systemd starts it as is). torch-sys is a direct dependency only so
//! that cargo hands us DEP_TCH_LIBTORCH_LIB.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report its libtorch directory; no RUNPATH set");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // With the CUDA build of libtorch nothing references libtorch_cuda's symbols directly,
    // so --as-needed would drop it and CUDA would never register: force it in.
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-ltorch,--as-needed");
    }
}
