//! Loading a backend plugin: the library, its entry symbol, and a checked function table.

use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mint_backend_abi::*;

use crate::error::{Error, Result};

/// A plugin's string, lossily as UTF-8; "" for NULL.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
pub(super) unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: non-NULL (checked), NUL-terminated (the caller's promise).
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// A loaded plugin. Instances hold an `Arc` of it, so the library stays mapped while any lives.
pub(crate) struct Plugin {
    /// The file loaded, resolved.
    path: PathBuf,
    /// Its digest, from the bytes that were loaded.
    sha256: String,
    api: &'static mint_backend_api,
    // Last field: dropped (unloading the library) after everything that points into it.
    // `None` for a backend linked into the host, which is never unloaded.
    _library: Option<libloading::Library>,
}

/// Backends linked into the host binary, by the file name a configuration gives them.
static LINKED: Mutex<Vec<(String, mint_backend_entry_fn)>> = Mutex::new(Vec::new());

/// Makes a backend linked into the host (its crate's `mint_backend_entry`, called from Rust)
/// answer to a configuration's bare `library` file name, before any file of that name is
/// looked for. For hosts that ship as one object, such as the Python extension, which links
/// the CPU backend: a configuration written for C hosts (`libmint_backend_cpu.so`) runs
/// unchanged. The reported path and sha256 are those of the object holding `entry`, the code
/// that runs; a configuration pinning the plugin file's digest therefore does not match it.
/// Registering a name again replaces the earlier entry.
pub fn link_backend(file_name: &str, entry: mint_backend_entry_fn) {
    let mut linked = LINKED.lock().unwrap_or_else(|e| e.into_inner());
    linked.retain(|(name, _)| name != file_name);
    linked.push((file_name.to_owned(), entry));
}

/// The linked backend registered under `path`, when `path` is a bare file name.
fn linked(path: &Path) -> Option<mint_backend_entry_fn> {
    if path.components().count() > 1 {
        return None;
    }
    let linked = LINKED.lock().unwrap_or_else(|e| e.into_inner());
    linked.iter().find(|(name, _)| Path::new(name) == path).map(|&(_, entry)| entry)
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
    /// ABI 1.1; `None` for 1.0 plugins.
    pub cancel: mint_backend_cancel_fn,
}

/// Where a configured library is: a path with a folder as given; a bare file name beside the
/// object holding this code (libmint_audit.so for C callers, so plugins installed next to it
/// are found), else in `LD_LIBRARY_PATH` and the system's library folders.
fn resolve(path: &Path) -> std::result::Result<PathBuf, String> {
    if path.components().count() > 1 {
        return Ok(path.to_owned());
    }
    let mut dirs: Vec<PathBuf> = own_directory().into_iter().collect();
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&paths).filter(|d| !d.as_os_str().is_empty()));
    }
    dirs.extend(
        ["/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib"]
            .map(PathBuf::from),
    );
    dirs.iter().map(|d| d.join(path)).find(|p| p.is_file()).ok_or_else(|| {
        let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        format!("not found; looked in {}", searched.join(", "))
    })
}

/// Opens the library, hashes it from the open file, loads it, and checks that the loader
/// mapped that very file (its device and inode in /proc/self/maps), so a file swapped on disk
/// between the hash and the load is refused rather than run under another's digest. Returns
/// the library, its sha256 and the resolved path.
fn open(path: &Path) -> std::result::Result<(libloading::Library, String, PathBuf), String> {
    let resolved = resolve(path)?;
    let cannot = |what: &str, e: std::io::Error| format!("cannot load it: cannot {what} {}: {e}", resolved.display());
    let mut file = std::fs::File::open(&resolved).map_err(|e| cannot("open", e))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| cannot("read", e))?;
    let sha256 = mint_head::sha256_hex(&bytes);
    let hashed = file.metadata().map_err(|e| cannot("stat", e))?;
    // SAFETY: loading a library runs its initialisers; choosing which plugin to load is the
    // configuration's business, as for any plugin system (its digest can be pinned).
    let library = unsafe { libloading::Library::new(&resolved) }.map_err(|e| format!("cannot load it: {e}"))?;
    // SAFETY: only the symbol's address is used, to find the file mapped at it.
    let entry = unsafe { library.get::<*const u8>(ENTRY_SYMBOL.as_bytes()) }.ok().map(|s| *s as usize);
    if let Some(mapped) = entry.and_then(mapped_file) {
        use std::os::unix::fs::MetadataExt;
        let on_disk = (libc::major(hashed.dev()) as u64, libc::minor(hashed.dev()) as u64, hashed.ino());
        if mapped != on_disk {
            return Err("the file changed between its hash and its load; refusing it".into());
        }
    }
    Ok((library, sha256, resolved))
}

