//! Timed chains of instructions, for the CPU's clock and its peaks: dependent adds and
//! multiplies (one and three cycles each, on every x86-64 core of the last decade: the
//! running clock), and independent chains of the widest vector or tile instruction of
//! each precision (how many of them a core completes per second: its peak). x86-64 only;
//! elsewhere every chain gives `None`.

/// Loop iterations per timed scalar chain: 16 operations each, ~10 ms at 3 GHz for the
/// adds.
#[cfg(target_arch = "x86_64")]
const ITERATIONS: u64 = 2_000_000;

/// Times `iterations` loop iterations of 16 dependent `$op {x}, {y}` on x = `$start`,
/// y = `$operand` (the loop's own decrement and branch run beside them); gives the final
/// x, for checking the chain ran in full, and the seconds taken.
#[cfg(target_arch = "x86_64")]
macro_rules! timed_chain {
    ($op:literal, $start:expr, $operand:expr, $iterations:expr) => {{
        let began = std::time::Instant::now();
        let (mut x, mut n): (u64, u64) = ($start, $iterations);
        // SAFETY: register-only arithmetic, no memory access, no stack use.
        unsafe {
            std::arch::asm!(
                "2:",
                $op, $op, $op, $op, $op, $op, $op, $op,
                $op, $op, $op, $op, $op, $op, $op, $op,
                "dec {n}",
                "jnz 2b",
                x = inout(reg) x,
                n = inout(reg) n,
                y = in(reg) $operand,
                options(nomem, nostack),
            );
        }
        (x, n == 0, began.elapsed().as_secs_f64())
    }};
}

/// One timed chain of 16 × [`ITERATIONS`] dependent register-to-register adds, one cycle
/// each: the clock in GHz.
#[cfg(target_arch = "x86_64")]
pub fn add_chain_ghz() -> Option<f64> {
    let (x, ran, seconds) = timed_chain!("add {x}, {y}", 0, 1u64, ITERATIONS);
    let ops = 16 * ITERATIONS;
    (x == ops && ran && seconds > 0.0).then(|| ops as f64 / seconds / 1e9)
}

/// One timed chain of half as many dependent 64-bit `imul`s, three cycles each (Intel
/// since Sandy Bridge, AMD since Zen): the clock in GHz.
#[cfg(target_arch = "x86_64")]
pub fn multiply_chain_ghz() -> Option<f64> {
    const FACTOR: u64 = 3;
    let (x, ran, seconds) = timed_chain!("imul {x}, {y}", 1, FACTOR, ITERATIONS / 2);
    let ops = 16 * (ITERATIONS / 2);
    let expected = FACTOR.wrapping_pow(ops as u32);
    (x == expected && ran && seconds > 0.0).then(|| 3.0 * ops as f64 / seconds / 1e9)
}

#[cfg(not(target_arch = "x86_64"))]
pub fn add_chain_ghz() -> Option<f64> {
    None
}

#[cfg(not(target_arch = "x86_64"))]
pub fn multiply_chain_ghz() -> Option<f64> {
    None
}

/// A function timing `iterations` loop iterations of one `$op acc, x, y` into each of the
/// vector accumulators `$acc` (independent chains): gives how many chains, whether the
/// loop ran in full, and the seconds taken.
#[cfg(target_arch = "x86_64")]
macro_rules! vector_chains {
    ($feature:literal, $op:literal, $class:ident, $vector:ty, $zero:ident, $($acc:ident)*) => {{
        #[target_feature(enable = $feature)]
        unsafe fn run(iterations: u64) -> (u64, bool, f64) {
            use std::arch::x86_64::*;
            let zero: $vector = $zero();
            let chains = [$(stringify!($acc)),*].len() as u64;
            let began = std::time::Instant::now();
            let mut n = iterations;
            // SAFETY: register-only arithmetic, no memory access, no stack use; the
            // caller checked the CPU has `$feature`.
            unsafe {
                std::arch::asm!(
                    "2:",
                    $(concat!($op, " {", stringify!($acc), "}, {x}, {y}"),)*
                    "dec {n}",
                    "jnz 2b",
                    n = inout(reg) n,
                    x = in($class) zero,
                    y = in($class) zero,
                    $($acc = inout($class) zero => _,)*
                    options(nomem, nostack),
                );
            }
            (chains, n == 0, began.elapsed().as_secs_f64())
        }
        run
    }};
}

/// [`vector_chains!`] on AVX-512's 512-bit registers: 16 chains.
#[cfg(target_arch = "x86_64")]
macro_rules! zmm_chains {
    ($feature:literal, $op:literal) => {
        vector_chains!(
            $feature, $op, zmm_reg, __m512, _mm512_setzero_ps,
            a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 a12 a13 a14 a15
        )
    };
}

