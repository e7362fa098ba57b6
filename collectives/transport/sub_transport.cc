#include "collectives/transport/sub_transport.h"

#include <algorithm>

#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring {
namespace {

constexpr uint64_t kCallerTagLimit = uint64_t{1} << 32;

// The root's peer memory, addressed by sub-group rank.
class SubPeerMemory : public PeerMemory {
 public:
  SubPeerMemory(PeerMemory& root, const std::vector<int>& members) : root_(root), members_(members) {}
  bool reaches(int peer) const override {
    return peer >= 0 && peer < static_cast<int>(members_.size()) && root_.reaches(members_[peer]);
  }
  void read(int peer, uint64_t remote, void* local, size_t bytes) override {
    root_.read(member(peer), remote, local, bytes);
  }
  void write(int peer, const void* local, uint64_t remote, size_t bytes) override {
    root_.write(member(peer), local, remote, bytes);
  }

 private:
  int member(int peer) const {
    PR_CHECK(peer >= 0 && peer < static_cast<int>(members_.size())) << "peer " << peer;
    return members_[static_cast<size_t>(peer)];
  }
  PeerMemory& root_;
  const std::vector<int>& members_;
};

class SubTransport : public Transport {
 public:
  SubTransport(Transport& root, std::vector<int> members, uint64_t group_id)
      : root_(root), members_(std::move(members)), group_id_(group_id) {
    PR_CHECK(group_id_ > 0 && group_id_ < (uint64_t{1} << 31)) << "group id " << group_id_;
    auto mine = std::find(members_.begin(), members_.end(), root_.rank());
    PR_CHECK(mine != members_.end()) << "root rank " << root_.rank() << " is not a member";
    rank_ = static_cast<int>(mine - members_.begin());
    if (PeerMemory* root_memory = root_.peer_memory()) {
      memory_ = std::make_unique<SubPeerMemory>(*root_memory, members_);
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(members_.size()); }
  std::string name() const override { return root_.name(); }
  size_t min_segment_bytes() const override { return root_.min_segment_bytes(); }

  std::unique_ptr<Request> isend(int peer, const void* data, size_t bytes,
                                 uint64_t tag) override {
    return root_.isend(root_rank(peer), data, bytes, root_tag(tag));
  }
  std::unique_ptr<Request> irecv_reduce(int peer, void* data, size_t bytes, uint64_t tag,
                                        DType dtype, ReduceOp op) override {
    return root_.irecv_reduce(root_rank(peer), data, bytes, root_tag(tag), dtype, op);
  }
  bool reduces_on_receive() const override { return root_.reduces_on_receive(); }
  PeerMemory* peer_memory() override { return memory_.get(); }
  std::unique_ptr<Request> irecv(int peer, void* data, size_t bytes, uint64_t tag) override {
    return root_.irecv(root_rank(peer), data, bytes, root_tag(tag));
  }
  void abort() override { root_.abort(); }

  std::unique_ptr<Transport> split(const std::vector<int>& members, uint64_t group_id, int color,
                                   int key) override {
    if (members.empty()) return nullptr;
    std::vector<int> root_members;
    for (int member : members) root_members.push_back(root_rank(member));
    return make_sub_transport(root_, std::move(root_members), group_id);
  }

 private:
  int root_rank(int peer) const {
    PR_CHECK(peer >= 0 && peer < size()) << "peer " << peer << " outside a group of " << size();
    return members_[static_cast<size_t>(peer)];
  }
  uint64_t root_tag(uint64_t tag) const {
    PR_CHECK(tag < kCallerTagLimit) << "tag " << tag << " uses the sub-group bits";
    return (group_id_ << 32) | tag;
  }

  Transport& root_;
  std::vector<int> members_;
  uint64_t group_id_;
  int rank_ = 0;
  std::unique_ptr<SubPeerMemory> memory_;  // refers to members_
};

}  // namespace

std::unique_ptr<Transport> Transport::split(const std::vector<int>& members, uint64_t group_id,
                                            int /*color*/, int /*key*/) {
  if (members.empty()) return nullptr;
  return make_sub_transport(*this, members, group_id);
}

std::unique_ptr<Transport> make_sub_transport(Transport& root, std::vector<int> members,
                                              uint64_t group_id) {
  return std::make_unique<SubTransport>(root, std::move(members), group_id);
}

}  // namespace petaring
