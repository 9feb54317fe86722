// The small GEMM kernels against a naive double-precision reference: the conv shapes of the CPU backend, odd
// sizes (row/column tails), padded strides, and the shapes they must decline — every copy of them (one per
// instruction set, engine/cpu/small_gemm.hpp) this build has and this CPU runs: SmallGemm/Isa.<test>/<copy>.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/cpu/cpu_net.hpp"     // conv_backward_classes
#include "engine/cpu/small_gemm.hpp"
#include "engine/net.hpp"       // ConvShape
#include "kernels/philox.hpp"  // philox_normal_at: the scalar reference of the noise

namespace {

// The copy under test (the fixture sets it), called through the names the tests always used.
const ebm::CpuVectorKernels* g_kernels = nullptr;
bool isa_sgemm_nn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  return g_kernels->sgemm_nn(M, N, K, A, lda, B, ldb, C, ldc);
}
bool small_conv_nn(int M, int N, int T, int cin, const int32_t* taps, const float* in, const float* B, int ldb,
                   float* C, int ldc) {
  return g_kernels->conv_nn(M, N, T, cin, taps, in, B, ldb, C, ldc, nullptr, nullptr);
}

const ebm::CpuVectorKernels* find_copy(const std::string& isa) {
  for (const ebm::CpuVectorKernels& k : ebm::cpu_vector_variants())
    if (isa == k.isa) return &k;
  return nullptr;
}

// Runs isa_sgemm_nn on random data with the given padding of each stride and checks every element
// against a double reference to 1e-5 of the row's sum of |A[i][k]·B[k][j]| (plus a tiny absolute floor).
void check(int M, int N, int K, int pad_a = 0, int pad_b = 0, int pad_c = 0) {
  SCOPED_TRACE(::testing::Message() << "M=" << M << " N=" << N << " K=" << K << " pads=" << pad_a << ","
                                    << pad_b << "," << pad_c);
  const int lda = K + pad_a, ldb = N + pad_b, ldc = N + pad_c;
  std::mt19937 rng(static_cast<unsigned>(M * 131 + N * 7 + K));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> A(static_cast<size_t>(M) * lda), B(static_cast<size_t>(K) * ldb);
  for (float& x : A) x = u(rng);
  for (float& x : B) x = u(rng);
  const float sentinel = 12345.0f;
  std::vector<float> C(static_cast<size_t>(M) * ldc, sentinel);
  ASSERT_TRUE(isa_sgemm_nn(M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc));
  int bad = 0;
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < ldc; ++j) {
      const float got = C[static_cast<size_t>(i) * ldc + j];
      if (j >= N) {  // padding of C is left alone
        if (got != sentinel && ++bad <= 5) ADD_FAILURE() << "padding written at (" << i << "," << j << ")";
        continue;
      }
      double ref = 0, mag = 0;
      for (int k = 0; k < K; ++k) {
        const double p = static_cast<double>(A[static_cast<size_t>(i) * lda + k]) * B[static_cast<size_t>(k) * ldb + j];
        ref += p;
        mag += std::fabs(p);
      }
      if (std::fabs(got - ref) > 1e-5 * mag + 1e-30 && ++bad <= 5)
        ADD_FAILURE() << "C[" << i << "][" << j << "] = " << got << ", reference " << ref << " (abs-sum " << mag << ")";
    }
  }
  EXPECT_EQ(bad, 0);
}

class Isa : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    g_kernels = find_copy(GetParam());
    if (!g_kernels)
      GTEST_SKIP() << "no \"" << GetParam()
                   << "\" copy here (not x86-64, this CPU lacks its instructions, or EBM_CPU_ISA_COPIES left it out)";
  }
};

}  // namespace

TEST_P(Isa, ForwardConvShapes) {
  check(4096, 32, 144);
  check(1024, 64, 288);
  check(256, 64, 576);
  check(16384, 16, 9);
}

TEST_P(Isa, BackwardDataConvShapes) {
  check(4096, 144, 32);
  check(1024, 288, 64);
  check(256, 576, 64);
}

TEST_P(Isa, OddSizesAndTails) {
  for (int M : {1, 2, 5, 7, 13, 25})
    for (int N : {16, 32, 48, 80, 112, 208, 1024})
      for (int K : {1, 3, 17, 577}) check(M, N, K);
}

TEST_P(Isa, PaddedStrides) {
  check(13, 48, 3, 5, 16, 7);
  check(7, 80, 577, 3, 1, 16);
  check(37, 144, 32, 1, 32, 3);
  check(1, 16, 1, 9, 9, 9);
}

TEST_P(Isa, DeterministicAcrossCalls) {
  const int M = 29, N = 96, K = 61;
  std::vector<float> A(M * K), B(K * N), C1(M * N), C2(M * N);
  for (size_t i = 0; i < A.size(); ++i) A[i] = std::sin(0.37f * static_cast<float>(i));
  for (size_t i = 0; i < B.size(); ++i) B[i] = std::cos(0.11f * static_cast<float>(i));
  ASSERT_TRUE(isa_sgemm_nn(M, N, K, A.data(), K, B.data(), N, C1.data(), N));
  ASSERT_TRUE(isa_sgemm_nn(M, N, K, A.data(), K, B.data(), N, C2.data(), N));
  EXPECT_EQ(C1, C2);
  // the first row alone gives the same bits as inside the full product (tails use the same k order)
  std::vector<float> row(N);
  ASSERT_TRUE(isa_sgemm_nn(1, N, K, A.data(), K, B.data(), N, row.data(), N));
  for (int j = 0; j < N; ++j) EXPECT_EQ(row[j], C1[j]) << j;
}

