// The TensorRT shim of ps3rt: see p3trt.h for the contract.
//
// Version guards. The shim is compiled against one TensorRT release's headers (NV_TENSORRT_MAJOR/MINOR)
// and refuses at run time a library of another major version or an older minor version: TensorRT's C++
// objects are reached through virtual tables that only grow within a major version, so a library at
// least as new as the headers, of the same major, has every entry the shim calls. Compile-time guards
// cover the API differences between the supported majors:
//   8.6   explicit-batch network flag; Dims32; no IProgressMonitor; kFP16; parse() with a model path
//   10.x  explicit batch by default; Dims64; IProgressMonitor; kFP16 (deprecated); loadModelProto +
//         loadInitializer from 10.13 on
//   11.x  no kFP16/kINT8 builder flags (precision comes from the ONNX graph), no platformHasFastFp16
// The oldest supported release is TensorRT 8.6 (JetPack 6.0).

#include "p3trt.h"

#include <NvInfer.h>
#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <NvOnnxParser.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

static_assert(NV_TENSORRT_MAJOR > 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR >= 6),
              "ps3rt's TensorRT backend needs TensorRT 8.6 or newer headers");

#define P3TRT_HAS_PROGRESS_MONITOR (NV_TENSORRT_MAJOR >= 10)
#define P3TRT_HAS_LOAD_INITIALIZER (NV_TENSORRT_MAJOR > 10 || (NV_TENSORRT_MAJOR == 10 && NV_TENSORRT_MINOR >= 13))
#define P3TRT_HAS_FP16_FLAG (NV_TENSORRT_MAJOR < 11)

namespace {

using namespace nvinfer1;

// ---------------------------------------------------------------------------------------------------
// Small helpers

void put(char *dst, size_t len, const std::string &s) {
    if (dst == nullptr || len == 0) return;
    size_t n = s.size() < len - 1 ? s.size() : len - 1;
    std::memcpy(dst, s.data(), n);
    dst[n] = '\0';
}

std::string fmt(const char *f, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

std::string dl_error() {
    const char *e = dlerror();
    return e ? e : "unknown dlopen error";
}

// The file a loaded library came from (through one of its symbols).
std::string origin_of(void *symbol, const char *fallback) {
    Dl_info info;
    if (symbol != nullptr && dladdr(symbol, &info) != 0 && info.dli_fname != nullptr) return info.dli_fname;
    return fallback;
}

// ---------------------------------------------------------------------------------------------------
// CUDA runtime, through dlopen. The signatures come from the CUDA headers (decltype), the functions
// from whichever libcudart (11.x, 12.x, 13.x) is found: every function used here has kept its
// signature and symbol name since CUDA 11.4.

struct Cuda {
    void *handle = nullptr;
    std::string path;
    decltype(&::cudaGetErrorName) GetErrorName = nullptr;
    decltype(&::cudaGetErrorString) GetErrorString = nullptr;
    decltype(&::cudaRuntimeGetVersion) RuntimeGetVersion = nullptr;
    decltype(&::cudaDriverGetVersion) DriverGetVersion = nullptr;
    decltype(&::cudaGetDeviceCount) GetDeviceCount = nullptr;
    decltype(&::cudaSetDevice) SetDevice = nullptr;
    decltype(&::cudaDeviceGetAttribute) DeviceGetAttribute = nullptr;
    decltype(&::cudaMemGetInfo) MemGetInfo = nullptr;
    decltype(&::cudaMalloc) Malloc = nullptr;
    decltype(&::cudaFree) Free = nullptr;
    decltype(&::cudaHostAlloc) HostAlloc = nullptr;
    decltype(&::cudaHostGetDevicePointer) HostGetDevicePointer = nullptr;
    decltype(&::cudaFreeHost) FreeHost = nullptr;
    decltype(&::cudaStreamCreateWithFlags) StreamCreateWithFlags = nullptr;
    decltype(&::cudaStreamDestroy) StreamDestroy = nullptr;
    decltype(&::cudaStreamSynchronize) StreamSynchronize = nullptr;
    decltype(&::cudaMemcpyAsync) MemcpyAsync = nullptr;
    decltype(&::cudaStreamBeginCapture) StreamBeginCapture = nullptr;
    decltype(&::cudaStreamEndCapture) StreamEndCapture = nullptr;
    decltype(&::cudaGraphInstantiateWithFlags) GraphInstantiateWithFlags = nullptr;
    decltype(&::cudaGraphLaunch) GraphLaunch = nullptr;
    decltype(&::cudaGraphExecDestroy) GraphExecDestroy = nullptr;
    decltype(&::cudaGraphDestroy) GraphDestroy = nullptr;

    // Look every function up; on failure the name of the first missing one.
    std::string bind() {
#define P3TRT_SYM(field, name)                                                  \
    field = reinterpret_cast<decltype(field)>(dlsym(handle, name));             \
    if (field == nullptr) return name;
        P3TRT_SYM(GetErrorName, "cudaGetErrorName")
        P3TRT_SYM(GetErrorString, "cudaGetErrorString")
        P3TRT_SYM(RuntimeGetVersion, "cudaRuntimeGetVersion")
        P3TRT_SYM(DriverGetVersion, "cudaDriverGetVersion")
        P3TRT_SYM(GetDeviceCount, "cudaGetDeviceCount")
        P3TRT_SYM(SetDevice, "cudaSetDevice")
        P3TRT_SYM(DeviceGetAttribute, "cudaDeviceGetAttribute")
        P3TRT_SYM(MemGetInfo, "cudaMemGetInfo")
        P3TRT_SYM(Malloc, "cudaMalloc")
        P3TRT_SYM(Free, "cudaFree")
        P3TRT_SYM(HostAlloc, "cudaHostAlloc")
        P3TRT_SYM(HostGetDevicePointer, "cudaHostGetDevicePointer")
        P3TRT_SYM(FreeHost, "cudaFreeHost")
        P3TRT_SYM(StreamCreateWithFlags, "cudaStreamCreateWithFlags")
        P3TRT_SYM(StreamDestroy, "cudaStreamDestroy")
        P3TRT_SYM(StreamSynchronize, "cudaStreamSynchronize")
        P3TRT_SYM(MemcpyAsync, "cudaMemcpyAsync")
        P3TRT_SYM(StreamBeginCapture, "cudaStreamBeginCapture")
        P3TRT_SYM(StreamEndCapture, "cudaStreamEndCapture")
        P3TRT_SYM(GraphInstantiateWithFlags, "cudaGraphInstantiateWithFlags")
        P3TRT_SYM(GraphLaunch, "cudaGraphLaunch")
        P3TRT_SYM(GraphExecDestroy, "cudaGraphExecDestroy")
        P3TRT_SYM(GraphDestroy, "cudaGraphDestroy")
#undef P3TRT_SYM
        return "";
    }

    std::string error(cudaError_t e) const {
        if (GetErrorName == nullptr || GetErrorString == nullptr) return fmt("CUDA error %d", static_cast<int>(e));
        return fmt("%s (%s)", GetErrorName(e), GetErrorString(e));
    }
};

// The driver API, only for the GPU's name (the runtime API has it only inside cudaDeviceProp, whose
// layout changes between CUDA versions). libcuda.so.1 is part of the NVIDIA driver.
std::string gpu_name(int device) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) return "";
    using GetFn = int (*)(int *, int);
    using NameFn = int (*)(char *, int, int);
    auto get = reinterpret_cast<GetFn>(dlsym(h, "cuDeviceGet"));
    auto name = reinterpret_cast<NameFn>(dlsym(h, "cuDeviceGetName"));
    std::string result;
    int dev = 0;
    char buf[256] = {0};
    // The runtime has initialized the driver (cudaGetDeviceCount), so cuInit is not needed.
    if (get != nullptr && name != nullptr && get(&dev, device) == 0 && name(buf, sizeof buf - 1, dev) == 0) result = buf;
    dlclose(h);
    return result;
}

