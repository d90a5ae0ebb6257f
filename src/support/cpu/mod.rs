//! This CPU's peaks, for benchmarks to compare against — float32: physical cores × the
//! float32 operations each core's fused multiply-adds complete per second — measured, by
//! timing independent chains of the widest FMA the CPU has (its `/proc/cpuinfo` flags:
//! AVX-512 or AVX2 + FMA), with one core busy and with all of them at once.
//!
//! Measured, not assumed, because the number of FMA units is not in `/proc/cpuinfo`: the
//! server Xeons have two 512-bit units per core, Intel's client AVX-512 parts (Ice Lake,
//! Tiger Lake, Rocket Lake: the NUCs) and the smallest Xeons one, and AMD's Zen 4 runs
//! each 512-bit FMA as two halves on its two 256-bit units — counted at two 512-bit units,
//! the last read "39 % of peak" for what was 79 %. Timing the FMAs also takes in the
//! lower clock some Intel parts run heavy AVX-512 code at. Where they cannot be timed
//! (no FMA, not x86-64) the peak is computed instead: cores × clock × two units × the
//! widest vector's float32 lanes × 2 (an upper bound), with Zen 4 (family 25 with
//! AVX-512) at 256-bit units.
//!
//! The reduced precisions' peaks are timed the same way on the fastest instructions the
//! CPU has for them (the ones oneDNN's kernels use there), for the bench's bfloat16 and
//! int8 stages. bfloat16: AMX's tile product (`tdpbf16ps`: Sapphire Rapids and later),
//! else AVX-512's dot product (`vdpbf16ps`: Zen 4, Cooper Lake); none elsewhere, where
//! oneDNN emulates it. int8: AMX's `tdpbusd`, else `vpdpbusd` on AVX-512 (VNNI) or on
//! AVX2's registers (AVX-VNNI: Alder Lake and the N100s, no AVX-512), else the
//! `vpmaddubsw` + `vpmaddwd` + `vpaddd` triple that stands in for it without VNNI, on
//! AVX-512 (Skylake-SP) or AVX2 (Zen 2 and 3, older Intel) — so every x86-64 CPU with
//! AVX2 has an int8 peak.
//!
//! The clock is measured too, for the FMAs per cycle shown beside the peak: `/proc/cpuinfo`
//! gives the nominal or the momentary clock, while a busy core runs at its boost clock (on
//! a 2.45 GHz EPYC, oneDNN reached "94 % of peak" against the nominal clock). A chain of
//! dependent register-to-register adds takes one cycle per add and one of multiplies three
//! per multiply on every x86-64 core of the last decade, so timing them gives the running
//! clock. Adds of an immediate will not do: Intel's cores since Golden Cove fold them at
//! rename, several a cycle (a 2.6 GHz Xeon "ran at 19.9 GHz", and its peak came out 5×
//! too high); the lower of the two chains' clocks is taken, so one that a core shortcuts
//! does not count.

mod chains;

use serde::Serialize;

use chains::{Chains, add_chain_ghz, multiply_chain_ghz};

/// The instructions the bfloat16 and int8 peaks are timed on, fastest first: the first
/// this CPU runs is taken.
const BFLOAT16_CHAINS: [Chains; 2] = [Chains::AmxBf16, Chains::Avx512Bf16];
const INT8_CHAINS: [Chains; 5] = [
    Chains::AmxInt8,
    Chains::Avx512Vnni,
    Chains::AvxVnni,
    Chains::Avx512MultiplyAdd,
    Chains::Avx2MultiplyAdd,
];

