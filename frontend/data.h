// Data sets as tensors, and batches over them: the IDX format (MNIST,
// Fashion-MNIST; gzip'd or not), Fashion-MNIST as Debian's
// dataset-fashion-mnist package installs it, and a loader that shuffles,
// batches and optionally resizes images.
//
//   bj::data::Dataset train = bj::data::fashion_mnist(true);   // images f32 [60000, 1, 28, 28] in [0, 1]
//   bj::data::Loader batches(train, {.batch = 256, .shuffle = true});
//   for (const bj::data::Batch& b : batches) { ... b.x ... b.y ... }
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "frontend/tensor.h"
#include "ir/error.h"

namespace bj::data {

/// A data file that is missing, unreadable, or not what its header says; the message names the
/// file and what is wrong (and, for a missing data set, the package that installs it).
class DataError : public Error {
  using Error::Error;
};

/// Reads an IDX file (gzip'd or plain): unsigned bytes become f32 with their values 0..255 if
/// the file has more than one dimension, else i64 (labels). DataError if the file is missing,
/// not IDX (magic, element type), truncated, longer than its header says, or declares more
/// than 2^31 elements. Reads at most what the header declares, plus one byte.
Tensor read_idx(const std::string& path);

/// Images and their labels.
struct Dataset {
  Tensor images;  ///< f32 [N, C, H, W]
  Tensor labels;  ///< i64 [N]
  int64_t size() const { return labels.defined() ? labels.shape()[0] : 0; }
};

/// Where Debian's dataset-fashion-mnist puts the files (BJ_DATA_DIR overrides it).
std::string fashion_mnist_dir();
/// Fashion-MNIST's training (60000) or test (10000) set: images f32 [N, 1, 28, 28] scaled to
/// [0, 1] (the book's ToTensor), labels i64 [N] in 0..9. DataError naming the file and the
/// package to install (`apt-get install dataset-fashion-mnist`) if it is missing, or what is
/// wrong with it.
Dataset fashion_mnist(bool train, const std::string& dir = fashion_mnist_dir());
/// The ten class names, by label.
const std::vector<std::string>& fashion_mnist_classes();

/// Bilinear resize of images [N, C, H, W] to [N, C, height, width] (pixel centres aligned, as
/// torchvision's Resize on tensors; no antialiasing).
Tensor resize(const Tensor& images, int64_t height, int64_t width);

struct LoaderOptions {
  int64_t batch = 256;
  bool shuffle = true;
  uint64_t seed = 0;                    ///< shuffling is reproducible: epoch e uses seed + e
  bool drop_last = false;               ///< drop a last, smaller batch
  std::optional<int64_t> resize = std::nullopt;  ///< resize images to resize x resize (96 for the book's ResNet)
};

struct Batch {
  Tensor x;  ///< f32 [B, C, H, W]
  Tensor y;  ///< i64 [B]
};

/// Batches over a data set, in a new order each epoch when shuffling (each pass of a range-for
/// is one epoch). ValueError for a batch size below 1 or images and labels of different counts,
/// DTypeError unless the images are f32 and the labels i64.
class Loader {
 public:
  Loader(Dataset data, LoaderOptions options = {});
  /// Batches per epoch.
  int64_t size() const;
  /// Batch `i` of the current epoch.
  Batch batch(int64_t i) const;
  /// Starts the next epoch (a new order when shuffling); range-for does this at its start.
  void next_epoch();
  int64_t epoch() const { return epoch_; }

  class Iterator {
   public:
    Iterator(const Loader* l, int64_t i) : l_(l), i_(i) {}
    Batch operator*() const { return l_->batch(i_); }
    Iterator& operator++() {
      ++i_;
      return *this;
    }
    bool operator!=(const Iterator& o) const { return i_ != o.i_; }

   private:
    const Loader* l_;
    int64_t i_;
  };
  Iterator begin();
  Iterator end() const { return {this, size()}; }

 private:
  Dataset data_;
  LoaderOptions o_;
  int64_t epoch_ = -1;
  bool started_ = false;  // a range-for began: the next one starts another epoch
  std::vector<int64_t> order_;
};

}  // namespace bj::data
