// Pippenger MSM over BN254 G1 with signed-digit windows and sort-based bucket accumulation.
// Driven by gpu/src/cuda/mod.rs (CudaBackend::msm_device); the launch order is:
//   1. msm_histogram   thread per scalar: recode into signed digits, count entries per bucket
//                      (counts[w * B + bucket], B = 2^(c-1) buckets per window; one atomic per
//                      bucket per warp, MSM_WARP_AGGREGATE);
//   2. scan_block/scan_add (exclusive prefix sum): counts -> offsets;
//   3. msm_scatter     thread per scalar: recode again, write (point index | sign << 31) to
//                      sorted[offset + atomic cursor] (per warp, as in 1.) -- a counting sort of
//                      (bucket, point) pairs by bucket (one radix-2^(c-1) pass per window; the
//                      order inside a bucket is not fixed, which cannot change the sum);
//   4. msm_segment_count + scan: every bucket is split into segments of at most `seg_len` entries
//                      (oversized buckets -- many equal scalars, e.g. zeros or ones -- are spread
//                      over many threads); the largest bucket's segment count is read back
//                      with the segments' total;
//   5. msm_accumulate  thread per segment: XYZZ mixed additions of the segment's points;
//   6. msm_fold_segments thread per group of at most 32 segment sums of one bucket, once per
//                      level while a bucket has more than 32 sums (plan::fold_levels);
//                      then msm_bucket_sum, thread per bucket: adds what is left of its sums;
//   7. msm_window_reduce thread per (window, part): running-sum reduction of a contiguous range
//                      of buckets (msm_weighted_sum), left in XYZZ (no inversion); 16 buckets
//                      a part, at least 256 parts a window (plan::reduce_parts);
//   8. msm_parts_sum     thread per group of at most 32 consecutive part sums, launched once
//                      per level of a tree (plan::parts_sum_levels) until one sum per window
//                      is left, in XYZZ.
// The host reads one XYZZ point per window (a few KiB), normalises them (one inversion each, on
// the host) and combines the windows (Horner, c doublings per window) with halo2curves.
// Scalars arrive in canonical (non-Montgomery) form, 8 little-endian u32 limbs; bases are affine,
// x then y, each 8 limbs in Montgomery form (halo2curves' raw layout); the identity is (0, 0).
// STATUS: compiled by NVRTC (tests/nvrtc_compile.rs); the recoding and the bucket reduction are
// host-tested through msm.cuh; the kernels have not yet run on a GPU.
#include "msm.cuh"

#define MSM_SIGN_BIT 0x80000000u
// The key of a zero digit (no bucket) in the warp-aggregated counting below.
#define MSM_NO_BUCKET 0xffffffffu

// Warp-aggregated counting (sm_70 and later, and the emulated device, which runs the warp
// intrinsics): in each window the lanes of a warp that count into the same bucket find each
// other with __match_any_sync, and the lowest of them does one atomic for the group -- one atomic
// per distinct bucket per warp instead of one per lane. It is for columns of 0s and 1s (selectors,
// fixed columns, small witnesses): all 32 lanes of a warp hit bucket 0 of window 0, and 2^20
// atomics on one counter become 2^15. Random scalars seldom share a bucket (2^(c-1) per window,
// 2,048 at 2^20) and pay one match per window. Every lane that has not returned takes part in
// every match (the mask is the whole warp; returned lanes take no part, as the CUDA guide
// allows). -DMSM_PLAIN_ATOMICS (GPU_MSM_PLAIN_ATOMICS=1 in the backend) keeps one atomic per
// lane, for comparing the two on a GPU.
#if (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 700) && !defined(MSM_PLAIN_ATOMICS)
#define MSM_WARP_AGGREGATE 1
#endif

// The bucket counter of digit d in window w, or MSM_NO_BUCKET for d = 0.
static __device__ __forceinline__ u32 msm_bucket_key(int d, u32 w, u32 buckets) {
    return d == 0 ? MSM_NO_BUCKET : w * buckets + (u32)(d < 0 ? -d : d) - 1u;
}

static __device__ __forceinline__ void msm_load_scalar(const u32* scalars, u32 i, u32 s[8]) {
    const fr_t v = fr_t::load(scalars + 8u * i);  // the raw limbs, by fr_t's 128-bit loads
    for (int l = 0; l < 8; l++) s[l] = v.l[l];
}

extern "C" __global__ void msm_histogram(const u32* scalars, u32 n, u32 c, u32 num_windows,
                                         u32* counts) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    u32 s[8];
    msm_load_scalar(scalars, i, s);
    u32 buckets = 1u << (c - 1u);
    u32 carry = 0;
    for (u32 w = 0; w < num_windows; w++) {
        u32 key = msm_bucket_key(msm_window_digit(s, c, w, &carry), w, buckets);
#ifdef MSM_WARP_AGGREGATE
        u32 peers = __match_any_sync(0xffffffffu, key);
        u32 lane = threadIdx.x & 31u;
        if (key != MSM_NO_BUCKET && lane == (u32)__ffs((int)peers) - 1u) {
            atomicAdd(&counts[key], (u32)__popc(peers));
        }
#else
        if (key != MSM_NO_BUCKET) atomicAdd(&counts[key], 1u);
#endif
    }
}

