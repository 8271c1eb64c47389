// Element-wise kernels over the field and curve headers. They exist so that the GPU validation run
// can compare the device arithmetic (PTX paths) with the host-tested portable paths on the same
// inputs, and so that the NVRTC compile check instantiates every header function.
// STATUS: compiled by NVRTC (tests/nvrtc_compile.rs); not yet run on a GPU.
#include "curve.cuh"

// op: 0 add, 1 sub, 2 mul, 3 sqr, 4 inverse, 5 neg (on 8-limb Montgomery values, n elements).
template <class F>
__device__ __forceinline__ void field_op(int op, const u32* a, const u32* b, u32* out, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    F x = F::load(a + 8 * i);
    F y = F::load(b + 8 * i);
    F r;
    switch (op) {
        case 0: r = F::add(x, y); break;
        case 1: r = F::sub(x, y); break;
        case 2: r = F::mul(x, y); break;
        case 3: r = F::sqr(x); break;
        case 4: r = F::inverse(x); break;
        default: r = F::neg(x); break;
    }
    r.store(out + 8 * i);
}

extern "C" __global__ void fq_op(int op, const u32* a, const u32* b, u32* out, u32 n) {
    field_op<fq_t>(op, a, b, out, n);
}

extern "C" __global__ void fr_op(int op, const u32* a, const u32* b, u32* out, u32 n) {
    field_op<fr_t>(op, a, b, out, n);
}

__device__ __forceinline__ g1_xyzz_t load_xyzz(const u32* p) {
    g1_xyzz_t r;
    r.X = fq_t::load(p);
    r.Y = fq_t::load(p + 8);
    r.ZZ = fq_t::load(p + 16);
    r.ZZZ = fq_t::load(p + 24);
    return r;
}

// op: 0 XYZZ + XYZZ, 1 XYZZ + affine (b's first 16 limbs), 2 double a. Output affine (16 limbs).
extern "C" __global__ void g1_op(int op, const u32* a, const u32* b, u32* out, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    g1_xyzz_t p = load_xyzz(a + 32 * i);
    g1_xyzz_t r;
    if (op == 0) {
        r = p.add(load_xyzz(b + 32 * i));
    } else if (op == 1) {
        g1_affine_t q;
        q.x = fq_t::load(b + 32 * i);
        q.y = fq_t::load(b + 32 * i + 8);
        r = p.add_affine(q);
    } else {
        r = p.dbl();
    }
    g1_affine_t o = r.to_affine();
    o.x.store(out + 16 * i);
    o.y.store(out + 16 * i + 8);
}

// The warp intrinsics, on n inputs `in` (1-D blocks): a check that the emulated device's warp
// exchange (gpu/emu) gives what a GPU gives. Threads i >= n return first, so the calls also see
// lanes that have exited (they take no part, and no output depends on a value read from one);
// a block size that is not a multiple of 32 leaves a partial warp. Eight outputs per thread:
//   0 __ballot_sync(v odd)            1 __match_any_sync(v % 5)
//   2 v of lane v % 32 (own v if that lane has returned)
//   3 v of lane ^ 1 (own v if it has returned)   4 __shfl_up_sync by 3 in segments of 8
//   5 __shfl_down_sync by 2 in segments of 16 (own v if the source has returned)
//   6 any(v == 0) | all(v != 7) << 1 | the MSM's warp aggregation keyed by v % 3: the group's
//     leader lane << 8 | its size << 16 | this lane's rank in it << 24
//   7 v of lane 0 of its half-warp, each half calling with its own mask
// __match_any_sync needs sm_70: before it the kernel does nothing (the host refuses to run it).
extern "C" __global__ void warp_check(const u32* in, u32 n, u32* out) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 700
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const u32 full = 0xffffffffu;
    u32 lane = threadIdx.x & 31u;
    u32 v = in[i];
    u32 live = __ballot_sync(full, 1);
    u32* o = out + 8u * i;
    o[0] = __ballot_sync(full, (int)(v & 1u));
    o[1] = __match_any_sync(full, v % 5u);
    u32 src = v & 31u;
    if (!((live >> src) & 1u)) src = lane;
    o[2] = __shfl_sync(full, v, (int)src);
    u32 x = __shfl_xor_sync(full, v, 1);
    o[3] = ((live >> (lane ^ 1u)) & 1u) ? x : v;
    o[4] = __shfl_up_sync(full, v, 3u, 8);
    u32 d = __shfl_down_sync(full, v, 2u, 16);
    u32 dsrc = (lane & 15u) + 2u < 16u ? lane + 2u : lane;
    o[5] = ((live >> dsrc) & 1u) ? d : v;
    u32 peers = __match_any_sync(full, v % 3u);
    u32 leader = (u32)__ffs((int)peers) - 1u;
    u32 rank = (u32)__popc(peers & ((1u << lane) - 1u));
    o[6] = (u32)__any_sync(full, v == 0u) | ((u32)__all_sync(full, v != 7u) << 1) | (leader << 8) |
           ((u32)__popc(peers) << 16) | (rank << 24);
    u32 half = lane < 16u ? (live & 0x0000ffffu) : (live & 0xffff0000u);
    o[7] = __shfl_sync(half, v, 0, 16);
#endif
}
