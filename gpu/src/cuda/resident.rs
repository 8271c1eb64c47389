//! The CUDA backend's resident vectors ([`Poly`]): device buffers that stay on the device between
//! operations. Uploads and downloads are the only host↔device copies of vector data; NTTs, MSMs
//! and programs run on the buffers in place (`kernels/poly.cu`, `kernels/ntt.cu`,
//! `kernels/msm.cu`).

use cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};
use ff::Field;
use group::Group;
use halo2curves::bn256::{Fr, G1};

use super::{
    drv, msm_launch, plan, to_u32, CudaBackend, DeviceScalars, DeviceValues, Inner, MAX_MSM_LEN,
};
use crate::backend::{check_range, BackendError, Bases, Direction, Domain};
use crate::poly::{foreign, Poly, Repr};
use crate::program::{Program, MAX_SLOTS};

/// Threads per block of the row-wise kernels.
const ROW_BLOCK: u32 = 128;
/// Most blocks of a grid-stride launch (each thread then handles several rows).
const MAX_ROW_BLOCKS: usize = 132 * 16;

fn row_grid(rows: usize) -> LaunchConfig {
    let blocks = rows.div_ceil(ROW_BLOCK as usize).clamp(1, MAX_ROW_BLOCKS) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (ROW_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl CudaBackend {
    fn wrap(&self, values: DeviceValues) -> Poly {
        Poly {
            len: values.len,
            repr: Repr::Cuda {
                backend: self.id,
                values,
            },
        }
    }

    fn values<'p>(&self, poly: &'p Poly) -> Result<&'p DeviceValues, BackendError> {
        match &poly.repr {
            Repr::Cuda { backend, values } if *backend == self.id => Ok(values),
            _ => Err(foreign("this CUDA")),
        }
    }

    fn values_mut<'p>(&self, poly: &'p mut Poly) -> Result<&'p mut DeviceValues, BackendError> {
        match &mut poly.repr {
            Repr::Cuda { backend, values } if *backend == self.id => Ok(values),
            _ => Err(foreign("this CUDA")),
        }
    }

    pub(super) fn poly_upload(&self, values: &[Fr]) -> Result<Poly, BackendError> {
        Ok(self.wrap(self.upload_values(values)?))
    }

    pub(super) fn poly_zeros(&self, len: usize) -> Result<Poly, BackendError> {
        let inner = self.lock()?;
        let data = inner
            .stream
            .alloc_zeros::<u32>((len * 8).max(8))
            .map_err(drv("allocating a vector"))?;
        Ok(self.wrap(DeviceValues { data, len }))
    }

    pub(super) fn poly_download(&self, poly: &Poly) -> Result<Vec<Fr>, BackendError> {
        let v = self.values(poly)?;
        let mut out = vec![Fr::ZERO; v.len];
        self.download_values(v, &mut out)?;
        Ok(out)
    }

    pub(super) fn poly_copy_range(
        &self,
        poly: &Poly,
        start: usize,
        len: usize,
    ) -> Result<Poly, BackendError> {
        let src = self.values(poly)?;
        let inner = self.lock()?;
        let mut data = inner
            .stream
            .alloc_zeros::<u32>((len * 8).max(8))
            .map_err(drv("allocating a vector"))?;
        let from = start.min(src.len);
        let keep = len.min(src.len - from) * 8;
        if keep > 0 {
            inner
                .stream
                .memcpy_dtod(
                    &src.data.slice(from * 8..from * 8 + keep),
                    &mut data.slice_mut(..keep),
                )
                .map_err(drv("copying a vector"))?;
        }
        inner
            .stream
            .synchronize()
            .map_err(drv("copying a vector"))?;
        Ok(self.wrap(DeviceValues { data, len }))
    }

    pub(super) fn poly_ntt(
        &self,
        poly: &mut Poly,
        domain: &Domain,
        direction: Direction,
        coset: bool,
    ) -> Result<(), BackendError> {
        let v = self.values_mut(poly)?;
        self.ntt_device(v, domain, direction, coset)
    }

    pub(super) fn poly_ntt_shifted(
        &self,
        poly: &mut Poly,
        domain: &Domain,
        direction: Direction,
        shift: Fr,
    ) -> Result<(), BackendError> {
        let v = self.values_mut(poly)?;
        self.ntt_device_shifted(v, domain, direction, Some(shift))
    }

    pub(super) fn poly_msm(&self, bases: &Bases, polys: &[&Poly]) -> Result<Vec<G1>, BackendError> {
        let mut out = Vec::with_capacity(polys.len());
        for p in polys {
            let v = self.values(p)?;
            if v.len > bases.len() {
                return Err(BackendError::TooManyScalars {
                    scalars: v.len,
                    bases: bases.len(),
                });
            }
            if v.len > MAX_MSM_LEN {
                return Err(BackendError::Device(format!(
                    "msm: {} scalars exceed the supported {MAX_MSM_LEN}",
                    v.len
                )));
            }
            if v.len == 0 {
                out.push(G1::identity());
                continue;
            }
            let mut inner = self.lock()?;
            let points = Self::resident_bases(&mut inner, bases)?;
            let n32 = to_u32(v.len, "msm length")?;
            // The MSM kernels take canonical scalars: converted on the device, no host copy.
            let mut limbs: CudaSlice<u32> = inner
                .stream
                .alloc_zeros::<u32>(v.len * 8)
                .map_err(drv("allocating msm scalars"))?;
            // SAFETY: poly_from_mont(const u32* in, u32* out, u32 n): `v.data` holds at least
            // n·8 limbs (a DeviceValues of len n), `limbs` exactly n·8; a grid-stride loop over
            // i < n touches element i of each only.
            unsafe {
                inner
                    .stream
                    .launch_builder(&inner.kernels.poly_from_mont)
                    .arg(&v.data)
                    .arg(&mut limbs)
                    .arg(&n32)
                    .launch(row_grid(v.len))
            }
            .map_err(drv("launching poly_from_mont"))?;
            let scalars = DeviceScalars { limbs, len: v.len };
            let r = msm_launch(&inner, &points, &scalars, plan::window_bits(v.len));
            let sync = inner.stream.synchronize().map_err(drv("msm kernels"));
            out.push(r?);
            sync?;
        }
        Ok(out)
    }

    pub(super) fn poly_eval_program(
        &self,
        program: &Program,
        inputs: &[&Poly],
        acc: &mut Poly,
        ratio: usize,
        y: Fr,
    ) -> Result<(), BackendError> {
        let input_values = inputs
            .iter()
            .map(|p| self.values(p))
            .collect::<Result<Vec<_>, _>>()?;
        let lens: Vec<usize> = input_values.iter().map(|v| v.len).collect();
        program.check_args(&lens, acc.len(), ratio)?;
        if program.slots() > MAX_SLOTS {
            return Err(BackendError::Device(format!(
                "program needs {} slots, the device interpreter has {MAX_SLOTS}",
                program.slots()
            )));
        }
        let size = acc.len();
        let size32 = to_u32(size, "program rows")?;
        let code = program.encode();
        let n_instr = to_u32(program.code().len(), "program length")?;
        let consts = plan::fr_to_limbs(program.constants())?;
        let (q_input, q_shift): (Vec<u32>, Vec<u32>) = program
            .queries()
            .iter()
            .map(|&(input, _)| input)
            .zip(program.query_shifts(ratio, size))
            .unzip();
        let y_limbs = plan::fr_to_limbs(&[y])?;
        let acc_values = self.values_mut(acc)?;
        let inner = self.lock()?;
        let s = &inner.stream;
        // The device pointers of the inputs, read by the kernel through `inputs`.
        let (ptrs, _reads): (Vec<u64>, Vec<_>) =
            input_values.iter().map(|v| v.data.device_ptr(s)).unzip();
        // Small tables: never empty (a zero-length upload is not a buffer).
        let up = |v: &[u32], what: &'static str| {
            if v.is_empty() {
                s.alloc_zeros::<u32>(1)
            } else {
                s.clone_htod(v)
            }
            .map_err(drv(what))
        };
        let code_d = up(&code, "uploading a program")?;
        let consts_d = up(&consts, "uploading program constants")?;
        let q_input_d = up(&q_input, "uploading program queries")?;
        let q_shift_d = up(&q_shift, "uploading program queries")?;
        let y_d = up(&y_limbs, "uploading y")?;
        let ptrs_d = if ptrs.is_empty() {
            s.alloc_zeros::<u64>(1)
        } else {
            s.clone_htod(&ptrs)
        }
        .map_err(drv("uploading input pointers"))?;
        // SAFETY: poly_eval(const u32* code, u32 n_instr, const u32* consts, const u64* inputs,
        // const u32* q_input, const u32* q_shift, u32 size, u32* acc, const u32* y):
        // `code` holds 4·n_instr words whose slots are < program.slots() ≤ MAX_SLOTS (the
        // kernel's array), whose query and constant indices are < queries().len() and
        // constants().len() (built by ProgramBuilder), `q_input` names inputs < inputs.len()
        // (checked by check_args against `ptrs`), every input and `acc` hold `size` elements
        // (check_args) and `size` is a power of two, so `(row + shift) & (size - 1)` stays in
        // bounds; each row is read and written by one thread only. The input buffers outlive the
        // launch (the stream is synchronised below while `input_values` is borrowed).
        unsafe {
            s.launch_builder(&inner.kernels.poly_eval)
                .arg(&code_d)
                .arg(&n_instr)
                .arg(&consts_d)
                .arg(&ptrs_d)
                .arg(&q_input_d)
                .arg(&q_shift_d)
                .arg(&size32)
                .arg(&mut acc_values.data)
                .arg(&y_d)
                .launch(row_grid(size))
        }
        .map_err(drv("launching poly_eval"))?;
        s.synchronize().map_err(drv("poly_eval"))
    }
}

