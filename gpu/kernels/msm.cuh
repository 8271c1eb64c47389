// Device-independent parts of the Pippenger MSM (gpu/kernels/msm.cu), written __host__ __device__
// so that tests/host_arith.rs can run them on the host against halo2curves and the Rust reference
// (gpu/src/cuda/plan.rs):
//   - msm_window_digit: signed-digit window recoding of a canonical scalar;
//   - msm_weighted_sum: the running-sum reduction Σ_{b=lo}^{hi-1} (b+1)·B_b of a range of buckets.
//
// Signed digits (window size c, 2^(c-1) buckets per window): window w holds the bits
// [w*c, w*c + c) of the scalar plus the carry from window w-1; a value v > 2^(c-1) becomes the
// digit v - 2^c with a carry of 1 into window w+1. Digits lie in [-(2^(c-1) - 1), 2^(c-1)];
// digit d != 0 goes to bucket |d| - 1 with the point negated when d < 0. Scalars are < r < 2^254,
// so ceil(255 / c) windows never carry out of the top window (see msm_num_windows).
// STATUS: host-tested (tests/host_arith.rs); compiled by NVRTC; not yet run on a GPU.
#pragma once
#include "curve.cuh"

// Windows needed for window size c: ceil(255 / c) (254 scalar bits plus room for the last carry).
static FD u32 msm_num_windows(u32 c) {
    return (255u + c - 1u) / c;
}

// Bits [w*c, w*c + c) of the 256-bit little-endian scalar s (c <= 31).
static FD u32 msm_window_bits(const u32 s[8], u32 c, u32 w) {
    u32 bit = w * c;
    u32 limb = bit >> 5;
    u32 off = bit & 31u;
    if (limb >= 8u) return 0u;
    u32 v = s[limb] >> off;
    if (off + c > 32u && limb + 1u < 8u) v |= s[limb + 1u] << (32u - off);
    return v & ((1u << c) - 1u);
}

// The signed digit of window w given the carry from window w-1; updates the carry.
static FD int msm_window_digit(const u32 s[8], u32 c, u32 w, u32* carry) {
    u32 v = msm_window_bits(s, c, w) + *carry;
    u32 half = 1u << (c - 1u);
    if (v > half) {
        *carry = 1u;
        return (int)v - (int)(1u << c);
    }
    *carry = 0u;
    return (int)v;
}

static FD g1_xyzz_t msm_load_xyzz(const u32* p) {
    g1_xyzz_t r;
    r.X = fq_t::load(p);
    r.Y = fq_t::load(p + 8);
    r.ZZ = fq_t::load(p + 16);
    r.ZZZ = fq_t::load(p + 24);
    return r;
}

static FD void msm_store_xyzz(const g1_xyzz_t& a, u32* p) {
    a.X.store(p);
    a.Y.store(p + 8);
    a.ZZ.store(p + 16);
    a.ZZZ.store(p + 24);
}

// k * p for a small k (double-and-add from k's top bit: a part's k = lo has at most c - 1 bits,
// so the doublings of the identity above it are skipped).
static FD g1_xyzz_t msm_mul_small(const g1_xyzz_t& p, u32 k) {
    g1_xyzz_t r = g1_xyzz_t::identity();
    int top = 31;
    while (top >= 0 && ((k >> top) & 1u) == 0u) top--;
    FIELD_NO_UNROLL
    for (int bit = top; bit >= 0; bit--) {
        r = r.dbl();
        if ((k >> bit) & 1u) r = r.add(p);
    }
    return r;
}

// Σ_{b=lo}^{hi-1} (b+1)·B_b for buckets stored as XYZZ (32 limbs each) at buckets[32*b].
// Running sum from the top: acc = Σ_{b'>=b} B_b', sum += acc gives Σ (b - lo + 1)·B_b; the
// remaining lo·Σ B_b is added with one small scalar multiplication.
static FD g1_xyzz_t msm_weighted_sum(const u32* buckets, u32 lo, u32 hi) {
    g1_xyzz_t acc = g1_xyzz_t::identity();
    g1_xyzz_t sum = g1_xyzz_t::identity();
    FIELD_NO_UNROLL
    for (u32 b = hi; b > lo; b--) {
        acc = acc.add(msm_load_xyzz(buckets + 32u * (b - 1u)));
        sum = sum.add(acc);
    }
    if (lo != 0u) sum = sum.add(msm_mul_small(acc, lo));
    return sum;
}
