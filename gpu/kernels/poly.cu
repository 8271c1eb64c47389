// Kernels over backend-resident vectors (gpu/src/program.rs, CudaBackend's Poly operations).
//   poly_eval          evaluates a compiled row-wise Program: one thread per row (grid-stride),
//                      its live intermediates in a per-thread slot array, the outputs folded into
//                      acc[i] with Horner's rule (acc = acc·y + out);
//   poly_from_mont     out[i] = in[i] out of Montgomery form (canonical limbs: MSM scalars).
// Values are Fr in Montgomery form, 8 little-endian u32 limbs (halo2curves' raw layout).
// STATUS: compiled by NVRTC (tests/nvrtc_compile.rs), run on the emulated device; not yet run on
// a GPU.
#include "field.cuh"

// Must equal gpu/src/program.rs MAX_SLOTS.
#define POLY_MAX_SLOTS 64

// Instruction kinds (gpu/src/program.rs InstrKind).
#define POLY_ADD 0u
#define POLY_SUB 1u
#define POLY_MUL 2u
#define POLY_NEG 3u
#define POLY_FOLD 4u

// Operand tags (top two bits; gpu/src/program.rs Operand::encode).
#define POLY_TAG_SLOT 0u
#define POLY_TAG_QUERY 1u
#define POLY_TAG_CONST 2u

typedef unsigned long long u64;

static __device__ __forceinline__ fr_t poly_operand(u32 enc, const fr_t* slots, const u64* inputs,
                                                    const u32* q_input, const u32* q_shift,
                                                    const u32* consts, u32 row, u32 mask) {
    u32 tag = enc >> 30;
    u32 idx = enc & 0x3fffffffu;
    if (tag == POLY_TAG_SLOT) return slots[idx];
    if (tag == POLY_TAG_QUERY) {
        const u32* col = (const u32*)inputs[q_input[idx]];
        return fr_t::load(col + 8u * ((row + q_shift[idx]) & mask));
    }
    return fr_t::load(consts + 8u * idx);
}

// code: 4 words per instruction (kind, dst, a, b); inputs: device pointers of the input vectors;
// q_input / q_shift: per query, its input and its row offset (rotation · ratio mod size);
// size: a power of two, the length of every input and of acc.
extern "C" __global__ void poly_eval(const u32* code, u32 n_instr, const u32* consts,
                                     const u64* inputs, const u32* q_input, const u32* q_shift,
                                     u32 size, u32* acc, const u32* y_limbs) {
    fr_t slots[POLY_MAX_SLOTS];
    fr_t y = fr_t::load(y_limbs);
    u32 mask = size - 1u;
    for (u32 row = blockIdx.x * blockDim.x + threadIdx.x; row < size;
         row += gridDim.x * blockDim.x) {
        fr_t a = fr_t::load(acc + 8u * row);
        for (u32 k = 0; k < n_instr; k++) {
            const u32* ins = code + 4u * k;
            fr_t x = poly_operand(ins[2], slots, inputs, q_input, q_shift, consts, row, mask);
            switch (ins[0]) {
                case POLY_ADD:
                    slots[ins[1]] = fr_t::add(
                        x, poly_operand(ins[3], slots, inputs, q_input, q_shift, consts, row, mask));
                    break;
                case POLY_SUB:
                    slots[ins[1]] = fr_t::sub(
                        x, poly_operand(ins[3], slots, inputs, q_input, q_shift, consts, row, mask));
                    break;
                case POLY_MUL:
                    slots[ins[1]] = fr_t::mul(
                        x, poly_operand(ins[3], slots, inputs, q_input, q_shift, consts, row, mask));
                    break;
                case POLY_NEG:
                    slots[ins[1]] = fr_t::neg(x);
                    break;
                default:  // POLY_FOLD
                    a = fr_t::add(fr_t::mul(a, y), x);
                    break;
            }
        }
        a.store(acc + 8u * row);
    }
}

extern "C" __global__ void poly_from_mont(const u32* in, u32* out, u32 n) {
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        fr_t::from_montgomery(fr_t::load(in + 8u * i)).store(out + 8u * i);
    }
}
