// Export and import of compiled paths (see symbol_block.h). PREFIX.ir is
// text a person can read:
//
//   blockjit-export 1
//   model fixed-hidden-mlp
//   exact 0
//   path list=0 inputs=1 training=0 rng=-1 random_blocks=0
//   graph @fixed-hidden-mlp(%x: f32[2,20]) -> (f32[]) {
//     ...                          (the graph as traced, guards and origins included)
//   }
//   path ...
//
// `inputs` marks each input position present (1) or absent (0); `rng` is the
// graph input holding the random generator's state (-1: none). Lines
// starting with '#' are comments.
#include "frontend/nn/symbol_block.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "frontend/autograd.h"
#include "frontend/dispatch.h"
#include "frontend/nn/hybrid_state.h"
#include "frontend/serialize.h"
#include "frontend/trace.h"
#include "ir/error.h"

namespace bj::nn {

namespace {

std::string input_list(const std::vector<std::optional<Type>>& inputs) {
  std::string s;
  for (const auto& t : inputs) s += (s.empty() ? "" : ", ") + (t ? t->str() : std::string("absent"));
  return "(" + s + ")";
}

/// The truth of a one-element tensor, as `if (t)` reads it (nonzero is true).
bool truth(const Tensor& t) {
  const void* p = t.raw_data();
  switch (t.dtype()) {
    case DType::kBool: return *static_cast<const uint8_t*>(p) != 0;
    case DType::kF32: return *static_cast<const float*>(p) != 0.0f;
    case DType::kI64: return *static_cast<const int64_t*>(p) != 0;
    case DType::kBF16: return (*static_cast<const uint16_t*>(p) & 0x7fff) != 0;
  }
  return false;
}

}  // namespace

void Block::export_model(const std::string& prefix) const {
  if (!hybrid_)
    throw ValueError("export", name() + " is not hybridized: hybridize() it and call it (under NoGradGuard) first");
  const std::vector<detail::Hybrid::Path> paths = hybrid_->paths();
  if (paths.empty())
    throw ValueError("export", name() + " has no compiled path outside grad mode yet: call it under NoGradGuard "
                                        "(as for inference) on each kind of input first");
  // Every parameter and constant of the tree, and whatever else a graph binds (a captured tensor).
  NamedTensors tensors;
  std::vector<std::string> constants;
  std::map<std::string, const void*> bound;  // name -> storage
  auto add = [&](const std::string& name, const Tensor& t, bool constant) {
    auto [it, fresh] = bound.emplace(name, t.raw_data());
    if (!fresh) {
      if (it->second != t.raw_data())
        throw ValueError("export", fmt::format("two tensors of {} are named '{}'", this->name(), name));
      return;
    }
    tensors.emplace_back(name, t.detach());
    if (constant) constants.push_back(name);
  };
  for (const auto& [name, p] : named_parameters()) {
    if (!p.initialized())
      throw NotInitializedError("export", "parameter '" + name + "' has no value yet: call the block once first");
    add(name, p.data(), false);
  }
  for (const auto& [name, c] : named_constants()) add(name, c, true);
  std::string model = name();  // one line, whatever the block was named
  std::replace_if(model.begin(), model.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  std::string text = fmt::format("blockjit-export {}\n# The compiled paths of {}, one graph each, as traced; "
                                 "parameters and constants in the .safetensors file beside this one.\n"
                                 "model {}\nexact {}\n",
                                 kExportFormatVersion, model, model, hybrid_->options().exact ? 1 : 0);
  std::set<const ir::Graph*> written;  // a path kept under two keys (an imported one-input path) once
  for (const auto& p : paths) {
    const Trace& t = p.trace;
    if (!written.insert(t.graph.get()).second) continue;
    const ir::Graph& g = *t.graph;
    for (size_t i = 0; i < g.params().size(); ++i) add(g.params()[i]->name, t.params[i].data(), false);
    for (size_t i = 0; i < g.consts().size(); ++i) add(g.consts()[i]->name, t.consts[i], true);
    std::string present;
    for (const auto& in : p.inputs) present += in ? '1' : '0';
    text += fmt::format("path list={} inputs={} training={} rng={} random_blocks={}\n", p.list ? 1 : 0, present,
                        p.training ? 1 : 0, t.rng_input, t.random_blocks);
    text += ir::print(g);
    if (text.back() != '\n') text += '\n';
  }
  // The graphs' file first: a reader finds the tensors it names once both exist.
  const std::string_view part = text;
  write_file(prefix + ".ir", {&part, 1});
  save(prefix + ".safetensors", tensors,
       {{"format", "blockjit-export"}, {"model", name()}, {"constants", nlohmann::json(constants).dump()}});
}

namespace {

/// The PREFIX.ir file, parsed and checked line by line.
struct ExportFile {
  std::string model;
  bool exact = false;
  struct Path {
    bool list = false;
    std::string inputs;
    bool training = false;
    int rng = -1;
    uint64_t random_blocks = 0;
    std::unique_ptr<ir::Graph> graph;
    int line = 0;
  };
  std::vector<Path> paths;
};

ExportFile read_export(const std::string& path) {
  const std::string text = read_file(path, kMaxExportGraphBytes);
  ExportFile f;
  size_t pos = 0;
  int line_no = 0;
  auto next_line = [&](std::string_view& line) {
    if (pos >= text.size()) return false;
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    line = std::string_view(text).substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    return true;
  };
  auto bad = [&](const std::string& what) -> FileError { return FileError(path, fmt::format("line {}: {}", line_no, what)); };
  std::string_view line;
  if (!next_line(line) || !line.starts_with("blockjit-export "))
    throw FileError(path, "not a blockjit export: its first line is not 'blockjit-export VERSION'");
  {
    int version = 0;
    std::string_view v = line.substr(16);
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), version);
    if (ec != std::errc() || end != v.data() + v.size() || version < 1) throw bad("the format version is not a number");
    if (version > kExportFormatVersion)
      throw bad(fmt::format("format version {} is newer than this blockjit reads ({}): update blockjit", version,
                            kExportFormatVersion));
  }
  bool have_model = false;
  while (next_line(line)) {
    if (line.empty() || line.starts_with('#')) continue;
    if (line.starts_with("model ")) {
      f.model = std::string(line.substr(6));
      have_model = true;
    } else if (line == "exact 0" || line == "exact 1") {
      f.exact = line.back() == '1';
    } else if (line.starts_with("path ")) {
      if (f.paths.size() >= 4096) throw bad("more than 4096 paths");
      ExportFile::Path p;
      std::set<std::string> seen;
      std::string_view rest = line.substr(5);
      while (!rest.empty()) {
        const size_t sp = rest.find(' ');
        std::string_view field = rest.substr(0, sp);
        rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
        const size_t eq = field.find('=');
        if (eq == std::string_view::npos) throw bad(fmt::format("expected key=value, found '{}'", field));
        const std::string key(field.substr(0, eq));
        const std::string_view value = field.substr(eq + 1);
        if (!seen.insert(key).second) throw bad("'" + key + "' is given twice");
        auto number = [&](auto& out) {
          auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
          if (ec != std::errc() || end != value.data() + value.size())
            throw bad(fmt::format("{} needs a whole number, found '{}'", key, value));
        };
        auto flag = [&](bool& out) {
          if (value != "0" && value != "1") throw bad(fmt::format("{} is 0 or 1, found '{}'", key, value));
          out = value == "1";
        };
        if (key == "list") {
          flag(p.list);
        } else if (key == "training") {
          flag(p.training);
        } else if (key == "inputs") {
          if (value.empty() || value.size() > 64 || value.find_first_not_of("01") != std::string_view::npos)
            throw bad(fmt::format("inputs is one 0 or 1 per input (at most 64), found '{}'", value));
          p.inputs = std::string(value);
        } else if (key == "rng") {
          number(p.rng);
        } else if (key == "random_blocks") {
          number(p.random_blocks);
        } else {
          throw bad(fmt::format("unknown field '{}'", key));
        }
      }
      for (const char* key : {"list", "inputs", "training", "rng", "random_blocks"})
        if (!seen.count(key)) throw bad(fmt::format("the path has no '{}'", key));
      if (!p.list && p.inputs != "1") throw bad("a one-input path (list=0) has inputs=1");
      // The graph: from the next line to the first line that is exactly "}".
      const size_t start = pos;
      p.line = line_no + 1;
      const size_t close = text.find("\n}", start == 0 ? 0 : start - 1);
      if (close == std::string::npos || (close + 2 < text.size() && text[close + 2] != '\n'))
        throw bad("the path's graph does not end with a line '}'");
      const std::string_view graph_text = std::string_view(text).substr(start, close + 2 - start);
      try {
        p.graph = ir::parse(graph_text);
        ir::verify(*p.graph);
      } catch (const ParseError& e) {
        std::string where = e.op();
        int rel_line = 0, col = 0;
        if (std::sscanf(where.c_str(), "%d:%d", &rel_line, &col) == 2)
          where = fmt::format("line {}, column {}", p.line + rel_line - 1, col);
        else
          where = fmt::format("the graph at line {}", p.line);
        throw FileError(path, where + ": " + e.detail());
      } catch (const VerifyError& e) {
        throw FileError(path, fmt::format("the graph at line {} does not verify: {}", p.line, e.what()));
      }
      line_no += static_cast<int>(std::count(text.begin() + static_cast<std::ptrdiff_t>(start),
                                             text.begin() + static_cast<std::ptrdiff_t>(close + 1), '\n')) + 1;
      pos = std::min(text.size(), close + 3);
      const ir::Graph& g = *p.graph;
      const size_t present = static_cast<size_t>(std::count(p.inputs.begin(), p.inputs.end(), '1'));
      if (p.rng < -1 || p.rng > static_cast<int>(present) || present + (p.rng >= 0) != g.inputs().size())
        throw FileError(path, fmt::format("the graph at line {} has {} inputs, its path declares {}{}", p.line,
                                          g.inputs().size(), present, p.rng >= 0 ? " and the generator's state" : ""));
      if (p.rng >= 0 && !(g.inputs()[p.rng]->type == Type{DType::kI64, {2}}))
        throw FileError(path, fmt::format("the graph at line {}: the generator's state is i64[2], not {}", p.line,
                                          g.inputs()[p.rng]->type.str()));
      f.paths.push_back(std::move(p));
    } else {
      throw bad(fmt::format("expected 'model', 'exact', 'path' or a comment, found '{}'",
                            line.substr(0, std::min<size_t>(line.size(), 40))));
    }
  }
  if (!have_model) throw FileError(path, "names no model (a line 'model NAME')");
  if (f.paths.empty()) throw FileError(path, "holds no path");
  return f;
}

}  // namespace

