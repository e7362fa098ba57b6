#include "collectives/transport/shm/shm_segment.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring::shm {
namespace {

constexpr uint64_t kMagic = 0x70657461'73686d31ULL;  // "petashm1"
constexpr size_t kHeaderBytes = 64;
constexpr size_t kControlBytes = 128;  // head and tail, one cache line each

static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "shared-memory rings need lock-free 64-bit atomics");

struct Header {
  std::atomic<uint64_t> magic;  // written last, with release
  int64_t pid;
  int64_t size;
  uint64_t ring_bytes;
  std::atomic<uint32_t> doorbell;  // see Segment::doorbell
  std::atomic<uint32_t> sleepers;
  std::atomic<uint64_t> probe_address;  // see Segment::probe_address
  PeerGate gate;                        // see Segment::gate
};
static_assert(sizeof(Header) <= kHeaderBytes);

size_t segment_bytes(int size, size_t ring_bytes) {
  return kHeaderBytes + static_cast<size_t>(size) * (kControlBytes + ring_bytes);
}

[[noreturn]] void fail_os(const char* what, const std::string& name) {
  int code = errno;
  PR_FAIL(kFailedPrecondition, what, " of shared-memory segment ", name, " failed: ",
          std::strerror(code), "; check that /dev/shm is mounted, writable and has room, or ",
          "set PETARING_TRANSPORT=tcp");
}

// MAP_POPULATE: the pages are allocated and mapped now, not faulted in one by one during
// the first pass of messages through each ring (which made the first ~1 MiB of traffic
// per pair several times slower than the rest: a fault per 4 KiB page on both sides).
char* map_fd(int fd, size_t bytes, const std::string& name) {
  void* address =
      mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (address == MAP_FAILED) {
    close(fd);
    fail_os("mmap", name);
  }
  close(fd);
  return static_cast<char*>(address);
}

}  // namespace

size_t Ring::write(const char* source, size_t bytes) {
  uint64_t head = head_->load(std::memory_order_relaxed);
  uint64_t tail = tail_->load(std::memory_order_acquire);
  size_t count = std::min(bytes, capacity_ - static_cast<size_t>(head - tail));
  if (count == 0) return 0;
  size_t start = head % capacity_;
  size_t first = std::min(count, capacity_ - start);
  std::memcpy(data_ + start, source, first);
  if (count > first) std::memcpy(data_, source + first, count - first);
  head_->store(head + count, std::memory_order_release);
  return count;
}

size_t Ring::readable() const {
  return static_cast<size_t>(head_->load(std::memory_order_acquire) -
                             tail_->load(std::memory_order_relaxed));
}

size_t Ring::read(char* target, size_t bytes) {
  uint64_t tail = tail_->load(std::memory_order_relaxed);
  uint64_t head = head_->load(std::memory_order_acquire);
  size_t count = std::min(bytes, static_cast<size_t>(head - tail));
  if (count == 0) return 0;
  if (target != nullptr) {
    size_t start = tail % capacity_;
    size_t first = std::min(count, capacity_ - start);
    std::memcpy(target, data_ + start, first);
    if (count > first) std::memcpy(target + first, data_, count - first);
  }
  tail_->store(tail + count, std::memory_order_release);
  return count;
}

const char* Ring::peek(size_t* contiguous) const {
  uint64_t tail = tail_->load(std::memory_order_relaxed);
  uint64_t head = head_->load(std::memory_order_acquire);
  size_t start = tail % capacity_;
  *contiguous = std::min(static_cast<size_t>(head - tail), capacity_ - start);
  return data_ + start;
}

void Ring::consume(size_t bytes) {
  uint64_t tail = tail_->load(std::memory_order_relaxed);
  tail_->store(tail + bytes, std::memory_order_release);
}

Segment Segment::create(const std::string& name, int size, size_t ring_bytes) {
  PR_CHECK(size >= 1 && ring_bytes >= 64 && ring_bytes % 64 == 0) << "ring of " << ring_bytes;
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) fail_os("shm_open (create)", name);
  Segment segment;
  segment.bytes_ = segment_bytes(size, ring_bytes);
  segment.size_ = size;
  segment.ring_bytes_ = ring_bytes;
  if (ftruncate(fd, static_cast<off_t>(segment.bytes_)) != 0) {
    close(fd);
    unlink_segment(name);
    fail_os("ftruncate", name);
  }
  segment.base_ = map_fd(fd, segment.bytes_, name);  // zero-filled: every ring empty
  auto* header = reinterpret_cast<Header*>(segment.base_);
  header->pid = getpid();
  header->size = size;
  header->ring_bytes = ring_bytes;
  header->magic.store(kMagic, std::memory_order_release);
  return segment;
}