/// Elements per thread of the chunked passes (batch inversion, the two recurrences).
const SCAN_CHUNK: usize = 64;
/// Coefficients per thread of the evaluation's first pass.
const EVAL_CHUNK: usize = 256;
/// Threads of `poly_affine_carries` (its `POLY_CARRY_THREADS`).
const CARRY_THREADS: u32 = 256;

impl CudaBackend {
    /// Pass 2 of the chunked recurrences: the carry entering each of `count` chunks whose maps
    /// are `x ↦ t[k] + m[k]·x`, visited in ascending (or, with `reverse`, descending) order from
    /// `init`.
    fn affine_carries(
        inner: &Inner,
        t: &CudaSlice<u32>,
        m: &CudaSlice<u32>,
        count: usize,
        init: Fr,
        reverse: bool,
    ) -> Result<CudaSlice<u32>, BackendError> {
        let s = &inner.stream;
        let count32 = to_u32(count, "chunk count")?;
        let init_d = s
            .clone_htod(&plan::fr_to_limbs(&[init])?)
            .map_err(drv("uploading a carry"))?;
        let mut carry = s
            .alloc_zeros::<u32>(count.max(1) * 8)
            .map_err(drv("allocating carries"))?;
        let rev = u32::from(reverse);
        // SAFETY: poly_affine_carries(const u32* t, const u32* m, u32 count, const u32* init,
        // u32 reverse, u32* carry) on one block of CARRY_THREADS (its POLY_CARRY_THREADS, the
        // size of its shared arrays): `t`, `m` and `carry` hold `count` elements of 8 limbs
        // (allocated by the callers and here), `init` one; each thread touches chunk indices
        // < count only.
        unsafe {
            s.launch_builder(&inner.kernels.poly_affine_carries)
                .arg(t)
                .arg(m)
                .arg(&count32)
                .arg(&init_d)
                .arg(&rev)
                .arg(&mut carry)
                .launch(LaunchConfig {
                    grid_dim: (1, 1, 1),
                    block_dim: (CARRY_THREADS, 1, 1),
                    shared_mem_bytes: 0,
                })
        }
        .map_err(drv("launching poly_affine_carries"))?;
        Ok(carry)
    }