TEST_P(Isa, DeclinesUnhandledShapes) {
  std::vector<float> A(16384 * 9, 1.0f), B(9 * 1040, 1.0f), C(16384 * 16, -7.0f);
  EXPECT_FALSE(isa_sgemm_nn(16384, 9, 9, A.data(), 9, B.data(), 9, C.data(), 9));
  EXPECT_FALSE(isa_sgemm_nn(4, 0, 3, A.data(), 3, B.data(), 16, C.data(), 16));
  EXPECT_FALSE(isa_sgemm_nn(4, 24, 3, A.data(), 3, B.data(), 24, C.data(), 24));
  EXPECT_FALSE(isa_sgemm_nn(4, 1040, 3, A.data(), 3, B.data(), 1040, C.data(), 1040));  // N > 1024
  EXPECT_FALSE(isa_sgemm_nn(0, 16, 3, A.data(), 3, B.data(), 16, C.data(), 16));
  EXPECT_FALSE(isa_sgemm_nn(4, 16, 0, A.data(), 1, B.data(), 16, C.data(), 16));
  EXPECT_FALSE(isa_sgemm_nn(4, 32, 3, A.data(), 2, B.data(), 32, C.data(), 32));  // lda < K
  for (size_t i = 0; i < C.size(); ++i) ASSERT_EQ(C[i], -7.0f) << "declined call wrote C at " << i;
}

TEST_P(Isa, ImplicitConvMatchesTheExplicitSum) {
  // Rows gather T pixel rows of `in` (some taps padding, −1); M not a multiple of any MR; N = 32 and 80.
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-1, 1);
  const int M = 37, T = 9, cin = 16, npix = 50;
  std::vector<float> in(size_t(npix) * cin);
  for (auto& v : in) v = u(gen);
  std::vector<int32_t> taps(size_t(M) * T);
  for (auto& t : taps) t = gen() % 6 == 0 ? -1 : int32_t(gen() % npix);  // about 1 in 6 taps is padding
  for (int N : {32, 80}) {
    std::vector<float> B(size_t(T) * cin * N), C(size_t(M) * N, 7.0f);
    for (auto& v : B) v = u(gen);
    ASSERT_TRUE(small_conv_nn(M, N, T, cin, taps.data(), in.data(), B.data(), N, C.data(), N));
    for (int r = 0; r < M; ++r)
      for (int j = 0; j < N; ++j) {
        double ref = 0, mag = 0;
        for (int t = 0; t < T; ++t) {
          const int32_t px = taps[size_t(r) * T + t];
          if (px < 0) continue;
          for (int c = 0; c < cin; ++c) {
            const double term = double(in[size_t(px) * cin + c]) * B[(size_t(t) * cin + c) * N + j];
            ref += term;
            mag += std::fabs(term);
          }
        }
        ASSERT_NEAR(C[size_t(r) * N + j], ref, 1e-5 * mag + 1e-6) << r << "," << j;
      }
  }
  std::vector<float> C(16);
  EXPECT_FALSE(small_conv_nn(1, 9, T, cin, taps.data(), in.data(), in.data(), 9, C.data(), 9)) << "N % 16 != 0";
}

INSTANTIATE_TEST_SUITE_P(SmallGemm, Isa, ::testing::Values("build", "baseline", "avx2", "avx512"),
                         [](const ::testing::TestParamInfo<const char*>& i) { return std::string(i.param); });

// avx2 and avx512 run the same vector code (8 and 16 lanes) with fused multiply-adds: the same bits, whatever the width.
// (baseline rounds each product before adding it: within the reference's tolerance above, not the same bits.)
TEST(SmallGemmIsa, Avx2AndAvx512GiveTheSameBits) {
  const ebm::CpuVectorKernels *a = find_copy("avx2"), *b = find_copy("avx512");
  if (!a || !b) GTEST_SKIP() << "needs both the avx2 and the avx512 copy (an x86-64 CPU with AVX-512)";
  const int M = 67, N = 208, K = 577;
  std::mt19937 gen(9);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> A(size_t(M) * K), B(size_t(K) * N), Ca(size_t(M) * N), Cb(size_t(M) * N), Cs(size_t(M) * N);
  for (auto& v : A) v = u(gen);
  for (auto& v : B) v = u(gen);
  ASSERT_TRUE(a->sgemm_nn(M, N, K, A.data(), K, B.data(), N, Ca.data(), N));
  ASSERT_TRUE(b->sgemm_nn(M, N, K, A.data(), K, B.data(), N, Cb.data(), N));
  EXPECT_EQ(Ca, Cb);
#if defined(__AVX512F__)  // a native AVX-512 build: its own copy is the avx512 one's code, bit for bit
  std::vector<float> Cn(size_t(M) * N);
  ASSERT_TRUE(find_copy("build")->sgemm_nn(M, N, K, A.data(), K, B.data(), N, Cn.data(), N));
  EXPECT_EQ(Cn, Cb);
#endif
  if (const ebm::CpuVectorKernels* s = find_copy("baseline")) {  // and the comparison could fail: baseline differs
    ASSERT_TRUE(s->sgemm_nn(M, N, K, A.data(), K, B.data(), N, Cs.data(), N));
    EXPECT_NE(Cs, Cb) << "baseline gave FMA's bits: was it compiled for the wrong instruction set?";
  }
}

