// The collectives layer, read this first.
//   ReduceOp       how values combine (reduce.h: sum, average, max, min; per-dtype rules)
//   Communicator   a group of ranks: rank(), size(), the collectives, send/recv
// make_world_communicator() (bootstrap.h) picks the transport: MPI under mpirun, TCP for
// ranks started by `petaring launch`, or a single-rank group when the process runs alone.
// Algorithms, one per file: ring.h and recursive_doubling.h (allreduce, large and small
// messages), direct.h (single copy where ranks reach each other's memory), reduce_scatter.h, allgather.h, broadcast.h, barrier.h; signature.h checks
// that ranks agree on each call. Transports: transport/local, transport/mpi, transport/tcp.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collectives/reduce.h"
#include "collectives/transport.h"
#include "runtime/dtype.h"

namespace petaring {

struct CollectiveSignature;

// The handle of an operation issued with one of Communicator's *_async calls. Any thread
// may call wait() and test(), any number of times, also after the communicator is gone.
class Work {
 public:
  // Blocks until the operation has finished; then rethrows its error, if it failed (on
  // every call). The operation's own waits carry the communicator's timeout, so this
  // returns or throws within that timeout of the last progress.
  void wait();
  // Non-blocking: true once the operation has finished, successfully or not (wait() then
  // returns or throws at once). Never throws.
  bool test();

  // Marks the operation finished with `error` (null: success). Internal to Communicator.
  void finish(std::exception_ptr error);

 private:
  std::mutex mutex_;
  std::condition_variable finished_;
  bool done_ = false;
  std::exception_ptr error_;
};

class Communicator {
 public:
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  // The communicator owns its transport.
  explicit Communicator(std::unique_ptr<Transport> transport);
  ~Communicator();

  int rank() const { return transport_->rank(); }
  int size() const { return transport_->size(); }
  Transport& transport() { return *transport_; }

  // Collectives. The plain calls are blocking, over host memory, and every rank of the group must make
  // the same calls in the same order with the same counts, dtypes, ops and roots; ranks
  // that disagree all get kFailedPrecondition naming two of them and their calls
  // (signature.h), never a hang. Reductions take f32, bf16, f16 (f32 arithmetic, rounded
  // back at every combine), i32 and i64 (exact; average is kInvalidArgument): reduce.h.
  // Results are bit-identical on every rank (ring.h and recursive_doubling.h document the
  // order of combination of each allreduce algorithm).

  // Allreduce picks its algorithm by the call's size in bytes (count * dtype size):
  // recursive doubling (recursive_doubling.h: about log2 n messages of the whole buffer)
  // up to small_message_threshold() bytes; above, the direct allreduce (direct.h: one
  // copy per byte between the ranks' own buffers) when the transport reaches every peer's
  // memory (ranks as threads, or shm with cross-memory attach; set_single_copy), else the ring (ring.h:
  // 2 (n - 1) messages of a chunk each). reduce_scatter and allgather run direct.h's
  // versions under the same conditions (their whole buffer, n blocks, above the
  // threshold; below it the ring's two rounds of messages per peer cost less), the ring's
  // otherwise. The two round differently, so every rank must use the same
  // threshold (not checked: ranks that differ fail with kTimeout or a size mismatch).
  // 0 sends every non-empty allreduce through the ring. The default was measured with
  // `petaring bench allreduce --baseline mpi` at 2 to 4 ranks (docs/benchmarks.md:
  // recursive doubling is faster than the ring up to 32 KiB at every size measured); the
  // environment variable PETARING_SMALL_MESSAGE_THRESHOLD (bytes, read by the
  // constructor) overrides it, set_small_message_threshold overrides both.
  static constexpr size_t kDefaultSmallMessageThreshold = 32 * 1024;
  void set_small_message_threshold(size_t bytes);
  size_t small_message_threshold() const { return small_message_threshold_; }
  // The allreduce algorithm for a call of `bytes`: "recursive-doubling", "direct",
  // "ring" or "hierarchical".
  const char* allreduce_algorithm(size_t bytes) const;
  // The reduce_scatter and allgather algorithm for a call whose whole buffer (n blocks)
  // holds `bytes`: "direct" or "ring".
  const char* block_algorithm(size_t bytes) const;

