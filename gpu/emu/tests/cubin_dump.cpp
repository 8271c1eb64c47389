// cubin_dump: prints what emu::parse_cubin reads from CUBIN files, one line per kernel:
//
//   name regs=N shared=N local=N max_threads=N param_bytes=N params=off:size,off:size,...
//
// (params in ordinal order). With -a, each file's kernels are preceded by "# FILE sm_NN". A file
// that does not parse prints "FILE: <error>" on stderr and makes the exit status 1; the remaining
// files are still dumped.
//
// Build (from the repository root; add -fsanitize=address,undefined -g to check hostile input):
//   g++ -std=c++17 -O1 -Wall -Wextra -o /tmp/cubin_dump
//       gpu/emu/tests/cubin_dump.cpp gpu/emu/src/cubin.cpp
// Make a CUBIN to feed it with NVRTC (nvrtcGetCUBIN after compiling with
// --gpu-architecture=sm_90 -std=c++17 -I gpu/kernels).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../src/cubin.h"

namespace {

bool read_file(const char* path, std::vector<char>* out, std::string* error) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        *error = std::string("cannot open: ") + std::strerror(errno);
        return false;
    }
    out->assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    if (f.bad()) {
        *error = "read error";
        return false;
    }
    return true;
}

void print_kernel(const emu::CubinKernel& k) {
    std::string params;
    for (const emu::CubinParam& p : k.params) {
        if (!params.empty()) params += ',';
        params += std::to_string(p.offset) + ':' + std::to_string(p.size);
    }
    std::printf("%s regs=%u shared=%u local=%u max_threads=%u param_bytes=%u params=%s\n",
                k.name.c_str(), k.num_regs, k.static_shared, k.local_bytes, k.max_threads,
                k.param_bytes, params.c_str());
}

}  // namespace

int main(int argc, char** argv) {
    bool show_arch = false;
    int first = 1;
    if (argc > 1 && std::strcmp(argv[1], "-a") == 0) {
        show_arch = true;
        first = 2;
    }
    if (first >= argc) {
        std::fprintf(stderr, "usage: %s [-a] CUBIN...\n", argv[0]);
        return 2;
    }
    int status = 0;
    for (int i = first; i < argc; i++) {
        std::vector<char> image;
        std::string error;
        emu::CubinInfo info;
        if (!read_file(argv[i], &image, &error) ||
            !emu::parse_cubin(image.data(), image.size(), &info, &error)) {
            std::fprintf(stderr, "%s: %s\n", argv[i], error.c_str());
            status = 1;
            continue;
        }
        if (show_arch) std::printf("# %s sm_%u\n", argv[i], info.sm_arch);
        for (const emu::CubinKernel& k : info.kernels) print_kernel(k);
    }
    return status;
}
