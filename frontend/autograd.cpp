// The autograd engine: recording (called by eager dispatch), the op nodes
// whose backward is generated from the grad column of ir/ops.def, leaf
// accumulation, and backward().
#include "frontend/autograd.h"

#include <fmt/format.h>

#include <unordered_map>

#include "frontend/creation.h"
#include "frontend/ops.h"
#include "runtime/allocator.h"

namespace bj {

namespace {
thread_local bool t_grad_enabled = true;
}  // namespace

bool is_grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool on) { t_grad_enabled = on; }

namespace autograd {

namespace {

// ---- which ops carry gradients, from the table ---------------------------
#define GRAD1(...) true
#define GRAD2(...) true
#define GRAD3(...) true
#define GRAD_ALL(...) true
#define NO_GRAD false
constexpr bool kDifferentiable[] = {
#define OP(Name, text, arity, traits, attrs, rule, grad) grad,
#include "ir/ops.def"
};
#undef GRAD1
#undef GRAD2
#undef GRAD3
#undef GRAD_ALL
#undef NO_GRAD

AutogradMeta* meta(const Tensor& t) { return t.defined() ? t.impl()->autograd.get() : nullptr; }
bool wants_grad(const Tensor& t) {
  auto* m = meta(t);
  return m && m->requires_grad;
}

/// A handle to the same storage without autograd state (what nodes keep).
Tensor detached(const Tensor& t) {
  return Tensor(std::make_shared<detail::TensorImpl>(detail::TensorImpl{t.impl()->storage, t.type(), nullptr}));
}

/// A tensor kept for backward, with the storage version it had when kept.
struct Saved {
  Tensor value;
  uint64_t version = 0;
  static Saved of(const Tensor& t) { return {detached(t), t.impl()->storage->version()}; }
};

/// True if `t` is the only handle on its storage (a gradient no one else holds).
bool sole_handle(const Tensor& t) {
  return t.impl().use_count() == 1 && t.impl()->storage.use_count() == 1 && !t.impl()->autograd;
}

class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<AutogradMeta> leaf) : leaf_(std::move(leaf)) {}
  void apply(const Tensor& grad, std::vector<Tensor>&) override {
    if (leaf_->grad.defined())
      leaf_->grad = leaf_->grad + grad;
    else if (sole_handle(grad))  // nothing else can see it: keep it rather than copy it (as PyTorch does)
      leaf_->grad = grad;
    else
      leaf_->grad = grad.clone();
  }
  std::string name() const override { return "accumulate_grad"; }
  const AutogradMeta* leaf() const override { return leaf_.get(); }

 private:
  std::shared_ptr<AutogradMeta> leaf_;
};

/// Where the gradient of `t` goes: its grad_fn, or its leaf accumulator.
std::shared_ptr<Node> edge(const Tensor& t) {
  AutogradMeta* m = meta(t);
  if (!m || !m->requires_grad) return nullptr;
  if (m->grad_fn) return m->grad_fn;
  if (auto acc = m->accumulator.lock()) return acc;
  auto acc = std::make_shared<AccumulateGrad>(t.impl()->autograd);
  m->accumulator = acc;
  return acc;
}

class OpNode;

/// What a gradient formula sees (see the grad column of ir/ops.def).
struct GradContext {
  const OpNode& node;
  const Tensor& g;
  const ir::OpAttrs& attrs;
  std::vector<Tensor>& out;

  bool needs(size_t i) const;
  Tensor x(size_t i) const;
  Tensor y() const;
  const Type& input_type(size_t i) const;
  size_t num_inputs() const;
  void set(size_t i, Tensor t) { out[i] = std::move(t); }
  void set_all(std::vector<Tensor> ts) {
    for (size_t i = 0; i < ts.size(); ++i)
      if (needs(i)) out[i] = std::move(ts[i]);
  }
};

class OpNode final : public Node {
 public:
  ir::OpKind op;
  ir::OpAttrs attrs;
  std::vector<Saved> inputs;
  Saved output;

