// Kernel execution on the emulated device.
//
// - The host builds of the kernels live in kernel libraries (libcuda_emu_kernels.so next to this
//   driver, or the paths in CUDA_EMU_KERNELS first), found by name.
// - A launch is checked against the device's and the kernel's limits (threads per block, grid
//   dimensions, static + dynamic shared memory, registers × threads from the CUBIN) and its
//   pointer parameters against live allocations, then run to completion before cuLaunchKernel
//   returns (one kernel at a time; no stream asynchrony).
// - Blocks are spread over a pool of worker threads. The threads of a block run as fibers on one
//   worker: each runs until it reaches __syncthreads, a warp intrinsic or returns; when every
//   thread waits at the same barrier, all continue. A warp intrinsic (__shfl_sync, __ballot_sync,
//   __match_any_sync, ...) completes when every thread its mask names waits at the same call or
//   has returned: the driver then computes all of their results at once.
//   CUDA_EMU_ORDER=forward|reverse|shuffle sets the order in which threads (and blocks) run, so
//   that a missing barrier or a race changes the result.
// - A fault inside a kernel (a load or store in a guard page: out of the bounds of an allocation
//   or of dynamic shared memory; a fiber stack overflow) is caught by a signal handler and
//   becomes a sticky ERROR_ILLEGAL_ADDRESS naming the kernel, block, thread and allocation.
//   Under AddressSanitizer (the asan build) ASan reports it instead.
#include <dlfcn.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>

#include "emu.h"
#include "racecheck.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace emu {

// ---- kernel libraries ---------------------------------------------------------------------------

namespace {

struct KernelLib {
    std::string path;
    const EmuKernelEntry* const* table;
    size_t n;
};

std::mutex g_libs_mu;
std::vector<KernelLib>* g_libs = nullptr;
std::string g_libs_searched;

std::string driver_dir() {
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&driver_dir), &info) && info.dli_fname) {
        std::string p = info.dli_fname;
        auto slash = p.rfind('/');
        if (slash != std::string::npos) return p.substr(0, slash);
    }
    return ".";
}

void load_libs() {
    g_libs = new std::vector<KernelLib>();
    std::vector<std::string> paths;
    if (const char* env = std::getenv("CUDA_EMU_KERNELS")) {
        std::string s = env;
        size_t start = 0;
        while (start <= s.size()) {
            size_t end = s.find(':', start);
            if (end == std::string::npos) end = s.size();
            if (end > start) paths.push_back(s.substr(start, end - start));
            start = end + 1;
        }
    }
    paths.push_back(driver_dir() + "/libcuda_emu_kernels.so");
    for (const auto& p : paths) {
        if (!g_libs_searched.empty()) g_libs_searched += ", ";
        g_libs_searched += p;
        void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            log("cannot load kernel library " + p + ": " + dlerror());
            continue;
        }
        using TableFn = const EmuKernelEntry* const* (*)(size_t*);
        auto fn = reinterpret_cast<TableFn>(dlsym(h, "emu_kernel_table"));
        if (!fn) {
            log("kernel library " + p + " has no emu_kernel_table");
            continue;
        }
        KernelLib lib{p, nullptr, 0};
        lib.table = fn(&lib.n);
        g_libs->push_back(lib);
    }
}

}  // namespace

const EmuKernelEntry* find_host_kernel(const std::string& name, std::string* searched) {
    std::lock_guard<std::mutex> g(g_libs_mu);
    if (!g_libs) load_libs();
    for (const auto& lib : *g_libs) {
        for (size_t i = 0; i < lib.n; i++) {
            if (name == lib.table[i]->name) return lib.table[i];
        }
    }
    if (searched) *searched = g_libs_searched;
    return nullptr;
}

// ---- launch checks ------------------------------------------------------------------------------

unsigned Function::max_threads() const {
    unsigned m = kMaxThreadsPerBlock;
    if (meta.max_threads != 0) m = std::min(m, meta.max_threads);
    if (meta.num_regs != 0) {
        // The largest block the hardware's register check admits (block_registers).
        unsigned long long warps = warps_by_registers(meta.num_regs);
        m = (unsigned)std::min<unsigned long long>(m, warps * kWarpSize);
    }
    return m;
}

namespace {
std::string dims(const unsigned d[3]) {
    return "(" + std::to_string(d[0]) + ", " + std::to_string(d[1]) + ", " + std::to_string(d[2]) +
           ")";
}
}  // namespace

