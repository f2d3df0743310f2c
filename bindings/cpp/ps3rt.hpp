// ps3rt.hpp: header-only C++17 wrapper of the ps3rt C API (ps3rt.h).
// SPDX-License-Identifier: Apache-2.0
//
//   ps3rt::Model model = ps3rt::Model::embedded();           // or ps3rt::Model::load("pkg/dir")
//   ps3rt::Encoder encoder(model, /*budget=*/1024);          // one encoder per thread
//   ps3rt::Output out = encoder.encode(pixels, w, h, PS3RT_PIXEL_FORMAT_BGR8, stride);
//   for (const ps3rt_region& r : out.regions()) { ... }      // views into the encoder's buffers
//
// Handles are move-only RAII owners. Failures throw ps3rt::Error, which carries the ps3rt_status
// and the library's message. An Output (and every View it returns) borrows from its Encoder: it
// stays valid until that encoder's next encode call or its destruction; copy what must live longer.
// Docs: docs/c-api.md.

#ifndef PS3RT_HPP
#define PS3RT_HPP

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ps3rt.h"

namespace ps3rt {

/// A failed ps3rt call: the status it returned and the library's message.
class Error : public std::runtime_error {
public:
    Error(ps3rt_status status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    /// The status code (PS3RT_STATUS_*).
    ps3rt_status status() const noexcept { return status_; }

private:
    ps3rt_status status_;
};

namespace detail {
/// Throw ps3rt::Error for a non-OK status, with this thread's last error message.
inline void check(ps3rt_status status) {
    if (status != PS3RT_STATUS_OK) {
        throw Error(status, ps3rt_last_error());
    }
}
}  // namespace detail

/// A read-only view of `size()` contiguous values owned by someone else (C++17 has no std::span).
template <class T>
class View {
public:
    View() noexcept = default;
    View(const T* data, std::size_t size) noexcept : data_(size ? data : nullptr), size_(size) {}
    const T* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    const T* begin() const noexcept { return data_; }
    const T* end() const noexcept { return data_ + size_; }
    const T& operator[](std::size_t i) const noexcept { return data_[i]; }
    /// Bounds-checked access.
    const T& at(std::size_t i) const {
        if (i >= size_) throw std::out_of_range("ps3rt::View::at: index out of range");
        return data_[i];
    }
    /// A copy that outlives the view.
    std::vector<T> to_vector() const { return std::vector<T>(begin(), end()); }

private:
    const T* data_ = nullptr;
    std::size_t size_ = 0;
};

/// The library's version string, e.g. "0.1.0".
inline std::string version() { return ps3rt_version(); }

/// Throw if the loaded library does not implement the ABI of this header.
inline void check_abi() {
    if (!PS3RT_CHECK_ABI()) {
        throw Error(PS3RT_STATUS_UNSUPPORTED,
                    "libps3rt implements ABI " + std::to_string(ps3rt_abi_version()) +
                        ", this header declares ABI " + std::to_string(PS3RT_ABI_VERSION));
    }
}

/// A frame descriptor for one packed plane (`stride` 0: rows back to back).
inline ps3rt_frame packed_frame(const void* pixels, std::uint32_t width, std::uint32_t height,
                                ps3rt_pixel_format format, std::size_t stride = 0) noexcept {
    ps3rt_frame frame{};
    frame.width = width;
    frame.height = height;
    frame.format = static_cast<std::int32_t>(format);
    frame.planes[0] = static_cast<const std::uint8_t*>(pixels);
    frame.strides[0] = stride;
    return frame;
}

/// A frame descriptor for a two-plane 4:2:0 frame (NV12 or NV21): `y` and the interleaved chroma
/// plane `uv`, each with its own stride (0: rows back to back).
inline ps3rt_frame semi_planar_frame(const void* y, std::size_t y_stride, const void* uv,
                                     std::size_t uv_stride, std::uint32_t width,
                                     std::uint32_t height,
                                     ps3rt_pixel_format format = PS3RT_PIXEL_FORMAT_NV12) noexcept {
    ps3rt_frame frame = packed_frame(y, width, height, format, y_stride);
    frame.planes[1] = static_cast<const std::uint8_t*>(uv);
    frame.strides[1] = uv_stride;
    return frame;
}

/// A frame descriptor for a three-plane I420 frame (Y, Cb, Cr with their strides; 0: packed).
inline ps3rt_frame i420_frame(const void* y, std::size_t y_stride, const void* cb,
                              std::size_t cb_stride, const void* cr, std::size_t cr_stride,
                              std::uint32_t width, std::uint32_t height) noexcept {
    ps3rt_frame frame = packed_frame(y, width, height, PS3RT_PIXEL_FORMAT_I420, y_stride);
    frame.planes[1] = static_cast<const std::uint8_t*>(cb);
    frame.strides[1] = cb_stride;
    frame.planes[2] = static_cast<const std::uint8_t*>(cr);
    frame.strides[2] = cr_stride;
    return frame;
}

/// A loaded model (move-only). Thread-safe: share it between the encoders of many threads.
class Model {
public:
    /// Load the package in directory `path`.
    static Model load(const std::string& path, const ps3rt_model_options* options = nullptr) {
        ps3rt_model* handle = nullptr;
        detail::check(ps3rt_model_load(path.c_str(), options, &handle));
        return Model(handle);
    }
    /// The tiny random-weight package compiled into the library.
    static Model embedded(const ps3rt_model_options* options = nullptr) {
        ps3rt_model* handle = nullptr;
        detail::check(ps3rt_model_load_embedded(options, &handle));
        return Model(handle);
    }
    /// Default model options, to modify and pass to load() or embedded().
    static ps3rt_model_options default_options() { return ps3rt_model_default_options(); }

