// Algebraic simplification, only with rewrites that are exact under IEEE
// arithmetic (NaN, infinities and signed zeros included):
//   x * 1, 1 * x, x / 1       -> x
//   x + (-0), (-0) + x, x - (+0) -> x      (x + (+0) is not x when x is -0)
//   neg(neg(x))               -> x
//   x / c, c a power of two   -> x * (1/c)  (the reciprocal is exact)
//   permute(permute(x))       -> one permute, or x if the two cancel
//   reshape(reshape(x))       -> one reshape; a reshape, expand or cast to
//                                x's own type -> x
//   op(expand(x), y)          -> op(x, y) for an elementwise op whose other
//                                operands already give it its shape (the
//                                broadcast reads the same values; the
//                                gradients of keepdim reductions look so)
// A rewrite to x applies only when x already has the result's type (a
// broadcast by the literal would change the shape). Nodes left unused are
// for dead-code elimination.
#include <cmath>
#include <cstring>

#include "ir/infer.h"
#include "passes/passes.h"
#include "passes/util.h"

namespace bj::passes {

namespace {

/// The input that is the result unchanged, if the node is an identity.
ir::Value* identity_operand(const ir::Node& n) {
  using K = ir::OpKind;
  ir::Value* x = n.inputs.empty() ? nullptr : n.inputs[0];
  ir::Value* y = n.inputs.size() > 1 ? n.inputs[1] : nullptr;
  ir::Value* r = nullptr;
  switch (n.op) {
    case K::Mul:
      r = literal_is(y, 1.0f) ? x : literal_is(x, 1.0f) ? y : nullptr;
      break;
    case K::Div: r = literal_is(y, 1.0f) ? x : nullptr; break;
    case K::Add: r = literal_is(y, -0.0f) ? x : literal_is(x, -0.0f) ? y : nullptr; break;
    case K::Sub: r = literal_is(y, 0.0f) ? x : nullptr; break;
    case K::Neg:
      if (x->def && x->def->kind == ir::NodeKind::kOp && x->def->op == K::Neg) r = x->def->inputs[0];
      break;
    case K::Reshape:
    case K::Expand:
    case K::Cast: r = x; break;
    case K::Permute: {
      bool same = true;
      for (int i = 0; i < n.attrs.dims.size(); ++i) same &= n.attrs.dims[i] == i;
      r = same ? x : nullptr;
      break;
    }
    case K::Abs: case K::Relu: case K::Exp: case K::Log: case K::Tanh: case K::Sigmoid: case K::Sqrt: case K::Pow:
    case K::Maximum: case K::Minimum: case K::Gt: case K::Lt: case K::Ge: case K::Le: case K::Eq: case K::Where:
    case K::Sum: case K::Prod: case K::Max: case K::Min: case K::Matmul: case K::Concat: case K::Slice:
    case K::RandUniform: case K::CrossEntropy: case K::CrossEntropyGrad: case K::Embedding: case K::EmbeddingGrad: case K::Conv2d: case K::Conv2dGradInput:
    case K::Conv2dGradWeight: case K::MaxPool2d: case K::MaxPool2dGrad: case K::AvgPool2d: case K::AvgPool2dGrad:
      break;  // never an identity this pass recognizes (a new op decides here too)
  }
  return r && r->type == n.result->type ? r : nullptr;
}

bool is_op(const ir::Value* v, ir::OpKind k) { return v->def && v->def->kind == ir::NodeKind::kOp && v->def->op == k; }

}  // namespace

bool simplify(ir::Graph& g, const PassContext&) {
  using K = ir::OpKind;
  bool changed = false;
  auto& nodes = g.mutable_nodes();
  for (size_t i = 0; i < nodes.size(); ++i) {
    ir::Node& n = *nodes[i];
    if (n.kind != ir::NodeKind::kOp) continue;
    if (ir::Value* x = identity_operand(n)) {
      g.replace_uses(n.result, x);
      changed = true;
      continue;
    }
    // Chains of movement ops collapse into one.
    if (n.op == K::Reshape && is_op(n.inputs[0], K::Reshape)) {
      n.inputs[0] = n.inputs[0]->def->inputs[0];
      changed = true;
    } else if (n.op == K::Permute && is_op(n.inputs[0], K::Permute)) {
      const Shape& inner = n.inputs[0]->def->attrs.dims;
      Shape composed = n.attrs.dims;
      for (int d = 0; d < composed.size(); ++d) composed[d] = inner[n.attrs.dims[d]];
      n.attrs.dims = composed;
      n.inputs[0] = n.inputs[0]->def->inputs[0];
      changed = true;
    } else if (n.op == K::Div && n.inputs[1]->type.dtype == DType::kF32) {
      // Division by a power of two is multiplication by its exact reciprocal.
      auto c = literal_splat(n.inputs[1]);
      int exp = 0;
      if (c && *c != 0 && std::isfinite(*c) && std::fabs(std::frexp(*c, &exp)) == 0.5 && exp > -125 && exp < 127) {
        auto lit = g.make_literal(n.inputs[1]->type, n.inputs[1]->def->data, n.origin);
        float inv = static_cast<float>(1.0 / *c);
        for (size_t off = 0; off < lit->data.size(); off += 4) std::memcpy(lit->data.data() + off, &inv, 4);
        n.op = K::Mul;
        n.inputs[1] = lit->result;
        nodes.insert(nodes.begin() + static_cast<std::ptrdiff_t>(i), std::move(lit));
        ++i;
        changed = true;
      }
    }
    if (ir::has_trait(n.op, ir::kElementwise) && n.inputs.size() > 1)
      for (size_t k = 0; k < n.inputs.size(); ++k) {
        if (!is_op(n.inputs[k], K::Expand)) continue;
        ir::Value* x = n.inputs[k]->def->inputs[0];
        Shape shape = x->type.shape;
        for (size_t j = 0; j < n.inputs.size(); ++j)
          if (j != k) shape = ir::broadcast_shapes("simplify", shape, n.inputs[j]->type.shape);
        if (shape == n.result->type.shape) {
          n.inputs[k] = x;
          changed = true;
        }
      }
    if (ir::Value* x = identity_operand(n)) {  // the collapsed chain may now cancel
      g.replace_uses(n.result, x);
      changed = true;
    }
  }
  return changed;
}

}  // namespace bj::passes
