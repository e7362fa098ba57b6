#include "collectives/direct.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>
#include <memory>
#include <utility>
#include <vector>

#include "collectives/buffer_checks.h"
#include "collectives/ring.h"
#include "collectives/scratch.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring {
namespace {

struct AddressRecord {
  uint64_t send = 0;
  uint64_t recv = 0;
  uint64_t bytes = 0;  // the call's size as this rank sees it (checked before any copy)
};

uint64_t address_of(const void* pointer) { return reinterpret_cast<uint64_t>(pointer); }

PeerMemory& require_peer_memory(Transport& transport, const char* what) {
  PeerMemory* memory = peer_memory_of_all(transport);
  if (memory == nullptr) {
    PR_FAIL(kFailedPrecondition, "rank ", transport.rank(), ": the direct ", what, " needs ",
            "access to every peer's memory, which the ", transport.name(), " transport does ",
            "not offer here; use the ring (ring.h) instead");
  }
  return *memory;
}

// Sends `mine` to every peer and returns every rank's record (index: rank; this rank's is
// `mine`). `hook`, when set, runs once everything is posted and before any wait.
template <typename Record>
std::vector<Record> swap_with_every_peer(Transport& transport, const Record& mine,
                                         const DirectOptions& options,
                                         const std::function<void()>& hook) {
  const int n = transport.size(), r = transport.rank();
  std::vector<Record> records(static_cast<size_t>(n));
  records[static_cast<size_t>(r)] = mine;
  std::vector<std::unique_ptr<Request>> requests;
  for (int hop = 1; hop < n; ++hop) {
    const int peer = (r + n - hop) % n;
    requests.push_back(transport.irecv(peer, &records[static_cast<size_t>(peer)], sizeof(Record),
                                       options.tag));
  }
  for (int hop = 1; hop < n; ++hop) {
    requests.push_back(transport.isend((r + hop) % n, &mine, sizeof(Record), options.tag));
  }
  if (hook) hook();
  for (auto& request : requests) request->wait(options.timeout);
  return records;
}

// What a rank tells every peer at the end (step 3): kind 0 when it is done with their
// buffers, else the kind and text of its error (cut to fit), so that a peer can report
// the cause (a dead rank and its host) and not only the rank that saw it.
struct Status {
  uint32_t kind = 0;  // 0: done; else 1 + ErrorKind
  char message[508] = {};
};

Status status_of(std::exception_ptr error) {
  Status status;
  status.kind = 1 + static_cast<uint32_t>(ErrorKind::kInternal);
  std::string text = "unknown error";
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    status.kind = 1 + static_cast<uint32_t>(e.kind());
    text = e.what();
  } catch (const std::exception& e) {
    text = e.what();
  } catch (...) {
  }
  std::memcpy(status.message, text.data(), std::min(text.size(), sizeof(status.message) - 1));
  return status;
}

// Step 3: tells every peer `mine` and waits for theirs; throws when a peer failed.
void exchange_status(Transport& transport, const Status& mine, const DirectOptions& options,
                     const char* what) {
  const int n = transport.size(), r = transport.rank();
  std::vector<Status> statuses = swap_with_every_peer(transport, mine, options, nullptr);
  for (int hop = 1; hop < n; ++hop) {
    const int peer = (r + n - hop) % n;
    const Status& status = statuses[static_cast<size_t>(peer)];
    if (status.kind != 0) {
      const uint32_t kind = std::min(status.kind - 1, static_cast<uint32_t>(ErrorKind::kInternal));
      throw Error(static_cast<ErrorKind>(kind),
                  str_cat("rank ", r, ": rank ", peer, " failed during the direct ", what,
                          " (tag ", options.tag, "): ",
                          std::string(status.message, strnlen(status.message, sizeof(status.message)))));
    }
  }
}

// Steps 1-3 around `work` (step 2), which gets every rank's address record. A failure in
// step 2 is still announced and waited out (see direct.h), then rethrown.
template <typename Work>
void run_direct(Transport& transport, const AddressRecord& mine, const DirectOptions& options,
                const char* what, Work&& work) {
  // Step 1: every rank's address record (the signature check runs while they travel).
  std::vector<AddressRecord> records =
      swap_with_every_peer(transport, mine, options, options.before_first_wait);
  try {
    // Ranks that disagree on the size must not touch each other's memory, also when the
    // signature check is off: every rank compares every record with its own.
    for (int p = 0; p < transport.size(); ++p) {
      if (records[static_cast<size_t>(p)].bytes != mine.bytes) {
        PR_FAIL(kFailedPrecondition, "rank ", transport.rank(), ": rank ", p, " called the direct ",
                what, " (tag ", options.tag, ") with ", records[static_cast<size_t>(p)].bytes,
                " bytes, this rank with ", mine.bytes, "; every rank must pass the same count ",
                "and dtype");
      }
    }
    work(records);
  } catch (...) {
    std::exception_ptr error = std::current_exception();
    try {
      exchange_status(transport, status_of(error), options, what);
    } catch (...) {
      // The first error is the one to report (a peer may well have failed the same way).
    }
    std::rethrow_exception(error);
  }
  exchange_status(transport, Status{}, options, what);
}

