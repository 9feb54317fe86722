// Single-threaded register-blocked SGEMM for the CPU backend's convolution shapes (im2col · weights and
// dz · weights): C[M][N] = A[M][K] · B[K][N], row-major, beta = 0. Written with GCC vector extensions, so
// -march=native lowers it to AVX-512 where the CPU has it (narrower vectors elsewhere).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ebm {

struct ConvShape;  // engine/net.hpp

// C[M][N] = A[M][K] · B[K][N] (beta = 0: C is overwritten). lda/ldb/ldc are row strides in floats.
// Each C element is the sum over k in increasing order (fused multiply-adds), so results are deterministic.
// Returns false (and does nothing) when the shape is not one it handles: it needs N % 16 == 0 with
// N in [16, 1024], M >= 1, K >= 1 and lda >= K, ldb >= N, ldc >= N. Callers run one call per thread.
bool small_sgemm_nn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc);

// A forward convolution's bias + swish applied as its output is written (fast_math.hpp's bias_swish, its bits): each
// output row gets z = acc + bias (in C), σ(z) in sig and z·σ(z) in act, at C's row and column. Null: C gets acc.
struct SwishOut {
  const float* bias;  // [N]
  float* sig;         // rows as C's
  float* act;         // rows as C's
};

// The forward convolution as an implicit GEMM (no im2col matrix): C[M][N] = A·B where row r of A is the
// concatenation over taps t < T of in[taps[r·T + t]][0..cin) (a pixel row of the NHWC input; taps −1
// read zeros), and B is [T·cin][N] with row stride ldb; row r is written to C row rows[r] (r where rows is null: the
// tap table's rows may be grouped so that padding taps line up and whole tiles skip them). Same conditions on N as
// above; cin ≤ 1024. With swish, C's rows get bias + swish as SwishOut says.
bool small_conv_nn(int M, int N, int T, int cin, const int32_t* taps, const float* in, const float* B, int ldb,
                   float* C, int ldc, const int32_t* rows, const SwishOut* swish = nullptr);

// The backward-data convolution of one residue class of input pixels as an implicit GEMM (engine/cpu/cpu_net.cpp
// builds the tables): for r < M, C[rows[r]·ldc .. +N) = Σ_{t<T} Σ_{c<K} in[taps[r·T + t]·K + c] · B[(t·K + c)·ldb ..
// +N). Each tap's dot over c is its own FMA chain from 0 and the taps are added to the row in t order from 0, so with
// the taps in col2im's order the row gets exactly the bits of dcol = dz·W (small_sgemm_nn) followed by col2im; a tap
// −1 reads zeros (adding +0). T = 0 writes zero rows. With sig and z (σ and z of the layer below, rows like C's; both
// or neither) each row is then multiplied by swish'(z) = σ(1 + z(1 − σ)) with swish_grad's bits: C is that layer's dz.
// Needs N % 16 == 0 with N in [16, 1024], K in [1, 1024].
bool small_conv_tapsum_nn(int M, int N, int T, int K, const int32_t* taps, const int32_t* rows, const float* in,
                          const float* B, int ldb, float* C, int ldc, const float* sig, const float* z);

// col2im as a gather, for the explicit column gradient dcol = dz·W: row r of C (at r·ldc) = the sum from +0, in t
// order, of dcol[offs[r·T + t] .. +N) over t < T with offs[r·T + t] ≥ 0 — with each row's entries in col2im's order
// (cpu_net.hpp's col2im_offsets), col2im's sums, so the bits of small_conv_tapsum_nn — then multiplied by swish'(z)
// with sig and z (rows like C's; both or neither) as there. For layers whose input rows are one 16-float vector wide
// (cin 16), where the implicit tiles are 16 columns and load-bound while dz·W runs in wide tiles (N = k·k·cin); rows
// in raster order, so σ and z stream. Needs N % 16 == 0 with N in [16, 1024], T ≥ 0.
bool conv_col2im_rows(int M, int N, int T, const int32_t* offs, const float* dcol, float* C, int ldc,
                      const float* sig, const float* z);

// --- The CPU backend's vector kernels (these two and those below), one copy per instruction set, chosen at run
// time (engine/cpu/small_gemm_dispatch.cpp); the entry points above call the chosen copy ---
// The build's own copy ("build": its -march, native with EBM_NATIVE) and, on x86-64, "baseline" (x86-64: SSE2),
// "avx2" (x86-64-v3: AVX2 + FMA) and "avx512" (x86-64-v4), those the build compiles (EBM_CPU_ISA_COPIES: all three
// unless told otherwise; the asan preset leaves out avx512). A portable build (EBM_NATIVE=OFF) runs the best one the
// CPU has; a native one its own. EBM_CPU_ISA=<name> forces one (UserError, one line, naming the ones this CPU runs,
// when it is unknown or this CPU lacks it). The 16-float vectors are the same code in every copy: avx2 and avx512
// give the same bits (FMA in both), baseline's multiply-then-add rounds twice and differs in the last bits.
// Besides the GEMMs, the other 16-float vector kernels of the CPU backend's Langevin step: the fused bias + swish of
// a layer's rows and the Philox normals of the Langevin noise (engine/cpu/fast_math.hpp), the first layer's
// convolution and its input gradient.
struct CpuVectorKernels {
  const char* isa;
  int widest_tile;  // columns of this copy's widest GEMM micro-tile: 64 with AVX-512, 16 with narrower vectors
  bool (*sgemm_nn)(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc);
  bool (*conv_nn)(int M, int N, int T, int cin, const int32_t* taps, const float* in, const float* B, int ldb,
                  float* C, int ldc, const int32_t* rows, const SwishOut* swish);
  bool (*conv_tapsum_nn)(int M, int N, int T, int K, const int32_t* taps, const int32_t* rows, const float* in,
                         const float* B, int ldb, float* C, int ldc, const float* sig, const float* z);
  bool (*col2im_rows)(int M, int N, int T, const int32_t* offs, const float* dcol, float* C, int ldc,
                      const float* sig, const float* z);
  void (*bias_swish)(float* z, float* sig, float* a, int64_t rows, int cols, const float* bias);
  void (*normal64)(uint64_t seed, uint64_t stream, uint64_t first, float out[64]);
  // The first (one-channel) layer, one image b at a time (engine/cpu/cpu_net.cpp conv1_forward / _backward_data).
  // z [n·P][cout]; with swish, z's image gets bias + swish (its sig and act pointers are the batch's, like z)
  void (*conv1_forward_image)(const ConvShape& s, int b, const float* x, const float* wt, float* z,
                              const SwishOut* swish);
  void (*conv1_backward_data_image)(const ConvShape& s, int b, const float* dz, const float* wcol, float* dx);  // dx's image overwritten
  // The backward pass's col2im of one image, and dz = da·swish'(z) over a slice (engine/cpu/cpu_net.cpp).
  void (*col2im_image)(const ConvShape& s, int b, const float* dcol, float* din);
  void (*swish_grad)(float* dz, const float* da, const float* sg, const float* z, int64_t n);
};
// The copies compiled in that this CPU can run, "build" first.
const std::vector<CpuVectorKernels>& cpu_vector_variants();
// The copy small_sgemm_nn / small_conv_nn run (chosen at the first call; EBM_CPU_ISA read then).
const CpuVectorKernels& cpu_vector_kernels();
// The name of the copy in use where it is not the build's own, else "" (for the backend's description).
std::string cpu_vector_dispatched_isa();

}  // namespace ebm
