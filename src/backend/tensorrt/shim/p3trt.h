/*
 * p3trt: the C ABI of ps3rt's TensorRT shim (src/backend/tensorrt/shim/p3trt.cpp).
 *
 * The shim wraps the TensorRT C++ API behind opaque handles so that Rust never sees a C++ object or an
 * exception. It has no link-time dependency on TensorRT or CUDA: libnvinfer, libnvonnxparser and the
 * CUDA runtime are opened with dlopen by p3trt_open, and only their C entry points (the _INTERNAL
 * factories, the version functions and the cuda* functions) are looked up with dlsym; everything else
 * is reached through the objects' virtual tables, as the TensorRT headers' inline wrappers do.
 *
 * Conventions: every fallible function returns a p3trt_status and, on failure, writes a NUL-terminated
 * message into err[0..err_len) (truncated to fit). No function throws. Handles are freed by their
 * _free/_close function; a handle must outlive every handle created from it (lib > engine > stage;
 * lib > stream, buffer), which the Rust side guarantees by ownership.
 *
 * Compiled only with the `tensorrt` cargo feature (build.rs); the symbols are internal to ps3rt (not
 * exported from libps3rt.so).
 */
#ifndef P3TRT_H
#define P3TRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. The order of the probe failures is the order p3trt_open checks them in. */
typedef enum {
    P3TRT_OK = 0,
    P3TRT_NO_LIBRARY = 1,  /* libnvinfer or libnvonnxparser cannot be opened */
    P3TRT_BAD_VERSION = 2, /* the library's version does not fit the headers the shim was built with */
    P3TRT_NO_SYMBOL = 3,   /* a required entry point is missing (e.g. a runtime-only dispatch/lean library) */
    P3TRT_NO_CUDA = 4,     /* no usable CUDA runtime library, or no NVIDIA driver */
    P3TRT_NO_GPU = 5,      /* the driver reports no (usable) GPU */
    P3TRT_FAILED = 6,      /* a TensorRT or CUDA call failed */
    P3TRT_INVALID = 7      /* invalid argument */
} p3trt_status;

/* Log severities, as TensorRT's ILogger::Severity. */
typedef void (*p3trt_log_fn)(void *user, int32_t severity, const char *message);

/* Build progress: event 0 phase start (step = 0, steps = nbSteps), 1 step complete, 2 phase finish.
 * Returns 0 to go on, non-zero to cancel the build. May be called from TensorRT's threads. */
typedef int32_t (*p3trt_progress_fn)(void *user, int32_t event, const char *phase, const char *parent,
                                     int32_t step, int32_t steps);

/* What p3trt_open found (filled as far as it got, also on failure). Strings are NUL-terminated. */
typedef struct {
    int32_t header_major, header_minor, header_patch, header_build; /* headers the shim was built with */
    int32_t lib_major, lib_minor, lib_patch, lib_build;             /* libnvinfer; -1 unknown */
    int32_t parser_version;                                         /* getNvOnnxParserVersion(); -1 unknown */
    int32_t has_builder;      /* createInferBuilder_INTERNAL found */
    int32_t has_parser;       /* libnvonnxparser opened, createNvOnnxParser_INTERNAL found */
    int32_t load_initializer; /* the parser can take initializers from memory (TensorRT >= 10.13) */
    int32_t cuda_runtime_version; /* cudaRuntimeGetVersion, e.g. 12060; -1 unknown */
    int32_t cuda_driver_version;  /* cudaDriverGetVersion; 0 no driver; -1 unknown */
    int32_t device_count;         /* -1 unknown */
    int32_t device;               /* the device used */
    int32_t sm_major, sm_minor;   /* compute capability; -1 unknown */
    int32_t integrated;           /* 1 integrated GPU (Jetson): host memory is device memory */
    int32_t can_map_host;         /* 1 can map pinned host memory */
    int32_t fast_fp16;            /* builder's platformHasFastFp16: 1/0; -1 unknown or not in this TensorRT */
    uint64_t total_mem;           /* device memory in bytes; 0 unknown */
    char gpu_name[256];
    char nvinfer_path[512];
    char parser_path[512];
    char cudart_path[512];
    char trt_error[512];  /* why TensorRT is unusable ("" if it is) */
    char cuda_error[512]; /* why CUDA/the GPU is unusable ("" if it is) */
} p3trt_info;

typedef struct {
    const char *nvinfer; /* path or soname; NULL: libnvinfer.so.<header major>, then libnvinfer.so */
    const char *parser;  /* NULL: libnvonnxparser.so.<header major>, then libnvonnxparser.so */
    const char *cudart;  /* NULL: an already loaded libcudart, else libcudart.so.13/.12/.11.0/.so */
    int32_t device;      /* CUDA device ordinal */
    int32_t probe_only;  /* 1: fill info and return without creating a runtime (no handle) */
    p3trt_log_fn log;    /* may be NULL */
    void *log_user;
} p3trt_open_params;

typedef struct p3trt_lib p3trt_lib;
typedef struct p3trt_blob p3trt_blob;
typedef struct p3trt_engine p3trt_engine;
typedef struct p3trt_stream p3trt_stream;
typedef struct p3trt_buffer p3trt_buffer;
typedef struct p3trt_stage p3trt_stage;

