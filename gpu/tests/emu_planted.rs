//! The emulated CUDA device proves that it can fail: bugs are planted into copies of the real
//! kernels and each must be caught.
//!
//! - a removed `__syncthreads` in `ntt_pass` (the one after each stage's twiddles, which also
//!   ends the shared-memory load before the first stage): wrong NTT in every thread order;
//! - a removed `__syncthreads` in `scan_block` (the MSM's prefix sum): a race that changes the
//!   MSM in at least one of the orders `CUDA_EMU_ORDER=forward|reverse|shuffle`;
//! - half of `scan_block`'s threads returning before its barrier: barrier divergence;
//! - half of `scan_block`'s threads waiting at another barrier than the rest: barrier divergence,
//!   both barriers' source lines named;
//! - `msm_scatter`'s shuffle skipped by the lanes without a bucket (a zero digit), while its mask
//!   names the whole warp: warp divergence, the shuffle's and the next match's source lines named;
//! - `msm_histogram`'s match with a mask that leaves out lane 31: a malformed warp call;
//! - an out-of-bounds store in `ntt_pass`: an illegal-address fault naming the allocation;
//! - an element read 4 bytes off its place in `ntt_pass` (a misaligned 128-bit load on a GPU): a
//!   misaligned-address fault;
//! - `ntt_pass`'s `__launch_bounds__` narrowed from 512 to 256 threads, launched with 512: a launch
//!   error;
//! - 48 KiB of static shared memory added to `ntt_pass` (plus its 48 KiB dynamic): a launch error;
//! - the carry into the top limb of the Montgomery product's multiply-accumulate row dropped in
//!   `field.cuh`'s inline PTX (`madc.hi.cc` made `mad.hi.cc`): a wrong NTT in every order. The
//!   portable C++ path has no such instruction: this shows the emulator runs the PTX path (its
//!   build translates the inline PTX into C++, `gpu/emu/tools/gen_kernels.py`).
//!
//! Under the race checker (the `racecheck` build of the emulator, `gpu/emu/src/racecheck.h`), in
//! all three orders: the two removed barriers above (a data race naming both source lines, or a read
//! of shared memory before any thread wrote it), `msm_segment_count`'s `atomicMax` made a plain
//! read and write (a race on device memory that no thread order of the plain emulator shows),
//! the scatter's leader handing its place to its lanes through shared memory without
//! `__syncwarp` (a race between a warp's lanes), and the same exchange with `__syncwarp`, which
//! must pass. The unmodified kernels must pass the race checker in all three orders too.
//!
//! Each plant runs in a child process (this test binary again, test `planted_child`, with
//! `EMU_PLANT` set): the mutated kernel library is loaded through `CUDA_EMU_KERNELS`, the CUBIN is
//! compiled by NVRTC from the same mutated source (`CudaBackend::with_kernel_sources`), and a
//! fault stays in that process. A header's plant (the PTX one) builds the NTT unit's library over
//! the mutated header; its CUBINs are the unmodified ones (the plant changes no kernel's
//! parameters or resources, which is what the emulator checks a launch against). Plants build
//! and run on as many threads as there are cores (each compiles with NVRTC and the host compiler). The unmodified kernels run the same checks as a control and must
//! pass in every order. Without a CUDA driver the test skips (fails with
//! `PROVER_REQUIRE_GPU=1`); on a real GPU it skips (it is about the emulator).

use std::path::{Path, PathBuf};
use std::process::Command;

use ff::Field;
use gpu::kernels::{Source, FIELD, HEADERS, MSM, NTT};
use gpu::{
    Bases, ComputeBackend, CpuBackend, CudaBackend, Direction, Domain, Emulator, Fr, G1Affine, G1,
};
use group::{Curve, Group};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct Plant {
    name: &'static str,
    unit: Source,
    from: &'static str,
    to: &'static str,
}

