//! This CPU's float32 peak, for benchmarks to compare against: physical cores × clock ×
//! FLOP per cycle and core, the last from the widest fused multiply-add the CPU has
//! (its `/proc/cpuinfo` flags). Two FMA units per core are assumed — true of Intel since
//! Haswell (AVX2) and of its AVX-512 server parts but the smallest Xeons (one 512-bit
//! unit), and of AMD since Zen 2 — so the figure is an upper bound where that is not so.

use serde::Serialize;

/// What the peak is made of.
#[derive(Debug, Clone, Serialize)]
pub struct CpuPeak {
    pub model: String,
    /// Cores with their own FMA units (hyper-threads share them).
    pub physical_cores: usize,
    pub ghz: f64,
    /// `avx512f`, `avx2+fma`, `avx` or `sse`.
    pub isa: &'static str,
    /// Float32 operations per cycle and core: 2 units × lanes × 2 (multiply and add).
    pub flop_per_cycle: f64,
}

impl CpuPeak {
    /// Read from /proc/cpuinfo; `None` where it cannot tell (another OS, no clock).
    pub fn detect() -> Option<CpuPeak> {
        CpuPeak::parse(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
    }

    pub fn parse(cpuinfo: &str) -> Option<CpuPeak> {
        let field = |name: &str| {
            cpuinfo.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
        };
        let model = field("model name").unwrap_or_default();
        let flags = field("flags").unwrap_or_default();
        let has = |f: &str| flags.split_whitespace().any(|x| x == f);
        let (isa, flop_per_cycle) = if has("avx512f") {
            ("avx512f", 64.0)
        } else if has("avx2") && has("fma") {
            ("avx2+fma", 32.0)
        } else if has("avx") {
            ("avx", 16.0)
        } else {
            ("sse", 8.0)
        };
        // The nominal clock ("@ 2.45GHz" in the model name) where it is given, else what
        // the kernel reports now.
        let named = model
            .rsplit_once('@')
            .and_then(|(_, f)| f.trim().trim_end_matches("GHz").trim().parse::<f64>().ok());
        let ghz = named.or_else(|| Some(field("cpu MHz")?.parse::<f64>().ok()? / 1000.0))?;
        // Physical cores: distinct (package, core) pairs.
        let mut cores = std::collections::BTreeSet::new();
        let mut package = String::new();
        for line in cpuinfo.lines() {
            if let Some((key, value)) = line.split_once(':') {
                match key.trim() {
                    "physical id" => package = value.trim().to_string(),
                    "core id" => {
                        cores.insert((package.clone(), value.trim().to_string()));
                    }
                    _ => {}
                }
            }
        }
        let logical = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let physical_cores = if cores.is_empty() {
            logical.max(1)
        } else {
            cores.len()
        };
        Some(CpuPeak {
            model,
            physical_cores,
            ghz,
            isa,
            flop_per_cycle,
        })
    }

    /// The float32 peak of `threads` threads (at most one per physical core), GFLOP/s.
    pub fn gflops(&self, threads: usize) -> f64 {
        threads.clamp(1, self.physical_cores) as f64 * self.ghz * self.flop_per_cycle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPYC: &str = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx avx2 fma\ncpu MHz\t\t: 2450.000\nphysical id\t: 0\ncore id\t\t: 0\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx avx2 fma\ncpu MHz\t\t: 2450.000\nphysical id\t: 0\ncore id\t\t: 1\n";

    #[test]
    fn the_peak_is_cores_times_clock_times_fma_width() {
        let peak = CpuPeak::parse(EPYC).unwrap();
        assert_eq!((peak.physical_cores, peak.isa), (2, "avx2+fma"));
        // The figure for this CPU: ≈ 157 GFLOP/s on two cores.
        assert!((peak.gflops(2) - 156.8).abs() < 0.1, "{}", peak.gflops(2));
        assert!(
            (peak.gflops(8) - peak.gflops(2)).abs() < 1e-9,
            "no more than the cores"
        );
        let xeon = EPYC
            .replace("AMD EPYC 7B13", "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz")
            .replace("avx2 fma", "avx2 fma avx512f")
            .replace("core id\t\t: 1", "core id\t\t: 0");
        let peak = CpuPeak::parse(&xeon).unwrap();
        assert_eq!(
            (peak.physical_cores, peak.isa, peak.ghz),
            (1, "avx512f", 2.0)
        );
        assert_eq!(peak.gflops(2), 128.0);
    }
}