// The copy in use: a native build runs its own; a portable one the widest this CPU runs (unless EBM_CPU_ISA).
TEST(SmallGemmIsa, TheCopyInUseIsTheBuildsOrTheWidest) {
  const std::vector<ebm::CpuVectorKernels>& v = ebm::cpu_vector_variants();
  ASSERT_FALSE(v.empty());
  EXPECT_STREQ(v.front().isa, "build");
  const char* forced = std::getenv("EBM_CPU_ISA");
  if (forced && *forced) GTEST_SKIP() << "EBM_CPU_ISA=" << forced << " chooses";
  const std::string in_use = ebm::cpu_vector_kernels().isa;
#ifdef EBM_NATIVE_BUILD
  EXPECT_EQ(in_use, "build");
#else
  EXPECT_EQ(in_use, v.back().isa);
#endif
}

// The other vector kernels of each copy (bias + swish, the Langevin noise's normals, the first layer's forward and
// backward-data, col2im, swish'): against plain double formulas where they are short, and avx2 against avx512 bit
// for bit.
TEST(SmallGemmIsa, EveryVectorKernelOfEveryCopy) {
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> u(-1, 1);
  const int rows = 37, cols = 48;
  std::vector<float> z0(size_t(rows) * cols), bias(cols);
  for (auto& v : z0) v = 4 * u(gen);
  for (auto& v : bias) v = u(gen);
  ebm::ConvShape s{};  // the seed's first layer: 1 → 16 channels, 3×3, stride 2, pad 1, 32×32 → 16×16
  s.cin = 1, s.cout = 16, s.k = 3, s.stride = 2, s.pad = 1, s.hin = 32, s.win = 32, s.hout = 16, s.wout = 16;
  const int n = 2;
  std::vector<float> x(size_t(n) * 32 * 32), wt(9 * 16), dz(size_t(n) * 16 * 16 * 16), wcol(16 * 16, 0.0f);
  for (auto& v : x) v = u(gen);
  for (auto& v : wt) v = u(gen);
  for (auto& v : dz) v = u(gen);
  for (int t = 0; t < 9; ++t)
    for (int c = 0; c < 16; ++c) wcol[size_t(c) * 16 + t] = wt[size_t(t) * 16 + c];
  ebm::ConvShape s2{};  // the seed's second layer for col2im: 16 → 32 channels, 16×16 → 8×8
  s2.cin = 16, s2.cout = 32, s2.k = 3, s2.stride = 2, s2.pad = 1, s2.hin = 16, s2.win = 16, s2.hout = 8, s2.wout = 8;
  std::vector<float> dcol(size_t(n) * 64 * 144), da(z0.size());
  for (auto& v : dcol) v = u(gen);
  for (auto& v : da) v = u(gen);
  struct Out {
    std::vector<float> z, sig, a, normals, conv, dx, din, dz;
  };
  std::vector<std::pair<std::string, Out>> outs;
  for (const ebm::CpuVectorKernels& k : ebm::cpu_vector_variants()) {
    Out o;
    o.z = z0, o.sig.resize(z0.size()), o.a.resize(z0.size());
    k.bias_swish(o.z.data(), o.sig.data(), o.a.data(), rows, cols, bias.data());
    o.normals.resize(64);
    k.normal64(42, 5, 1000, o.normals.data());
    o.conv.assign(size_t(n) * 16 * 16 * 16, 0.0f);
    for (int b = 0; b < n; ++b) k.conv1_forward_image(s, b, x.data(), wt.data(), o.conv.data(), nullptr);
    o.dx.assign(x.size(), 0.0f);
    for (int b = 0; b < n; ++b) k.conv1_backward_data_image(s, b, dz.data(), wcol.data(), o.dx.data());
    o.din.assign(size_t(n) * 256 * 16, 7.0f);  // overwritten, not accumulated into
    for (int b = 0; b < n; ++b) k.col2im_image(s2, b, dcol.data(), o.din.data());
    o.dz.resize(da.size());
    k.swish_grad(o.dz.data(), da.data(), o.sig.data(), o.z.data(), int64_t(da.size()));
    for (size_t i = 0; i < da.size(); ++i) {  // da·σ(1 + z(1 − σ))
      const double sg = o.sig[i], zz = o.z[i];
      ASSERT_NEAR(o.dz[i], da[i] * sg * (1 + zz * (1 - sg)), 1e-5 * (1 + std::fabs(zz))) << k.isa << " swish' at " << i;
    }
    for (int b = 0; b < n; ++b)  // col2im at pixel (3, 5), channel 2: the taps of the output pixels that read it
      for (int c : {2, 15}) {
        double ref = 0;
        for (int oy = 0; oy < 8; ++oy)
          for (int ox = 0; ox < 8; ++ox)
            for (int ky = 0; ky < 3; ++ky)
              for (int kx = 0; kx < 3; ++kx)
                if (2 * oy - 1 + ky == 3 && 2 * ox - 1 + kx == 5)
                  ref += dcol[size_t((b * 64 + oy * 8 + ox) * 144 + (ky * 3 + kx) * 16 + c)];
        ASSERT_NEAR(o.din[size_t((b * 256 + 3 * 16 + 5) * 16 + c)], ref, 1e-5) << k.isa << " col2im";
      }
    for (int i = 0; i < rows * cols; ++i) {  // z + b, σ(z + b), (z + b)·σ(z + b)
      const double zz = double(z0[size_t(i)]) + bias[size_t(i % cols)], sg = 1 / (1 + std::exp(-zz));
      ASSERT_NEAR(o.sig[size_t(i)], sg, 1e-6) << k.isa << " sigma at " << i;
      ASSERT_NEAR(o.a[size_t(i)], zz * sg, 1e-5 * (1 + std::fabs(zz))) << k.isa << " swish at " << i;
    }
    for (int i = 0; i < 64; ++i)  // the scalar Box–Muller of kernels/philox.hpp
      ASSERT_NEAR(o.normals[size_t(i)], ebm::philox_normal_at(42, 5, 1000, uint64_t(i)), 1e-5) << k.isa << " normal " << i;
    for (int b = 0; b < n; ++b)  // the forward against its definition at a corner, an edge and an interior pixel
      for (int p : {0, 7, 16 * 16 - 1})
        for (int c = 0; c < 16; ++c) {
          const int oy = p / 16, ox = p % 16;
          double ref = 0;
          for (int ky = 0; ky < 3; ++ky)
            for (int kx = 0; kx < 3; ++kx) {
              const int iy = 2 * oy - 1 + ky, ix = 2 * ox - 1 + kx;
              if (iy >= 0 && iy < 32 && ix >= 0 && ix < 32)
                ref += double(x[size_t((b * 32 + iy) * 32 + ix)]) * wt[size_t((ky * 3 + kx) * 16 + c)];
            }
          ASSERT_NEAR(o.conv[size_t((b * 256 + p) * 16 + c)], ref, 1e-5) << k.isa << " conv1 at " << b << "," << p;
        }
    outs.emplace_back(k.isa, std::move(o));
  }
  const Out& ref = outs.front().second;  // the build's own copy: the CPU backend's tests cover its use
  double dx_err = 0, dx_mag = 0;
  for (const auto& [isa, o] : outs)
    for (size_t i = 0; i < ref.dx.size(); ++i)
      dx_err = std::max(dx_err, double(std::fabs(o.dx[i] - ref.dx[i]))), dx_mag = std::max(dx_mag, double(std::fabs(ref.dx[i])));
  EXPECT_LT(dx_err, 1e-5 * dx_mag) << "conv1 backward-data differs between copies";
  EXPECT_GT(dx_mag, 0.1);
  const Out *a2 = nullptr, *a5 = nullptr;
  for (const auto& [isa, o] : outs) {
    if (isa == "avx2") a2 = &o;
    if (isa == "avx512") a5 = &o;
  }
  if (!a2 || !a5) GTEST_SKIP() << "the same-bits half needs the avx2 and avx512 copies";
  EXPECT_EQ(a2->a, a5->a);
  EXPECT_EQ(a2->sig, a5->sig);
  EXPECT_EQ(a2->normals, a5->normals);
  EXPECT_EQ(a2->conv, a5->conv);
  EXPECT_EQ(a2->dx, a5->dx);
  EXPECT_EQ(a2->din, a5->din);
  EXPECT_EQ(a2->dz, a5->dz);
}