Result check_launch(const Function& f, const LaunchConfig& cfg, void** params) {
    const std::string k = "launch of " + f.name + ": ";
    unsigned long long threads = 1;
    for (int i = 0; i < 3; i++) {
        if (cfg.block[i] == 0 || cfg.block[i] > kMaxBlockDim[i]) {
            return fail(ERROR_INVALID_VALUE, k + "block " + dims(cfg.block) +
                                                 " exceeds the device's block dimensions " +
                                                 dims(kMaxBlockDim));
        }
        if (cfg.grid[i] == 0 || cfg.grid[i] > kMaxGridDim[i]) {
            return fail(ERROR_INVALID_VALUE, k + "grid " + dims(cfg.grid) +
                                                 " exceeds the device's grid dimensions " +
                                                 dims(kMaxGridDim));
        }
        threads *= cfg.block[i];
    }
    if (threads > kMaxThreadsPerBlock) {
        return fail(ERROR_INVALID_VALUE, k + std::to_string(threads) +
                                             " threads per block, the device allows " +
                                             std::to_string(kMaxThreadsPerBlock));
    }
    if (f.meta.max_threads != 0 && threads > f.meta.max_threads) {
        return fail(ERROR_INVALID_VALUE, k + std::to_string(threads) +
                                             " threads per block, above the kernel's "
                                             "__launch_bounds__ of " +
                                             std::to_string(f.meta.max_threads));
    }
    if (cfg.shared_bytes > f.max_dynamic_shared) {
        return fail(ERROR_INVALID_VALUE,
                    k + std::to_string(cfg.shared_bytes) +
                        " bytes of dynamic shared memory, the kernel allows " +
                        std::to_string(f.max_dynamic_shared) +
                        " (raise CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, up to " +
                        std::to_string(kSharedPerBlockOptin - f.meta.static_shared) + ")");
    }
    unsigned long long shared = (unsigned long long)cfg.shared_bytes + f.meta.static_shared;
    if (shared > kSharedPerBlockOptin) {
        return fail(ERROR_INVALID_VALUE, k + std::to_string(f.meta.static_shared) +
                                             " bytes of static and " +
                                             std::to_string(cfg.shared_bytes) +
                                             " of dynamic shared memory exceed the device's " +
                                             std::to_string(kSharedPerBlockOptin));
    }
    unsigned long long regs = block_registers(f.meta.num_regs, (unsigned)threads);
    if (regs > kRegistersPerBlock) {
        return fail(ERROR_LAUNCH_OUT_OF_RESOURCES,
                    k + std::to_string(f.meta.num_regs) + " registers per thread × " +
                        std::to_string(threads) + " threads need " + std::to_string(regs) +
                        " registers, the device has " + std::to_string(kRegistersPerBlock) +
                        " per block");
    }
    const EmuKernelEntry* h = f.host;
    if (h->nparams > 0 && params == nullptr) {
        return fail(ERROR_INVALID_VALUE, k + "kernelParams is null but the kernel takes " +
                                             std::to_string(h->nparams) + " parameters");
    }
    for (unsigned i = 0; i < h->nparams; i++) {
        if (params[i] == nullptr) {
            return fail(ERROR_INVALID_VALUE, k + "kernelParams[" + std::to_string(i) + "] is null");
        }
        if (!h->param_is_pointer[i]) continue;
        uintptr_t p;
        std::memcpy(&p, params[i], sizeof p);
        if (p == 0) continue;
        std::string why;
        if (!memory().contains(p, 0, &why)) {
            return fail(ERROR_INVALID_VALUE, k + "pointer parameter " + std::to_string(i) + ": " + why);
        }
    }
    return SUCCESS;
}

// ---- fibers -------------------------------------------------------------------------------------

