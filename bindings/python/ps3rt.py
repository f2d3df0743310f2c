"""ps3rt for Python: a ctypes binding of the C API (libps3rt.so) returning numpy arrays.

For prototyping: the same library, the same results as the C and C++ APIs.

    import numpy as np, ps3rt
    model = ps3rt.Model()                        # the embedded tiny model; ps3rt.Model("pkg/dir")
    encoder = ps3rt.Encoder(model, budget=1024)  # one encoder per thread
    result = encoder.encode(rgb)                 # uint8 [H, W, 3] (or 4 channels, or [H, W] gray)
    result.features                              # float32 [729 + K, C]
    result.tokens["scale"], result.regions[0]    # structured arrays (see TOKEN_DTYPE, REGION_DTYPE)

Results are copies: they stay valid after the next encode. Calls release the GIL, so encoders in
several Python threads run concurrently. The library is found through $PS3RT_LIBRARY, then next to
this file (an installed tree's lib/, or the repository's target/release/), then the system's search
path. Errors raise ps3rt.Error with the C status and message. Reference: docs/c-api.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import os
import pathlib
import threading
import weakref
from typing import Callable, Optional

import numpy as np

__all__ = [
    "ABI_VERSION", "Status", "PixelFormat", "Backend", "LogLevel", "Error", "Model", "Encoder",
    "Result", "TOKEN_DTYPE", "REGION_DTYPE", "version", "set_log_callback",
]

#: The C ABI this module was written for (PS3RT_ABI_VERSION of ps3rt.h).
ABI_VERSION = 1


class Status(enum.IntEnum):
    """ps3rt_status values."""
    OK = 0
    INVALID_ARGUMENT = 1
    INVALID_FRAME = 2
    IO = 3
    PACKAGE = 4
    INPUT = 5
    BACKEND = 6
    NON_FINITE = 7
    BUSY = 8
    UNSUPPORTED = 9
    INTERNAL = 10


class PixelFormat(enum.IntEnum):
    """ps3rt_pixel_format values."""
    RGB8 = 1
    BGR8 = 2
    RGBA8 = 3
    BGRA8 = 4
    GRAY8 = 5
    YUYV = 6
    UYVY = 7
    NV12 = 8
    NV21 = 9
    I420 = 10


class YuvMatrix(enum.IntEnum):
    """ps3rt_yuv_matrix values."""
    BT601 = 0
    BT709 = 1


class YuvRange(enum.IntEnum):
    """ps3rt_yuv_range values."""
    LIMITED = 0
    FULL = 1


class Backend(enum.IntEnum):
    """ps3rt_backend values."""
    AUTO = 0
    TRACT = 1
    TENSORRT = 2
    ONNXRUNTIME = 3


class LogLevel(enum.IntEnum):
    """ps3rt_log_level values."""
    OFF = 0
    ERROR = 1
    WARN = 2
    INFO = 3
    DEBUG = 4
    TRACE = 5


class Error(Exception):
    """A failed ps3rt call: `status` (a Status, or the raw int for a code this module does not
    know) and the library's message."""

    def __init__(self, status: int, message: str):
        try:
            self.status = Status(status)
        except ValueError:
            self.status = status
        self.message = message
        super().__init__(f"{message} [{getattr(self.status, 'name', self.status)}]")


# --- C structs (layouts of ps3rt.h) ----------------------------------------------------------------

class _ModelOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("backend", ctypes.c_int32),
                ("threads", ctypes.c_uint32)]


class _EncoderOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("budget", ctypes.c_size_t),
                ("steps", ctypes.c_size_t)]


class _Frame(ctypes.Structure):
    _fields_ = [("width", ctypes.c_uint32), ("height", ctypes.c_uint32), ("format", ctypes.c_int32),
                ("planes", ctypes.c_void_p * 4), ("strides", ctypes.c_size_t * 4)]


class _Box(ctypes.Structure):
    _fields_ = [("x", ctypes.c_float), ("y", ctypes.c_float), ("w", ctypes.c_float),
                ("h", ctypes.c_float)]


class _Token(ctypes.Structure):
    _fields_ = [("scale", ctypes.c_uint32), ("row", ctypes.c_uint32), ("col", ctypes.c_uint32),
                ("bbox", _Box)]


class _Region(ctypes.Structure):
    _fields_ = [("scale", ctypes.c_uint32), ("patches", ctypes.c_uint32), ("bbox", _Box),
                ("score", ctypes.c_float), ("mean_score", ctypes.c_float)]


