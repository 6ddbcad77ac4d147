// Text data: fortune files read into one text, a byte tokenizer, the
// train/validation split and random windows, with typed errors.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/helpers.h"

using namespace bj;
using namespace bj::data;

namespace {
std::filesystem::path temp_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}
void write(const std::filesystem::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
}  // namespace

TEST_CASE("fortune files: every file without an extension, in name order, without the % lines") {
  const auto dir = temp_dir("bj-fortunes");
  write(dir / "b", "Second file.\n%\nAnother one.\n");
  write(dir / "a", "First.\n%\nA fortune\nof two lines.\n%\n");
  write(dir / "a.dat", std::string("\x01\x02\x00", 3));  // an index: skipped
  std::filesystem::create_symlink(dir / "a", dir / "a.u8");
  CHECK(fortunes_text(dir.string()) == "First.\nA fortune\nof two lines.\nSecond file.\nAnother one.\n");
  test::check_error<DataError>([] { fortunes_text("/nonexistent/fortunes"); },
                               {"/nonexistent/fortunes", "apt-get install fortunes"});
  const auto empty = temp_dir("bj-fortunes-empty");
  write(empty / "only.dat", "x");
  test::check_error<DataError>([&] { fortunes_text(empty.string()); }, {"no fortune files", "apt-get install fortunes"});
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(empty);
}

TEST_CASE("the fortunes package's text, tokenized (when the package is installed)") {
  if (!std::filesystem::is_directory(fortunes_dir())) return;  // CI installs it; a bare machine may not have it
  const std::string text = fortunes_text();
  CHECK(text.size() > 1'000'000);
  CharTokenizer tok(text);
  CHECK(tok.size() > 60);
  CHECK(tok.size() <= 256);
  const std::string head = text.substr(0, 5000);
  CHECK(tok.decode(tok.encode(head)) == head);
}

TEST_CASE("the byte tokenizer, the split and random windows: round trips, shifted targets, typed errors") {
  CharTokenizer tok("hello, world");
  CHECK(tok.size() == 9);  // " ,dehlorw"
  CHECK(tok.chars() == " ,dehlorw");
  const auto ids = tok.encode("world hello");
  CHECK(tok.decode(ids) == "world hello");
  test::check_error<ValueError>([&] { tok.encode("hex"); }, {"0x78", "position 2"});
  const std::vector<int64_t> bad{0, 9};
  test::check_error<IndexError>([&] { tok.decode(bad); }, {"token id 9", "position 1"});
  test::check_error<ValueError>([] { CharTokenizer(""); }, {"empty"});

  std::vector<int64_t> tokens;
  for (int64_t i = 0; i < 100; ++i) tokens.push_back(i % 9);
  auto [train, valid] = split_tokens(tokens, 0.1);
  CHECK(train.size() == 90);
  CHECK(valid.size() == 10);
  CHECK(valid.front() == tokens[90]);
  test::check_error<ValueError>([&] { split_tokens(tokens, 1.0); }, {"[0, 1)"});

  std::vector<int64_t> counting(50);
  for (int64_t i = 0; i < 50; ++i) counting[static_cast<size_t>(i)] = i;
  TextWindows windows(counting, {.batch = 4, .length = 8, .seed = 3});
  TextWindows again(counting, {.batch = 4, .length = 8, .seed = 3});
  for (int round = 0; round < 20; ++round) {
    TextBatch b = windows.next(), c = again.next();
    REQUIRE(b.x.shape() == Shape{4, 8});
    const auto x = b.x.to_vector(), y = b.y.to_vector();
    CHECK(x == c.x.to_vector());  // the same seed, the same windows
    for (size_t i = 0; i < x.size(); ++i) {
      CHECK(y[i] == x[i] + 1);  // the next token
      CHECK(y[i] <= 49);        // never past the end
      if (i % 8 != 0) CHECK(x[i] == x[i - 1] + 1);
    }
  }
  test::check_error<ValueError>([&] { TextWindows(std::vector<int64_t>(8), {.batch = 1, .length = 8}); },
                                {"too few"});
  test::check_error<ValueError>([&] { TextWindows(counting, {.batch = 0}); }, {"at least 1"});
}
