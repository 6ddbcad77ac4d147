// Contraction regions (and products alone) that run as loops: small products
// as i/j loops with a dot product along k (summed as eager does in a guard's
// input cone), and products over a packed weight as a register-blocked
// kernel; the epilogue applied per element.
#include <llvm/IR/Intrinsics.h>

#include "codegen/jit_internal.h"
#include "codegen/lowerer.h"

namespace bj::codegen {

namespace {
/// Products with at most this many terms per element (outer products of a training step's
/// weight gradients at small batches) sum them in straight-line code.
constexpr int64_t kUnrolledK = 8;
}  // namespace

Lowerer::ProductShape Lowerer::product_shape(const ir::Node& mm) {
  const Shape &cs = mm.result->type.shape, &as = mm.inputs[0]->type.shape;
  const bool ta = mm.attrs.transpose_a, tb = mm.attrs.transpose_b;
  const int64_t m = cs[0], n = cs[1], k = ta ? as[0] : as[1];
  return {m, n, k, ta ? 1 : k, ta ? m : 1, tb ? 1 : n, tb ? k : 1};
}

void Lowerer::emit_contraction(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores,
                               bool exact) {
  const ir::Node& mm = *body.front();
  std::vector<const ir::Node*> epilogue(body.begin() + 1, body.end());
  const Shape& cs = mm.result->type.shape;
  if (!exact && row_product_in_scratch(mm) && !epilogue.empty()) return emit_row_product(mm, nullptr, epilogue, stores);
  if (!exact && narrow_dot(mm)) return emit_narrow_dot(mm, epilogue, stores);
  if (!exact && (row_product(mm) || dot_product(mm))) {
    if (row_product(mm))
      emit_row_product(mm, address(mm.result));
    else
      emit_dot_product(mm, address(mm.result));
    if (!epilogue.empty()) emit_elementwise(epilogue, stores, cs);
    return;
  }
  const ProductShape ps = product_shape(mm);
  const int64_t K_ = ps.k, a_i = ps.a_i, a_k = ps.a_k, b_k = ps.b_k, b_j = ps.b_j;
  std::vector<const ir::Value*> ext = externals(epilogue);
  std::erase(ext, mm.result);
  Operands ops;
  add_operand(ops, mm.inputs[0], {});
  add_operand(ops, mm.inputs[1], {});
  for (const ir::Value* v : ext) add_operand(ops, v, broadcast_strides(v->type.shape, cs));
  for (const ir::Value* v : stores) add_operand(ops, v, contiguous_strides(cs));
  Space space{cs, ops.strides};
  emit_loop_function(space, ops.addrs, false, [&](const std::vector<LV*>& ivs, const std::vector<LV*>& ptrs) {
    LV *i = ivs[0], *j = ivs[1];
    LV* a_row = b_.CreateInBoundsGEP(f32_, ptrs[0], b_.CreateMul(i, b_.getInt64(static_cast<uint64_t>(a_i))));
    LV* b_col = b_.CreateInBoundsGEP(f32_, ptrs[1], b_.CreateMul(j, b_.getInt64(static_cast<uint64_t>(b_j))));
    auto a_at = [&](LV* k) {
      return b_.CreateLoad(f32_, b_.CreateInBoundsGEP(f32_, a_row, b_.CreateMul(k, b_.getInt64(static_cast<uint64_t>(a_k)))));
    };
    auto b_at = [&](LV* k) {
      return b_.CreateLoad(f32_, b_.CreateInBoundsGEP(f32_, b_col, b_.CreateMul(k, b_.getInt64(static_cast<uint64_t>(b_k)))));
    };
    // acc = sum_k A(i,k) * B(k,j): as eager sums it when exact, else reassociable so it vectorizes
    // over k. An empty sum is +0, as eager's; otherwise sums start from -0 (-0 + x is x).
    LV* sum = llvm::ConstantFP::get(f32_, K_ == 0 ? 0.0 : -0.0);
    if (exact && K_ > 0 && mm.attrs.transpose_b && a_k == 1 && b_k == 1) {
      sum = canonical_dot(K_, a_row, b_col);
    } else if (exact && K_ > 0 && mm.attrs.transpose_b) {
      sum = canonical_sum(K_, [&](LV* k) {
        LV* a = a_at(k);
        return b_.CreateFMul(a, b_at(k));
      });
    } else {  // exact: in increasing k, one rounding per multiply and per add
      llvm::IRBuilderBase::FastMathFlagGuard guard(b_);
      llvm::FastMathFlags fmf;
      if (!exact) {
        fmf.setAllowReassoc();
        fmf.setAllowContract();
      }
      b_.setFastMathFlags(fmf);
      auto term = [&](LV* k, LV* acc) {
        LV* a = a_at(k);  // A's load first (C++ leaves the order of arguments open)
        LV* b = b_at(k);
        return b_.CreateFAdd(acc, b_.CreateFMul(a, b));
      };
      if (K_ <= kUnrolledK) {  // straight-line: no inner loop, so the loop over j vectorizes
        for (int64_t k = 0; k < K_; ++k) sum = term(b_.getInt64(static_cast<uint64_t>(k)), sum);
      } else {
        sum = accumulate(K_, 1, {sum}, [&](LV* k, const Accumulators& acc) { return Accumulators{term(k, acc[0])}; })[0];
      }
    }
    Scalars val{{mm.result, sum}};
    for (size_t e = 0; e < ext.size(); ++e)  // operands 0 and 1 are the matrices
      val[ext[e]] = load_element(ext[e]->type, ptrs[2 + e], offset(ivs, space.strides[2 + e]));
    for (const ir::Node* n : epilogue) val[n->result] = scalar(*n, val);
    store_values(stores, 2 + ext.size(), ptrs, ivs, space, val);
  }, mm.result->batch != 0);
}

void Lowerer::store_lanes(LV* v, LV* dst, int64_t count) {
  const auto width = static_cast<int64_t>(llvm::cast<llvm::FixedVectorType>(v->getType())->getNumElements());
  if (target_features().find("+avx512f") != std::string::npos) {
    std::vector<llvm::Constant*> lanes;
    for (int64_t l = 0; l < width; ++l) lanes.push_back(b_.getInt1(l < count));
    b_.CreateMaskedStore(v, dst, llvm::Align(4), llvm::ConstantVector::get(lanes));
    return;
  }
  int64_t at = 0;
  for (int64_t piece = width / 2; piece >= 1; piece /= 2) {
    if (count - at < piece) continue;
    LV* p = b_.CreateConstInBoundsGEP1_64(f32_, dst, static_cast<uint64_t>(at));
    if (piece == 1) {
      b_.CreateAlignedStore(b_.CreateExtractElement(v, static_cast<uint64_t>(at)), p, llvm::Align(4));
    } else {
      std::vector<int> pick;
      for (int64_t l = 0; l < piece; ++l) pick.push_back(static_cast<int>(at + l));
      b_.CreateAlignedStore(b_.CreateShuffleVector(v, pick), p, llvm::Align(4));
    }
    at += piece;
  }
}

void Lowerer::emit_row_epilogue(const ir::Node& mm, const std::vector<const ir::Node*>& epilogue,
                                const std::vector<const ir::Value*>& ext, const std::vector<const ir::Value*>& stores,
                                const std::vector<LV*>& ptrs, const std::vector<Shape>& strides, size_t first, LV* i0,
                                int64_t rows, LV* product, int64_t pitch) {
  auto i64c = [&](int64_t v) { return b_.getInt64(static_cast<uint64_t>(v)); };
  loop(i64c(0), i64c(rows), [&](LV* r) {
    LV* i = b_.CreateAdd(i0, r);
    LV* row = b_.CreateInBoundsGEP(f32_, product, b_.CreateMul(r, i64c(pitch)));
    loop(i64c(0), i64c(mm.result->type.shape[1]), [&](LV* j) {
      std::vector<LV*> at{i, j};
      Scalars val{{mm.result, b_.CreateLoad(f32_, b_.CreateInBoundsGEP(f32_, row, j))}};
      for (size_t e = 0; e < ext.size(); ++e)
        val[ext[e]] = load_element(ext[e]->type, ptrs[first + e], offset(at, strides[first + e]));
      for (const ir::Node* n : epilogue) val[n->result] = scalar(*n, val);
      for (size_t s = 0, o = first + ext.size(); s < stores.size(); ++s)
        store_element(stores[s]->type, val.at(stores[s]), ptrs[o + s], offset(at, strides[o + s]));
    });
  });
}

void Lowerer::emit_row_product(const ir::Node& mm, LV* out, const std::vector<const ir::Node*>& epilogue,
                               const std::vector<const ir::Value*>& stores) {
  const ProductShape ps = product_shape(mm);
  const int64_t N_ = ps.n, K_ = ps.k, a_i = ps.a_i, a_k = ps.a_k;
  auto i64c = [&](int64_t v) { return b_.getInt64(static_cast<uint64_t>(v)); };
  auto* vty = llvm::FixedVectorType::get(f32_, 16);
  llvm::Function* fma = llvm::Intrinsic::getDeclaration(&module_, llvm::Intrinsic::fmuladd, {vty});
  const int64_t full = N_ / 16, tail = N_ % 16;
  std::vector<llvm::Constant*> lanes;
  for (int64_t l = 0; l < 16; ++l) lanes.push_back(b_.getInt1(l < tail));
  llvm::Constant* mask = llvm::ConstantVector::get(lanes);
  LV* zero = llvm::ConstantAggregateZero::get(vty);
  // With an epilogue, each row goes to stack scratch (whole vectors: no masked stores) and the
  // epilogue reads it from there while it is in L1; operands: A, B, the epilogue's, the stores.
  const bool scratch = !epilogue.empty();
  std::vector<const ir::Value*> ext = externals(epilogue);
  std::erase(ext, mm.result);
  Operands ops;
  add_operand(ops, mm.inputs[0], {});
  add_operand(ops, mm.inputs[1], {});
  if (scratch) {
    for (const ir::Value* v : ext) add_operand(ops, v, broadcast_strides(v->type.shape, mm.result->type.shape));
    for (const ir::Value* v : stores) add_operand(ops, v, contiguous_strides(mm.result->type.shape));
  } else {
    ops.addrs.push_back(out);
  }
  const int64_t pitch = (full + (tail > 0)) * 16;
  // Two rows at a time where the row count is fixed and even: each load of B's row serves both.
  const int64_t R = !mm.result->batch && ps.m % 2 == 0 ? 2 : 1;
  emit_loop_function(Space{{ps.m / R}, {}}, ops.addrs, false, [&](const std::vector<LV*>& ivs, const std::vector<LV*>& ptrs) {
    LV* i0 = b_.CreateMul(ivs[0], i64c(R));
    LV* rows = scratch ? static_cast<LV*>(entry_alloca(llvm::ArrayType::get(f32_, static_cast<uint64_t>(R * pitch))))
                       : b_.CreateInBoundsGEP(f32_, ptrs[2], b_.CreateMul(i0, i64c(N_)));
    std::vector<LV*> a_rows, c_rows;
    for (int64_t r = 0; r < R; ++r) {
      a_rows.push_back(b_.CreateInBoundsGEP(f32_, ptrs[0], b_.CreateMul(b_.CreateAdd(i0, i64c(r)), i64c(a_i))));
      c_rows.push_back(b_.CreateConstInBoundsGEP1_64(f32_, rows, static_cast<uint64_t>(r * (scratch ? pitch : N_))));
    }
    // One vector of 16 columns starting at `col` (masked: the last `tail` ones), for each row.
    auto columns = [&](LV* col, bool masked) {
      auto term = [&](LV* k, Accumulators acc) {
        LV* p = b_.CreateInBoundsGEP(f32_, ptrs[1], b_.CreateAdd(b_.CreateMul(k, i64c(N_)), col));
        LV* b = masked ? static_cast<LV*>(b_.CreateMaskedLoad(vty, p, llvm::Align(4), mask, zero))
                       : static_cast<LV*>(b_.CreateAlignedLoad(vty, p, llvm::Align(4)));
        for (int64_t r = 0; r < R; ++r) {
          LV* a = b_.CreateLoad(f32_, b_.CreateInBoundsGEP(f32_, a_rows[static_cast<size_t>(r)], b_.CreateMul(k, i64c(a_k))));
          acc[static_cast<size_t>(r)] = b_.CreateCall(fma, {b_.CreateVectorSplat(16, a), b, acc[static_cast<size_t>(r)]});
        }
        return acc;
      };
      Accumulators acc(static_cast<size_t>(R), zero);
      if (K_ <= kUnrolledK) {
        for (int64_t k = 0; k < K_; ++k) acc = term(i64c(k), acc);
      } else {
        acc = accumulate(K_, 1, acc, term);
      }
      for (int64_t r = 0; r < R; ++r) {
        LV* dst = b_.CreateInBoundsGEP(f32_, c_rows[static_cast<size_t>(r)], col);
        if (masked && !scratch)
          store_lanes(acc[static_cast<size_t>(r)], dst, tail);
        else
          b_.CreateAlignedStore(acc[static_cast<size_t>(r)], dst, llvm::Align(4));
      }
    };
    if (full > 0) loop(i64c(0), i64c(full), [&](LV* jv) { columns(b_.CreateMul(jv, i64c(16)), false); });
    if (tail > 0) columns(i64c(full * 16), true);
    if (scratch) emit_row_epilogue(mm, epilogue, ext, stores, ptrs, ops.strides, 2, i0, R, rows, pitch);
  }, mm.result->batch != 0);
}

void Lowerer::emit_dot_product(const ir::Node& mm, LV* out) {
  const ProductShape ps = product_shape(mm);
  const int64_t M_ = ps.m, N_ = ps.n, K_ = ps.k;
  constexpr int W = 8;  // lanes along k, and columns of C per block
  auto i64c = [&](int64_t v) { return b_.getInt64(static_cast<uint64_t>(v)); };
  auto* vty = llvm::FixedVectorType::get(f32_, W);
  llvm::Function* fma = llvm::Intrinsic::getDeclaration(&module_, llvm::Intrinsic::fmuladd, {vty});
  LV* zero = llvm::ConstantAggregateZero::get(vty);
  auto lanes_below = [&](int64_t count) {
    std::vector<llvm::Constant*> lanes;
    for (int64_t l = 0; l < W; ++l) lanes.push_back(b_.getInt1(l < count));
    return llvm::ConstantVector::get(lanes);
  };
  const int64_t chunks = K_ / W, k_tail = K_ % W;
  llvm::Constant* k_mask = lanes_below(k_tail);
  auto load = [&](LV* p, bool masked, llvm::Constant* mask) -> LV* {
    return masked ? static_cast<LV*>(b_.CreateMaskedLoad(vty, p, llvm::Align(4), mask, zero))
                  : static_cast<LV*>(b_.CreateAlignedLoad(vty, p, llvm::Align(4)));
  };
  // The 8 sums of 8 vectors, in order: pairwise shuffles and adds halve the lanes three times.
  auto reduce = [&](std::vector<LV*> v) {
    auto pairs = [&](std::vector<LV*> in, const std::vector<int>& lo, const std::vector<int>& hi) {
      std::vector<LV*> outv;
      for (size_t p = 0; p + 1 < in.size(); p += 2)
        outv.push_back(b_.CreateFAdd(b_.CreateShuffleVector(in[p], in[p + 1], lo),
                                     b_.CreateShuffleVector(in[p], in[p + 1], hi)));
      return outv;
    };
    v = pairs(v, {0, 1, 2, 3, 8, 9, 10, 11}, {4, 5, 6, 7, 12, 13, 14, 15});  // [v0 halves, v1 halves], ...
    v = pairs(v, {0, 1, 8, 9, 4, 5, 12, 13}, {2, 3, 10, 11, 6, 7, 14, 15});  // quarters of v0, v2, v1, v3
    v = pairs(v, {0, 2, 8, 10, 4, 6, 12, 14}, {1, 3, 9, 11, 5, 7, 13, 15});  // sums 0, 2, 4, 6, 1, 3, 5, 7
    return b_.CreateShuffleVector(v[0], v[0], {0, 4, 1, 5, 2, 6, 3, 7});
  };
  Operands ops;
  add_operand(ops, mm.inputs[0], {});
  add_operand(ops, mm.inputs[1], {});
  ops.addrs.push_back(out);
  // One block of `rows` columns of C starting at column j0, for every row of A.
  auto block = [&](const std::vector<LV*>& ptrs, LV* j0, int64_t rows) {
    loop(i64c(0), extent(M_, mm.result->batch != 0), [&](LV* i) {
      LV* a_row = b_.CreateInBoundsGEP(f32_, ptrs[0], b_.CreateMul(i, i64c(K_)));
      std::vector<LV*> b_rows;
      for (int64_t r = 0; r < rows; ++r)
        b_rows.push_back(b_.CreateInBoundsGEP(f32_, ptrs[1], b_.CreateMul(b_.CreateAdd(j0, i64c(r)), i64c(K_))));
      auto step = [&](LV* k, const Accumulators& acc, bool masked) {
        Accumulators next = acc;
        LV* a = load(b_.CreateInBoundsGEP(f32_, a_row, k), masked, k_mask);
        for (int64_t r = 0; r < rows; ++r)
          next[r] = b_.CreateCall(fma, {a, load(b_.CreateInBoundsGEP(f32_, b_rows[r], k), masked, k_mask), acc[r]});
        return next;
      };
      Accumulators acc(W, zero);
      acc = accumulate(chunks * W, W, acc, [&](LV* k, const Accumulators& a) { return step(k, a, false); });
      if (k_tail) acc = step(i64c(chunks * W), acc, true);
      LV* dst = b_.CreateInBoundsGEP(f32_, ptrs[2], b_.CreateAdd(b_.CreateMul(i, i64c(N_)), j0));
      LV* sums = reduce(acc);
      if (rows == W)
        b_.CreateAlignedStore(sums, dst, llvm::Align(4));
      else
        store_lanes(sums, dst, rows);
    });
  };
  const int64_t full = N_ / W, tail = N_ % W;
  if (full > 0)
    emit_loop_function(Space{{full}, {}}, ops.addrs, false, [&](const std::vector<LV*>& ivs, const std::vector<LV*>& ptrs) {
      block(ptrs, b_.CreateMul(ivs[0], i64c(W)), W);
    });
  if (tail > 0)
    emit_loop_function(Space{{1}, {}}, ops.addrs, false, [&](const std::vector<LV*>&, const std::vector<LV*>& ptrs) {
      block(ptrs, i64c(full * W), tail);
    });
}

LV* Lowerer::column_sums(const std::vector<LV*>& v) {
  // Each round adds pairs of vectors' halves, so a vector's lanes hold ever shorter runs of
  // partial sums of ever more columns; `col` tracks which column each lane's run sums.
  std::vector<LV*> cur = v;
  std::vector<std::vector<int>> col(16, std::vector<int>(16));
  for (int c = 0; c < 16; ++c) std::fill(col[c].begin(), col[c].end(), c);
  for (int h = 8; h >= 1; h /= 2) {
    std::vector<LV*> next;
    std::vector<std::vector<int>> next_col;
    for (size_t p = 0; p + 1 < cur.size(); p += 2) {
      std::vector<int> lo(16), hi(16), c(16);
      for (int l = 0; l < 16; ++l) {
        const int q = l / h, o = l % h, from = (q / 2) * 2 * h + o;
        lo[l] = (q % 2 ? 16 : 0) + from;
        hi[l] = lo[l] + h;
        c[l] = col[p + q % 2][from];
      }
      next.push_back(b_.CreateFAdd(b_.CreateShuffleVector(cur[p], cur[p + 1], lo),
                                   b_.CreateShuffleVector(cur[p], cur[p + 1], hi)));
      next_col.push_back(c);
    }
    cur = next;
    col = next_col;
  }
  std::vector<int> order(16);
  for (int l = 0; l < 16; ++l) order[col[0][l]] = l;
  return b_.CreateShuffleVector(cur[0], cur[0], order);
}

void Lowerer::emit_narrow_dot(const ir::Node& mm, const std::vector<const ir::Node*>& epilogue,
                              const std::vector<const ir::Value*>& stores) {
  const ProductShape ps = product_shape(mm);
  const int64_t N_ = ps.n, K_ = ps.k;
  auto i64c = [&](int64_t v) { return b_.getInt64(static_cast<uint64_t>(v)); };
  auto* vty = llvm::FixedVectorType::get(f32_, 16);
  llvm::Function* fma = llvm::Intrinsic::getDeclaration(&module_, llvm::Intrinsic::fmuladd, {vty});
  LV* zero = llvm::ConstantAggregateZero::get(vty);
  std::vector<llvm::Constant*> lanes;
  for (int64_t l = 0; l < 16; ++l) lanes.push_back(b_.getInt1(l < K_ % 16));
  llvm::Constant* k_mask = llvm::ConstantVector::get(lanes);
  std::vector<const ir::Value*> ext = externals(epilogue);
  std::erase(ext, mm.result);
  Operands ops;  // A, B, the epilogue's operands, the stores
  add_operand(ops, mm.inputs[0], {});
  add_operand(ops, mm.inputs[1], {});
  for (const ir::Value* v : ext) add_operand(ops, v, broadcast_strides(v->type.shape, mm.result->type.shape));
  for (const ir::Value* v : stores) add_operand(ops, v, contiguous_strides(mm.result->type.shape));
  // Two rows at a time (each load of B serves both) while their accumulators fit in registers.
  const int64_t R = !mm.result->batch && ps.m % 2 == 0 && N_ <= 12 ? 2 : 1;
  emit_loop_function(Space{{ps.m / R}, {}}, ops.addrs, false, [&](const std::vector<LV*>& ivs, const std::vector<LV*>& ptrs) {
    LV* i0 = b_.CreateMul(ivs[0], i64c(R));
    std::vector<LV*> a_rows, b_rows;
    for (int64_t r = 0; r < R; ++r)
      a_rows.push_back(b_.CreateInBoundsGEP(f32_, ptrs[0], b_.CreateMul(b_.CreateAdd(i0, i64c(r)), i64c(K_))));
    for (int64_t j = 0; j < N_; ++j) b_rows.push_back(b_.CreateConstInBoundsGEP1_64(f32_, ptrs[1], static_cast<uint64_t>(j * K_)));
    auto load = [&](LV* row, LV* k, bool masked) -> LV* {
      LV* p = b_.CreateInBoundsGEP(f32_, row, k);
      return masked ? static_cast<LV*>(b_.CreateMaskedLoad(vty, p, llvm::Align(4), k_mask, zero))
                    : static_cast<LV*>(b_.CreateAlignedLoad(vty, p, llvm::Align(4)));
    };
    auto step = [&](LV* k, Accumulators acc, bool masked) {
      std::vector<LV*> a;
      for (int64_t r = 0; r < R; ++r) a.push_back(load(a_rows[static_cast<size_t>(r)], k, masked));
      for (int64_t j = 0; j < N_; ++j) {
        LV* b = load(b_rows[static_cast<size_t>(j)], k, masked);
        for (int64_t r = 0; r < R; ++r) {
          LV*& sum = acc[static_cast<size_t>(r * N_ + j)];
          sum = b_.CreateCall(fma, {a[static_cast<size_t>(r)], b, sum});
        }
      }
      return acc;
    };
    Accumulators acc(static_cast<size_t>(R * N_), zero);
    acc = accumulate(K_ / 16 * 16, 16, acc, [&](LV* k, const Accumulators& a) { return step(k, a, false); });
    if (K_ % 16) acc = step(i64c(K_ / 16 * 16), acc, true);
    LV* sums = entry_alloca(llvm::ArrayType::get(f32_, static_cast<uint64_t>(R * 16)));
    for (int64_t r = 0; r < R; ++r) {
      std::vector<LV*> v(16, zero);
      for (int64_t j = 0; j < N_; ++j) v[static_cast<size_t>(j)] = acc[static_cast<size_t>(r * N_ + j)];
      b_.CreateAlignedStore(column_sums(v), b_.CreateConstInBoundsGEP1_64(f32_, sums, static_cast<uint64_t>(r * 16)),
                            llvm::Align(4));
    }
    emit_row_epilogue(mm, epilogue, ext, stores, ptrs, ops.strides, 2, i0, R, sums, 16);
  }, mm.result->batch != 0);
}

namespace {

/// The packed kernel's register tile: MR rows by NR 16-float vectors, and U interleaved sets of
/// partial sums over k.
struct Tiling {
  int64_t mr, nr, u;
};
/// NR a divisor of the V vectors per row (at most 8), MR a divisor of M (at most 24/NR
/// accumulators); few accumulators would wait on each other's multiply-add latency, so U (a
/// divisor of K) sets of partial sums keep about 12 independent chains in flight.
Tiling packed_tiling(int64_t m, int64_t v, int64_t k) {
  Tiling t{1, std::min<int64_t>(v, 8), 1};
  while (v % t.nr) --t.nr;
  for (int64_t r = std::min<int64_t>(4, 24 / t.nr); r > 1; --r)
    if (m % r == 0) {
      t.mr = r;
      break;
    }
  for (int64_t u = std::min<int64_t>(8, (12 + t.mr * t.nr - 1) / (t.mr * t.nr)); u > 1; --u)
    if (k % u == 0) {
      t.u = u;
      break;
    }
  return t;
}

}  // namespace

void Lowerer::emit_packed_contraction(const ir::Node& mm, const std::vector<const ir::Node*>& epilogue,
                                      const std::vector<const ir::Value*>& stores, const NodePlan& np) {
  const Shape& cs = mm.result->type.shape;
  const ProductShape ps = product_shape(mm);
  const int64_t M_ = ps.m, N_ = ps.n, K_ = ps.k, a_i = ps.a_i, a_k = ps.a_k;
  LV* packed = packed_[static_cast<size_t>(np.packing)];
  std::vector<const ir::Value*> ext = externals(epilogue);
  std::erase(ext, mm.result);
  // The product's rows: the result itself (no epilogue, N a multiple of 16); else a tile's rows in
  // stack scratch, read by the epilogue while in L1; for tiles too wide for that, the result or
  // padded rows in the arena.
  const int64_t NP = (N_ + 15) / 16 * 16;
  const bool direct = epilogue.empty() && stores.size() == 1 && stores[0] == mm.result && NP == N_;
  const bool scratch = !direct && packed_tiles_in_scratch(NP);
  LV* product = scratch                   ? llvm::ConstantPointerNull::get(ptr_)
                : direct || np.padded_offset < 0 ? address(mm.result)
                                                 : b_.CreateConstInBoundsGEP1_64(i8_, arena_, static_cast<uint64_t>(np.padded_offset));
  Operands ops;
  add_operand(ops, mm.inputs[0], {});
  for (LV* p : {packed, product}) {
    ops.addrs.push_back(p);
    ops.strides.push_back({});
  }
  for (const ir::Value* v : ext) add_operand(ops, v, broadcast_strides(v->type.shape, cs));
  for (const ir::Value* v : stores) add_operand(ops, v, contiguous_strides(cs));
  const int64_t V = NP / 16;
  // Tiles as for 16 rows (measured on the seed MLP: tiles of 3 rows, which a row count such as 12
  // or 39 gave, were a third to half slower), then a tile per leftover row; the row count is the
  // call's when the rows scale with the batch (ir/batch.h).
  const bool rows_vary = dynamic() && mm.result->batch;
  const auto [MR, NR, U] = packed_tiling(16, V, K_);
  auto i64c = [&](int64_t v) { return b_.getInt64(static_cast<uint64_t>(v)); };
  auto* vty = llvm::FixedVectorType::get(f32_, 16);
  llvm::Function* fma = llvm::Intrinsic::getDeclaration(&module_, llvm::Intrinsic::fmuladd, {vty});
  // Rows [i0, i0 + mr) of C.
  auto tile = [&](LV* i0, const int64_t mr, const std::vector<LV*>& ptrs) {
    // Where row i0 of the product goes (rows NP floats apart).
    LV* rows = scratch ? static_cast<LV*>(entry_alloca(llvm::ArrayType::get(f32_, static_cast<uint64_t>(mr * NP))))
                       : b_.CreateInBoundsGEP(f32_, ptrs[2], b_.CreateMul(i0, i64c(NP)));
    loop(i64c(0), i64c(V / NR), [&](LV* jt) {
      LV* col = b_.CreateMul(jt, i64c(NR * 16));  // first column of the tile
      // The k loop, U steps at a time, with the U*T accumulators in registers (all 0 when K is 0).
      const int64_t T = mr * NR;  // accumulators per k
      llvm::BranchInst* latch = nullptr;
      Accumulators next = accumulate(K_, U, Accumulators(U * T, llvm::ConstantAggregateZero::get(vty)),
                                     [&](LV* k, Accumulators acc) {
        for (int64_t u = 0; u < U; ++u) {
          LV* kk = b_.CreateAdd(k, i64c(u));
          LV* brow = b_.CreateInBoundsGEP(f32_, ptrs[1], b_.CreateAdd(b_.CreateMul(kk, i64c(NP)), col));
          std::vector<LV*> b;
          for (int64_t c = 0; c < NR; ++c)
            b.push_back(b_.CreateAlignedLoad(vty, b_.CreateConstInBoundsGEP1_64(f32_, brow, static_cast<uint64_t>(c * 16)),
                                             llvm::Align(4)));
          for (int64_t r = 0; r < mr; ++r) {
            LV* ai = b_.CreateAdd(b_.CreateMul(b_.CreateAdd(i0, i64c(r)), i64c(a_i)), b_.CreateMul(kk, i64c(a_k)));
            LV* a = b_.CreateVectorSplat(16, b_.CreateLoad(f32_, b_.CreateInBoundsGEP(f32_, ptrs[0], ai)));
            for (int64_t c = 0; c < NR; ++c) {
              LV*& sum = acc[u * T + r * NR + c];
              sum = b_.CreateCall(fma, {a, b[c], sum});
            }
          }
        }
        return acc;
      }, &latch);
      if (latch) limit_unroll(latch, 2);  // the body is already U*mr*NR multiply-adds: unrolled by 2 at most
      for (int64_t t = 0; t < T; ++t)  // the U partial sums of each accumulator
        for (int64_t u = 1; u < U; ++u) next[t] = b_.CreateFAdd(next[t], next[u * T + t]);
      for (int64_t r = 0; r < mr; ++r) {
        LV* row = b_.CreateInBoundsGEP(f32_, rows, b_.CreateAdd(i64c(r * NP), col));
        for (int64_t c = 0; c < NR; ++c)
          b_.CreateAlignedStore(next[r * NR + c], b_.CreateConstInBoundsGEP1_64(f32_, row, static_cast<uint64_t>(c * 16)),
                               llvm::Align(4));
      }
    });
    if (!direct) emit_row_epilogue(mm, epilogue, ext, stores, ptrs, ops.strides, 3, i0, mr, rows, NP);
  };
  auto rows = [&] { return extent(M_, rows_vary); };
  for (const int64_t mr : {MR, int64_t{1}}) {  // whole tiles, then the rows left (as many as MR - 1)
    if (mr == MR && MR == 1) continue;
    if (!rows_vary && (mr == MR ? M_ / MR : MR == 1 ? M_ : M_ % MR) == 0) continue;  // no such rows
    auto saved = b_.saveIP();
    std::vector<LV*> ptrs;
    LoopFunction lf = begin_loop_function(mr == 1 ? "packed_rows" : "packed_tiles", ops.addrs.size(), ptrs);
    LV* first = mr == 1 ? b_.CreateMul(b_.CreateUDiv(rows(), i64c(MR)), i64c(MR)) : i64c(0);
    loop(lf.body->getArg(0), lf.body->getArg(1), [&](LV* iv) { tile(b_.CreateAdd(first, b_.CreateMul(iv, i64c(mr))), mr, ptrs); });
    b_.CreateRetVoid();
    b_.restoreIP(saved);
    LV* count = mr == 1 ? (MR == 1 ? rows() : b_.CreateURem(rows(), i64c(MR))) : b_.CreateUDiv(rows(), i64c(MR));
    call_loop_function(lf.wrapper, ops.addrs, count, false);
  }
}

}  // namespace bj::codegen