void throw_if_aborted(const DirectOptions& options, int rank, const char* what) {
  if (options.aborted != nullptr && options.aborted->load(std::memory_order_relaxed)) {
    PR_FAIL(kFailedPrecondition, "rank ", rank, ": the communicator was aborted during the ",
            "direct ", what, "; look for the error that made this rank abort");
  }
}

size_t piece_elements(const DirectOptions& options, size_t element_bytes) {
  const size_t bytes = options.piece_bytes > 0 ? options.piece_bytes : kDefaultDirectPieceBytes;
  return std::max<size_t>(1, bytes / element_bytes);
}

// Combines a piece of this rank's block over every rank, in the ring's order, into `out`:
// the peers' values are read from their memory (reduce()'s `remote`), this rank's come
// from `own` (which may be `out` itself).
class BlockReducer {
 public:
  // `piece`: the most elements of one reduce() call.
  BlockReducer(PeerMemory& memory, int n, int r, DType dtype, ReduceOp op, size_t piece)
      : memory_(memory), n_(n), r_(r), dtype_(dtype), op_(op), element_bytes_(dtype_size(dtype)),
        piece_(piece) {
    // Two pieces of per-thread scratch (scratch.h): a fresh allocation would fault its
    // pages in on every call (~15 % of a 1 MiB allreduce).
    const size_t piece_bytes = (piece * element_bytes_ + 63) / 64 * 64;
    acc_ = thread_scratch(2 * piece_bytes);
    incoming_ = acc_ + piece_bytes;
  }

  // reduce() over `count` values in pieces: rank p's are at records[p].send +
  // `remote_offset` (bytes), this rank's at `own`, the result goes to `out`; after each
  // piece, after_piece(byte offset of the piece, its bytes). Checks for an abort before
  // every piece (`options`, `what`: throw_if_aborted).
  template <typename AfterPiece>
  void reduce_all(const std::vector<AddressRecord>& records, uint64_t remote_offset,
                  const char* own, char* out, size_t count, const DirectOptions& options,
                  const char* what, AfterPiece&& after_piece) {
    std::vector<uint64_t> remote(static_cast<size_t>(n_));
    for (size_t begin = 0; begin < count; begin += piece_) {
      throw_if_aborted(options, r_, what);
      const size_t elements = std::min(piece_, count - begin), offset = begin * element_bytes_;
      for (int p = 0; p < n_; ++p) {
        remote[static_cast<size_t>(p)] = records[static_cast<size_t>(p)].send + remote_offset + offset;
      }
      reduce(remote, own + offset, out + offset, elements);
      after_piece(offset, elements * element_bytes_);
    }
  }

  // `remote[p]`: the address of these elements in rank p's send buffer.
  void reduce(const std::vector<uint64_t>& remote, const char* own, char* out, size_t count) {
    const size_t bytes = count * element_bytes_;
    char* acc = acc_;
    char* incoming = incoming_;
    const int first = (r_ + 1) % n_;
    memory_.read(first, remote[static_cast<size_t>(first)], acc, bytes);
    for (int hop = 2; hop < n_; ++hop) {
      const int source = (r_ + hop) % n_;
      memory_.read(source, remote[static_cast<size_t>(source)], incoming, bytes);
      reduce_into(incoming, acc, count, dtype_, op_);  // x[source] (op) acc, as the ring
      std::swap(acc, incoming);
    }
    if (out != own) std::memcpy(out, own, bytes);
    reduce_into(out, acc, count, dtype_, op_);
    if (op_ == ReduceOp::kAverage) average_in_place(out, count, dtype_, n_);
  }

 private:
  PeerMemory& memory_;
  int n_, r_;
  DType dtype_;
  ReduceOp op_;
  size_t element_bytes_;
  size_t piece_;
  char* acc_;  // into the thread's scratch
  char* incoming_;
};

}  // namespace

PeerMemory* peer_memory_of_all(Transport& transport) {
  PeerMemory* memory = transport.peer_memory();
  if (memory == nullptr) return nullptr;
  for (int peer = 0; peer < transport.size(); ++peer) {
    if (peer != transport.rank() && !memory->reaches(peer)) return nullptr;
  }
  return memory;
}