// Bias + swish's tail columns (cols not a multiple of the vector width) give the vector loop's bits, down to the sign
// of zero: −0 + −0 is −0 in every column of every copy (a tail that broadcast with +0 + v made it +0 there, so the
// copies, whose widths differ, disagreed on which columns).
TEST(SmallGemmIsa, BiasSwishTailKeepsTheSignOfZero) {
  const int cols = 21;  // 16 + 5, 8·2 + 5, 4·5 + 1
  for (const ebm::CpuVectorKernels& k : ebm::cpu_vector_variants()) {
    std::vector<float> z(cols, -0.0f), bias(cols, -0.0f), sig(cols), a(cols);
    k.bias_swish(z.data(), sig.data(), a.data(), 1, cols, bias.data());
    for (int j = 0; j < cols; ++j) {
      EXPECT_TRUE(z[size_t(j)] == 0.0f && std::signbit(z[size_t(j)])) << k.isa << " column " << j << ": z = " << z[size_t(j)];
      EXPECT_EQ(sig[size_t(j)], 0.5f) << k.isa << " column " << j;
      EXPECT_TRUE(a[size_t(j)] == 0.0f && std::signbit(a[size_t(j)])) << k.isa << " column " << j;
    }
  }
}

// The backward-data pass without the column matrix (engine/cpu/cpu_net.cpp): the residue classes of
// conv_backward_classes through small_conv_tapsum_nn give, in every copy, exactly the bits of that copy's dcol = dz·Wp
// (small_sgemm_nn) followed by col2im — the path it replaced, so the CPU backend's results did not move — and with σ
// and z of the layer below, exactly swish_grad of that; so does col2im as a gather over that dcol (col2im_rows with
// col2im_offsets, the path 16-channel layers take where the tiles go wider).
TEST(SmallGemmIsa, BackwardDataClassesGiveGemmPlusCol2imBitForBit) {
  auto shape = [](int cin, int cout, int k, int stride, int hin) {
    ebm::ConvShape s{};
    s.cin = cin, s.cout = cout, s.k = k, s.stride = stride, s.pad = k / 2, s.hin = hin, s.win = hin;
    s.hout = s.wout = (hin + 2 * s.pad - k) / stride + 1;
    return s;
  };
  // the seed's layers 2–4 (odd and even inputs), stride 1, a 5×5 kernel, a stride larger than half the kernel
  const ebm::ConvShape shapes[] = {shape(16, 32, 3, 2, 14), shape(32, 64, 3, 2, 7), shape(64, 64, 3, 2, 4),
                                   shape(16, 16, 3, 1, 6),  shape(16, 32, 5, 2, 9), shape(32, 16, 3, 3, 8)};
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-1, 1);
  const int n = 3;
  for (const ebm::ConvShape& s : shapes) {
    const int kdim = s.k * s.k * s.cin;
    const int64_t p = int64_t(n) * s.hout * s.wout, pin = int64_t(n) * s.hin * s.win;
    std::vector<float> dz(size_t(p) * s.cout), wp(size_t(s.cout) * kdim), sig(size_t(pin) * s.cin), z(sig.size());
    for (auto& v : dz) v = u(gen);
    for (auto& v : wp) v = u(gen);
    for (size_t i = 0; i < z.size(); ++i) z[i] = 3 * u(gen), sig[i] = 1 / (1 + std::exp(-z[i]));
    const ebm::ConvBackwardClasses bc = ebm::conv_backward_classes(s, n);
    std::vector<float> w;  // each class's [taps·cout][cin]
    int64_t rows = 0;
    for (const auto& c : bc.classes) {
      rows += c.m;
      for (int t : c.tap_index)
        for (int co = 0; co < s.cout; ++co)
          for (int ci = 0; ci < s.cin; ++ci) w.push_back(wp[size_t(co) * kdim + size_t(t) * s.cin + ci]);
    }
    ASSERT_EQ(rows, pin) << "the classes cover every input pixel once";
    for (const ebm::CpuVectorKernels& k : ebm::cpu_vector_variants()) {
      std::vector<float> dcol(size_t(p) * kdim), ref(size_t(pin) * s.cin), ref_dz(ref.size());
      ASSERT_TRUE(k.sgemm_nn(int(p), kdim, s.cout, dz.data(), s.cout, wp.data(), kdim, dcol.data(), kdim));
      for (int b = 0; b < n; ++b) k.col2im_image(s, b, dcol.data(), ref.data());
      k.swish_grad(ref_dz.data(), ref.data(), sig.data(), z.data(), int64_t(ref.size()));
      for (const bool fused : {false, true}) {
        std::vector<float> got(ref.size(), 7.0f);  // every row written
        const float* wc = w.data();
        for (const auto& c : bc.classes) {
          const int nt = int(c.tap_index.size());
          ASSERT_TRUE(k.conv_tapsum_nn(c.m, s.cin, nt, s.cout, bc.taps.data() + c.taps_off, bc.rows.data() + c.rows_off,
                                       dz.data(), wc, s.cin, got.data(), s.cin, fused ? sig.data() : nullptr,
                                       fused ? z.data() : nullptr));
          wc += size_t(nt) * s.cout * s.cin;
        }
        EXPECT_EQ(got, fused ? ref_dz : ref) << k.isa << (fused ? " with swish'" : "") << ": cin " << s.cin << " k "
                                             << s.k << " stride " << s.stride << " hin " << s.hin;
        // col2im as a gather over the explicit dcol, an image at a time (the path layers of 16 channels take): the
        // same bits again
        std::vector<float> gathered(ref.size(), 7.0f);
        int T = 0;
        const std::vector<int32_t> offs = ebm::col2im_offsets(s, T);
        const int64_t pout = int64_t(s.hout) * s.wout, pin1 = int64_t(s.hin) * s.win;
        for (int b = 0; b < n; ++b) {
          const size_t at = size_t(b * pin1 * s.cin);
          ASSERT_TRUE(k.col2im_rows(int(pin1), s.cin, T, offs.data(), dcol.data() + size_t(b * pout * kdim),
                                    gathered.data() + at, s.cin, fused ? sig.data() + at : nullptr,
                                    fused ? z.data() + at : nullptr));
        }
        EXPECT_EQ(gathered, fused ? ref_dz : ref) << k.isa << " col2im_rows" << (fused ? " with swish'" : "")
                                                  << ": cin " << s.cin << " k " << s.k << " stride " << s.stride;
      }
    }
  }
}

