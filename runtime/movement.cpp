// Data movement kernels: permute, reshape, expand, concat, slice. All but
// concat are one strided copy into a contiguous output.
#include "runtime/kernel_impl.h"

namespace bj::rt {

namespace {

template <class T>
void copy_typed(const T* src, const Shape& src_strides, T* dst, const Shape& shape) {
  parallel_range(shape.numel(), [&](int64_t lo, int64_t hi) {
    for_each_row<1>(shape, {src_strides}, lo, hi,
                    [&](int64_t o, std::array<int64_t, 1> off, std::array<int64_t, 1> is, int64_t len) {
                      const T* s = src + off[0];
                      T* d = dst + o;
                      if (is[0] == 1)
                        std::memcpy(d, s, len * sizeof(T));
                      else
                        for (int64_t j = 0; j < len; ++j) d[j] = s[j * is[0]];
                    });
  });
}

}  // namespace

void strided_copy(size_t elem, const void* src, const Shape& src_strides, void* dst, const Shape& shape) {
  switch (elem) {
    case 1: copy_typed(static_cast<const uint8_t*>(src), src_strides, static_cast<uint8_t*>(dst), shape); break;
    case 2: copy_typed(static_cast<const uint16_t*>(src), src_strides, static_cast<uint16_t*>(dst), shape); break;
    case 4: copy_typed(static_cast<const uint32_t*>(src), src_strides, static_cast<uint32_t*>(dst), shape); break;
    default: copy_typed(static_cast<const uint64_t*>(src), src_strides, static_cast<uint64_t*>(dst), shape); break;
  }
}

void kernel_Permute(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  Shape in_st = contiguous_strides(in[0].type.shape), st = attrs.dims;
  for (int i = 0; i < st.size(); ++i) st[i] = in_st[attrs.dims[i]];
  strided_copy(element_size(out.type.dtype), in[0].data, st, out.data, out.type.shape);
}

void kernel_Reshape(Inputs in, const ir::OpAttrs&, const View& out) {
  if (out.data != in[0].data) std::memcpy(out.data, in[0].data, out.type.bytes());
}

void kernel_Expand(Inputs in, const ir::OpAttrs&, const View& out) {
  strided_copy(element_size(out.type.dtype), in[0].data, broadcast_strides(in[0].type.shape, out.type.shape),
               out.data, out.type.shape);
}

void kernel_Slice(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  Shape st = contiguous_strides(in[0].type.shape);
  size_t elem = element_size(out.type.dtype);
  const char* src = static_cast<const char*>(in[0].data) + attrs.start * st[attrs.axis] * elem;
  st[attrs.axis] *= attrs.step;
  strided_copy(elem, src, st, out.data, out.type.shape);
}

void kernel_Concat(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  const Shape& os = out.type.shape;
  size_t elem = element_size(out.type.dtype);
  int64_t outer = 1;
  for (int i = 0; i < attrs.axis; ++i) outer *= os[i];
  int64_t out_row = out.type.numel() / std::max<int64_t>(outer, 1) * elem;
  char* dst = static_cast<char*>(out.data);
  int64_t col = 0;
  for (const ConstView& v : in) {
    int64_t row = v.type.numel() / std::max<int64_t>(outer, 1) * elem;
    const char* src = static_cast<const char*>(v.data);
    if (row == 0) continue;  // an empty piece may have no memory at all (memcpy from null is undefined)
    for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * out_row + col, src + o * row, row);
    col += row;
  }
}

}  // namespace bj::rt
