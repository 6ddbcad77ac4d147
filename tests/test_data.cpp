// Data sets: IDX files (gzip'd and plain) written here, truncated, lying and
// corrupt; Fashion-MNIST from a directory of such files (and from Debian's
// package when it is installed); bilinear resizing; the batch loader.
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "tests/helpers.h"

using namespace bj;
namespace fs = std::filesystem;

namespace {

/// IDX bytes: the magic (unsigned bytes, `dims` dimensions), big-endian sizes, then `data`.
std::string idx(const std::vector<uint32_t>& dims, const std::string& data, unsigned char type = 0x08) {
  std::string s{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int shift : {24, 16, 8, 0}) s.push_back(static_cast<char>((d >> shift) & 0xff));
  return s + data;
}

void write_plain(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f);
  if (!bytes.empty()) REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  gzclose(f);
}

std::string bytes_from(int n, int start = 0) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((start + i) & 0xff));
  return s;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("read_idx: labels as i64 and images as f32, gzip'd or plain") {
  test::Scratch dir("data");
  for (bool gz : {true, false}) {
    CAPTURE(gz);
    auto write = [&](const std::string& p, const std::string& b) { gz ? write_gz(p, b) : write_plain(p, b); };
    write((dir / "labels"), idx({5}, std::string{0, 9, 3, 7, static_cast<char>(200)}));
    Tensor labels = data::read_idx((dir / "labels"));
    CHECK(labels.type().str() == "i64[5]");
    CHECK(labels.to_vector() == std::vector<float>{0, 9, 3, 7, 200});
    write((dir / "images"), idx({2, 3, 4}, bytes_from(24, 250)));
    Tensor images = data::read_idx((dir / "images"));
    CHECK(images.type().str() == "f32[2,3,4]");
    CHECK(images.to_vector()[0] == 250);
    CHECK(images.to_vector()[6] == 0);  // 256 wraps to the byte 0
    write((dir / "empty"), idx({0, 28, 28}, ""));
    CHECK(data::read_idx((dir / "empty")).type().str() == "f32[0,28,28]");
  }
}

TEST_CASE("read_idx: missing, truncated, lying, corrupt and foreign files are DataErrors naming the file") {
  test::Scratch dir("data");
  const std::string f = (dir / "x.gz");
  auto fails = [&](const std::string& bytes, const std::string& why) {
    CAPTURE(why);
    write_gz(f, bytes);
    CHECK_THROWS_WITH_AS(data::read_idx(f), doctest::Contains(why.c_str()), data::DataError);
    CHECK_THROWS_WITH_AS(data::read_idx(f), doctest::Contains(f.c_str()), data::DataError);
  };
  CHECK_THROWS_WITH_AS(data::read_idx((dir / "none")), doctest::Contains("no such file"), data::DataError);
  CHECK_THROWS_WITH_AS(data::read_idx(dir.dir.string()), doctest::Contains("not a regular file"), data::DataError);
  fails("", "no IDX header");
  fails(std::string{0, 0, 8}, "no IDX header");
  fails(idx({2, 3}, bytes_from(5)), "truncated: the header declares [2, 3] (6 bytes of data), the file has 5");
  fails(idx({2, 3}, bytes_from(7)), "longer than its header [2, 3] declares");
  fails(std::string{1, 0, 8, 1, 0, 0, 0, 1, 7}, "not an IDX file");
  fails(idx({2}, std::string(8, 'x'), 0x0D), "element type 0x0d is not supported");
  fails(idx({}, ""), "0 dimensions");
  fails(idx({1, 1, 1, 1, 1}, "x"), "5 dimensions");
  fails(idx({2, 3}, "").substr(0, 9), "truncated in the header");
  // A header that declares 2^48 elements is refused before anything is allocated; one that
  // declares 2^31 - 1 bytes over a few bytes of data allocates no more than the data.
  fails(idx({65536, 65536, 65536}, ""), "more than 2^31 elements");
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  fails(idx({32767, 65537}, bytes_from(10)), "the file has 10");
  getrusage(RUSAGE_SELF, &after);
  CHECK(after.ru_maxrss - before.ru_maxrss < 100 * 1024);  // KiB, against 2 GiB declared
  // Not gzip'd at all but not IDX either, and gzip'd data cut short anywhere: errors, never crashes.
  write_plain(f, "hello, world");
  CHECK_THROWS_AS(data::read_idx(f), data::DataError);
  write_gz(f, idx({40, 40}, bytes_from(1600)));
  const std::string whole = read_all(f);
  for (size_t cut = 0; cut < whole.size(); cut += 7) {
    CAPTURE(cut);
    write_plain(f, whole.substr(0, cut));
    CHECK_THROWS_AS(data::read_idx(f), data::DataError);
  }
  // Compressed bytes flipped in the middle: a corrupt stream or a wrong length, reported.
  std::string flipped = whole;
  for (size_t i = 20; i < 40 && i < flipped.size(); ++i) flipped[i] = static_cast<char>(~flipped[i]);
  write_plain(f, flipped);
  CHECK_THROWS_AS(data::read_idx(f), data::DataError);
}

