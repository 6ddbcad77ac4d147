#include "frontend/text.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "frontend/creation.h"
#include "ir/env.h"

namespace bj::data {

namespace {
constexpr std::uintmax_t kMaxTextBytes = std::uintmax_t{64} << 20;
}  // namespace

std::string fortunes_dir() { return env::fortunes_dir().value_or("/usr/share/games/fortunes"); }

std::string fortunes_text(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string install = "install Debian's fortunes package (apt-get install fortunes) or set BJ_FORTUNES_DIR";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw DataError("fortunes", fmt::format("{}: no such folder; {}", dir, install));
  std::vector<fs::path> files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file(ec) && !e.is_symlink(ec) && !e.path().has_extension()) files.push_back(e.path());
  if (ec) throw DataError("fortunes", fmt::format("{}: cannot list the folder ({})", dir, ec.message()));
  if (files.empty()) throw DataError("fortunes", fmt::format("{}: no fortune files; {}", dir, install));
  std::sort(files.begin(), files.end());
  std::string text;
  for (const fs::path& f : files) {
    const std::uintmax_t size = fs::file_size(f, ec);
    if (ec || text.size() + size > kMaxTextBytes)
      throw DataError("fortunes", fmt::format("{}: {}", f.string(), ec ? ec.message() : "more than 64 MiB of text"));
    std::ifstream in(f, std::ios::binary);
    std::string line;
    while (in && std::getline(in, line) && text.size() <= kMaxTextBytes)
      if (line != "%") text += line + '\n';
    if (in.bad()) throw DataError("fortunes", f.string() + ": read error");
  }
  return text;
}

CharTokenizer::CharTokenizer(std::string_view text) {
  bool seen[256] = {};
  for (char c : text) seen[static_cast<unsigned char>(c)] = true;
  std::fill(std::begin(ids_), std::end(ids_), int16_t{-1});
  for (int b = 0; b < 256; ++b)
    if (seen[b]) {
      ids_[b] = static_cast<int16_t>(chars_.size());
      chars_.push_back(static_cast<char>(b));
    }
  if (chars_.empty()) throw ValueError("CharTokenizer", "the text is empty: no vocabulary");
}

std::vector<int64_t> CharTokenizer::encode(std::string_view s) const {
  std::vector<int64_t> ids(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (ids_[b] < 0)
      throw ValueError("CharTokenizer", fmt::format("byte 0x{:02x} at position {} is not in the vocabulary", b, i));
    ids[i] = ids_[b];
  }
  return ids;
}

std::string CharTokenizer::decode(std::span<const int64_t> ids) const {
  std::string s(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= size())
      throw IndexError("CharTokenizer", fmt::format("token id {} at position {} is outside [0, {})", ids[i], i, size()));
    s[i] = chars_[static_cast<size_t>(ids[i])];
  }
  return s;
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> split_tokens(std::vector<int64_t> tokens, double validation) {
  if (!(validation >= 0 && validation < 1))
    throw ValueError("split_tokens", fmt::format("the validation fraction must be in [0, 1), got {}", validation));
  const auto cut = static_cast<size_t>(static_cast<double>(tokens.size()) * (1 - validation));
  std::vector<int64_t> valid(tokens.begin() + static_cast<std::ptrdiff_t>(cut), tokens.end());
  tokens.resize(cut);
  return {std::move(tokens), std::move(valid)};
}

TextWindows::TextWindows(std::vector<int64_t> tokens, TextWindowsOptions options)
    : tokens_(std::move(tokens)), o_(options), rng_(options.seed) {
  if (o_.batch < 1 || o_.length < 1)
    throw ValueError("TextWindows", fmt::format("batch and length must be at least 1, got {} and {}", o_.batch, o_.length));
  if (static_cast<int64_t>(tokens_.size()) < o_.length + 1)
    throw ValueError("TextWindows", fmt::format("{} tokens are too few for a window of {} and its next token",
                                                tokens_.size(), o_.length));
}

TextBatch TextWindows::next() {
  const int64_t b = o_.batch, t = o_.length;
  const auto starts = static_cast<uint64_t>(static_cast<int64_t>(tokens_.size()) - t);  // offsets 0 .. size - t - 1
  std::vector<int64_t> x(static_cast<size_t>(b * t)), y(x.size());
  for (int64_t i = 0; i < b; ++i) {
    const auto start = static_cast<std::ptrdiff_t>(rng_() % starts);
    std::copy_n(tokens_.begin() + start, t, x.begin() + i * t);
    std::copy_n(tokens_.begin() + start + 1, t, y.begin() + i * t);
  }
  return {tensor(x, {b, t}), tensor(y, {b, t})};
}

}  // namespace bj::data