const PLANTS: &[Plant] = &[
    Plant {
        name: "ntt_missing_barrier",
        unit: NTT,
        from: "ntt_twiddle(tw_lo, tw_hi, tw_bits, e));\n        }\n        __syncthreads();\n",
        to: "ntt_twiddle(tw_lo, tw_hi, tw_bits, e));\n        }\n",
    },
    Plant {
        name: "scan_missing_barrier",
        unit: MSM,
        from: "        u32 x = t >= off ? sh[t - off] : 0u;\n        __syncthreads();\n",
        to: "        u32 x = t >= off ? sh[t - off] : 0u;\n",
    },
    Plant {
        name: "scan_divergent_barrier",
        unit: MSM,
        from: "    sh[t] = v;\n    __syncthreads();\n",
        to: "    sh[t] = v;\n    if (t >= 256u) return;\n    __syncthreads();\n",
    },
    Plant {
        name: "scan_two_barriers",
        unit: MSM,
        from: "    sh[t] = v;\n    __syncthreads();\n",
        to: "    sh[t] = v;\n    if (t >= 256u) {\n        __syncthreads();\n    } else {\n        __syncthreads();\n    }\n",
    },
    Plant {
        name: "msm_divergent_shuffle",
        unit: MSM,
        from: "        u32 pos = __shfl_sync(0xffffffffu, first, (int)leader)",
        to: "        u32 pos = key == MSM_NO_BUCKET ? 0u : __shfl_sync(0xffffffffu, first, (int)leader)",
    },
    Plant {
        name: "msm_mask_without_caller",
        unit: MSM,
        from: "        u32 peers = __match_any_sync(0xffffffffu, key);\n        u32 lane = threadIdx.x & 31u;\n        if (key",
        to: "        u32 peers = __match_any_sync(0x7fffffffu, key);\n        u32 lane = threadIdx.x & 31u;\n        if (key",
    },
    Plant {
        name: "ntt_out_of_bounds",
        unit: NTT,
        from: "        v.store(data + 8u * idx);\n",
        to: "        v.store(data + 8u * (idx + 1u));\n",
    },
    Plant {
        name: "ntt_misaligned",
        unit: NTT,
        from: "    fr_t v = fr_t::load(src + 8u * from);\n",
        to: "    fr_t v = fr_t::load(src + 8u * from + 1u);\n",
    },
    Plant {
        name: "ntt_launch_bounds",
        unit: NTT,
        from: "#define NTT_BOUNDS __launch_bounds__(512, NTT_MIN_BLOCKS)",
        to: "#define NTT_BOUNDS __launch_bounds__(256, NTT_MIN_BLOCKS)",
    },
    Plant {
        name: "ntt_static_shared",
        unit: NTT,
        from: "    extern __shared__ u32 sh[];\n",
        to: "    extern __shared__ u32 sh[];\n    __shared__ u32 planted[12288];\n    planted[threadIdx.x] = 0u;\n    if (planted[(threadIdx.x + 1u) % blockDim.x] == 7u) data[0] = 0u;\n",
    },
    Plant {
        name: "ptx_carry_dropped",
        unit: FIELD,
        from: r#""madc.hi.cc.u32 %8, %17, %18, %8;\n\t""#,
        to: r#""mad.hi.cc.u32  %8, %17, %18, %8;\n\t""#,
    },
];

/// Plants for the race checker only (the `racecheck` build of the emulator, which also runs the
/// two missing-barrier plants above): races that no thread order of the plain emulator shows,
/// because its threads run one at a time between barriers and warp calls.
const RACE_PLANTS: &[Plant] = &[
    // Each warp's lane 0 keeps the largest segment count with a plain read and write instead of
    // atomicMax: a race between warps and blocks on device memory, whose result is right whenever
    // the threads happen to run one after the other.
    Plant {
        name: "segment_max_not_atomic",
        unit: MSM,
        from: "    if ((threadIdx.x & 31u) == 0u && v > 0u) atomicMax(most, v);\n",
        to: "    if ((threadIdx.x & 31u) == 0u && v > *most) *most = v;\n",
    },
    // The leader's place handed to its lanes through shared memory instead of a shuffle, with no
    // __syncwarp between the write and the reads: the lanes of a warp do not run in lockstep.
    Plant {
        name: "scatter_exchange_without_syncwarp",
        unit: MSM,
        from: "        u32 pos = __shfl_sync(0xffffffffu, first, (int)leader)",
        to: "        __shared__ u32 planted_first[1024];\n        if (lane == leader) planted_first[threadIdx.x] = first;\n        u32 pos = planted_first[(threadIdx.x & ~31u) + leader]",
    },
    // Each thread of scan_add also reads the element one block below its own, which that block's
    // thread of the same index reads and rewrites: a race between blocks on device memory. In
    // reverse block order the upper block reads first; the checker must keep that read when the
    // lower block's thread (same thread index) reads the element before writing it.
    Plant {
        name: "scan_add_reads_the_block_below",
        unit: MSM,
        from: "    data[i] += block_offsets[i >> 10];\n",
        to: "    data[i] += block_offsets[i >> 10] + (i >= blockDim.x ? data[i - blockDim.x] : 0u);\n",
    },
    // The same exchange with __syncwarp between: correct, and the race checker must say nothing
    // (the next round's __match_any_sync orders the reads before the next write).
    Plant {
        name: "scatter_exchange_with_syncwarp",
        unit: MSM,
        from: "        u32 pos = __shfl_sync(0xffffffffu, first, (int)leader)",
        to: "        __shared__ u32 planted_first[1024];\n        if (lane == leader) planted_first[threadIdx.x] = first;\n        __syncwarp();\n        u32 pos = planted_first[(threadIdx.x & ~31u) + leader]",
    },
];

