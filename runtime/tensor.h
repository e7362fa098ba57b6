// Buffer (an interface for a block of device memory) and Tensor (a non-owning view:
// buffer + byte offset + shape + dtype, dense row-major).
//
// Buffers are created and owned by a Device (device/device.h); they are non-copyable
// and released by destruction. A Tensor never owns memory: it must not outlive its
// buffer.
#pragma once

#include <cstddef>
#include <string>

#include "runtime/check.h"
#include "runtime/dtype.h"
#include "runtime/shape.h"

namespace petaring {

class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  virtual ~Buffer() = default;

  virtual size_t size() const = 0;  // bytes
  // A CPU pointer to the start of the buffer, or nullptr when the memory is not mapped
  // into this process (e.g. GPU VRAM without a BAR mapping). Valid while the buffer lives.
  virtual void* host_data() = 0;
  // Name of the owning device, for messages ("cpu:0").
  virtual std::string device_name() const = 0;
};

struct Tensor {
  Buffer* buffer = nullptr;
  size_t offset = 0;  // bytes from the start of the buffer
  Shape shape;
  DType dtype = DType::kF32;

  Tensor() = default;
  Tensor(Buffer* buf, size_t byte_offset, Shape s, DType dt)
      : buffer(buf), offset(byte_offset), shape(s), dtype(dt) {
    PR_CHECK(buffer != nullptr);
    PR_CHECK_LE(offset + bytes(), buffer->size())
        << "tensor " << shape << " " << dtype_name(dtype) << " at offset " << offset
        << " does not fit in a buffer of " << buffer->size() << " bytes on "
        << buffer->device_name();
  }

  int64_t numel() const { return shape.numel(); }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }

  // Host pointer to the first element; checks that the buffer is host-visible and the
  // element type matches T's size.
  template <typename T>
  T* data() const {
    PR_CHECK(buffer != nullptr);
    PR_CHECK_EQ(sizeof(T), dtype_size(dtype)) << "element type size for " << dtype_name(dtype);
    void* base = buffer->host_data();
    PR_CHECK(base != nullptr) << "buffer on " << buffer->device_name() << " is not host-visible";
    return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
  }

  // A view of `shape` starting `element_offset` elements into this tensor.
  Tensor slice(int64_t element_offset, Shape s) const {
    return Tensor(buffer, offset + static_cast<size_t>(element_offset) * dtype_size(dtype), s,
                  dtype);
  }
  Tensor reshape(Shape s) const {
    PR_CHECK_EQ(s.numel(), numel()) << "reshape " << shape << " to " << s;
    return Tensor(buffer, offset, s, dtype);
  }
};

}  // namespace petaring
