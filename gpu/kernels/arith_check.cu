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
