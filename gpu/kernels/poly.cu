// Kernels over backend-resident vectors (gpu/src/program.rs, CudaBackend's Poly operations).
//   poly_eval          evaluates a compiled row-wise Program: one thread per row (grid-stride),
//                      its live intermediates in a per-thread slot array, the outputs folded into
//                      acc[i] with Horner's rule (acc = acc·y + out);
//   poly_from_mont     out[i] = in[i] out of Montgomery form (canonical limbs: MSM scalars);
//   poly_batch_invert  every element by its inverse, zeros kept (Montgomery's trick per chunk);
//   poly_scan_mul_local, poly_affine_carries, poly_scan_mul_apply
//                      the running product out[i] = first·Π_{j<i} in[j] (grand products): a
//                      sequential pass per chunk, the chunks' carries on one block, a scaling pass;
//   poly_div_local, poly_affine_carries, poly_div_apply
//                      the division of coefficients by (X - b), remainder dropped: the linear
//                      recurrence c_i = a_i + b·c_{i+1} in the same three passes;
//   poly_eval_partial, poly_eval_sum
//                      p_k(x_k) for several (polynomial, point) pairs at once (one polynomial at
//                      several points, or every evaluation of a proof's opening): Horner per
//                      chunk, scaled by x_k^start, summed.
// Values are Fr in Montgomery form, 8 little-endian u32 limbs (halo2curves' raw layout).
// STATUS: compiled by NVRTC (tests/nvrtc_compile.rs), run on the emulated device; not yet run on
// a GPU.
#include "field.cuh"

// Must equal gpu/src/program.rs MAX_SLOTS.
#define POLY_MAX_SLOTS 64

// Instruction kinds (gpu/src/program.rs InstrKind).
#define POLY_ADD 0u
#define POLY_SUB 1u
#define POLY_MUL 2u
#define POLY_NEG 3u
#define POLY_FOLD 4u

// Operand tags (top two bits; gpu/src/program.rs Operand::encode).
#define POLY_TAG_SLOT 0u
#define POLY_TAG_QUERY 1u
#define POLY_TAG_CONST 2u

typedef unsigned long long u64;

static __device__ __forceinline__ fr_t poly_operand(u32 enc, const fr_t* slots, const u64* inputs,
                                                    const u32* q_input, const u32* q_shift,
                                                    const u32* consts, u32 row, u32 mask) {
    u32 tag = enc >> 30;
    u32 idx = enc & 0x3fffffffu;
    if (tag == POLY_TAG_SLOT) return slots[idx];
    if (tag == POLY_TAG_QUERY) {
        const u32* col = (const u32*)inputs[q_input[idx]];
        return fr_t::load(col + 8u * ((row + q_shift[idx]) & mask));
    }
    return fr_t::load(consts + 8u * idx);
}

// code: 4 words per instruction (kind, dst, a, b); inputs: device pointers of the input vectors;
// q_input / q_shift: per query, its input and its row offset (rotation · ratio mod size);
// size: a power of two, the length of every input and of acc.
extern "C" __global__ void poly_eval(const u32* code, u32 n_instr, const u32* consts,
                                     const u64* inputs, const u32* q_input, const u32* q_shift,
                                     u32 size, u32* acc, const u32* y_limbs) {
    fr_t slots[POLY_MAX_SLOTS];
    fr_t y = fr_t::load(y_limbs);
    u32 mask = size - 1u;
    for (u32 row = blockIdx.x * blockDim.x + threadIdx.x; row < size;
         row += gridDim.x * blockDim.x) {
        fr_t a = fr_t::load(acc + 8u * row);
        for (u32 k = 0; k < n_instr; k++) {
            const u32* ins = code + 4u * k;
            fr_t x = poly_operand(ins[2], slots, inputs, q_input, q_shift, consts, row, mask);
            switch (ins[0]) {
                case POLY_ADD:
                    slots[ins[1]] = fr_t::add(
                        x, poly_operand(ins[3], slots, inputs, q_input, q_shift, consts, row, mask));
                    break;
                case POLY_SUB:
                    slots[ins[1]] = fr_t::sub(
                        x, poly_operand(ins[3], slots, inputs, q_input, q_shift, consts, row, mask));
                    break;
                case POLY_MUL:
                    slots[ins[1]] = fr_t::mul(
                        x, poly_operand(ins[3], slots, inputs, q_input, q_shift, consts, row, mask));
                    break;
                case POLY_NEG:
                    slots[ins[1]] = fr_t::neg(x);
                    break;
                default:  // POLY_FOLD
                    a = fr_t::add(fr_t::mul(a, y), x);
                    break;
            }
        }
        a.store(acc + 8u * row);
    }
}

extern "C" __global__ void poly_from_mont(const u32* in, u32* out, u32 n) {
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        fr_t::from_montgomery(fr_t::load(in + 8u * i)).store(out + 8u * i);
    }
}

