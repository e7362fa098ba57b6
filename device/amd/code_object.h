// AMDGPU code objects (ELF64, EM_AMDGPU, HSA OS ABI) as clang-16 writes them: the
// relocatable form (`clang -c`, ET_REL) and the linked form (ld.lld, ET_DYN).
//
// Loading lays the allocatable sections out in one image (ET_REL: each section at its
// alignment, in section order; ET_DYN: the PT_LOAD segments at their addresses),
// applies R_AMDGPU_REL64 relocations (PC-relative, so the image can then be copied to
// any GPU address), and turns each `<name>.kd` kernel descriptor into the dispatch
// parameters a queue needs. Any other relocation type is rejected by name.
//
// The image is plain bytes: copying it to executable GPU memory is the backend's job.
// TODO(hw): nothing loaded here has been dispatched on real hardware yet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace petaring::amd {

// The 64-byte kernel descriptor of the AMDGPU ABI (code object v4/v5), as in memory.
struct KernelDescriptor {
  uint32_t group_segment_fixed_size;    // LDS bytes per workgroup
  uint32_t private_segment_fixed_size;  // scratch bytes per work-item
  uint32_t kernarg_size;                // bytes
  uint8_t reserved0[4];
  int64_t kernel_code_entry_byte_offset;  // from the descriptor to the code
  uint8_t reserved1[20];
  uint32_t compute_pgm_rsrc3;
  uint32_t compute_pgm_rsrc1;
  uint32_t compute_pgm_rsrc2;
  uint16_t kernel_code_properties;
  uint16_t kernarg_preload;  // v5; 0 before
  uint8_t reserved2[4];
};
static_assert(sizeof(KernelDescriptor) == 64);

// kernel_code_properties bits: which user SGPRs the kernel expects, in this order.
namespace kcp {
constexpr uint16_t kPrivateSegmentBuffer = 1u << 0;  // 4 SGPRs
constexpr uint16_t kDispatchPtr = 1u << 1;           // 2
constexpr uint16_t kQueuePtr = 1u << 2;              // 2
constexpr uint16_t kKernargSegmentPtr = 1u << 3;     // 2
constexpr uint16_t kDispatchId = 1u << 4;            // 2
constexpr uint16_t kFlatScratchInit = 1u << 5;       // 2
constexpr uint16_t kPrivateSegmentSize = 1u << 6;    // 1
constexpr uint16_t kWavefrontSize32 = 1u << 10;
constexpr uint16_t kUsesDynamicStack = 1u << 11;
}  // namespace kcp

// The user SGPRs a dispatch must load (COMPUTE_USER_DATA_n), in ABI order.
struct UserSgprs {
  bool private_segment_buffer = false;
  bool dispatch_ptr = false;
  bool queue_ptr = false;
  bool kernarg_segment_ptr = false;
  bool dispatch_id = false;
  bool flat_scratch_init = false;
  bool private_segment_size = false;
  int count = 0;  // USER_SGPR_COUNT from rsrc2 (what the hardware loads)
  // SGPR index of the kernarg pointer (after the enabled ones before it); -1 if none.
  int kernarg_segment_ptr_index() const;
  // SGPR index of the flat scratch init pair and of the private segment size; -1 if none.
  int flat_scratch_init_index() const;
  int private_segment_size_index() const;
};

