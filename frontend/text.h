// Text for character-level language models: the fortunes Debian's
// `fortunes` package installs, a tokenizer of bytes, a train/validation
// split and random windows of tokens as batches.
//
//   std::string text = bj::data::fortunes_text();        // ~2.5 MB of English
//   bj::data::CharTokenizer tok(text);
//   auto [train, valid] = bj::data::split_tokens(tok.encode(text), 0.1);
//   bj::data::TextWindows windows(train, {.batch = 32, .length = 64});
//   bj::data::TextBatch b = windows.next();               // x, y: i64 [32, 64], y = x shifted by one
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "frontend/data.h"

namespace bj::data {

/// Where Debian's fortunes package puts its files (BJ_FORTUNES_DIR, if set, instead).
std::string fortunes_dir();
/// The text of every fortune file in `dir` (the files with no extension: not the .dat indexes
/// nor the .u8 links), in name order, without the "%" lines that separate fortunes. DataError
/// naming the folder and `apt-get install fortunes` if it is missing or holds no fortune file;
/// reads at most 64 MiB.
std::string fortunes_text(const std::string& dir = fortunes_dir());

/// Characters (bytes, so any UTF-8 text round-trips) to token ids and back. The vocabulary is
/// the sorted set of the bytes of the text it is built from.
class CharTokenizer {
 public:
  explicit CharTokenizer(std::string_view text);
  int64_t size() const { return static_cast<int64_t>(chars_.size()); }
  /// ValueError naming the character and its position for a byte not in the vocabulary.
  std::vector<int64_t> encode(std::string_view s) const;
  /// IndexError for an id outside [0, size()).
  std::string decode(std::span<const int64_t> ids) const;
  const std::string& chars() const { return chars_; }

 private:
  std::string chars_;   // id -> byte
  int16_t ids_[256];    // byte -> id, -1 if absent
};

/// The first (1 - validation) of the tokens and the rest. ValueError unless 0 <= validation < 1.
std::pair<std::vector<int64_t>, std::vector<int64_t>> split_tokens(std::vector<int64_t> tokens,
                                                                   double validation = 0.1);

struct TextWindowsOptions {
  int64_t batch = 32;
  int64_t length = 64;
  uint64_t seed = 0;  ///< windows are reproducible
};

struct TextBatch {
  Tensor x;  ///< i64 [batch, length]
  Tensor y;  ///< i64 [batch, length]: the token after each of x's
};

/// Windows at random offsets of a token sequence. ValueError for a batch or length below 1, or
/// tokens too few for one window (length + 1).
class TextWindows {
 public:
  TextWindows(std::vector<int64_t> tokens, TextWindowsOptions options = {});
  TextBatch next();
  int64_t tokens() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  std::vector<int64_t> tokens_;
  TextWindowsOptions o_;
  std::mt19937_64 rng_;
};

}  // namespace bj::data