  void apply(const Tensor& grad, std::vector<Tensor>& input_grads) override;
  std::string name() const override { return std::string(ir::op_name(op)); }

  /// Saved tensor `s` (input `which` or the output), checked against in-place changes since it was saved.
  Tensor get(const Saved& s, const std::string& which) const {
    uint64_t now = s.value.impl()->storage->version();
    if (now != s.version)
      throw AutogradError(name() + " backward",
                          which + " (" + s.value.type().str() + ") was modified in place after it was saved (version " +
                              std::to_string(now) + ", saved at " + std::to_string(s.version) +
                              "); backward needs its old value: use an out-of-place op (y = x / 2) instead");
    return s.value;
  }
};

bool GradContext::needs(size_t i) const { return node.next[i] != nullptr; }
Tensor GradContext::x(size_t i) const { return node.get(node.inputs[i], "input " + std::to_string(i)); }
Tensor GradContext::y() const { return node.get(node.output, "the output"); }
const Type& GradContext::input_type(size_t i) const { return node.inputs[i].value.type(); }
size_t GradContext::num_inputs() const { return node.inputs.size(); }

// ---- helpers the formulas use ---------------------------------------------

Tensor mask(const Tensor& b) { return cast(b, kF32); }
Tensor sign(const Tensor& x) { return mask(x > 0) - mask(x < 0); }

/// The reduced tensor t (of a Sum/Max/Min) with its reduced axes as size 1, broadcast back to the input's shape.
Tensor unreduce(const GradContext& c, const Tensor& t) {
  Shape kept = c.input_type(0).shape;
  for (int64_t ax : c.attrs.dims) kept[static_cast<int>(ax)] = 1;
  return expand(reshape(t, kept), c.input_type(0).shape);
}

/// Max/min: the gradient goes to the elements equal to the result, split evenly among ties.
Tensor extremum_grad(const GradContext& c) {
  Tensor hit = mask(c.x(0) == unreduce(c, c.y()));
  Tensor count = sum(hit, c.attrs.dims, true);
  return unreduce(c, c.g) * hit / count;
}

/// Prod: each element's gradient is the product of the others in its slice. Without zeros that
/// is y / x; with one zero, the zero's is the product of the rest and the others' are 0; with
/// two or more, all are 0 (never 0/0).
Tensor prod_grad(const GradContext& c) {
  Tensor x = c.x(0), zero = x == 0;
  Tensor others = unreduce(c, prod(where(zero, ones({}), x), c.attrs.dims, true));  // the slice without its zeros
  Tensor zeros_in_slice = unreduce(c, sum(mask(zero), c.attrs.dims, true));
  Tensor g = where(zero, where(zeros_in_slice == 1, others, zeros({})), where(zeros_in_slice == 0, others / x, zeros({})));
  return unreduce(c, c.g) * g;
}

Tensor matmul_grad_a(const GradContext& c) {
  const bool ta = c.attrs.transpose_a, tb = c.attrs.transpose_b;
  return ta ? matmul(c.x(1), c.g, tb, true) : matmul(c.g, c.x(1), false, !tb);
}
Tensor matmul_grad_b(const GradContext& c) {
  const bool ta = c.attrs.transpose_a, tb = c.attrs.transpose_b;
  const Shape &a = c.input_type(0).shape, &b = c.input_type(1).shape;
  if (b.size() == 2 && a.size() > 2 && !ta) {  // one matrix for a batch of rows: one product over all the rows
    const int64_t k = a[a.size() - 1], n = c.g.shape()[c.g.dim() - 1];
    int64_t rows = 1;
    for (int d = 0; d + 1 < a.size(); ++d) rows *= a[d];
    Tensor x = reshape(c.x(0), {rows, k}), g = reshape(c.g, {rows, n});
    return tb ? matmul(g, x, true, false) : matmul(x, g, true, false);
  }
  return tb ? matmul(c.g, c.x(0), true, ta) : matmul(c.x(0), c.g, !ta, false);
}

