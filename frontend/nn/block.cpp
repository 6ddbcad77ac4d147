// Block: tree bookkeeping, the call-path stack that names blocks in errors,
// the printable tree, and the hooks into hybridization (hybrid.cpp).
#include "frontend/nn/block.h"

#include <cxxabi.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <set>
#include <ostream>
#include <typeinfo>

#include "frontend/nn/hybrid_state.h"
#include "frontend/serialize.h"
#include "frontend/trace.h"
#include "ir/hash.h"

namespace bj::nn {

namespace {

/// Blocks being called on this thread, outermost first, with their call sites.
thread_local std::vector<const Block*> t_call_stack;
thread_local std::vector<std::source_location> t_call_sites;

struct CallScope {
  CallScope(const Block* b, const std::source_location& where) {
    t_call_stack.push_back(b);
    t_call_sites.push_back(where);
  }
  ~CallScope() {
    t_call_stack.pop_back();
    t_call_sites.pop_back();
  }
};

}  // namespace

std::string current_block_path() {
  std::string path;
  for (size_t i = 0; i < t_call_stack.size(); ++i) {
    const Block* b = t_call_stack[i];
    if (i == 0) {
      path = b->name();
      continue;
    }
    // The name the caller gave this child; a block called without being a child shows its class.
    const auto& kids = t_call_stack[i - 1]->children();
    auto it = std::find_if(kids.begin(), kids.end(), [b](const auto& kv) { return kv.second.get() == b; });
    path += "." + (it != kids.end() ? it->first : "<" + b->type_name() + ">");
  }
  return path;
}

std::optional<std::source_location> current_call_site() {
  if (t_call_sites.size() < 2) return std::nullopt;
  return t_call_sites.back();
}

namespace detail {
namespace {
std::atomic<uint64_t> g_structure_epoch{1};
}
uint64_t structure_epoch() { return g_structure_epoch.load(std::memory_order_acquire); }
void bump_structure_epoch() { g_structure_epoch.fetch_add(1, std::memory_order_acq_rel); }
}  // namespace detail

namespace {
/// Depth of call_eager() scopes on this thread: inside one, no block runs compiled code.
thread_local int t_eager_depth = 0;
}  // namespace

namespace {
/// The block whose default forward or forward_many is running on this thread: the other default
/// called from it means the block overrides neither.
thread_local const Block* t_default_forward = nullptr;

struct DefaultForward {
  explicit DefaultForward(const Block* b) : prev(std::exchange(t_default_forward, b)) {}
  ~DefaultForward() { t_default_forward = prev; }
  const Block* prev;
};

struct EagerDepth {
  EagerDepth() { ++t_eager_depth; }
  ~EagerDepth() { --t_eager_depth; }
};
}  // namespace

Tensor Block::forward(const Tensor& x) {
  if (t_default_forward == this)
    throw ValueError("forward", type_name() + " overrides neither forward(x) nor forward_many(inputs)");
  Tensors out;
  {
    DefaultForward scope(this);
    out = forward_many({x});
  }
  if (out.size() != 1)
    throw ValueError("forward", fmt::format("{} returns {} tensors; call it with a list of inputs to get them all",
                                            type_name(), out.size()));
  if (!out[0].defined()) throw ValueError("forward", type_name() + "'s forward_many returned an undefined tensor");
  return out[0];
}

Tensors Block::forward_many(const Tensors& inputs) {
  if (t_default_forward == this)
    throw ValueError("forward", type_name() + " overrides neither forward(x) nor forward_many(inputs)");
  if (inputs.size() != 1 || !inputs[0].defined())
    throw ValueError("forward", fmt::format("{} takes one input (its forward(x)), not {}", type_name(),
                                            inputs.size() != 1 ? fmt::format("{}", inputs.size()) : std::string("an absent one")));
  DefaultForward scope(this);
  return {forward(inputs[0])};
}

Tensor Block::operator()(const Tensor& x, std::source_location where) {
  if (hybrid_ && !is_tracing() && t_eager_depth == 0) return hybrid_->call(*this, x, where);
  return call_forward(x, where);
}

Tensors Block::operator()(const Tensors& inputs, std::source_location where) {
  if (hybrid_ && !is_tracing() && t_eager_depth == 0) return hybrid_->call(*this, inputs, where);
  return call_forward(inputs, where);
}

Tensor Block::call_eager(const Tensor& x, std::source_location where) {
  EagerDepth depth;
  return call_forward(x, where);
}

Tensors Block::call_eager(const Tensors& inputs, std::source_location where) {
  EagerDepth depth;
  return call_forward(inputs, where);
}

Tensor Block::call_forward(const Tensor& x, const std::source_location& where) {
  CallScope scope(this, where);
  try {
    return forward(x);
  } catch (Error& e) {
    e.set_block_path(current_block_path());
    throw;
  }
}

Tensors Block::call_forward(const Tensors& inputs, const std::source_location& where) {
  CallScope scope(this, where);
  try {
    Tensors out = forward_many(inputs);
    if (out.empty()) throw ValueError("forward", type_name() + "'s forward_many returned no tensor");
    for (size_t i = 0; i < out.size(); ++i)
      if (!out[i].defined())
        throw ValueError("forward", fmt::format("{}'s forward_many returned an undefined tensor as output {}",
                                                type_name(), i));
    return out;
  } catch (Error& e) {
    e.set_block_path(current_block_path());
    throw;
  }
}

std::shared_ptr<Block> Block::shared_handle(Block& b) {
  std::shared_ptr<Block> p = b.weak_from_this().lock();
  if (!p)
    throw ValueError("add", "a " + b.type_name() +
                                " passed by reference must already belong to a block tree (to share it); "
                                "pass a new block by value instead");
  return p;
}

void Block::add_child(std::string name, std::shared_ptr<Block> child) {
  for (const auto& [n, c] : children_)
    if (n == name) throw ValueError("add", type_name() + " already has a child named '" + name + "'");
  if (child.get() == this) throw ValueError("add", "a block cannot be its own child");
  children_.emplace_back(std::move(name), std::move(child));
  detail::bump_structure_epoch();
}

Parameter& Block::add_parameter(std::string name, Parameter p) {
  for (const auto& [n, q] : params_)
    if (n == name) throw ValueError("add_parameter", type_name() + " already has a parameter named '" + name + "'");
  if (p.defined() && p.name().empty()) p.set_name(name);
  detail::bump_structure_epoch();
  return params_.emplace_back(std::move(name), std::move(p)).second;
}

Tensor& Block::add_constant(std::string name, Tensor value) {
  for (const auto& [n, t] : constants_)
    if (n == name) throw ValueError("add_constant", type_name() + " already has a constant named '" + name + "'");
  detail::bump_structure_epoch();
  return constants_.emplace_back(std::move(name), std::move(value)).second;
}

Block& Block::child(const std::string& name) const {
  for (const auto& [n, c] : children_)
    if (n == name) return *c;
  throw IndexError("child", type_name() + " has no child named '" + name + "'");
}

template <class T, class Same>
void Block::collect(std::deque<std::pair<std::string, T>> Block::*slots, Same same, const std::string& prefix,
                    std::vector<std::pair<std::string, T>>& out) const {
  for (const auto& [n, v] : this->*slots) {
    if (!v.defined()) continue;  // an optional slot left empty
    bool seen = std::any_of(out.begin(), out.end(), [&](const auto& kv) { return same(kv.second, v); });
    if (!seen) out.emplace_back(prefix + n, v);
  }
  for (const auto& [n, c] : children_) c->collect(slots, same, prefix + n + ".", out);
}

std::vector<std::pair<std::string, Parameter>> Block::named_parameters() const {
  std::vector<std::pair<std::string, Parameter>> out;
  collect(&Block::params_, [](const Parameter& a, const Parameter& b) { return a.same(b); }, "", out);
  return out;
}

std::vector<Parameter> Block::parameters() const {
  std::vector<Parameter> out;
  for (auto& [n, p] : named_parameters()) out.push_back(p);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Block::named_constants() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect(&Block::constants_, [](const Tensor& a, const Tensor& b) { return a.shares_storage(b); }, "", out);
  return out;
}

void Block::constant_slots(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out) {
  for (auto& [n, v] : constants_) out.emplace_back(prefix + n, &v);
  for (auto& [n, c] : children_) c->constant_slots(prefix + n + ".", out);
}

void Block::save_parameters(const std::string& path) const {
  NamedTensors out;
  for (const auto& [name, p] : named_parameters()) {
    if (!p.initialized())
      throw NotInitializedError("save_parameters", "parameter '" + name + "' " + Type{DType::kF32, p.shape()}.str() +
                                                       " has no value yet: initialize the block and call it once first");
    out.emplace_back(name, p.data().detach());
  }
  for (const auto& [name, c] : named_constants()) out.emplace_back(name, c);
  save(path, out, {{"format", "blockjit"}, {"model", this->name()}});
}

namespace {
/// "'a', 'b' and 3 more": at most eight names of a list in a message.
std::string name_list(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < 8; ++i) s += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > 8) s += fmt::format(" and {} more", names.size() - 8);
  return s;
}
/// True if a value of shape `got` fits a slot of shape `want` (0: a dimension still deferred).
bool fits(const Shape& want, const Shape& got) {
  if (want.size() != got.size()) return false;
  for (int i = 0; i < want.size(); ++i)
    if (want[i] != 0 && want[i] != got[i]) return false;
  return true;
}
}  // namespace

