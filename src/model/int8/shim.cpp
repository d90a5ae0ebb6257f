// The few quantized operators avscene's int8 path needs, called through libtorch's
// dispatcher by name: they are registered by libtorch (TORCH_LIBRARY(quantized, ...))
// but are not part of ATen's generated API, so tch has no binding for them. Built by
// build.rs against the same libtorch headers torch-sys compiles with; tensors cross as
// tch's `at::Tensor*`. Every entry point catches C++ exceptions and hands the message
// back through `err` (malloc'ed, freed by the caller), so nothing unwinds into Rust.

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/ivalue.h>
#include <c10/core/QEngine.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

char* copy_message(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, message.c_str(), message.size() + 1);
  }
  return out;
}

template <typename F>
auto guarded(char** err, F body) -> decltype(body()) {
  *err = nullptr;
  try {
    return body();
  } catch (const c10::Error& e) {
    *err = copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message("unknown C++ exception");
  }
  return {};
}

// Drops the warnings given to it (see avscene_int8_quiet_deprecation).
class Silent : public c10::WarningHandler {
 public:
  void process(const c10::Warning&) override {}
};

c10::OperatorHandle find_op(const char* name, const char* overload) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload);
}

}  // namespace

extern "C" {

// The quantized engine libtorch uses on this machine ("X86", "FBGEMM", "QNNPACK", …;
// "NoQEngine" where it has none), written into `out` (NUL-terminated, cut to `len`).
void avscene_int8_engine(char* out, size_t len) {
  if (len == 0) {
    return;
  }
  const std::string name = c10::toString(at::globalContext().qEngine());
  std::strncpy(out, name.c_str(), len - 1);
  out[len - 1] = '\0';
}

// Use oneDNN's quantized kernels where this libtorch has them: on an AVX2 EPYC they ran
// OpenL3's stack in 0.81–0.84 s against 0.91–1.25 s for the default x86 (fbgemm)
// engine, and, unlike fbgemm's AVX2 path, they do not saturate at full 8-bit
// activations. Returns whether oneDNN's engine is now in use.
int avscene_int8_prefer_onednn() {
  try {
    for (const at::QEngine engine : at::globalContext().supportedQEngines()) {
      if (engine == at::kONEDNN) {
        at::globalContext().setQEngine(at::kONEDNN);
        return 1;
      }
    }
  } catch (...) {
  }
  return 0;
}

// libtorch 2.13 warns, once per process, that quantized tensors are deprecated upstream.
// avscene pins that libtorch (tch 0.26), states the caveat in its README, and has a
// float32 path; the daemon's log should not carry a Python-facing deprecation notice on
// every start. Create one quantized tensor with the warning dropped (the handler is per
// thread), which uses up the once.
void avscene_int8_quiet_deprecation() {
  try {
    Silent silent;
    c10::WarningUtils::WarningHandlerGuard guard(&silent);
    (void)at::quantize_per_tensor(at::zeros({1}), 1.0, 0, at::kQUInt8);
  } catch (...) {
  }
}

// A convolution's int8 weight (per-channel quantized) and float32 bias packed for the
// engine: an IValue holding quantized::Conv2dPackedParamsBase. Null on error.
void* avscene_int8_conv_prepack(const at::Tensor* weight, const at::Tensor* bias,
                                int64_t stride, int64_t padding, char** err) {
  return guarded(err, [&]() -> void* {
    static const c10::OperatorHandle op = find_op("quantized::conv2d_prepack", "");
    std::vector<c10::IValue> stack;
    stack.emplace_back(*weight);
    stack.emplace_back(bias != nullptr ? c10::IValue(*bias) : c10::IValue());
    stack.emplace_back(std::vector<int64_t>{stride, stride});
    stack.emplace_back(std::vector<int64_t>{padding, padding});
    stack.emplace_back(std::vector<int64_t>{1, 1});
    stack.emplace_back(static_cast<int64_t>(1));
    op.callBoxed(stack);
    return new c10::IValue(std::move(stack.at(0)));
  });
}

void avscene_int8_conv_free(void* packed) {
  delete static_cast<c10::IValue*>(packed);
}

// The packed convolution on a quint8 tensor, with its output requantized to
// (scale, zero_point); `relu` fuses the ReLU. Null on error.
at::Tensor* avscene_int8_conv(const at::Tensor* input, const void* packed, double scale,
                              int64_t zero_point, int relu, char** err) {
  return guarded(err, [&]() -> at::Tensor* {
    static const c10::OperatorHandle plain = find_op("quantized::conv2d", "new");
    static const c10::OperatorHandle fused = find_op("quantized::conv2d_relu", "new");
    std::vector<c10::IValue> stack;
    stack.emplace_back(*input);
    stack.emplace_back(*static_cast<const c10::IValue*>(packed));
    stack.emplace_back(scale);
    stack.emplace_back(zero_point);
    (relu != 0 ? fused : plain).callBoxed(stack);
    return new at::Tensor(stack.at(0).toTensor());
  });
}

}  // extern "C"
