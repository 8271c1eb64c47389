// The CUDA built-ins for kernels compiled with the host C++ compiler (the emulated device).
//
// A kernel translation unit of the emulator is: this header, then a copy of `gpu/kernels/X.cu`
// whose `__shared__` declarations were rewritten by `gpu/emu/tools/gen_kernels.py`, then one
// `EMU_KERNEL(name)` line per `extern "C" __global__` function. Everything that is per thread or
// per block (threadIdx, shared memory, the barrier) comes from the driver (`libcuda.so.1` of the
// emulator), which runs the threads of a block as fibers.
//
// The headers' inline PTX arrives here translated into C++ (gen_kernels.py). Not emulated:
// `__activemask`, the weak memory model, timing (the race checker of the racecheck build reports
// code that relies on an order between threads that nothing enforces: src/racecheck.h). The
// `_sync` warp intrinsics are real exchanges between the block's fibers (below).
#pragma once

// Kernel headers test this to check what only a GPU would enforce (vector-access alignment).
#define CUDA_EMU_KERNEL 1

#include <cstddef>
#include <cstdint>
#include <cstring>
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

// One field multiplication of the calling thread, counted (field.cuh's Fp::mul calls it on the
// emulated device): the per-kernel totals and longest threads of cuEmuGetMulCounts.
static inline void emu_count_mul() {
    ++const_cast<EmuThreadCtx*>(cuEmuThreadCtx())->mul_ops;
}

// One 32-byte field element loaded or stored by the calling thread, counted (field.cuh's
// Fp::load and Fp::store call it on the emulated device): the per-kernel totals of
// cuEmuGetMulCounts.
static inline void emu_count_element() {
    ++const_cast<EmuThreadCtx*>(cuEmuThreadCtx())->element_ops;
}

// The barrier: a real one (the calling fiber waits until every thread of the block reached it).
// The driver tells barriers apart by source file and line (an optimising compiler may copy one
// barrier into several places), so threads meeting at different barriers are reported as
// divergence, naming both.
#define __syncthreads() cuEmuSyncthreads(__FILE__, __LINE__)

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
static inline int __ffs(int x) { return __builtin_ffs(x); }
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

// ---- warp intrinsics ----------------------------------------------------------------------------
//
// Each is one cuEmuWarpSync call: the thread waits until every thread its mask names (in its
// warp) reached the same call or returned, and the driver computes all results at once. What the
// CUDA programming guide leaves undefined is made visible: a shuffle from a lane that does not
// take part (returned, or not in the mask) gives garbage, and a warp that cannot complete the
// call fails the launch. Macros, so that the call's source file and line tell call sites apart
// (threads at different calls are divergence; an optimising compiler may duplicate one call,
// so its return address would not do).

namespace emu_detail {
template <class T>
static __forceinline__ unsigned long long warp_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "warp intrinsics take values of at most 8 bytes");
    unsigned long long b = 0;
    std::memcpy(&b, &v, sizeof v);
    return b;
}
template <class T>
static __forceinline__ T warp_call(const char* file, unsigned line, unsigned op, unsigned mask, T var,
                                   unsigned arg, int width) {
    unsigned long long r =
        cuEmuWarpSync(op, mask, warp_bits(var), arg, (unsigned)width, file, line);
    T v;
    std::memcpy(&v, &r, sizeof v);
    return v;
}
// __syncwarp's call site; called with the optional mask (`__syncwarp()` and `__syncwarp(mask)`
// both expand to a call of this, with no comma to drop in strict C++ modes).
struct SyncwarpAt {
    const char* file;
    unsigned line;
    __forceinline__ void operator()(unsigned mask = 0xffffffffu) const {
        cuEmuWarpSync(EMU_WARP_SYNC, mask, 0, 0, warpSize, file, line);
    }
};
template <class T>
static __forceinline__ T shfl(const char* file, unsigned line, unsigned mask, T var, int src_lane,
                              int width = warpSize) {
    return warp_call(file, line, EMU_WARP_SHFL_IDX, mask, var, (unsigned)src_lane, width);
}
template <class T>
static __forceinline__ T shfl_up(const char* file, unsigned line, unsigned mask, T var, unsigned delta,
                                 int width = warpSize) {
    return warp_call(file, line, EMU_WARP_SHFL_UP, mask, var, delta, width);
}
template <class T>
static __forceinline__ T shfl_down(const char* file, unsigned line, unsigned mask, T var,
                                   unsigned delta, int width = warpSize) {
    return warp_call(file, line, EMU_WARP_SHFL_DOWN, mask, var, delta, width);
}
template <class T>
static __forceinline__ T shfl_xor(const char* file, unsigned line, unsigned mask, T var, int lane_mask,
                                  int width = warpSize) {
    return warp_call(file, line, EMU_WARP_SHFL_XOR, mask, var, (unsigned)lane_mask, width);
}
static __forceinline__ unsigned vote(const char* file, unsigned line, unsigned op, unsigned mask,
                                     int predicate) {
    return (unsigned)cuEmuWarpSync(op, mask, predicate != 0, 0, warpSize, file, line);
}
template <class T>
static __forceinline__ unsigned match_any(const char* file, unsigned line, unsigned mask, T value) {
    return (unsigned)cuEmuWarpSync(EMU_WARP_MATCH_ANY, mask, warp_bits(value), 0, warpSize, file, line);
}
}  // namespace emu_detail

#define __syncwarp(...) emu_detail::SyncwarpAt{__FILE__, __LINE__}(__VA_ARGS__)
#define __shfl_sync(...) emu_detail::shfl(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) emu_detail::shfl_up(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) emu_detail::shfl_down(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) emu_detail::shfl_xor(__FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(mask, pred) emu_detail::vote(__FILE__, __LINE__, EMU_WARP_BALLOT, mask, pred)
#define __any_sync(mask, pred) (int)emu_detail::vote(__FILE__, __LINE__, EMU_WARP_ANY, mask, pred)
#define __all_sync(mask, pred) (int)emu_detail::vote(__FILE__, __LINE__, EMU_WARP_ALL, mask, pred)
#define __match_any_sync(mask, value) emu_detail::match_any(__FILE__, __LINE__, mask, value)

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