/// A function timing `iterations` loop iterations of int8 multiply-adds as CPUs without
/// VNNI run them (and oneDNN's int8 kernels there): into each accumulator `$acc`,
/// `vpmaddubsw` (u8 × s8 byte pairs → s16), `vpmaddwd` by ones (s16 pairs → s32) and
/// `vpaddd`, one triple doing what one `vpdpbusd` does. Only the adds depend on the last
/// iteration, so the two multiplies' units set the pace. Gives how many chains, whether
/// the loop ran in full, and the seconds taken.
#[cfg(target_arch = "x86_64")]
macro_rules! multiply_add_chains {
    ($feature:literal, $class:ident, $vector:ty, $zero:ident, $ones:ident, $($acc:ident)*) => {{
        #[target_feature(enable = $feature)]
        unsafe fn run(iterations: u64) -> (u64, bool, f64) {
            use std::arch::x86_64::*;
            let (zero, ones): ($vector, $vector) = ($zero(), $ones(1));
            let chains = [$(stringify!($acc)),*].len() as u64;
            let began = std::time::Instant::now();
            let mut n = iterations;
            // SAFETY: register-only arithmetic, no memory access, no stack use; the
            // caller checked the CPU has `$feature`.
            unsafe {
                std::arch::asm!(
                    "2:",
                    $(
                        "vpmaddubsw {t}, {x}, {y}",
                        "vpmaddwd {t}, {t}, {ones}",
                        concat!("vpaddd {", stringify!($acc), "}, {", stringify!($acc), "}, {t}"),
                    )*
                    "dec {n}",
                    "jnz 2b",
                    n = inout(reg) n,
                    x = in($class) zero,
                    y = in($class) zero,
                    ones = in($class) ones,
                    t = out($class) _,
                    $($acc = inout($class) zero => _,)*
                    options(nomem, nostack),
                );
            }
            (chains, n == 0, began.elapsed().as_secs_f64())
        }
        run
    }};
}

/// A function timing `iterations` loop iterations of four independent AMX `$op`s (into
/// tiles 0–3, from tiles 4–7, all 16 rows × 64 bytes, zeroed), the tiles configured and
/// released around them: gives whether the loop ran in full and the seconds taken.
#[cfg(target_arch = "x86_64")]
macro_rules! tile_chains {
    ($op:literal) => {{
        fn run(iterations: u64) -> (bool, f64) {
            /// `ldtilecfg`'s 64 bytes: palette 1, then per tile its bytes per row (u16 at
            /// 16 + 2t) and its rows (u8 at 48 + t).
            #[repr(C, align(64))]
            struct TileConfig([u8; 64]);
            let mut config = TileConfig([0; 64]);
            config.0[0] = 1;
            for tile in 0..8 {
                config.0[16 + 2 * tile] = 64;
                config.0[48 + tile] = 16;
            }
            let began = std::time::Instant::now();
            let mut n = iterations;
            // SAFETY: reads only the configuration; tiles are not used by compiled code,
            // and `tilerelease` returns them to their initial state. The caller checked
            // the CPU has AMX and the kernel allowed this process its tile data.
            unsafe {
                std::arch::asm!(
                    "ldtilecfg [{config}]",
                    "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                    "tilezero tmm4", "tilezero tmm5", "tilezero tmm6", "tilezero tmm7",
                    "2:",
                    concat!($op, " tmm0, tmm4, tmm5"),
                    concat!($op, " tmm1, tmm4, tmm6"),
                    concat!($op, " tmm2, tmm7, tmm5"),
                    concat!($op, " tmm3, tmm7, tmm6"),
                    "dec {n}",
                    "jnz 2b",
                    "tilerelease",
                    config = in(reg) config.0.as_ptr(),
                    n = inout(reg) n,
                    options(readonly, nostack),
                );
            }
            (n == 0, began.elapsed().as_secs_f64())
        }
        run
    }};
}

