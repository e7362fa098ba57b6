#include "device/amd/sys.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "runtime/error.h"

namespace petaring::amd {
namespace {

class RealSys : public SysInterface {
 public:
  int open(const std::string& path, int flags) override {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
  }
  int close(int fd) override { return ::close(fd) == 0 ? 0 : -errno; }
  int ioctl(int fd, unsigned long request, void* arg) override {
    int rc;
    do {
      rc = ::ioctl(fd, request, arg);
    } while (rc == -1 && (errno == EINTR || errno == EAGAIN));
    return rc == -1 ? -errno : rc;
  }
  int mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset,
           void** out) override {
    void* p = ::mmap(addr, length, prot, flags, fd, offset);
    if (p == MAP_FAILED) return -errno;
    *out = p;
    return 0;
  }
  int munmap(void* addr, size_t length) override {
    return ::munmap(addr, length) == 0 ? 0 : -errno;
  }
  void write_doorbell(volatile uint64_t* doorbell, uint64_t value) override {
    // TODO(hw): confirm that a release fence before the 64-bit store is enough for the
    // ring contents to be visible to the CP/SDMA engine (GTT is mapped uncached).
    std::atomic_thread_fence(std::memory_order_release);
    *doorbell = value;
  }
  bool read_file(const std::string& path, std::string* contents) override {
    std::ifstream in(path);
    if (!in) return false;
    std::ostringstream text;
    text << in.rdbuf();
    *contents = text.str();
    return true;
  }
  std::vector<std::string> list_dir(const std::string& path) override {
    std::vector<std::string> names;
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) return names;
    while (dirent* entry = ::readdir(dir)) {
      std::string name = entry->d_name;
      if (name != "." && name != "..") names.push_back(std::move(name));
    }
    ::closedir(dir);
    return names;
  }
  bool exists(const std::string& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
  }
};

}  // namespace

std::unique_ptr<SysInterface> make_real_sys() { return std::make_unique<RealSys>(); }

std::string errno_text(int error) {
  if (error < 0) error = -error;
  const char* name = strerrorname_np(error);
  return str_cat(name != nullptr ? name : "errno ", name != nullptr ? "" : std::to_string(error),
                 " (", std::strerror(error), ")");
}

}  // namespace petaring::amd
