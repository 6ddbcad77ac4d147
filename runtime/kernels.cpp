// Kernel dispatch (one case per line of ir/ops.def) and the thread count.
#if defined(_OPENMP)
#include <omp.h>
#endif

#include <atomic>
#include <cstdlib>

#include "ir/env.h"
#include "runtime/kernel_impl.h"

namespace bj::rt {

namespace {
#if defined(_OPENMP)
void set_openmp_threads(int n) { omp_set_num_threads(n); }  // oneDNN's matmuls follow OpenMP's setting
int default_threads() { return omp_get_max_threads(); }
#else  // the fuzzing build (clang, no OpenMP runtime of its own): our kernels run on the calling thread
void set_openmp_threads(int) {}
int default_threads() { return 1; }
#endif

int initial_threads() {
  if (auto n = env::num_threads()) {
    set_openmp_threads(*n);
    return *n;
  }
  return default_threads();
}
std::atomic<int> g_threads{initial_threads()};
}  // namespace

int num_threads() { return g_threads; }
void set_num_threads(int n) {
  g_threads = n > 0 ? n : 1;
  set_openmp_threads(g_threads);
}

void run_kernel(ir::OpKind op, std::span<const ConstView> in, const ir::OpAttrs& attrs, const View& out) {
  switch (op) {
#define OP(Name, ...) \
  case ir::OpKind::Name: return kernel_##Name(in, attrs, out);
#include "ir/ops.def"
  }
}

}  // namespace bj::rt
