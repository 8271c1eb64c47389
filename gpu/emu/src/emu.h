// Internal interfaces of the emulated CUDA device (libcuda.so.1 of gpu/emu).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../include/cuda_emu_abi.h"
#include "cubin.h"

namespace emu {

// CUresult values used here (cuda.h).
enum Result : int {
    SUCCESS = 0,
    ERROR_INVALID_VALUE = 1,
    ERROR_OUT_OF_MEMORY = 2,
    ERROR_NOT_INITIALIZED = 3,
    ERROR_DEINITIALIZED = 4,
    ERROR_NO_DEVICE = 100,
    ERROR_INVALID_DEVICE = 101,
    ERROR_INVALID_IMAGE = 200,
    ERROR_INVALID_CONTEXT = 201,
    ERROR_NO_BINARY_FOR_GPU = 209,
    ERROR_UNSUPPORTED_PTX_VERSION = 222,
    ERROR_INVALID_SOURCE = 300,
    ERROR_FILE_NOT_FOUND = 301,
    ERROR_INVALID_HANDLE = 400,
    ERROR_NOT_FOUND = 500,
    ERROR_NOT_READY = 600,
    ERROR_ILLEGAL_ADDRESS = 700,
    ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    ERROR_HARDWARE_STACK_ERROR = 714,
    ERROR_MISALIGNED_ADDRESS = 716,
    ERROR_LAUNCH_FAILED = 719,
    ERROR_NOT_PERMITTED = 800,
    ERROR_NOT_SUPPORTED = 801,
    ERROR_UNKNOWN = 999,
};

// Sets the detail of the error being returned on this thread (printed to stderr once, and
// appended by cuGetErrorString) and returns `r`.
Result fail(Result r, const std::string& detail);
// Prints one line prefixed with "cuda-emu: " to stderr.
void log(const std::string& line);

// ---- the device's limits (an H100/H200-class part, sm_90) --------------------------------------
constexpr int kArchMajor = 9;
constexpr int kArchMinor = 0;
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
constexpr unsigned kMaxGridDim[3] = {2147483647u, 65535u, 65535u};
constexpr unsigned kSharedPerBlock = 48 * 1024;        // without opt-in
constexpr unsigned kSharedPerBlockOptin = 227 * 1024;  // 232448
constexpr unsigned kSharedPerSm = 228 * 1024;
constexpr unsigned kRegistersPerBlock = 65536;
constexpr unsigned kRegistersPerSm = 65536;
constexpr unsigned kMaxThreadsPerSm = 2048;
constexpr unsigned kMaxBlocksPerSm = 32;
constexpr unsigned kSmCount = 132;
constexpr unsigned kSubPartitions = 4;  // an SM's register file is four sub-partitions
constexpr unsigned kWarpSize = 32;
// The stack size (local memory per thread) of a new context, as on a GPU.
constexpr size_t kDefaultStack = 1024;
// The most local memory a thread can have (sm_90: 512 KiB).
constexpr size_t kMaxStack = 512 * 1024;
// The device's memory: 80 GiB, or CUDA_EMU_MEMORY bytes (read once).
unsigned long long total_memory();

// The registers the hardware's launch check counts for a block (its warps rounded up to the SM's
// sub-partitions), and the warps one SM holds as far as registers go (memory.cpp).
unsigned long long block_registers(unsigned regs_per_thread, unsigned threads);
unsigned warps_by_registers(unsigned regs_per_thread);

// ---- memory (memory.cpp) -----------------------------------------------------------------------
struct Allocation {
    uintptr_t base;   // what the program sees (CUdeviceptr)
    size_t size;      // requested bytes
    void* map;        // the mapping (guard pages around the data) or malloc'd block
    size_t map_len;
    uint64_t serial;  // allocation number, for messages
    int device;
};

// Every live device allocation. Thread-safe.
class Memory {
   public:
    // Allocates `size` bytes (size 0 allowed), filled with garbage. OOM when over the device's
    // total memory.
    Result alloc(int device, size_t size, uintptr_t* out);
    // Frees an allocation of `device` (the current context's). Freeing another device's memory
    // is refused: cudarc frees on the legacy default stream, which names the current context's
    // stream, so such a free would not be ordered with the owning device's work.
    Result free(uintptr_t p, int device);
    // Checks that [p, p + len) lies inside one live allocation.
    bool contains(uintptr_t p, size_t len, std::string* why) const;
    // Every live allocation, by base address (the race checker's view of device memory).
    std::vector<Allocation> snapshot() const;
    // Describes an address relative to the nearest allocation (for fault messages).
    std::string describe(uintptr_t p) const;
    // Frees every allocation of `device` (context destroyed).
    void release_device(int device);
    size_t in_use() const;
    // Local memory (the threads' stacks) a context took beyond its default: counted against the
    // device's total like allocations (cuMemGetInfo, out of memory), but not in in_use/peak,
    // which count allocations only. OOM when it does not fit.
    Result reserve_local(size_t bytes);
    void release_local(size_t bytes);
    size_t local_reserved() const;
    // The device's memory less allocations and local memory, read under one lock (two reads
    // could straddle a reservation and wrap around).
    size_t free_bytes() const;
    size_t peak() const;
    void reset_peak();
    uint64_t count() const;