/// What the peak is made of.
#[derive(Debug, Clone, Serialize)]
pub struct CpuPeak {
    pub model: String,
    /// Cores with their own FMA units (hyper-threads share them).
    pub physical_cores: usize,
    /// The clock in `/proc/cpuinfo` (the model name's "@ … GHz", else "cpu MHz").
    pub nominal_ghz: f64,
    /// The measured clock with one core busy and with all of them busy; the nominal
    /// one where it cannot be measured (not x86-64).
    pub ghz_one: f64,
    pub ghz_all: f64,
    /// `avx512f`, `avx2+fma`, `avx` or `sse`.
    pub isa: &'static str,
    /// How wide the vector units that run it are, in bits (256 for AVX-512 on Zen 4), for
    /// the computed peak.
    pub unit_bits: u32,
    /// Float32 lanes of one of the ISA's vectors (16 for AVX-512, 8 for AVX2).
    pub lanes: u32,
    /// Computed float32 operations per cycle and core: 2 units × lanes × 2 (multiply and
    /// add); the peak where the FMAs are not timed.
    pub flop_per_cycle: f64,
    /// Measured: the ISA's widest FMAs one core completes per nanosecond with one core
    /// busy and with all of them busy; `None` where they cannot be timed.
    pub fma_per_ns_one: Option<f64>,
    pub fma_per_ns_all: Option<f64>,
    /// The reduced precisions' peaks, timed on the fastest instructions the CPU has for
    /// them ([`BFLOAT16_CHAINS`], [`INT8_CHAINS`]); `None` where it has none.
    pub bfloat16: Option<ReducedPeak>,
    pub int8: Option<ReducedPeak>,
}

/// A reduced precision's timed peak.
#[derive(Debug, Clone, Serialize)]
pub struct ReducedPeak {
    /// The instructions timed (`AMX tdpbf16ps`, `avx512_vnni vpdpbusd`, …).
    pub instructions: &'static str,
    /// Billions of operations a second and core (two per product), with one core busy
    /// and with all of them busy.
    pub gops_one: f64,
    pub gops_all: f64,
}

impl ReducedPeak {
    /// Time the first of `candidates` this CPU runs, on one core and on `cores`.
    fn timed(candidates: &[Chains], cores: usize) -> Option<ReducedPeak> {
        let chains = *candidates.iter().find(|c| c.available())?;
        let gops = |threads| Some(timed_per_ns(threads, chains)? * chains.ops_per_instruction());
        let gops_one = gops(1)?;
        Some(ReducedPeak {
            instructions: chains.name(),
            gops_one,
            gops_all: gops(cores).unwrap_or(gops_one),
        })
    }

    fn gops(&self, threads: usize) -> f64 {
        one_or_all(threads, self.gops_one, self.gops_all)
    }
}

impl CpuPeak {
    /// Read from /proc/cpuinfo, the clock and the peaks timed (once per process, ~0.5 s);
    /// `None` where it cannot tell (another OS, no clock).
    pub fn detect() -> Option<CpuPeak> {
        static DETECTED: std::sync::OnceLock<Option<CpuPeak>> = std::sync::OnceLock::new();
        DETECTED
            .get_or_init(|| {
                let mut peak = CpuPeak::parse(cpuinfo()?)?;
                let fma = match peak.isa {
                    "avx512f" => Some(Chains::Avx512Fma),
                    "avx2+fma" => Some(Chains::Avx2Fma),
                    _ => None,
                }
                .filter(|chains| chains.available());
                if let Some(one) = measure(1, fma) {
                    let all = measure(peak.physical_cores, fma).unwrap_or(one);
                    (peak.ghz_one, peak.fma_per_ns_one) = (one.ghz, one.fma_per_ns);
                    (peak.ghz_all, peak.fma_per_ns_all) = (all.ghz, all.fma_per_ns);
                }
                let cores = peak.physical_cores;
                peak.bfloat16 = ReducedPeak::timed(&BFLOAT16_CHAINS, cores);
                peak.int8 = ReducedPeak::timed(&INT8_CHAINS, cores);
                Some(peak)
            })
            .clone()
    }