// The forward implicit GEMM with its rows grouped by padding taps (group_rows_by_padding: tiles skip taps that are
// padding for all their rows, each row written to its own output pixel) gives the ungrouped call's bits in every copy,
// on the seed's layers 3 and 4 (30% of their taps outside the image) and a stride-1 layer; and the grouping does make
// whole tiles of padding (otherwise this would test nothing).
TEST(SmallGemmIsa, GroupedForwardRowsGiveTheSameBits) {
  struct L { int cin, cout, hin, hout, stride; };
  std::mt19937 gen(9);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const L& l : {L{32, 64, 7, 4, 2}, L{64, 64, 4, 2, 2}, L{16, 32, 6, 6, 1}}) {
    const int n = 8, k = 3, T = k * k, M = n * l.hout * l.hout;
    std::vector<int32_t> taps(static_cast<size_t>(M) * T, -1), rows(static_cast<size_t>(M));
    for (int b = 0; b < n; ++b)
      for (int oy = 0; oy < l.hout; ++oy)
        for (int ox = 0; ox < l.hout; ++ox)
          for (int t = 0; t < T; ++t) {
            const int iy = oy * l.stride - 1 + t / k, ix = ox * l.stride - 1 + t % k;
            if (iy >= 0 && iy < l.hin && ix >= 0 && ix < l.hin)
              taps[size_t(((b * l.hout + oy) * l.hout + ox) * T + t)] = (b * l.hin + iy) * l.hin + ix;
          }
    for (int r = 0; r < M; ++r) rows[size_t(r)] = r;
    std::vector<int32_t> gt = taps, gr = rows;
    ebm::group_rows_by_padding(T, gt.data(), gr.data(), M);
    int padded_runs = 0;  // runs of 6 rows (the widest tile's height) sharing a padding tap
    for (int r = 0; r + 6 <= M; r += 6)
      for (int t = 0; t < T; ++t) {
        bool all = true;
        for (int i = 0; i < 6; ++i) all &= gt[size_t((r + i) * T + t)] < 0;
        padded_runs += all;
      }
    if (l.stride == 2) {
      EXPECT_GT(padded_runs, 0);
    }
    std::vector<float> in(size_t(n) * l.hin * l.hin * l.cin), B(size_t(T) * l.cin * l.cout);
    for (auto& v : in) v = u(gen);
    for (auto& v : B) v = u(gen);
    for (const ebm::CpuVectorKernels& kern : ebm::cpu_vector_variants()) {
      std::vector<float> plain(size_t(M) * l.cout), grouped(plain.size(), 7.0f);
      ASSERT_TRUE(kern.conv_nn(M, l.cout, T, l.cin, taps.data(), in.data(), B.data(), l.cout, plain.data(), l.cout, nullptr, nullptr));
      ASSERT_TRUE(kern.conv_nn(M, l.cout, T, l.cin, gt.data(), in.data(), B.data(), l.cout, grouped.data(), l.cout, gr.data(), nullptr));
      EXPECT_EQ(grouped, plain) << kern.isa << ": cin " << l.cin << " hin " << l.hin;
    }
  }
}