#if defined(__x86_64__)
extern "C" void emu_ctx_switch(void** save_sp, void* new_sp);
extern "C" void emu_ctx_entry();
// Saves the callee-saved registers, the SSE and x87 control words and the stack pointer of the
// running context into *save_sp, then resumes the context whose stack pointer is new_sp.
// A new context starts in emu_ctx_entry, which calls r13(r12).
asm(R"(
    .text
    .globl emu_ctx_switch
    .hidden emu_ctx_switch
    .type emu_ctx_switch,@function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    stmxcsr 8(%rsp)
    fnstcw (%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr 8(%rsp)
    fldcw (%rsp)
    addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_ctx_switch,.-emu_ctx_switch

    .globl emu_ctx_entry
    .hidden emu_ctx_entry
    .type emu_ctx_entry,@function
emu_ctx_entry:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size emu_ctx_entry,.-emu_ctx_entry
)");
#endif

namespace {

constexpr size_t kFiberStack = 256 * 1024;

enum class State { Run, Wait, WarpWait, Done };

// Where a barrier or a warp call is in the kernel's source. Calls are told apart by source line,
// not by call address: an optimising compiler may copy one call into several places (unswitched
// or peeled loops, duplicated tails), all of them the same call.
struct SourceLine {
    const char* file = nullptr;
    unsigned line = 0;

    bool same(const SourceLine& o) const {
        return line == o.line && (file == o.file || (file && o.file && std::strcmp(file, o.file) == 0));
    }
    std::string where() const {
        std::string f = file ? file : "?";
        size_t slash = f.rfind('/');
        if (slash != std::string::npos) f = f.substr(slash + 1);
        return f + ":" + std::to_string(line);
    }
};

// A warp-synchronous call a fiber waits at (cuEmuWarpSync's arguments).
struct WarpCall {
    unsigned op = 0, mask = 0, arg = 0, width = 0;
    unsigned long long value = 0;
    SourceLine at;

    // Whether `o` is the same call (source line, operation and mask), so they may complete together.
    bool same_call(const WarpCall& o) const { return op == o.op && mask == o.mask && at.same(o.at); }
    std::string where() const { return at.where(); }
};

struct Worker;

struct Fiber {
    EmuThreadCtx ctx;
    State state = State::Run;
    SourceLine barrier;  // the __syncthreads it waits at (state Wait)
    WarpCall call;                     // the warp call it waits at (state WarpWait)
    unsigned long long call_result = 0;  // its result, set when the warp's call completes
    Worker* w = nullptr;
    void* map = nullptr;   // stack mapping, guard page at the bottom
    size_t map_len = 0;
    char* stack = nullptr;
    size_t stack_size = 0;
#if defined(__x86_64__)
    void* sp = nullptr;
#else
    ucontext_t uc;
#endif
    bool started = false;
    void* asan_fake = nullptr;
};

struct Job;

struct Worker {
    std::vector<Fiber*> fibers;
    Fiber* current = nullptr;
#if defined(__x86_64__)
    void* sp = nullptr;
#else
    ucontext_t uc;
#endif
    const void* asan_bottom = nullptr;
    size_t asan_size = 0;
    void* asan_fake = nullptr;
    sigjmp_buf jmp;
    volatile sig_atomic_t in_kernel = 0;
    void* fault_addr = nullptr;
    int fault_sig = 0;
    // Set by kernel_fault before it jumps out (empty: a signal).
    std::string fault_detail;
    Result fault_result = SUCCESS;
    char* dyn_shared = nullptr;
    size_t dyn_size = 0;
    void* dyn_map = nullptr;
    size_t dyn_map_len = 0;
    unsigned long long generation = 0;
    std::mt19937_64 rng;
    const Job* job = nullptr;
    std::vector<unsigned> order;
    void* altstack = nullptr;
};

thread_local Worker* tls_worker = nullptr;
thread_local Fiber* tls_fiber = nullptr;
std::atomic<unsigned long long> g_generation{1};

void fiber_main(void* arg);

#if defined(__x86_64__)
void fiber_init(Fiber* f) {
    uintptr_t top = reinterpret_cast<uintptr_t>(f->stack + f->stack_size) & ~uintptr_t(15);
    uintptr_t sp = top - 88;
    uint64_t* s = reinterpret_cast<uint64_t*>(sp);
    std::memset(s, 0, 88);
    uint16_t fpucw = 0x037f;
    uint32_t mxcsr = 0x1f80;
    std::memcpy(reinterpret_cast<char*>(sp), &fpucw, 2);
    std::memcpy(reinterpret_cast<char*>(sp) + 8, &mxcsr, 4);
    s[2] = 0;                                              // r15
    s[3] = 0;                                              // r14
    s[4] = reinterpret_cast<uint64_t>(&fiber_main);        // r13
    s[5] = reinterpret_cast<uint64_t>(f);                  // r12
    s[6] = 0;                                              // rbx
    s[7] = 0;                                              // rbp
    s[8] = reinterpret_cast<uint64_t>(&emu_ctx_entry);     // return address
    f->sp = reinterpret_cast<void*>(sp);
    f->started = true;
}
#else
void fiber_trampoline(unsigned hi, unsigned lo) {
    fiber_main(reinterpret_cast<void*>(((uintptr_t)hi << 32) | lo));
}
void fiber_init(Fiber* f) {
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = f->stack_size;
    f->uc.uc_link = nullptr;
    uintptr_t p = reinterpret_cast<uintptr_t>(f);
    makecontext(&f->uc, reinterpret_cast<void (*)()>(&fiber_trampoline), 2, (unsigned)(p >> 32),
                (unsigned)p);
    f->started = true;
}
#endif

// Worker -> fiber.
void switch_to_fiber(Worker* w, Fiber* f) {
#if defined(EMU_ASAN)
    __sanitizer_start_switch_fiber(&w->asan_fake, f->stack, f->stack_size);
#endif
#if defined(__x86_64__)
    emu_ctx_switch(&w->sp, f->sp);
#else
    swapcontext(&w->uc, &f->uc);
#endif
#if defined(EMU_ASAN)
    __sanitizer_finish_switch_fiber(w->asan_fake, nullptr, nullptr);
#endif
}

// Fiber -> worker.
void switch_to_worker(Fiber* f) {
    Worker* w = f->w;
#if defined(EMU_ASAN)
    __sanitizer_start_switch_fiber(&f->asan_fake, w->asan_bottom, w->asan_size);
#endif
#if defined(__x86_64__)
    emu_ctx_switch(&f->sp, w->sp);
#else
    swapcontext(&f->uc, &w->uc);
#endif
#if defined(EMU_ASAN)
    __sanitizer_finish_switch_fiber(f->asan_fake, &w->asan_bottom, &w->asan_size);
#endif
}

}  // namespace

// ---- one launch ---------------------------------------------------------------------------------

namespace {

struct Job {
    const Function* f;
    const LaunchConfig* cfg;
    void** params;
    unsigned long long blocks;
    unsigned threads;
    Order order;
    unsigned long long perm_a, perm_b;  // shuffled block order: (a·i + b) mod blocks
    std::atomic<unsigned long long> next{0};
    std::atomic<bool> abort{false};
    // Field multiplications: every thread's, and the most of one thread (blocks that completed).
    std::atomic<unsigned long long> muls{0}, longest{0}, elements{0};
    std::mutex mu;
    Result error = SUCCESS;
    std::string detail;

    void set_error(Result r, const std::string& d) {
        std::lock_guard<std::mutex> g(mu);
        if (error == SUCCESS) {
            error = r;
            detail = d;
        }
        abort = true;
    }
};

void fiber_main(void* arg) {
    Fiber* f = static_cast<Fiber*>(arg);
#if defined(EMU_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &f->w->asan_bottom, &f->w->asan_size);
#endif
    for (;;) {
        const Job* job = f->w->job;
        job->f->host->invoke(job->f->host->fn, job->params);
        f->state = State::Done;
        switch_to_worker(f);
    }
}

std::string ids(const uint3& b, const uint3& t) {
    return "block (" + std::to_string(b.x) + ", " + std::to_string(b.y) + ", " + std::to_string(b.z) +
           ") thread (" + std::to_string(t.x) + ", " + std::to_string(t.y) + ", " +
           std::to_string(t.z) + ")";
}

Fiber* new_fiber(Worker* w) {
    Fiber* f = new Fiber();
    f->w = w;
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    f->map_len = kFiberStack + pg;
    f->map = mmap(nullptr, f->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                  -1, 0);
    if (f->map == MAP_FAILED) {
        delete f;
        return nullptr;
    }
    mprotect(f->map, pg, PROT_NONE);  // guard page below the stack
    f->stack = static_cast<char*>(f->map) + pg;
    f->stack_size = kFiberStack;
    return f;
}

uint3 unflatten(unsigned long long i, const unsigned d[3]) {
    uint3 r;
    r.x = (unsigned)(i % d[0]);
    r.y = (unsigned)((i / d[0]) % d[1]);
    r.z = (unsigned)(i / ((unsigned long long)d[0] * d[1]));
    return r;
}

const char* warp_op_name(unsigned op) {
    static const char* const names[EMU_WARP_OPS] = {
        "__syncwarp",    "__shfl_sync",   "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
        "__ballot_sync", "__any_sync",    "__all_sync",     "__match_any_sync"};
    return op < EMU_WARP_OPS ? names[op] : "an unknown warp call";
}

std::string hex(unsigned v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", v);
    return buf;
}

// The result of lane `lane` of a completed warp call: `members` are the lanes that take part
// (their `vals`), `c` the call they all made. A shuffle from a lane that does not take part gives
// garbage, as the CUDA programming guide leaves it undefined.
unsigned long long warp_result(const WarpCall& c, unsigned lane, unsigned members,
                               const unsigned long long vals[32], std::mt19937_64& rng) {
    const unsigned width = c.width, seg = lane & ~(width - 1u);
    unsigned src = lane;
    switch (c.op) {
        case EMU_WARP_SYNC:
            return 0;
        case EMU_WARP_SHFL_IDX:
            src = seg + (c.arg & (width - 1u));
            break;
        case EMU_WARP_SHFL_UP:
            src = lane - seg >= c.arg ? lane - c.arg : lane;
            break;
        case EMU_WARP_SHFL_DOWN:
            src = (unsigned long long)(lane - seg) + c.arg < width ? lane + c.arg : lane;
            break;
        case EMU_WARP_SHFL_XOR:
            src = lane ^ (c.arg & 31u);
            if (src >= seg + width) src = lane;
            break;
        case EMU_WARP_BALLOT:
        case EMU_WARP_ANY:
        case EMU_WARP_ALL: {
            unsigned ballot = 0;
            for (unsigned l = 0; l < 32; l++) {
                if ((members >> l & 1u) && vals[l] != 0) ballot |= 1u << l;
            }
            if (c.op == EMU_WARP_BALLOT) return ballot;
            if (c.op == EMU_WARP_ANY) return ballot != 0;
            return ballot == members;
        }
        case EMU_WARP_MATCH_ANY: {
            unsigned same = 0;
            for (unsigned l = 0; l < 32; l++) {
                if ((members >> l & 1u) && vals[l] == vals[lane]) same |= 1u << l;
            }
            return same;
        }
        default:
            return 0;
    }
    return (members >> src & 1u) ? vals[src] : rng();
}

// After a barrier or warp error: the fibers waiting mid-kernel are abandoned; start them afresh
// for the worker's next block.
void restart_waiting(Worker* w, unsigned n) {
    for (unsigned t = 0; t < n; t++) {
        State st = w->fibers[t]->state;
        if (st == State::Wait || st == State::WarpWait) fiber_init(w->fibers[t]);
    }
}

// Completes every warp call whose threads have all arrived (each thread its mask names waits at
// the same call site with the same operation and mask, or has returned; a thread beyond the
// block's last counts as returned). Sets *released when it completed any (the released threads
// must run before anything else is judged). Returns false, with the job's error set, when a
// call is malformed or can never complete: nothing was released and a named thread waits at
// __syncthreads or at another warp call.
bool resolve_warp_calls(Worker* w, const Job& job, const uint3& bidx, bool* released_any) {
    const unsigned n = job.threads;
    bool released = false;
    Fiber* stuck = nullptr;
    Fiber* blocker = nullptr;
    for (unsigned t = 0; t < n; t++) {
        Fiber* f = w->fibers[t];
        if (f->state != State::WarpWait) continue;
        const WarpCall& c = f->call;
        const unsigned lane = t % 32u, base = t - lane;
        std::string bad;
        if (!(c.mask >> lane & 1u)) {
            bad = "its mask " + hex(c.mask) + " leaves out its own lane " + std::to_string(lane) + " (" +
                  c.where() + ")";
        } else if (c.width == 0 || c.width > 32 || (c.width & (c.width - 1u)) != 0) {
            bad = "width " + std::to_string(c.width) + " is not a power of two up to 32";
        }
        if (!bad.empty()) {
            const_cast<Job&>(job).set_error(ERROR_LAUNCH_FAILED, "kernel " + job.f->name + ": " +
                                                                     ids(bidx, f->ctx.threadIdx) + " calls " +
                                                                     warp_op_name(c.op) + ": " + bad);
            restart_waiting(w, n);
            return false;
        }
        // Only the group's lowest waiting lane judges it (the others are judged with it).
        unsigned members = 0;
        bool complete = true;
        bool lowest = true;
        for (unsigned l = 0; l < 32 && complete; l++) {
            if (!(c.mask >> l & 1u) || base + l >= n) continue;
            Fiber* g = w->fibers[base + l];
            if (g->state == State::Done) continue;
            if (g->state == State::WarpWait && g->call.same_call(c)) {
                members |= 1u << l;
                if (l < lane) lowest = false;
            } else {
                complete = false;
                if (!stuck) {
                    stuck = f;
                    blocker = g;
                }
            }
        }
        if (!complete || !lowest) continue;
        unsigned long long vals[32] = {};
        for (unsigned l = 0; l < 32; l++) {
            if (members >> l & 1u) vals[l] = w->fibers[base + l]->call.value;
        }
        for (unsigned l = 0; l < 32; l++) {
            if (!(members >> l & 1u)) continue;
            Fiber* g = w->fibers[base + l];
            g->call_result = warp_result(g->call, l, members, vals, w->rng);
            g->state = State::Run;
        }
        race::warp_completed(base / 32u, members);
        released = true;
    }
    *released_any = released;
    if (released || !stuck) return true;
    const WarpCall& c = stuck->call;
    std::string what = blocker->state == State::Wait
                           ? std::string("waits at __syncthreads")
                           : std::string("waits at ") + warp_op_name(blocker->call.op) + " (" +
                                 blocker->call.where() + ", mask " + hex(blocker->call.mask) + ")";
    const_cast<Job&>(job).set_error(ERROR_LAUNCH_FAILED,
                                    "kernel " + job.f->name + ": warp divergence: " +
                                        ids(bidx, stuck->ctx.threadIdx) + " waits at " + warp_op_name(c.op) +
                                        " (" + c.where() + ", mask " + hex(c.mask) + ") while thread (" +
                                        std::to_string(blocker->ctx.threadIdx.x) + ", " +
                                        std::to_string(blocker->ctx.threadIdx.y) + ", " +
                                        std::to_string(blocker->ctx.threadIdx.z) + ") " + what);
    restart_waiting(w, n);
    return false;
}

// Runs one block on worker w. Returns false (with the job's error set) on a barrier error.
bool run_block(Worker* w, const Job& job, unsigned long long linear) {
    const LaunchConfig& cfg = *job.cfg;
    w->generation = g_generation.fetch_add(1);
    if (w->dyn_size) fill_garbage(w->dyn_shared, w->dyn_size);
    uint3 bidx = unflatten(linear, cfg.grid);
    uint3 bdim{cfg.block[0], cfg.block[1], cfg.block[2]};
    uint3 gdim{cfg.grid[0], cfg.grid[1], cfg.grid[2]};
    const unsigned n = job.threads;
    race::begin_block(w->generation, linear, n);
    for (unsigned t = 0; t < n; t++) {
        Fiber* f = w->fibers[t];
        f->ctx.threadIdx = unflatten(t, cfg.block);
        f->ctx.blockIdx = bidx;
        f->ctx.blockDim = bdim;
        f->ctx.gridDim = gdim;
        f->ctx.mul_ops = 0;
        f->ctx.element_ops = 0;
        f->state = State::Run;
        f->barrier = SourceLine{};
    }
    w->order.resize(n);
    for (unsigned t = 0; t < n; t++) w->order[t] = job.order == Order::Reverse ? n - 1 - t : t;
    for (;;) {
        if (job.order == Order::Shuffle) std::shuffle(w->order.begin(), w->order.end(), w->rng);
        for (unsigned t : w->order) {
            Fiber* f = w->fibers[t];
            if (f->state != State::Run) continue;
            w->current = f;
            tls_fiber = f;
            race::set_thread((int)t, f->stack, f->stack_size);
            w->in_kernel = 1;
            switch_to_fiber(w, f);
            w->in_kernel = 0;
            race::set_thread(-1);
            tls_fiber = nullptr;
            w->current = nullptr;
        }
        // Warp calls first: the threads they release run before any barrier is judged.
        bool released = false;
        if (!resolve_warp_calls(w, job, bidx, &released)) return false;
        if (released) continue;
        unsigned done = 0, waiting = 0;
        bool same_site = true;
        Fiber* first_waiting = nullptr;
        Fiber* elsewhere = nullptr;  // a thread waiting at another barrier than first_waiting's
        Fiber* first_done = nullptr;
        for (unsigned t = 0; t < n; t++) {
            Fiber* f = w->fibers[t];
            if (f->state == State::Done) {
                done++;
                if (!first_done) first_done = f;
            } else {
                waiting++;
                if (!first_waiting) {
                    first_waiting = f;
                } else if (same_site && !f->barrier.same(first_waiting->barrier)) {
                    same_site = false;
                    elsewhere = f;
                }
            }
        }
        if (waiting == 0) {
            unsigned long long sum = 0, most = 0, elements = 0;
            for (unsigned t = 0; t < n; t++) {
                unsigned long long m = w->fibers[t]->ctx.mul_ops;
                sum += m;
                most = std::max(most, m);
                elements += w->fibers[t]->ctx.element_ops;
            }
            Job& j = const_cast<Job&>(job);
            j.muls.fetch_add(sum, std::memory_order_relaxed);
            j.elements.fetch_add(elements, std::memory_order_relaxed);
            unsigned long long seen = j.longest.load(std::memory_order_relaxed);
            while (seen < most && !j.longest.compare_exchange_weak(seen, most)) {
            }
            return true;
        }
        if (done != 0 || !same_site) {
            std::string why;
            if (done != 0) {
                const uint3& d = first_done->ctx.threadIdx;
                why = "thread (" + std::to_string(d.x) + ", " + std::to_string(d.y) + ", " +
                      std::to_string(d.z) + ") has returned";
            } else {
                const uint3& e = elsewhere->ctx.threadIdx;
                why = "thread (" + std::to_string(e.x) + ", " + std::to_string(e.y) + ", " +
                      std::to_string(e.z) + ") waits at another __syncthreads (" +
                      elsewhere->barrier.where() + ")";
            }
            const_cast<Job&>(job).set_error(
                ERROR_LAUNCH_FAILED, "kernel " + job.f->name + ": barrier divergence: " +
                                         ids(bidx, first_waiting->ctx.threadIdx) +
                                         " waits at __syncthreads (" + first_waiting->barrier.where() +
                                         ") while " + why);
            restart_waiting(w, n);
            return false;
        }
        for (unsigned t = 0; t < n; t++) w->fibers[t]->state = State::Run;
        race::barrier();
    }
}

// After a fault in a kernel (the signal handler long-jumped out of the faulting fiber): sets the
// job's error from what the worker recorded and restarts the worker's fibers.
__attribute__((noinline)) void report_fault(Worker* w, Job& job) {
    Fiber* f = w->current;
    w->in_kernel = 0;
    race::set_thread(-1);
    tls_fiber = nullptr;
    w->current = nullptr;
    uintptr_t a = reinterpret_cast<uintptr_t>(w->fault_addr);
    std::string where = "kernel " + job.f->name + ", " +
                        (f ? ids(f->ctx.blockIdx, f->ctx.threadIdx) : std::string("?")) + ": ";
    if (!w->fault_detail.empty()) {
        job.set_error(w->fault_result, where + w->fault_detail);
        w->fault_detail.clear();
    } else if (f && a >= reinterpret_cast<uintptr_t>(f->map) && a < reinterpret_cast<uintptr_t>(f->stack)) {
        job.set_error(ERROR_HARDWARE_STACK_ERROR, where + "stack overflow (the emulator gives each thread " +
                                                      std::to_string(kFiberStack / 1024) + " KiB)");
    } else if (w->dyn_map && a >= reinterpret_cast<uintptr_t>(w->dyn_map) &&
               a < reinterpret_cast<uintptr_t>(w->dyn_map) + w->dyn_map_len) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)a);
        job.set_error(ERROR_ILLEGAL_ADDRESS, where + "illegal address " + buf + " outside the block's " +
                                                 std::to_string(w->dyn_size) +
                                                 " bytes of dynamic shared memory");
    } else {
        job.set_error(ERROR_ILLEGAL_ADDRESS, where + "illegal address (" + memory().describe(a) + ")");
    }
    // Every fiber of this worker may be mid-kernel: restart them all.
    for (Fiber* fb : w->fibers) fiber_init(fb);
    w->job = nullptr;
}

