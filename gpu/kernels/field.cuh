// BN254 base field Fq and scalar field Fr: Montgomery arithmetic on 8 x 32-bit limbs.
//
// Layout: little-endian 32-bit limbs of the Montgomery form a*R mod p, R = 2^256 -- the same bytes
// as halo2curves' Fq/Fr (4 x u64 little-endian Montgomery limbs, `to_raw_bytes`).
//
// Everything is __host__ __device__: the same code is compiled by the host C++ compiler for the
// unit tests in gpu/tests/host_arith.rs (which compare it with halo2curves) and by NVRTC.
// On the device, the carry chains (add, sub, and the multiply-accumulate row of the Montgomery
// product) use PTX add.cc/addc/sub.cc/subc/mad.lo.cc/madc.hi.cc. Define FIELD_PORTABLE to use the
// portable C++ paths on the device as well (for A/B checks). STATUS: the portable paths are tested
// on the host; the PTX paths are compiled by NVRTC in CI and run on the emulated device, whose
// build translates each PTX instruction into C++ by the PTX ISA's semantics (gpu/emu/tools/
// gen_kernels.py): that checks the instruction sequences and their carry flow, not NVRTC's code
// generation. They have not yet run on a GPU.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FD __host__ __device__ __forceinline__
// For long, rarely called loops (exponentiation): a call, not 256 inlined multiplications.
#define FD_NOINLINE __host__ __device__ __noinline__
#define FIELD_NO_UNROLL _Pragma("unroll 1")
#else
#define FD inline
#define FD_NOINLINE inline
#define FIELD_NO_UNROLL
#endif

#if (defined(__CUDA_ARCH__) || defined(CUDA_EMU_KERNEL)) && !defined(FIELD_PORTABLE)
#define FIELD_USE_PTX 1
#endif

typedef unsigned int u32;
typedef unsigned long long u64;

#define FIELD_LIMBS 8

// The emulated device faults on a misaligned element access, as a GPU does on the 128-bit
// accesses of Fp::load / Fp::store; the host unit tests do not check.
static FD void field_check_aligned(const void* p) {
#if defined(CUDA_EMU_KERNEL)
    if (reinterpret_cast<unsigned long long>(p) & 15ull) cuEmuMisaligned(p, 16u);
#else
    (void)p;
#endif
}

// Parameters of the two fields. Constants are returned from small functions so that host and
// device code can both use them without device-side globals; the compiler folds them.
struct FqParams {
    static FD u32 modulus(int i) {
        const u32 m[8] = {0xd87cfd47u, 0x3c208c16u, 0x6871ca8du, 0x97816a91u,
                          0x8181585du, 0xb85045b6u, 0xe131a029u, 0x30644e72u};
        return m[i];
    }
    // R^2 mod p
    static FD u32 r2(int i) {
        const u32 m[8] = {0x538afa89u, 0xf32cfc5bu, 0xd44501fbu, 0xb5e71911u,
                          0x0a417ff6u, 0x47ab1effu, 0xcab8351fu, 0x06d89f71u};
        return m[i];
    }
    // R mod p (Montgomery one)
    static FD u32 one(int i) {
        const u32 m[8] = {0xc58f0d9du, 0xd35d438du, 0xf5c70b3du, 0x0a78eb28u,
                          0x7879462cu, 0x666ea36fu, 0x9a07df2fu, 0x0e0a77c1u};
        return m[i];
    }
    // -p^-1 mod 2^32
    static const u32 inv = 0xe4866389u;
};

