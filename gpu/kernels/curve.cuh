// BN254 G1 (y^2 = x^3 + 3 over Fq) point arithmetic for MSM accumulation.
//
// Affine points use halo2curves' convention: the identity is (0, 0) (not on the curve).
// Accumulators use XYZZ coordinates (x = X/ZZ, y = Y/ZZZ, ZZ^3 = ZZZ^2), identity ZZ = ZZZ = 0.
// Formulas: hyperelliptic.org EFD, "xyzz" for short Weierstrass a = 0:
//   add-2008-s (XYZZ + XYZZ), madd-2008-s (XYZZ + affine), dbl-2008-s-1 (XYZZ doubling),
//   mdbl-2008-s-1 (affine doubling into XYZZ). Special cases (identity operands, P + P, P + (-P))
//   are handled explicitly.
// STATUS: tested on the host against halo2curves (tests/host_arith.rs); compiled by NVRTC; not yet
// run on a GPU.
#pragma once
#include "field.cuh"

struct g1_affine_t {
    fq_t x, y;

    static FD g1_affine_t identity() {
        g1_affine_t r;
        r.x = fq_t::zero();
        r.y = fq_t::zero();
        return r;
    }
    FD bool is_identity() const {
        return x.is_zero() && y.is_zero();
    }
    FD g1_affine_t neg() const {
        g1_affine_t r;
        r.x = x;
        r.y = fq_t::neg(y);
        return r;
    }
    // y^2 == x^3 + 3 (the identity counts as valid).
    FD bool is_on_curve() const {
        if (is_identity()) return true;
        fq_t lhs = fq_t::sqr(y);
        fq_t rhs = fq_t::add(fq_t::mul(fq_t::sqr(x), x), fq_t::from_u32(3));
        return lhs.eq(rhs);
    }
};

struct g1_xyzz_t {
    fq_t X, Y, ZZ, ZZZ;

    static FD g1_xyzz_t identity() {
        g1_xyzz_t r;
        r.X = fq_t::one();
        r.Y = fq_t::one();
        r.ZZ = fq_t::zero();
        r.ZZZ = fq_t::zero();
        return r;
    }
    FD bool is_identity() const {
        return ZZ.is_zero();
    }
    static FD g1_xyzz_t from_affine(const g1_affine_t& p) {
        if (p.is_identity()) return identity();
        g1_xyzz_t r;
        r.X = p.x;
        r.Y = p.y;
        r.ZZ = fq_t::one();
        r.ZZZ = fq_t::one();
        return r;
    }
    FD g1_xyzz_t neg() const {
        g1_xyzz_t r = *this;
        r.Y = fq_t::neg(Y);
        return r;
    }

    // mdbl-2008-s-1: 2*P for an affine P, result in XYZZ.
    static FD g1_xyzz_t dbl_affine(const g1_affine_t& p) {
        if (p.is_identity()) return identity();
        fq_t U = fq_t::dbl(p.y);
        fq_t V = fq_t::sqr(U);
        fq_t W = fq_t::mul(U, V);
        fq_t S = fq_t::mul(p.x, V);
        fq_t xx = fq_t::sqr(p.x);
        fq_t M = fq_t::add(fq_t::dbl(xx), xx);
        g1_xyzz_t r;
        r.X = fq_t::sub(fq_t::sqr(M), fq_t::dbl(S));
        r.Y = fq_t::sub(fq_t::mul(M, fq_t::sub(S, r.X)), fq_t::mul(W, p.y));
        r.ZZ = V;
        r.ZZZ = W;
        return r;
    }

    // dbl-2008-s-1: 2*P.
    FD g1_xyzz_t dbl() const {
        if (is_identity()) return *this;
        // y = 0 has no point of order 2 on BN254 G1 (prime order), so no special case is needed.
        fq_t U = fq_t::dbl(Y);
        fq_t V = fq_t::sqr(U);
        fq_t W = fq_t::mul(U, V);
        fq_t S = fq_t::mul(X, V);
        fq_t xx = fq_t::sqr(X);
        fq_t M = fq_t::add(fq_t::dbl(xx), xx);
        g1_xyzz_t r;
        r.X = fq_t::sub(fq_t::sqr(M), fq_t::dbl(S));
        r.Y = fq_t::sub(fq_t::mul(M, fq_t::sub(S, r.X)), fq_t::mul(W, Y));
        r.ZZ = fq_t::mul(V, ZZ);
        r.ZZZ = fq_t::mul(W, ZZZ);
        return r;
    }

    // madd-2008-s: P + Q for an affine Q.
    FD g1_xyzz_t add_affine(const g1_affine_t& q) const {
        if (q.is_identity()) return *this;
        if (is_identity()) return from_affine(q);
        fq_t U2 = fq_t::mul(q.x, ZZ);
        fq_t S2 = fq_t::mul(q.y, ZZZ);
        fq_t P = fq_t::sub(U2, X);
        fq_t R = fq_t::sub(S2, Y);
        if (P.is_zero()) {
            if (R.is_zero()) return dbl_affine(q);
            return identity();  // P + (-P)
        }
        fq_t PP = fq_t::sqr(P);
        fq_t PPP = fq_t::mul(P, PP);
        fq_t Q = fq_t::mul(X, PP);
        g1_xyzz_t r;
        r.X = fq_t::sub(fq_t::sub(fq_t::sqr(R), PPP), fq_t::dbl(Q));
        r.Y = fq_t::sub(fq_t::mul(R, fq_t::sub(Q, r.X)), fq_t::mul(Y, PPP));
        r.ZZ = fq_t::mul(ZZ, PP);
        r.ZZZ = fq_t::mul(ZZZ, PPP);
        return r;
    }

    // add-2008-s: P + Q.
    FD g1_xyzz_t add(const g1_xyzz_t& q) const {
        if (q.is_identity()) return *this;
        if (is_identity()) return q;
        fq_t U1 = fq_t::mul(X, q.ZZ);
        fq_t U2 = fq_t::mul(q.X, ZZ);
        fq_t S1 = fq_t::mul(Y, q.ZZZ);
        fq_t S2 = fq_t::mul(q.Y, ZZZ);
        fq_t P = fq_t::sub(U2, U1);
        fq_t R = fq_t::sub(S2, S1);
        if (P.is_zero()) {
            if (R.is_zero()) return dbl();
            return identity();
        }
        fq_t PP = fq_t::sqr(P);
        fq_t PPP = fq_t::mul(P, PP);
        fq_t Q = fq_t::mul(U1, PP);
        g1_xyzz_t r;
        r.X = fq_t::sub(fq_t::sub(fq_t::sqr(R), PPP), fq_t::dbl(Q));
        r.Y = fq_t::sub(fq_t::mul(R, fq_t::sub(Q, r.X)), fq_t::mul(S1, PPP));
        r.ZZ = fq_t::mul(fq_t::mul(ZZ, q.ZZ), PP);
        r.ZZZ = fq_t::mul(fq_t::mul(ZZZ, q.ZZZ), PPP);
        return r;
    }

    // One inversion: Z^-1 = ZZ * ZZZ^-1, x = X * Z^-2, y = Y * ZZZ^-1.
    FD g1_affine_t to_affine() const {
        if (is_identity()) return g1_affine_t::identity();
        fq_t zzz_inv = fq_t::inverse(ZZZ);
        fq_t z_inv = fq_t::mul(ZZ, zzz_inv);
        g1_affine_t r;
        r.x = fq_t::mul(X, fq_t::sqr(z_inv));
        r.y = fq_t::mul(Y, zzz_inv);
        return r;
    }
};