void direct_allreduce(Transport& transport, const void* send, void* recv, size_t count,
                      DType dtype, ReduceOp op, const DirectOptions& options) {
  validate_reduction(dtype, op, "allreduce");
  const int n = transport.size(), r = transport.rank();
  if (count == 0) return;
  const size_t element_bytes = dtype_size(dtype), bytes = count * element_bytes;
  check_allreduce_buffers(send, recv, bytes);
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  if (n == 1) {
    if (in != out) std::memcpy(out, in, bytes);
    return;
  }
  PeerMemory& memory = require_peer_memory(transport, "allreduce");
  run_direct(transport, {address_of(send), address_of(recv), bytes}, options, "allreduce",
             [&](const std::vector<AddressRecord>& records) {
    const RingChunk block = ring_chunk(count, n, r);
    const size_t piece = std::min(piece_elements(options, element_bytes), ring_chunk(count, n, 0).end);
    const size_t start = block.begin * element_bytes;
    BlockReducer(memory, n, r, dtype, op, piece)
        .reduce_all(records, start, in + start, out + start, block.end - block.begin, options,
                    "allreduce", [&](size_t offset, size_t bytes) {  // the piece, hot in cache, to every peer
                      for (int hop = 1; hop < n; ++hop) {
                        const int peer = (r + hop) % n;
                        memory.write(peer, out + start + offset,
                                     records[static_cast<size_t>(peer)].recv + start + offset, bytes);
                      }
                    });
  });
}

void direct_local_allreduce(Transport& local, void* data, size_t count, DType dtype,
                            ReduceOp op, const DirectOptions& options,
                            const std::function<void(char* block, size_t count)>& between) {
  validate_reduction(dtype, op, "allreduce");
  const int n = local.size(), r = local.rank();
  if (count == 0) return;
  PR_CHECK(data != nullptr) << "allreduce of " << count << " values over a null buffer";
  const size_t element_bytes = dtype_size(dtype);
  char* out = static_cast<char*>(data);
  const RingChunk block = ring_chunk(count, n, r);
  char* block_data = out + block.begin * element_bytes;
  if (n == 1) {
    between(block_data, block.end - block.begin);
    return;
  }
  PeerMemory& memory = require_peer_memory(local, "allreduce");
  run_direct(local, {address_of(data), address_of(data), count * element_bytes}, options,
             "allreduce",
             [&](const std::vector<AddressRecord>& records) {
    const size_t piece = std::min(piece_elements(options, element_bytes), ring_chunk(count, n, 0).end);
    BlockReducer(memory, n, r, dtype, op, piece)
        .reduce_all(records, block.begin * element_bytes, block_data, block_data,
                    block.end - block.begin, options, "allreduce", [](size_t, size_t) {});
    between(block_data, block.end - block.begin);
    const size_t block_bytes = (block.end - block.begin) * element_bytes;
    for (int hop = 1; hop < n && block_bytes > 0; ++hop) {
      const int peer = (r + hop) % n;
      memory.write(peer, block_data,
                   records[static_cast<size_t>(peer)].recv + block.begin * element_bytes, block_bytes);
    }
  });
}

void direct_reduce_scatter(Transport& transport, const void* send, void* recv,
                           size_t recv_count, DType dtype, ReduceOp op,
                           const DirectOptions& options) {
  validate_reduction(dtype, op, "reduce_scatter");
  const int n = transport.size(), r = transport.rank();
  if (recv_count == 0) return;
  const size_t element_bytes = dtype_size(dtype);
  const size_t block_bytes = recv_count * element_bytes;
  if (reduce_scatter_alone(send, recv, block_bytes, n)) return;
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  PeerMemory& memory = require_peer_memory(transport, "reduce_scatter");
  run_direct(transport, {address_of(send), address_of(recv), block_bytes}, options,
             "reduce_scatter",
             [&](const std::vector<AddressRecord>& records) {
    const size_t piece = std::min(piece_elements(options, element_bytes), recv_count);
    const size_t block_offset = static_cast<size_t>(r) * block_bytes;
    BlockReducer(memory, n, r, dtype, op, piece)
        .reduce_all(records, block_offset, in + block_offset, out, recv_count, options,
                    "reduce_scatter", [](size_t, size_t) {});
  });
}

void direct_allgather(Transport& transport, const void* send, void* recv, size_t send_count,
                      DType dtype, const DirectOptions& options) {
  const int n = transport.size(), r = transport.rank();
  if (send_count == 0) return;
  const size_t block_bytes = send_count * dtype_size(dtype);
  if (allgather_own_block(send, recv, block_bytes, n, r)) return;
  const char* in = static_cast<const char*>(send);
  PeerMemory& memory = require_peer_memory(transport, "allgather");
  run_direct(transport, {address_of(send), address_of(recv), block_bytes}, options, "allgather",
             [&](const std::vector<AddressRecord>& records) {
    for (int hop = 1; hop < n; ++hop) {
      throw_if_aborted(options, r, "allgather");
      const int peer = (r + hop) % n;
      memory.write(peer, in, records[static_cast<size_t>(peer)].recv + static_cast<size_t>(r) * block_bytes,
                   block_bytes);
    }
  });
}

}  // namespace petaring
