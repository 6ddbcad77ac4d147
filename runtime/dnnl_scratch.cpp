#include "runtime/dnnl_scratch.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <cstdlib>
#include <memory>
#include <new>

namespace bj::rt {

dnnl::primitive_attr dnnl_attr() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

void* thread_scratch(int role, size_t bytes) {
  struct Buffer {
    std::unique_ptr<std::byte, decltype(&std::free)> p{nullptr, &std::free};
    size_t size = 0;
  };
  thread_local Buffer buffers[4];
  Buffer& b = buffers[role];
  if (b.size < bytes || !b.p) {
    const size_t rounded = (bytes + 63) / 64 * 64 + 64;  // never zero: aligned_alloc(64, 0) may return null
    b.p.reset(static_cast<std::byte*>(std::aligned_alloc(64, rounded)));
    if (!b.p) throw std::bad_alloc();
    b.size = rounded;
  }
  return b.p.get();
}

void Primitive::execute(const dnnl::stream& stream, std::unordered_map<int, dnnl::memory>& args) const {
  if (const size_t bytes = scratchpad.get_size(); bytes > 0)
    args.insert_or_assign(DNNL_ARG_SCRATCHPAD,
                          dnnl::memory(scratchpad, stream.get_engine(), thread_scratch(kScratchpadRole, bytes)));
  prim.execute(stream, args);
}

void Primitive::execute(const dnnl::stream& stream, const dnnl::memory& from, const dnnl::memory& to) const {
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
  execute(stream, args);
}

OneThreadIf::OneThreadIf(bool on) {
#if defined(_OPENMP)
  if (!on) return;
  saved_ = omp_get_max_threads();
  omp_set_num_threads(1);  // a per-thread setting: other threads' calls keep theirs
#else
  (void)on;
#endif
}

OneThreadIf::~OneThreadIf() {
#if defined(_OPENMP)
  if (saved_ > 0) omp_set_num_threads(saved_);
#endif
}

}  // namespace bj::rt
