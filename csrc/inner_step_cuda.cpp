// CUDA kernel of metagan::inner_step: argument checks (TORCH_CHECK_VALUE -> ValueError in
// Python), allocation, dtype mapping and the current stream; the arithmetic is in
// inner_step_kernels.cu (plain launcher API).
//
// Registers for the CUDA dispatch key only. The schema comes from schema.cpp (AOT build,
// metagan._C) or from Python (JIT build, which compiles this file and the .cu only).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include "inner_step_kernels.h"

namespace metagan {
namespace {

constexpr const char* kOp = "metagan::inner_step: ";

// Messages format shapes, dtypes and devices into std::string themselves: streaming an
// IntArrayRef into TORCH_CHECK's message crashed (SIGSEGV while formatting) with torch
// 2.11.0+cu130 / GCC 13.3 on the H100 machine. Python-style "(3, 5)".
std::string shape_str(const at::Tensor& t) {
  std::string s = "(";
  for (int64_t i = 0; i < t.dim(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(t.size(i));
  }
  if (t.dim() == 1) s += ",";
  return s + ")";
}

std::string dtype_str(const at::Tensor& t) { return c10::toString(t.scalar_type()); }

std::string dtype_str(at::ScalarType t) { return c10::toString(t); }

std::string device_str(const at::Tensor& t) { return t.device().str(); }

Method parse_method(c10::string_view method) {
  const std::string m(method.data(), method.size());
  if (m == "sgd") return Method::kSGD;
  if (m == "momentum") return Method::kMomentum;
  if (m == "adam") return Method::kAdam;
  TORCH_CHECK_VALUE(false, kOp, "method must be 'sgd', 'momentum' or 'adam', got '", m, "'");
  return Method::kSGD;  // unreachable
}

DType to_dtype(const at::Tensor& params) {
  switch (params.scalar_type()) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kDouble:
      return DType::kFloat64;
    case at::kHalf:
      return DType::kFloat16;
    case at::kBFloat16:
      return DType::kBFloat16;
    default:
      TORCH_CHECK_VALUE(false, kOp, "params must be float32, float64, float16 or bfloat16, got ",
                  dtype_str(params));
  }
  return DType::kFloat32;  // unreachable
}

// State tensors: (T, P), compute dtype, on params' device; or absent (= zeros).
at::Tensor checked_state(const std::optional<at::Tensor>& state, const char* name, bool used,
                         const std::string& method, const at::Tensor& params,
                         at::ScalarType acc) {
  if (!state.has_value() || !state->defined()) return at::Tensor();
  const at::Tensor& s = *state;
  TORCH_CHECK_VALUE(used, kOp, name, " must be None for method '", method, "', got a tensor of shape ",
              shape_str(s));
  TORCH_CHECK_VALUE(s.sizes() == params.sizes(), kOp, name, " must have params' shape ",
              shape_str(params), ", got ", shape_str(s));
  TORCH_CHECK_VALUE(s.scalar_type() == acc, kOp, name, " must be ", dtype_str(acc),
                    " (state is kept in ", dtype_str(acc), " for ", dtype_str(params),
                    " params), got ", dtype_str(s));
  TORCH_CHECK_VALUE(s.device() == params.device(), kOp, name, " must be on ", device_str(params),
              " like params, got ", device_str(s));
  return s.contiguous();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> inner_step_cuda(
    const at::Tensor& params, const at::Tensor& grads, const std::optional<at::Tensor>& lr,
    double lr_scale, c10::string_view method, const std::optional<at::Tensor>& state1,
    const std::optional<at::Tensor>& state2, int64_t step, double momentum, double beta1,
    double beta2, double eps, double weight_decay, std::optional<double> max_grad_norm) {
  const Method m = parse_method(method);
  const std::string method_name(method.data(), method.size());

  TORCH_CHECK_VALUE(params.dim() == 2, kOp, "params must be 2-D (T, P), got shape ", shape_str(params));
  TORCH_CHECK_VALUE(params.is_cuda(), kOp, "params must be a CUDA tensor, got ", device_str(params));
  const DType dtype = to_dtype(params);
  const at::ScalarType acc = params.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK_VALUE(grads.sizes() == params.sizes(), kOp, "grads must have params' shape ",
              shape_str(params), ", got ", shape_str(grads));
  TORCH_CHECK_VALUE(grads.scalar_type() == params.scalar_type(), kOp, "grads must have params' dtype ",
              dtype_str(params), ", got ", dtype_str(grads));
  TORCH_CHECK_VALUE(grads.device() == params.device(), kOp, "grads must be on ", device_str(params),
              " like params, got ", device_str(grads));
  TORCH_CHECK_VALUE(step >= 1, kOp, "step must be >= 1 (1-based), got ", step);
  TORCH_CHECK_VALUE(std::isfinite(lr_scale), kOp, "lr must be finite, got ", lr_scale);
  TORCH_CHECK_VALUE(beta1 >= 0.0 && beta1 < 1.0 && beta2 >= 0.0 && beta2 < 1.0, kOp,
              "betas must be in [0, 1), got (", beta1, ", ", beta2, ")");
  TORCH_CHECK_VALUE(eps >= 0.0, kOp, "eps must be >= 0, got ", eps);
  TORCH_CHECK_VALUE(std::isfinite(weight_decay), kOp, "weight_decay must be finite, got ",
              weight_decay);
  TORCH_CHECK_VALUE(!max_grad_norm.has_value() || *max_grad_norm > 0.0, kOp,
              "max_grad_norm must be > 0 or None, got ",
              max_grad_norm.has_value() ? *max_grad_norm : 0.0);

  const int64_t T = params.size(0);
  const int64_t P = params.size(1);
  const bool uses1 = m != Method::kSGD;
  const bool uses2 = m == Method::kAdam;
  const at::Tensor s1_in = checked_state(state1, "state1", uses1, method_name, params, acc);
  const at::Tensor s2_in = checked_state(state2, "state2", uses2, method_name, params, acc);

  const c10::cuda::CUDAGuard device_guard(params.device());

  at::Tensor lr_acc;
  int64_t lr_st = 0;
  int64_t lr_sp = 0;
  if (lr.has_value() && lr->defined()) {
    const at::Tensor& l = *lr;
    TORCH_CHECK_VALUE(l.device() == params.device(), kOp, "lr must be on ", device_str(params),
                " like params, got ", device_str(l));
    TORCH_CHECK_VALUE(at::isFloatingType(l.scalar_type()), kOp, "lr must be a floating tensor, got ",
                dtype_str(l));
    bool ok = l.dim() <= 2;
    if (l.dim() == 2) {
      ok = (l.size(0) == 1 || l.size(0) == T) && (l.size(1) == 1 || l.size(1) == P);
    } else if (l.dim() == 1) {
      ok = l.size(0) == 1 || l.size(0) == P;
    }
    TORCH_CHECK_VALUE(ok, kOp, "lr of shape ", shape_str(l), " does not broadcast to params' shape ",
                shape_str(params), " (expected (), (P,), (T, 1), (1, P) or (T, P))");
    lr_acc = l.to(acc).contiguous();
    const at::Tensor expanded = lr_acc.expand({T, P});
    lr_st = expanded.stride(0);
    lr_sp = expanded.stride(1);
  }

  const at::Tensor p = params.contiguous();
  const at::Tensor g = grads.contiguous();
  at::Tensor out = at::empty({T, P}, p.options());
  const auto acc_opts = p.options().dtype(acc);
  at::Tensor s1_out = uses1 ? at::empty({T, P}, acc_opts) : at::empty({0}, acc_opts);
  at::Tensor s2_out = uses2 ? at::empty({T, P}, acc_opts) : at::empty({0}, acc_opts);
  if (T == 0 || P == 0) return std::make_tuple(out, s1_out, s2_out);

  InnerStepArgs args;
  args.T = T;
  args.P = P;
  args.dtype = dtype;
  args.method = m;
  args.params = p.data_ptr();
  args.grads = g.data_ptr();
  args.out_params = out.data_ptr();
  args.state1_in = s1_in.defined() ? s1_in.data_ptr() : nullptr;
  args.state2_in = s2_in.defined() ? s2_in.data_ptr() : nullptr;
  args.state1_out = uses1 ? s1_out.data_ptr() : nullptr;
  args.state2_out = uses2 ? s2_out.data_ptr() : nullptr;
  args.lr = lr_acc.defined() ? lr_acc.data_ptr() : nullptr;
  args.lr_stride_t = lr_st;
  args.lr_stride_p = lr_sp;
  args.lr_scale = lr_scale;
  args.momentum = momentum;
  args.beta1 = beta1;
  args.beta2 = beta2;
  args.eps = eps;
  args.weight_decay = weight_decay;
  args.step = step;
  at::Tensor workspace;
  if (max_grad_norm.has_value()) {
    args.clip = true;
    args.max_grad_norm = *max_grad_norm;
    const size_t bytes = inner_step_workspace_bytes(T, P, dtype);
    workspace = at::empty({static_cast<int64_t>(bytes)}, p.options().dtype(at::kByte));
    args.workspace = workspace.data_ptr();
  }

  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const cudaError_t err = inner_step_launch(args, stream);
  TORCH_CHECK(err == cudaSuccess, kOp, "CUDA kernel launch failed for params of shape ",
              shape_str(params), " (", dtype_str(params), ", method '", method_name,
              "'): ", cudaGetErrorString(err));
  return std::make_tuple(out, s1_out, s2_out);
}

}  // namespace
}  // namespace metagan

TORCH_LIBRARY_IMPL(metagan, CUDA, m) { m.impl("inner_step", &metagan::inner_step_cuda); }
