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
};
Generator& generator() {
  static Generator g;
  return g;
}

/// Uniform floats in [0, 1), 4 per Philox block, from the next counters of the generator.
Tensor uniform01(const Shape& shape, detail::RandomDraw* draw = nullptr) {
  Tensor t = empty_checked(shape, DType::kF32, "rand");
  const int64_t n = t.numel();
  const detail::RandomDraw d = detail::reserve_random(rt::philox_blocks(n));
  rt::philox_uniform(static_cast<float*>(t.raw_data()), n, d.seed, d.base);
  if (draw) *draw = d;
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

Tensor rand(const Shape& shape) {
  detail::RandomDraw d;
  Tensor t = uniform01(shape, &d);
  if (is_tracing()) detail::trace_random(t, d);  // an op of the generator's state: compiled code draws anew
  return t;
}

namespace detail {

RandomDraw reserve_random(uint64_t blocks) {
  Generator& g = generator();
  std::lock_guard lock(g.mu);
  RandomDraw d{g.seed, g.counter, blocks};
  g.counter += blocks;
  return d;
}

void return_random(const RandomDraw& d) {
  Generator& g = generator();
  std::lock_guard lock(g.mu);
  if (g.seed == d.seed && g.counter == d.base + d.blocks) g.counter = d.base;
}

}  // namespace detail

Tensor uniform(double lo, double hi, const Shape& shape) {
  Tensor t = uniform01(shape);
  if (is_tracing()) detail::trace_created(t, /*random=*/true);  // changed on the host below: frozen
  float* p = static_cast<float*>(t.raw_data());
  const float a = static_cast<float>(lo), w = static_cast<float>(hi - lo);
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = a + w * p[i];
  return t;
}

Tensor normal(double mean, double stddev, const Shape& shape) {
  Tensor t = uniform01(shape);  // consumes the same counters a rand() of this shape would
  if (is_tracing()) detail::trace_created(t, /*random=*/true);  // changed on the host below: frozen
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
