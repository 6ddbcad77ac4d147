// Hybridized calls (see hybrid.h and hybrid_state.h).
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <set>
#include <tuple>
#include <thread>

#include "frontend/autograd.h"
#include "frontend/nn/block.h"
#include "frontend/nn/hybrid_state.h"
#include "ir/batch.h"
#include "ir/env.h"

namespace bj::nn {

namespace {

/// BJ_LOG=stats,recompiles (comma separated; "all" for both), read at each use.
env::LogFlags log_flags() { return env::log(); }

std::mutex g_log_mu;
std::function<void(const std::string&)>& log_handler() {
  static auto* h = new std::function<void(const std::string&)>;
  return *h;
}

void log_line(const std::string& line) {
  std::lock_guard lock(g_log_mu);
  if (log_handler())
    log_handler()(line);
  else
    std::fprintf(stderr, "blockjit: %s\n", line.c_str());
}

/// Hybridized blocks alive, for the report at exit (BJ_LOG=stats).
std::mutex g_live_mu;
std::set<const detail::Hybrid*>& live() {
  static auto* s = new std::set<const detail::Hybrid*>;
  return *s;
}
void report_live_at_exit() {
  std::lock_guard lock(g_live_mu);
  for (const detail::Hybrid* h : live()) h->report();
  live().clear();
}

}  // namespace

void set_log_handler(std::function<void(const std::string&)> handler) {
  std::lock_guard lock(g_log_mu);
  log_handler() = std::move(handler);
}

std::string HybridStats::str() const {
  std::string reasons;
  for (const auto& [why, n] : eager_reasons) reasons += fmt::format("{}{}: {}", reasons.empty() ? "" : ", ", why, n);
  std::string s = fmt::format("{} calls: {} compiled, {} eager{}; {} traces, {} variants, {} compile failures, "
                              "{:.1f} ms compiling ({} from the object cache{})",
                              calls, compiled_hits, eager_fallbacks, reasons.empty() ? "" : " (" + reasons + ")",
                              traces, variants, compile_failures, compile_ms, cache_hits,
                              upgrades + upgrades_pending == 0
                                  ? std::string()
                                  : fmt::format(", {} first-tier variant{} upgraded to optimized code{}", upgrades,
                                                upgrades == 1 ? "" : "s",
                                                upgrades_pending ? fmt::format(", {} upgrading", upgrades_pending) : ""));
  if (dynamic_variants)
    s += fmt::format("; {} variant{} for every batch size, serving {} size{}", dynamic_variants,
                     dynamic_variants == 1 ? "" : "s", dynamic_sizes, dynamic_sizes == 1 ? "" : "s");
  if (slower_keys)
    s += fmt::format("; {} key{} served eagerly, its compiled code being no faster", slower_keys,
                     slower_keys == 1 ? "" : "s");
  for (const GuardFailure& g : guard_failures)
    s += fmt::format("\n  {} of variant {} ({}) failed {} time{}, recorded at {}{}", g.guard, g.variant, g.key, g.count,
                     g.count == 1 ? "" : "s", g.origin.str(), g.exact_value ? " (compares an exact value)" : "");
  return s;
}

namespace detail {

std::string Hybrid::Key::str() const {
  std::string in = input.str(), wants;
  if (list) {
    in.clear();
    for (const auto& t : inputs) in += (in.empty() ? "" : ", ") + (t ? t->str() : std::string("absent"));
    in = "(" + in + ")";
    for (size_t i = 0; i < inputs.size(); ++i)
      if (input_grad >> i & 1) wants += (wants.empty() ? "" : ", ") + std::to_string(i);
  }
  std::string grads;
  if (input_grad && !list) {
    grads = ", input requires grad";
  } else if (input_grad) {
    const bool several = (input_grad & (input_grad - 1)) != 0;
    grads = fmt::format(", input{} {} require{} grad", several ? "s" : "", wants, several ? "" : "s");
  }
  return fmt::format("{}, {}, {}{}", in, training ? "training" : "inference", grad ? "grad" : "no grad", grads);
}

std::string Hybrid::describe(const Key& key, const Variant& v, int guard) {
  ir::Origin origin;
  std::string text = v.code.forward.describe_guard(guard, &origin);
  return fmt::format("{} of variant {} ({}), recorded at {}", text, v.number, key.str(), origin.str());
}

Hybrid::Variant::Variant(CompiledTraining c)
    : code(std::move(c)), guard_failures(std::make_unique<std::atomic<int64_t>[]>(code.forward.guard_count() + 1)) {}

Hybrid::Hybrid(Block& b, HybridizeOptions options)
    : options_(options),
      name_(b.name()),
      epoch_seen_(structure_epoch()),
      fingerprint_(b.structure_fingerprint()),
      has_params_(!b.named_parameters().empty()),
      slow_compiled_(env::fault("slow-compiled")) {
  if (log_flags().stats) {
    static std::once_flag once;
    std::call_once(once, [] { std::atexit(report_live_at_exit); });
    std::lock_guard lock(g_live_mu);
    live().insert(this);
  }
}

Hybrid::~Hybrid() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    upgrades_.clear();  // queued upgrades are dropped; the one compiling finishes
  }
  work_cv_.notify_all();
  if (upgrader_.joinable()) upgrader_.join();
  for (std::thread& t : workers_) t.join();
  std::lock_guard lock(g_live_mu);
  if (live().erase(this)) report();
}