/// Independent chains of one precision's widest instruction — enough of them in flight
/// to keep two units busy at any latency of the last decade (4–5 cycles): 16 on
/// AVX-512's registers, 12 on AVX2's (its 16 registers hold the 12 and the operands),
/// four AMX tiles. Without a dot-product instruction for int8, a chain's "instruction" is
/// the multiply-add triple that stands in for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chains {
    /// float32 `vfmadd231ps` on 512-bit registers: 16 lanes, 32 operations.
    Avx512Fma,
    /// float32 `vfmadd231ps` on 256-bit registers: 8 lanes, 16 operations.
    Avx2Fma,
    /// bfloat16 `vdpbf16ps` on 512-bit registers: 16 lanes × 2 products, 64 operations.
    Avx512Bf16,
    /// int8 `vpdpbusd` on 512-bit registers: 16 lanes × 4 products, 128 operations.
    Avx512Vnni,
    /// int8 `vpdpbusd` on 256-bit registers, VEX-encoded (AVX-VNNI: Alder Lake and later,
    /// the N100 mini PCs among them, which have no AVX-512): 64 operations.
    AvxVnni,
    /// int8 `vpmaddubsw` + `vpmaddwd` + `vpaddd` on 512-bit registers (AVX-512 without
    /// VNNI: Skylake-SP Xeons): 64 products, 128 operations a triple.
    Avx512MultiplyAdd,
    /// The same triple on 256-bit registers (AVX2 without VNNI: Zen 2, Zen 3, Intel
    /// before Alder Lake): 64 operations a triple.
    Avx2MultiplyAdd,
    /// bfloat16 AMX `tdpbf16ps` on 16 × 64-byte tiles: 16 × 16 × 32 products.
    AmxBf16,
    /// int8 AMX `tdpbusd`: 16 × 16 × 64 products.
    AmxInt8,
}

