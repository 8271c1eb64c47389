// Radix-2 NTT over the BN254 scalar field, several stages per pass in shared memory.
// Driven by gpu/src/cuda/mod.rs (CudaBackend::ntt_device): ntt_pass, once per pass of
// ceil(log_n / 10) (e.g. 8 + 8 + 8 stages for 2^24), decimation-in-time butterflies (bit-reversed
// in, natural out). A block loads the 2^s elements that stages m..m+s-1 mix (stride 2^m) into
// shared memory, runs the s stages there and writes them back.
//   - The first pass gathers: element i of its (bit-reversed) input is in[bitrev(i)], read out of
//     place from the caller's vector (an element is 32 bytes, one memory sector, so the scattered
//     reads cost no more sectors than contiguous ones), with the coset shift s·b^j of the
//     forward coset transform applied to source element j on the way in (split tables:
//     lo[j & (2^lo_bits - 1)] · hi[j >> lo_bits]). No separate bit-reversal pass.
//   - The last pass fuses the output scaling: n^-1 for the inverse, n^-1·g^-i (split tables)
//     for the inverse coset transform.
// Twiddles are generated per block: before each stage a block puts the 2^jj twiddles it uses
// into shared memory, from split powers of w = omega or omega^-1 computed on the host from the
// Domain: w^e = tw_lo[e & (2^tw_bits - 1)] · tw_hi[e >> tw_bits], e < n/2, a product only where
// both factors differ from 1. By default tw_lo holds all n/2 powers (tw_bits = log_n - 1, tw_hi =
// [1]): each distinct twiddle is loaded once per block instead of once per butterfly, no product.
// With GPU_NTT_SPLIT_TWIDDLES=1 the two tables hold about sqrt(n/2) each (at 2^24: 2^11 + 2^12
// entries, 192 KiB, instead of 2^23, 256 MiB) and a block computes its twiddles: 2^s - 1 products
// a block a pass where the block's low index is not 0, about 2/s more a butterfly.
// Values are Fr in Montgomery form, 8 little-endian u32 limbs (halo2curves' raw layout).
// STATUS: compiled by NVRTC (tests/nvrtc_compile.rs); not yet run on a GPU.
#include "field.cuh"

// Scaling modes of ntt_pass's input (first pass) and output (last pass).
#define NTT_SCALE_NONE 0u
#define NTT_SCALE_CONST 1u   // · scale[0..8]
#define NTT_SCALE_POWERS 2u  // · lo[i & mask] · hi[i >> lo_bits]

static __device__ __forceinline__ fr_t ntt_factor(u32 mode, u32 i, const u32* scale,
                                                  const u32* lo, const u32* hi, u32 lo_bits) {
    if (mode == NTT_SCALE_CONST) return fr_t::load(scale);
    u32 mask = (1u << lo_bits) - 1u;
    return fr_t::mul(fr_t::load(lo + 8u * (i & mask)), fr_t::load(hi + 8u * (i >> lo_bits)));
}

// Shared memory holds the group limb-major (limb l of element e at sh[l * size + e]), so that
// consecutive threads touch consecutive banks.
static __device__ __forceinline__ fr_t ntt_sh_load(const u32* sh, u32 size, u32 e) {
    fr_t r;
    for (int l = 0; l < 8; l++) r.l[l] = sh[l * size + e];
    return r;
}

static __device__ __forceinline__ void ntt_sh_store(u32* sh, u32 size, u32 e, const fr_t& v) {
    for (int l = 0; l < 8; l++) sh[l * size + e] = v.l[l];
}

// Element idx of a pass's input: data[idx], or in the first pass (gather) src[bitrev(idx)] times
// the input scaling of its source index.
static __device__ __forceinline__ fr_t ntt_input(const u32* src, const u32* data, u32 gather,
                                                 u32 log_n, u32 idx, u32 pre, const u32* scale,
                                                 const u32* lo, const u32* hi, u32 lo_bits) {
    if (!gather) return fr_t::load(data + 8u * idx);
    u32 from = __brev(idx) >> (32u - log_n);
    fr_t v = fr_t::load(src + 8u * from);
    if (pre != NTT_SCALE_NONE) v = fr_t::mul(v, ntt_factor(pre, from, scale, lo, hi, lo_bits));
    return v;
}