struct FrParams {
    static FD u32 modulus(int i) {
        const u32 m[8] = {0xf0000001u, 0x43e1f593u, 0x79b97091u, 0x2833e848u,
                          0x8181585du, 0xb85045b6u, 0xe131a029u, 0x30644e72u};
        return m[i];
    }
    static FD u32 r2(int i) {
        const u32 m[8] = {0xae216da7u, 0x1bb8e645u, 0xe35c59e3u, 0x53fe3ab1u,
                          0x53bb8085u, 0x8c49833du, 0x7f4e44a5u, 0x0216d0b1u};
        return m[i];
    }
    static FD u32 one(int i) {
        const u32 m[8] = {0x4ffffffbu, 0xac96341cu, 0x9f60cd29u, 0x36fc7695u,
                          0x7879462eu, 0x666ea36fu, 0x9a07df2fu, 0x0e0a77c1u};
        return m[i];
    }
    static const u32 inv = 0xefffffffu;
};

// ---- 256-bit limb primitives ------------------------------------------------------------------

// r = a + b (mod 2^256), returns the carry out (0 or 1).
static FD u32 limbs_add(u32 r[8], const u32 a[8], const u32 b[8]) {
#ifdef FIELD_USE_PTX
    u32 carry;
    asm("add.cc.u32  %0, %9, %17;\n\t"
        "addc.cc.u32 %1, %10, %18;\n\t"
        "addc.cc.u32 %2, %11, %19;\n\t"
        "addc.cc.u32 %3, %12, %20;\n\t"
        "addc.cc.u32 %4, %13, %21;\n\t"
        "addc.cc.u32 %5, %14, %22;\n\t"
        "addc.cc.u32 %6, %15, %23;\n\t"
        "addc.cc.u32 %7, %16, %24;\n\t"
        "addc.u32    %8, 0, 0;"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]), "=r"(r[4]), "=r"(r[5]), "=r"(r[6]),
          "=r"(r[7]), "=r"(carry)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(a[4]), "r"(a[5]), "r"(a[6]), "r"(a[7]),
          "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(b[4]), "r"(b[5]), "r"(b[6]), "r"(b[7]));
    return carry;
#else
    u64 c = 0;
    for (int i = 0; i < 8; i++) {
        c += (u64)a[i] + b[i];
        r[i] = (u32)c;
        c >>= 32;
    }
    return (u32)c;
#endif
}

// r = a - b (mod 2^256), returns the borrow (0 or 1).
static FD u32 limbs_sub(u32 r[8], const u32 a[8], const u32 b[8]) {
#ifdef FIELD_USE_PTX
    u32 borrow;
    asm("sub.cc.u32  %0, %9, %17;\n\t"
        "subc.cc.u32 %1, %10, %18;\n\t"
        "subc.cc.u32 %2, %11, %19;\n\t"
        "subc.cc.u32 %3, %12, %20;\n\t"
        "subc.cc.u32 %4, %13, %21;\n\t"
        "subc.cc.u32 %5, %14, %22;\n\t"
        "subc.cc.u32 %6, %15, %23;\n\t"
        "subc.cc.u32 %7, %16, %24;\n\t"
        "subc.u32    %8, 0, 0;"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]), "=r"(r[4]), "=r"(r[5]), "=r"(r[6]),
          "=r"(r[7]), "=r"(borrow)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(a[4]), "r"(a[5]), "r"(a[6]), "r"(a[7]),
          "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(b[4]), "r"(b[5]), "r"(b[6]), "r"(b[7]));
    return borrow & 1u;  // subc of 0 - 0 - borrow gives 0 or 0xffffffff
#else
    u64 br = 0;
    for (int i = 0; i < 8; i++) {
        u64 d = (u64)a[i] - b[i] - br;
        r[i] = (u32)d;
        br = (d >> 63) & 1;
    }
    return (u32)br;
#endif
}