    pub(super) fn poly_batch_invert(&self, poly: &mut Poly) -> Result<(), BackendError> {
        let v = self.values_mut(poly)?;
        if v.len == 0 {
            return Ok(());
        }
        let n32 = to_u32(v.len, "batch_invert length")?;
        let chunk = SCAN_CHUNK as u32;
        let inner = self.lock()?;
        let s = &inner.stream;
        let mut scratch = s
            .alloc_zeros::<u32>(v.len * 8)
            .map_err(drv("allocating inversion scratch"))?;
        // SAFETY: poly_batch_invert(u32* v, u32* scratch, u32 n, u32 chunk): `v.data` and
        // `scratch` hold n elements; thread c touches elements c·chunk .. min(n, (c+1)·chunk)
        // of each, so no two threads share an element.
        unsafe {
            s.launch_builder(&inner.kernels.poly_batch_invert)
                .arg(&mut v.data)
                .arg(&mut scratch)
                .arg(&n32)
                .arg(&chunk)
                .launch(row_grid(v.len.div_ceil(SCAN_CHUNK)))
        }
        .map_err(drv("launching poly_batch_invert"))?;
        s.synchronize().map_err(drv("poly_batch_invert"))
    }

    pub(super) fn poly_prefix_product(
        &self,
        poly: &mut Poly,
        first: Fr,
    ) -> Result<(), BackendError> {
        let v = self.values_mut(poly)?;
        if v.len == 0 {
            return Ok(());
        }
        let n32 = to_u32(v.len, "prefix_product length")?;
        let chunk = SCAN_CHUNK as u32;
        let chunks = v.len.div_ceil(SCAN_CHUNK);
        let inner = self.lock()?;
        let s = &inner.stream;
        let alloc = || {
            s.alloc_zeros::<u32>(chunks * 8)
                .map_err(drv("allocating chunk products"))
        };
        let (mut t, mut m) = (alloc()?, alloc()?);
        // SAFETY: poly_scan_mul_local(u32* v, u32 n, u32 chunk, u32* t, u32* m): `v.data` holds
        // n elements, `t` and `m` ceil(n / chunk); thread c touches chunk c only.
        unsafe {
            s.launch_builder(&inner.kernels.poly_scan_mul_local)
                .arg(&mut v.data)
                .arg(&n32)
                .arg(&chunk)
                .arg(&mut t)
                .arg(&mut m)
                .launch(row_grid(chunks))
        }
        .map_err(drv("launching poly_scan_mul_local"))?;
        let carry = Self::affine_carries(&inner, &t, &m, chunks, first, false)?;
        // SAFETY: poly_scan_mul_apply(u32* v, u32 n, u32 chunk, const u32* carry): `v.data`
        // holds n elements and `carry` ceil(n / chunk); thread i touches element i only.
        unsafe {
            s.launch_builder(&inner.kernels.poly_scan_mul_apply)
                .arg(&mut v.data)
                .arg(&n32)
                .arg(&chunk)
                .arg(&carry)
                .launch(row_grid(v.len))
        }
        .map_err(drv("launching poly_scan_mul_apply"))?;
        s.synchronize().map_err(drv("prefix product"))
    }

