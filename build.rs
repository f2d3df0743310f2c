//! Build script.
//!
//! 1. Gives the C shared library (`cdylib`) its SONAME on Linux, so programs linked with `-lps3rt`
//!    record `libps3rt.so.<ABI>` and keep working across compatible releases. (Only the `ps3rt_`
//!    functions are exported: rustc's own version script for a cdylib exports exactly the
//!    `#[no_mangle] extern "C"` functions, which all live in `src/ffi/`; scripts/test-ffi.sh checks it.)
//! 2. With the `tensorrt` feature only: compiles the C++ TensorRT shim
//!    (`src/backend/tensorrt/shim/p3trt.cpp`) against TensorRT and CUDA runtime headers. Nothing is
//!    linked from TensorRT or CUDA (the shim opens them with dlopen at run time), so only headers are
//!    needed: `PS3RT_TENSORRT_INCLUDE` (the directory holding NvInfer.h) and `PS3RT_CUDA_INCLUDE`
//!    (cuda_runtime_api.h), else what `tools/tensorrt/fetch-headers.sh` put in
//!    `target/tensorrt-sdk/`, else the system's (JetPack: /usr/include/aarch64-linux-gnu and
//!    /usr/local/cuda/include). Default builds need none of this.

/// Must name `PS3RT_ABI_VERSION` of src/ffi/version.rs (a unit test there checks this line).
const SONAME: &str = "libps3rt.so.1";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{SONAME}");
    }
    #[cfg(feature = "tensorrt")]
    tensorrt::build();
}

#[cfg(feature = "tensorrt")]
mod tensorrt {
    use std::path::{Path, PathBuf};

    const SHIM: &str = "src/backend/tensorrt/shim/p3trt.cpp";
    const SHIM_HEADER: &str = "src/backend/tensorrt/shim/p3trt.h";

    /// The first directory holding `file`: the environment variable, the fetch script's location,
    /// then system locations. Err: every place looked at.
    fn find(var: &str, file: &str, fetched: &Path, system: &[&str]) -> Result<PathBuf, String> {
        println!("cargo:rerun-if-env-changed={var}");
        if let Some(dir) = std::env::var_os(var) {
            let dir = PathBuf::from(dir);
            return if dir.join(file).is_file() {
                Ok(dir)
            } else {
                Err(format!("{var}={} has no {file}", dir.display()))
            };
        }
        let mut looked = vec![format!("${var} (not set)")];
        let candidates =
            std::iter::once(fetched.to_path_buf()).chain(system.iter().map(PathBuf::from));
        for dir in candidates {
            if dir.join(file).is_file() {
                return Ok(dir);
            }
            looked.push(dir.display().to_string());
        }
        Err(format!("{file} not found in: {}", looked.join(", ")))
    }

    /// `NV_TENSORRT_MAJOR.MINOR.PATCH` of the headers, for the message and the rerun trigger.
    fn header_version(dir: &Path) -> String {
        let text = std::fs::read_to_string(dir.join("NvInferVersion.h")).unwrap_or_default();
        let value = |names: &[&str]| {
            text.lines()
                .filter_map(|l| l.strip_prefix("#define "))
                .find_map(|l| {
                    let mut it = l.split_whitespace();
                    let name = it.next()?;
                    names
                        .contains(&name)
                        .then(|| it.next().map(str::to_string))?
                })
                .unwrap_or_else(|| "?".into())
        };
        format!(
            "{}.{}.{}",
            value(&["TRT_MAJOR_ENTERPRISE", "NV_TENSORRT_MAJOR"]),
            value(&["TRT_MINOR_ENTERPRISE", "NV_TENSORRT_MINOR"]),
            value(&["TRT_PATCH_ENTERPRISE", "NV_TENSORRT_PATCH"])
        )
    }

    pub fn build() {
        println!("cargo:rerun-if-changed={SHIM}");
        println!("cargo:rerun-if-changed={SHIM_HEADER}");
        let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
        let sdk = std::env::var_os("PS3RT_TENSORRT_SDK")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest.join("target/tensorrt-sdk"));
        println!("cargo:rerun-if-env-changed=PS3RT_TENSORRT_SDK");
        let arch_dir = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
            Ok("aarch64") => "/usr/include/aarch64-linux-gnu",
            _ => "/usr/include/x86_64-linux-gnu",
        };
        let trt = find(
            "PS3RT_TENSORRT_INCLUDE",
            "NvInfer.h",
            &sdk.join("tensorrt/include"),
            &[arch_dir, "/usr/include", "/usr/local/tensorrt/include"],
        );
        let cuda = find(
            "PS3RT_CUDA_INCLUDE",
            "cuda_runtime_api.h",
            &sdk.join("cuda/include"),
            &["/usr/local/cuda/include", "/usr/include"],
        );
        let (trt, cuda) = match (trt, cuda) {
            (Ok(t), Ok(c)) => (t, c),
            (t, c) => {
                let mut missing = Vec::new();
                if let Err(e) = t {
                    missing.push(format!("TensorRT headers: {e}"));
                }
                if let Err(e) = c {
                    missing.push(format!("CUDA runtime headers: {e}"));
                }
                eprintln!(
                    "error: the `tensorrt` feature compiles a C++ shim against TensorRT (8.6 or newer) and CUDA runtime headers, and they were not found.\n  {}\n\
                     Fetch them with tools/tensorrt/fetch-headers.sh (TensorRT 11.4/10.16 and CUDA 13 headers from crates.io and PyPI into target/tensorrt-sdk/), \
                     or point PS3RT_TENSORRT_INCLUDE at the directory holding NvInfer.h and PS3RT_CUDA_INCLUDE at the one holding cuda_runtime_api.h \
                     (JetPack: /usr/include/aarch64-linux-gnu and /usr/local/cuda/include). Only headers are needed: nothing is linked.",
                    missing.join("\n  ")
                );
                std::process::exit(1);
            }
        };
        println!(
            "cargo:rerun-if-changed={}",
            trt.join("NvInferVersion.h").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            cuda.join("cuda_runtime_api.h").display()
        );
        let version = header_version(&trt);
        println!(
            "cargo:warning=ps3rt tensorrt shim: TensorRT {version} headers from {}, CUDA headers from {}",
            trt.display(),
            cuda.display()
        );
        println!("cargo:rustc-env=PS3RT_TENSORRT_HEADERS={version}");
        cc::Build::new()
            .cpp(true)
            .std("c++17")
            .file(SHIM)
            .include("src/backend/tensorrt/shim")
            // -isystem: the TensorRT headers warn about their own deprecated declarations.
            .flag("-isystem")
            .flag(trt.to_string_lossy().as_ref())
            .flag("-isystem")
            .flag(cuda.to_string_lossy().as_ref())
            .flag_if_supported("-fvisibility=hidden")
            .warnings(true)
            .extra_warnings(true)
            .compile("p3trt");
        // dlopen lives in libdl before glibc 2.34 (JetPack 5/6 ship glibc 2.31/2.35).
        println!("cargo:rustc-link-lib=dylib=dl");
    }
}