void run_job(Worker* w, Job& job) {
    w->job = &job;
    tls_worker = w;
    // Fibers for the block size, and dynamic shared memory (guarded, garbage per block).
    while (w->fibers.size() < job.threads) {
        Fiber* f = new_fiber(w);
        if (!f) {
            job.set_error(ERROR_OUT_OF_MEMORY, "no host memory for the stacks of " +
                                                   std::to_string(job.threads) + " threads");
            return;
        }
        fiber_init(f);
        w->fibers.push_back(f);
    }
    size_t dyn = job.cfg->shared_bytes;
    if (w->dyn_map && w->dyn_size != dyn) {
        guarded_unmap(w->dyn_map, w->dyn_map_len);
        w->dyn_map = nullptr;
        w->dyn_shared = nullptr;
        w->dyn_size = 0;
    }
    if (!w->dyn_map && dyn) {
        w->dyn_shared = static_cast<char*>(guarded_map(dyn, &w->dyn_map, &w->dyn_map_len));
        if (!w->dyn_shared) {
            job.set_error(ERROR_OUT_OF_MEMORY, "no host memory for shared memory");
            return;
        }
        w->dyn_size = dyn;
    }
    race::set_dynamic_shared(w->dyn_shared, w->dyn_size);
    if (sigsetjmp(w->jmp, 1) != 0) {
        // A fault inside the kernel: the signal handler jumped here.
        report_fault(w, job);
        return;
    }
    while (!job.abort.load(std::memory_order_relaxed)) {
        unsigned long long i = job.next.fetch_add(1);
        if (i >= job.blocks) break;
        unsigned long long b = i;
        if (job.order == Order::Reverse) b = job.blocks - 1 - i;
        if (job.order == Order::Shuffle) {
            b = (unsigned long long)(((unsigned __int128)job.perm_a * i + job.perm_b) % job.blocks);
        }
        if (!run_block(w, job, b)) break;
    }
    w->job = nullptr;
}

