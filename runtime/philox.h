// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC'11): a counter-based generator. Block i of a stream is a pure
// function of (key, i), so tensors fill in parallel and give the same
// numbers on every machine and thread count.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace bj::rt {

/// Philox4x32-10 of a 128-bit counter under a 64-bit key.
inline std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t{0xD2511F53} * c[0], p1 = uint64_t{0xCD9E8D57} * c[2];
    c = {uint32_t(p1 >> 32) ^ c[1] ^ k[0], uint32_t(p1), uint32_t(p0 >> 32) ^ c[3] ^ k[1], uint32_t(p0)};
    k[0] += 0x9E3779B9;
    k[1] += 0xBB67AE85;
  }
  return c;
}

/// Four 32-bit random words for block `ctr` of the stream with seed `key`.
inline std::array<uint32_t, 4> philox4x32(uint64_t ctr, uint64_t key) {
  return philox4x32({uint32_t(ctr), uint32_t(ctr >> 32), 0, 0}, {uint32_t(key), uint32_t(key >> 32)});
}

/// A float in [0, 1) from 24 random bits.
inline float uniform01(uint32_t bits) { return float(bits >> 8) * (1.0f / 16777216.0f); }

/// n uniform floats in [0, 1): block `base + b` of stream `seed` gives elements 4b..4b+3. rand()
/// and the rand_uniform op both fill this way.
inline void philox_uniform(float* p, int64_t n, uint64_t seed, uint64_t base) {
  for (int64_t b = 0; b * 4 < n; ++b) {
    auto r = philox4x32(base + static_cast<uint64_t>(b), seed);
    for (int j = 0; j < 4 && b * 4 + j < n; ++j) p[b * 4 + j] = uniform01(r[static_cast<size_t>(j)]);
  }
}

/// Counter blocks a draw of n floats uses.
inline uint64_t philox_blocks(int64_t n) { return (static_cast<uint64_t>(n) + 3) / 4; }

}  // namespace bj::rt