_TIMING_FIELDS = ["preprocess_ms", "lowres_ms", "hrsel_ms", "select_ms", "gather_ms", "hrenc_ms",
                  "total_ms"]


class _Timings(ctypes.Structure):
    _fields_ = [(name, ctypes.c_double) for name in _TIMING_FIELDS]


class _Output(ctypes.Structure):
    _fields_ = [
        ("features", ctypes.POINTER(ctypes.c_float)), ("token_count", ctypes.c_size_t),
        ("width", ctypes.c_size_t), ("lowres_token_count", ctypes.c_size_t),
        ("tokens", ctypes.POINTER(_Token)), ("regions", ctypes.POINTER(_Region)),
        ("region_count", ctypes.c_size_t), ("prob_map", ctypes.POINTER(ctypes.c_float)),
        ("prob_grid", ctypes.c_size_t), ("budget", ctypes.c_size_t), ("steps", ctypes.c_size_t),
        ("frame_width", ctypes.c_uint32), ("frame_height", ctypes.c_uint32),
        ("timings", _Timings),
    ]


class _ModelInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p), ("origin", ctypes.c_char_p), ("backend", ctypes.c_char_p),
        ("width", ctypes.c_size_t), ("default_budget", ctypes.c_size_t), ("patch", ctypes.c_size_t),
        ("lowres_size", ctypes.c_size_t), ("high_scales", ctypes.POINTER(ctypes.c_uint32)),
        ("high_scale_count", ctypes.c_size_t), ("input_size", ctypes.c_size_t),
        ("total_high_patches", ctypes.c_size_t), ("package_bytes", ctypes.c_uint64),
    ]


class _LabelOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("max_regions", ctypes.c_size_t),
                ("top_k", ctypes.c_size_t), ("min_patches", ctypes.c_uint32)]


class _LabelScore(ctypes.Structure):
    _fields_ = [("index", ctypes.c_size_t), ("score", ctypes.c_float), ("logit", ctypes.c_float),
                ("label", ctypes.c_char_p)]


class _RegionLabel(ctypes.Structure):
    _fields_ = [("bbox", _Box), ("scale", ctypes.c_uint32), ("tokens", ctypes.c_uint32),
                ("region_score", ctypes.c_float), ("labels", ctypes.POINTER(_LabelScore)),
                ("label_count", ctypes.c_size_t), ("embedding", ctypes.POINTER(ctypes.c_float)),
                ("embedding_dim", ctypes.c_size_t)]


class _RegionLabels(ctypes.Structure):
    _fields_ = [("regions", ctypes.POINTER(_RegionLabel)), ("region_count", ctypes.c_size_t),
                ("calibrated", ctypes.c_int32), ("label_ms", ctypes.c_double)]


class _LabelsInfo(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("label_count", ctypes.c_size_t),
                ("max_regions", ctypes.c_size_t), ("has_text_tower", ctypes.c_int32),
                ("calibrated", ctypes.c_int32), ("logit_scale", ctypes.c_float),
                ("logit_bias", ctypes.c_float)]


#: numpy dtype of Result.tokens (the layout of ps3rt_token).
TOKEN_DTYPE = np.dtype([("scale", "<u4"), ("row", "<u4"), ("col", "<u4"), ("x", "<f4"),
                        ("y", "<f4"), ("w", "<f4"), ("h", "<f4")])
#: numpy dtype of Result.regions (the layout of ps3rt_region).
REGION_DTYPE = np.dtype([("scale", "<u4"), ("patches", "<u4"), ("x", "<f4"), ("y", "<f4"),
                         ("w", "<f4"), ("h", "<f4"), ("score", "<f4"), ("mean_score", "<f4")])
assert TOKEN_DTYPE.itemsize == ctypes.sizeof(_Token)
assert REGION_DTYPE.itemsize == ctypes.sizeof(_Region)

_LOG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int32, ctypes.c_char_p, ctypes.c_void_p)


# --- loading the library ---------------------------------------------------------------------------

def _candidates():
    env = os.environ.get("PS3RT_LIBRARY")
    if env:
        yield env
        return
    here = pathlib.Path(__file__).resolve().parent
    soname = f"libps3rt.so.{ABI_VERSION}"
    yield str(here.parent.parent.parent / "lib" / soname)      # PREFIX/share/ps3rt/python
    yield str(here.parent.parent / "target" / "release" / "libps3rt.so")  # the repository
    found = ctypes.util.find_library("ps3rt")
    yield found or soname