// ---- the worker pool ----------------------------------------------------------------------------

struct sigaction g_old_segv, g_old_bus;

void chain(int sig, siginfo_t* si, void* uc) {
    struct sigaction& old = sig == SIGSEGV ? g_old_segv : g_old_bus;
    if (old.sa_flags & SA_SIGINFO) {
        if (old.sa_sigaction) {
            old.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) {
        old.sa_handler(sig);
        return;
    }
    // Default action: restore it and return, so the fault repeats and kills the process.
    signal(sig, SIG_DFL);
}

void on_fault(int sig, siginfo_t* si, void* uc) {
    Worker* w = tls_worker;
    if (w && w->in_kernel) {
        w->fault_addr = si->si_addr;
        w->fault_sig = sig;
        siglongjmp(w->jmp, 1);
    }
    chain(sig, si, uc);
}

void install_fault_handler() {
#if !defined(EMU_ASAN)
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = &on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_old_segv);
    sigaction(SIGBUS, &sa, &g_old_bus);
#endif
}

class Pool {
   public:
    Pool() {
        unsigned n = std::thread::hardware_concurrency();
        if (const char* e = std::getenv("CUDA_EMU_THREADS")) n = (unsigned)std::strtoul(e, nullptr, 10);
        if (n == 0) n = 1;
        if (n > 256) n = 256;
        if (race::kEnabled) n = 1;  // the race checker's shadow is not shared between workers
        install_fault_handler();
        for (unsigned i = 0; i < n; i++) {
            threads_.emplace_back([this, i] { loop(i); });
            threads_.back().detach();
        }
        size_ = n;
    }