  // Hosts and the hierarchical allreduce (hierarchical.h). init_hosts is collective: every
  // rank passes the name of its host (empty: the environment variable PETARING_HOST_ID,
  // else gethostname(); tests fake hosts with it) and learns everyone's; when every host
  // holds the same number of ranks it also builds the intra-host and inter-host groups
  // (Transport::split). make_world_communicator calls it. Above the small-message
  // threshold, allreduce then runs hierarchically when the mode says so: kAuto (default)
  // when there are several hosts with several ranks each, kOn always (kFailedPrecondition
  // when the hosts hold different numbers of ranks, or before init_hosts), kOff never.
  // PETARING_HIERARCHICAL=auto|on|off (read by the constructor) sets the mode, as does
  // set_hierarchical; every rank must use the same mode.
  enum class Hierarchical { kAuto, kOn, kOff };
  void init_hosts(const std::string& host = "");
  void set_hierarchical(Hierarchical mode) { hierarchical_ = mode; }
  int num_hosts() const { return num_hosts_; }    // 1 before init_hosts
  int local_size() const { return local_size_; }  // ranks per host; 0 when uneven

  // In place: data holds count values of dtype; afterwards the reduction over all ranks.
  void allreduce(void* data, size_t count, DType dtype, ReduceOp op);
  // Out of place: recv = reduction of every rank's send (count values each). send == recv
  // is the in-place call; other overlaps are not allowed. send is only read.
  void allreduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op);
  // send holds size() * recv_count values; rank r receives block r (values
  // [r * recv_count, (r + 1) * recv_count)) reduced over all ranks. recv must not overlap send.
  void reduce_scatter(const void* send, void* recv, size_t recv_count, DType dtype, ReduceOp op);
  // recv receives size() * send_count values, block b being rank b's send. send may be
  // recv + rank() * send_count (in place); no other overlap.
  void allgather(const void* send, void* recv, size_t send_count, DType dtype);
  // Copies `bytes` from `root` to every rank, in place.
  void broadcast(void* data, size_t bytes, int root);
  void barrier();

  // Sub-groups (tensor- and data-parallel groups). Collective over this communicator (every
  // rank calls it, in issue order with its other calls): the ranks passing the same color
  // (>= 0) form one new communicator, ranked by (key, rank here); a negative color
  // (kNoColor) returns null. The result shares this communicator's transport
  // (Transport::split: the same connections with a tag space of its own; MPI:
  // MPI_Comm_split), inherits its timeout, threshold and signature setting, and must not
  // outlive it. This communicator and its sub-communicators may run operations at the same
  // time, each from its own issuing thread; within one communicator the rules below hold.
  static constexpr int kNoColor = -1;
  std::unique_ptr<Communicator> split(int color, int key);

  // Asynchronous forms: they return at once with a Work handle; the operation runs on the
  // communicator's progress thread (started at the first *_async call). Every operation of
  // a communicator, asynchronous or blocking, collective or point to point, runs in the
  // order it was issued, one at a time: a blocking call issued while asynchronous work is
  // outstanding waits behind it (with none outstanding it runs on the calling thread, at
  // the blocking path's speed). The buffers belong to the operation until its Work has
  // finished: do not write send buffers or read/write receive buffers before test() is
  // true or wait() returned. Errors (including argument errors) come out of wait().
  //
  // Threads: issue calls (every collective, send/recv, split, the setters) from one thread
  // at a time: the order of issue is the order of execution, and it must be the same on
  // every rank. Work::wait/test may be called from any thread; abort() from any thread at
  // any time. Change settings (set_timeout, ...) only while no work is outstanding.
  std::shared_ptr<Work> allreduce_async(void* data, size_t count, DType dtype, ReduceOp op);
  std::shared_ptr<Work> allreduce_async(const void* send, void* recv, size_t count,
                                        DType dtype, ReduceOp op);
  std::shared_ptr<Work> reduce_scatter_async(const void* send, void* recv, size_t recv_count,
                                             DType dtype, ReduceOp op);
  std::shared_ptr<Work> allgather_async(const void* send, void* recv, size_t send_count,
                                        DType dtype);
  std::shared_ptr<Work> broadcast_async(void* data, size_t bytes, int root);
  std::shared_ptr<Work> barrier_async();

  // Unblocks and fails every pending operation: the running one throws
  // kFailedPrecondition ("aborted") out of its current wait, queued ones finish with that
  // error without running, and every later call fails at once (a running direct
  // collective, direct.h, stops between pieces; once abort() returns no peer copies into
  // or out of this rank's buffers). Irreversible; also aborts
  // the transport (Transport::abort), so other communicators on it fail too. For tearing a
  // job down after an error elsewhere (a watchdog, another thread's failure). Any thread.
  void abort();
  bool aborted() const { return aborted_.load(); }