/// What runs under the race checker: the two missing barriers, then the race plants.
const RACECHECK_RUNS: &[&str] = &[
    "ntt_missing_barrier",
    "scan_missing_barrier",
    "segment_max_not_atomic",
    "scan_add_reads_the_block_below",
    "scatter_exchange_without_syncwarp",
    "scatter_exchange_with_syncwarp",
];

const ORDERS: &[&str] = &["forward", "reverse", "shuffle"];

fn plant(name: &str) -> Option<&'static Plant> {
    PLANTS.iter().chain(RACE_PLANTS).find(|p| p.name == name)
}

/// The mutated source of a plant (the pattern must occur exactly once).
fn mutated(p: &Plant) -> String {
    assert_eq!(
        p.unit.text.matches(p.from).count(),
        1,
        "plant {}: the pattern to replace is not in {} exactly once (kernel changed?)",
        p.name,
        p.unit.name
    );
    p.unit.text.replacen(p.from, p.to, 1)
}

/// In the child: runs the operation the plant breaks, on the (mutated) CUDA backend, and prints
/// one `PLANT-RESULT:` line: `ok` (matches the CPU), `mismatch`, or `error: ...`.
#[test]
fn planted_child() {
    let Ok(name) = std::env::var("EMU_PLANT") else {
        eprintln!("runs only as a child of planted_bugs_are_caught (EMU_PLANT unset)");
        return;
    };
    let (msm, ntt, msm_op) = if name == "control" || name == "control_msm" {
        (MSM, NTT, name == "control_msm")
    } else {
        let p = plant(&name).unwrap_or_else(|| panic!("unknown plant {name}"));
        let text: &'static str = Box::leak(mutated(p).into_boxed_str());
        let src = Source {
            name: p.unit.name,
            text,
        };
        if is_header(p) {
            // NVRTC compiles the unmodified units; the emulated NTT runs the mutated header.
            (MSM, NTT, false)
        } else if p.unit.name == MSM.name {
            (src, NTT, true)
        } else {
            (MSM, src, false)
        }
    };
    let outcome = (|| -> Result<bool, gpu::BackendError> {
        let gpu = CudaBackend::with_kernel_sources(0, msm, ntt)?;
        let mut rng = ChaCha20Rng::seed_from_u64(77);
        if msm_op {
            let n = 1025;
            let seeds: Vec<G1> = (0..8).map(|_| G1::random(&mut rng)).collect();
            let proj: Vec<G1> = (0..n)
                .map(|i| seeds[i % 8] * Fr::from(i as u64 + 1))
                .collect();
            let mut pts = vec![G1Affine::default(); n];
            G1::batch_normalize(&proj, &mut pts);
            let bases = Bases::new(pts);
            let s: Vec<Fr> = (0..n).map(|_| Fr::random(&mut rng)).collect();
            let want = CpuBackend::new().msm(&bases, &s)?;
            let got = gpu.msm(&bases, &s)?;
            Ok(got.to_affine() == want.to_affine())
        } else {
            let d = Domain::new(10)?;
            let x: Vec<Fr> = (0..d.size()).map(|_| Fr::random(&mut rng)).collect();
            let mut want = x.clone();
            CpuBackend::new().ntt(&mut want, &d, Direction::Forward)?;
            let mut got = x;
            gpu.ntt(&mut got, &d, Direction::Forward)?;
            Ok(got == want)
        }
    })();
    match outcome {
        Ok(true) => println!("PLANT-RESULT: ok"),
        Ok(false) => println!("PLANT-RESULT: mismatch"),
        Err(e) => println!("PLANT-RESULT: error: {e}"),
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn is_header(p: &Plant) -> bool {
    p.unit.name.ends_with(".cuh")
}

/// Builds the kernel library of a plant with gpu/emu/build: the mutated unit only, or for a
/// header the NTT unit over the headers with that one mutated; for the race checker when
/// `racecheck`.
fn build_plant_lib(p: &Plant, dir: &Path, racecheck: bool) -> PathBuf {
    let unit_dir = dir.join(if racecheck {
        format!("{}-racecheck", p.name)
    } else {
        p.name.to_string()
    });
    std::fs::create_dir_all(&unit_dir).expect("plant directory");
    let lib = unit_dir.join("libcuda_emu_kernels.so");
    let mut cmd = Command::new(repo().join("gpu/emu/build"));
    cmd.arg("kernels");
    if racecheck {
        cmd.arg("--racecheck");
    }
    let src = if is_header(p) {
        for h in HEADERS {
            let text = if h.name == p.unit.name {
                mutated(p)
            } else {
                h.text.to_string()
            };
            std::fs::write(unit_dir.join(h.name), text).expect("write a header");
        }
        cmd.arg("--headers").arg(&unit_dir);
        let src = unit_dir.join(NTT.name);
        std::fs::write(&src, NTT.text).expect("write the NTT unit");
        src
    } else {
        let src = unit_dir.join(p.unit.name);
        std::fs::write(&src, mutated(p)).expect("write the mutated unit");
        src
    };
    let out = cmd.arg(&lib).arg(&src).output().expect("run gpu/emu/build");
    assert!(
        out.status.success(),
        "building the kernel library of plant {}: {}",
        p.name,
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

fn child(plant: &str, kernels: Option<&Path>, order: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "planted_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("EMU_PLANT", plant)
    .env("CUDA_EMU_ORDER", order)
    .env("CUDA_EMU_SEED", "12345");
    if let Some(k) = kernels {
        cmd.env("CUDA_EMU_KERNELS", k);
    }
    cmd
}

/// The result line of a child run with the kernels `kernels` (default: the driver's), on the
/// emulator build in `driver_dir` (default: the one this process loaded, LD_LIBRARY_PATH).
fn run_child(plant: &str, kernels: Option<&Path>, order: &str, driver_dir: Option<&str>) -> String {
    let mut cmd = child(plant, kernels, order);
    if let Some(d) = driver_dir {
        cmd.env("LD_LIBRARY_PATH", d);
    }
    let out = cmd.output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("PLANT-RESULT: ").map(|(_, r)| r.trim()))
        .unwrap_or_else(|| {
            panic!("plant {plant} ({order}): the child printed no result\nstdout:\n{stdout}\nstderr:\n{stderr}")
        });
    line.to_string()
}

#[test]
fn planted_bugs_are_caught() {
    if matches!(gpu::cuda_driver_probe(), gpu::DriverProbe::NotFound { .. }) {
        assert!(
            std::env::var("PROVER_REQUIRE_GPU").ok().as_deref() != Some("1"),
            "PROVER_REQUIRE_GPU=1 but no CUDA driver (the emulator: put target/cuda-emu/release on LD_LIBRARY_PATH)"
        );
        eprintln!("no CUDA driver; planted-bug test SKIPPED");
        return;
    }
    if Emulator::open().is_none() {
        eprintln!(
            "a real CUDA driver is loaded; the planted-bug test is about the emulator: SKIPPED"
        );
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("emu-planted");

    // Control: the real kernels pass the same checks in every order.
    for order in ORDERS {
        for control in ["control", "control_msm"] {
            let r = run_child(control, None, order, None);
            assert_eq!(
                r, "ok",
                "{control} ({order}): the unmodified kernels failed: {r}"
            );
        }
    }
    // The drivers the plants' libraries link against, built (when stale) before those are built in
    // parallel; the unmodified kernels must pass the race checker in every order.
    build_emulator("release");
    let racecheck_dir = build_emulator("racecheck");
    for order in ORDERS {
        for control in ["control", "control_msm"] {
            let r = run_child(control, None, order, Some(&racecheck_dir));
            assert_eq!(
                r, "ok",
                "{control} ({order}, race checker): the unmodified kernels failed: {r}"
            );
        }
    }
    // Each plant (then each race-checker run): its library built, then its three orders run, on
    // a free thread.
    let jobs: Vec<(&Plant, bool)> = PLANTS
        .iter()
        .map(|p| (p, false))
        .chain(
            RACECHECK_RUNS
                .iter()
                .map(|n| (plant(n).expect("a race-checker plant"), true)),
        )
        .collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(jobs.len()));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(p, racecheck)) = jobs.get(i) else {
                    break;
                };
                let lib = build_plant_lib(p, &dir, racecheck);
                let driver = racecheck.then_some(racecheck_dir.as_str());
                let results: Vec<(&str, String)> = ORDERS
                    .iter()
                    .map(|o| (*o, run_child(p.name, Some(&lib), o, driver)))
                    .collect();
                done.lock()
                    .expect("a plant's thread panicked")
                    .push((i, results));
            });
        }
    });
    let mut done = done.into_inner().expect("a plant's thread panicked");
    assert_eq!(done.len(), jobs.len(), "a plant's thread panicked");
    done.sort_by_key(|(i, _)| *i);
    let mut table = Vec::new();
    for (i, results) in done {
        let (p, racecheck) = jobs[i];
        if racecheck {
            for (o, r) in &results {
                table.push(format!("{:<22} {:<8} (race checker) {r}", p.name, o));
            }
            expect_racecheck(p.name, &results);
            continue;
        }
        for (o, r) in &results {
            table.push(format!("{:<22} {:<8} {r}", p.name, o));
        }
        let caught = |r: &String| r != "ok";
        match p.name {
            "ntt_missing_barrier" => {
                for (o, r) in &results {
                    assert!(caught(r), "{} not caught in {o} order", p.name);
                }
            }
            "scan_missing_barrier" => {
                assert!(
                    results.iter().any(|(_, r)| caught(r)),
                    "{}: the race changed nothing in any order: {results:?}",
                    p.name
                );
            }
            "scan_divergent_barrier" => {
                for (o, r) in &results {
                    assert!(
                        r.contains("barrier divergence") && r.contains("has returned"),
                        "{} ({o}): {r}",
                        p.name
                    );
                }
            }
            "scan_two_barriers" => {
                for (o, r) in &results {
                    assert!(
                        r.contains("barrier divergence")
                            && r.contains("waits at __syncthreads (msm.cu:")
                            && r.contains("waits at another __syncthreads (msm.cu:"),
                        "{} ({o}): {r}",
                        p.name
                    );
                }
            }
            "msm_divergent_shuffle" => {
                for (o, r) in &results {
                    assert!(
                        r.contains("warp divergence")
                            && r.contains("waits at __shfl_sync (msm.cu:")
                            && r.contains("waits at __match_any_sync (msm.cu:"),
                        "{} ({o}): {r}",
                        p.name
                    );
                }
            }
            "msm_mask_without_caller" => {
                for (o, r) in &results {
                    assert!(
                        r.contains("kernel msm_histogram")
                            && r.contains("calls __match_any_sync: its mask 0x7fffffff leaves out its own lane 31 (msm.cu:"),
                        "{} ({o}): {r}",
                        p.name
                    );
                }
            }
            "ntt_out_of_bounds" => {
                for (o, r) in &results {
                    assert!(
                        r.contains("illegal memory access")
                            && r.contains("past the end of allocation"),
                        "{} ({o}): {r}",
                        p.name
                    );
                }
            }
            "ntt_misaligned" => {
                for (o, r) in &results {
                    assert!(
                        r.contains("misaligned address")
                            && r.contains("16-byte access")
                            && r.contains("at offset"),
                        "{} ({o}): {r}",
                        p.name
                    );
                }
            }
            "ntt_launch_bounds" => {
                for (o, r) in &results {
                    assert!(
                        r.contains("__launch_bounds__ of 256"),
                        "{} ({o}): {r}",
                        p.name
                    );
                }
            }
            "ntt_static_shared" => {
                for (o, r) in &results {
                    assert!(r.contains("dynamic shared memory"), "{} ({o}): {r}", p.name);
                }
            }
            "ptx_carry_dropped" => {
                for (o, r) in &results {
                    assert_eq!(r, "mismatch", "{} ({o})", p.name);
                }
            }
            other => panic!("no expectation for plant {other}"),
        }
    }
    table.push(asan_catches_the_out_of_bounds_store(&dir));
    println!("planted bugs on the emulated device (plant, order, result):");
    for l in table {
        println!("  {l}");
    }
}

