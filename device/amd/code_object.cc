// ELF loading for AMDGPU code objects; see code_object.h. Every read of the file goes
// through a bounds check, so a truncated or corrupt file fails with a message naming
// what was being read, never with an out-of-bounds access.
#include "device/amd/code_object.h"

#include <elf.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>

#include "runtime/error.h"

#ifndef PETARING_AMD_CODE_OBJECT_DIR
#define PETARING_AMD_CODE_OBJECT_DIR ""
#endif

namespace petaring::amd {
namespace {

constexpr uint16_t kEmAmdgpu = 224;          // EM_AMDGPU
constexpr uint8_t kOsAbiAmdgpuHsa = 64;      // ELFOSABI_AMDGPU_HSA
constexpr uint32_t kRelocNone = 0;
constexpr uint32_t kRelocRel64 = 5;          // R_AMDGPU_REL64: S + A - P, 64 bits
constexpr uint64_t kMaxImageBytes = 256ull << 20;
constexpr uint64_t kNotLoaded = std::numeric_limits<uint64_t>::max();

std::string hex(uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

std::string mach_name(uint32_t mach) {
  switch (mach) {
    case 0x036: return "gfx1030";
    case 0x03f: return "gfx90a";
    case 0x041: return "gfx1100";
    case 0x044: return "gfx1103";
    case 0x046: return "gfx1101";
    case 0x047: return "gfx1102";
    case 0x048: return "gfx1200";
    case 0x04c: return "gfx942";
    case 0x04e: return "gfx1201";
    default: return "gfx mach " + hex(mach);
  }
}

}  // namespace

std::string_view amdgpu_relocation_name(uint32_t type) {
  switch (type) {
    case 0: return "R_AMDGPU_NONE";
    case 1: return "R_AMDGPU_ABS32_LO";
    case 2: return "R_AMDGPU_ABS32_HI";
    case 3: return "R_AMDGPU_ABS64";
    case 4: return "R_AMDGPU_REL32";
    case 5: return "R_AMDGPU_REL64";
    case 6: return "R_AMDGPU_ABS32";
    case 7: return "R_AMDGPU_GOTPCREL";
    case 8: return "R_AMDGPU_GOTPCREL32_LO";
    case 9: return "R_AMDGPU_GOTPCREL32_HI";
    case 10: return "R_AMDGPU_REL32_LO";
    case 11: return "R_AMDGPU_REL32_HI";
    case 13: return "R_AMDGPU_RELATIVE64";
    case 14: return "R_AMDGPU_REL16";
    default: return "unknown";
  }
}

int UserSgprs::kernarg_segment_ptr_index() const {
  if (!kernarg_segment_ptr) return -1;
  return (private_segment_buffer ? 4 : 0) + (dispatch_ptr ? 2 : 0) + (queue_ptr ? 2 : 0);
}

int UserSgprs::flat_scratch_init_index() const {
  if (!flat_scratch_init) return -1;
  return (private_segment_buffer ? 4 : 0) + (dispatch_ptr ? 2 : 0) + (queue_ptr ? 2 : 0) +
         (kernarg_segment_ptr ? 2 : 0) + (dispatch_id ? 2 : 0);
}

int UserSgprs::private_segment_size_index() const {
  if (!private_segment_size) return -1;
  const int before = (private_segment_buffer ? 4 : 0) + (dispatch_ptr ? 2 : 0) +
                     (queue_ptr ? 2 : 0) + (kernarg_segment_ptr ? 2 : 0) +
                     (dispatch_id ? 2 : 0) + (flat_scratch_init ? 2 : 0);
  return before;
}

KernelInfo describe_kernel(std::string name, const KernelDescriptor& kd) {
  KernelInfo k;
  k.name = std::move(name);
  k.entry_byte_offset = kd.kernel_code_entry_byte_offset;
  k.kernarg_size = kd.kernarg_size;
  k.group_segment_size = kd.group_segment_fixed_size;
  k.private_segment_size = kd.private_segment_fixed_size;
  k.rsrc1 = kd.compute_pgm_rsrc1;
  k.rsrc2 = kd.compute_pgm_rsrc2;
  k.rsrc3 = kd.compute_pgm_rsrc3;
  const uint16_t p = kd.kernel_code_properties;
  k.kernel_code_properties = p;
  k.wavefront_size = (p & kcp::kWavefrontSize32) != 0 ? 32 : 64;
  k.user_sgprs.private_segment_buffer = (p & kcp::kPrivateSegmentBuffer) != 0;
  k.user_sgprs.dispatch_ptr = (p & kcp::kDispatchPtr) != 0;
  k.user_sgprs.queue_ptr = (p & kcp::kQueuePtr) != 0;
  k.user_sgprs.kernarg_segment_ptr = (p & kcp::kKernargSegmentPtr) != 0;
  k.user_sgprs.dispatch_id = (p & kcp::kDispatchId) != 0;
  k.user_sgprs.flat_scratch_init = (p & kcp::kFlatScratchInit) != 0;
  k.user_sgprs.private_segment_size = (p & kcp::kPrivateSegmentSize) != 0;
  k.user_sgprs.count = static_cast<int>(k.rsrc2 >> 1 & 0x1f);
  k.scratch_enabled = (k.rsrc2 & 1) != 0;
  for (int d = 0; d < 3; ++d) k.workgroup_id_enabled[d] = (k.rsrc2 >> (7 + d) & 1) != 0;
  k.workitem_id_dimensions = static_cast<int>(k.rsrc2 >> 11 & 3) + 1;
  k.vgpr_count = static_cast<int>((k.rsrc1 & 0x3f) + 1) * (k.wavefront_size == 32 ? 8 : 4);
  return k;
}

// One parse of one file; builds a CodeObject or throws.
class CodeObjectParser {
 public:
  CodeObjectParser(std::span<const uint8_t> elf, std::string origin)
      : elf_(elf), origin_(std::move(origin)) {}