    Result run(Job& job) {
        std::unique_lock<std::mutex> g(mu_);
        job_ = &job;
        busy_ = size_;
        ++epoch_;
        cv_.notify_all();
        done_cv_.wait(g, [&] { return busy_ == 0; });
        job_ = nullptr;
        return job.error;
    }

   private:
    void loop(unsigned i) {
        Worker* w = new Worker();
        w->rng.seed(seed() + i * 7919u);
        // An alternate signal stack, so a fiber stack overflow can still be reported.
        stack_t ss;
        ss.ss_size = 64 * 1024;
        w->altstack = std::malloc(ss.ss_size);
        ss.ss_sp = w->altstack;
        ss.ss_flags = 0;
        sigaltstack(&ss, nullptr);
        unsigned long long seen = 0;
        for (;;) {
            Job* job;
            {
                std::unique_lock<std::mutex> g(mu_);
                cv_.wait(g, [&] { return epoch_ != seen; });
                seen = epoch_;
                job = job_;
            }
            run_job(w, *job);
            std::lock_guard<std::mutex> g(mu_);
            if (--busy_ == 0) done_cv_.notify_all();
        }
    }

   public:
    static unsigned long long seed() {
        static unsigned long long s = [] {
            if (const char* e = std::getenv("CUDA_EMU_SEED")) return std::strtoull(e, nullptr, 10);
            return (unsigned long long)std::random_device{}();
        }();
        return s;
    }