// w^e for e < n/2 from the split twiddle tables; no product when a factor is w^0 = 1.
static __device__ __forceinline__ fr_t ntt_twiddle(const u32* tw_lo, const u32* tw_hi, u32 tw_bits,
                                                   u32 e) {
    u32 lo = e & ((1u << tw_bits) - 1u);
    u32 hi = e >> tw_bits;
    if (hi == 0u) return fr_t::load(tw_lo + 8u * lo);
    if (lo == 0u) return fr_t::load(tw_hi + 8u * hi);
    return fr_t::mul(fr_t::load(tw_lo + 8u * lo), fr_t::load(tw_hi + 8u * hi));
}

// Stages m..m+s-1 (stage j combines pairs at distance 2^j) on groups of 2^s elements; launched
// with 2^(s-1) threads per block, 2^(log_n - s) blocks and 2^s * 48 bytes of shared memory (the
// group, then the current stage's twiddles: 2^(s-1) elements, also limb-major).
// `gather` (first pass only, m = 0): read from `src` (another buffer than `data`) in bit-reversed
// order, scaled by `pre`; otherwise in place on `data` (`src` unread). `post` scales the output.
// At most 512 threads a block (10 stages a pass, gpu/src/cuda/plan.rs MAX_PASS_STAGES), and
// registers for NTT_MIN_BLOCKS such blocks on one SM: 2 caps ptxas at 64 registers a thread (61
// used, no spills, NVRTC 12.6 sm_90). Without a bound ptxas takes 72, which lets an SM hold one
// 512-thread block, so a __syncthreads there leaves the SM without a warp to run; with
// __launch_bounds__(512, 1) it takes 96. GPU_NTT_MIN_BLOCKS=0 compiles the form without a bound
// (as before the thirty-third session), for A/B timing on a GPU.
#ifndef NTT_MIN_BLOCKS
#define NTT_MIN_BLOCKS 2
#endif
#if NTT_MIN_BLOCKS > 0
#define NTT_BOUNDS __launch_bounds__(512, NTT_MIN_BLOCKS)
#else
#define NTT_BOUNDS
#endif
extern "C" __global__ void NTT_BOUNDS ntt_pass(const u32* src, u32* data, u32 log_n, u32 m, u32 s,
                                    const u32* tw_lo, const u32* tw_hi, u32 tw_bits, u32 gather,
                                    u32 pre, u32 post, const u32* scale, const u32* lo,
                                    const u32* hi, u32 lo_bits) {
    extern __shared__ u32 sh[];
    u32 t = threadIdx.x;
    u32 half = 1u << (s - 1u);
    u32 size = 2u * half;
    u32 b = blockIdx.x;
    u32 low = b & ((1u << m) - 1u);
    u32 high = b >> m;
    u32 base = (high << (m + s)) | low;
    u32* shw = sh + 8u * size;  // the stage's twiddles, `half` entries limb-major

    for (u32 e = t; e < size; e += half) {
        u32 idx = base | (e << m);
        ntt_sh_store(sh, size, e, ntt_input(src, data, gather, log_n, idx, pre, scale, lo, hi, lo_bits));
    }

    for (u32 jj = 0; jj < s; jj++) {
        u32 j = m + jj;
        u32 below = (1u << jj) - 1u;
        // Twiddle i of this stage, i < 2^jj: w^(k·2^(log_n-j-1)) with k = (i << m) | low, the
        // position inside the 2^(j+1)-block (< 2^j). The previous stage's readers are past the
        // barrier that ended it; the barrier after the stores also ends the group's load (the
        // twiddles are a region of their own), so the load needs none of its own.
        if (t <= below) {
            u32 e = ((t << m) | low) << (log_n - j - 1u);
            ntt_sh_store(shw, half, t, ntt_twiddle(tw_lo, tw_hi, tw_bits, e));
        }
        __syncthreads();
        u32 a = ((t >> jj) << (jj + 1u)) | (t & below);
        u32 c = a | (1u << jj);
        u32 i = a & below;
        fr_t u = ntt_sh_load(sh, size, a);
        fr_t v = ntt_sh_load(sh, size, c);
        if (i != 0u || low != 0u) v = fr_t::mul(v, ntt_sh_load(shw, half, i));
        ntt_sh_store(sh, size, a, fr_t::add(u, v));
        ntt_sh_store(sh, size, c, fr_t::sub(u, v));
        __syncthreads();
    }

    for (u32 e = t; e < size; e += half) {
        u32 idx = base | (e << m);
        fr_t v = ntt_sh_load(sh, size, e);
        if (post != NTT_SCALE_NONE) v = fr_t::mul(v, ntt_factor(post, idx, scale, lo, hi, lo_bits));
        v.store(data + 8u * idx);
    }
}
