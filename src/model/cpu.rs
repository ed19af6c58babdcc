//! What this CPU offers the int8 engine's kernels, probed once, and the kernel set picked from
//! it.
//!
//! Every SIMD kernel of [`super::int8`] is chosen through a [`KernelSet`]: the engine takes
//! one when it is built ([`CpuFeatures::kernels`] of [`CpuFeatures::detected`] by default) and
//! hands it to each kernel, so no kernel probes the CPU itself and a test can run the same
//! layer on every set the machine can execute ([`KernelSet::runnable`]). A kernel given a set
//! this CPU cannot execute panics instead of running instructions the CPU lacks
//! ([`KernelSet::runs_here`]).
//!
//! tract-linalg, whose int8 matrix kernels run the pointwise convolutions on x86_64 and armv7
//! (and on aarch64 with the portable set), and tract itself, when it runs the backbone, pick
//! their own kernels from their own probing: the `fma` and `avx512vnni` fields report what
//! those can use.

use std::fmt;
use std::sync::OnceLock;

/// The instruction-set extensions pinsight's kernels (and tract-linalg's) care about. Fields of
/// another architecture are `false`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// x86_64: 256-bit integer SIMD, used by the int8 engine's own kernels.
    pub avx2: bool,
    /// x86_64: fused multiply-add, used by tract's float kernels.
    pub fma: bool,
    /// x86_64: int8 dot products (VPDPBUSD) in their AVX-512 encoding, with the 256-bit forms
    /// (AVX-512 VL) and 32 vector registers: Ice Lake and later Xeons, AMD Zen 4 and later.
    pub avx512vnni: bool,
    /// x86_64: the same dot products in the VEX encoding (AVX-VNNI, 16 registers): Intel
    /// desktop CPUs from Alder Lake on, which lack AVX-512.
    pub avxvnni: bool,
    /// aarch64: Advanced SIMD (part of the baseline on every aarch64 Linux CPU).
    pub neon: bool,
    /// aarch64: SDOT/UDOT (Cortex-A76 and later, Jetson Orin; not the Pi 4's Cortex-A72).
    pub dotprod: bool,
    /// aarch64: int8 matrix multiply (SMMLA); reported, not used by pinsight's kernels yet.
    pub i8mm: bool,
}

impl CpuFeatures {
    /// The features of the CPU this process runs on, probed on the first call only.
    pub fn detected() -> CpuFeatures {
        static DETECTED: OnceLock<CpuFeatures> = OnceLock::new();
        *DETECTED.get_or_init(CpuFeatures::probe)
    }

    /// No extension at all: the portable kernels everywhere.
    pub fn portable() -> CpuFeatures {
        CpuFeatures::default()
    }

    #[cfg(target_arch = "x86_64")]
    fn probe() -> CpuFeatures {
        CpuFeatures {
            avx2: std::arch::is_x86_feature_detected!("avx2"),
            fma: std::arch::is_x86_feature_detected!("fma"),
            avx512vnni: std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl"),
            avxvnni: std::arch::is_x86_feature_detected!("avxvnni"),
            ..CpuFeatures::default()
        }
    }