std::shared_ptr<SymbolBlock> SymbolBlock::imports(const std::string& prefix, const ImportOptions& options) {
  const std::string ir_path = prefix + ".ir", st_path = prefix + ".safetensors";
  ExportFile f = read_export(ir_path);
  const SafetensorsHeader header = load_header(st_path);
  std::set<std::string> constant_names;
  if (auto it = header.metadata.find("constants"); it != header.metadata.end()) {
    nlohmann::json list = nlohmann::json::parse(it->second, nullptr, false);
    if (!list.is_array()) throw FileError(st_path, "its metadata 'constants' is not a JSON list of names");
    for (const auto& n : list) {
      if (!n.is_string()) throw FileError(st_path, "its metadata 'constants' is not a JSON list of names");
      constant_names.insert(n.get<std::string>());
    }
  }
  NamedTensors tensors = load(st_path);
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [n, t] : tensors) by_name[n] = &t;

  auto b = std::make_shared<SymbolBlock>();
  b->set_name(f.model);
  b->file_ = ir_path;
  b->exact_ = f.exact;
  for (const auto& [n, t] : tensors) {
    if (constant_names.count(n)) {
      b->consts_by_name_[n] = &b->add_constant(n, t);
    } else {
      if (t.dtype() != DType::kF32)
        throw FileError(st_path, fmt::format("parameter '{}' is {}; parameters are f32", n, t.type().str()));
      Parameter p(t.shape());
      p.set_data(t);
      b->params_by_name_[n] = b->add_parameter(n, p);
    }
  }
  for (auto& fp : f.paths) {
    const ir::Graph& g = *fp.graph;
    auto check = [&](const ir::Value* v, bool constant) {
      auto it = by_name.find(v->name);
      const char* kind = constant ? "constant" : "parameter";
      if (it == by_name.end())
        throw FileError(st_path, fmt::format("has no tensor '{}', {} of the graph at {}:{}", v->name, kind, ir_path, fp.line));
      if (constant != (constant_names.count(v->name) > 0))
        throw FileError(st_path, fmt::format("'{}' is a {} in the graph at {}:{}, but not in this file", v->name, kind,
                                             ir_path, fp.line));
      if (!(it->second->type() == v->type))
        throw FileError(st_path, fmt::format("'{}' is {} here, {} in the graph at {}:{}", v->name,
                                             it->second->type().str(), v->type.str(), ir_path, fp.line));
    };
    for (const ir::Value* v : g.params()) check(v, false);
    for (const ir::Value* v : g.consts()) check(v, true);
    Path p;
    p.list = fp.list;
    p.training = fp.training;
    p.rng_input = fp.rng;
    p.random_blocks = fp.random_blocks;
    p.line = fp.line;
    for (size_t i = 0, k = 0; i < fp.inputs.size(); ++i) {
      if (fp.inputs[i] == '0') {
        p.inputs.emplace_back();
        continue;
      }
      if (static_cast<int>(k) == fp.rng) ++k;  // the generator's state is not a call's input
      p.inputs.emplace_back(g.inputs()[k++]->type);
    }
    p.graph = std::shared_ptr<ir::Graph>(std::move(fp.graph));
    b->infos_.push_back({p.list, p.inputs, p.training, p.graph.get(), p.line});
    b->paths_.push_back(std::move(p));
  }
  // Inference unless every path was recorded in training mode.
  b->train(std::all_of(b->paths_.begin(), b->paths_.end(), [](const Path& p) { return p.training; }));
  if (!options.hybridize) return b;
  b->hybridize(HybridizeOptions{.use_cache = options.use_cache, .exact = f.exact, .adaptive = options.adaptive});
  for (const Path& p : b->paths_) {
    detail::Hybrid::Path hp;
    hp.list = p.list;
    hp.inputs = p.inputs;
    hp.training = p.training;
    hp.trace.graph = p.graph;
    for (const ir::Value* v : p.graph->params()) hp.trace.params.push_back(b->params_by_name_.at(v->name));
    for (const ir::Value* v : p.graph->consts()) hp.trace.consts.push_back(*b->consts_by_name_.at(v->name));
    hp.trace.rng_input = p.rng_input;
    hp.trace.random_blocks = p.random_blocks;
    codegen::CompileOptions co;
    co.use_cache = options.use_cache;
    co.exact = f.exact;
    CompiledTraining code{compile(hp.trace, co), nullptr, static_cast<int>(p.graph->outputs().size())};
    b->hybrid_->preload(hp, code);
  }
  return b;
}

