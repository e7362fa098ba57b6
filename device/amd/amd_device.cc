#include "device/amd/amd_device.h"

#include <cstring>

#include "device/amd/amd_queue.h"
#include "device/amd/kfd_access.h"
#include "device/amd/launch_plan.h"
#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring::amd {
namespace {

// One VRAM allocation, CPU-visible, given back when destroyed.
class AmdBuffer : public Buffer {
 public:
  AmdBuffer(GpuAccess& access, GpuAllocation allocation, size_t size, std::string device_name,
            std::shared_ptr<std::atomic<uint64_t>> used)
      : access_(access), allocation_(allocation), size_(size),
        device_name_(std::move(device_name)), used_(std::move(used)) {
    used_->fetch_add(allocation_.size);
  }
  ~AmdBuffer() override {
    try {
      access_.free(allocation_);
    } catch (const std::exception& e) {
      PR_LOG(kWarn) << device_name_ << ": freeing a buffer failed: " << e.what();
    }
    used_->fetch_sub(allocation_.size);
  }
  size_t size() const override { return size_; }
  void* host_data() override { return allocation_.host_visible ? allocation_.address : nullptr; }
  std::string device_name() const override { return device_name_; }

 private:
  GpuAccess& access_;
  GpuAllocation allocation_;
  size_t size_;
  std::string device_name_;
  std::shared_ptr<std::atomic<uint64_t>> used_;
};

std::shared_ptr<const CodeObject> load_code_object(const std::string& requested,
                                                   const AmdGpuInfo& gpu) {
  const std::string path = requested.empty() ? default_code_object_path() : requested;
  if (path.empty()) {
    PR_FAIL(kNotFound, "amd: the GPU code objects were not built: clang-16 and ld.lld-16 must "
            "be installed when the build is configured (scripts/install_deps.sh installs them)");
  }
  auto code = std::make_shared<const CodeObject>(CodeObject::load_file(path));
  if (code->target() != gpu.arch) {
    PR_FAIL(kUnimplemented, "amd: ", gpu.product, " at ", gpu.pci_address, " is ", gpu.arch,
            " but the code object ", path, " is built for ", code->target(),
            "; only gfx1100 (RX 7900 family) is built today");
  }
  return code;
}

}  // namespace

AmdDevice::AmdDevice(std::unique_ptr<GpuAccess> access, AmdDeviceOptions options)
    : access_(std::move(access)), options_(std::move(options)),
      used_(std::make_shared<std::atomic<uint64_t>>(0)) {
  properties_ = device_properties(access_->gpu(), options_.index);
  code_object_ = load_code_object(options_.code_object_path, access_->gpu());
  const auto& image = code_object_->image();
  code_ = access_->allocate(image.size(), MemoryKind::kVram, true, true);
  std::memcpy(code_.address, image.data(), image.size());
  for (const KernelInfo& info : code_object_->kernels()) {
    kernels_.emplace_back(&info, code_.gpu_address() + info.descriptor_offset);
  }
  PR_LOG(kDebug) << name() << ": " << access_->gpu().product << " (" << properties_.arch
                 << ", " << format_bytes(properties_.memory_bytes) << ") through "
                 << access_->describe() << "; " << kernels_.size() << " kernels from "
                 << code_object_->origin();
}

AmdDevice::~AmdDevice() {
  try {
    access_->free(code_);
  } catch (const std::exception& e) {
    PR_LOG(kWarn) << name() << ": freeing the code object failed: " << e.what();
  }
  if (uint64_t used = used_->load(); used != 0) {
    PR_LOG(kWarn) << name() << " destroyed while " << format_bytes(used)
                  << " of buffers are still alive";
  }
}

std::unique_ptr<Buffer> AmdDevice::allocate(size_t bytes) {
  try {
    GpuAllocation a = access_->allocate(bytes, MemoryKind::kVram, true);
    return std::make_unique<AmdBuffer>(*access_, a, bytes, name(), used_);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kOutOfMemory) throw;
    PR_FAIL(kOutOfMemory, name(), ": out of memory: cannot allocate ", format_bytes(bytes), " (",
            bytes, " bytes) with ", format_bytes(used_->load()), " in use of ",
            format_bytes(properties_.memory_bytes), ". Lower training.batch_size or the model "
            "size. (", e.what(), ")");
  }
}

std::unique_ptr<Queue> AmdDevice::create_queue(QueueKind kind) {
  const int number = queues_created_.fetch_add(1);
  std::string queue_name = str_cat(name(), "/", kind == QueueKind::kCompute ? "compute" : "copy");
  if (number > 0) queue_name += str_cat(".", number);
  return std::make_unique<AmdQueue>(*this, std::move(queue_name));
}

const AmdKernel* AmdDevice::find_gpu_kernel(std::string_view name) const {
  for (const AmdKernel& kernel : kernels_) {
    if (kernel.name() == name) return &kernel;
  }
  return nullptr;
}

const Kernel* AmdDevice::find_kernel(std::string_view name) const {
  return is_helper_kernel(name) ? nullptr : find_gpu_kernel(name);
}

std::vector<std::string> AmdDevice::kernel_names() const {
  std::vector<std::string> names;
  for (const AmdKernel& kernel : kernels_) {
    if (!is_helper_kernel(kernel.name())) names.emplace_back(kernel.name());
  }
  return names;
}

std::vector<std::unique_ptr<Device>> open_amd_devices(std::shared_ptr<SysInterface> sys,
                                                      const std::string& sysfs_root,
                                                      AmdDeviceOptions options, int only) {
  const auto gpus = discover_amd_gpus(*sys, sysfs_root);
  if (gpus.empty()) {
    PR_FAIL(kNotFound, "amd: no AMD GPU in KFD's topology under ", sysfs_root,
            "/devices/virtual/kfd; is the amdgpu driver loaded? (`petaring devices` lists what "
            "this host offers)");
  }
  if (only >= static_cast<int>(gpus.size())) {
    PR_FAIL(kNotFound, "amd: GPU ", only, " asked for, but KFD's topology under ", sysfs_root,
            " lists ", gpus.size(), "; start at most that many ranks per host");
  }
  std::vector<std::unique_ptr<Device>> devices;
  for (size_t i = 0; i < gpus.size(); ++i) {
    if (only >= 0 && static_cast<int>(i) != only) continue;
    AmdDeviceOptions o = options;
    o.index = static_cast<int>(i);
    devices.push_back(std::make_unique<AmdDevice>(std::make_unique<KfdAccess>(sys, gpus[i]), o));
  }
  return devices;
}

}  // namespace petaring::amd
