//! Finds, checks and loads plugin libraries.
//!
//! Order of checks, each refusal one line naming the path:
//! 1. the file exists and is a regular file;
//! 2. permissions (Unix; [`check_permissions`], like sshd's StrictModes):
//!    the file and every directory above it are owned by the running user
//!    or root and not writable by group or others (a root-owned directory
//!    with the sticky bit, such as `/tmp`, is accepted as a parent); every
//!    symlink on the named path is owned by the user or root. Skipped with
//!    `[host] allow_insecure_permissions = true`;
//! 3. a private copy is made (so a rebuild that rewrites the file in place
//!    never changes the code under a running plugin, and a reload gets a
//!    fresh image: `dlopen` of an already-open path returns the old one);
//! 4. the copy's SHA-256 matches the hosted control's `sha256` pin, when it
//!    has one: the bytes that are hashed are the bytes that get opened;
//! 5. the copy is a well-formed ELF shared object for this machine whose
//!    LOAD segments lie inside the file (`dlopen` of a truncated library
//!    kills the process with SIGBUS instead of returning an error);
//! 6. abi_stable opens it, finds the root module, and checks the version
//!    and layout of everything reachable from it;
//! 7. the plugin-api semver it was built against is compatible (same major,
//!    minor ≤ the host's), and its own version meets the manifest's
//!    requirement.
//!
//! [`load_for`] runs every check for a hosted control (the host's start,
//! `cti-host check` and every hot reload); [`load`] runs them with no pin
//! and strict permissions (`inspect`, `verify`).
//!
//! Libraries are never unloaded (abi_stable leaks them by design). The
//! private copies live in a per-process directory, owner-only (refused if
//! someone else owns it), removed at exit.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use abi_stable::library::{lib_header_from_path, LibraryError};
use cti_plugin_api::{Capabilities, PluginKinds, PluginModRef, API_VERSION};

use crate::manifest::{library_file_name, HostedControl};

/// Why a library was refused.
#[derive(Debug)]
pub struct LoadError {
    /// The library path (or the name that could not be resolved).
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for LoadError {}

fn refuse(path: &Path, reason: impl Into<String>) -> LoadError {
    LoadError {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A plugin's description, in host types.
#[derive(Debug, Clone)]
pub struct PluginMeta {
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: semver::Version,
    /// One line.
    pub description: String,
    /// Connector, control or both.
    pub kinds: PluginKinds,
    /// The plugin-api version it was built against.
    pub api_version: semver::Version,
    /// Declared connector capabilities.
    pub capabilities: Capabilities,
}

/// A loaded, checked library.
#[derive(Clone)]
pub struct Library {
    /// The file the manifest named.
    pub path: PathBuf,
    /// The private copy that was opened.
    pub loaded_from: PathBuf,
    /// Its description.
    pub meta: PluginMeta,
    /// Its root module.
    pub module: PluginModRef,
    /// The SHA-256 of the bytes that were opened (lowercase hex), when a
    /// pin asked for it (see [`Library::sha256`] for the digest on demand).
    pub pinned_sha256: Option<String>,
}

impl fmt::Debug for Library {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Library")
            .field("path", &self.path)
            .field("meta", &self.meta)
            .finish()
    }
}

/// Where private copies of libraries go; removed when dropped.
#[derive(Debug)]
pub struct ShadowDir {
    dir: PathBuf,
    /// The running user (the owner of the directory this process made).
    uid: u32,
}

static COPY_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ShadowDir {
    /// Creates `$XDG_RUNTIME_DIR/cti-host/libs-<pid>` (or under the temp
    /// dir), owner-only, and removes copies left by processes that are gone.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn create() -> std::io::Result<Self> {
        let root = runtime_dir();
        std::fs::create_dir_all(&root)?;
        set_mode(&root, 0o700);
        let dir = root.join(format!("libs-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        set_mode(&dir, 0o700);
        let uid = owner_of(&dir)?;
        // A runtime directory made beforehand by someone else (a shared
        // /tmp) would let them swap a copy between its check and dlopen.
        private_dir(&root, uid)?;
        private_dir(&dir, uid)?;
        clean_stale(&root);
        Ok(Self { dir, uid })
    }

    /// The running user's id (0 on platforms without Unix owners).
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn copy(&self, src: &Path) -> std::io::Result<PathBuf> {
        let n = COPY_COUNTER.fetch_add(1, Ordering::Relaxed);
        let stem = src
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".to_owned());
        let dst = self.dir.join(format!("{n}-{stem}"));
        std::fs::copy(src, &dst)?;
        Ok(dst)
    }
}

impl Drop for ShadowDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The host's runtime directory (sockets, library copies).
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("cti-host"),
        _ => std::env::temp_dir().join(format!("cti-host-{}", current_uid())),
    }
}

fn current_uid() -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0)
    }
    #[cfg(not(unix))]
    {
        0
    }
}

