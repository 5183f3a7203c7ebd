//! Every plugin library exports exactly one symbol, the abi_stable root-module loader: the
//! runtime's native symbols (tract, llama.cpp, ...) stay inside the plugin and cannot clash
//! with another plugin's copy of the same library.

mod common;

#[test]
fn plugins_export_only_the_root_module() {
    let dir = common::target_dir();
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("libcyxwiz_plugin_") && name.ends_with(".so")) {
            continue;
        }
        let out = std::process::Command::new("nm")
            .args(["-D", "--defined-only"])
            .arg(&path)
            .output()
            .expect("nm from binutils");
        assert!(out.status.success(), "nm {name}");
        let symbols: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
            .collect();
        assert_eq!(
            symbols,
            vec![cyxwiz_sdk::__private::ROOT_MODULE_SYMBOL.to_string()],
            "{name} exports more than its root module"
        );
        checked.push(name);
    }
    assert!(checked.len() >= 3, "plugins checked: {checked:?}");
}
