// The CUDA driver API of the emulated device: the entry points cudarc 0.19 and gpu/src/cuda call.
// Every other entry point cudarc can resolve is exported by stubs.cpp and returns
// CUDA_ERROR_NOT_SUPPORTED with its name.
//
// Semantics kept from the real driver: cuInit before anything; a current context for memory,
// module and launch calls; primary contexts reference-counted (released to zero, everything in
// them is freed); a fault in a kernel is sticky: every later call in that context returns it
// until the primary context is released; the error strings of cuda.h (plus, on the thread that
// got the error, what exactly was wrong).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "emu.h"

#define EXPORT extern "C" __attribute__((visibility("default")))

namespace emu {

namespace {
thread_local int tls_last_code = 0;
thread_local std::string tls_last_detail;
thread_local std::string tls_message;
}  // namespace

void log(const std::string& line) {
    // Control characters are replaced so that no input can forge log lines.
    std::string s;
    for (char c : line) s += (c == '\n' || c == '\r' || (unsigned char)c < 0x20) ? ' ' : c;
    std::fprintf(stderr, "cuda-emu: %s\n", s.c_str());
}

Result fail(Result r, const std::string& detail) {
    tls_last_code = r;
    tls_last_detail = detail;
    if (!std::getenv("CUDA_EMU_QUIET")) log(detail);
    return r;
}

namespace {

struct Module;

// An asynchronous copy between the device and page-locked host memory that has not run yet.
struct Pending {
    bool to_device;
    uintptr_t dev;
    unsigned char* host;
    size_t n;
    std::vector<unsigned char> source;  // the host bytes when the copy was queued (to_device)
    unsigned long long seq;
};

struct Context {
    int device;
    int refcount = 0;
    Result sticky = SUCCESS;
    std::string sticky_detail;
    std::set<Module*> modules;
    std::mutex queue_mu;
    std::deque<Pending> queue;
    unsigned long long queued = 0;  // copies ever queued (their `seq`s are 1..queued)
    // CU_LIMIT_STACK_SIZE: the local memory of each thread. A real driver reserves it for every
    // thread the device can hold at once, raises it at a launch whose kernel needs more, and never
    // lowers it again by itself. What lies beyond the default is counted in memory().
    size_t stack_limit = kDefaultStack;
};

struct Module {
    Context* ctx;
    CubinInfo info;
    std::map<std::string, Function*> functions;
};

struct Stream {
    Context* ctx;
};

struct Event {
    std::chrono::steady_clock::time_point at;
    bool recorded = false;
    Context* ctx = nullptr;     // where it was last recorded
    unsigned long long seq = 0; // the copies queued there before it
};

std::mutex g_mu;  // contexts, modules, streams, events
bool g_initialized = false;
int g_device_count = 1;
std::vector<Context*> g_primary;     // per device; null when not retained
thread_local Context* tls_ctx = nullptr;
std::set<Stream*> g_streams;
std::set<Event*> g_events;
std::set<Function*> g_functions;
std::map<uintptr_t, size_t> g_pinned;  // page-locked host allocations: start, bytes

const char* error_name(int code) {
    switch (code) {
        case 0: return "CUDA_SUCCESS";
        case 1: return "CUDA_ERROR_INVALID_VALUE";
        case 2: return "CUDA_ERROR_OUT_OF_MEMORY";
        case 3: return "CUDA_ERROR_NOT_INITIALIZED";
        case 4: return "CUDA_ERROR_DEINITIALIZED";
        case 100: return "CUDA_ERROR_NO_DEVICE";
        case 101: return "CUDA_ERROR_INVALID_DEVICE";
        case 200: return "CUDA_ERROR_INVALID_IMAGE";
        case 201: return "CUDA_ERROR_INVALID_CONTEXT";
        case 209: return "CUDA_ERROR_NO_BINARY_FOR_GPU";
        case 222: return "CUDA_ERROR_UNSUPPORTED_PTX_VERSION";
        case 300: return "CUDA_ERROR_INVALID_SOURCE";
        case 301: return "CUDA_ERROR_FILE_NOT_FOUND";
        case 400: return "CUDA_ERROR_INVALID_HANDLE";
        case 500: return "CUDA_ERROR_NOT_FOUND";
        case 600: return "CUDA_ERROR_NOT_READY";
        case 700: return "CUDA_ERROR_ILLEGAL_ADDRESS";
        case 701: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
        case 714: return "CUDA_ERROR_HARDWARE_STACK_ERROR";
        case 716: return "CUDA_ERROR_MISALIGNED_ADDRESS";
        case 719: return "CUDA_ERROR_LAUNCH_FAILED";
        case 800: return "CUDA_ERROR_NOT_PERMITTED";
        case 801: return "CUDA_ERROR_NOT_SUPPORTED";
        default: return nullptr;
    }
}

const char* error_text(int code) {
    switch (code) {
        case 0: return "no error";
        case 1: return "invalid argument";
        case 2: return "out of memory";
        case 3: return "initialization error";
        case 4: return "driver shutting down";
        case 100: return "no CUDA-capable device is detected";
        case 101: return "invalid device ordinal";
        case 200: return "device kernel image is invalid";
        case 201: return "invalid device context";
        case 209: return "no kernel image is available for execution on the device";
        case 222: return "the provided PTX was compiled with an unsupported toolchain.";
        case 300: return "device kernel image is invalid";
        case 301: return "file not found";
        case 400: return "invalid resource handle";
        case 500: return "named symbol not found";
        case 600: return "device not ready";
        case 700: return "an illegal memory access was encountered";
        case 701: return "too many resources requested for launch";
        case 714: return "an illegal instruction was encountered";
        case 716: return "misaligned address";
        case 719: return "unspecified launch failure";
        case 800: return "operation not permitted";
        case 801: return "operation not supported";
        default: return nullptr;
    }
}

Result need_init() {
    if (!g_initialized) return fail(ERROR_NOT_INITIALIZED, "cuInit has not been called");
    return SUCCESS;
}

// The current context, or an error (no context, or the context's sticky fault).
Result current(Context** out) {
    if (Result r = need_init()) return r;
    Context* c = tls_ctx;
    if (!c || c->refcount <= 0) return fail(ERROR_INVALID_CONTEXT, "no current context on this thread");
    if (c->sticky != SUCCESS) {
        tls_last_code = c->sticky;
        tls_last_detail = c->sticky_detail + " (sticky: the context must be released)";
        return c->sticky;
    }
    *out = c;
    return SUCCESS;
}

Result check_stream(void* s) {
    if (s == nullptr || s == reinterpret_cast<void*>(1) || s == reinterpret_cast<void*>(2)) return SUCCESS;
    std::lock_guard<std::mutex> g(g_mu);
    if (!g_streams.count(static_cast<Stream*>(s))) return fail(ERROR_INVALID_HANDLE, "unknown stream");
    return SUCCESS;
}

// Bytes the device takes for `per_thread` bytes of local memory per thread beyond the default
// (the default belongs to what a context takes before its memory is first read).
size_t local_reservation(size_t per_thread) {
    return per_thread > kDefaultStack
               ? (per_thread - kDefaultStack) * (size_t)kSmCount * kMaxThreadsPerSm
               : 0;
}

// Sets the context's stack limit, reserving or releasing the difference.
Result set_stack_limit(Context* c, size_t per_thread, const std::string& why) {
    if (per_thread > kMaxStack) {
        return fail(ERROR_INVALID_VALUE, why + ": " + std::to_string(per_thread) +
                                             " bytes per thread, over the device's " +
                                             std::to_string(kMaxStack) + "-byte limit");
    }
    size_t before = local_reservation(c->stack_limit), after = local_reservation(per_thread);
    if (after > before) {
        if (memory().reserve_local(after - before) != SUCCESS) {
            return fail(ERROR_OUT_OF_MEMORY, why + ": " + std::to_string(per_thread) +
                                                 " bytes of local memory per thread for " +
                                                 std::to_string(kSmCount * kMaxThreadsPerSm) +
                                                 " threads do not fit: " + tls_last_detail);
        }
    } else {
        memory().release_local(before - after);
    }
    c->stack_limit = per_thread;
    return SUCCESS;
}

void destroy_context(Context* c) {
    memory().release_local(local_reservation(c->stack_limit));
    c->stack_limit = kDefaultStack;
    {
        std::lock_guard<std::mutex> g(c->queue_mu);
        c->queue.clear();
    }
    for (Module* m : c->modules) {
        for (auto& kv : m->functions) {
            g_functions.erase(kv.second);
            delete kv.second;
        }
        delete m;
    }
    c->modules.clear();
    memory().release_device(c->device);
}

std::string hex(unsigned long long v) {
    char b[32];
    std::snprintf(b, sizeof b, "0x%llx", v);
    return b;
}

Result check_range(unsigned long long p, size_t n, const char* what) {
    std::string why;
    if (!memory().contains((uintptr_t)p, n, &why)) {
        return fail(ERROR_INVALID_VALUE, std::string(what) + ": " + why);
    }
    return SUCCESS;
}

// ---- copies through page-locked host memory ----------------------------------------------------------
// On a GPU an asynchronous copy from or to page-locked (pinned) host memory is done by a copy
// engine after the call has returned: the host may not write its source, nor read its
// destination, until its stream or an event recorded after it says that it is done. The emulator
// keeps such copies queued until something needs them — a synchronisation that covers them, or
// any other device operation, which it orders after them — so that a program that skips the
// wait either reads a destination the copy has not written yet (it holds 0xA5 bytes until then)
// or is told that it wrote a source the copy had not read yet (the context faults).

bool is_pinned(const void* p, size_t n) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    std::lock_guard<std::mutex> g(g_mu);
    auto it = g_pinned.upper_bound(a);
    if (it == g_pinned.begin()) return false;
    --it;
    return a >= it->first && n <= it->second && a - it->first <= it->second - n;
}

void enqueue(Context* c, Pending p) {
    std::lock_guard<std::mutex> g(c->queue_mu);
    p.seq = ++c->queued;
    c->queue.push_back(std::move(p));
}

// Runs the queued copies of `c` up to `seq` (all of them by default), in order. The queue's lock
// is held until they are done: a thread that finds the queue empty may rely on its copies.
Result drain(Context* c, unsigned long long seq = ~0ull) {
    DeviceTimer timed;
    std::string fault;
    {
        std::lock_guard<std::mutex> g(c->queue_mu);
        while (!c->queue.empty() && c->queue.front().seq <= seq) {
            Pending& p = c->queue.front();
            if (!p.to_device) {
                std::memcpy(p.host, reinterpret_cast<const void*>(p.dev), p.n);
            } else if (std::memcmp(p.host, p.source.data(), p.n) != 0) {
                fault = "page-locked host memory at " + hex(reinterpret_cast<uintptr_t>(p.host)) + " (" +
                        std::to_string(p.n) +
                        " bytes) was written while an asynchronous copy from it to the device was still "
                        "queued: wait for the copy (its stream, or an event recorded after it) before "
                        "writing the buffer again";
                c->queue.pop_front();
                break;
            } else {
                std::memcpy(reinterpret_cast<void*>(p.dev), p.host, p.n);
            }
            c->queue.pop_front();
        }
    }
    if (fault.empty()) return SUCCESS;
    Result r = fail(ERROR_ILLEGAL_ADDRESS, fault);
    std::lock_guard<std::mutex> g(g_mu);
    c->sticky = r;
    c->sticky_detail = tls_last_detail;
    return r;
}

// The current context with every queued copy done (for operations ordered after them).
Result current_drained(Context** out) {
    if (Result r = current(out)) return r;
    if (Result r = drain(*out)) return r;
    return current(out);
}

// The CUDA version the emulated driver supports (cuDriverGetVersion's value): 12.6, or
// CUDA_EMU_DRIVER_VERSION (e.g. 11080 for CUDA 11.8).
int emulated_driver_version() {
    if (const char* e = std::getenv("CUDA_EMU_DRIVER_VERSION")) {
        int d = std::atoi(e);
        if (d > 0) return d;
    }
    return 12060;
}

Result load_image(const void* image, size_t size, const std::string& origin, Module** out) {
    Context* c;
    if (Result r = current(&c)) return r;
    if (!looks_like_elf(image, size)) {
        return fail(ERROR_INVALID_IMAGE,
                    "loading " + origin +
                        ": the emulated device loads CUBINs only (compile with "
                        "--gpu-architecture=sm_90); this is not an ELF image (PTX?)");
    }
    Module* m = new Module();
    m->ctx = c;
    std::string err;
    if (!parse_cubin(image, size, &m->info, &err)) {
        delete m;
        return fail(ERROR_INVALID_IMAGE, "loading " + origin + ": " + err);
    }
    // A driver runs CUBINs of its own CUDA major or older ones (minor version compatibility
    // within the major); one a newer major made, it refuses. e_version values under 100 are
    // not read as versions.
    const unsigned made_by = m->info.cuda_version;
    const int driver = emulated_driver_version();
    if (made_by >= 100 && (int)(made_by / 10) > driver / 1000) {
        delete m;
        return fail(ERROR_UNSUPPORTED_PTX_VERSION,
                    "loading " + origin + ": the CUBIN was made by CUDA " +
                        std::to_string(made_by / 10) + "." + std::to_string(made_by % 10) +
                        ", and this driver supports CUDA " + std::to_string(driver / 1000) + "." +
                        std::to_string(driver % 1000 / 10) + " (a newer major than the driver's)");
    }
    unsigned arch = kArchMajor * 10 + kArchMinor;
    if (m->info.sm_arch != arch) {
        unsigned got = m->info.sm_arch;
        delete m;
        return fail(ERROR_NO_BINARY_FOR_GPU, "loading " + origin + ": the CUBIN is for sm_" +
                                                 std::to_string(got) + ", the device is sm_" +
                                                 std::to_string(arch));
    }
    std::lock_guard<std::mutex> g(g_mu);
    c->modules.insert(m);
    *out = m;
    return SUCCESS;
}

}  // namespace
}  // namespace emu

