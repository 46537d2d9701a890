// Plain launcher API for the fused MAML inner-step kernels.
//
// This header (and inner_step_kernels.cu) includes only CUDA toolkit headers, so
// `nvcc -std=c++17 -Icsrc -c csrc/inner_step_kernels.cu` compiles without PyTorch.
// The torch-side binding (argument checks, allocation, stream) is inner_step_cuda.cpp.
//
// Layout: every (T, P) array is dense row-major (row t = task t, P parameters).
// The learning rate is read as lr[t * lr_stride_t + p * lr_stride_p] (strides in
// elements, 0 to broadcast), times lr_scale; lr == nullptr means 1.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace metagan {

// dtype of params / grads / out_params. State, lr and workspace use the compute
// ("accumulate") type: double for kFloat64, float for everything else.
enum class DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

enum class Method : int { kSGD = 0, kMomentum = 1, kAdam = 2 };

struct InnerStepArgs {
  int64_t T = 0;  // tasks (rows)
  int64_t P = 0;  // parameters per task (columns)
  DType dtype = DType::kFloat32;
  Method method = Method::kSGD;

  const void* params = nullptr;  // (T, P) dtype
  const void* grads = nullptr;   // (T, P) dtype
  void* out_params = nullptr;    // (T, P) dtype

  // (T, P) compute type. *_in may be nullptr (= zeros). *_out are written only by
  // the methods that use them: state1 = momentum buffer (momentum) or exp_avg (adam),
  // state2 = exp_avg_sq (adam).
  const void* state1_in = nullptr;
  const void* state2_in = nullptr;
  void* state1_out = nullptr;
  void* state2_out = nullptr;

  const void* lr = nullptr;  // compute type, may be nullptr (= 1)
  int64_t lr_stride_t = 0;
  int64_t lr_stride_p = 0;
  double lr_scale = 1.0;

  double momentum = 0.9;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  int64_t step = 1;  // 1-based, Adam bias correction

  bool clip = false;           // per-task L2 clipping of grads (before weight decay)
  double max_grad_norm = 0.0;  // used when clip
  void* workspace = nullptr;   // inner_step_workspace_bytes(T, P, dtype) bytes, when clip
};

// Bytes of device scratch memory that inner_step_launch needs (0 when clip is false
// is fine, but callers may always allocate this much).
size_t inner_step_workspace_bytes(int64_t T, int64_t P, DType dtype);

// Enqueues the update on `stream` (a cudaStream_t). Returns cudaSuccess or the
// first CUDA error (launch configuration, invalid argument). Never synchronizes.
// Empty problems (T == 0 or P == 0) launch nothing.
cudaError_t inner_step_launch(const InnerStepArgs& args, cudaStream_t stream);

}  // namespace metagan
