//! Loading a backend plugin: the library, its entry symbol, and a checked function table.

use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};

use mint_backend_abi::*;

use crate::error::{Error, Result};

/// A loaded plugin. Instances hold an `Arc` of it, so the library stays mapped while any lives.
pub(crate) struct Plugin {
    path: PathBuf,
    api: &'static mint_backend_api,
    // Last field: dropped (unloading the library) after everything that points into it.
    _library: libloading::Library,
}

// SAFETY: the table is immutable static data of the plugin (see `mint_backend_api`), and the
// plugin's functions are thread-safe by contract (`include/mint_backend.h`).
unsafe impl Send for Plugin {}
// SAFETY: as for `Send`.
unsafe impl Sync for Plugin {}

/// The required functions of an ABI 1.x table.
pub(crate) struct Functions {
    pub create: unsafe extern "C" fn(
        *const c_char,
        *const mint_backend_options,
        *const mint_backend_host,
        *mut *mut mint_backend,
    ) -> i32,
    pub submit: unsafe extern "C" fn(*mut mint_backend, *const mint_backend_batch) -> i32,
    pub flush: unsafe extern "C" fn(*mut mint_backend, u32) -> usize,
    pub destroy: unsafe extern "C" fn(*mut mint_backend),
    pub last_error: unsafe extern "C" fn(*const mint_backend) -> *const c_char,
    pub render_metrics: mint_backend_render_metrics_fn,
}

/// Opens the library; a bare file name is first looked for beside the object holding this
/// code (libmint_audit.so for C callers), so plugins installed next to it are found.
fn open(path: &Path) -> std::result::Result<libloading::Library, libloading::Error> {
    // SAFETY: loading a library runs its initialisers; choosing which plugin to load is the
    // configuration's business, as for any plugin system.
    let load = |p: &Path| unsafe { libloading::Library::new(p) };
    if path.components().count() == 1 {
        if let Some(beside) = own_directory().map(|dir| dir.join(path)).filter(|p| p.exists()) {
            return load(&beside);
        }
    }
    load(path)
}

/// The directory of the shared object (or executable) this code was loaded from.
fn own_directory() -> Option<PathBuf> {
    // SAFETY: `Dl_info` is plain data (pointers and integers), for which all-zero is valid.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the address and fills `info`.
    let found = unsafe { libc::dladdr(own_directory as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated path owned by the loader.
    let file = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
    std::fs::canonicalize(file).ok()?.parent().map(Path::to_path_buf)
}

impl Plugin {
    /// Loads `path` and checks its table: the ABI major, the table's size, every required
    /// function. Errors name the file and what is wrong with it.
    pub(crate) fn load(path: &Path) -> Result<Plugin> {
        let fail = |message: String| Error::Backend { library: path.to_owned(), message };
        let library = open(path).map_err(|e| fail(format!("cannot load it: {e}")))?;
        // SAFETY: the symbol, when a plugin exports it, has the ABI's entry signature; a library
        // exporting another `mint_backend_entry` is a misconfiguration we cannot detect.
        let entry: mint_backend_entry_fn = unsafe {
            *library
                .get::<mint_backend_entry_fn>(ENTRY_SYMBOL.as_bytes())
                .map_err(|e| fail(format!("symbol `{ENTRY_SYMBOL}` not found ({e}): not a mint-audit backend")))?
        };
        // SAFETY: the entry point of a plugin following include/mint_backend.h.
        let api = unsafe { entry() };
        // SAFETY: the table is static (lives as long as the library, which `Plugin` keeps).
        let api: &'static mint_backend_api =
            unsafe { api.as_ref() }.ok_or_else(|| fail(format!("`{ENTRY_SYMBOL}` returned NULL")))?;
        if api.abi_major != MINT_BACKEND_ABI_MAJOR {
            return Err(fail(format!(
                "built for backend ABI {}.{}, but this mint-audit speaks {}.x (major versions must match)",
                api.abi_major, api.abi_minor, MINT_BACKEND_ABI_MAJOR
            )));
        }
        if api.struct_size < API_SIZE_1_0 {
            return Err(fail(format!(
                "its mint_backend_api is {} bytes, ABI {}.0 needs {API_SIZE_1_0}",
                api.struct_size, MINT_BACKEND_ABI_MAJOR
            )));
        }
        let plugin = Plugin { path: path.to_owned(), api, _library: library };
        plugin.functions()?;
        Ok(plugin)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The plugin's name and version, as it reports them.
    pub(crate) fn describe(&self) -> String {
        // SAFETY: static NUL-terminated strings of the plugin, or NULL.
        let (name, version) = unsafe { (super::text(self.api.name), super::text(self.api.version)) };
        format!("{name} {version}")
    }

    /// The table's functions; a NULL required one is named in the error.
    pub(crate) fn functions(&self) -> Result<Functions> {
        let missing = |field: &str| Error::Backend {
            library: self.path.clone(),
            message: format!("mint_backend_api.{field} is NULL, but ABI {MINT_BACKEND_ABI_MAJOR}.0 requires it"),
        };
        Ok(Functions {
            create: self.api.create.ok_or_else(|| missing("create"))?,
            submit: self.api.submit.ok_or_else(|| missing("submit"))?,
            flush: self.api.flush.ok_or_else(|| missing("flush"))?,
            destroy: self.api.destroy.ok_or_else(|| missing("destroy"))?,
            last_error: self.api.last_error.ok_or_else(|| missing("last_error"))?,
            render_metrics: self.api.render_metrics,
        })
    }

    /// The plugin's message for the last failure on this thread.
    pub(crate) fn last_error(&self, functions: &Functions, backend: *const mint_backend) -> String {
        // SAFETY: the table's `last_error`, with an instance of this plugin (or NULL).
        let p = unsafe { (functions.last_error)(backend) };
        // SAFETY: NULL or a NUL-terminated string valid until the next call on this thread.
        let message = unsafe { super::text(p) };
        if message.is_empty() {
            "(the backend gave no message)".into()
        } else {
            message
        }
    }
}