void Block::load_parameters(const std::string& path, const LoadOptions& options) {
  const NamedTensors file = load(path);
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [n, t] : file) by_name[n] = &t;
  std::set<std::string> used;
  std::vector<std::string> missing, extra, wrong;
  auto find = [&](const std::string& name) -> const Tensor* {
    auto it = by_name.find(name);
    if (it == by_name.end()) return nullptr;
    used.insert(name);
    return it->second;
  };
  // Check everything first: a failed load changes nothing.
  std::vector<std::pair<Parameter, const Tensor*>> params;
  for (const auto& [name, p] : named_parameters()) {
    const Tensor* t = find(name);
    if (!t) {
      missing.push_back(name);
    } else if (t->dtype() != DType::kF32 || !fits(p.shape(), t->shape())) {
      wrong.push_back(fmt::format("'{}' is {} in the file, the block's is {}", name, t->type().str(),
                                  Type{DType::kF32, p.shape()}.str()));
    } else {
      params.emplace_back(p, t);
    }
  }
  std::vector<std::pair<Tensor*, const Tensor*>> constants;
  std::vector<std::pair<std::string, Tensor*>> slots;
  constant_slots("", slots);
  std::set<const void*> seen;  // a constant shared by two blocks is one entry
  for (const auto& [name, slot] : slots) {
    if (slot->defined() && !seen.insert(slot->raw_data()).second) continue;
    const Tensor* t = find(name);
    if (!t) {
      if (slot->defined()) missing.push_back(name);
    } else if (slot->defined() && !(slot->type() == t->type())) {
      wrong.push_back(fmt::format("'{}' is {} in the file, the block's is {}", name, t->type().str(), slot->type().str()));
    } else {
      constants.emplace_back(slot, t);
    }
  }
  for (const auto& [n, t] : file)
    if (!used.count(n)) extra.push_back(n);
  std::vector<std::string> problems;
  if (!wrong.empty()) problems.push_back("of another shape or dtype: " + fmt::format("{}", fmt::join(wrong, "; ")));
  if (!missing.empty() && !options.allow_missing)
    problems.push_back(fmt::format("missing from the file ({} of the block's): {}", missing.size(), name_list(missing)));
  if (!extra.empty() && !options.allow_extra)
    problems.push_back(fmt::format("in the file but not in the block ({}): {}", extra.size(), name_list(extra)));
  if (!problems.empty())
    throw FileError(path, fmt::format("does not fit {}: {} (nothing was loaded)", name(), fmt::join(problems, "; ")));
  for (auto& [p, t] : params) {
    if (!p.shape_known()) p.infer_shape(t->shape(), "load_parameters");
    p.set_data(*t);
  }
  bool replaced_slot = false;
  for (auto& [slot, t] : constants) {
    if (slot->defined()) {  // in place: every handle on it (and compiled code, by version) sees the new values
      std::memcpy(slot->raw_data(), t->raw_data(), t->type().bytes());
      slot->impl()->storage->bump_version();
    } else {
      *slot = *t;
      replaced_slot = true;
    }
  }
  if (replaced_slot) detail::bump_structure_epoch();
}

