// A C ABI over ExecuTorch's prebuilt runtime (libexecutorch + XNNPACK delegate), so Python can
// run a .pte through ctypes without importing torch. Built by `edge-fer-build-runtime`.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/platform.h>

namespace executorch::extension::threadpool {
// Declared here because the wheel ships the symbol but not threadpool.h.
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
  size_t get_thread_count() const;
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace {

using executorch::aten::ScalarType;
using executorch::extension::from_blob;
using executorch::extension::module::Module;
using executorch::runtime::Error;

std::atomic<int> open_runners{0};

struct Runner {
  std::unique_ptr<Module> module;
  std::vector<int32_t> input_sizes;   // as planned: the batch is the upper bound when dynamic
  std::vector<int32_t> output_sizes;
};

void write_error(char* err, size_t err_len, const std::string& message) {
  if (err != nullptr && err_len > 0) {
    std::snprintf(err, err_len, "%s", message.c_str());
  }
}

// ExecuTorch logs every thread-pool set-up at Info level (CPU probing), which would fill the
// journal on each start; errors still go to stderr, which systemd sends to the journal.
void emit_errors_only(et_timestamp_t, et_pal_log_level_t level, const char* filename,
                      const char*, size_t line, const char* message, size_t length) {
  if (level == kError || level == kFatal) {
    const char* base = std::strrchr(filename, '/');
    std::fprintf(stderr, "executorch %c %s:%zu] %.*s\n", static_cast<char>(level),
                 base != nullptr ? base + 1 : filename, line, static_cast<int>(length), message);
  }
}

void quiet_logging_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    executorch::runtime::register_pal(
        executorch::runtime::PalImpl::create(emit_errors_only, __FILE__));
  });
}

// The planned sizes of a float32 tensor with a batch dimension, or false with `err` set.
bool read_float_sizes(const executorch::runtime::Result<executorch::runtime::TensorInfo>& info,
                      const char* which, std::vector<int32_t>& sizes, char* err,
                      size_t err_len) {
  if (!info.ok() || info->scalar_type() != ScalarType::Float || info->sizes().empty()) {
    write_error(err, err_len, std::string("the program's ") + which +
                                  " must be a float32 tensor with a batch dimension");
    return false;
  }
  sizes.assign(info->sizes().begin(), info->sizes().end());
  return true;
}

int copy_sizes(const std::vector<int32_t>& from, int64_t* to, int capacity) {
  int ndim = static_cast<int>(from.size());
  for (int i = 0; i < std::min(ndim, capacity); ++i) {
    to[i] = from[i];
  }
  return ndim;
}

std::string describe(Error error) {
  return std::string(executorch::runtime::to_string(error)) + " (ExecuTorch error " +
         std::to_string(static_cast<int>(error)) + ")";
}

}  // namespace

extern "C" {

// Load `path`, plan method "forward" and size the XNNPACK thread pool. Returns null on failure
// with the reason in `err`.
void* etr_open(const char* path, int threads, char* err, size_t err_len) noexcept try {
  quiet_logging_once();
  // The pool is process-wide and the XNNPACK delegate keeps a pointer to the one it finds at
  // load time: resize it before loading, and never under a program that is still open.
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (threads > 0 && pool->get_thread_count() != static_cast<size_t>(threads)) {
    if (open_runners.load() > 0) {
      write_error(err, err_len, "another program is open with " +
                                    std::to_string(pool->get_thread_count()) +
                                    " threads; the thread pool is shared, so close it first");
      return nullptr;
    }
    pool->_unsafe_reset_threadpool(static_cast<uint32_t>(threads));
  }
  auto runner = std::make_unique<Runner>();
  runner->module = std::make_unique<Module>(path, Module::LoadMode::Mmap);
  // Verify the whole flatbuffer first: the default (Minimal) check reads only the header, and a
  // program with a valid header and a corrupt body would crash the process in load_method.
  if (Error e = runner->module->load(executorch::runtime::Program::Verification::InternalConsistency);
      e != Error::Ok) {
    write_error(err, err_len, "the program is corrupt or not an ExecuTorch program (" +
                                  describe(e) + "); re-export or re-copy the model");
    return nullptr;
  }
  if (Error e = runner->module->load_method("forward"); e != Error::Ok) {
    write_error(err, err_len, "cannot load method forward: " + describe(e));
    return nullptr;
  }
  auto meta = runner->module->method_meta("forward");
  if (!meta.ok() || meta->num_inputs() != 1 || meta->num_outputs() != 1) {
    write_error(err, err_len, "the program's forward must take one tensor and return one");
    return nullptr;
  }
  if (!read_float_sizes(meta->input_tensor_meta(0), "input", runner->input_sizes, err, err_len) ||
      !read_float_sizes(meta->output_tensor_meta(0), "output", runner->output_sizes, err,
                        err_len)) {
    return nullptr;
  }
  open_runners.fetch_add(1);
  return runner.release();
} catch (const std::exception& e) {  // nothing may unwind into the C caller
  write_error(err, err_len, std::string("cannot load the program: ") + e.what());
  return nullptr;
}

// Number of input dimensions; the planned sizes go to `sizes` (room for `capacity`).
int etr_input_sizes(void* handle, int64_t* sizes, int capacity) {
  return copy_sizes(static_cast<Runner*>(handle)->input_sizes, sizes, capacity);
}

// Number of output dimensions; the planned sizes go to `sizes` (room for `capacity`).
int etr_output_sizes(void* handle, int64_t* sizes, int capacity) {
  return copy_sizes(static_cast<Runner*>(handle)->output_sizes, sizes, capacity);
}

// Run forward on `batch` items of `input` (C-contiguous float32, batch x the planned item shape).
// Writes up to `out_capacity` floats; returns how many the output holds, or -1 with `err` set.
int64_t etr_run(void* handle, const float* input, int64_t batch, float* out,
                int64_t out_capacity, char* err, size_t err_len) noexcept try {
  auto* runner = static_cast<Runner*>(handle);
  std::vector<int32_t> sizes = runner->input_sizes;
  if (batch < 1 || batch > sizes[0]) {
    write_error(err, err_len, "batch " + std::to_string(batch) + " is outside 1.." +
                                  std::to_string(sizes[0]));
    return -1;
  }
  sizes[0] = static_cast<int32_t>(batch);
  // set_input copies into the program's planned input buffer, so the caller's array is only
  // read during this call.
  auto tensor = from_blob(const_cast<float*>(input),
                          std::vector<executorch::aten::SizesType>(sizes.begin(), sizes.end()),
                          ScalarType::Float);
  auto result = runner->module->forward(tensor);
  if (!result.ok()) {
    write_error(err, err_len, "forward failed: " + describe(result.error()));
    return -1;
  }
  const auto& output = result->at(0);
  if (!output.isTensor() || output.toTensor().scalar_type() != ScalarType::Float) {
    write_error(err, err_len, "forward did not return a float32 tensor");
    return -1;
  }
  const auto& tensor_out = output.toTensor();
  int64_t count = tensor_out.numel();
  std::memcpy(out, tensor_out.const_data_ptr<float>(),
              static_cast<size_t>(std::min(count, out_capacity)) * sizeof(float));
  return count;
} catch (const std::exception& e) {
  write_error(err, err_len, std::string("forward failed: ") + e.what());
  return -1;
}

void etr_close(void* handle) {
  delete static_cast<Runner*>(handle);
  open_runners.fetch_sub(1);
}

}  // extern "C"