// t[0..10] += a[0..8] * b, where t[9] must be 0 on entry (it receives the final carry).
static FD void limbs_mac_row(u32 t[10], const u32 a[8], u32 b) {
#ifdef FIELD_USE_PTX
    asm("mad.lo.cc.u32  %0, %10, %18, %0;\n\t"
        "madc.lo.cc.u32 %1, %11, %18, %1;\n\t"
        "madc.lo.cc.u32 %2, %12, %18, %2;\n\t"
        "madc.lo.cc.u32 %3, %13, %18, %3;\n\t"
        "madc.lo.cc.u32 %4, %14, %18, %4;\n\t"
        "madc.lo.cc.u32 %5, %15, %18, %5;\n\t"
        "madc.lo.cc.u32 %6, %16, %18, %6;\n\t"
        "madc.lo.cc.u32 %7, %17, %18, %7;\n\t"
        "addc.u32       %8, %8, 0;\n\t"
        "mad.hi.cc.u32  %1, %10, %18, %1;\n\t"
        "madc.hi.cc.u32 %2, %11, %18, %2;\n\t"
        "madc.hi.cc.u32 %3, %12, %18, %3;\n\t"
        "madc.hi.cc.u32 %4, %13, %18, %4;\n\t"
        "madc.hi.cc.u32 %5, %14, %18, %5;\n\t"
        "madc.hi.cc.u32 %6, %15, %18, %6;\n\t"
        "madc.hi.cc.u32 %7, %16, %18, %7;\n\t"
        "madc.hi.cc.u32 %8, %17, %18, %8;\n\t"
        "addc.u32       %9, 0, 0;"
        : "+r"(t[0]), "+r"(t[1]), "+r"(t[2]), "+r"(t[3]), "+r"(t[4]), "+r"(t[5]), "+r"(t[6]),
          "+r"(t[7]), "+r"(t[8]), "=r"(t[9])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(a[4]), "r"(a[5]), "r"(a[6]), "r"(a[7]),
          "r"(b));
#else
    u64 c = 0;
    for (int j = 0; j < 8; j++) {
        c += (u64)a[j] * b + t[j];
        t[j] = (u32)c;
        c >>= 32;
    }
    c += t[8];
    t[8] = (u32)c;
    t[9] = (u32)(c >> 32);
#endif
}

// ---- field element ----------------------------------------------------------------------------

template <class P>
struct Fp {
    u32 l[8];

    static FD Fp zero() {
        Fp r;
        for (int i = 0; i < 8; i++) r.l[i] = 0;
        return r;
    }
    // Montgomery one (R mod p).
    static FD Fp one() {
        Fp r;
        for (int i = 0; i < 8; i++) r.l[i] = P::one(i);
        return r;
    }
    static FD Fp modulus() {
        Fp r;
        for (int i = 0; i < 8; i++) r.l[i] = P::modulus(i);
        return r;
    }
    // An element is 32 bytes and starts 16-byte aligned in every buffer the kernels get (the
    // driver aligns allocations to 256 bytes; elements, points and their coordinates are
    // multiples of 32 bytes): on the device, two 128-bit accesses instead of eight 32-bit ones.
    static FD Fp load(const u32* src) {
        Fp r;
#if defined(__CUDA_ARCH__)
        const uint4 a = reinterpret_cast<const uint4*>(src)[0];
        const uint4 b = reinterpret_cast<const uint4*>(src)[1];
        r.l[0] = a.x; r.l[1] = a.y; r.l[2] = a.z; r.l[3] = a.w;
        r.l[4] = b.x; r.l[5] = b.y; r.l[6] = b.z; r.l[7] = b.w;
#else
        field_check_aligned(src);
#if defined(CUDA_EMU_KERNEL)
        emu_count_element();  // the emulated device counts each thread's element accesses
#endif
        for (int i = 0; i < 8; i++) r.l[i] = src[i];
#endif
        return r;
    }
    FD void store(u32* dst) const {
#if defined(__CUDA_ARCH__)
        uint4 a, b;
        a.x = l[0]; a.y = l[1]; a.z = l[2]; a.w = l[3];
        b.x = l[4]; b.y = l[5]; b.z = l[6]; b.w = l[7];
        reinterpret_cast<uint4*>(dst)[0] = a;
        reinterpret_cast<uint4*>(dst)[1] = b;
#else
        field_check_aligned(dst);
#if defined(CUDA_EMU_KERNEL)
        emu_count_element();
#endif
        for (int i = 0; i < 8; i++) dst[i] = l[i];
#endif
    }