extern "C" __global__ void msm_scatter(const u32* scalars, u32 n, u32 c, u32 num_windows,
                                       u32* cursor, u32* sorted) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    u32 s[8];
    msm_load_scalar(scalars, i, s);
    u32 buckets = 1u << (c - 1u);
    u32 carry = 0;
    for (u32 w = 0; w < num_windows; w++) {
        int d = msm_window_digit(s, c, w, &carry);
        u32 key = msm_bucket_key(d, w, buckets);
#ifdef MSM_WARP_AGGREGATE
        // The group's leader takes its places with one atomic; each lane takes the place of its
        // rank among the group's lanes.
        u32 peers = __match_any_sync(0xffffffffu, key);
        u32 lane = threadIdx.x & 31u;
        u32 leader = (u32)__ffs((int)peers) - 1u;
        u32 first = 0;
        if (key != MSM_NO_BUCKET && lane == leader) first = atomicAdd(&cursor[key], (u32)__popc(peers));
        u32 pos = __shfl_sync(0xffffffffu, first, (int)leader) + (u32)__popc(peers & ((1u << lane) - 1u));
#else
        u32 pos = key == MSM_NO_BUCKET ? 0u : atomicAdd(&cursor[key], 1u);
#endif
        if (key != MSM_NO_BUCKET) sorted[pos] = i | (d < 0 ? MSM_SIGN_BIT : 0u);
    }
}

// seg_counts[j] = ceil(counts[j] / seg_len) for every bucket j < total_buckets, and *most (zero
// before the launch) = the largest of them: how many levels msm_fold_segments needs. The largest is
// taken across each warp with shuffles and sent with one atomic per warp (whole warps: the launch's
// blocks are multiples of 32 threads, and no lane returns before the shuffles).
extern "C" __global__ void msm_segment_count(const u32* counts, u32 total_buckets, u32 seg_len,
                                             u32* seg_counts, u32* most) {
    u32 j = blockIdx.x * blockDim.x + threadIdx.x;
    u32 v = 0;
    if (j < total_buckets) {
        v = (counts[j] + seg_len - 1u) / seg_len;
        seg_counts[j] = v;
    }
    for (int lanes = 16; lanes > 0; lanes >>= 1) {
        u32 other = __shfl_xor_sync(0xffffffffu, v, lanes);
        if (other > v) v = other;
    }
    if ((threadIdx.x & 31u) == 0u && v > 0u) atomicMax(most, v);
}

// The bucket of segment `seg`: the last j with seg_offsets[j] <= seg (binary search; empty
// buckets share their offset with the next bucket, and the last of them is taken).
static __device__ __forceinline__ u32 msm_segment_bucket(const u32* seg_offsets,
                                                         u32 total_buckets, u32 seg) {
    u32 lo = 0, hi = total_buckets;  // invariant: seg_offsets[lo] <= seg < seg_offsets[hi]
    while (hi - lo > 1u) {
        u32 mid = lo + (hi - lo) / 2u;
        if (seg_offsets[mid] <= seg) lo = mid;
        else hi = mid;
    }
    return lo;
}

// The items [*begin, *end) of segment `seg` (segments of at most `len` items; bucket j's
// counts[j] items start at offsets[j], its segments at seg_offsets[j]).
static __device__ __forceinline__ void msm_segment_range(const u32* offsets, const u32* counts,
                                                         const u32* seg_offsets,
                                                         u32 total_buckets, u32 len, u32 seg,
                                                         u32* begin, u32* end) {
    u32 j = msm_segment_bucket(seg_offsets, total_buckets, seg);
    *begin = offsets[j] + (seg - seg_offsets[j]) * len;
    *end = offsets[j] + counts[j];
    if (*end > *begin + len) *end = *begin + len;
}

// Thread per segment: finds its bucket and adds the segment's points into one XYZZ partial sum.
extern "C" __global__ void msm_accumulate(const u32* bases, const u32* sorted, const u32* offsets,
                                          const u32* counts, const u32* seg_offsets,
                                          u32 total_buckets, u32 total_segments, u32 seg_len,
                                          u32* seg_sums) {
    u32 seg = blockIdx.x * blockDim.x + threadIdx.x;
    if (seg >= total_segments) return;
    u32 begin, end;
    msm_segment_range(offsets, counts, seg_offsets, total_buckets, seg_len, seg, &begin, &end);
    g1_xyzz_t acc = g1_xyzz_t::identity();
    for (u32 p = begin; p < end; p++) {
        u32 e = sorted[p];
        u32 idx = e & ~MSM_SIGN_BIT;
        g1_affine_t q;
        q.x = fq_t::load(bases + 16u * idx);
        q.y = fq_t::load(bases + 16u * idx + 8u);
        if (e & MSM_SIGN_BIT) q = q.neg();
        acc = acc.add_affine(q);
    }
    msm_store_xyzz(acc, seg_sums + 32u * seg);
}

