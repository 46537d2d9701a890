// Schemas of the metagan custom ops: the single place they are defined in C++.
//
// Built into metagan._C only on CUDA builds (setup.py); CPU-only installs define the same
// schema string from Python (metagan/ops/_schema.py; tests/test_ops.py checks the two
// match). Kernels: CUDA in inner_step_cuda.cpp (TORCH_LIBRARY_IMPL), CPU and any other
// device = the pure-PyTorch reference registered from Python.
#include <Python.h>
#include <torch/library.h>

// `import metagan._C` loads this library so that the static registrations below run.
// The module itself is empty.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",                                           // name
      "metagan custom ops: schemas and CUDA kernels",  // doc
      -1,                                             // no per-interpreter state
      nullptr,                                        // no methods
      nullptr,                                        // m_slots
      nullptr,                                        // m_traverse
      nullptr,                                        // m_clear
      nullptr,                                        // m_free
  };
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(metagan, m) {
  // One MAML inner-loop update of all T tasks of one network. Returns
  // (new_params, state1, state2); unused states are empty (0,) tensors.
  // BEGIN SCHEMA inner_step
  m.def(
      "inner_step(Tensor params, Tensor grads, Tensor? lr, float lr_scale, str method, "
      "Tensor? state1, Tensor? state2, int step, float momentum, float beta1, float beta2, "
      "float eps, float weight_decay, float? max_grad_norm) -> (Tensor, Tensor, Tensor)");
  // END SCHEMA inner_step
}
