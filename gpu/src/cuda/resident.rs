//! The CUDA backend's resident vectors ([`Poly`]): device buffers that stay on the device between
//! operations. Uploads and downloads are the only host↔device copies of vector data; NTTs, MSMs
//! and programs run on the buffers in place (`kernels/poly.cu`, `kernels/ntt.cu`,
//! `kernels/msm.cu`).

use cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};
use ff::Field;
use group::Group;
use halo2curves::bn256::{Fr, G1};

use super::{drv, msm_launch, plan, to_u32, CudaBackend, DeviceScalars, DeviceValues, MAX_MSM_LEN};
use crate::backend::{BackendError, Bases, Direction, Domain};
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
            let r = msm_launch(&inner, &points, &scalars);
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