  CodeObject run() {
    read_header();
    read_sections();
    if (header_.e_type == ET_REL) {
      layout_relocatable();
    } else {
      layout_linked();
    }
    apply_relocations();
    find_kernels();
    if (code_.kernels_.empty()) {
      fail("holds no kernel (no '<name>.kd' symbol of 64 bytes); is it a code object built "
           "from kernels?");
    }
    code_.origin_ = origin_;
    code_.image_.resize((code_.image_.size() + 255) / 256 * 256, 0);
    return std::move(code_);
  }

 private:
  template <typename... Args>
  [[noreturn]] void fail(Args&&... args) const {
    PR_FAIL(kInvalidArgument, "code object ", origin_, ": ", std::forward<Args>(args)...);
  }

  // Copies a T from file offset `offset`, or fails naming `what`.
  template <typename T>
  T read(uint64_t offset, const std::string& what) const {
    if (offset > elf_.size() || elf_.size() - offset < sizeof(T)) {
      fail("truncated: ", what, " at file offset ", hex(offset), " needs ", sizeof(T),
           " bytes, the file has ", elf_.size());
    }
    T value;
    std::memcpy(&value, elf_.data() + offset, sizeof(T));
    return value;
  }

  void check_range(uint64_t offset, uint64_t size, const std::string& what) const {
    if (offset > elf_.size() || elf_.size() - offset < size) {
      fail("truncated: ", what, " spans file bytes [", hex(offset), ", ", hex(offset + size),
           ") past the end of the file (", elf_.size(), " bytes)");
    }
  }

  void read_header() {
    if (elf_.size() < 4 || std::memcmp(elf_.data(), ELFMAG, SELFMAG) != 0) {
      fail("not an ELF file (bad magic)");
    }
    header_ = read<Elf64_Ehdr>(0, "ELF header");
    if (header_.e_ident[EI_CLASS] != ELFCLASS64 || header_.e_ident[EI_DATA] != ELFDATA2LSB) {
      fail("not a little-endian ELF64 file");
    }
    if (header_.e_machine != kEmAmdgpu) {
      fail("machine ", header_.e_machine, " is not AMDGPU (", kEmAmdgpu, ")");
    }
    if (header_.e_ident[EI_OSABI] != kOsAbiAmdgpuHsa) {
      fail("OS ABI ", int(header_.e_ident[EI_OSABI]), " is not AMDGPU HSA (", int(kOsAbiAmdgpuHsa),
           "); build with -target amdgcn-amd-amdhsa");
    }
    if (header_.e_type != ET_REL && header_.e_type != ET_DYN) {
      fail("ELF type ", header_.e_type, " is neither relocatable (1) nor shared (3)");
    }
    code_.target_ = mach_name(header_.e_flags & 0xff);
  }

