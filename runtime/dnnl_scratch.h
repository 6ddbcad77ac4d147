// Every oneDNN primitive the runtime creates takes its scratch memory from
// the calling thread (user-managed scratchpad). With the library-managed
// scratchpad, oneDNN lets a primitive run only on the thread that created it
// and never from two threads at once; compiled calls share primitives
// across all the threads that call a hybridized block.
#pragma once

#include <dnnl.hpp>

#include <cstddef>
#include <unordered_map>

namespace bj::rt {

/// Attributes for every primitive (and reorder) the runtime creates: a user-managed scratchpad.
dnnl::primitive_attr dnnl_attr();

/// Grow-only, 64-byte aligned memory of the calling thread, one buffer per role (0..3).
void* thread_scratch(int role, size_t bytes);

/// Role 3 of thread_scratch holds oneDNN's scratchpads; roles 0..2 are for callers' own copies.
inline constexpr int kScratchpadRole = 3;

/// While alive, if `on`: this thread's OpenMP parallel regions (oneDNN's) run on it alone.
class OneThreadIf {
 public:
  explicit OneThreadIf(bool on);
  ~OneThreadIf();
  OneThreadIf(const OneThreadIf&) = delete;
  OneThreadIf& operator=(const OneThreadIf&) = delete;

 private:
  int saved_ = 0;  // the thread's OpenMP thread count before, 0: unchanged
};

/// A primitive made with dnnl_attr(), and the scratchpad it asks for.
struct Primitive {
  dnnl::primitive prim;
  dnnl::memory::desc scratchpad;

  /// The primitive of kind P (dnnl::convolution_forward, dnnl::reorder, ...) that `pd` describes.
  template <class P, class PrimitiveDesc>
  static Primitive make(const PrimitiveDesc& pd) {
    return Primitive{P(pd), pd.scratchpad_desc()};
  }

  /// Runs on `stream` with the scratchpad in this thread's memory (args gains it).
  void execute(const dnnl::stream& stream, std::unordered_map<int, dnnl::memory>& args) const;
  /// For reorders: from -> to.
  void execute(const dnnl::stream& stream, const dnnl::memory& from, const dnnl::memory& to) const;
};

}  // namespace bj::rt
