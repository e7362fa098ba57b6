// The system-call layer of the amd backend: every open, close, ioctl, mmap, munmap, MMIO
// doorbell store and sysfs read the driver makes goes through a SysInterface, so that the
// same driver code runs against the kernel (RealSys) or against the mock KFD
// (device/amd/mock/mock_kfd.h) in tests.
//
// Conventions: calls return 0 (or a file descriptor) on success and -errno on failure,
// never throw for an OS error; the caller turns the errno into a message that says what
// to do. mmap returns its address through `*out`.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/error.h"

namespace petaring::amd {

class SysInterface {
 public:
  SysInterface() = default;
  SysInterface(const SysInterface&) = delete;
  SysInterface& operator=(const SysInterface&) = delete;
  virtual ~SysInterface() = default;

  virtual int open(const std::string& path, int flags) = 0;  // fd or -errno
  virtual int close(int fd) = 0;
  // `request` is the full ioctl number (_IOWR('K', nr, struct)); `arg` points at the struct.
  virtual int ioctl(int fd, unsigned long request, void* arg) = 0;
  virtual int mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset,
                   void** out) = 0;
  virtual int munmap(void* addr, size_t length) = 0;

  // A 64-bit store to a doorbell mapped from /dev/kfd, ordered after every earlier store
  // to memory (release). The mock executes the packets the doorbell announces.
  virtual void write_doorbell(volatile uint64_t* doorbell, uint64_t value) = 0;

  // Whole-file read of a (small, sysfs) file; false when it cannot be read.
  virtual bool read_file(const std::string& path, std::string* contents) = 0;
  // Entry names of a folder without "." and ".."; empty when it cannot be listed.
  virtual std::vector<std::string> list_dir(const std::string& path) = 0;
  // Whether `path` exists (any type).
  virtual bool exists(const std::string& path) = 0;

  // What the environment knows about the last queue fault beyond what KFD's event data
  // carries, for error messages: the kind of error and what went wrong. The kernel
  // offers nothing more (RealSys returns nullopt); the mock KFD names the packet.
  struct FaultDetail {
    ErrorKind kind;
    std::string message;
  };
  virtual std::optional<FaultDetail> fault_detail() { return std::nullopt; }
};

// The kernel's own system calls.
std::unique_ptr<SysInterface> make_real_sys();

// "EACCES (Permission denied)" for -EACCES or EACCES.
std::string errno_text(int error);

}  // namespace petaring::amd
