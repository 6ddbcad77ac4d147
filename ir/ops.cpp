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

}  // namespace bj::ir