fn owner_of(path: &Path) -> std::io::Result<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(std::fs::symlink_metadata(path)?.uid())
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(0)
    }
}

/// Refuses a runtime directory that is not the user's alone.
fn private_dir(path: &Path, uid: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let m = std::fs::symlink_metadata(path)?;
        let mode = m.permissions().mode() & 0o7777;
        if !m.is_dir() || m.uid() != uid || mode & 0o077 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{}: the runtime directory must be a directory owned by uid {uid} with mode 0700 (it is {}owned by uid {}, mode {mode:04o}); remove it or set XDG_RUNTIME_DIR",
                    path.display(),
                    if m.is_dir() { "" } else { "not a directory, " },
                    m.uid()
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, uid);
    Ok(())
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// Removes `libs-<pid>` directories whose process is gone.
fn clean_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("libs-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Resolves a hosted control's `library` to a file: a path (containing a
/// separator) is taken as is, relative to the manifest's folder; a base name
/// becomes the platform's file name, searched in the plugin directories.
///
/// # Errors
/// When no file exists, naming every place searched.
pub fn resolve(
    hc: &HostedControl,
    plugin_dirs: &[PathBuf],
    manifest_dir: &Path,
) -> Result<PathBuf, LoadError> {
    let lib = hc.library.as_str();
    if lib.contains('/') || lib.contains('\\') {
        let p = PathBuf::from(lib);
        let p = if p.is_absolute() {
            p
        } else {
            manifest_dir.join(p)
        };
        return if p.exists() {
            Ok(p)
        } else {
            Err(refuse(&p, "no such file"))
        };
    }
    let file = library_file_name(lib);
    for dir in plugin_dirs {
        let p = dir.join(&file);
        if p.exists() {
            return Ok(p);
        }
    }
    let searched: Vec<String> = plugin_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    Err(refuse(
        Path::new(&file),
        format!(
            "not found in the plugin directories ({})",
            if searched.is_empty() {
                "none configured".to_owned()
            } else {
                searched.join(", ")
            }
        ),
    ))
}

/// What a library must satisfy beyond being a well-formed plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// The SHA-256 the library's bytes must have (lowercase hex), if pinned.
    pub sha256: Option<String>,
    /// Skip the ownership and permission checks.
    pub allow_insecure_permissions: bool,
}

impl Trust {
    /// What a hosted control asks for: its `sha256` pin and the manifest's
    /// `allow_insecure_permissions`.
    pub fn of(hc: &HostedControl) -> Self {
        Self {
            sha256: hc.sha256.clone(),
            allow_insecure_permissions: hc.allow_insecure_permissions,
        }
    }
}

/// Loads a library and checks it, without checking the manifest's version
/// requirement (see [`check_requirement`]): strict permissions, no pin.
///
/// # Errors
/// A [`LoadError`] naming the path and the first check that failed.
pub fn load(path: &Path, shadow: &ShadowDir) -> Result<Library, LoadError> {
    load_with(path, shadow, &Trust::default())
}

/// Loads the library of a hosted control with every check: permissions
/// (unless the manifest allows insecure ones), the `sha256` pin, the
/// library itself, then the version requirement and the kind. This is what
/// the host's start, `cti-host check` and every hot reload use.
///
/// # Errors
/// A [`LoadError`] naming the path and the first check that failed.
pub fn load_for(path: &Path, shadow: &ShadowDir, hc: &HostedControl) -> Result<Library, LoadError> {
    let lib = load_with(path, shadow, &Trust::of(hc))?;
    check_requirement(&lib, hc)?;
    Ok(lib)
}