    pub fn parse(cpuinfo: &str) -> Option<CpuPeak> {
        let field = |name: &str| field(cpuinfo, name);
        let model = field("model name").unwrap_or_default();
        let has = |flag: &str| has_flag(cpuinfo, flag);
        // Without FMA (AVX, SSE) a multiply and an add issue apart: the same FLOP/cycle as
        // one FMA of half the width.
        let zen4 = field("vendor_id").as_deref() == Some("AuthenticAMD")
            && field("cpu family").as_deref() == Some("25");
        let (isa, lanes, unit_bits, flop_per_cycle) = if has("avx512f") && zen4 {
            ("avx512f", 16, 256, 32.0)
        } else if has("avx512f") {
            ("avx512f", 16, 512, 64.0)
        } else if has("avx2") && has("fma") {
            ("avx2+fma", 8, 256, 32.0)
        } else if has("avx") {
            ("avx", 8, 256, 16.0)
        } else {
            ("sse", 4, 128, 8.0)
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
            nominal_ghz: ghz,
            ghz_one: ghz,
            ghz_all: ghz,
            isa,
            lanes,
            unit_bits,
            flop_per_cycle,
            fma_per_ns_one: None,
            fma_per_ns_all: None,
            bfloat16: None,
            int8: None,
        })
    }

    /// The float32 peak of `threads` threads (at most one per physical core), GFLOP/s:
    /// from the timed FMAs where they were timed, else computed.
    pub fn gflops(&self, threads: usize) -> f64 {
        let threads = threads.clamp(1, self.physical_cores);
        let per_core = match self.fma_per_ns(threads) {
            Some(rate) => rate * f64::from(self.lanes) * 2.0,
            None => self.ghz(threads) * self.flop_per_cycle,
        };
        threads as f64 * per_core
    }

    /// The peak of `threads` threads in `precision` (`float32`, `bfloat16`, `int8`), in
    /// billions of operations a second, where the CPU has instructions for it.
    pub fn gops(&self, precision: &str, threads: usize) -> Option<f64> {
        let threads = threads.clamp(1, self.physical_cores);
        let reduced = match precision {
            "float32" => return Some(self.gflops(threads)),
            "bfloat16" => self.bfloat16.as_ref(),
            "int8" => self.int8.as_ref(),
            _ => None,
        };
        Some(threads as f64 * reduced?.gops(threads))
    }

    /// The timed FMAs per nanosecond and core with `threads` cores busy.
    pub fn fma_per_ns(&self, threads: usize) -> Option<f64> {
        one_or_all(threads, self.fma_per_ns_one, self.fma_per_ns_all)
    }

    /// The timed FMAs per cycle of the measured clock with `threads` cores busy: ~2 on a
    /// core with two full-width units, ~1 with one (or with Zen 4's halves).
    pub fn fma_per_cycle(&self, threads: usize) -> Option<f64> {
        Some(self.fma_per_ns(threads)? / self.ghz(threads))
    }

    /// The clock with `threads` cores busy.
    pub fn ghz(&self, threads: usize) -> f64 {
        one_or_all(threads, self.ghz_one, self.ghz_all)
    }
}

/// What was measured with one core busy, or with all of them, for `threads`.
fn one_or_all<T>(threads: usize, one: T, all: T) -> T {
    if threads <= 1 { one } else { all }
}

/// The CPU's bfloat16 dot-product instructions (`avx512_bf16`: Zen 4 and later, Cooper
/// Lake; `amx_bf16`: Sapphire Rapids and later) as named in `/proc/cpuinfo`, or `None`:
/// without them oneDNN emulates bfloat16 in float32, far slower than float32 itself
/// (130 s for OpenL3's stack on a Zen 3 against 1.3 s in float32).
pub fn bf16_instructions() -> Option<&'static str> {
    bf16_in_flags(cpuinfo()?)
}

fn bf16_in_flags(cpuinfo: &str) -> Option<&'static str> {
    ["amx_bf16", "avx512_bf16"]
        .into_iter()
        .find(|f| has_flag(cpuinfo, f))
}

/// This machine's `/proc/cpuinfo`, read once; `None` where there is none.
fn cpuinfo() -> Option<&'static str> {
    static CPUINFO: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    CPUINFO
        .get_or_init(|| std::fs::read_to_string("/proc/cpuinfo").ok())
        .as_deref()
}

/// Whether this machine's `/proc/cpuinfo` names `flag`.
fn cpu_flag(flag: &str) -> bool {
    cpuinfo().is_some_and(|cpuinfo| has_flag(cpuinfo, flag))
}

