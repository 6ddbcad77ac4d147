// The safetensors reader and writer (see serialize.h). The JSON header goes
// through nlohmann::json; the data is read straight into each tensor's
// storage, one read per tensor.
#include "frontend/serialize.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <unistd.h>

#include "frontend/dispatch.h"
#include "ir/error.h"

namespace bj {

namespace {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian, as this host");

/// The format's own limit on the header (the reference implementation's).
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;
constexpr const char* kMetadata = "__metadata__";

const char* st_dtype(DType t) {  // the format's spelling
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kI64: return "I64";
    case DType::kBool: return "BOOL";
    case DType::kBF16: return "BF16";
  }
  return "?";
}

[[noreturn]] void bad(const std::string& path, const std::string& what) { throw FileError(path, what); }

DType dtype_named(const std::string& path, const std::string& tensor, const std::string& name) {
  for (DType t : {DType::kF32, DType::kI64, DType::kBool, DType::kBF16})
    if (name == st_dtype(t)) return t;
  bad(path, fmt::format("tensor '{}' has dtype '{}'; blockjit reads F32, BF16, I64 and BOOL", tensor, name));
}

/// One tensor's entry, checked against the data's size.
struct Entry {
  std::string name;
  Type type;
  uint64_t begin = 0, end = 0;
};

/// A JSON parse that rejects a name given twice in the header's top-level object (nlohmann
/// would keep the last silently, and the file would mean two things).
nlohmann::json parse_header(const std::string& path, const std::string& text) {
  std::vector<std::set<std::string>> keys;  // per open object, its keys so far
  std::string repeated;
  auto callback = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) keys.emplace_back();
    if (event == E::object_end && !keys.empty()) keys.pop_back();
    if (event == E::key && !keys.empty() && !keys.back().insert(parsed.get<std::string>()).second && repeated.empty())
      repeated = parsed.get<std::string>();
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, callback);
  } catch (const nlohmann::json::exception& e) {
    bad(path, std::string("the header is not valid JSON: ") + e.what());
  }
  if (!repeated.empty()) bad(path, "the header names '" + repeated + "' twice");
  if (!header.is_object()) bad(path, "the header must be a JSON object of tensors");
  return header;
}

/// A non-negative whole JSON number, or a FileError saying what `what` should have been.
uint64_t whole(const std::string& path, const nlohmann::json& v, const std::string& what) {
  if (!v.is_number_unsigned()) bad(path, what + " must be a non-negative whole number, got " + v.dump());
  return v.get<uint64_t>();
}

struct Parsed {
  std::vector<Entry> entries;  // in data order
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;
};