// The first layer's kernels on both of their paths — a zero-padded plane on the stack (images up to about 90×90) and
// the bounds-checked loops beyond — against their definitions at every pixel, in every copy: the forward z[p][c] =
// Σ_t x[tap t of p]·w[t][c], and the input gradient dx[i] = Σ over (p, t) reading i of dz[p]·w[t] (dx overwritten).
TEST(SmallGemmIsa, FirstLayerBothPathsAgainstTheirDefinitions) {
  std::mt19937 gen(13);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const int hin : {30, 100}) {  // planes of 32² and 102² floats: below and above the stack plane's 8192
    for (const int stride : {2, 1}) {
      ebm::ConvShape s{};
      s.cin = 1, s.cout = 16, s.k = 3, s.stride = stride, s.pad = 1, s.hin = s.win = hin;
      s.hout = s.wout = (hin + 2 - 3) / stride + 1;
      const int P = s.hout * s.wout, n = 2;
      std::vector<float> x(size_t(n) * hin * hin), wt(9 * 16), dz(size_t(n) * P * 16), wcol(16 * 16, 0.0f);
      for (auto& v : x) v = u(gen);
      for (auto& v : wt) v = u(gen);
      for (auto& v : dz) v = u(gen);
      for (int t = 0; t < 9; ++t)
        for (int c = 0; c < 16; ++c) wcol[size_t(c) * 16 + t] = wt[size_t(t) * 16 + c];
      std::vector<double> zref(dz.size(), 0.0), dxref(x.size(), 0.0);
      for (int b = 0; b < n; ++b)
        for (int p = 0; p < P; ++p)
          for (int t = 0; t < 9; ++t) {
            const int iy = (p / s.wout) * stride - 1 + t / 3, ix = (p % s.wout) * stride - 1 + t % 3;
            if (iy < 0 || iy >= hin || ix < 0 || ix >= hin) continue;
            const size_t i = size_t(b * hin + iy) * hin + ix;
            for (int c = 0; c < 16; ++c) {
              zref[size_t(b * P + p) * 16 + c] += double(x[i]) * wt[size_t(t) * 16 + c];
              dxref[i] += double(dz[size_t(b * P + p) * 16 + c]) * wt[size_t(t) * 16 + c];
            }
          }
      for (const ebm::CpuVectorKernels& k : ebm::cpu_vector_variants()) {
        std::vector<float> z(dz.size(), 7.0f), dx(x.size(), 7.0f);
        for (int b = 0; b < n; ++b) {
          k.conv1_forward_image(s, b, x.data(), wt.data(), z.data(), nullptr);
          k.conv1_backward_data_image(s, b, dz.data(), wcol.data(), dx.data());
        }
        double ez = 0, edx = 0;
        for (size_t i = 0; i < z.size(); ++i) ez = std::max(ez, std::fabs(z[i] - zref[i]));
        for (size_t i = 0; i < dx.size(); ++i) edx = std::max(edx, std::fabs(dx[i] - dxref[i]));
        EXPECT_LT(ez, 1e-5) << k.isa << " forward, " << hin << "x" << hin << " stride " << stride;
        EXPECT_LT(edx, 1e-4) << k.isa << " input gradient, " << hin << "x" << hin << " stride " << stride;
      }
    }
  }
}

