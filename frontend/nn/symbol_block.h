// bj::nn::SymbolBlock: a model without its class. Block::export_model writes
// a hybridized block's compiled paths (each variant's graph as traced, with
// its guards) to PREFIX.ir and its parameters and constants to
// PREFIX.safetensors; SymbolBlock::imports reads them back into a block that
// runs those graphs (Gluon's export / SymbolBlock.imports, TorchScript's
// save / load):
//
//   net->hybridize();
//   { bj::NoGradGuard g; (*net)(x); }     // records and compiles a path
//   net->export_model("mlp");            // mlp.ir + mlp.safetensors
//   auto m = bj::nn::SymbolBlock::imports("mlp");
//   bj::Tensor y = (*m)(x);               // the same compiled code, no MLP class
//
// An imported block is hybridized with its paths preloaded as compiled
// variants, so a call on a recorded path runs compiled code at once. With no
// eager code to fall back to, a call whose data fails every path's guards
// raises GuardError naming each failed guard and where it was recorded;
// never a wrong answer. Its forward replays a path's graph op by op through
// eager dispatch, so an imported block can be traced into a larger
// hybridized model and fine-tuned (its parameters are ordinary parameters,
// named as in the exported block).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "frontend/nn/block.h"
#include "ir/graph.h"

namespace bj::nn {

/// The version of the PREFIX.ir format this build writes and reads.
inline constexpr int kExportFormatVersion = 1;
/// The largest PREFIX.ir read (literals are stored in the graphs).
inline constexpr uint64_t kMaxExportGraphBytes = uint64_t{1} << 30;

class SymbolBlock : public Block {
 public:
  struct ImportOptions {
    /// Hybridize the imported block with its paths compiled now (from the on-disk object cache when
    /// it holds them); false leaves it eager: every call replays a graph.
    bool hybridize = true;
    bool use_cache = true;  ///< the on-disk object cache (BJ_CACHE=0 also turns it off)
    bool adaptive = true;   ///< HybridizeOptions::adaptive (off: calls on a recorded path always run compiled)
  };
  /// Reads PREFIX.ir and PREFIX.safetensors (written by Block::export_model). FileError naming
  /// the file, and the line for the graphs, for anything wrong: a missing or truncated file,
  /// another format or a newer version, a graph that does not parse or verify, a parameter or
  /// constant missing from the tensors or of another type.
  static std::shared_ptr<SymbolBlock> imports(const std::string& prefix, const ImportOptions& options);
  static std::shared_ptr<SymbolBlock> imports(const std::string& prefix) { return imports(prefix, ImportOptions{}); }

  /// Replays the first path whose inputs have these types and whose guards all hold.
  /// ShapeError if no path takes inputs of these types (in this train/eval mode), GuardError if
  /// every such path fails a guard.
  Tensors forward_many(const Tensors& inputs) override;
  std::string extra_repr() const override;

  /// An imported path: the inputs it takes, its mode and its graph (as traced).
  struct PathInfo {
    bool list = false;  ///< recorded from a call with a list of inputs
    std::vector<std::optional<Type>> inputs;  ///< per input position: its type, or absent
    bool training = false;
    const ir::Graph* graph = nullptr;
    int line = 0;  ///< where its graph starts in PREFIX.ir
  };
  /// The paths in the file's order.
  const std::vector<PathInfo>& paths() const { return infos_; }
  /// The exported block was hybridized with HybridizeOptions::exact.
  bool exact() const { return exact_; }

 private:
  struct Path {
    bool list = false;
    std::vector<std::optional<Type>> inputs;  // per input position: its type, or absent
    bool training = false;
    std::shared_ptr<ir::Graph> graph;
    int rng_input = -1;
    uint64_t random_blocks = 0;
    int line = 0;  // where its graph starts in the file
  };
  /// Runs `p` eagerly on the present inputs; nothing (and `failed` set) if a guard fails.
  std::optional<Tensors> replay(const Path& p, const Tensors& present, std::string& failed);

  std::vector<Path> paths_;
  std::vector<PathInfo> infos_;  // paths_ as paths() shows them
  std::map<std::string, Parameter> params_by_name_;
  std::map<std::string, Tensor*> consts_by_name_;
  std::string file_;
  bool exact_ = false;
};

}  // namespace bj::nn