   private:
    std::vector<std::thread> threads_;
    unsigned size_ = 0;
    std::mutex mu_;
    std::condition_variable cv_, done_cv_;
    Job* job_ = nullptr;
    unsigned busy_ = 0;
    unsigned long long epoch_ = 0;
};

Pool& pool() {
    static Pool* p = new Pool();  // threads live until process exit
    return *p;
}

std::mutex g_launch_mu;

}  // namespace

Order order_mode() {
    static Order o = [] {
        const char* e = std::getenv("CUDA_EMU_ORDER");
        std::string s = e ? e : "forward";
        if (s == "reverse") return Order::Reverse;
        if (s == "shuffle") {
            log("threads and blocks run in shuffled order (CUDA_EMU_ORDER=shuffle, CUDA_EMU_SEED=" +
                std::to_string(Pool::seed()) + ")");
            return Order::Shuffle;
        }
        if (s != "forward") log("unknown CUDA_EMU_ORDER=" + s + "; using forward");
        return Order::Forward;
    }();
    return o;
}

Result execute(const Function& f, const LaunchConfig& cfg, void** params) {
    std::lock_guard<std::mutex> g(g_launch_mu);
    Job job;
    job.f = &f;
    job.cfg = &cfg;
    job.params = params;
    job.blocks = (unsigned long long)cfg.grid[0] * cfg.grid[1] * cfg.grid[2];
    job.threads = cfg.block[0] * cfg.block[1] * cfg.block[2];
    job.order = order_mode();
    job.perm_a = 1;
    job.perm_b = 0;
    if (job.order == Order::Shuffle && job.blocks > 1) {
        static std::mt19937_64 rng(Pool::seed());
        do {
            job.perm_a = 1 + rng() % (job.blocks - 1);
        } while (std::__gcd(job.perm_a, job.blocks) != 1);
        job.perm_b = rng() % job.blocks;
    }
    race::begin_launch(g_generation.load(), cfg.block, cfg.grid);
    Result r;
    {
        DeviceTimer timed;
        r = pool().run(job);
    }
    if (r != SUCCESS) return fail(r, job.detail);
    {
        std::lock_guard<std::mutex> g(counters().mu);
        MulStats& m = counters().muls_per_kernel[f.name];
        m.muls += job.muls.load();
        m.longest = std::max<uint64_t>(m.longest, job.longest.load());
        m.chain += job.longest.load();
        m.elements += job.elements.load();
    }
    return SUCCESS;
}

}  // namespace emu