TEST_CASE("fashion_mnist from a directory of IDX files: shapes, scaling, checks, and the message when it is missing") {
  test::Scratch dir("data");
  auto images = [&](const std::string& name, int n, uint32_t side = 28) {
    write_gz((dir / name), idx({static_cast<uint32_t>(n), side, side}, bytes_from(n * static_cast<int>(side * side))));
  };
  images("train-images-idx3-ubyte.gz", 3);
  write_gz((dir / "train-labels-idx1-ubyte.gz"), idx({3}, std::string{4, 0, 9}));
  data::Dataset d = data::fashion_mnist(true, dir.dir.string());
  CHECK(d.images.type().str() == "f32[3,1,28,28]");
  CHECK(d.labels.to_vector() == std::vector<float>{4, 0, 9});
  CHECK(d.images.to_vector()[255] == 1.0f);  // byte 255 scaled to 1
  CHECK(d.images.to_vector()[51] == doctest::Approx(0.2));
  CHECK(d.size() == 3);
  CHECK_THROWS_WITH_AS(data::fashion_mnist(false, dir.dir.string()),
                       doctest::Contains("apt-get install dataset-fashion-mnist"), data::DataError);
  write_gz((dir / "train-labels-idx1-ubyte.gz"), idx({3}, std::string{4, 10, 9}));
  CHECK_THROWS_WITH_AS(data::fashion_mnist(true, dir.dir.string()), doctest::Contains("label 10 at 1 is not a class"),
                       data::DataError);
  write_gz((dir / "train-labels-idx1-ubyte.gz"), idx({2}, std::string{4, 1}));
  CHECK_THROWS_WITH_AS(data::fashion_mnist(true, dir.dir.string()), doctest::Contains("[2] labels for 3 images"),
                       data::DataError);
  images("train-images-idx3-ubyte.gz", 2, 27);
  CHECK_THROWS_WITH_AS(data::fashion_mnist(true, dir.dir.string()), doctest::Contains("expected [N, 28, 28]"),
                       data::DataError);
  CHECK(data::fashion_mnist_classes().size() == 10);
  CHECK(data::fashion_mnist_classes()[9] == "ankle boot");
}

