// Token sequences as a DataSource for the GPT (trainer/gpt.h), and the reader of
// pre-tokenized uint16 token files.
//
// The token stream is split once: the first 90% trains, the rest evaluates. A sample is
// a window of T + 1 consecutive tokens: inputs are its first T, targets its last T (the
// next token at each position). Training sample i of epoch e starts at
//   shift(e) + i * T,   shift(e) = Rng(mix(seed, e)).below(T)
// so windows tile the training tokens without overlap and move by a random offset each
// epoch; evaluation sample i starts at i * T of the evaluation tokens. What a sample
// index means is a pure function of (seed, epoch, index): the Sampler's permutation of
// indices (trainer/data/source.h) makes the order depend on the global sample index only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "trainer/data/source.h"

namespace petaring {

// Reads `path` as little-endian uint16 token ids and checks each is < vocab. Throws
// kNotFound (missing file), kInvalidArgument (odd byte count, empty, or an id >= vocab,
// naming its position).
std::vector<uint16_t> read_token_file(const std::string& path, int64_t vocab);

class TokenSource : public DataSource {
 public:
  // `name` describes the data in logs ("text /path (N bytes)"); `where` names it in
  // errors. Throws kInvalidArgument when the stream is too short for one training window
  // of `context` tokens. Allocates device buffers for up to `max_batch` windows.
  TokenSource(std::string name, const std::string& where, std::vector<uint16_t> tokens,
              int64_t context, uint64_t seed, Device& device, int64_t max_batch);
  ~TokenSource() override;

  std::string describe() const override;
  int64_t size(Split split) const override;
  int64_t items_per_sample() const override { return context_; }
  std::string item_unit() const override { return "tokens"; }
  int64_t max_batch() const override { return max_batch_; }
  Batch load(Queue& q, Split split, int64_t epoch, const int64_t* indices, int64_t n) override;

  // Entropy of the training tokens' unigram distribution, in nats per token: the loss of
  // a model that ignores context. A model that learns anything falls below it.
  double unigram_entropy() const { return unigram_entropy_; }
  // First token of training (kTrain) or evaluation window `index` in `epoch`.
  int64_t window_start(Split split, int64_t epoch, int64_t index) const;

 private:
  struct Staging {
    std::vector<int32_t> inputs, targets;  // (max_batch, T) each
    std::unique_ptr<Event> written;        // the last write from this slot
  };

  std::string name_;
  std::vector<uint16_t> tokens_;
  int64_t context_;
  uint64_t seed_;
  int64_t max_batch_;
  int64_t train_tokens_ = 0;  // tokens_[0, train_tokens_) train; the rest evaluate
  int64_t train_windows_ = 0, eval_windows_ = 0;
  double unigram_entropy_ = 0;
  std::unique_ptr<Buffer> inputs_, targets_;
  Staging staging_[2];
  int next_slot_ = 0;
};

}  // namespace petaring