/// What the race checker must say about each of its runs, in every order.
fn expect_racecheck(name: &str, results: &[(&str, String)]) {
    for (o, r) in results {
        let ok = match name {
            // Without the barrier a thread reads its partner's element before the partner wrote
            // it (then: garbage), or a twiddle slot another thread writes in the same interval.
            "ntt_missing_barrier" => {
                r.contains("kernel ntt_pass")
                    && (r.contains("before any thread of its block wrote it")
                        || r.contains("data race on byte"))
                    && r.contains("ntt.cu:")
            }
            "scan_missing_barrier" => {
                r.contains("kernel scan_block")
                    && r.contains("data race on byte")
                    && r.contains("of a static __shared__ array of 2048 bytes")
                    && r.matches("msm.cu:").count() == 2
            }
            "segment_max_not_atomic" => {
                r.contains("kernel msm_segment_count")
                    && r.contains("data race on device memory")
                    && r.matches("msm.cu:").count() == 2
            }
            // Forward, the leader (the group's lowest lane) writes before its lanes read: a race
            // within the warp; in another order a lane may read first: an uninitialised read.
            "scatter_exchange_without_syncwarp" => {
                r.contains("kernel msm_scatter")
                    && ((r.contains("data race on byte")
                        && r.contains("lanes do not run in lockstep"))
                        || (*o != "forward"
                            && r.contains("before any thread of its block wrote it")))
            }
            "scan_add_reads_the_block_below" => {
                r.contains("kernel scan_add")
                    && r.contains("data race on device memory")
                    && r.contains("blocks of one launch are not ordered")
            }
            "scatter_exchange_with_syncwarp" => r == "ok",
            other => panic!("no race-checker expectation for plant {other}"),
        };
        assert!(ok, "{name} ({o}, race checker): {r}");
    }
}