/// Device (major, minor) and inode of the file mapped at `address`, from /proc/self/maps.
fn mapped_file(address: usize) -> Option<(u64, u64, u64)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?);
        if !(start..end).contains(&address) {
            return None;
        }
        let (_perms, _offset, dev, inode) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        let (major, minor) = dev.split_once(':')?;
        Some((u64::from_str_radix(major, 16).ok()?, u64::from_str_radix(minor, 16).ok()?, inode.parse().ok()?))
    })
}

/// The directory of the shared object (or executable) this code was loaded from.
fn own_directory() -> Option<PathBuf> {
    object_file(own_directory as *const libc::c_void)?.parent().map(Path::to_path_buf)
}

/// The shared object (or executable) holding `address`, canonicalised.
fn object_file(address: *const libc::c_void) -> Option<PathBuf> {
    // SAFETY: `Dl_info` is plain data (pointers and integers), for which all-zero is valid.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the address and fills `info`.
    let found = unsafe { libc::dladdr(address, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated path owned by the loader.
    let file = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
    std::fs::canonicalize(file).ok()
}

impl Plugin {
    /// Loads `path` and checks its table: the digest when `expected_sha256` pins one, the ABI
    /// major, the table's size, every required function. Errors name the file and what is
    /// wrong with it.
    pub(crate) fn load(path: &Path, expected_sha256: Option<&str>) -> Result<Plugin> {
        let fail = |message: String| Error::Backend { library: path.to_owned(), message };
        let (library, entry, sha256, resolved) = match linked(path) {
            Some(entry) => {
                let object = object_file(entry as *const libc::c_void)
                    .ok_or_else(|| fail("linked into this process, but its object file is unknown".into()))?;
                let bytes = std::fs::read(&object)
                    .map_err(|e| fail(format!("linked from {}, which cannot be read: {e}", object.display())))?;
                (None, Ok(entry), mint_head::sha256_hex(&bytes), object)
            }
            None => {
                let (library, sha256, resolved) = open(path).map_err(fail)?;
                // SAFETY: the symbol, when a plugin exports it, has the ABI's entry signature; a
                // library exporting another `mint_backend_entry` is a misconfiguration we cannot
                // detect. Nothing of the library runs before the digest check below.
                let entry = unsafe { library.get::<mint_backend_entry_fn>(ENTRY_SYMBOL.as_bytes()).map(|s| *s) };
                let entry = entry.map_err(|e| Error::Backend {
                    library: resolved.clone(),
                    message: format!("symbol `{ENTRY_SYMBOL}` not found ({e}): not a mint-audit backend"),
                });
                (Some(library), entry, sha256, resolved)
            }
        };
        let fail = |message: String| Error::Backend { library: resolved.clone(), message };
        if let Some(expected) = expected_sha256 {
            if !expected.eq_ignore_ascii_case(&sha256) {
                return Err(fail(format!(
                    "sha256 is {sha256}, but the configuration expects {}; refusing to load it",
                    expected.to_ascii_lowercase()
                )));
            }
        }
        let entry: mint_backend_entry_fn = entry?;
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
        let plugin = Plugin { path: resolved.clone(), sha256, api, _library: library };
        plugin.functions()?;
        Ok(plugin)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Lower-case hex sha256 of the library loaded.
    pub(crate) fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The plugin's name and version, as it reports them.
    pub(crate) fn describe(&self) -> String {
        // SAFETY: static NUL-terminated strings of the plugin, or NULL.
        let (name, version) = unsafe { (text(self.api.name), text(self.api.version)) };
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
            // A 1.0 table ends before `cancel`: read it only where the table holds it.
            cancel: if self.api.struct_size >= API_SIZE_1_1 { self.api.cancel } else { None },
        })
    }

    /// The plugin's message for the last failure on this thread.
    pub(crate) fn last_error(&self, functions: &Functions, backend: *const mint_backend) -> String {
        // SAFETY: the table's `last_error`, with an instance of this plugin (or NULL).
        let p = unsafe { (functions.last_error)(backend) };
        // SAFETY: NULL or a NUL-terminated string valid until the next call on this thread.
        let message = unsafe { text(p) };
        if message.is_empty() {
            "(the backend gave no message)".into()
        } else {
            message
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_file_mapped_at_an_address_is_found() {
        let exe = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
        let expected = (libc::major(exe.dev()) as u64, libc::minor(exe.dev()) as u64, exe.ino());
        let here = mapped_file as fn(usize) -> Option<(u64, u64, u64)>;
        assert_eq!(mapped_file(here as usize), Some(expected));
        assert_eq!(mapped_file(0), None);
    }

    #[test]
    fn bare_names_not_found_say_where_they_were_looked_for() {
        let e = resolve(Path::new("libmint_backend_nowhere.so")).unwrap_err();
        assert!(e.contains("not found") && e.contains("/usr/lib"), "{e}");
        assert_eq!(resolve(Path::new("./x/y.so")).unwrap(), Path::new("./x/y.so"));
    }
}