static __device__ __forceinline__ u32 poly_min(u32 a, u32 b) { return a < b ? a : b; }

// x^e for a 32-bit exponent (square-and-multiply, most significant bit first).
static __device__ fr_t poly_pow_u32(fr_t x, u32 e) {
    fr_t r = fr_t::one();
    for (int bit = 31; bit >= 0; bit--) {
        r = fr_t::sqr(r);
        if ((e >> bit) & 1u) r = fr_t::mul(r, x);
    }
    return r;
}

// One chunk of `chunk` elements per thread (grid-stride over chunks): prefix products of the
// non-zero elements into scratch, one Fermat inversion, then a backward pass. Zeros stay zero,
// as in ff's BatchInvert.
extern "C" __global__ void poly_batch_invert(u32* v, u32* scratch, u32 n, u32 chunk) {
    u32 chunks = (n + chunk - 1u) / chunk;
    for (u32 c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += gridDim.x * blockDim.x) {
        u32 s = c * chunk;
        u32 e = poly_min(n, s + chunk);
        fr_t acc = fr_t::one();
        for (u32 i = s; i < e; i++) {
            acc.store(scratch + 8u * i);
            fr_t x = fr_t::load(v + 8u * i);
            if (!x.is_zero()) acc = fr_t::mul(acc, x);
        }
        fr_t inv = fr_t::inverse(acc);
        for (u32 i = e; i-- > s;) {
            fr_t x = fr_t::load(v + 8u * i);
            if (!x.is_zero()) {
                fr_t::mul(fr_t::load(scratch + 8u * i), inv).store(v + 8u * i);
                inv = fr_t::mul(inv, x);
            }
        }
    }
}

// Running product, pass 1: within each chunk, v[i] = Π_{s<=j<i} v[j] (exclusive, in place);
// m[c] = the chunk's whole product, t[c] = 0 (the chunk maps a carry x to 0 + m[c]·x).
extern "C" __global__ void poly_scan_mul_local(u32* v, u32 n, u32 chunk, u32* t, u32* m) {
    u32 chunks = (n + chunk - 1u) / chunk;
    for (u32 c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += gridDim.x * blockDim.x) {
        u32 s = c * chunk;
        u32 e = poly_min(n, s + chunk);
        fr_t acc = fr_t::one();
        for (u32 i = s; i < e; i++) {
            fr_t x = fr_t::load(v + 8u * i);
            acc.store(v + 8u * i);
            acc = fr_t::mul(acc, x);
        }
        acc.store(m + 8u * c);
        fr_t::zero().store(t + 8u * c);
    }
}

// Running product, pass 3: v[i] *= carry[chunk of i].
extern "C" __global__ void poly_scan_mul_apply(u32* v, u32 n, u32 chunk, const u32* carry) {
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        fr_t::mul(fr_t::load(v + 8u * i), fr_t::load(carry + 8u * (i / chunk))).store(v + 8u * i);
    }
}

#define POLY_CARRY_THREADS 256

// Pass 2 of both recurrences, on one block of POLY_CARRY_THREADS threads: chunk k maps the carry
// entering it, x, to the carry leaving it, t[k] + m[k]·x. Visiting the chunks in ascending order
// (reverse = 0) or descending order (reverse = 1), starting from *init, writes to carry[k] the
// carry entering chunk k. Each thread composes the maps of a segment of chunks, chains the
// segments before its own, then replays its segment.
extern "C" __global__ void __launch_bounds__(POLY_CARRY_THREADS)
    poly_affine_carries(const u32* t, const u32* m, u32 count, const u32* init, u32 reverse,
                        u32* carry) {
    // 16-byte aligned: fr_t's loads and stores are 128-bit accesses on the device.
    __shared__ __align__(16) u32 seg_t[8 * POLY_CARRY_THREADS];
    __shared__ __align__(16) u32 seg_m[8 * POLY_CARRY_THREADS];
    u32 k = threadIdx.x;
    u32 per = (count + POLY_CARRY_THREADS - 1u) / POLY_CARRY_THREADS;
    u32 lo = poly_min(count, k * per);
    u32 hi = poly_min(count, lo + per);
    // The segment's composite map x -> T + M·x.
    fr_t T = fr_t::zero();
    fr_t M = fr_t::one();
    for (u32 p = lo; p < hi; p++) {
        u32 j = reverse ? count - 1u - p : p;
        fr_t mj = fr_t::load(m + 8u * j);
        T = fr_t::add(fr_t::load(t + 8u * j), fr_t::mul(mj, T));
        M = fr_t::mul(mj, M);
    }
    T.store(seg_t + 8u * k);
    M.store(seg_m + 8u * k);
    __syncthreads();
    // The carry entering this segment: the segments before it, chained from init (each thread
    // chains for itself, so that no thread runs code the others skip between barriers).
    fr_t x = fr_t::load(init);
    for (u32 q = 0; q < k; q++) {
        x = fr_t::add(fr_t::load(seg_t + 8u * q), fr_t::mul(fr_t::load(seg_m + 8u * q), x));
    }
    for (u32 p = lo; p < hi; p++) {
        u32 j = reverse ? count - 1u - p : p;
        x.store(carry + 8u * j);
        x = fr_t::add(fr_t::load(t + 8u * j), fr_t::mul(fr_t::load(m + 8u * j), x));
    }
}