    Model(Model&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Model& operator=(Model&& other) noexcept {
        if (this != &other) {
            ps3rt_model_destroy(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;
    ~Model() { ps3rt_model_destroy(handle_); }

    /// What the model is (owned by the model).
    const ps3rt_model_info& info() const {
        const ps3rt_model_info* info = nullptr;
        detail::check(ps3rt_model_get_info(handle_, &info));
        return *info;
    }
    /// Package name.
    std::string name() const { return info().name; }
    /// Feature width C.
    std::size_t width() const { return info().width; }
    /// The high-res scales in pixels.
    View<std::uint32_t> high_scales() const {
        const ps3rt_model_info& i = info();
        return View<std::uint32_t>(i.high_scales, i.high_scale_count);
    }
    /// Label bank, region pool head and text tower of the package (docs/labels.md).
    ps3rt_labels_info labels_info() const {
        ps3rt_labels_info info{};
        info.struct_size = sizeof info;
        detail::check(ps3rt_model_get_labels_info(handle_, &info));
        return info;
    }
    /// Bank label `index`.
    std::string label(std::size_t index) const {
        const char* name = nullptr;
        detail::check(ps3rt_model_label_name(handle_, index, &name));
        return name;
    }
    /// The C handle (still owned by this object).
    const ps3rt_model* get() const noexcept { return handle_; }

private:
    explicit Model(ps3rt_model* handle) noexcept : handle_(handle) {}
    ps3rt_model* handle_ = nullptr;
};

/// The result of one encode: a view into its encoder's buffers, valid until that encoder's next
/// encode call or its destruction.
class Output {
public:
    explicit Output(const ps3rt_output* output) noexcept : out_(output) {}
    /// Features [token_count(), width()], row-major.
    View<float> features() const noexcept {
        return View<float>(out_->features, out_->token_count * out_->width);
    }
    /// The features of token `i` (width() values).
    View<float> feature_row(std::size_t i) const {
        if (i >= out_->token_count) throw std::out_of_range("ps3rt::Output::feature_row");
        return View<float>(out_->features + i * out_->width, out_->width);
    }
    /// Number of tokens: the low-res ones, then steps x budget high-res ones.
    std::size_t token_count() const noexcept { return out_->token_count; }
    /// Feature width C.
    std::size_t width() const noexcept { return out_->width; }
    /// Number of low-res tokens at the start of features() (729 for PS3-4K).
    std::size_t lowres_token_count() const noexcept { return out_->lowres_token_count; }
    /// Where each feature row comes from.
    View<ps3rt_token> tokens() const noexcept {
        return View<ps3rt_token>(out_->tokens, out_->token_count);
    }
    /// Regions of adjacent selected patches, best first.
    View<ps3rt_region> regions() const noexcept {
        return View<ps3rt_region>(out_->regions, out_->region_count);
    }
    /// Selection probability map, prob_grid() x prob_grid(), row-major.
    View<float> prob_map() const noexcept {
        return View<float>(out_->prob_map, out_->prob_grid * out_->prob_grid);
    }
    /// Side of the probability map.
    std::size_t prob_grid() const noexcept { return out_->prob_grid; }
    /// Stage timings in milliseconds.
    const ps3rt_timings& timings() const noexcept { return out_->timings; }
    /// The C struct.
    const ps3rt_output& raw() const noexcept { return *out_; }

private:
    const ps3rt_output* out_;
};

/// The result of one labeling: a view into its encoder's buffers, valid until that encoder's next
/// labeling or encode call or its destruction.
class RegionLabels {
public:
    explicit RegionLabels(const ps3rt_region_labels* labels) noexcept : labels_(labels) {}
    /// The labelled regions, best first.
    View<ps3rt_region_label> regions() const noexcept {
        return View<ps3rt_region_label>(labels_->regions, labels_->region_count);
    }
    /// The labels of region `i`, best first.
    View<ps3rt_label_score> labels(std::size_t i) const {
        if (i >= labels_->region_count) throw std::out_of_range("ps3rt::RegionLabels::labels");
        const ps3rt_region_label& r = labels_->regions[i];
        return View<ps3rt_label_score>(r.labels, r.label_count);
    }
    /// Whether the scores are calibrated probabilities.
    bool calibrated() const noexcept { return labels_->calibrated != 0; }
    /// Time the labeling took, milliseconds.
    double label_ms() const noexcept { return labels_->label_ms; }
    /// The C struct.
    const ps3rt_region_labels& raw() const noexcept { return *labels_; }

private:
    const ps3rt_region_labels* labels_;
};

/// An encoder (move-only): use it from one thread at a time; create one per thread.
class Encoder {
public:
    /// An encoder for `model` with `budget` high-res tokens per step (0: the package's) and `steps`.
    explicit Encoder(const Model& model, std::size_t budget = 0, std::size_t steps = 1) {
        ps3rt_encoder_options options = ps3rt_encoder_default_options();
        options.budget = budget;
        options.steps = steps;
        detail::check(ps3rt_encoder_create(model.get(), &options, &handle_));
    }
    /// An encoder with explicit options (start from ps3rt_encoder_default_options()).
    Encoder(const Model& model, const ps3rt_encoder_options& options) {
        detail::check(ps3rt_encoder_create(model.get(), &options, &handle_));
    }
    Encoder(Encoder&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Encoder& operator=(Encoder&& other) noexcept {
        if (this != &other) {
            ps3rt_encoder_destroy(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    Encoder(const Encoder&) = delete;
    Encoder& operator=(const Encoder&) = delete;
    ~Encoder() { ps3rt_encoder_destroy(handle_); }

    /// Encode a frame (the pixels are read during the call only).
    Output encode(const ps3rt_frame& frame) {
        const ps3rt_output* out = nullptr;
        detail::check(ps3rt_encoder_encode(handle_, &frame, &out));
        return Output(out);
    }
    /// Encode one packed plane (`stride` 0: rows back to back).
    Output encode(const void* pixels, std::uint32_t width, std::uint32_t height,
                  ps3rt_pixel_format format, std::size_t stride = 0) {
        return encode(packed_frame(pixels, width, height, format, stride));
    }
    /// Decode a JPEG (an MJPEG frame) into the encoder's reused buffer and encode it.
    Output encode_jpeg(const void* data, std::size_t length) {
        const ps3rt_output* out = nullptr;
        detail::check(ps3rt_encoder_encode_jpeg(
            handle_, static_cast<const std::uint8_t*>(data), length, &out));
        return Output(out);
    }
    /// How YUV frames are converted to RGB (default BT.601, limited range).
    void set_yuv_color(ps3rt_yuv_matrix matrix, ps3rt_yuv_range range) {
        detail::check(ps3rt_encoder_set_yuv_color(handle_, static_cast<std::int32_t>(matrix),
                                                  static_cast<std::int32_t>(range)));
    }
    /// Resample frames on CUDA device `gpu_device` (0: the first GPU), or on the CPU when it is
    /// negative (the default). Throws (status PS3RT_STATUS_BACKEND, message naming the missing
    /// driver, device or NVRTC) when the GPU cannot be used; the encoder then keeps resampling
    /// where it did.
    void set_preprocess(std::int32_t gpu_device) {
        detail::check(ps3rt_encoder_set_preprocess(handle_, gpu_device));
    }
    /// Encode a normalized [3, side, side] tensor (side = the model's input size).
    Output encode_tensor(const float* tensor, std::size_t side) {
        const ps3rt_output* out = nullptr;
        detail::check(ps3rt_encoder_encode_tensor(handle_, tensor, side, &out));
        return Output(out);
    }
    /// Select top-down with a [width] prompt embedding (copied).
    void set_prompt(const float* prompt, std::size_t length) {
        detail::check(ps3rt_encoder_set_prompt(handle_, prompt, length));
    }
    /// Select top-down with a [width] prompt embedding (copied).
    void set_prompt(const std::vector<float>& prompt) { set_prompt(prompt.data(), prompt.size()); }
    /// Back to bottom-up selection with the model's prior prompt.
    void clear_prompt() { detail::check(ps3rt_encoder_set_prompt(handle_, nullptr, 0)); }
    /// Select top-down with free text, encoded by the package's text tower.
    void set_prompt_text(const std::string& text) {
        detail::check(ps3rt_encoder_set_prompt_text(handle_, text.c_str()));
    }
    /// Select top-down with the prompt of a bank label.
    void set_prompt_label(const std::string& label) {
        detail::check(ps3rt_encoder_set_prompt_label(handle_, label.c_str()));
    }
    /// Embed and label the best regions of the last encode.
    RegionLabels label_regions(std::size_t top_k = 3, std::size_t max_regions = 0) {
        ps3rt_label_options options = ps3rt_label_default_options();
        options.top_k = top_k;
        options.max_regions = max_regions;
        const ps3rt_region_labels* labels = nullptr;
        detail::check(ps3rt_encoder_label_regions(handle_, &options, &labels));
        return RegionLabels(labels);
    }
    /// Embed and label the given boxes (frame pixels) of the last encode.
    RegionLabels label_boxes(const std::vector<ps3rt_box>& boxes, std::size_t top_k = 3) {
        ps3rt_label_options options = ps3rt_label_default_options();
        options.top_k = top_k;
        const ps3rt_region_labels* labels = nullptr;
        detail::check(
            ps3rt_encoder_label_boxes(handle_, boxes.data(), boxes.size(), &options, &labels));
        return RegionLabels(labels);
    }
    /// The C handle (still owned by this object).
    ps3rt_encoder* get() const noexcept { return handle_; }

private:
    ps3rt_encoder* handle_ = nullptr;
};

/// Receives log messages; may be called from any thread, concurrently. Exceptions it throws are
/// swallowed (they must not cross the C library).
using LogFunction = std::function<void(ps3rt_log_level, const char* message)>;

/// Page-locked host memory for frames preprocessed on the GPU (ps3rt_pinned_alloc): capture or
/// decode into data(), pass it as a frame's planes, and the frame reaches the GPU with one DMA (on
/// a Jetson the kernels read it in place). Move-only; freed on destruction.
class PinnedBuffer {
public:
    /// Allocate `bytes` (zeroed) for CUDA device `gpu_device`. Throws (PS3RT_STATUS_BACKEND naming
    /// what CUDA lacks, PS3RT_STATUS_UNSUPPORTED without the cuda feature) when it cannot.
    PinnedBuffer(std::int32_t gpu_device, std::size_t bytes) : size_(bytes) {
        detail::check(ps3rt_pinned_alloc(gpu_device, bytes, &data_));
    }
    PinnedBuffer(PinnedBuffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
    PinnedBuffer& operator=(PinnedBuffer&& other) noexcept {
        if (this != &other) {
            ps3rt_pinned_free(data_);
            data_ = std::exchange(other.data_, nullptr);
            size_ = std::exchange(other.size_, 0);
        }
        return *this;
    }
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
    ~PinnedBuffer() { ps3rt_pinned_free(data_); }

    /// The memory (nullptr once moved from).
    std::uint8_t* data() const { return data_; }
    /// Its size in bytes.
    std::size_t size() const { return size_; }

private:
    std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
};

namespace detail {
struct LogState {
    std::mutex mutex;
    std::unique_ptr<LogFunction> current;
};
inline LogState& log_state() {
    static LogState state;
    return state;
}
extern "C" inline void log_trampoline(ps3rt_log_level level, const char* message, void* user) {
    try {
        (*static_cast<LogFunction*>(user))(level, message);
    } catch (...) {
    }
}
}  // namespace detail

/// Send the library's messages up to `max_level` to `function` (empty function: stop logging).
inline void set_log_function(LogFunction function, ps3rt_log_level max_level = PS3RT_LOG_LEVEL_INFO) {
    detail::LogState& state = detail::log_state();
    std::lock_guard<std::mutex> lock(state.mutex);
    std::unique_ptr<LogFunction> next;
    if (function) next = std::make_unique<LogFunction>(std::move(function));
    detail::check(ps3rt_set_log_callback(next ? detail::log_trampoline : nullptr, next.get(),
                                         static_cast<std::int32_t>(max_level)));
    // The C call returned: the previous function is no longer running and will not be called.
    state.current = std::move(next);
}

}  // namespace ps3rt

#endif  // PS3RT_HPP