Segment Segment::open(const std::string& name, int size, size_t ring_bytes) {
  int fd = shm_open(name.c_str(), O_RDWR, 0600);
  if (fd < 0) fail_os("shm_open", name);
  struct stat info {};
  size_t expected = segment_bytes(size, ring_bytes);
  if (fstat(fd, &info) != 0 || static_cast<size_t>(info.st_size) != expected) {
    close(fd);
    PR_FAIL(kFailedPrecondition, "shared-memory segment ", name, " has ", info.st_size,
            " bytes, expected ", expected, "; do all ranks run the same petaring build?");
  }
  Segment segment;
  segment.bytes_ = expected;
  segment.size_ = size;
  segment.ring_bytes_ = ring_bytes;
  segment.base_ = map_fd(fd, expected, name);
  auto* header = reinterpret_cast<Header*>(segment.base_);
  if (header->magic.load(std::memory_order_acquire) != kMagic || header->size != size ||
      header->ring_bytes != ring_bytes) {
    PR_FAIL(kFailedPrecondition, "shared-memory segment ", name, " has a header for ",
            header->size, " ranks and ", header->ring_bytes, "-byte rings, expected ", size,
            " and ", ring_bytes, "; do all ranks run the same petaring build?");
  }
  return segment;
}

Segment& Segment::operator=(Segment&& other) noexcept {
  std::swap(base_, other.base_);
  std::swap(bytes_, other.bytes_);
  std::swap(size_, other.size_);
  std::swap(ring_bytes_, other.ring_bytes_);
  return *this;
}

Segment::~Segment() {
  if (base_ != nullptr) munmap(base_, bytes_);
}

Ring Segment::ring(int source) const {
  PR_CHECK(source >= 0 && source < size_) << "source " << source << " of " << size_;
  char* control = base_ + kHeaderBytes + static_cast<size_t>(source) * (kControlBytes + ring_bytes_);
  auto* head = reinterpret_cast<std::atomic<uint64_t>*>(control);
  auto* tail = reinterpret_cast<std::atomic<uint64_t>*>(control + 64);
  return Ring(head, tail, control + kControlBytes, ring_bytes_);
}

uint64_t Segment::probe_address() const {
  return reinterpret_cast<const Header*>(base_)->probe_address.load(std::memory_order_acquire);
}

void Segment::set_probe_address(uint64_t address) {
  reinterpret_cast<Header*>(base_)->probe_address.store(address, std::memory_order_release);
}

PeerGate* Segment::gate() const { return &reinterpret_cast<Header*>(base_)->gate; }

int64_t Segment::owner_pid() const { return reinterpret_cast<const Header*>(base_)->pid; }

void unlink_segment(const std::string& name) { shm_unlink(name.c_str()); }

std::atomic<uint32_t>* Segment::doorbell() const {
  return &reinterpret_cast<Header*>(base_)->doorbell;
}

std::atomic<uint32_t>* Segment::sleepers() const {
  return &reinterpret_cast<Header*>(base_)->sleepers;
}

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
                  std::atomic<uint32_t>::is_always_lock_free,
              "the doorbell is a futex word");

// Shared (not FUTEX_PRIVATE) futex operations: the words live in memory mapped by
// several processes.
void ring_doorbell(std::atomic<uint32_t>* doorbell, std::atomic<uint32_t>* sleepers) {
  doorbell->fetch_add(1, std::memory_order_seq_cst);
  if (sleepers->load(std::memory_order_seq_cst) == 0) return;
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(doorbell), FUTEX_WAKE, INT32_MAX, nullptr,
          nullptr, 0);
}

void wait_doorbell(std::atomic<uint32_t>* doorbell, uint32_t seen,
                   std::chrono::microseconds at_most) {
  timespec limit{};
  limit.tv_sec = static_cast<time_t>(at_most.count() / 1000000);
  limit.tv_nsec = static_cast<long>(at_most.count() % 1000000) * 1000;
  // Returns at once when the doorbell moved since `seen`; EINTR and timeouts just return.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(doorbell), FUTEX_WAIT, seen, &limit, nullptr,
          0);
}

}  // namespace petaring::shm