/// Reads and checks the header of the file open in `in` (of `size` bytes).
Parsed read_header(const std::string& path, std::ifstream& in, uint64_t size) {
  if (size < 8) bad(path, fmt::format("truncated: {} bytes, but a safetensors file starts with an 8-byte header size", size));
  unsigned char raw[8];
  in.read(reinterpret_cast<char*>(raw), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | raw[i];
  if (n > kMaxHeaderBytes) bad(path, fmt::format("the header size {} is over the format's limit of {} bytes", n, kMaxHeaderBytes));
  if (n > size - 8) bad(path, fmt::format("truncated: the header is {} bytes, but only {} follow its size", n, size - 8));
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  if (!in) bad(path, "could not read the header");
  const nlohmann::json header = parse_header(path, text);
  Parsed p;
  p.data_start = 8 + n;
  const uint64_t data_bytes = size - p.data_start;
  for (const auto& [name, v] : header.items()) {
    if (name == kMetadata) {
      if (!v.is_object()) bad(path, "__metadata__ must be an object of strings");
      for (const auto& [k, s] : v.items()) {
        if (!s.is_string()) bad(path, "__metadata__ value of '" + k + "' must be a string, got " + s.dump());
        p.metadata[k] = s.get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      bad(path, "tensor '" + name + "' needs dtype, shape and data_offsets");
    for (const auto& [field, unused] : v.items())
      if (field != "dtype" && field != "shape" && field != "data_offsets")
        bad(path, "tensor '" + name + "' has an unknown field '" + field + "'");
    if (!v["dtype"].is_string()) bad(path, "tensor '" + name + "': dtype must be a string");
    Entry e{name, {dtype_named(path, name, v["dtype"].get<std::string>()), {}}};
    const auto& shape = v["shape"];
    if (!shape.is_array() || shape.size() > 8) bad(path, "tensor '" + name + "': shape must be an array of at most 8 sizes");
    uint64_t count = 1;
    for (const auto& d : shape) {
      const uint64_t k = whole(path, d, "tensor '" + name + "': each size");
      // Checked against the data before multiplying, so nothing overflows.
      if (k > (uint64_t{1} << 62) || (count != 0 && k != 0 && count > data_bytes / k))
        bad(path, fmt::format("tensor '{}' has shape {} and cannot fit in the data's {} bytes", name, shape.dump(), data_bytes));
      count *= k;
      e.type.shape.push_back(static_cast<int64_t>(k));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2) bad(path, "tensor '" + name + "': data_offsets must be [begin, end]");
    e.begin = whole(path, off[0], "tensor '" + name + "': data_offsets");
    e.end = whole(path, off[1], "tensor '" + name + "': data_offsets");
    if (e.begin > e.end || e.end > data_bytes)
      bad(path, fmt::format("tensor '{}' has data_offsets [{}, {}] outside the {} bytes of data", name, e.begin, e.end, data_bytes));
    const uint64_t bytes = count * element_size(e.type.dtype);
    if (e.end - e.begin != bytes)
      bad(path, fmt::format("tensor '{}' is {} {} ({} bytes) but data_offsets [{}, {}] hold {}", name,
                            st_dtype(e.type.dtype), e.type.shape.str(), bytes, e.begin, e.end, e.end - e.begin));
    p.entries.push_back(std::move(e));
  }
  // Every byte of the data belongs to exactly one tensor: no overlaps, no holes.
  std::stable_sort(p.entries.begin(), p.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t at = 0;
  for (const Entry& e : p.entries) {
    if (e.begin != at)
      bad(path, fmt::format("tensor '{}' starts at byte {} of the data, where {} was expected (tensors overlap or leave a gap)",
                            e.name, e.begin, at));
    at = e.end;
  }
  if (at != data_bytes) bad(path, fmt::format("the data has {} bytes, but its tensors cover {}", data_bytes, at));
  return p;
}

std::ifstream open_for_reading(const std::string& path, uint64_t& size) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) bad(path, "cannot open: no such file");
  if (std::filesystem::is_directory(status)) bad(path, "is a directory, not a file");
  if (!std::filesystem::is_regular_file(status)) bad(path, "is not a regular file (a FIFO or a device is not read)");
  std::ifstream in(path, std::ios::binary);
  if (!in) bad(path, std::string("cannot open: ") + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff end = in.tellg();
  if (end < 0) bad(path, "cannot tell its size (not a regular file?)");
  size = static_cast<uint64_t>(end);
  in.seekg(0);
  return in;
}

}  // namespace

void save(const std::string& path, const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  std::set<std::string> names;
  uint64_t at = 0;
  for (const auto& [name, t] : tensors) {
    if (name == kMetadata) throw ValueError("save", "'__metadata__' is reserved and cannot name a tensor");
    if (!names.insert(name).second) throw ValueError("save", "the name '" + name + "' is given twice");
    if (!t.defined()) throw ValueError("save", "tensor '" + name + "' is undefined");
    const uint64_t bytes = t.type().bytes();
    nlohmann::json entry;
    entry["dtype"] = st_dtype(t.dtype());
    entry["shape"] = std::vector<int64_t>(t.shape().begin(), t.shape().end());
    entry["data_offsets"] = std::vector<uint64_t>{at, at + bytes};
    header[name] = std::move(entry);
    at += bytes;
  }
  if (!metadata.empty()) header[kMetadata] = metadata;
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // a name that is not UTF-8
    throw ValueError("save", std::string("a name cannot be written as JSON: ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  unsigned char size[8];
  for (int i = 0; i < 8; ++i) size[i] = static_cast<unsigned char>(static_cast<uint64_t>(text.size()) >> (8 * i));
  std::vector<std::string_view> parts{{reinterpret_cast<const char*>(size), 8}, text};
  for (const auto& [name, t] : tensors) parts.emplace_back(static_cast<const char*>(t.raw_data()), t.type().bytes());
  write_file(path, parts);
}

void write_file(const std::string& path, std::span<const std::string_view> parts) {
  const std::string tmp = fmt::format("{}.tmp{}", path, ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) bad(path, std::string("cannot write: ") + std::strerror(errno));
    for (std::string_view part : parts) out.write(part.data(), static_cast<std::streamsize>(part.size()));
    out.flush();
    if (!out) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      bad(path, "writing failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    bad(path, "cannot replace it: " + ec.message());
  }
}

std::string read_file(const std::string& path, uint64_t max_bytes) {
  uint64_t size = 0;
  std::ifstream in = open_for_reading(path, size);
  if (size > max_bytes) bad(path, fmt::format("has {} bytes, more than the {} this reader accepts", size, max_bytes));
  std::string text(size, '\0');
  in.read(text.data(), static_cast<std::streamsize>(size));
  if (static_cast<uint64_t>(in.gcount()) != size) bad(path, "was cut short while reading");
  return text;
}

SafetensorsHeader load_header(const std::string& path) {
  uint64_t size = 0;
  std::ifstream in = open_for_reading(path, size);
  Parsed p = read_header(path, in, size);
  SafetensorsHeader h{{}, std::move(p.metadata)};
  for (Entry& e : p.entries) h.tensors.emplace_back(std::move(e.name), std::move(e.type));
  return h;
}

NamedTensors load(const std::string& path) {
  uint64_t size = 0;
  std::ifstream in = open_for_reading(path, size);
  const Parsed p = read_header(path, in, size);
  NamedTensors out;
  for (const Entry& e : p.entries) {
    Tensor t = detail::empty(e.type);
    in.seekg(static_cast<std::streamoff>(p.data_start + e.begin));
    in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(e.end - e.begin));
    if (!in) bad(path, "could not read the data of tensor '" + e.name + "'");
    if (e.type.dtype == DType::kBool)  // one byte each, 0 or 1: anything else is not a bool
      for (uint64_t i = 0; i < e.end - e.begin; ++i)
        if (static_cast<unsigned char*>(t.raw_data())[i] > 1)
          bad(path, fmt::format("tensor '{}' is BOOL but its byte {} holds {}", e.name, i,
                                static_cast<unsigned>(static_cast<unsigned char*>(t.raw_data())[i])));
    out.emplace_back(e.name, std::move(t));
  }
  return out;
}

}  // namespace bj