    #[cfg(target_arch = "aarch64")]
    fn probe() -> CpuFeatures {
        CpuFeatures {
            neon: std::arch::is_aarch64_feature_detected!("neon"),
            dotprod: std::arch::is_aarch64_feature_detected!("dotprod"),
            i8mm: std::arch::is_aarch64_feature_detected!("i8mm"),
            ..CpuFeatures::default()
        }
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    fn probe() -> CpuFeatures {
        CpuFeatures::default()
    }

    /// Whether every feature in `self` is also in `other`.
    pub fn within(self, other: CpuFeatures) -> bool {
        let has = |mine: bool, theirs: bool| !mine || theirs;
        has(self.avx2, other.avx2)
            && has(self.fma, other.fma)
            && has(self.avx512vnni, other.avx512vnni)
            && has(self.avxvnni, other.avxvnni)
            && has(self.neon, other.neon)
            && has(self.dotprod, other.dotprod)
            && has(self.i8mm, other.i8mm)
    }

    /// The fastest kernel set of the int8 engine that these features allow.
    pub fn kernels(self) -> KernelSet {
        let x86 = cfg!(target_arch = "x86_64") && self.avx2;
        if x86 && self.avx512vnni {
            KernelSet::Avx512Vnni
        } else if x86 && self.avxvnni {
            KernelSet::AvxVnni
        } else if x86 {
            KernelSet::Avx2
        } else if cfg!(target_arch = "aarch64") && self.neon && self.dotprod {
            KernelSet::NeonDotprod
        } else if cfg!(target_arch = "aarch64") && self.neon {
            KernelSet::Neon
        } else {
            KernelSet::Portable
        }
    }
}

/// The architecture, then the features present: `x86_64 avx2 fma`, `aarch64 neon dotprod`.
impl fmt::Display for CpuFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::env::consts::ARCH)?;
        let named = [
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.avx512vnni, "avx512vnni"),
            (self.avxvnni, "avxvnni"),
            (self.neon, "neon"),
            (self.dotprod, "dotprod"),
            (self.i8mm, "i8mm"),
        ];
        for (_, name) in named.iter().filter(|(present, _)| *present) {
            write!(f, " {name}")?;
        }
        Ok(())
    }
}

/// The environment variable that restricts the int8 engine to one kernel set
/// ([`KernelSet::chosen`]).
pub const KERNELS_VARIABLE: &str = "PINSIGHT_KERNELS";

/// Which of its own kernels the int8 engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelSet {
    /// Plain Rust everywhere (what the compiler vectorises for the target's baseline); on
    /// aarch64 the pointwise convolutions then run on tract-linalg.
    Portable,
    /// x86_64: AVX2 depthwise convolution and requantization, AVX2 builds of the element-wise
    /// loops, and the matrix product on VPMADDWD (activations and weights widened to 16 bits).
    Avx2,
    /// x86_64: as [`KernelSet::Avx2`], the matrix product on VEX-encoded VPDPBUSD (AVX-VNNI).
    AvxVnni,
    /// x86_64: as [`KernelSet::Avx2`], the matrix product on 256-bit EVEX VPDPBUSD (AVX-512
    /// VNNI and VL), a larger tile in the 32 vector registers.
    Avx512Vnni,
    /// aarch64: NEON depthwise convolution, requantization and matrix product (SMULL/SADALP).
    Neon,
    /// aarch64: as [`KernelSet::Neon`], the matrix product on SDOT.
    NeonDotprod,
}

impl KernelSet {
    /// Every kernel set, whatever the target.
    pub const ALL: [KernelSet; 6] = [
        KernelSet::Portable,
        KernelSet::Avx2,
        KernelSet::AvxVnni,
        KernelSet::Avx512Vnni,
        KernelSet::Neon,
        KernelSet::NeonDotprod,
    ];

