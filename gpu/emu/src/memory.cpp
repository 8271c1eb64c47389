// Device memory of the emulated device: host memory with guard pages, filled with garbage, every
// live allocation tracked (pointer arguments and copies are checked against them), and the
// transfer and allocation counters tests read.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "emu.h"

namespace emu {

namespace {
std::atomic<uint64_t> g_fill_seed{0x9e3779b97f4a7c15ull};

size_t page_size() {
    static const size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}
}  // namespace

void fill_garbage(void* p, size_t len) {
    uint64_t x = g_fill_seed.fetch_add(0x9e3779b97f4a7c15ull) | 1;
    unsigned char* b = static_cast<unsigned char*>(p);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::memcpy(b + i, &x, 8);
    }
    for (; i < len; i++) b[i] = (unsigned char)(x >> (8 * (i & 7)));
}

void* guarded_map(size_t len, void** map, size_t* map_len) {
#if defined(__SANITIZE_ADDRESS__)
    void* p = std::malloc(len == 0 ? 1 : len);
    *map = p;
    *map_len = len;
    return p;
#else
    const size_t pg = page_size();
    size_t rounded = (len + 15) & ~size_t(15);
    size_t data_pages = (rounded + pg - 1) / pg;
    if (data_pages == 0) data_pages = 1;
    size_t total = (data_pages + 2) * pg;
    void* m = mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    char* data_start = static_cast<char*>(m) + pg;
    if (mprotect(data_start, data_pages * pg, PROT_READ | PROT_WRITE) != 0) {
        munmap(m, total);
        return nullptr;
    }
    *map = m;
    *map_len = total;
    // The data ends where the upper guard page begins (to a 16-byte granule).
    return data_start + data_pages * pg - rounded;
#endif
}

void guarded_unmap(void* map, size_t map_len) {
#if defined(__SANITIZE_ADDRESS__)
    (void)map_len;
    std::free(map);
#else
    munmap(map, map_len);
#endif
}

unsigned long long total_memory() {
    static const unsigned long long total = [] {
        if (const char* e = std::getenv("CUDA_EMU_MEMORY")) {
            unsigned long long v = std::strtoull(e, nullptr, 10);
            if (v > 0) return v;
        }
        return 80ull << 30;
    }();
    return total;
}

Result Memory::alloc(int device, size_t size, uintptr_t* out) {
    {
        std::lock_guard<std::mutex> g(mu_);
        if (in_use_ + local_ + size > total_memory()) {
            return fail(ERROR_OUT_OF_MEMORY,
                        "allocating " + std::to_string(size) + " bytes: " +
                            std::to_string(in_use_ + local_) + " of the device's " +
                            std::to_string(total_memory()) + " bytes are in use (" +
                            std::to_string(local_) + " of them the threads' local memory)");
        }
    }
    void* map = nullptr;
    size_t map_len = 0;
    void* p = guarded_map(size, &map, &map_len);
    if (p == nullptr) {
        return fail(ERROR_OUT_OF_MEMORY,
                    "allocating " + std::to_string(size) + " bytes: the host has no memory left");
    }
    fill_garbage(p, size);
    std::lock_guard<std::mutex> g(mu_);
    Allocation a{reinterpret_cast<uintptr_t>(p), size, map, map_len, ++serial_, device};
    live_[a.base] = a;
    in_use_ += size;
    if (in_use_ > peak_) peak_ = in_use_;
    counters().allocations++;
    *out = a.base;
    return SUCCESS;
}

Result Memory::free(uintptr_t p, int device) {
    if (p == 0) return SUCCESS;
    Allocation a;
    {
        std::lock_guard<std::mutex> g(mu_);
        auto it = live_.find(p);
        if (it == live_.end()) {
            return fail(ERROR_INVALID_VALUE, "freeing " + describe_locked_free(p));
        }
        if (it->second.device != device) {
            return fail(ERROR_INVALID_VALUE,
                        "freeing allocation #" + std::to_string(it->second.serial) + " of device " +
                            std::to_string(it->second.device) + " with device " +
                            std::to_string(device) +
                            "'s context current: the free would not be ordered with the work of "
                            "the device that owns it");
        }
        a = it->second;
        in_use_ -= a.size;
        live_.erase(it);
    }
    guarded_unmap(a.map, a.map_len);
    return SUCCESS;
}

std::string Memory::describe_locked_free(uintptr_t p) const {
    char buf[64];
    std::snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)p);
    return std::string(buf) + ", which is not the start of a live device allocation";
}

bool Memory::contains(uintptr_t p, size_t len, std::string* why) const {
    std::lock_guard<std::mutex> g(mu_);
    auto it = live_.upper_bound(p);
    if (it != live_.begin()) {
        --it;
        const Allocation& a = it->second;
        if (p >= a.base && p - a.base <= a.size && len <= a.size - (p - a.base)) {
            if (len > 0 || p < a.base + a.size || a.size == 0) return true;
        }
    }
    if (why) *why = describe_unlocked(p, len);
    return false;
}

std::vector<Allocation> Memory::snapshot() const {
    std::lock_guard<std::mutex> g(mu_);
    std::vector<Allocation> v;
    v.reserve(live_.size());
    for (const auto& kv : live_) v.push_back(kv.second);
    return v;
}

