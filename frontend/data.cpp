// IDX files through zlib, Fashion-MNIST, resizing and the batch loader (see data.h).
#include "frontend/data.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>

#include <fmt/format.h>

#include "frontend/dispatch.h"
#include "ir/env.h"

namespace bj::data {

namespace {

constexpr int64_t kMaxElements = int64_t{1} << 31;
constexpr const char* kInstall = "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)";

/// An open gzip (or plain) file; reads report short reads.
class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) throw DataError("read_idx", path + ": no such file");
    if (!S_ISREG(st.st_mode)) throw DataError("read_idx", path + ": not a regular file");
    f_ = gzopen(path.c_str(), "rb");
    if (!f_) throw DataError("read_idx", path + ": cannot be opened");
  }
  ~GzFile() {
    if (f_) gzclose(f_);
  }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  /// Reads up to `n` bytes; DataError on a corrupt stream. Returns the bytes read.
  size_t read(void* dst, size_t n) {
    size_t done = 0;
    auto* p = static_cast<char*>(dst);
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, size_t{1} << 30));
      const int got = gzread(f_, p + done, chunk);
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(f_, &code);
        throw DataError("read_idx", path_ + ": corrupt compressed data (" + std::string(msg ? msg : "zlib error") + ")");
      }
      if (got == 0) {  // the end, or a gzip stream cut short (its data or its checksum missing)
        int code = Z_OK;
        gzerror(f_, &code);
        if (code != Z_OK && code != Z_STREAM_END)
          throw DataError("read_idx", path_ + ": the compressed data ends early (the file is cut short)");
        break;
      }
      done += static_cast<size_t>(got);
    }
    return done;
  }

 private:
  std::string path_;
  gzFile f_ = nullptr;
};

uint32_t big_endian(const unsigned char* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

}  // namespace

Tensor read_idx(const std::string& path) {
  GzFile f(path);
  unsigned char head[4];
  if (f.read(head, 4) != 4) throw DataError("read_idx", path + ": truncated: no IDX header");
  if (head[0] != 0 || head[1] != 0)
    throw DataError("read_idx", path + ": not an IDX file (its first two bytes should be zero)");
  if (head[2] != 0x08)
    throw DataError("read_idx", path + ": element type 0x" + fmt::format("{:02x}", head[2]) +
                                    " is not supported (only unsigned bytes, 0x08)");
  const int dims = head[3];
  if (dims < 1 || dims > 4) throw DataError("read_idx", path + ": " + std::to_string(dims) + " dimensions (1 to 4 supported)");
  Shape shape;
  int64_t n = 1;
  for (int d = 0; d < dims; ++d) {
    unsigned char b[4];
    if (f.read(b, 4) != 4) throw DataError("read_idx", path + ": truncated in the header");
    const int64_t size = big_endian(b);
    shape.push_back(size);
    if (size > 0 && n > kMaxElements / size)
      throw DataError("read_idx", path + ": the header declares more than 2^31 elements (" + shape.str() + "...)");
    n *= size;
  }
  // Read in chunks, so memory follows the data actually there (a short file that declares 2^31
  // elements allocates little); one byte more than declared tells a file longer than its header.
  std::vector<unsigned char> bytes;
  const size_t want = static_cast<size_t>(n) + 1;
  size_t got = 0;
  for (bool more = true; more && got < want;) {
    const size_t chunk = std::min(want - got, size_t{1} << 20);
    bytes.resize(got + chunk);
    const size_t r = f.read(bytes.data() + got, chunk);
    got += r;
    more = r == chunk;
  }
  if (got < static_cast<size_t>(n))
    throw DataError("read_idx", path + ": truncated: the header declares " + shape.str() + " (" + std::to_string(n) +
                                    " bytes of data), the file has " + std::to_string(got));
  if (got > static_cast<size_t>(n))
    throw DataError("read_idx", path + ": longer than its header " + shape.str() + " declares");
  if (dims == 1) {
    Tensor t = detail::empty({kI64, shape});
    auto* out = static_cast<int64_t*>(t.raw_data());
    for (int64_t i = 0; i < n; ++i) out[i] = bytes[static_cast<size_t>(i)];
    return t;
  }
  Tensor t = detail::empty({kF32, shape});
  auto* out = static_cast<float*>(t.raw_data());
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(bytes[static_cast<size_t>(i)]);
  return t;
}

