//! `CheckedBackend`: agreeing backends pass results through; a faulty one is caught; argument
//! errors propagate.

use std::sync::Arc;

use ff::Field;
use gpu::{
    BackendError, BackendName, Bases, CheckedBackend, ComputeBackend, CpuBackend, Direction,
    Domain, Fr, G1Affine, Poly, Program, ProgramBuilder, G1,
};
use group::{Curve, Group};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The CPU backend with one deliberate fault per operation.
struct Faulty;

impl ComputeBackend for Faulty {
    fn name(&self) -> BackendName {
        BackendName::Cuda {
            ordinal: 0,
            device_name: "faulty test double".into(),
        }
    }
    fn msm(&self, bases: &Bases, scalars: &[Fr]) -> Result<G1, BackendError> {
        Ok(CpuBackend.msm(bases, scalars)? + G1::generator())
    }
    fn ntt(&self, v: &mut [Fr], d: &Domain, dir: Direction) -> Result<(), BackendError> {
        CpuBackend.ntt(v, d, dir)?;
        if let Some(last) = v.last_mut() {
            *last += Fr::ONE;
        }
        Ok(())
    }
    fn coset_ntt(&self, v: &mut [Fr], d: &Domain, dir: Direction) -> Result<(), BackendError> {
        CpuBackend.coset_ntt(v, d, dir)?;
        v[0] = Fr::ZERO;
        Ok(())
    }
    fn upload(&self, values: &[Fr]) -> Result<Poly, BackendError> {
        CpuBackend.upload(values)
    }
    fn zeros(&self, len: usize) -> Result<Poly, BackendError> {
        CpuBackend.zeros(len)
    }
    fn download(&self, poly: &Poly) -> Result<Vec<Fr>, BackendError> {
        CpuBackend.download(poly)
    }
    fn copy_range(&self, poly: &Poly, start: usize, len: usize) -> Result<Poly, BackendError> {
        CpuBackend.copy_range(poly, start, len)
    }
    fn ntt_poly(
        &self,
        poly: &mut Poly,
        d: &Domain,
        dir: Direction,
        coset: bool,
    ) -> Result<(), BackendError> {
        // Through the faulty host transforms.
        let mut v = CpuBackend.download(poly)?;
        if coset {
            self.coset_ntt(&mut v, d, dir)?;
        } else {
            self.ntt(&mut v, d, dir)?;
        }
        *poly = CpuBackend.upload(&v)?;
        Ok(())
    }
    fn ntt_shifted(
        &self,
        poly: &mut Poly,
        d: &Domain,
        dir: Direction,
        shift: Fr,
    ) -> Result<(), BackendError> {
        CpuBackend.ntt_shifted(poly, d, dir, shift)?;
        bump(poly, 3)
    }
    fn msm_polys(&self, bases: &Bases, polys: &[&Poly]) -> Result<Vec<G1>, BackendError> {
        polys
            .iter()
            .map(|p| self.msm(bases, &CpuBackend.download(p)?))
            .collect()
    }
    fn batch_invert(&self, poly: &mut Poly) -> Result<(), BackendError> {
        CpuBackend.batch_invert(poly)?;
        bump(poly, 0)
    }
    fn prefix_product(&self, poly: &mut Poly, first: Fr) -> Result<(), BackendError> {
        CpuBackend.prefix_product(poly, first)?;
        bump(poly, 1)
    }
    fn divide_linear(&self, poly: &mut Poly, b: Fr) -> Result<(), BackendError> {
        CpuBackend.divide_linear(poly, b)?;
        bump(poly, 2)
    }
    fn evaluate(&self, poly: &Poly, points: &[Fr]) -> Result<Vec<Fr>, BackendError> {
        let mut v = CpuBackend.evaluate(poly, points)?;
        if let Some(first) = v.first_mut() {
            *first += Fr::ONE;
        }
        Ok(v)
    }
    fn read_range(&self, poly: &Poly, start: usize, len: usize) -> Result<Vec<Fr>, BackendError> {
        let mut v = CpuBackend.read_range(poly, start, len)?;
        v.reverse();
        Ok(v)
    }
    fn write_range(
        &self,
        poly: &mut Poly,
        start: usize,
        values: &[Fr],
    ) -> Result<(), BackendError> {
        CpuBackend.write_range(poly, start + 1, values)
    }
    fn eval_program(
        &self,
        program: &Program,
        inputs: &[&Poly],
        acc: &mut Poly,
        ratio: usize,
        y: Fr,
    ) -> Result<(), BackendError> {
        CpuBackend.eval_program(program, inputs, acc, ratio, y)?;
        let mut v = CpuBackend.download(acc)?;
        if let Some(last) = v.last_mut() {
            *last += Fr::ONE;
        }
        *acc = CpuBackend.upload(&v)?;
        Ok(())
    }
}