// Bias + swish applied as the forward convolutions write their rows (the implicit GEMM's tiles, grouped rows
// included, and the first layer's kernel on both of its paths) gives, in every copy, exactly the bits of the plain
// convolution followed by that copy's bias_swish pass: z, σ(z) and z·σ(z) alike.
TEST(SmallGemmIsa, SwishEpilogueGivesTheSeparatePassBits) {
  std::mt19937 gen(21);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const ebm::CpuVectorKernels& k : ebm::cpu_vector_variants()) {
    for (const int cout : {32, 64, 48}) {  // tiles 32 and 64 wide, and 48 (a 48-column panel on AVX-512)
      const int cin = 16, hin = 7, hout = 4, T = 9, n = 3, M = n * hout * hout;
      std::vector<float> in(size_t(n) * hin * hin * cin), B(size_t(T) * cin * cout), bias(static_cast<size_t>(cout));
      for (auto& v : in) v = u(gen);
      for (auto& v : B) v = u(gen);
      for (auto& v : bias) v = u(gen);
      std::vector<int32_t> taps(size_t(M) * T, -1), rows(static_cast<size_t>(M));
      for (int b = 0; b < n; ++b)
        for (int oy = 0; oy < hout; ++oy)
          for (int ox = 0; ox < hout; ++ox)
            for (int t = 0; t < T; ++t) {
              const int iy = oy * 2 - 1 + t / 3, ix = ox * 2 - 1 + t % 3;
              if (iy >= 0 && iy < hin && ix >= 0 && ix < hin)
                taps[size_t(((b * hout + oy) * hout + ox) * T + t)] = (b * hin + iy) * hin + ix;
            }
      for (int r = 0; r < M; ++r) rows[size_t(r)] = r;
      ebm::group_rows_by_padding(T, taps.data(), rows.data(), M);
      for (const bool grouped : {false, true}) {
        const int32_t* rw = grouped ? rows.data() : nullptr;
        std::vector<float> z(size_t(M) * cout), sig(z.size()), act(z.size());
        std::vector<float> fz(z.size(), 7.0f), fsig(z.size(), 7.0f), fact(z.size(), 7.0f);
        ASSERT_TRUE(k.conv_nn(M, cout, T, cin, taps.data(), in.data(), B.data(), cout, z.data(), cout, rw, nullptr));
        k.bias_swish(z.data(), sig.data(), act.data(), M, cout, bias.data());
        const ebm::SwishOut so{bias.data(), fsig.data(), fact.data()};
        ASSERT_TRUE(k.conv_nn(M, cout, T, cin, taps.data(), in.data(), B.data(), cout, fz.data(), cout, rw, &so));
        EXPECT_EQ(fz, z) << k.isa << " cout " << cout << (grouped ? " grouped" : "");
        EXPECT_EQ(fsig, sig) << k.isa << " cout " << cout;
        EXPECT_EQ(fact, act) << k.isa << " cout " << cout;
      }
    }
    for (const int hin : {32, 100}) {  // the first layer: the stack plane, and the bounds-checked loops beyond it
      ebm::ConvShape s{};
      s.cin = 1, s.cout = 16, s.k = 3, s.stride = 2, s.pad = 1, s.hin = s.win = hin, s.hout = s.wout = (hin - 1) / 2 + 1;
      const int n = 2, P = s.hout * s.wout;
      std::vector<float> x(size_t(n) * hin * hin), wt(9 * 16), bias(16);
      for (auto& v : x) v = u(gen);
      for (auto& v : wt) v = u(gen);
      for (auto& v : bias) v = u(gen);
      std::vector<float> z(size_t(n) * P * 16), sig(z.size()), act(z.size());
      std::vector<float> fz(z.size(), 7.0f), fsig(z.size(), 7.0f), fact(z.size(), 7.0f);
      const ebm::SwishOut so{bias.data(), fsig.data(), fact.data()};
      for (int b = 0; b < n; ++b) {
        k.conv1_forward_image(s, b, x.data(), wt.data(), z.data(), nullptr);
        k.conv1_forward_image(s, b, x.data(), wt.data(), fz.data(), &so);
      }
      k.bias_swish(z.data(), sig.data(), act.data(), int64_t(n) * P, 16, bias.data());
      EXPECT_EQ(fz, z) << k.isa << " first layer " << hin;
      EXPECT_EQ(fsig, sig) << k.isa << " first layer " << hin;
      EXPECT_EQ(fact, act) << k.isa << " first layer " << hin;
    }
  }
}

