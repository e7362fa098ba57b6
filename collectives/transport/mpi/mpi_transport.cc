#include "collectives/transport/mpi/mpi_transport.h"

#include <algorithm>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring {

std::mutex& mpi_call_mutex() {
  static std::mutex mutex;
  return mutex;
}

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return str_cat("MPI error ", code);
  return std::string(text, static_cast<size_t>(length));
}

namespace {

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

std::mutex& mpi_mutex() { return mpi_call_mutex(); }

// One send or receive, as one MPI request per piece.
class MpiRequest : public Request {
 public:
  MpiRequest(bool is_send, int rank, int peer, size_t bytes, uint64_t tag,
             const MpiTransportOptions& options, const std::atomic<bool>* aborted)
      : is_send_(is_send), rank_(rank), peer_(peer), bytes_(bytes), tag_(tag), options_(options),
        aborted_(aborted) {}

  ~MpiRequest() override {
    std::lock_guard<std::mutex> lock(mpi_mutex());
    if (pending_ == 0 || mpi_finalized()) return;
    // Abandoned (an error unwound past it): receives are cancelled so MPI stops writing
    // into their buffer; sends can only be released.
    for (MPI_Request& piece : pieces_) {
      if (piece == MPI_REQUEST_NULL) continue;
      if (!is_send_) {
        MPI_Cancel(&piece);
        MPI_Wait(&piece, MPI_STATUS_IGNORE);
      } else {
        MPI_Request_free(&piece);
      }
    }
  }

  // Posts MPI_Isend or MPI_Irecv for each piece of the buffer.
  void post(char* data, int mpi_tag, MPI_Comm comm) {
    std::lock_guard<std::mutex> lock(mpi_mutex());
    size_t left = bytes_;
    do {  // a zero-byte message is still one message
      size_t piece = std::min(left, options_.max_piece_bytes);
      MPI_Request handle = MPI_REQUEST_NULL;
      int code = is_send_ ? MPI_Isend(data, static_cast<int>(piece), MPI_BYTE, peer_, mpi_tag,
                                      comm, &handle)
                          : MPI_Irecv(data, static_cast<int>(piece), MPI_BYTE, peer_, mpi_tag,
                                      comm, &handle);
      if (code != MPI_SUCCESS) fail(is_send_ ? "MPI_Isend" : "MPI_Irecv", code);
      pieces_.push_back(handle);
      sizes_.push_back(static_cast<int>(piece));
      ++pending_;
      data += piece;
      left -= piece;
    } while (left > 0);
  }

  bool test() override {
    if (aborted_->load(std::memory_order_relaxed)) {
      throw Error(ErrorKind::kFailedPrecondition, transport_aborted_message(rank_, peer_, "mpi"));
    }
    std::lock_guard<std::mutex> lock(mpi_mutex());
    for (size_t i = 0; i < pieces_.size(); ++i) {
      if (pieces_[i] == MPI_REQUEST_NULL) continue;
      int done = 0;
      MPI_Status status;
      int code = MPI_Test(&pieces_[i], &done, &status);
      if (code != MPI_SUCCESS) fail("MPI_Test", code);
      if (!done) continue;
      --pending_;
      int received = sizes_[i];
      if (!is_send_) MPI_Get_count(&status, MPI_BYTE, &received);
      if (received != sizes_[i]) {
        PR_FAIL(kFailedPrecondition, "rank ", rank_, " expected ", sizes_[i], " bytes from rank ",
                peer_, " (tag ", tag_, ") but ", received,
                " arrived; the ranks are not calling the same collective with the same sizes");
      }
    }
    return pending_ == 0;
  }

  void wait(std::chrono::milliseconds timeout) override {
    using Clock = std::chrono::steady_clock;
    auto last_progress = Clock::now();
    int polls = 0;
    std::chrono::microseconds sleep{1};
    int seen_pending = pending_;
    while (!test()) {
      if (pending_ != seen_pending) {  // a piece completed: progress
        seen_pending = pending_;
        last_progress = Clock::now();
        polls = 0;
        sleep = std::chrono::microseconds(1);
      }
      if (++polls <= options_.spin_polls) continue;
      auto idle = Clock::now() - last_progress;
      if (idle < options_.yield_window) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(sleep);
        sleep = std::min(sleep * 2, options_.max_sleep);
      }
      if (idle > timeout) {
        PR_FAIL(kTimeout, "rank ", rank_, ": ", verb(), " rank ", peer_, " (", bytes_,
                " bytes, tag ", tag_, ") made no progress for ", timeout.count(),
                " ms; is rank ", peer_, " alive and calling the same collective? (mpi transport)");
      }
    }
  }

