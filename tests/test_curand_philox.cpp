// The engine's Philox4x32-10 (kernels/philox.hpp: philox4x32_10(seed, stream, block)) is cuRAND's
// CURAND_RNG_PSEUDO_PHILOX4_32_10, bit for bit: key = seed, counter = (block: 64 bits, stream: 64 bits).
// Runs without a GPU: cuRAND's host generator computes on the CPU, and the device API's Philox code is
// compiled here for the host.
//
// cuRAND's host generator, as measured (cuRAND 10.4 of CUDA 13.0; default ordering — LEGACY and BEST give
// the same sequence; SEEDED and DYNAMIC are refused for Philox):
//   - curandGenerate writes one sequence of 32-bit words in which 65536 subsequences take turns block by
//     block: word k is word k % 4 of Philox block (seed, subsequence s, block b) with
//         s = (k / 4) % 65536,   b = (k / 4) / 65536.
//     (seed 42: k = 0 is (s 0, b 0) = 9ceaf053 77f5493b 12bf50ad 5742b3d7; k = 4 is (s 1, b 0);
//     k = 262144 is (s 0, b 1); k = 786428 is (s 65535, b 2).) Only subsequences 0..65535 are reachable
//     this way; the engine's streams (RngStream) are 1..8.
//   - curandSetGeneratorOffset(g, off) moves the start of the next curandGenerate to word `off` of that one
//     sequence: an offset in words of the interleaved sequence, not in blocks and not per subsequence (off = 1
//     starts at word 1 of (s 0, b 0); off = 4 at (s 1, b 0); off = 4·(65536·b + s) at (s, b)). So (stream s,
//     block b) is at offset 4·(65536·b + s), and blocks past 2^32 (the counter's high word) are reachable.
//   - Consecutive curandGenerate calls continue where the last one stopped; setting the seed keeps the offset.
//
// cuRAND's device API (curand_kernel.h): curand_init(seed, subsequence = stream, offset = 4·block + w, &st)
// then curand(&st) is word w of block `block`, and curand4(&st) at w = 0 is the whole block: the device API
// draws the engine's numbers from the engine's (seed, stream, offset in blocks). The header's Philox code
// is plain C++ but for mulhilo32, which NV_IF_ELSE_TARGET makes a 64-bit product on the host and __umulhi
// on the device (the same value), so it is compiled and run here with QUALIFIERS = static inline. The
// engine's own device noise (kernels/random.cuh: curand_init + curand4, converted as engine/rng.cpp) is
// compared with the CPU's, element by element, by tests/test_cuda_parity.cpp's noise tests
// (CudaParity.Op/noisy_langevin_*, train_step_*, initial_buffer_*), which need a GPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/philox.hpp"

#ifdef EBM_HAVE_CUDA
#define QUALIFIERS static inline  // cuRAND's device-API functions, compiled for the host (see above)
#include <curand.h>
#include <curand_kernel.h>

using namespace ebm;

