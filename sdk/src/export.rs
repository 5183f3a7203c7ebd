//! `export_plugin!`: the one line that turns a [`Plugin`](crate::Plugin) into a loadable
//! library, and the hidden items it expands to.

/// Exports `$plugin` (a type implementing [`Plugin`](crate::Plugin)) as this library's root
/// module. Use it once, in a crate built with `crate-type = ["cdylib"]` (plus `"rlib"` if its
/// tests link it).
///
/// The plugin version reported to the host is the invoking crate's `CARGO_PKG_VERSION`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        #[unsafe(no_mangle)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn __cyxwiz_plugin_info() -> $crate::__private::PluginInfo {
                $crate::__private::plugin_info::<$plugin>(env!("CARGO_PKG_VERSION"))
            }
            fn __cyxwiz_root_module() -> $crate::__private::PluginModRef {
                $crate::__private::root_module::<$plugin>(__cyxwiz_plugin_info)
            }
            extern "C" fn __cyxwiz_erased_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(__cyxwiz_root_module)
            }
            // SAFETY: the constructor returns the prefix reference of `PluginModRef`, the
            // module type named here, as `export_root_module` would generate.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::__private::PluginModRef>(
                    __cyxwiz_erased_root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// Items `export_plugin!` expands to. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::author::plugin_info;
    use crate::author::{new_loader, runtime, self_test, Plugin};
    pub use cyxwiz_plugin_api::abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    use cyxwiz_plugin_api::abi_stable::prefix_type::PrefixTypeTrait;

    /// The one symbol a plugin library exports (the name abi_stable looks up).
    pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";
    pub use cyxwiz_plugin_api::{PluginInfo, PluginMod, PluginModRef};

    /// Builds and leaks the root module of `P`.
    pub fn root_module<P: Plugin>(info: extern "C" fn() -> PluginInfo) -> PluginModRef {
        PluginMod {
            info,
            new_loader: new_loader::<P>,
            self_test,
            set_log_sink: crate::log::set_log_sink,
            runtime: runtime::<P>,
        }
        .leak_into_prefix()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exported_symbol_name_matches_abi_stable() {
        assert_eq!(
            cyxwiz_plugin_api::abi_stable::library::ROOT_MODULE_LOADER_NAME,
            super::__private::ROOT_MODULE_SYMBOL,
            "update the static's name in export_plugin! to the name abi_stable looks up"
        );
    }
}
