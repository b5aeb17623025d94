//! Statistics, resident memory and per-thread CPU time.

/// The median of some values (NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    percentile_of(values, 50.0)
}

/// The `p`-th percentile (nearest rank) of some values (NaN when empty).
pub fn percentile_of(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, p)
}

/// The `p`-th percentile (nearest rank) of sorted values.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Resident set size of this process, bytes (/proc/self/statm).
pub fn rss_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(1) as u64
}

/// CPU time (ns) of this process's thread named `name` (first match), from
/// /proc/self/task/*/schedstat.
pub fn thread_cpu_ns(name: &str) -> Option<u64> {
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            return stat.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

/// CPU time (ns) of the whole process (user + system).
pub fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Bytes the C allocator has handed out and not had back, over every arena
/// (glibc's `malloc_info`: each arena's memory from the system less its free
/// chunks, plus mmapped blocks). Unlike RSS, free memory kept by the
/// allocator does not count. Plugins allocate with the same `malloc`.
pub fn heap_in_use() -> Option<u64> {
    let mut buf: *mut libc::c_char = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: open_memstream writes a malloc'd buffer pointer and its length
    // into the two locations, which outlive the stream; the buffer is valid
    // after fclose until freed below.
    let text = unsafe {
        let f = libc::open_memstream(&mut buf, &mut len);
        if f.is_null() {
            return None;
        }
        libc::malloc_info(0, f);
        libc::fclose(f);
        if buf.is_null() {
            return None;
        }
        let text = std::slice::from_raw_parts(buf.cast::<u8>(), len).to_vec();
        libc::free(buf.cast());
        String::from_utf8(text).ok()?
    };
    // The totals follow the last </heap>.
    let totals = &text[text.rfind("</heap>")?..];
    let attr = |kind: &str, tag: &str| -> Option<u64> {
        let at = totals.find(&format!("<{tag} type=\"{kind}\""))?;
        let rest = &totals[at..];
        let size = rest.find("size=\"")? + 6;
        rest[size..].split('"').next()?.parse().ok()
    };
    let system = attr("current", "system")?;
    let free = attr("fast", "total")? + attr("rest", "total")?;
    let mmap = attr("mmap", "total").unwrap_or(0);
    Some(system.saturating_sub(free) + mmap)
}

/// (minor page faults, voluntary + involuntary context switches) of the
/// whole process so far (getrusage).
pub fn faults_and_switches() -> (u64, u64) {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    (ru.ru_minflt as u64, (ru.ru_nvcsw + ru.ru_nivcsw) as u64)
}

/// Gives freed memory back to the system, so RSS deltas count live data.
pub fn trim_heap() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile_of(&v, 50.0), 50.0);
        assert_eq!(percentile_of(&v, 99.0), 99.0);
        assert_eq!(percentile_of(&v, 99.9), 100.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn heap_in_use_sees_live_blocks() {
        let before = heap_in_use().expect("malloc_info");
        let blocks: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 1000]).collect();
        let after = heap_in_use().expect("malloc_info");
        assert!(after >= before + 1_000_000, "{before} -> {after}");
        drop(blocks);
    }
}
