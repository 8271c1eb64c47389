// The race checker of the emulated device: the racecheck build's definitions of the functions
// that -fsanitize=thread makes the kernels call, and the shadow memory they check. What a race
// is, and what the executor tells the checker: racecheck.h.
//
// Shadow: for every 4-byte word of device memory (each live allocation, made when a launch first
// sees it and kept while the allocation lives) and of the block's shared memory, the last write
// and the last two reads by different threads, each with its block (generation), barrier
// interval, warp-call count, thread, bytes and source address. Blocks run one at a time on one
// worker (exec.cpp), so plain globals hold the state.
#include "racecheck.h"

#if defined(EMU_RACECHECK)

#include <dlfcn.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <vector>

#include "emu.h"

namespace emu {
namespace race {
namespace {

enum : uint8_t { kWrite = 1, kAtomic = 2 };

struct Access {
    unsigned long long gen = 0;  // the block's generation; 0: no access recorded
    const void* pc = nullptr;    // the return address of the instrumentation call
    uint32_t epoch = 0;          // barriers the block had passed
    uint32_t stamp = 0;          // warp-synchronous calls the thread's warp had completed
    uint32_t block = 0;          // the block's linear index (for messages)
    uint16_t thread = 0;         // linear index in the block
    uint8_t mask = 0;            // the bytes of the word
    uint8_t flags = 0;
};

struct Word {
    Access w, r1, r2;
};

enum class Kind { Device, Dynamic, Static };

struct Region {
    uintptr_t base = 0;
    size_t size = 0;
    Word* shadow = nullptr;
    size_t shadow_len = 0;
    Kind kind = Kind::Device;
};

// A zeroed shadow for `bytes` of memory (24 bytes of shadow per byte); null, said once, when the
// host has no room for it: that memory is then not checked.
Word* map_shadow(size_t bytes, size_t* len) {
    const size_t words = std::max<size_t>((bytes + 3) / 4, 1);
    *len = words * sizeof(Word);
    void* m = mmap(nullptr, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m != MAP_FAILED) return static_cast<Word*>(m);
    static bool said = false;
    if (!said) {
        said = true;
        log("race checker: no host memory for the shadow of " + std::to_string(bytes) +
            " bytes; memory without a shadow is not checked");
    }
    return nullptr;
}

struct State {
    unsigned long long first_gen = ~0ull;
    unsigned block_dim[3] = {1, 1, 1};
    unsigned grid_dim[3] = {1, 1, 1};
    // The running block.
    unsigned long long gen = 0;
    uint32_t block = 0;  // linear index
    uint32_t epoch = 0;
    std::vector<uint32_t> stamps;  // per warp: its completed warp-synchronous calls
    std::vector<uint32_t> pairs;   // per warp, 32 x 32 lanes: the stamp of the last call both made
    int thread = -1;
    uintptr_t stack = 0, stack_size = 0;  // the running thread's
    // Device memory: this launch's allocations by base; their shadows by allocation number.
    std::vector<Region> device;
    std::map<unsigned long long, Region> by_serial;
    Region dynamic;
    std::vector<Region> statics;
};

State g;

Region* g_last = nullptr;  // the region of the last checked access

Region* find(uintptr_t a) {
    if (g_last && a - g_last->base < g_last->size) return g_last;
    if (a - g.stack < g.stack_size) return nullptr;
    if (a - g.dynamic.base < g.dynamic.size) return &g.dynamic;
    for (Region& r : g.statics) {
        if (a - r.base < r.size) return &r;
    }
    auto it = std::upper_bound(g.device.begin(), g.device.end(), a,
                               [](uintptr_t x, const Region& r) { return x < r.base; });
    if (it == g.device.begin()) return nullptr;
    --it;
    return a - it->base < it->size ? &*it : nullptr;
}

enum class Rel { None, Ordered, Unordered };

// How an earlier access relates to the running thread's access now.
Rel relate(const Access& p, bool shared) {
    if (p.gen == 0 || p.gen < g.first_gen) return Rel::None;  // nothing, or an earlier launch
    if (p.gen != g.gen) return shared ? Rel::None : Rel::Unordered;  // another block
    if (p.thread == (unsigned)g.thread || p.epoch != g.epoch) return Rel::Ordered;
    const unsigned wp = p.thread / 32u, wc = (unsigned)g.thread / 32u;
    if (wp == wc && g.pairs[wp * 1024u + (p.thread % 32u) * 32u + (unsigned)g.thread % 32u] > p.stamp) {
        return Rel::Ordered;
    }
    return Rel::Unordered;
}

bool conflicts(const Access& p, const Access& c) {
    if (!(p.mask & c.mask)) return false;
    if (!((p.flags | c.flags) & kWrite)) return false;
    return !((p.flags & kAtomic) && (c.flags & kAtomic));
}

// "(x, y, z)" of linear index i in dimensions d.
std::string coords(unsigned long long i, const unsigned d[3]) {
    const unsigned long long x = i % d[0], y = (i / d[0]) % d[1], z = i / ((unsigned long long)d[0] * d[1]);
    return "(" + std::to_string(x) + ", " + std::to_string(y) + ", " + std::to_string(z) + ")";
}

std::string base_name(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The kernel source line of a return address: the outermost frame of addr2line's inline chain
// (the kernel's own line), and the innermost where it differs (the header function inlined there).
std::string source_line(const void* pc) {
    Dl_info info;
    char off[32];
    if (!pc || !dladdr(pc, &info) || !info.dli_fname) return "?";
    const uintptr_t rel = reinterpret_cast<uintptr_t>(pc) - reinterpret_cast<uintptr_t>(info.dli_fbase) - 1;
    std::snprintf(off, sizeof off, "0x%llx", (unsigned long long)rel);
    const std::string fallback = base_name(info.dli_fname) + "+" + off;
    std::string cmd = "addr2line -i -e '" + std::string(info.dli_fname) + "' " + off + " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return fallback;
    std::vector<std::string> frames;
    char buf[1024];
    while (std::fgets(buf, sizeof buf, p)) {
        std::string l = buf;
        while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
        size_t d = l.find(" (discriminator");
        if (d != std::string::npos) l.resize(d);
        if (!l.empty() && l.compare(0, 2, "??") != 0) frames.push_back(base_name(l));
    }
    pclose(p);
    if (frames.empty()) return fallback;
    if (frames.size() == 1 || frames.front() == frames.back()) return frames.back();
    return frames.back() + " via " + frames.front();
}

std::string verb(const Access& a, bool past) {
    if (a.flags & kAtomic) return past ? "updated it atomically" : "updates it atomically";
    if (a.flags & kWrite) return past ? "wrote it" : "writes it";
    return past ? "read it" : "reads it";
}

std::string what(const Region& r, uintptr_t a) {
    const size_t off = a - r.base;
    switch (r.kind) {
        case Kind::Dynamic:
            return "byte " + std::to_string(off) + " of the block's dynamic shared memory";
        case Kind::Static:
            return "byte " + std::to_string(off) + " of a static __shared__ array of " +
                   std::to_string(r.size) + " bytes";
        default:
            return "device memory (" + memory().describe(a) + ")";
    }
}

[[noreturn]] void report_race(const Region& r, uintptr_t a, const Access& cur, const Access& prev) {
    // kernel_fault does not return: every string but the moved-from message is destroyed first.
    std::string msg;
    {
        const char* why = prev.gen != g.gen ? "; blocks of one launch are not ordered"
                          : prev.thread / 32u == cur.thread / 32u
                              ? " with no __syncthreads or warp-synchronous call of both between (a "
                                "warp's lanes do not run in lockstep)"
                              : " with no __syncthreads between";
        msg = "data race on " + what(r, a) + ": this thread " + verb(cur, false) + " (" +
              source_line(cur.pc) + ") and thread " + coords(prev.thread, g.block_dim) + " of block " +
              coords(prev.block, g.grid_dim) + " " + verb(prev, true) + " (" + source_line(prev.pc) +
              ")" + why;
    }
    kernel_fault(ERROR_LAUNCH_FAILED, std::move(msg));
}

[[noreturn]] void report_uninitialised(const Region& r, uintptr_t a, const Access& cur) {
    std::string msg = "reads " + what(r, a) + " (" + source_line(cur.pc) +
                      ") before any thread of its block wrote it: shared memory starts undefined";
    kernel_fault(ERROR_LAUNCH_FAILED, std::move(msg));
}

// Whether two accesses come from one warp of one block.
bool same_warp(const Access& a, const Access& b) {
    return a.gen == b.gen && a.thread / 32u == b.thread / 32u;
}

void check_word(const Region& r, Word& w, uintptr_t a, Access cur, bool reads) {
    const bool shared = r.kind != Kind::Device;
    const Rel rw = relate(w.w, shared);
    if (rw == Rel::Unordered && conflicts(w.w, cur)) report_race(r, a, cur, w.w);
    if (cur.flags & kWrite) {
        for (const Access* p : {&w.r1, &w.r2}) {
            if (relate(*p, shared) == Rel::Unordered && conflicts(*p, cur)) report_race(r, a, cur, *p);
        }
    }
    if (reads && shared && rw == Rel::None) report_uninitialised(r, a, cur);
    if (cur.flags & kWrite) {
        w.w = cur;
        w.r1 = Access{};
        w.r2 = Access{};
        return;
    }
    // A read. Unordered with the first reader (another block, or another thread of the interval),
    // it goes to the second slot, else it replaces the first. The second slot keeps a reader of
    // another warp than the first's over a new reader of the first's warp: a write that a warp
    // call orders after the first warp's reads must still meet the other warp's.
    if (relate(w.r1, shared) != Rel::Unordered) {
        w.r1 = cur;
    } else if (!(relate(w.r2, shared) == Rel::Unordered && !same_warp(w.r2, w.r1) && same_warp(cur, w.r1))) {
        w.r2 = cur;
    }
}

inline void on_access(const void* addr, size_t size, uint8_t flags, bool reads, const void* pc) {
    if (g.thread < 0 || size == 0) return;
    const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
    Region* r = find(a);
    if (!r || !r->shadow) return;
    g_last = r;
    const size_t off = a - r->base;
    const size_t end = std::min(off + size, r->size);
    Access cur;
    cur.gen = g.gen;
    cur.pc = pc;
    cur.epoch = g.epoch;
    cur.stamp = g.stamps[(unsigned)g.thread / 32u];
    cur.block = g.block;
    cur.thread = (uint16_t)g.thread;
    cur.flags = flags;
    for (size_t word = off / 4; word * 4 < end; word++) {
        const size_t lo = std::max(off, word * 4) - word * 4, hi = std::min(end, word * 4 + 4) - word * 4;
        cur.mask = (uint8_t)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
        check_word(*r, r->shadow[word], r->base + word * 4 + lo, cur, reads);
    }
}

}  // namespace

void begin_launch(unsigned long long first_generation, const unsigned block[3],
                  const unsigned grid[3]) {
    static bool said = false;
    if (!said) {
        said = true;
        log("race checker on (the racecheck build): every kernel access to shared and device memory is "
            "checked; blocks run on one worker");
    }
    g.first_gen = first_generation;
    for (int i = 0; i < 3; i++) {
        g.block_dim[i] = block[i];
        g.grid_dim[i] = grid[i];
    }
    g.thread = -1;
    g_last = nullptr;
    std::vector<Allocation> live = memory().snapshot();
    std::map<unsigned long long, Region> kept;
    g.device.clear();
    for (const Allocation& al : live) {
        if (al.size == 0) continue;
        auto it = g.by_serial.find(al.serial);
        Region r;
        if (it != g.by_serial.end()) {
            r = it->second;
            g.by_serial.erase(it);
        } else {
            r.base = al.base;
            r.size = al.size;
            r.kind = Kind::Device;
            r.shadow = map_shadow(al.size, &r.shadow_len);
        }
        kept[al.serial] = r;
        g.device.push_back(r);
    }
    for (auto& kv : g.by_serial) {  // freed since the last launch
        if (kv.second.shadow) munmap(kv.second.shadow, kv.second.shadow_len);
    }
    g.by_serial = std::move(kept);
}

void begin_block(unsigned long long generation, unsigned long long linear, unsigned threads) {
    g.gen = generation;
    g.block = (uint32_t)linear;
    g.epoch = 0;
    const unsigned warps = (threads + 31u) / 32u;
    g.stamps.assign(warps, 0u);
    g.pairs.assign((size_t)warps * 1024u, 0u);
}

void barrier() { g.epoch++; }

void warp_completed(unsigned warp, unsigned members) {
    if (warp >= g.stamps.size()) return;
    const uint32_t s = ++g.stamps[warp];
    uint32_t* p = &g.pairs[(size_t)warp * 1024u];
    for (unsigned a = 0; a < 32; a++) {
        if (!(members >> a & 1u)) continue;
        for (unsigned b = 0; b < 32; b++) {
            if (members >> b & 1u) p[a * 32u + b] = s;
        }
    }
}

void set_thread(int t, const void* stack, size_t stack_size) {
    g.thread = t;
    g.stack = reinterpret_cast<uintptr_t>(stack);
    g.stack_size = stack_size;
}

void set_dynamic_shared(const void* p, size_t bytes) {
    const uintptr_t base = reinterpret_cast<uintptr_t>(p);
    if (g.dynamic.base == base && g.dynamic.size == bytes) return;
    if (g.dynamic.shadow) munmap(g.dynamic.shadow, g.dynamic.shadow_len);
    g.dynamic = Region{};
    g_last = nullptr;
    if (!p || bytes == 0) return;
    g.dynamic.base = base;
    g.dynamic.size = bytes;
    g.dynamic.kind = Kind::Dynamic;
    g.dynamic.shadow = map_shadow(bytes, &g.dynamic.shadow_len);
}

void static_shared(const void* p, size_t bytes) {
    const uintptr_t base = reinterpret_cast<uintptr_t>(p);
    for (const Region& r : g.statics) {
        if (r.base == base) return;
    }
    Region r;
    r.base = base;
    r.size = bytes;
    r.kind = Kind::Static;
    r.shadow = map_shadow(bytes, &r.shadow_len);
    g.statics.push_back(r);
    g_last = nullptr;
}

}  // namespace race
}  // namespace emu

// ---- what -fsanitize=thread makes the kernels call ----------------------------------------------

using emu::race::kAtomic;
using emu::race::kWrite;
using emu::race::on_access;

#define EMU_TSAN extern "C" __attribute__((visibility("default"), noinline))
#define EMU_PC __builtin_return_address(0)

EMU_TSAN void __tsan_init() {}
EMU_TSAN void __tsan_func_entry(void*) {}
EMU_TSAN void __tsan_func_exit() {}
EMU_TSAN void __tsan_vptr_update(void**, void*) {}
EMU_TSAN void __tsan_vptr_read(void**) {}

#define EMU_PLAIN(N)                                                                                     \
    EMU_TSAN void __tsan_read##N(void* p) { on_access(p, N, 0, true, EMU_PC); }                          \
    EMU_TSAN void __tsan_write##N(void* p) { on_access(p, N, kWrite, false, EMU_PC); }                   \
    EMU_TSAN void __tsan_volatile_read##N(void* p) { on_access(p, N, 0, true, EMU_PC); }                 \
    EMU_TSAN void __tsan_volatile_write##N(void* p) { on_access(p, N, kWrite, false, EMU_PC); }
EMU_PLAIN(1)
EMU_PLAIN(2)
EMU_PLAIN(4)
EMU_PLAIN(8)
EMU_PLAIN(16)
#define EMU_UNALIGNED(N)                                                                                 \
    EMU_TSAN void __tsan_unaligned_read##N(void* p) { on_access(p, N, 0, true, EMU_PC); }                \
    EMU_TSAN void __tsan_unaligned_write##N(void* p) { on_access(p, N, kWrite, false, EMU_PC); }
EMU_UNALIGNED(2)
EMU_UNALIGNED(4)
EMU_UNALIGNED(8)
EMU_UNALIGNED(16)
EMU_TSAN void __tsan_read_range(void* p, unsigned long n) { on_access(p, n, 0, true, EMU_PC); }
EMU_TSAN void __tsan_write_range(void* p, unsigned long n) { on_access(p, n, kWrite, false, EMU_PC); }

// Atomics: the operation itself (the driver is not instrumented), recorded as an atomic access.
#define EMU_ATOMIC(N, T)                                                                                 \
    EMU_TSAN T __tsan_atomic##N##_load(const volatile T* a, int) {                                       \
        on_access((const void*)a, sizeof(T), kAtomic, true, EMU_PC);                                     \
        return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                     \
    }                                                                                                    \
    EMU_TSAN void __tsan_atomic##N##_store(volatile T* a, T v, int) {                                    \
        on_access((const void*)a, sizeof(T), kAtomic | kWrite, false, EMU_PC);                           \
        __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                        \
    }                                                                                                    \
    EMU_TSAN T __tsan_atomic##N##_exchange(volatile T* a, T v, int) {                                    \
        on_access((const void*)a, sizeof(T), kAtomic | kWrite, true, EMU_PC);                            \
        return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                              \
    }                                                                                                    \
    EMU_TSAN T __tsan_atomic##N##_fetch_add(volatile T* a, T v, int) {                                   \
        on_access((const void*)a, sizeof(T), kAtomic | kWrite, true, EMU_PC);                            \
        return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                               \
    }                                                                                                    \
    EMU_TSAN T __tsan_atomic##N##_fetch_sub(volatile T* a, T v, int) {                                   \
        on_access((const void*)a, sizeof(T), kAtomic | kWrite, true, EMU_PC);                            \
        return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                               \
    }                                                                                                    \
    EMU_TSAN T __tsan_atomic##N##_fetch_and(volatile T* a, T v, int) {                                   \
        on_access((const void*)a, sizeof(T), kAtomic | kWrite, true, EMU_PC);                            \
        return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                               \
    }                                                                                                    \
    EMU_TSAN T __tsan_atomic##N##_fetch_or(volatile T* a, T v, int) {                                    \
        on_access((const void*)a, sizeof(T), kAtomic | kWrite, true, EMU_PC);                            \
        return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                                \
    }                                                                                                    \
    EMU_TSAN T __tsan_atomic##N##_fetch_xor(volatile T* a, T v, int) {                                   \
        on_access((const void*)a, sizeof(T), kAtomic | kWrite, true, EMU_PC);                            \
        return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                               \
    }                                                                                                    \
    EMU_TSAN T __tsan_atomic##N##_fetch_nand(volatile T* a, T v, int) {                                  \
        on_access((const void*)a, sizeof(T), kAtomic | kWrite, true, EMU_PC);                            \
        return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST);                                              \
    }                                                                                                    \
    EMU_TSAN bool __tsan_atomic##N##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {       \
        on_access((const void*)a, sizeof(T), kAtomic | kWrite, true, EMU_PC);                            \
        return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);          \
    }                                                                                                    \
    EMU_TSAN bool __tsan_atomic##N##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {         \
        on_access((const void*)a, sizeof(T), kAtomic | kWrite, true, EMU_PC);                            \
        return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);          \
    }                                                                                                    \
    EMU_TSAN T __tsan_atomic##N##_compare_exchange_val(volatile T* a, T c, T v, int, int) {              \
        on_access((const void*)a, sizeof(T), kAtomic | kWrite, true, EMU_PC);                            \
        __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                \
        return c;                                                                                        \
    }
EMU_ATOMIC(8, uint8_t)
EMU_ATOMIC(16, uint16_t)
EMU_ATOMIC(32, uint32_t)
EMU_ATOMIC(64, uint64_t)
EMU_TSAN void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
EMU_TSAN void __tsan_atomic_signal_fence(int) {}

#endif  // EMU_RACECHECK