using namespace emu;

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void* CUcontext;
typedef void* CUmodule;
typedef void* CUfunction;
typedef void* CUstream;
typedef void* CUevent;

// ---- errors ---------------------------------------------------------------------------------------

EXPORT CUresult cuGetErrorName(CUresult code, const char** out) {
    if (!out) return ERROR_INVALID_VALUE;
    const char* n = error_name(code);
    if (!n) {
        *out = nullptr;
        return ERROR_INVALID_VALUE;
    }
    *out = n;
    return SUCCESS;
}

EXPORT CUresult cuGetErrorString(CUresult code, const char** out) {
    if (!out) return ERROR_INVALID_VALUE;
    const char* t = error_text(code);
    if (!t) {
        *out = nullptr;
        return ERROR_INVALID_VALUE;
    }
    if (code != SUCCESS && code == tls_last_code && !tls_last_detail.empty()) {
        tls_message = std::string(t) + " (emulated device: " + tls_last_detail + ")";
        *out = tls_message.c_str();
    } else {
        *out = t;
    }
    return SUCCESS;
}

// ---- initialisation and devices -------------------------------------------------------------------

EXPORT CUresult cuInit(unsigned flags) {
    if (flags != 0) return fail(ERROR_INVALID_VALUE, "cuInit: flags must be 0");
    std::lock_guard<std::mutex> g(g_mu);
    if (!g_initialized) {
        if (const char* e = std::getenv("CUDA_EMU_DEVICES")) {
            int n = std::atoi(e);
            g_device_count = n < 0 ? 0 : (n > 16 ? 16 : n);
        }
        g_primary.assign(g_device_count, nullptr);
        g_initialized = true;
        if (g_device_count == 0) return fail(ERROR_NO_DEVICE, "CUDA_EMU_DEVICES=0");
    }
    return SUCCESS;
}