// The first layer's input gradient has, in every copy, the bits of its definition evaluated in one fixed order: each
// tap's value Σ_c dz[p][c]·w[t][c] a chain over the channels from +0 (fused multiply-adds where the copy has them),
// and each input pixel the sum from +0 of its taps' values in raster order of the output pixels — the order of the
// scatter the residue-class planes replaced, so the CPU backend's results did not move. Shapes: the seed's first
// layer, rows that are not a multiple of the vector width, strides 1 and 3, 2×2 and 4×4 kernels (the planes' generic
// tap count), and 32 channels (two channel blocks).
TEST(SmallGemmIsa, FirstLayerInputGradientHasTheScattersBits) {
  struct L { int hin, k, stride, pad, cout; };
  std::mt19937 gen(17);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const L& l : {L{32, 3, 2, 1, 16}, L{13, 3, 2, 1, 16}, L{30, 3, 1, 1, 16}, L{28, 3, 3, 1, 16},
                     L{20, 2, 2, 1, 16}, L{21, 4, 2, 2, 16}, L{32, 3, 2, 1, 32}}) {
    ebm::ConvShape s{};
    s.cin = 1, s.cout = l.cout, s.k = l.k, s.stride = l.stride, s.pad = l.pad, s.hin = s.win = l.hin;
    s.hout = s.wout = (l.hin + 2 * l.pad - l.k) / l.stride + 1;
    const int P = s.hout * s.wout, n = 2, kk = l.k * l.k, co = l.cout;
    std::vector<float> dz(size_t(n) * P * co), wt(size_t(kk) * co), wcol(size_t(co) * 16, 0.0f);
    for (auto& v : dz) v = u(gen);
    for (auto& v : wt) v = u(gen);
    for (int t = 0; t < kk; ++t)
      for (int c = 0; c < co; ++c) wcol[size_t(c) * 16 + t] = wt[size_t(t) * co + c];
    for (const ebm::CpuVectorKernels& k : ebm::cpu_vector_variants()) {
#if defined(__FMA__) || defined(__aarch64__)
      const bool fma = std::string(k.isa) != "baseline";  // the build's own copy has them where this file does
#else
      const bool fma = std::string(k.isa) == "avx2" || std::string(k.isa) == "avx512";
#endif
      std::vector<float> ref(size_t(n) * l.hin * l.hin, 0.0f), dx(ref.size(), 7.0f);
      for (int b = 0; b < n; ++b)
        for (int p = 0; p < P; ++p)
          for (int t = 0; t < kk; ++t) {
            float v = 0.0f;
            for (int c = 0; c < co; ++c) {
              const float g = dz[size_t(b * P + p) * co + c], w = wt[size_t(t) * co + c];
              if (fma) {
                v = std::fma(g, w, v);
              } else {
                volatile float prod = g * w;  // rounded on its own, as the copy without FMA does
                v = v + prod;
              }
            }
            const int iy = (p / s.wout) * l.stride - l.pad + t / l.k, ix = (p % s.wout) * l.stride - l.pad + t % l.k;
            if (iy >= 0 && iy < l.hin && ix >= 0 && ix < l.hin) ref[size_t(b * l.hin + iy) * l.hin + ix] += v;
          }
      for (int b = 0; b < n; ++b) k.conv1_backward_data_image(s, b, dz.data(), wcol.data(), dx.data());
      EXPECT_EQ(dx, ref) << k.isa << ": " << l.hin << "x" << l.hin << " k " << l.k << " stride " << l.stride << " pad "
                         << l.pad << " cout " << co;
    }
  }
}

// The net's weight layouts are rebuilt when the weights change in place (the packed backward-data weights, keyed by
// a version, included), and hold_weights() is dropped by a pass with other weights: every pass equals a fresh net's.
TEST(CpuNetWeights, ChangedInPlaceOrSwappedWhileHeldGiveAFreshNetsBits) {
  const ebm::NetSpec spec = ebm::NetSpec::make({16, 32, 32}, 3, 2, 16);
  std::vector<float> p = ebm::init_params(spec, 3), q = ebm::init_params(spec, 4);
  const int n = 3;
  std::vector<float> x(size_t(n) * 256);
  std::mt19937 gen(2);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto& v : x) v = u(gen);
  const std::vector<float> ones(n, 1.0f);
  auto pass = [&](ebm::CpuNet& net, const std::vector<float>& w) {
    std::vector<float> f(n), dx(x.size()), g(w.size());
    net.forward(w.data(), x.data(), n, f.data());
    net.backward(w.data(), ones.data(), dx.data(), g.data());
    f.insert(f.end(), dx.begin(), dx.end());
    f.insert(f.end(), g.begin(), g.end());
    return f;
  };
  auto fresh = [&](const std::vector<float>& w) {
    ebm::CpuNet net(spec);
    return pass(net, w);
  };
  ebm::CpuNet net(spec);
  EXPECT_EQ(pass(net, p), fresh(p));
  for (auto& v : p) v *= 1.5f;  // in place: same pointer, other weights
  EXPECT_EQ(pass(net, p), fresh(p));
  net.hold_weights(p.data());
  EXPECT_EQ(pass(net, q), fresh(q));  // other weights while p is held
  for (auto& v : p) v *= 0.5f;        // p changed after that pass let go of it
  EXPECT_EQ(pass(net, p), fresh(p));
  net.release_weights();
}