std::string SymbolBlock::extra_repr() const {
  return fmt::format("{} path{} from {}", paths_.size(), paths_.size() == 1 ? "" : "s", file_);
}

std::optional<Tensors> SymbolBlock::replay(const Path& p, const Tensors& present, std::string& failed) {
  const ir::Graph& g = *p.graph;
  if (p.rng_input >= 0)
    throw ValueError("SymbolBlock", fmt::format("the path at {}:{} draws random numbers: it runs only as compiled "
                                                "code (keep the block hybridized, call it outside grad mode)",
                                                file_, p.line));
  std::unordered_map<const ir::Value*, Tensor> v;
  for (size_t i = 0; i < g.inputs().size(); ++i) v[g.inputs()[i]] = present[i];
  for (const ir::Value* x : g.params()) v[x] = params_by_name_.at(x->name).data();
  for (const ir::Value* x : g.consts()) v[x] = *consts_by_name_.at(x->name);
  std::vector<Tensor> ins;
  auto run = [&](const ir::Node& n, auto& self) -> bool {
    switch (n.kind) {
      case ir::NodeKind::kOp:
        ins.clear();
        for (const ir::Value* in : n.inputs) ins.push_back(v.at(in));
        v[n.result] = bj::detail::apply(n.op, ins, n.attrs);
        return true;
      case ir::NodeKind::kLiteral: {
        Tensor t = bj::detail::empty(n.result->type);
        if (!n.data.empty()) std::memcpy(t.raw_data(), n.data.data(), n.data.size());
        v[n.result] = std::move(t);
        return true;
      }
      case ir::NodeKind::kGuard: {
        const Tensor& pred = v.at(n.inputs[0]);
        const bool outcome = truth(pred);
        bj::detail::trace_replayed_guard(pred, outcome, n.origin);
        if (outcome == n.expect) return true;
        failed = fmt::format("{}, recorded at {}", ir::describe(g, n), n.origin.str());
        return false;
      }
      case ir::NodeKind::kRegion:
        for (const auto& inner : n.body)
          if (!self(*inner, self)) return false;
        return true;
    }
    return true;
  };
  for (const auto& n : g.nodes())
    if (!run(*n, run)) return std::nullopt;
  for (const ir::Commit& c : g.commits()) {
    NoGradGuard no_grad;  // state, not part of any gradient
    bj::detail::assign_state(v.at(c.target), v.at(c.value));
  }
  Tensors out;
  for (const ir::Value* o : g.outputs()) out.push_back(v.at(o));
  return out;
}