TEST_CASE("fashion_mnist from Debian's package, when it is installed") {
  const std::string dir = data::fashion_mnist_dir();
  if (!fs::exists(dir + "/t10k-labels-idx1-ubyte.gz")) {
    MESSAGE("dataset-fashion-mnist is not installed (" << dir << "); skipped");
    return;
  }
  data::Dataset test = data::fashion_mnist(false);
  CHECK(test.images.type().str() == "f32[10000,1,28,28]");
  CHECK(test.labels.type().str() == "i64[10000]");
  std::vector<int> per_class(10);
  for (float l : test.labels.to_vector()) ++per_class.at(static_cast<size_t>(l));
  CHECK(per_class == std::vector<int>(10, 1000));  // Fashion-MNIST's test set is balanced
  const std::vector<float> px = test.images.to_vector();
  CHECK(*std::min_element(px.begin(), px.end()) == 0.0f);
  CHECK(*std::max_element(px.begin(), px.end()) == 1.0f);
}

TEST_CASE("resize: bilinear with pixel centres aligned, constants stay constant, bad sizes are errors") {
  Tensor img = tensor(std::vector<float>{0, 1, 2, 3}, {1, 1, 2, 2});
  Tensor up = data::resize(img, 4, 4);
  CHECK(up.type().str() == "f32[1,1,4,4]");
  const std::vector<float> want{0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3};
  const std::vector<float> got = up.to_vector();
  for (size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]));
  Tensor flat = data::resize(full({2, 3, 28, 28}, 0.5), 96, 96);
  CHECK(flat.type().str() == "f32[2,3,96,96]");
  for (float v : flat.to_vector()) REQUIRE(v == 0.5f);
  CHECK(data::resize(full({1, 1, 5, 5}, 2), 1, 1).to_vector() == std::vector<float>{2});
  CHECK_THROWS_AS(data::resize(zeros({4, 4}), 8, 8), ShapeError);
  CHECK_THROWS_AS(data::resize(zeros({1, 1, 4, 4}), 0, 8), ValueError);
}

TEST_CASE("Loader: batches cover every sample once per epoch, shuffled reproducibly, resized on request") {
  const int64_t n = 10;
  std::vector<float> px;
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < 4; ++k) px.push_back(static_cast<float>(i));
    ids.push_back(i);
  }
  data::Dataset d{tensor(px, {n, 1, 2, 2}), tensor(ids, {n})};
  data::Loader ordered(d, {.batch = 4, .shuffle = false});
  CHECK(ordered.size() == 3);
  CHECK(ordered.batch(2).y.to_vector() == std::vector<float>{8, 9});
  CHECK(ordered.batch(2).x.type().str() == "f32[2,1,2,2]");
  data::Loader shuffled(d, {.batch = 4, .seed = 5});
  std::vector<std::vector<float>> epochs;
  for (int e = 0; e < 3; ++e) {
    std::vector<float> seen;
    for (const data::Batch& b : shuffled) {
      const std::vector<float> x = b.x.to_vector(), y = b.y.to_vector();
      for (size_t k = 0; k < y.size(); ++k) CHECK(x[4 * k] == y[k]);  // images travel with their labels
      seen.insert(seen.end(), y.begin(), y.end());
    }
    CHECK(std::set<float>(seen.begin(), seen.end()).size() == static_cast<size_t>(n));
    epochs.push_back(seen);
  }
  CHECK(shuffled.epoch() == 2);
  CHECK(epochs[0] != epochs[1]);
  data::Loader again(d, {.batch = 4, .seed = 5});
  std::vector<float> first;
  for (const data::Batch& b : again)
    for (float y : b.y.to_vector()) first.push_back(y);
  CHECK(first == epochs[0]);
  CHECK(data::Loader(d, {.batch = 4, .drop_last = true}).size() == 2);
  data::Loader big(d, {.batch = 3, .resize = 6});
  CHECK(big.batch(0).x.type().str() == "f32[3,1,6,6]");
  CHECK_THROWS_AS(data::Loader(d, {.batch = 0}), ValueError);
  CHECK_THROWS_AS(data::Loader({d.images, tensor(std::vector<int64_t>{1, 2}, {2})}), ValueError);
  CHECK_THROWS_AS(data::Loader({d.labels, d.labels}), DTypeError);
  CHECK_THROWS_AS(ordered.batch(3), IndexError);
}