std::string fashion_mnist_dir() { return env::data_dir().value_or("/usr/share/datasets/fashion-mnist"); }

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names{"t-shirt", "trouser", "pullover", "dress", "coat",
                                              "sandal",  "shirt",   "sneaker",  "bag",   "ankle boot"};
  return names;
}

Dataset fashion_mnist(bool train, const std::string& dir) {
  const std::string prefix = dir + "/" + (train ? "train" : "t10k");
  auto read = [&](const std::string& file) {
    struct stat st{};
    if (::stat(file.c_str(), &st) != 0)
      throw DataError("fashion_mnist", file + ": no such file; " + kInstall + " or set BJ_DATA_DIR");
    return read_idx(file);
  };
  const std::string images_file = prefix + "-images-idx3-ubyte.gz", labels_file = prefix + "-labels-idx1-ubyte.gz";
  Tensor images = read(images_file), labels = read(labels_file);
  if (images.dim() != 3 || images.shape()[1] != 28 || images.shape()[2] != 28)
    throw DataError("fashion_mnist", images_file + ": images are " + images.shape().str() + ", expected [N, 28, 28]");
  if (labels.dim() != 1 || labels.shape()[0] != images.shape()[0])
    throw DataError("fashion_mnist", labels_file + ": " + labels.shape().str() + " labels for " +
                                         std::to_string(images.shape()[0]) + " images");
  const auto* l = static_cast<const int64_t*>(labels.raw_data());
  for (int64_t i = 0; i < labels.shape()[0]; ++i)
    if (l[i] > 9) throw DataError("fashion_mnist", labels_file + ": label " + std::to_string(l[i]) + " at " + std::to_string(i) + " is not a class 0..9");
  auto* px = static_cast<float*>(images.raw_data());
  for (int64_t i = 0; i < images.numel(); ++i) px[i] /= 255.0f;
  return {images.reshape({images.shape()[0], 1, 28, 28}), labels};
}

Tensor resize(const Tensor& images, int64_t height, int64_t width) {
  if (!images.defined() || images.dim() != 4 || images.dtype() != kF32)
    throw ShapeError("resize", "expects f32 images [N, C, H, W], got " +
                                   (images.defined() ? images.type().str() : std::string("an undefined tensor")));
  if (height < 1 || width < 1)
    throw ValueError("resize", "the size must be at least 1x1, got " + std::to_string(height) + "x" + std::to_string(width));
  const int64_t planes = images.shape()[0] * images.shape()[1], h = images.shape()[2], w = images.shape()[3];
  Tensor out = detail::empty({kF32, {images.shape()[0], images.shape()[1], height, width}});
  if (planes == 0) return out;
  if (h == 0 || w == 0) throw ShapeError("resize", "cannot resize empty images " + images.type().str());
  const auto* src = static_cast<const float*>(images.raw_data());  // tensors are contiguous
  auto* dst = static_cast<float*>(out.raw_data());
  // Source coordinate of a destination pixel centre, clamped at the border.
  auto axis = [](int64_t i, int64_t out_size, int64_t in_size, int64_t& lo, int64_t& hi, float& frac) {
    const double s = std::max(0.0, (static_cast<double>(i) + 0.5) * static_cast<double>(in_size) / static_cast<double>(out_size) - 0.5);
    lo = std::min(static_cast<int64_t>(s), in_size - 1);
    hi = std::min(lo + 1, in_size - 1);
    frac = static_cast<float>(s - static_cast<double>(lo));
  };
  for (int64_t p = 0; p < planes; ++p) {
    const float* plane = src + p * h * w;
    for (int64_t y = 0; y < height; ++y) {
      int64_t y0, y1;
      float fy;
      axis(y, height, h, y0, y1, fy);
      for (int64_t x = 0; x < width; ++x) {
        int64_t x0, x1;
        float fx;
        axis(x, width, w, x0, x1, fx);
        const float top = plane[y0 * w + x0] * (1 - fx) + plane[y0 * w + x1] * fx;
        const float bottom = plane[y1 * w + x0] * (1 - fx) + plane[y1 * w + x1] * fx;
        dst[(p * height + y) * width + x] = top * (1 - fy) + bottom * fy;
      }
    }
  }
  return out;
}

