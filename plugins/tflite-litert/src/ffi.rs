//! The slice of the TFLite C API (TF 2.17) the plugin uses, resolved at run time from
//! `libtensorflowlite_c.so` with every symbol checked at load, and owned handles that free
//! themselves.

use cyxwiz_sdk::{Error, Result};
use std::{
    ffi::{c_char, c_int, c_void, CStr, CString},
    path::Path,
};

/// Opaque C types.
#[repr(C)]
pub struct TfLiteModel {
    _private: [u8; 0],
}
#[repr(C)]
pub struct TfLiteInterpreterOptions {
    _private: [u8; 0],
}
#[repr(C)]
pub struct TfLiteInterpreter {
    _private: [u8; 0],
}
#[repr(C)]
pub struct TfLiteTensor {
    _private: [u8; 0],
}
#[repr(C)]
pub struct TfLiteDelegate {
    _private: [u8; 0],
}

/// Room for `TfLiteXNNPackDelegateOptions`, whose fields grow between TF releases; only its
/// first field, `int32_t num_threads`, is touched. Larger than the real struct (tens of
/// bytes) and over 16 bytes, so on every C ABI we build for it is returned through a hidden
/// pointer into this buffer, which the library fills up to its own size.
#[repr(C, align(16))]
pub struct XnnpackOptions {
    pub num_threads: i32,
    _rest: [u8; 252],
}

/// The XNNPACK delegate's entry points: present in the PyPI builds of the C library, absent
/// from builds without XNNPACK (which then run TFLite's builtin kernels only).
pub struct Xnnpack {
    pub options_default: unsafe extern "C" fn() -> XnnpackOptions,
    pub create: unsafe extern "C" fn(*const XnnpackOptions) -> *mut TfLiteDelegate,
    pub delete: unsafe extern "C" fn(*mut TfLiteDelegate),
    pub add_delegate: unsafe extern "C" fn(*mut TfLiteInterpreterOptions, *mut TfLiteDelegate),
}

/// `kTfLiteOk`.
pub const OK: c_int = 0;

/// Function pointers into the loaded library.
pub struct Api {
    _lib: libloading::Library,
    pub version: unsafe extern "C" fn() -> *const c_char,
    pub model_create_from_file: unsafe extern "C" fn(*const c_char) -> *mut TfLiteModel,
    pub model_delete: unsafe extern "C" fn(*mut TfLiteModel),
    pub options_create: unsafe extern "C" fn() -> *mut TfLiteInterpreterOptions,
    pub options_set_num_threads: unsafe extern "C" fn(*mut TfLiteInterpreterOptions, i32),
    pub options_delete: unsafe extern "C" fn(*mut TfLiteInterpreterOptions),
    pub interpreter_create: unsafe extern "C" fn(
        *const TfLiteModel,
        *const TfLiteInterpreterOptions,
    ) -> *mut TfLiteInterpreter,
    pub interpreter_delete: unsafe extern "C" fn(*mut TfLiteInterpreter),
    pub input_count: unsafe extern "C" fn(*const TfLiteInterpreter) -> i32,
    pub input_tensor: unsafe extern "C" fn(*const TfLiteInterpreter, i32) -> *mut TfLiteTensor,
    pub allocate_tensors: unsafe extern "C" fn(*mut TfLiteInterpreter) -> c_int,
    pub invoke: unsafe extern "C" fn(*mut TfLiteInterpreter) -> c_int,
    pub output_count: unsafe extern "C" fn(*const TfLiteInterpreter) -> i32,
    pub output_tensor: unsafe extern "C" fn(*const TfLiteInterpreter, i32) -> *const TfLiteTensor,
    pub tensor_type: unsafe extern "C" fn(*const TfLiteTensor) -> c_int,
    pub tensor_num_dims: unsafe extern "C" fn(*const TfLiteTensor) -> i32,
    pub tensor_dim: unsafe extern "C" fn(*const TfLiteTensor, i32) -> i32,
    pub tensor_byte_size: unsafe extern "C" fn(*const TfLiteTensor) -> usize,
    pub tensor_name: unsafe extern "C" fn(*const TfLiteTensor) -> *const c_char,
    pub copy_from_buffer: unsafe extern "C" fn(*mut TfLiteTensor, *const c_void, usize) -> c_int,
    pub copy_to_buffer: unsafe extern "C" fn(*const TfLiteTensor, *mut c_void, usize) -> c_int,
    pub xnnpack: Option<Xnnpack>,
}

