// bj::nn::Block: the unit models are built from, as in the seed chapter. A
// block has a forward(), ordered named children, named parameters and
// constants, and a training flag; blocks nest to any depth.
//
//   struct MLP : bj::nn::Block {
//     bj::nn::Dense& hidden = add("hidden", bj::nn::Dense(256, "relu"));
//     bj::nn::Dense& out = add("out", bj::nn::Dense(10));
//     bj::Tensor forward(const bj::Tensor& x) override { return out(hidden(x)); }
//   };
//
// A block with several inputs (some optional) or several outputs overrides
// forward_many instead, and is called with a list (Gluon's forward(x, *args)):
//
//   struct Gated : bj::nn::Block {
//     bj::Tensors forward_many(const bj::Tensors& in) override {  // {x, optional gate}
//       bj::Tensor y = in.at(1).defined() ? in[0] * in[1] : in[0];
//       return {y, y.sum()};
//     }
//   };
//   bj::Tensors outs = gated({x, gate});   // or gated({x, bj::Tensor()}) without the gate
//
// add() moves a block given by value into the tree and returns a reference
// to it; given a block already in some tree (an lvalue), it shares it, so
// one child used twice has one parameter set. add_parameter() and
// add_constant() likewise return slots to keep as reference members.
#pragma once

#include <concepts>
#include <deque>
#include <memory>
#include <optional>
#include <source_location>
#include <string>
#include <utility>
#include <vector>

#include "frontend/nn/hybrid.h"
#include "frontend/nn/init.h"
#include "frontend/nn/parameter.h"
#include "frontend/tensor.h"

namespace bj::nn {

class Block;
class SymbolBlock;
namespace detail {
class Hybrid;
}
template <class B>
concept BlockType = std::derived_from<std::remove_cvref_t<B>, Block>;

class Block : public std::enable_shared_from_this<Block> {
 public:
  Block() = default;
  Block(Block&&) = default;
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
  Block& operator=(Block&&) = delete;
  virtual ~Block() = default;

  /// Runs forward(x); errors thrown inside name this block's path. `where`
  /// (the caller's file:line) becomes the origin of the ops this call traces.
  Tensor operator()(const Tensor& x, std::source_location where = std::source_location::current());
  /// Runs forward_many(inputs) and returns every output. An undefined tensor among the inputs
  /// is an absent optional input (no mask, say); each pattern of present inputs is its own
  /// compiled key when hybridized.
  Tensors operator()(const Tensors& inputs, std::source_location where = std::source_location::current());
  /// The computation of a block with one input and one output: override this or forward_many.
  /// The default runs forward_many({x}), which must return one tensor.
  virtual Tensor forward(const Tensor& x);
  /// The computation of a block with several inputs or outputs. The default runs forward(x) on
  /// the one input it accepts. ValueError if a block overrides neither.
  virtual Tensors forward_many(const Tensors& inputs);

  /// Compiles this block's calls (see hybrid.h): the next call runs eagerly
  /// and is traced, later calls with inputs of the same type, the same
  /// train/eval mode and grad mode run compiled code, and any call whose
  /// data takes an unrecorded path runs eagerly (and is traced as another
  /// variant). Children are covered: their ops are part of this block's
  /// graph. Calling it again starts over with an empty cache. Calls may come
  /// from many threads at once, but not while hybridize() itself runs.
  void hybridize(const HybridizeOptions& options = {});
  /// hybridize(false) turns it off (plain eager calls); true is hybridize().
  void hybridize(bool on);
  /// Runs forward eagerly even when hybridized, and so every block it calls
  /// (hybridized children too): the oracle compiled calls are checked against.
  Tensor call_eager(const Tensor& x, std::source_location where = std::source_location::current());
  Tensors call_eager(const Tensors& inputs, std::source_location where = std::source_location::current());
  bool is_hybridized() const { return hybrid_ != nullptr; }
  /// Counters since hybridize() (all zero if not hybridized).
  HybridStats stats() const;
  /// Returns once this hybridized block's compiles have finished: background ones, and the
  /// optimized recompiles of first-tier variants (HybridizeOptions::tiered). For benchmarks that
  /// time steady-state calls; calls never need it.
  void wait_for_compiles();

  /// Registers `block` as child `name`. An rvalue is moved into the tree; an
  /// lvalue must already be in a tree and is shared. Returns the child.
  template <BlockType B>
  std::remove_cvref_t<B>& add(std::string name, B&& block) {
    using T = std::remove_cvref_t<B>;
    std::shared_ptr<T> child;
    if constexpr (std::is_lvalue_reference_v<B>)
      child = std::static_pointer_cast<T>(shared_handle(block));
    else
      child = std::make_shared<T>(std::move(block));
    T& ref = *child;
    add_child(std::move(name), std::move(child));
    return ref;
  }
  /// Registers a parameter under `name` and returns its slot, which stays
  /// valid for the block's life: keep it as a `Parameter&` member, and
  /// assigning another block's parameter to it ties the two (sharing).
  /// An unbound slot is allowed (an optional parameter) and is not listed.
  Parameter& add_parameter(std::string name, Parameter p);
  /// Registers a constant tensor (used by forward, never trained) and
  /// returns its slot, as add_parameter does.
  Tensor& add_constant(std::string name, Tensor value);