/// Loads a library and checks it against `trust`, without checking the
/// manifest's version requirement.
///
/// # Errors
/// A [`LoadError`] naming the path and the first check that failed.
pub fn load_with(path: &Path, shadow: &ShadowDir, trust: &Trust) -> Result<Library, LoadError> {
    let meta = std::fs::metadata(path).map_err(|e| refuse(path, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(refuse(path, "not a regular file"));
    }
    if !trust.allow_insecure_permissions {
        check_permissions(path, shadow.uid).map_err(|r| refuse(path, r))?;
    }
    let copy = shadow
        .copy(path)
        .map_err(|e| refuse(path, format!("cannot copy for loading: {e}")))?;
    let result = load_copy(path, &copy, trust.sha256.as_deref());
    if result.is_err() {
        // A refused copy was never opened (or its image is leaked anyway);
        // its file is not needed.
        let _ = std::fs::remove_file(&copy);
    }
    result
}

fn load_copy(path: &Path, copy: &Path, pin: Option<&str>) -> Result<Library, LoadError> {
    // Hashing needs every byte; the ELF check only the headers (a release
    // build's line tables make a plugin 10+ MiB, 90 % never looked at).
    let bytes = match pin {
        Some(_) => std::fs::read(copy).map(Headers::from),
        None => read_headers(copy),
    }
    .map_err(|e| refuse(path, format!("cannot read: {e}")))?;
    let pinned_sha256 = pin.map(|_| sha256_hex(&bytes.prefix));
    if let (Some(want), Some(sha256)) = (pin, &pinned_sha256) {
        if !want.eq_ignore_ascii_case(sha256) {
            return Err(refuse(
                path,
                format!(
                    "sha256 mismatch: the manifest pins {} but the file's is {sha256} (replaced or rebuilt? check it, then pin the new digest that `cti-host inspect` prints)",
                    want.to_ascii_lowercase()
                ),
            ));
        }
    }
    check_headers(&bytes.prefix, bytes.len).map_err(|r| refuse(path, r))?;
    drop(bytes);

    let header = lib_header_from_path(copy).map_err(|e| refuse(path, describe(&e)))?;
    let module = init_module(header).map_err(|e| refuse(path, describe(&e)))?;
    let info = (module.info())();
    let api_version = semver::Version::parse(info.api_version.as_str()).map_err(|e| {
        refuse(
            path,
            format!(
                "plugin reports a bad plugin-api version \"{}\": {e}",
                info.api_version
            ),
        )
    })?;
    let host_api = host_api_version();
    if api_version.major != host_api.major || api_version.minor > host_api.minor {
        return Err(refuse(
            path,
            format!(
                "built against cti-plugin-api {api_version}, incompatible with this host's {host_api} (same major and a minor no newer than the host's are required)"
            ),
        ));
    }
    let version = semver::Version::parse(info.version.as_str()).map_err(|e| {
        refuse(
            path,
            format!("plugin reports a bad version \"{}\": {e}", info.version),
        )
    })?;
    Ok(Library {
        path: path.to_path_buf(),
        loaded_from: copy.to_path_buf(),
        meta: PluginMeta {
            name: info.name.into_string(),
            version,
            description: info.description.into_string(),
            kinds: info.kinds,
            api_version,
            capabilities: info.capabilities,
        },
        module,
        pinned_sha256,
    })
}

impl Library {
    /// The SHA-256 of the bytes that were opened (the private copy),
    /// lowercase hex: the value a manifest's `sha256` pins.
    ///
    /// # Errors
    /// When the private copy cannot be read.
    pub fn sha256(&self) -> std::io::Result<String> {
        match &self.pinned_sha256 {
            Some(h) => Ok(h.clone()),
            None => std::fs::read(&self.loaded_from).map(|b| sha256_hex(&b)),
        }
    }
}

/// The SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Refuses a library that someone other than the running user (`uid`) or
/// root could have changed, like sshd's StrictModes:
/// - every symlink on the path as named is owned by `uid` or root;
/// - the file (symlinks resolved) and every directory above it up to `/`
///   are owned by `uid` or root and not writable by group or others;
/// - except that a directory owned by root with the sticky bit (`/tmp`,
///   mode 1777) is accepted: there nobody but root and the owner of an
///   entry can rename or remove it, so the entries below it stay ours.
///
/// On other platforms it accepts everything (ACLs are not checked).
///
/// # Errors
/// One line: the offending path, what is wrong, its mode, and the fix.
pub fn check_permissions(path: &Path, uid: u32) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?
                .join(path)
        };
        let mut named = PathBuf::new();
        for part in abs.components() {
            named.push(part);
            let m = std::fs::symlink_metadata(&named)
                .map_err(|e| format!("{}: cannot read: {e}", named.display()))?;
            if m.file_type().is_symlink() && m.uid() != uid && m.uid() != 0 {
                return Err(format!(
                    "{}: symlink is owned by uid {}, not by the running user (uid {uid}) or root; replace it, or set [host] allow_insecure_permissions = true",
                    named.display(),
                    m.uid()
                ));
            }
        }
        let real = std::fs::canonicalize(&abs)
            .map_err(|e| format!("{}: cannot resolve: {e}", abs.display()))?;
        for (i, p) in real.ancestors().enumerate() {
            let m =
                std::fs::metadata(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
            let what = if i == 0 { "file" } else { "directory" };
            insecure(p, what, m.uid(), m.mode(), uid).map_or(Ok(()), Err)?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = (path, uid);
        Ok(())
    }
}

