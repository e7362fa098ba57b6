// The ELF loader on the code objects clang-16 built from device/amd/gpu/kernels.cl at
// build time (relocatable .o and linked .hsaco), then on copies corrupted here.
// Skips, saying why, when the build had no clang-16 / ld.lld-16.
#include <elf.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "device/amd/code_object.h"
#include "device/amd/gpu/kernargs.h"
#include "device/cpu/cpu_device.h"
#include "runtime/error.h"

namespace petaring::amd {
namespace {

using ::testing::HasSubstr;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The message of the kInvalidArgument `fn` throws ("" when none).
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected an Error";
  return "";
}

// Minimal ELF navigation for corrupting copies.
struct Elf {
  std::vector<uint8_t>& bytes;
  Elf64_Ehdr* header() { return reinterpret_cast<Elf64_Ehdr*>(bytes.data()); }
  Elf64_Shdr* section(size_t i) {
    return reinterpret_cast<Elf64_Shdr*>(bytes.data() + header()->e_shoff) + i;
  }
  Elf64_Shdr* section_of_type(uint32_t type) {
    for (size_t i = 0; i < header()->e_shnum; ++i) {
      if (section(i)->sh_type == type) return section(i);
    }
    return nullptr;
  }
  // The symbol named `name` in .symtab.
  Elf64_Sym* symbol(const std::string& name) {
    Elf64_Shdr* table = section_of_type(SHT_SYMTAB);
    const char* strings = reinterpret_cast<const char*>(bytes.data() + section(table->sh_link)->sh_offset);
    auto* syms = reinterpret_cast<Elf64_Sym*>(bytes.data() + table->sh_offset);
    for (size_t i = 0; i < table->sh_size / sizeof(Elf64_Sym); ++i) {
      if (name == strings + syms[i].st_name) return &syms[i];
    }
    return nullptr;
  }
};

class AmdCodeObjectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    linked_path_ = default_code_object_path(false);
    relocatable_path_ = default_code_object_path(true);
    if (linked_path_.empty()) {
      GTEST_SKIP() << "the gfx1100 code objects were not built: clang-16 or ld.lld-16 was "
                      "missing when CMake configured (scripts/install_deps.sh installs both)";
    }
    linked_ = read_bytes(linked_path_);
    relocatable_ = read_bytes(relocatable_path_);
    ASSERT_FALSE(linked_.empty()) << linked_path_;
    ASSERT_FALSE(relocatable_.empty()) << relocatable_path_;
  }

  std::string linked_path_, relocatable_path_;
  std::vector<uint8_t> linked_, relocatable_;
};

// The kernarg struct size each kernel must report (kernargs.h).
const std::map<std::string, size_t>& kernarg_sizes() {
  static const std::map<std::string, size_t> sizes = {
      {"gemm", sizeof(PrGemmArgs)},
      {"bias_add", sizeof(PrBiasAddArgs)},
      {"bias_grad", sizeof(PrBiasGradArgs)},
      {"relu", sizeof(PrReluArgs)},
      {"relu_backward", sizeof(PrReluBackwardArgs)},
      {"softmax_xent_forward", sizeof(PrSoftmaxXentForwardArgs)},
      {"softmax_xent_backward", sizeof(PrSoftmaxXentBackwardArgs)},
      {"sgd_momentum", sizeof(PrSgdMomentumArgs)},
      {"adamw", sizeof(PrAdamwArgs)},
      {"sum_squares", sizeof(PrSumSquaresArgs)},
      {"fill", sizeof(PrFillArgs)},
      {"copy", sizeof(PrCopyArgs)},
      {"scale", sizeof(PrScaleArgs)},
      {"embedding_forward", sizeof(PrEmbeddingForwardArgs)},
      {"embedding_backward", sizeof(PrEmbeddingBackwardArgs)},
      {"layernorm_forward", sizeof(PrLayernormForwardArgs)},
      {"layernorm_backward", sizeof(PrLayernormBackwardArgs)},
      {"gelu", sizeof(PrGeluArgs)},
      {"gelu_backward", sizeof(PrGeluBackwardArgs)},
      {"add", sizeof(PrAddArgs)},
      {"attention_forward", sizeof(PrAttentionForwardArgs)},
      {"attention_backward", sizeof(PrAttentionBackwardArgs)},
      {"attention_backward_kv", sizeof(PrAttentionBackwardArgs)},  // its second dispatch
      {"convert", sizeof(PrConvertArgs)},
      {"gemm_bf16", sizeof(PrGemmArgs)},
      {"linear_bf16", sizeof(PrLinearArgs)},
      {"layernorm_forward_bf16", sizeof(PrLayernormForwardArgs)},
      {"gelu_bf16", sizeof(PrGeluArgs)},
      {"gelu_backward_bf16", sizeof(PrGeluBackwardArgs)},
      {"attention_forward_bf16", sizeof(PrAttentionForwardArgs)},
      {"attention_backward_bf16", sizeof(PrAttentionBackwardArgs)},
      {"attention_backward_kv_bf16", sizeof(PrAttentionBackwardArgs)},  // its second dispatch
      {"scratch_probe", sizeof(PrScratchProbeArgs)},  // a diagnostic (amd_scratch_test.cc)
  };
  return sizes;
}