/* Open the libraries, check versions and entry points, probe the GPU and (unless probe_only) create
 * the TensorRT runtime. Returns the first failure in the order of p3trt_status; info->trt_error and
 * info->cuda_error say what is wrong on each side (both sides are probed even if the first fails). */
p3trt_status p3trt_open(const p3trt_open_params *params, p3trt_info *info, p3trt_lib **out, char *err,
                        size_t err_len);
void p3trt_close(p3trt_lib *lib);

typedef struct {
    const char *name;
    const void *data;
    size_t size;
} p3trt_initializer;

typedef struct {
    const char *name;
    int32_t nb_dims;
    int64_t dims[8];
} p3trt_shape;

typedef struct {
    const void *onnx; /* the serialized ONNX model (initializers may be external data) */
    size_t onnx_size;
    const char *model_path; /* absolute path of the model file: external data is read relative to it */
    const p3trt_initializer *initializers; /* with load_initializer: the external initializers' bytes */
    size_t initializer_count;
    const p3trt_shape *shapes; /* one optimization profile, min = opt = max = these shapes */
    size_t shape_count;
    int32_t fp16;               /* BuilderFlag::kFP16 (TensorRT 8.6/10.x only) */
    int32_t tf32;               /* leave BuilderFlag::kTF32 on (0 clears it) */
    int32_t optimization_level; /* builder optimization level; -1 TensorRT's default */
    uint64_t workspace_bytes;   /* workspace pool limit; 0 TensorRT's default */
    const void *timing_cache;   /* serialized timing cache to start from; NULL for none */
    size_t timing_cache_size;
    p3trt_progress_fn progress; /* may be NULL; used with TensorRT >= 10 (IProgressMonitor) */
    void *progress_user;
} p3trt_build_params;

/* Parse and build a serialized engine; *timing_cache receives the updated timing cache (may be NULL on
 * success if TensorRT produced none). Blobs are freed with p3trt_blob_free. */
p3trt_status p3trt_build(p3trt_lib *lib, const p3trt_build_params *params, p3trt_blob **engine,
                         p3trt_blob **timing_cache, char *err, size_t err_len);
const uint8_t *p3trt_blob_data(const p3trt_blob *blob);
size_t p3trt_blob_size(const p3trt_blob *blob);
void p3trt_blob_free(p3trt_blob *blob);

/* An input or output tensor of an engine. dims has -1 for dynamic dimensions; profile_dims holds the
 * optimization profile's kOPT shape for inputs (equal to dims for outputs and static inputs). */
typedef struct {
    const char *name; /* owned by the engine */
    int32_t is_input;
    int32_t dtype; /* nvinfer1::DataType: 0 kFLOAT */
    int32_t nb_dims;
    int64_t dims[8];
    int64_t profile_dims[8];
} p3trt_io;

p3trt_status p3trt_engine_load(p3trt_lib *lib, const void *data, size_t size, p3trt_engine **out, char *err,
                               size_t err_len);
void p3trt_engine_free(p3trt_engine *engine);
int32_t p3trt_engine_io_count(const p3trt_engine *engine);
p3trt_status p3trt_engine_io(const p3trt_engine *engine, int32_t index, p3trt_io *out);

/* A non-blocking CUDA stream (one per encoder). */
p3trt_status p3trt_stream_create(p3trt_lib *lib, p3trt_stream **out, char *err, size_t err_len);
void p3trt_stream_free(p3trt_stream *stream);

/* Memory for one tensor. host_visible = 0: device memory only (e.g. the KV cache). host_visible = 1:
 * the pipeline reads or writes it: on an integrated GPU one mapped, pinned host allocation the GPU
 * reads directly (no copies); on a discrete GPU device memory plus a pinned host mirror. */
p3trt_status p3trt_buffer_create(p3trt_lib *lib, size_t bytes, int32_t host_visible, p3trt_buffer **out,
                                 char *err, size_t err_len);
void *p3trt_buffer_host(p3trt_buffer *buffer);
int32_t p3trt_buffer_mapped(const p3trt_buffer *buffer);
void p3trt_buffer_free(p3trt_buffer *buffer);

/* One engine's execution context on a stream, with its tensors bound to buffers. transfer: 0 none,
 * 1 copy host -> device before each run, 2 copy device -> host after each run (no copy for mapped
 * buffers). */
p3trt_status p3trt_stage_create(p3trt_engine *engine, p3trt_stream *stream, p3trt_stage **out, char *err,
                                size_t err_len);
p3trt_status p3trt_stage_bind(p3trt_stage *stage, const char *tensor, p3trt_buffer *buffer, int32_t transfer,
                              char *err, size_t err_len);
/* Upload, enqueueV3, download, synchronize. cuda_graph = 1: from the second run on, replay a CUDA
 * graph captured from that sequence (falls back to plain runs, with a warning, if capture fails). */
p3trt_status p3trt_stage_run(p3trt_stage *stage, int32_t cuda_graph, char *err, size_t err_len);
void p3trt_stage_free(p3trt_stage *stage);

#ifdef __cplusplus
}
#endif

#endif /* P3TRT_H */