/// Why a file or directory with this owner and mode is unsafe, if it is.
fn insecure(p: &Path, what: &str, owner: u32, mode: u32, uid: u32) -> Option<String> {
    let mode = mode & 0o7777;
    if owner != uid && owner != 0 {
        return Some(format!(
            "{}: {what} is owned by uid {owner}, not by the running user (uid {uid}) or root; fix with chown, or set [host] allow_insecure_permissions = true",
            p.display()
        ));
    }
    let sticky_root_dir = what == "directory" && owner == 0 && mode & 0o1000 != 0;
    if mode & 0o022 == 0 || sticky_root_dir {
        return None;
    }
    let by = if mode & 0o002 != 0 { "others" } else { "group" };
    Some(format!(
        "{}: {what} is writable by {by} (mode {mode:04o}); fix with chmod go-w {}, or set [host] allow_insecure_permissions = true",
        p.display(),
        p.display()
    ))
}

/// Checks a library's root module and returns it.
///
/// abi_stable's own check lets a library be *newer* than the host (a prefix
/// type — a vtable, the root module — may have more fields than the host
/// knows). CTI Host promises the other direction too: a plugin built against
/// plugin-api 1.x loads in a 1.y host (y ≥ x), although the host's vtables
/// then have methods the plugin's lack. So when the normal check fails for a
/// plugin of an older minor version, its layout is checked in reverse (the
/// plugin's interface against the host's implementation), which accepts
/// exactly "the host's prefix types extend the plugin's" and checks
/// everything else as strictly as before.
fn init_module(
    header: &'static abi_stable::library::LibHeader,
) -> Result<PluginModRef, LibraryError> {
    use abi_stable::{
        abi_stability::abi_checking::{check_layout_compatibility_with_globals, CheckingGlobals},
        StableAbi,
    };
    let strict = header.init_root_module::<PluginModRef>();
    let Err(LibraryError::AbiInstability(_)) = &strict else {
        return strict;
    };
    let plugin_version = abi_stable::sabi_types::VersionNumber::new(header.version_strings());
    let host = host_api_version();
    let older = plugin_version
        .as_ref()
        .is_ok_and(|v| u64::from(v.major) == host.major && u64::from(v.minor) < host.minor);
    let Some(plugin_layout) = header.layout() else {
        return strict;
    };
    if !older {
        return strict;
    }
    // Private globals: abi_stable's process-wide map of prefix types must
    // keep describing the host's (longer) vtables for the strict checks of
    // the libraries that load after this one.
    let globals = CheckingGlobals::new();
    if check_layout_compatibility_with_globals(
        plugin_layout,
        <PluginModRef as StableAbi>::LAYOUT,
        &globals,
    )
    .is_err()
    {
        return strict;
    }
    // SAFETY: the library's root-module layout was checked against the
    // host's in reverse just above: every type matches exactly except that
    // the host's prefix types (vtables, root module) may have fields the
    // library's lack. Those fields come after each type's
    // `last_prefix_field`, and abi_stable's generated accessors check the
    // field count recorded in the library's own prefix metadata before
    // touching one (a trait method then falls back to its default body), so
    // the host never reads past what the library provides.
    unsafe { header.init_root_module_with_unchecked_layout::<PluginModRef>() }
}

