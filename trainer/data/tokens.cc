#include "trainer/data/tokens.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "runtime/error.h"
#include "trainer/rng.h"

namespace petaring {
namespace {

constexpr double kTrainFraction = 0.9;

double unigram_entropy_of(const uint16_t* tokens, int64_t count) {
  std::vector<int64_t> counts(65536, 0);
  for (int64_t i = 0; i < count; ++i) ++counts[tokens[i]];
  double entropy = 0;
  for (int64_t c : counts) {
    if (c == 0) continue;
    const double p = static_cast<double>(c) / static_cast<double>(count);
    entropy -= p * std::log(p);
  }
  return entropy;
}

}  // namespace

std::vector<uint16_t> read_token_file(const std::string& path, int64_t vocab) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    PR_FAIL(kNotFound, "token file \"", path, "\" cannot be opened; check data.path");
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  if (bytes.empty() || bytes.size() % 2 != 0) {
    PR_FAIL(kInvalidArgument, "token file \"", path, "\" has ", bytes.size(),
            " bytes; it must hold little-endian uint16 token ids (an even, non-zero count)");
  }
  std::vector<uint16_t> tokens(bytes.size() / 2);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto lo = static_cast<unsigned char>(bytes[2 * i]);
    const auto hi = static_cast<unsigned char>(bytes[2 * i + 1]);
    tokens[i] = static_cast<uint16_t>(lo | (hi << 8));
    if (tokens[i] >= vocab) {
      PR_FAIL(kInvalidArgument, "token file \"", path, "\": token ", i, " (byte ", 2 * i,
              ") is ", tokens[i], ", not below model.vocab ", vocab,
              "; raise model.vocab or re-tokenize the data");
    }
  }
  return tokens;
}

TokenSource::TokenSource(std::string name, const std::string& where, std::vector<uint16_t> tokens,
                         int64_t context, uint64_t seed, Device& device, int64_t max_batch)
    : name_(std::move(name)), tokens_(std::move(tokens)), context_(context), seed_(seed),
      max_batch_(max_batch) {
  PR_CHECK(context > 0 && max_batch > 0) << "context " << context << ", max_batch " << max_batch;
  const int64_t total = static_cast<int64_t>(tokens_.size());
  train_tokens_ = static_cast<int64_t>(static_cast<double>(total) * kTrainFraction);
  // Window i spans [shift + i T, shift + (i + 1) T + 1) with shift < T: all fit in the
  // training tokens while (i + 2) T <= train_tokens_.
  train_windows_ = train_tokens_ / context - 1;
  if (train_windows_ < 1) {
    PR_FAIL(kInvalidArgument, where, " has ", total, " tokens, too short for model.context ",
            context, ": training uses the first 90% (", train_tokens_, " tokens) and needs at "
            "least 2 x context = ", 2 * context, " there; use a longer file or lower "
            "model.context");
  }
  eval_windows_ = (total - train_tokens_ - 1) / context;
  if (eval_windows_ < 0) eval_windows_ = 0;
  unigram_entropy_ = unigram_entropy_of(tokens_.data(), train_tokens_);
  const size_t cells = static_cast<size_t>(max_batch * context);
  inputs_ = device.allocate(cells * sizeof(int32_t));
  targets_ = device.allocate(cells * sizeof(int32_t));
  for (Staging& slot : staging_) {
    slot.inputs.resize(cells);
    slot.targets.resize(cells);
  }
}

TokenSource::~TokenSource() {
  for (Staging& slot : staging_) {
    if (slot.written) slot.written->wait();  // the queue may still read the staging memory
  }
}

std::string TokenSource::describe() const {
  char entropy[32];
  std::snprintf(entropy, sizeof(entropy), "%.4f", unigram_entropy_);
  return str_cat(name_, ": ", train_windows_, " train and ", eval_windows_,
                 " eval windows of ", context_, " tokens, unigram entropy ", entropy,
                 " nats/token");
}

int64_t TokenSource::size(Split split) const {
  return split == Split::kTrain ? train_windows_ : eval_windows_;
}

int64_t TokenSource::window_start(Split split, int64_t epoch, int64_t index) const {
  if (split == Split::kEval) return train_tokens_ + index * context_;
  Rng rng(Rng::mix(seed_, static_cast<uint64_t>(epoch)));
  return static_cast<int64_t>(rng.below(static_cast<uint64_t>(context_))) + index * context_;
}

Batch TokenSource::load(Queue& q, Split split, int64_t epoch, const int64_t* indices, int64_t n) {
  PR_CHECK(n > 0 && n <= max_batch_) << "batch of " << n << ", at most " << max_batch_;
  Staging& slot = staging_[next_slot_];
  next_slot_ = 1 - next_slot_;
  if (slot.written) slot.written->wait();
  const int64_t windows = size(split);
  const int64_t shift = split == Split::kTrain ? window_start(split, epoch, 0) : train_tokens_;
  for (int64_t b = 0; b < n; ++b) {
    PR_CHECK(indices[b] >= 0 && indices[b] < windows) << "window " << indices[b] << " of " << windows;
    const uint16_t* window = tokens_.data() + shift + indices[b] * context_;
    int32_t* in = slot.inputs.data() + b * context_;
    int32_t* out = slot.targets.data() + b * context_;
    for (int64_t t = 0; t < context_; ++t) {
      in[t] = window[t];
      out[t] = window[t + 1];
    }
  }
  Batch batch;
  batch.inputs = Tensor(inputs_.get(), 0, Shape{n, context_}, DType::kI32);
  batch.targets = Tensor(targets_.get(), 0, Shape{n, context_}, DType::kI32);
  batch.samples = n;
  batch.items = n * context_;
  q.write(batch.inputs, slot.inputs.data());
  q.write(batch.targets, slot.targets.data());
  slot.written = q.record();
  return batch;
}

}  // namespace petaring
