// FNV-1a, 64 bit: the project's one non-cryptographic hash (the object
// cache's file names and checksums, Blocks' structure fingerprints).
#pragma once

#include <cstdint>
#include <string_view>

namespace bj {

inline constexpr uint64_t kFnvOffset = 1469598103934665603ull;
inline constexpr uint64_t kFnvPrime = 1099511628211ull;

/// Mixes one word into h (a word at a time: for fingerprints of numbers and pointers).
constexpr uint64_t fnv1a_word(uint64_t h, uint64_t word) { return (h ^ word) * kFnvPrime; }

/// The hash of the bytes of s, continuing from h.
constexpr uint64_t fnv1a(std::string_view s, uint64_t h = kFnvOffset) {
  for (unsigned char c : s) h = fnv1a_word(h, c);
  return h;
}

}  // namespace bj
