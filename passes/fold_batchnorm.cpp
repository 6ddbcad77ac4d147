// Batch normalization with fixed statistics (eval mode) folded into the
// convolution before it:
//   y = ((conv2d(x, W) [+ b]) - m) / sqrt(v + eps) * g + beta
// with m, sqrt(v + eps), g, beta and b per channel (shaped [1,C,1,1] or
// [C,1,1]), becomes
//   s = g / sqrt(v + eps);  y = conv2d(x, W * s) + ((b | 0) - m) * s + beta
// so the normalization costs a pass over the weights instead of one over
// the activations. The weights are rescaled inside the graph, on every call:
// new parameter or statistics values (set_data, an optimizer step, training
// mode's updates) are always the ones used, with nothing cached to go stale.
// That is a gain only where the activations outweigh the weights (a batch of
// images; not ResNet's last layers at batch 1, whose weights then stay
// parameters that compiled code keeps in oneDNN's layout): the pass folds
// when the convolution's output has at least kMinRatio times the weights'
// elements.
//
// Unlike every other pass this one changes rounding (eager mode normalizes
// the convolution's output), so it leaves alone any chain a guard reads
// (a near-tie must be decided as eager decides it) and one whose
// intermediate values are used elsewhere. In training mode BatchNorm uses
// the batch's statistics, computed from the convolution's output: the
// pattern does not match and nothing changes.
#include <optional>
#include <unordered_set>

#include "ir/infer.h"
#include "passes/passes.h"
#include "passes/util.h"

namespace bj::passes {

namespace {

using K = ir::OpKind;
constexpr int64_t kMinRatio = 4;

/// Values a guard's predicate depends on (top-level nodes: the pass runs before fusion).
std::unordered_set<const ir::Value*> guard_cone(const ir::Graph& g) {
  std::unordered_set<const ir::Value*> cone;
  std::vector<const ir::Value*> work;
  for (const auto& n : g.nodes())
    if (n->kind == ir::NodeKind::kGuard) work.push_back(n->inputs[0]);
  while (!work.empty()) {
    const ir::Value* v = work.back();
    work.pop_back();
    if (!cone.insert(v).second || !v->def) continue;
    for (const ir::Value* in : v->def->inputs) work.push_back(in);
  }
  return cone;
}

/// The op node defining v, if v is the result of an op of kind `op`.
ir::Node* op_def(ir::Value* v, K op) {
  return v->kind == ir::ValueKind::kResult && v->def && v->def->kind == ir::NodeKind::kOp && v->def->op == op
             ? v->def
             : nullptr;
}

/// Whether v holds one value per channel of c channels, broadcasting over [N, C, H, W].
bool per_channel(const ir::Value* v, int64_t c) {
  const Shape& s = v->type.shape;
  if (v->type.dtype != DType::kF32) return false;
  if (s.size() == 4) return s[0] == 1 && s[1] == c && s[2] == 1 && s[3] == 1;
  return s.size() == 3 && s[0] == c && s[1] == 1 && s[2] == 1;
}

struct Match {
  ir::Node* conv;
  ir::Value *bias = nullptr, *mean, *root, *gamma, *beta;  ///< per channel; root = sqrt(v + eps)
  ir::Node* last;  ///< the final add, whose uses get the folded result
};

class Folder {
 public:
  explicit Folder(ir::Graph& g) : g_(g), uses_(compute_uses(g)), cone_(guard_cone(g)) {}

  bool run() {
    std::vector<Match> found;
    for (const auto& n : g_.nodes())
      if (auto m = match(*n)) found.push_back(*m);
    for (const Match& m : found) rewrite(m);
    if (!found.empty()) stable_topological_sort(g_);
    return !found.empty();
  }

 private:
  /// v is used exactly once, by a top-level node, not returned, committed or read by a guard.
  bool private_value(const ir::Value* v) const {
    if (uses_.output.count(v) && uses_.output.at(v)) return false;
    for (const ir::Commit& c : g_.commits())
      if (c.value == v) return false;
    return uses_.of(v).size() == 1 && !cone_.count(v);
  }