std::string Memory::describe(uintptr_t p) const {
    std::lock_guard<std::mutex> g(mu_);
    return describe_unlocked(p, 1);
}

std::string Memory::describe_unlocked(uintptr_t p, size_t len) const {
    char buf[256];
    auto it = live_.upper_bound(p);
    const Allocation* below = nullptr;
    const Allocation* above = it == live_.end() ? nullptr : &it->second;
    if (it != live_.begin()) below = &std::prev(it)->second;
    const bool starts_inside = below && p >= below->base && p - below->base < below->size;
    if (starts_inside && len <= below->size - (p - below->base)) {
        std::snprintf(buf, sizeof buf, "0x%llx is at offset %zu of allocation #%llu (0x%llx, %zu bytes)",
                      (unsigned long long)p, (size_t)(p - below->base),
                      (unsigned long long)below->serial, (unsigned long long)below->base,
                      below->size);
    } else if (starts_inside) {
        std::snprintf(buf, sizeof buf,
                      "[0x%llx, +%zu) runs %zu bytes past the end of allocation #%llu (0x%llx, "
                      "%zu bytes)",
                      (unsigned long long)p, len, (size_t)(p + len - below->base - below->size),
                      (unsigned long long)below->serial, (unsigned long long)below->base,
                      below->size);
    } else if (below && p >= below->base + below->size && p - (below->base + below->size) < 65536) {
        std::snprintf(buf, sizeof buf,
                      "0x%llx is at offset %zu, past the end of allocation #%llu (0x%llx, %zu bytes)",
                      (unsigned long long)p, (size_t)(p - below->base),
                      (unsigned long long)below->serial, (unsigned long long)below->base,
                      below->size);
    } else if (above && above->base - p < 65536) {
        std::snprintf(buf, sizeof buf,
                      "0x%llx is %zu bytes before the start of allocation #%llu (0x%llx, %zu "
                      "bytes)",
                      (unsigned long long)p, (size_t)(above->base - p),
                      (unsigned long long)above->serial, (unsigned long long)above->base,
                      above->size);
    } else {
        std::snprintf(buf, sizeof buf, "0x%llx is not in any live device allocation (%zu live)",
                      (unsigned long long)p, live_.size());
    }
    return buf;
}

void Memory::release_device(int device) {
    std::vector<Allocation> gone;
    {
        std::lock_guard<std::mutex> g(mu_);
        for (auto it = live_.begin(); it != live_.end();) {
            if (it->second.device == device) {
                in_use_ -= it->second.size;
                gone.push_back(it->second);
                it = live_.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto& a : gone) guarded_unmap(a.map, a.map_len);
}

size_t Memory::in_use() const {
    std::lock_guard<std::mutex> g(mu_);
    return in_use_;
}
Result Memory::reserve_local(size_t bytes) {
    std::lock_guard<std::mutex> g(mu_);
    if (in_use_ + local_ + bytes > total_memory()) {
        return fail(ERROR_OUT_OF_MEMORY,
                    "reserving " + std::to_string(bytes) + " bytes of local memory: " +
                        std::to_string(in_use_ + local_) + " of the device's " +
                        std::to_string(total_memory()) + " bytes are in use");
    }
    local_ += bytes;
    return SUCCESS;
}
void Memory::release_local(size_t bytes) {
    std::lock_guard<std::mutex> g(mu_);
    local_ -= std::min(local_, bytes);
}
size_t Memory::free_bytes() const {
    std::lock_guard<std::mutex> g(mu_);
    return total_memory() - in_use_ - local_;
}
size_t Memory::local_reserved() const {
    std::lock_guard<std::mutex> g(mu_);
    return local_;
}
size_t Memory::peak() const {
    std::lock_guard<std::mutex> g(mu_);
    return peak_;
}
void Memory::reset_peak() {
    std::lock_guard<std::mutex> g(mu_);
    peak_ = in_use_;
}
uint64_t Memory::count() const {
    std::lock_guard<std::mutex> g(mu_);
    return live_.size();
}

Memory& memory() {
    static Memory* m = new Memory();  // never destroyed: used until process exit
    return *m;
}

Counters& counters() {
    static Counters* c = new Counters();
    return *c;
}

// Registers are allocated per warp in units of 256, each warp's from one of the SM's four
// sub-partitions (16,384 registers each); the hardware's per-block check assumes a block's warps
// rounded up to a multiple of four (NVIDIA's occupancy calculator, cuda_occupancy.h).
static unsigned long long warp_registers(unsigned regs_per_thread) {
    return ((unsigned long long)regs_per_thread * kWarpSize + 255) / 256 * 256;
}

unsigned long long block_registers(unsigned regs_per_thread, unsigned threads) {
    unsigned long long warps = (threads + kWarpSize - 1) / kWarpSize;
    return (warps + kSubPartitions - 1) / kSubPartitions * kSubPartitions * warp_registers(regs_per_thread);
}

unsigned warps_by_registers(unsigned regs_per_thread) {
    unsigned long long per_warp = warp_registers(regs_per_thread);
    if (per_warp == 0) return kMaxThreadsPerSm / kWarpSize;
    unsigned long long w = kSubPartitions * (kRegistersPerSm / kSubPartitions / per_warp);
    return (unsigned)std::min<unsigned long long>(w, kMaxThreadsPerSm / kWarpSize);
}

}  // namespace emu
