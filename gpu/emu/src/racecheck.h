// The race checker of the emulated device (the `racecheck` build of gpu/emu): what the executor
// tells it. In other builds every hook is an empty inline function.
//
// The kernels of a racecheck build are compiled with -fsanitize=thread, which makes the compiler
// call __tsan_read4, __tsan_write8, __tsan_atomic32_fetch_add, ... around each memory access of
// the kernels' code; the driver defines those functions itself (racecheck.cpp) instead of linking
// ThreadSanitizer's runtime, as the Linux kernel's KCSAN does. So the checker sees every load,
// store and atomic of the kernels, and knows what ThreadSanitizer cannot: which thread of which
// block made it, and which barrier interval and warp-synchronous calls separate two accesses.
//
// Two accesses to the same bytes of shared or device memory, at least one a write and not both
// atomic, race when they are made by different threads of one launch and nothing orders them:
//   - threads of different blocks (device memory): nothing in a launch orders blocks;
//   - threads of one block: no __syncthreads between them;
//   - threads of one warp: no __syncthreads, and no warp-synchronous call (__syncwarp, a shuffle,
//     a vote, a match) that both took part in after the first access; since Volta a warp's lanes
//     do not run in lockstep.
// And a thread that reads shared memory no thread of its block has written reads garbage.
// The first such access fails the launch (CUDA_ERROR_LAUNCH_FAILED) with both accesses' threads
// and source lines. Blocks run one at a time on one worker, so what is found does not depend on
// timing (the thread order still can change which of two accesses comes first).
#pragma once

#include <cstddef>

namespace emu {
namespace race {

#if defined(EMU_RACECHECK)
constexpr bool kEnabled = true;
// A launch starts with these block and grid dimensions; its blocks' generations are
// at least `first_generation`.
void begin_launch(unsigned long long first_generation, const unsigned block[3],
                  const unsigned grid[3]);
// A block starts on the (only) worker: its generation, linear index and thread count.
void begin_block(unsigned long long generation, unsigned long long linear, unsigned threads);
// Every thread of the block passed a __syncthreads.
void barrier();
// A warp-synchronous call of warp `warp` completed for the lanes in `members`.
void warp_completed(unsigned warp, unsigned members);
// Thread `t` (linear index in its block) runs now on the stack [stack, stack + stack_size) (its
// own memory, never checked); -1: none (the executor's own code).
void set_thread(int t, const void* stack = nullptr, size_t stack_size = 0);
// The block's dynamic shared memory.
void set_dynamic_shared(const void* p, size_t bytes);
// A static __shared__ array of the kernel (cuEmuStaticShared): storage fixed per worker.
void static_shared(const void* p, size_t bytes);
#else
constexpr bool kEnabled = false;
inline void begin_launch(unsigned long long, const unsigned[3], const unsigned[3]) {}
inline void begin_block(unsigned long long, unsigned long long, unsigned) {}
inline void barrier() {}
inline void warp_completed(unsigned, unsigned) {}
inline void set_thread(int, const void* = nullptr, size_t = 0) {}
inline void set_dynamic_shared(const void*, size_t) {}
inline void static_shared(const void*, size_t) {}
#endif

}  // namespace race
}  // namespace emu
