//! Keeps the module loaded for the life of the process, whatever `do_not_close` says: its
//! background thread and the threads of calls in flight (a long poll lasts up to 60 s) run the
//! module's code after Envoy destroys a configuration, and Envoy unloading the `.so` under them
//! would crash it. One more reference with `RTLD_NODELETE` makes `dlclose` a no-op.

use std::ffi::c_void;

/// Pins the shared object this function is in (logged when it cannot: then keep
/// `do_not_close: true`, as the shipped configuration does).
pub fn keep_loaded() {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let here = keep_loaded as fn() as *const c_void;
    // SAFETY: `dladdr` writes `info` for an address in a loaded object; `dli_fname` is then a
    // C string owned by the loader, valid while the object is loaded (it is: this code runs).
    let pinned = unsafe {
        libc::dladdr(here, &mut info) != 0
            && !info.dli_fname.is_null()
            && !libc::dlopen(
                info.dli_fname,
                libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
            )
            .is_null()
    };
    if !pinned {
        log::warn!("keygate (native): could not pin the module in memory; keep do_not_close: true");
    }
}
