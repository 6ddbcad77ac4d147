// Tensors in files: the safetensors format (what the Hugging Face ecosystem
// and PyTorch use to move weights by name). A file is an 8-byte
// little-endian header size N, N bytes of JSON naming each tensor's dtype,
// shape and byte range in the data that follows ({"hidden.weight":
// {"dtype": "F32", "shape": [256, 20], "data_offsets": [0, 20480]}, ...,
// optionally "__metadata__": {string: string}}), then the raw little-endian
// data, every byte of it belonging to exactly one tensor.
//
// A file is user input: every size, offset, shape and name is checked
// against the file before anything is allocated or read, and anything wrong
// is a FileError naming the file and what is wrong.
#pragma once

#include <map>
#include <span>
#include <string_view>
#include <string>
#include <utility>
#include <vector>

#include "frontend/tensor.h"

namespace bj {

/// Tensors by name, in file order.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

/// Writes `tensors` (f32, bf16, i64 or bool; names unique and not "__metadata__") and
/// `metadata` to `path` as safetensors. The file appears whole or not at all: it is written
/// beside `path` and renamed over it. FileError if it cannot be written, ValueError for a
/// repeated or reserved name.
void save(const std::string& path, const NamedTensors& tensors, const std::map<std::string, std::string>& metadata = {});

/// Reads every tensor of the safetensors file at `path`, in the order of their data.
NamedTensors load(const std::string& path);

/// A safetensors file's header alone: names, types and the metadata.
struct SafetensorsHeader {
  std::vector<std::pair<std::string, Type>> tensors;
  std::map<std::string, std::string> metadata;
};
SafetensorsHeader load_header(const std::string& path);

/// Writes `parts`, one after another, to `path`: whole or not at all (written beside `path`,
/// then renamed over it). FileError if it cannot be written.
void write_file(const std::string& path, std::span<const std::string_view> parts);
/// The whole of the regular file at `path`. FileError if it is missing, not a regular file (a
/// directory, a FIFO, a device), unreadable or larger than `max_bytes`.
std::string read_file(const std::string& path, uint64_t max_bytes);

}  // namespace bj