// ---------------------------------------------------------------------------------------------------
// Logger: forwards every message to Rust and keeps the last errors for the error strings.

class Logger final : public ILogger {
public:
    Logger(p3trt_log_fn fn, void *user) : fn_(fn), user_(user) {}

    void log(Severity severity, AsciiChar const *msg) noexcept override {
        try {
            if (fn_ != nullptr) fn_(user_, static_cast<int32_t>(severity), msg ? msg : "");
            if (severity <= Severity::kERROR && msg != nullptr) {
                std::lock_guard<std::mutex> lock(mu_);
                errors_.emplace_back(msg);
                while (errors_.size() > 4) errors_.pop_front();
            }
        } catch (...) {
        }
    }

    void clear() {
        std::lock_guard<std::mutex> lock(mu_);
        errors_.clear();
    }

    // "; TensorRT: <last errors>" or "".
    std::string recent() {
        std::lock_guard<std::mutex> lock(mu_);
        std::string s;
        for (const auto &e : errors_) {
            s += s.empty() ? "; TensorRT: " : " | ";
            s += e;
        }
        return s;
    }

private:
    p3trt_log_fn fn_;
    void *user_;
    std::mutex mu_;
    std::deque<std::string> errors_;
};

using CreateFn = void *(*)(void *, int32_t);
using ParserFn = void *(*)(void *, void *, int);
using VersionFn = int32_t (*)();

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Handles

struct p3trt_lib {
    void *nvinfer = nullptr;
    void *parser = nullptr;
    CreateFn create_runtime = nullptr;
    CreateFn create_builder = nullptr;
    ParserFn create_parser = nullptr;
    Cuda cuda;
    int device = 0;
    bool integrated = false;
    bool can_map = false;
    bool load_initializer = false;
    std::unique_ptr<Logger> logger;
    IRuntime *runtime = nullptr;
    std::mutex build_mu;  // one builder at a time (the TensorRT builder is not thread-safe)

    ~p3trt_lib() {
        delete runtime;
        // The libraries stay loaded: TensorRT registers atexit handlers and thread-local state that
        // must not outlive its code, and a process opens them at most a few times.
    }

    // Every entry point that touches CUDA makes the lib's device current on the calling thread
    // (encoders may move between threads).
    std::string use_device() const {
        cudaError_t e = cuda.SetDevice(device);
        return e == cudaSuccess ? "" : "cudaSetDevice: " + cuda.error(e);
    }
};

struct p3trt_blob {
    IHostMemory *memory;
};

struct p3trt_engine {
    p3trt_lib *lib;
    ICudaEngine *engine;
    std::vector<std::string> names;
    std::mutex mu;  // context creation is serialized
};

struct p3trt_stream {
    p3trt_lib *lib;
    cudaStream_t stream;
};

struct p3trt_buffer {
    p3trt_lib *lib;
    size_t bytes;
    void *host;    // pinned host memory (mapped on integrated GPUs) or NULL
    void *device;  // what TensorRT is given
    bool mapped;   // host and device are the same memory
    bool owns_device;
};

struct p3trt_stage {
    p3trt_engine *engine;
    p3trt_stream *stream;
    IExecutionContext *context;
    std::vector<p3trt_buffer *> uploads, downloads;
    cudaGraphExec_t graph = nullptr;
    bool graph_failed = false;
    int runs = 0;
};