// One level of the tree that adds a bucket's segment sums: bucket j's in_counts[j] sums (from
// in_offsets[j] in `in_sums`) become ceil(in_counts[j] / group) sums (from out_offsets[j] in
// `out_sums`), a thread adding `group` consecutive ones. For buckets that hold a large share of
// the points (a column of ones puts every scalar in one bucket: 2^20 / 88 = 11,916 segments at
// 2^20), which msm_bucket_sum alone would add one after the other in one thread.
extern "C" __global__ void msm_fold_segments(const u32* in_sums, const u32* in_offsets,
                                             const u32* in_counts, const u32* out_offsets,
                                             u32 total_buckets, u32 total_out, u32 group,
                                             u32* out_sums) {
    u32 seg = blockIdx.x * blockDim.x + threadIdx.x;
    if (seg >= total_out) return;
    u32 begin, end;
    msm_segment_range(in_offsets, in_counts, out_offsets, total_buckets, group, seg, &begin, &end);
    g1_xyzz_t acc = g1_xyzz_t::identity();
    for (u32 p = begin; p < end; p++) acc = acc.add(msm_load_xyzz(in_sums + 32u * p));
    msm_store_xyzz(acc, out_sums + 32u * seg);
}

// Thread per bucket: the sum of bucket j's counts[j] partial sums, from offsets[j] in `sums`
// (what msm_fold_segments left of its segment sums; an empty bucket gives the identity).
extern "C" __global__ void msm_bucket_sum(const u32* counts, const u32* offsets,
                                          u32 total_buckets, const u32* sums, u32* bucket_sums) {
    u32 j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= total_buckets) return;
    g1_xyzz_t acc = g1_xyzz_t::identity();
    for (u32 p = offsets[j]; p < offsets[j] + counts[j]; p++) {
        acc = acc.add(msm_load_xyzz(sums + 32u * p));
    }
    msm_store_xyzz(acc, bucket_sums + 32u * j);
}

// Thread per (window w, part t): Σ (b+1)·B_b over buckets [t*B/parts, (t+1)*B/parts) of window w,
// as an affine point (16 limbs) at out[16 * (w * parts + t)].
extern "C" __global__ void msm_window_reduce(const u32* bucket_sums, u32 c, u32 num_windows,
                                             u32 parts, u32* out) {
    u32 id = blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= num_windows * parts) return;
    u32 w = id / parts;
    u32 t = id % parts;
    u32 buckets = 1u << (c - 1u);
    u32 per = buckets / parts;  // parts divides buckets (both powers of two)
    g1_xyzz_t r = msm_weighted_sum(bucket_sums + 32u * (w * buckets), t * per, (t + 1u) * per);
    msm_store_xyzz(r, out + 32u * id);
}

extern "C" __global__ void msm_parts_sum(const u32* part_sums, u32 num_windows, u32 parts,
                                         u32* out) {
    u32 w = blockIdx.x * blockDim.x + threadIdx.x;
    if (w >= num_windows) return;
    g1_xyzz_t acc = g1_xyzz_t::identity();
    for (u32 t = 0; t < parts; t++) acc = acc.add(msm_load_xyzz(part_sums + 32u * (w * parts + t)));
    msm_store_xyzz(acc, out + 32u * w);
}

// ---- exclusive prefix sum over u32, in place (1024 elements per block of 512 threads) -----------
// block_sums[b] gets the total of block b; the host scans block_sums recursively and adds them
// back with scan_add.
extern "C" __global__ void scan_block(u32* data, u32* block_sums, u32 n) {
    __shared__ u32 sh[512];
    u32 t = threadIdx.x;
    u32 base = blockIdx.x * 1024u + 2u * t;
    u32 a = base < n ? data[base] : 0u;
    u32 b = base + 1u < n ? data[base + 1u] : 0u;
    u32 v = a + b;
    sh[t] = v;
    __syncthreads();
    for (u32 off = 1; off < 512u; off <<= 1) {
        u32 x = t >= off ? sh[t - off] : 0u;
        __syncthreads();
        sh[t] += x;
        __syncthreads();
    }
    u32 excl = sh[t] - v;
    if (base < n) data[base] = excl;
    if (base + 1u < n) data[base + 1u] = excl + a;
    if (t == 511u) block_sums[blockIdx.x] = sh[511];
}

extern "C" __global__ void scan_add(u32* data, const u32* block_offsets, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    data[i] += block_offsets[i >> 10];
}
