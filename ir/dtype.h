// Element types. f32 is the compute type; bool and i64 serve masks and
// indices; bf16 is reserved (no kernels yet: ops on it raise DTypeError).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace bj {

enum class DType : uint8_t { kF32, kI64, kBool, kBF16 };

inline constexpr DType kF32 = DType::kF32;
inline constexpr DType kI64 = DType::kI64;
inline constexpr DType kBool = DType::kBool;
inline constexpr DType kBF16 = DType::kBF16;

/// Bytes per element.
constexpr size_t element_size(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kI64: return 8;
    case DType::kBool: return 1;
    case DType::kBF16: return 2;
  }
  return 0;
}

/// The IR's spelling: "f32", "i64", "bool", "bf16".
constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kI64: return "i64";
    case DType::kBool: return "bool";
    case DType::kBF16: return "bf16";
  }
  return "?";
}

/// The C++ type that stores one element (bool is stored as one byte).
template <DType T>
struct CType;
template <>
struct CType<DType::kF32> {
  using type = float;
};
template <>
struct CType<DType::kI64> {
  using type = int64_t;
};
template <>
struct CType<DType::kBool> {
  using type = uint8_t;
};

}  // namespace bj