namespace {

constexpr uint64_t kSubsequences = 65536;  // the host generator's interleave (measured, see above)
const uint64_t kSeeds[] = {0, 42, (uint64_t{1} << 32) + 7, UINT64_MAX};
const uint64_t kStreams[] = {0, 1, 5, 4095, 65535};

// Word k of the host generator's sequence, from the engine's Philox.
uint32_t host_sequence_word(uint64_t seed, uint64_t k) {
  const uint64_t block_index = k / 4;
  return philox4x32_10(seed, block_index % kSubsequences, block_index / kSubsequences).v[k % 4];
}

// Where (stream, block) starts in the host generator's sequence, in words (what curandSetGeneratorOffset takes).
uint64_t host_offset_of(uint64_t stream, uint64_t block) { return 4 * (kSubsequences * block + stream); }

std::string hex(uint32_t v) {
  char s[9];
  std::snprintf(s, sizeof s, "%08x", v);
  return s;
}

// A cuRAND host generator, destroyed with the object; skips the test (saying why) when cuRAND cannot make one.
struct HostPhilox {
  curandGenerator_t gen = nullptr;
  curandStatus_t status;
  HostPhilox() { status = curandCreateGeneratorHost(&gen, CURAND_RNG_PSEUDO_PHILOX4_32_10); }
  ~HostPhilox() {
    if (status == CURAND_STATUS_SUCCESS) curandDestroyGenerator(gen);
  }
  HostPhilox(const HostPhilox&) = delete;
  HostPhilox& operator=(const HostPhilox&) = delete;
  // n words from word `offset` of seed's sequence
  std::vector<uint32_t> words(uint64_t seed, uint64_t offset, size_t n) {
    std::vector<uint32_t> out(n);
    EXPECT_EQ(curandSetPseudoRandomGeneratorSeed(gen, seed), CURAND_STATUS_SUCCESS);
    EXPECT_EQ(curandSetGeneratorOffset(gen, offset), CURAND_STATUS_SUCCESS);
    EXPECT_EQ(curandGenerate(gen, out.data(), n), CURAND_STATUS_SUCCESS);
    return out;
  }
};

#define REQUIRE_HOST_GENERATOR(g)                                                                           \
  do {                                                                                                      \
    if ((g).status != CURAND_STATUS_SUCCESS)                                                                \
      GTEST_SKIP() << "cuRAND's host generator (Philox4_32_10) could not be created: curandStatus_t "      \
                   << int((g).status);                                                                      \
  } while (0)

// Every word of `got` against the sequence from word `first` on; one message with the count and the first miss.
::testing::AssertionResult matches_sequence(const std::vector<uint32_t>& got, uint64_t seed, uint64_t first) {
  size_t bad = 0, at = 0;
  for (size_t j = 0; j < got.size(); ++j)
    if (got[j] != host_sequence_word(seed, first + j) && bad++ == 0) at = j;
  if (bad == 0) return ::testing::AssertionSuccess();
  const uint64_t k = first + at;
  return ::testing::AssertionFailure() << bad << "/" << got.size() << " words differ (seed " << seed << ", offset "
                                       << first << "); first at word " << k << " = stream " << (k / 4) % kSubsequences
                                       << ", block " << (k / 4) / kSubsequences << ", lane " << k % 4 << ": curand "
                                       << hex(got[at]) << ", engine " << hex(host_sequence_word(seed, k));
}

}  // namespace

TEST(CurandPhilox, HostGeneratorMatchesEnginePhilox) {
  HostPhilox g;
  REQUIRE_HOST_GENERATOR(g);
  // The measured example, written out: seed 42, stream 0, block 0.
  const std::vector<uint32_t> head = g.words(42, 0, 4);
  EXPECT_EQ(hex(head[0]) + hex(head[1]) + hex(head[2]) + hex(head[3]), "9ceaf05377f5493b12bf50ad5742b3d7");
  const Philox4 r = philox4x32_10(42, 0, 0);
  EXPECT_EQ(std::vector<uint32_t>(r.v, r.v + 4), head);
  // Three whole rounds of the interleave (blocks 0..2 of all 65536 subsequences), from offset 0.
  for (uint64_t seed : kSeeds) {
    const std::vector<uint32_t> all = g.words(seed, 0, size_t(3 * 4 * kSubsequences));
    EXPECT_TRUE(matches_sequence(all, seed, 0));
    for (uint64_t stream : kStreams)
      for (uint64_t block : {0, 1, 2}) {
        const Philox4 p = philox4x32_10(seed, stream, block);
        const size_t k = size_t(host_offset_of(stream, block));
        EXPECT_EQ(std::vector<uint32_t>(p.v, p.v + 4), std::vector<uint32_t>(all.begin() + k, all.begin() + k + 4))
            << "seed " << seed << ", stream " << stream << ", block " << block << " at word " << k;
      }
  }
}

