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
void cuEmuSyncthreads(void);
void* cuEmuDynamicShared(void);
void* cuEmuStaticShared(void* storage, size_t bytes, unsigned long long* generation);
// Reports a vector access of `align` bytes at a misaligned address `p` as a kernel fault
// (CUDA_ERROR_MISALIGNED_ADDRESS, as a GPU does); does not return.
[[noreturn]] void cuEmuMisaligned(const void* p, unsigned align);
// Provided by each kernel library (gpu/emu/src/registry.cpp).
void emu_kernel_registry_add(const EmuKernelEntry* entry);
}

