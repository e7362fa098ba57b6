#include "collectives/transport/composite_transport.h"

#include <algorithm>

#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring {
namespace {

// Each peer through the peer memory of the part that carries its messages, if it has one.
class CompositePeerMemory : public PeerMemory {
 public:
  // `memories[p]`: the peer memory of p's part (null: none); `in_part[p]`: p's rank there.
  CompositePeerMemory(int rank, std::vector<PeerMemory*> memories, std::vector<int> in_part)
      : rank_(rank), memories_(std::move(memories)), in_part_(std::move(in_part)) {}
  bool reaches(int peer) const override {
    return peer >= 0 && peer < static_cast<int>(memories_.size()) && peer != rank_ &&
           memories_[peer] != nullptr && memories_[peer]->reaches(in_part_[peer]);
  }
  void read(int peer, uint64_t remote, void* local, size_t bytes) override {
    PR_CHECK(reaches(peer)) << "rank " << rank_ << " cannot reach peer " << peer;
    memories_[peer]->read(in_part_[peer], remote, local, bytes);
  }
  void write(int peer, const void* local, uint64_t remote, size_t bytes) override {
    PR_CHECK(reaches(peer)) << "rank " << rank_ << " cannot reach peer " << peer;
    memories_[peer]->write(in_part_[peer], local, remote, bytes);
  }

 private:
  int rank_;
  std::vector<PeerMemory*> memories_;
  std::vector<int> in_part_;
};

class CompositeTransport : public Transport {
 public:
  CompositeTransport(int rank, int size, std::vector<TransportPart> parts, std::vector<int> route,
                     std::string name)
      : rank_(rank), size_(size), parts_(std::move(parts)), route_(std::move(route)),
        name_(std::move(name)), peer_in_part_(static_cast<size_t>(size), -1) {
    PR_CHECK(static_cast<int>(route_.size()) == size) << "one route per rank";
    for (int p = 0; p < size; ++p) {
      int part = route_[p];
      PR_CHECK(part >= 0 && part < static_cast<int>(parts_.size())) << "route of rank " << p;
      const std::vector<int>& ranks = parts_[part].ranks;
      auto found = std::find(ranks.begin(), ranks.end(), p);
      PR_CHECK(found != ranks.end()) << "rank " << p << " is not in its part";
      peer_in_part_[p] = static_cast<int>(found - ranks.begin());
    }
    std::vector<PeerMemory*> memories;
    bool any = false;
    for (int p = 0; p < size; ++p) {
      memories.push_back(parts_[route_[p]].transport->peer_memory());
      any = any || (p != rank && memories.back() != nullptr);
    }
    if (any) memory_ = std::make_unique<CompositePeerMemory>(rank, std::move(memories), peer_in_part_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return name_; }
  size_t min_segment_bytes() const override {  // a ring may cross every kind of link
    size_t most = 0;
    for (const TransportPart& part : parts_) most = std::max(most, part.transport->min_segment_bytes());
    return most;
  }
  std::unique_ptr<Request> isend(int peer, const void* data, size_t bytes,
                                 uint64_t tag) override {
    return part(peer).isend(peer_in_part_[peer], data, bytes, tag);
  }
  std::unique_ptr<Request> irecv(int peer, void* data, size_t bytes, uint64_t tag) override {
    return part(peer).irecv(peer_in_part_[peer], data, bytes, tag);
  }
  std::unique_ptr<Request> irecv_reduce(int peer, void* data, size_t bytes, uint64_t tag,
                                        DType dtype, ReduceOp op) override {
    return part(peer).irecv_reduce(peer_in_part_[peer], data, bytes, tag, dtype, op);
  }
  bool reduces_on_receive() const override {  // every part that carries a peer's messages
    for (int p = 0; p < size_; ++p) {
      if (p != rank_ && !parts_[route_[p]].transport->reduces_on_receive()) return false;
    }
    return true;
  }
  PeerMemory* peer_memory() override { return memory_.get(); }
  void abort() override {
    for (TransportPart& part : parts_) part.transport->abort();
  }

 private:
  Transport& part(int peer) {
    PR_CHECK(peer >= 0 && peer < size_) << "peer " << peer << " outside a group of " << size_;
    return *parts_[route_[peer]].transport;
  }

  int rank_, size_;
  std::vector<TransportPart> parts_;
  std::vector<int> route_;
  std::string name_;
  std::vector<int> peer_in_part_;
  std::unique_ptr<CompositePeerMemory> memory_;
};

}  // namespace

std::unique_ptr<Transport> make_composite_transport(int rank, int size,
                                                    std::vector<TransportPart> parts,
                                                    std::vector<int> route, std::string name) {
  return std::make_unique<CompositeTransport>(rank, size, std::move(parts), std::move(route),
                                              std::move(name));
}

}  // namespace petaring