namespace {

p3trt_status fail(char *err, size_t len, p3trt_status code, const std::string &msg) {
    put(err, len, msg);
    return code;
}

template <class F>
p3trt_status guarded(char *err, size_t len, F &&f) {
    try {
        return f();
    } catch (const std::exception &e) {
        return fail(err, len, P3TRT_FAILED, std::string("C++ exception: ") + e.what());
    } catch (...) {
        return fail(err, len, P3TRT_FAILED, "unknown C++ exception");
    }
}

void decode_version(int32_t v, p3trt_info *info) {
    // 8.x: major * 1000 + minor * 100 + patch; 10.x and later: major * 10000 + minor * 100 + patch.
    if (v >= 10000) {
        info->lib_major = v / 10000;
        info->lib_minor = (v / 100) % 100;
        info->lib_patch = v % 100;
    } else {
        info->lib_major = v / 1000;
        info->lib_minor = (v / 100) % 10;
        info->lib_patch = v % 100;
    }
}

// Open the first loadable of `names`; on failure every dlerror, joined.
void *open_first(const std::vector<std::string> &names, std::string &errors, std::string &opened) {
    for (const auto &n : names) {
        void *h = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (h != nullptr) {
            opened = n;
            return h;
        }
        if (!errors.empty()) errors += "; ";
        errors += dl_error();
    }
    return nullptr;
}

// TensorRT side of p3trt_open. Returns P3TRT_OK or the failure (message in info->trt_error).
p3trt_status probe_tensorrt(const p3trt_open_params *p, p3trt_info *info, p3trt_lib *lib) {
    std::string major = std::to_string(NV_TENSORRT_MAJOR);
    std::vector<std::string> names;
    if (p->nvinfer != nullptr) {
        names.emplace_back(p->nvinfer);
    } else {
        names = {"libnvinfer.so." + major, "libnvinfer.so"};
    }
    std::string errors, opened;
    lib->nvinfer = open_first(names, errors, opened);
    if (lib->nvinfer == nullptr) {
        put(info->trt_error, sizeof info->trt_error, "TensorRT library not found: " + errors);
        return P3TRT_NO_LIBRARY;
    }
    auto version = reinterpret_cast<VersionFn>(dlsym(lib->nvinfer, "getInferLibVersion"));
    put(info->nvinfer_path, sizeof info->nvinfer_path, origin_of(reinterpret_cast<void *>(version), opened.c_str()));
    if (version == nullptr) {
        put(info->trt_error, sizeof info->trt_error,
            opened + " has no getInferLibVersion: not a TensorRT library");
        return P3TRT_NO_SYMBOL;
    }
    decode_version(version(), info);
    auto vmajor = reinterpret_cast<VersionFn>(dlsym(lib->nvinfer, "getInferLibMajorVersion"));
    auto vminor = reinterpret_cast<VersionFn>(dlsym(lib->nvinfer, "getInferLibMinorVersion"));
    auto vpatch = reinterpret_cast<VersionFn>(dlsym(lib->nvinfer, "getInferLibPatchVersion"));
    auto vbuild = reinterpret_cast<VersionFn>(dlsym(lib->nvinfer, "getInferLibBuildVersion"));
    if (vmajor && vminor && vpatch) {
        info->lib_major = vmajor();
        info->lib_minor = vminor();
        info->lib_patch = vpatch();
    }
    if (vbuild) info->lib_build = vbuild();
    std::string found = fmt("%d.%d.%d", info->lib_major, info->lib_minor, info->lib_patch);
    std::string built = fmt("%d.%d.%d", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR, NV_TENSORRT_PATCH);
    if (info->lib_major < 8 || (info->lib_major == 8 && info->lib_minor < 6)) {
        put(info->trt_error, sizeof info->trt_error,
            fmt("TensorRT %s (%s) is too old: ps3rt needs TensorRT 8.6 or newer (JetPack 6.0+)", found.c_str(),
                info->nvinfer_path));
        return P3TRT_BAD_VERSION;
    }
    if (info->lib_major != NV_TENSORRT_MAJOR || info->lib_minor < NV_TENSORRT_MINOR) {
        put(info->trt_error, sizeof info->trt_error,
            fmt("TensorRT %s (%s) does not match the TensorRT %s headers this ps3rt was built with (the library "
                "must be the same major version and at least as new); rebuild ps3rt with --features tensorrt "
                "against this machine's TensorRT headers (PS3RT_TENSORRT_INCLUDE)",
                found.c_str(), info->nvinfer_path, built.c_str()));
        return P3TRT_BAD_VERSION;
    }
    lib->create_runtime = reinterpret_cast<CreateFn>(dlsym(lib->nvinfer, "createInferRuntime_INTERNAL"));
    lib->create_builder = reinterpret_cast<CreateFn>(dlsym(lib->nvinfer, "createInferBuilder_INTERNAL"));
    info->has_builder = lib->create_builder != nullptr;
    if (lib->create_runtime == nullptr) {
        put(info->trt_error, sizeof info->trt_error,
            std::string(info->nvinfer_path) + " has no createInferRuntime_INTERNAL");
        return P3TRT_NO_SYMBOL;
    }
    if (lib->create_builder == nullptr) {
        put(info->trt_error, sizeof info->trt_error,
            std::string(info->nvinfer_path) +
                " is a runtime-only TensorRT library (no createInferBuilder_INTERNAL: a dispatch or lean "
                "runtime); ps3rt builds its engines on the device and needs the full libnvinfer and "
                "libnvonnxparser");
        return P3TRT_NO_SYMBOL;
    }
    names.clear();
    if (p->parser != nullptr) {
        names.emplace_back(p->parser);
    } else {
        names = {"libnvonnxparser.so." + major, "libnvonnxparser.so"};
    }
    errors.clear();
    lib->parser = open_first(names, errors, opened);
    if (lib->parser == nullptr) {
        put(info->trt_error, sizeof info->trt_error, "TensorRT ONNX parser library not found: " + errors);
        return P3TRT_NO_LIBRARY;
    }
    lib->create_parser = reinterpret_cast<ParserFn>(dlsym(lib->parser, "createNvOnnxParser_INTERNAL"));
    auto pversion = reinterpret_cast<int (*)()>(dlsym(lib->parser, "getNvOnnxParserVersion"));
    put(info->parser_path, sizeof info->parser_path,
        origin_of(reinterpret_cast<void *>(lib->create_parser), opened.c_str()));
    if (pversion) info->parser_version = pversion();
    if (lib->create_parser == nullptr) {
        put(info->trt_error, sizeof info->trt_error,
            std::string(info->parser_path) + " has no createNvOnnxParser_INTERNAL");
        return P3TRT_NO_SYMBOL;
    }
    info->has_parser = 1;
    lib->load_initializer = P3TRT_HAS_LOAD_INITIALIZER != 0;
    info->load_initializer = lib->load_initializer ? 1 : 0;
    return P3TRT_OK;
}

// CUDA side of p3trt_open. Returns P3TRT_OK, P3TRT_NO_CUDA or P3TRT_NO_GPU (message in info->cuda_error).
p3trt_status probe_cuda(const p3trt_open_params *p, p3trt_info *info, p3trt_lib *lib) {
    std::vector<std::string> names;
    if (p->cudart != nullptr) {
        names.emplace_back(p->cudart);
    } else {
        // A CUDA runtime TensorRT already brought in first (same copy, same state), then the newest.
        const char *candidates[] = {"libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"};
        for (const char *c : candidates) {
            void *h = dlopen(c, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
            if (h != nullptr) {
                dlclose(h);
                names.insert(names.begin(), c);
            } else {
                names.emplace_back(c);
            }
        }
        const char *dirs[] = {"/usr/local/cuda/lib64/", "/usr/local/cuda/targets/aarch64-linux/lib/"};
        for (const char *d : dirs) names.emplace_back(std::string(d) + "libcudart.so");
    }
    std::string errors, tried;
    p3trt_status status = P3TRT_NO_CUDA;
    std::string last;
    // Try each candidate until one reports a device: a CUDA runtime newer than the driver says
    // cudaErrorInsufficientDriver and an older one may still work.
    for (const auto &n : names) {
        void *h = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (h == nullptr) {
            std::string e = dl_error();
            if (errors.empty()) errors = e;
            tried += tried.empty() ? n : ", " + n;
            continue;
        }
        Cuda c;
        c.handle = h;
        std::string missing = c.bind();
        if (!missing.empty()) {
            last = n + " has no " + missing;
            status = P3TRT_NO_CUDA;
            continue;
        }
        c.path = origin_of(reinterpret_cast<void *>(c.GetDeviceCount), n.c_str());
        int rv = -1, dv = -1, count = 0;
        c.RuntimeGetVersion(&rv);
        c.DriverGetVersion(&dv);
        cudaError_t e = c.GetDeviceCount(&count);
        info->cuda_runtime_version = rv;
        info->cuda_driver_version = dv;
        put(info->cudart_path, sizeof info->cudart_path, c.path);
        if (e != cudaSuccess || count <= 0) {
            info->device_count = e == cudaSuccess ? count : 0;
            last = fmt("no usable GPU: cudaGetDeviceCount: %s (CUDA runtime %d.%d from %s, driver supports %d.%d%s)",
                       e == cudaSuccess ? "0 devices" : c.error(e).c_str(), rv / 1000, (rv % 1000) / 10,
                       c.path.c_str(), dv / 1000, (dv % 1000) / 10, dv == 0 ? ": no NVIDIA driver" : "");
            status = P3TRT_NO_GPU;
            continue;
        }
        info->device_count = count;
        if (p->device < 0 || p->device >= count) {
            last = fmt("CUDA device %d requested, %d present", p->device, count);
            status = P3TRT_NO_GPU;
            lib->cuda = c;
            break;
        }
        lib->cuda = c;
        lib->device = p->device;
        info->device = p->device;
        std::string use = lib->use_device();
        if (!use.empty()) {
            last = use;
            status = P3TRT_NO_GPU;
            break;
        }
        int v = 0;
        if (c.DeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, p->device) == cudaSuccess) info->sm_major = v;
        if (c.DeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMinor, p->device) == cudaSuccess) info->sm_minor = v;
        if (c.DeviceGetAttribute(&v, cudaDevAttrIntegrated, p->device) == cudaSuccess) info->integrated = v;
        if (c.DeviceGetAttribute(&v, cudaDevAttrCanMapHostMemory, p->device) == cudaSuccess) info->can_map_host = v;
        size_t free_b = 0, total_b = 0;
        if (c.MemGetInfo(&free_b, &total_b) == cudaSuccess) info->total_mem = total_b;
        put(info->gpu_name, sizeof info->gpu_name, gpu_name(p->device));
        lib->integrated = info->integrated == 1;
        lib->can_map = info->can_map_host == 1;
        info->cuda_error[0] = '\0';
        return P3TRT_OK;
    }
    if (status == P3TRT_NO_CUDA && last.empty()) {
        last = "CUDA runtime library not found (tried " + tried + "; set PS3RT_CUDART_LIB): " + errors;
    }
    put(info->cuda_error, sizeof info->cuda_error, last);
    return status;
}