Shape inverse_permutation(const Shape& perm) {
  Shape inv = perm;
  for (int i = 0; i < perm.size(); ++i) inv[static_cast<int>(perm[i])] = i;
  return inv;
}

std::vector<Tensor> concat_grads(const GradContext& c) {
  std::vector<Tensor> out;
  int64_t at = 0;
  for (size_t i = 0; i < c.num_inputs(); ++i) {
    int64_t n = c.input_type(i).shape[static_cast<int>(c.attrs.axis)];
    out.push_back(slice(c.g, c.attrs.axis, at, at + n));
    at += n;
  }
  return out;
}

/// Zeros of `shape` as one zero broadcast: traced, an expand of a scalar literal, not a literal
/// of the whole shape (a GRU's 64 slice gradients would put hundreds of MB of zeros in the graph).
Tensor broadcast_zeros(const Shape& shape) { return expand(zeros({}), shape); }

/// Scatters the gradient of a slice back into zeros of the input's shape.
Tensor slice_grad(const GradContext& c) {
  const Shape& in = c.input_type(0).shape;
  const int ax = static_cast<int>(c.attrs.axis);
  const int64_t start = c.attrs.start, step = c.attrs.step, n = c.g.shape()[ax];
  auto zeros_len = [&](int64_t len) {
    Shape s = in;
    s[ax] = len;
    return broadcast_zeros(s);
  };
  Tensor spread = c.g;  // n entries, each followed by step-1 zeros, cut to what fits
  int64_t covered = n;
  if (step > 1 && n > 0) {
    Shape one = c.g.shape(), gap = c.g.shape();
    one.insert(ax + 1, 1);
    gap.insert(ax + 1, step - 1);
    Shape merged = c.g.shape();
    merged[ax] = n * step;
    covered = std::min(n * step, in[ax] - start);
    spread = slice(reshape(concat({reshape(c.g, one), broadcast_zeros(gap)}, ax + 1), merged), ax, 0, covered);
  }
  return concat({zeros_len(start), spread, zeros_len(in[ax] - start - covered)}, ax);
}

/// Sums a broadcast gradient back to `shape`.
Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  Shape axes;
  const int lead = g.dim() - shape.size();
  for (int i = 0; i < lead; ++i) axes.push_back(i);
  for (int i = 0; i < shape.size(); ++i)
    if (shape[i] == 1 && g.shape()[lead + i] != 1) axes.push_back(lead + i);
  return reshape(sum(g, axes, true), shape);
}

void OpNode::apply(const Tensor& grad, std::vector<Tensor>& input_grads) {
  GradContext c{*this, grad, attrs, input_grads};
#define GRAD1(e0) \
  if (c.needs(0)) c.set(0, e0);
#define GRAD2(e0, e1) \
  GRAD1(e0) if (c.needs(1)) c.set(1, e1);
#define GRAD3(e0, e1, e2) \
  GRAD2(e0, e1) if (c.needs(2)) c.set(2, e2);
#define GRAD_ALL(e) c.set_all(e);
#define NO_GRAD throw AutogradError(name(), "has no gradient (it is never recorded)");
  switch (op) {
#define OP(Name, text, arity, traits, attrs_, rule, grad) \
  case ir::OpKind::Name: {                                \
    grad                                                  \
  } break;
#include "ir/ops.def"
  }
#undef GRAD1
#undef GRAD2
#undef GRAD3
#undef GRAD_ALL
#undef NO_GRAD
  for (size_t i = 0; i < input_grads.size(); ++i)
    if (input_grads[i].defined()) input_grads[i] = sum_to(input_grads[i], inputs[i].value.shape());
}

std::shared_ptr<OpNode> make_node(ir::OpKind op, const ir::OpAttrs& attrs, std::span<const Tensor> inputs) {
  auto node = std::make_shared<OpNode>();
  node->op = op;
  node->attrs = attrs;
  node->inputs.reserve(inputs.size());
  node->next.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    node->inputs.push_back(Saved::of(t));
    node->next.push_back(edge(t));
  }
  return node;
}

