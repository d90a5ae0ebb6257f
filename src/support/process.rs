//! This process's resource use, from /proc (Linux): for benchmarks and metrics.

/// Resident memory in bytes.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The most resident memory this process has had (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Hand the heap's free pages back to the system (glibc's `malloc_trim`): after a phase
/// that allocated and freed much in many threads (decoding thousands of files), so the
/// next phase does not pile on top of a fragmented heap.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap; no memory of ours is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// User + system CPU time in seconds (clock ticks of 1/100 s, Linux's USER_HZ).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        assert!(super::rss_bytes().is_some_and(|b| b > 1 << 20));
        assert!(super::peak_rss_bytes() >= super::rss_bytes().map(|b| b / 2));
        let before = super::cpu_seconds().unwrap_or(-1.0);
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(super::cpu_seconds().unwrap_or(0.0) >= before && before >= 0.0);
    }
}