EXPORT CUresult cuDriverGetVersion(int* v) {
    if (!v) return ERROR_INVALID_VALUE;
    *v = emulated_driver_version();
    return SUCCESS;
}

EXPORT CUresult cuDeviceGetCount(int* n) {
    if (Result r = need_init()) return r;
    if (!n) return ERROR_INVALID_VALUE;
    *n = g_device_count;
    return SUCCESS;
}

EXPORT CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (Result r = need_init()) return r;
    if (!d) return ERROR_INVALID_VALUE;
    if (ordinal < 0 || ordinal >= g_device_count) {
        return fail(ERROR_INVALID_DEVICE, "device " + std::to_string(ordinal) + " (the emulator has " +
                                              std::to_string(g_device_count) + ")");
    }
    *d = ordinal;
    return SUCCESS;
}

static Result valid_device(CUdevice d) {
    if (Result r = need_init()) return r;
    if (d < 0 || d >= g_device_count) return fail(ERROR_INVALID_DEVICE, "device " + std::to_string(d));
    return SUCCESS;
}

EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice d) {
    if (Result r = valid_device(d)) return r;
    if (!name || len <= 0) return ERROR_INVALID_VALUE;
    std::snprintf(name, (size_t)len, "Emulated CUDA device %d (H100-class, sm_90)", d);
    return SUCCESS;
}

EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice d) {
    if (Result r = valid_device(d)) return r;
    if (!bytes) return ERROR_INVALID_VALUE;
    *bytes = total_memory();
    return SUCCESS;
}

EXPORT CUresult cuDeviceGetUuid(unsigned char* uuid, CUdevice d) {
    if (Result r = valid_device(d)) return r;
    if (!uuid) return ERROR_INVALID_VALUE;
    for (int i = 0; i < 16; i++) uuid[i] = (unsigned char)(0xe0 + i + d);
    return SUCCESS;
}

EXPORT CUresult cuDeviceGetUuid_v2(unsigned char* uuid, CUdevice d) { return cuDeviceGetUuid(uuid, d); }

EXPORT CUresult cuDeviceComputeCapability(int* major, int* minor, CUdevice d) {
    if (Result r = valid_device(d)) return r;
    if (!major || !minor) return ERROR_INVALID_VALUE;
    *major = kArchMajor;
    *minor = kArchMinor;
    return SUCCESS;
}

EXPORT CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice d) {
    if (Result r = valid_device(d)) return r;
    if (!v) return ERROR_INVALID_VALUE;
    switch (attr) {
        case 1: *v = kMaxThreadsPerBlock; break;
        case 2: *v = kMaxBlockDim[0]; break;
        case 3: *v = kMaxBlockDim[1]; break;
        case 4: *v = kMaxBlockDim[2]; break;
        case 5: *v = (int)kMaxGridDim[0]; break;
        case 6: *v = kMaxGridDim[1]; break;
        case 7: *v = kMaxGridDim[2]; break;
        case 8: *v = kSharedPerBlock; break;
        case 9: *v = 65536; break;  // constant memory
        case 10: *v = kWarpSize; break;
        case 11: *v = 2147483647; break;  // max pitch
        case 12: *v = kRegistersPerBlock; break;
        case 13: *v = 1980000; break;  // clock, kHz
        case 14: *v = 512; break;      // texture alignment
        case 15: *v = 1; break;        // gpu overlap
        case 16: *v = kSmCount; break;
        case 17: *v = 0; break;  // kernel exec timeout
        case 18: *v = 0; break;  // integrated
        case 19: *v = 1; break;  // can map host memory
        case 20: *v = 0; break;  // compute mode default
        case 30: *v = 512; break;
        case 31: *v = 1; break;  // concurrent kernels
        case 32: *v = 1; break;  // ECC
        case 33: *v = d; break;  // PCI bus
        case 34: *v = 0; break;
        case 35: *v = 0; break;
        case 36: *v = 2619000; break;  // memory clock kHz
        case 37: *v = 5120; break;     // bus width
        case 38: *v = 50 * 1024 * 1024; break;
        case 39: *v = kMaxThreadsPerSm; break;
        case 40: *v = 3; break;  // async engines
        case 41: *v = 1; break;  // unified addressing
        case 75: *v = kArchMajor; break;
        case 76: *v = kArchMinor; break;
        case 81: *v = kSharedPerSm; break;
        case 82: *v = kRegistersPerSm; break;
        case 83: *v = 1; break;  // managed memory
        case 97: *v = kSharedPerBlockOptin; break;
        case 106: *v = kMaxBlocksPerSm; break;
        case 115: *v = 1; break;  // memory pools
        default: *v = 0; break;
    }
    return SUCCESS;
}