void Hybrid::report() const { log_line(fmt::format("stats for {}: {}", name_, stats().str())); }

Hybrid::Entry* Hybrid::find(const Key& key) {
  for (auto& e : entries_)
    if (e->key == key) {
      e->last_used = ++clock_;
      return e.get();
    }
  return nullptr;
}

void Hybrid::make_room() {
  while (static_cast<int>(entries_.size()) > std::max(1, options_.max_keys)) {
    auto lru = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if ((*it)->pending == 0 && (lru == entries_.end() || (*it)->last_used < (*lru)->last_used)) lru = it;
    if (lru == entries_.end()) return;  // every key is compiling: keep them (bounded by the threads)
    if ((*lru)->upgrading > 0) evicted_.push_back(std::move(*lru));  // the upgrader still writes to it
    entries_.erase(lru);  // calls running its variants hold their own references
  }
}

void Hybrid::drop_if_empty(Entry* e) {
  if (e->variants.empty() && e->pending == 0 && e->failed.empty())
    std::erase_if(entries_, [e](const auto& p) { return p.get() == e; });
}

void Hybrid::refresh_structure(Block& b) {
  const uint64_t epoch = structure_epoch();
  if (epoch == epoch_seen_.load(std::memory_order_acquire)) return;
  const uint64_t fp = b.structure_fingerprint();
  const bool has_params = !b.named_parameters().empty();
  size_t dropped = 0;
  {
    std::lock_guard lock(mu_);
    if (fp != fingerprint_) {
      dropped = entries_.size();
      for (auto& e : entries_) retired_.push_back(std::move(e));
      entries_.clear();
      dropped += dynamic_.size();
      dynamic_.clear();  // calls running its code hold their own references
      fingerprint_ = fp;
    }
    has_params_ = has_params;
    epoch_seen_.store(epoch, std::memory_order_release);
  }
  if (dropped && log_flags().recompiles)
    log_line(fmt::format("{}: the block's structure changed (a child, parameter or constant slot); "
                         "its {} cached key(s) are dropped",
                         name_, dropped));
}

Tensors Hybrid::eager(Block& b, const Key& key, std::span<const Tensor> inputs, const std::source_location& where,
                      const std::string& reason) {
  eager_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(mu_);
    ++eager_reasons_[reason];
  }
  if (!key.list) return {b.call_forward(inputs[0], where)};
  return b.call_forward(Tensors(inputs.begin(), inputs.end()), where);
}