    pub(super) fn poly_divide_linear(&self, poly: &mut Poly, b: Fr) -> Result<(), BackendError> {
        let v = self.values_mut(poly)?;
        if v.len == 0 {
            return Ok(());
        }
        let n32 = to_u32(v.len, "divide_linear length")?;
        let chunk = SCAN_CHUNK as u32;
        let chunks = v.len.div_ceil(SCAN_CHUNK);
        let inner = self.lock()?;
        let s = &inner.stream;
        let alloc = |len: usize| {
            s.alloc_zeros::<u32>(len * 8)
                .map_err(drv("allocating division scratch"))
        };
        let (mut l, mut t, mut m) = (alloc(v.len)?, alloc(chunks)?, alloc(chunks)?);
        let b_d = s
            .clone_htod(&plan::fr_to_limbs(&[b])?)
            .map_err(drv("uploading a divisor"))?;
        // SAFETY: poly_div_local(const u32* a, u32* l, u32 n, u32 chunk, const u32* b, u32* t,
        // u32* m): `v.data` and `l` hold n elements, `t` and `m` ceil(n / chunk), `b` one;
        // thread c reads chunk c of `a` and writes chunk c of `l` and element c of `t`, `m`.
        unsafe {
            s.launch_builder(&inner.kernels.poly_div_local)
                .arg(&v.data)
                .arg(&mut l)
                .arg(&n32)
                .arg(&chunk)
                .arg(&b_d)
                .arg(&mut t)
                .arg(&mut m)
                .launch(row_grid(chunks))
        }
        .map_err(drv("launching poly_div_local"))?;
        let carry = Self::affine_carries(&inner, &t, &m, chunks, Fr::ZERO, true)?;
        // SAFETY: poly_div_apply(const u32* l, u32* out, u32 n, u32 chunk, const u32* b,
        // const u32* carry): `l` and `v.data` (the output; pass 1 has finished reading it on
        // this stream) hold n elements, `carry` ceil(n / chunk); thread c writes out[s-1 ..
        // e-1) for its chunk [s, e) (and out[n-1] for the last chunk): disjoint per thread.
        unsafe {
            s.launch_builder(&inner.kernels.poly_div_apply)
                .arg(&l)
                .arg(&mut v.data)
                .arg(&n32)
                .arg(&chunk)
                .arg(&b_d)
                .arg(&carry)
                .launch(row_grid(chunks))
        }
        .map_err(drv("launching poly_div_apply"))?;
        s.synchronize().map_err(drv("division by X - b"))
    }