// ---- contexts ---------------------------------------------------------------------------------------

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* out, CUdevice d) {
    if (Result r = valid_device(d)) return r;
    if (!out) return ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> g(g_mu);
    if (!g_primary[d]) {
        g_primary[d] = new Context();
        g_primary[d]->device = d;
    }
    g_primary[d]->refcount++;
    *out = g_primary[d];
    return SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) {
    if (Result r = valid_device(d)) return r;
    std::lock_guard<std::mutex> g(g_mu);
    Context* c = g_primary[d];
    if (!c || c->refcount <= 0) return fail(ERROR_INVALID_CONTEXT, "releasing a primary context not retained");
    if (--c->refcount == 0) {
        // Destroyed: everything in it is freed, a sticky fault is cleared. The object stays so
        // that stale handles on other threads read as "not current".
        destroy_context(c);
        c->sticky = SUCCESS;
        c->sticky_detail.clear();
    }
    return SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice d) {
    if (Result r = valid_device(d)) return r;
    std::lock_guard<std::mutex> g(g_mu);
    Context* c = g_primary[d];
    if (c) {
        destroy_context(c);
        c->sticky = SUCCESS;
        c->sticky_detail.clear();
    }
    return SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxGetState(CUdevice d, unsigned* flags, int* active) {
    if (Result r = valid_device(d)) return r;
    if (!flags || !active) return ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> g(g_mu);
    *flags = 0;
    *active = g_primary[d] && g_primary[d]->refcount > 0;
    return SUCCESS;
}

EXPORT CUresult cuCtxSetCurrent(CUcontext c) {
    if (Result r = need_init()) return r;
    tls_ctx = static_cast<Context*>(c);
    return SUCCESS;
}

EXPORT CUresult cuCtxGetCurrent(CUcontext* out) {
    if (Result r = need_init()) return r;
    if (!out) return ERROR_INVALID_VALUE;
    *out = tls_ctx;
    return SUCCESS;
}

EXPORT CUresult cuCtxPushCurrent_v2(CUcontext c) { return cuCtxSetCurrent(c); }

EXPORT CUresult cuCtxPopCurrent_v2(CUcontext* out) {
    if (Result r = need_init()) return r;
    if (out) *out = tls_ctx;
    tls_ctx = nullptr;
    return SUCCESS;
}

EXPORT CUresult cuCtxGetDevice(CUdevice* d) {
    Context* c;
    if (Result r = current(&c)) return r;
    if (!d) return ERROR_INVALID_VALUE;
    *d = c->device;
    return SUCCESS;
}

EXPORT CUresult cuCtxSynchronize(void) {
    Context* c;
    return current_drained(&c);
}

EXPORT CUresult cuCtxSetFlags(unsigned) {
    Context* c;
    return current(&c);
}

EXPORT CUresult cuCtxGetLimit(size_t* v, int limit) {
    Context* c;
    if (Result r = current(&c)) return r;
    if (!v) return ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> g(g_mu);
    *v = limit == 0 ? c->stack_limit : 0;  // stack size
    return SUCCESS;
}

// The stack size (CU_LIMIT_STACK_SIZE) is emulated with its memory; other limits are accepted
// and have no effect.
EXPORT CUresult cuCtxSetLimit(int limit, size_t value) {
    Context* c;
    if (Result r = current_drained(&c)) return r;
    if (limit != 0) return SUCCESS;
    std::lock_guard<std::mutex> g(g_mu);
    return set_stack_limit(c, value, "cuCtxSetLimit(CU_LIMIT_STACK_SIZE)");
}

EXPORT CUresult cuCtxGetCacheConfig(int* cfg) {
    Context* c;
    if (Result r = current(&c)) return r;
    if (cfg) *cfg = 0;
    return SUCCESS;
}

EXPORT CUresult cuCtxSetCacheConfig(int) {
    Context* c;
    return current(&c);
}

EXPORT CUresult cuCtxGetStreamPriorityRange(int* least, int* greatest) {
    Context* c;
    if (Result r = current(&c)) return r;
    if (least) *least = 0;
    if (greatest) *greatest = -5;
    return SUCCESS;
}

// ---- memory -----------------------------------------------------------------------------------------

EXPORT CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    Context* c;
    if (Result r = current(&c)) return r;
    if (!free_bytes || !total) return ERROR_INVALID_VALUE;
    *total = total_memory();
    *free_bytes = memory().free_bytes();
    return SUCCESS;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    DeviceTimer timed;
    Context* c;
    if (Result r = current(&c)) return r;
    if (!p) return ERROR_INVALID_VALUE;
    uintptr_t out;
    if (Result r = memory().alloc(c->device, bytes, &out)) return r;
    *p = out;
    return SUCCESS;
}

EXPORT CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, CUstream s) {
    if (Result r = check_stream(s)) return r;
    return cuMemAlloc_v2(p, bytes);
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr p) {
    DeviceTimer timed;
    Context* c;
    if (Result r = current_drained(&c)) return r;
    return memory().free((uintptr_t)p, c->device);
}

EXPORT CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) {
    if (Result r = check_stream(s)) return r;
    return cuMemFree_v2(p);
}

// ---- memory pools: each device's default pool, where cuMemAllocAsync allocates -----------------
// Only its attributes are kept (the allocations are the ones above): the release threshold
// (CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, 4), how much freed memory a GPU's pool keeps instead of
// returning it at the next synchronisation (0 by default, as on a GPU), and the three reuse flags.

namespace emu {
namespace {
struct Pool {
    unsigned long long release_threshold = 0;
    int reuse[3] = {1, 1, 1};  // attributes 1-3: follow event dependencies, opportunistic, internal
};
Pool g_pools[16];

Result pool_of(void* pool, Pool** out) {
    for (Pool& p : g_pools) {
        if (&p == pool) {
            *out = &p;
            return SUCCESS;
        }
    }
    return fail(ERROR_INVALID_HANDLE, "not a memory pool of the emulated devices");
}
}  // namespace
}  // namespace emu

EXPORT CUresult cuDeviceGetDefaultMemPool(void** pool, CUdevice d) {
    if (Result r = valid_device(d)) return r;
    if (!pool) return ERROR_INVALID_VALUE;
    *pool = &g_pools[d];
    return SUCCESS;
}

EXPORT CUresult cuDeviceGetMemPool(void** pool, CUdevice d) { return cuDeviceGetDefaultMemPool(pool, d); }

EXPORT CUresult cuMemPoolSetAttribute(void* pool, int attr, void* value) {
    Pool* p;
    if (Result r = pool_of(pool, &p)) return r;
    if (!value) return ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> g(g_mu);
    if (attr >= 1 && attr <= 3) {
        p->reuse[attr - 1] = *static_cast<int*>(value) != 0;
    } else if (attr == 4) {
        p->release_threshold = *static_cast<unsigned long long*>(value);
    } else {
        return fail(ERROR_INVALID_VALUE, "memory pool attribute " + std::to_string(attr) +
                                             " cannot be set on the emulated device");
    }
    return SUCCESS;
}

EXPORT CUresult cuMemPoolGetAttribute(void* pool, int attr, void* value) {
    Pool* p;
    if (Result r = pool_of(pool, &p)) return r;
    if (!value) return ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> g(g_mu);
    if (attr >= 1 && attr <= 3) {
        *static_cast<int*>(value) = p->reuse[attr - 1];
    } else if (attr == 4) {
        *static_cast<unsigned long long*>(value) = p->release_threshold;
    } else {
        return fail(ERROR_INVALID_VALUE, "memory pool attribute " + std::to_string(attr) +
                                             " is not kept by the emulated device");
    }
    return SUCCESS;
}

EXPORT CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned) {
    Context* c;
    if (Result r = current(&c)) return r;
    if (!p) return ERROR_INVALID_VALUE;
    *p = std::malloc(bytes ? bytes : 1);
    if (!*p) return fail(ERROR_OUT_OF_MEMORY, "pinned host allocation of " + std::to_string(bytes));
    std::lock_guard<std::mutex> g(g_mu);
    g_pinned[reinterpret_cast<uintptr_t>(*p)] = bytes;
    return SUCCESS;
}

EXPORT CUresult cuMemAllocHost_v2(void** p, size_t bytes) { return cuMemHostAlloc(p, bytes, 0); }

