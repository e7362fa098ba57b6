#include "device/cpu/cpu_device.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <new>
#include <thread>

#include "device/cpu/cpu_blas.h"
#include "device/cpu/cpu_queue.h"
#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring {
namespace {

constexpr std::align_val_t kAlignment{64};

// Host memory counted against a device's budget; gives its bytes back when destroyed.
class CpuBuffer : public Buffer {
 public:
  CpuBuffer(void* data, size_t size, std::string device_name,
            std::shared_ptr<CpuMemoryBudget> budget)
      : data_(data), size_(size), device_name_(std::move(device_name)), budget_(std::move(budget)) {}
  ~CpuBuffer() override {
    ::operator delete(data_, kAlignment);
    budget_->used_bytes.fetch_sub(size_);
  }

  size_t size() const override { return size_; }
  void* host_data() override { return data_; }
  std::string device_name() const override { return device_name_; }

 private:
  void* data_;
  size_t size_;
  std::string device_name_;
  std::shared_ptr<CpuMemoryBudget> budget_;
};

// Takes `bytes` from the budget, or returns false when they are not free.
bool reserve(CpuMemoryBudget& budget, uint64_t bytes) {
  uint64_t used = budget.used_bytes.load();
  do {
    if (bytes > budget.limit_bytes - used) return false;
  } while (!budget.used_bytes.compare_exchange_weak(used, used + bytes));
  return true;
}

int usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

std::string read_cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    size_t start = line.find_first_not_of(' ', colon + 1);
    return start == std::string::npos ? "" : line.substr(start);
  }
  return "";
}

}  // namespace

std::string cpu_arch() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "x86_64 avx512f";
  if (__builtin_cpu_supports("avx2")) return "x86_64 avx2";
  if (__builtin_cpu_supports("avx")) return "x86_64 avx";
  return "x86_64";
#elif defined(__aarch64__)
  return "aarch64";
#else
  return "unknown";
#endif
}

HostInfo describe_host() {
  HostInfo host;
  host.cpu_model = read_cpu_model();
  host.arch = cpu_arch();
  host.cores = usable_cores();
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page_size > 0) {
    host.memory_bytes = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
  }
  host.blas = std::string(cpu::blas_library_name());
  return host;
}

CpuDevice::CpuDevice(int index, uint64_t memory_bytes)
    : budget_(std::make_shared<CpuMemoryBudget>(memory_bytes)), kernels_(make_cpu_kernels()) {
  properties_.name = str_cat("cpu:", index);
  properties_.kind = "cpu";
  properties_.arch = cpu_arch();
  properties_.index = index;
  properties_.memory_bytes = memory_bytes;
  properties_.link.kind = LinkKind::kHost;
}

CpuDevice::~CpuDevice() {
  if (uint64_t used = budget_->used_bytes.load(); used != 0) {
    PR_LOG(kWarn) << name() << " destroyed while " << format_bytes(used)
                  << " of buffers are still alive";
  }
}

std::unique_ptr<Buffer> CpuDevice::allocate(size_t bytes) {
  if (!reserve(*budget_, bytes)) {
    const uint64_t used = budget_->used_bytes.load();
    const uint64_t free = used < budget_->limit_bytes ? budget_->limit_bytes - used : 0;
    PR_FAIL(kOutOfMemory, name(), ": out of memory: cannot allocate ", format_bytes(bytes),
            " (", bytes, " bytes); ", format_bytes(free), " free of a ",
            format_bytes(budget_->limit_bytes),
            " budget. Lower training.batch_size or the model size, or raise devices.memory "
            "in the recipe (--memory for `petaring devices`)");
  }
  // Round up so that every buffer, even an empty one, has its own aligned block.
  const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  void* data = ::operator new(rounded, kAlignment, std::nothrow);
  if (data == nullptr) {
    budget_->used_bytes.fetch_sub(bytes);
    PR_FAIL(kOutOfMemory, name(), ": the host could not provide ", format_bytes(bytes),
            " although the device budget allows it; lower devices.memory or devices.count "
            "so that the budgets fit in host memory");
  }
  return std::make_unique<CpuBuffer>(data, bytes, name(), budget_);
}

uint64_t CpuDevice::memory_used() const { return budget_->used_bytes.load(); }

std::unique_ptr<Queue> CpuDevice::create_queue(QueueKind kind) {
  const int number = queues_created_.fetch_add(1);
  std::string queue_name =
      str_cat(name(), "/", kind == QueueKind::kCompute ? "compute" : "copy");
  if (number > 0) queue_name += str_cat(".", number);  // keep names unique in the process
  return std::make_unique<CpuQueue>(*this, std::move(queue_name));
}

const Kernel* CpuDevice::find_kernel(std::string_view name) const {
  for (const CpuKernel& kernel : kernels_) {
    if (kernel.name() == name) return &kernel;
  }
  return nullptr;
}

std::vector<std::string> CpuDevice::kernel_names() const {
  std::vector<std::string> names;
  names.reserve(kernels_.size());
  for (const CpuKernel& kernel : kernels_) names.emplace_back(kernel.name());
  return names;
}

std::vector<std::unique_ptr<Device>> open_cpu_devices(const CpuDeviceOptions& options) {
  if (options.count < 1) {
    PR_FAIL(kInvalidArgument, "cpu devices: count must be at least 1, got ", options.count);
  }
  if (options.memory_bytes == 0) {
    PR_FAIL(kInvalidArgument, "cpu devices: the memory budget must be more than 0 bytes");
  }
  if (options.threads < 0) {
    PR_FAIL(kInvalidArgument, "cpu devices: threads must be >= 0 (0 = automatic), got ",
            options.threads);
  }
  const int threads =
      options.threads > 0 ? options.threads : std::max(1, usable_cores() / options.count);
  cpu::set_blas_threads(threads);
  std::vector<std::unique_ptr<Device>> devices;
  devices.reserve(static_cast<size_t>(options.count));
  for (int i = 0; i < options.count; ++i) {
    devices.push_back(std::make_unique<CpuDevice>(i, options.memory_bytes));
  }
  PR_LOG(kDebug) << "opened " << options.count << " cpu device(s) of "
                 << format_bytes(options.memory_bytes) << ", " << threads << " GEMM thread(s) each";
  return devices;
}

}  // namespace petaring