namespace {
constexpr size_t kCompiledSamples = 8, kEagerSamples = 3;
constexpr int64_t kRecheckCalls = 5000;
constexpr double kMargin = 0.95;  // compiled must take under 95 % of eager's time

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

Hybrid::Probe Hybrid::probe(Entry& e) {
  if (!options_.adaptive || e.key.grad || e.variants.empty() || e.pending > 0 || e.upgrading > 0) return Probe::kNone;
  if (e.serve_eager) {
    if (++e.served_eager < kRecheckCalls) return Probe::kServeEager;
    e.serve_eager = false;  // look again: the machine or the data may have changed
    e.compiled_us.clear();
    e.eager_us.clear();
  }
  if (e.compiled_us.size() < kCompiledSamples) return Probe::kTimeCompiled;
  if (e.eager_us.size() < kEagerSamples) return Probe::kTimeEager;
  return Probe::kNone;
}

void Hybrid::record_time(const Key& key, Probe kind, double us) {
  std::string notice;
  {
    std::lock_guard lock(mu_);
    Entry* e = find(key);
    if (!e) return;
    auto& samples = kind == Probe::kTimeCompiled ? e->compiled_us : e->eager_us;
    if (samples.size() >= (kind == Probe::kTimeCompiled ? kCompiledSamples : kEagerSamples)) return;
    samples.push_back(us);
    if (kind != Probe::kTimeEager || e->eager_us.size() < kEagerSamples) return;
    const double compiled = median_of(e->compiled_us), eager = median_of(e->eager_us);
    if (compiled < kMargin * eager) return;
    e->serve_eager = true;
    e->served_eager = 0;
    notice = fmt::format("{}: {} runs eagerly: compiled code took {:.2f} us per call, eager mode {:.2f} us "
                         "(checked again after {} calls)",
                         name_, key.str(), compiled, eager, kRecheckCalls);
  }
  if (log_flags().recompiles) log_line(notice);
}

Tensors Hybrid::adaptive_eager(Block& b, const Key& key, std::span<const Tensor> inputs,
                               const std::source_location& where, Probe probe) {
  if (probe == Probe::kServeEager) return eager(b, key, inputs, where, "compiled slower");
  const auto t0 = std::chrono::steady_clock::now();
  Tensors out = eager(b, key, inputs, where, "timing eager mode");
  record_time(key, Probe::kTimeEager, std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  return out;
}

template <class Run>
bool Hybrid::try_variants(const Key& key, Run&& run, int& compiled_seen,
                          std::shared_ptr<const Variant>& failed_variant, int& failed_guard, Probe& probe) {
  // The variants to try, copied under the lock: the call holds references, so a key dropped
  // meanwhile (make_room) frees its code only when the last call using it returns.
  constexpr size_t kSmall = 4;
  std::shared_ptr<const Variant> small[kSmall];
  std::vector<std::shared_ptr<const Variant>> large;
  size_t n = 0;
  {
    std::lock_guard lock(mu_);
    if (Entry* e = find(key)) {
      probe = this->probe(*e);
      if (probe == Probe::kTimeEager || probe == Probe::kServeEager) return false;  // the caller runs it eagerly
      n = e->variants.size();
      compiled_seen = e->compiled;
      if (n > kSmall) large.resize(n);
      for (size_t i = 0; i < n; ++i) (n > kSmall ? large.data() : small)[i] = e->variants[i];
    }
  }
  const std::shared_ptr<const Variant>* variants = n > kSmall ? large.data() : small;
  const auto t0 = probe == Probe::kTimeCompiled ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  for (size_t i = 0; i < n; ++i) {
    const int failed = run(*variants[i]);
    if (failed < 0 && slow_compiled_) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (failed < 0) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      if (probe == Probe::kTimeCompiled)
        record_time(key, probe,
                    std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      if (i > 0) {  // move a variant that hits ahead of one that did not
        std::lock_guard lock(mu_);
        if (Entry* e = find(key))
          for (size_t j = 1; j < e->variants.size(); ++j)
            if (e->variants[j] == variants[i]) std::swap(e->variants[j], e->variants[j - 1]);
      }
      return true;
    }
    variants[i]->guard_failures[failed].fetch_add(1, std::memory_order_relaxed);
    failed_variant = variants[i];  // kept alive for the miss's messages, even if its key is dropped meanwhile
    failed_guard = failed;
  }
  return false;
}

Tensor Hybrid::call(Block& b, const Tensor& x, const std::source_location& where) {
  calls_.fetch_add(1, std::memory_order_relaxed);
  Key key;
  key.input = x.type();
  if (!x.defined()) return eager(b, key, {&x, 1}, where, "undefined input")[0];  // forward says what is wrong
  refresh_structure(b);
  key.grad = is_grad_enabled();
  const bool with_backward = key.grad && (x.requires_grad() || has_params_.load(std::memory_order_relaxed));
  if (with_backward && !options_.compile_training) return eager(b, key, {&x, 1}, where, "grad mode")[0];
  key.training = b.is_training();
  key.input_grad = key.grad && x.requires_grad();
  for (;;) {  // again only when a variant arrived between the lookup and the miss
    int compiled_seen = 0, failed_guard = -1;
    std::shared_ptr<const Variant> failed_variant;
    Tensor out;
    Probe probe = Probe::kNone;
    if (try_variants(key, [&](const Variant& v) { return v.code.try_run(x, out); }, compiled_seen, failed_variant,
                     failed_guard, probe))
      return out;
    if (probe == Probe::kTimeEager || probe == Probe::kServeEager) return adaptive_eager(b, key, {&x, 1}, where, probe)[0];
    if (try_dynamic(key, [&](const Variant& v) { return v.code.try_run(x, out); })) return out;
    if (std::optional<Tensors> outs = miss(b, {&x, 1}, where, key, compiled_seen, failed_variant.get(), failed_guard))
      return (*outs)[0];
  }
}

Tensors Hybrid::call(Block& b, const Tensors& inputs, const std::source_location& where) {
  calls_.fetch_add(1, std::memory_order_relaxed);
  Key key;
  key.list = true;
  if (inputs.size() > 64) return eager(b, key, inputs, where, "over 64 inputs");
  refresh_structure(b);
  key.grad = is_grad_enabled();
  key.training = b.is_training();
  Tensors present;  // the graph's inputs: the inputs given
  present.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) {
      key.inputs.emplace_back();
      continue;
    }
    key.inputs.emplace_back(inputs[i].type());
    present.push_back(inputs[i]);
    if (key.grad && inputs[i].requires_grad()) key.input_grad |= uint64_t{1} << i;
  }
  if (present.empty()) return eager(b, key, inputs, where, "no input");  // forward_many decides
  const bool with_backward = key.grad && (key.input_grad || has_params_.load(std::memory_order_relaxed));
  if (with_backward && !options_.compile_training) return eager(b, key, inputs, where, "grad mode");
  for (;;) {
    int compiled_seen = 0, failed_guard = -1;
    std::shared_ptr<const Variant> failed_variant;
    Tensors outs;
    Probe probe = Probe::kNone;
    if (try_variants(key, [&](const Variant& v) { return v.code.try_run(present, outs); }, compiled_seen,
                     failed_variant, failed_guard, probe))
      return outs;
    if (probe == Probe::kTimeEager || probe == Probe::kServeEager) return adaptive_eager(b, key, inputs, where, probe);
    if (try_dynamic(key, [&](const Variant& v) { return v.code.try_run(present, outs); })) return outs;
    if (std::optional<Tensors> got = miss(b, inputs, where, key, compiled_seen, failed_variant.get(), failed_guard))
      return *got;
  }
}

