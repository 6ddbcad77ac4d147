// Tensor creation and the global random generator.
#include "frontend/creation.h"

#include <cmath>
#include <cstring>
#include <mutex>
#include <numbers>

#include "frontend/dispatch.h"
#include "frontend/trace.h"
#include "runtime/philox.h"

namespace bj {

namespace {

template <class F>
void fill_as(Tensor& t, F value_at) {
  void* p = t.raw_data();
  const int64_t n = t.numel();
  switch (t.dtype()) {
    case DType::kF32:
      for (int64_t i = 0; i < n; ++i) static_cast<float*>(p)[i] = static_cast<float>(value_at(i));
      break;
    case DType::kI64:
      for (int64_t i = 0; i < n; ++i) static_cast<int64_t*>(p)[i] = static_cast<int64_t>(value_at(i));
      break;
    case DType::kBool:
      for (int64_t i = 0; i < n; ++i) static_cast<uint8_t*>(p)[i] = value_at(i) != 0;
      break;
    default: throw DTypeError("create", "cannot fill a tensor of dtype " + std::string(dtype_name(t.dtype())));
  }
}

Tensor empty_checked(const Shape& shape, DType dtype, const char* what) {
  check_shape(what, shape);
  return detail::empty({dtype, shape});
}

/// Philox state: seed and the next unused counter.
struct Generator {
  std::mutex mu;
  uint64_t seed = 0;
  uint64_t counter = 0;
  /// Reserves `blocks` consecutive counters and returns the first.
  uint64_t reserve(uint64_t blocks) {
    std::lock_guard lock(mu);
    uint64_t c = counter;
    counter += blocks;
    return c;
  }
};
Generator& generator() {
  static Generator g;
  return g;
}

/// Fills f32 storage with 4 uniform floats per Philox block.
Tensor uniform01(const Shape& shape) {
  Tensor t = empty_checked(shape, DType::kF32, "rand");
  if (is_tracing()) detail::trace_created(t, /*random=*/true);
  const int64_t n = t.numel();
  const uint64_t base = generator().reserve((n + 3) / 4), key = generator().seed;
  float* p = static_cast<float*>(t.raw_data());
  for (int64_t b = 0; b * 4 < n; ++b) {
    auto r = rt::philox4x32(base + b, key);
    for (int j = 0; j < 4 && b * 4 + j < n; ++j) p[b * 4 + j] = rt::uniform01(r[j]);
  }
  return t;
}

void flatten_list(const NestedList& l, int depth, Shape& shape, std::vector<double>& out) {
  if (auto* v = std::get_if<double>(&l.value())) {
    if (depth != shape.size()) throw ValueError("tensor", "ragged nested list: a number at depth " + std::to_string(depth));
    out.push_back(*v);
    return;
  }
  const auto& items = std::get<std::vector<NestedList>>(l.value());
  if (depth == shape.size()) {  // first visit at this depth fixes its size
    if (!out.empty()) throw ValueError("tensor", "ragged nested list: a list where a number was expected");
    shape.push_back(static_cast<int64_t>(items.size()));
  } else if (depth > shape.size() || shape[depth] != static_cast<int64_t>(items.size())) {
    throw ValueError("tensor", "ragged nested list: lengths differ at depth " + std::to_string(depth));
  }
  for (const NestedList& item : items) flatten_list(item, depth + 1, shape, out);
}

}  // namespace

Tensor full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty_checked(shape, dtype, "full");
  fill_as(t, [value](int64_t) { return value; });
  return t;
}
Tensor zeros(const Shape& shape, DType dtype) { return full(shape, 0, dtype); }
Tensor ones(const Shape& shape, DType dtype) { return full(shape, 1, dtype); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }

Tensor arange(double end, DType dtype) { return arange(0, end, 1, dtype); }
Tensor arange(double start, double end, double step, DType dtype) {
  if (step == 0) throw ValueError("arange", "step must not be zero");
  double count = std::ceil((end - start) / step);
  Tensor t = empty_checked({count > 0 ? static_cast<int64_t>(count) : 0}, dtype, "arange");
  fill_as(t, [=](int64_t i) { return start + static_cast<double>(i) * step; });
  return t;
}

Tensor tensor(const NestedList& values, DType dtype) {
  Shape shape;
  std::vector<double> flat;
  flatten_list(values, 0, shape, flat);
  if (flat.size() != static_cast<size_t>(shape.numel()))
    throw ValueError("tensor", "ragged nested list: " + std::to_string(flat.size()) + " numbers for shape " + shape.str());
  Tensor t = empty_checked(shape, dtype, "tensor");
  fill_as(t, [&](int64_t i) { return flat[i]; });
  return t;
}

template <class T>
static Tensor from_vector(const std::vector<T>& values, const Shape& shape, DType dtype) {
  if (static_cast<int64_t>(values.size()) != shape.numel())
    throw ShapeError("tensor", std::to_string(values.size()) + " values do not fill shape " + shape.str() + " (" +
                                   std::to_string(shape.numel()) + " elements)");
  Tensor t = empty_checked(shape, dtype, "tensor");
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t;
}
Tensor tensor(const std::vector<float>& values, const Shape& shape) { return from_vector(values, shape, kF32); }
Tensor tensor(const std::vector<int64_t>& values, const Shape& shape) { return from_vector(values, shape, kI64); }

void manual_seed(uint64_t seed) {
  std::lock_guard lock(generator().mu);
  generator().seed = seed;
  generator().counter = 0;
}

Tensor rand(const Shape& shape) { return uniform01(shape); }

Tensor uniform(double lo, double hi, const Shape& shape) {
  Tensor t = uniform01(shape);
  float* p = static_cast<float*>(t.raw_data());
  const float a = static_cast<float>(lo), w = static_cast<float>(hi - lo);
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = a + w * p[i];
  return t;
}

Tensor normal(double mean, double stddev, const Shape& shape) {
  Tensor t = uniform01(shape);  // consumes the same counters a rand() of this shape would
  float* p = static_cast<float*>(t.raw_data());
  const int64_t n = t.numel();
  // Box-Muller on pairs of uniforms; u1 in (0, 1] keeps the log finite.
  for (int64_t i = 0; i < n; i += 2) {
    double u1 = 1.0 - p[i], u2 = i + 1 < n ? p[i + 1] : 0.5;
    double r = std::sqrt(-2.0 * std::log(u1)), th = 2.0 * std::numbers::pi * u2;
    p[i] = static_cast<float>(mean + stddev * r * std::cos(th));
    if (i + 1 < n) p[i + 1] = static_cast<float>(mean + stddev * r * std::sin(th));
  }
  return t;
}
Tensor randn(const Shape& shape) { return normal(0, 1, shape); }

}  // namespace bj