  void read_sections() {
    if (header_.e_shentsize != sizeof(Elf64_Shdr) || header_.e_shnum == 0) {
      fail("section header entries of ", header_.e_shentsize, " bytes (x", header_.e_shnum,
           "); expected ", sizeof(Elf64_Shdr));
    }
    for (size_t i = 0; i < header_.e_shnum; ++i) {
      sections_.push_back(read<Elf64_Shdr>(header_.e_shoff + i * sizeof(Elf64_Shdr),
                                           "section header " + std::to_string(i)));
    }
    if (header_.e_shstrndx >= sections_.size()) fail("section name table index out of range");
    image_offset_.assign(sections_.size(), kNotLoaded);
  }

  std::string string_at(size_t table, uint64_t index) const {
    if (table >= sections_.size()) fail("string table index ", table, " out of range");
    const Elf64_Shdr& s = sections_[table];
    check_range(s.sh_offset, s.sh_size, "string table");
    if (index >= s.sh_size) fail("string index ", index, " outside its table");
    const char* begin = reinterpret_cast<const char*>(elf_.data() + s.sh_offset + index);
    return std::string(begin, strnlen(begin, s.sh_size - index));
  }

  std::string section_name(size_t i) const {
    return string_at(header_.e_shstrndx, sections_[i].sh_name);
  }

  // Makes the image cover [start, start + size); overflow-safe.
  void grow_image(uint64_t start, uint64_t size, const std::string& what) {
    if (size > kMaxImageBytes || start > kMaxImageBytes - size) {
      fail(what, " at ", hex(start), " of ", size, " bytes lies beyond the 256 MiB limit");
    }
    if (start + size > code_.image_.size()) code_.image_.resize(start + size, 0);
  }

  // Relocatable: allocatable sections one after another, each at its own alignment.
  void layout_relocatable() {
    uint64_t offset = 0;
    for (size_t i = 0; i < sections_.size(); ++i) {
      const Elf64_Shdr& s = sections_[i];
      if ((s.sh_flags & SHF_ALLOC) == 0) continue;
      const uint64_t align = std::max<uint64_t>(s.sh_addralign, 1);
      if ((align & (align - 1)) != 0 || align > kMaxImageBytes) {
        fail("section ", section_name(i), " has alignment ", align);
      }
      offset = (offset + align - 1) / align * align;
      image_offset_[i] = offset;
      grow_image(offset, s.sh_size, "section " + section_name(i));
      if (s.sh_type != SHT_NOBITS && s.sh_size > 0) {
        check_range(s.sh_offset, s.sh_size, "section " + section_name(i));
        std::memcpy(code_.image_.data() + offset, elf_.data() + s.sh_offset, s.sh_size);
      }
      offset += s.sh_size;
    }
  }

  // Linked: PT_LOAD segments at their virtual addresses (the image starts at address 0).
  void layout_linked() {
    if (header_.e_phentsize != sizeof(Elf64_Phdr)) fail("program header size");
    for (size_t i = 0; i < header_.e_phnum; ++i) {
      const auto ph = read<Elf64_Phdr>(header_.e_phoff + i * sizeof(Elf64_Phdr),
                                       "program header " + std::to_string(i));
      if (ph.p_type != PT_LOAD) continue;
      const std::string what = "PT_LOAD segment " + std::to_string(i);
      if (ph.p_filesz > ph.p_memsz) fail(what, " has more file bytes than memory bytes");
      grow_image(ph.p_vaddr, ph.p_memsz, what);
      check_range(ph.p_offset, ph.p_filesz, what);
      if (ph.p_filesz > 0) {
        std::memcpy(code_.image_.data() + ph.p_vaddr, elf_.data() + ph.p_offset, ph.p_filesz);
      }
    }
    for (size_t i = 0; i < sections_.size(); ++i) {
      if ((sections_[i].sh_flags & SHF_ALLOC) != 0) image_offset_[i] = sections_[i].sh_addr;
    }
  }