// Division by (X - b), pass 1: within chunk [s, e) of the input, from the top with 0 entering,
// l_i = a_i + b·l_{i+1}, written to l[i]; t[c] = l_s and m[c] = b^(e-s), so that the chunk maps
// the true c_e entering from above to c_s = t[c] + m[c]·c_e.
extern "C" __global__ void poly_div_local(const u32* a, u32* l, u32 n, u32 chunk,
                                          const u32* b_limbs, u32* t, u32* m) {
    fr_t b = fr_t::load(b_limbs);
    u32 chunks = (n + chunk - 1u) / chunk;
    for (u32 c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += gridDim.x * blockDim.x) {
        u32 s = c * chunk;
        u32 e = poly_min(n, s + chunk);
        fr_t acc = fr_t::zero();
        fr_t bp = fr_t::one();
        for (u32 i = e; i-- > s;) {
            acc = fr_t::add(fr_t::load(a + 8u * i), fr_t::mul(b, acc));
            acc.store(l + 8u * i);
            bp = fr_t::mul(bp, b);
        }
        acc.store(t + 8u * c);
        bp.store(m + 8u * c);
    }
}

// Division by (X - b), pass 3: c_i = l_i + b^(e-i)·carry[c] for i in chunk c = [s, e); the
// quotient's coefficient i-1 is c_i (c_0 is the remainder, dropped); out[n-1] = 0. `out` may be
// the input of pass 1 (it is no longer read).
extern "C" __global__ void poly_div_apply(const u32* l, u32* out, u32 n, u32 chunk,
                                          const u32* b_limbs, const u32* carry) {
    fr_t b = fr_t::load(b_limbs);
    u32 chunks = (n + chunk - 1u) / chunk;
    for (u32 c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += gridDim.x * blockDim.x) {
        u32 s = c * chunk;
        u32 e = poly_min(n, s + chunk);
        fr_t x = fr_t::load(carry + 8u * c);
        fr_t bp = b;
        for (u32 i = e; i-- > s;) {
            fr_t ci = fr_t::add(fr_t::load(l + 8u * i), fr_t::mul(bp, x));
            bp = fr_t::mul(bp, b);
            if (i > 0) ci.store(out + 8u * (i - 1u));
        }
        if (e == n) fr_t::zero().store(out + 8u * (n - 1u));
    }
}

// Evaluation, pass 1: for pair k (polynomial p_k at the device address polys[k], n coefficients,
// at point x_k) and chunk c of `chunk` coefficients,
// part[k·chunks + c] = x_k^(c·chunk) · Σ_{i in chunk} p_k[i]·x_k^(i - c·chunk).
extern "C" __global__ void poly_eval_partial(const u64* polys, u32 n, u32 chunk, const u32* points,
                                             u32 npoints, u32* part) {
    u32 chunks = (n + chunk - 1u) / chunk;
    u32 total = chunks * npoints;
    for (u32 w = blockIdx.x * blockDim.x + threadIdx.x; w < total; w += gridDim.x * blockDim.x) {
        u32 k = w / chunks;
        u32 c = w % chunks;
        const u32* p = (const u32*)polys[k];
        fr_t x = fr_t::load(points + 8u * k);
        u32 s = c * chunk;
        u32 e = poly_min(n, s + chunk);
        fr_t acc = fr_t::zero();
        for (u32 i = e; i-- > s;) acc = fr_t::add(fr_t::mul(acc, x), fr_t::load(p + 8u * i));
        fr_t::mul(acc, poly_pow_u32(x, s)).store(part + 8u * w);
    }
}

// Evaluation, pass 2: out[k] = Σ_c part[k·chunks + c], one thread per pair.
extern "C" __global__ void poly_eval_sum(const u32* part, u32 chunks, u32 npoints, u32* out) {
    for (u32 k = blockIdx.x * blockDim.x + threadIdx.x; k < npoints; k += gridDim.x * blockDim.x) {
        fr_t acc = fr_t::zero();
        for (u32 c = 0; c < chunks; c++) acc = fr_t::add(acc, fr_t::load(part + 8u * (k * chunks + c)));
        acc.store(out + 8u * k);
    }
}
