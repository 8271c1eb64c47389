//! The MSM's host side: the launches of the bucket pipeline (histogram, scan, scatter,
//! accumulation, segment folds, bucket and window reductions) described in `kernels/msm.cu`,
//! and the windows' combination on the host ([`plan::combine_windows`]).

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use group::Group;
use halo2curves::bn256::G1;

use super::{drv, grid, plan, to_u32, DeviceScalars, Inner};
use crate::backend::BackendError;

/// `GPU_MSM_NARROW_REDUCE=1` runs the MSM's bucket reduction as before the twenty-fourth
/// session, for A/B timing on a GPU: one thread per bucket adding all its segment sums (no
/// [`plan::fold_levels`]), 256 parts a window whatever its size, and one thread per window
/// adding them (see [`plan::reduce_parts`]). Read at each MSM.
fn narrow_msm_reduce() -> bool {
    std::env::var("GPU_MSM_NARROW_REDUCE").is_ok_and(|v| v == "1")
}

/// Exclusive prefix sum of `data[..n]` in place; returns the total.
fn scan_in_place(inner: &Inner, data: &mut CudaSlice<u32>, n: usize) -> Result<u32, BackendError> {
    Ok(scan_in_place_reading(inner, data, n, None)?.0)
}

/// Exclusive prefix sum of `data[..n]` in place; returns the total and, read back in the same
/// copy, the value of `extra` (one element on the device), written before the scan's launches.
fn scan_in_place_reading(
    inner: &Inner,
    data: &mut CudaSlice<u32>,
    n: usize,
    extra: Option<&CudaSlice<u32>>,
) -> Result<(u32, Option<u32>), BackendError> {
    let k = &inner.kernels;
    let s = &inner.stream;
    let blocks = n.div_ceil(1024).max(1);
    // One sum per block, and after them the place `extra` is copied to before the last read.
    let mut sums = s
        .alloc_zeros::<u32>(blocks + 1)
        .map_err(drv("allocating scan sums"))?;
    let n32 = to_u32(n, "scan length")?;
    let cfg = LaunchConfig {
        grid_dim: (to_u32(blocks, "scan blocks")?, 1, 1),
        block_dim: (512, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: scan_block(u32* data, u32* block_sums, u32 n): `data` has at least n elements,
    // `sums` has one per block of 1024 (and one more); each of the 512 threads of a block touches
    // its own two elements of `data`.
    unsafe {
        s.launch_builder(&k.scan_block)
            .arg(&mut *data)
            .arg(&mut sums)
            .arg(&n32)
            .launch(cfg)
    }
    .map_err(drv("launching scan_block"))?;
    if blocks == 1 {
        if let Some(e) = extra {
            s.memcpy_dtod(e, &mut sums.slice_mut(1..2))
                .map_err(drv("copying the value read with the scan total"))?;
        }
        let read = s
            .clone_dtoh(&sums.slice(0..1 + usize::from(extra.is_some())))
            .map_err(drv("reading scan total"))?;
        let total = read
            .first()
            .copied()
            .ok_or_else(|| BackendError::Device("scan: empty block sums".into()))?;
        return Ok((total, extra.and_then(|_| read.get(1).copied())));
    }
    let (total, value) = scan_in_place_reading(inner, &mut sums, blocks, extra)?;
    // SAFETY: scan_add(u32* data, const u32* block_offsets, u32 n): `sums` holds one offset per
    // 1024 elements of `data[..n]`; one thread per element.
    unsafe {
        s.launch_builder(&k.scan_add)
            .arg(&mut *data)
            .arg(&sums)
            .arg(&n32)
            .launch(grid(n, 256)?)
    }
    .map_err(drv("launching scan_add"))?;
    Ok((total, value))
}

/// How `counts[j]` items split into groups of at most `per` ([`split_segments`]).
struct Split {
    /// `ceil(counts[j] / per)` for every bucket j.
    counts: CudaSlice<u32>,
    /// Their exclusive prefix sums.
    offsets: CudaSlice<u32>,
    /// Their total.
    total: u32,
    /// The largest of them.
    most: u32,
}

/// `ceil(counts[j] / per)` for every bucket j, their largest (`msm_segment_count`), their exclusive
/// prefix sums, and their total (the total and the largest read back in one copy).
fn split_segments(
    inner: &Inner,
    counts: &CudaSlice<u32>,
    total_buckets: u32,
    per: u32,
) -> Result<Split, BackendError> {
    let s = &inner.stream;
    let mut split = s
        .alloc_zeros::<u32>(total_buckets as usize)
        .map_err(drv("allocating segment counts"))?;
    let mut most = s
        .alloc_zeros::<u32>(1)
        .map_err(drv("allocating the largest segment count"))?;
    // SAFETY: msm_segment_count(const u32* counts, u32 total_buckets, u32 seg_len,
    // u32* seg_counts, u32* most): both buffers have total_buckets elements, `most` one (zeroed);
    // blocks of 256 threads (whole warps, as its shuffles need).
    unsafe {
        s.launch_builder(&inner.kernels.msm_segment_count)
            .arg(counts)
            .arg(&total_buckets)
            .arg(&per)
            .arg(&mut split)
            .arg(&mut most)
            .launch(grid(total_buckets as usize, 256)?)
    }
    .map_err(drv("launching msm_segment_count"))?;
    let mut offsets = s
        .clone_dtod(&split)
        .map_err(drv("copying segment counts"))?;
    let (total, most) =
        scan_in_place_reading(inner, &mut offsets, total_buckets as usize, Some(&most))?;
    let most =
        most.ok_or_else(|| BackendError::Device("scan: the largest count not read".into()))?;
    Ok(Split {
        counts: split,
        offsets,
        total,
        most,
    })
}

pub(super) fn msm_launch(
    inner: &Inner,
    points: &CudaSlice<u32>,
    scalars: &DeviceScalars,
    c: u32,
) -> Result<G1, BackendError> {
    let k = &inner.kernels;
    let s = &inner.stream;
    let n = scalars.len;
    let n32 = to_u32(n, "msm length")?;
    let windows = plan::num_windows(c);
    let buckets = 1u32 << (c - 1);
    let total_buckets = (windows * buckets) as usize;
    let tb32 = to_u32(total_buckets, "buckets")?;

    let mut counts = s
        .alloc_zeros::<u32>(total_buckets)
        .map_err(drv("allocating bucket counts"))?;
    // SAFETY: msm_histogram(const u32* scalars, u32 n, u32 c, u32 num_windows, u32* counts):
    // `scalars` holds n·8 limbs; every digit's bucket index is < windows·2^(c-1) = len(counts).
    unsafe {
        s.launch_builder(&k.msm_histogram)
            .arg(&scalars.limbs)
            .arg(&n32)
            .arg(&c)
            .arg(&windows)
            .arg(&mut counts)
            .launch(grid(n, 256)?)
    }
    .map_err(drv("launching msm_histogram"))?;

    let mut offsets = s.clone_dtod(&counts).map_err(drv("copying counts"))?;
    let entries = scan_in_place(inner, &mut offsets, total_buckets)?;
    if entries == 0 {
        return Ok(G1::identity()); // every scalar is zero
    }
    let mut cursor = s.clone_dtod(&offsets).map_err(drv("copying offsets"))?;
    let mut sorted = s
        .alloc_zeros::<u32>(entries as usize)
        .map_err(drv("allocating sorted entries"))?;
    // SAFETY: msm_scatter(const u32* scalars, u32 n, u32 c, u32 num_windows, u32* cursor,
    // u32* sorted): the same recoding as msm_histogram, so each bucket receives exactly
    // counts[bucket] entries starting at its exclusive offset, all < entries = len(sorted).
    unsafe {
        s.launch_builder(&k.msm_scatter)
            .arg(&scalars.limbs)
            .arg(&n32)
            .arg(&c)
            .arg(&windows)
            .arg(&mut cursor)
            .arg(&mut sorted)
            .launch(grid(n, 256)?)
    }
    .map_err(drv("launching msm_scatter"))?;
    drop(cursor);

    // Segments of at most seg_len entries (see plan::segment_len).
    let seg_len = plan::segment_len(n, windows);
    let Split {
        counts: seg_counts,
        offsets: seg_offsets,
        total: segments,
        most: seg_most,
    } = split_segments(inner, &counts, tb32, seg_len)?;
    let mut seg_sums = s
        .alloc_zeros::<u32>(segments as usize * 32)
        .map_err(drv("allocating segment sums"))?;
    // SAFETY: msm_accumulate(const u32* bases, const u32* sorted, const u32* offsets,
    // const u32* counts, const u32* seg_offsets, u32 total_buckets, u32 total_segments,
    // u32 seg_len, u32* seg_sums): point indices in `sorted` are < n ≤ number of bases
    // (16 limbs each); offsets/counts/seg_offsets have total_buckets entries; seg_sums has 32
    // limbs per segment and each thread writes only its own.
    unsafe {
        s.launch_builder(&k.msm_accumulate)
            .arg(points)
            .arg(&sorted)
            .arg(&offsets)
            .arg(&counts)
            .arg(&seg_offsets)
            .arg(&tb32)
            .arg(&segments)
            .arg(&seg_len)
            .arg(&mut seg_sums)
            .launch(grid(segments as usize, 128)?)
    }
    .map_err(drv("launching msm_accumulate"))?;
    drop(sorted);

    // A bucket's segment sums are added in a tree while it has more than plan::FOLD_GROUP of
    // them (plan::fold_levels, from the largest bucket's segment count, read back with the
    // segments' total; none with GPU_MSM_NARROW_REDUCE=1), not from the n entries a bucket could
    // hold: random scalars at 2^11–2^13 and 2^23–2^25 launch none.
    let bound = plan::most_segments(n, seg_len);
    if seg_most as usize > bound {
        return Err(BackendError::Device(format!(
            "msm: the largest bucket has {seg_most} segments, more than {bound} possible"
        )));
    }
    let narrow = narrow_msm_reduce();
    let levels = if narrow {
        Vec::new()
    } else {
        plan::fold_levels(seg_most as usize)
    };
    let (mut sums, mut sum_counts, mut sum_offsets) = (seg_sums, seg_counts, seg_offsets);
    for group in levels {
        let Split {
            counts: out_counts,
            offsets: out_offsets,
            total: total_out,
            ..
        } = split_segments(inner, &sum_counts, tb32, group)?;
        let mut out = s
            .alloc_zeros::<u32>(total_out as usize * 32)
            .map_err(drv("allocating folded segment sums"))?;
        // SAFETY: msm_fold_segments(const u32* in_sums, const u32* in_offsets,
        // const u32* in_counts, const u32* out_offsets, u32 total_buckets, u32 total_out,
        // u32 group, u32* out_sums): the offset and count buffers have total_buckets entries;
        // bucket j's in_counts[j] sums start at in_offsets[j] (their total is the length of
        // `sums` / 32), and its ceil(in_counts[j] / group) outputs at out_offsets[j] (total
        // total_out, the length of `out` / 32); each thread writes only its own 32 limbs.
        unsafe {
            s.launch_builder(&k.msm_fold_segments)
                .arg(&sums)
                .arg(&sum_offsets)
                .arg(&sum_counts)
                .arg(&out_offsets)
                .arg(&tb32)
                .arg(&total_out)
                .arg(&group)
                .arg(&mut out)
                .launch(grid(total_out as usize, 128)?)
        }
        .map_err(drv("launching msm_fold_segments"))?;
        (sums, sum_counts, sum_offsets) = (out, out_counts, out_offsets);
    }

    let mut bucket_sums = s
        .alloc_zeros::<u32>(total_buckets * 32)
        .map_err(drv("allocating bucket sums"))?;
    // SAFETY: msm_bucket_sum(const u32* counts, const u32* offsets, u32 total_buckets,
    // const u32* sums, u32* bucket_sums): both index buffers have total_buckets entries; bucket
    // j reads its sum_counts[j] sums starting at sum_offsets[j] (all within `sums`) and writes
    // its own 32 limbs of `bucket_sums` (total_buckets·32 limbs).
    unsafe {
        s.launch_builder(&k.msm_bucket_sum)
            .arg(&sum_counts)
            .arg(&sum_offsets)
            .arg(&tb32)
            .arg(&sums)
            .arg(&mut bucket_sums)
            .launch(grid(total_buckets, 128)?)
    }
    .map_err(drv("launching msm_bucket_sum"))?;
    drop(sums);

    let parts = if narrow {
        plan::NARROW_REDUCE_PARTS.min(buckets)
    } else {
        plan::reduce_parts(buckets)
    };
    let outputs = (windows * parts) as usize;
    let mut part_sums = s
        .alloc_zeros::<u32>(outputs * 32)
        .map_err(drv("allocating window part sums"))?;
    // SAFETY: msm_window_reduce(const u32* bucket_sums, u32 c, u32 num_windows, u32 parts,
    // u32* out): parts divides 2^(c-1) (both powers of two); thread (w, t) reads buckets of
    // window w only and writes its own 32 limbs (XYZZ) of `out` (windows·parts·32 limbs).
    unsafe {
        s.launch_builder(&k.msm_window_reduce)
            .arg(&bucket_sums)
            .arg(&c)
            .arg(&windows)
            .arg(&parts)
            .arg(&mut part_sums)
            .launch(grid(outputs, 64)?)
    }
    .map_err(drv("launching msm_window_reduce"))?;
    // The windows' part sums added in a tree (plan::parts_sum_levels): at each level a thread
    // adds a group of consecutive sums; the groups of a level never straddle two windows (each
    // divides the sums a window has left), and the last level leaves one sum per window.
    let mut sums = part_sums;
    let mut count = outputs;
    let levels = if narrow {
        vec![parts] // one thread per window adds all its parts
    } else {
        plan::parts_sum_levels(parts)
    };
    for group in levels {
        let next = count / group as usize;
        let next32 = to_u32(next, "window part sums")?;
        let mut out = s
            .alloc_zeros::<u32>(next * 32)
            .map_err(drv("allocating window part sums"))?;
        // SAFETY: msm_parts_sum(const u32* part_sums, u32 num_windows, u32 parts, u32* out):
        // thread i < next reads the `group` XYZZ points i·group.. of `sums` (next·group = count
        // points, 32 limbs each) and writes its own 32 limbs of `out` (next·32 limbs).
        unsafe {
            s.launch_builder(&k.msm_parts_sum)
                .arg(&sums)
                .arg(&next32)
                .arg(&group)
                .arg(&mut out)
                .launch(grid(next, 32)?)
        }
        .map_err(drv("launching msm_parts_sum"))?;
        sums = out;
        count = next;
    }
    if count != windows as usize {
        return Err(BackendError::Device(format!(
            "msm: {count} window sums for {windows} windows"
        )));
    }
    let out = sums;
    let host = s.clone_dtoh(&out).map_err(drv("reading window sums"))?;
    let window_sums = host
        .chunks_exact(32)
        .map(plan::xyzz_limbs_to_point)
        .collect::<Result<Vec<G1>, _>>()?;
    Ok(plan::combine_windows(&window_sums, c))
}