/// The host's plugin-api version.
pub fn host_api_version() -> semver::Version {
    semver::Version::parse(API_VERSION).unwrap_or_else(|_| semver::Version::new(1, 0, 0))
}

/// Checks a loaded library against its hosted control: the version
/// requirement and the kind.
///
/// # Errors
/// Naming the path, the plugin and what was required.
pub fn check_requirement(lib: &Library, hc: &HostedControl) -> Result<(), LoadError> {
    if !hc.version.matches(&lib.meta.version) {
        return Err(refuse(
            &lib.path,
            format!(
                "plugin {} {} does not meet the version requirement \"{}\" of hosted control \"{}\"",
                lib.meta.name, lib.meta.version, hc.version, hc.name
            ),
        ));
    }
    let want = match hc.kind {
        crate::manifest::ControlType::Connector => PluginKinds::CONNECTOR,
        crate::manifest::ControlType::Control => PluginKinds::CONTROL,
    };
    if !lib.meta.kinds.contains(want) {
        return Err(refuse(
            &lib.path,
            format!(
                "plugin {} provides no {} (it provides: {}), but hosted control \"{}\" is a {}",
                lib.meta.name,
                hc.kind.name(),
                lib.meta.kinds.names().join(", "),
                hc.name,
                hc.kind.name()
            ),
        ));
    }
    Ok(())
}

/// Turns abi_stable's errors into one line.
fn describe(e: &LibraryError) -> String {
    match e {
        LibraryError::OpenError { err, .. } => {
            format!("not a loadable shared library: {}", one_line(&err.to_string()))
        }
        LibraryError::GetSymbolError { .. } => {
            "not a CTI Host plugin: the library exports no abi_stable root module (build it with cti_plugin_api::export_plugin!)".to_owned()
        }
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "built against cti-plugin-api {actual_version}, incompatible with this host's {expected_version}"
        ),
        LibraryError::ParseVersionError(err) => format!("bad version strings in the library: {err}"),
        LibraryError::AbiInstability(err) => format!(
            "incompatible plugin ABI (the layout of the plugin's types differs from the host's): {}",
            abi_error_summary(&err.to_string())
        ),
        LibraryError::InvalidAbiHeader(h) => format!(
            "built with an incompatible abi_stable (header {h:?}); rebuild against cti-plugin-api {}",
            API_VERSION
        ),
        LibraryError::InvalidCAbi { expected, found } => {
            format!("incompatible C ABI: expected {expected}, found {found}")
        }
        LibraryError::RootModule { err, .. } => format!("the plugin's root module failed: {err}"),
        LibraryError::Many(errs) => errs.iter().map(describe).collect::<Vec<_>>().join("; "),
    }
}

/// The gist of abi_stable's (very long) layout error: the innermost types
/// compared and the error lines.
fn abi_error_summary(s: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let lines: Vec<&str> = s.lines().map(str::trim).collect();
    for (i, l) in lines.iter().enumerate() {
        if let Some(e) = l.strip_prefix("Error:") {
            let detail: Vec<&str> = lines[i + 1..]
                .iter()
                .take(4)
                .copied()
                .filter(|x| !x.is_empty())
                .collect();
            out.push(format!("{e} ({})", detail.join(" ")));
        }
    }
    let types: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("type:"))
        .collect();
    if let Some(last) = types.last() {
        out.push(format!("in {last}"));
    }
    if out.is_empty() {
        first_lines(s, 6)
    } else {
        out.join("; ")
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn first_lines(s: &str, n: usize) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Checks that `bytes` is a shared object this process can map safely.
///
/// # Errors
/// One line saying what is wrong.
pub fn check_object_file(bytes: &[u8]) -> Result<(), String> {
    check_headers(bytes, bytes.len() as u64)
}

/// [`check_object_file`] on the start of a file of `len` bytes: `prefix`
/// holds at least the ELF header and the program headers (or the whole
/// file, when it is shorter), as [`read_headers`] reads it.
///
/// # Errors
/// Why the file is not a loadable library.
pub fn check_headers(prefix: &[u8], len: u64) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        elf::check(prefix, len)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (prefix, len);
        Ok(())
    }
}

/// The start of a file and its length.
pub struct Headers {
    /// The first bytes (the whole file when read for a hash).
    pub prefix: Vec<u8>,
    /// The file's length.
    pub len: u64,
}