// ---- what kernels call --------------------------------------------------------------------------

using namespace emu;

extern "C" __attribute__((visibility("default"))) const EmuThreadCtx* cuEmuThreadCtx(void) {
    Fiber* f = tls_fiber;
    if (!f) {
        log("threadIdx used outside a kernel");
        std::abort();
    }
    return &f->ctx;
}

extern "C" __attribute__((visibility("default"), noinline)) void cuEmuSyncthreads(const char* file,
                                                                                  unsigned line) {
    Fiber* f = tls_fiber;
    if (!f) {
        log("__syncthreads called outside a kernel");
        std::abort();
    }
    f->state = State::Wait;
    f->barrier = SourceLine{file, line};
    Worker* w = f->w;
    w->in_kernel = 0;
    switch_to_worker(f);
}

extern "C" __attribute__((visibility("default"), noinline)) unsigned long long cuEmuWarpSync(
    unsigned op, unsigned mask, unsigned long long value, unsigned arg, unsigned width, const char* file,
    unsigned line) {
    Fiber* f = tls_fiber;
    if (!f) {
        log("a warp intrinsic called outside a kernel");
        std::abort();
    }
    f->call.op = op;
    f->call.mask = mask;
    f->call.value = value;
    f->call.arg = arg;
    f->call.width = width;
    f->call.at = SourceLine{file, line};
    f->state = State::WarpWait;
    f->barrier = SourceLine{};
    Worker* w = f->w;
    w->in_kernel = 0;
    switch_to_worker(f);
    return f->call_result;
}

extern "C" [[noreturn]] __attribute__((visibility("default"), noinline)) void cuEmuMisaligned(
    const void* p, unsigned align) {
    // kernel_fault does not return: the message is built (and its temporaries destroyed) first.
    std::string msg = std::to_string(align) + "-byte access at a misaligned address (" +
                      memory().describe(reinterpret_cast<uintptr_t>(p)) + ")";
    kernel_fault(ERROR_MISALIGNED_ADDRESS, std::move(msg));
}

[[noreturn]] void emu::kernel_fault(Result r, std::string detail) {
    Worker* w = tls_worker;
    if (!w || !w->in_kernel) {
        log("a kernel fault outside a kernel: " + detail);
        std::abort();
    }
    // As a fault: the worker's handler reports it and the launch fails with a sticky error.
    w->fault_addr = nullptr;
    w->fault_sig = 0;
    w->fault_result = r;
    w->fault_detail = std::move(detail);
    siglongjmp(w->jmp, 1);
}

extern "C" __attribute__((visibility("default"))) void* cuEmuDynamicShared(void) {
    Worker* w = tls_worker;
    return w ? w->dyn_shared : nullptr;
}

extern "C" __attribute__((visibility("default"))) void* cuEmuStaticShared(void* storage, size_t bytes,
                                                                          unsigned long long* generation) {
    Worker* w = tls_worker;
    if (w && *generation != w->generation) {
        fill_garbage(storage, bytes);
        *generation = w->generation;
    }
    race::static_shared(storage, bytes);
    return storage;
}
