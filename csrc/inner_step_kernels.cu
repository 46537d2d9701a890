// Fused MAML inner-step update for all T tasks of one network, in one launch.
//
// Includes only CUDA toolkit headers and csrc/ headers (see inner_step_kernels.h).
//
// Kernels:
//   1. row_sumsq_partial_kernel  (clipping only) per-task partial sums of g^2 over fixed
//                                 chunks of kNormChunk columns -> workspace
//   2. clip_scale_kernel         (clipping only) one warp per task sums its partials in a
//                                 fixed order (deterministic) -> scale[t]
//   3. update_kernel<METHOD, T, VEC>  elementwise update: grid.y walks tasks, grid.x
//                                 walks VEC-wide aligned chunks of the row (grid-stride),
//                                 with a scalar head/tail per row so rows whose start is
//                                 not VEC-aligned (P % VEC != 0) still vectorise.
// Arithmetic is in the compute type A (float, or double for double params).
#include "inner_step_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

namespace metagan {
namespace {

constexpr int kThreads = 256;
constexpr int kVec = 4;
constexpr int64_t kNormChunk = 8192;  // columns per partial sum; fixed => deterministic
constexpr int kMaxGridY = 65535;

// ---------------------------------------------------------------------------------------
// dtype traits: storage type T <-> compute type A
template <typename T>
struct Cvt;

template <>
struct Cvt<float> {
  using acc = float;
  static __device__ __forceinline__ float up(float x) { return x; }
  static __device__ __forceinline__ float down(float x) { return x; }
};

template <>
struct Cvt<double> {
  using acc = double;
  static __device__ __forceinline__ double up(double x) { return x; }
  static __device__ __forceinline__ double down(double x) { return x; }
};

template <>
struct Cvt<__half> {
  using acc = float;
  static __device__ __forceinline__ float up(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half down(float x) { return __float2half_rn(x); }
};

template <>
struct Cvt<__nv_bfloat16> {
  using acc = float;
  static __device__ __forceinline__ float up(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 down(float x) { return __float2bfloat16_rn(x); }
};

__device__ __forceinline__ float acc_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double acc_sqrt(double x) { return sqrt(x); }

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// ---------------------------------------------------------------------------------------
// Kernel arguments, typed.
template <typename T>
struct KArgs {
  using A = typename Cvt<T>::acc;
  int64_t T_, P;
  const T* params;
  const T* grads;
  T* out;
  const A* s1_in;
  const A* s2_in;
  A* s1_out;
  A* s2_out;
  const A* lr;
  int64_t lr_st, lr_sp;
  A lr_scale;
  A momentum;
  A beta1, one_minus_beta1, beta2, one_minus_beta2;
  A eps;
  A wd;
  A bc1, bc2;           // 1 - beta^step
  const A* clip_scale;  // (T,) or nullptr
};

// One element: everything but the loads/stores. s1/s2 hold the previous state on entry
// (0 when absent) and the new state on exit.
template <int METHOD, typename A>
__device__ __forceinline__ A update_one(A p, A g, A lr, A& s1, A& s2, A clip, A wd, A momentum,
                                        A beta1, A omb1, A beta2, A omb2, A eps, A bc1, A bc2) {
  g = g * clip;
  if (wd != A(0)) g = g + wd * p;
  if constexpr (METHOD == static_cast<int>(Method::kSGD)) {
    return p - lr * g;
  } else if constexpr (METHOD == static_cast<int>(Method::kMomentum)) {
    s1 = momentum * s1 + g;
    return p - lr * s1;
  } else {
    s1 = beta1 * s1 + omb1 * g;
    s2 = beta2 * s2 + omb2 * (g * g);
    const A denom = acc_sqrt(s2 / bc2) + eps;
    return p - lr * (s1 / bc1) / denom;
  }
}

template <int METHOD, typename T>
__device__ __forceinline__ void scalar_update(const KArgs<T>& a, int64_t t, int64_t row,
                                              int64_t col, typename Cvt<T>::acc lr_row,
                                              typename Cvt<T>::acc clip) {
  using A = typename Cvt<T>::acc;
  constexpr bool kS1 = METHOD != static_cast<int>(Method::kSGD);
  constexpr bool kS2 = METHOD == static_cast<int>(Method::kAdam);
  const int64_t i = row + col;
  const A lr = (a.lr != nullptr && a.lr_sp != 0) ? a.lr_scale * a.lr[t * a.lr_st + col * a.lr_sp]
                                                  : lr_row;
  A s1 = A(0), s2 = A(0);
  if constexpr (kS1) {
    if (a.s1_in != nullptr) s1 = a.s1_in[i];
  }
  if constexpr (kS2) {
    if (a.s2_in != nullptr) s2 = a.s2_in[i];
  }
  const A out = update_one<METHOD, A>(Cvt<T>::up(a.params[i]), Cvt<T>::up(a.grads[i]), lr, s1, s2,
                                      clip, a.wd, a.momentum, a.beta1, a.one_minus_beta1, a.beta2,
                                      a.one_minus_beta2, a.eps, a.bc1, a.bc2);
  a.out[i] = Cvt<T>::down(out);
  if constexpr (kS1) a.s1_out[i] = s1;
  if constexpr (kS2) a.s2_out[i] = s2;
}

template <int METHOD, typename T>
__device__ __forceinline__ void vector_update(const KArgs<T>& a, int64_t t, int64_t row,
                                              int64_t col, typename Cvt<T>::acc lr_row,
                                              typename Cvt<T>::acc clip) {
  using A = typename Cvt<T>::acc;
  constexpr bool kS1 = METHOD != static_cast<int>(Method::kSGD);
  constexpr bool kS2 = METHOD == static_cast<int>(Method::kAdam);
  const int64_t i = row + col;  // multiple of kVec
  const Vec<T, kVec> pv = *reinterpret_cast<const Vec<T, kVec>*>(a.params + i);
  const Vec<T, kVec> gv = *reinterpret_cast<const Vec<T, kVec>*>(a.grads + i);
  Vec<A, kVec> s1v, s2v;
  if constexpr (kS1) {
    if (a.s1_in != nullptr) {
      s1v = *reinterpret_cast<const Vec<A, kVec>*>(a.s1_in + i);
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j) s1v.v[j] = A(0);
    }
  }
  if constexpr (kS2) {
    if (a.s2_in != nullptr) {
      s2v = *reinterpret_cast<const Vec<A, kVec>*>(a.s2_in + i);
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j) s2v.v[j] = A(0);
    }
  }
  A lr[kVec];
  if (a.lr != nullptr && a.lr_sp != 0) {
#pragma unroll
    for (int j = 0; j < kVec; ++j) lr[j] = a.lr_scale * a.lr[t * a.lr_st + (col + j) * a.lr_sp];
  } else {
#pragma unroll
    for (int j = 0; j < kVec; ++j) lr[j] = lr_row;
  }
  Vec<T, kVec> ov;
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    A s1 = kS1 ? s1v.v[j] : A(0);
    A s2 = kS2 ? s2v.v[j] : A(0);
    const A out = update_one<METHOD, A>(Cvt<T>::up(pv.v[j]), Cvt<T>::up(gv.v[j]), lr[j], s1, s2,
                                        clip, a.wd, a.momentum, a.beta1, a.one_minus_beta1,
                                        a.beta2, a.one_minus_beta2, a.eps, a.bc1, a.bc2);
    ov.v[j] = Cvt<T>::down(out);
    if constexpr (kS1) s1v.v[j] = s1;
    if constexpr (kS2) s2v.v[j] = s2;
  }
  *reinterpret_cast<Vec<T, kVec>*>(a.out + i) = ov;
  if constexpr (kS1) *reinterpret_cast<Vec<A, kVec>*>(a.s1_out + i) = s1v;
  if constexpr (kS2) *reinterpret_cast<Vec<A, kVec>*>(a.s2_out + i) = s2v;
}

// VEC is kVec (all base pointers aligned to a vector) or 1 (scalar fallback).
template <int METHOD, typename T, int VEC>
__global__ void __launch_bounds__(kThreads) update_kernel(const KArgs<T> a) {
  using A = typename Cvt<T>::acc;
  const int64_t P = a.P;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = blockIdx.y; t < a.T_; t += gridDim.y) {
    const int64_t row = t * P;
    const A clip = a.clip_scale != nullptr ? a.clip_scale[t] : A(1);
    const A lr_row =
        a.lr == nullptr ? a.lr_scale : (a.lr_sp == 0 ? a.lr_scale * a.lr[t * a.lr_st] : A(0));
    if constexpr (VEC == 1) {
      for (int64_t c = tid; c < P; c += stride) scalar_update<METHOD, T>(a, t, row, c, lr_row, clip);
    } else {
      int64_t head = (VEC - row % VEC) % VEC;  // scalar columns before the first aligned one
      if (head > P) head = P;
      const int64_t nvec = (P - head) / VEC;
      const int64_t tail_start = head + nvec * VEC;
      const int64_t ntail = P - tail_start;
      if (tid < head) {
        scalar_update<METHOD, T>(a, t, row, tid, lr_row, clip);
      } else if (tid < head + ntail) {
        scalar_update<METHOD, T>(a, t, row, tail_start + (tid - head), lr_row, clip);
      }
      for (int64_t v = tid; v < nvec; v += stride) {
        vector_update<METHOD, T>(a, t, row, head + v * VEC, lr_row, clip);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Per-task gradient norm (clipping).
template <typename A>
__device__ __forceinline__ A warp_sum(A x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_down_sync(0xffffffffu, x, off);
  return x;
}

// partial[t * nchunks + c] = sum of g[t, c*kNormChunk : (c+1)*kNormChunk]^2
template <typename T>
__global__ void __launch_bounds__(kThreads)
    row_sumsq_partial_kernel(const T* __restrict__ grads, int64_t T_, int64_t P, int64_t nchunks,
                             typename Cvt<T>::acc* __restrict__ partial) {
  using A = typename Cvt<T>::acc;
  __shared__ A warp_sums[kThreads / 32];
  const int64_t c = blockIdx.x;
  const int64_t begin = c * kNormChunk;
  const int64_t end = begin + kNormChunk < P ? begin + kNormChunk : P;
  for (int64_t t = blockIdx.y; t < T_; t += gridDim.y) {
    const T* g = grads + t * P;
    A acc = A(0);
    for (int64_t j = begin + threadIdx.x; j < end; j += kThreads) {
      const A x = Cvt<T>::up(g[j]);
      acc += x * x;
    }
    acc = warp_sum(acc);
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    if (lane == 0) warp_sums[warp] = acc;
    __syncthreads();
    if (warp == 0) {
      A s = lane < kThreads / 32 ? warp_sums[lane] : A(0);
      s = warp_sum(s);
      if (lane == 0) partial[t * nchunks + c] = s;
    }
    __syncthreads();  // warp_sums is reused by the next task
  }
}

// scale[t] = min(1, max_norm / (sqrt(sum_c partial[t, c]) + 1e-6)); one warp per task.
template <typename A>
__global__ void __launch_bounds__(kThreads)
    clip_scale_kernel(const A* __restrict__ partial, int64_t T_, int64_t nchunks, A max_norm,
                      A* __restrict__ scale) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_per_grid = static_cast<int64_t>(gridDim.x) * (kThreads / 32);
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
       t < T_; t += warps_per_grid) {
    A s = A(0);
    for (int64_t c = lane; c < nchunks; c += 32) s += partial[t * nchunks + c];
    s = warp_sum(s);
    if (lane == 0) {
      const A coef = max_norm / (acc_sqrt(s) + A(1e-6));
      scale[t] = coef < A(1) ? coef : A(1);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Host side.
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t norm_chunks(int64_t P) { return P > 0 ? ceil_div(P, kNormChunk) : 0; }

template <typename A>
size_t workspace_bytes_typed(int64_t T, int64_t P) {
  // scale (T) first, then partial sums (T * nchunks); both of type A.
  return static_cast<size_t>(T + T * norm_chunks(P)) * sizeof(A);
}

bool aligned(const void* p, size_t bytes) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

cudaError_t multiprocessor_count(int* out) {
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  return cudaDeviceGetAttribute(out, cudaDevAttrMultiProcessorCount, dev);
}

template <typename T>
cudaError_t launch_typed(const InnerStepArgs& args, cudaStream_t stream) {
  using A = typename Cvt<T>::acc;
  const int64_t T_ = args.T;
  const int64_t P = args.P;
  if (T_ <= 0 || P <= 0) return cudaSuccess;

  KArgs<T> k;
  k.T_ = T_;
  k.P = P;
  k.params = static_cast<const T*>(args.params);
  k.grads = static_cast<const T*>(args.grads);
  k.out = static_cast<T*>(args.out_params);
  k.s1_in = static_cast<const A*>(args.state1_in);
  k.s2_in = static_cast<const A*>(args.state2_in);
  k.s1_out = static_cast<A*>(args.state1_out);
  k.s2_out = static_cast<A*>(args.state2_out);
  k.lr = static_cast<const A*>(args.lr);
  k.lr_st = args.lr_stride_t;
  k.lr_sp = args.lr_stride_p;
  k.lr_scale = static_cast<A>(args.lr_scale);
  k.momentum = static_cast<A>(args.momentum);
  k.beta1 = static_cast<A>(args.beta1);
  k.one_minus_beta1 = static_cast<A>(1.0 - args.beta1);
  k.beta2 = static_cast<A>(args.beta2);
  k.one_minus_beta2 = static_cast<A>(1.0 - args.beta2);
  k.eps = static_cast<A>(args.eps);
  k.wd = static_cast<A>(args.weight_decay);
  k.bc1 = A(1);
  k.bc2 = A(1);
  k.clip_scale = nullptr;

  if (args.method == Method::kAdam) {
    // In double, like the reference's Python `1 - beta ** step`, then rounded to A.
    const double step = static_cast<double>(args.step);
    k.bc1 = static_cast<A>(1.0 - std::pow(args.beta1, step));
    k.bc2 = static_cast<A>(1.0 - std::pow(args.beta2, step));
  }
  if (args.method != Method::kSGD && k.s1_out == nullptr) return cudaErrorInvalidValue;
  if (args.method == Method::kAdam && k.s2_out == nullptr) return cudaErrorInvalidValue;
  if (k.params == nullptr || k.grads == nullptr || k.out == nullptr) return cudaErrorInvalidValue;

  int sms = 0;
  cudaError_t err = multiprocessor_count(&sms);
  if (err != cudaSuccess) return err;
  const int64_t target_blocks = static_cast<int64_t>(sms > 0 ? sms : 1) * 16;

  if (args.clip) {
    if (args.workspace == nullptr) return cudaErrorInvalidValue;
    A* scale = static_cast<A*>(args.workspace);
    A* partial = scale + T_;
    const int64_t nchunks = norm_chunks(P);
    const dim3 g1(static_cast<unsigned>(nchunks),
                  static_cast<unsigned>(T_ < kMaxGridY ? T_ : kMaxGridY));
    row_sumsq_partial_kernel<T><<<g1, kThreads, 0, stream>>>(k.grads, T_, P, nchunks, partial);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    const int64_t warps_per_block = kThreads / 32;
    int64_t b2 = ceil_div(T_, warps_per_block);
    if (b2 > target_blocks) b2 = target_blocks;
    clip_scale_kernel<A><<<static_cast<unsigned>(b2), kThreads, 0, stream>>>(
        partial, T_, nchunks, static_cast<A>(args.max_grad_norm), scale);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    k.clip_scale = scale;
  }

  const bool vec_ok = aligned(k.params, sizeof(T) * kVec) && aligned(k.grads, sizeof(T) * kVec) &&
                      aligned(k.out, sizeof(T) * kVec) && aligned(k.s1_in, sizeof(A) * kVec) &&
                      aligned(k.s2_in, sizeof(A) * kVec) && aligned(k.s1_out, sizeof(A) * kVec) &&
                      aligned(k.s2_out, sizeof(A) * kVec);
  const int vec = vec_ok ? kVec : 1;
  const int64_t gy = T_ < kMaxGridY ? T_ : kMaxGridY;
  int64_t gx = ceil_div(ceil_div(P, vec), kThreads);
  int64_t cap_x = target_blocks / gy;
  if (cap_x < 1) cap_x = 1;
  if (gx > cap_x) gx = cap_x;
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));

#define METAGAN_LAUNCH_UPDATE(M)                                                   \
  do {                                                                             \
    if (vec_ok) {                                                                  \
      update_kernel<static_cast<int>(M), T, kVec><<<grid, kThreads, 0, stream>>>(k); \
    } else {                                                                       \
      update_kernel<static_cast<int>(M), T, 1><<<grid, kThreads, 0, stream>>>(k);    \
    }                                                                              \
  } while (0)

  switch (args.method) {
    case Method::kSGD:
      METAGAN_LAUNCH_UPDATE(Method::kSGD);
      break;
    case Method::kMomentum:
      METAGAN_LAUNCH_UPDATE(Method::kMomentum);
      break;
    case Method::kAdam:
      METAGAN_LAUNCH_UPDATE(Method::kAdam);
      break;
    default:
      return cudaErrorInvalidValue;
  }
#undef METAGAN_LAUNCH_UPDATE
  return cudaGetLastError();
}

}  // namespace

size_t inner_step_workspace_bytes(int64_t T, int64_t P, DType dtype) {
  if (T <= 0 || P <= 0) return 0;
  return dtype == DType::kFloat64 ? workspace_bytes_typed<double>(T, P)
                                  : workspace_bytes_typed<float>(T, P);
}

cudaError_t inner_step_launch(const InnerStepArgs& args, cudaStream_t stream) {
  switch (args.dtype) {
    case DType::kFloat32:
      return launch_typed<float>(args, stream);
    case DType::kFloat64:
      return launch_typed<double>(args, stream);
    case DType::kFloat16:
      return launch_typed<__half>(args, stream);
    case DType::kBFloat16:
      return launch_typed<__nv_bfloat16>(args, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace metagan