impl From<Vec<u8>> for Headers {
    fn from(prefix: Vec<u8>) -> Self {
        let len = prefix.len() as u64;
        Self { prefix, len }
    }
}

/// Reads what [`check_headers`] needs of `path`: the first 4 KiB, and more
/// when the program headers reach further (never past the end of the file).
///
/// # Errors
/// I/O errors.
pub fn read_headers(path: &Path) -> std::io::Result<Headers> {
    use std::io::Read;
    const FIRST: u64 = 4096;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut prefix = Vec::with_capacity(FIRST.min(len) as usize);
    (&mut f).take(FIRST).read_to_end(&mut prefix)?;
    #[cfg(target_os = "linux")]
    if let Some(end) = elf::program_headers_end(&prefix) {
        // The rest of the program headers, read on from where we are.
        let more = end.min(len).saturating_sub(prefix.len() as u64);
        f.take(more).read_to_end(&mut prefix)?;
    }
    Ok(Headers { prefix, len })
}

#[cfg(target_os = "linux")]
mod elf {
    //! Just enough ELF to know that `dlopen` will not read past the file.

    const ET_DYN: u16 = 3;
    const PT_LOAD: u32 = 1;

    fn host_machine() -> Option<u16> {
        match std::env::consts::ARCH {
            "x86_64" => Some(62),
            "aarch64" => Some(183),
            "x86" => Some(3),
            "arm" => Some(40),
            "riscv64" => Some(243),
            "powerpc64" => Some(21),
            "s390x" => Some(22),
            "loongarch64" => Some(258),
            _ => None,
        }
    }

    fn machine_name(m: u16) -> String {
        match m {
            62 => "x86_64".into(),
            183 => "aarch64".into(),
            3 => "x86".into(),
            40 => "arm".into(),
            243 => "riscv".into(),
            21 => "powerpc64".into(),
            22 => "s390".into(),
            258 => "loongarch".into(),
            other => format!("machine {other}"),
        }
    }