EXPORT CUresult cuMemFreeHost(void* p) {
    if (!p) return SUCCESS;
    std::vector<Context*> live;
    {
        std::lock_guard<std::mutex> g(g_mu);
        if (!g_pinned.erase(reinterpret_cast<uintptr_t>(p))) {
            return fail(ERROR_INVALID_VALUE, "freeing host memory that cuMemHostAlloc did not allocate");
        }
        for (Context* c : g_primary)
            if (c && c->refcount > 0) live.push_back(c);
    }
    // Copies still queued from or to it run first (a GPU's would have finished before the free).
    for (Context* c : live) drain(c);
    std::free(p);
    return SUCCESS;
}

EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    DeviceTimer timed;
    Context* c;
    if (Result r = current_drained(&c)) return r;
    if (n == 0) return SUCCESS;
    if (!src) return fail(ERROR_INVALID_VALUE, "host-to-device copy from a null host pointer");
    if (Result r = check_range(dst, n, "host-to-device copy destination")) return r;
    std::memcpy(reinterpret_cast<void*>(dst), src, n);
    counters().htod_bytes += n;
    counters().htod_copies++;
    return SUCCESS;
}

EXPORT CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    DeviceTimer timed;
    Context* c;
    if (Result r = current_drained(&c)) return r;
    if (n == 0) return SUCCESS;
    if (!dst) return fail(ERROR_INVALID_VALUE, "device-to-host copy to a null host pointer");
    if (Result r = check_range(src, n, "device-to-host copy source")) return r;
    std::memcpy(dst, reinterpret_cast<const void*>(src), n);
    counters().dtoh_bytes += n;
    counters().dtoh_copies++;
    return SUCCESS;
}

EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    DeviceTimer timed;
    Context* c;
    if (Result r = current_drained(&c)) return r;
    if (n == 0) return SUCCESS;
    if (Result r = check_range(src, n, "device-to-device copy source")) return r;
    if (Result r = check_range(dst, n, "device-to-device copy destination")) return r;
    std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
    counters().dtod_bytes += n;
    return SUCCESS;
}

// From page-locked memory: queued (see `drain`); from pageable memory the copy is done before
// the call returns, as a GPU's driver does by staging it.
EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream s) {
    DeviceTimer timed;
    if (Result r = check_stream(s)) return r;
    if (n == 0 || !src || !is_pinned(src, n)) return cuMemcpyHtoD_v2(dst, src, n);
    Context* c;
    if (Result r = current(&c)) return r;
    if (Result r = check_range(dst, n, "host-to-device copy destination")) return r;
    const unsigned char* h = static_cast<const unsigned char*>(src);
    enqueue(c, Pending{true, (uintptr_t)dst, const_cast<unsigned char*>(h), n,
                       std::vector<unsigned char>(h, h + n), 0});
    counters().htod_bytes += n;
    counters().htod_copies++;
    return SUCCESS;
}

// To page-locked memory: queued, the destination reading 0xA5 until the copy is done.
EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream s) {
    DeviceTimer timed;
    if (Result r = check_stream(s)) return r;
    if (n == 0 || !dst || !is_pinned(dst, n)) return cuMemcpyDtoH_v2(dst, src, n);
    Context* c;
    if (Result r = current(&c)) return r;
    if (Result r = check_range(src, n, "device-to-host copy source")) return r;
    std::memset(dst, 0xA5, n);
    enqueue(c, Pending{false, (uintptr_t)src, static_cast<unsigned char*>(dst), n, {}, 0});
    counters().dtoh_bytes += n;
    counters().dtoh_copies++;
    return SUCCESS;
}

EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
    if (Result r = check_stream(s)) return r;
    return cuMemcpyDtoD_v2(dst, src, n);
}

EXPORT CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    DeviceTimer timed;
    Context* c;
    if (Result r = current_drained(&c)) return r;
    if (n == 0) return SUCCESS;
    if (Result r = check_range(dst, n, "memset destination")) return r;
    std::memset(reinterpret_cast<void*>(dst), v, n);
    counters().memset_bytes += n;
    return SUCCESS;
}

EXPORT CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream s) {
    if (Result r = check_stream(s)) return r;
    return cuMemsetD8_v2(dst, v, n);
}

EXPORT CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned v, size_t n) {
    DeviceTimer timed;
    Context* c;
    if (Result r = current_drained(&c)) return r;
    if (n == 0) return SUCCESS;
    if (dst % 4) return fail(ERROR_INVALID_VALUE, "cuMemsetD32 destination not 4-byte aligned");
    if (Result r = check_range(dst, n * 4, "memset destination")) return r;
    unsigned* p = reinterpret_cast<unsigned*>(dst);
    for (size_t i = 0; i < n; i++) p[i] = v;
    counters().memset_bytes += n * 4;
    return SUCCESS;
}

EXPORT CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, CUstream s) {
    if (Result r = check_stream(s)) return r;
    return cuMemsetD32_v2(dst, v, n);
}

// ---- streams and events -----------------------------------------------------------------------------

EXPORT CUresult cuStreamCreate(CUstream* out, unsigned) {
    Context* c;
    if (Result r = current(&c)) return r;
    if (!out) return ERROR_INVALID_VALUE;
    Stream* s = new Stream{c};
    std::lock_guard<std::mutex> g(g_mu);
    g_streams.insert(s);
    *out = s;
    return SUCCESS;
}

EXPORT CUresult cuStreamCreateWithPriority(CUstream* out, unsigned flags, int) {
    return cuStreamCreate(out, flags);
}

// Deletes a stream or event handle created here; an unknown one is an error.
template <class T>
static Result destroy_handle(std::set<T*>& live, void* h, const char* what) {
    std::lock_guard<std::mutex> g(g_mu);
    auto it = live.find(static_cast<T*>(h));
    if (it == live.end()) return fail(ERROR_INVALID_HANDLE, std::string("destroying an unknown ") + what);
    delete *it;
    live.erase(it);
    return SUCCESS;
}

EXPORT CUresult cuStreamDestroy_v2(CUstream s) { return destroy_handle(g_streams, s, "stream"); }

// Every operation but a queued copy completes before its call returns: synchronising runs the
// queued copies and reports a sticky fault.
EXPORT CUresult cuStreamSynchronize(CUstream s) {
    if (Result r = check_stream(s)) return r;
    Context* c;
    return current_drained(&c);
}

EXPORT CUresult cuStreamQuery(CUstream s) { return cuStreamSynchronize(s); }

EXPORT CUresult cuStreamWaitEvent(CUstream s, CUevent e, unsigned) {
    if (Result r = check_stream(s)) return r;
    Context* at = nullptr;
    unsigned long long seq = 0;
    {
        std::lock_guard<std::mutex> g(g_mu);
        Event* ev = static_cast<Event*>(e);
        if (!g_events.count(ev)) return fail(ERROR_INVALID_HANDLE, "waiting on an unknown event");
        at = ev->ctx;
        seq = ev->seq;
    }
    Context* c;
    if (Result r = current(&c)) return r;
    if (at) {
        if (Result r = drain(at, seq)) return r;
    }
    return current(&c);
}

EXPORT CUresult cuLaunchHostFunc(CUstream s, void (*fn)(void*), void* data) {
    if (Result r = check_stream(s)) return r;
    Context* c;
    if (Result r = current_drained(&c)) return r;
    if (!fn) return ERROR_INVALID_VALUE;
    fn(data);
    return SUCCESS;
}

