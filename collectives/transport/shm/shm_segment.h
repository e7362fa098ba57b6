// Shared-memory segments and the single-producer single-consumer byte rings inside them
// (internal to the shm transport).
//
// Each rank owns one POSIX shared-memory segment: a header (magic, owner pid, group size,
// ring capacity) followed by one ring per source rank, holding the bytes that source sends
// to the owner. A ring's head (bytes written, producer only) and tail (bytes read, consumer
// only) are monotonic 64-bit counters on separate cache lines; the producer publishes data
// with a release store of head, the consumer frees space with a release store of tail.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collectives/transport/peer_gate.h"
#include "collectives/transport/shm/shm_transport.h"

namespace petaring::shm {

// One direction of one pair of ranks. A view into a mapped segment; does not own memory.
class Ring {
 public:
  Ring() = default;
  Ring(std::atomic<uint64_t>* head, std::atomic<uint64_t>* tail, char* data, size_t capacity)
      : head_(head), tail_(tail), data_(data), capacity_(capacity) {}

  // Producer side: copies up to `bytes` from `source`; returns how many fit (0 when full).
  size_t write(const char* source, size_t bytes);
  // Consumer side: bytes available to read now.
  size_t readable() const;
  // Consumer side: moves up to `bytes` into `target` (or drops them when null); returns how
  // many were taken.
  size_t read(char* target, size_t bytes);
  // Consumer side: the readable bytes at the tail that lie contiguous in the ring (up to
  // its end) and their count, without taking them; consume() then takes `bytes` of them.
  const char* peek(size_t* contiguous) const;
  void consume(size_t bytes);

 private:
  std::atomic<uint64_t>* head_ = nullptr;
  std::atomic<uint64_t>* tail_ = nullptr;
  char* data_ = nullptr;
  size_t capacity_ = 0;
};

// A mapped segment. Move-only; unmaps on destruction (the name is unlinked separately).
class Segment {
 public:
  // Creates and maps the segment `name` ("/petaring-<job>-<rank>") for `size` source ranks
  // with rings of `ring_bytes` (a multiple of 64); fails when the name exists. Writes this
  // process's pid into the header.
  static Segment create(const std::string& name, int size, size_t ring_bytes);
  // Maps an existing segment created by create() with the same `size` and `ring_bytes`.
  static Segment open(const std::string& name, int size, size_t ring_bytes);

  Segment() = default;
  Segment(Segment&& other) noexcept { *this = std::move(other); }
  Segment& operator=(Segment&& other) noexcept;
  ~Segment();

  Ring ring(int source) const;  // the ring holding bytes from `source` to the owner
  int64_t owner_pid() const;
  // The owner's doorbell: a counter that every rank which moves bytes into or out of one
  // of the owner's rings bumps (ring_doorbell), and a waiting owner sleeps on
  // (wait_doorbell) instead of polling. `sleepers` counts owner threads asleep on it.
  std::atomic<uint32_t>* doorbell() const;
  std::atomic<uint32_t>* sleepers() const;
  // The address, in the owner's own memory, of its probe word for cross-memory attach
  // (shm_peer_memory.h); 0 until the owner sets it, before it announces the segment.
  uint64_t probe_address() const;
  void set_probe_address(uint64_t address);
  // The gate on the owner's own memory for peers' cross-memory copies (peer_gate.h).
  PeerGate* gate() const;

 private:
  char* base_ = nullptr;
  size_t bytes_ = 0;
  int size_ = 0;
  size_t ring_bytes_ = 0;
};

// Bumps `doorbell` and wakes its sleepers, if any (a system call only then).
void ring_doorbell(std::atomic<uint32_t>* doorbell, std::atomic<uint32_t>* sleepers);
// Sleeps until `doorbell` differs from `seen` (its value read after this thread counted
// itself in `sleepers` and then found nothing to do), for at most `at_most`.
void wait_doorbell(std::atomic<uint32_t>* doorbell, uint32_t seen,
                   std::chrono::microseconds at_most);

// The transport over `segments` (index: owner rank, every one mapped), once start-up
// (shm_startup.cc) has created, mapped and unlinked them (shm_transport.cc).
// `single_copy`: every rank may read and write every other's memory (the start-up probe
// passed on every rank), so the transport offers PeerMemory.
std::unique_ptr<Transport> make_transport_over(std::vector<Segment> segments, int rank, int size,
                                               const ShmTransportOptions& options,
                                               bool single_copy);

// Removes the name from /dev/shm (mappings stay valid); ignores a name already gone.
void unlink_segment(const std::string& name);

}  // namespace petaring::shm