std::optional<Tensors> Hybrid::miss(Block& b, std::span<const Tensor> inputs, const std::source_location& where,
                                    const Key& key, int compiled_seen, const Variant* failed_variant, int failed_guard) {
  Entry* e = nullptr;
  std::string why, eager_reason, notice;  // notices are logged after the lock is released
  {
    std::lock_guard lock(mu_);
    e = find(key);
    if (!e) {
      std::string seen;
      for (const auto& other : entries_) seen += (seen.empty() ? "" : "; ") + other->key.str();
      why = seen.empty() ? "first call (" + key.str() + ")" : "new key " + key.str() + " (cached: " + seen + ")";
      entries_.push_back(std::make_unique<Entry>());
      entries_.back()->key = key;
      e = entries_.back().get();
      e->last_used = ++clock_;
    }
    if (e->compiled > compiled_seen) return std::nullopt;  // a background compile finished meanwhile: try it
    if (!e->failed.empty()) {
      eager_reason = "not compilable";
    } else if (e->pending > 0) {
      eager_reason = "compiling";
    } else if (static_cast<int>(e->variants.size()) >= options_.max_variants) {
      eager_reason = "variant cap";
      if (!e->cap_logged) {
        e->cap_logged = true;
        notice = fmt::format("{}: {} variants (the cap) are compiled for {}; calls on other paths run eagerly "
                             "(hybridize with a larger max_variants to keep more)",
                             name_, e->variants.size(), key.str());
        if (failed_variant) {
          notice += fmt::format(". The call that found the cap full failed {}", describe(key, *failed_variant, failed_guard));
          if (failed_variant->code.forward.guard_reads_exact_value(failed_guard))
            notice += ". That guard compares an exact value that forward read from a tensor as a plain number "
                      "(an item() used in C++ arithmetic, such as (int)x.max().item(), or a data<T>() read): each "
                      "distinct value is another path, so no cap helps; compare with tensors instead (x.max() > 3) "
                      "or compare the item() directly (x.max().item() > 3)";
        }
      }
    } else {
      ++e->pending;
      traces_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (!notice.empty()) log_line(notice);
  if (!eager_reason.empty()) return eager(b, key, inputs, where, eager_reason);
  if (log_flags().recompiles) {
    if (failed_variant) why = describe(key, *failed_variant, failed_guard) + ", failed";
    log_line(fmt::format("{}: tracing a new variant: {}", name_, why));
  }
  eager_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(mu_);
    ++eager_reasons_[failed_variant ? "new path" : "new key"];
  }
  TrainingTrace t;
  try {
    if (key.grad && (key.input_grad || has_params_.load(std::memory_order_relaxed))) {
      Tensors present;  // the graph's inputs; the call gets them back in their places
      for (const Tensor& in : inputs)
        if (in.defined()) present.push_back(in);
      t = trace_training(b, present, [&](const Tensors& traced) -> Tensors {
        if (!key.list) return {b(traced[0], where)};
        Tensors full(inputs.size());
        for (size_t i = 0, k = 0; i < inputs.size(); ++i)
          if (inputs[i].defined()) full[i] = traced[k++];
        return b(full, where);
      });
    } else {
      t.trace = key.list ? trace(b, Tensors(inputs.begin(), inputs.end()), where) : trace(b, inputs[0], where);
      t.forward_outputs = static_cast<int>(t.trace.outputs.size());
    }
  } catch (const TraceError& err) {  // this forward cannot be traced: run it eagerly, now and from now on
    give_up(e, err.what());
    if (!key.list) return Tensors{b.call_forward(inputs[0], where)};
    return b.call_forward(Tensors(inputs.begin(), inputs.end()), where);
  } catch (...) {  // the user's error, as eager mode would raise it
    std::lock_guard lock(mu_);
    --e->pending;
    drop_if_empty(e);  // a bad input leaves no empty key behind
    done_cv_.notify_all();
    throw;
  }
  Tensors out(t.trace.outputs.begin(), t.trace.outputs.begin() + t.forward_outputs);
  if (t.trace.random_frozen) {
    give_up(e, "forward draws random numbers (e.g. Dropout in training mode), which compiled code would repeat");
    return out;
  }
  t.trace.outputs.clear();  // the eager values (and gradients) are not needed to compile
  // A variant for every batch size may serve this call's size from now on; else this trace compiles.
  auto compile = [this, e, key](TrainingTrace t) {
    if (!adopt_dynamic(key, t)) return compile_variant(e, std::move(t));
    std::lock_guard lock(mu_);
    --e->pending;
    drop_if_empty(e);
    done_cv_.notify_all();
  };
  if (options_.background) {
    std::lock_guard lock(mu_);
    workers_.emplace_back([compile, t = std::move(t)]() mutable { compile(std::move(t)); });
  } else
    compile(std::move(t));
  return out;
}

void Hybrid::compile_variant(Entry* e, TrainingTrace t) {
  try {
    codegen::CompileOptions co;
    co.use_cache = options_.use_cache;
    co.exact = options_.exact;
    co.fast = options_.tiered && !options_.exact && !options_.background;
    auto v = std::make_shared<Variant>(compile_training(t, co));
    const bool first_tier = v->code.forward.executable().fast() || (v->code.backward && v->code.backward->executable().fast());
    std::unique_lock lock(mu_);
    if (first_tier) {  // the optimized code follows from the upgrader thread
      ++e->upgrading;
      upgrades_.push_back({e, v, std::move(t)});
      if (!upgrader_.joinable()) upgrader_ = std::thread([this] { upgrade_loop(); });
      work_cv_.notify_all();
    }
    for (const codegen::Executable* exe : {&v->code.forward.executable(), v->code.backward ? &v->code.backward->executable() : nullptr}) {
      if (!exe) continue;
      compile_ms_ += exe->compile_ms();
      if (exe->from_cache()) cache_hits_.fetch_add(1, std::memory_order_relaxed);
    }
    if (e->variants.empty()) make_room();  // a key that compiled makes room (e is pending: kept)
    --e->pending;
    done_cv_.notify_all();
    v->number = ++e->compiled;
    e->variants.push_back(std::move(v));
  } catch (const std::exception& err) {
    compile_failures_.fetch_add(1, std::memory_order_relaxed);
    give_up(e, err.what());
  }
}

namespace {
/// Traces at batch sizes that do not unify, per block, after which no more are tried.
constexpr int kMaxUnifyFailures = 8;
}  // namespace

std::vector<int64_t> Hybrid::dims0(const Key& key) {
  std::vector<int64_t> out;
  auto dim0 = [](const Type& t) { return t.shape.empty() ? int64_t{-1} : t.shape[0]; };
  if (!key.list) return {dim0(key.input)};
  for (const auto& t : key.inputs) out.push_back(t ? dim0(*t) : -1);
  return out;
}

bool Hybrid::same_family(const Key& a, const Key& b) {
  if (a.list != b.list || a.training != b.training || a.grad != b.grad || a.input_grad != b.input_grad ||
      a.inputs.size() != b.inputs.size())
    return false;
  auto alike = [](const Type& x, const Type& y) {
    if (x.dtype != y.dtype || x.shape.size() != y.shape.size()) return false;
    for (int d = 1; d < x.shape.size(); ++d)
      if (x.shape[d] != y.shape[d]) return false;
    return true;
  };
  if (!a.list) return alike(a.input, b.input);
  for (size_t i = 0; i < a.inputs.size(); ++i)
    if (a.inputs[i].has_value() != b.inputs[i].has_value() || (a.inputs[i] && !alike(*a.inputs[i], *b.inputs[i])))
      return false;
  return true;
}

std::pair<int64_t, int64_t> Hybrid::batch_sizes(const Key& a, const Key& b) {
  const std::vector<int64_t> da = dims0(a), db = dims0(b);
  for (size_t i = 0; i < da.size() && i < db.size(); ++i)
    if (da[i] != db[i]) return {da[i], db[i]};
  return {-1, -1};
}

std::optional<int64_t> Hybrid::batch_in(const Dynamic& d, const Key& key) {
  if (!same_family(d.key, key)) return std::nullopt;
  const std::vector<int64_t> mine = dims0(d.key), theirs = dims0(key);
  int64_t batch = -1;
  for (size_t i = 0; i < mine.size(); ++i) {
    const int32_t k = d.input_factors[i];
    if (k == 0) {
      if (mine[i] != theirs[i]) return std::nullopt;
      continue;
    }
    if (theirs[i] < 0 || theirs[i] % k != 0 || (batch >= 0 && theirs[i] / k != batch)) return std::nullopt;
    batch = theirs[i] / k;
  }
  if (batch < 0) return std::nullopt;
  return batch;
}

template <class Run>
bool Hybrid::try_dynamic(const Key& key, Run&& run) {
  if (!options_.dynamic_batch || key.grad) return false;
  std::shared_ptr<const Variant> v;
  {
    std::lock_guard lock(mu_);
    for (const auto& d : dynamic_)
      if (auto batch = batch_in(*d, key); batch && d->sizes.count(*batch)) {
        v = d->variant;
        break;
      }
  }
  if (!v) return false;
  const int failed = run(*v);
  if (failed < 0) {
    hits_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  v->guard_failures[failed].fetch_add(1, std::memory_order_relaxed);  // the miss traces this path
  return false;
}

bool Hybrid::adopt_dynamic(const Key& key, const TrainingTrace& t) {
  if (!options_.dynamic_batch || options_.exact || key.grad || t.backward || t.trace.rng_input >= 0 ||
      !t.trace.graph->commits().empty())
    return false;
  std::shared_ptr<Dynamic> family;
  std::shared_ptr<const Variant> donor;
  Key donor_key;
  int64_t batch = -1, b_new = -1, b_old = -1;
  {
    std::lock_guard lock(mu_);
    for (const auto& d : dynamic_)
      if (auto b = batch_in(*d, key)) {
        family = d;
        batch = *b;
        break;
      }
    if (!family && dynamic_failures_ < kMaxUnifyFailures)
      for (const auto& e : entries_)  // a donor: another batch size (not 0) of the family, compiled
        if (!(e->key == key) && same_family(e->key, key) && !e->variants.empty() &&
            !e->variants.front()->code.backward && e->variants.front()->code.forward.trace().rng_input < 0) {
          std::tie(b_new, b_old) = batch_sizes(key, e->key);
          if (b_new <= 0 || b_old <= 0) continue;
          donor = e->variants.front();
          donor_key = e->key;
          break;
        }
  }
  // This size's trace must be `fam`'s program at that size: then its variant serves the size.
  auto join = [&](Dynamic& fam, int64_t n) {
    std::string why;
    if (!ir::fits_batch(*fam.traced, fam.batch, fam.factors, *t.trace.graph, n, &why)) {
      if (log_flags().recompiles)
        log_line(fmt::format("{}: batch size {} is another program than the variant for every batch size ({}): it "
                             "gets a variant of its own",
                             name_, n, why));
      return false;
    }
    {
      std::lock_guard lock(mu_);
      fam.sizes.insert(n);
    }
    if (log_flags().recompiles)
      log_line(fmt::format("{}: batch size {} traced the same program: the variant for every batch size serves {}",
                           name_, n, key.str()));
    return true;
  };
  if (family) return join(*family, batch);
  if (!donor) return false;
  const Trace& old_trace = donor->code.forward.trace();
  // Compiled at the larger size (every batched dim then is at least 2: no loop drops it).
  const bool new_larger = b_new > b_old;
  const Trace& small = new_larger ? old_trace : t.trace;
  const Trace& large = new_larger ? t.trace : old_trace;
  const int64_t bs = std::min(b_new, b_old), bl = std::max(b_new, b_old);
  std::string why;
  std::optional<std::vector<int32_t>> factors = ir::unify_batch(*small.graph, bs, *large.graph, bl, &why);
  std::shared_ptr<codegen::Executable> exe;
  std::string failure;
  if (factors) {
    try {
      codegen::CompileOptions co;
      co.use_cache = options_.use_cache;
      exe = codegen::compile_dynamic(*small.graph, bs, *large.graph, bl, co);
    } catch (const std::exception& err) {
      failure = err.what();
    }
  }
  if (!exe) {
    std::lock_guard lock(mu_);
    ++dynamic_failures_;
    if (!failure.empty()) compile_failures_.fetch_add(1, std::memory_order_relaxed);
    if (log_flags().recompiles)
      log_line(fmt::format("{}: batch sizes {} and {} of {} {}", name_, b_old, b_new, key.str(),
                           failure.empty() ? "do not trace the same program (" + (why.empty() ? "the optimized graphs differ" : why) +
                                                 "): each keeps a variant of its own"
                                           : "did not compile as one variant: " + failure));
    return false;
  }
  auto d = std::make_shared<Dynamic>();
  d->key = new_larger ? key : donor_key;
  d->traced = large.graph;
  d->factors = *factors;
  d->batch = bl;
  d->sizes = {bs, bl};
  size_t k = 0;  // per input of the key, its factor: the graph's inputs are the key's present ones
  for (const auto& in : key.list ? key.inputs : std::vector<std::optional<Type>>{key.input})
    d->input_factors.push_back(in ? (*factors)[k++] : 0);
  auto v = std::make_shared<Variant>(CompiledTraining{CompiledTrace(large, exe), nullptr, donor->code.outputs});
  v->number = 1;
  d->variant = v;
  const double ms = exe->compile_ms();
  {
    std::lock_guard lock(mu_);
    compile_ms_ += ms;
    if (exe->from_cache()) cache_hits_.fetch_add(1, std::memory_order_relaxed);
    for (const auto& other : dynamic_)  // another thread's call made one meanwhile: that one serves
      if (auto b = batch_in(*other, key)) {
        family = other;
        batch = *b;
        break;
      }
    if (!family) dynamic_.push_back(d);
  }
  if (family) return join(*family, batch);
  if (log_flags().recompiles)
    log_line(fmt::format("{}: batch sizes {} and {} of {} traced the same program: one variant now serves every "
                         "batch size whose trace fits ({:.1f} ms compiling)",
                         name_, b_old, b_new, key.str(), ms));
  return true;
}

void Hybrid::upgrade_loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stopping_ || !upgrades_.empty(); });
    if (stopping_) return;
    Upgrade job = std::move(upgrades_.front());
    upgrades_.pop_front();
    lock.unlock();
    std::shared_ptr<Variant> better;
    std::string failure;
    try {
      codegen::CompileOptions co;
      co.use_cache = options_.use_cache;
      better = std::make_shared<Variant>(compile_training(job.trace, co));
    } catch (const std::exception& err) {  // the first tier keeps running
      failure = err.what();
    }
    lock.lock();
    if (better) {
      for (auto& v : job.entry->variants)
        if (v == job.variant) {
          better->number = v->number;
          for (int g = 0; g <= v->code.forward.guard_count(); ++g)
            better->guard_failures[g].store(v->guard_failures[g].load(std::memory_order_relaxed), std::memory_order_relaxed);
          v = better;  // calls already running the first tier hold their own reference
        }
      for (const codegen::Executable* exe :
           {&better->code.forward.executable(), better->code.backward ? &better->code.backward->executable() : nullptr})
        if (exe) compile_ms_ += exe->compile_ms();
      upgraded_.fetch_add(1, std::memory_order_relaxed);
    }
    --job.entry->upgrading;
    std::erase_if(evicted_, [](const auto& e) { return e->upgrading == 0; });
    done_cv_.notify_all();
    if (log_flags().recompiles) {
      const std::string what = better ? fmt::format("{}: variant {} ({}) now runs optimized code", name_,
                                                    job.variant->number, job.entry->key.str())
                                      : fmt::format("{}: optimizing variant {} ({}) failed, it keeps its first-tier "
                                                    "code: {}", name_, job.variant->number, job.entry->key.str(), failure);
      lock.unlock();
      log_line(what);
      lock.lock();
    }
  }
}