    /// The name `pinsight bench`, `--version` and the logs print, and `PINSIGHT_KERNELS`
    /// takes: `portable`, `avx2`, `avx-vnni`, `avx512-vnni`, `neon`, `neon-dotprod`.
    pub fn name(self) -> &'static str {
        match self {
            KernelSet::Portable => "portable",
            KernelSet::Avx2 => "avx2",
            KernelSet::AvxVnni => "avx-vnni",
            KernelSet::Avx512Vnni => "avx512-vnni",
            KernelSet::Neon => "neon",
            KernelSet::NeonDotprod => "neon-dotprod",
        }
    }

    /// The features this set's kernels execute.
    pub fn needs(self) -> CpuFeatures {
        let none = CpuFeatures::portable();
        match self {
            KernelSet::Portable => none,
            KernelSet::Avx2 => CpuFeatures { avx2: true, ..none },
            KernelSet::AvxVnni => CpuFeatures {
                avx2: true,
                avxvnni: true,
                ..none
            },
            KernelSet::Avx512Vnni => CpuFeatures {
                avx2: true,
                avx512vnni: true,
                ..none
            },
            KernelSet::Neon => CpuFeatures { neon: true, ..none },
            KernelSet::NeonDotprod => CpuFeatures {
                neon: true,
                dotprod: true,
                ..none
            },
        }
    }

    /// Whether this build, on this CPU, can execute the set.
    pub fn runs_here(self) -> bool {
        let built_for = match self {
            KernelSet::Portable => true,
            KernelSet::Avx2 | KernelSet::AvxVnni | KernelSet::Avx512Vnni => {
                cfg!(target_arch = "x86_64")
            }
            KernelSet::Neon | KernelSet::NeonDotprod => cfg!(target_arch = "aarch64"),
        };
        built_for && self.needs().within(CpuFeatures::detected())
    }

    /// Whether the set runs the AVX2 element-wise and depthwise kernels (every x86 set but
    /// portable).
    pub fn avx2(self) -> bool {
        matches!(
            self,
            KernelSet::Avx2 | KernelSet::AvxVnni | KernelSet::Avx512Vnni
        )
    }

    /// Whether the set runs the NEON element-wise and depthwise kernels.
    pub fn neon(self) -> bool {
        matches!(self, KernelSet::Neon | KernelSet::NeonDotprod)
    }

    /// The set named `name` ([`Self::name`]).
    pub fn from_name(name: &str) -> Option<KernelSet> {
        KernelSet::ALL.into_iter().find(|set| set.name() == name)
    }

    /// The set the int8 engine runs by default: the fastest this CPU allows, or the one the
    /// `PINSIGHT_KERNELS` environment variable names (to measure or test another set on one
    /// machine), which must be one this CPU can execute.
    pub fn chosen() -> Result<KernelSet, String> {
        let detected = CpuFeatures::detected();
        let Some(name) = std::env::var_os(KERNELS_VARIABLE) else {
            return Ok(detected.kernels());
        };
        let name = name.to_string_lossy();
        let names = || {
            KernelSet::runnable()
                .iter()
                .map(|set| set.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match KernelSet::from_name(&name) {
            Some(set) if set.runs_here() => Ok(set),
            Some(set) => Err(format!(
                "{KERNELS_VARIABLE}={name}: the {set} kernels need {}, this CPU has {detected}; \
                 this CPU runs {}",
                set.needs(),
                names()
            )),
            None => Err(format!(
                "{KERNELS_VARIABLE}={name}: no such kernel set; this CPU runs {}",
                names()
            )),
        }
    }

    /// The sets this machine can execute, portable first.
    pub fn runnable() -> Vec<KernelSet> {
        KernelSet::ALL
            .into_iter()
            .filter(|set| set.runs_here())
            .collect()
    }

    /// Panics unless [`Self::runs_here`]: the check the kernels' `unsafe` SIMD calls rest on.
    pub(crate) fn assert_runs_here(self) {
        assert!(
            self.runs_here(),
            "the {self} kernels need {}, this CPU has {}",
            self.needs(),
            CpuFeatures::detected()
        );
    }
}

impl fmt::Display for KernelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detected_set_runs_here_and_portable_always_does() {
        let detected = CpuFeatures::detected();
        assert!(detected.kernels().runs_here(), "{detected}");
        assert!(KernelSet::Portable.runs_here());
        assert_eq!(CpuFeatures::portable().kernels(), KernelSet::Portable);
        assert!(KernelSet::runnable().contains(&detected.kernels()));
    }

    #[test]
    fn display_names_the_architecture_and_the_features() {
        let cpu = CpuFeatures {
            avx2: true,
            fma: true,
            ..CpuFeatures::portable()
        };
        assert_eq!(
            cpu.to_string(),
            format!("{} avx2 fma", std::env::consts::ARCH)
        );
        assert_eq!(KernelSet::NeonDotprod.to_string(), "neon-dotprod");
    }
}