/// Adds one to element `i` of a resident vector (a fault).
fn bump(poly: &mut Poly, i: usize) -> Result<(), BackendError> {
    let mut v = CpuBackend.download(poly)?;
    if let Some(x) = v.get_mut(i) {
        *x += Fr::ONE;
    }
    *poly = CpuBackend.upload(&v)?;
    Ok(())
}

fn inputs() -> (Bases, Vec<Fr>, Vec<Fr>) {
    let mut r = ChaCha20Rng::seed_from_u64(9);
    let proj: Vec<G1> = (0..64).map(|_| G1::random(&mut r)).collect();
    let mut pts = vec![G1Affine::default(); 64];
    G1::batch_normalize(&proj, &mut pts);
    let sc: Vec<Fr> = (0..64).map(|_| Fr::random(&mut r)).collect();
    let v: Vec<Fr> = (0..256).map(|_| Fr::random(&mut r)).collect();
    (Bases::new(pts), sc, v)
}

#[test]
fn agreeing_backends_pass_through() {
    let checked = CheckedBackend::new(Arc::new(CpuBackend), Arc::new(CpuBackend));
    let (bases, sc, v) = inputs();
    let d = Domain::new(8).unwrap();
    assert_eq!(
        checked.msm(&bases, &sc).unwrap().to_affine(),
        CpuBackend.msm(&bases, &sc).unwrap().to_affine()
    );
    for dir in [Direction::Forward, Direction::Inverse] {
        let mut a = v.clone();
        let mut b = v.clone();
        checked.ntt(&mut a, &d, dir).unwrap();
        CpuBackend.ntt(&mut b, &d, dir).unwrap();
        assert_eq!(a, b);
        checked.coset_ntt(&mut a, &d, dir).unwrap();
        CpuBackend.coset_ntt(&mut b, &d, dir).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn faults_are_reported() {
    let checked = CheckedBackend::new(Arc::new(Faulty), Arc::new(CpuBackend));
    let (bases, sc, v) = inputs();
    let d = Domain::new(8).unwrap();
    let e = checked.msm(&bases, &sc).unwrap_err();
    assert!(
        matches!(e, BackendError::Mismatch { ref op, .. } if op == "msm"),
        "{e}"
    );
    let mut a = v.clone();
    let e = checked.ntt(&mut a, &d, Direction::Forward).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("ntt forward 2^8"), "{msg}");
    assert!(
        msg.contains("1 of 256 elements differ (first at indices 255)"),
        "{msg}"
    );
    assert!(
        msg.contains("faulty test double") && msg.contains("cpu"),
        "{msg}"
    );
    let mut a = v.clone();
    let e = checked
        .coset_ntt(&mut a, &d, Direction::Inverse)
        .unwrap_err();
    assert!(e.to_string().contains("coset_ntt inverse"), "{e}");
}

#[test]
fn argument_errors_propagate() {
    let checked = CheckedBackend::new(Arc::new(CpuBackend), Arc::new(CpuBackend));
    let (bases, _, _) = inputs();
    assert!(matches!(
        checked.msm(&bases, &[Fr::ONE; 65]),
        Err(BackendError::TooManyScalars { .. })
    ));
    let mut v = vec![Fr::ONE; 3];
    assert!(matches!(
        checked.ntt(&mut v, &Domain::new(2).unwrap(), Direction::Forward),
        Err(BackendError::LengthMismatch { .. })
    ));
}

#[test]
fn resident_operations_are_checked_too() {
    let (bases, sc, v) = inputs();
    let d = Domain::new(8).unwrap();
    let mut b = ProgramBuilder::new(1);
    let q = b.query(0, 1).unwrap();
    let sq = b.mul(q, q);
    b.output(sq);
    let program = b.build().unwrap();
    let good = CheckedBackend::new(Arc::new(CpuBackend), Arc::new(CpuBackend));
    let bad = CheckedBackend::new(Arc::new(Faulty), Arc::new(CpuBackend));
    for (checked, faulty) in [(&good, false), (&bad, true)] {
        let mut p = checked.upload(&v).unwrap();
        let r = checked.ntt_poly(&mut p, &d, Direction::Forward, false);
        assert_eq!(r.is_err(), faulty, "ntt_poly: {r:?}");
        let mut x = checked.upload(&v).unwrap();
        let r = checked.ntt_shifted(&mut x, &d, Direction::Inverse, Fr::from(5));
        assert_eq!(r.is_err(), faulty, "ntt_shifted: {r:?}");
        let input = checked.upload(&v).unwrap();
        let mut acc = checked.zeros(v.len()).unwrap();
        let r = checked.eval_program(&program, &[&input], &mut acc, 1, Fr::ONE);
        assert_eq!(r.is_err(), faulty, "eval_program: {r:?}");
        let s = checked.upload(&sc).unwrap();
        let r = checked.msm_polys(&bases, &[&s]);
        assert_eq!(r.is_err(), faulty, "msm_polys: {r:?}");
        let mut x = checked.upload(&v).unwrap();
        let r = checked.batch_invert(&mut x);
        assert_eq!(r.is_err(), faulty, "batch_invert: {r:?}");
        let mut x = checked.upload(&v).unwrap();
        let r = checked.prefix_product(&mut x, Fr::ONE);
        assert_eq!(r.is_err(), faulty, "prefix_product: {r:?}");
        let mut x = checked.upload(&v).unwrap();
        let r = checked.divide_linear(&mut x, Fr::ONE);
        assert_eq!(r.is_err(), faulty, "divide_linear: {r:?}");
        let x = checked.upload(&v).unwrap();
        let r = checked.evaluate(&x, &[Fr::ONE, -Fr::ONE]);
        assert_eq!(r.is_err(), faulty, "evaluate: {r:?}");
        let r = checked.evaluate_many(&[(&x, &[Fr::ONE][..]), (&x, &[-Fr::ONE][..])]);
        assert_eq!(r.is_err(), faulty, "evaluate_many: {r:?}");
        let r = checked.read_range(&x, 3, 2);
        assert_eq!(r.is_err(), faulty, "read_range: {r:?}");
        let mut x = checked.upload(&v).unwrap();
        let r = checked.write_range(&mut x, 3, &[Fr::ONE, Fr::ONE]);
        assert_eq!(r.is_err(), faulty, "write_range: {r:?}");
        if !faulty {
            let mut want = v.clone();
            CpuBackend.ntt(&mut want, &d, Direction::Forward).unwrap();
            assert_eq!(checked.download(&p).unwrap(), want);
            let sq: Vec<Fr> = (0..v.len())
                .map(|i| v[(i + 1) % v.len()].square())
                .collect();
            assert_eq!(checked.download(&acc).unwrap(), sq);
        }
    }
}