void Hybrid::wait_for_compiles() {
  std::unique_lock lock(mu_);
  done_cv_.wait(lock, [&] {
    for (const auto* list : {&entries_, &retired_, &evicted_})
      for (const auto& e : *list)
        if (e->pending > 0 || e->upgrading > 0) return false;
    return true;
  });
}

void Hybrid::give_up(Entry* e, const std::string& why) {
  bool warn = false;
  {
    std::lock_guard lock(mu_);
    make_room();  // keys that will not compile count against max_keys too (e is pending: kept)
    --e->pending;
    done_cv_.notify_all();
    e->failed = why;
    warn = !std::exchange(warned_, true);
  }
  if (warn) log_line(fmt::format("warning: {} runs eagerly for {}: {}", name_, e->key.str(), why));
}

std::vector<Hybrid::Path> Hybrid::paths() const {
  std::lock_guard lock(mu_);
  std::vector<Path> out;
  for (const auto& e : entries_) {
    if (e->key.grad) continue;
    for (const auto& v : e->variants) {
      Path p;
      p.list = e->key.list;
      p.inputs = e->key.list ? e->key.inputs : std::vector<std::optional<Type>>{e->key.input};
      p.training = e->key.training;
      p.trace = v->code.forward.trace();
      out.push_back(std::move(p));
    }
  }
  return out;
}