EXPORT CUresult cuEventCreate(CUevent* out, unsigned) {
    Context* c;
    if (Result r = current(&c)) return r;
    if (!out) return ERROR_INVALID_VALUE;
    Event* e = new Event();
    std::lock_guard<std::mutex> g(g_mu);
    g_events.insert(e);
    *out = e;
    return SUCCESS;
}

static Result find_event(CUevent e, Event** out) {
    std::lock_guard<std::mutex> g(g_mu);
    if (!g_events.count(static_cast<Event*>(e))) return fail(ERROR_INVALID_HANDLE, "unknown event");
    *out = static_cast<Event*>(e);
    return SUCCESS;
}

EXPORT CUresult cuEventRecord(CUevent e, CUstream s) {
    if (Result r = check_stream(s)) return r;
    Event* ev;
    if (Result r = find_event(e, &ev)) return r;
    Context* c;
    if (Result r = current(&c)) return r;
    {
        std::lock_guard<std::mutex> g(c->queue_mu);
        ev->seq = c->queued;
    }
    ev->ctx = c;
    ev->at = std::chrono::steady_clock::now();
    ev->recorded = true;
    return SUCCESS;
}

EXPORT CUresult cuEventRecordWithFlags(CUevent e, CUstream s, unsigned) { return cuEventRecord(e, s); }

// Runs the copies queued before the event's last record.
EXPORT CUresult cuEventSynchronize(CUevent e) {
    Event* ev;
    if (Result r = find_event(e, &ev)) return r;
    Context* c;
    if (Result r = current(&c)) return r;
    if (ev->ctx) {
        if (Result r = drain(ev->ctx, ev->seq)) return r;
    }
    return current(&c);
}

EXPORT CUresult cuEventQuery(CUevent e) { return cuEventSynchronize(e); }

// Host time between the two records (the emulator's, not a GPU's).
EXPORT CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
    Event *a, *b;
    if (Result r = find_event(start, &a)) return r;
    if (Result r = find_event(end, &b)) return r;
    if (!ms) return ERROR_INVALID_VALUE;
    if (!a->recorded || !b->recorded) return fail(ERROR_INVALID_HANDLE, "elapsed time of an event never recorded");
    *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
    return SUCCESS;
}

EXPORT CUresult cuEventElapsedTime_v2(float* ms, CUevent start, CUevent end) {
    return cuEventElapsedTime(ms, start, end);
}

EXPORT CUresult cuEventDestroy_v2(CUevent e) { return destroy_handle(g_events, e, "event"); }

// ---- modules and functions --------------------------------------------------------------------------

EXPORT CUresult cuModuleLoad(CUmodule* out, const char* path) {
    if (!out || !path) return ERROR_INVALID_VALUE;
    std::ifstream f(path, std::ios::binary);
    if (!f) return fail(ERROR_FILE_NOT_FOUND, std::string("module file ") + path + " cannot be opened");
    std::stringstream ss;
    ss << f.rdbuf();
    std::string data = ss.str();
    Module* m;
    if (Result r = load_image(data.data(), data.size(), path, &m)) return r;
    *out = m;
    return SUCCESS;
}

EXPORT CUresult cuModuleLoadData(CUmodule* out, const void* image) {
    if (!out || !image) return ERROR_INVALID_VALUE;
    // An in-memory image has no length: it is the furthest extent its ELF headers name (the
    // header tables, and every section's data).
    size_t size = 0;
    if (looks_like_elf(image, 64)) {
        const unsigned char* b = static_cast<const unsigned char*>(image);
        uint64_t shoff, phoff;
        uint16_t phentsize, phnum, shentsize, shnum;
        std::memcpy(&phoff, b + 0x20, 8);
        std::memcpy(&shoff, b + 0x28, 8);
        std::memcpy(&phentsize, b + 0x36, 2);
        std::memcpy(&phnum, b + 0x38, 2);
        std::memcpy(&shentsize, b + 0x3a, 2);
        std::memcpy(&shnum, b + 0x3c, 2);
        const uint64_t limit = 1ull << 30;
        if (shoff > limit || phoff > limit || shentsize < 64) {
            return fail(ERROR_INVALID_IMAGE, "in-memory module: implausible ELF header");
        }
        size = std::max<uint64_t>(shoff + (uint64_t)shentsize * shnum, phoff + (uint64_t)phentsize * phnum);
        for (unsigned i = 0; i < shnum; i++) {
            const unsigned char* sh = b + shoff + (size_t)i * shentsize;
            uint32_t type;
            uint64_t off, sz;
            std::memcpy(&type, sh + 4, 4);
            std::memcpy(&off, sh + 0x18, 8);
            std::memcpy(&sz, sh + 0x20, 8);
            if (type == 8 /* SHT_NOBITS */) continue;
            if (off > limit || sz > limit) return fail(ERROR_INVALID_IMAGE, "in-memory module: implausible section");
            size = std::max<uint64_t>(size, off + sz);
        }
    } else {
        size = std::strlen(static_cast<const char*>(image));
    }
    Module* m;
    if (Result r = load_image(image, size, "an in-memory module", &m)) return r;
    *out = m;
    return SUCCESS;
}

EXPORT CUresult cuModuleLoadDataEx(CUmodule* out, const void* image, unsigned, void*, void**) {
    return cuModuleLoadData(out, image);
}

EXPORT CUresult cuModuleUnload(CUmodule mod) {
    std::lock_guard<std::mutex> g(g_mu);
    Module* m = static_cast<Module*>(mod);
    for (Context* c : g_primary) {
        if (c && c->modules.erase(m)) {
            for (auto& kv : m->functions) {
                g_functions.erase(kv.second);
                delete kv.second;
            }
            delete m;
            return SUCCESS;
        }
    }
    return fail(ERROR_INVALID_HANDLE, "unloading an unknown module");
}

EXPORT CUresult cuModuleGetFunction(CUfunction* out, CUmodule mod, const char* name) {
    Context* c;
    if (Result r = current(&c)) return r;
    if (!out || !name) return ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> g(g_mu);
    Module* m = static_cast<Module*>(mod);
    if (!c->modules.count(m)) return fail(ERROR_INVALID_HANDLE, std::string("looking up ") + name + " in an unknown module");
    auto it = m->functions.find(name);
    if (it != m->functions.end()) {
        *out = it->second;
        return SUCCESS;
    }
    const CubinKernel* meta = nullptr;
    for (const auto& k : m->info.kernels) {
        if (k.name == name) meta = &k;
    }
    if (!meta) return fail(ERROR_NOT_FOUND, std::string("kernel ") + name + " is not in the module's CUBIN");
    std::string searched;
    const EmuKernelEntry* host = find_host_kernel(name, &searched);
    if (!host) {
        return fail(ERROR_NOT_FOUND, std::string("kernel ") + name +
                                         " is in the CUBIN but has no host build (searched " +
                                         searched + "; rebuild the emulator with gpu/emu/build)");
    }
    if (host->nparams != meta->params.size()) {
        return fail(ERROR_INVALID_IMAGE, std::string("kernel ") + name + ": the CUBIN has " +
                                             std::to_string(meta->params.size()) +
                                             " parameters, its host build " +
                                             std::to_string(host->nparams));
    }
    for (unsigned i = 0; i < host->nparams; i++) {
        if (meta->params[i].size != host->param_size[i]) {
            return fail(ERROR_INVALID_IMAGE,
                        std::string("kernel ") + name + ": parameter " + std::to_string(i) + " is " +
                            std::to_string(meta->params[i].size) + " bytes in the CUBIN and " +
                            std::to_string(host->param_size[i]) + " in its host build");
        }
    }
    Function* f = new Function();
    f->name = name;
    f->meta = *meta;
    f->host = host;
    f->max_dynamic_shared = meta->static_shared >= kSharedPerBlock ? 0 : kSharedPerBlock - meta->static_shared;
    m->functions[name] = f;
    g_functions.insert(f);
    *out = f;
    return SUCCESS;
}

