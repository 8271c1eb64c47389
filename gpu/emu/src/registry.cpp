// The kernel table of one kernel library (linked into every libcuda_emu_kernels*.so): each
// EMU_KERNEL registration adds itself at load time; the driver reads the table by name.
#include <vector>

#include "../include/cuda_emu_abi.h"

static std::vector<const EmuKernelEntry*>& registry() {
    static std::vector<const EmuKernelEntry*> r;
    return r;
}

extern "C" void emu_kernel_registry_add(const EmuKernelEntry* entry) { registry().push_back(entry); }

extern "C" __attribute__((visibility("default"))) const EmuKernelEntry* const* emu_kernel_table(size_t* n) {
    *n = registry().size();
    return registry().data();
}