def _load():
    errors = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise OSError("cannot load libps3rt (set PS3RT_LIBRARY to its path): " + "; ".join(errors))


_lib = _load()


def _declare(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_P = ctypes.POINTER
_status = ctypes.c_int32
_version = _declare("ps3rt_version", ctypes.c_char_p)
_abi_version = _declare("ps3rt_abi_version", ctypes.c_uint32)
_last_error = _declare("ps3rt_last_error", ctypes.c_char_p)
_model_options_init = _declare("ps3rt_model_options_init", _status, _P(_ModelOptions),
                               ctypes.c_size_t)
_model_load = _declare("ps3rt_model_load", _status, ctypes.c_char_p, _P(_ModelOptions),
                       _P(ctypes.c_void_p))
_model_load_embedded = _declare("ps3rt_model_load_embedded", _status, _P(_ModelOptions),
                                _P(ctypes.c_void_p))
_model_get_info = _declare("ps3rt_model_get_info", _status, ctypes.c_void_p, _P(_P(_ModelInfo)))
_model_destroy = _declare("ps3rt_model_destroy", None, ctypes.c_void_p)
_encoder_options_init = _declare("ps3rt_encoder_options_init", _status, _P(_EncoderOptions),
                                 ctypes.c_size_t)
_encoder_create = _declare("ps3rt_encoder_create", _status, ctypes.c_void_p, _P(_EncoderOptions),
                           _P(ctypes.c_void_p))
_encoder_destroy = _declare("ps3rt_encoder_destroy", None, ctypes.c_void_p)
_encoder_set_prompt = _declare("ps3rt_encoder_set_prompt", _status, ctypes.c_void_p,
                               _P(ctypes.c_float), ctypes.c_size_t)
_encoder_encode = _declare("ps3rt_encoder_encode", _status, ctypes.c_void_p, _P(_Frame),
                           _P(_P(_Output)))
_encoder_encode_tensor = _declare("ps3rt_encoder_encode_tensor", _status, ctypes.c_void_p,
                                  _P(ctypes.c_float), ctypes.c_size_t, _P(_P(_Output)))
_encoder_encode_jpeg = _declare("ps3rt_encoder_encode_jpeg", _status, ctypes.c_void_p,
                                ctypes.c_char_p, ctypes.c_size_t, _P(_P(_Output)))
_encoder_set_yuv_color = _declare("ps3rt_encoder_set_yuv_color", _status, ctypes.c_void_p,
                                  ctypes.c_int32, ctypes.c_int32)
_encoder_set_preprocess = _declare("ps3rt_encoder_set_preprocess", _status, ctypes.c_void_p,
                                   ctypes.c_int32)
_pinned_alloc = _declare("ps3rt_pinned_alloc", _status, ctypes.c_int32, ctypes.c_size_t,
                         _P(_P(ctypes.c_uint8)))
_pinned_free = _declare("ps3rt_pinned_free", _status, _P(ctypes.c_uint8))
_label_options_init = _declare("ps3rt_label_options_init", _status, _P(_LabelOptions),
                               ctypes.c_size_t)
_encoder_label_regions = _declare("ps3rt_encoder_label_regions", _status, ctypes.c_void_p,
                                  _P(_LabelOptions), _P(_P(_RegionLabels)))
_encoder_label_boxes = _declare("ps3rt_encoder_label_boxes", _status, ctypes.c_void_p, _P(_Box),
                                ctypes.c_size_t, _P(_LabelOptions), _P(_P(_RegionLabels)))
_encoder_set_prompt_text = _declare("ps3rt_encoder_set_prompt_text", _status, ctypes.c_void_p,
                                    ctypes.c_char_p)
_encoder_set_prompt_label = _declare("ps3rt_encoder_set_prompt_label", _status, ctypes.c_void_p,
                                     ctypes.c_char_p)
_model_get_labels_info = _declare("ps3rt_model_get_labels_info", _status, ctypes.c_void_p,
                                  _P(_LabelsInfo))
_model_label_name = _declare("ps3rt_model_label_name", _status, ctypes.c_void_p, ctypes.c_size_t,
                             _P(ctypes.c_char_p))
_set_log_callback = _declare("ps3rt_set_log_callback", _status, _LOG_CALLBACK, ctypes.c_void_p,
                             ctypes.c_int32)

if _abi_version() != ABI_VERSION:
    raise ImportError(f"libps3rt implements C ABI {_abi_version()}, this module needs {ABI_VERSION}")


def _check(status: int) -> None:
    if status != Status.OK:
        raise Error(status, _last_error().decode("utf-8", "replace"))


def version() -> str:
    """The library's version, e.g. "0.1.0"."""
    return _version().decode()


# --- API -------------------------------------------------------------------------------------------

def pinned_array(shape, gpu_device: int = 0) -> np.ndarray:
    """A zeroed uint8 array of `shape` in page-locked ("pinned") host memory mapped into CUDA device
    `gpu_device` (ps3rt_pinned_alloc). Capture or copy frames into it and encode them with GPU
    preprocessing (`Encoder.set_preprocess`): each frame then reaches the GPU with one DMA instead of
    being page-locked or staged (on a Jetson, with none). Freed once the array and every view of it
    are gone. Raises Error (Status.BACKEND, naming CUDA) where there is no usable GPU."""
    shape = tuple(int(s) for s in np.atleast_1d(shape))
    count = int(np.prod(shape)) if shape else 0
    if count <= 0 or any(s <= 0 for s in shape):
        raise ValueError(f"pinned_array: shape {list(shape)} holds no bytes")
    if gpu_device < 0:
        raise ValueError(f"pinned_array: gpu_device {gpu_device} is negative")
    data = _P(ctypes.c_uint8)()
    _check(_pinned_alloc(gpu_device, count, ctypes.byref(data)))
    memory = (ctypes.c_uint8 * count).from_address(ctypes.addressof(data.contents))
    # The array keeps `memory` alive (its buffer's owner); the memory is freed with it.
    weakref.finalize(memory, _pinned_free, data)
    return np.frombuffer(memory, dtype=np.uint8).reshape(shape)


class Model:
    """A loaded model package; share it between encoders (and threads).

    Model() loads the tiny random-weight model compiled into the library; Model(path) loads the
    package directory at `path`. `backend` is "auto" or "tract", `threads` the CPU backend's worker
    threads (0: one per core)."""

    def __init__(self, path: Optional[os.PathLike | str] = None, *, backend: str = "auto",
                 threads: int = 0):
        options = _ModelOptions()
        _check(_model_options_init(ctypes.byref(options), ctypes.sizeof(options)))
        try:
            options.backend = Backend[backend.upper()]
        except KeyError:
            raise ValueError(f"backend must be 'auto' or 'tract', not {backend!r}") from None
        if not 0 <= threads < 2**32:
            raise ValueError(f"threads must be in 0..2**32, not {threads}")
        options.threads = threads
        handle = ctypes.c_void_p()
        if path is None:
            _check(_model_load_embedded(ctypes.byref(options), ctypes.byref(handle)))
        else:
            _check(_model_load(os.fsencode(path), ctypes.byref(options), ctypes.byref(handle)))
        self._handle = handle
        info = _P(_ModelInfo)()
        _check(_model_get_info(self._handle, ctypes.byref(info)))
        i = info.contents
        self.name: str = i.name.decode()
        self.origin: str = i.origin.decode("utf-8", "replace")
        self.backend: str = i.backend.decode()
        self.width: int = i.width
        self.default_budget: int = i.default_budget
        self.patch: int = i.patch
        self.lowres_size: int = i.lowres_size
        self.high_scales: tuple = tuple(i.high_scales[k] for k in range(i.high_scale_count))
        self.input_size: int = i.input_size
        self.total_high_patches: int = i.total_high_patches
        self.package_bytes: int = i.package_bytes
        li = _LabelsInfo(struct_size=ctypes.sizeof(_LabelsInfo))
        _check(_model_get_labels_info(self._handle, ctypes.byref(li)))
        #: Regions per pool run (0: no region pool head); text tower present; bank calibration.
        self.max_regions: int = li.max_regions
        self.has_text_tower: bool = bool(li.has_text_tower)
        self.labels_calibrated: bool = bool(li.calibrated)
        self.logit_scale: float = li.logit_scale
        self.logit_bias: float = li.logit_bias
        names = []
        for k in range(li.label_count):
            name = ctypes.c_char_p()
            _check(_model_label_name(self._handle, k, ctypes.byref(name)))
            names.append(name.value.decode("utf-8"))
        #: The label bank (empty without one).
        self.labels: tuple = tuple(names)

    def close(self) -> None:
        """Release the handle (encoders made from it keep working)."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            _model_destroy(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def __repr__(self):
        return f"ps3rt.Model({self.name!r} from {self.origin!r}, backend {self.backend})"


class Result:
    """The result of one encode, copied out of the encoder.

    features: float32 [token_count, width]: the low-res tokens (raster order), then the selected
    high-res tokens by scale, then raster index. tokens: TOKEN_DTYPE [token_count]. regions:
    REGION_DTYPE [n], best first. prob_map: float32 [grid, grid]. timings: dict of milliseconds."""

    def __init__(self, out: _Output):
        n, c = out.token_count, out.width
        self.features = np.ctypeslib.as_array(out.features, shape=(n, c)).copy()
        self.tokens = _struct_array(out.tokens, n, TOKEN_DTYPE)
        self.regions = _struct_array(out.regions, out.region_count, REGION_DTYPE)
        g = out.prob_grid
        self.prob_map = np.ctypeslib.as_array(out.prob_map, shape=(g, g)).copy()
        self.lowres_token_count: int = out.lowres_token_count
        self.budget: int = out.budget
        self.steps: int = out.steps
        self.frame_size: tuple = (out.frame_width, out.frame_height)
        self.timings: dict = {k: getattr(out.timings, k) for k in _TIMING_FIELDS}

    def __repr__(self):
        return (f"ps3rt.Result({self.features.shape[0]} tokens x {self.features.shape[1]}, "
                f"{len(self.regions)} regions, {self.timings['total_ms']:.1f} ms)")


def _struct_array(pointer, count: int, dtype: np.dtype) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype)
    raw = ctypes.string_at(ctypes.cast(pointer, ctypes.c_void_p), count * dtype.itemsize)
    return np.frombuffer(raw, dtype=dtype).copy()


_DEFAULT_FORMATS = {1: PixelFormat.GRAY8, 3: PixelFormat.RGB8, 4: PixelFormat.RGBA8}


class Encoder:
    """Encodes frames with a model: `budget` high-res tokens per step (0: the package's) and `steps`
    look-close steps. Use an encoder from one thread at a time; create one per thread."""

    def __init__(self, model: Model, budget: int = 0, steps: int = 1):
        if not model._handle:
            raise ValueError("the model is closed")
        options = _EncoderOptions()
        _check(_encoder_options_init(ctypes.byref(options), ctypes.sizeof(options)))
        if budget < 0 or steps < 0:
            raise ValueError("budget and steps must not be negative")
        options.budget, options.steps = budget, steps
        handle = ctypes.c_void_p()
        _check(_encoder_create(model._handle, ctypes.byref(options), ctypes.byref(handle)))
        self._handle = handle
        self.width = model.width
        self.input_size = model.input_size
        self._lock = threading.Lock()

    def encode(self, image: np.ndarray, format: Optional[str | PixelFormat] = None) -> Result:
        """Encode an 8-bit image: uint8 [H, W] (gray), [H, W, 3] (RGB, or `format="bgr8"`) or
        [H, W, 4] (RGBA, or "bgra8"). Rows may be strided (e.g. a crop); pixels are not copied."""
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise TypeError(f"image must be uint8, not {image.dtype}")
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3 or image.shape[2] not in _DEFAULT_FORMATS:
            raise ValueError(f"image must be [H, W], [H, W, 3] or [H, W, 4], not {list(image.shape)}")
        channels = image.shape[2]
        fmt = _DEFAULT_FORMATS[channels] if format is None else (
            PixelFormat[format.upper()] if isinstance(format, str) else PixelFormat(format))
        bpp = {PixelFormat.GRAY8: 1, PixelFormat.RGB8: 3, PixelFormat.BGR8: 3,
               PixelFormat.RGBA8: 4, PixelFormat.BGRA8: 4}[fmt]
        if bpp != channels:
            raise ValueError(f"format {fmt.name} needs {bpp} channels, the image has {channels}")
        if image.strides[1] != channels or image.strides[2] != 1 or image.strides[0] < 0:
            image = np.ascontiguousarray(image)
        frame = _Frame()
        frame.width, frame.height, frame.format = image.shape[1], image.shape[0], int(fmt)
        frame.planes[0] = image.ctypes.data
        frame.strides[0] = image.strides[0]
        return self._run(lambda out: _encoder_encode(self._handle, ctypes.byref(frame), out), image)

    def encode_yuv(self, planes, width: int, height: int, format: str | PixelFormat) -> Result:
        """Encode a YUV frame: `planes` is one uint8 array per plane of the format (YUYV/UYVY: one
        [H, 4 * ceil(W / 2)] array; NV12/NV21: Y [H, W] and chroma [ceil(H / 2), 2 * ceil(W / 2)];
        I420: Y, Cb, Cr, the chroma [ceil(H / 2), ceil(W / 2)]). Rows may be strided; pixels are
        not copied. Convert with `set_yuv_color` (default BT.601 limited)."""
        fmt = PixelFormat[format.upper()] if isinstance(format, str) else PixelFormat(format)
        counts = {PixelFormat.YUYV: 1, PixelFormat.UYVY: 1, PixelFormat.NV12: 2,
                  PixelFormat.NV21: 2, PixelFormat.I420: 3}
        if fmt not in counts:
            raise ValueError(f"{fmt.name} is not a YUV format; use encode()")
        if isinstance(planes, np.ndarray):
            planes = [planes]
        if len(planes) != counts[fmt]:
            raise ValueError(f"{fmt.name} has {counts[fmt]} plane(s), got {len(planes)}")
        arrays = []
        frame = _Frame()
        frame.width, frame.height, frame.format = width, height, int(fmt)
        for i, plane in enumerate(planes):
            a = np.asarray(plane)
            if a.dtype != np.uint8 or a.ndim != 2:
                raise ValueError(f"plane {i} must be a 2-D uint8 array, not {a.dtype} {list(a.shape)}")
            if a.strides[1] != 1 or a.strides[0] < 0:
                a = np.ascontiguousarray(a)
            # The library checks each plane's rows and stride against the format and size; the
            # array must hold them, which its shape says.
            rows = height if i == 0 or fmt in (PixelFormat.YUYV, PixelFormat.UYVY) else (height + 1) // 2
            if a.shape[0] < rows:
                raise ValueError(f"plane {i} has {a.shape[0]} rows, {fmt.name} {width}x{height} needs {rows}")
            half = (width + 1) // 2
            row = {PixelFormat.YUYV: 4 * half, PixelFormat.UYVY: 4 * half,
                   PixelFormat.I420: half}.get(fmt, 2 * half) if i > 0 or fmt in (
                       PixelFormat.YUYV, PixelFormat.UYVY) else width
            if a.shape[1] < row:
                raise ValueError(f"plane {i} of {list(a.shape)} is narrower than a {fmt.name} row of {width} pixels ({row} bytes)")
            frame.planes[i] = a.ctypes.data
            frame.strides[i] = a.strides[0]
            arrays.append(a)
        return self._run(lambda out: _encoder_encode(self._handle, ctypes.byref(frame), out), arrays)

    def encode_jpeg(self, data: bytes) -> Result:
        """Decode a JPEG (e.g. an MJPEG camera frame) into the encoder's reused buffer and encode it."""
        buf = bytes(data)
        return self._run(lambda out: _encoder_encode_jpeg(self._handle, buf, len(buf), out), buf)

    def set_yuv_color(self, matrix: str | YuvMatrix = YuvMatrix.BT601,
                      range: str | YuvRange = YuvRange.LIMITED) -> None:
        """How YUV frames are converted to RGB: BT601/BT709, LIMITED/FULL (default BT.601 limited)."""
        m = YuvMatrix[matrix.upper()] if isinstance(matrix, str) else YuvMatrix(matrix)
        r = YuvRange[range.upper()] if isinstance(range, str) else YuvRange(range)
        with self._lock:
            self._require_open()
            _check(_encoder_set_yuv_color(self._handle, int(m), int(r)))

    def set_preprocess(self, gpu_device: int | None = None) -> None:
        """Resample frames on CUDA device `gpu_device` (0: the first GPU), or on the CPU when it is
        None (the default). Raises Error (status BACKEND, naming the missing driver, device or
        NVRTC) when the GPU cannot be used; the encoder then keeps resampling where it did."""
        device = -1 if gpu_device is None else int(gpu_device)
        if gpu_device is not None and device < 0:
            raise ValueError(f"gpu_device must be 0 or more (None: the CPU), got {gpu_device}")
        with self._lock:
            self._require_open()
            _check(_encoder_set_preprocess(self._handle, device))

    def encode_tensor(self, tensor: np.ndarray) -> Result:
        """Encode a normalized float32 [3, S, S] tensor (PS3's pixel_values; S = model.input_size)."""
        tensor = np.ascontiguousarray(tensor, dtype=np.float32)
        s = self.input_size
        if tensor.shape != (3, s, s):
            raise ValueError(f"tensor must be [3, {s}, {s}], not {list(tensor.shape)}")
        data = tensor.ctypes.data_as(_P(ctypes.c_float))
        return self._run(lambda out: _encoder_encode_tensor(self._handle, data, s, out), tensor)

    def set_prompt(self, prompt: Optional[np.ndarray]) -> None:
        """Select top-down with a [width] prompt embedding; None restores bottom-up selection."""
        with self._lock:
            self._require_open()
            if prompt is None:
                _check(_encoder_set_prompt(self._handle, None, 0))
                return
            p = np.ascontiguousarray(prompt, dtype=np.float32).reshape(-1)
            _check(_encoder_set_prompt(self._handle, p.ctypes.data_as(_P(ctypes.c_float)), p.size))

    def set_prompt_text(self, text: str) -> None:
        """Select top-down with free text, encoded by the package's text tower."""
        with self._lock:
            self._require_open()
            _check(_encoder_set_prompt_text(self._handle, text.encode("utf-8")))

    def set_prompt_label(self, label: str) -> None:
        """Select top-down with the prompt of the bank label spelled exactly `label`."""
        with self._lock:
            self._require_open()
            _check(_encoder_set_prompt_label(self._handle, label.encode("utf-8")))

    def label_regions(self, top_k: int = 3, max_regions: int = 0, boxes=None) -> list:
        """Embed and label the best regions of the last encode (or `boxes`, a sequence of
        (x, y, w, h) in frame pixels). Returns a list of dicts: box, scale, tokens, region_score,
        embedding (float32 [width]), labels [(label, score, logit)], best first."""
        options = _LabelOptions()
        _check(_label_options_init(ctypes.byref(options), ctypes.sizeof(options)))
        options.top_k = top_k
        options.max_regions = max_regions
        out = _P(_RegionLabels)()
        with self._lock:
            self._require_open()
            if boxes is None:
                _check(_encoder_label_regions(self._handle, ctypes.byref(options), ctypes.byref(out)))
            else:
                arr = (_Box * len(boxes))(*[_Box(*map(float, b)) for b in boxes])
                _check(_encoder_label_boxes(self._handle, arr, len(boxes), ctypes.byref(options),
                                            ctypes.byref(out)))
            result = []
            o = out.contents
            for i in range(o.region_count):
                r = o.regions[i]
                result.append({
                    "box": (r.bbox.x, r.bbox.y, r.bbox.w, r.bbox.h),
                    "scale": r.scale,
                    "tokens": r.tokens,
                    "region_score": r.region_score,
                    "embedding": np.ctypeslib.as_array(r.embedding, (r.embedding_dim,)).copy(),
                    "labels": [(r.labels[k].label.decode("utf-8"), r.labels[k].score, r.labels[k].logit)
                               for k in range(r.label_count)],
                })
            return result

    def _run(self, call, keepalive) -> Result:
        with self._lock:
            self._require_open()
            out = _P(_Output)()
            _check(call(ctypes.byref(out)))
            del keepalive  # the pixels were only needed during the call
            return Result(out.contents)

    def _require_open(self):
        if not self._handle:
            raise ValueError("the encoder is closed")

    def close(self) -> None:
        """Release the encoder."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            _encoder_destroy(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


_log_state = {"callback": None}
_log_lock = threading.Lock()


def set_log_callback(callback: Optional[Callable[[LogLevel, str], None]],
                     level: LogLevel = LogLevel.INFO) -> None:
    """Send the library's messages up to `level` to callback(level, message) (from any thread);
    None stops logging. Exceptions in the callback are printed and ignored."""
    with _log_lock:
        if callback is None:
            _check(_set_log_callback(_LOG_CALLBACK(), None, LogLevel.OFF))
            _log_state["callback"] = None
            return

        def trampoline(lvl, message, _user):
            try:
                callback(LogLevel(lvl), message.decode("utf-8", "replace"))
            except Exception:  # must not unwind into the library
                import traceback
                traceback.print_exc()

        c_callback = _LOG_CALLBACK(trampoline)
        _check(_set_log_callback(c_callback, None, int(level)))
        _log_state["callback"] = c_callback  # keep it alive while the library may call it