EXPORT CUresult cuModuleGetGlobal_v2(CUdeviceptr*, size_t*, CUmodule, const char* name) {
    return fail(ERROR_NOT_FOUND, std::string("module global ") + (name ? name : "?") +
                                     ": the emulated device has no module globals");
}

static Result find_function(CUfunction fn, Function** out) {
    std::lock_guard<std::mutex> g(g_mu);
    if (!g_functions.count(static_cast<Function*>(fn))) return fail(ERROR_INVALID_HANDLE, "unknown function handle");
    *out = static_cast<Function*>(fn);
    return SUCCESS;
}

EXPORT CUresult cuFuncGetAttribute(int* v, int attr, CUfunction fn) {
    Function* f;
    if (Result r = find_function(fn, &f)) return r;
    if (!v) return ERROR_INVALID_VALUE;
    switch (attr) {
        case 0: *v = (int)f->max_threads(); break;
        case 1: *v = (int)f->meta.static_shared; break;
        case 2: *v = 0; break;
        case 3: *v = (int)f->meta.local_bytes; break;
        case 4: *v = (int)f->meta.num_regs; break;
        case 5: *v = kArchMajor * 10 + kArchMinor; break;
        case 6: *v = kArchMajor * 10 + kArchMinor; break;
        case 7: *v = 0; break;
        case 8: *v = (int)f->max_dynamic_shared; break;
        case 9: *v = -1; break;
        default: return fail(ERROR_INVALID_VALUE, "cuFuncGetAttribute: attribute " + std::to_string(attr));
    }
    return SUCCESS;
}

EXPORT CUresult cuFuncSetAttribute(CUfunction fn, int attr, int value) {
    Function* f;
    if (Result r = find_function(fn, &f)) return r;
    if (attr == 8) {
        if (value < 0 || (unsigned)value + f->meta.static_shared > kSharedPerBlockOptin) {
            return fail(ERROR_INVALID_VALUE, "kernel " + f->name + ": " + std::to_string(value) +
                                                 " bytes of dynamic shared memory exceed the device's opt-in limit");
        }
        f->max_dynamic_shared = (unsigned)value;
        return SUCCESS;
    }
    if (attr == 9) return SUCCESS;
    return fail(ERROR_INVALID_VALUE, "cuFuncSetAttribute: attribute " + std::to_string(attr));
}

EXPORT CUresult cuFuncSetCacheConfig(CUfunction fn, int) {
    Function* f;
    return find_function(fn, &f);
}

// ---- occupancy --------------------------------------------------------------------------------------

static unsigned occupancy(const Function& f, unsigned threads, size_t dyn) {
    if (threads == 0 || threads > f.max_threads()) return 0;
    unsigned warps = (threads + kWarpSize - 1) / kWarpSize;
    unsigned by_threads = kMaxThreadsPerSm / (warps * kWarpSize);
    if (block_registers(f.meta.num_regs, threads) > kRegistersPerBlock) return 0;
    unsigned by_regs = warps_by_registers(f.meta.num_regs) / warps;
    unsigned long long shared = dyn + f.meta.static_shared + 1024;  // 1 KiB reserved per block
    unsigned by_shared = (unsigned)(kSharedPerSm / shared);
    unsigned r = kMaxBlocksPerSm;
    r = std::min(r, by_threads);
    r = std::min(r, by_regs);
    r = std::min(r, by_shared);
    return r;
}

EXPORT CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* n, CUfunction fn, int threads,
                                                                     size_t dyn, unsigned) {
    Function* f;
    if (Result r = find_function(fn, &f)) return r;
    if (!n || threads <= 0) return ERROR_INVALID_VALUE;
    *n = (int)occupancy(*f, (unsigned)threads, dyn);
    return SUCCESS;
}

EXPORT CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int* n, CUfunction fn, int threads, size_t dyn) {
    return cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(n, fn, threads, dyn, 0);
}

EXPORT CUresult cuOccupancyMaxPotentialBlockSizeWithFlags(int* min_grid, int* block, CUfunction fn,
                                                          size_t (*dyn_of)(int), size_t dyn, int limit,
                                                          unsigned) {
    Function* f;
    if (Result r = find_function(fn, &f)) return r;
    if (!min_grid || !block) return ERROR_INVALID_VALUE;
    unsigned max = f->max_threads();
    if (limit > 0 && (unsigned)limit < max) max = (unsigned)limit;
    unsigned best_threads = 0, best_active = 0;
    for (unsigned t = kWarpSize; t <= max; t += kWarpSize) {
        size_t d = dyn_of ? dyn_of((int)t) : dyn;
        unsigned active = occupancy(*f, t, d) * t;
        if (active >= best_active) {
            best_active = active;
            best_threads = t;
        }
    }
    if (best_threads == 0) return fail(ERROR_INVALID_VALUE, "kernel " + f->name + " cannot run any block size");
    *block = (int)best_threads;
    *min_grid = (int)(best_active / best_threads * kSmCount);
    return SUCCESS;
}

EXPORT CUresult cuOccupancyMaxPotentialBlockSize(int* min_grid, int* block, CUfunction fn,
                                                 size_t (*dyn_of)(int), size_t dyn, int limit) {
    return cuOccupancyMaxPotentialBlockSizeWithFlags(min_grid, block, fn, dyn_of, dyn, limit, 0);
}

EXPORT CUresult cuOccupancyAvailableDynamicSMemPerBlock(size_t* out, CUfunction fn, int blocks, int threads) {
    Function* f;
    if (Result r = find_function(fn, &f)) return r;
    if (!out || blocks <= 0 || threads <= 0) return ERROR_INVALID_VALUE;
    size_t per = kSharedPerSm / (size_t)blocks;
    size_t used = f->meta.static_shared + 1024;
    *out = per > used ? std::min<size_t>(per - used, kSharedPerBlockOptin - f->meta.static_shared) : 0;
    return SUCCESS;
}

// ---- launch -----------------------------------------------------------------------------------------

// CUDA_EMU_FAIL_LAUNCH=KERNEL:N makes the N-th launch (1-based, counted since the process
// started, all devices together) of KERNEL fault as a kernel fault does on a GPU: the launch
// returns success and the context is left with a sticky CUDA_ERROR_LAUNCH_FAILED. For testing
// what a program does when a device fails mid-computation.
static bool injected_fault(const std::string& kernel, unsigned long long* nth) {
    static const std::pair<std::string, unsigned long long> spec = [] {
        const char* e = std::getenv("CUDA_EMU_FAIL_LAUNCH");
        if (!e) return std::make_pair(std::string(), 0ull);
        std::string v(e);
        size_t colon = v.rfind(':');
        if (colon == std::string::npos) return std::make_pair(v, 1ull);
        return std::make_pair(v.substr(0, colon), std::strtoull(v.c_str() + colon + 1, nullptr, 10));
    }();
    if (spec.first.empty() || spec.first != kernel) return false;
    static std::mutex mu;
    static unsigned long long seen = 0;
    std::lock_guard<std::mutex> g(mu);
    *nth = ++seen;
    return *nth == spec.second;
}

