//! Giving back the memory that only start-up needed.
//!
//! The agent shares its container's memory limit with the training job.
//! Start-up runs code that is never needed again (argument parsing, the log
//! filter, host-key generation, the runtime's set-up), and every page of
//! code it touched (its own and the C library's) stays mapped until the
//! kernel is short of memory: about 4.5 MB of the agent's 6 MB when idle.
//! Code pages are never written, so dropping them now costs nothing but a
//! page fault, served from the page cache, when that code runs again.
//!
//! A burst of connections (a flood, most often) leaves the same behind, and
//! freed heap that the C allocator keeps: [`trim`] gives both back once
//! the burst is over.

use std::ptr::NonNull;

use nix::sys::mman::{madvise, MmapAdvise};

/// Gives back what a burst of connections left: free heap the C library's
/// allocator holds, and code pages (see [`drop_code_pages`]).
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator's own
    // arenas to the kernel; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
    drop_code_pages();
}

/// Drops the resident pages of the process's read-only file mappings:
/// code (`r-xp`) of the binary and its libraries is unmapped from this
/// process (`MADV_DONTNEED`), and the binary's read-only data is paged out
/// (`MADV_PAGEOUT`, which keeps the contents of pages that relocation
/// wrote). Returns how many bytes were advised.
pub fn drop_code_pages() -> usize {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut advised = 0;
    for line in maps.lines() {
        let Some(mapping) = ReadOnlyMapping::parse(line, &exe) else {
            continue;
        };
        let Some(addr) = NonNull::new(mapping.start as *mut std::ffi::c_void) else {
            continue;
        };
        let advice = if mapping.code {
            MmapAdvise::MADV_DONTNEED
        } else {
            MmapAdvise::MADV_PAGEOUT
        };
        // SAFETY: the range is one whole read-only mapping of a file.
        // For code, MADV_DONTNEED only removes this process's page-table
        // entries: code pages are never written (no copy-on-write page can
        // be lost), so a later access faults in the same bytes from the
        // file. MADV_PAGEOUT keeps every page's contents by definition.
        if unsafe { madvise(addr, mapping.len, advice) }.is_ok() {
            advised += mapping.len;
        }
    }
    advised
}

/// One `/proc/self/maps` line's range: code of any file, or read-only
/// data of the executable.
struct ReadOnlyMapping {
    start: usize,
    len: usize,
    code: bool,
}

impl ReadOnlyMapping {
    fn parse(line: &str, exe: &std::path::Path) -> Option<ReadOnlyMapping> {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let perms = fields.next()?;
        let path = fields.nth(3)?;
        let code = perms == "r-xp" && path.starts_with('/');
        let own_data = perms == "r--p" && std::path::Path::new(path) == exe;
        if !code && !own_data {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        Some(ReadOnlyMapping {
            start,
            len: end.checked_sub(start)?,
            code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn only_code_and_the_executables_read_only_data_are_taken() {
        let exe = Path::new("/usr/bin/porthole-agent");
        let text = "5590a000-5590b000 r-xp 00001000 fd:01 123 /usr/bin/porthole-agent";
        let m = ReadOnlyMapping::parse(text, exe).expect("text mapping");
        assert_eq!((m.start, m.len, m.code), (0x5590a000, 0x1000, true));
        let rodata = "5590b000-5590c000 r--p 00002000 fd:01 123 /usr/bin/porthole-agent";
        assert!(!ReadOnlyMapping::parse(rodata, exe).expect("rodata").code);
        let data = "5590c000-5590d000 rw-p 00003000 fd:01 123 /usr/bin/porthole-agent";
        assert!(ReadOnlyMapping::parse(data, exe).is_none());
        let libc = "7f00-8f00 r-xp 00000000 fd:01 9 /usr/lib/libc.so.6";
        assert!(ReadOnlyMapping::parse(libc, exe).expect("libc code").code);
        let libc_relro = "7f00-8f00 r--p 00000000 fd:01 9 /usr/lib/libc.so.6";
        assert!(ReadOnlyMapping::parse(libc_relro, exe).is_none());
        let vdso = "7fff0000-7fff2000 r-xp 00000000 00:00 0 [vdso]";
        assert!(ReadOnlyMapping::parse(vdso, exe).is_none());
        assert!(ReadOnlyMapping::parse("7f00-8f00 rw-p 00000000 00:00 0", exe).is_none());
    }

    #[test]
    fn the_process_runs_on_after_giving_its_pages_back() {
        // Code dropped from a running process (this test's own, and the
        // C library's) faults back in unchanged.
        assert!(drop_code_pages() > 0);
        trim();
        let text: String = (0..1000).map(|i| format!("{i}")).collect();
        assert_eq!(text.len(), 2890);
        assert_eq!(crate::agent::logsafe::Untrusted("ok").to_string(), "ok");
    }
}