TEST_F(AmdCodeObjectTest, CoversTheWholeKernelTable) {
  const CodeObject code = CodeObject::load_file(linked_path_);
  EXPECT_EQ(code.target(), "gfx1100");
  CpuDeviceOptions options;
  options.count = 1;
  options.memory_bytes = 1 << 20;
  options.threads = 1;
  const auto cpu = open_cpu_devices(options);
  // Every kernel of the table, the mixed-precision ones included, has its GPU kernel.
  const std::vector<std::string> names = cpu.front()->kernel_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "gemm_bf16"), names.end());
  for (const std::string& name : names) {
    EXPECT_NE(code.find(name), nullptr) << "no GPU kernel for the table's '" << name << "'";
  }
  EXPECT_EQ(code.kernels().size(), kernarg_sizes().size());
}

TEST_F(AmdCodeObjectTest, DescriptorsGiveDispatchParameters) {
  const CodeObject code = CodeObject::parse(linked_, linked_path_);
  EXPECT_EQ(code.relocations_applied(), 0u);  // lld resolved them
  EXPECT_EQ(code.image().size() % 256, 0u);
  for (const KernelInfo& k : code.kernels()) {
    SCOPED_TRACE(k.name);
    ASSERT_EQ(kernarg_sizes().count(k.name), 1u);
    EXPECT_EQ(k.kernarg_size, kernarg_sizes().at(k.name));
    EXPECT_EQ(k.wavefront_size, 32);
    EXPECT_TRUE(k.user_sgprs.kernarg_segment_ptr);
    EXPECT_GE(k.user_sgprs.count, k.user_sgprs.kernarg_segment_ptr_index() + 2);
    if (k.name != "scratch_probe") {  // the one kernel that needs scratch, on purpose
      EXPECT_EQ(k.private_segment_size, 0u);
      EXPECT_FALSE(k.scratch_enabled);
    }
    EXPECT_TRUE(k.workgroup_id_enabled[0]);
    EXPECT_GT(k.vgpr_count, 0);
    EXPECT_EQ(k.entry_offset % 256, 0u);
    EXPECT_EQ(static_cast<int64_t>(k.entry_offset - k.descriptor_offset), k.entry_byte_offset);
    EXPECT_EQ(code.find_by_descriptor(k.descriptor_offset), &k);
    EXPECT_EQ(code.find_by_entry(k.entry_offset), &k);
  }
  // LDS: gemm's two 16x16 f32 tiles; the reductions' PR_BLOCK doubles.
  EXPECT_EQ(code.kernel("gemm").group_segment_size, 2u * PR_GEMM_TILE * PR_GEMM_TILE * 4);
  EXPECT_EQ(code.kernel("sum_squares").group_segment_size, PR_BLOCK * 8u);
  EXPECT_EQ(code.kernel("softmax_xent_forward").group_segment_size, PR_BLOCK * 8u);
  EXPECT_EQ(code.kernel("relu").group_segment_size, 0u);
  EXPECT_EQ(code.kernel("gemm").workitem_id_dimensions, 2);
  EXPECT_TRUE(code.kernel("gemm").workgroup_id_enabled[1]);
  EXPECT_EQ(code.kernel("relu").workitem_id_dimensions, 1);
  EXPECT_EQ(code.find_by_entry(code.kernel("relu").entry_offset + 4), nullptr);
}

TEST_F(AmdCodeObjectTest, RelocatableFormAppliesRel64ToTheSameCode) {
  const CodeObject linked = CodeObject::parse(linked_, "linked");
  const CodeObject relocated = CodeObject::parse(relocatable_, "relocatable");
  // One R_AMDGPU_REL64 per descriptor: its entry offset.
  EXPECT_EQ(relocated.relocations_applied(), relocated.kernels().size());
  ASSERT_EQ(relocated.kernels().size(), linked.kernels().size());
  for (const KernelInfo& k : relocated.kernels()) {
    SCOPED_TRACE(k.name);
    const KernelInfo& other = linked.kernel(k.name);
    EXPECT_EQ(k.kernarg_size, other.kernarg_size);
    EXPECT_EQ(k.rsrc1, other.rsrc1);
    EXPECT_EQ(k.rsrc2, other.rsrc2);
    EXPECT_EQ(k.rsrc3, other.rsrc3);
    EXPECT_EQ(k.kernel_code_properties, other.kernel_code_properties);
    // The relocated entry points at the same instructions the linker chose.
    ASSERT_LE(k.entry_offset + 64, relocated.image().size());
    EXPECT_EQ(std::memcmp(relocated.image().data() + k.entry_offset,
                          linked.image().data() + other.entry_offset, 64),
              0);
  }
}

