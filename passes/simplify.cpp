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
//   concat(a0, a1, ...) + concat(b0, b1, ...) along one axis
//                             -> concat(a0 + b0, a1 + b1, ...) where the
//                                pieces line up (a broadcast scalar such as
//                                a zero fill splits to fit): the gradient of
//                                several slices of one tensor (attention's
//                                q, k and v) is then one concat of small sums
//                                instead of full-size concats of zeros added
//   cast(min(x)) to f32, x i64 -> min(cast(x)) (and max): rounding to f32 is
//                                monotone, so the extreme of the rounded values
//                                is the rounded extreme; compiled code then
//                                reduces f32 in a loop (cross-entropy's label
//                                range check) instead of calling the runtime.
//                                Only over a non-empty input (the two empty
//                                reductions' identities differ) and for a
//                                reduction nothing else reads
// A rewrite to x applies only when x already has the result's type (a
// broadcast by the literal would change the shape). Nodes left unused are
// for dead-code elimination.
#include <algorithm>
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

/// A piece of a concat along its axis: [start, end), and the scalar literal it broadcasts if it
/// is one (then any part of it is that scalar expanded).
struct Piece {
  ir::Value* value;
  int64_t start, end;
  ir::Value* scalar;
};

std::vector<Piece> pieces(const ir::Value* concat) {
  const int axis = static_cast<int>(concat->def->attrs.axis);
  std::vector<Piece> out;
  int64_t at = 0;
  for (ir::Value* p : concat->def->inputs) {
    const int64_t len = p->type.shape[axis];
    if (len == 0) continue;
    ir::Value* scalar = nullptr;
    if (is_op(p, ir::OpKind::Expand)) {
      ir::Value* x = p->def->inputs[0];
      if (x->def && x->def->kind == ir::NodeKind::kLiteral && x->type.numel() == 1) scalar = x;
    }
    out.push_back({p, at, at + len, scalar});
    at += len;
  }
  return out;
}

/// If nodes[i] adds two concats along one axis whose pieces line up (see the file comment),
/// inserts the concat of the pieces' sums before it, points its uses there and returns how many
/// nodes it inserted; 0 otherwise.
size_t split_sum_of_concats(ir::Graph& g, size_t i) {
  using K = ir::OpKind;
  auto& nodes = g.mutable_nodes();
  ir::Node& n = *nodes[i];
  if (n.op != K::Add || n.inputs.size() != 2) return 0;
  ir::Value *a = n.inputs[0], *b = n.inputs[1];
  if (!is_op(a, K::Concat) || !is_op(b, K::Concat) || a->def->attrs.axis != b->def->attrs.axis ||
      a->type != n.result->type || b->type != n.result->type)
    return 0;
  const int axis = static_cast<int>(a->def->attrs.axis);
  const std::vector<Piece> pa = pieces(a), pb = pieces(b);
  std::vector<int64_t> cuts{0};
  for (const auto* ps : {&pa, &pb})
    for (const Piece& p : *ps) cuts.push_back(p.end);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  auto cut_inside = [&](const Piece& p) {
    return std::any_of(cuts.begin(), cuts.end(), [&](int64_t c) { return c > p.start && c < p.end; });
  };
  for (const auto* ps : {&pa, &pb})
    for (const Piece& p : *ps)
      if (!p.scalar && cut_inside(p)) return 0;  // a computed piece would have to be sliced
  if (cuts.size() < 2) return 0;                 // an empty axis
  std::vector<std::unique_ptr<ir::Node>> made;
  std::vector<ir::Value*> sums;
  for (size_t k = 0; k + 1 < cuts.size(); ++k) {
    Type t = n.result->type;
    t.shape[axis] = cuts[k + 1] - cuts[k];
    auto term = [&](const std::vector<Piece>& ps) {  // a broadcast scalar stays a scalar
      const Piece& p = *std::find_if(ps.begin(), ps.end(), [&](const Piece& q) { return q.end > cuts[k]; });
      return p.scalar ? p.scalar : p.value;
    };
    ir::Value* x = term(pa);
    ir::Value* y = term(pb);
    if (x->type.numel() == 1 && y->type.numel() == 1 && t.numel() != 1) {  // two fills: one sum, expanded
      ir::OpAttrs none;
      const Type both[] = {x->type, y->type};
      made.push_back(g.make_op(K::Add, {}, {x, y}, ir::infer(K::Add, both, none), n.origin));
      ir::OpAttrs to;
      to.dims = t.shape;
      made.push_back(g.make_op(K::Expand, to, {made.back()->result}, t, n.origin));
    } else {
      made.push_back(g.make_op(K::Add, {}, {x, y}, t, n.origin));
    }
    sums.push_back(made.back()->result);
  }
  if (sums.size() > 1) {
    made.push_back(g.make_op(K::Concat, a->def->attrs, sums, n.result->type, n.origin));
  }
  ir::Value* result = made.back()->result;
  const size_t count = made.size();
  nodes.insert(nodes.begin() + static_cast<std::ptrdiff_t>(i), std::make_move_iterator(made.begin()),
               std::make_move_iterator(made.end()));
  g.replace_uses(n.result, result);
  return count;
}

/// If nodes[i] casts an integer min or max to f32 (see the file comment), rewrites it to reduce the
/// cast input and returns 1 (the cast it inserted before it); 0 otherwise.
size_t cast_before_extremum(ir::Graph& g, size_t i, std::optional<Uses>& uses) {
  using K = ir::OpKind;
  auto& nodes = g.mutable_nodes();
  ir::Node& n = *nodes[i];
  if (n.op != K::Cast || n.attrs.dtype != DType::kF32) return 0;
  ir::Value* r = n.inputs[0];
  if (!is_op(r, K::Max) && !is_op(r, K::Min)) return 0;
  ir::Node& red = *r->def;
  ir::Value* x = red.inputs[0];
  if (x->type.dtype != DType::kI64 || x->type.numel() == 0 || x->batch || r->batch) return 0;
  if (!uses) uses = compute_uses(g);
  if (uses->of(r).size() != 1 || uses->output[r]) return 0;
  ir::OpAttrs to;
  to.dtype = DType::kF32;
  auto cast = g.make_op(K::Cast, to, {x}, Type{DType::kF32, x->type.shape}, n.origin);
  n.op = red.op;
  n.attrs = red.attrs;
  n.inputs[0] = cast->result;
  nodes.insert(nodes.begin() + static_cast<std::ptrdiff_t>(i), std::move(cast));
  return 1;
}

}  // namespace

bool simplify(ir::Graph& g, const PassContext&) {
  using K = ir::OpKind;
  bool changed = false;
  auto& nodes = g.mutable_nodes();
  std::optional<Uses> uses;  // computed when a rewrite first asks; it only asks about values it keeps
  for (size_t i = 0; i < nodes.size(); ++i) {
    ir::Node& n = *nodes[i];
    if (n.kind != ir::NodeKind::kOp) continue;
    if (cast_before_extremum(g, i, uses)) {
      ++i;  // nodes[i] is the cast again, now a reduction
      changed = true;
      continue;
    }
    if (ir::Value* x = identity_operand(n)) {
      g.replace_uses(n.result, x);
      changed = true;
      continue;
    }
    if (const size_t made = split_sum_of_concats(g, i)) {
      i += made;  // nodes[i] is the add again, now unused
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