TEST(CurandPhilox, GeneratorOffsetCountsWordsOfTheInterleavedSequence) {
  HostPhilox g;
  REQUIRE_HOST_GENERATOR(g);
  for (uint64_t seed : kSeeds) {
    // Offsets inside a block, across subsequences and blocks, and far out (block ≥ 2^32: the counter's high word).
    for (uint64_t offset : {uint64_t{1}, uint64_t{3}, uint64_t{4}, uint64_t{5}, uint64_t{1000}, uint64_t{262143},
                            (uint64_t{1} << 32) + 3, (uint64_t{1} << 50) + 7, (uint64_t{1} << 62) + 9})
      for (size_t n : {size_t{1}, size_t{7}, size_t{1000}})
        EXPECT_TRUE(matches_sequence(g.words(seed, offset, n), seed, offset)) << n << " words";
    // (stream, block) reached through the offset, the way a caller would draw the engine's stream `stream`
    // from block `block` on.
    for (uint64_t stream : kStreams)
      for (uint64_t block : {uint64_t{0}, uint64_t{1}, uint64_t{1000}, (uint64_t{1} << 32) - 1, uint64_t{1} << 32,
                             (uint64_t{1} << 40) + 3}) {
        const Philox4 p = philox4x32_10(seed, stream, block);
        EXPECT_EQ(g.words(seed, host_offset_of(stream, block), 4), std::vector<uint32_t>(p.v, p.v + 4))
            << "seed " << seed << ", stream " << stream << ", block " << block;
      }
  }
}

TEST(CurandPhilox, GenerateContinuesWhereTheLastCallStopped) {
  HostPhilox g;
  REQUIRE_HOST_GENERATOR(g);
  const std::vector<uint32_t> first = g.words(42, 6, 10);  // words 6..15
  std::vector<uint32_t> next(10);
  ASSERT_EQ(curandGenerate(g.gen, next.data(), next.size()), CURAND_STATUS_SUCCESS);
  EXPECT_TRUE(matches_sequence(first, 42, 6));
  EXPECT_TRUE(matches_sequence(next, 42, 16));
}

TEST(CurandPhilox, DeviceApiInitMatchesEnginePhilox) {
  // curand_init(seed, subsequence, offset) with offset = 4·block + w: word w of block `block` of stream
  // `subsequence`, for any 64-bit stream (beyond the host generator's 65536) and block.
  const uint64_t streams[] = {0, 1, 5, 4095, 65535, (uint64_t{1} << 32) + 1, UINT64_MAX};
  const uint64_t blocks[] = {0, 1, 1000, (uint64_t{1} << 32) - 1, uint64_t{1} << 32, (uint64_t{1} << 40) + 3,
                             (uint64_t{1} << 61) + 5};
  for (uint64_t seed : kSeeds)
    for (uint64_t stream : streams)
      for (uint64_t block : blocks) {
        const Philox4 p = philox4x32_10(seed, stream, block);
        const std::string at = "seed " + std::to_string(seed) + ", stream " + std::to_string(stream) + ", block " +
                               std::to_string(block);
        curandStatePhilox4_32_10_t st;
        curand_init(seed, stream, 4 * block, &st);
        const uint4 four = curand4(&st);
        EXPECT_EQ((std::vector<uint32_t>{four.x, four.y, four.z, four.w}), std::vector<uint32_t>(p.v, p.v + 4)) << at;
        for (uint32_t w = 0; w < 4; ++w) {  // an offset inside the block, then on into the next block
          curand_init(seed, stream, 4 * block + w, &st);
          EXPECT_EQ(curand(&st), p.v[w]) << at << ", word " << w;
          for (uint32_t k = w + 1; k < 4; ++k) EXPECT_EQ(curand(&st), p.v[k]) << at << ", word " << k;
          EXPECT_EQ(curand(&st), philox4x32_10(seed, stream, block + 1).v[0]) << at << ", then block + 1";
        }
      }
}

#else  // no CUDA toolkit at configure time: no cuRAND to compare with

TEST(CurandPhilox, HostGeneratorMatchesEnginePhilox) {
  GTEST_SKIP() << "this build has no CUDA backend (EBM_HAVE_CUDA is not defined), so no cuRAND to compare with";
}

#endif