/// Resolves an optional symbol.
macro_rules! opt_sym {
    ($lib:expr, $name:literal) => {
        // SAFETY: the symbol's type is the TFLite C API's declaration for that name.
        unsafe { $lib.get(concat!($name, "\0").as_bytes()) }
            .ok()
            .map(|s| *s)
    };
}

macro_rules! sym {
    ($lib:expr, $path:expr, $name:literal) => {
        // SAFETY: the symbol's type is the TFLite C API's declaration for that name.
        *unsafe { $lib.get(concat!($name, "\0").as_bytes()) }.map_err(|_| {
            Error::unsupported(format!(
                "{} is not the TFLite C library: it lacks `{}`",
                $path.display(),
                $name
            ))
        })?
    };
}

impl Api {
    /// Loads the library at `path` and resolves every function.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::unsupported(format!(
                "TFLite C library {} does not exist",
                path.display()
            )));
        }
        // SAFETY: loading runs the library's initialisers; this is the library we were told to use.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| Error::unsupported(format!("cannot load {}: {e}", path.display())))?;
        let xnnpack = (|| {
            Some(Xnnpack {
                options_default: opt_sym!(lib, "TfLiteXNNPackDelegateOptionsDefault")?,
                create: opt_sym!(lib, "TfLiteXNNPackDelegateCreate")?,
                delete: opt_sym!(lib, "TfLiteXNNPackDelegateDelete")?,
                add_delegate: opt_sym!(lib, "TfLiteInterpreterOptionsAddDelegate")?,
            })
        })();
        Ok(Self {
            xnnpack,
            version: sym!(lib, path, "TfLiteVersion"),
            model_create_from_file: sym!(lib, path, "TfLiteModelCreateFromFile"),
            model_delete: sym!(lib, path, "TfLiteModelDelete"),
            options_create: sym!(lib, path, "TfLiteInterpreterOptionsCreate"),
            options_set_num_threads: sym!(lib, path, "TfLiteInterpreterOptionsSetNumThreads"),
            options_delete: sym!(lib, path, "TfLiteInterpreterOptionsDelete"),
            interpreter_create: sym!(lib, path, "TfLiteInterpreterCreate"),
            interpreter_delete: sym!(lib, path, "TfLiteInterpreterDelete"),
            input_count: sym!(lib, path, "TfLiteInterpreterGetInputTensorCount"),
            input_tensor: sym!(lib, path, "TfLiteInterpreterGetInputTensor"),
            allocate_tensors: sym!(lib, path, "TfLiteInterpreterAllocateTensors"),
            invoke: sym!(lib, path, "TfLiteInterpreterInvoke"),
            output_count: sym!(lib, path, "TfLiteInterpreterGetOutputTensorCount"),
            output_tensor: sym!(lib, path, "TfLiteInterpreterGetOutputTensor"),
            tensor_type: sym!(lib, path, "TfLiteTensorType"),
            tensor_num_dims: sym!(lib, path, "TfLiteTensorNumDims"),
            tensor_dim: sym!(lib, path, "TfLiteTensorDim"),
            tensor_byte_size: sym!(lib, path, "TfLiteTensorByteSize"),
            tensor_name: sym!(lib, path, "TfLiteTensorName"),
            copy_from_buffer: sym!(lib, path, "TfLiteTensorCopyFromBuffer"),
            copy_to_buffer: sym!(lib, path, "TfLiteTensorCopyToBuffer"),
            _lib: lib,
        })
    }

    /// The library's TensorFlow version.
    pub fn version_string(&self) -> String {
        // SAFETY: TfLiteVersion returns a static NUL-terminated string.
        unsafe { CStr::from_ptr((self.version)()) }
            .to_string_lossy()
            .into_owned()
    }
}