/// The first processor's `model name` in this machine's `/proc/cpuinfo`.
pub fn model_name() -> Option<String> {
    field(cpuinfo()?, "model name")
}

/// The first processor's `name` field in `/proc/cpuinfo` text.
fn field(cpuinfo: &str, name: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_string())
    })
}

/// Whether the first processor's `flags` name `flag`.
fn has_flag(cpuinfo: &str, flag: &str) -> bool {
    field(cpuinfo, "flags").is_some_and(|flags| flags.split_whitespace().any(|x| x == flag))
}

/// What one core measured: its clock in GHz and, where they could be timed, the widest
/// FMAs it completes per nanosecond.
#[derive(Debug, Clone, Copy)]
struct Measured {
    ghz: f64,
    fma_per_ns: Option<f64>,
}

/// The running clock with `threads` cores busy at once, from chains of dependent adds and
/// multiplies (the lower of the two), and the rate of `fma`'s chains beside it; the mean
/// over the threads, each the best of five ~10 ms runs, so a preempted run (a VM's steal
/// time) does not count.
fn measure(threads: usize, fma: Option<Chains>) -> Option<Measured> {
    let cores = on_cores(threads, || {
        let fma_per_ns = fma.and_then(|chains| best_of_five(|| chains.per_ns()));
        let ghz = best_of_five(add_chain_ghz)?.min(best_of_five(multiply_chain_ghz)?);
        Some(Measured { ghz, fma_per_ns })
    })?;
    let ghz: Vec<f64> = cores.iter().map(|m| m.ghz).collect();
    let fma: Option<Vec<f64>> = cores.iter().map(|m| m.fma_per_ns).collect();
    Some(Measured {
        ghz: mean(&ghz),
        fma_per_ns: fma.map(|rates| mean(&rates)),
    })
}

/// `chains`' instructions per nanosecond and core with `threads` cores running them at
/// once: the mean over the threads of each one's best of five runs.
fn timed_per_ns(threads: usize, chains: Chains) -> Option<f64> {
    let rates = on_cores(threads, || best_of_five(|| chains.per_ns()))?;
    Some(mean(&rates))
}

/// `run` on `threads` threads started together; `None` if any gave `None`.
fn on_cores<T: Send>(threads: usize, run: impl Fn() -> Option<T> + Sync) -> Option<Vec<T>> {
    let threads = threads.max(1);
    let start = std::sync::Barrier::new(threads);
    let results: Vec<Option<T>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    run()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    results.into_iter().collect()
}