TEST_F(AmdCodeObjectTest, RejectsOtherRelocationTypesByName) {
  Elf elf{relocatable_};
  Elf64_Shdr* rela = elf.section_of_type(SHT_RELA);
  ASSERT_NE(rela, nullptr);
  auto* first = reinterpret_cast<Elf64_Rela*>(relocatable_.data() + rela->sh_offset);
  ASSERT_EQ(ELF64_R_TYPE(first->r_info), 5u);  // clang's R_AMDGPU_REL64
  first->r_info = ELF64_R_INFO(ELF64_R_SYM(first->r_info), 3);
  std::string message = error_of([&] { CodeObject::parse(relocatable_, "abs64.o"); });
  EXPECT_THAT(message, HasSubstr("code object abs64.o: relocation R_AMDGPU_ABS64 (type 3)"));
  EXPECT_THAT(message, HasSubstr("only R_AMDGPU_REL64"));
  first->r_info = ELF64_R_INFO(ELF64_R_SYM(first->r_info), 99);
  EXPECT_THAT(error_of([&] { CodeObject::parse(relocatable_, "x"); }),
              HasSubstr("relocation unknown (type 99)"));
}

TEST_F(AmdCodeObjectTest, RejectsBrokenFiles) {
  std::vector<uint8_t> short_file(linked_.begin(), linked_.begin() + 40);
  EXPECT_THAT(error_of([&] { CodeObject::parse(short_file, "short"); }), HasSubstr("truncated"));

  std::vector<uint8_t> copy = linked_;
  copy[1] = 'X';
  EXPECT_THAT(error_of([&] { CodeObject::parse(copy, "x"); }), HasSubstr("not an ELF file"));

  copy = linked_;
  Elf{copy}.header()->e_machine = EM_X86_64;
  EXPECT_THAT(error_of([&] { CodeObject::parse(copy, "x"); }), HasSubstr("is not AMDGPU"));

  copy = linked_;
  Elf{copy}.header()->e_ident[EI_OSABI] = ELFOSABI_SYSV;
  EXPECT_THAT(error_of([&] { CodeObject::parse(copy, "x"); }), HasSubstr("not AMDGPU HSA"));

  copy = linked_;
  Elf{copy}.header()->e_shoff = copy.size() - 8;
  EXPECT_THAT(error_of([&] { CodeObject::parse(copy, "x"); }),
              HasSubstr("truncated: section header 0"));

  copy = relocatable_;
  Elf{copy}.section_of_type(SHT_PROGBITS)->sh_offset = copy.size();  // .text past the end
  EXPECT_THAT(error_of([&] { CodeObject::parse(copy, "x"); }), HasSubstr("past the end"));
}

TEST_F(AmdCodeObjectTest, RejectsBadDescriptors) {
  std::vector<uint8_t> copy = relocatable_;
  Elf64_Sym* kd = Elf{copy}.symbol("relu.kd");
  ASSERT_NE(kd, nullptr);
  kd->st_size = 32;
  EXPECT_THAT(error_of([&] { CodeObject::parse(copy, "x"); }),
              HasSubstr("kernel descriptor 'relu.kd' is 32 bytes, not 64"));

  // Move gemm's code entry 4 bytes on, in the linked file (no relocation rewrites it).
  copy = linked_;
  Elf elf{copy};
  Elf64_Sym* gemm_kd = elf.symbol("gemm.kd");
  ASSERT_NE(gemm_kd, nullptr);
  Elf64_Shdr* rodata = nullptr;
  for (size_t i = 0; i < elf.header()->e_shnum; ++i) {
    Elf64_Shdr* s = elf.section(i);
    if (s->sh_type == SHT_PROGBITS && gemm_kd->st_value >= s->sh_addr &&
        gemm_kd->st_value < s->sh_addr + s->sh_size) {
      rodata = s;
    }
  }
  ASSERT_NE(rodata, nullptr);
  int64_t entry;
  uint8_t* field = copy.data() + rodata->sh_offset + (gemm_kd->st_value - rodata->sh_addr) + 16;
  std::memcpy(&entry, field, 8);
  entry += 4;
  std::memcpy(field, &entry, 8);
  EXPECT_THAT(error_of([&] { CodeObject::parse(copy, "x"); }),
              HasSubstr("'gemm.kd' has entry byte offset"));
  entry += 252;  // 256-aligned again, but at the wrong function
  std::memcpy(field, &entry, 8);
  EXPECT_THAT(error_of([&] { CodeObject::parse(copy, "x"); }),
              HasSubstr("but the function 'gemm' is at"));

  // No descriptor symbols at all.
  copy = relocatable_;
  Elf strip{copy};
  for (const auto& [name, size] : kernarg_sizes()) {
    Elf64_Sym* sym = strip.symbol(name + ".kd");
    ASSERT_NE(sym, nullptr) << name;
    sym->st_name = strip.symbol(name)->st_name;  // rename "<name>.kd" to "<name>"
  }
  EXPECT_THAT(error_of([&] { CodeObject::parse(copy, "x"); }), HasSubstr("holds no kernel"));
}