#if P3TRT_HAS_PROGRESS_MONITOR
class Progress final : public IProgressMonitor {
public:
    Progress(p3trt_progress_fn fn, void *user) : fn_(fn), user_(user) {}
    void phaseStart(char const *phase, char const *parent, int32_t steps) noexcept override {
        try {
            if (fn_) fn_(user_, 0, phase ? phase : "", parent ? parent : "", 0, steps);
        } catch (...) {
        }
    }
    bool stepComplete(char const *phase, int32_t step) noexcept override {
        try {
            if (fn_ && fn_(user_, 1, phase ? phase : "", "", step, 0) != 0) {
                cancelled = true;
                return false;
            }
        } catch (...) {
        }
        return true;
    }
    void phaseFinish(char const *phase) noexcept override {
        try {
            if (fn_) fn_(user_, 2, phase ? phase : "", "", 0, 0);
        } catch (...) {
        }
    }
    std::atomic<bool> cancelled{false};

private:
    p3trt_progress_fn fn_;
    void *user_;
};
#endif

template <class T>
struct Deleter {
    void operator()(T *p) const { delete p; }
};
template <class T>
using Owned = std::unique_ptr<T, Deleter<T>>;

std::string parser_errors(nvonnxparser::IParser *parser) {
    std::string s;
    for (int i = 0; i < parser->getNbErrors(); ++i) {
        auto *e = parser->getError(i);
        if (e == nullptr) continue;
        if (!s.empty()) s += "; ";
        s += fmt("node %d (%s): %s", e->node(), e->nodeOperator() ? e->nodeOperator() : "?", e->desc() ? e->desc() : "");
    }
    return s.empty() ? "no parser error recorded" : s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// C ABI

extern "C" {

p3trt_status p3trt_open(const p3trt_open_params *params, p3trt_info *info, p3trt_lib **out, char *err,
                        size_t err_len) {
    return guarded(err, err_len, [&]() -> p3trt_status {
        if (params == nullptr || info == nullptr) return fail(err, err_len, P3TRT_INVALID, "NULL argument");
        if (out != nullptr) *out = nullptr;
        std::memset(info, 0, sizeof *info);
        info->header_major = NV_TENSORRT_MAJOR;
        info->header_minor = NV_TENSORRT_MINOR;
        info->header_patch = NV_TENSORRT_PATCH;
        info->header_build = NV_TENSORRT_BUILD;
        info->lib_major = info->lib_minor = info->lib_patch = info->lib_build = -1;
        info->parser_version = -1;
        info->cuda_runtime_version = info->cuda_driver_version = -1;
        info->device_count = -1;
        info->sm_major = info->sm_minor = -1;
        info->integrated = info->can_map_host = -1;
        info->fast_fp16 = -1;
        auto lib = std::make_unique<p3trt_lib>();
        lib->logger = std::make_unique<Logger>(params->log, params->log_user);
        p3trt_status trt = probe_tensorrt(params, info, lib.get());
        p3trt_status cuda = probe_cuda(params, info, lib.get());
        p3trt_status first = trt != P3TRT_OK ? trt : cuda;
        if (first != P3TRT_OK) {
            return fail(err, err_len, first, trt != P3TRT_OK ? info->trt_error : info->cuda_error);
        }
        // Everything is there: ask the builder whether FP16 is fast (8.6 and 10.x).
#if P3TRT_HAS_FP16_FLAG
        {
            auto *b = static_cast<IBuilder *>(lib->create_builder(lib->logger.get(), NV_TENSORRT_VERSION));
            if (b != nullptr) {
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
                info->fast_fp16 = b->platformHasFastFp16() ? 1 : 0;
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
                delete b;
            }
        }
#endif
        if (params->probe_only != 0 || out == nullptr) return P3TRT_OK;
        lib->runtime = static_cast<IRuntime *>(lib->create_runtime(lib->logger.get(), NV_TENSORRT_VERSION));
        if (lib->runtime == nullptr) {
            return fail(err, err_len, P3TRT_FAILED, "createInferRuntime failed" + lib->logger->recent());
        }
        *out = lib.release();
        return P3TRT_OK;
    });
}

void p3trt_close(p3trt_lib *lib) {
    try {
        delete lib;
    } catch (...) {
    }
}

p3trt_status p3trt_build(p3trt_lib *lib, const p3trt_build_params *p, p3trt_blob **engine_out,
                         p3trt_blob **timing_out, char *err, size_t err_len) {
    return guarded(err, err_len, [&]() -> p3trt_status {
        if (lib == nullptr || p == nullptr || engine_out == nullptr || timing_out == nullptr || p->onnx == nullptr) {
            return fail(err, err_len, P3TRT_INVALID, "NULL argument");
        }
        *engine_out = nullptr;
        *timing_out = nullptr;
        std::lock_guard<std::mutex> lock(lib->build_mu);
        std::string use = lib->use_device();
        if (!use.empty()) return fail(err, err_len, P3TRT_FAILED, use);
        lib->logger->clear();
        Owned<IBuilder> builder(static_cast<IBuilder *>(lib->create_builder(lib->logger.get(), NV_TENSORRT_VERSION)));
        if (!builder) return fail(err, err_len, P3TRT_FAILED, "createInferBuilder failed" + lib->logger->recent());
#if NV_TENSORRT_MAJOR < 10
        NetworkDefinitionCreationFlags flags =
            1U << static_cast<uint32_t>(NetworkDefinitionCreationFlag::kEXPLICIT_BATCH);
#else
        NetworkDefinitionCreationFlags flags = 0;
#endif
        Owned<INetworkDefinition> network(builder->createNetworkV2(flags));
        if (!network) return fail(err, err_len, P3TRT_FAILED, "createNetworkV2 failed" + lib->logger->recent());
        Owned<nvonnxparser::IParser> parser(static_cast<nvonnxparser::IParser *>(
            lib->create_parser(network.get(), lib->logger.get(), NV_ONNX_PARSER_VERSION)));
        if (!parser) return fail(err, err_len, P3TRT_FAILED, "createNvOnnxParser failed" + lib->logger->recent());
        bool parsed = false;
        if (p->initializer_count > 0) {
#if P3TRT_HAS_LOAD_INITIALIZER
            if (!parser->loadModelProto(p->onnx, p->onnx_size, p->model_path)) {
                return fail(err, err_len, P3TRT_FAILED, "ONNX parser (loadModelProto): " + parser_errors(parser.get()));
            }
            for (size_t i = 0; i < p->initializer_count; ++i) {
                const p3trt_initializer &init = p->initializers[i];
                if (!parser->loadInitializer(init.name, init.data, init.size)) {
                    return fail(err, err_len, P3TRT_FAILED,
                                fmt("ONNX parser (loadInitializer %s, %zu bytes): ", init.name, init.size) +
                                    parser_errors(parser.get()));
                }
            }
            parsed = parser->parseModelProto();
#else
            return fail(err, err_len, P3TRT_INVALID,
                        "this TensorRT's ONNX parser cannot take initializers from memory (TensorRT < 10.13): "
                        "give a model path");
#endif
        } else {
            parsed = parser->parse(p->onnx, p->onnx_size, p->model_path);
        }
        if (!parsed) return fail(err, err_len, P3TRT_FAILED, "ONNX parser: " + parser_errors(parser.get()));

        Owned<IBuilderConfig> config(builder->createBuilderConfig());
        if (!config) return fail(err, err_len, P3TRT_FAILED, "createBuilderConfig failed" + lib->logger->recent());
        if (p->shape_count > 0) {
            IOptimizationProfile *profile = builder->createOptimizationProfile();  // owned by the builder
            if (profile == nullptr) return fail(err, err_len, P3TRT_FAILED, "createOptimizationProfile failed");
            for (size_t i = 0; i < p->shape_count; ++i) {
                const p3trt_shape &s = p->shapes[i];
                if (s.nb_dims < 0 || s.nb_dims > Dims::MAX_DIMS) {
                    return fail(err, err_len, P3TRT_INVALID, fmt("shape of %s: %d dimensions", s.name, s.nb_dims));
                }
                Dims d{};
                d.nbDims = s.nb_dims;
                for (int j = 0; j < s.nb_dims; ++j) d.d[j] = static_cast<decltype(d.d[0] + 0)>(s.dims[j]);
                for (auto sel : {OptProfileSelector::kMIN, OptProfileSelector::kOPT, OptProfileSelector::kMAX}) {
                    if (!profile->setDimensions(s.name, sel, d)) {
                        return fail(err, err_len, P3TRT_FAILED,
                                    fmt("optimization profile: cannot set the shape of %s", s.name) +
                                        lib->logger->recent());
                    }
                }
            }
            if (config->addOptimizationProfile(profile) < 0) {
                return fail(err, err_len, P3TRT_FAILED, "addOptimizationProfile failed" + lib->logger->recent());
            }
        }
        if (p->fp16 != 0) {
#if P3TRT_HAS_FP16_FLAG
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
            config->setFlag(BuilderFlag::kFP16);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#else
            return fail(err, err_len, P3TRT_INVALID,
                        "TensorRT 11 has no FP16 builder flag: precision comes from the ONNX graph");
#endif
        }
        if (p->tf32 == 0) config->clearFlag(BuilderFlag::kTF32);
        if (p->optimization_level >= 0) config->setBuilderOptimizationLevel(p->optimization_level);
        if (p->workspace_bytes > 0) config->setMemoryPoolLimit(MemoryPoolType::kWORKSPACE, p->workspace_bytes);
        Owned<ITimingCache> cache;
        if (p->timing_cache != nullptr && p->timing_cache_size > 0) {
            cache.reset(config->createTimingCache(p->timing_cache, p->timing_cache_size));
            if (!cache) {
                lib->logger->log(ILogger::Severity::kWARNING, "ps3rt: the timing cache was refused; starting an empty one");
            }
        }
        if (!cache) cache.reset(config->createTimingCache(nullptr, 0));
        if (cache && !config->setTimingCache(*cache, false)) {
            lib->logger->log(ILogger::Severity::kWARNING, "ps3rt: setTimingCache failed; building without it");
        }
#if P3TRT_HAS_PROGRESS_MONITOR
        Progress progress(p->progress, p->progress_user);
        if (p->progress != nullptr) config->setProgressMonitor(&progress);
#endif
        IHostMemory *plan = builder->buildSerializedNetwork(*network, *config);
#if P3TRT_HAS_PROGRESS_MONITOR
        config->setProgressMonitor(nullptr);
        if (progress.cancelled) {
            delete plan;
            return fail(err, err_len, P3TRT_FAILED, "engine build cancelled");
        }
#endif
        if (plan == nullptr || plan->size() == 0) {
            delete plan;
            return fail(err, err_len, P3TRT_FAILED, "buildSerializedNetwork failed" + lib->logger->recent());
        }
        *engine_out = new p3trt_blob{plan};
        if (ITimingCache const *used = config->getTimingCache()) {
            if (IHostMemory *blob = used->serialize()) *timing_out = new p3trt_blob{blob};
        }
        // Release the parser and network before the config and the builder; the timing cache last.
        parser.reset();
        network.reset();
        config.reset();
        builder.reset();
        cache.reset();
        return P3TRT_OK;
    });
}

const uint8_t *p3trt_blob_data(const p3trt_blob *blob) {
    return blob ? static_cast<const uint8_t *>(blob->memory->data()) : nullptr;
}

size_t p3trt_blob_size(const p3trt_blob *blob) { return blob ? blob->memory->size() : 0; }

void p3trt_blob_free(p3trt_blob *blob) {
    try {
        if (blob) delete blob->memory;
        delete blob;
    } catch (...) {
    }
}

p3trt_status p3trt_engine_load(p3trt_lib *lib, const void *data, size_t size, p3trt_engine **out, char *err,
                               size_t err_len) {
    return guarded(err, err_len, [&]() -> p3trt_status {
        if (lib == nullptr || data == nullptr || out == nullptr || lib->runtime == nullptr) {
            return fail(err, err_len, P3TRT_INVALID, "NULL argument");
        }
        *out = nullptr;
        std::string use = lib->use_device();
        if (!use.empty()) return fail(err, err_len, P3TRT_FAILED, use);
        lib->logger->clear();
        ICudaEngine *engine = lib->runtime->deserializeCudaEngine(data, size);
        if (engine == nullptr) {
            return fail(err, err_len, P3TRT_FAILED, "deserializeCudaEngine failed" + lib->logger->recent());
        }
        auto e = std::make_unique<p3trt_engine>();
        e->lib = lib;
        e->engine = engine;
        for (int32_t i = 0; i < engine->getNbIOTensors(); ++i) {
            const char *n = engine->getIOTensorName(i);
            e->names.emplace_back(n ? n : "");
        }
        *out = e.release();
        return P3TRT_OK;
    });
}

void p3trt_engine_free(p3trt_engine *engine) {
    try {
        if (engine == nullptr) return;
        engine->lib->use_device();
        delete engine->engine;
        delete engine;
    } catch (...) {
    }
}

int32_t p3trt_engine_io_count(const p3trt_engine *engine) {
    return engine ? static_cast<int32_t>(engine->names.size()) : 0;
}

p3trt_status p3trt_engine_io(const p3trt_engine *engine, int32_t index, p3trt_io *out) {
    try {
        if (engine == nullptr || out == nullptr || index < 0 || static_cast<size_t>(index) >= engine->names.size()) {
            return P3TRT_INVALID;
        }
        std::memset(out, 0, sizeof *out);
        const char *name = engine->names[index].c_str();
        ICudaEngine *e = engine->engine;
        out->name = name;
        out->is_input = e->getTensorIOMode(name) == TensorIOMode::kINPUT ? 1 : 0;
        out->dtype = static_cast<int32_t>(e->getTensorDataType(name));
        Dims d = e->getTensorShape(name);
        out->nb_dims = d.nbDims < 0 ? 0 : (d.nbDims > 8 ? 8 : d.nbDims);
        bool dynamic = false;
        for (int i = 0; i < out->nb_dims; ++i) {
            out->dims[i] = d.d[i];
            out->profile_dims[i] = d.d[i];
            dynamic = dynamic || d.d[i] < 0;
        }
        if (out->is_input && dynamic && e->getNbOptimizationProfiles() > 0) {
            Dims opt = e->getProfileShape(name, 0, OptProfileSelector::kOPT);
            for (int i = 0; i < out->nb_dims && i < opt.nbDims; ++i) out->profile_dims[i] = opt.d[i];
        }
        return P3TRT_OK;
    } catch (...) {
        return P3TRT_FAILED;
    }
}

p3trt_status p3trt_stream_create(p3trt_lib *lib, p3trt_stream **out, char *err, size_t err_len) {
    return guarded(err, err_len, [&]() -> p3trt_status {
        if (lib == nullptr || out == nullptr) return fail(err, err_len, P3TRT_INVALID, "NULL argument");
        *out = nullptr;
        std::string use = lib->use_device();
        if (!use.empty()) return fail(err, err_len, P3TRT_FAILED, use);
        cudaStream_t s = nullptr;
        cudaError_t e = lib->cuda.StreamCreateWithFlags(&s, cudaStreamNonBlocking);
        if (e != cudaSuccess) return fail(err, err_len, P3TRT_FAILED, "cudaStreamCreate: " + lib->cuda.error(e));
        *out = new p3trt_stream{lib, s};
        return P3TRT_OK;
    });
}

void p3trt_stream_free(p3trt_stream *stream) {
    try {
        if (stream == nullptr) return;
        stream->lib->use_device();
        stream->lib->cuda.StreamSynchronize(stream->stream);
        stream->lib->cuda.StreamDestroy(stream->stream);
        delete stream;
    } catch (...) {
    }
}

p3trt_status p3trt_buffer_create(p3trt_lib *lib, size_t bytes, int32_t host_visible, p3trt_buffer **out,
                                 char *err, size_t err_len) {
    return guarded(err, err_len, [&]() -> p3trt_status {
        if (lib == nullptr || out == nullptr || bytes == 0) return fail(err, err_len, P3TRT_INVALID, "bad argument");
        *out = nullptr;
        std::string use = lib->use_device();
        if (!use.empty()) return fail(err, err_len, P3TRT_FAILED, use);
        auto b = std::make_unique<p3trt_buffer>(p3trt_buffer{lib, bytes, nullptr, nullptr, false, false});
        const Cuda &c = lib->cuda;
        if (host_visible != 0 && lib->integrated && lib->can_map) {
            // Jetson: the GPU reads and writes this pinned host memory through its mapped address.
            cudaError_t e = c.HostAlloc(&b->host, bytes, cudaHostAllocMapped | cudaHostAllocPortable);
            if (e != cudaSuccess) {
                return fail(err, err_len, P3TRT_FAILED, fmt("cudaHostAlloc(%zu, mapped): ", bytes) + c.error(e));
            }
            e = c.HostGetDevicePointer(&b->device, b->host, 0);
            if (e != cudaSuccess) {
                c.FreeHost(b->host);
                return fail(err, err_len, P3TRT_FAILED, "cudaHostGetDevicePointer: " + c.error(e));
            }
            b->mapped = true;
        } else {
            cudaError_t e = c.Malloc(&b->device, bytes);
            if (e != cudaSuccess) return fail(err, err_len, P3TRT_FAILED, fmt("cudaMalloc(%zu): ", bytes) + c.error(e));
            b->owns_device = true;
            if (host_visible != 0) {
                e = c.HostAlloc(&b->host, bytes, cudaHostAllocPortable);
                if (e != cudaSuccess) {
                    c.Free(b->device);
                    return fail(err, err_len, P3TRT_FAILED, fmt("cudaHostAlloc(%zu): ", bytes) + c.error(e));
                }
            }
        }
        if (b->host != nullptr) std::memset(b->host, 0, bytes);
        *out = b.release();
        return P3TRT_OK;
    });
}

void *p3trt_buffer_host(p3trt_buffer *buffer) { return buffer ? buffer->host : nullptr; }

int32_t p3trt_buffer_mapped(const p3trt_buffer *buffer) { return buffer && buffer->mapped ? 1 : 0; }

void p3trt_buffer_free(p3trt_buffer *buffer) {
    try {
        if (buffer == nullptr) return;
        const Cuda &c = buffer->lib->cuda;
        buffer->lib->use_device();
        if (buffer->owns_device) c.Free(buffer->device);
        if (buffer->host != nullptr) c.FreeHost(buffer->host);
        delete buffer;
    } catch (...) {
    }
}

p3trt_status p3trt_stage_create(p3trt_engine *engine, p3trt_stream *stream, p3trt_stage **out, char *err,
                                size_t err_len) {
    return guarded(err, err_len, [&]() -> p3trt_status {
        if (engine == nullptr || stream == nullptr || out == nullptr) {
            return fail(err, err_len, P3TRT_INVALID, "NULL argument");
        }
        *out = nullptr;
        p3trt_lib *lib = engine->lib;
        std::string use = lib->use_device();
        if (!use.empty()) return fail(err, err_len, P3TRT_FAILED, use);
        IExecutionContext *ctx = nullptr;
        {
            std::lock_guard<std::mutex> lock(engine->mu);
            lib->logger->clear();
            ctx = engine->engine->createExecutionContext();
        }
        if (ctx == nullptr) {
            return fail(err, err_len, P3TRT_FAILED, "createExecutionContext failed" + lib->logger->recent());
        }
        auto stage = std::make_unique<p3trt_stage>();
        stage->engine = engine;
        stage->stream = stream;
        stage->context = ctx;
        // Inputs with dynamic dimensions take the profile's (fixed) shape.
        for (const auto &name : engine->names) {
            ICudaEngine *e = engine->engine;
            if (e->getTensorIOMode(name.c_str()) != TensorIOMode::kINPUT) continue;
            Dims d = e->getTensorShape(name.c_str());
            bool dynamic = false;
            for (int i = 0; i < d.nbDims; ++i) dynamic = dynamic || d.d[i] < 0;
            if (!dynamic) continue;
            Dims opt = e->getProfileShape(name.c_str(), 0, OptProfileSelector::kOPT);
            if (!ctx->setInputShape(name.c_str(), opt)) {
                delete ctx;
                stage->context = nullptr;
                return fail(err, err_len, P3TRT_FAILED, "setInputShape(" + name + ") failed" + lib->logger->recent());
            }
        }
        *out = stage.release();
        return P3TRT_OK;
    });
}

p3trt_status p3trt_stage_bind(p3trt_stage *stage, const char *tensor, p3trt_buffer *buffer, int32_t transfer,
                              char *err, size_t err_len) {
    return guarded(err, err_len, [&]() -> p3trt_status {
        if (stage == nullptr || tensor == nullptr || buffer == nullptr) {
            return fail(err, err_len, P3TRT_INVALID, "NULL argument");
        }
        if ((transfer == 1 || transfer == 2) && buffer->host == nullptr) {
            return fail(err, err_len, P3TRT_INVALID, std::string(tensor) + ": a transfer needs a host-visible buffer");
        }
        if (!stage->context->setTensorAddress(tensor, buffer->device)) {
            return fail(err, err_len, P3TRT_FAILED,
                        std::string("setTensorAddress(") + tensor + ") failed" + stage->engine->lib->logger->recent());
        }
        if (!buffer->mapped) {
            if (transfer == 1) stage->uploads.push_back(buffer);
            if (transfer == 2) stage->downloads.push_back(buffer);
        }
        if (stage->graph != nullptr) {
            stage->engine->lib->cuda.GraphExecDestroy(stage->graph);
            stage->graph = nullptr;
        }
        return P3TRT_OK;
    });
}

namespace {
// Uploads, enqueueV3, downloads (no synchronization).
std::string enqueue_stage(p3trt_stage *s) {
    const Cuda &c = s->engine->lib->cuda;
    cudaStream_t st = s->stream->stream;
    for (auto *b : s->uploads) {
        cudaError_t e = c.MemcpyAsync(b->device, b->host, b->bytes, cudaMemcpyHostToDevice, st);
        if (e != cudaSuccess) return "cudaMemcpyAsync (host to device): " + c.error(e);
    }
    if (!s->context->enqueueV3(st)) return "enqueueV3 failed" + s->engine->lib->logger->recent();
    for (auto *b : s->downloads) {
        cudaError_t e = c.MemcpyAsync(b->host, b->device, b->bytes, cudaMemcpyDeviceToHost, st);
        if (e != cudaSuccess) return "cudaMemcpyAsync (device to host): " + c.error(e);
    }
    return "";
}

// Capture the stage's sequence into a CUDA graph; "" on success.
std::string capture(p3trt_stage *s) {
    const Cuda &c = s->engine->lib->cuda;
    cudaStream_t st = s->stream->stream;
    cudaError_t e = c.StreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) return "cudaStreamBeginCapture: " + c.error(e);
    std::string enq = enqueue_stage(s);
    cudaGraph_t graph = nullptr;
    e = c.StreamEndCapture(st, &graph);
    if (!enq.empty()) {
        if (graph) c.GraphDestroy(graph);
        return enq;
    }
    if (e != cudaSuccess || graph == nullptr) return "cudaStreamEndCapture: " + c.error(e);
    cudaGraphExec_t exec = nullptr;
    e = c.GraphInstantiateWithFlags(&exec, graph, 0);
    c.GraphDestroy(graph);
    if (e != cudaSuccess) return "cudaGraphInstantiate: " + c.error(e);
    s->graph = exec;
    return "";
}
}  // namespace

p3trt_status p3trt_stage_run(p3trt_stage *stage, int32_t cuda_graph, char *err, size_t err_len) {
    return guarded(err, err_len, [&]() -> p3trt_status {
        if (stage == nullptr) return fail(err, err_len, P3TRT_INVALID, "NULL argument");
        p3trt_lib *lib = stage->engine->lib;
        const Cuda &c = lib->cuda;
        std::string use = lib->use_device();
        if (!use.empty()) return fail(err, err_len, P3TRT_FAILED, use);
        lib->logger->clear();
        cudaStream_t st = stage->stream->stream;
        // The first run is plain (TensorRT may allocate or set up on it); graphs are captured after.
        if (cuda_graph != 0 && stage->graph == nullptr && !stage->graph_failed && stage->runs > 0) {
            std::string why = capture(stage);
            if (!why.empty()) {
                stage->graph_failed = true;
                lib->logger->log(ILogger::Severity::kWARNING,
                                 ("ps3rt: CUDA graph capture failed, running without: " + why).c_str());
            }
        }
        if (cuda_graph != 0 && stage->graph != nullptr) {
            cudaError_t e = c.GraphLaunch(stage->graph, st);
            if (e != cudaSuccess) return fail(err, err_len, P3TRT_FAILED, "cudaGraphLaunch: " + c.error(e));
        } else {
            std::string why = enqueue_stage(stage);
            if (!why.empty()) return fail(err, err_len, P3TRT_FAILED, why);
        }
        cudaError_t e = c.StreamSynchronize(st);
        if (e != cudaSuccess) return fail(err, err_len, P3TRT_FAILED, "cudaStreamSynchronize: " + c.error(e));
        stage->runs++;
        return P3TRT_OK;
    });
}

void p3trt_stage_free(p3trt_stage *stage) {
    try {
        if (stage == nullptr) return;
        p3trt_lib *lib = stage->engine->lib;
        lib->use_device();
        lib->cuda.StreamSynchronize(stage->stream->stream);
        if (stage->graph != nullptr) lib->cuda.GraphExecDestroy(stage->graph);
        delete stage->context;
        delete stage;
    } catch (...) {
    }
}

}  // extern "C"