  // Point to point, outside the collectives' sequence. Blocking: send returns when `data`
  // may be reused (it may wait for the peer's recv), recv when the bytes have arrived. The
  // k-th send from a to b pairs with the k-th recv on b from a (each ordered pair counts
  // its own calls, carried in the tag); both must name the same byte count. Errors
  // (timeout, size mismatch, dead peer) name the peer and the call's number.
  void send(const void* data, size_t bytes, int peer);
  void recv(void* data, size_t bytes, int peer);

  // Every collective call takes the next sequence number as its tag, so calls never mix
  // messages. How long any wait may go without progress before it throws kTimeout
  // (naming the peer). The default is kDefaultTimeout; the environment variable
  // PETARING_COLLECTIVE_TIMEOUT (seconds, e.g. "30" or "2.5", read by the constructor)
  // overrides it, set_timeout overrides both.
  static constexpr std::chrono::milliseconds kDefaultTimeout{std::chrono::minutes(5)};
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // The signature check (on by default) costs ceil(log2 size()) small messages per call;
  // turning it off is for measuring that cost. Every rank must use the same setting.
  void set_check_signatures(bool check) { check_signatures_ = check; }
  // The direct collectives (direct.h) run wherever the transport reaches every peer's
  // memory, unless this is off (then the ring does): for comparing the two, and for
  // tests of the ring. The environment variable PETARING_SINGLE_COPY=0|1 (read by the
  // constructor) sets it too. Every rank must use the same setting.
  void set_single_copy(bool on) { single_copy_ = on; }

 private:
  // Takes the next sequence number and, when enabled, checks `signature` (whose sequence
  // it fills in) against every rank's. Returns the call's tag. With `check_later`, the
  // check is not run but stored in `*check_later` (a no-op when checks are off), for the
  // algorithm to run once its first message is on its way (recursive_doubling.h).
  uint64_t begin_collective(CollectiveSignature signature,
                            std::function<void()>* check_later = nullptr);
  // A group id for the next sub-group of this communicator (split(), init_hosts()).
  uint64_t next_group_id(int color);
  bool use_hierarchical(size_t bytes) const;
  bool use_direct() const;  // single copy on and the transport reaches every peer
  // reduce_scatter / allgather over a whole buffer of `bytes`: direct (else the ring).
  bool use_direct_blocks(size_t bytes) const;
  void check_peer(int peer, const char* what) const;

  // The bodies of the collectives, run in issue order (on the caller or the progress thread).
  void run_allreduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op);
  void run_reduce_scatter(const void* send, void* recv, size_t recv_count, DType dtype,
                          ReduceOp op);
  void run_allgather(const void* send, void* recv, size_t send_count, DType dtype);
  void run_broadcast(void* data, size_t bytes, int root);
  void run_barrier();
  void run_send(const void* data, size_t bytes, int peer);
  void run_recv(void* data, size_t bytes, int peer);

  // Runs `body` in issue order: on this thread when nothing is outstanding, else queued
  // behind the outstanding work (and waited for). Defined in communicator.cc.
  template <typename Body>
  void run_in_order(Body&& body);
  std::shared_ptr<Work> enqueue(std::function<void()> body);
  void progress_loop();
  void throw_if_aborted() const;

  std::unique_ptr<Transport> transport_;
  uint64_t group_id_ = 0;      // 0 for a world communicator; split() derives its children's
  uint64_t split_count_ = 0;   // split() calls so far, the same on every rank
  std::chrono::milliseconds timeout_{kDefaultTimeout};
  Hierarchical hierarchical_ = Hierarchical::kAuto;
  bool hosts_known_ = false;
  std::string host_;  // this rank's host name, once init_hosts ran
  int num_hosts_ = 1;
  int local_size_ = 0;
  std::unique_ptr<Transport> intra_host_;  // this rank's host, by local rank
  std::unique_ptr<Transport> inter_host_;  // this local rank on every host, by host
  uint64_t sequence_ = 0;  // one per collective call, the same on every rank
  bool check_signatures_ = true;
  bool single_copy_ = true;
  size_t small_message_threshold_ = kDefaultSmallMessageThreshold;
  bool logged_allreduce_choice_ = false;  // logged at the first allreduce only
  std::vector<uint64_t> sends_to_;      // point-to-point calls per peer
  std::vector<uint64_t> receives_from_;

  // Asynchronous work. outstanding_ counts queued plus running operations.
  struct Job {
    std::function<void()> body;
    std::shared_ptr<Work> work;
  };
  std::mutex queue_mutex_;
  std::condition_variable queue_changed_;
  std::deque<Job> queue_;
  size_t outstanding_ = 0;
  bool stopping_ = false;
  std::atomic<bool> aborted_{false};
  std::thread progress_;
};

}  // namespace petaring
