// Eager-mode overheads: the seed MLP's call at batch 2 (dispatch-bound), one
// small op, and a chain of large elementwise ops (allocator-bound). Prints
// medians over repeated timed rounds; no assertions.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "examples/seed_models.h"
#include "runtime/allocator.h"

namespace {

/// Median over `rounds` of the mean time per call of `f` over `calls` calls, in microseconds.
template <class F>
double median_us(F&& f, int rounds, int calls) {
  std::vector<double> t;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) f();
    auto t1 = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / calls);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main() {
  bj::manual_seed(0);
  bj::examples::MLP mlp;
  mlp.initialize();
  bj::Tensor x = bj::rand({2, 20});
  mlp(x);
  double mlp_us = median_us([&] { mlp(x); }, 21, 2000);  // parameters require grad: autograd records
  double mlp_nograd_us;
  {
    bj::NoGradGuard no_grad;
    mlp_nograd_us = median_us([&] { mlp(x); }, 21, 2000);
  }

  bj::Tensor a = bj::rand({2, 10}), b = bj::rand({10});
  double add_us = median_us([&] { a + b; }, 21, 20000);

  bj::Tensor big = bj::rand({1 << 24});  // 64 MB
  auto chain = [&] { return bj::relu(big * 0.5 + 1) * bj::sigmoid(big) + bj::tanh(big) - big * 0.5; };
  chain();
  double chain_ms = median_us(chain, 7, 1) / 1000;

  // The same chain with the allocator's cache off: every result is fresh memory to fault in.
  size_t limit = bj::rt::cache_limit();
  bj::rt::set_cache_limit(0);
  double chain_nocache_ms = median_us(chain, 7, 1) / 1000;
  bj::rt::set_cache_limit(limit);
  auto one_op = [&] { return big * 0.5; };
  double op_ms = median_us(one_op, 7, 1) / 1000;
  bj::rt::set_cache_limit(0);
  double op_nocache_ms = median_us(one_op, 7, 1) / 1000;
  bj::rt::set_cache_limit(limit);

  fmt::print("seed MLP (2x20 -> 256 relu -> 10), eager call   {:8.2f} us   (recording for autograd)\n", mlp_us);
  fmt::print("seed MLP, eager call under NoGradGuard          {:8.2f} us\n", mlp_nograd_us);
  fmt::print("add f32[2,10] + f32[10], eager                  {:8.2f} us\n", add_us);
  fmt::print("9-op elementwise chain on 16M floats, eager     {:8.2f} ms   (allocator cache off: {:.2f} ms)\n",
             chain_ms, chain_nocache_ms);
  fmt::print("x * 0.5 on 16M floats, eager                    {:8.2f} ms   (allocator cache off: {:.2f} ms)\n", op_ms,
             op_nocache_ms);
}