    struct Reader<'a> {
        b: &'a [u8],
        little: bool,
        /// The file's length (`b` may be only its start).
        len: u64,
    }

    impl Reader<'_> {
        fn bytes<const N: usize>(&self, at: usize) -> Result<[u8; N], String> {
            self.b
                .get(at..at + N)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| {
                    format!(
                        "truncated: the file ends at byte {} inside its ELF headers",
                        self.len
                    )
                })
        }
        fn u16(&self, at: usize) -> Result<u16, String> {
            let a = self.bytes::<2>(at)?;
            Ok(if self.little {
                u16::from_le_bytes(a)
            } else {
                u16::from_be_bytes(a)
            })
        }
        fn u32(&self, at: usize) -> Result<u32, String> {
            let a = self.bytes::<4>(at)?;
            Ok(if self.little {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            })
        }
        fn u64(&self, at: usize) -> Result<u64, String> {
            let a = self.bytes::<8>(at)?;
            Ok(if self.little {
                u64::from_le_bytes(a)
            } else {
                u64::from_be_bytes(a)
            })
        }
        fn word(&self, at: usize, wide: bool) -> Result<u64, String> {
            if wide {
                self.u64(at)
            } else {
                self.u32(at).map(u64::from)
            }
        }
    }

    /// Where the program header table ends, from the ELF header in `b`
    /// (None when `b` does not start with a readable ELF header).
    pub fn program_headers_end(b: &[u8]) -> Option<u64> {
        if b.len() < 64 || &b[..4] != b"\x7fELF" {
            return None;
        }
        let wide = b[4] == 2;
        let r = Reader {
            b,
            little: b[5] == 1,
            len: b.len() as u64,
        };
        let (phoff, phentsize, phnum) = if wide {
            (r.u64(32).ok()?, r.u16(54).ok()?, r.u16(56).ok()?)
        } else {
            (u64::from(r.u32(28).ok()?), r.u16(42).ok()?, r.u16(44).ok()?)
        };
        Some(phoff.saturating_add(u64::from(phentsize) * u64::from(phnum)))
    }

    /// Checks the headers in `b`, the start of a file of `len` bytes.
    pub fn check(b: &[u8], len: u64) -> Result<(), String> {
        if b.len() < 16 || &b[..4] != b"\x7fELF" {
            return Err("not a shared library: no ELF header".into());
        }
        let wide = match b[4] {
            1 => false,
            2 => true,
            c => return Err(format!("not a shared library: bad ELF class {c}")),
        };
        if wide != cfg!(target_pointer_width = "64") {
            return Err(format!(
                "built for {}-bit, this host is {}-bit",
                if wide { 64 } else { 32 },
                if cfg!(target_pointer_width = "64") {
                    64
                } else {
                    32
                }
            ));
        }
        let little = match b[5] {
            1 => true,
            2 => false,
            d => return Err(format!("not a shared library: bad ELF data encoding {d}")),
        };
        if little != cfg!(target_endian = "little") {
            return Err("built for the other byte order".into());
        }
        let r = Reader { b, little, len };
        let e_type = r.u16(16)?;
        if e_type != ET_DYN {
            return Err(format!(
                "not a shared library: ELF type {e_type} ({})",
                match e_type {
                    1 => "relocatable object",
                    2 => "executable",
                    4 => "core dump",
                    _ => "unknown",
                }
            ));
        }
        let machine = r.u16(18)?;
        if let Some(host) = host_machine() {
            if machine != host {
                return Err(format!(
                    "built for {}, this host is {}",
                    machine_name(machine),
                    machine_name(host)
                ));
            }
        }
        let (phoff, phentsize, phnum, shoff, shentsize, shnum) = if wide {
            (
                r.u64(32)?,
                r.u16(54)?,
                r.u16(56)?,
                r.u64(40)?,
                r.u16(58)?,
                r.u16(60)?,
            )
        } else {
            (
                u64::from(r.u32(28)?),
                r.u16(42)?,
                r.u16(44)?,
                u64::from(r.u32(32)?),
                r.u16(46)?,
                r.u16(48)?,
            )
        };
        // A program header is 56 bytes (ELF64) or 32 (ELF32); smaller
        // entries are malformed (and would make the walk below re-read one
        // entry up to 65535 times).
        let min_phent: u16 = if wide { 56 } else { 32 };
        if phnum > 0 && phentsize < min_phent {
            return Err(format!(
                "not a shared library: program header entries of {phentsize} bytes (at least {min_phent} expected)"
            ));
        }
        let table_end =
            |off: u64, size: u16, n: u16| off.saturating_add(u64::from(size) * u64::from(n));
        if table_end(phoff, phentsize, phnum) > len {
            return Err(format!(
                "truncated: program headers end at byte {} but the file has {len} bytes (still being written?)",
                table_end(phoff, phentsize, phnum)
            ));
        }
        if shnum > 0 && table_end(shoff, shentsize, shnum) > len {
            return Err(format!(
                "truncated: section headers end at byte {} but the file has {len} bytes (still being written?)",
                table_end(shoff, shentsize, shnum)
            ));
        }
        let mut loads = 0;
        for i in 0..usize::from(phnum) {
            let at = usize::try_from(phoff).map_err(|_| "bad program header offset".to_string())?
                + i * usize::from(phentsize);
            if r.u32(at)? != PT_LOAD {
                continue;
            }
            loads += 1;
            let (offset, filesz) = if wide {
                (r.word(at + 8, true)?, r.word(at + 32, true)?)
            } else {
                (r.word(at + 4, false)?, r.word(at + 16, false)?)
            };
            let end = offset.saturating_add(filesz);
            if end > len {
                return Err(format!(
                    "truncated: LOAD segment {i} ends at byte {end} but the file has {len} bytes (still being written?)"
                ));
            }
        }
        if loads == 0 {
            return Err("not a shared library: no LOAD segments".into());
        }
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn this_exe() -> Vec<u8> {
        // The test binary is an ELF file of this machine (ET_DYN when PIE).
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    #[test]
    fn refuses_non_elf() {
        let e = check_object_file(b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(e.contains("no ELF header"), "{e}");
    }

    #[test]
    fn the_header_read_decides_like_the_whole_file() {
        let exe = std::env::current_exe().unwrap();
        let whole = this_exe();
        let h = read_headers(&exe).unwrap();
        assert_eq!(h.len, whole.len() as u64);
        assert!(
            h.prefix.len() < 64 * 1024 && h.prefix.len() < whole.len(),
            "only the headers are read: {} of {} bytes",
            h.prefix.len(),
            whole.len()
        );
        assert_eq!(
            check_headers(&h.prefix, h.len),
            check_object_file(&whole),
            "the same verdict"
        );
        // Cut files: the same verdict from their headers as from all of them.
        let dir = tempfile::tempdir().unwrap();
        for cut in [10, 40, 63, 64, 200, 4096, 4097, whole.len() / 2] {
            let p = dir.path().join(format!("cut-{cut}"));
            std::fs::write(&p, &whole[..cut]).unwrap();
            let h = read_headers(&p).unwrap();
            assert_eq!(
                check_headers(&h.prefix, h.len),
                check_object_file(&whole[..cut]),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn refuses_truncated() {
        let b = this_exe();
        if u16::from_le_bytes([b[16], b[17]]) != 3 {
            return; // not a PIE test binary; nothing to check here
        }
        check_object_file(&b).unwrap();
        let e = check_object_file(&b[..b.len() / 2]).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let e = check_object_file(&b[..40]).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn permission_rules() {
        let p = Path::new("/x/plugins");
        let file =
            |owner, mode| insecure(Path::new("/x/plugins/libp.so"), "file", owner, mode, 1000);
        let dir = |owner, mode| insecure(p, "directory", owner, mode, 1000);
        assert_eq!(file(1000, 0o755), None);
        assert_eq!(file(0, 0o644), None);
        assert_eq!(dir(0, 0o755), None);
        assert_eq!(dir(0, 0o1777), None, "root's sticky /tmp is a safe parent");
        assert_eq!(
            dir(0o777, 0o777).as_deref(),
            Some("/x/plugins: directory is owned by uid 511, not by the running user (uid 1000) or root; fix with chown, or set [host] allow_insecure_permissions = true")
        );
        assert_eq!(
            dir(1000, 0o777).as_deref(),
            Some("/x/plugins: directory is writable by others (mode 0777); fix with chmod go-w /x/plugins, or set [host] allow_insecure_permissions = true")
        );
        assert!(
            dir(1000, 0o1777)
                .unwrap()
                .contains("writable by others (mode 1777)"),
            "sticky but not root's"
        );
        assert!(dir(1000, 0o775)
            .unwrap()
            .contains("writable by group (mode 0775)"));
        assert!(file(1000, 0o666)
            .unwrap()
            .contains("file is writable by others (mode 0666)"));
        assert!(
            file(0, 0o1777).unwrap().contains("writable by others"),
            "the sticky rule is for directories"
        );
        assert!(file(2000, 0o644).unwrap().contains("owned by uid 2000"));
    }

    #[test]
    fn checks_real_paths() {
        use std::os::unix::fs::PermissionsExt;
        let shadow = ShadowDir::create().unwrap();
        let uid = shadow.uid();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugins");
        std::fs::create_dir(&dir).unwrap();
        let lib = dir.join("libp.so");
        std::fs::write(&lib, b"x").unwrap();
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o644)).unwrap();
        check_permissions(&lib, uid).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_permissions(&lib, uid).unwrap_err();
        assert!(
            e.starts_with(&format!(
                "{}: directory is writable by others (mode 0777)",
                std::fs::canonicalize(&dir).unwrap().display()
            )),
            "{e}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = check_permissions(&lib, uid).unwrap_err();
        assert!(e.contains("file is writable by group (mode 0664)"), "{e}");
        // A symlink to a safe file is judged by the file (and its own owner).
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = tmp.path().join("link.so");
        std::os::unix::fs::symlink(&lib, &link).unwrap();
        check_permissions(&link, uid).unwrap();
    }

    #[test]
    fn sha256_of_known_bytes() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn refuses_undersized_program_headers() {
        let mut b = this_exe();
        if u16::from_le_bytes([b[16], b[17]]) != 3 {
            return;
        }
        b[54] = 8; // e_phentsize
        b[55] = 0;
        let e = check_object_file(&b).unwrap_err();
        assert!(e.contains("program header entries of 8 bytes"), "{e}");
    }

    #[test]
    fn refuses_wrong_machine() {
        let mut b = this_exe();
        if u16::from_le_bytes([b[16], b[17]]) != 3 {
            return;
        }
        b[18] = 0x99;
        b[19] = 0;
        let e = check_object_file(&b).unwrap_err();
        assert!(e.contains("built for"), "{e}");
    }
}