impl Chains {
    /// What is timed, as the bench names it.
    pub fn name(self) -> &'static str {
        match self {
            Chains::Avx512Fma => "avx512f vfmadd231ps",
            Chains::Avx2Fma => "avx2 vfmadd231ps",
            Chains::Avx512Bf16 => "avx512_bf16 vdpbf16ps",
            Chains::Avx512Vnni => "avx512_vnni vpdpbusd",
            Chains::AvxVnni => "avx_vnni vpdpbusd",
            Chains::Avx512MultiplyAdd => "avx512bw vpmaddubsw+vpmaddwd+vpaddd",
            Chains::Avx2MultiplyAdd => "avx2 vpmaddubsw+vpmaddwd+vpaddd",
            Chains::AmxBf16 => "AMX tdpbf16ps",
            Chains::AmxInt8 => "AMX tdpbusd",
        }
    }

    /// Operations (a multiply and an add each per product) one instruction (or triple)
    /// does.
    pub fn ops_per_instruction(self) -> f64 {
        match self {
            Chains::Avx512Fma => 32.0,
            Chains::Avx2Fma => 16.0,
            Chains::Avx512Bf16 => 64.0,
            Chains::Avx512Vnni | Chains::Avx512MultiplyAdd => 128.0,
            Chains::AvxVnni | Chains::Avx2MultiplyAdd => 64.0,
            Chains::AmxBf16 => 2.0 * 16.0 * 16.0 * 32.0,
            Chains::AmxInt8 => 2.0 * 16.0 * 16.0 * 64.0,
        }
    }

    /// Whether this CPU runs them: its instructions detected, and for AMX the kernel's
    /// leave for this process to use tile data (asked for once).
    #[cfg(target_arch = "x86_64")]
    pub fn available(self) -> bool {
        match self {
            Chains::Avx512Fma => is_x86_feature_detected!("avx512f"),
            Chains::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            Chains::Avx512Bf16 => is_x86_feature_detected!("avx512bf16"),
            Chains::Avx512Vnni => is_x86_feature_detected!("avx512vnni"),
            Chains::AvxVnni => is_x86_feature_detected!("avxvnni"),
            Chains::Avx512MultiplyAdd => is_x86_feature_detected!("avx512bw"),
            Chains::Avx2MultiplyAdd => is_x86_feature_detected!("avx2"),
            Chains::AmxBf16 => amx_allowed() && super::cpu_flag("amx_bf16"),
            Chains::AmxInt8 => amx_allowed() && super::cpu_flag("amx_int8"),
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn available(self) -> bool {
        false
    }

    /// One timed run: instructions completed per nanosecond, if they ran in full.
    #[cfg(target_arch = "x86_64")]
    pub fn per_ns(self) -> Option<f64> {
        const VECTOR: u64 = 1 << 22;
        const TILE: u64 = 1 << 18;
        if !self.available() {
            return None;
        }
        // SAFETY: each runs only where `available` found its instructions.
        let (instructions, ran, seconds) = unsafe {
            let vector = |(chains, ran, seconds): (u64, bool, f64)| (chains * VECTOR, ran, seconds);
            let tiles = |(ran, seconds): (bool, f64)| (4 * TILE, ran, seconds);
            match self {
                Chains::Avx512Fma => vector(zmm_chains!("avx512f", "vfmadd231ps")(VECTOR)),
                Chains::Avx2Fma => vector(vector_chains!(
                    "avx2,fma", "vfmadd231ps", ymm_reg, __m256, _mm256_setzero_ps,
                    a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11
                )(VECTOR)),
                Chains::Avx512Bf16 => vector(zmm_chains!("avx512bf16", "vdpbf16ps")(VECTOR)),
                Chains::Avx512Vnni => vector(zmm_chains!("avx512vnni", "vpdpbusd")(VECTOR)),
                Chains::AvxVnni => vector(vector_chains!(
                    "avxvnni", "{{vex}} vpdpbusd", ymm_reg, __m256i, _mm256_setzero_si256,
                    a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11
                )(VECTOR)),
                Chains::Avx512MultiplyAdd => vector(multiply_add_chains!(
                    "avx512bw", zmm_reg, __m512i, _mm512_setzero_si512, _mm512_set1_epi16,
                    a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 a12 a13 a14 a15
                )(VECTOR)),
                Chains::Avx2MultiplyAdd => vector(multiply_add_chains!(
                    "avx2", ymm_reg, __m256i, _mm256_setzero_si256, _mm256_set1_epi16,
                    a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11
                )(VECTOR)),
                Chains::AmxBf16 => tiles(tile_chains!("tdpbf16ps")(TILE)),
                Chains::AmxInt8 => tiles(tile_chains!("tdpbusd")(TILE)),
            }
        };
        (ran && seconds > 0.0).then(|| instructions as f64 / seconds / 1e9)
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn per_ns(self) -> Option<f64> {
        None
    }
}

/// Whether the kernel lets this process use AMX's tile data (Linux ≥ 5.16 asks each
/// process to request it: `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, as
/// oneDNN does before its AMX kernels). Asked once.
#[cfg(target_arch = "x86_64")]
fn amx_allowed() -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a request for a permission; no memory is passed.
        let answer = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        answer == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_clock_chains_read_a_real_clock() {
        // The chains ran to the end on every thread and gave a clock; no x86-64 core has
        // run above ~6.2 GHz, so a figure beyond 7 means a chain the core shortcut (as
        // Golden Cove and later fold adds of an immediate, which read 19.9 GHz on a
        // 2.6 GHz Xeon). A preempted run only reads lower, so this holds on a busy host.
        for (chain, measure) in [
            ("adds", add_chain_ghz as fn() -> Option<f64>),
            ("multiplies", multiply_chain_ghz),
        ] {
            let best = (0..5).filter_map(|_| measure()).reduce(f64::max);
            let ghz = best.unwrap_or_else(|| panic!("the chain of {chain} gave no clock"));
            assert!(
                ghz > 0.0 && ghz < 7.0,
                "the chain of {chain} read {ghz} GHz"
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_chain_this_cpu_has_runs_at_a_possible_rate() {
        // At most two vector instructions a cycle (two units; one on a core with one), one
        // multiply-add triple (two multiplies) and one AMX tile product every 16 cycles
        // per unit, at no more than 7 GHz (as the
        // clock chains above): more would mean chains the core shortcut or a wrong count,
        // and a peak too high. Bounded by the clock's ceiling, not by a clock measured
        // beside them, so other tests busy on the same cores cannot tip it: sharing a
        // core only makes a chain slower.
        let all = [
            Chains::Avx512Fma,
            Chains::Avx2Fma,
            Chains::Avx512Bf16,
            Chains::Avx512Vnni,
            Chains::AvxVnni,
            Chains::Avx512MultiplyAdd,
            Chains::Avx2MultiplyAdd,
            Chains::AmxBf16,
            Chains::AmxInt8,
        ];
        let mut ran = Vec::new();
        for chains in all {
            let rate = (0..3).filter_map(|_| chains.per_ns()).reduce(f64::max);
            assert_eq!(rate.is_some(), chains.available(), "{chains:?}");
            let Some(rate) = rate else { continue };
            let per_cycle = match chains {
                Chains::AmxBf16 | Chains::AmxInt8 => 2.5 / 16.0,
                Chains::Avx512MultiplyAdd | Chains::Avx2MultiplyAdd => 1.25,
                _ => 2.5,
            };
            assert!(
                rate > 0.0 && rate < per_cycle * 7.0,
                "{rate} {chains:?} a nanosecond"
            );
            ran.push(chains);
        }
        // Every x86-64 CPU a test runs on has AVX2's FMA and its int8 multiply-adds.
        assert!(ran.contains(&Chains::Avx2Fma), "{ran:?}");
        assert!(ran.contains(&Chains::Avx2MultiplyAdd), "{ran:?}");
    }
}
