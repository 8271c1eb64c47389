// Host build of the kernel headers (gpu/kernels/*.cuh) for tests/host_arith.rs.
// Compiled by gpu/build.rs with the host C++ compiler; the portable (non-PTX) paths run here.
#include "../../kernels/curve.cuh"
#include "../../kernels/msm.cuh"

template <class F>
static void field_op(int op, const u32* a, const u32* b, u32* out) {
    F x = F::load(a);
    F y = F::load(b);
    F r;
    switch (op) {
        case 0: r = F::add(x, y); break;
        case 1: r = F::sub(x, y); break;
        case 2: r = F::mul(x, y); break;
        case 3: r = F::sqr(x); break;
        case 4: r = F::inverse(x); break;
        case 5: r = F::neg(x); break;
        case 6: r = F::to_montgomery(x); break;
        default: r = F::from_montgomery(x); break;
    }
    r.store(out);
}

static g1_xyzz_t load_xyzz(const u32* p) {
    g1_xyzz_t r;
    r.X = fq_t::load(p);
    r.Y = fq_t::load(p + 8);
    r.ZZ = fq_t::load(p + 16);
    r.ZZZ = fq_t::load(p + 24);
    return r;
}

static g1_affine_t load_affine(const u32* p) {
    g1_affine_t r;
    r.x = fq_t::load(p);
    r.y = fq_t::load(p + 8);
    return r;
}

static void store_affine(const g1_affine_t& p, u32* out) {
    p.x.store(out);
    p.y.store(out + 8);
}

extern "C" {

void gpu_host_fq_op(int op, const u32* a, const u32* b, u32* out) {
    field_op<fq_t>(op, a, b, out);
}

void gpu_host_fr_op(int op, const u32* a, const u32* b, u32* out) {
    field_op<fr_t>(op, a, b, out);
}

// a, b: XYZZ (32 limbs). out: affine (16 limbs).
void gpu_host_g1_add(const u32* a, const u32* b, u32* out) {
    store_affine(load_xyzz(a).add(load_xyzz(b)).to_affine(), out);
}

// a: XYZZ, b: affine.
void gpu_host_g1_add_affine(const u32* a, const u32* b, u32* out) {
    store_affine(load_xyzz(a).add_affine(load_affine(b)).to_affine(), out);
}

void gpu_host_g1_dbl(const u32* a, u32* out) {
    store_affine(load_xyzz(a).dbl().to_affine(), out);
}

void gpu_host_g1_dbl_affine(const u32* a, u32* out) {
    store_affine(g1_xyzz_t::dbl_affine(load_affine(a)).to_affine(), out);
}

void gpu_host_g1_to_affine(const u32* a, u32* out) {
    store_affine(load_xyzz(a).to_affine(), out);
}

int gpu_host_g1_is_on_curve(const u32* a) {
    return load_affine(a).is_on_curve() ? 1 : 0;
}

// Signed digits of a canonical scalar (8 limbs) for window size c: msm_num_windows(c) digits.
u32 gpu_host_msm_recode(const u32* scalar, u32 c, int* digits) {
    u32 windows = msm_num_windows(c);
    u32 carry = 0;
    for (u32 w = 0; w < windows; w++) digits[w] = msm_window_digit(scalar, c, w, &carry);
    return windows;
}

// Σ_{b=lo}^{hi-1} (b+1)·B_b for buckets given as affine points (16 limbs each, nb <= 64 of
// them; no allocation, since the shim is linked without the C++ runtime). Returns 0 if nb > 64.
int gpu_host_msm_weighted_sum(const u32* buckets_affine, u32 nb, u32 lo, u32 hi, u32* out) {
    u32 xyzz[64 * 32];
    if (nb > 64u) return 0;
    for (u32 b = 0; b < nb; b++) {
        msm_store_xyzz(g1_xyzz_t::from_affine(load_affine(buckets_affine + 16u * b)), xyzz + 32u * b);
    }
    store_affine(msm_weighted_sum(xyzz, lo, hi).to_affine(), out);
    return 1;
}

}  // extern "C"