void Block::initialize(const init::Init& init, bool force_reinit) {
  for (Parameter& p : parameters()) p.initialize(init, force_reinit);
}

void Block::zero_grad() {
  for (const Parameter& p : parameters())
    if (p.initialized()) p.data().zero_grad();
}

void Block::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
  detail::bump_structure_epoch();
}

void Block::hybridize(const HybridizeOptions& options) {
  if (options.max_variants < 1) throw ValueError("hybridize", "max_variants must be at least 1");
  hybrid_ = std::make_shared<detail::Hybrid>(*this, options);
}

void Block::hybridize(bool on) {
  if (on)
    hybridize(HybridizeOptions{});
  else
    hybrid_.reset();
}

HybridStats Block::stats() const { return hybrid_ ? hybrid_->stats() : HybridStats{}; }

void Block::wait_for_compiles() {
  if (auto h = hybrid_) h->wait_for_compiles();
}

uint64_t Block::structure_fingerprint() const {
  uint64_t h = kFnvOffset;
  fingerprint_into(h, training_);
  return h;
}

void Block::fingerprint_into(uint64_t& h, bool root_training) const {
  auto mix = [&h](uint64_t v) { h = fnv1a_word(h, v); };
  auto mix_str = [&](const std::string& s) { mix(std::hash<std::string>{}(s)); };
  mix(reinterpret_cast<uintptr_t>(this));
  mix(training_ != root_training);
  for (const auto& [n, p] : params_) {
    mix_str(n);
    mix(reinterpret_cast<uintptr_t>(p.id()));
  }
  for (const auto& [n, c] : constants_) {
    mix_str(n);
    mix(reinterpret_cast<uintptr_t>(c.defined() ? c.impl().get() : nullptr));
  }
  for (const auto& [n, c] : children_) {
    mix_str(n);
    c->fingerprint_into(h, root_training);
  }
}

std::string Block::type_name() const {
  int status = 0;
  char* d = abi::__cxa_demangle(typeid(*this).name(), nullptr, nullptr, &status);
  std::string s = status == 0 && d ? d : typeid(*this).name();
  std::free(d);
  // Drop namespaces and template arguments: "bj::nn::Dense" -> "Dense".
  s = s.substr(0, s.find('<'));
  size_t colon = s.rfind("::");
  return colon == std::string::npos ? s : s.substr(colon + 2);
}

std::string Block::name() const { return name_.empty() ? type_name() : name_; }

void Block::repr_into(std::string& out, int indent) const {
  out += type_name() + "(" + extra_repr();
  if (children_.empty()) {
    out += ")";
    return;
  }
  out += "\n";
  std::string pad(indent + 2, ' ');
  for (const auto& [n, c] : children_) {
    out += pad + "(" + n + "): ";
    c->repr_into(out, indent + 2);
    out += "\n";
  }
  out += std::string(indent, ' ') + ")";
}

std::string Block::repr() const {
  std::string out;
  repr_into(out, 0);
  return out;
}

std::ostream& operator<<(std::ostream& os, const Block& b) { return os << b.repr(); }

}  // namespace bj::nn
