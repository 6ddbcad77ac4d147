// The random-number op's kernel: rand()'s numbers as a pure function of the
// generator state (runtime/philox.h).
#include "runtime/kernel_impl.h"
#include "runtime/philox.h"

namespace bj::rt {

void kernel_RandUniform(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  const auto* state = static_cast<const int64_t*>(in[0].data);
  philox_uniform(static_cast<float*>(out.data), out.type.numel(), static_cast<uint64_t>(state[0]),
                 static_cast<uint64_t>(state[1]) + static_cast<uint64_t>(attrs.start));
}

}  // namespace bj::rt