// Everything a dispatch needs about one kernel, from its descriptor.
struct KernelInfo {
  std::string name;                // "gemm" (the descriptor symbol is "gemm.kd")
  uint64_t descriptor_offset = 0;  // of the descriptor in the image (64-byte aligned)
  uint64_t entry_offset = 0;       // of the first instruction in the image (256-aligned)
  int64_t entry_byte_offset = 0;   // entry_offset - descriptor_offset, as in the descriptor
  uint32_t kernarg_size = 0;
  uint32_t group_segment_size = 0;    // LDS bytes per workgroup
  uint32_t private_segment_size = 0;  // scratch bytes per work-item
  uint32_t rsrc1 = 0, rsrc2 = 0, rsrc3 = 0;  // COMPUTE_PGM_RSRC1/2/3 as the compiler set them
  uint16_t kernel_code_properties = 0;
  int wavefront_size = 64;  // 32 when kcp::kWavefrontSize32
  UserSgprs user_sgprs;
  bool scratch_enabled = false;       // rsrc2 SCRATCH_EN
  bool workgroup_id_enabled[3] = {};  // rsrc2 TGID_X/Y/Z_EN: SGPRs after the user SGPRs
  int workitem_id_dimensions = 1;     // rsrc2 TIDIG_COMP_CNT + 1: VGPRs v0 (v1, v2)
  int vgpr_count = 0;   // from rsrc1's granulated count (granule 8 in wave32, 4 in wave64)
};

// A loaded code object. Immutable after load; cheap to move.
class CodeObject {
 public:
  // Parses `elf` (the bytes of a code object; `origin` names it in errors, e.g. a
  // path). Throws kInvalidArgument saying what is wrong and where (section, offset,
  // symbol) when the bytes are not an AMDGPU HSA ELF64 file, are truncated, carry a
  // relocation other than R_AMDGPU_REL64 (named in the message), or hold no kernel or
  // a malformed kernel descriptor.
  static CodeObject parse(std::span<const uint8_t> elf, std::string origin);
  // Reads and parses the file at `path`; kNotFound when it cannot be read.
  static CodeObject load_file(const std::string& path);

  // The bytes to copy to executable GPU memory (a multiple of 256 bytes; the GPU
  // address of the image must be 256-byte aligned so entry points stay aligned).
  const std::vector<uint8_t>& image() const { return image_; }
  // "gfx1100" (from the ELF header's EF_AMDGPU_MACH), or "gfx mach 0x.." when unknown.
  const std::string& target() const { return target_; }
  const std::string& origin() const { return origin_; }
  // Kernels in symbol-table order.
  const std::vector<KernelInfo>& kernels() const { return kernels_; }
  // nullptr when there is no kernel of that name.
  const KernelInfo* find(std::string_view name) const;
  // The kernel of that name, or kNotFound listing the kernels there are.
  const KernelInfo& kernel(std::string_view name) const;
  // The kernel whose descriptor sits at `descriptor_offset` in the image; nullptr if none.
  const KernelInfo* find_by_descriptor(uint64_t descriptor_offset) const;
  // The kernel whose code starts at `entry_offset` in the image (what COMPUTE_PGM_LO/HI
  // point at, minus the image's GPU address); nullptr if none.
  const KernelInfo* find_by_entry(uint64_t entry_offset) const;
  // How many relocations were applied while loading.
  size_t relocations_applied() const { return relocations_applied_; }

 private:
  std::string origin_;
  std::string target_;
  std::vector<uint8_t> image_;
  std::vector<KernelInfo> kernels_;
  size_t relocations_applied_ = 0;

  friend class CodeObjectParser;
};

// Decodes a descriptor into dispatch parameters (no checks against an image).
KernelInfo describe_kernel(std::string name, const KernelDescriptor& descriptor);

// "R_AMDGPU_REL64" for 5, "R_AMDGPU_ABS64" for 3, ...; "unknown" otherwise.
std::string_view amdgpu_relocation_name(uint32_t type);

// The code objects built with this tree (device/amd/CMakeLists.txt):
// $PETARING_AMD_CODE_OBJECT_DIR if set, else the build folder's device/amd. Returns
// "" when they were not built (clang-16 or ld.lld-16 missing at configure time).
std::string code_object_dir();
// <code_object_dir()>/petaring_kernels_gfx1100.hsaco (linked) and .o (relocatable).
std::string default_code_object_path(bool relocatable = false);

}  // namespace petaring::amd