  /// Children in registration order.
  const std::vector<std::pair<std::string, std::shared_ptr<Block>>>& children() const { return children_; }
  /// Child by name; IndexError if absent.
  Block& child(const std::string& name) const;
  /// Every parameter of this tree once, with dotted paths ("0.weight", "net.2.bias").
  std::vector<std::pair<std::string, Parameter>> named_parameters() const;
  std::vector<Parameter> parameters() const;
  /// Every constant of this tree once, with dotted paths.
  std::vector<std::pair<std::string, Tensor>> named_constants() const;

  /// Writes every parameter and constant of the tree (BatchNorm's running statistics) to `path`
  /// in the safetensors format, under their dotted paths ("hidden.weight": [units, in_units], as
  /// PyTorch's Linear). NotInitializedError if a parameter has no value yet.
  void save_parameters(const std::string& path) const;
  struct LoadOptions {
    bool allow_missing = false;  ///< names of the tree the file lacks keep their values
    bool allow_extra = false;    ///< names the tree lacks are ignored
  };
  /// Reads parameters and constants saved by save_parameters (or any safetensors file with the
  /// same names). Deferred shapes are completed from the file. A FileError lists what is missing,
  /// extra or of another shape or dtype, and then nothing has changed: the file is read and
  /// checked whole before any value is replaced.
  void load_parameters(const std::string& path, const LoadOptions& options);
  void load_parameters(const std::string& path) { load_parameters(path, LoadOptions{}); }

  /// Writes this hybridized block's compiled paths outside grad mode (every variant's graph as
  /// traced, with its guards) to PREFIX.ir and every parameter and constant to
  /// PREFIX.safetensors, for SymbolBlock::imports (Gluon's export; `export` is a C++ keyword).
  /// ValueError if the block is not hybridized or has no such path yet: hybridize() it and call
  /// it under NoGradGuard on each kind of input first.
  void export_model(const std::string& prefix) const;

  /// Initializes every parameter of the tree (biases keep their own zeros);
  /// parameters with deferred shapes are initialized on the first call.
  void initialize(const init::Init& init = init::uniform(), bool force_reinit = false);

  /// Forgets the gradients of every parameter of the tree.
  void zero_grad();

  /// Training mode for the whole tree (Dropout is active only in training).
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  /// The root's name in block paths; defaults to the class name.
  std::string name() const;
  void set_name(std::string name) { name_ = std::move(name); }
  /// The class name ("Dense", "MLP").
  std::string type_name() const;
  /// The tree, like PyTorch's module repr.
  std::string repr() const;
  /// One line of settings shown after the type name ("256, activation=relu").
  virtual std::string extra_repr() const { return ""; }

 protected:
  void add_child(std::string name, std::shared_ptr<Block> child);

 private:
  friend class detail::Hybrid;
  friend class SymbolBlock;  // preloads its imported paths into its hybrid state
  /// forward(x) inside this block's call scope (paths in errors and traces).
  Tensor call_forward(const Tensor& x, const std::source_location& where);
  /// forward_many(inputs) likewise; ValueError if it returns no tensor or an undefined one.
  Tensors call_forward(const Tensors& inputs, const std::source_location& where);
  /// A hash of the tree: children, parameter and constant slots, training flags relative to this block's.
  uint64_t structure_fingerprint() const;
  void fingerprint_into(uint64_t& h, bool root_training) const;

  static std::shared_ptr<Block> shared_handle(Block& b);
  /// Appends the tree's entries of `slots` (params_ or constants_) with dotted
  /// paths, each entry once (`same` tells two handles of one entry apart).
  template <class T, class Same>
  void collect(std::deque<std::pair<std::string, T>> Block::*slots, Same same, const std::string& prefix,
               std::vector<std::pair<std::string, T>>& out) const;
  void repr_into(std::string& out, int indent) const;
  /// Every constant slot of the tree with its dotted path, empty ones included.
  void constant_slots(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out);

  std::vector<std::pair<std::string, std::shared_ptr<Block>>> children_;
  // Deques: slots keep their addresses as entries are added and when the block moves.
  std::deque<std::pair<std::string, Parameter>> params_;
  std::deque<std::pair<std::string, Tensor>> constants_;
  std::string name_;
  bool training_ = true;
  std::shared_ptr<detail::Hybrid> hybrid_;  // set while hybridized
};

std::ostream& operator<<(std::ostream& os, const Block& b);

/// The path of the innermost block being called on this thread
/// ("chimera.0.net.0"); empty outside any block call.
std::string current_block_path();
/// Where the innermost block call below the outermost one was made (the
/// line in a parent's forward that called the child); none at the outermost level.
std::optional<std::source_location> current_call_site();

}  // namespace bj::nn
