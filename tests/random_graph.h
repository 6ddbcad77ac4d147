// A seeded generator of random graphs: elementwise, broadcasting,
// reduction, matmul and movement DAGs with literals, parameters and
// guards, for testing that passes preserve what a graph computes.
#pragma once

#include <memory>
#include <random>

#include "ir/graph.h"
#include "ir/infer.h"
#include "runtime/interpreter.h"
#include "tests/helpers.h"

namespace bj::test {

/// Data bound to a graph's inputs, parameters and constants.
struct Bindings {
  std::vector<Tensor> inputs, params, consts;
  static Bindings random_for(const ir::Graph& g, uint64_t seed) {
    manual_seed(seed);
    Bindings b;
    for (const ir::Value* v : g.inputs()) {  // of the input's dtype: integers from -20 to 20
      Tensor x = uniform(-2, 2, v->type.shape);
      b.inputs.push_back(v->type.dtype == DType::kF32 ? x : (x * 10.0).to(v->type.dtype));
    }
    for (const ir::Value* v : g.params()) b.params.push_back(uniform(-1, 1, v->type.shape));
    for (const ir::Value* v : g.consts()) b.consts.push_back(uniform(0.5, 1.5, v->type.shape));
    return b;
  }
};

inline rt::InterpretResult interpret(const ir::Graph& g, const Bindings& b) {
  auto views = [](const std::vector<Tensor>& ts) {
    std::vector<rt::ConstView> v;
    for (const Tensor& t : ts) v.push_back({t.raw_data(), t.type()});
    return v;
  };
  auto in = views(b.inputs), p = views(b.params), c = views(b.consts);
  return rt::interpret(g, in, p, c);
}

/// Outputs as bytes (for exact comparison; NaNs compare by their bits).
inline std::vector<std::vector<std::byte>> output_bytes(const ir::Graph& g, const rt::InterpretResult& r) {
  std::vector<std::vector<std::byte>> out;
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    const auto* p = static_cast<const std::byte*>(r.outputs[i]->data());
    out.emplace_back(p, p + g.outputs()[i]->type.bytes());
  }
  return out;
}

/// Flips the guards that fail for `b` until every guard holds.
inline void make_guards_hold(ir::Graph& g, const Bindings& b) {
  for (int tries = 0; tries < 64; ++tries) {
    auto r = interpret(g, b);
    if (!r.failed_guard) return;
    const_cast<ir::Node*>(r.failed_guard)->expect = !r.failed_guard->expect;
  }
}

/// A random graph of about `size` nodes whose guards all hold for Bindings::random_for(g, seed).
/// `batch` is the leading dim of its input x and of some shapes it draws: the same seed at
/// another batch size often gives the same program at that size (ir/batch.h).
inline std::unique_ptr<ir::Graph> random_graph(uint64_t seed, int size = 24, int64_t batch = 4) {
  std::mt19937_64 rng(seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  auto g = std::make_unique<ir::Graph>("random" + std::to_string(seed));
  const Shape shapes[] = {{batch, 5}, {5}, {1, 5}, {batch, 1}, {3, 4, 5}, {}};
  std::vector<ir::Value*> pool;
  pool.push_back(g->add_input("x", {kF32, {batch, 5}}));
  pool.push_back(g->add_input("y", {kF32, shapes[pick(5)]}));
  pool.push_back(g->add_param("w", {kF32, {5, 6}}));
  pool.push_back(g->add_const("c", {kF32, {5}}));
  auto literal = [&](float v) {
    std::vector<std::byte> d(4);
    std::memcpy(d.data(), &v, 4);
    return g->add_literal({kF32, {}}, std::move(d), {});
  };
  for (float v : {1.0f, -0.0f, 0.0f, 2.0f, 0.5f}) pool.push_back(literal(v));
  using K = ir::OpKind;
  const K unary[] = {K::Neg, K::Abs, K::Relu, K::Tanh, K::Sigmoid, K::Exp, K::Sqrt};
  const K binary[] = {K::Add, K::Sub, K::Mul, K::Div, K::Maximum, K::Minimum};
  auto try_op = [&](K op, std::vector<ir::Value*> ins, ir::OpAttrs a) -> ir::Value* {
    std::vector<Type> types;
    for (auto* v : ins) types.push_back(v->type);
    try {
      Type t = ir::infer(op, types, a);
      if (t.numel() > 4096) return nullptr;
      return g->add_op(op, a, std::move(ins), t, ir::Origin{"block." + std::to_string(pick(3)), "", 0});
    } catch (const Error&) {
      return nullptr;
    }
  };
  auto any = [&]() {  // mostly recent values (deep chains), sometimes any (wide graphs, tensors again)
    return pick(3) ? pool[pool.size() - 1 - pick(std::min<size_t>(pool.size(), 8))] : pool[pick(pool.size())];
  };
  for (int made = 0; made < size;) {
    ir::Value* v = nullptr;
    switch (pick(10)) {
      case 0: case 1: case 2: v = try_op(unary[pick(std::size(unary))], {any()}, {}); break;
      case 3: case 4: case 5: v = try_op(binary[pick(std::size(binary))], {any(), any()}, {}); break;
      case 6: {
        ir::Value* x = any();
        ir::OpAttrs a;
        for (int d = 0; d < x->type.shape.size(); ++d)
          if (pick(2)) a.dims.push_back(d);
        a.keepdim = pick(2);
        v = try_op(pick(3) ? K::Sum : K::Max, {x}, a);
        break;
      }
      case 7: {
        ir::Value* x = any();
        if (x->type.shape.size() == 2 && x->type.shape[1] == 5) v = try_op(K::Matmul, {x, pool[2]}, {});
        else if (x->type.shape.size() >= 2) {
          ir::OpAttrs a;
          for (int d = x->type.shape.size() - 1; d >= 0; --d) a.dims.push_back(d);
          v = try_op(K::Permute, {x}, a);
        }
        break;
      }
      case 8: {
        ir::Value* x = any();
        ir::OpAttrs a;
        a.dims = {x->type.numel()};
        v = try_op(K::Reshape, {x}, a);
        if (v && pick(2)) {  // and back, for the simplifier
          ir::OpAttrs b;
          b.dims = x->type.shape;
          v = try_op(K::Reshape, {v}, b);
        }
        break;
      }
      case 9: {  // a guard on a scalar summary
        ir::OpAttrs a;
        ir::Value* x = any();
        for (int d = 0; d < x->type.shape.size(); ++d) a.dims.push_back(d);
        ir::Value* s = try_op(K::Sum, {x}, a);
        ir::Value* p = s ? try_op(K::Gt, {s, pool[4]}, {}) : nullptr;  // sum > 0
        if (p) {
          g->add_guard(p, true, ir::Origin{"block.guard", "", 0});
          ++made;
        }
        break;
      }
    }
    if (v) {
      pool.push_back(v);
      ++made;
    }
  }
  g->add_output(pool.back());
  if (pick(2)) g->add_output(pool[pool.size() - 2]);
  make_guards_hold(*g, Bindings::random_for(*g, seed));  // for the bindings the tests use
  return g;
}

}  // namespace bj::test