   private:
    std::string describe_unlocked(uintptr_t p, size_t len) const;
    std::string describe_locked_free(uintptr_t p) const;
    mutable std::mutex mu_;
    std::map<uintptr_t, Allocation> live_;
    size_t in_use_ = 0;
    size_t local_ = 0;
    size_t peak_ = 0;
    uint64_t serial_ = 0;
};
Memory& memory();

// Fills `len` bytes with pseudo-random garbage (a fresh pattern each call).
void fill_garbage(void* p, size_t len);
// Maps `len` bytes with inaccessible guard pages on both sides, the data ending right at the
// upper guard (start aligned to 16). Under AddressSanitizer, malloc instead (ASan's redzones).
void* guarded_map(size_t len, void** map, size_t* map_len);
void guarded_unmap(void* map, size_t map_len);

// ---- counters (memory.cpp) ---------------------------------------------------------------------
// The field multiplications of one kernel's launches (counted per thread by the kernels), and
// the 32-byte field elements they loaded and stored.
struct MulStats {
    uint64_t muls = 0;      // every thread's, summed
    uint64_t longest = 0;   // the most one thread made in one launch
    uint64_t chain = 0;     // each launch's longest thread, summed over the launches
    uint64_t elements = 0;  // every thread's element loads and stores, summed
};

// The shape of one kernel's launches against the device they would run on: how many blocks
// one SM holds at the launch's configuration (registers, threads, shared memory: the occupancy
// calculator's answer) and how many waves the grid takes over kSmCount SMs. What a GPU's
// occupancy would be, from the real CUBIN's resources; not a time.
struct LaunchStats {
    uint64_t launches = 0;
    uint64_t blocks = 0;      // every launch's grid, summed
    uint64_t waves = 0;       // ceil(blocks / (per-SM blocks · kSmCount)), summed
    uint64_t slots = 0;       // waves · per-SM blocks · kSmCount, summed: the block places offered
    uint64_t warps_min = 0;   // fewest warps one SM holds at a launch's configuration
    uint64_t warps_max = 0;   // most
};

struct Counters {
    std::atomic<uint64_t> htod_bytes{0}, dtoh_bytes{0}, dtod_bytes{0}, memset_bytes{0};
    std::atomic<uint64_t> htod_copies{0}, dtoh_copies{0}, launches{0}, allocations{0};
    // Wall time (ns) during which the emulator was doing what a GPU and its copy engines would
    // do: kernels, copies, memsets, filling and unmapping allocations (DeviceTimer).
    std::atomic<uint64_t> device_ns{0};
    std::mutex mu;
    std::map<std::string, LaunchStats> launches_per_kernel;
    std::map<std::string, MulStats> muls_per_kernel;
};
Counters& counters();

// Marks its scope as device work: counters().device_ns grows by the wall time during which at
// least one thread is inside such a scope (the union of the scopes, so calls on several host
// threads at once count once; nested scopes on one thread, an entry point calling another,
// count at the outermost).
class DeviceTimer {
public:
    DeviceTimer() : outer_(depth()++ == 0) {
        if (!outer_) return;
        Busy& b = busy();
        std::lock_guard<std::mutex> g(b.mu);
        if (b.active++ == 0) b.since = std::chrono::steady_clock::now();
    }
    ~DeviceTimer() {
        --depth();
        if (!outer_) return;
        Busy& b = busy();
        std::lock_guard<std::mutex> g(b.mu);
        if (--b.active == 0) {
            counters().device_ns += (uint64_t)std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now() - b.since)
                                        .count();
        }
    }
    DeviceTimer(const DeviceTimer&) = delete;
    DeviceTimer& operator=(const DeviceTimer&) = delete;

private:
    struct Busy {
        std::mutex mu;
        unsigned active = 0;
        std::chrono::steady_clock::time_point since;
    };
    static Busy& busy() {
        static Busy b;
        return b;
    }
    static unsigned& depth() {
        static thread_local unsigned d = 0;
        return d;
    }
    bool outer_;
};

// ---- kernels and launches (exec.cpp) -----------------------------------------------------------
struct Function {
    std::string name;
    CubinKernel meta;                   // from the CUBIN
    const EmuKernelEntry* host;         // the host build of the kernel
    unsigned max_dynamic_shared;        // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    unsigned max_threads() const;       // CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK
};

struct LaunchConfig {
    unsigned grid[3];
    unsigned block[3];
    unsigned shared_bytes;
};

// Checks the configuration against the device's and the kernel's limits and the pointer
// parameters against live allocations; returns the error (with detail) of a bad launch.
Result check_launch(const Function& f, const LaunchConfig& cfg, void** params);
// Called on a kernel's thread (inside a launch): fails the launch with `r` and `detail` (after
// the kernel, block and thread), as a fault does; does not return.
[[noreturn]] void kernel_fault(Result r, std::string detail);
// Runs the kernel to completion. A fault inside it (illegal address, barrier divergence, stack
// overflow) is returned as ERROR_ILLEGAL_ADDRESS / ERROR_LAUNCH_FAILED with the detail set.
Result execute(const Function& f, const LaunchConfig& cfg, void** params);

// Thread-order modes (CUDA_EMU_ORDER): forward, reverse, shuffle.
enum class Order { Forward, Reverse, Shuffle };
Order order_mode();

// Kernel libraries: the host builds of the kernels, searched by name.
const EmuKernelEntry* find_host_kernel(const std::string& name, std::string* searched);

}  // namespace emu
