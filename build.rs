//! Bake libtorch's directory into the binary's RUNPATH so `avscene` runs without
//! LD_LIBRARY_PATH (systemd starts it as is), and compile the int8 path's small C++ shim
//! (src/model/int8/shim.cpp) against the same libtorch. torch-sys is a direct dependency
//! only so that cargo hands us DEP_TCH_LIBTORCH_LIB.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=src/model/int8/shim.cpp");
    println!("cargo::rustc-check-cfg=cfg(avscene_int8)");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!(
            "cargo:warning=torch-sys did not report its libtorch directory; no RUNPATH set, no int8 path"
        );
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // With the CUDA build of libtorch nothing references libtorch_cuda's symbols directly,
    // so --as-needed would drop it and CUDA would never register: force it in.
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-ltorch,--as-needed");
    }
    int8_shim(Path::new(&lib));
}

/// libtorch's quantized convolutions are registered with its dispatcher but have no
/// binding in tch: a few lines of C++ call them by name (src/model/int8/).
fn int8_shim(lib: &Path) {
    let Some(include) = lib.parent().map(|torch| torch.join("include")) else {
        return;
    };
    if !include.join("ATen/core/dispatch/Dispatcher.h").exists() {
        println!(
            "cargo:warning=no libtorch headers under {}: built without the int8 path",
            include.display()
        );
        return;
    }
    // torch-sys's own default: libtorch from PyPI is built with the C++11 ABI.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("src/model/int8/shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // libtorch's headers are not warning-clean; our few lines are small enough to read.
        .warnings(false)
        .compile("avscene_int8");
    println!("cargo:rustc-cfg=avscene_int8");
}