void attach(Tensor& t, std::shared_ptr<Node> grad_fn) {
  auto& m = t.impl()->autograd;
  if (!m) m = std::make_shared<AutogradMeta>();
  m->requires_grad = true;
  m->grad_fn = std::move(grad_fn);
}

}  // namespace

bool is_differentiable(ir::OpKind op) { return kDifferentiable[static_cast<int>(op)]; }

bool must_record(ir::OpKind op, std::span<const Tensor> inputs, DType result_dtype) {
  if (!t_grad_enabled || !kDifferentiable[static_cast<int>(op)] || result_dtype != DType::kF32) return false;
  for (const Tensor& t : inputs)
    if (wants_grad(t)) return true;
  return false;
}

void record(ir::OpKind op, const ir::OpAttrs& attrs, std::span<const Tensor> inputs, Tensor& result) {
  auto node = make_node(op, attrs, inputs);
  node->output = Saved::of(result);
  attach(result, std::move(node));
}

InplaceRecord begin_inplace(ir::OpKind op, const ir::OpAttrs& attrs, std::span<const Tensor> inputs) {
  const Tensor& self = inputs[0];
  if (!must_record(op, inputs, self.dtype())) return {};
  if (wants_grad(self) && !meta(self)->grad_fn)
    throw AutogradError(std::string(ir::op_name(op)) + " (in place)",
                        "a leaf tensor that requires grad (" + self.type().str() +
                            ", e.g. a parameter) cannot be changed in place while recording; "
                            "wrap the update in bj::NoGradGuard");
  return {make_node(op, attrs, inputs)};
}

void finish_inplace(InplaceRecord& rec, Tensor& self) {
  if (!rec.node) return;
  auto* node = static_cast<OpNode*>(rec.node.get());
  node->output = Saved::of(self);
  attach(self, std::move(rec.node));
}

namespace {

/// The initial gradient for backward from `root`, checked.
Tensor root_gradient(const Tensor& root, const Tensor& grad) {
  if (!root.defined()) throw AutogradError("backward", "the tensor is undefined");
  if (!wants_grad(root))
    throw AutogradError("backward", "the tensor " + root.type().str() +
                                        " does not require grad (no input of its computation requires grad)");
  if (!grad.defined()) {
    if (root.numel() != 1)
      throw AutogradError("backward", "needs an output gradient for a non-scalar tensor " + root.type().str() +
                                          " (call backward(grad) with a tensor of its shape)");
    return ones(root.shape());
  }
  if (!(grad.shape() == root.shape()) || grad.dtype() != DType::kF32)
    throw AutogradError("backward", "the output gradient " + grad.type().str() + " does not match the tensor " +
                                        root.type().str());
  return grad;
}

/// Runs the recorded graph from `start`. With `captured`, the nodes it maps (where the gradients
/// of the tensors asked for arrive) hand their gradient to it instead of running; reaching any
/// other leaf is then an error.
void run_backward(const std::shared_ptr<Node>& start, const Tensor& grad,
                  std::unordered_map<const Node*, Tensor>* captured) {
  NoGradGuard no_grad;

  // Dependencies: how many edges of the reachable graph point at each node.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack{start.get()};
  deps[start.get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (captured && captured->count(n)) continue;  // the walk stops at a tensor asked for
    for (const auto& nx : n->next) {
      if (!nx) continue;
      auto [it, fresh] = deps.try_emplace(nx.get(), 0);
      ++it->second;
      if (fresh) stack.push_back(nx.get());
    }
  }

  // Kahn's order: a node runs once every consumer has sent its gradient.
  std::unordered_map<Node*, Tensor> grads{{start.get(), grad}};
  std::vector<Node*> ready{start.get()};
  std::vector<Tensor> input_grads;
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    auto git = grads.find(n);
    if (captured) {
      if (auto it = captured->find(n); it != captured->end()) {
        if (git != grads.end()) it->second = std::move(git->second);
        continue;
      }
      if (n->leaf())
        throw AutogradError("grad", "a leaf tensor that requires grad but is not one of the tensors asked for "
                                    "would get a gradient");
    }
    input_grads.assign(n->next.size(), Tensor());
    if (git != grads.end()) {
      Tensor g = std::move(git->second);
      grads.erase(git);
      n->apply(g, input_grads);
    }
    for (size_t i = 0; i < n->next.size(); ++i) {
      Node* nx = n->next[i].get();
      if (!nx) continue;
      if (input_grads[i].defined()) {
        auto [it, fresh] = grads.try_emplace(nx, std::move(input_grads[i]));
        if (!fresh) it->second = it->second + input_grads[i];
      }
      if (--deps[nx] == 0) ready.push_back(nx);
    }
  }
}

}  // namespace