Loader::Loader(Dataset data, LoaderOptions options) : data_(std::move(data)), o_(options) {
  if (o_.batch < 1) throw ValueError("Loader", "the batch size must be at least 1, got " + std::to_string(o_.batch));
  if (!data_.images.defined() || !data_.labels.defined() || data_.images.dim() < 1 || data_.labels.dim() != 1 ||
      data_.images.shape()[0] != data_.labels.shape()[0])
    throw ValueError("Loader", "needs images [N, ...] and labels [N] of one count, got " +
                                   (data_.images.defined() ? data_.images.type().str() : std::string("none")) + " and " +
                                   (data_.labels.defined() ? data_.labels.type().str() : std::string("none")));
  if (data_.images.dtype() != kF32 || data_.labels.dtype() != kI64)
    throw DTypeError("Loader", "needs f32 images and i64 labels, got " + data_.images.type().str() + " and " +
                                   data_.labels.type().str());
  if (o_.resize && (*o_.resize < 1 || data_.images.dim() != 4))
    throw ValueError("Loader", "resize needs images [N, C, H, W] and a size of at least 1");
  next_epoch();
}

int64_t Loader::size() const {
  const int64_t n = data_.size();
  return o_.drop_last ? n / o_.batch : (n + o_.batch - 1) / o_.batch;
}

void Loader::next_epoch() {
  ++epoch_;
  const int64_t n = data_.size();
  order_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order_[static_cast<size_t>(i)] = i;
  if (!o_.shuffle) return;
  std::mt19937_64 rng(o_.seed + static_cast<uint64_t>(epoch_));  // Fisher-Yates: the same order everywhere
  for (int64_t i = n - 1; i > 0; --i) std::swap(order_[static_cast<size_t>(i)], order_[rng() % static_cast<uint64_t>(i + 1)]);
}

Loader::Iterator Loader::begin() {
  if (started_) next_epoch();  // the constructor prepared the first epoch
  started_ = true;
  return {this, 0};
}

Batch Loader::batch(int64_t i) const {
  if (i < 0 || i >= size()) throw IndexError("Loader", "batch " + std::to_string(i) + " of " + std::to_string(size()));
  const int64_t begin = i * o_.batch, count = std::min(o_.batch, data_.size() - begin);
  Shape xs = data_.images.shape();
  const int64_t row = xs.numel() / std::max<int64_t>(xs[0], 1);
  xs[0] = count;
  Batch b{detail::empty({kF32, xs}), detail::empty({kI64, {count}})};
  const auto* src = static_cast<const float*>(data_.images.raw_data());
  const auto* lab = static_cast<const int64_t*>(data_.labels.raw_data());
  auto* x = static_cast<float*>(b.x.raw_data());
  auto* y = static_cast<int64_t*>(b.y.raw_data());
  for (int64_t k = 0; k < count; ++k) {
    const int64_t from = order_[static_cast<size_t>(begin + k)];
    std::memcpy(x + k * row, src + from * row, static_cast<size_t>(row) * sizeof(float));
    y[k] = lab[from];
  }
  if (o_.resize) b.x = resize(b.x, *o_.resize, *o_.resize);
  return b;
}

}  // namespace bj::data
