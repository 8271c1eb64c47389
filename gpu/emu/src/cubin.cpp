// Parser for NVIDIA CUBIN (ELF) images; see cubin.h.
//
// Format facts, established by dumping CUBINs that NVRTC 12.6 builds (sm_70 .. sm_90a, -std=c++17)
// and cross-checking them against `--ptxas-options=-v` and the kernels' C signatures:
//
// ELF header: ELF64, little endian, e_machine 190 (EM_CUDA), e_type ET_EXEC (2), section and
//   program header tables after the contents (both are checked, which catches truncation).
//   -rdc=true gives ET_REL, whose shared memory is only settled by linking: refused here.
//   e_ident[EI_OSABI] = 0x33 and e_ident[EI_ABIVERSION] = 7; e_version holds the CUDA version
//   (0x7e = 12.6), not 1: reported as cuda_version (the loader compares it with the driver's).
// e_flags: ABI version 7 keeps the SM in the low byte (sm_90: 0x5a055a, sm_80: 0x500550; bits
//   16..23 repeat the virtual arch, 0x100 / 0x400 are texture-mode / 64-bit flags, 0x800 marks
//   sm_90a). ABI version 8 (newer toolkits, not produced by 12.6) moves the SM to bits 8..15, as
//   in LLVM's ELF.h (EF_CUDA_SM_MASK); that layout is taken from there, not verified here.
// Kernels: STT_FUNC symbols with STO_CUDA_ENTRY (0x10) in st_other; code in .text.<name>, whose
//   sh_info is <registers> << 24 | <symbol index> on sm_70 .. sm_89, but only the symbol index on
//   sm_90 (the high byte is 0). Non-entry (__noinline__) functions are local STT_FUNC symbols
//   without the flag.
// Shared memory: .nv.shared.<name> (SHT_NOBITS), absent when the kernel has none on sm_70 .. sm_89.
//   On sm_90 / sm_90a every kernel's section also holds a 1 KiB region the driver reserves (sizes
//   1024 + the `ptxas -v` smem figure: 1024 for no __shared__, 3072 for `__shared__ u32 sh[512]`);
//   the marker symbols nvcc names .nv.reservedSmem.* are blanked out of NVRTC's images. Since the
//   driver reports (and limits) the application's share, static_shared subtracts that 1 KiB for
//   sm >= 90. `extern __shared__` arrays take no room in the section.
// .nv.info (global, sh_info 0) and .nv.info.<name> (SHT_LOPROC 0x70000000, sh_info = index of
//   .text.<name>, sh_link = .symtab): a packed sequence of records on a 4-byte grid,
//     u8 format, u8 attribute, then
//     EIFMT_NVAL (1): 2 unused bytes;  EIFMT_BVAL (2): u8 value, 1 pad;  EIFMT_HVAL (3): u16;
//     EIFMT_SVAL (4): u16 length, then `length` bytes (always a multiple of 4 in practice).
//   Global records used here (all SVAL, 8 bytes: u32 symbol index, u32 value):
//     0x2f EIATTR_REGCOUNT, 0x11 EIATTR_FRAME_SIZE, 0x12 EIATTR_MIN_STACK_SIZE
//     (`ptxas -v` "stack frame" and "cumulative stack size"; equal for every kernel seen).
//   Per-kernel records used here:
//     0x17 EIATTR_KPARAM_INFO (SVAL 12): u32 index (0), u16 ordinal, u16 offset,
//          u32 flags whose bits 18..31 are the size in bytes (bits 12..16 hold 0x1f, the cbank).
//          Emitted in descending ordinal order, one per parameter, used or not.
//     0x45 EIATTR_KPARAM_INFO_V2 (SVAL 12): same, but the last word is the plain size. Used instead
//          of 0x17 for large parameter blocks (seen for 16008..32032 bytes; 1224 bytes still use
//          0x17), i.e. the CUDA 12.1+ limit of 32764 bytes.
//     0x19 EIATTR_CBANK_PARAM_SIZE (HVAL): parameter block size.
//     0x0a EIATTR_PARAM_CBANK (SVAL 8): u32 symbol (.nv.constant0.<name>), u16 offset of the block
//          in constant bank 0 (0x210 on sm_90, 0x160 on sm_80), u16 block size.
//     0x05 EIATTR_MAX_THREADS (SVAL 12): u32 x, y, z from __launch_bounds__ (128 -> 128, 1, 1).
//     0x10 EIATTR_REQNTID (SVAL 12): required block size (PTX .reqntid); not produced by the
//          samples, read as a fallback bound with the same layout.
//   Others seen and ignored: 0x1b MAXREG_COUNT (HVAL), 0x1c EXIT_INSTR_OFFSETS, 0x1e
//   CRS_STACK_SIZE, 0x23 MAX_STACK_SIZE, 0x35 (NVAL), 0x36 SW_WAR, 0x37 CUDA_API_VERSION,
//   0x3d CTA_PER_CLUSTER, 0x3e EXPLICIT_CLUSTER (NVAL), 0x3f MAX_CLUSTER_RANK, 0x50 (HVAL).
#include "cubin.h"

