// Parser for the CUBIN images (NVIDIA ELF) that NVRTC produces, so that the emulated device can
// enforce the launch limits a real driver enforces (registers, shared memory, launch bounds,
// parameter block). Only the C++ standard library is used; every offset and size read from the
// image is bounds-checked, and hostile input makes parse_cubin return false, never crash or throw.
//
// The format facts this relies on were established from CUBINs that NVRTC 12.6 builds for
// sm_70 .. sm_90a (see the comments in cubin.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace emu {

struct CubinParam {
    uint32_t ordinal;  // position in the C signature, 0-based
    uint32_t offset;   // byte offset inside the parameter block
    uint32_t size;     // bytes
};

struct CubinKernel {
    std::string name;           // the kernel (entry) name, e.g. "msm_histogram"
    uint32_t num_regs = 0;      // registers per thread (EIATTR_REGCOUNT, else .text.<name>
                                // sh_info >> 24)
    uint32_t static_shared = 0; // bytes of static __shared__ memory (.nv.shared.<name>, less the
                                // 1 KiB reserved region sm_90+ images include), 0 if absent
    uint32_t local_bytes = 0;   // per-thread local memory / stack (EIATTR_FRAME_SIZE,
                                // EIATTR_MIN_STACK_SIZE: the larger), 0 if absent
    uint32_t max_threads = 0;   // __launch_bounds__ max threads (EIATTR_MAX_THREADS), 0 when none
    uint32_t param_bytes = 0;   // total size of the parameter block (EIATTR_CBANK_PARAM_SIZE)
    std::vector<CubinParam> params;  // from EIATTR_KPARAM_INFO(_V2), sorted by ordinal
};

struct CubinInfo {
    uint32_t sm_arch = 0;  // e.g. 90, from e_flags
    uint32_t cuda_version = 0;  // the CUDA version that made it, 10·major + minor (126 = 12.6),
                                // from e_version
    std::vector<CubinKernel> kernels;  // in symbol-table order
};

// Parses an in-memory CUBIN. Returns false and sets *error (one line, saying what is wrong) when
// `data` is not an ELF64 little-endian CUBIN or is malformed/truncated. Never reads out of bounds,
// never crashes or throws on hostile input. `error` may be null.
bool parse_cubin(const void* data, size_t size, CubinInfo* out, std::string* error);

// True when `data` starts with the ELF magic (\x7fELF); says nothing about validity.
bool looks_like_elf(const void* data, size_t size);

}  // namespace emu
