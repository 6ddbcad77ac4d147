// The OpInfo table, generated from ir/ops.def.
#include "ir/ops.h"

namespace bj::ir {

namespace {
constexpr OpInfo kOpInfos[] = {
#define OP(Name, text, arity, traits, attrs, rule, ...) {text, arity, static_cast<uint32_t>(traits), attrs},
#include "ir/ops.def"
};
static_assert(sizeof(kOpInfos) / sizeof(kOpInfos[0]) == kNumOps);
}  // namespace

const OpInfo& op_info(OpKind op) { return kOpInfos[static_cast<int>(op)]; }

bool attr_is_set(const OpAttrs& attrs, Attr a) {
  const OpAttrs none;
  switch (a) {
    case kNoAttrs: return false;
    case kAxes: case kPerm: case kShape: return !(attrs.dims == none.dims);
    case kAxis: return attrs.axis != none.axis;
    case kStart: return attrs.start != none.start;
    case kEnd: return attrs.end != none.end;
    case kStep: return attrs.step != none.step;
    case kScalar: return attrs.scalar != none.scalar;
    case kDType: return attrs.dtype != none.dtype;
    case kKeepdim: return attrs.keepdim;
    case kTransposeA: return attrs.transpose_a;
    case kTransposeB: return attrs.transpose_b;
    case kKernel: return !(attrs.kernel == none.kernel);
    case kStride: return !(attrs.stride == none.stride);
    case kPadding: return !(attrs.padding == none.padding);
    case kDilation: return !(attrs.dilation == none.dilation);
    case kGroups: return attrs.groups != none.groups;
  }
  return false;
}

std::string unread_attrs(uint32_t reads, const OpAttrs& attrs) {
  constexpr uint32_t kDims = kAxes | kPerm | kShape;  // one field, three spellings
  std::string out;
  auto add = [&](std::string_view name) { out += (out.empty() ? "" : ", ") + std::string(name); };
  if (!(reads & kDims) && attr_is_set(attrs, kAxes)) add("axes/perm/shape");
  for (const AttrSpelling& s : kAttrSpellings)
    if (!(s.flag & kDims) && !(reads & s.flag) && attr_is_set(attrs, s.flag)) add(s.name);
  return out;
}

}  // namespace bj::ir