EXPORT CUresult cuLaunchKernel(CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, unsigned shared, CUstream s, void** params,
                               void** extra) {
    Context* c;
    if (Result r = current_drained(&c)) return r;
    if (Result r = check_stream(s)) return r;
    Function* f;
    if (Result r = find_function(fn, &f)) return r;
    if (extra != nullptr) {
        return fail(ERROR_NOT_SUPPORTED, "cuLaunchKernel: the `extra` parameter form is not emulated");
    }
    LaunchConfig cfg{{gx, gy, gz}, {bx, by, bz}, shared};
    if (Result r = check_launch(*f, cfg, params)) return r;
    {
        // The driver raises the stack limit for a kernel whose threads need more local memory.
        std::lock_guard<std::mutex> g(g_mu);
        if (f->meta.local_bytes > c->stack_limit) {
            if (Result r = set_stack_limit(c, f->meta.local_bytes, "launching " + f->name)) return r;
        }
    }
    counters().launches++;
    {
        // check_launch has refused a configuration no SM can hold, so per_sm >= 1.
        uint64_t threads = (uint64_t)bx * by * bz;
        uint64_t per_sm = std::max(1u, occupancy(*f, (unsigned)threads, shared));
        uint64_t blocks = (uint64_t)gx * gy * gz;
        uint64_t wave = per_sm * kSmCount;
        uint64_t warps = per_sm * ((threads + kWarpSize - 1) / kWarpSize);
        std::lock_guard<std::mutex> g(counters().mu);
        LaunchStats& st = counters().launches_per_kernel[f->name];
        st.warps_min = st.launches == 0 ? warps : std::min(st.warps_min, warps);
        st.warps_max = std::max(st.warps_max, warps);
        st.launches++;
        st.blocks += blocks;
        st.waves += (blocks + wave - 1) / wave;
        st.slots += (blocks + wave - 1) / wave * wave;
    }
    unsigned long long nth = 0;
    Result r = injected_fault(f->name, &nth)
                   ? fail(ERROR_LAUNCH_FAILED, "kernel " + f->name + ": fault injected at launch " +
                                                   std::to_string(nth) + " (CUDA_EMU_FAIL_LAUNCH)")
                   : execute(*f, cfg, params);
    if (r != SUCCESS) {
        // A fault inside a kernel: the launch itself succeeded (as on a GPU); the context is
        // now unusable and every later call reports the fault.
        std::lock_guard<std::mutex> g(g_mu);
        c->sticky = r;
        c->sticky_detail = tls_last_detail;
    }
    return SUCCESS;
}

// ---- the emulator's own entry points (for tests) -----------------------------------------------------

extern "C" {
struct CuEmuCounters {
    unsigned long long htod_bytes, dtoh_bytes, dtod_bytes, memset_bytes;
    unsigned long long htod_copies, dtoh_copies, launches, allocations;
    unsigned long long live_allocations, bytes_in_use, peak_bytes, local_reserved;
    unsigned long long device_ns;
};
}

// Fills `out` (sizeof(CuEmuCounters) bytes, checked) with the counters since the last reset.
EXPORT int cuEmuGetCounters(CuEmuCounters* out, size_t size) {
    if (!out || size != sizeof(CuEmuCounters)) return ERROR_INVALID_VALUE;
    Counters& k = counters();
    out->htod_bytes = k.htod_bytes;
    out->dtoh_bytes = k.dtoh_bytes;
    out->dtod_bytes = k.dtod_bytes;
    out->memset_bytes = k.memset_bytes;
    out->htod_copies = k.htod_copies;
    out->dtoh_copies = k.dtoh_copies;
    out->launches = k.launches;
    out->allocations = k.allocations;
    out->live_allocations = memory().count();
    out->bytes_in_use = memory().in_use();
    out->peak_bytes = memory().peak();
    out->local_reserved = memory().local_reserved();
    out->device_ns = k.device_ns;
    return SUCCESS;
}

// Copies `s` into buf (at most len bytes, NUL-terminated) and returns the length it needs.
static size_t copy_text(const std::string& s, char* buf, size_t len) {
    if (buf && len) {
        size_t n = std::min(len - 1, s.size());
        std::memcpy(buf, s.data(), n);
        buf[n] = 0;
    }
    return s.size() + 1;
}

// Writes "name count\n" per launched kernel into buf (NUL-terminated); returns the length needed.
EXPORT size_t cuEmuGetLaunchCounts(char* buf, size_t len) {
    std::string s;
    {
        std::lock_guard<std::mutex> g(counters().mu);
        for (auto& kv : counters().launches_per_kernel) {
            s += kv.first + " " + std::to_string(kv.second.launches) + "\n";
        }
    }
    return copy_text(s, buf, len);
}

// Writes "name launches blocks waves slots warps_min warps_max\n" per launched kernel into buf
// (NUL-terminated; see LaunchStats); returns the length needed.
EXPORT size_t cuEmuGetLaunchShapes(char* buf, size_t len) {
    std::string s;
    {
        std::lock_guard<std::mutex> g(counters().mu);
        for (auto& kv : counters().launches_per_kernel) {
            const LaunchStats& st = kv.second;
            s += kv.first + " " + std::to_string(st.launches) + " " + std::to_string(st.blocks) + " " +
                 std::to_string(st.waves) + " " + std::to_string(st.slots) + " " +
                 std::to_string(st.warps_min) + " " + std::to_string(st.warps_max) + "\n";
        }
    }
    return copy_text(s, buf, len);
}

// Writes "name muls longest chain elements\n" per kernel that made field multiplications or
// element accesses into buf (NUL-terminated; see MulStats); returns the length needed.
EXPORT size_t cuEmuGetMulCounts(char* buf, size_t len) {
    std::string s;
    {
        std::lock_guard<std::mutex> g(counters().mu);
        for (auto& kv : counters().muls_per_kernel) {
            if (kv.second.muls == 0 && kv.second.elements == 0) continue;
            s += kv.first + " " + std::to_string(kv.second.muls) + " " + std::to_string(kv.second.longest) +
                 " " + std::to_string(kv.second.chain) + " " + std::to_string(kv.second.elements) + "\n";
        }
    }
    return copy_text(s, buf, len);
}

// Zeroes the counters and sets the peak to what is allocated now.
EXPORT void cuEmuResetCounters(void) {
    Counters& k = counters();
    k.htod_bytes = 0;
    k.dtoh_bytes = 0;
    k.dtod_bytes = 0;
    k.memset_bytes = 0;
    k.htod_copies = 0;
    k.dtoh_copies = 0;
    k.launches = 0;
    k.allocations = 0;
    k.device_ns = 0;
    {
        std::lock_guard<std::mutex> g(k.mu);
        k.launches_per_kernel.clear();
        k.muls_per_kernel.clear();
    }
    memory().reset_peak();
}

// "forward", "reverse" or "shuffle".
EXPORT const char* cuEmuOrder(void) {
    switch (order_mode()) {
        case Order::Reverse: return "reverse";
        case Order::Shuffle: return "shuffle";
        default: return "forward";
    }
}