  std::optional<Match> match(ir::Node& add) const {
    if (add.kind != ir::NodeKind::kOp || add.op != K::Add || add.result->type.shape.size() != 4) return std::nullopt;
    if (cone_.count(add.result)) return std::nullopt;
    const int64_t c = add.result->type.shape[1];
    for (int order = 0; order < 2; ++order) {  // (x * g) + beta, either way round
      ir::Value* scaled = add.inputs[order];
      ir::Value* beta = add.inputs[1 - order];
      if (!per_channel(beta, c) || !private_value(scaled)) continue;
      ir::Node* mul = op_def(scaled, K::Mul);
      if (!mul) continue;
      for (int morder = 0; morder < 2; ++morder) {
        ir::Value* normed = mul->inputs[morder];
        ir::Value* gamma = mul->inputs[1 - morder];
        ir::Node* div = op_def(normed, K::Div);
        if (!per_channel(gamma, c) || !div || !private_value(normed)) continue;
        ir::Value* centered = div->inputs[0];
        ir::Value* root = div->inputs[1];
        ir::Node* sub = op_def(centered, K::Sub);
        if (!per_channel(root, c) || !sub || !private_value(centered)) continue;
        ir::Value* pre = sub->inputs[0];
        ir::Value* mean = sub->inputs[1];
        if (!per_channel(mean, c) || !private_value(pre) || pre->type != add.result->type) continue;
        Match m{nullptr, nullptr, mean, root, gamma, beta, &add};
        auto worth_it = [&](const ir::Node& conv) {
          return conv.result->type.numel() >= kMinRatio * conv.inputs[1]->type.numel();
        };
        if (ir::Node* conv = op_def(pre, K::Conv2d)) {
          if (!worth_it(*conv)) continue;
          m.conv = conv;
          return m;
        }
        if (ir::Node* biased = op_def(pre, K::Add)) {
          for (int border = 0; border < 2; ++border) {
            ir::Value* conv_out = biased->inputs[border];
            ir::Node* conv = op_def(conv_out, K::Conv2d);
            if (!conv || !per_channel(biased->inputs[1 - border], c) || !private_value(conv_out) ||
                conv_out->type != pre->type || !worth_it(*conv))
              continue;
            m.conv = conv;
            m.bias = biased->inputs[1 - border];
            return m;
          }
        }
      }
    }
    return std::nullopt;
  }

  ir::Value* op(K kind, std::vector<ir::Value*> in, const ir::Origin& origin, ir::OpAttrs attrs = {}) {
    std::vector<Type> types;
    for (const ir::Value* v : in) types.push_back(v->type);
    const Type t = ir::infer(kind, types, attrs);
    return g_.add_op(kind, attrs, std::move(in), t, origin);
  }

  void rewrite(const Match& m) {
    const ir::Origin& at = m.last->origin;
    ir::Value* weight = m.conv->inputs[1];
    const int64_t channels = weight->type.shape[0];
    ir::Value* s = op(K::Div, {m.gamma, m.root}, at);  // g / sqrt(v + eps), per channel
    ir::OpAttrs as_weight;
    as_weight.dims = {channels, 1, 1, 1};
    ir::Value* scaled_weight = op(K::Mul, {weight, op(K::Reshape, {s}, at, as_weight)}, at);
    ir::Value* conv = op(K::Conv2d, {m.conv->inputs[0], scaled_weight}, m.conv->origin, m.conv->attrs);
    ir::Value* shift = m.bias ? op(K::Sub, {m.bias, m.mean}, at) : op(K::Neg, {m.mean}, at);
    ir::Value* bias = op(K::Add, {op(K::Mul, {shift, s}, at), m.beta}, at);
    g_.replace_uses(m.last->result, op(K::Add, {conv, bias}, at));
  }

  ir::Graph& g_;
  Uses uses_;
  std::unordered_set<const ir::Value*> cone_;
};

}  // namespace

bool fold_batchnorm(ir::Graph& g, const PassContext&) { return Folder(g).run(); }

}  // namespace bj::passes