// Byte flips anywhere in either file: the loader either loads or throws an Error
// naming the file; it never reads or writes outside its buffers (run under ASan to see).
TEST_F(AmdCodeObjectTest, SurvivesRandomCorruption) {
  uint32_t state = 12345;
  auto next = [&state] {
    state = state * 1664525u + 1013904223u;
    return state >> 8;
  };
  int rejected = 0, loaded = 0;
  for (int round = 0; round < 400; ++round) {
    std::vector<uint8_t> copy = round % 2 ? linked_ : relocatable_;
    // Mostly the headers and tables (where corruption matters), sometimes anywhere.
    const size_t span = round % 4 == 0 ? copy.size() : std::min<size_t>(copy.size(), 1024);
    const int flips = 1 + static_cast<int>(next() % 4);
    for (int f = 0; f < flips; ++f) copy[next() % span] ^= static_cast<uint8_t>(1 + next() % 255);
    // Section headers and the relocation/symbol tables sit at the end of the file.
    if (round % 3 == 0) copy[copy.size() - 1 - next() % 700] ^= 0x40;
    try {
      const CodeObject code = CodeObject::parse(copy, "fuzzed");
      for (const KernelInfo& k : code.kernels()) {
        ASSERT_LT(k.entry_offset, code.image().size());
        ASSERT_LE(k.descriptor_offset + 64, code.image().size());
      }
      ++loaded;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("code object fuzzed: "));
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(loaded, 0);  // flips in code bytes or padding load fine
}

TEST(AmdCodeObject, MissingFileAndUnknownKernel) {
  try {
    CodeObject::load_file("/nonexistent/kernels.hsaco");
    FAIL() << "expected kNotFound";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/kernels.hsaco"));
  }
}

TEST(AmdCodeObject, DescribesADescriptor) {
  KernelDescriptor kd{};
  kd.group_segment_fixed_size = 512;
  kd.kernarg_size = 24;
  kd.kernel_code_entry_byte_offset = 0x1340;
  kd.compute_pgm_rsrc1 = 0x3;                     // 4 granules of VGPRs
  kd.compute_pgm_rsrc2 = 6 << 1 | 1 << 7 | 1 << 8 | 1 << 11;  // 6 user SGPRs, tgid x/y, 2-D ids
  kd.kernel_code_properties = kcp::kDispatchPtr | kcp::kKernargSegmentPtr | kcp::kWavefrontSize32;
  const KernelInfo k = describe_kernel("k", kd);
  EXPECT_EQ(k.wavefront_size, 32);
  EXPECT_EQ(k.vgpr_count, 32);
  EXPECT_EQ(k.user_sgprs.count, 6);
  EXPECT_TRUE(k.user_sgprs.dispatch_ptr);
  EXPECT_EQ(k.user_sgprs.kernarg_segment_ptr_index(), 2);
  EXPECT_TRUE(k.workgroup_id_enabled[1]);
  EXPECT_FALSE(k.workgroup_id_enabled[2]);
  EXPECT_EQ(k.workitem_id_dimensions, 2);
  EXPECT_EQ(k.group_segment_size, 512u);
  EXPECT_EQ(k.entry_byte_offset, 0x1340);
  kd.kernel_code_properties = kcp::kPrivateSegmentBuffer | kcp::kKernargSegmentPtr;
  const KernelInfo wave64 = describe_kernel("k", kd);
  EXPECT_EQ(wave64.wavefront_size, 64);
  EXPECT_EQ(wave64.vgpr_count, 16);
  EXPECT_EQ(wave64.user_sgprs.kernarg_segment_ptr_index(), 4);
}

}  // namespace
}  // namespace petaring::amd