/// A model, interpreter, options and delegate, freed together.
pub struct Interpreter {
    api: &'static Api,
    model: *mut TfLiteModel,
    options: *mut TfLiteInterpreterOptions,
    /// The XNNPACK delegate, when one was applied; it must outlive the interpreter.
    delegate: *mut TfLiteDelegate,
    pub raw: *mut TfLiteInterpreter,
}

// SAFETY: the handles are used by one thread at a time (the plugin keeps them behind a Mutex);
// TFLite interpreters may move between threads.
unsafe impl Send for Interpreter {}

impl Interpreter {
    /// Builds an interpreter for the model file at `path` with `threads` threads, with the
    /// XNNPACK delegate taking the operators it supports when `xnnpack` is set and the
    /// library has it.
    pub fn new(api: &'static Api, path: &Path, threads: i32, xnnpack: bool) -> Result<Self> {
        let c_path = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| Error::invalid_input("model path contains a NUL byte"))?;
        // SAFETY: valid C string; the result is checked for null.
        let model = unsafe { (api.model_create_from_file)(c_path.as_ptr()) };
        if model.is_null() {
            return Err(Error::invalid_input(format!(
                "{}: TFLite could not read this model (not a valid .tflite flatbuffer)",
                path.display()
            )));
        }
        // SAFETY: plain constructor; checked for null below.
        let options = unsafe { (api.options_create)() };
        let mut this = Self {
            api,
            model,
            options,
            delegate: std::ptr::null_mut(),
            raw: std::ptr::null_mut(),
        };
        if options.is_null() {
            return Err(Error::out_of_memory(
                "TFLite could not allocate interpreter options",
            ));
        }
        // SAFETY: options and model are live handles.
        unsafe { (api.options_set_num_threads)(options, threads) };
        if let (true, Some(x)) = (xnnpack, &api.xnnpack) {
            // SAFETY: OptionsDefault fills (a prefix of) the buffer; Create copies the options
            // and returns an owned delegate or null; AddDelegate keeps a pointer to it, which
            // stays valid until Drop, after the interpreter is gone.
            unsafe {
                let mut xnn_options = (x.options_default)();
                xnn_options.num_threads = threads.max(1);
                this.delegate = (x.create)(&xnn_options);
                if !this.delegate.is_null() {
                    (x.add_delegate)(options, this.delegate);
                }
            }
        }
        // SAFETY: options and model are live handles.
        this.raw = unsafe { (api.interpreter_create)(model, options) };
        if this.raw.is_null() {
            return Err(Error::unsupported(format!(
                "{}: TFLite cannot build an interpreter for this model (an operator it lacks, such as a custom op; see the node log)",
                path.display()
            )));
        }
        // SAFETY: live interpreter.
        if unsafe { (api.allocate_tensors)(this.raw) } != OK {
            return Err(Error::unsupported(format!(
                "{}: TFLite cannot allocate this model's tensors",
                path.display()
            )));
        }
        Ok(this)
    }

    /// The API this interpreter was built with.
    pub fn api(&self) -> &'static Api {
        self.api
    }

    /// Whether the XNNPACK delegate was applied.
    pub fn xnnpack(&self) -> bool {
        !self.delegate.is_null()
    }
}

impl Drop for Interpreter {
    fn drop(&mut self) {
        // SAFETY: each handle was created by this API and is freed once.
        unsafe {
            if !self.raw.is_null() {
                (self.api.interpreter_delete)(self.raw);
            }
            if let (false, Some(x)) = (self.delegate.is_null(), &self.api.xnnpack) {
                (x.delete)(self.delegate);
            }
            if !self.options.is_null() {
                (self.api.options_delete)(self.options);
            }
            (self.api.model_delete)(self.model);
        }
    }
}
