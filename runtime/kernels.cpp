// Kernel dispatch (one case per line of ir/ops.def) and the thread count.
#include <omp.h>

#include <atomic>
#include <cstdlib>

#include "ir/env.h"
#include "runtime/kernel_impl.h"

namespace bj::rt {

namespace {
int initial_threads() {
  if (auto n = env::num_threads()) {
    omp_set_num_threads(*n);  // oneDNN's matmuls follow OpenMP's setting
    return *n;
  }
  return omp_get_max_threads();
}
std::atomic<int> g_threads{initial_threads()};
}  // namespace

int num_threads() { return g_threads; }
void set_num_threads(int n) {
  g_threads = n > 0 ? n : 1;
  omp_set_num_threads(g_threads);  // oneDNN's matmuls follow OpenMP's setting
}

void run_kernel(ir::OpKind op, std::span<const ConstView> in, const ir::OpAttrs& attrs, const View& out) {
  switch (op) {
#define OP(Name, ...) \
  case ir::OpKind::Name: return kernel_##Name(in, attrs, out);
#include "ir/ops.def"
  }
}

}  // namespace bj::rt