Tensors SymbolBlock::forward_many(const Tensors& inputs) {
  std::vector<std::optional<Type>> types;
  Tensors present;
  for (const Tensor& t : inputs) {
    types.push_back(t.defined() ? std::optional<Type>(t.type()) : std::nullopt);
    if (t.defined()) present.push_back(t);
  }
  std::vector<std::string> failures;
  for (size_t k = 0; k < paths_.size(); ++k) {
    const Path& p = paths_[k];
    if (p.training != is_training() || p.inputs != types) continue;
    std::string failed;
    if (std::optional<Tensors> out = replay(p, present, failed)) return *out;
    failures.push_back(fmt::format("path {} (line {}) failed {}", k + 1, p.line, failed));
  }
  if (failures.empty()) {
    std::set<std::string> accepted;
    for (const Path& p : paths_)
      accepted.insert(input_list(p.inputs) + (p.training ? " in training mode" : " in inference mode"));
    throw ShapeError("SymbolBlock", fmt::format("no exported path takes inputs {} in {} mode; {} has paths for {}",
                                                input_list(types), is_training() ? "training" : "inference", file_,
                                                fmt::join(accepted, "; ")));
  }
  throw GuardError("SymbolBlock", fmt::format("the data takes a path that {} did not record, and an imported block has "
                                              "no eager code to fall back to: {}",
                                              name(), fmt::join(failures, "; ")));
}

}  // namespace bj::nn
