// The CUDA built-ins for kernels compiled with the host C++ compiler (the emulated device).
//
// A kernel translation unit of the emulator is: this header, then a copy of `gpu/kernels/X.cu`
// whose `__shared__` declarations were rewritten by `gpu/emu/tools/gen_kernels.py`, then one
// `EMU_KERNEL(name)` line per `extern "C" __global__` function. Everything that is per thread or
// per block (threadIdx, shared memory, the barrier) comes from the driver (`libcuda.so.1` of the
// emulator), which runs the threads of a block as fibers.
//
// Not emulated: inline PTX (the kernels' headers take their portable C++ paths here because
// `__CUDA_ARCH__` is not defined), warp intrinsics, the weak memory model, timing.
#pragma once

// Kernel headers test this to check what only a GPU would enforce (vector-access alignment).
#define CUDA_EMU_KERNEL 1

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __restrict__ __restrict

#include "cuda_emu_abi.h"

#define threadIdx (cuEmuThreadCtx()->threadIdx)
#define blockIdx (cuEmuThreadCtx()->blockIdx)
#define blockDim (cuEmuThreadCtx()->blockDim)
#define gridDim (cuEmuThreadCtx()->gridDim)
#define warpSize 32

// The barrier: a real one (the calling fiber waits until every thread of the block reached it).
// The driver tells the call sites apart by their return address, so threads meeting at different
// barriers are reported as divergence.
#define __syncthreads() cuEmuSyncthreads()

// `extern __shared__ T name[];` becomes `T* name = emu_dynamic_shared<T>();`
template <class T>
static inline T* emu_dynamic_shared() {
    return static_cast<T*>(cuEmuDynamicShared());
}

// `__shared__ __align__(A) T name[N];` becomes `EMU_STATIC_SHARED(T, name, [N], A)` (A is
// `alignof(T)` without `__align__`): storage per worker thread (a block runs wholly on one
// worker), refilled with garbage when a new block starts.
#define EMU_STATIC_SHARED(T, name, dims, align)                                            \
    alignas(align) static thread_local T name##_emu_storage dims;                          \
    static thread_local unsigned long long name##_emu_generation = 0;                      \
    auto& name = *static_cast<decltype(&name##_emu_storage)>(cuEmuStaticShared(          \
        &name##_emu_storage, sizeof(name##_emu_storage), &name##_emu_generation))

// ---- device functions -------------------------------------------------------------------------

static inline unsigned int __brev(unsigned int x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
    return (x >> 16) | (x << 16);
}
static inline int __clz(unsigned int x) { return x == 0 ? 32 : __builtin_clz(x); }
static inline int __popc(unsigned int x) { return __builtin_popcount(x); }
static inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * b) >> 32);
}
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}

template <class T>
static inline T atomicAdd(T* p, T v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
template <class T>
static inline T atomicSub(T* p, T v) {
    return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST);
}
template <class T>
static inline T atomicExch(T* p, T v) {
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
template <class T>
static inline T atomicMax(T* p, T v) {
    T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST,
                                                     __ATOMIC_SEQ_CST)) {
    }
    return old;
}
template <class T>
static inline T atomicMin(T* p, T v) {
    T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (old > v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST,
                                                     __ATOMIC_SEQ_CST)) {
    }
    return old;
}
template <class T>
static inline T atomicCAS(T* p, T compare, T v) {
    __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return compare;
}
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---- registration -----------------------------------------------------------------------------

namespace emu_detail {

template <class... A, size_t... I>
static void invoke_unpacked(void (*f)(A...), void** p, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(p[I])...);
}

template <class... A>
static void invoke(void* fn, void** params) {
    invoke_unpacked(reinterpret_cast<void (*)(A...)>(fn), params, std::index_sequence_for<A...>{});
}

struct Registrar {
    EmuKernelEntry entry{};
    template <class... A>
    Registrar(const char* name, void (*f)(A...)) {
        static_assert(sizeof...(A) <= 32, "at most 32 kernel parameters");
        entry.name = name;
        entry.invoke = &invoke<A...>;
        entry.fn = reinterpret_cast<void*>(f);
        entry.nparams = sizeof...(A);
        unsigned sizes[] = {0u, (unsigned)sizeof(A)...};
        unsigned char ptrs[] = {0u, (unsigned char)std::is_pointer<A>::value...};
        for (unsigned i = 0; i < sizeof...(A); i++) {
            entry.param_size[i] = sizes[i + 1];
            entry.param_is_pointer[i] = ptrs[i + 1];
        }
        emu_kernel_registry_add(&entry);
    }
};

}  // namespace emu_detail

#define EMU_KERNEL(name) static emu_detail::Registrar emu_registrar_##name(#name, &name);
