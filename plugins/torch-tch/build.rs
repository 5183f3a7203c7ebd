//! Link settings: an rpath to the libtorch torch-sys linked against, so the plugin (and its
//! tests) load that libtorch without LD_LIBRARY_PATH and never a system libtorch of another
//! version; and `--exclude-libs=ALL`, because tch and bzip2-sys define `#[no_mangle]` C
//! functions that would otherwise be exported next to the root module.

fn main() {
    // torch-sys (`links = "tch"`) publishes its library directory as DEP_TCH_LIBTORCH_LIB.
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rustc-link-arg-cdylib=-Wl,--exclude-libs=ALL");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
}