  // The image offset of symbol `index` of symbol table `table`.
  uint64_t symbol_address(size_t table, uint64_t index, Elf64_Sym* out = nullptr) const {
    const Elf64_Shdr& t = sections_[table];
    if (t.sh_entsize != sizeof(Elf64_Sym) || index >= t.sh_size / sizeof(Elf64_Sym)) {
      fail("symbol ", index, " outside symbol table ", section_name(table));
    }
    const auto sym = read<Elf64_Sym>(t.sh_offset + index * sizeof(Elf64_Sym), "symbol");
    if (out != nullptr) *out = sym;
    if (header_.e_type == ET_DYN || sym.st_shndx == SHN_ABS) return sym.st_value;
    if (sym.st_shndx == SHN_UNDEF || sym.st_shndx >= sections_.size() ||
        image_offset_[sym.st_shndx] == kNotLoaded) {
      fail("symbol '", string_at(t.sh_link, sym.st_name),
           "' is undefined or not in a loaded section; link-time symbols are not supported");
    }
    return image_offset_[sym.st_shndx] + sym.st_value;
  }

  void apply_relocations() {
    for (size_t i = 0; i < sections_.size(); ++i) {
      const Elf64_Shdr& s = sections_[i];
      if (s.sh_type == SHT_REL) fail("section ", section_name(i), " is SHT_REL; only RELA");
      if (s.sh_type != SHT_RELA) continue;
      // ET_REL: sh_info names the patched section; ET_DYN: offsets are addresses.
      uint64_t base = 0;
      if (header_.e_type == ET_REL) {
        if (s.sh_info >= sections_.size()) fail("section ", section_name(i), " targets no section");
        if ((sections_[s.sh_info].sh_flags & SHF_ALLOC) == 0) continue;  // debug info
        base = image_offset_[s.sh_info];
      }
      if (s.sh_entsize != sizeof(Elf64_Rela)) fail("section ", section_name(i), " entry size");
      if (s.sh_link >= sections_.size()) fail("section ", section_name(i), " has no symbol table");
      for (uint64_t r = 0; r < s.sh_size / sizeof(Elf64_Rela); ++r) {
        apply(i, base, read<Elf64_Rela>(s.sh_offset + r * sizeof(Elf64_Rela), "relocation"));
      }
    }
  }

  void apply(size_t section, uint64_t base, const Elf64_Rela& rela) {
    const uint32_t type = ELF64_R_TYPE(rela.r_info);
    const std::string where = section_name(section) + " entry at " + hex(rela.r_offset);
    if (type == kRelocNone) return;
    Elf64_Sym sym{};
    if (type != kRelocRel64) {
      fail("relocation ", amdgpu_relocation_name(type), " (type ", type, ") in ", where,
           " is not supported: only R_AMDGPU_REL64 is applied. Build the kernels with "
           "device/amd/CMakeLists.txt's flags (no globals, no device libraries)");
    }
    const uint64_t s = symbol_address(sections_[section].sh_link, ELF64_R_SYM(rela.r_info), &sym);
    const uint64_t p = base + rela.r_offset;
    if (p > code_.image_.size() || code_.image_.size() - p < 8) {
      fail("relocation in ", where, " patches ", hex(p), ", outside the ", code_.image_.size(),
           "-byte image");
    }
    const uint64_t value = s + static_cast<uint64_t>(rela.r_addend) - p;
    std::memcpy(code_.image_.data() + p, &value, 8);
    ++code_.relocations_applied_;
  }

  size_t symbol_table() const {
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t i = 0; i < sections_.size(); ++i) {
        if (sections_[i].sh_type == (pass == 0 ? SHT_SYMTAB : SHT_DYNSYM)) return i;
      }
    }
    fail("has no symbol table");
  }

  void find_kernels() {
    const size_t table = symbol_table();
    const Elf64_Shdr& t = sections_[table];
    check_range(t.sh_offset, t.sh_size, "symbol table");
    const uint64_t count = t.sh_entsize == sizeof(Elf64_Sym) ? t.sh_size / sizeof(Elf64_Sym) : 0;
    for (uint64_t i = 1; i < count; ++i) {
      Elf64_Sym sym{};
      const auto peek = read<Elf64_Sym>(t.sh_offset + i * sizeof(Elf64_Sym), "symbol");
      const std::string name = string_at(t.sh_link, peek.st_name);
      if (name.size() <= 3 || name.compare(name.size() - 3, 3, ".kd") != 0) continue;
      const uint64_t address = symbol_address(table, i, &sym);
      add_kernel(name.substr(0, name.size() - 3), address, sym.st_size, table);
    }
  }