void backward(const Tensor& root, const Tensor& grad_in) {
  Tensor grad = root_gradient(root, grad_in);
  run_backward(edge(root), grad, nullptr);
}

namespace {
/// Where a walk from several roots starts: hands each root its output gradient.
class Roots final : public Node {
 public:
  explicit Roots(std::vector<Tensor> grads) : grads_(std::move(grads)) {}
  std::string name() const override { return "roots"; }
  void apply(const Tensor&, std::vector<Tensor>& input_grads) override {
    for (size_t i = 0; i < grads_.size(); ++i) input_grads[i] = grads_[i];
  }

 private:
  std::vector<Tensor> grads_;
};
}  // namespace

std::vector<Tensor> grad(const Tensor& root, const Tensor& grad_in, const std::vector<Tensor>& wrt) {
  return grad(std::vector<Tensor>{root}, std::vector<Tensor>{grad_in}, wrt);
}

std::vector<Tensor> grad(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads_in,
                         const std::vector<Tensor>& wrt) {
  if (roots.size() != grads_in.size() || roots.empty())
    throw AutogradError("grad", fmt::format("{} roots and {} output gradients: give one gradient per root",
                                            roots.size(), grads_in.size()));
  std::vector<Tensor> root_grads;
  for (size_t i = 0; i < roots.size(); ++i) root_grads.push_back(root_gradient(roots[i], grads_in[i]));
  auto start = std::make_shared<Roots>(root_grads);
  for (const Tensor& r : roots) start->next.push_back(edge(r));
  std::vector<std::shared_ptr<Node>> nodes;  // where each tensor's gradient arrives (kept alive)
  std::unordered_map<const Node*, Tensor> captured;
  for (const Tensor& t : wrt) {
    if (!wants_grad(t))
      throw AutogradError("grad", "a tensor " + (t.defined() ? t.type().str() : std::string("(undefined)")) +
                                      " asked for does not require grad");
    nodes.push_back(edge(t));
    captured.emplace(nodes.back().get(), Tensor());
  }
  run_backward(start, root_grads[0], &captured);
  std::vector<Tensor> out;
  for (const auto& n : nodes) out.push_back(captured.at(n.get()));
  return out;
}

std::shared_ptr<Node> gradient_edge(const Tensor& t) { return edge(t); }

void set_grad_fn(Tensor& t, std::shared_ptr<Node> node) { attach(t, std::move(node)); }

void set_grad(const Tensor& leaf, Tensor grad) {
  AutogradMeta* m = meta(leaf);
  if (!m || !m->requires_grad) throw AutogradError("set_grad", "the tensor does not require grad");
  m->grad = std::move(grad);
}

rt::Storage* sole_grad_storage(const Tensor& leaf, const Type& type) {
  const AutogradMeta* m = meta(leaf);
  if (!m || !m->grad.defined()) return nullptr;
  const auto& g = m->grad.impl();
  if (g.use_count() != 1 || g->autograd || g->storage.use_count() != 1 || g->type != type ||
      g->storage->bytes() != type.bytes())
    return nullptr;
  return g->storage.get();
}

Tensor take_grad(const Tensor& leaf) {
  AutogradMeta* m = meta(leaf);
  return m ? std::move(m->grad) : Tensor();
}

}  // namespace autograd
}  // namespace bj