void Hybrid::preload(const Path& path, const CompiledTraining& code) {
  std::vector<Key> keys(1);
  keys[0].list = path.list;
  if (path.list)
    keys[0].inputs = path.inputs;
  else
    keys[0].input = path.inputs.at(0).value();
  keys[0].training = path.training;
  if (!path.list) {  // a one-input path also answers a call with a list of that one input
    keys.emplace_back();
    keys[1].list = true;
    keys[1].inputs = path.inputs;
    keys[1].training = path.training;
  }
  std::lock_guard lock(mu_);
  if (code.forward.executable().from_cache()) cache_hits_.fetch_add(1, std::memory_order_relaxed);
  compile_ms_ += code.forward.executable().compile_ms();
  for (const Key& key : keys) {
    Entry* e = find(key);
    if (!e) {
      entries_.push_back(std::make_unique<Entry>());
      entries_.back()->key = key;
      e = entries_.back().get();
      e->last_used = ++clock_;
      make_room();
    }
    auto v = std::make_shared<Variant>(code);
    v->number = ++e->compiled;
    e->variants.push_back(std::move(v));
  }
}

HybridStats Hybrid::stats() const {
  HybridStats s;
  s.calls = calls_.load();
  s.compiled_hits = hits_.load();
  s.eager_fallbacks = eager_.load();
  s.traces = traces_.load();
  s.compile_failures = compile_failures_.load();
  s.cache_hits = cache_hits_.load();
  s.upgrades = upgraded_.load();
  std::lock_guard lock(mu_);
  s.compile_ms = compile_ms_;
  s.eager_reasons.assign(eager_reasons_.begin(), eager_reasons_.end());
  s.keys = static_cast<int64_t>(entries_.size());
  for (const auto& d : dynamic_) {
    ++s.dynamic_variants;
    ++s.variants;
    s.dynamic_sizes += static_cast<int64_t>(d->sizes.size());
  }
  for (const auto& e : entries_) {
    s.upgrades_pending += e->upgrading;
    s.slower_keys += e->serve_eager;
    s.variants += static_cast<int64_t>(e->variants.size());
    for (const auto& v : e->variants)
      for (int g = 0; g < v->code.forward.guard_count(); ++g)
        if (int64_t count = v->guard_failures[g].load()) {
          HybridStats::GuardFailure f;
          f.guard = v->code.forward.describe_guard(g, &f.origin);
          f.key = e->key.str();
          f.variant = v->number;
          f.exact_value = v->code.forward.guard_reads_exact_value(g);
          f.count = count;
          s.guard_failures.push_back(std::move(f));
        }
  }
  return s;
}

}  // namespace detail

}  // namespace bj::nn