  void add_kernel(std::string name, uint64_t address, uint64_t size, size_t table) {
    const std::string what = "kernel descriptor '" + name + ".kd'";
    if (size != sizeof(KernelDescriptor)) fail(what, " is ", size, " bytes, not 64");
    if (address % 64 != 0 || address > code_.image_.size() ||
        code_.image_.size() - address < sizeof(KernelDescriptor)) {
      fail(what, " at ", hex(address), " is misaligned or outside the ", code_.image_.size(),
           "-byte image");
    }
    KernelDescriptor kd;
    std::memcpy(&kd, code_.image_.data() + address, sizeof kd);
    KernelInfo k = describe_kernel(std::move(name), kd);
    k.descriptor_offset = address;
    // Unsigned arithmetic wraps instead of overflowing; the bounds check catches both.
    const uint64_t entry = address + static_cast<uint64_t>(k.entry_byte_offset);
    if (entry >= code_.image_.size() || entry % 256 != 0) {
      fail(what, " has entry byte offset ", k.entry_byte_offset, ": its code would start at ",
           entry, ", outside the image or not 256-byte aligned");
    }
    k.entry_offset = entry;
    if (k.kernarg_size > 4096) fail(what, " asks for ", k.kernarg_size, " kernarg bytes");
    if (const uint64_t code = function_address(table, k.name);
        code != kNotLoaded && code != k.entry_offset) {
      fail(what, " enters at ", hex(k.entry_offset), " but the function '", k.name, "' is at ",
           hex(code));
    }
    code_.kernels_.push_back(std::move(k));
  }

  // The image address of the function symbol `name`, or kNotLoaded when there is none.
  uint64_t function_address(size_t table, const std::string& name) const {
    const Elf64_Shdr& t = sections_[table];
    for (uint64_t i = 1; i < t.sh_size / sizeof(Elf64_Sym); ++i) {
      const auto sym = read<Elf64_Sym>(t.sh_offset + i * sizeof(Elf64_Sym), "symbol");
      if (ELF64_ST_TYPE(sym.st_info) == STT_FUNC && string_at(t.sh_link, sym.st_name) == name) {
        return symbol_address(table, i);
      }
    }
    return kNotLoaded;
  }

  std::span<const uint8_t> elf_;
  std::string origin_;
  Elf64_Ehdr header_{};
  std::vector<Elf64_Shdr> sections_;
  std::vector<uint64_t> image_offset_;  // per section; kNotLoaded if not allocatable
  CodeObject code_;
};

CodeObject CodeObject::parse(std::span<const uint8_t> elf, std::string origin) {
  return CodeObjectParser(elf, std::move(origin)).run();
}

CodeObject CodeObject::load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    PR_FAIL(kNotFound, "cannot read the code object ", path,
            "; build it (needs clang-16 and ld.lld-16) or set PETARING_AMD_CODE_OBJECT_DIR");
  }
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  return parse(bytes, path);
}

const KernelInfo* CodeObject::find(std::string_view name) const {
  for (const KernelInfo& k : kernels_) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

const KernelInfo& CodeObject::kernel(std::string_view name) const {
  if (const KernelInfo* k = find(name)) return *k;
  std::string names;
  for (const KernelInfo& k : kernels_) names += (names.empty() ? "" : ", ") + k.name;
  PR_FAIL(kNotFound, "code object ", origin_, " has no kernel '", name, "'; it has: ", names);
}

const KernelInfo* CodeObject::find_by_descriptor(uint64_t descriptor_offset) const {
  for (const KernelInfo& k : kernels_) {
    if (k.descriptor_offset == descriptor_offset) return &k;
  }
  return nullptr;
}

const KernelInfo* CodeObject::find_by_entry(uint64_t entry_offset) const {
  for (const KernelInfo& k : kernels_) {
    if (k.entry_offset == entry_offset) return &k;
  }
  return nullptr;
}

std::string code_object_dir() {
  if (const char* dir = std::getenv("PETARING_AMD_CODE_OBJECT_DIR"); dir != nullptr && *dir) {
    return dir;
  }
  return PETARING_AMD_CODE_OBJECT_DIR;
}

std::string default_code_object_path(bool relocatable) {
  const std::string dir = code_object_dir();
  if (dir.empty()) return "";
  return dir + (relocatable ? "/petaring_kernels_gfx1100.o" : "/petaring_kernels_gfx1100.hsaco");
}

}  // namespace petaring::amd