    /// `p_i(x)` for every point x of every request `(p_i, points_i)`: per length of the
    /// polynomials, one pass of `poly_eval_partial` over every (polynomial, point) pair and one
    /// of `poly_eval_sum`, and one read of the values (not one launch pair and one read per
    /// polynomial).
    pub(super) fn poly_evaluate_many(
        &self,
        requests: &[(&Poly, &[Fr])],
    ) -> Result<Vec<Vec<Fr>>, BackendError> {
        let values = requests
            .iter()
            .map(|(p, _)| self.values(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out: Vec<Vec<Fr>> = requests
            .iter()
            .map(|(_, points)| vec![Fr::ZERO; points.len()])
            .collect();
        // The pairs (request, point) by the length of the request's polynomial; the zero
        // polynomial of length 0 evaluates to zero.
        let mut by_len: std::collections::BTreeMap<usize, Vec<(usize, usize)>> =
            std::collections::BTreeMap::new();
        for (r, ((_, points), v)) in requests.iter().zip(&values).enumerate() {
            if v.len > 0 && !points.is_empty() {
                let pairs = by_len.entry(v.len).or_default();
                pairs.extend((0..points.len()).map(|k| (r, k)));
            }
        }
        if by_len.is_empty() {
            return Ok(out);
        }
        let inner = self.lock()?;
        let s = &inner.stream;
        for (len, pairs) in &by_len {
            let n32 = to_u32(*len, "evaluate length")?;
            let chunk = EVAL_CHUNK as u32;
            let chunks = len.div_ceil(EVAL_CHUNK);
            let np = to_u32(pairs.len(), "evaluation points")?;
            let total = chunks * pairs.len();
            to_u32(total, "evaluation parts")?;
            let chunks32 = to_u32(chunks, "evaluation chunks")?;
            let points: Vec<Fr> = pairs.iter().map(|&(r, k)| requests[r].1[k]).collect();
            // The device address of each pair's polynomial, read by the kernel through `polys`.
            let (ptrs, _reads): (Vec<u64>, Vec<_>) = pairs
                .iter()
                .map(|&(r, _)| values[r].data.device_ptr(s))
                .unzip();
            let polys_d = s
                .clone_htod(&ptrs)
                .map_err(drv("uploading evaluation polynomials"))?;
            let points_d = s
                .clone_htod(&plan::fr_to_limbs(&points)?)
                .map_err(drv("uploading evaluation points"))?;
            let mut part = s
                .alloc_zeros::<u32>(total * 8)
                .map_err(drv("allocating evaluation parts"))?;
            let mut sums = s
                .alloc_zeros::<u32>(pairs.len() * 8)
                .map_err(drv("allocating evaluations"))?;
            // SAFETY: poly_eval_partial(const u64* polys, u32 n, u32 chunk, const u32* points,
            // u32 npoints, u32* part): `polys` holds npoints device addresses of live buffers of
            // n elements each (every polynomial of this group has length n; the buffers are
            // borrowed through `values` until the stream is synchronised below), `points`
            // npoints elements, `part` npoints·ceil(n / chunk) (< 2^32, checked); work item w
            // writes part[w] only.
            unsafe {
                s.launch_builder(&inner.kernels.poly_eval_partial)
                    .arg(&polys_d)
                    .arg(&n32)
                    .arg(&chunk)
                    .arg(&points_d)
                    .arg(&np)
                    .arg(&mut part)
                    .launch(row_grid(total))
            }
            .map_err(drv("launching poly_eval_partial"))?;
            // SAFETY: poly_eval_sum(const u32* part, u32 chunks, u32 npoints, u32* out): `part`
            // holds npoints·chunks elements, `sums` npoints; thread k writes sums[k] only.
            unsafe {
                s.launch_builder(&inner.kernels.poly_eval_sum)
                    .arg(&part)
                    .arg(&chunks32)
                    .arg(&np)
                    .arg(&mut sums)
                    .launch(row_grid(pairs.len()))
            }
            .map_err(drv("launching poly_eval_sum"))?;
            let mut limbs = vec![0u32; pairs.len() * 8];
            s.memcpy_dtoh(&sums, &mut limbs)
                .map_err(drv("downloading evaluations"))?;
            s.synchronize().map_err(drv("evaluation"))?;
            let mut got = vec![Fr::ZERO; pairs.len()];
            plan::limbs_to_fr(&limbs, &mut got);
            for (&(r, k), v) in pairs.iter().zip(got) {
                out[r][k] = v;
            }
        }
        Ok(out)
    }

    pub(super) fn poly_read_range(
        &self,
        poly: &Poly,
        start: usize,
        len: usize,
    ) -> Result<Vec<Fr>, BackendError> {
        let v = self.values(poly)?;
        check_range("read_range", start, len, v.len)?;
        let mut out = vec![Fr::ZERO; len];
        if len == 0 {
            return Ok(out);
        }
        let inner = self.lock()?;
        let mut limbs = vec![0u32; len * 8];
        inner
            .stream
            .memcpy_dtoh(&v.data.slice(start * 8..(start + len) * 8), &mut limbs)
            .map_err(drv("reading a range"))?;
        inner.stream.synchronize().map_err(drv("reading a range"))?;
        plan::limbs_to_fr(&limbs, &mut out);
        Ok(out)
    }

    pub(super) fn poly_write_range(
        &self,
        poly: &mut Poly,
        start: usize,
        values: &[Fr],
    ) -> Result<(), BackendError> {
        let v = self.values_mut(poly)?;
        check_range("write_range", start, values.len(), v.len)?;
        if values.is_empty() {
            return Ok(());
        }
        let limbs = plan::fr_to_limbs(values)?;
        let inner = self.lock()?;
        inner
            .stream
            .memcpy_htod(
                &limbs,
                &mut v.data.slice_mut(start * 8..(start + values.len()) * 8),
            )
            .map_err(drv("writing a range"))?;
        inner.stream.synchronize().map_err(drv("writing a range"))
    }
}