/// Builds a variant of the emulator (`asan`, `racecheck`) and returns its directory.
fn build_emulator(variant: &str) -> String {
    run_build(&[variant])
}

/// Runs gpu/emu/build with `args` and returns the last line it printed (the output's path).
fn run_build(args: &[&str]) -> String {
    let out = Command::new(repo().join("gpu/emu/build"))
        .args(args)
        .output()
        .expect("run gpu/emu/build");
    assert!(
        out.status.success(),
        "gpu/emu/build {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// The AddressSanitizer build of the emulator (no guard pages there: ASan's redzones) reports
/// the planted out-of-bounds store by itself and stops the process.
fn asan_catches_the_out_of_bounds_store(dir: &Path) -> String {
    let p = plant("ntt_out_of_bounds").expect("plant");
    let driver_dir = build_emulator("asan");
    let unit_dir = dir.join("asan");
    std::fs::create_dir_all(&unit_dir).expect("plant directory");
    let src = unit_dir.join(p.unit.name);
    std::fs::write(&src, mutated(p)).expect("write the mutated unit");
    let lib = unit_dir.join("libcuda_emu_kernels.so");
    run_build(&[
        "kernels",
        "--asan",
        lib.to_str().expect("utf-8 path"),
        src.to_str().expect("utf-8 path"),
    ]);
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    let runtime = Command::new(&cxx)
        .arg("-print-file-name=libasan.so")
        .output()
        .expect("ask the compiler for libasan");
    let runtime = String::from_utf8_lossy(&runtime.stdout).trim().to_string();
    assert!(
        Path::new(&runtime).is_absolute(),
        "{cxx} does not know where libasan.so is ({runtime})"
    );
    let out = child(p.name, Some(&lib), "forward")
        .env("LD_LIBRARY_PATH", &driver_dir)
        .env("LD_PRELOAD", &runtime)
        .env("ASAN_OPTIONS", "detect_leaks=0")
        .output()
        .expect("run the child test under ASan");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the ASan child must stop at the overflow"
    );
    assert!(
        stderr.contains("AddressSanitizer: heap-buffer-overflow") && stderr.contains("ntt_pass"),
        "ASan did not report the overflow in ntt_pass:\n{stderr}"
    );
    format!(
        "{:<22} {:<8} AddressSanitizer: heap-buffer-overflow in ntt_pass (asan build)",
        p.name, "forward"
    )
}
