// The interface between the emulator's driver (libcuda.so.1) and its kernel libraries: what a
// thread sees, and how a kernel is described and called. Included by both sides.
#pragma once

#include <cstddef>

struct uint3 {
    unsigned int x, y, z;
};
typedef uint3 dim3;

// What one emulated thread sees. Owned by the driver; valid while the thread runs.
struct EmuThreadCtx {
    uint3 threadIdx;
    uint3 blockIdx;
    uint3 blockDim;
    uint3 gridDim;
    // The field multiplications this thread has made (emu_count_mul, called by the kernels'
    // field.cuh); the driver zeroes it when the thread starts and sums it per launch.
    unsigned long long mul_ops;
    // The 32-byte field elements this thread has loaded or stored (emu_count_element, called by
    // field.cuh's Fp::load and Fp::store); zeroed and summed like mul_ops.
    unsigned long long element_ops;
};

// The operations of cuEmuWarpSync.
enum EmuWarpOp : unsigned {
    EMU_WARP_SYNC = 0,   // __syncwarp
    EMU_WARP_SHFL_IDX,   // __shfl_sync
    EMU_WARP_SHFL_UP,    // __shfl_up_sync
    EMU_WARP_SHFL_DOWN,  // __shfl_down_sync
    EMU_WARP_SHFL_XOR,   // __shfl_xor_sync
    EMU_WARP_BALLOT,     // __ballot_sync
    EMU_WARP_ANY,        // __any_sync
    EMU_WARP_ALL,        // __all_sync
    EMU_WARP_MATCH_ANY,  // __match_any_sync
    EMU_WARP_OPS
};

// One kernel of a kernel library, as the driver sees it.
struct EmuKernelEntry {
    const char* name;
    // Calls the kernel with its parameters unpacked from cuLaunchKernel's `kernelParams`.
    void (*invoke)(void* fn, void** params);
    void* fn;
    unsigned nparams;
    unsigned param_size[32];
    unsigned char param_is_pointer[32];
};

extern "C" {
// Provided by the emulator's driver (libcuda.so.1).
const EmuThreadCtx* cuEmuThreadCtx(void);
void cuEmuSyncthreads(const char* file, unsigned line);
void* cuEmuDynamicShared(void);
void* cuEmuStaticShared(void* storage, size_t bytes, unsigned long long* generation);
// A warp-synchronous call (the warp intrinsics of cuda_emu_kernel.h): the calling thread waits
// until every thread that `mask` names in its warp (threads 32w..32w+31 of the block, by linear
// index) has reached the same call with the same mask, or has returned; then the driver computes
// every member's result at once from their `value`s. `arg` is the source lane, delta or lane mask
// of a shuffle, `width` its segment width (a power of two up to 32); `file` and `line` name the
// call (threads of a group must be at the same one, else it is divergence). A call whose mask
// leaves out the caller, a bad width, or a warp that can never complete the call (a named thread
// waits at __syncthreads or at another warp call) fails the launch with CUDA_ERROR_LAUNCH_FAILED.
unsigned long long cuEmuWarpSync(unsigned op, unsigned mask, unsigned long long value, unsigned arg,
                                 unsigned width, const char* file, unsigned line);
// Reports a vector access of `align` bytes at a misaligned address `p` as a kernel fault
// (CUDA_ERROR_MISALIGNED_ADDRESS, as a GPU does); does not return.
[[noreturn]] void cuEmuMisaligned(const void* p, unsigned align);
// Provided by each kernel library (gpu/emu/src/registry.cpp).
void emu_kernel_registry_add(const EmuKernelEntry* entry);
}