fn best_of_five(run: impl Fn() -> Option<f64>) -> Option<f64> {
    (0..5).filter_map(|_| run()).reduce(f64::max)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
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
            (peak.physical_cores, peak.isa, peak.nominal_ghz),
            (1, "avx512f", 2.0)
        );
        assert_eq!(peak.gflops(2), 128.0);
    }

    #[test]
    fn zen_4_counts_avx512_at_its_256_bit_units() {
        let zen = |family: &str| {
            EPYC.replace("avx2 fma", "avx2 fma avx512f").replace(
                "physical id",
                &format!("vendor_id\t: AuthenticAMD\ncpu family\t: {family}\nphysical id"),
            )
        };
        let zen4 = CpuPeak::parse(&zen("25")).unwrap();
        assert_eq!(
            (zen4.isa, zen4.unit_bits, zen4.flop_per_cycle),
            ("avx512f", 256, 32.0)
        );
        let zen5 = CpuPeak::parse(&zen("26")).unwrap();
        assert_eq!(
            (zen5.isa, zen5.unit_bits, zen5.flop_per_cycle),
            ("avx512f", 512, 64.0)
        );
        let zen3 = CpuPeak::parse(&EPYC.replace(
            "physical id",
            "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nphysical id",
        ))
        .unwrap();
        assert_eq!((zen3.isa, zen3.flop_per_cycle), ("avx2+fma", 32.0));
    }

    #[test]
    fn bf16_needs_its_dot_product_instructions() {
        assert_eq!(bf16_in_flags(EPYC), None);
        let zen4 = EPYC.replace("avx2 fma", "avx2 fma avx512f avx512_bf16");
        assert_eq!(bf16_in_flags(&zen4), Some("avx512_bf16"));
        let sapphire = EPYC.replace("avx2 fma", "avx2 fma avx512_bf16 amx_bf16 amx_tile");
        assert_eq!(bf16_in_flags(&sapphire), Some("amx_bf16"));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_clock_is_measured_on_one_and_on_all_cores() {
        // (The chains themselves: chains.rs.)
        let one = measure(1, None).expect("a clock from one core").ghz;
        let all = measure(2, None).expect("a clock from two threads").ghz;
        assert!(one.is_finite() && one > 0.0 && one < 7.0, "{one} GHz");
        assert!(all.is_finite() && all > 0.0 && all < 7.0, "{all} GHz");
    }

    #[test]
    fn a_timed_fma_rate_sets_the_peak() {
        // A Tiger Lake NUC: AVX-512 on one 512-bit unit per core, so one FMA a cycle — half
        // of what the flags' two-unit count says.
        let nuc = EPYC
            .replace(
                "AMD EPYC 7B13",
                "11th Gen Intel(R) Core(TM) i5-1135G7 @ 2.40GHz",
            )
            .replace("avx2 fma", "avx2 fma avx512f");
        let mut peak = CpuPeak::parse(&nuc).unwrap();
        assert_eq!(
            peak.gflops(1),
            2.4 * 64.0,
            "computed while nothing is timed"
        );
        (peak.ghz_one, peak.fma_per_ns_one) = (4.2, Some(4.2));
        (peak.ghz_all, peak.fma_per_ns_all) = (3.8, Some(3.8));
        assert_eq!(peak.gflops(1), 4.2 * 16.0 * 2.0);
        assert_eq!(peak.gflops(2), 2.0 * 3.8 * 32.0);
        assert_eq!(peak.fma_per_cycle(2), Some(1.0));
    }

    #[test]
    fn reduced_peaks_are_theirs_alone() {
        let mut peak = CpuPeak::parse(EPYC).unwrap();
        assert_eq!(peak.gops("int8", 2), None, "nothing timed: no int8 peak");
        assert_eq!(peak.gops("float32", 2), Some(peak.gflops(2)));
        peak.int8 = Some(ReducedPeak {
            instructions: "avx512_vnni vpdpbusd",
            gops_one: 900.0,
            gops_all: 800.0,
        });
        assert_eq!(peak.gops("int8", 1), Some(900.0));
        assert_eq!(peak.gops("int8", 8), Some(1600.0), "no more than the cores");
        assert_eq!(peak.gops("bfloat16", 2), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_peaks_are_timed_where_the_cpu_has_the_instructions() {
        let peak = CpuPeak::detect().expect("/proc/cpuinfo");
        if is_x86_feature_detected!("fma") {
            let (one, all) = (peak.fma_per_ns_one, peak.fma_per_ns_all);
            assert!(one.is_some() && all.is_some(), "{} FMAs timed", peak.isa);
            let timed = one.unwrap() * f64::from(peak.lanes) * 2.0;
            assert_eq!(peak.gflops(1), timed);
        }
        if is_x86_feature_detected!("avx2") {
            assert!(
                peak.int8.is_some(),
                "AVX2's multiply-adds give an int8 peak"
            );
        }
        for (precision, timed, candidates) in [
            ("bfloat16", &peak.bfloat16, &BFLOAT16_CHAINS[..]),
            ("int8", &peak.int8, &INT8_CHAINS[..]),
        ] {
            let first = candidates.iter().find(|c| c.available());
            assert_eq!(
                timed.as_ref().map(|p| p.instructions),
                first.map(|c| c.name()),
                "{precision}"
            );
            if let Some(timed) = timed {
                let (one, all) = (timed.gops_one, timed.gops_all);
                assert!(one > 0.0 && all > 0.0, "{precision}: {timed:?}");
                assert_eq!(peak.gops(precision, 1), Some(one));
            }
        }
    }
}