    FD bool is_zero() const {
        u32 acc = 0;
        for (int i = 0; i < 8; i++) acc |= l[i];
        return acc == 0;
    }
    FD bool eq(const Fp& o) const {
        u32 acc = 0;
        for (int i = 0; i < 8; i++) acc |= l[i] ^ o.l[i];
        return acc == 0;
    }

    // Inputs and outputs are fully reduced (< p).
    static FD Fp add(const Fp& a, const Fp& b) {
        Fp s, t;
        const Fp p = modulus();
        limbs_add(s.l, a.l, b.l);  // no carry out: a + b < 2p < 2^255
        u32 borrow = limbs_sub(t.l, s.l, p.l);
        return borrow ? s : t;
    }
    static FD Fp sub(const Fp& a, const Fp& b) {
        Fp d, t;
        const Fp p = modulus();
        u32 borrow = limbs_sub(d.l, a.l, b.l);
        limbs_add(t.l, d.l, p.l);
        return borrow ? t : d;
    }
    static FD Fp neg(const Fp& a) {
        return sub(zero(), a);
    }
    static FD Fp dbl(const Fp& a) {
        return add(a, a);
    }

    // Montgomery product a*b*R^-1 mod p (CIOS: one multiply row and one reduction row per limb).
    static FD Fp mul(const Fp& a, const Fp& b) {
#if defined(CUDA_EMU_KERNEL)
        emu_count_mul();  // the emulated device counts each thread's multiplications
#endif
        const Fp p = modulus();
        u32 t[10];
        for (int i = 0; i < 10; i++) t[i] = 0;
        for (int i = 0; i < 8; i++) {
            t[9] = 0;
            limbs_mac_row(t, a.l, b.l[i]);
            u32 hi = t[9];
            u32 m = t[0] * P::inv;
            t[9] = 0;
            limbs_mac_row(t, p.l, m);  // t[0] becomes 0
            u32 top = t[9] + hi;       // < 2 because t < 2p < 2^255 between rows
            for (int j = 0; j < 8; j++) t[j] = t[j + 1];
            t[8] = top;
        }
        Fp r, s;
        for (int i = 0; i < 8; i++) r.l[i] = t[i];
        // r < 2p; t[8] is 0 here because p < 2^254.
        u32 borrow = limbs_sub(s.l, r.l, p.l);
        return borrow ? r : s;
    }
    static FD Fp sqr(const Fp& a) {
        return mul(a, a);
    }

    static FD Fp to_montgomery(const Fp& raw) {
        Fp r2;
        for (int i = 0; i < 8; i++) r2.l[i] = P::r2(i);
        return mul(raw, r2);
    }
    static FD Fp from_montgomery(const Fp& a) {
        Fp one_raw = zero();
        one_raw.l[0] = 1;
        return mul(a, one_raw);
    }
    // Small constant (< 2^32) in Montgomery form.
    static FD Fp from_u32(u32 v) {
        Fp raw = zero();
        raw.l[0] = v;
        return to_montgomery(raw);
    }

    // a^e, e given as 8 little-endian limbs (square-and-multiply, most significant bit first).
    static FD_NOINLINE Fp pow(const Fp& a, const u32 e[8]) {
        Fp r = one();
        FIELD_NO_UNROLL
        for (int i = 7; i >= 0; i--) {
            FIELD_NO_UNROLL
            for (int bit = 31; bit >= 0; bit--) {
                r = sqr(r);
                if ((e[i] >> bit) & 1u) r = mul(r, a);
            }
        }
        return r;
    }
    // a^(p-2) = a^-1 for a != 0; 0 maps to 0.
    static FD_NOINLINE Fp inverse(const Fp& a) {
        u32 e[8];
        for (int i = 0; i < 8; i++) e[i] = P::modulus(i);
        e[0] -= 2;  // the low limb of both moduli is >= 2
        return pow(a, e);
    }
};

typedef Fp<FqParams> fq_t;
typedef Fp<FrParams> fr_t;
