//! The process's memory figures, from `/proc/self/status` (Linux; `None` where a system has no such
//! file), for `ps3rt bench` and `ps3rt soak`.

/// The `field` line of `/proc/self/status` (`VmRSS`, `VmHWM`, ...) in bytes (the file gives kB).
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The resident set now (VmRSS).
pub fn resident_bytes() -> Option<u64> {
    status_bytes("VmRSS")
}

/// The largest resident set so far (VmHWM).
pub fn peak_resident_bytes() -> Option<u64> {
    status_bytes("VmHWM")
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_resident_set_is_read_and_never_above_its_peak() {
        let now = resident_bytes().expect("VmRSS");
        let peak = peak_resident_bytes().expect("VmHWM");
        assert!(now > 0 && now <= peak, "VmRSS {now}, VmHWM {peak}");
        assert_eq!(status_bytes("VmRS"), None, "a field name's prefix matched");
    }
}
