#include "collectives/transport/composite_transport.h"

#include <algorithm>

#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring {
namespace {

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
};

}  // namespace

std::unique_ptr<Transport> make_composite_transport(int rank, int size,
                                                    std::vector<TransportPart> parts,
                                                    std::vector<int> route, std::string name) {
  return std::make_unique<CompositeTransport>(rank, size, std::move(parts), std::move(route),
                                              std::move(name));
}

}  // namespace petaring
