//! Copies of `Fr` vectors between the host and the device through page-locked staging buffers.
//!
//! A copy from pageable memory is staged by the driver through its own page-locked buffer, one
//! piece at a time, and the host converts the whole vector into a fresh `Vec` before it starts.
//! Here each direction has two page-locked buffers of [`CHUNK`] elements: the host converts one
//! chunk into one buffer while the copy engine moves the other, and no vector-sized host buffer
//! is allocated. Each buffer has an event recorded after the copy that last used it; the host
//! waits on it before it writes (upload) or reads (download) that buffer again. Uploads return
//! with their last copies still queued on the stream: later work on the stream is ordered after
//! them, and the caller's slice has been read in full.

use cudarc::driver::{CudaContext, CudaEvent, CudaSlice, CudaStream, PinnedHostSlice};
use halo2curves::bn256::Fr;
use std::sync::Arc;

use super::{drv, plan};
use crate::backend::BackendError;

/// Elements per staging buffer (4 MiB of limbs).
pub const CHUNK: usize = 1 << 17;

struct Buffer {
    host: PinnedHostSlice<u32>,
    /// Recorded after the last copy from or into `host`.
    done: CudaEvent,
}

impl Buffer {
    fn new(ctx: &Arc<CudaContext>, write_combined: bool) -> Result<Self, BackendError> {
        let what = "allocating a page-locked staging buffer";
        // SAFETY: the memory is only reached through `as_mut_slice` after `done` is waited on,
        // so the host never touches it while a copy from or into it may run.
        let host = unsafe {
            if write_combined {
                ctx.alloc_pinned::<u32>(CHUNK * 8)
            } else {
                ctx.alloc_pinned_with_flags::<u32>(CHUNK * 8, 0)
            }
        }
        .map_err(drv(what))?;
        let done = ctx.new_event(None).map_err(drv(what))?;
        Ok(Self { host, done })
    }

    /// The first `limbs` limbs, once the copy that last used the buffer is done.
    fn wait(&mut self, limbs: usize, what: &str) -> Result<&mut [u32], BackendError> {
        self.done.synchronize().map_err(drv(what))?;
        Ok(&mut self.host.as_mut_slice().map_err(drv(what))?[..limbs])
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // The page-locked memory is freed after this; no copy may still use it.
        let _ = self.done.synchronize();
    }
}

/// The two upload buffers (write-combined: the host only writes them) and the two download
/// buffers (cached: the host reads them).
pub(super) struct Staging {
    up: [Buffer; 2],
    down: [Buffer; 2],
}

impl Staging {
    pub(super) fn new(ctx: &Arc<CudaContext>) -> Result<Self, BackendError> {
        Ok(Self {
            up: [Buffer::new(ctx, true)?, Buffer::new(ctx, true)?],
            down: [Buffer::new(ctx, false)?, Buffer::new(ctx, false)?],
        })
    }

    /// Copies `values` (Montgomery limbs) into `dst[..values.len() * 8]`.
    pub(super) fn upload(
        &mut self,
        stream: &Arc<CudaStream>,
        values: &[Fr],
        dst: &mut CudaSlice<u32>,
    ) -> Result<(), BackendError> {
        let what = "uploading values";
        if dst.len() < values.len() * 8 {
            return Err(BackendError::Device(format!(
                "upload: {} values into {} limbs",
                values.len(),
                dst.len()
            )));
        }
        for (i, part) in values.chunks(CHUNK).enumerate() {
            let buf = &mut self.up[i % 2];
            let host = buf.wait(part.len() * 8, what)?;
            plan::fr_into_limbs(part, host)?;
            let at = i * CHUNK * 8;
            stream
                .memcpy_htod(&*host, &mut dst.slice_mut(at..at + host.len()))
                .map_err(drv(what))?;
            buf.done.record(stream).map_err(drv(what))?;
        }
        Ok(())
    }

    /// Copies `src[..out.len() * 8]` into `out`: the copy of the next chunk runs while the host
    /// converts this one.
    pub(super) fn download(
        &mut self,
        stream: &Arc<CudaStream>,
        src: &CudaSlice<u32>,
        out: &mut [Fr],
    ) -> Result<(), BackendError> {
        let what = "downloading values";
        if src.len() < out.len() * 8 {
            return Err(BackendError::Device(format!(
                "download: {} values from {} limbs",
                out.len(),
                src.len()
            )));
        }
        let len = out.len();
        let parts = len.div_ceil(CHUNK);
        for i in 0..parts.min(2) {
            self.queue_down(stream, src, len, i)?;
        }
        for (i, part) in out.chunks_mut(CHUNK).enumerate() {
            let host = self.down[i % 2].wait(part.len() * 8, what)?;
            plan::limbs_to_fr(host, part);
            if i + 2 < parts {
                self.queue_down(stream, src, len, i + 2)?;
            }
        }
        Ok(())
    }

    /// Queues the copy of chunk `i` of `src` (of `len` elements) into its download buffer.
    fn queue_down(
        &mut self,
        stream: &Arc<CudaStream>,
        src: &CudaSlice<u32>,
        len: usize,
        i: usize,
    ) -> Result<(), BackendError> {
        let what = "downloading values";
        let from = i * CHUNK;
        let n = CHUNK.min(len - from);
        let buf = &mut self.down[i % 2];
        let host = buf.wait(n * 8, what)?;
        stream
            .memcpy_dtoh(&src.slice(from * 8..(from + n) * 8), host)
            .map_err(drv(what))?;
        buf.done.record(stream).map_err(drv(what))
    }
}