#include <algorithm>
#include <map>
#include <new>
#include <unordered_map>
#include <unordered_set>

namespace emu {

namespace {

// ---- ELF ----------------------------------------------------------------------------------------
constexpr size_t kEhdrSize = 64;
constexpr size_t kShdrSize = 64;
constexpr size_t kPhdrSize = 56;
constexpr size_t kSymSize = 24;
constexpr uint8_t kElfClass64 = 2;
constexpr uint8_t kElfData2Lsb = 1;
constexpr size_t kEiAbiVersion = 8;
constexpr uint16_t kEtRel = 1;
constexpr uint16_t kEtExec = 2;
constexpr uint16_t kEmCuda = 190;
constexpr uint32_t kShtSymtab = 2;
constexpr uint32_t kShtNobits = 8;
constexpr uint32_t kShtCudaInfo = 0x70000000;  // SHT_LOPROC: .nv.info*
constexpr uint16_t kShnLoreserve = 0xff00;
constexpr uint8_t kSttFunc = 2;
constexpr uint8_t kStoCudaEntry = 0x10;

// ---- .nv.info -----------------------------------------------------------------------------------
constexpr uint8_t kFmtNval = 1;
constexpr uint8_t kFmtBval = 2;
constexpr uint8_t kFmtHval = 3;
constexpr uint8_t kFmtSval = 4;

constexpr uint8_t kAttrMaxThreads = 0x05;
constexpr uint8_t kAttrParamCbank = 0x0a;
constexpr uint8_t kAttrReqntid = 0x10;
constexpr uint8_t kAttrFrameSize = 0x11;
constexpr uint8_t kAttrMinStackSize = 0x12;
constexpr uint8_t kAttrKparamInfo = 0x17;
constexpr uint8_t kAttrCbankParamSize = 0x19;
constexpr uint8_t kAttrRegcount = 0x2f;
constexpr uint8_t kAttrKparamInfoV2 = 0x45;

// Shared memory the driver reserves per block, included in .nv.shared.<name> from sm_90 on.
constexpr uint32_t kReservedSharedSm90 = 1024;

uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) {
    return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
uint64_t rd64(const uint8_t* p) { return uint64_t(rd32(p)) | (uint64_t(rd32(p + 4)) << 32); }

std::string hex(uint64_t v) {
    static const char digits[] = "0123456789abcdef";
    std::string s;
    do {
        s.insert(s.begin(), digits[v & 15]);
        v >>= 4;
    } while (v != 0);
    return "0x" + s;
}

// Keeps an error message to one readable line: names taken from a hostile image may hold control
// characters or be very long.
std::string one_line(std::string s) {
    constexpr size_t kMax = 240;
    if (s.size() > kMax) s = s.substr(0, kMax) + "...";
    for (char& c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return s;
}

struct Section {
    std::string name;
    uint32_t type = 0;
    uint64_t offset = 0;
    uint64_t size = 0;
    uint32_t link = 0;
    uint32_t info = 0;
    uint64_t entsize = 0;
};

// One .nv.info record. For SVAL, `value` is the payload of `len` bytes; otherwise it points at
// the two bytes after the attribute (BVAL: value[0], HVAL: rd16(value)).
struct Record {
    uint8_t fmt;
    uint8_t attr;
    const uint8_t* value;
    size_t len;
    size_t pos;  // offset inside the section, for messages
};

// Attributes the global .nv.info holds about one function symbol.
struct SymbolAttrs {
    bool has_regs = false;
    uint32_t regs = 0;
    uint32_t frame = 0;
    uint32_t min_stack = 0;
};

class Parser {
  public:
    Parser(const uint8_t* data, size_t size) : data_(data), size_(size) {}

    bool run(CubinInfo* out);
    const std::string& error() const { return error_; }

  private:
    bool fail(const std::string& why) {
        error_ = why;
        return false;
    }
    bool in_file(uint64_t off, uint64_t len) const { return off <= size_ && len <= size_ - off; }
    const uint8_t* content(const Section& s) const { return data_ + s.offset; }

    bool read_header();
    bool read_sections();
    bool string_at(const Section& table, uint64_t off, std::string* s, const char* what);
    const Section* find(const std::string& name) const;
    bool records(const Section& s, std::vector<Record>* out);
    bool read_global_info();
    bool read_kernel_info(const Section& s, CubinKernel* k);
    bool read_kernels(CubinInfo* out);

    const uint8_t* data_;
    size_t size_;
    std::string error_;
    uint16_t type_ = 0;
    uint32_t sm_ = 0;
    uint32_t cuda_version_ = 0;
    uint64_t shoff_ = 0;
    uint16_t shnum_ = 0;
    uint16_t shstrndx_ = 0;
    uint64_t string_bytes_ = 0;  // total length of the names read so far
    std::vector<Section> sections_;
    std::map<std::string, size_t> by_name_;  // first section of each name
    std::unordered_map<uint32_t, SymbolAttrs> symbol_attrs_;
};

bool Parser::read_header() {
    if (size_ < 4 || !looks_like_elf(data_, size_)) return fail("not an ELF image (bad magic)");
    if (size_ < kEhdrSize)
        return fail("truncated ELF header (" + std::to_string(size_) + " bytes)");
    if (data_[4] != kElfClass64) return fail("not an ELF64 image");
    if (data_[5] != kElfData2Lsb) return fail("not a little-endian ELF image");
    type_ = rd16(data_ + 0x10);
    uint16_t machine = rd16(data_ + 0x12);
    if (machine != kEmCuda)
        return fail("ELF machine " + std::to_string(machine) + " is not EM_CUDA (190)");
    if (type_ == kEtRel)
        return fail("relocatable CUBIN (-rdc): not a loadable module until linked");
    if (type_ != kEtExec) return fail("ELF type " + std::to_string(type_) + " is not ET_EXEC");

    cuda_version_ = rd32(data_ + 0x14);
    // SM version: low byte of e_flags up to ELF ABI version 7, bits 8..15 from version 8 on.
    uint32_t flags = rd32(data_ + 0x30);
    sm_ = data_[kEiAbiVersion] >= 8 ? (flags >> 8) & 0xff : flags & 0xff;
    if (sm_ == 0) return fail("e_flags " + hex(flags) + " names no SM version");

    shoff_ = rd64(data_ + 0x28);
    uint16_t shentsize = rd16(data_ + 0x3a);
    shnum_ = rd16(data_ + 0x3c);
    shstrndx_ = rd16(data_ + 0x3e);
    if (shnum_ == 0) return fail("no section headers (or extended numbering, unsupported)");
    if (shentsize != kShdrSize)
        return fail("section header size " + std::to_string(shentsize) + " is not 64");
    if (!in_file(shoff_, uint64_t(shnum_) * kShdrSize))
        return fail("section header table (" + std::to_string(shnum_) + " at " + hex(shoff_) +
                    ") runs past the end of the image");
    if (shstrndx_ >= shnum_) return fail("section name table index out of range");

    // Program headers (at the end of NVRTC's images, so this catches truncated tails): the table
    // and every segment's file contents must lie inside the image.
    uint64_t phoff = rd64(data_ + 0x20);
    uint16_t phentsize = rd16(data_ + 0x36);
    uint16_t phnum = rd16(data_ + 0x38);
    if (phnum != 0) {
        if (phentsize != kPhdrSize)
            return fail("program header size " + std::to_string(phentsize) + " is not 56");
        if (!in_file(phoff, uint64_t(phnum) * kPhdrSize))
            return fail("program header table (" + std::to_string(phnum) + " at " + hex(phoff) +
                        ") runs past the end of the image");
        for (size_t i = 0; i < phnum; i++) {
            const uint8_t* h = data_ + phoff + i * kPhdrSize;
            uint64_t offset = rd64(h + 8), filesz = rd64(h + 0x20);
            if (!in_file(offset, filesz))
                return fail("segment " + std::to_string(i) + " (" + hex(offset) + " + " +
                            hex(filesz) + ") runs past the end of the image");
        }
    }
    return true;
}

bool Parser::read_sections() {
    sections_.resize(shnum_);
    for (size_t i = 0; i < shnum_; i++) {
        const uint8_t* h = data_ + shoff_ + i * kShdrSize;
        Section& s = sections_[i];
        s.type = rd32(h + 4);
        s.offset = rd64(h + 0x18);
        s.size = rd64(h + 0x20);
        s.link = rd32(h + 0x28);
        s.info = rd32(h + 0x2c);
        s.entsize = rd64(h + 0x38);
        if (s.type != kShtNobits && !in_file(s.offset, s.size))
            return fail("section " + std::to_string(i) + " (" + hex(s.offset) + " + " +
                        hex(s.size) + ") runs past the end of the image");
    }
    const Section& names = sections_[shstrndx_];
    if (names.type == kShtNobits) return fail("section name table has no content");
    for (size_t i = 0; i < shnum_; i++) {
        uint32_t name_off = rd32(data_ + shoff_ + i * kShdrSize);
        if (!string_at(names, name_off, &sections_[i].name, "section name")) return false;
        by_name_.emplace(sections_[i].name, i);
    }
    return true;
}

// Reads the NUL-terminated string at `off` of string table `table`, which must end inside it.
bool Parser::string_at(const Section& table, uint64_t off, std::string* s, const char* what) {
    if (off >= table.size) return fail(std::string(what) + " offset " + hex(off) + " out of range");
    const uint8_t* begin = content(table) + off;
    const uint8_t* end = content(table) + table.size;
    const uint8_t* nul = std::find(begin, end, uint8_t(0));
    if (nul == end) return fail(std::string(what) + " at " + hex(off) + " is not terminated");
    // Real images store every name in full; overlapping names (every suffix of one long string)
    // could otherwise make the copies quadratic in the image size.
    string_bytes_ += uint64_t(nul - begin);
    if (string_bytes_ > 4 * uint64_t(size_) + 4096)
        return fail("names overlap implausibly (" + std::to_string(string_bytes_) +
                    " bytes of names in a " + std::to_string(size_) + "-byte image)");
    s->assign(reinterpret_cast<const char*>(begin), size_t(nul - begin));
    return true;
}

const Section* Parser::find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &sections_[it->second];
}

// Splits a .nv.info section into its records.
bool Parser::records(const Section& s, std::vector<Record>* out) {
    const uint8_t* p = content(s);
    size_t n = size_t(s.size);
    size_t pos = 0;
    while (pos < n) {
        if (n - pos < 4)
            return fail(s.name + ": truncated record at offset " + hex(pos));
        Record r{p[pos], p[pos + 1], p + pos + 2, 2, pos};
        switch (r.fmt) {
            case kFmtNval:
            case kFmtBval:
            case kFmtHval:
                pos += 4;
                break;
            case kFmtSval:
                r.len = rd16(p + pos + 2);
                r.value = p + pos + 4;
                if (n - pos - 4 < r.len)
                    return fail(s.name + ": record " + hex(r.attr) + " at offset " + hex(pos) +
                                " (" + std::to_string(r.len) + " bytes) overruns the section");
                pos += 4 + r.len;
                break;
            default:
                return fail(s.name + ": unknown record format " + std::to_string(r.fmt) +
                            " at offset " + hex(pos));
        }
        out->push_back(r);
    }
    return true;
}

// The global .nv.info: registers and stack sizes, keyed by function symbol index.
bool Parser::read_global_info() {
    const Section* s = find(".nv.info");
    if (s == nullptr) return true;
    if (s->type != kShtCudaInfo || s->info != 0) return fail(".nv.info: unexpected section type");
    std::vector<Record> recs;
    if (!records(*s, &recs)) return false;
    for (const Record& r : recs) {
        if (r.attr != kAttrRegcount && r.attr != kAttrFrameSize && r.attr != kAttrMinStackSize)
            continue;
        if (r.fmt != kFmtSval || r.len != 8)
            return fail(".nv.info: record " + hex(r.attr) + " at offset " + hex(r.pos) +
                        " is not a (symbol, value) pair");
        SymbolAttrs& a = symbol_attrs_[rd32(r.value)];
        uint32_t v = rd32(r.value + 4);
        if (r.attr == kAttrRegcount) {
            a.has_regs = true;
            a.regs = v;
        } else if (r.attr == kAttrFrameSize) {
            a.frame = v;
        } else {
            a.min_stack = v;
        }
    }
    return true;
}

// A .nv.info.<name> section: parameters, parameter block size, launch bounds.
bool Parser::read_kernel_info(const Section& s, CubinKernel* k) {
    std::vector<Record> recs;
    if (!records(s, &recs)) return false;
    bool has_cbank_size = false, has_param_cbank = false;
    uint32_t cbank_size = 0, param_cbank = 0, reqntid = 0;
    auto need = [&](const Record& r, uint8_t fmt, size_t len, const char* what) {
        if (r.fmt == fmt && (fmt != kFmtSval || r.len == len)) return true;
        return fail(s.name + ": " + what + " record at offset " + hex(r.pos) + " is malformed");
    };
    auto dims = [](const uint8_t* v) {
        return uint64_t(rd32(v)) * uint64_t(rd32(v + 4)) * uint64_t(rd32(v + 8));
    };
    for (const Record& r : recs) {
        switch (r.attr) {
            case kAttrKparamInfo:
            case kAttrKparamInfoV2: {
                if (!need(r, kFmtSval, 12, "EIATTR_KPARAM_INFO")) return false;
                uint32_t word = rd32(r.value + 8);
                uint32_t size = r.attr == kAttrKparamInfo ? word >> 18 : word;
                k->params.push_back({rd16(r.value + 4), rd16(r.value + 6), size});
                break;
            }
            case kAttrCbankParamSize:
                if (!need(r, kFmtHval, 0, "EIATTR_CBANK_PARAM_SIZE")) return false;
                has_cbank_size = true;
                cbank_size = rd16(r.value);
                break;
            case kAttrParamCbank:
                if (!need(r, kFmtSval, 8, "EIATTR_PARAM_CBANK")) return false;
                has_param_cbank = true;
                param_cbank = rd16(r.value + 6);
                break;
            case kAttrMaxThreads:
            case kAttrReqntid: {
                if (!need(r, kFmtSval, 12, "EIATTR_MAX_THREADS")) return false;
                uint64_t n = dims(r.value);
                if (n == 0 || n > UINT32_MAX)
                    return fail(s.name + ": block size bound at offset " + hex(r.pos) +
                                " is out of range");
                if (r.attr == kAttrMaxThreads) k->max_threads = uint32_t(n);
                else reqntid = uint32_t(n);
                break;
            }
            default:
                break;
        }
    }
    if (k->max_threads == 0) k->max_threads = reqntid;

    // Parameters: ordinals 0..n-1 exactly once, each inside the parameter block.
    std::sort(k->params.begin(), k->params.end(),
              [](const CubinParam& a, const CubinParam& b) { return a.ordinal < b.ordinal; });
    uint64_t end = 0;
    for (size_t i = 0; i < k->params.size(); i++) {
        const CubinParam& p = k->params[i];
        if (p.ordinal != i)
            return fail(s.name + ": parameter ordinals are not 0.." +
                        std::to_string(k->params.size() - 1) + " (duplicate or missing " +
                        std::to_string(i) + ")");
        end = std::max(end, uint64_t(p.offset) + p.size);
    }
    if (has_cbank_size && has_param_cbank && cbank_size != param_cbank)
        return fail(s.name + ": parameter block size " + std::to_string(cbank_size) +
                    " disagrees with EIATTR_PARAM_CBANK (" + std::to_string(param_cbank) + ")");
    k->param_bytes = has_cbank_size ? cbank_size : has_param_cbank ? param_cbank : uint32_t(end);
    if (end > k->param_bytes)
        return fail(s.name + ": parameters (up to byte " + std::to_string(end) +
                    ") overrun the parameter block (" + std::to_string(k->param_bytes) + ")");
    return true;
}

bool Parser::read_kernels(CubinInfo* out) {
    const Section* symtab = nullptr;
    for (const Section& s : sections_) {
        if (s.type == kShtSymtab) {
            symtab = &s;
            break;
        }
    }
    if (symtab == nullptr) return fail("no symbol table");
    if (symtab->entsize != kSymSize) return fail(".symtab entry size is not 24");
    if (symtab->link >= shnum_ || sections_[symtab->link].type == kShtNobits)
        return fail(".symtab: string table index out of range");
    const Section& strtab = sections_[symtab->link];

    size_t count = size_t(symtab->size / kSymSize);
    std::unordered_set<std::string> names;
    for (size_t i = 0; i < count; i++) {
        const uint8_t* sym = content(*symtab) + i * kSymSize;
        uint8_t info = sym[4];
        uint8_t other = sym[5];
        uint16_t shndx = rd16(sym + 6);
        if ((info & 0xf) != kSttFunc || (other & kStoCudaEntry) == 0) continue;

        CubinKernel k;
        if (!string_at(strtab, rd32(sym), &k.name, "symbol name")) return false;
        if (k.name.empty()) return fail("kernel symbol " + std::to_string(i) + " has no name");
        if (!names.insert(k.name).second) return fail("kernel " + k.name + " defined twice");
        if (shndx == 0 || shndx >= kShnLoreserve || shndx >= shnum_)
            return fail("kernel " + k.name + ": code section index " + std::to_string(shndx) +
                        " out of range");
        const Section& text = sections_[shndx];
        if (text.name != ".text." + k.name)
            return fail("kernel " + k.name + ": code is in " + text.name + ", not .text." + k.name);

        auto attrs = symbol_attrs_.find(uint32_t(i));
        if (attrs != symbol_attrs_.end() && attrs->second.has_regs)
            k.num_regs = attrs->second.regs;
        else
            k.num_regs = text.info >> 24;
        if (attrs != symbol_attrs_.end())
            k.local_bytes = std::max(attrs->second.frame, attrs->second.min_stack);

        if (const Section* shared = find(".nv.shared." + k.name)) {
            if (shared->size > UINT32_MAX)
                return fail("kernel " + k.name + ": shared memory size " + hex(shared->size) +
                            " out of range");
            k.static_shared = uint32_t(shared->size);
            if (sm_ >= 90 && k.static_shared >= kReservedSharedSm90)
                k.static_shared -= kReservedSharedSm90;
        }
        if (const Section* nvinfo = find(".nv.info." + k.name)) {
            if (nvinfo->type != kShtCudaInfo)
                return fail(nvinfo->name + ": unexpected section type " + hex(nvinfo->type));
            if (!read_kernel_info(*nvinfo, &k)) return false;
        }
        out->kernels.push_back(std::move(k));
    }
    return true;
}

bool Parser::run(CubinInfo* out) {
    if (!read_header() || !read_sections() || !read_global_info()) return false;
    out->sm_arch = sm_;
    out->cuda_version = cuda_version_;
    return read_kernels(out);
}

}  // namespace

bool looks_like_elf(const void* data, size_t size) {
    if (data == nullptr || size < 4) return false;
    const uint8_t* p = static_cast<const uint8_t*>(data);
    return p[0] == 0x7f && p[1] == 'E' && p[2] == 'L' && p[3] == 'F';
}

bool parse_cubin(const void* data, size_t size, CubinInfo* out, std::string* error) {
    std::string why;
    bool ok = false;
    if (out == nullptr) {
        why = "parse_cubin: no output";
    } else if (data == nullptr) {
        why = size == 0 ? "empty image" : "parse_cubin: null image";
    } else {
        // Allocation sizes are bounded by the image size, but keep the no-throw promise anyway.
        try {
            CubinInfo info;
            Parser parser(static_cast<const uint8_t*>(data), size);
            ok = parser.run(&info);
            if (ok) *out = std::move(info);
            else why = parser.error();
        } catch (const std::bad_alloc&) {
            why = "out of memory while parsing the CUBIN";
        } catch (...) {
            why = "unexpected failure while parsing the CUBIN";
        }
    }
    if (!ok && error != nullptr) *error = one_line("invalid CUBIN: " + why);
    return ok;
}

}  // namespace emu