 private:
  const char* verb() const { return is_send_ ? "send to" : "receive from"; }

  [[noreturn]] void fail(const char* call, int code) const {
    int error_class = 0;
    MPI_Error_class(code, &error_class);
    std::string what = str_cat("rank ", rank_, ": ", call, " (", verb(), " rank ", peer_, ", ",
                               bytes_, " bytes, tag ", tag_, ") failed: ", mpi_error_text(code));
    if (error_class == MPI_ERR_TRUNCATE) {
      throw Error(ErrorKind::kFailedPrecondition,
                  what + "; the ranks are not calling the same collective with the same sizes");
    }
    throw Error(ErrorKind::kDisconnected,
                str_cat(what, "; rank ", peer_, " may have died, look for its error above"));
  }

  bool is_send_;
  int rank_, peer_;
  size_t bytes_;
  uint64_t tag_;
  MpiTransportOptions options_;
  std::vector<MPI_Request> pieces_;
  std::vector<int> sizes_;
  int pending_ = 0;
  const std::atomic<bool>* aborted_;
};

}  // namespace

MpiTransport::MpiTransport(MPI_Comm comm, MpiTransportOptions options, bool finalize_mpi)
    : options_(options), finalize_mpi_(finalize_mpi) {
  PR_CHECK(options_.max_piece_bytes >= 1 && options_.max_piece_bytes <= size_t{INT_MAX})
      << "max_piece_bytes " << options_.max_piece_bytes;
  std::lock_guard<std::mutex> lock(mpi_mutex());
  int code = MPI_Comm_dup(comm, &comm_);
  if (code != MPI_SUCCESS) PR_FAIL(kInternal, "MPI_Comm_dup failed: ", mpi_error_text(code));
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  int* upper_bound = nullptr;
  int found = 0;
  MPI_Comm_get_attr(comm_, MPI_TAG_UB, &upper_bound, &found);
  if (found && upper_bound != nullptr) tag_upper_bound_ = *upper_bound;
}

MpiTransport::~MpiTransport() {
  std::lock_guard<std::mutex> lock(mpi_mutex());
  if (mpi_finalized()) return;
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  if (finalize_mpi_) MPI_Finalize();
}

int MpiTransport::mpi_tag(uint64_t tag) const {
  // Tags wrap after tag_upper_bound_ + 1 collectives; by then the old ones are long done.
  return static_cast<int>(tag % (static_cast<uint64_t>(tag_upper_bound_) + 1));
}

void MpiTransport::check_peer(int peer) const {
  PR_CHECK(peer >= 0 && peer < size_) << "peer " << peer << " outside a group of " << size_;
}

std::unique_ptr<Request> MpiTransport::isend(int peer, const void* data, size_t bytes,
                                             uint64_t tag) {
  check_peer(peer);
  auto request = std::make_unique<MpiRequest>(true, rank_, peer, bytes, tag, options_, &aborted_);
  // post() serves both directions; MPI_Isend only reads the buffer.
  request->post(static_cast<char*>(const_cast<void*>(data)), mpi_tag(tag), comm_);
  return request;
}

std::unique_ptr<Transport> MpiTransport::split(const std::vector<int>& members,
                                              uint64_t /*group_id*/, int color, int key) {
  MPI_Comm sub = MPI_COMM_NULL;
  {
    std::lock_guard<std::mutex> lock(mpi_mutex());
    int code = MPI_Comm_split(comm_, members.empty() ? MPI_UNDEFINED : color, key, &sub);
    if (code != MPI_SUCCESS) PR_FAIL(kInternal, "MPI_Comm_split failed: ", mpi_error_text(code));
  }
  if (sub == MPI_COMM_NULL) return nullptr;
  auto transport = std::make_unique<MpiTransport>(sub, options_);
  std::lock_guard<std::mutex> lock(mpi_mutex());
  MPI_Comm_free(&sub);
  PR_CHECK(transport->size() == static_cast<int>(members.size()))
      << "MPI_Comm_split made a group of " << transport->size() << ", expected " << members.size();
  return transport;
}

std::unique_ptr<Request> MpiTransport::irecv(int peer, void* data, size_t bytes, uint64_t tag) {
  check_peer(peer);
  auto request = std::make_unique<MpiRequest>(false, rank_, peer, bytes, tag, options_, &aborted_);
  request->post(static_cast<char*>(data), mpi_tag(tag), comm_);
  return request;
}

}  // namespace petaring
